"""Small builders shared by the per-family rule tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.config import Config
from diagnose.detectors.progress import Curve, curve
from diagnose.engine import evaluate, load_rules
from diagnose.findings import Finding
from diagnose.metrics import Role, Series
from diagnose.run import Histogram, IngestNote, Run, make_scalars

RULES = load_rules()


def make_run(cols: dict[str, tuple], hparams: dict | None = None,
             histograms: list[Histogram] | None = None,
             notes: list[IngestNote] | None = None) -> Run:
    """A Run from ``{tag: (steps, values)}``."""
    frames = [make_scalars(tag, np.asarray(s), np.asarray(v, dtype=float))
              for tag, (s, v) in cols.items()]
    run = Run("t", path=Path("."), format="csv")
    if frames:
        run.scalars = pd.concat(frames, ignore_index=True)
    run.hparams = dict(hparams or {})
    run.histograms = list(histograms or [])
    run.notes = list(notes or [])
    return run.finalize()


def findings(run: Run, rule: str | None = None, **cfg) -> list[Finding]:
    """Findings of ``rule`` (or all) on ``run`` with preview rules on."""
    res = evaluate(run, Config(preview=True, **cfg), RULES)
    return [f for f in res.findings if rule is None or f.rule == rule]


def decay(steps: np.ndarray, start: float = 2.3, floor: float = 0.3,
          tau: float = 200.0) -> np.ndarray:
    return floor + (start - floor) * np.exp(-np.asarray(steps) / tau)


def val_curve(values: np.ndarray | list[float]) -> Curve:
    """A val-loss Curve evaluated every 10 steps from ``values``."""
    steps = np.arange(len(values), dtype="int64") * 10
    s = Series("loss", "val_loss", "val", Role.VAL_LOSS, steps, np.asarray(values, float),
               np.full(len(values), np.nan), False)
    c = curve(s)
    assert c is not None
    return c
