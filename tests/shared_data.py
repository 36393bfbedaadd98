"""Where the shared real logs are: ``../shared`` next to the repository (never an
absolute path), and what a test does when they are missing: skip on a developer's
machine, FAIL under CI (``CI=true``), so a CI job can never pass by silently testing
nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared(*parts: str) -> Path:
    """A path under ``../shared``."""
    return SHARED.joinpath(*parts)


def require(path: Path) -> Path:
    """``path``, or skip (fail under CI) when it is missing."""
    if not path.exists():
        why = f"{path} is missing (the shared real logs live in ../shared next to the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


def needs(path: Path) -> pytest.MarkDecorator:
    """A ``skipif`` marker for tests that read ``path``: skips on a developer's machine
    without it, but never under CI, where the test then fails on the missing files."""
    missing = not path.exists() and os.environ.get("CI", "").lower() != "true"
    return pytest.mark.skipif(missing, reason=f"{path} is missing (../shared next to the repo)")
