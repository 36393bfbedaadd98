"""``progress.pinned_accuracy``: the one owner of "the accuracy held one value", asked by
PLT001 (constant guess: identical, or pinned within pinned_acc_band) and UND003/UND004
(constant_guess).  The rules' cases cover the verdicts end to end; these pin the window,
the unit reading and the identity-versus-band split the rules rely on."""

from __future__ import annotations

import numpy as np

from diagnose.detectors.progress import Curve, curve, evaluation_window, pinned_accuracy
from diagnose.metrics import Role, Series


def _acc(values: list[float]) -> Curve:
    steps = np.arange(len(values), dtype="int64") * 100
    s = Series("accuracy", "val_acc", "val", Role.VAL_METRIC, steps,
               np.asarray(values, float), np.full(len(values), np.nan), True)
    c = curve(s)
    assert c is not None
    return c


def test_identical_percentage_reads_as_the_fraction() -> None:
    got = pinned_accuracy(_acc([66.98] * 9), 3)
    assert got is not None and got.spread == 0.0
    assert np.allclose(got.fractions, 0.6698)


def test_identity_is_exact_a_band_is_in_fractions() -> None:
    moved = _acc([66.98] * 8 + [66.99])
    assert pinned_accuracy(moved, 3) is None
    got = pinned_accuracy(moved, 3, band=0.02)
    assert got is not None and abs(got.spread - 0.0001) < 1e-9
    assert pinned_accuracy(_acc([0.60, 0.61, 0.63]), 3, band=0.02) is None
    assert pinned_accuracy(_acc([0.60, 0.61, 0.63]), 3, band=0.05) is not None


def test_the_tail_window_and_its_fallback() -> None:
    # moved over the first 60% of the run, identical over the last 40%
    c = _acc([0.3, 0.45, 0.5, 0.55, 0.58, 0.6, 0.63, 0.63, 0.63, 0.63, 0.63])
    assert pinned_accuracy(c, 3) is None  # every evaluation: it moved
    assert pinned_accuracy(c, 3, None, 0.4, 3) is not None
    # a run validated twice has no tail of 3: every evaluation, if there are enough
    two = _acc([0.63, 0.63])
    assert len(evaluation_window(two, 2, 0.4, 3)) == 2
    assert pinned_accuracy(two, 2, None, 0.4, 3) is not None
    assert pinned_accuracy(two, 3, None, 0.4, 3) is None
