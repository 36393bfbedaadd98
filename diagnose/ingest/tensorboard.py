"""TensorBoard event files -> Run: scalars, histograms, hparams, restarts.

Decoding follows TensorBoard's own semantics (``EventAccumulator`` with everything
stored): a tag's plugin metadata is taken from its first occurrence across all files of
the run; tensors are scalars when that metadata says ``scalars``; a ``SessionLog.START``
at step T (file version >= 2) purges earlier points with step >= T.

Speed: most scalar logs are torch's default ``add_scalar`` events, which all share one
byte layout (``wall_time, step, summary{value{tag, simple_value}}``).  Those records are
recognised and decoded column-wise with numpy, never becoming Python objects.  torch's
histogram events are decoded straight from their bytes and bucketed a batch at a time.
Every other record goes through the protobuf classes; all paths give identical numbers
(the tests hold them to EventAccumulator's).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from diagnose.hparams import canonicalize
from diagnose.ingest.tfrecord import HEADER, Records, iter_records, masked_crc32c, take_rows
from diagnose.run import Histogram, IngestNote, Run, make_scalars
from diagnose.sources import RunSource

_START = event_pb2.SessionLog.START
_HPARAMS_SSI = "_hparams_/session_start_info"
#: Plugin names reported for values that carry no metadata, by the value's oneof field.
_KIND_PLUGIN = {"simple_value": "", "histo": "histograms", "image": "images", "audio": "audio"}
_FLOAT_DTYPES = {
    types_pb2.DT_FLOAT: "<f4",
    types_pb2.DT_DOUBLE: "<f8",
    types_pb2.DT_HALF: "<f2",
}
#: Bytes per element of packed ``tensor_content``, by dtype (1 for the rest: a bound).
_ITEMSIZE = {
    types_pb2.DT_FLOAT: 4,
    types_pb2.DT_DOUBLE: 8,
    types_pb2.DT_HALF: 2,
    types_pb2.DT_BFLOAT16: 2,
    types_pb2.DT_INT32: 4,
    types_pb2.DT_UINT32: 4,
    types_pb2.DT_INT64: 8,
    types_pb2.DT_UINT64: 8,
    types_pb2.DT_INT16: 2,
    types_pb2.DT_UINT16: 2,
    types_pb2.DT_COMPLEX64: 8,
    types_pb2.DT_COMPLEX128: 16,
}


# ---------------------------------------------------------------------------
# peek
# ---------------------------------------------------------------------------


def _first_payloads(path: Path, max_records: int) -> Iterator[bytes]:
    """Data of the first records, read with plain file reads (no full scan)."""
    with open(path, "rb") as fh:
        for _ in range(max_records):
            head = fh.read(HEADER)
            if len(head) < HEADER:
                return
            (length,) = struct.unpack_from("<Q", head)
            if masked_crc32c(head[:8]) != struct.unpack_from("<I", head, 8)[0]:
                return
            if length > (1 << 31):
                return
            data = fh.read(length)
            if len(data) < length or len(fh.read(4)) < 4:
                return
            yield data


def peek_tags(path: Path, max_records: int = 64) -> dict[str, str]:
    """Tags of the first ``max_records`` records -> plugin name ('' for simple_value).

    Cheap enough for discovery to call on every event file: it reads only the start of
    the file.  Values without metadata are named by kind (``histograms`` for legacy
    histograms).  Unreadable input gives what was read so far, never an error.
    """
    tags: dict[str, str] = {}
    try:
        for data in _first_payloads(Path(path), max_records):
            try:
                event = event_pb2.Event.FromString(data)
            except DecodeError:
                continue
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                tag = value.tag or value.node_name
                plugin = value.metadata.plugin_data.plugin_name
                if plugin:
                    tags.setdefault(tag, plugin)
                elif tag not in tags:
                    kind = value.WhichOneof("value")
                    tags[tag] = _KIND_PLUGIN.get(kind or "", "")
    except OSError:
        pass
    return tags


# ---------------------------------------------------------------------------
# fast path: torch simple_value events decoded column-wise
# ---------------------------------------------------------------------------


@dataclass
class _FastScalars:
    """Records recognised as single simple_value events, decoded as columns."""

    index: np.ndarray  # record numbers within the file (grouped by layout, not sorted)
    tags: list[str]  # distinct raw tags
    codes: np.ndarray  # into ``tags``
    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray  # float32: simple_value is a float


def _varint(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the base-128 varint starting each row of ``[n, 10]`` bytes.

    Returns (value as int64, byte length, valid).
    """
    n = len(cols)
    value = np.zeros(n, dtype=np.uint64)
    length = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for j in range(cols.shape[1]):
        byte = cols[:, j]
        active = ~done
        value |= np.where(active, (byte & 0x7F).astype(np.uint64) << np.uint64(7 * j), 0).astype(
            np.uint64
        )
        ends = active & (byte < 0x80)
        if j == 9:  # a 10th byte may only carry the top bit of a 64-bit value
            ends &= byte <= 1
        length[ends] = j + 1
        done |= ends
        if done.all():
            break
    return value.view(np.int64), length, done


