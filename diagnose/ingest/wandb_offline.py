"""W&B run folders (``wandb/offline-run-*/run-<id>.wandb``, or a synced ``run-*``) as a Run.

The ``.wandb`` file is W&B's own transaction log, written the same way offline and
online, so reading it needs neither an upload nor the ``wandb`` package:

- framing is LevelDB's log format: 32 KiB blocks, each record a 7-byte header (CRC-32 of
  the type byte + data, zlib's polynomial; uint16 length; type FULL/FIRST/MIDDLE/LAST)
  and its data; a block's last < 7 bytes are zero padding.  The file starts with its own
  7-byte header ``:W&B``, magic 0xBEE1, version 0;
- each record is a protobuf ``wandb_internal.Record``.  The few messages needed (history,
  config, summary, run, exit) are decoded by the small wire-format reader below, with
  field numbers from W&B's ``wandb_internal.proto`` (protobuf never renumbers a field),
  so no generated module is imported.  Values are JSON text read with ``json.loads``:
  nothing in a log is executed or unpickled.

A run killed mid-write ends in a cut record: what came before is read and the loss is a
``truncated`` note; a record whose CRC fails is skipped (its block's rest with it, as
LevelDB does) with a ``corrupt_record`` note.  A run with no exit record was killed or is
still running (``run_status`` note).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnose.hparams import canonicalize, coerce, flatten
from diagnose.ingest.csv_logs import MAX_STEP, LogReadError, finish_long, new_run
from diagnose.run import Histogram, Run
from diagnose.sources import RunSource, SourceFile

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT = b":W&B"
FILE_MAGIC = 0xBEE1
BLOCK = 32768
RECORD_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: zlib.crc32 state after the type byte: W&B's checksum covers type + data.
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}

# wandb_internal.Record field numbers (wandb/proto/wandb_internal.proto).
R_HISTORY, R_SUMMARY, R_CONFIG, R_RUN, R_EXIT = 2, 3, 5, 17, 18
#: A record larger than this is not a metrics record (media payloads, artifacts).
MAX_RECORD = 64 * 1024 * 1024
#: History keys W&B adds to every row; ``_step`` and ``_timestamp`` are read apart.
_INTERNAL_PREFIX = "_"


class _Malformed(Exception):
    """A protobuf message that does not decode (a record cut short, or garbage)."""


# ---------------------------------------------------------------------------
# Protobuf wire format (just enough of it)
# ---------------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Malformed("bad varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of one message, in order.

    Varints come as ints, fixed64/fixed32 and length-delimited fields as bytes.
    """
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise _Malformed(f"wire type {wire}")
        if i > n:
            raise _Malformed("field runs past the message")
        yield num, wire, value


def _text(value: bytes) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def _item(buf: bytes) -> tuple[str, Any]:
    """A History/Config/SummaryItem -> (key, value).

    ``key`` (1) or the ``nested_key`` path (2, repeated) joined with ``/``; the value is
    ``value_json`` (16) parsed, or one of the typed fields newer clients may send:
    integer (5, zigzag sint64), number (6, double), boolean (4), text (7), json (8).
    """
    key = ""
    nested: list[str] = []
    value: Any = None
    for num, wire, v in _fields(buf):
        if num == 1 and wire == 2:
            key = _text(v)
        elif num == 2 and wire == 2:
            nested.append(_text(v))
        elif num in (16, 8) and wire == 2:
            value = _json(_text(v))
        elif num == 6 and wire == 1:
            value = struct.unpack("<d", v)[0]
        elif num == 5 and wire == 0:
            value = (v >> 1) ^ -(v & 1)
        elif num == 4 and wire == 0:
            value = bool(v)
        elif num == 7 and wire == 2:
            value = _text(v)
    return ("/".join(nested) if nested else key), value


