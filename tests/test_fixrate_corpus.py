"""bench/fixrate/corpus.py: a calibration-corpus recipe as a script the probe can call."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

REPO = Path(__file__).resolve().parents[1]

corpus = pytest.importorskip("corpus")
store = pytest.importorskip("store")


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return {r["id"]: r for r in store.load()}


def test_hyperparameters_map_onto_the_recipe(records) -> None:
    cfg = records["r00909"]["config"]
    hp = corpus.hparams_of(cfg)
    assert hp["learning_rate"] == cfg["lr"] and hp["max_steps"] == cfg["total_steps"]
    out = corpus.apply(cfg, {"learning_rate": "0.01", "model_capacity": "2",
                             "warmup_steps": "4", "lr_schedule": "cosine",
                             "init": "he_normal", "drop_last": "true"})
    assert out["lr"] == 0.01 and out["hidden"] == 2 * cfg["hidden"]
    assert out["schedule"] == {"kind": "warmup", "warmup": 4 / cfg["total_steps"],
                               "then": "cosine"}
    assert out["init"] == {"kind": "he_normal"} and out["drop_last"] is True
    assert corpus.apply(cfg, {"max_steps": "10"})["stop_at"] == 10
    longer = corpus.apply(cfg, {"max_steps": str(3 * cfg["total_steps"])})
    assert longer["target_steps"] == 3 * cfg["total_steps"] and longer["epochs"] is None
    with pytest.raises(ValueError, match="lr_schedule 'cyclic'"):
        corpus.apply(cfg, {"lr_schedule": "cyclic"})  # the trial fails, honestly
    # the recipe's own values change nothing
    assert corpus.apply(cfg, hp)["lr"] == cfg["lr"]


def test_the_lr_step_factor_is_the_recipes_lr_event(records) -> None:
    """A mid-run LR jump is the recipe's LR event: ``lr_step_factor`` is its factor (what
    the advice proposes to set to 1), logged only where the recipe has one."""
    cfg = records["r00005"]["config"]  # lr_jump_midrun: x1000 at 69% of the run
    hp = corpus.hparams_of(cfg)
    assert hp["lr_step_factor"] == cfg["lr_event"]["factor"] == 1000.0
    out = corpus.apply(cfg, {"lr_step_factor": "1"})
    assert out["lr_event"] == {**cfg["lr_event"], "factor": 1.0}
    assert out["lr"] == cfg["lr"] and out["schedule"] == cfg["schedule"]
    plain = records["r00909"]["config"]
    assert plain["lr_event"] is None and "lr_step_factor" not in corpus.hparams_of(plain)
    assert corpus.apply(plain, {"lr_step_factor": "1"})["lr_event"] is None
    with pytest.raises(ValueError, match="no LR step"):
        corpus.apply(plain, {"lr_step_factor": "0.1"})


def test_cases_cover_every_state_with_their_corpus_label() -> None:
    cases = corpus.cases(2)
    assert [c["state"] for c in cases[:5]] == list(corpus.STATES)
    assert all(c["state"] in c["label"] for c in cases)
    assert not any(c["cause"] in corpus.NO_HPARAM_FIX for c in cases)
    untrained, ref = corpus.levels(cases[0])
    assert 0 < ref <= 0.5 * untrained


def test_trial_seed_0_retrains_the_stored_run(records, tmp_path: Path) -> None:
    """The script the probe calls reproduces the corpus run it stands for, point for point."""
    rec = records["r00909"]
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(rec["config"]))
    hp = corpus.hparams_of(rec["config"])
    argv = [sys.executable, str(REPO / "bench" / "fixrate" / "corpus.py"), "--recipe",
            str(recipe), "--seed", "0", "--logdir", str(tmp_path / "run")]
    for k, v in hp.items():
        if k != "num_classes":
            argv += ["--" + k.replace("_", "-"), json.dumps(v).strip('"')]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    with open(tmp_path / "run" / "metrics_log.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["val_loss"]]
    steps, values = store.series(rec, "val_loss")
    assert [int(r["step"]) for r in rows] == steps
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(values, rel=1e-5)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["learning_rate"] == rec["config"]["lr"]


@pytest.mark.slow
def test_a_trial_leaves_no_hook_behind_for_the_next_in_the_same_process(
        records, tmp_path: Path) -> None:
    """A sweep calls ``corpus.train`` many times in one process: a GroupNorm or GELU
    variant must not leak into the trainings after it."""
    import generate
    import torch

    rec = records["r00909"]
    before = (torch.nn.ReLU, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d,
              generate.apply_init, generate.make_data, generate.make_optimizer)
    cfg = {**rec["config"], "act_name": "gelu", "norm_name": "groupnorm", "grad_clip": 1.0}
    corpus.train(cfg, 0, tmp_path / "variant")
    after = (torch.nn.ReLU, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d,
             generate.apply_init, generate.make_data, generate.make_optimizer)
    assert after == before