#: Largest record the fast path looks at: one-byte lengths cap the tag at 127 bytes.
_FAST_MAX = 9 + 11 + 6 + 127 + 5


def _fast_scalars(rec: Records) -> _FastScalars | None:
    """Find and decode every record laid out as Event{wall_time, step?, one simple_value}.

    A record is accepted only if its bytes are exactly that message with one-byte
    lengths that agree with each other and with the record length, so protobuf would
    read the very same numbers.  Records are grouped by (length, step width): within a
    group every field sits at the same column, so whole groups are checked and decoded
    with column slices.  Everything else is left for the protobuf path.
    """
    every = np.flatnonzero((rec.lengths >= 9 + 13) & (rec.lengths <= _FAST_MAX))
    n = len(every)
    out = _FastScalars(
        np.empty(n, np.int64), [], np.empty(n, np.int64), np.empty(n, np.int64),
        np.empty(n, np.float64), np.empty(n, np.float32),
    )  # fmt: skip
    tag_index: dict[bytes, int] = {}
    filled = 0
    # Chunks bound the temporaries (a few bytes per byte of chunk) whatever the file size;
    # results go straight into arrays sized for every candidate, trimmed at the end.
    for lo in range(0, n, _FAST_CHUNK):
        filled = _fast_chunk(rec, every[lo : lo + _FAST_CHUNK], tag_index, out, filled)
    if not filled:
        return None
    # Rows come grouped by layout, not in file order: ``index`` keeps the order, and the
    # table is sorted later anyway, so no reordering copy is made here.
    return _FastScalars(
        out.index[:filled], out.tags, out.codes[:filled], out.step[:filled],
        out.wall[:filled], out.value[:filled],
    )  # fmt: skip


#: Records per chunk of the fast path.
_FAST_CHUNK = 1 << 16


