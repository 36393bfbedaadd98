"""``history.json`` dumps of Keras ``History.history``: one list of per-epoch values per metric.

People save ``model.fit(...).history`` with ``json.dump`` in three shapes, all handled:
``{"loss": [...], "val_loss": [...]}``, ``{"history": {...}, "params": {...}}``, and
PtychoPINN's ``{"epochs": [...], "metrics": {...}}``.  ``json.dump`` writes a diverged
epoch as a bare ``NaN``; stdlib ``json`` reads it and the NaN is kept.  The step is the
0-based epoch index, as Keras' own callbacks number epochs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diagnose.hparams import canonicalize, flatten
from diagnose.ingest.csv_logs import (
    LogReadError,
    decode_bytes,
    metric_like,
    new_run,
    read_text,
    scalars_from_long,
)
from diagnose.ingest.jsonl import TooDeep, close_json, loads
from diagnose.run import IngestNote, Run
from diagnose.sources import RunSource, SourceFile

#: Sniffing parses files up to this size whole; a bigger one by its first
#: :data:`_REPAIR_SNIFF` characters, closed as JSON.
MAX_PARSE_BYTES = 5_000_000
_PREFIX_SNIFF = 4096
_REPAIR_SNIFF = 65536
#: A history dump opens with a known wrapper key or with a list of numbers.
_HISTORY_START = re.compile(
    r'^\s*\{\s*"(?:(?:history|metrics|epochs|params)"\s*:'
    r'|[^"]+"\s*:\s*\[\s*(?:[-+\d.]|NaN|-?Infinity|null|\]))'
)


def _metrics_dict(
    data: Any,
) -> tuple[Mapping[str, Any] | None, list[Any] | None, Mapping[str, Any] | None]:
    """(metric -> values, explicit epoch list or None, params or None) for a known shape."""
    if not isinstance(data, Mapping):
        return None, None, None
    if isinstance(data.get("history"), Mapping):
        params = data.get("params") if isinstance(data.get("params"), Mapping) else None
        return data["history"], None, params
    if isinstance(data.get("metrics"), Mapping):
        epochs = data.get("epochs") if isinstance(data.get("epochs"), list) else None
        return data["metrics"], epochs, None
    return data, None, None


def _is_series(value: Any) -> bool:
    return isinstance(value, list) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value
    )


def _looks_like_history(data: Any) -> bool:
    metrics, _, _ = _metrics_dict(data)
    if not metrics:
        return False
    series = {k: v for k, v in metrics.items() if _is_series(v) and v}
    if not series or len(series) < len(metrics) / 2:
        return False
    return any(metric_like(str(k)) for k in series)


def _parse_history(text: str) -> tuple[Any, str | None]:
    """(data, why it is partial or None) for a history dump, repairing a cut-off file.

    Raises ValueError (:class:`TooDeep` included) when nothing can be read.
    """
    try:
        return loads(text), None
    except TooDeep:
        raise
    except ValueError as exc:
        repaired = close_json(text)
        if repaired is None:
            raise
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return loads(repaired), why


def sniff_keras_history(path: Path) -> bool:
    """True for a JSON object whose values are per-epoch lists of training metrics.

    A file too big to parse here, or cut off mid-write, is judged by its first
    :data:`_REPAIR_SNIFF` characters closed as JSON, so the loader can read what survives
    (or say why not) instead of the file being passed over in silence.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_PREFIX_SNIFF)
            text, _ = decode_bytes(head)
            if not _HISTORY_START.match(text):
                return False
            if size <= MAX_PARSE_BYTES:
                text, _ = decode_bytes(head + fh.read())
            else:
                text, _ = decode_bytes(head + fh.read(_REPAIR_SNIFF - len(head)))
    except (OSError, LogReadError):
        return False
    try:
        data = loads(text) if size <= MAX_PARSE_BYTES else None
    except ValueError:
        data = None
    if data is None:
        try:
            data = loads(close_json(text[:_REPAIR_SNIFF]) or "")
        except ValueError:
            return False
    return _looks_like_history(data)


def _epoch_steps(epochs: list[Any] | None, n: int) -> np.ndarray:
    """Steps for n points: the file's epoch list when whole numbers, else 0..n-1."""
    if epochs is not None and len(epochs) == n:
        arr = np.array([e if isinstance(e, (int, float)) else np.nan for e in epochs], float)
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and np.all(np.diff(arr) > 0):
            return arr.astype("int64")
    return np.arange(n, dtype="int64")


def load_keras_history(source: RunSource, file: SourceFile) -> Run:
    """Read a history.json dump into a Run (format ``keras_history``)."""
    path = Path(file.path)
    text, notes = read_text(path)
    run = new_run(source, file, "keras_history")
    run.notes.extend(notes)
    try:
        data, cut = _parse_history(text)
    except TooDeep as exc:
        raise LogReadError(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise LogReadError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from exc
    except ValueError as exc:
        raise LogReadError(f"invalid JSON: {exc}") from exc
    if cut is not None:
        run.note(
            "truncated",
            f"file is cut off ({cut}); read the values written before the cut",
            path=str(path),
        )
    metrics, epochs, params = _metrics_dict(data)
    if not metrics:
        raise LogReadError("no metric lists (not a Keras history)")
    series = {str(k): v for k, v in metrics.items() if _is_series(v) and v}
    skipped = sorted(str(k) for k in metrics if str(k) not in series)
    if not series:
        raise LogReadError("no numeric metric lists")
    if skipped:
        run.note(
            "unsupported",
            f"{len(skipped)} non-numeric entr(ies) skipped: {', '.join(skipped[:5])}",
            path=str(path),
        )
    n_epochs = max(len(v) for v in series.values())
    full_steps = _epoch_steps(epochs, n_epochs)
    frames = []
    for key, values in series.items():
        arr = np.array([np.nan if v is None else v for v in values], dtype="float64")
        steps = full_steps[: len(arr)]
        if len(arr) < n_epochs:
            steps, note = _short_series(key, len(arr), n_epochs, full_steps, path)
            run.notes.append(note)
        frames.append((key, steps, arr))
    tags = np.concatenate([np.full(len(a), k, dtype=object) for k, _, a in frames])
    steps = np.concatenate([s for _, s, _ in frames])
    values = np.concatenate([a for _, _, a in frames])
    run.scalars = scalars_from_long(tags, steps, values, None, file)
    if params:
        raw = {k: v for k, v in flatten(params).items() if not isinstance(v, (list, dict))}
        run.raw_hparams = raw
        run.hparams = canonicalize(raw)
    return run.finalize()


def _short_series(
    key: str, n: int, n_epochs: int, full_steps: np.ndarray, path: Path
) -> tuple[np.ndarray, IngestNote]:
    """Place a list shorter than the run: ``validation_freq=k`` gives n_epochs/k values."""
    if n and n_epochs % n == 0:
        freq = n_epochs // n
        steps = full_steps[freq - 1 :: freq][:n]
        return steps, IngestNote(
            "unsupported",
            f"{key!r} has {n} of {n_epochs} values; read as every {freq} epoch(s) "
            "(validation_freq)",
            str(path),
        )
    return full_steps[:n], IngestNote(
        "unsupported",
        f"{key!r} has {n} of {n_epochs} values; placed at the first {n} epochs",
        str(path),
    )
