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
import errno
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.metrics import SPLIT_FOLDERS, higher_is_better, is_loss, normalize_tag
from diagnose.run import IngestNote, Run, empty_scalars, make_scalars
from diagnose.sources import RunSource, SourceFile

CSV_KINDS = ("keras_csv", "lightning_csv", "ultralytics", "csv")

#: Steps beyond this are garbage, not a step (int64 must hold them and their sums).
MAX_STEP = 2**62

#: At most this many columns (distinct series, for the JSON families) are read per file;
#: a wider table keeps its first ones, with a note.
MAX_COLUMNS = 10_000

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


#: Text logs are read in chunks of this size; an all-NUL chunk is never kept.
READ_CHUNK = 8 << 20
#: At most this much of a text log is kept in memory (a bigger file is read up to here).
MAX_TEXT_BYTES = 128 << 20
#: ... and at most this much of it is looked at (NUL runs included).
MAX_SCAN_BYTES = 1 << 30
#: More separate NUL runs than this in one file: binary content, not a damaged log.
MAX_NUL_RUNS = 8
_NUL_RUN = re.compile(rb"\x00+")
#: Control bytes no text log holds (ESC is allowed: coloured console logs).
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x1a\x1c-\x1f]")


def _size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


def _drop_nul_runs(
    raw: bytes, path: Path | str, size: int | None
) -> tuple[bytes, list[IngestNote]]:
    """Remove what a crash leaves as NUL bytes: an unwritten tail, or unwritten blocks.

    File systems that allocate before they write leave a killed job's last blocks as
    NULs.  A NUL tail is cut (the loaders then see a last line without its line end); a
    NUL run inside the text takes the partial lines on both sides of it with it.  Many
    separate runs mean binary content: :class:`LogReadError`.  ``size`` is the file's
    real size when ``raw`` holds all of it (NUL chunks collapsed), for the note.
    """
    first = raw.find(b"\x00")
    if first < 0:
        return raw, []
    if first == 0 or _CONTROL.search(raw, 0, first):
        raise LogReadError("binary file, not text")
    if raw.count(b"\x00", first) == len(raw) - first:
        lost = (size if size is not None else len(raw)) - first
        return raw[:first], [
            IngestNote(
                code="truncated",
                message=(
                    f"file ends in {_size_text(lost)} of NUL bytes from byte {first} (a crash "
                    f"left them unwritten); read the {first} bytes before them"
                ),
                path=str(path),
                details={"nul_offset": first, "nul_bytes": lost},
            )
        ]
    runs = list(_NUL_RUN.finditer(raw, first))
    if len(runs) > MAX_NUL_RUNS:
        raise LogReadError("binary file, not text")
    pieces: list[bytes] = []
    pos = 0
    dropped = 0
    for m in runs:
        piece = raw[pos : m.start()]
        if pos:  # the line the run cut into, after it
            cut = max(piece.find(b"\n"), piece.find(b"\r"))
            cut = len(piece) if cut < 0 else cut + 1
            dropped += cut
            piece = piece[cut:]
        keep = max(piece.rfind(b"\n"), piece.rfind(b"\r")) + 1  # before it
        dropped += len(piece) - keep
        pieces.append(piece[:keep])
        pos = m.end()
    tail = raw[pos:]
    cut = max(tail.find(b"\n"), tail.find(b"\r"))
    cut = len(tail) if cut < 0 else cut + 1
    dropped += cut
    pieces.append(tail[cut:])
    nul = sum(m.end() - m.start() for m in runs)
    return b"".join(pieces), [
        IngestNote(
            code="corrupt_record",
            message=(
                f"{len(runs)} run(s) of NUL bytes inside the text (blocks a crash left "
                f"unwritten, first at byte {first}); they and {dropped} bytes of the lines "
                "they cut were dropped"
            ),
            path=str(path),
            details={"nul_runs": len(runs), "nul_bytes": nul, "dropped_bytes": dropped},
        )
    ]


