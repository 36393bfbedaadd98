"""Wide metric tables: Keras CSVLogger, Lightning metrics.csv, Ultralytics results.csv, any CSV/TSV.

Every CSV family is a wide table (one column per metric, one row per logged step) that
differs only in which column is the step, which cells mean "not logged", and how a
resumed run shows up.  So one reader parses the text into cells, and a small per-kind
profile says which column is the step, which is the wall time and how repeats are read.
The shared helpers here (:class:`LogReadError`, :func:`read_text`, :func:`purge_restarts`)
are used by the other non-TensorBoard loaders as well.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.metrics import SPLIT_FOLDERS, higher_is_better, is_loss, normalize_tag
from diagnose.run import IngestNote, Run, empty_scalars, make_scalars
from diagnose.sources import RunSource, SourceFile

CSV_KINDS = ("keras_csv", "lightning_csv", "ultralytics", "csv")

#: Steps beyond this are garbage, not a step (int64 must hold them and their sums).
MAX_STEP = 2**62

#: How much of a file :func:`sniff_csv` reads.
SNIFF_BYTES = 8192

#: Step-like column names, best first (lower-case).
STEP_COLUMNS = ("step", "global_step", "iteration", "iter", "it", "batch")
EPOCH_COLUMNS = ("epoch", "epochs")
#: Columns that hold an absolute wall-clock time in seconds (generic tables).
WALL_COLUMNS = ("wall time", "wall_time", "walltime", "timestamp")

#: Cells meaning "not logged here" (Keras writes NA; Lightning leaves the cell empty).
_MISSING = frozenset({"", "na", "n/a", "null", "none", "-"})
#: Cells that ARE a value: a NaN the job really logged (evidence, kept).
_NAN_TOKENS = frozenset({"nan", "-nan", "+nan"})

#: Column names that mark a per-sample table (predictions, labels), not a metrics log.
_SAMPLE_COLUMNS = frozenset(
    {
        "id",
        "idx",
        "index",
        "filename",
        "file",
        "path",
        "filepath",
        "image",
        "image_id",
        "img",
        "label",
        "labels",
        "target",
        "class",
        "class_name",
        "text",
        "sentence",
        "prediction",
        "predictions",
        "pred",
        "name",
        "url",
        "category",
        "x",
        "y",
    }
)
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+(?:e[-+]?\d+)?$")
_TB_EXPORT = re.compile(r"^run[-_](?P<run>.*?)[-_]tag[-_](?P<tag>.+)$")


class LogReadError(Exception):
    """A log file that cannot be read at all; the message is one line for the error list."""


# ---------------------------------------------------------------------------
# Shared helpers (used by every non-TensorBoard loader)
# ---------------------------------------------------------------------------


def decode_bytes(raw: bytes, path: Path | str = "") -> tuple[str, list[IngestNote]]:
    """Bytes -> text: UTF-8 (BOM tolerated), UTF-16 by BOM, else latin-1 with a note.

    Logs copied off Windows machines are sometimes cp1252/latin-1 in a header cell; the
    numbers are still ASCII, so reading them beats rejecting the run.  Binary content
    (NUL bytes without a UTF-16 BOM) is not a log: :class:`LogReadError`.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            raise LogReadError("not valid UTF-16 text") from exc
    if b"\x00" in raw:
        raise LogReadError("binary file, not text")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        note = IngestNote(
            code="encoding",
            message=f"not UTF-8 (bad byte at offset {exc.start}); read as latin-1",
            path=str(path),
        )
        return raw.decode("latin-1"), [note]


