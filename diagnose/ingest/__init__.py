"""Ingest: RunSource -> Run, whatever family wrote the files.

``load_run`` sends each file of a run to its family's loader and merges the parts into
one :class:`~diagnose.run.Run`.  A run is often written by two families at once
(YOLOv5: event files + ``results.csv``; detectron2: event files + ``metrics.json``;
HF: ``runs/`` event files + ``trainer_state.json``), usually with the same numbers, so
the merge keeps one copy of each (metric, split) series rather than doubling points.
The family modules are imported lazily: each one is optional for the others.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from diagnose.findings import LoadError
from diagnose.hparams import canonicalize, coerce, flatten
from diagnose.ingest.placeholders import drop_placeholder_zeros
from diagnose.run import SCALAR_COLUMNS, IngestNote, Run, empty_scalars
from diagnose.sources import RunSource, SourceFile

__all__ = ["IngestError", "load_all", "load_run"]

#: kind -> (module under diagnose.ingest, loader taking (source, file)).
_LOADERS: dict[str, tuple[str, str]] = {
    "csv": ("csv_logs", "load_csv"),
    "keras_csv": ("csv_logs", "load_csv"),
    "lightning_csv": ("csv_logs", "load_csv"),
    "ultralytics": ("csv_logs", "load_csv"),
    "hf_trainer_state": ("hf_trainer", "load_trainer_state"),
    "mlflow": ("mlflow_store", "load_mlflow"),
    "jsonl": ("jsonl", "load_jsonl"),
    "keras_history": ("keras_history", "load_keras_history"),
    "mlflow_db": ("mlflow_db", "load_mlflow_db"),
    "wandb": ("wandb_offline", "load_wandb"),
}

#: Exceptions whose message already says what is wrong (no class name in front).
_EXPECTED = ("LogReadError", "IngestError")

#: load_all's estimate of sequential load time: a fixed cost per run plus a read rate.
#: Worker processes are used only when that estimate passes POOL_MIN_SECONDS, because
#: starting them (interpreter + pandas import per worker) costs about a second.
SECONDS_PER_RUN = 0.02
BYTES_PER_SECOND = 20e6
POOL_MIN_SECONDS = 1.0


class IngestError(Exception):
    """A run that could not be read at all; its message is one line for ``errors``."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unreadable"


def _describe(exc: BaseException) -> str:
    """One-line reason: the message for expected read errors, else `Class: message`."""
    msg = _one_line(str(exc)) if str(exc).strip() else ""
    name = type(exc).__name__
    if name in _EXPECTED and msg:
        return msg
    return f"{name}: {msg}" if msg else name


def _loader(kind: str) -> Callable[..., Run]:
    if kind == "tensorboard":
        module, attr = "tensorboard", "load_tensorboard"
    elif kind in _LOADERS:
        module, attr = _LOADERS[kind]
    else:
        raise IngestError(f"unsupported file kind {kind!r}")
    loader: Callable[..., Run] = getattr(importlib.import_module(f"diagnose.ingest.{module}"), attr)
    return loader


def _parts(source: RunSource) -> list[tuple[str, str, Callable[[bool], Run]]]:
    """(label, path, thunk) per loader call: all event files in one call, others one each."""
    calls: list[tuple[str, str, Callable[[bool], Run]]] = []
    tb = [f for f in source.files if f.kind == "tensorboard"]
    if tb:
        sub = RunSource(source.run_id, source.path, tb, [])
        label = tb[0].path.name if len(tb) == 1 else f"{len(tb)} event files"

        def load_tb(verify: bool, sub: RunSource = sub) -> Run:
            return _loader("tensorboard")(sub, verify_checksums=verify)

        calls.append((label, str(tb[0].path), load_tb))
    for f in source.files:
        if f.kind == "tensorboard":
            continue
        sub = RunSource(source.run_id, source.path, [f], [])

        def load_one(verify: bool, sub: RunSource = sub, f: SourceFile = f) -> Run:
            return _loader(f.kind)(sub, f)

        calls.append((f.path.name or str(f.path), str(f.path), load_one))
    return calls


