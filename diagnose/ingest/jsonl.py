"""JSON-lines metric logs: detectron2 ``metrics.json`` and any one-object-per-line log.

detectron2's ``JSONWriter`` appends one ``json.dumps(record, sort_keys=True)`` per
logging period: ``iteration`` is the step, training scalars (``total_loss``, ``loss_*``,
``lr``, ``fast_rcnn/cls_accuracy``) share a record, and evaluation results arrive as a
separate record at the same iteration with ``<task>/<metric>`` keys (``bbox/AP``,
``segm/AP50``).  A resumed job appends to the same file, so iterations repeat: the later
records win (TensorBoard's purge rule) and a ``restart`` note says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnose.ingest.csv_logs import (
    MAX_STEP,
    LogReadError,
    SeriesCap,
    decode_bytes,
    finish_long,
    metric_like,
    new_run,
    read_text,
)
from diagnose.run import Run
from diagnose.sources import RunSource, SourceFile

#: Step keys, best first.
STEP_KEYS = ("iteration", "global_step", "step", "iter", "it", "epoch")
#: detectron2 evaluator task prefixes: their metrics are validation results.
D2_EVAL_TASKS = frozenset({"bbox", "segm", "keypoints", "sem_seg", "panoptic_seg"})
#: Record keys whose string value names the record's split (mmdet ``mode``).
SPLIT_KEYS = ("mode", "split", "phase")
SNIFF_BYTES = 8192


#: Lines longer than this are not parsed: a metrics record is a few KiB, and a record
#: with a million keys would cost seconds and a million series.
MAX_RECORD_CHARS = 1 << 20
#: Nesting deeper than this inside one record is not read (its leaves count as skipped).
MAX_DEPTH = 32
#: One JSON token: an opening or closing bracket, ``,``/``:``, a string, or a bare word.
_JSON_TOKEN = re.compile(
    r'\s*(?:([\[{])|([\]}])|([,:])|("(?:[^"\\]|\\.)*")|([^\s\[\]{},:"]+))', re.S
)


#: Several bare words in a list, each followed by a comma: ``0.5, 0.4, NaN,``.
_SCALAR_RUN = re.compile(r'(?:\s*[^\s\[\]{},:"]+\s*,)+')


class TooDeep(ValueError):
    """JSON nested deeper than the parser's recursion limit (about 1000 levels)."""


