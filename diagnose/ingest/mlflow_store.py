"""MLflow file store: one run folder ``mlruns/<experiment_id>/<run_id>/`` as a Run.

The layout (``mlflow/store/tracking/file_store.py``) is plain text, so no mlflow import
is needed: ``metrics/<key>`` holds one ``"<timestamp_ms> <value> [<step>]"`` line per
logged point (keys with ``/`` are nested folders), ``params/<key>`` and ``tags/<key>``
hold one value each, and ``meta.yaml`` holds status and times.  MLflow itself accepts 2
or 3 fields per line (a missing step is 0) and parses values with ``float()``, so
``nan``/``inf`` appear and are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from diagnose.hparams import canonicalize
from diagnose.ingest.csv_logs import (
    MAX_COLUMNS,
    MAX_STEP,
    LogReadError,
    decode_bytes,
    finish_long,
    new_run,
    read_log_bytes,
)
from diagnose.ingest.sidecars import load_yaml_plain
from diagnose.run import HParamValue, IngestNote, Run
from diagnose.sources import RunSource, SourceFile

#: mlflow.entities.RunStatus numbers as the file store writes them in meta.yaml.
RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
#: Params files larger than this are not hyperparameters.
MAX_PARAM_BYTES = 100_000


def _files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, as the key's nested path."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _key(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def _read_metric(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool, list[IngestNote]]:
    """One metric file -> (timestamps_ms, values, steps, bad line count, truncated, notes).

    MLflow ends every line with a newline, so a last line without one was cut by a kill.
    The notes say what else was lost (a NUL tail, the size cap).
    """
    raw, size, notes = read_log_bytes(path)
    text, dec_notes = decode_bytes(raw, path, size)
    notes += dec_notes
    ts: list[float] = []
    vals: list[float] = []
    steps: list[int] = []
    bad = 0
    lines = text.splitlines()
    truncated = bool(lines) and not text.endswith(("\n", "\r"))
    if truncated:
        lines = lines[:-1]
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            bad += 1
            continue
        try:
            t = float(parts[0])
            v = float(parts[1])
            s = int(parts[2]) if len(parts) == 3 else 0
            if abs(s) >= MAX_STEP:
                raise ValueError("step out of range")
        except ValueError:
            bad += 1
            continue
        ts.append(t)
        vals.append(v)
        steps.append(s)
    return (
        np.array(ts, dtype="float64"),
        np.array(vals, dtype="float64"),
        np.array(steps, dtype="int64"),
        bad,
        truncated,
        notes,
    )


def load_mlflow(source: RunSource, file: SourceFile) -> Run:
    """Read one MLflow run folder (metrics, params, run name, status) into a Run."""
    folder = Path(file.path)
    if folder.is_file():
        folder = folder.parent
    metrics_dir = folder / "metrics"
    if not metrics_dir.is_dir():
        raise LogReadError("no metrics folder (not an MLflow run folder)")
    run = new_run(source, file, "mlflow")
    run.sources = [folder]

    tags: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    values: list[np.ndarray] = []
    walls: list[np.ndarray] = []
    bad_total = 0
    unreadable: list[str] = []
    stepless: list[str] = []
    empty: list[str] = []
    truncated: list[str] = []
    files = _files(metrics_dir)
    if len(files) > MAX_COLUMNS:
        run.note(
            "truncated",
            f"{len(files)} metric files; only the first {MAX_COLUMNS} were read (series cap)",
            path=str(metrics_dir),
            details={"metric_files": len(files), "read": MAX_COLUMNS},
        )
        files = files[:MAX_COLUMNS]
    for path in files:
        key = _key(metrics_dir, path)
        try:
            ts, vals, st, bad, cut, notes = _read_metric(path)
        except (OSError, LogReadError):
            unreadable.append(key)
            continue
        run.notes.extend(notes)
        bad_total += bad
        if cut:
            truncated.append(key)
        if not len(vals):
            if not (cut or bad or notes):
                empty.append(key)
            continue
        if len(vals) > 1 and not st.any():
            # log_metric() without a step files every point at step 0 (or writes no step
            # field at all, in old clients); the line order is the time order.
            st = np.arange(len(vals), dtype="int64")
            stepless.append(key)
        tags.append(np.full(len(vals), key, dtype=object))
        steps.append(st)
        values.append(vals)
        walls.append(ts / 1000.0)
    if empty:
        run.note(
            "truncated",
            f"metric file(s) with no points (killed before the first write?): "
            f"{', '.join(empty[:5])}",
            path=str(metrics_dir),
        )
    if unreadable:
        run.note(
            "unreadable",
            f"metric file(s) not readable: {', '.join(unreadable[:5])}",
            path=str(metrics_dir),
        )
    if bad_total:
        run.note(
            "bad_value", f"{bad_total} malformed metric line(s) skipped", path=str(metrics_dir)
        )
    if truncated:
        run.note(
            "truncated",
            f"last line cut off (job killed mid-write) in: {', '.join(truncated[:5])}",
            path=str(metrics_dir),
        )
    if stepless:
        run.note(
            "unsupported",
            f"metric(s) logged without steps, point order used: {', '.join(stepless[:5])}",
            path=str(metrics_dir),
        )

    raw = _params(folder / "params", run)
    if raw:
        run.raw_hparams = raw
        run.hparams = canonicalize(raw)
    _meta(folder, run)

    if not tags:
        raise LogReadError("no metric values in the MLflow run")
    long = pd.DataFrame(
        {
            "tag": np.concatenate(tags),
            "step": np.concatenate(steps),
            "value": np.concatenate(values),
            "wall_time": np.concatenate(walls),
        }
    )
    return finish_long(run, long, file, metrics_dir, equal_is_restart=False)


def _params(folder: Path, run: Run) -> dict[str, HParamValue]:
    """params/<key> files -> {key: value as written} (whitespace stripped); at most
    :data:`MAX_COLUMNS` of them, with a note past that."""
    raw: dict[str, HParamValue] = {}
    files = _files(folder)
    if len(files) > MAX_COLUMNS:
        run.note(
            "truncated",
            f"{len(files)} param files; only the first {MAX_COLUMNS} were read (key cap)",
            path=str(folder),
        )
        files = files[:MAX_COLUMNS]
    for path in files:
        try:
            if path.stat().st_size > MAX_PARAM_BYTES:
                continue
            text, _ = decode_bytes(path.read_bytes(), path)
        except (OSError, LogReadError):
            continue
        raw[_key(folder, path)] = text.strip()
    return raw


def _meta(folder: Path, run: Run) -> None:
    """Run name and status: a run still RUNNING or FAILED/KILLED is worth a note."""
    name_file = folder / "tags" / "mlflow.runName"
    name = ""
    if name_file.is_file():
        try:
            name = name_file.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            name = ""
    meta_file = folder / "meta.yaml"
    if not meta_file.is_file():
        return
    try:
        meta, _ = load_yaml_plain(meta_file.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        run.note("unreadable", "meta.yaml does not parse", path=str(meta_file))
        return
    if not isinstance(meta, dict):
        return
    name = name or str(meta.get("run_name") or "")
    status = meta.get("status")
    label = RUN_STATUS.get(status, str(status)) if status is not None else ""
    if label and label != "FINISHED":
        run.note(
            "run_status",
            f"MLflow run status is {label}" + (f" (run {name!r})" if name else ""),
            path=str(meta_file),
            details={"status": label, "run_name": name},
        )
    if meta.get("lifecycle_stage") == "deleted":
        run.note("run_status", "MLflow run is marked deleted", path=str(meta_file))