def load_run(source: RunSource, verify_checksums: bool = False) -> Run:
    """Read every file of one run and merge them into one Run.

    A part that fails becomes an ``unreadable`` note when other parts were read; when
    nothing could be read, or nothing read holds a scalar or histogram, raises
    :class:`IngestError` with a one-line reason.  Hyperparameters the logs record win
    over sidecar files, which only fill the gaps.  A run spooled from a remote PATH
    gets its URLs back (``source.remote``).
    """
    if source.remote is None:
        return _load_run(source, verify_checksums).freeze()
    from diagnose.remote import relabel_run, relabel_text

    try:
        return relabel_run(_load_run(source, verify_checksums), source.remote).freeze()
    except IngestError as exc:
        raise IngestError(relabel_text(str(exc), *source.remote[:2])) from None


def _load_run(source: RunSource, verify_checksums: bool) -> Run:
    parts: list[Run] = []
    failures: list[tuple[str, str, str]] = []  # (label, path, reason)
    if not source.files:
        raise IngestError("no log files")
    for label, path, thunk in _parts(source):
        try:
            parts.append(thunk(verify_checksums))
        except Exception as exc:  # one bad file must not sink the run
            failures.append((label, path, _describe(exc)))

    def reason() -> str:
        if len(failures) == 1:
            return failures[0][2]
        return "; ".join(f"{label}: {why}" for label, _, why in failures)

    if not parts:
        raise IngestError(reason())

    run = Run(run_id=source.run_id, path=source.path, format=_format(parts))
    run.scalars, dup_note = _merge_scalars(parts)
    for part in parts:
        run.histograms.extend(part.histograms)
        for tag, plugin in part.tag_metadata.items():
            run.tag_metadata.setdefault(tag, plugin)
        run.notes.extend(part.notes)
        for p in part.sources:
            if p not in run.sources:
                run.sources.append(p)
    if dup_note is not None:
        run.notes.append(dup_note)
    run.notes.extend(source.notes)
    for label, path, why in failures:
        run.note("unreadable", f"{label} could not be read: {why}", path=path)

    if not len(run.scalars) and not run.histograms:
        # Say why when a reader noticed (empty file, bad record at byte N).
        reasons = [reason()] if failures else []
        reasons += [n.message for n in run.notes if n.code != "unreadable"][:1]
        raise IngestError("; ".join(["no scalar metrics found", *reasons]))

    _merge_hparams(run, parts, source.sidecars)
    run.finalize()
    run.scalars, notes = drop_placeholder_zeros(run.scalars, str(source.path))
    run.notes.extend(notes)
    return run


def _format(parts: Sequence[Run]) -> str:
    kinds: list[str] = []
    for part in parts:
        for kind in str(part.format).split("+"):
            if kind and kind not in kinds:
                kinds.append(kind)
    return "+".join(kinds)


def _merge_scalars(parts: Sequence[Run]) -> tuple[pd.DataFrame, IngestNote | None]:
    """Concatenate the parts' tables, keeping ONE part's copy of each (metric, split).

    Two families of one run usually log the same series (YOLOv5's event file and
    results.csv), with different precision, so exact-duplicate removal is not enough:
    per (metric, split) the part with the most points wins, the earlier part on a tie
    (event files come first: full float32 precision and wall times).
    """
    tables = [
        (i, part.scalars.loc[:, list(SCALAR_COLUMNS)])
        for i, part in enumerate(parts)
        if part.scalars is not None and len(part.scalars)
    ]
    if not tables:
        return empty_scalars(), None
    if len(tables) == 1:
        return tables[0][1].reset_index(drop=True), None
    df = pd.concat([t.assign(_part=i) for i, t in tables], ignore_index=True)
    key = df["metric"].astype(str) + "\x00" + df["split"].astype(str)
    counts = df.groupby([key, df["_part"]], sort=False).size().reset_index(name="n")
    counts.columns = ["key", "part", "n"]
    counts = counts.sort_values(["key", "n", "part"], ascending=[True, False, True])
    first = counts.drop_duplicates("key")
    keep = dict(zip(first["key"], first["part"], strict=True))
    mask = key.map(keep) == df["_part"]
    dropped = sorted(set(df.loc[~mask, "tag"].astype(str)))
    note = None
    if dropped:
        fmts = [parts[i].format for i, _ in tables]
        note = IngestNote(
            code="duplicate_series",
            message=(
                f"{len(dropped)} series were written by more than one of "
                f"{', '.join(fmts)}; one copy of each was kept"
            ),
            details={"dropped_tags": dropped},
        )
    out = df.loc[mask, list(SCALAR_COLUMNS)].reset_index(drop=True)
    return out, note


