"""The Python API: the command's analysis as objects, for notebooks and scripts.

``diagnose.analyze(paths)`` runs exactly what ``diagnose PATH --format json`` runs (same
config discovery, same pipeline) and returns a :class:`Report`; ``Report.to_dict()`` is
the JSON document.  ``diagnose.load_run(path)`` gives one :class:`~diagnose.run.Run`
whose ``scalars`` is a pandas DataFrame, and :func:`judge` runs the rules and the
recommender on a Run built or edited in memory (the training callbacks and
``diagnose watch`` use it too).  Everything heavy is imported inside the functions so
``import diagnose`` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnose.config import Config
from diagnose.findings import Analysis, Finding, LoadError, Recommendation, RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from diagnose.run import Run

__all__ = [
    "DiagnoseError",
    "Finding",
    "LoadError",
    "Recommendation",
    "Report",
    "RunResult",
    "analyze",
    "judge",
    "load_run",
    "make_config",
]

PathArg = str | os.PathLike[str]


class DiagnoseError(ValueError):
    """A problem with what the API was asked to do (no run, several runs, bad option)."""


def _paths(paths: PathArg | Iterable[PathArg]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    out = [os.fspath(p) for p in paths]
    if not out:
        raise DiagnoseError("no path given")
    return out


def _ids(value: str | Iterable[str] | None) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(v).strip().upper() for v in items if str(v).strip()]


def make_config(
    config: PathArg | Config | None = None,
    *,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    fail_on: str | None = None,
    preview: bool = False,
    start: PathArg | None = None,
) -> Config:
    """The effective Config, as the command builds it: a config file (or the nearest
    ``pyproject.toml`` / ``diagnose.toml`` from ``start``, default the current folder),
    then the keyword options on top.  An invalid setting raises ``ConfigError``."""
    from diagnose.config import FAIL_ON, load_config

    if isinstance(config, Config):
        cfg = replace(config)  # the options below must not change the caller's Config
    else:
        where = Path(start) if start is not None else Path.cwd()
        cfg = load_config(Path(config) if config is not None else None, start=where)
    if select:
        cfg.select = _ids(select)
    if ignore:
        cfg.ignore = _ids(ignore)
    if fail_on:
        if fail_on not in FAIL_ON:
            raise DiagnoseError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
        cfg.fail_on = fail_on
    if preview:
        cfg.preview = True
    return cfg


@dataclass
class Report(Analysis):
    """Every run's result, every unreadable path and the extras (sweeps, baseline).

    ``runs`` are :class:`~diagnose.findings.RunResult` (``.run`` the Run, ``.findings``
    each a :class:`~diagnose.findings.Finding` with its ``recommendations``);
    ``to_dict()`` is exactly the ``--format json`` document.
    """

    fail_on: str = "error"

    @property
    def runs(self) -> list[RunResult]:
        return self.results

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every run, in run order."""
        return [f for r in self.results for f in r.findings]

    @property
    def recommendations(self) -> list[Recommendation]:
        """Every recommendation of every finding, in run order."""
        return [rec for f in self.findings for rec in f.recommendations]

    @property
    def verdicts(self) -> dict[str, str]:
        """Run id -> the verdict the text and markdown reports print for it (its states,
        'healthy', or 'not judged (why)'); the JSON's coarse field is ``RunResult.verdict``."""
        from diagnose.report import verdict

        return {r.run.run_id: verdict(r) for r in self.results}

    @property
    def exit_code(self) -> int:
        """What ``diagnose`` would exit with for this analysis (DESIGN.md: 0, 1 or 2)."""
        from diagnose.report import exit_status

        return exit_status(self, self.fail_on)

    def __getitem__(self, run_id: str) -> RunResult:
        for r in self.results:
            if r.run.run_id == run_id:
                return r
        raise KeyError(run_id)

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The JSON contract (schema_version 1), as ``diagnose --format json`` prints it."""
        from diagnose import __version__

        return super().to_dict(version or __version__)

    def to_json(self) -> str:
        """``diagnose --format json``'s text."""
        from diagnose.report import render

        return render(self, "json", self.fail_on)

    def render(self, fmt: str = "text") -> str:
        """The report in any ``--format`` (text, markdown, json, sarif, junit, github)."""
        from diagnose.report import render

        return render(self, fmt, self.fail_on, color=False)

    def figure(self, run: str | RunResult | None = None) -> Figure | None:
        """The markdown report's plot of one run as a matplotlib Figure (None when the run
        has nothing to draw); ``run`` is a run id or result, default the only run."""
        if run is None:
            if len(self.results) != 1:
                ids = ", ".join(r.run.run_id for r in self.results[:5])
                raise DiagnoseError(f"{len(self.results)} runs ({ids}); name one")
            run = self.results[0]
        result = self[run] if isinstance(run, str) else run
        return figure(result)

    def figures(self) -> dict[str, Figure]:
        """Run id -> Figure for every run that has something to draw."""
        out = {}
        for r in self.results:
            fig = figure(r)
            if fig is not None:
                out[r.run.run_id] = fig
        return out

    def _repr_markdown_(self) -> str:  # Jupyter shows the markdown report's summary
        return self.render("markdown")

    def __repr__(self) -> str:
        from diagnose.report import summary_line

        return f"<diagnose.Report {summary_line(self, self.fail_on)}>"


