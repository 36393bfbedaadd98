"""TFRecord framing: find every record of an event file fast and survive damage.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)``, little-endian.  We walk the lengths once (a tight loop that only
reads 8 bytes per record), then check every length CRC at once with a vectorised
CRC-32C in numpy, so the per-record Python cost is a few hundred nanoseconds.  Files
are walked a window (:data:`WINDOW` bytes) at a time and each window's pages are given
back once read (:func:`iter_records`), so a large file is never all resident; the
records found do not depend on the window size.

Damage never raises:

* a file that ends inside a record is read up to there (``truncated`` note): that is
  what a crashed or still-running writer leaves;
* a record whose length CRC fails cannot be trusted to say where the next record
  starts, so we scan forward (bounded) for the next offset whose length and length CRC
  agree, and go on from there (``corrupt_record`` note); with none, reading stops;
* data CRCs are checked for records the caller could not parse (:meth:`Records.data_ok`)
  or for all records with ``verify_checksums=True``; failures are skipped with a note.

Nothing read from the file is executed or unpickled: this module only returns offsets.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from diagnose.run import IngestNote

#: Bytes before the data (length + length CRC) and after it (data CRC).
HEADER = 12
FOOTER = 4
_MASK_DELTA = 0xA282EAD8
#: How far past a bad length CRC we look for the next good record.
RESYNC_WINDOW = 64 * 1024 * 1024
#: At most this many notes per file about individual records; the rest are counted.
MAX_RECORD_NOTES = 20
#: Bytes of the file walked and handed to the reader at a time (see :func:`iter_records`).
WINDOW = 8 * 1024 * 1024

_U64 = struct.Struct("<Q")


def _crc32c_table() -> np.ndarray:
    """Byte-wise CRC-32C (Castagnoli, reflected 0x82F63B78) lookup table."""
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table[i] = c
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C of ``data`` (rotated so CRCs of CRCs stay strong)."""
    c = int(google_crc32c.value(bytes(data)))
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def take_rows(buf: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """``buf[pos[i] + j]`` for j < width as an ``[n, width]`` uint8 array.

    Indexing a sliding-window view copies whole rows, an order of magnitude faster than
    gathering byte by byte.  Positions past the end are clipped (callers validate what
    they read).
    """
    n = len(pos)
    if not n or not width:
        return np.zeros((n, width), dtype=np.uint8)
    if len(buf) < width:
        buf = np.concatenate((buf, np.zeros(width - len(buf), dtype=np.uint8)))
    view = np.lib.stride_tricks.sliding_window_view(buf, width)
    rows: np.ndarray = view[np.clip(pos, 0, len(view) - 1)]
    return rows


def gather_u64(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Little-endian uint64 at each position (positions need not be aligned)."""
    return take_rows(buf, pos, 8).view("<u8").reshape(-1)


def gather_u32(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Little-endian uint32 at each position."""
    return take_rows(buf, pos, 4).view("<u4").reshape(-1)


def _masked_crc(head: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of each row of an ``[n, w]`` uint8 array, vectorised over rows."""
    crc = np.full(len(head), 0xFFFFFFFF, dtype=np.uint32)
    for j in range(head.shape[1]):
        crc = _TABLE[(crc ^ head[:, j]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    rot = (crc >> np.uint32(15)) | (crc << np.uint32(17))
    return (rot.astype(np.uint64) + _MASK_DELTA).astype(np.uint32)


def length_crc_ok(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Whether the length CRC of the record header at each position is valid."""
    if not len(pos):
        return np.zeros(0, dtype=bool)
    head = take_rows(buf, pos, HEADER)
    ok: np.ndarray = _masked_crc(head[:, :8]) == head[:, 8:12].copy().view("<u4").reshape(-1)
    return ok


@dataclass
class Records:
    """Where the records of one file are: data offsets and lengths, plus what went wrong.

    ``buffer`` is the whole file as a read-only uint8 array (memory-mapped), so payloads
    are sliced, not copied, until someone parses them.  From :func:`iter_records`,
    ``starts``/``lengths`` hold one window's records at a time (``first`` is the number of
    the window's first record in the file, ``total`` the records so far).
    """

    path: str
    buffer: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    size: int
    bytes_read: int
    notes: list[IngestNote] = field(default_factory=list)
    _record_notes: int = 0
    first: int = 0
    total: int = 0
    _mmap: mmap.mmap | None = None
    _released: int = 0

    def release(self, upto: int) -> None:
        """Let the kernel drop mapped pages before byte ``upto`` (we are done with them).

        Reading a large file front to back would otherwise keep all of it resident; the
        pages come back from the page cache if touched again, so this is only a hint.
        """
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if self._mmap is None or advice is None:
            return
        end = upto // mmap.PAGESIZE * mmap.PAGESIZE
        if end > self._released:
            try:
                self._mmap.madvise(advice, self._released, end - self._released)
            except (OSError, ValueError):
                return
            self._released = end

    def __len__(self) -> int:
        return len(self.starts)

    def payload(self, i: int) -> bytes:
        """The data bytes of record ``i``."""
        s = int(self.starts[i])
        return self.buffer[s : s + int(self.lengths[i])].tobytes()

    def data_ok(self, i: int) -> bool:
        """Whether record ``i``'s data CRC matches (checked lazily: it costs a pass)."""
        s = int(self.starts[i])
        n = int(self.lengths[i])
        stored = int(self.buffer[s + n : s + n + 4].view("<u4")[0])
        return masked_crc32c(self.buffer[s : s + n].data) == stored

    def note_record(self, code: str, message: str, offset: int) -> None:
        """Add a per-record note, capped at :data:`MAX_RECORD_NOTES` per file."""
        self._record_notes += 1
        if self._record_notes <= MAX_RECORD_NOTES:
            self.notes.append(
                IngestNote(code=code, message=message, path=self.path, details={"offset": offset})
            )

    def close_notes(self) -> None:
        """Summarise per-record notes that were over the cap."""
        extra = self._record_notes - MAX_RECORD_NOTES
        if extra > 0:
            self.notes.append(
                IngestNote(
                    code="corrupt_record",
                    message=f"{extra} more damaged records skipped",
                    path=self.path,
                    details={"count": extra},
                )
            )
            self._record_notes = MAX_RECORD_NOTES


#: Records walked in Python before guessing that the record lengths repeat.
_LEARN = 512
#: Longest repeating pattern of record lengths we look for (e.g. tags logged per step).
_MAX_PERIOD = 128


def _walk_python(
    data: bytes | mmap.mmap, pos: int, size: int, offsets: array[int], count: int, stop: int
) -> int:
    """Follow up to ``count`` lengths from ``pos`` (records starting before ``stop``),
    appending offsets; returns the next pos."""
    append = offsets.append
    unpack = _U64.unpack_from
    limit = min(size - HEADER, stop - 1)
    for _ in range(count):
        if pos > limit:
            break
        append(pos)
        pos += unpack(data, pos)[0] + (HEADER + FOOTER)
    return pos


def _period(lengths: list[int]) -> int:
    """Smallest p such that the whole window of lengths repeats with period p; 0 if none."""
    n = len(lengths)
    for p in range(1, min(_MAX_PERIOD, n // 2) + 1):
        if lengths[p:] == lengths[:-p]:
            return p
    return 0


def _check_pattern(
    buf: np.ndarray, pos: int, rel: np.ndarray, pattern: list[int], periods: int
) -> int:
    """Records (from ``pos``) whose lengths match the repeated pattern, before the first miss."""
    p, stride = len(pattern), int(rel[-1])
    first_bad = periods * p
    for j in range(p):
        # An unaligned, strided uint64 view straight onto the file: one compare per record.
        view = np.ndarray(
            (periods,), dtype="<u8", buffer=buf, offset=pos + int(rel[j]), strides=(stride,)
        )
        ok = view == pattern[j]
        if not ok.all():
            first_bad = min(first_bad, int(np.argmin(ok)) * p + j)
    return first_bad


def _speculate(buf: np.ndarray, pos: int, end: int, pattern: list[int]) -> np.ndarray:
    """Offsets of the records from ``pos`` on, assuming lengths keep repeating ``pattern``.

    Every guessed length is checked against the file through a strided view (no copy),
    in growing blocks so a wrong guess costs little, and only the prefix where all
    guesses hold is returned: exactly what the sequential walk would find.  Only whole
    periods that end by byte ``end`` (at most the file size) are guessed.
    """
    p = len(pattern)
    rel = np.concatenate(([0], np.cumsum(np.asarray(pattern, dtype=np.int64) + HEADER + FOOTER)))
    stride = int(rel[-1])
    total = max(end - pos, 0) // stride
    done, block = 0, 64
    done_records = total * p
    while done < total:
        periods = min(block, total - done)
        good = _check_pattern(buf, pos + done * stride, rel, pattern, periods)
        if good < periods * p:
            done_records = done * p + good
            break
        done += periods
        block *= 4
    ks = np.arange(-(-done_records // p), dtype=np.int64) * stride + pos
    return np.add.outer(ks, rel[:-1]).reshape(-1)[:done_records]


def _walk(
    data: bytes | mmap.mmap, buf: np.ndarray, pos: int, size: int, stop: int
) -> tuple[np.ndarray, int]:
    """Follow the lengths from ``pos`` for the records that start before ``stop``; returns
    record offsets and where the walk stopped.

    Only lengths are read here; their CRCs are checked afterwards in bulk.  The last
    offset may be a record that runs past ``stop`` or the end of the file.  Logs written
    in a loop repeat their record lengths (same tags every step), so after a short Python
    walk we guess the pattern and verify the guess for the rest of the window in bulk.
    """
    parts: list[np.ndarray] = []
    while True:
        offsets = array("q")
        pos = _walk_python(data, pos, size, offsets, _LEARN, stop)
        parts.append(np.frombuffer(offsets, dtype=np.int64).copy())
        if len(offsets) < _LEARN:
            break
        tail = np.append(parts[-1][-2 * _MAX_PERIOD :], pos)
        lengths = (np.diff(tail) - (HEADER + FOOTER)).tolist()
        p = _period(lengths)
        if not p:
            continue
        guessed = _speculate(buf, pos, min(size, stop), lengths[-p:])
        if len(guessed):
            parts.append(guessed)
            last = int(guessed[-1])
            pos = last + int(gather_u64(buf, guessed[-1:])[0]) + HEADER + FOOTER
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), pos


def _resync(buf: np.ndarray, start: int, size: int, window: int) -> int | None:
    """First offset >= start (within ``window`` bytes) that holds a plausible header."""
    stop = min(size - HEADER - FOOTER, start + window)
    chunk = 1 << 20
    lo = start
    while lo <= stop:
        hi = min(stop + 1, lo + chunk)
        cand = np.arange(lo, hi, dtype=np.int64)
        ok = length_crc_ok(buf, cand)
        if ok.any():
            hits = cand[ok]
            lens = gather_u64(buf, hits)
            fits = lens <= np.uint64(size - HEADER - FOOTER) - hits.astype(np.uint64)
            if fits.any():
                return int(hits[np.argmax(fits)])
        lo = hi
    return None


def scan_records(
    data: bytes | mmap.mmap,
    path: str = "",
    verify_checksums: bool = False,
    resync_window: int = RESYNC_WINDOW,
    window: int | None = None,
) -> Records:
    """Index every readable record of one TFRecord byte string (or mmap).

    Never raises on content; see the module docstring for how damage is handled.  The
    result is the same whatever ``window`` (bytes walked at a time; default: all).
    """
    rec = _new_records(data, path)
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for part in _scan_windows(data, rec, verify_checksums, resync_window, window or len(data)):
        starts.append(part.starts)
        lengths.append(part.lengths)
    rec.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    rec.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    rec.first = 0
    return rec


def _new_records(data: bytes | mmap.mmap, path: str) -> Records:
    size = len(data)
    buf = np.frombuffer(data, dtype=np.uint8) if size else np.zeros(0, dtype=np.uint8)
    return Records(path, buf, np.zeros(0, np.int64), np.zeros(0, np.int64), size, 0)


def _scan_windows(
    data: bytes | mmap.mmap,
    rec: Records,
    verify_checksums: bool,
    resync_window: int,
    window: int,
) -> Iterator[Records]:
    """Walk the file ``window`` bytes at a time; yields ``rec`` holding each window's records.

    A window holds the records that start in it (the last one may run past its end), so
    the records, notes and ``bytes_read`` are exactly those of a single walk over the
    whole file.  After each yield, pages before the next window are released.
    """
    size, buf, path = rec.size, rec.buffer, rec.path
    window = max(int(window), 1)
    pos = 0
    while pos < size:
        offs, end = _walk(data, buf, pos, size, pos + window)
        ok = length_crc_ok(buf, offs)
        bad = int(np.argmin(ok)) if len(ok) and not ok.all() else -1
        if bad >= 0:
            good = offs[:bad]
            stop = int(offs[bad])
        else:
            good = offs
            stop = end
        truncated = False
        # The last good header may still claim more bytes than the file holds.
        if len(good):
            last = int(good[-1])
            last_end = last + HEADER + int(gather_u64(buf, good[-1:])[0]) + FOOTER
            if last_end > size:
                good = good[:-1]
                rec.bytes_read = last
                rec.notes.append(_truncated(path, last, size))
                truncated = True
            else:
                rec.bytes_read = last_end
        if len(good):
            _set_window(rec, data, good, verify_checksums)
            yield rec
        if truncated:
            break
        if bad < 0:
            if stop >= size:
                break
            if stop > size - HEADER:  # fewer than HEADER bytes left: a header cut short
                rec.notes.append(_truncated(path, stop, size))
                break
            pos = stop  # the window is done; the next one starts at this record
            rec.release(pos)
            continue
        nxt = _resync(buf, stop + 1, size, resync_window)
        if nxt is None:
            rec.notes.append(
                IngestNote(
                    code="corrupt_record",
                    message=(
                        f"bad record length checksum at byte {stop} of {size} and no "
                        "readable record after it; reading stopped there"
                    ),
                    path=path,
                    details={"offset": stop, "bytes_read": stop, "file_size": size},
                )
            )
            break
        rec.notes.append(
            IngestNote(
                code="corrupt_record",
                message=(
                    f"bad record length checksum at byte {stop}; resynchronised at byte "
                    f"{nxt}, skipping {nxt - stop} bytes"
                ),
                path=path,
                details={"offset": stop, "resync": nxt, "skipped_bytes": nxt - stop},
            )
        )
        pos = nxt
        rec.release(pos)
    rec.starts = np.zeros(0, np.int64)
    rec.lengths = np.zeros(0, np.int64)
    rec.first = rec.total


def _set_window(rec: Records, data: bytes | mmap.mmap, heads: np.ndarray, verify: bool) -> None:
    """Make ``rec`` hold the records whose headers are at ``heads`` (data CRCs if asked)."""
    buf = rec.buffer
    lengths = gather_u64(buf, heads).astype(np.int64)
    starts = heads + HEADER
    if verify:
        value = google_crc32c.value
        spans = zip(starts.tolist(), lengths.tolist(), strict=True)
        crcs = np.fromiter(
            (value(data[a : a + n]) for a, n in spans),
            dtype=np.uint32,
            count=len(heads),
        )
        rot = (crcs >> np.uint32(15)) | (crcs << np.uint32(17))
        masked = (rot.astype(np.uint64) + _MASK_DELTA).astype(np.uint32)
        bad = masked != gather_u32(buf, starts + lengths)
        for i in np.flatnonzero(bad).tolist():
            rec.note_record(
                "corrupt_record",
                f"record at byte {int(heads[i])} failed its data checksum; skipped",
                int(heads[i]),
            )
        starts = starts[~bad]
        lengths = lengths[~bad]
    rec.first = rec.total
    rec.total += len(starts)
    rec.starts = starts
    rec.lengths = lengths


def _truncated(path: str, read: int, size: int) -> IngestNote:
    return IngestNote(
        code="truncated",
        message=f"file ends inside a record: read {read} of {size} bytes",
        path=path,
        details={"bytes_read": read, "file_size": size},
    )


def _open(path: Path) -> tuple[Records, bool]:
    """Memory-map ``path``: (records to scan, whether there is anything to scan).

    Empty and unreadable files give a note, not an error.
    """
    name = str(path)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size == 0:
                rec = _new_records(b"", name)
                rec.notes.append(IngestNote(code="empty", message="event file is empty", path=name))
                return rec, False
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        rec = _new_records(b"", name)
        rec.notes.append(
            IngestNote(code="unreadable", message=f"cannot read event file: {exc}", path=name)
        )
        return rec, False
    rec = _new_records(data, name)
    rec._mmap = data
    return rec, True


def iter_records(
    path: Path, verify_checksums: bool = False, window: int | None = None
) -> Iterator[Records]:
    """Index the records of ``path`` one window (``WINDOW`` bytes) at a time.

    Yields the same :class:`Records` at least once, each time holding the next window's
    records (possibly none); notes accumulate on it.  Consume each window before asking
    for the next: the pages of finished windows are given back to the kernel, so memory
    stays about one window whatever the file size (they are re-read if touched again).
    """
    rec, readable = _open(path)
    if not readable:
        yield rec
        return
    data = rec._mmap
    assert data is not None
    yielded = False
    for part in _scan_windows(data, rec, verify_checksums, RESYNC_WINDOW, window or WINDOW):
        yielded = True
        yield part
    rec.release(rec.size)
    if not yielded:
        yield rec


def read_records(path: Path, verify_checksums: bool = False) -> Records:
    """Memory-map ``path`` and index all its records; unreadable files give a note."""
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    rec = None
    for rec in iter_records(path, verify_checksums):
        starts.append(rec.starts)
        lengths.append(rec.lengths)
    assert rec is not None
    rec.starts = np.concatenate(starts)
    rec.lengths = np.concatenate(lengths)
    rec.first = 0
    rec._released = 0
    return rec
