"""Load a run for rule tests: the real ingest when it exists, a small fallback otherwise.

The rule tests must not depend on the order in which the ingest modules land, so this
module first tries ``diagnose.discover.discover`` + ``diagnose.ingest.load_run`` and,
when they are missing or fail, reads the few layouts the fixtures and the real logs use:
CSV metric tables (Keras CSVLogger, Lightning metrics.csv, Ultralytics results.csv),
Keras-history-like JSON, JSON-lines (detectron2 metrics.json) and TensorBoard event files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.run import Histogram, Run, empty_scalars, make_scalars

_STEP_COLS = ("step", "global_step", "iteration", "iter")
_EPOCH_COLS = ("epoch", "epochs")


def load_any(path: Path) -> Run:
    """The run at ``path`` (a folder or a file)."""
    path = Path(path)
    try:
        from diagnose.discover import discover
        from diagnose.ingest import load_run

        sources, errors = discover([str(path)])
        if sources and not errors:
            return load_run(sources[0])
    except Exception:  # the real ingest is not there yet, or failed: use the fallback
        pass
    return load_fallback(path)


def _num(cell: str) -> float | None:
    cell = cell.strip()
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _csv_frames(file: Path) -> list[pd.DataFrame]:
    df = pd.read_csv(file, dtype=str, keep_default_na=False, skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    cols = {c.lower(): c for c in df.columns}
    step_col = next((cols[c] for c in _STEP_COLS if c in cols), None)
    if step_col is None:
        step_col = next((cols[c] for c in _EPOCH_COLS if c in cols), None)
    if step_col is None:
        steps = np.arange(len(df))
    else:
        steps = np.array([_num(x) if _num(x) is not None else -1 for x in df[step_col]])
    frames = []
    for col in df.columns:
        if col == step_col or col.lower() in _EPOCH_COLS + _STEP_COLS:
            continue
        vals = [_num(x) for x in df[col]]
        keep = [i for i, v in enumerate(vals) if v is not None and steps[i] >= 0]
        if not keep:
            continue
        frames.append(
            make_scalars(col, steps[keep].astype("int64"), [vals[i] for i in keep])
        )
    return frames


def _json_number(x):
    if x is None:
        return None
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    if isinstance(x, str) and x.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(x.replace("inity", ""))
    return None


def _history_frames(file: Path) -> list[pd.DataFrame]:
    data = json.loads(file.read_text())
    metrics = data.get("metrics", data)
    epochs = data.get("epochs")
    frames = []
    for name, values in metrics.items():
        if not isinstance(values, list):
            continue
        steps = epochs if epochs and len(epochs) == len(values) else list(range(len(values)))
        vals = [_json_number(v) for v in values]
        keep = [i for i, v in enumerate(vals) if v is not None]
        frames.append(make_scalars(name, [int(steps[i]) for i in keep], [vals[i] for i in keep]))
    return frames


def _jsonl_frames(file: Path) -> list[pd.DataFrame]:
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    cols: dict[str, tuple[list, list]] = {}
    for row in rows:
        step = row.get("iteration", row.get("step"))
        if step is None:
            continue
        for k, v in row.items():
            if k in ("iteration", "step"):
                continue
            num = _json_number(v)
            if num is None:
                continue
            cols.setdefault(k, ([], []))
            cols[k][0].append(int(step))
            cols[k][1].append(num)
    return [make_scalars(k, s, v) for k, (s, v) in cols.items()]


def _histogram(tag: str, step: int, wall: float, h) -> Histogram:
    limits = list(h.bucket_limit)
    counts = list(h.bucket)
    lefts = [h.min, *limits[:-1]]
    rights = [min(r, h.max) for r in limits]
    buckets = np.array([[a, b, c] for a, b, c in zip(lefts, rights, counts, strict=False)],
                       dtype="float64").reshape(-1, 3)
    return Histogram(tag, step, wall, buckets, h.min, h.max, h.num, h.sum, h.sum_squares)


def _tb_frames(folder: Path, split: str | None,
               hists: list[Histogram] | None = None) -> list[pd.DataFrame]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    tags, steps, values = [], [], []
    for file in sorted(folder.glob("events.out.tfevents.*")):
        try:
            for ev in EventFileLoader(str(file)).Load():
                for v in ev.summary.value:
                    kind = v.WhichOneof("value")
                    if kind == "histo" and hists is not None:
                        hists.append(_histogram(v.tag, ev.step, ev.wall_time, v.histo))
                        continue
                    if kind == "simple_value":
                        val = v.simple_value
                    elif kind == "tensor":
                        arr = tensor_util.make_ndarray(v.tensor)
                        if arr.size != 1 or arr.dtype.kind not in "fiu":
                            continue
                        val = float(arr.reshape(-1)[0])
                    else:
                        continue
                    tags.append(v.tag)
                    steps.append(ev.step)
                    values.append(val)
        except Exception:
            continue
    if not tags:
        return []
    return [make_scalars(tags, steps, values, split=split)]


def load_fallback(path: Path) -> Run:
    """Read ``path`` with the fallback readers above."""
    path = Path(path)
    frames: list[pd.DataFrame] = []
    folder = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    fmt = "fallback"
    for f in files:
        name = f.name
        if name.endswith((".csv", ".log")) and f.stat().st_size > 0:
            head = f.read_text(errors="replace").split("\n", 1)[0]
            if "," in head:
                frames += _csv_frames(f)
        elif name == "history.json":
            frames += _history_frames(f)
        elif name == "metrics.json" or name.endswith(".jsonl"):
            frames += _jsonl_frames(f)
    hists: list[Histogram] = []
    if not frames and path.is_dir():
        tb_dirs = sorted({p.parent for p in path.rglob("events.out.tfevents.*")})
        for d in tb_dirs:
            split = {"train": "train", "validation": "val"}.get(d.name)
            frames += _tb_frames(d, split, hists)
    scalars = pd.concat(frames, ignore_index=True) if frames else empty_scalars()
    run = Run(run_id=".", path=folder, format=fmt, scalars=scalars, histograms=hists)
    return run.finalize()


def finite_or_none(x: float) -> float | None:
    """Small helper for assertions on evidence numbers."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None