def read_text(path: Path) -> tuple[str, list[IngestNote]]:
    """Whole file as text (see :func:`decode_bytes`); empty or unreadable -> LogReadError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LogReadError(f"cannot read file: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise LogReadError("empty file")
    return decode_bytes(raw, path)


def purge_restarts(
    long: pd.DataFrame,
    path: Path | str,
    *,
    equal_is_restart: bool,
    exempt: Iterable[str] = (),
) -> tuple[pd.DataFrame, list[IngestNote]]:
    """Keep, per tag, only points not superseded by a later point at the same or an earlier step.

    This is TensorBoard's purge rule: when a resumed job logs step ``s`` again, whatever
    the dead job wrote at steps ``>= s`` is replaced.  ``long`` must be in file order.
    A backward jump is a ``restart`` note; a repeated step is one too when the format
    writes each step once (``equal_is_restart``: Keras rows, detectron2 records), else a
    ``duplicate_steps`` note.  ``exempt`` tags (Lightning's ``epoch``, repeated on every
    row by design) are de-duplicated silently.
    """
    if long.empty:
        return long, []
    df = long.reset_index(drop=True)
    tag = df["tag"].astype("string")
    step = df["step"]
    prev_max = step.groupby(tag, sort=False).cummax().groupby(tag, sort=False).shift(1)
    rev = df.iloc[::-1]
    rev_tag = tag.iloc[::-1]
    later_min = (
        rev["step"].groupby(rev_tag, sort=False).cummin().groupby(rev_tag, sort=False).shift(1)
    ).reindex(df.index)
    keep = later_min.isna() | (step < later_min)
    if bool(keep.all()):
        return df, []
    counted = ~tag.isin(list(exempt)).to_numpy()
    back = (step < prev_max).to_numpy() & counted
    equal = (step == prev_max).to_numpy() & counted
    notes: list[IngestNote] = []
    restart_mask = back | equal if equal_is_restart else back
    dropped = int((~keep.to_numpy() & counted).sum())
    if restart_mask.any():
        starts = (
            restart_mask
            & ~pd.Series(restart_mask)
            .groupby(tag, sort=False)
            .shift(1, fill_value=False)
            .to_numpy()
        )
        steps = sorted({int(s) for s in step.to_numpy()[starts]})
        shown = ", ".join(str(s) for s in steps[:5]) + (" ..." if len(steps) > 5 else "")
        notes.append(
            IngestNote(
                code="restart",
                message=(
                    f"log restarts at step {shown}; {dropped} earlier point(s) at those "
                    "steps or later were replaced by the resumed run's"
                ),
                path=str(path),
                step=steps[0],
                details={"restart_steps": steps, "superseded_points": dropped},
            )
        )
    elif equal.any():
        notes.append(
            IngestNote(
                code="duplicate_steps",
                message=f"{int(equal.sum())} point(s) repeat a step already logged; kept the last",
                path=str(path),
                step=int(step.to_numpy()[equal][0]),
                details={"duplicates": int(equal.sum())},
            )
        )
    return df[keep.to_numpy()].reset_index(drop=True), notes


def new_run(source: RunSource, file: SourceFile, kind: str) -> Run:
    """An empty Run for one file of ``source``."""
    return Run(run_id=source.run_id, path=source.path, format=kind, sources=[Path(file.path)])


def scalars_from_long(
    tags: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    wall: np.ndarray | None,
    file: SourceFile,
    split: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long arrays -> the Run scalar table, applying the SourceFile's split / tag suffix."""
    if len(steps) == 0:
        return empty_scalars()
    tag_arr = np.asarray(tags, dtype=object)
    if file.tag_suffix:
        tag_arr = np.array([f"{t}/{file.tag_suffix}" for t in tag_arr], dtype=object)
    split_arg: object = file.split
    if split is not None and not file.split:
        split_arg = np.asarray(split, dtype=object)
    return make_scalars(tag_arr, steps, values, wall_time=wall, split=split_arg)


def finish_long(
    run: Run,
    long: pd.DataFrame,
    file: SourceFile,
    path: Path | str,
    *,
    equal_is_restart: bool,
    exempt: Iterable[str] = (),
) -> Run:
    """The common tail of every tabular loader: purge restarts, build the table, finalize.

    ``long`` has ``tag``, ``step`` and ``value`` columns in file order, and optionally
    ``wall_time`` and ``split``.
    """
    long, notes = purge_restarts(long, path, equal_is_restart=equal_is_restart, exempt=exempt)
    run.notes.extend(notes)
    run.scalars = scalars_from_long(
        long["tag"].to_numpy(),
        long["step"].to_numpy(),
        long["value"].to_numpy(),
        long["wall_time"].to_numpy() if "wall_time" in long else None,
        file,
        split=long["split"].to_numpy() if "split" in long else None,
    )
    return run.finalize()


# ---------------------------------------------------------------------------
# Sniffing
# ---------------------------------------------------------------------------


def _split_line(line: str, delim: str) -> list[str]:
    return next(csv.reader([line], delimiter=delim), [])


def _sniff_delimiter(lines: list[str], min_share: float = 0.8) -> str | None:
    """The delimiter that splits the header into >= 2 fields and most rows into as many.

    Sniffing asks for 80% of rows to agree (prose with commas must not pass); loading a
    file already known to be a table only needs some rows to agree, since damaged rows
    are then counted and skipped.
    """
    best: tuple[tuple[float, int], str] | None = None
    for delim in (",", "\t", ";", "|"):
        if delim not in lines[0]:
            continue
        width = len(_split_line(lines[0], delim))
        if width < 2:
            continue
        rows = lines[1:]
        agree = sum(len(_split_line(r, delim)) == width for r in rows) if rows else 1
        share = agree / len(rows) if rows else 1.0
        if share < min_share or share == 0:
            continue
        score = (share, width)
        if best is None or score > best[0]:
            best = (score, delim)
    return best[1] if best else None


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip())
    except ValueError:
        return False
    return True


