"""TFRecord framing under damage: truncation, bit flips, garbage, fuzzing.

Inputs are event files written by torch's SummaryWriter and then damaged byte by byte.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import google_crc32c
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.ingest import tfrecord
from diagnose.ingest.tensorboard import load_tensorboard
from diagnose.ingest.tfrecord import (
    HEADER,
    iter_records,
    length_crc_ok,
    masked_crc32c,
    read_records,
    scan_records,
)
from diagnose.sources import RunSource, SourceFile
from tests import fixtures_tensorboard as fx

HEADER_ONLY = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared/real_logs/peer_fixtures/edge_cases/tfevents_header_only_40B"
)


def frame(data: bytes) -> bytes:
    """One record as TensorFlow's writer frames it."""
    head = struct.pack("<Q", len(data))
    return (
        head
        + struct.pack("<I", masked_crc32c(head))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = fx.write_bulk_scalars(tmp_path_factory.mktemp("tf"), tags=3, steps=20)
    (path,) = list(folder.iterdir())
    return path.read_bytes()


def load_bytes(data: bytes, folder: Path, verify: bool = False):
    path = folder / "events.out.tfevents.0.test"
    path.write_bytes(data)
    return load_tensorboard(
        RunSource("r", folder, [SourceFile(path, "tensorboard")]), verify_checksums=verify
    )


def test_masked_crc_matches_reference_values():
    # masked CRC of b"" and of the 8 length bytes of a 24-byte record, from TF's writer
    c = int(google_crc32c.value(b"abc"))
    assert masked_crc32c(b"abc") == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    blob = frame(b"x" * 24) + frame(b"") + frame(b"y" * 300)
    buf = np.frombuffer(blob, np.uint8)
    assert length_crc_ok(buf, np.array([0, 40, 56])).tolist() == [True, True, True]
    rec = scan_records(blob)
    assert rec.lengths.tolist() == [24, 0, 300] and not rec.notes
    assert all(rec.data_ok(i) for i in range(3))


def test_every_truncation_of_last_record(torch_file: bytes, tmp_path: Path):
    full = scan_records(torch_file)
    n = len(full)
    last_start = int(full.starts[-1]) - HEADER
    assert not full.notes and full.bytes_read == len(torch_file)
    for cut in range(last_start, len(torch_file)):
        rec = scan_records(torch_file[:cut])
        assert len(rec) == n - 1
        if cut == last_start:
            assert not rec.notes
        else:
            (note,) = rec.notes
            assert note.code == "truncated"
            assert note.details == {"bytes_read": last_start, "file_size": cut}
            assert f"read {last_start} of {cut} bytes" in note.message
    # end to end, a few cuts: partial data plus the note, never an exception
    for cut in (last_start + 1, last_start + HEADER, len(torch_file) - 1):
        run = load_bytes(torch_file[:cut], tmp_path)
        assert len(run.scalars) == 3 * 20 - 1
        assert [n.code for n in run.notes] == ["truncated"]


def test_flipped_length_bit_resynchronises(torch_file: bytes):
    rec = scan_records(torch_file)
    k = 10
    off = int(rec.starts[k]) - HEADER
    damaged = bytearray(torch_file)
    damaged[off + 1] ^= 0x04
    out = scan_records(bytes(damaged))
    assert len(out) == len(rec) - 1
    assert out.starts.tolist() == np.delete(rec.starts, k).tolist()
    (note,) = out.notes
    assert note.code == "corrupt_record" and note.details["offset"] == off
    assert note.details["resync"] == int(rec.starts[k + 1]) - HEADER


def test_flipped_length_bit_in_last_record_stops(torch_file: bytes):
    rec = scan_records(torch_file)
    off = int(rec.starts[-1]) - HEADER
    damaged = bytearray(torch_file)
    damaged[off] ^= 0x01
    out = scan_records(bytes(damaged))
    assert len(out) == len(rec) - 1
    (note,) = out.notes
    assert note.code == "corrupt_record" and "reading stopped" in note.message


def test_flipped_payload_bit(torch_file: bytes, tmp_path: Path):
    rec = scan_records(torch_file)
    k = 5  # a simple_value event: wall_time(9) step(2) summary...
    start = int(rec.starts[k])
    # A flipped bit inside the value parses fine: only --verify-checksums catches it.
    value_byte = start + int(rec.lengths[k]) - 1
    damaged = bytearray(torch_file)
    damaged[value_byte] ^= 0x10
    assert len(load_bytes(bytes(damaged), tmp_path).scalars) == 60
    run = load_bytes(bytes(damaged), tmp_path, verify=True)
    assert len(run.scalars) == 59
    assert [n.code for n in run.notes] == ["corrupt_record"]
    # A flip that breaks the protobuf structure is caught by the data CRC either way.
    broken = bytearray(torch_file)
    broken[start + 9] = 0xFF  # invalid wire type where the step field starts
    run = load_bytes(bytes(broken), tmp_path)
    assert len(run.scalars) == 59
    (note,) = run.notes
    assert note.code == "corrupt_record" and "data checksum" in note.message


def test_zero_length_garbage_and_header_only(tmp_path: Path):
    run = load_bytes(b"", tmp_path)
    assert run.scalars.empty and [n.code for n in run.notes] == ["empty"]
    garbage = np.random.default_rng(7).bytes(10_000)
    rec = scan_records(garbage)
    assert len(rec) == 0 and rec.notes and rec.notes[0].code in ("corrupt_record", "truncated")
    assert load_bytes(garbage, tmp_path).scalars.empty
    header_only = next(HEADER_ONLY.glob("events*"), None) if HEADER_ONLY.is_dir() else None
    data = header_only.read_bytes() if header_only else frame(b"\x1a\x0dbrain.Event:2")
    rec = read_records(header_only) if header_only else scan_records(data)
    assert len(rec) == 1 and not rec.notes
    run = load_bytes(data, tmp_path)
    assert run.scalars.empty and not run.notes


def _sequential_offsets(data: bytes) -> list[int]:
    """The plain one-record-at-a-time walk, for comparison with the bulk walk."""
    out, pos = [], 0
    while pos + HEADER <= len(data):
        out.append(pos)
        pos += struct.unpack_from("<Q", data, pos)[0] + HEADER + 4
    if out and out[-1] + HEADER + struct.unpack_from("<Q", data, out[-1])[0] + 4 > len(data):
        out.pop()
    return out


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Long enough (2,801 records, 7 tags a step) for the walk to guess and verify lengths."""
    folder = fx.write_bulk_scalars(tmp_path_factory.mktemp("long"), tags=7, steps=400)
    (path,) = list(folder.iterdir())
    return path.read_bytes()


def test_bulk_walk_equals_sequential_walk(long_file: bytes):
    rec = scan_records(long_file)
    assert (rec.starts - HEADER).tolist() == _sequential_offsets(long_file)
    assert len(rec) == 2801 and not rec.notes
    # a record in the guessed region with a different length breaks the pattern there
    extra = frame(b"\x09" + b"\x00" * 8 + b"\x1a\x0dbrain.Event:2")
    k = int(rec.starts[2000]) - HEADER
    spliced = long_file[:k] + extra + long_file[k:]
    out = scan_records(spliced)
    assert (out.starts - HEADER).tolist() == _sequential_offsets(spliced)
    assert len(out) == 2802 and not out.notes


def test_damage_inside_guessed_region(long_file: bytes):
    rec = scan_records(long_file)
    k = 1500
    off = int(rec.starts[k]) - HEADER
    damaged = bytearray(long_file)
    damaged[off + 2] ^= 0x80
    out = scan_records(bytes(damaged))
    assert out.starts.tolist() == np.delete(rec.starts, k).tolist()
    assert [n.code for n in out.notes] == ["corrupt_record"]
    cut = int(rec.starts[2400]) + 5
    out = scan_records(long_file[:cut])
    assert len(out) == 2400 and [n.code for n in out.notes] == ["truncated"]


def test_verify_checksums_on_clean_file(torch_file: bytes):
    assert len(scan_records(torch_file, verify_checksums=True)) == 61  # + file_version


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes):
    rec = scan_records(data, resync_window=4096)
    assert len(rec.starts) == len(rec.lengths)
    ends = rec.starts + rec.lengths + 4
    assert (ends <= len(data)).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_damaged_event_files(data: st.DataObject):
    base = bytearray(_small_file())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = data.draw(st.integers(0, max(len(base) - 1, 0)))
        if op == "flip" and base:
            base[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del base[pos:]
        elif op == "insert":
            base[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
        elif base:
            base[pos] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as tmp:
        run = load_bytes(bytes(base), Path(tmp), verify=data.draw(st.booleans()))
    assert len(run.scalars) <= 3 * 20


_SMALL: list[bytes] = []


def _small_file() -> bytes:
    if not _SMALL:
        with tempfile.TemporaryDirectory() as tmp:
            folder = fx.write_bulk_scalars(Path(tmp), tags=3, steps=20)
            _SMALL.append(next(folder.iterdir()).read_bytes())
    return _SMALL[0]


_LONG: list[bytes] = []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_bulk_walk_on_damaged_long_file(data: st.DataObject):
    """Damage anywhere in a file long enough for the guessed walk: the records returned
    are well-formed (valid length CRC, inside the file, in order, not overlapping)."""
    if not _LONG:
        with tempfile.TemporaryDirectory() as tmp:
            folder = fx.write_bulk_scalars(Path(tmp), tags=5, steps=300)
            _LONG.append(next(folder.iterdir()).read_bytes())
    blob = bytearray(_LONG[0])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()):
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=9))
    rec = scan_records(bytes(blob))
    heads = rec.starts - HEADER
    buf = np.frombuffer(bytes(blob), np.uint8)
    assert length_crc_ok(buf, heads).all()
    ends = rec.starts + rec.lengths + 4
    assert (ends <= len(blob)).all() and (heads[1:] >= ends[:-1]).all()
    assert len(rec) >= 1500 - 3 * 2 or rec.notes


def _same_scan(a, b) -> None:
    assert a.starts.tolist() == b.starts.tolist()
    assert a.lengths.tolist() == b.lengths.tolist()
    assert a.bytes_read == b.bytes_read
    assert [(n.code, n.message, n.details) for n in a.notes] == [
        (n.code, n.message, n.details) for n in b.notes
    ]


@pytest.mark.parametrize("window", [1, 13, 997, 4096, 50_000])
def test_windowed_scan_equals_single_window(long_file: bytes, window: int):
    """Walking a few bytes at a time finds exactly what one walk over the file finds."""
    whole = scan_records(long_file)
    heads = whole.starts - HEADER
    ends = whole.starts + whole.lengths + 4
    # some record straddles a window boundary (starts in one window, ends in the next)
    assert ((heads // window) != ((ends - 1) // window)).any()
    _same_scan(scan_records(long_file, window=window), whole)
    # a truncated tail: the last record is cut inside a later window
    cut = int(whole.starts[-3]) + 5
    short = scan_records(long_file[:cut], window=window)
    _same_scan(short, scan_records(long_file[:cut]))
    assert len(short) == len(whole) - 3 and [n.code for n in short.notes] == ["truncated"]
    # a header cut short (fewer than HEADER bytes left) and a bad length CRC (resync)
    _same_scan(
        scan_records(long_file[: int(heads[-1]) + 5], window=window),
        scan_records(long_file[: int(heads[-1]) + 5]),
    )
    damaged = bytearray(long_file)
    damaged[int(heads[1500]) + 1] ^= 0x04
    _same_scan(scan_records(bytes(damaged), window=window), scan_records(bytes(damaged)))
    # with data CRCs checked
    damaged = bytearray(long_file)
    damaged[int(whole.starts[700]) + 3] ^= 0x01
    _same_scan(
        scan_records(bytes(damaged), window=window, verify_checksums=True),
        scan_records(bytes(damaged), verify_checksums=True),
    )


def test_iter_records_windows_match_read_records(long_file: bytes, tmp_path: Path):
    """The file read window by window (records numbered across windows) equals one read."""
    path = tmp_path / "events.out.tfevents.0.test"
    cut = len(long_file) - 7  # truncated tail
    path.write_bytes(long_file[:cut])
    whole = scan_records(long_file[:cut])
    starts, lengths, firsts = [], [], []
    for rec in iter_records(path, window=4096):
        assert rec.first == sum(len(s) for s in starts)
        firsts.append(rec.first)
        starts.append(rec.starts.copy())
        lengths.append(rec.lengths.copy())
    assert len(firsts) > 10
    assert np.concatenate(starts).tolist() == whole.starts.tolist()
    assert np.concatenate(lengths).tolist() == whole.lengths.tolist()
    assert rec.total == len(whole) and rec.bytes_read == whole.bytes_read
    assert [n.details for n in rec.notes] == [n.details for n in whole.notes]
    _same_scan(read_records(path), whole)


def test_windowed_load_equals_single_window(long_file: bytes, tmp_path: Path, monkeypatch):
    """End to end, through the fast path: small windows give the same Run."""
    cut = len(long_file) - 7
    damaged = bytearray(long_file[:cut])
    whole = scan_records(long_file)
    damaged[int(whole.starts[900]) - HEADER + 1] ^= 0x04  # bad length CRC: resync
    for verify in (False, True):
        single = load_bytes(bytes(damaged), tmp_path, verify=verify)
        monkeypatch.setattr(tfrecord, "WINDOW", 1000)
        windowed = load_bytes(bytes(damaged), tmp_path, verify=verify)
        monkeypatch.undo()
        pd.testing.assert_frame_equal(windowed.scalars, single.scalars)
        assert [(n.code, n.details) for n in windowed.notes] == [
            (n.code, n.details) for n in single.notes
        ]
        assert [n.code for n in single.notes] == ["corrupt_record", "truncated"]
        assert len(single.scalars) == 2800 - 2
