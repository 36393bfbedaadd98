"""Diagnose while training: the part every framework callback shares.

A callback hands each batch of logged metrics to a :class:`LiveMonitor`.  Every N steps
or epochs (by default: whenever the time spent judging stays under 0.5% of the training's
wall time) the monitor builds a :class:`~diagnose.run.Run` from everything logged so far
with :func:`~diagnose.run.make_scalars` - in memory, no second log format - and judges it
with the same rules and recommender as ``diagnose PATH``.  Each new finding is logged
once; a finding whose state or rule id is in ``stop_on`` asks the training to stop.

The framework modules (:mod:`.lightning`, :mod:`.keras`, :mod:`.transformers`) only
translate their framework's hooks; a missing framework is a one-line ImportError naming
the extra to install.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from diagnose.findings import SEVERITY_RANK, Finding, RunResult

if TYPE_CHECKING:
    from diagnose.config import Config
    from diagnose.run import Run

__all__ = ["LiveMonitor", "require"]

log = logging.getLogger("diagnose")

#: Share of the training's wall time the automatic interval may spend judging: half the
#: 1% target, so the one judgement at the end of fit fits in it too on short trainings.
DEFAULT_OVERHEAD = 0.005
#: Assumed cost of the first judgement, before one has been timed.
FIRST_COST_S = 0.05


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise a one-line ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"diagnose.integrations.{extra} needs {what}: pip install 'diagnose[{extra}]'"
        ) from None


def _number(value: Any) -> float | None:
    """A logged value as a float (tensors, numpy scalars, ints); None when not a number."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        return None
    try:
        if hasattr(value, "numel") and value.numel() != 1:  # a tensor of many values
            return None
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def clean(text: str) -> str:
    """Names from the logs made safe for a terminal (the reports' own escaping)."""
    from diagnose.report import clean as report_clean

    return report_clean(text)


def describe(finding: Finding) -> str:
    """One line for the training log: rule, name, step, message and the first change."""
    where = f" at step {finding.step}" if finding.step is not None else ""
    text = f"{finding.rule} {finding.name}{where}: {finding.message}"
    if finding.recommendations:
        from diagnose.report import recommendation_line

        text += f" | try {recommendation_line(finding.recommendations[0])}"
    return text


