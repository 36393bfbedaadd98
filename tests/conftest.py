"""Shared pytest settings. Area-specific fixtures live in tests/fixtures_*.py modules."""

import os
from collections.abc import Iterator
from types import ModuleType

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def fixrate() -> Iterator[ModuleType]:
    """bench/fixrate/fixrate.py as a module (tests/fixtures_fixrate.py loads it)."""
    from fixtures_fixrate import load_fixrate

    yield from load_fixrate()
