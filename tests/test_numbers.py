"""The one number formatter and the styles built on it (messages, rationales)."""

from __future__ import annotations

import numpy as np

from diagnose.advice.moves import show
from diagnose.detectors import fmt
from diagnose.numbers import sig


def test_sig_digits_ints_and_unknowns() -> None:
    assert sig(0.123456) == "0.1235"
    assert sig(123456) == "123456"  # ints whole
    assert sig(np.int64(7)) == "7"
    assert sig(None) == "n/a"
    assert sig("adam") == "adam"
    assert sig(12.0, 3, whole_below=1e7) == "12"
    assert sig(2e7, 3, whole_below=1e7) == "2e+07"


def test_message_and_rationale_styles_share_it() -> None:
    assert fmt(0.000123) == "0.000123"
    assert fmt(1.08349) == "1.083"
    assert fmt(float("nan")) == "NaN"
    assert show(0.0100000001) == "0.01"
    assert show(12.0) == "12"
    assert show(None) == "None"
