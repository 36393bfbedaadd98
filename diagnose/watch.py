"""``diagnose watch PATH``: judge runs while they train and say each new finding once.

Every ``--interval`` seconds discovery runs again (so new runs are found), and a run whose
files changed (size or modification time) is read and judged again with the same rules
and recommender as ``diagnose PATH``.  A finding is new the first time its (run, rule,
metric) appears; it is printed and, with ``--on-finding CMD``, CMD is run (split into
words, no shell) with the finding as JSON on stdin.

A file still being written can end inside a record or a line.  The readers already stop
there and leave a ``truncated`` note; while the file is younger than ``--settle`` seconds
that note is dropped (the rest of the record is on its way), so a live run is not called
damaged.  A file that stays cut off longer than that is damage and is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from diagnose.findings import SEVERITY_RANK, Finding, RunResult
from diagnose.sources import RunSource

#: Seconds a hook may run before it is killed (it must not stall the watch).
HOOK_TIMEOUT_S = 30.0
#: At most this many files are stat'ed under one folder-valued source (an MLflow run).
MAX_DIR_FILES = 10_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from diagnose.cli import UsageError

        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="diagnose watch",
        description="Follow live runs: re-judge a run when its logs grow, print each new "
        "finding once.",
    )
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    p.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                   help="seconds between two looks at the files (default 10)")
    p.add_argument("--max-iterations", type=int, default=None, metavar="N",
                   help="stop after N looks")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds")
    p.add_argument("--on-finding", metavar="CMD",
                   help="run CMD (no shell) with each new finding as JSON on stdin")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: one finding per line (JSON Lines)")
    p.add_argument("--min-severity", choices=tuple(SEVERITY_RANK), default="warning",
                   help="report findings at or above this severity (default warning)")
    p.add_argument("--settle", type=float, default=30.0, metavar="SECONDS",
                   help="a cut-off last record counts as damage only after the file has "
                   "not changed for this long (default 30)")
    p.add_argument("--fail-on", choices=("error", "warning", "never"), default=None)
    p.add_argument("--select", metavar="IDS")
    p.add_argument("--ignore", metavar="IDS")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    return p


@dataclass
class Watcher:
    """The state of one ``diagnose watch``: what was judged, what was already said."""

    paths: list[str]
    judge: Callable[[Any], RunResult]
    min_severity: str = "warning"
    settle: float = 30.0
    emit: Callable[[RunResult, Finding], None] = lambda result, finding: None
    warn: Callable[[str], None] = lambda message: None
    clock: Callable[[], float] = time.time
    #: run id -> its files' (path, (size, mtime_ns)) when last judged; () while pending
    signatures: dict[str, tuple[tuple[str, tuple[int, int]], ...]] = field(default_factory=dict)
    seen: set[tuple[str, str, str | None]] = field(default_factory=set)
    said: set[str] = field(default_factory=set)
    reported: list[tuple[RunResult, Finding]] = field(default_factory=list)

    def poll(self) -> list[tuple[RunResult, Finding]]:
        """One look: discover, judge the runs whose files changed, emit new findings."""
        from diagnose.discover import discover

        sources, errors = discover(self.paths)
        for error in errors:
            self._warn_once(f"{error.path}: {error.message}")
        new: list[tuple[RunResult, Finding]] = []
        for source in sources:
            stats = dict(_stats(source))
            signature = tuple(sorted(stats.items()))
            if self.signatures.get(source.run_id) == signature:
                continue
            result, pending = self._judge(source, stats)
            if result is None:
                continue  # unreadable for now; the signature stays old, so retry next time
            # a run judged with a tail still pending is judged again until it settles
            self.signatures[source.run_id] = () if pending else signature
            for finding in result.findings:
                if SEVERITY_RANK[finding.severity] < SEVERITY_RANK[self.min_severity]:
                    continue
                key = (source.run_id, finding.rule, finding.metric)
                if key in self.seen:
                    continue
                self.seen.add(key)
                new.append((result, finding))
                self.reported.append((result, finding))
                self.emit(result, finding)
        return new

    def _judge(self, source: RunSource, stats: dict[str, tuple[int, int]],
               ) -> tuple[RunResult | None, bool]:
        """(result, whether a cut-off tail was set aside as still arriving)."""
        from diagnose.ingest import IngestError, load_run

        now = self.clock()
        fresh = {p for p, (_, mtime_ns) in stats.items() if now - mtime_ns / 1e9 < self.settle}
        try:
            run = load_run(source)
        except IngestError as exc:
            if not fresh:  # a file just created may hold no complete record yet
                self._warn_once(f"{source.run_id}: {exc}")
            return None, False
        # a cut-off tail of a file still being written is the next record arriving
        kept = [n for n in run.notes if not (n.code == "truncated" and _abs(n.path) in fresh)]
        pending = len(kept) < len(run.notes)
        if pending:
            run = replace(run, notes=kept).freeze()
        return self.judge(run), pending

    def _warn_once(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            self.warn(message)


def _abs(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path)) if path else ""


def _stats(source: RunSource) -> Iterator[tuple[str, tuple[int, int]]]:
    """(absolute path, (size, mtime_ns)) of every file of a run; a folder-valued source
    (an MLflow run) gives the files under it."""
    paths = [f.path for f in source.files] + list(source.sidecars)
    for path in paths:
        p = Path(path)
        if p.is_dir():
            for i, child in enumerate(sorted(p.rglob("*"))):
                if i >= MAX_DIR_FILES:
                    break
                yield from _stat(child)
        else:
            yield from _stat(p)


def _stat(path: Path) -> Iterator[tuple[str, tuple[int, int]]]:
    try:
        st = path.stat()
    except OSError:
        return
    if not path.is_dir():
        yield _abs(path), (st.st_size, st.st_mtime_ns)


def finding_payload(result: RunResult, finding: Finding) -> dict[str, Any]:
    """The JSON a hook reads: the run id, path and format beside the finding's fields."""
    return {"run": result.run.run_id, "path": str(result.run.path),
            "format": result.run.format, **finding.to_dict()}


