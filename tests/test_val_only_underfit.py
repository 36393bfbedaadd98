"""UND004 on a log with no train series (issue 9, round 19: cadence_invariance's val-only
variant; loggers that write only validation metrics).

Val alone is judged only with the class count known (ln C places the untrained level its
first evaluation comes after) and only while still falling at a poor level, with a val
accuracy on few classes poor too.
"""

from __future__ import annotations

import math

import numpy as np
from rule_helpers import make_run

from diagnose.detectors import RuleContext
from diagnose.detectors.underfit import UND004
from diagnose.metrics import resolve_roles

STEPS = list(range(5, 175, 5))
# a 10-class run stopped while its val loss still falls from ln 10 (corpus r01383's shape)
VAL = list(2.30 - 0.6 * (1 - np.exp(-np.arange(len(STEPS)) / 30.0)))
ACC = list(0.10 + 0.55 * (1 - np.exp(-np.arange(len(STEPS)) / 30.0)))


def _detect(cols: dict, hparams: dict | None = None) -> list | None:
    run = make_run(cols, hparams)
    ctx = RuleContext(run, roles=resolve_roles(run.scalars))
    return UND004().detect(ctx, UND004.Params.build(ctx.thresholds_of("UND004")))


def test_val_only_still_falling_at_a_poor_level_is_underfit() -> None:
    found = _detect({"val_loss": (STEPS, VAL), "val_acc": (STEPS, ACC)}, {"num_classes": 10})
    assert found
    ev = found[0].evidence
    assert ev.train_loss is None and ev.train_end is None and ev.val_loss == "val_loss"
    assert ev.untrained_level == math.log(10) or ev.untrained_level >= VAL[0]
    assert ev.late_share is not None and ev.late_share >= 0.07
    assert "no train series logged" in UND004().message(ev)


def test_val_only_needs_the_class_count_and_a_poor_accuracy() -> None:
    # no class count (none in the log, none read from a loss starting far below ln C):
    # the first evaluation only bounds the untrained level from below: not judged
    low = [v - 1.2 for v in VAL]
    assert _detect({"val_loss": (STEPS, low)}) is None
    # a val accuracy far up the room above chance: not poor on val alone
    good = [0.1 + 0.85 * a / max(ACC) for a in ACC]
    assert _detect({"val_loss": (STEPS, VAL), "val_acc": (STEPS, good)},
                   {"num_classes": 10}) == []
    # levelled off (no longer falling): the gap cannot be ruled out without a train side
    flat = [VAL[0]] + [VAL[8]] * (len(STEPS) - 1)
    assert _detect({"val_loss": (STEPS, flat)}, {"num_classes": 10}) == []