def loads(text: str) -> Any:
    """``json.loads`` whose too-deep nesting is a :class:`TooDeep` (a ValueError), never
    a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise TooDeep("JSON nested too deeply (over ~1000 levels)") from exc


def _json_tokens(text: str, pos: int) -> Iterator[tuple[int, str, int]]:
    """(kind 1-5, first char, end) per token from ``pos``; stops at a string with no end."""
    while True:
        m = _JSON_TOKEN.match(text, pos)
        if m is None or m.lastindex is None:
            return
        yield m.lastindex, text[m.start(m.lastindex)], m.end()
        pos = m.end()


def skip_json_value(text: str, pos: int) -> int | None:
    """End of the JSON value starting at ``pos`` without parsing it (no recursion), or
    None when the text ends first.  Used to step over a value too deep for ``json``."""
    depth = 0
    for kind, _, end in _json_tokens(text, pos):
        if kind == 1:
            depth += 1
        elif kind == 2:
            depth -= 1
            if depth <= 0:
                return end
        elif depth == 0 and kind in (4, 5):
            return end
    return None


def close_json(text: str) -> str | None:
    """A JSON document cut off mid-write, closed after its last complete value.

    Walks the tokens with an explicit stack (no recursion), remembers the last point
    where a value had just ended (or a container just opened), and returns the text up
    to there plus the brackets still open; None when no value ever completed.  A bare
    word touching the end of the text may be cut (``0.`` of ``0.12``), so it is dropped.
    Runs of plain numbers in a list (a Keras history) are skipped with one regex.
    """
    # top = (bracket, state, parent); states: k0 k colon v after (object), a0 v after (list)
    top: tuple[str, str, Any] | None = None
    safe: tuple[int, Any] | None = None
    n = len(text)
    pos = 0
    while True:
        if top is not None and top[0] == "[" and top[1] in ("v", "a0"):
            run = _SCALAR_RUN.match(text, pos)
            if run is not None:
                top = (top[0], "v", top[2])
                safe = (text.rfind(",", run.start(), run.end()), (top[0], "after", top[2]))
                pos = run.end()
        m = _JSON_TOKEN.match(text, pos)
        if m is None or m.lastindex is None:
            break
        kind, ch, end = m.lastindex, text[m.start(m.lastindex)], m.end()
        pos = end
        state = top[1] if top else "v"
        if kind == 1:
            if state not in ("v", "a0"):
                break
            parent = (top[0], "after", top[2]) if top else None
            top = (ch, "k0" if ch == "{" else "a0", parent)
            safe = (end, top)
        elif kind == 2:
            if top is None or state not in ("k0", "a0", "after") or ch != "]}"[top[0] == "{"]:
                break
            top = top[2]
            if top is None:
                return text[:end]
            safe = (end, top)
        elif kind == 3:
            if ch == "," and state == "after":
                top = (top[0], "k" if top[0] == "{" else "v", top[2])  # type: ignore[index]
            elif ch == ":" and state == "colon":
                top = (top[0], "v", top[2])  # type: ignore[index]
            else:
                break
        elif top is None or (kind == 5 and end >= n):
            break
        elif kind == 4 and state in ("k0", "k"):
            top = (top[0], "colon", top[2])
        elif state in ("v", "a0"):
            top = (top[0], "after", top[2])
            safe = (end, top)
        else:
            break
    if safe is None:
        return None
    cut, node = safe
    closers = []
    while node is not None:
        closers.append("}" if node[0] == "{" else "]")
        node = node[2]
    return text[:cut] + "".join(closers)


def _flat_numbers(record: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, float], int]:
    """Numeric leaves with '/'-joined keys, and how many leaves were skipped (not numbers,
    or nested deeper than :data:`MAX_DEPTH`).  Iterative: no recursion limit to hit."""
    out: dict[str, float] = {}
    skipped = 0
    stack: list[tuple[str, Mapping[str, Any], int]] = [(prefix, record, 0)]
    while stack:
        base, mapping, depth = stack.pop()
        nested: list[tuple[str, Mapping[str, Any], int]] = []
        for key, value in mapping.items():
            name = f"{base}/{key}" if base else str(key)
            if isinstance(value, Mapping):
                if depth >= MAX_DEPTH:
                    skipped += 1
                else:
                    nested.append((name, value, depth + 1))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)
            elif value is not None:
                skipped += 1
        stack.extend(reversed(nested))
    return out, skipped


def sniff_jsonl(path: Path) -> bool:
    """True when the file's first lines are JSON objects holding training metrics."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    try:
        text, _ = decode_bytes(raw)
    except LogReadError:
        return False
    lines = text.splitlines()
    if len(raw) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]
    lines = [ln for ln in lines if ln.strip()][:10]
    if not lines:
        return False
    stepped = 0
    bad = 0
    for line in lines:
        try:
            obj = loads(line)
        except ValueError:  # a damaged line (TooDeep included) does not decide; most do
            bad += 1
            if bad > len(lines) // 2:
                return False
            continue
        if not isinstance(obj, dict):
            return False
        numbers, _ = _flat_numbers(obj)
        step = next((k for k in STEP_KEYS if k in numbers), None)
        others = [k for k in numbers if k != step]
        if step is not None and any(metric_like(k) for k in others):
            return True
        stepped += step is not None and bool(others)
    # No metric-like names (an RL reward log...): a step key on several records will do;
    # one JSON object on one line is more likely a config or a summary.
    return stepped >= 2


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < MAX_STEP:
        return float(value)
    return None


def _iters_per_epoch(records: list[dict[str, Any]], step_key: str | None) -> int | None:
    """The iteration count per epoch when ``step_key`` counts within an epoch (mmdet v2).

    Such logs reset the counter whenever ``epoch`` goes up; read as a global step that
    would look like a restart at every epoch and lose all but the last one.  Returns None
    for a global counter (detectron2), where a backward jump is a real restart.
    """
    if step_key in (None, "epoch"):
        return None
    resets = 0
    last: tuple[float, float] | None = None
    top = 0.0
    for record in records:
        step, epoch = _number(record.get(step_key)), _number(record.get("epoch"))
        if step is None or epoch is None:
            continue
        top = max(top, step)
        if last is not None and step < last[0] and epoch > last[1]:
            resets += 1
        last = (step, epoch)
    return int(top) if resets else None


