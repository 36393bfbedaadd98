"""Choose threshold values on the training folds only: the ``fit`` of evaluate.py's LOFO.

A grid file (TOML) names a few candidate values for some rule thresholds::

    [DIV002]
    factor = [2.0, 4.0]

The analyzer runs once per candidate (one threshold moved, the rest at their defaults) over
every run of the corpus, and the predictions are cached. For a fold, each threshold takes
the value that scores best on the fold's TRAINING runs (the default unless a candidate beats
it), each chosen against the defaults independently; the fold's combined choice is then run
once (cached by its values) and scored on the held-out runs only. So a held-out family,
data set, format or cause never influences the thresholds it is scored with.

Objective on a set of runs: ``J = macro-F1 - healthy false-alarm rate`` (a false alarm
costs as much as a point of F1: false alarms are what kill a CI gate).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Thresholds = dict[str, dict[str, float]]
Predictions = dict[str, set[str]]


def read_grid(path: Path) -> list[tuple[str, str, list[float]]]:
    """(rule, threshold, candidate values) from a grid file, in file order."""
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for rule, params in table.items():
        for name, values in params.items():
            out.append((rule.upper(), name, [float(v) for v in values]))
    return out


def key_of(th: Thresholds) -> tuple[tuple[str, str, float], ...]:
    return tuple(sorted((r, n, v) for r, p in th.items() for n, v in p.items()))


class Calibrator:
    """Caches the analyzer's predictions per threshold setting and fits folds from them."""

    def __init__(self, grid: list[tuple[str, str, list[float]]],
                 analyze: Callable[[Thresholds], Predictions],
                 objective: Callable[[list[dict[str, Any]], Predictions], float]) -> None:
        self.grid = grid
        self._analyze = analyze
        self._objective = objective
        self._cache: dict[tuple[tuple[str, str, float], ...], Predictions] = {}
        self.chosen: list[Thresholds] = []  # every fold's choice, for the report

    def predictions(self, th: Thresholds) -> Predictions:
        k = key_of(th)
        if k not in self._cache:
            self._cache[k] = self._analyze(th)
        return self._cache[k]

    def fit(self, train: list[dict[str, Any]]) -> Thresholds:
        base = self._objective(train, self.predictions({}))
        chosen: Thresholds = {}
        for rule, name, values in self.grid:
            best, best_j = None, base
            for v in values:
                j = self._objective(train, self.predictions({rule: {name: v}}))
                if j > best_j + 1e-9:
                    best, best_j = v, j
            if best is not None:
                chosen.setdefault(rule, {})[name] = best
        self.chosen.append(chosen)
        return chosen

    def runs(self) -> int:
        """How many analyzer passes the cache holds."""
        return len(self._cache)
