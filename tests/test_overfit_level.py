"""OVF001's level test: a noisy val loss that steps up from its minimum to a higher level.

The statistic must catch a clear step on a noisy curve and stay quiet on a flat noisy
curve, whose minimum is always a lucky low point (the bias the best-window median and
the standard error are there to absorb)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from rule_helpers import val_curve as _val

from diagnose.detectors.overfit import level_shift

RULE = Path(__file__).resolve().parents[1] / "rules" / "OVF001.toml"


def _params() -> dict[str, Any]:
    return dict(tomllib.loads(RULE.read_text())["thresholds"])


def test_a_step_up_to_a_noisy_level_is_found() -> None:
    rng = np.random.default_rng(0)
    # falls to 0.6 at the fourth evaluation, then sits at a noisy 0.9 for 16 evaluations
    v = np.r_[1.0, 0.75, 0.62, 0.6, 0.66, 0.9 + rng.normal(0, 0.08, 15)]
    got = level_shift(_val(v), _params())
    assert got is not None and got["best_step"] == 30
    assert got["rise"] > 0.15 and got["effect"] >= 3.0
    # with a tenfold stricter effect bar the same evidence is not enough
    assert level_shift(_val(v), {**_params(), "level_min_effect": 30.0}) is None


def test_a_flat_noisy_level_is_rarely_a_step() -> None:
    """The statistic alone, on pure noise (30% of the level): the minimum's window is
    still a little biased low, so it may pass on a few percent of such curves; the rule's
    other conditions (train keeps falling, a large growing gap, a step that is a share of
    the starting loss) are what keep a healthy run quiet (see the rule cases)."""
    p = _params()
    fired = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        v = 1.0 + rng.normal(0, 0.3, 40)
        fired += level_shift(_val(np.abs(v) + 0.05), p) is not None
    assert fired <= 0.03 * 400


def test_a_step_that_comes_back_down_is_not_a_level() -> None:
    rng = np.random.default_rng(1)
    # up to 1.0 in the middle, back to the minimum's level in the later half
    v = np.r_[1.0, 0.8, 0.6, 1.0 + rng.normal(0, 0.05, 10), 0.62 + rng.normal(0, 0.03, 10)]
    assert level_shift(_val(v), _params()) is None