class LiveMonitor:
    """Metrics logged so far, judged by the rule engine at an interval.

    Parameters
    ----------
    stop_on:
        States (``"divergence"``) or rule ids (``"DIV001"``) that stop the training.
    every:
        Judge every this many steps (or epochs, for epoch-level callbacks); None: judge
        whenever the total time spent judging stays under ``overhead`` of the wall time.
    min_severity:
        Findings below this severity are kept in ``findings`` but not logged (LOG004
        "too few points" is info and true of every run that just started).
    config, hparams:
        A :class:`~diagnose.config.Config` (default: the one ``diagnose`` would find from
        the current folder) and hyperparameters the recommender may use (``--hparam``).
    on_finding:
        Called with each new finding (after logging it), e.g. to post it somewhere.
    """

    def __init__(
        self,
        *,
        run_id: str = "live",
        stop_on: Iterable[str] = (),
        every: int | None = None,
        overhead: float = DEFAULT_OVERHEAD,
        min_severity: str = "warning",
        config: Config | str | None = None,
        hparams: Mapping[str, Any] | None = None,
        on_finding: Callable[[Finding], Any] | None = None,
    ) -> None:
        from diagnose.api import Judge, make_config
        from diagnose.config import Config

        if every is not None and every < 1:
            raise ValueError("every must be at least 1 (or None for the automatic interval)")
        if min_severity not in SEVERITY_RANK:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITY_RANK)}")
        if isinstance(stop_on, str):
            stop_on = (stop_on,)
        self.run_id = run_id
        self.stop_on = {s.strip() for s in stop_on if s.strip()}
        self.every = every
        self.overhead = overhead
        self.min_severity = min_severity
        self.on_finding = on_finding
        cfg = config if isinstance(config, Config) else make_config(config)
        self._judge = Judge(cfg, hparams)
        self._tags: list[str] = []
        self._steps: list[int] = []
        self._values: list[float] = []
        self._walls: list[float] = []
        self._splits: list[str | None] = []
        self._hparams: dict[str, Any] = {}
        #: How far the training is (done, planned, unit) while it runs; None once it ended
        #: or where the framework does not say how long it plans to train.
        self._progress: tuple[int, int, str] | None = None
        self._seen: set[tuple[str, str | None]] = set()
        self._started = time.monotonic()
        self._spent = 0.0
        self._last_cost = FIRST_COST_S
        self._last_position: int | None = None
        self._points_at_check = 0
        #: Every finding of the latest judgement, and every finding logged so far.
        self.result: RunResult | None = None
        self.findings: list[Finding] = []
        #: The finding that asked the training to stop, if any.
        self.stopped_by: Finding | None = None
        #: How many judgements ran and the seconds they took (for the overhead budget).
        self.checks = 0
        #: Seconds each judgement took, in order.
        self.costs: list[float] = []
        #: Set when judging raised (a bug of ours): no further checks.
        self.broken = False

    # -- recording -------------------------------------------------------------------

    def add(self, metrics: Mapping[str, Any], step: int, *, split: str | None = None,
            wall_time: float | None = None) -> int:
        """Record one logging call's numeric values at ``step``; returns how many."""
        wall = time.time() if wall_time is None else wall_time
        added = 0
        for key, raw in metrics.items():
            value = _number(raw)
            if value is None:
                continue
            self._tags.append(str(key))
            self._steps.append(int(step))
            self._values.append(value)
            self._walls.append(wall)
            self._splits.append(split)
            added += 1
        return added

    def add_hparams(self, params: Mapping[str, Any]) -> None:
        """Hyperparameters of the run (flattened, canonical names), for the advice."""
        from diagnose.hparams import flatten

        for key, value in flatten(dict(params)).items():
            if isinstance(value, Enum):  # e.g. the HF scheduler type, a str enum
                value = value.value
            if isinstance(value, (int, float, str, bool)) and not (
                isinstance(value, float) and not math.isfinite(value)
            ):
                self._hparams[key] = value

    def progress(self, done: int, planned: int | None, unit: str = "steps") -> None:
        """How far the training is: ``done`` of ``planned`` steps (or epochs).  While it
        is short of its plan the judged run carries the ``unfinished`` note, so the rules
        that judge where a run ends (underfit) wait for it."""
        self._progress = ((int(done), int(planned), unit)
                          if planned is not None and planned > 0 and done >= 0 else None)

    def end(self) -> None:
        """The training is over: the next judgement reads the run as finished."""
        self._progress = None

    @property
    def points(self) -> int:
        return len(self._values)

    def run(self) -> Run:
        """Everything recorded so far as a Run (format ``live``)."""
        import numpy as np
        import pandas as pd

        from diagnose.hparams import canonicalize
        from diagnose.run import Run, make_scalars

        scalars = make_scalars(
            pd.Categorical(self._tags),
            np.asarray(self._steps, dtype="int64"),
            np.asarray(self._values, dtype="float64"),
            wall_time=np.asarray(self._walls, dtype="float64"),
            split=None if not any(self._splits) else np.asarray(self._splits, dtype=object),
        )
        run = Run(run_id=self.run_id, path=Path(self.run_id), format="live",
                  scalars=scalars, raw_hparams=dict(self._hparams),
                  hparams=canonicalize(dict(self._hparams)))
        if self._progress is not None and 0 < self._progress[0] < self._progress[1]:
            done, planned, unit = self._progress
            run.note_unfinished(done, planned, f"judged live at {done:,} of {planned:,} "
                                f"planned {unit}: the run goes on, so where it ends is not "
                                f"known yet")
        return run.finalize()

    # -- judging ---------------------------------------------------------------------

    def due(self, position: int) -> bool:
        """Whether to judge now: N positions since the last judgement, or (automatic)
        when judging again keeps the time spent under ``overhead`` of the wall time."""
        if self.points == self._points_at_check:
            return False
        if self.every is not None:
            return self._last_position is None or position - self._last_position >= self.every
        elapsed = time.monotonic() - self._started
        return self._spent + self._last_cost <= self.overhead * elapsed

    def check(self, position: int | None = None) -> Finding | None:
        """Judge everything recorded; log new findings; return the finding that should
        stop the training (the first in ``stop_on``), or None."""
        t0 = time.perf_counter()
        self._points_at_check = self.points
        if position is not None:
            self._last_position = position
        if not self.points or self.broken:
            return None
        try:
            result = self._judge(self.run())
        except Exception:  # our bug: say so loudly, but never kill someone's training
            self.broken = True
            log.exception("diagnose: internal error while judging the run; live checks "
                          "are off for the rest of this training (please report it)")
            return None
        self.result = result
        stop: Finding | None = None
        for finding in result.findings:
            key = (finding.rule, finding.metric)
            if key not in self._seen:
                self._seen.add(key)
                self.findings.append(finding)
                self._report(finding)
            if stop is None and self.stopped_by is None and self._stops(finding):
                stop = finding
        if stop is not None:
            self.stopped_by = stop
            log.error("diagnose: stopping the training: %s", clean(describe(stop)))
        self._last_cost = time.perf_counter() - t0
        self._spent += self._last_cost
        self.costs.append(self._last_cost)
        self.checks += 1
        return stop

    def maybe_check(self, position: int) -> Finding | None:
        """:meth:`check` when :meth:`due`, else None."""
        return self.check(position) if self.due(position) else None

    def _stops(self, finding: Finding) -> bool:
        if finding.rule in self.stop_on:
            return True
        return finding.state in self.stop_on and SEVERITY_RANK[finding.severity] >= 1

    def _report(self, finding: Finding) -> None:
        if SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[self.min_severity]:
            level = logging.ERROR if finding.severity == "error" else logging.WARNING
            if finding.severity == "info":
                level = logging.INFO
            log.log(level, "diagnose: %s", clean(describe(finding)))
        if self.on_finding is not None:
            self.on_finding(finding)

    @property
    def overhead_seconds(self) -> float:
        """Seconds spent judging so far."""
        return self._spent


class MonitorResults:
    """What every framework's ``DiagnoseCallback`` exposes from its :class:`LiveMonitor`."""

    monitor: LiveMonitor

    @property
    def findings(self) -> list[Finding]:
        """Every finding reported so far, each once."""
        return self.monitor.findings

    @property
    def stopped_by(self) -> Any:
        """The finding that stopped the training, or None."""
        return self.monitor.stopped_by
