"""mypy is part of the suite (issue 8, deliver 6): strict on the data model, the rules
(every rule class and detector) and the advice (the ``[[tool.mypy.overrides]]`` in
pyproject.toml), checked as whole packages so a call into them with the wrong types
fails too; and the whole ``diagnose`` package under the project's own config, as
``mypy diagnose`` runs it from the repo root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STRICT = ["diagnose/findings.py", "diagnose/run.py", "diagnose/detectors", "diagnose/advice",
          "diagnose/numbers.py"]


@pytest.mark.slow
def test_mypy_strict_on_model_rules_and_advice() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--strict", *STRICT],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_mypy_whole_package_under_project_config() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "diagnose"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
