"""bench/calibration/separability.py: the one-feature cut and the features it reads."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import separability  # noqa: E402


def test_the_cut_catches_no_negative_and_never_a_missing_value() -> None:
    x = np.array([0.1, 0.2, 0.9, 0.95, math.nan, 0.5])
    y = np.array([False, False, True, True, True, False])
    t, side, tp, fp = separability.best_threshold(x, y)
    assert (side, tp, fp) == (">=", 2, 0) and 0.5 < t <= 0.9
    assert not separability.catch(x, t, side)[4]  # NaN: the feature is absent
    # a positive among the negatives' range cannot be caught without an alarm
    t, side, tp, fp = separability.best_threshold(np.array([0.1, 0.2, 0.3]),
                                                  np.array([False, True, False]))
    assert tp == 0


def test_features_read_the_log(tmp_path: Path) -> None:
    """A log whose LR drops to 1e-3 of its peak at 20% of the run and whose loss falls
    from 1.0 to 0.5: the end over the untrained level, the frozen LR's date."""
    steps = np.arange(1, 101)
    lr = np.where(steps <= 20, 0.01, 1e-5)
    train = 0.5 + 0.5 * np.exp(-steps / 5.0)
    lines = ["step,lr,train_loss,val_loss"]
    for s, a, t in zip(steps, lr, train, strict=True):
        val = f"{t * 1.02:.6f}" if s % 10 == 0 else ""
        lines.append(f"{s},{a},{t:.6f},{val}")
    (tmp_path / "metrics_log.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    f = separability.run_features(tmp_path)
    assert f is not None
    assert 0.45 < f["end_over_l0"] < 0.6
    assert math.isclose(f["lr_dead_at"], 20 / 99, abs_tol=0.02)
    assert f["val_points"] == 10.0
    assert math.isnan(f["acc_share"])  # no accuracy logged