def _plain_flat(raw: dict[str, Any]) -> dict[str, Any]:
    """Nested sidecar dicts -> flat ``a.b`` keys with plain scalar values."""
    out: dict[str, Any] = {}
    for k, v in flatten(raw).items():
        value = coerce(v)
        if value is not None:
            out[k] = value
    return out


def _merge_hparams(run: Run, parts: Sequence[Run], sidecars: Iterable[Path]) -> None:
    log_raw: dict[str, Any] = {}
    log_canon: dict[str, Any] = {}
    for part in parts:
        for k, v in part.raw_hparams.items():
            log_raw.setdefault(k, v)
        for k, v in (part.hparams or canonicalize(part.raw_hparams)).items():
            log_canon.setdefault(k, v)
    side_raw: dict[str, Any] = {}
    paths = list(sidecars)
    if paths:
        try:
            from diagnose.ingest.sidecars import read_sidecars

            raw, notes = read_sidecars(paths)
            side_raw = _plain_flat(dict(raw))
            run.notes.extend(notes)
        except Exception as exc:  # a bad sidecar costs hparams, never the run
            run.note("unreadable", f"sidecar files could not be read: {_describe(exc)}")
        for p in paths:
            if p not in run.sources and os.path.exists(p):
                run.sources.append(p)
    # Sorted: the key order must not depend on the order a writer stored them in.
    run.raw_hparams = dict(sorted({**side_raw, **log_raw}.items()))
    run.hparams = dict(sorted({**canonicalize(side_raw), **log_canon}.items()))


# ---------------------------------------------------------------------------
# Many runs
# ---------------------------------------------------------------------------


def _load_one(source: RunSource, verify_checksums: bool) -> Run | LoadError:
    """Worker body: a Run, or the LoadError that goes under ``errors``."""
    try:
        return load_run(source, verify_checksums=verify_checksums)
    except IngestError as exc:
        return LoadError(source.run_id, str(exc))
    except Exception as exc:  # a loader bug must not abort the other runs
        return LoadError(source.run_id, _describe(exc))


def _size(source: RunSource) -> int:
    total = 0
    for f in source.files:
        with contextlib.suppress(OSError):
            total += os.path.getsize(f.path)
    return total


def _worth_a_pool(sources: Sequence[RunSource], jobs: int) -> bool:
    if jobs <= 1 or len(sources) < 2:
        return False
    estimate = len(sources) * SECONDS_PER_RUN
    for s in sources:
        if estimate >= POOL_MIN_SECONDS:
            break
        estimate += _size(s) / BYTES_PER_SECOND
    return estimate >= POOL_MIN_SECONDS


def load_all(
    sources: Sequence[RunSource],
    verify_checksums: bool = False,
    jobs: int = 1,
    progress: Callable[[int], Any] | None = None,
) -> tuple[list[Run], list[LoadError]]:
    """Load many runs, in worker processes when ``jobs > 1`` and there is enough to read.

    Results keep the order of ``sources``.  ``progress(n)`` is called in this process
    after each run finishes, with ``n`` the number finished so far.
    """
    results: list[Run | LoadError | None] = [None] * len(sources)
    done = 0
    if _worth_a_pool(sources, jobs):
        done = _load_in_pool(sources, verify_checksums, jobs, results, progress)
    for i, source in enumerate(sources):
        if results[i] is None:
            results[i] = _load_one(source, verify_checksums)
            done += 1
            if progress is not None:
                progress(done)
    runs = [r for r in results if isinstance(r, Run)]
    errors = [r for r in results if isinstance(r, LoadError)]
    return runs, errors


def _load_in_pool(
    sources: Sequence[RunSource],
    verify_checksums: bool,
    jobs: int,
    results: list[Run | LoadError | None],
    progress: Callable[[int], Any] | None,
) -> int:
    """Fill ``results`` from a process pool; returns how many finished.

    forkserver, not fork: the caller may hold threads (a progress bar) and forking
    those is unsafe.  A worker that dies (out of memory) fails only its own run.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["diagnose.ingest"])
    done = 0
    workers = max(1, min(jobs, len(sources)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_load_one, s, verify_checksums): i for i, s in enumerate(sources)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except BrokenProcessPool as exc:
                results[i] = LoadError(
                    sources[i].run_id, f"worker process died while reading: {_describe(exc)}"
                )
            except Exception as exc:
                results[i] = LoadError(sources[i].run_id, _describe(exc))
            done += 1
            if progress is not None:
                progress(done)
    return done