def decode_bytes(
    raw: bytes, path: Path | str = "", size: int | None = None
) -> tuple[str, list[IngestNote]]:
    """Bytes -> text: UTF-8 (BOM tolerated), UTF-16 by BOM, else latin-1 with a note.

    Logs copied off Windows machines are sometimes cp1252/latin-1 in a header cell; the
    numbers are still ASCII, so reading them beats rejecting the run.  NUL bytes a crash
    left are dropped with a note (:func:`_drop_nul_runs`); binary content is not a log:
    :class:`LogReadError`.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            raise LogReadError("not valid UTF-16 text") from exc
    raw, notes = _drop_nul_runs(raw, path, size)
    try:
        return raw.decode("utf-8-sig"), notes
    except UnicodeDecodeError as exc:
        note = IngestNote(
            code="encoding",
            message=f"not UTF-8 (bad byte at offset {exc.start}); read as latin-1",
            path=str(path),
        )
        return raw.decode("latin-1"), [*notes, note]


def _next_data(fd: int, pos: int) -> int | None:
    """Offset of the next written data at or after ``pos`` (skips sparse holes); None
    when only a hole follows.  Where SEEK_DATA is missing, ``pos`` itself."""
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:
        return pos
    try:
        return os.lseek(fd, pos, seek_data)
    except OSError as exc:
        return None if exc.errno == errno.ENXIO else pos


def read_log_bytes(path: Path | str) -> tuple[bytes, int | None, list[IngestNote]]:
    """A text log's bytes with bounded memory: (bytes, real size when read whole, notes).

    All-NUL chunks (and sparse holes, skipped with SEEK_DATA) are kept as one NUL byte,
    so a 5 GB sparse file costs one chunk; at most :data:`MAX_TEXT_BYTES` of content is
    kept and :data:`MAX_SCAN_BYTES` looked at, and a file cut there gets a note.
    """
    parts: list[bytes] = []
    kept = scanned = 0
    notes: list[IngestNote] = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        pos = 0
        while True:
            chunk = fh.read(READ_CHUNK)
            if not chunk:
                break
            pos += len(chunk)
            scanned += len(chunk)
            if chunk.count(0) == len(chunk):
                if not parts or parts[-1] != b"\x00":
                    parts.append(b"\x00")
                nxt = _next_data(fh.fileno(), pos)
                if nxt is None:
                    break
                if nxt != pos:
                    fh.seek(nxt)
                    pos = nxt
            else:
                parts.append(chunk)
                kept += len(chunk)
            if (kept >= MAX_TEXT_BYTES or scanned >= MAX_SCAN_BYTES) and pos < size:
                notes.append(
                    IngestNote(
                        code="truncated",
                        message=(
                            f"file is {_size_text(size)}; only its first {_size_text(pos)} "
                            "were read (size cap)"
                        ),
                        path=str(path),
                        details={"size": size, "read_bytes": pos},
                    )
                )
                return b"".join(parts), None, notes
    return b"".join(parts), size, notes


def read_text(path: Path) -> tuple[str, list[IngestNote]]:
    """A text log as text (see :func:`decode_bytes`, :func:`read_log_bytes`); an empty or
    unreadable file is a :class:`LogReadError`."""
    try:
        raw, size, notes = read_log_bytes(path)
    except OSError as exc:
        raise LogReadError(f"cannot read file: {exc.strerror or exc}") from exc
    if not raw.strip(b" \t\r\n\x00"):
        raise LogReadError("only NUL bytes, no text" if b"\x00" in raw else "empty file")
    text, dec_notes = decode_bytes(raw, path, size)
    return text, notes + dec_notes


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
    # An exempt tag (Lightning's ``epoch``, on every row) jumps back whenever a row of
    # another tag was written late (a val row before the epoch's train rows): that is
    # not a restart.  A real restart jumps back on the counted tags too, and is said.
    back = (step < prev_max).to_numpy() & counted
    equal = (step == prev_max).to_numpy() & counted
    notes: list[IngestNote] = []
    restart_mask = back | equal if equal_is_restart else back
    superseded = ~keep.to_numpy()
    dropped = int(superseded.sum()) if back.any() else int((superseded & counted).sum())
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


class SeriesCap:
    """At most :data:`MAX_COLUMNS` distinct series per file: a record with a million keys
    must not cost a million series.  Names past the cap are dropped and counted."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_COLUMNS if limit is None else limit
        self.seen: set[str] = set()
        self.dropped: set[str] = set()
        self.points = 0

    def admit(self, name: str) -> bool:
        if name in self.seen:
            return True
        if len(self.seen) < self.limit:
            self.seen.add(name)
            return True
        if len(self.dropped) < self.limit:
            self.dropped.add(name)
        self.points += 1
        return False

    def note(self, run: Run, path: Path | str) -> None:
        """Add the ``truncated`` note when anything was dropped."""
        if self.points:
            run.note(
                "truncated",
                f"more than {self.limit} distinct series; {self.points} value(s) of later "
                f"series were dropped (series cap)",
                path=str(path),
                details={"series_cap": self.limit, "dropped_values": self.points},
            )


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
        widths = [len(_split_line(r, delim)) for r in rows]
        width = table_width(width, widths)
        agree = sum(w == width for w in widths) if rows else 1
        share = agree / len(rows) if rows else 1.0
        if share < min_share or share == 0:
            continue
        score = (share, width)
        if best is None or score > best[0]:
            best = (score, delim)
    return best[1] if best else None


