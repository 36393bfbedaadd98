"""W&B run folders (``wandb/offline-run-*/run-<id>.wandb``, or a synced ``run-*``) as a Run.

The ``.wandb`` file is W&B's own transaction log, written the same way offline and
online, so reading it needs neither an upload nor the ``wandb`` package:

- framing is LevelDB's log format: 32 KiB blocks, each record a 7-byte header (CRC-32 of
  the type byte + data, zlib's polynomial; uint16 length; type FULL/FIRST/MIDDLE/LAST)
  and its data; a block's last < 7 bytes are zero padding.  The file starts with its own
  7-byte header ``:W&B``, magic 0xBEE1, version 0;
- each record is a protobuf ``wandb_internal.Record``.  The few messages needed (history,
  config, summary, run, exit) are declared below with their field numbers from W&B's
  ``wandb_internal.proto`` (protobuf never renumbers a field) and built into a private
  descriptor pool, so protobuf's C decoder reads them (about 12x faster here than
  decoding the wire format in Python) and no generated W&B module is imported; fields
  we do not declare are skipped.  Values are JSON text read with ``float`` or
  ``json.loads``: nothing in a log is executed or unpickled.

A run killed mid-write ends in a cut record: what came before is read and the loss is a
``truncated`` note; a record whose CRC fails is skipped (its block's rest with it, as
LevelDB does) with a ``corrupt_record`` note.  A run with no exit record was killed or is
still running (``run_status`` note).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

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

#: A record larger than this is not a metrics record (media payloads, artifacts).
MAX_RECORD = 64 * 1024 * 1024
#: History keys W&B adds to every row; ``_step`` and ``_timestamp`` are read apart.
_INTERNAL_PREFIX = "_"
#: The item W&B writes for a media object's type (``weights/_type`` = "histogram").
_TYPE_SUFFIX = "/_type"

# ---------------------------------------------------------------------------
# The subset of wandb_internal.proto we read
# ---------------------------------------------------------------------------

_T = descriptor_pb2.FieldDescriptorProto
_REPEATED, _ONEOF = "repeated", "oneof"
#: message -> (field, number, scalar type or message name, flags...).  HistoryItem's
#: typed values sit in the oneof ``value`` (``none`` is an enum, read as its varint).
_SCHEMA: dict[str, list[tuple[Any, ...]]] = {
    "Record": [
        ("history", 2, "HistoryRecord"),
        ("summary", 3, "UpdateRecord"),
        ("config", 5, "UpdateRecord"),
        ("run", 17, "RunRecord"),
        ("exit", 18, "RunExitRecord"),
    ],
    "HistoryRecord": [("item", 1, "HistoryItem", _REPEATED), ("step", 2, "HistoryStep")],
    "HistoryStep": [("num", 1, _T.TYPE_INT64)],
    "HistoryItem": [
        ("key", 1, _T.TYPE_STRING),
        ("nested_key", 2, _T.TYPE_STRING, _REPEATED),
        ("none", 3, _T.TYPE_INT32, _ONEOF),
        ("boolean", 4, _T.TYPE_BOOL, _ONEOF),
        ("integer", 5, _T.TYPE_SINT64, _ONEOF),
        ("number", 6, _T.TYPE_DOUBLE, _ONEOF),
        ("text", 7, _T.TYPE_STRING, _ONEOF),
        ("json", 8, _T.TYPE_STRING, _ONEOF),
        ("value_json", 16, _T.TYPE_STRING),
    ],
    # ConfigRecord and SummaryRecord: update (1) and remove (2) lists of the same item.
    "UpdateRecord": [
        ("update", 1, "UpdateItem", _REPEATED),
        ("remove", 2, "UpdateItem", _REPEATED),
    ],
    "UpdateItem": [
        ("key", 1, _T.TYPE_STRING),
        ("nested_key", 2, _T.TYPE_STRING, _REPEATED),
        ("value_json", 16, _T.TYPE_STRING),
    ],
    "RunRecord": [
        ("config", 4, "UpdateRecord"),
        ("summary", 5, "UpdateRecord"),
        ("display_name", 8, _T.TYPE_STRING),
    ],
    "RunExitRecord": [("exit_code", 1, _T.TYPE_INT32)],
}


def _build_record_class() -> Any:
    """The ``Record`` message class from :data:`_SCHEMA`, in a pool of its own."""
    package = "diagnose_wandb"
    proto = descriptor_pb2.FileDescriptorProto(
        name="diagnose_wandb_subset.proto", package=package, syntax="proto3"
    )
    for name, fields in _SCHEMA.items():
        msg = proto.message_type.add(name=name)
        for fname, number, ftype, *flags in fields:
            field_proto = msg.field.add(name=fname, number=number, json_name=fname)
            field_proto.label = _T.LABEL_REPEATED if _REPEATED in flags else _T.LABEL_OPTIONAL
            if isinstance(ftype, str):
                field_proto.type = _T.TYPE_MESSAGE
                field_proto.type_name = f".{package}.{ftype}"
            else:
                field_proto.type = ftype
            if _ONEOF in flags:
                if not msg.oneof_decl:
                    msg.oneof_decl.add(name="value")
                field_proto.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    record = pool.FindMessageTypeByName(f"{package}.Record")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(record)
    return message_factory.MessageFactory(pool).GetPrototype(record)  # protobuf < 4.22


_Record = _build_record_class()


def _key(item: Any) -> str:
    """W&B writes a key as ``nested_key`` (one part per level) or, in older clients, ``key``."""
    nested = item.nested_key
    if not nested:
        key: str = item.key
        return key
    return nested[0] if len(nested) == 1 else "/".join(nested)


def _number(text: str) -> Any:
    """A history value_json: numbers on the fast path (``float`` also reads the NaN and
    Infinity W&B writes for non-finite values), anything else (media) as JSON."""
    try:
        return float(text)
    except ValueError:
        return _json(text)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _typed(item: Any) -> Any:
    """A HistoryItem's typed value (newer clients may send these instead of value_json)."""
    which = item.WhichOneof("value")
    if which is None or which == "none":
        return None
    if which == "json":
        return _json(item.json)
    return getattr(item, which)


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