def _fast_chunk(
    rec: Records,
    cand: np.ndarray,
    tag_index: dict[bytes, int],
    out: _FastScalars,
    filled: int,
) -> int:
    """The fast path over some candidate records; writes rows from ``filled`` on in ``out``.

    Returns the new number of filled rows.
    """
    buf = rec.buffer
    tags = out.tags
    d = rec.starts[cand]
    head = take_rows(buf, d, 20)
    has_step = head[:, 9] == 0x10
    step, vlen, vok = _varint(head[:, 10:20])
    ok = (head[:, 0] == 0x09) & (vok | ~has_step)
    width = np.where(has_step, 1 + vlen, 0)
    key = rec.lengths[cand] * 16 + width
    cand, d, key, step = cand[ok], d[ok], key[ok], np.where(has_step, step, 0)[ok]
    groups, uniq = pd.factorize(key)
    for g, k in enumerate(uniq.tolist()):
        members = np.flatnonzero(groups == g)
        length, w = divmod(int(k), 16)
        q = 9 + w
        tl = length - q - 11
        if tl < 0 or tl >= 0x80:
            continue
        rows = take_rows(buf, d[members], length)
        good = (
            (rows[:, q] == 0x2A)
            & (rows[:, q + 1] == tl + 9)
            & (rows[:, q + 2] == 0x0A)
            & (rows[:, q + 3] == tl + 7)
            & (rows[:, q + 4] == 0x0A)
            & (rows[:, q + 5] == tl)
            & (rows[:, q + 6 + tl] == 0x15)
        )
        tagmat = rows[:, q + 6 : q + 6 + tl]
        # The tag as a few uint64 words: hash them to group rows, then check exactly.
        words = np.zeros((len(rows), -(-tl // 8) * 8), dtype=np.uint8)
        words[:, :tl] = tagmat
        words = words.view("<u8")
        h = np.zeros(len(rows), dtype=np.uint64)
        for j in range(words.shape[1]):
            h = (h * np.uint64(1099511628211)) ^ words[:, j]
        local, _ = pd.factorize(h)
        first = np.unique(local, return_index=True)[1]
        good &= (words == words[first][local]).all(axis=1)  # hash collisions -> slow path
        codes = np.empty(len(first), dtype=np.int64)
        for c, r in enumerate(first.tolist()):
            raw = tagmat[r].tobytes()
            code = tag_index.get(raw)
            if code is None:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:  # protobuf rejects it too: its path will say so
                    good &= local != c
                    codes[c] = -1
                    continue
                code = tag_index[raw] = len(tags)
                tags.append(text)
            codes[c] = code
        sel = np.flatnonzero(good)
        end = filled + len(sel)
        out.index[filled:end] = cand[members[sel]]
        out.codes[filled:end] = codes[local[sel]]
        out.step[filled:end] = step[members[sel]]
        out.wall[filled:end] = np.ascontiguousarray(rows[sel, 1:9]).view("<f8").reshape(-1)
        out.value[filled:end] = np.ascontiguousarray(rows[sel, length - 4 :]).view("<f4")[:, 0]
        filled = end
    return filled


# ---------------------------------------------------------------------------
# protobuf path
# ---------------------------------------------------------------------------


def _claimed_elements(tensor: tensor_pb2.TensorProto) -> int | None:
    """Element count the tensor's shape claims; None for a negative (unknown) dim."""
    n = 1
    for dim in tensor.tensor_shape.dim:
        if dim.size < 0:
            return None
        n *= dim.size
    return n


def _present_elements(tensor: tensor_pb2.TensorProto) -> int:
    """Elements the record really holds (packed bytes, or the typed repeated field)."""
    if tensor.tensor_content:
        return len(tensor.tensor_content) // _ITEMSIZE.get(tensor.dtype, 1)
    t = tensor
    return max(
        len(t.half_val),
        len(t.float_val),
        len(t.double_val),
        len(t.int_val),
        len(t.int64_val),
        len(t.bool_val),
        len(t.string_val),
        len(t.uint32_val),
        len(t.uint64_val),
        len(t.scomplex_val) // 2,
        len(t.dcomplex_val) // 2,
    )


def _shape_problem(tensor: tensor_pb2.TensorProto) -> str | None:
    """Why the tensor must not be decoded, or None.  tensorboard's decoder repeats a
    single value to the claimed shape: a 341-byte record claiming 1e9 elements would
    cost 4 GB, so shapes are bounded by the elements present."""
    claimed = _claimed_elements(tensor)
    if claimed is None:
        return "shape has a negative dimension"
    present = _present_elements(tensor)
    if claimed > max(present, 1):
        return f"shape claims {claimed} elements but the record holds {present}"
    return None


def _tensor_scalar(tensor: tensor_pb2.TensorProto) -> tuple[float | None, str | None]:
    """(the single number of a scalar tensor, or None with why it is not one)."""
    claimed = _claimed_elements(tensor)
    if claimed != 1:
        shown = "a negative dimension" if claimed is None else f"{claimed} elements"
        return None, f"a scalar whose shape claims {shown}"
    dt = _FLOAT_DTYPES.get(tensor.dtype)
    if dt is not None and not tensor.tensor_shape.dim:
        content = tensor.tensor_content
        if len(content) == np.dtype(dt).itemsize:
            return float(np.frombuffer(content, dtype=dt)[0]), None
        if tensor.dtype == types_pb2.DT_FLOAT and len(tensor.float_val) == 1:
            return float(tensor.float_val[0]), None
        if tensor.dtype == types_pb2.DT_DOUBLE and len(tensor.double_val) == 1:
            return float(tensor.double_val[0]), None
    problem = _shape_problem(tensor)
    if problem is not None:
        return None, problem
    try:
        arr = _make_ndarray(tensor)
    except Exception:  # any malformed tensor is just not a number
        return None, "a scalar tensor that does not decode"
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        return None, "a scalar tensor that is not one number"
    return float(arr.reshape(-1)[0]), None


def _varint_at(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """One base-128 varint: (value, next position); raises IndexError/ValueError if bad."""
    value, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


_F64 = struct.Struct("<d")

#: A histogram decoded by :func:`_plain_histogram`:
#: (wall, step, tag, stats[5], bucket_limit, bucket).
_PlainHistogram = tuple[float, int, str, list[float], np.ndarray, np.ndarray]


def _plain_histogram(data: bytes | memoryview) -> _PlainHistogram | None:
    """Decode Event{wall_time, step, summary{value{tag, histo}}} without protobuf objects.

    torch and tensorboardX write histograms exactly like this; building the message and
    copying its repeated fields is most of the cost of reading them.  Any other shape
    (metadata, repeated fields, unknown fields, bad UTF-8) returns None and goes through
    protobuf, so the result is always what protobuf would read.
    Returns (wall, step, tag, stats[5], bucket_limit, bucket).
    """
    try:
        wall, step, summary = 0.0, 0, None
        seen: set[int] = set()
        pos, n = 0, len(data)
        while pos < n:
            key, pos = _varint_at(data, pos)
            if key in seen:
                return None
            seen.add(key)
            if key == 0x09:
                (wall,) = _F64.unpack_from(data, pos)
                pos += 8
            elif key == 0x10:
                step, pos = _varint_at(data, pos)
                step = step - (1 << 64) if step >= 1 << 63 else step
            elif key == 0x2A:
                size, pos = _varint_at(data, pos)
                summary = (pos, pos + size)
                pos += size
            else:
                return None
        if summary is None or pos != n:
            return None
        pos, end = summary
        key, pos = _varint_at(data, pos)
        size, pos = _varint_at(data, pos)
        if key != 0x0A or pos + size != end:
            return None
        tag, histo = None, None
        while pos < end:
            key, pos = _varint_at(data, pos)
            size, pos = _varint_at(data, pos)
            if key == 0x0A and tag is None:
                tag = bytes(data[pos : pos + size]).decode("utf-8")
            elif key == 0x2A and histo is None:
                histo = (pos, pos + size)
            else:
                return None
            pos += size
        if histo is None or pos != end:
            return None
        stats = [0.0] * 5
        limits = counts = None
        pos, end = histo
        seen.clear()
        while pos < end:
            key, pos = _varint_at(data, pos)
            if key in seen:
                return None
            seen.add(key)
            field_no, wire = key >> 3, key & 7
            if wire == 1 and 1 <= field_no <= 5:
                (stats[field_no - 1],) = _F64.unpack_from(data, pos)
                pos += 8
            elif wire == 2 and field_no in (6, 7):
                size, pos = _varint_at(data, pos)
                if size % 8 or pos + size > end:
                    return None
                arr = np.frombuffer(data, dtype="<f8", count=size // 8, offset=pos)
                if field_no == 6:
                    limits = arr
                else:
                    counts = arr
                pos += size
            else:
                return None
        if pos != end or wall != wall:  # NaN wall_time: leave to protobuf
            return None
        empty = np.zeros(0, dtype=np.float64)
        return (
            wall,
            step,
            tag or "",
            stats,
            empty if limits is None else limits,
            empty if counts is None else counts,
        )
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _histogram(
    tag: str, step: int, wall: float, stats: list[float], limits: np.ndarray, counts: np.ndarray
) -> Histogram:
    """Old-style histogram -> [k,3] (left, right, count) of its non-empty buckets.

    Like ``data_compat``, the outer edges become min and max (TF writes ±DBL_MAX there),
    in float64.  Unlike it, empty buckets are dropped everywhere, not only at the ends:
    TF's exponential ladder is mostly empty (about 1 bucket in 5 holds data for typical
    weights), the empty ones carry no mass, and keeping them would triple memory.
    """
    k = min(len(limits), len(counts))
    nonzero = np.flatnonzero(counts[:k] > 0)
    buckets = np.empty((len(nonzero), 3), dtype=np.float64)
    if len(nonzero):
        buckets[:, 0] = limits[nonzero - 1]  # nonzero[0] - 1 may wrap: replaced below
        buckets[:, 1] = limits[nonzero]
        buckets[:, 2] = counts[nonzero]
        buckets[0, 0] = stats[0]
        buckets[-1, 1] = stats[1]
    return Histogram(tag, step, wall, buckets, *stats)


class _HistogramBatch:
    """Plain histograms converted to [k,3] buckets a few thousand at a time.

    One vectorised pass per batch replaces a dozen small numpy calls per histogram; the
    buckets of a batch share one array (each Histogram holds a view).  Slots are
    reserved in ``out`` on arrival so histograms stay in file order.
    """

    SIZE = 4096

    def __init__(self, out: list[tuple[int, Histogram | None]]) -> None:
        self.out = out
        self.slots: list[int] = []
        self.meta: list[tuple[str, int, float, list[float]]] = []
        self.limits: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []

    def add(self, seq: int, tag: str, plain: _PlainHistogram) -> None:
        """Queue one decoded histogram (its arrays may be views of the file's bytes)."""
        wall, step, _, stats, limits, counts = plain
        k = min(len(limits), len(counts))
        self.slots.append(len(self.out))
        self.out.append((seq, None))
        self.meta.append((tag, step, wall, stats))
        self.limits.append(limits[:k])
        self.counts.append(counts[:k])
        if len(self.slots) >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        n = len(self.slots)
        if not n:
            return
        lens = np.fromiter((len(c) for c in self.counts), dtype=np.int64, count=n)
        counts = np.concatenate(self.counts) if lens.sum() else np.zeros(0)
        limits = np.concatenate(self.limits) if lens.sum() else np.zeros(0)
        nz = np.flatnonzero(counts > 0)
        owner = np.repeat(np.arange(n), lens)[nz]
        buckets = np.empty((len(nz), 3), dtype=np.float64)
        buckets[:, 0] = limits[np.maximum(nz - 1, 0)]  # a histogram's first: replaced below
        buckets[:, 1] = limits[nz]
        buckets[:, 2] = counts[nz]
        bounds = np.searchsorted(owner, np.arange(n + 1))
        stats = np.array([m[3] for m in self.meta], dtype=np.float64).reshape(n, 5)
        has = bounds[1:] > bounds[:-1]
        buckets[bounds[:-1][has], 0] = stats[has, 0]
        buckets[bounds[1:][has] - 1, 1] = stats[has, 1]
        b = bounds.tolist()
        for j, (slot, (tag, step, wall, st)) in enumerate(zip(self.slots, self.meta, strict=True)):
            h = Histogram(tag, step, wall, buckets[b[j] : b[j + 1]], *st)
            self.out[slot] = (self.out[slot][0], h)
        self.slots, self.meta, self.limits, self.counts = [], [], [], []


def _histogram_from_proto(
    tag: str, step: int, wall: float, h: summary_pb2.HistogramProto
) -> Histogram:
    """Histogram message (from the protobuf path) -> Histogram."""
    limits = np.asarray(h.bucket_limit, dtype=np.float64)
    counts = np.asarray(h.bucket, dtype=np.float64)
    return _histogram(tag, step, wall, [h.min, h.max, h.num, h.sum, h.sum_squares], limits, counts)


def _make_ndarray(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """tensorboard's tensor decoder, imported on first use: it pulls in the TensorFlow
    stub (~0.25 s) that torch-written scalar files never need."""
    from tensorboard.util import tensor_util

    array: np.ndarray = tensor_util.make_ndarray(tensor)
    return array


def _histogram_from_tensor(
    tag: str, step: int, wall: float, tensor: tensor_pb2.TensorProto
) -> tuple[Histogram | None, str | None]:
    """TF2 ``[k,3]`` histogram tensor -> (Histogram, or None with why it was skipped).
    No summary statistics are recorded in this encoding."""
    problem = _shape_problem(tensor)
    if problem is not None:
        return None, problem
    try:
        arr = np.asarray(_make_ndarray(tensor), dtype=np.float64)
    except Exception:  # malformed: skipped, not fatal
        return None, "a histogram tensor that does not decode"
    if arr.ndim != 2 or arr.shape[1] != 3:
        if arr.size == 0:
            arr = np.zeros((0, 3), dtype=np.float64)
        else:
            return None, f"a histogram tensor of shape {list(arr.shape)}, not [k, 3]"
    return Histogram(tag, step, wall, arr), None


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


@dataclass
class _State:
    """Everything accumulated across the files of one run, in read order."""

    keys: dict[tuple[str, str | None], int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # first metadata per final tag
    kinds: dict[str, str] = field(default_factory=dict)  # fallback plugin by value kind
    file_version: float | None = None
    codes: list[np.ndarray] = field(default_factory=list)
    steps: list[np.ndarray] = field(default_factory=list)
    walls: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    seqs: list[np.ndarray] = field(default_factory=list)
    histograms: list[tuple[int, Histogram | None]] = field(default_factory=list)
    restarts: list[tuple[int, int, str]] = field(default_factory=list)
    raw_hparams: dict[str, float | str | bool] = field(default_factory=dict)
    notes: list[IngestNote] = field(default_factory=list)
    seq: int = 0
    #: (why, tag) -> (count, first step) of tensors skipped, for one note per reason.
    skipped: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def skip_tensor(self, tag: str, why: str, step: int) -> None:
        count, first = self.skipped.get((why, tag), (0, step))
        self.skipped[(why, tag)] = (count + 1, first)

    def skipped_notes(self) -> list[IngestNote]:
        """One ``bad_value`` note per reason, naming the tags (never silent)."""
        by_why: dict[str, list[tuple[str, int, int]]] = {}
        for (why, tag), (count, first) in self.skipped.items():
            by_why.setdefault(why, []).append((tag, count, first))
        notes = []
        for why, items in sorted(by_why.items()):
            total = sum(c for _, c, _ in items)
            tags = sorted(t for t, _, _ in items)
            notes.append(
                IngestNote(
                    "bad_value",
                    f"{total} tensor value(s) skipped: {why} (tags: {', '.join(tags[:5])}"
                    + (" ..." if len(tags) > 5 else "")
                    + ")",
                    step=min(f for _, _, f in items),
                    details={"tags": tags[:20], "values": total},
                )
            )
        return notes

    def code(self, tag: str, split: str | None) -> int:
        key = (tag, split)
        c = self.keys.get(key)
        if c is None:
            c = self.keys[key] = len(self.keys)
        return c


def _final_tag(tag: str, suffix: str | None) -> str:
    return f"{tag}/{suffix}" if suffix else tag


def _read_file(path: Path, split: str | None, suffix: str | None, st: _State, verify: bool) -> None:
    """Add one event file's scalars, histograms, hparams and restarts to the state.

    The file is read one window of records at a time (:func:`iter_records`): each window
    is decoded into compact columns and histograms before the next is read, so the raw
    bytes of the file are never all resident at once.
    """
    codes: list[int] = []
    steps: list[int] = []
    walls: list[float] = []
    values: list[float] = []
    seqs: list[int] = []
    batch = _HistogramBatch(st.histograms)
    rec = None
    for rec in iter_records(path, verify_checksums=verify):
        _read_window(rec, path, split, suffix, st, batch, (codes, steps, walls, values, seqs))
    assert rec is not None
    if codes:
        st.codes.append(np.asarray(codes, dtype=np.int32))
        st.steps.append(np.asarray(steps, dtype=np.int64))
        st.walls.append(np.asarray(walls, dtype=np.float64))
        st.values.append(np.asarray(values, dtype=np.float64))
        st.seqs.append(np.asarray(seqs, dtype=_seq_dtype(st.seq)))
    rec.close_notes()
    st.notes.extend(rec.notes)
    if not rec.total and not rec.notes:
        st.notes.append(IngestNote("empty", "event file holds no records", str(path)))


def _read_window(
    rec: Records,
    path: Path,
    split: str | None,
    suffix: str | None,
    st: _State,
    batch: _HistogramBatch,
    slow_cols: tuple[list[int], list[int], list[float], list[float], list[int]],
) -> None:
    """Decode the records ``rec`` holds now (one window); nothing keeps a view of them."""
    base = st.seq
    st.seq += len(rec)
    fast = _fast_scalars(rec)
    slow = np.ones(len(rec), dtype=bool)
    if fast is not None and len(fast.index):
        slow[fast.index] = False
        remap = np.array([st.code(_final_tag(t, suffix), split) for t in fast.tags], dtype=np.int32)
        for t in fast.tags:
            st.kinds.setdefault(_final_tag(t, suffix), "")
        st.codes.append(remap[fast.codes])
        st.steps.append(fast.step)
        st.walls.append(fast.wall)
        st.values.append(fast.value)
        st.seqs.append((fast.index + base).astype(_seq_dtype(st.seq), copy=False))
    codes, steps, walls, values, seqs = slow_cols
    # Metadata must be seen in record order: a fast record never carries any, so it is
    # enough to walk the slow records in order.
    whole = rec.buffer.data if len(rec.buffer) else memoryview(b"")
    for i in np.flatnonzero(slow).tolist():
        start = int(rec.starts[i])
        data = whole[start : start + int(rec.lengths[i])]
        plain = _plain_histogram(data) if len(data) > 64 else None
        if plain is not None:
            tag = _final_tag(plain[2], suffix)
            st.kinds.setdefault(tag, "histograms")
            batch.add(base + i, tag, plain)
            continue
        try:
            event = event_pb2.Event.FromString(bytes(data))
        except DecodeError:
            offset = int(rec.starts[i]) - HEADER
            fault = "failed its data checksum" if not rec.data_ok(i) else "is not an Event"
            rec.note_record("corrupt_record", f"record at byte {offset} {fault}; skipped", offset)
            continue
        what = event.WhichOneof("what")
        entries = event.summary.value
        unknown = (
            what not in ("summary", "file_version", "session_log")
            or (what == "session_log" and not event.session_log.status)
            or (
                what == "summary"
                and (not entries or any(v.WhichOneof("value") is None for v in entries))
            )
        )
        if unknown and not rec.data_ok(i):
            # A flipped bit can turn a scalar into a field nobody reads: the data CRC,
            # checked only here, tells damage from a writer's extra event kinds.
            offset = int(rec.starts[i]) - HEADER
            rec.note_record(
                "corrupt_record", f"record at byte {offset} failed its data checksum; skipped",
                offset,
            )
            continue
        if what == "file_version":
            version = event.file_version.split("brain.Event:")[-1]
            try:
                st.file_version = float(version)
            except ValueError:
                st.file_version = -1.0
            continue
        if what == "session_log":
            if event.session_log.status == _START and (st.file_version or 0) >= 2:
                st.restarts.append((base + i, event.step, str(path)))
            continue
        if what != "summary":
            continue
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            tag = value.tag
            if kind == "tensor" and not tag:
                tag = value.node_name
            tag = _final_tag(tag, suffix)
            plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else None
            if value.HasField("metadata") and tag not in st.metadata:
                st.metadata[tag] = plugin or ""
            if kind is not None:
                st.kinds.setdefault(tag, _KIND_PLUGIN.get(kind, ""))
            first = st.metadata.get(tag)
            if plugin == "hparams":
                if value.tag == _HPARAMS_SSI:
                    _read_hparams(value.metadata.plugin_data.content, st, str(path))
            elif kind == "simple_value":
                codes.append(st.code(tag, split))
                steps.append(event.step)
                walls.append(event.wall_time)
                values.append(value.simple_value)
                seqs.append(base + i)
            elif kind == "histo":
                h = _histogram_from_proto(tag, event.step, event.wall_time, value.histo)
                st.histograms.append((base + i, h))
            elif kind == "tensor":
                if first == "scalars":
                    number, why = _tensor_scalar(value.tensor)
                    if number is None:
                        st.skip_tensor(tag, why or "not a number", event.step)
                        continue
                    codes.append(st.code(tag, split))
                    steps.append(event.step)
                    walls.append(event.wall_time)
                    values.append(number)
                    seqs.append(base + i)
                elif first == "histograms":
                    hist, why = _histogram_from_tensor(
                        tag, event.step, event.wall_time, value.tensor
                    )
                    if hist is not None:
                        st.histograms.append((base + i, hist))
                    else:
                        st.skip_tensor(tag, why or "not a histogram", event.step)
    # Plain histograms hold views of this window's bytes until bucketed: bucket them now.
    batch.flush()


def _seq_dtype(count: int) -> type:
    """Record numbers below ``count`` as int32 where they fit (4 bytes a row saved)."""
    return np.int32 if count < 2**31 else np.int64


def _read_hparams(content: bytes, st: _State, path: str) -> None:
    """hparams plugin session_start_info -> raw hparams (number, string or bool)."""
    try:
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
    except DecodeError:
        st.notes.append(IngestNote("bad_value", "unreadable hparams session_start_info", path))
        return
    hparams = data.session_start_info.hparams
    for key in sorted(hparams):  # a protobuf map's order is not stable across processes
        val = hparams[key]
        kind = val.WhichOneof("kind")
        if kind == "number_value":
            number = val.number_value
            st.raw_hparams[key] = int(number) if float(number).is_integer() else number
        elif kind == "string_value":
            st.raw_hparams[key] = val.string_value
        elif kind == "bool_value":
            st.raw_hparams[key] = val.bool_value


def _tag_step_order(rank: np.ndarray, steps: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """Order by (tag rank, step, record number): tags grouped, write order within a step.

    Rows usually arrive step-ordered within each tag, so a stable sort by tag alone (a
    radix sort on small ints) suffices; the full lexsort runs only when it does not.
    """
    if not len(rank):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(rank, kind="stable")
    # Checked a slice at a time (sharing one row) to keep the temporaries small.
    for lo in range(0, len(order) - 1, _ORDER_CHUNK):
        o = order[lo : lo + _ORDER_CHUNK + 1]
        s, q, r = steps[o], seqs[o], rank[o]
        later = (s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (q[1:] > q[:-1]))
        if not (later | (r[1:] != r[:-1])).all():
            return np.lexsort((seqs, steps, rank))
    return order


#: Rows per slice when checking that an order is already sorted.
_ORDER_CHUNK = 1 << 18


def _build_scalars(st: _State, alive: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """The long table, grouped by tag and sorted by step (stable: write order kept).

    Metric and split are computed by :func:`make_scalars` once per distinct (tag, split)
    and then expanded by index, which keeps the table's dtypes.  ``cols`` (code, step,
    wall, value, seq) is consumed: each input is released once its sorted copy exists.
    """
    keys = list(st.keys)
    n_keys = len(keys)
    lookup = make_scalars(
        [k[0] for k in keys],
        np.zeros(n_keys, dtype=np.int64),
        np.zeros(n_keys),
        split=pd.array([k[1] for k in keys], dtype="string") if n_keys else None,
    )
    if not alive.all():
        for name in list(cols):
            cols[name] = cols[name][alive]
    # Rank codes by (tag, split) string order so the table comes out grouped by tag.
    rank = np.empty(n_keys, dtype=np.int16 if n_keys < 2**15 else np.int64)
    rank[sorted(range(n_keys), key=lambda c: (keys[c][0], keys[c][1] or ""))] = np.arange(n_keys)
    order = _tag_step_order(rank[cols["code"]], cols["step"], cols.pop("seq"))
    codes = cols.pop("code")[order]
    table = {
        "tag": lookup["tag"].array.take(codes),
        "metric": lookup["metric"].array.take(codes),
        "split": lookup["split"].array.take(codes),
    }
    del codes
    for name, key in (("step", "step"), ("wall_time", "wall"), ("value", "value")):
        table[name] = _take(cols.pop(key), order, np.int64 if key == "step" else np.float64)
    # The columns are fresh arrays owned by nobody else: no consolidating copy.
    return pd.DataFrame(table, copy=False)


def _take(src: np.ndarray, order: np.ndarray, dtype: type) -> np.ndarray:
    """``src[order]`` as ``dtype``; a cast (float32 values) goes a slice at a time."""
    if src.dtype == dtype:
        taken: np.ndarray = src[order]
        return taken
    out: np.ndarray = np.empty(len(order), dtype=dtype)
    for lo in range(0, len(order), _ORDER_CHUNK):
        out[lo : lo + _ORDER_CHUNK] = src[order[lo : lo + _ORDER_CHUNK]]
    return out


def load_tensorboard(source: RunSource, verify_checksums: bool = False) -> Run:
    """Read every ``tensorboard`` file of ``source``, in the given order, into one Run.

    Damaged or unreadable files become notes; the Run is returned even when nothing
    could be read, so the dispatcher can decide how to report it.
    """
    run = Run(run_id=source.run_id, path=source.path, format="tensorboard")
    st = _State()
    for sf in source.files:
        if sf.kind != "tensorboard":
            continue
        run.sources.append(sf.path)
        _read_file(sf.path, sf.split, sf.tag_suffix, st, verify_checksums)

    def cat(name: str, dtype: str | None) -> np.ndarray:
        """One column from its per-window parts, which are dropped as soon as it exists."""
        parts: list[np.ndarray] = getattr(st, name)
        setattr(st, name, [])
        if dtype is None:  # values: float32 from the fast path stays float32 until sorted
            dtype = np.result_type(*{p.dtype for p in parts}).name if parts else "float64"
        if len(parts) == 1:
            return parts[0].astype(dtype, copy=False)
        return np.concatenate(parts, dtype=dtype) if parts else np.zeros(0, dtype)

    cols = {
        "code": cat("codes", "int32"),
        "step": cat("steps", "int64"),
        "wall": cat("walls", "float64"),
        "value": cat("values", None),
        "seq": cat("seqs", np.dtype(_seq_dtype(st.seq)).name),
    }
    seqs, steps = cols["seq"], cols["step"]
    alive = np.ones(len(steps), dtype=bool)
    hists = [(s, h) for s, h in st.histograms if h is not None]  # every slot is filled
    h_seq = np.array([s for s, _ in hists], dtype=np.int64)
    h_step = np.array([h.step for _, h in hists], dtype=np.int64)
    h_alive = np.ones(len(hists), dtype=bool)
    for seq, step, path in st.restarts:
        expired = alive & (seqs < seq) & (steps >= step)
        h_expired = h_alive & (h_seq < seq) & (h_step >= step)
        alive &= ~expired
        h_alive &= ~h_expired
        n, nh = int(expired.sum()), int(h_expired.sum())
        extra = f" and {nh} histograms" if nh else ""
        run.notes.append(
            IngestNote(
                code="restart",
                message=(
                    f"run restarted at step {step}: {n} earlier scalar points{extra} with "
                    f"step >= {step} were purged"
                ),
                path=path,
                step=int(step),
                details={"purged_scalars": n, "purged_histograms": nh},
            )
        )
    del seqs, steps
    run.scalars = _build_scalars(st, alive, cols)
    run.histograms = [h for (_, h), keep in zip(hists, h_alive, strict=True) if keep]
    run.tag_metadata = {**st.kinds, **st.metadata}
    run.raw_hparams = dict(st.raw_hparams)
    run.hparams = canonicalize(st.raw_hparams)
    run.notes[:0] = st.notes + st.skipped_notes()
    return run
