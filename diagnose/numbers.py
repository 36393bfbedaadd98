"""The one formatter of numbers at a given precision, for messages and explanations.

``sig(x)`` gives 4 significant digits, keeps an integer whole and a non-number as it is
(a hyperparameter can be a string), and "n/a" for an unknown value.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sig(x: Any, digits: int = 4, *, whole_below: float = 0.0, missing: str = "n/a") -> str:
    """``x`` to ``digits`` significant digits; ints whole; None as ``missing``.

    With ``whole_below`` a float that is a whole number below it in size is written
    whole too (a rationale's "epochs 12.0" reads "12"), and an int at or above it is
    rounded like a float.
    """
    if x is None:
        return missing
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    if isinstance(x, (int, np.integer)) and not whole_below:
        return str(int(x))
    v = float(x)
    if whole_below and v.is_integer() and abs(v) < whole_below:
        return str(int(v))
    return f"{v:.{digits}g}"
