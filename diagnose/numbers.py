"""The one formatter of numbers at a given precision, for messages and explanations.

``sig(x)`` gives 4 significant digits, keeps an integer whole and a non-number as it is
(a hyperparameter can be a string), and "n/a" for an unknown value.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sig(x: Any, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits; ints whole; None as "n/a"."""
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.{digits}g}"
