"""bench/calibration/ceiling.py: what the logs carry, read by trees, and told to the rules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import ceiling  # noqa: E402
import store  # noqa: E402
import write_logs  # noqa: E402


def test_what_a_user_can_tell_comes_from_the_recipe() -> None:
    told = ceiling.told(store.record("r00001"))  # an MLP with batch norm, 2 classes
    assert told == {"normalization": "batchnorm", "num_classes": 2}
    lm = ceiling.told(store.record("r03379"))  # a character model over 96 symbols, no norm
    assert lm == {"normalization": "none", "num_classes": 96}


def test_a_fine_tune_flat_below_chance_is_plateau_as_logged_and_healthy_when_told(
        tmp_path: Path) -> None:
    """r03379 is a character-model fine-tune that starts at 2.36 nats and stays there
    (labelled healthy). Its jsonl log records no vocabulary, so the rules take its first
    loss for the untrained level and call it plateau; told the 96 symbols (ln 96 = 4.56),
    they see a model far below chance and stay quiet."""
    rec = store.record("r03379")
    folder = write_logs.render(rec, tmp_path, "jsonl")
    rid, feats, fired, told_states = ceiling.features((str(folder), ceiling.told(rec)))
    assert rid == "r03379"
    assert {f.rsplit("@", 1)[1] for f in fired} == {"plateau"}
    assert told_states == []
    # the features are the log's: three logged train points near 2.36, no class count
    assert feats["train_loss_n"] == 3 and 2.3 < feats["train_loss_first"] < 2.4
    assert np.isnan(feats["classes"])


def test_trees_learn_a_separating_feature_and_skip_a_column_the_training_runs_lack() -> None:
    rng = np.random.default_rng(0)
    n = 400
    runs = [{"id": f"r{i}", "label": {"plateau"} if i % 2 else set(),
             "family": "a" if i < 200 else "b"} for i in range(n)]
    x = np.column_stack([np.array([i % 2 for i in range(n)], float) + rng.normal(0, 0.1, n),
                         rng.normal(0, 1, n), np.full(n, np.nan)])
    x[200:, 2] = 1.0  # only family b carries the third column: held out, a never sees it
    got = ceiling.tree_predictions(runs, x, "family")
    right = sum(("plateau" in got[r["id"]]) == ("plateau" in r["label"]) for r in runs)
    assert right >= 0.95 * n


def test_the_class_count_a_manifest_row_states() -> None:
    row = {"id": "x", "framework": "PyTorch Lightning (EuroSAT, 10 classes)", "label": "underfit",
           "reason": "10 epochs of 2 steps each"}
    assert ceiling.stated_class_count(row) == 10
    assert ceiling.stated_class_count({"id": "y", "framework": "a 7-class emotion CNN"}) == 7
    assert ceiling.stated_class_count({"id": "z", "framework": "binary pneumonia"}) == 2
    # epochs, steps and a label named like a count say nothing
    assert ceiling.stated_class_count({"id": "w", "framework": "Keras, 10 epochs",
                                       "label": "2 classes"}) is None