def text_line(result: RunResult, finding: Finding) -> str:
    """One line per finding, every name from the log escaped for the terminal."""
    from diagnose.integrations import describe
    from diagnose.report import clean

    return clean(f"{result.run.run_id}: {finding.severity.upper()} {describe(finding)}")


def run_hook(argv: list[str], payload: str, warn: Callable[[str], None]) -> None:
    """Run the ``--on-finding`` command with ``payload`` on stdin; failures are one line."""
    try:
        done = subprocess.run(argv, input=payload, text=True, timeout=HOOK_TIMEOUT_S,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except subprocess.TimeoutExpired:
        warn(f"--on-finding: {argv[0]} ran longer than {HOOK_TIMEOUT_S:g} s; killed")
        return
    except OSError as exc:
        warn(f"--on-finding: cannot run {argv[0]}: {exc.strerror or exc}")
        return
    if done.stdout:  # the hook's own output goes to our stderr, never into stdout's JSON
        sys.stderr.write(done.stdout if done.stdout.endswith("\n") else done.stdout + "\n")
    if done.returncode != 0:
        warn(f"--on-finding: {argv[0]} exited with status {done.returncode}")


def run_watch_command(argv: list[str], out: TextIO | None = None) -> int:
    """``diagnose watch``: poll until ``--max-iterations``/``--timeout`` (or Ctrl-C).

    Exit status as the analysis: 1 when a finding at or above ``--fail-on`` was seen,
    0 otherwise; 2 for a usage or config error or when no run could be read at all.
    """
    from diagnose.api import Judge, make_config
    from diagnose.cli import UsageError, _parse_hparams

    args = _parser().parse_args(argv)
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise UsageError("--max-iterations must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    hook = shlex.split(args.on_finding) if args.on_finding else None
    if args.on_finding is not None and not hook:
        raise UsageError("--on-finding needs a command")
    config = make_config(args.config, select=args.select, ignore=args.ignore,
                         fail_on=args.fail_on)
    judge = Judge(config, _parse_hparams(args.hparam))
    out = out or sys.stdout

    def warn(message: str) -> None:
        from diagnose.report import clean

        print(f"diagnose watch: {clean(message)}", file=sys.stderr, flush=True)

    def emit(result: RunResult, finding: Finding) -> None:
        payload = finding_payload(result, finding)
        if args.format == "json":
            print(json.dumps(payload, allow_nan=False), file=out, flush=True)
        else:
            print(text_line(result, finding), file=out, flush=True)
        if hook:
            run_hook(hook, json.dumps(payload, allow_nan=False) + "\n", warn)

    watcher = Watcher([os.fspath(p) for p in args.paths], judge, args.min_severity,
                      args.settle, emit=emit, warn=warn)
    start = time.monotonic()
    iterations = 0
    while True:
        watcher.poll()
        iterations += 1
        if args.max_iterations is not None and iterations >= args.max_iterations:
            break
        left = None if args.timeout is None else args.timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            break
        time.sleep(args.interval if left is None else min(args.interval, left))
    if not watcher.signatures:  # as for `diagnose PATH`: nothing read at all is exit 2
        warn(f"no run could be read under {', '.join(watcher.paths)}")
        return 2
    fail_on = config.fail_on
    if fail_on == "never":
        return 0
    worst = max((SEVERITY_RANK[f.severity] for _, f in watcher.reported), default=-1)
    return 1 if worst >= SEVERITY_RANK[fail_on] else 0


__all__ = ["Watcher", "finding_payload", "run_watch_command"]
