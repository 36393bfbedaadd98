"""A first logged point that is not the model's start (issue 9, round 17).

progress.first_point_cover says how much of the run the first point already covers;
progress.level_before_log carries the curve back to the start; underfit.untrained_level
reads it when the class count is unknown.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rule_helpers import make_run

from diagnose.detectors import RuleContext
from diagnose.detectors.progress import first_point_cover, get_curve, level_before_log
from diagnose.detectors.underfit import untrained_level
from diagnose.metrics import Role

#: Keras CSVLogger rows of a fast learner (calibration corpus r00779): epoch 0's row
#: averages the whole first epoch; the same run logged per step starts at 1.28.
KERAS_LOSS = [0.7777, 0.5476, 0.3347, 0.2795]
KERAS_VAL = [0.7624, 0.3951, 0.3271, 0.3050]


def _ctx(steps: list[int], loss: list[float], val: list[float] | None = None,
         fmt: str = "csv", hparams: dict | None = None) -> RuleContext:
    cols = {"loss": (steps, loss)}
    if val is not None:
        cols["val_loss"] = (steps, val)
    run = dataclasses.replace(make_run(cols, hparams), format=fmt)
    return RuleContext(run)


def test_cover_of_keras_rows_per_step_logs_and_late_first_records() -> None:
    keras = _ctx([0, 1, 2, 3], KERAS_LOSS, fmt="keras_csv")
    assert first_point_cover(keras, get_curve(keras, Role.TRAIN_LOSS)) == pytest.approx(0.25)
    # the same numbers from a plain CSV whose steps start at 0: the first point is the start
    plain = _ctx([0, 1, 2, 3], KERAS_LOSS)
    assert first_point_cover(plain, get_curve(plain, Role.TRAIN_LOSS)) == 0.0
    # a per-epoch record at step 79 of 237 (the first a third of the way in)
    late = _ctx([79, 158, 237], [2.40, 2.396, 2.394])
    assert first_point_cover(late, get_curve(late, Role.TRAIN_LOSS)) == pytest.approx(1 / 3)
    # Keras's TensorBoard callback writes its epoch means as epoch_* tags, epochs from 0
    run = make_run({"epoch_loss": ([0, 1, 2, 3], KERAS_LOSS)})
    tb = RuleContext(dataclasses.replace(run, format="tensorboard"))
    assert first_point_cover(tb, get_curve(tb, Role.TRAIN_LOSS)) == pytest.approx(0.25)


def test_level_before_log_is_carried_back_from_the_centres_of_the_first_two_points() -> None:
    ctx = _ctx([0, 1, 2, 3], KERAS_LOSS, fmt="keras_csv")
    c = get_curve(ctx, Role.TRAIN_LOSS)
    # rows centred at 0.5 and 1.5 epochs: the line through them, back half an epoch
    want = KERAS_LOSS[0] + (KERAS_LOSS[0] - KERAS_LOSS[1]) * 0.5
    assert level_before_log(ctx, c, 0.05) == pytest.approx(want)
    # a first point covering no more than min_cover is the start: nothing to carry
    assert level_before_log(ctx, c, 0.25) is None
    # a curve that rose over its first interval carries nothing back
    up = _ctx([0, 1, 2, 3], [0.5, 0.6, 0.4, 0.3], fmt="keras_csv")
    assert level_before_log(up, get_curve(up, Role.TRAIN_LOSS), 0.05) == pytest.approx(0.5)
    # a per-step log from step 1 of 200
    steps = list(range(1, 201))
    per_step = _ctx(steps, list(np.linspace(2.3, 0.3, 200)))
    assert level_before_log(per_step, get_curve(per_step, Role.TRAIN_LOSS), 0.05) is None


def test_untrained_level_reads_the_carried_back_level_only_without_a_class_count() -> None:
    keras = _ctx([0, 1, 2, 3], KERAS_LOSS, KERAS_VAL, fmt="keras_csv")
    level, how = untrained_level(keras) or (0.0, "")
    assert level == pytest.approx(KERAS_LOSS[0] + (KERAS_LOSS[0] - KERAS_LOSS[1]) * 0.5)
    assert "carried back" in how
    # the same rows from a log whose first point is the start: its first value
    plain = _ctx([0, 1, 2, 3], KERAS_LOSS, KERAS_VAL)
    assert untrained_level(plain) == (pytest.approx(KERAS_LOSS[0]), "first loss")
    # with the class count known, ln C bounds the untrained level whatever the log's
    # start: the log's own largest early value, never carried back
    known = _ctx([0, 1, 2, 3], KERAS_LOSS, KERAS_VAL, fmt="keras_csv",
                 hparams={"num_classes": 2})
    assert untrained_level(known) == (pytest.approx(KERAS_LOSS[0]), "first loss")
    many = _ctx([0, 1, 2, 3], KERAS_LOSS, KERAS_VAL, fmt="keras_csv",
                hparams={"num_classes": 10})
    assert untrained_level(many) == (pytest.approx(np.log(10.0)), "ln 10")


#: Keras CSVLogger rows of a fast learner (calibration corpus r02227, healthy): the val
#: loss after epoch 0 (0.58) is already far below that epoch's mean train loss (0.78).
FAST_LOSS = [0.7777, 0.5423, 0.5305, 0.4951]
FAST_VAL = [0.5797, 0.5367, 0.5101, 0.5032]


def test_fall_in_first_stretch_reads_the_mean_against_the_evaluation_closing_it() -> None:
    from diagnose.detectors.progress import fall_in_first_stretch

    ctx = _ctx([0, 1, 2, 3], FAST_LOSS, FAST_VAL, fmt="keras_csv")
    tl, vl = get_curve(ctx, Role.TRAIN_LOSS), get_curve(ctx, Role.VAL_LOSS)
    assert tl is not None and vl is not None
    # less the train/val offset left at the end (medians of the last three points)
    offset = float(np.median(FAST_LOSS[-3:]) - np.median(FAST_VAL[-3:]))
    assert offset > 0
    assert fall_in_first_stretch(tl, vl) == pytest.approx(
        FAST_LOSS[0] - FAST_VAL[0] - offset)
    # a larger offset kept to the end (train above val: dropout) is not learning
    drop = [v + 0.05 for v in FAST_LOSS]
    off = _ctx([0, 1, 2, 3], drop, FAST_VAL, fmt="keras_csv")
    got = fall_in_first_stretch(get_curve(off, Role.TRAIN_LOSS),
                                get_curve(off, Role.VAL_LOSS))
    assert got == pytest.approx(FAST_LOSS[0] - FAST_VAL[0] - offset)
    # a first evaluation at another step than the first train point: nothing to read
    cols = {"loss": ([0, 1, 2, 3], FAST_LOSS), "val_loss": ([1, 2, 3, 4], FAST_VAL)}
    apart = RuleContext(dataclasses.replace(make_run(cols), format="keras_csv"))
    assert fall_in_first_stretch(get_curve(apart, Role.TRAIN_LOSS),
                                 get_curve(apart, Role.VAL_LOSS)) is None


def test_untrained_level_lifts_a_fast_learners_level_by_its_first_stretch() -> None:
    ctx = _ctx([0, 1, 2, 3], FAST_LOSS, FAST_VAL, fmt="keras_csv")
    level, how = untrained_level(ctx) or (0.0, "")
    # the first half of epoch 0 fell at least as much as its second half
    offset = float(np.median(FAST_LOSS[-3:]) - np.median(FAST_VAL[-3:]))
    assert level == pytest.approx(FAST_LOSS[0] + FAST_LOSS[0] - FAST_VAL[0] - offset)
    assert level > FAST_LOSS[0] + (FAST_LOSS[0] - FAST_LOSS[1]) * 0.5
    assert "carried back" in how
    # a log that never left its first point (flat train, val a little below it) shows no
    # learning before that point either: only the line through the first two rows
    flat = [1.15] * 6
    still = _ctx(list(range(6)), flat, [1.05, 1.13, 1.18, 1.19, 1.19, 1.19], fmt="keras_csv")
    level, _ = untrained_level(still) or (0.0, "")
    assert level == pytest.approx(1.15)