def _records(data: bytes | mmap.mmap, scan: _Scan) -> Iterator[bytes]:
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
        bad_header = kind not in _TYPE_CRC or end > _end_of_block(pos)
        if not bad_header and end > len(data):
            scan.truncated = True
            break
        if bad_header or zlib.crc32(data[start:end], _TYPE_CRC[kind]) != crc:
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
    config: dict[str, str] = field(default_factory=dict)  # key -> value_json
    summary: dict[str, str] = field(default_factory=dict)
    histograms: list[Histogram] = field(default_factory=list)
    skipped_keys: set[str] = field(default_factory=set)
    display_name: str = ""
    exit_code: int | None = None
    malformed: int = 0
    row: int = 0


def _history(history: Any, st: _State) -> None:
    """One logged row: its numbers go to the table at the row's ``_step``.

    The step is the HistoryStep when written, else the ``_step`` item (which W&B writes
    last), so the row is gathered first and placed after.
    """
    step: int | None = history.step.num if history.HasField("step") else None
    wall = math.nan
    keys: list[str] = []
    values: list[Any] = []
    media = False
    for item in history.item:
        key = _key(item)
        text = item.value_json
        value = _number(text) if text else _typed(item)
        if key.startswith(_INTERNAL_PREFIX):
            if key == "_step" and step is None and _is_number(value):
                step = int(value)
            elif key == "_timestamp" and _is_number(value):
                wall = float(value)
            continue
        media = media or key.endswith(_TYPE_SUFFIX)
        keys.append(key)
        values.append(value)
    if step is None:
        step = st.row  # a row without _step: W&B counts rows itself
    st.row = step + 1
    if abs(step) >= MAX_STEP:
        st.malformed += 1
        return
    if media:
        keys, values = _media(keys, values, step, wall, st)
    n = 0
    for key, value in zip(keys, values, strict=True):
        if _is_number(value):
            st.tags.append(key)
            st.values.append(float(value))
            n += 1
            continue
        hist = _histogram(key, step, wall, value)  # older clients: the whole dict as JSON
        if hist is not None:
            st.histograms.append(hist)
        elif value is not None:
            st.skipped_keys.add(key)
    st.steps.extend([step] * n)
    st.walls.extend([wall] * n)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int  # not bool


