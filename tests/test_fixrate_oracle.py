"""bench/fixrate/oracle.py (the overfit oracle sweep's judge) and constant_features.py."""

from __future__ import annotations

import math
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

oracle = pytest.importorskip("oracle")
constant_features = pytest.importorskip("constant_features")


def _log(tmp_path: Path, name: str, rows: list[tuple[int, float, float]]) -> Path:
    d = tmp_path / name
    d.mkdir()
    lines = ["step,train_loss,val_acc,val_loss"]
    lines += [f"{s},0.1,{acc!r},{loss!r}" for s, acc, loss in rows]
    (d / "metrics_log.csv").write_text("\n".join(lines) + "\n")
    return d


def test_the_metric_is_the_probes_tail_mean_of_val_accuracy(tmp_path: Path) -> None:
    d = _log(tmp_path, "a", [(10 * i, 0.5 + 0.01 * i, 1.0) for i in range(1, 11)])
    # the last 20% of 100 steps: 90 and 100 (0.59, 0.60); cut at 50: 50 only (0.55)
    assert oracle.metric_value(d, None) == pytest.approx(0.595)
    assert oracle.metric_value(d, 50) == pytest.approx(0.55)
    nan = _log(tmp_path, "b", [(10, 0.5, 1.0), (20, math.nan, 2.0)])
    assert oracle.metric_value(nan, None) == -math.inf


def test_beats_uses_the_probes_gate() -> None:
    assert oracle.beats([0.50, 0.52], [0.60, 0.62])  # +0.1 against a gate of 2 x 0.014
    assert not oracle.beats([0.50, 0.60], [0.60, 0.62])  # +0.06 within 2 x 0.071
    assert not oracle.beats([0.50, 0.50], [0.505, 0.505])  # within 2% of the control
    assert oracle.beats([-math.inf, 0.5], [0.4, 0.41])  # a control that blew up
    assert not oracle.beats([0.5, 0.5], [-math.inf, 0.9])


def test_pairs_join_the_best_single_change_of_each_knob() -> None:
    trials = [{"setting": n, "change": ch, "best": b} for n, ch, b in (
        ("control", {}, 0.1), ("wd", {"weight_decay": 5e-3}, 0.5),
        ("dropout0.3", {"dropout": 0.3}, 0.6), ("dropout0.5", {"dropout": 0.5}, 0.4),
        ("capacity_x0.5", {"model_capacity": 0.5}, 0.7),
        ("capacity_x0.25", {"model_capacity": 0.25}, 0.9))]
    got = {p["name"]: p["change"] for p in oracle.pairs(trials)}
    assert got == {"dropout0.5+wd": {"dropout": 0.5, "weight_decay": 5e-3},
                   "dropout0.5+capacity_x0.5": {"dropout": 0.5, "model_capacity": 0.5},
                   "wd+capacity_x0.5": {"weight_decay": 5e-3, "model_capacity": 0.5}}


def test_a_feature_constant_in_training_but_not_in_val_is_found() -> None:
    base = {"dataset": "digits", "seed": 1806, "n_train": 400, "task": "cls",
            "label_noise": 0.0, "input_scale": 1.0, "input_shift": 0.0}
    hits = constant_features.artefact_columns(base | {"seed": 0})
    # found, and (generate.standard_scale) only centred: digits pixels are 0..16, not ~1e6
    assert hits and all(0 < h["max_abs_input"] <= 16 for h in hits)
    assert constant_features.artefact_columns(base | {"seed": 3}) == []  # another split
    assert constant_features.artefact_columns(base | {"dataset": "iris"}) == []
