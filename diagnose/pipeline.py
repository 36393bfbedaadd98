"""The one-way flow: discover -> ingest -> engine -> recommend, for many runs at once.

Each run is analysed independently (in worker processes when there are many), so one
unreadable or odd run never stops the others: it becomes a :class:`LoadError` line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnose.config import Config
from diagnose.findings import Analysis, LoadError, RunResult
from diagnose.sources import RunSource

if TYPE_CHECKING:
    from diagnose.engine import RuleSpec
    from diagnose.run import Run

#: Below this many runs a process pool costs more than it saves.
_POOL_MIN_RUNS = 16
#: Without ``--jobs``, the pool is used from this many runs or bytes of logs on: each
#: worker pays ~1-2 s to start (pandas, numpy, the engine), which the 46 shared real runs
#: (27 MB, 0.4 s each) never earn back on 2 cores: 20.3 s serial against 24.4 s with 2
#: workers; the 1,000-run benchmark does earn it back.
_AUTO_POOL_MIN_RUNS = 200
_AUTO_POOL_MIN_BYTES = 256 << 20


def default_jobs(sources: list[RunSource]) -> int:
    """Workers for ``--jobs`` left unset: 1 unless the work outweighs the pool's start-up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if cores < 2 or len(sources) < _POOL_MIN_RUNS:
        return 1
    if len(sources) >= _AUTO_POOL_MIN_RUNS:
        return cores
    total = 0
    for source in sources:
        for f in source.files:
            try:
                total += os.path.getsize(f.path) if os.path.isfile(f.path) else 0
            except OSError:
                continue
            if total >= _AUTO_POOL_MIN_BYTES:
                return cores
    return 1


@dataclass
class Options:
    """Per-invocation settings that are not rule configuration."""

    hparam_overrides: dict[str, Any] = field(default_factory=dict)
    verify_checksums: bool = False
    jobs: int | None = None
    progress: bool = False


def judge_run(run: Run, config: Config, overrides: Mapping[str, Any] | None = None,
              rules: list[RuleSpec] | None = None) -> RunResult:
    """The per-run step every entry point shares (CLI, API, callbacks, watch, probe,
    benchmarks): the rules, then the recommendations under the config's advice policy.

    ``overrides`` are canonical hyperparameters that win over the log's, for the rules
    (a class count, the model's normalization) as for the advice: the run is judged as if
    its log had recorded them (a copy; the caller's run is left as read). ``rules`` are
    rule specs already loaded and checked (a caller that judges many runs loads them once).
    An exception while judging is our own bug: :class:`AnalysisError` naming the run.
    """
    from diagnose.engine import AnalysisError, evaluate
    from diagnose.recommend import recommend

    if overrides:
        run = replace(run, hparams={**run.hparams, **overrides})
    result = evaluate(run, config, rules)
    try:
        return recommend(result, overrides, config.advice_policy())
    except Exception as exc:
        raise AnalysisError(f"recommendations failed on run {run.run_id}: "
                            f"{type(exc).__name__}: {exc}") from exc


def _analyze_source(
    source: RunSource, config: Config, options: Options
) -> RunResult | LoadError:
    """Load and judge one run.  Damaged input becomes a one-line LoadError; an exception
    while judging is our own bug and propagates (the CLI exits 2, naming rule and run)."""
    from diagnose.ingest import IngestError, load_run

    try:
        run = load_run(source, verify_checksums=options.verify_checksums)
    except IngestError as exc:
        return LoadError(path=source.run_id, message=str(exc))
    except Exception as exc:  # a parser bug must not take the other runs down
        return LoadError(path=source.run_id, message=f"{type(exc).__name__}: {exc}")
    return judge_run(run, config, {**config.hparams, **options.hparam_overrides})


def _worker(args: tuple[RunSource, Config, Options]) -> RunResult | LoadError:
    return _analyze_source(*args)


