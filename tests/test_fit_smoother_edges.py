"""The fit smoother's ends (issue 9, round 30): a centred rolling median that the curve's
last point cuts to two points is their mean, so one spike beside the end moved the end
level by half of it (healthy batch-norm runs with a ragged last batch read as a rising
val loss).  The edge window is refilled to the typical point count, unless its points are
monotone: a climb to the end is a trend, which a refilled median would read late."""

from __future__ import annotations

from rule_helpers import val_curve as _val

from diagnose.detectors.progress import end_level, smoothed


def test_a_spike_beside_the_last_evaluation_does_not_move_the_end_level() -> None:
    # flat at 0.30 with one ragged-batch spike at the second-to-last evaluation
    c = _val([1.0, 0.6, 0.4, 0.32, 0.30, 0.31, 0.30, 0.29, 0.30, 0.95, 0.30])
    assert abs(float(smoothed(None, c)[1][-1]) - 0.30) < 0.011
    assert end_level(c) < 0.4


def test_a_spike_beside_the_first_evaluation_does_not_move_the_start_level() -> None:
    c = _val([1.0, 2.5, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.38])
    assert float(smoothed(None, c)[1][0]) <= 1.0


def test_a_monotone_climb_to_the_end_keeps_its_cut_value() -> None:
    # the val loss of an overfit that ends right after its minimum: 0.70 -> 0.84 -> 1.25
    c = _val([1.85, 1.4, 1.1, 0.9, 0.75, 0.70, 0.84, 1.25])
    # the two-point mean of the rise (1.045), not the median of the last three (0.84)
    assert abs(float(smoothed(None, c)[1][-1]) - (0.84 + 1.25) / 2) < 1e-9