def _media(
    keys: list[str], values: list[Any], step: int, wall: float, st: _State
) -> tuple[list[str], list[Any]]:
    """Take out the media objects (a ``wandb.Histogram``, an image) of one history row.

    W&B flattens each into items under its key: ``weights/_type`` = "histogram",
    ``weights/values``, ``weights/bins``.  Histograms are kept; other media are noted.
    """
    kinds = {key[: -len(_TYPE_SUFFIX)] for key in keys if key.endswith(_TYPE_SUFFIX)}
    parts: dict[str, dict[str, Any]] = {}
    rest_keys: list[str] = []
    rest_values: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        prefix, _, leaf = key.rpartition("/")
        if prefix in kinds:
            parts.setdefault(prefix, {})[leaf] = value
        else:
            rest_keys.append(key)
            rest_values.append(value)
    for prefix, fields in parts.items():
        hist = _histogram(prefix, step, wall, fields)
        if hist is not None:
            st.histograms.append(hist)
        else:
            st.skipped_keys.add(prefix)
    return rest_keys, rest_values


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


def _updates(record: Any, into: dict[str, str]) -> None:
    """ConfigRecord / SummaryRecord: ``update`` items set keys, ``remove`` items drop them.

    Values stay JSON text until the end: W&B rewrites the summary after every logged row,
    and only its last state is read.
    """
    for item in record.update:
        into[_key(item)] = item.value_json
    for item in record.remove:
        into.pop(_key(item), None)


def _record(payload: bytes, st: _State) -> None:
    record = _Record.FromString(payload)
    if record.HasField("history"):
        _history(record.history, st)
    elif record.HasField("config"):
        _updates(record.config, st.config)
    elif record.HasField("summary"):
        _updates(record.summary, st.summary)
    elif record.HasField("run"):
        run = record.run
        _updates(run.config, st.config)
        _updates(run.summary, st.summary)
        st.display_name = run.display_name or st.display_name
    elif record.HasField("exit"):
        st.exit_code = record.exit.exit_code


def _hparams(config: dict[str, str]) -> dict[str, Any]:
    """W&B config -> flat plain values; W&B's own ``_wandb`` entry is not a hyperparameter."""
    raw: dict[str, Any] = {}
    for key, text in config.items():
        if key.startswith(_INTERNAL_PREFIX):
            continue
        value = _json(text)
        nested = flatten({key: value}) if isinstance(value, dict) else {key: value}
        for k, v in nested.items():
            plain = coerce(v)
            if plain is not None:
                raw[k] = plain
    return raw


def load_wandb(source: RunSource, file: SourceFile) -> Run:
    """Read one ``run-<id>.wandb`` file: history, config as hparams, summary."""
    path = Path(file.path)
    run = new_run(source, file, "wandb")
    scan = _Scan()
    st = _State()
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < FILE_HEADER.size:
                raise LogReadError("file is shorter than the W&B header")
            # Mapped, not read: pages of a multi-GB run (media records) stay file-backed.
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for payload in _records(data, scan):
                    if len(payload) > MAX_RECORD:
                        continue
                    try:
                        _record(payload, st)
                    except DecodeError:
                        st.malformed += 1
    except OSError as exc:
        raise LogReadError(exc.strerror or str(exc)) from exc
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
    summary = {
        k: _json(text)
        for k, text in st.summary.items()
        if not k.startswith(_INTERNAL_PREFIX) and k not in logged
    }
    extra = [
        (k, float(v))
        for k, v in sorted(summary.items())
        if isinstance(v, float | int) and not isinstance(v, bool)
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
    if extra:  # summary values are no split's series (as the HF reader keeps them)
        split = np.full(len(long), None, dtype=object)
        split[len(long) - len(extra) :] = "other"
        long["split"] = split
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