def figure(result: RunResult) -> Figure | None:
    """One run's report plot (loss, metric and lr panels, finding markers) as a Figure."""
    from diagnose.report.plots import build_figure, plot_data

    return build_figure(plot_data(result))


def analyze(
    paths: PathArg | Iterable[PathArg],
    *,
    config: PathArg | Config | None = None,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    fail_on: str | None = None,
    preview: bool = False,
    hparams: Mapping[str, Any] | None = None,
    baseline: PathArg | None = None,
    verify_checksums: bool = False,
    jobs: int | None = None,
) -> Report:
    """Analyse every run under ``paths``, as ``diagnose PATH...`` does.

    The keywords are the command's options (``select="DIV,OVF"``, ``hparams={"lr": 0.1}``
    for ``--hparam``, ``baseline=`` for ``--baseline``...).  Unreadable paths are in
    ``Report.errors``, never exceptions; an invalid setting raises ``ConfigError``.
    """
    from diagnose.hparams import canonicalize
    from diagnose.pipeline import Options
    from diagnose.pipeline import analyze as run_pipeline

    if jobs is not None and jobs < 1:
        raise DiagnoseError("jobs must be at least 1")
    cfg = make_config(config, select=select, ignore=ignore, fail_on=fail_on, preview=preview)
    options = Options(
        hparam_overrides=canonicalize(dict(hparams or {})),
        verify_checksums=verify_checksums,
        jobs=jobs,
        progress=False,
    )
    done = run_pipeline(_paths(paths), cfg, options,
                        baseline=os.fspath(baseline) if baseline is not None else None)
    return Report(results=done.results, errors=done.errors, extras=done.extras,
                  fail_on=cfg.fail_on)


def load_run(path: PathArg, *, verify_checksums: bool = False) -> Run:
    """Read the one run at ``path`` (a run folder or log file) into a Run.

    ``run.scalars`` is the long DataFrame (tag, metric, split, step, wall_time, value);
    ``run.hparams`` the canonical hyperparameters, ``run.notes`` what the reader noticed.
    Raises :class:`DiagnoseError` when ``path`` holds no run or several (their ids are in
    the message: pass one of them).
    """
    from diagnose.discover import discover
    from diagnose.ingest import IngestError
    from diagnose.ingest import load_run as ingest_run

    text = os.fspath(path)
    sources, errors = discover([text])
    if not sources:
        reason = errors[0].message if errors else "no training log found"
        raise DiagnoseError(f"{text}: {reason}")
    if len(sources) > 1:
        ids = ", ".join(s.run_id for s in sources[:8]) + (", ..." if len(sources) > 8 else "")
        raise DiagnoseError(f"{text} holds {len(sources)} runs ({ids}); pass one of them")
    try:
        return ingest_run(sources[0], verify_checksums=verify_checksums)
    except IngestError as exc:
        raise DiagnoseError(f"{text}: {exc}") from None


class Judge:
    """Rules and config loaded once, then any number of Runs judged with them.

    The callbacks and ``diagnose watch`` judge the same run again and again; loading and
    checking the rule files once keeps each judgement to the rules' own cost.
    """

    def __init__(self, config: Config | None = None,
                 hparams: Mapping[str, Any] | None = None) -> None:
        from diagnose.engine import check_config, load_rules
        from diagnose.hparams import canonicalize

        self.config = config if config is not None else Config()
        self.rules = load_rules(self.config.rules_dirs)
        check_config(self.rules, self.config)
        self.overrides = {**self.config.hparams, **canonicalize(dict(hparams or {}))}

    def __call__(self, run: Run) -> RunResult:
        """Findings and recommendations for ``run`` (the pipeline's per-run step)."""
        from diagnose.pipeline import judge_run

        return judge_run(run, self.config, self.overrides, self.rules)


def judge(run: Run, *, config: PathArg | Config | None = None,
          hparams: Mapping[str, Any] | None = None) -> RunResult:
    """Run the rules and the recommender on one Run (e.g. one built with
    ``diagnose.run.make_scalars``, or changed with ``dataclasses.replace`` after
    :func:`load_run`, which returns a read-only Run)."""
    cfg = config if isinstance(config, Config) else make_config(config)
    return Judge(cfg, hparams)(run)