#: At most this many unnamed cells at the end of every row, beyond the header's names (a
#: script that added a column to its rows but not to its header).
MAX_UNNAMED_COLUMNS = 2


def table_width(header_width: int, row_widths: list[int]) -> int:
    """The table's width: the header's, unless more rows are wider than it by the same
    one or two cells than have its width (a column the header never named)."""
    if not row_widths:
        return header_width
    counts = Counter(row_widths)
    wider = [(n, w) for w, n in counts.items()
             if header_width < w <= header_width + MAX_UNNAMED_COLUMNS]
    if wider and max(wider)[0] > counts.get(header_width, 0):
        return max(wider)[1]
    return header_width


#: Title lines a logger may write above the header ("model_history_log"): at most this
#: many leading lines holding no separator at all are skipped when the rest is a table.
MAX_TITLE_LINES = 2
_SEPARATORS = (",", "\t", ";", "|")


def _title_lines(lines: list[str], min_share: float) -> int:
    """How many leading lines are a title above the table (no separator in them, and the
    lines after them sniff as a table), 0 when the table starts at the first line."""
    for n in range(1, MAX_TITLE_LINES + 1):
        if len(lines) <= n + 1 or any(d in lines[n - 1] for d in _SEPARATORS):
            return 0
        if _sniff_delimiter(lines[n:], min_share) is not None:
            return n
    return 0


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


def sniff_csv(path: Path, named_log: bool = False) -> str | None:
    """Kind of metrics table at ``path`` from its first few KB, or None when it is not one.

    Conservative on purpose: discovery calls this on every ``*.csv``/``*.tsv``/``*.log``
    it meets, and a label file or prediction dump read as a run would produce nonsense
    findings.  A table qualifies with a step/epoch column, or a metric-like column name
    (loss, acc, lr, mAP...) holding numbers and no per-sample columns (id, label, path).
    ``named_log`` (a file only metric loggers name so: ``results.csv``...) also admits a
    damaged one, a delimited all-number table whose header lost a letter or a separator,
    so the loader reads it or says why instead of the run vanishing.
    """
    kind, lines = _sniff_csv(path)
    if kind is None and named_log and lines:
        kind = _damaged_table(lines)
    return kind


def _damaged_table(lines: list[str]) -> str | None:
    """The kind of a metrics table whose header or rows do not agree, or None."""
    delim = _sniff_delimiter(lines, min_share=0.0) or _header_delimiter(lines[0])
    if delim is None or len(lines) < 2:
        return None
    header = [h.strip() for h in _split_line(lines[0], delim)]
    if _SAMPLE_COLUMNS & {h.lower() for h in header}:
        return None
    cells = [c for ln in lines[1:] for c in _split_line(ln, delim) if c.strip()]
    numeric = sum(_is_number(c) for c in cells)
    if not cells or numeric < 0.9 * len(cells):
        return None
    return classify_header(header)