def _json(text: str) -> Any:
    """A value_json: plain numbers take the fast path (``float`` reads NaN/Infinity too,
    which W&B writes for non-finite values); integers stay ints (``batch_size: 64``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------
# LevelDB-style framing
# ---------------------------------------------------------------------------


@dataclass
class _Scan:
    """What the framing walk saw besides the records."""

    size: int = 0
    good_bytes: int = 0
    truncated: bool = False
    corrupt: int = 0
    first_corrupt_at: int | None = None


def _records(data: bytes, scan: _Scan) -> Iterator[bytes]:
    """Yield each whole record's payload; cut or corrupt ones are counted in ``scan``."""
    scan.size = len(data)
    if len(data) < FILE_HEADER.size:
        raise LogReadError("file is shorter than the W&B header")
    ident, magic, version = FILE_HEADER.unpack_from(data, 0)
    if ident != FILE_IDENT or magic != FILE_MAGIC:
        raise LogReadError("not a W&B run file (bad header)")
    if version != 0:
        raise LogReadError(f"W&B run file version {version} is not supported")
    pos = FILE_HEADER.size
    scan.good_bytes = pos
    parts: list[bytes] = []
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:
            pos += left  # zero padding at a block's end
            continue
        if pos + RECORD_HEADER.size > len(data):
            scan.truncated = True
            break
        crc, length, kind = RECORD_HEADER.unpack_from(data, pos)
        start, end = pos + RECORD_HEADER.size, pos + RECORD_HEADER.size + length
        if crc == length == kind == 0 and not any(data[pos : _end_of_block(pos)]):
            pos = _end_of_block(pos)  # zeros to the block's end: padding, never a record
            continue
        if end > len(data):
            scan.truncated = True
            break
        if (
            kind not in _TYPE_CRC
            or end > _end_of_block(pos)
            or zlib.crc32(data[start:end], _TYPE_CRC[kind]) != crc
        ):
            scan.corrupt += 1
            if scan.first_corrupt_at is None:
                scan.first_corrupt_at = pos
            parts = []
            pos = _end_of_block(pos)  # LevelDB drops the rest of a damaged block
            continue
        pos = end
        chunk = data[start:end]
        if kind == FULL:
            parts = []
            scan.good_bytes = pos
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif parts:  # MIDDLE / LAST continue a FIRST
            parts.append(chunk)
            if kind == LAST:
                record = b"".join(parts)
                parts = []
                scan.good_bytes = pos
                yield record
    if parts:
        scan.truncated = True  # a FIRST..MIDDLE chain the kill cut before its LAST


