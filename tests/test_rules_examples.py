"""Real short trainings of examples/train.py: healthy settings stay quiet, bad ones fire.

These are the runs the probe's README walk-through produces, so a false alarm here is
one a newcomer would see first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.pipeline import analyze

pytest.importorskip("torch")  # the optional training dependency, not our own module
#: each test trains a model for about a minute on this machine's CPUs
pytestmark = pytest.mark.slow
TRAIN = Path(__file__).resolve().parents[1] / "examples" / "train.py"


def _states(tmp_path: Path, lr: float, seed: int, steps: int = 300) -> list[str]:
    logdir = tmp_path / f"lr{lr}_s{seed}"
    subprocess.run([sys.executable, str(TRAIN), "--lr", str(lr), "--seed", str(seed),
                    "--max-steps", str(steps), "--logdir", str(logdir)],
                   check=True, capture_output=True, timeout=300)
    return analyze([str(logdir)]).results[0].states


def test_healthy_noisy_run_is_not_called_overfit(tmp_path: Path) -> None:
    # per-batch train loss 0.001-0.24 and one val point up 0.026 -> 0.073 at the end:
    # a gap that is tiny next to what the model learned (val 1.1 -> 0.026) is noise
    assert _states(tmp_path, lr=0.1, seed=2) == []


def test_far_too_high_learning_rate_diverges(tmp_path: Path) -> None:
    assert "divergence" in _states(tmp_path, lr=2.0, seed=0)
