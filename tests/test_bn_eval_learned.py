"""BN001's "eval-mode outputs learned" reads a val accuracy logged in percent as the
fraction it is (a custom loop's ``val_accuracy`` of 62.5 is 62.5%, not 62.5 >= 0.8)."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.detectors import RuleContext
from diagnose.detectors.batchnorm import eval_outputs_learned
from tests.rule_helpers import make_run

STEPS = np.arange(1, 21)


def _run(val_acc: np.ndarray):
    train = 1.0 * np.exp(-STEPS / 5.0) + 0.05  # learns: 0.87 -> 0.05
    val = np.full(len(STEPS), 0.5)  # below the untrained level (max(0.87, ln 2))
    return make_run({"train_loss": (STEPS, train), "val_loss": (STEPS, val),
                     "val_accuracy": (STEPS, val_acc)})


@pytest.mark.parametrize(
    ("val_acc", "learned"),
    [
        (np.linspace(0.60, 0.65, len(STEPS)), False),
        (np.linspace(60.0, 65.0, len(STEPS)), False),  # percent: 65% is not >= 0.8
        (np.linspace(0.80, 0.90, len(STEPS)), True),
        (np.linspace(80.0, 90.0, len(STEPS)), True),
    ],
)
def test_val_accuracy_in_percent_is_a_fraction(val_acc: np.ndarray, learned: bool) -> None:
    assert eval_outputs_learned(RuleContext(_run(val_acc)), 0.8) is learned