def metric_like(name: str) -> bool:
    """A column name that reads as a training metric (loss, accuracy, lr, mAP...)."""
    metric, _ = normalize_tag(name)
    return is_loss(metric) or metric in ("lr", "grad_norm") or higher_is_better(metric) is not None


def _find(columns: list[str], wanted: Iterable[str]) -> int | None:
    low = [c.strip().lower() for c in columns]
    for name in wanted:
        if name in low:
            return low.index(name)
    return None


def classify_header(header: list[str], filename: str = "") -> str:
    """The CSV kind a header says: ultralytics, lightning_csv, keras_csv or csv."""
    names = [h.strip() for h in header]
    low = [n.lower() for n in names]
    first = low[0] if low else ""
    has_slash = any(n.startswith(("metrics/", "train/", "val/")) for n in low)
    if first == "epoch" and has_slash and any(n.startswith("metrics/") for n in low):
        return "ultralytics"
    if first == "epoch" and any(n.startswith(("x/lr", "lr/pg")) for n in low) and has_slash:
        return "ultralytics"
    if "step" in low and (
        "epoch" in low
        or filename == "metrics.csv"
        or any(n.endswith(("_step", "_epoch")) for n in low)
    ):
        return "lightning_csv"
    if first == "epoch" and "step" not in low:
        return "keras_csv"
    return "csv"


def _plausible_header(header: list[str]) -> bool:
    names = [h.strip() for h in header]
    if len(names) < 2 or sum(not n for n in names) > len(names) // 2:
        return False
    if all(_is_number(n) for n in names if n):
        return False  # no header row: nothing names the metrics
    return all(len(n) <= 100 and len(n.split()) <= 5 for n in names)