def _header_delimiter(header: str) -> str | None:
    """The separator a header line holds most of, when rows cannot be compared to it."""
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _sniff_csv(path: Path) -> tuple[str | None, list[str]]:
    """(kind or None, the non-blank lines looked at)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    except OSError:
        return None, []
    if not raw.strip():
        return None, []
    try:
        text, _ = decode_bytes(raw)
    except LogReadError:
        return None, []
    lines = _EOL.split(text)  # not splitlines: a form feed or VT is not a line end
    if (len(raw) == SNIFF_BYTES or not text.endswith(("\n", "\r"))) and len(lines) > 1:
        lines = lines[:-1]  # the read, or a killed job, cut the last line
    lines = [ln for ln in lines if ln.strip()][:40]
    if not lines:
        return None, lines
    if _sniff_delimiter(lines) is None:
        lines = lines[_title_lines(lines, 0.8):]
    delim = _sniff_delimiter(lines)
    if delim is None:
        return None, lines
    header = [h.strip() for h in _split_line(lines[0], delim)]
    if not _plausible_header(header):
        return None, lines
    rows = [_split_line(ln, delim) for ln in lines[1:]]
    header += [""] * (table_width(len(header), [len(r) for r in rows]) - len(header))
    rows = [r for r in rows if len(r) == len(header)]
    kind = classify_header(header, Path(path).name.lower())
    low = [h.lower() for h in header]
    key = _find(header, STEP_COLUMNS + EPOCH_COLUMNS)
    if kind != "csv":
        if not rows:
            return kind, lines  # header only: still this kind; the loader reports it empty
        if key is not None and any(_is_number(r[key]) for r in rows):
            return kind, lines
        return None, lines
    # Generic table: needs a step column or a metric-like column, with numbers in it.
    metric_cols = [i for i, h in enumerate(header) if i != key and metric_like(h)]
    if key is None and (not metric_cols or _SAMPLE_COLUMNS & set(low)):
        return None, lines
    candidates = metric_cols or [i for i in range(len(header)) if i != key]
    if not rows:
        return ("csv" if metric_cols else None), lines
    if key is not None and not all(_is_number(r[key]) or not r[key].strip() for r in rows):
        return None, lines
    numeric = any(_is_number(r[i]) for r in rows for i in candidates)
    return ("csv" if numeric else None), lines


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


#: Lines longer than this never reach the csv module: their first cells are cut out of
#: the text without copying the line (a 1e6-column row, a 100 MB row).
LONG_LINE_CHARS = 1 << 20
#: The csv module's cell limit (``csv.field_size_limit()`` default): a row holding a
#: longer cell is skipped with a note.
MAX_CELL_CHARS = 128 * 1024
#: Lines looked at to choose the delimiter, and how much of each.
_SNIFF_LINES = 40
_SNIFF_LINE_CHARS = 64 * 1024
_EOL = re.compile(r"\r\n|\r|\n")


def _line_spans(text: str) -> Iterator[tuple[int, int, int]]:
    """(start, end of content, end with the line end) per line, without copying text."""
    pos, n = 0, len(text)
    while pos < n:
        m = _EOL.search(text, pos)
        if m is None:
            yield pos, n, n
            return
        yield pos, m.start(), m.end()
        pos = m.end()


def _wide_row(text: str, start: int, end: int, delim: str) -> tuple[list[str], int] | None:
    """The first MAX_COLUMNS cells and the field count of an over-long line, or None
    when it cannot be cut without the csv module (quotes) or holds a giant cell."""
    if text.find('"', start, end) >= 0:
        return None
    cells: list[str] = []
    pos = start
    while True:
        j = text.find(delim, pos, end)
        stop = end if j < 0 else j
        if stop - pos > MAX_CELL_CHARS:
            return None
        cells.append(text[pos:stop])
        if j < 0:
            return cells, len(cells)
        pos = j + 1
        if len(cells) == MAX_COLUMNS:
            return cells, MAX_COLUMNS + 1 + text.count(delim, pos, end)


class _Row:
    """One parsed row: its cells (at most MAX_COLUMNS), its real width, where it ends."""

    __slots__ = ("cells", "end", "width")

    def __init__(self, cells: list[str], width: int, end: int) -> None:
        self.cells, self.width, self.end = cells, width, end


def _read_rows(text: str, delim: str) -> tuple[list[_Row], int]:
    """Every non-blank row in file order, and how many rows could not be parsed."""
    long_rows: list[tuple[int, _Row | None]] = []  # (lines fed before it, row)
    ends: list[int] = []

    def feed() -> Iterator[str]:
        for start, stop, end in _line_spans(text):
            if stop - start > LONG_LINE_CHARS:
                cut = _wide_row(text, start, stop, delim)
                long_rows.append((len(ends), None if cut is None else _Row(cut[0], cut[1], end)))
                continue
            ends.append(end)
            yield text[start:end]

    reader = csv.reader(feed(), delimiter=delim)
    rows: list[tuple[int, int, _Row | None]] = []
    while True:
        try:
            r = next(reader)
        except StopIteration:
            break
        except csv.Error:  # a cell over the limit, a NUL...: this row only
            rows.append((reader.line_num, 0, None))
            continue
        if len(r) > 1 or (r and r[0].strip()):
            rows.append((reader.line_num, 0, _Row(r[:MAX_COLUMNS], len(r), ends[-1])))
    if long_rows:
        rows.extend((fed, 1, row) for fed, row in long_rows)
        rows.sort(key=lambda item: (item[0], item[1]))
    good = [row for _, _, row in rows if row is not None]
    return good, len(rows) - len(good)


def _sniff_lines(text: str, count: int = _SNIFF_LINES) -> list[str]:
    """The first non-blank lines (each cut to 64 KiB) to choose the delimiter from."""
    out: list[str] = []
    for start, stop, _ in _line_spans(text):
        line = text[start : min(stop, start + _SNIFF_LINE_CHARS)]
        if line.strip():
            out.append(line)
            if len(out) == count:
                break
    return out


def _parse_table(
    text: str, path: Path
) -> tuple[list[str], list[list[str]], str, list[IngestNote]]:
    """Text -> (header, rows of the header's width, delimiter, notes about what was dropped).

    Bounded on hostile input: lines over :data:`LONG_LINE_CHARS` are cut without the csv
    module, rows with a cell over :data:`MAX_CELL_CHARS` are skipped, and only the first
    :data:`MAX_COLUMNS` columns are kept; each costs a note, never the run.
    """
    notes: list[IngestNote] = []
    nonblank = _sniff_lines(text)
    if not nonblank:
        raise LogReadError("empty file")
    delim = _sniff_delimiter(nonblank, min_share=0.0)
    titled = _title_lines(nonblank, 0.8) if delim is None else 0
    if titled:
        # drop the title's lines from the text: the header is the line after them
        spans = [sp for sp in _line_spans(text) if text[sp[0]:sp[1]].strip()]
        title = " / ".join(ln.strip() for ln in nonblank[:titled])
        text = text[spans[titled][0]:]
        nonblank = nonblank[titled:]
        delim = _sniff_delimiter(nonblank, min_share=0.0)
        notes.append(
            IngestNote(
                code="skipped_rows",
                message=f"{titled} title line(s) above the header skipped: {title[:80]!r}",
                path=str(path),
            )
        )
    if delim is None:
        # Rows that never agree with the header (a 1e6-column table whose lines are too
        # long to compare whole, a damaged header): the header decides.
        delim = _header_delimiter(nonblank[0])
    if delim is None:
        raise LogReadError("not a delimited table (no consistent separator)")
    table, unparsable = _read_rows(text, delim)
    if not table:
        raise LogReadError("no row could be parsed (cells over 128 KiB or over-long lines)")
    header = [h.strip() for h in table[0].cells]
    width = table_width(table[0].width, [r.width for r in table[1:]])
    if width > table[0].width:
        extra = width - table[0].width
        header += [""] * extra
        notes.append(
            IngestNote(
                code="skipped_columns",
                message=(
                    f"most rows carry {extra} more field(s) than the header names; "
                    f"column(s) {', '.join(str(j + 1) for j in range(table[0].width, width))}"
                    " have no name and were not read"
                ),
                path=str(path),
                details={"header_fields": table[0].width, "row_fields": width},
            )
        )
    if width > MAX_COLUMNS:
        notes.append(
            IngestNote(
                code="truncated",
                message=f"{width} columns; only the first {MAX_COLUMNS} were read (column cap)",
                path=str(path),
                details={"columns": width, "read_columns": MAX_COLUMNS},
            )
        )
    body = table[1:]
    n = len(text)
    if not text.endswith(("\n", "\r")):
        tail = text[max(text.rfind("\n"), text.rfind("\r")) + 1 :]
        if not tail.strip():
            # Ultralytics pads every cell: a kill inside the next row's padding cuts no value.
            notes.append(
                IngestNote(
                    code="truncated",
                    message=(
                        "file ends inside a row with no values written yet (job killed "
                        "mid-write); every complete row was read"
                    ),
                    path=str(path),
                )
            )
        elif body and body[-1].end == n:
            last = body[-1]
            if last.width < width:
                body = body[:-1]
                notes.append(
                    IngestNote(
                        code="truncated",
                        message="last line has no line end (job killed mid-write); dropped it",
                        path=str(path),
                        details={"line": delim.join(last.cells)[:200]},
                    )
                )
            elif last.width == width:
                # A full-width row without its line end was cut inside its last cell at
                # the latest ("0." of "0.1"), or that cell was not written yet: every
                # other value in it is whole, so only that one value is dropped.
                cell = last.cells[-1].strip()
                what = (
                    f"its last value {cell[:40]!r} may be cut off and was dropped"
                    if cell
                    else "its last cell is empty (the row may be cut)"
                )
                notes.append(
                    IngestNote(
                        code="truncated",
                        message=f"last line has no line end; {what}",
                        path=str(path),
                        details={"line": delim.join(last.cells)[:200]},
                    )
                )
                last.cells[-1] = ""
    good = [r.cells for r in body if r.width == width]
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
    if unparsable:
        notes.append(
            IngestNote(
                code="skipped_rows",
                message=(
                    f"{unparsable} row(s) that cannot be parsed skipped (a cell over 128 KiB, "
                    "or an over-long quoted line)"
                ),
                path=str(path),
                details={"rows": unparsable},
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


#: A step column with one value on at least this many rows never advances: the rows are
#: successive points (Keras' CSVLogger with ``append=True`` around one ``fit(epochs=1)``
#: per epoch writes epoch 0 on every row), not one point rewritten by restarts.  Two rows
#: could be one crash and its restart.
MIN_ROWS_NO_ADVANCE = 3


def _never_advances(steps: np.ndarray) -> bool:
    return len(steps) >= MIN_ROWS_NO_ADVANCE and bool(np.all(steps == steps[0]))


def _points_within_epochs(
    epochs: np.ndarray, have: np.ndarray, present: np.ndarray, epoch_idx: int
) -> bool:
    """An epoch column that never goes back, on a table where some metric has two or more
    rows per epoch: the rows are points logged within each epoch (Lightning 0.x's
    metrics.csv had no step column), not one point rewritten by a restart (a restart goes
    back to an earlier epoch, or repeats the one epoch it resumed in): the metric has at
    least two rows per epoch on average.  Generic tables only: Keras' CSVLogger writes one
    row per epoch, so a repeat there is a restart."""
    e = epochs[have]
    if len(e) < 2 or bool(np.any(np.diff(e) < 0)):
        return False
    for j in range(present.shape[1]):
        if j == epoch_idx:
            continue
        col = e[present[have, j]]
        if len(col) >= 2 * len(np.unique(col)):
            return True
    return False


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
    header, rows, delim, notes = _parse_table(text, path)
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
        if kind != "lightning_csv" and _never_advances(steps[have]):
            notes.append(
                IngestNote(
                    code="steps_from_rows",
                    message=(
                        f"column {header[step_idx]!r} is {steps[have][0]:g} on all "
                        f"{int(have.sum())} rows (one fit() call per epoch?); the row order "
                        "is read as the time axis"
                    ),
                    path=str(path),
                    details={"column": header[step_idx], "rows": int(have.sum())},
                )
            )
            steps, have = np.arange(n, dtype="float64"), np.ones(n, dtype=bool)
        elif kind == "csv" and step_idx == epoch_idx and _points_within_epochs(
            steps, have, present, step_idx
        ):
            notes.append(
                IngestNote(
                    code="steps_from_rows",
                    message=(
                        f"no step column, and a metric has several rows in one "
                        f"{header[step_idx]!r} (points within each epoch); the row order is "
                        "read as the time axis"
                    ),
                    path=str(path),
                    details={"column": header[step_idx], "rows": n},
                )
            )
            steps, have = np.arange(n, dtype="float64"), np.ones(n, dtype=bool)
        elif not _integral_steps(steps[have]):
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
