"""The corpus store: one gzipped JSON-lines file, one record per trained run.

A record is ``{"id", "family", "arch", "dataset", "format", "cause", "severity",
"intended", "config", "series"}``: ``intended`` is the list of core states the cause
was built to produce (empty = healthy), ``series`` maps a canonical series name
(``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``grad_norm``) to
``[steps, values]`` with non-finite values as the strings ``"nan"``, ``"inf"``,
``"-inf"`` (JSON has no NaN). Runs are appended as new gzip members, so an interrupted
campaign loses at most the run being written and resumes by skipping stored ids.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STORE = HERE / "runs.jsonl.gz"
CORE = ("divergence", "underfit", "overfit", "plateau", "batchnorm_collapse")


def encode_value(v: float) -> float | str:
    """6 significant digits (the float32 loggers write about 7), non-finite as a string."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(f"{v:.6g}")


def decode_value(v: float | str) -> float:
    return float(v)


def append(records: list[dict[str, Any]], path: Path = STORE) -> None:
    """Append records as one gzip member (a crash mid-write loses only this member)."""
    if not records:
        return
    text = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
    with open(path, "ab") as fh:
        fh.write(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def iter_records(path: Path = STORE) -> Iterator[dict[str, Any]]:
    """Every complete record; a truncated final member (killed writer) is ignored."""
    if not path.exists():
        return
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(data[pos:])
        except zlib.error:
            return
        if not d.eof:
            return
        for line in chunk.decode("utf-8").splitlines():
            if line.strip():
                yield json.loads(line)
        pos = len(data) - len(d.unused_data)


def record(run_id: str, path: Path = STORE) -> dict[str, Any]:
    """One stored run by id (KeyError when the store lacks it)."""
    for rec in iter_records(path):
        if rec["id"] == run_id:
            return rec
    raise KeyError(f"{run_id} is not in {path}")


def replace(records: list[dict[str, Any]], path: Path = STORE) -> int:
    """Rewrite the records with these ids in place; returns how many were replaced.

    Every other gzip member is copied byte for byte and the order of the records is kept,
    so the file differs only in the members that held a replaced run. The new file is
    written beside the old one and renamed over it (a crash leaves the old file whole).
    """
    new = {r["id"]: r for r in records}
    data = path.read_bytes()
    parts: list[bytes] = []
    done: set[str] = set()
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        chunk = d.decompress(data[pos:])
        if not d.eof:
            raise ValueError(f"{path}: truncated gzip member at byte {pos}")
        end = len(data) - len(d.unused_data)
        lines = [ln for ln in chunk.decode("utf-8").splitlines() if ln.strip()]
        ids = [json.loads(ln)["id"] for ln in lines]
        if new.keys().isdisjoint(ids):
            parts.append(data[pos:end])
        else:
            out = []
            for rid, ln in zip(ids, lines, strict=True):
                if rid in new:
                    done.add(rid)
                    ln = json.dumps(new[rid], separators=(",", ":"), sort_keys=True)
                out.append(ln + "\n")
            parts.append(gzip.compress("".join(out).encode("utf-8"), compresslevel=9,
                                       mtime=0))
        pos = end
    missing = sorted(new.keys() - done)
    if missing:
        raise KeyError(f"not in {path}: {', '.join(missing)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(parts))
    os.replace(tmp, path)
    return len(done)


def load(path: Path = STORE) -> list[dict[str, Any]]:
    """All records, last one winning for a repeated id."""
    by_id: dict[str, dict[str, Any]] = {}
    for rec in iter_records(path):
        by_id[rec["id"]] = rec
    return [by_id[k] for k in sorted(by_id)]


def series(rec: dict[str, Any], name: str) -> tuple[list[int], list[float]] | None:
    """One series of a record as (steps, float values), or None when not logged."""
    s = rec["series"].get(name)
    if not s:
        return None
    steps, values = s
    return list(steps), [decode_value(v) for v in values]