def load_jsonl(source: RunSource, file: SourceFile) -> Run:
    """Read a JSON-lines metric log into a Run (format ``jsonl``)."""
    path = Path(file.path)
    text, notes = read_text(path)
    run = new_run(source, file, "jsonl")
    run.notes.extend(notes)
    lines = text.splitlines()
    ends_clean = text.endswith(("\n", "\r"))
    records: list[dict[str, Any]] = []
    corrupt: list[int] = []
    deep: list[int] = []
    huge: list[int] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:
            huge.append(i + 1)
            continue
        try:
            obj = loads(line)
        except TooDeep:
            deep.append(i + 1)
            continue
        except ValueError:
            if i == len(lines) - 1 and not ends_clean:
                run.note(
                    "truncated",
                    "last line is cut off (job killed mid-write); dropped it",
                    path=str(path),
                    details={"line": line[:200]},
                )
            else:
                corrupt.append(i + 1)
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            corrupt.append(i + 1)
    if corrupt:
        run.note(
            "corrupt_record",
            f"{len(corrupt)} line(s) are not JSON objects; skipped (first at line {corrupt[0]})",
            path=str(path),
            details={"lines": corrupt[:20]},
        )
    if huge:
        run.note(
            "skipped_rows",
            f"{len(huge)} record(s) over {MAX_RECORD_CHARS // 1024} KiB skipped (first at "
            f"line {huge[0]}; a metrics record is a few KiB)",
            path=str(path),
            details={"lines": huge[:20]},
        )
    if deep:
        run.note(
            "corrupt_record",
            f"{len(deep)} record(s) nested too deeply to read (over ~1000 levels); skipped "
            f"(first at line {deep[0]})",
            path=str(path),
            details={"lines": deep[:20]},
        )
    if not records:
        raise LogReadError("no JSON records")

    step_key = next((k for k in STEP_KEYS if any(k in r for r in records[:200])), None)
    per_epoch = _iters_per_epoch(records, step_key)
    if per_epoch:
        run.note(
            "unsupported",
            f"{step_key!r} restarts at every epoch; step = epoch x {per_epoch} + {step_key}",
            path=str(path),
        )
    tags: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    splits: list[str | None] = []
    skipped = no_step = 0
    series = SeriesCap()
    for index, record in enumerate(records):
        numbers, n_skipped = _flat_numbers(record)
        mode = next(
            (str(record[k]).lower() for k in SPLIT_KEYS if isinstance(record.get(k), str)), ""
        )
        skipped += n_skipped - sum(isinstance(record.get(k), str) for k in SPLIT_KEYS)
        if step_key is None:
            step = index
        else:
            raw_step = numbers.pop(step_key, None)
            if raw_step is None or not abs(raw_step) < MAX_STEP:
                no_step += 1
                continue
            step = int(raw_step)
            epoch = _number(record.get("epoch"))
            if per_epoch and epoch is not None:
                step += int(epoch) * per_epoch
                if abs(step) >= MAX_STEP:
                    no_step += 1
                    continue
        split_hint = {"train": "train", "val": "val", "eval": "val", "test": "test"}.get(mode)
        for key, value in numbers.items():
            if not series.admit(key):
                continue
            tags.append(key)
            steps.append(step)
            values.append(value)
            head = key.split("/", 1)[0]
            splits.append("val" if "/" in key and head in D2_EVAL_TASKS else split_hint)
    if no_step:
        run.note(
            "skipped_rows", f"{no_step} record(s) without {step_key!r} skipped", path=str(path)
        )
    if skipped > 0:
        run.note("bad_value", f"{skipped} non-numeric value(s) skipped", path=str(path))
    series.note(run, path)
    if not tags:
        raise LogReadError("no numeric values in the JSON records")
    long = pd.DataFrame(
        {
            "tag": np.array(tags, dtype=object),
            "step": np.array(steps, dtype="int64"),
            "value": np.array(values, dtype="float64"),
            "split": np.array(splits, dtype=object),
        }
    )
    return finish_long(run, long, file, path, equal_is_restart=True)