def sniff_csv(path: Path) -> str | None:
    """Kind of metrics table at ``path`` from its first few KB, or None when it is not one.

    Conservative on purpose: discovery calls this on every ``*.csv``/``*.tsv``/``*.log``
    it meets, and a label file or prediction dump read as a run would produce nonsense
    findings.  A table qualifies with a step/epoch column, or a metric-like column name
    (loss, acc, lr, mAP...) holding numbers and no per-sample columns (id, label, path).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        text, _ = decode_bytes(raw)
    except LogReadError:
        return None
    lines = text.splitlines()
    if len(raw) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the read cut the last line
    lines = [ln for ln in lines if ln.strip()][:40]
    if not lines:
        return None
    delim = _sniff_delimiter(lines)
    if delim is None:
        return None
    header = [h.strip() for h in _split_line(lines[0], delim)]
    if not _plausible_header(header):
        return None
    rows = [_split_line(ln, delim) for ln in lines[1:]]
    rows = [r for r in rows if len(r) == len(header)]
    kind = classify_header(header, Path(path).name.lower())
    low = [h.lower() for h in header]
    key = _find(header, STEP_COLUMNS + EPOCH_COLUMNS)
    if kind != "csv":
        if not rows:
            return kind  # header only: still this kind; the loader reports it empty
        if key is not None and any(_is_number(r[key]) for r in rows):
            return kind
        return None
    # Generic table: needs a step column or a metric-like column, with numbers in it.
    metric_cols = [i for i, h in enumerate(header) if i != key and metric_like(h)]
    if key is None and (not metric_cols or _SAMPLE_COLUMNS & set(low)):
        return None
    candidates = metric_cols or [i for i in range(len(header)) if i != key]
    if not rows:
        return "csv" if metric_cols else None
    if key is not None and not all(_is_number(r[key]) or not r[key].strip() for r in rows):
        return None
    numeric = any(_is_number(r[i]) for r in rows for i in candidates)
    return "csv" if numeric else None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _parse_table(
    text: str, path: Path, kind: str
) -> tuple[list[str], list[list[str]], str, list[IngestNote]]:
    """Text -> (header, rows of the header's width, delimiter, notes about rows dropped)."""
    notes: list[IngestNote] = []
    lines = text.splitlines()
    nonblank = [ln for ln in lines if ln.strip()]
    if not nonblank:
        raise LogReadError("empty file")
    delim = _sniff_delimiter(nonblank[:40], min_share=0.0)
    if delim is None:
        raise LogReadError("not a delimited table (no consistent separator)")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    table = [r for r in reader if len(r) > 1 or (r and r[0].strip())]
    header = [h.strip() for h in table[0]]
    width = len(header)
    body = table[1:]
    if body and not text.endswith(("\n", "\r")):
        last = body[-1]
        if len(last) < width or kind != "csv":
            body = body[:-1]
            notes.append(
                IngestNote(
                    code="truncated",
                    message="last line has no line end (job killed mid-write); dropped it",
                    path=str(path),
                    details={"line": delim.join(last)[:200]},
                )
            )
    good = [r for r in body if len(r) == width]
    bad = len(body) - len(good)
    lowered = [h.lower() for h in header]
    first = lowered[0]

    def is_header(row: list[str]) -> bool:
        return row[0].strip().lower() == first and [c.strip().lower() for c in row] == lowered

    repeats = [r for r in good if is_header(r)]
    if repeats:
        good = [r for r in good if not is_header(r)]
        notes.append(
            IngestNote(
                code="skipped_rows",
                message=f"{len(repeats)} repeated header row(s) skipped (files concatenated)",
                path=str(path),
            )
        )
    if bad:
        notes.append(
            IngestNote(
                code="skipped_rows",
                message=f"{bad} row(s) with a wrong number of fields skipped",
                path=str(path),
                details={"rows": bad, "expected_fields": width},
            )
        )
    return header, good, delim, notes


def _numeric_frame(
    cells: pd.DataFrame, names: list[str], path: Path, delim: str = ","
) -> tuple[np.ndarray, np.ndarray, list[IngestNote]]:
    """Cells (str) -> (values float64, present bool, notes).

    ``present`` is False for "not logged" cells (empty, NA), for quoted iterables and for
    cells that do not parse; the last two are counted in notes, never dropped silently.
    A written ``nan``/``inf`` is present: a diverged run's NaN is evidence.
    """
    notes: list[IngestNote] = []
    n_rows, n_cols = cells.shape
    flat = cells.to_numpy(dtype=object).ravel()
    values = np.array(  # a writable copy: decimal-comma cells are filled in below
        pd.to_numeric(pd.Series(flat), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    )
    present = ~np.isnan(values)
    # Only cells that did not parse need a closer look; most are empty (sparse rows).
    look = np.flatnonzero(~present & (flat != ""))
    bad: dict[str, int] = {}
    iterables: dict[str, int] = {}
    for i in look:
        cell = str(flat[i]).strip().strip('"').strip().lower()
        if cell in _MISSING:
            continue
        if cell in _NAN_TOKENS:
            present[i] = True
            continue
        if delim != "," and _DECIMAL_COMMA.match(cell):
            # Excel in a comma-decimal locale: "0,53" in a ';'-separated file.
            values[i] = float(cell.replace(",", "."))
            present[i] = True
            continue
        col = names[i % n_cols]
        if cell.startswith("[") and cell.endswith("]"):
            iterables[col] = iterables.get(col, 0) + 1
        else:
            bad[col] = bad.get(col, 0) + 1
    values = values.reshape(n_rows, n_cols)
    present = present.reshape(n_rows, n_cols)
    if iterables:
        total = sum(iterables.values())
        notes.append(
            IngestNote(
                code="unsupported",
                message=f'{total} list-valued cell(s) like "[a, b]" skipped (not scalars)',
                path=str(path),
                details={"columns": iterables},
            )
        )
    if bad:
        total = sum(bad.values())
        cols = ", ".join(sorted(bad)[:5])
        notes.append(
            IngestNote(
                code="bad_value",
                message=f"{total} cell(s) that are not numbers skipped (columns: {cols})",
                path=str(path),
                details={"columns": bad},
            )
        )
    return values, present, notes


def _integral_steps(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and bool(np.all(finite == np.round(finite)))


def load_csv(source: RunSource, file: SourceFile) -> Run:
    """Read one CSV-family file (kind from ``file.kind``, re-sniffed when not a CSV kind)."""
    path = Path(file.path)
    text, enc_notes = read_text(path)
    kind = file.kind if file.kind in CSV_KINDS else None
    if kind is None:
        kind = sniff_csv(path) or "csv"
    header, rows, delim, notes = _parse_table(text, path, kind)
    notes = enc_notes + notes
    if kind == "csv":
        # Discovery's sniff saw only the first rows; the header decides the profile.
        kind = classify_header(header, path.name.lower())
    if not rows:
        damaged = any(n.code in ("skipped_rows", "truncated") for n in notes)
        raise LogReadError("no complete data rows" if damaged else "header only, no data rows")
    run = new_run(source, file, kind)
    cells = pd.DataFrame(rows, columns=range(len(header)), dtype=object)
    values, present, cell_notes = _numeric_frame(cells, header, path, delim)
    notes += cell_notes

    step_idx, wall_idx, skip = _profile(kind, header)
    epoch_idx = _find(header, EPOCH_COLUMNS)
    n = len(rows)
    if step_idx is not None:
        steps = values[:, step_idx].copy()
        have = present[:, step_idx] & (np.abs(steps) < MAX_STEP)
        if kind == "lightning_csv" and epoch_idx is not None:
            fill = ~have & present[:, epoch_idx] & (np.abs(values[:, epoch_idx]) < MAX_STEP)
            steps[fill] = values[fill, epoch_idx]
            have = have | fill
        if not _integral_steps(steps[have]):
            notes.append(
                IngestNote(
                    code="unsupported",
                    message=f"column {header[step_idx]!r} is not whole numbers; row index used",
                    path=str(path),
                )
            )
            steps, have = np.arange(n, dtype="float64"), np.ones(n, dtype=bool)
        elif not have.all():
            notes.append(
                IngestNote(
                    code="skipped_rows",
                    message=f"{int((~have).sum())} row(s) without a step skipped",
                    path=str(path),
                )
            )
    else:
        steps, have = np.arange(n, dtype="float64"), np.ones(n, dtype=bool)
    wall = values[:, wall_idx] if wall_idx is not None else np.full(n, np.nan)

    metric_cols = [j for j in range(len(header)) if j not in skip and header[j]]
    tag_names, split_hint = _tag_names(header, path)
    rows_by_col = {j: np.flatnonzero(present[:, j] & have) for j in metric_cols}
    rows_by_col = {j: r for j, r in rows_by_col.items() if len(r)}
    if not rows_by_col:
        raise LogReadError("no numeric column")
    row_of = np.concatenate(list(rows_by_col.values()))
    col_of = np.concatenate([np.full(len(r), j) for j, r in rows_by_col.items()])
    # File order (row-major) matters for restarts: sort by row, then column.
    order = np.lexsort((col_of, row_of))
    row_of, col_of = row_of[order], col_of[order]
    long = pd.DataFrame(
        {
            "tag": np.asarray(tag_names, dtype=object)[col_of],
            "step": steps[row_of].astype("int64"),
            "value": values[row_of, col_of],
            "wall_time": wall[row_of],
        }
    )
    exempt = [tag_names[epoch_idx]] if epoch_idx is not None and epoch_idx not in skip else []
    if split_hint:
        long["split"] = split_hint
    run.notes.extend(notes)
    return finish_long(
        run, long, file, path,
        equal_is_restart=kind in ("keras_csv", "ultralytics"),
        exempt=exempt,
    )


def _profile(kind: str, header: list[str]) -> tuple[int | None, int | None, set[int]]:
    """(step column, wall-time column, columns that are not metrics) for a kind."""
    low = [h.lower() for h in header]
    epoch_idx = _find(header, EPOCH_COLUMNS)
    if kind in ("keras_csv", "ultralytics"):
        wall_idx = low.index("time") if kind == "ultralytics" and "time" in low else None
        skip = {i for i in (epoch_idx, wall_idx) if i is not None}
        return epoch_idx, wall_idx, skip
    if kind == "lightning_csv":
        step_idx = low.index("step") if "step" in low else None
        return step_idx, None, {i for i in (step_idx,) if i is not None}
    step_idx = _find(header, STEP_COLUMNS)
    wall_idx = _find(header, WALL_COLUMNS)
    if step_idx is None:
        step_idx = epoch_idx
    skip = {i for i in (step_idx, wall_idx) if i is not None}
    return step_idx, wall_idx, skip


def _tag_names(header: list[str], path: Path) -> tuple[list[str], str | None]:
    """Tags as written, and a split hint.

    A TensorBoard UI export (``Wall time,Step,Value``) names its one series in the file
    name, ``run-<run>-tag-<tag>.csv``; the run's last word gives the split when it is a
    Keras split folder (``..._validation``).
    """
    names = list(header)
    low = [h.lower() for h in header]
    if "value" in low and _find(header, WALL_COLUMNS) is not None and len(header) == 3:
        m = _TB_EXPORT.match(path.stem)
        names[low.index("value")] = m.group("tag") if m else path.stem
        if m:
            last = re.split(r"[-_/.]", m.group("run"))[-1].lower()
            return names, SPLIT_FOLDERS.get(last)
    return names, None