def _progress_bar(total: int, enabled: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """A rich progress bar on stderr (only on a TTY); returns (advance, close)."""
    if not enabled or total < 2 or not sys.stderr.isatty():
        return (lambda: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("analysing runs", total=total)
    bar.start()
    return (lambda: bar.advance(task)), bar.stop


def _collect(out: RunResult | LoadError, results: list[RunResult],
             errors: list[LoadError]) -> None:
    if isinstance(out, RunResult):
        results.append(out)
    else:
        errors.append(out)


def analyze_sources(
    sources: Iterable[RunSource], config: Config, options: Options | None = None
) -> tuple[list[RunResult], list[LoadError]]:
    """Analyse already-discovered runs, in parallel when there are many."""
    options = options or Options()
    sources = list(sources)
    jobs = options.jobs or default_jobs(sources)
    results: list[RunResult] = []
    errors: list[LoadError] = []
    advance, close = _progress_bar(len(sources), options.progress)
    try:
        if jobs > 1 and len(sources) >= _POOL_MIN_RUNS:
            import multiprocessing

            # forkserver, not fork: the progress bar runs a thread, and forking a
            # threaded process can deadlock the child.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if "forkserver" in methods:
                ctx.set_forkserver_preload(["diagnose.pipeline", "diagnose.engine"])
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                chunk = max(1, len(sources) // (jobs * 8))
                items = ((s, config, options) for s in sources)
                for out in pool.map(_worker, items, chunksize=chunk):
                    _collect(out, results, errors)
                    advance()
        else:
            for source in sources:
                _collect(_analyze_source(source, config, options), results, errors)
                advance()
    finally:
        close()
    return results, errors


def analyze(
    paths: list[str],
    config: Config | None = None,
    options: Options | None = None,
    baseline: str | None = None,
) -> Analysis:
    """Everything ``diagnose PATH...`` computes, as an :class:`Analysis`."""
    from diagnose.discover import discover
    from diagnose.engine import check_config, load_rules

    config = config or Config()
    options = options or Options()
    # invalid thresholds/severity are a usage error (ConfigError), not one per run
    check_config(load_rules(config.rules_dirs), config)
    sources, errors = discover(paths)
    if not sources and not errors:  # nothing to read is not a pass (exit 2, DESIGN.md)
        errors = [LoadError(path=p, message="no training log found") for p in paths]
    results, load_errors = analyze_sources(sources, config, options)
    analysis = Analysis(results=results, errors=[*errors, *load_errors])
    analysis.errors.sort(key=lambda e: e.path)
    analysis.results.sort(key=lambda r: r.run.run_id)
    from diagnose.sweep import sweep_insights

    sweeps = sweep_insights(analysis.results)
    if sweeps:
        analysis.extras["sweeps"] = sweeps
    if baseline:
        apply_baseline(analysis, baseline, config, options)
    return analysis


def apply_baseline(analysis: Analysis, path: str, config: Config, options: Options) -> None:
    """``--baseline``: drop accepted findings (a baseline file) or compare with a run."""
    from diagnose import baseline as bl
    from diagnose.discover import discover

    if bl.is_baseline_file(Path(path)):
        known = bl.load_baseline(Path(path))
        filtered = bl.filter_known(analysis, known)
        analysis.results = filtered.results
        analysis.extras.update(filtered.extras)
        analysis.extras.setdefault("baseline", {})["file"] = path
        return
    sources, errors = discover([path])
    refs, ref_errors = analyze_sources(sources, config, options)
    if not refs:
        # a comparison that cannot happen must not pass the gate: usage error, exit 2
        reason = (errors or ref_errors)[0].message if (errors or ref_errors) else "no run"
        raise bl.BaselineError(f"{path}: unreadable: {reason}")
    by_id = {r.run.run_id: r for r in refs}
    compared = 0
    for result in analysis.results:
        ref = by_id.get(result.run.run_id) or (refs[0] if len(refs) == 1 else None)
        if ref is None:
            continue
        # --select/--ignore and [severity] apply to the comparison's findings (BSL...) too
        result.findings.extend(
            replace(f, severity=config.severity_for(f.rule, f.severity))
            for f in bl.compare(result, ref)
            if config.rule_enabled(f.rule)
        )
        compared += 1
    analysis.extras["baseline"] = {"path": path, "runs_compared": compared}
