"""The fix-rate bench's modules for tests: bench/fixrate and bench/calibration on the path,
``fixrate.py`` loaded as a module (one owner for what several test files need)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
for _sub in ("fixrate", "calibration"):
    if str(REPO / "bench" / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / "bench" / _sub))


def load_fixrate() -> Iterator[ModuleType]:
    """bench/fixrate/fixrate.py as a module (it is a script, not a package member); the
    ``fixrate`` fixture in conftest.py yields it."""
    spec = importlib.util.spec_from_file_location("fixrate", REPO / "bench/fixrate/fixrate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fixrate"] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fixrate", None)