def _end_of_block(pos: int) -> int:
    return (pos // BLOCK + 1) * BLOCK


# ---------------------------------------------------------------------------
# Records -> Run
# ---------------------------------------------------------------------------


@dataclass
class _State:
    tags: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    histograms: list[Histogram] = field(default_factory=list)
    skipped_keys: set[str] = field(default_factory=set)
    display_name: str = ""
    project: str = ""
    exit_code: int | None = None
    malformed: int = 0
    row: int = 0


def _history(buf: bytes, st: _State) -> None:
    step: int | None = None
    wall = math.nan
    items: list[tuple[str, Any]] = []
    for num, wire, v in _fields(buf):
        if num == 1 and wire == 2:
            items.append(_item(v))
        elif num == 2 and wire == 2:
            for n2, w2, v2 in _fields(v):
                if n2 == 1 and w2 == 0:
                    step = v2 - (1 << 64) if v2 >= 1 << 63 else v2
    for key, value in items:
        if key == "_step" and step is None and isinstance(value, float | int):
            step = int(value)
        elif key == "_timestamp" and isinstance(value, float | int):
            wall = float(value)
    if step is None:
        step = st.row  # a row without _step: W&B counts rows itself
    st.row = step + 1
    if abs(step) >= MAX_STEP:
        st.malformed += 1
        return
    for key, value in items:
        if key.startswith(_INTERNAL_PREFIX):
            continue
        if isinstance(value, bool) or not isinstance(value, float | int):
            hist = _histogram(key, step, wall, value)
            if hist is not None:
                st.histograms.append(hist)
            elif value is not None:
                st.skipped_keys.add(key)
            continue
        st.tags.append(key)
        st.steps.append(step)
        st.values.append(float(value))
        st.walls.append(wall)


def _histogram(key: str, step: int, wall: float, value: Any) -> Histogram | None:
    """``wandb.Histogram`` (``{"_type": "histogram", "bins": edges, "values": counts}``)."""
    if not isinstance(value, dict) or value.get("_type") != "histogram":
        return None
    try:
        edges = np.asarray(value.get("bins"), dtype="float64")
        counts = np.asarray(value.get("values"), dtype="float64")
    except (TypeError, ValueError):
        return None
    if edges.ndim != 1 or counts.ndim != 1 or len(edges) != len(counts) + 1 or not len(counts):
        return None
    buckets = np.column_stack([edges[:-1], edges[1:], counts])
    return Histogram(tag=key, step=step, wall_time=wall, buckets=buckets, num=float(counts.sum()))


def _updates(buf: bytes, into: dict[str, Any]) -> None:
    """ConfigRecord / SummaryRecord: ``update`` (1) items set keys, ``remove`` (2) drops."""
    for num, wire, v in _fields(buf):
        if wire != 2:
            continue
        key, value = _item(v)
        if num == 1:
            into[key] = value
        elif num == 2:
            into.pop(key, None)


def _run_record(buf: bytes, st: _State) -> None:
    for num, wire, v in _fields(buf):
        if wire != 2:
            continue
        if num == 4:
            _updates(v, st.config)
        elif num == 5:
            _updates(v, st.summary)
        elif num == 8:
            st.display_name = _text(v)
        elif num == 3:
            st.project = _text(v)


def _record(buf: bytes, st: _State) -> None:
    for num, wire, v in _fields(buf):
        if wire != 2:
            continue
        if num == R_HISTORY:
            _history(v, st)
        elif num == R_CONFIG:
            _updates(v, st.config)
        elif num == R_SUMMARY:
            _updates(v, st.summary)
        elif num == R_RUN:
            _run_record(v, st)
        elif num == R_EXIT:
            st.exit_code = 0
            for n2, w2, v2 in _fields(v):
                if n2 == 1 and w2 == 0:
                    st.exit_code = v2 - (1 << 64) if v2 >= 1 << 63 else v2


def _hparams(config: dict[str, Any]) -> dict[str, Any]:
    """W&B config -> flat plain values; W&B's own ``_wandb`` entry is not a hyperparameter."""
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith(_INTERNAL_PREFIX):
            continue
        nested = flatten({key: value}) if isinstance(value, dict) else {key: value}
        for k, v in nested.items():
            plain = coerce(v)
            if plain is not None:
                raw[k] = plain
    return raw


def load_wandb(source: RunSource, file: SourceFile) -> Run:
    """Read one ``run-<id>.wandb`` file: history, config as hparams, summary."""
    path = Path(file.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LogReadError(exc.strerror or str(exc)) from exc
    run = new_run(source, file, "wandb")
    scan = _Scan()
    st = _State()
    for payload in _records(data, scan):
        if len(payload) > MAX_RECORD:
            continue
        try:
            _record(payload, st)
        except (_Malformed, struct.error, ValueError, TypeError):
            st.malformed += 1
    _notes(run, scan, st, path)

    raw = _hparams(st.config)
    if raw:
        run.raw_hparams = raw
        run.hparams = canonicalize(raw)
    run.histograms = st.histograms

    tags, steps, values, walls = st.tags, st.steps, st.values, st.walls
    # Summary keys the history never logged (a final test score) are kept as
    # summary/<key> at the last step; history keys' summaries repeat their last value.
    logged = set(tags)
    last = max(steps) if steps else 0
    extra = [
        (k, float(v))
        for k, v in sorted(st.summary.items())
        if not k.startswith(_INTERNAL_PREFIX)
        and k not in logged
        and isinstance(v, float | int)
        and not isinstance(v, bool)
    ]
    if extra:
        tags = [*tags, *(f"summary/{k}" for k, _ in extra)]
        steps = [*steps, *([last] * len(extra))]
        values = [*values, *(v for _, v in extra)]
        walls = [*walls, *([math.nan] * len(extra))]
    if not tags:
        if run.histograms:
            return run.finalize()
        why = "; W&B run file is cut short" if scan.truncated else ""
        raise LogReadError(f"no numeric history rows in the W&B run{why}")
    long = pd.DataFrame(
        {
            "tag": np.array(tags, dtype=object),
            "step": np.array(steps, dtype="int64"),
            "value": np.array(values, dtype="float64"),
            "wall_time": np.array(walls, dtype="float64"),
        }
    )
    return finish_long(run, long, file, path, equal_is_restart=False)


def _notes(run: Run, scan: _Scan, st: _State, path: Path) -> None:
    where = str(path)
    if scan.truncated:
        run.note(
            "truncated",
            f"W&B run file ends mid-record (job killed mid-write): read {scan.good_bytes} "
            f"of {scan.size} bytes",
            path=where,
            details={"bytes_read": scan.good_bytes, "file_size": scan.size},
        )
    if scan.corrupt:
        run.note(
            "corrupt_record",
            f"{scan.corrupt} W&B record(s) failed their checksum and were skipped "
            f"(first at byte {scan.first_corrupt_at})",
            path=where,
        )
    if st.malformed:
        run.note("bad_value", f"{st.malformed} W&B record(s) did not decode", path=where)
    if st.skipped_keys:
        keys = sorted(st.skipped_keys)
        run.note(
            "unsupported",
            f"{len(keys)} non-numeric history key(s) skipped: {', '.join(keys[:5])}",
            path=where,
            details={"keys": keys},
        )
    name = f" (run {st.display_name!r})" if st.display_name else ""
    if st.exit_code is None:
        run.note(
            "run_status",
            f"W&B run has no exit record: still running or killed{name}",
            path=where,
            details={"status": "RUNNING_OR_KILLED", "run_name": st.display_name},
        )
    elif st.exit_code != 0:
        run.note(
            "run_status",
            f"W&B run exited with code {st.exit_code}{name}",
            path=where,
            details={"status": "FAILED", "exit_code": st.exit_code, "run_name": st.display_name},
        )
