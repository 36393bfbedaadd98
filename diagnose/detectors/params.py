"""Typed detector parameters: what each threshold is and which values make sense.

A rule's ``[thresholds]`` (its TOML) and a user's ``[tool.diagnose.thresholds.RULE]``
are checked against the detector's parameter specs when rules and config are loaded, so
``tail_frac = -3.0`` is a one-line config error (exit 2) and never a silent "healthy".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from diagnose.numbers import sig


@dataclass(frozen=True)
class Param:
    """The type and valid range of one detector parameter.

    ``kind`` is ``float``, ``int``, ``bool``, ``str`` or ``"regex"``; ``lo``/``hi`` bound
    numbers (``lo_open``/``hi_open`` exclude the bound); ``required=False`` for a
    parameter the detector reads with a default.
    """

    kind: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    required: bool = True

    def describe(self) -> str:
        """The valid values in words, for error messages (``a number in [0, 1]``)."""
        if self.kind is bool:
            return "true or false"
        if self.kind == "regex":
            return "a regular expression"
        if self.kind == "tag_pattern":
            return "a glob or 're:' + regular expression"
        if self.kind is str:
            return "a string"
        noun = "an integer" if self.kind is int else "a number"
        if self.lo is None and self.hi is None:
            return noun
        if self.hi is None:
            return f"{noun} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.lo is None:
            return f"{noun} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{noun} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this parameter's type, or ValueError (why, no key)."""
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"must be {self.describe()}")
        if self.kind in (str, "regex", "tag_pattern"):
            if not isinstance(value, str):
                raise ValueError(f"must be {self.describe()}")
            rx = value if self.kind == "regex" else (
                value[3:] if self.kind == "tag_pattern" and value.startswith("re:") else None)
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as exc:
                    raise ValueError(f"is not a valid regular expression ({exc})") from None
            return value
        if isinstance(value, bool):
            raise ValueError(f"must be {self.describe()}")
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be {self.describe()}") from None
        if not math.isfinite(num) or not self._in_range(num):
            raise ValueError(f"must be {self.describe()} (got {value!r})")
        if self.kind is int:
            if not num.is_integer():
                raise ValueError(f"must be {self.describe()} (got {value!r})")
            return int(num)
        return num

    def _in_range(self, x: float) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))


def _num(x: float | None) -> str:
    return sig(x, 6, missing="")


#: A share of a run, of points or of a range: [0, 1].
FRACTION = Param(float, 0.0, 1.0)
#: A share that must leave something: (0, 1].
SHARE = Param(float, 0.0, 1.0, lo_open=True)
#: A strictly positive number (a factor, a tolerance, an effect size).
POSITIVE = Param(float, 0.0, lo_open=True)
#: A number that may be zero but not negative.
NON_NEGATIVE = Param(float, 0.0)
#: A factor of at least one (a ratio that means "bigger than").
AT_LEAST_ONE = Param(float, 1.0)
#: A count of points or samples, at least 1.
COUNT = Param(int, 1.0)
#: Any finite number (e.g. a pre-activation bound).
ANY_NUMBER = Param(float)
#: A Kendall tau threshold.
TAU = Param(float, -1.0, 1.0)
FLAG = Param(bool)
REGEX = Param("regex")
#: A glob or ``re:``-prefixed regular expression over histogram tags.
TAG_PATTERN = Param("tag_pattern")
#: A share of the run skipped at its start; something must be left: [0, 1).
START_SKIP = Param(float, 0.0, 1.0, hi_open=True)
#: A switch the detector reads with a default (may be absent from the rule file).
OPTIONAL_FLAG = Param(bool, required=False)
