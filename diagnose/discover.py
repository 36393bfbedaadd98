"""Discovery: which files under each PATH make up which runs (DESIGN.md "What a run is").

Discovery only lists folders and, for a few candidate files, reads their first bytes
(the family sniffers, and ``peek_tags`` for torch's extra sub-folders).  It never parses
a whole log: that is ingest's job, and keeping it cheap lets ``diagnose .`` on a big
experiments tree start at once.

Layouts that make one run out of several folders:

- Keras ``train/`` / ``validation/`` (``val``, ``eval``, ``test``) sub-folders are the
  splits of their parent (``SourceFile.split``), even when the parent has no event
  files of its own;
- torch ``add_hparams`` writes a time-named sub-folder (``1712345678.123456``) holding
  only hparams and metric echoes: folded into the parent;
- torch ``add_scalars(main, {k: v})`` writes one sub-folder ``<main>_<k>`` per series,
  all with the tag ``main``: folded into the parent with ``tag_suffix=k``;
- Hugging Face ``output/checkpoint-N/trainer_state.json``: only the highest N is read
  (its ``log_history`` holds the earlier ones) and the run is ``output``;
- an MLflow file store gives one run per ``mlruns/<exp>/<run_id>`` folder, and an MLflow
  SQLite store (``mlflow.db``) one run per MLflow run in it, named
  ``mlflow.db/<experiment>/<run name>`` (the file is opened read-only to list them);
- a W&B run folder (``wandb/offline-run-*`` or a synced ``wandb/run-*``, holding
  ``run-<id>.wandb``) is one run; its ``files/`` and ``logs/`` are W&B's own, not walked,
  and W&B's ``latest-run`` symlink is not followed (the run is reached by its own name).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnose.findings import LoadError
from diagnose.metrics import SPLIT_FOLDERS
from diagnose.remote import is_remote
from diagnose.run import IngestNote
from diagnose.sources import RunSource, SourceFile

_TIMESTAMP_RE = re.compile(r"tfevents\.(\d+)")
#: ``str(time.time())``: the folder torch ``add_hparams`` writes when no run_name is given.
_TIME_DIR_RE = re.compile(r"^\d{9,11}\.\d+$")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_CSV_EXTS = frozenset({".csv", ".tsv", ".log", ".txt"})
_JSON_EXTS = frozenset({".json", ".jsonl", ".ndjson"})
#: SQLite files opened (read-only) to see whether they are an MLflow store.
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: Names only a metrics logger writes (Lightning, Ultralytics, Keras docs, baselines):
#: kept as runs even when empty, so a run that crashed before its first flush is
#: reported as unreadable instead of silently missing.
_METRIC_FILE_NAMES = frozenset({"metrics.csv", "results.csv", "progress.csv", "training.log"})
#: ... and the names training scripts give their own tables (``train_log.csv``,
#: ``training_history.csv``, ``history.csv``): a damaged one is read or said to be damaged.
_METRIC_FILE_RE = re.compile(r"(?:train(?:ing)?[_-]?)?(?:log|history|metrics)\.(?:csv|tsv)")
#: JSON names only a metrics logger writes -> kind: kept as runs when blank (all NUL or
#: empty), and ``history.json`` whenever it does not read as a history, so the loader
#: says why (``metrics.json`` may be a DVC summary, not a log).
_METRIC_JSON_NAMES = {"metrics.json": "jsonl", "history.json": "keras_history"}
#: Folders that never hold training logs and can be huge.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})

#: A sub-folder whose event files hold ``_hparams_`` tags is folded into its parent only
#: when it is this small (an echo child is a few KiB; a real run with hparams is larger).
HPARAMS_CHILD_MAX_BYTES = 64 * 1024
#: ... and has at most this many other (echo) tags.
HPARAMS_CHILD_MAX_ECHOES = 16

#: The symlink W&B keeps beside its run folders, pointing at the newest one.
_WANDB_LATEST = "latest-run"


def discover(paths: list[str]) -> tuple[list[RunSource], list[LoadError]]:
    """Find every run under each PATH; problems become LoadErrors, never exceptions.

    Run ids are relative to the PATH they were found under, ``.`` for PATH itself.
    When two PATHs yield the same id (``diagnose a b`` with two run folders), those ids
    are prefixed with their PATH so every run stays distinguishable; the same run
    reached twice (overlapping PATHs, symlinks) is kept once.  Sources are sorted by id.
    """
    found: list[tuple[str, RunSource]] = []
    errors: list[LoadError] = []
    for raw in paths:
        walker = _remote_walker(raw, errors) if is_remote(raw) else _Walker(raw)
        if walker is None:
            continue
        walker.run()
        for source in walker.sources:
            source.remote = walker.origin
        found.extend((raw, s) for s in walker.sources)
        errors.extend(walker.errors)
    return _finish(found, dedupe=len(paths) > 1), errors


def _remote_walker(url: str, errors: list[LoadError]) -> _Walker | None:
    """Spool a remote PATH (diagnose.remote) and walk the copy under the URL's name."""
    from diagnose.remote import RemoteError, spool

    sniff = _Sniffers()
    shown = url.rstrip("/") or url
    try:
        copy = spool(url, lambda path, name: sniff.kind(path, name), spool_role)
    except RemoteError as exc:
        errors.append(LoadError(shown, str(exc)))
        return None
    errors.extend(LoadError(u, f"could not be downloaded: {m}") for u, m in copy.errors)
    walker = _Walker(copy.local, display=shown, sniffers=sniff)
    walker.origin = (copy.local_root, copy.url_root, copy.quoted)
    return walker


def spool_role(name: str, folders: tuple[str, ...] = ()) -> str | None:
    """What a file name is to discovery, for remote spooling (same rules as a local
    walk): ``table`` (sniffed), ``sidecar``, ``marker`` (only its presence matters),
    ``whole`` (any other log file), or None (never read, also anything under a folder
    the walk skips; ``folders`` are the names between PATH and the file)."""
    if not all(_walked(folder) for folder in folders):
        return None
    probe = _Listing("")
    _classify_name(probe, name, name, _sidecar_names())
    if probe.candidates:
        return "table"
    if probe.sidecars:
        return "sidecar"
    if probe.is_venv:
        return "marker"
    return None if probe == _Listing("") else "whole"


def event_file_order(
    path: str | os.PathLike[str],
) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Sort key of an event file: the 10-digit timestamp in its name, then the name with
    its numbers compared as numbers (torch's per-process counter goes ``.9`` -> ``.10``)."""
    name = os.path.basename(os.fspath(path))
    m = _TIMESTAMP_RE.search(name)
    natural = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", name)
        if part
    )
    return (int(m.group(1)) if m else 0, natural)


def is_event_file(name: str) -> bool:
    """TensorBoard's own test: ``tfevents`` in the name, profiler placeholders excluded."""
    return "tfevents" in name and not name.endswith(".profile-empty")


# ---------------------------------------------------------------------------
# Sniffers and sidecar names live in the family modules; imported lazily so discovery
# works (with fewer families) while a module is missing.
# ---------------------------------------------------------------------------


def _optional(module: str, attr: str) -> Callable[..., Any] | None:
    """``diagnose.ingest.<module>.<attr>`` (a sniffer or lister), or None when missing."""
    import importlib

    try:
        fn: Callable[..., Any] = getattr(importlib.import_module(f"diagnose.ingest.{module}"), attr)
        return fn
    except (ImportError, AttributeError):
        return None


def _sidecar_names() -> frozenset[str]:
    try:
        from diagnose.ingest.sidecars import SIDECAR_NAMES
    except ImportError:
        return frozenset()
    return frozenset(SIDECAR_NAMES)


def _safe(fn: Callable[..., Any] | None, path: str) -> object:
    """Call a sniffer; a sniffer that trips on a strange file means "not mine"."""
    if fn is None:
        return None
    try:
        return fn(Path(path))
    except Exception:
        return None


def _is_blank(path: str, partial_line: bool = False) -> bool:
    """Empty, or only NUL bytes and blanks at its start (a crash before the first flush);
    with ``partial_line``, also a short file that never finished its first line."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if partial_line and len(head) < 4096 and not head.strip(b"\x00").strip(b" \t").count(b"\n"):
        return b"\r" not in head.rstrip(b"\x00")
    return not head.strip(b"\x00 \t\r\n")


class _Sniffers:
    """The family sniffers, looked up once per discover() call."""

    def __init__(self) -> None:
        self.csv = _optional("csv_logs", "sniff_csv")
        self.jsonl = _optional("jsonl", "sniff_jsonl")
        self.keras_history = _optional("keras_history", "sniff_keras_history")
        self.peek_tags = _optional("tensorboard", "peek_tags")
        self.mlflow_db = _optional("mlflow_db", "sniff_mlflow_db")
        self.mlflow_runs = _optional("mlflow_db", "list_runs")
        self.mlflow_ids = _optional("mlflow_db", "run_ids")
        self.sidecars = _sidecar_names()

    def kind(self, path: str, name: str) -> str | None:
        """File kind of a candidate metrics file, or None when it is not a log."""
        ext = os.path.splitext(name)[1].lower()
        if ext in _CSV_EXTS:
            named = name.lower() in _METRIC_FILE_NAMES or bool(
                _METRIC_FILE_RE.fullmatch(name.lower()))
            kind = _safe(self.csv, path) if not named else self._sniff_named(path)
            if isinstance(kind, str) and kind:
                return kind
            if named and _is_blank(path, partial_line=True):
                return "csv"  # the loader says "empty", "only NUL bytes" or "header only"
            return None
        if ext in (".jsonl", ".ndjson"):
            return "jsonl" if _safe(self.jsonl, path) else None
        if ext == ".json":
            order = [("keras_history", self.keras_history), ("jsonl", self.jsonl)]
            if "history" not in name.lower():
                order.reverse()
            for kind, fn in order:
                if _safe(fn, path):
                    return kind
            json_kind = _METRIC_JSON_NAMES.get(name.lower())
            if json_kind is not None and (json_kind == "keras_history" or _is_blank(path)):
                return json_kind  # the loader says what is wrong with it
        return None

    def _sniff_named(self, path: str) -> object:
        """sniff_csv for a file only metric loggers name so (results.csv...): a damaged
        one is still a run."""
        if self.csv is None:
            return None
        try:
            return self.csv(Path(path), named_log=True)
        except Exception:
            return None

    def peek(self, path: str) -> dict[str, str] | None:
        if self.peek_tags is None:
            return None
        try:
            return dict(self.peek_tags(Path(path), max_records=64))
        except Exception:
            return None


# ---------------------------------------------------------------------------
# Folder listings
# ---------------------------------------------------------------------------


@dataclass
class _Listing:
    """What one folder holds, classified by name only (no file is opened)."""

    path: str
    events: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    trainer_state: str | None = None
    wandb: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    has_meta: bool = False
    is_venv: bool = False
    dirs: list[tuple[str, str, tuple[int, int]]] = field(default_factory=list)

    @property
    def is_mlflow_run(self) -> bool:
        return self.has_meta and any(name == "metrics" for name, _, _ in self.dirs)


def _walked(folder: str) -> bool:
    """Hidden folders and the huge non-log ones (``_SKIP_DIRS``) are never walked."""
    return not (folder.startswith(".") or folder in _SKIP_DIRS)


def _scan(path: str, sidecar_names: frozenset[str]) -> _Listing:
    """List one folder with os.scandir (raises OSError when it cannot be listed)."""
    listing = _Listing(path)
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir():
                    if not _walked(name):
                        continue
                    if name == _WANDB_LATEST and entry.is_symlink():
                        continue
                    st = entry.stat()
                    listing.dirs.append((name, entry.path, (st.st_dev, st.st_ino)))
                    continue
                if not entry.is_file():
                    continue  # broken symlink, socket, fifo...
            except OSError:
                continue
            _classify_name(listing, name, entry.path, sidecar_names)
    listing.dirs.sort()
    listing.events.sort(key=event_file_order)
    listing.candidates.sort()
    listing.sidecars.sort()
    listing.wandb.sort()
    listing.databases.sort()
    return listing


def _classify_name(listing: _Listing, name: str, path: str, sidecars: frozenset[str]) -> None:
    if is_event_file(name):
        listing.events.append(path)
    elif name.lower() in sidecars:
        listing.sidecars.append(path)
    elif name == "trainer_state.json":
        listing.trainer_state = path
    elif name.endswith(".wandb"):
        listing.wandb.append(path)
    elif name.lower().endswith(_DB_SUFFIXES):
        listing.databases.append(path)
    elif name == "meta.yaml":
        listing.has_meta = True
    elif name == "pyvenv.cfg":
        listing.is_venv = True
    elif os.path.splitext(name)[1].lower() in _CSV_EXTS | _JSON_EXTS:
        listing.candidates.append(path)


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


def _has_own_logs(listing: _Listing) -> bool:
    """True for Ultralytics-style train/ and val/ run folders (results.csv, args.yaml).

    Keras split folders hold event files only; a folder with its own tables or
    hyperparameter files is a run, and its name says nothing about a split.
    """
    return bool(listing.candidates or listing.sidecars or listing.trainer_state)


def _join(rel: str, name: str) -> str:
    return name if rel == "." else f"{rel}/{name}"


class _Walker:
    """Walks one PATH; collects RunSources and LoadErrors.

    Every folder is listed once (children are listed while deciding what to fold, and
    the listing is reused when the child is walked).  Folders are keyed by the
    (st_dev, st_ino) of their real target: a symlink to an ancestor is reported as a
    loop, any other second visit is skipped quietly.
    """

    def __init__(
        self, raw: str, display: str | None = None, sniffers: _Sniffers | None = None
    ) -> None:
        self.raw = raw
        self.display_root = display or raw.replace(os.sep, "/").rstrip("/") or "/"
        self.sniff = sniffers or _Sniffers()
        #: RunSource.remote for every run found (set for a spooled remote PATH)
        self.origin: tuple[str, str, bool] | None = None
        self.sources: list[RunSource] = []
        self.errors: list[LoadError] = []
        self.visited: set[tuple[int, int]] = set()
        self.cache: dict[str, _Listing] = {}
        base = raw if os.path.isdir(raw) else os.path.dirname(raw) or "."
        self.root_real = os.path.realpath(base)

    def sidecars(self, paths: list[str]) -> tuple[list[Path], list[IngestNote]]:
        """The sidecars that stay inside the analysed tree, and a note per one that does
        not: a symlinked ``config.json`` pointing at ``~/.secrets`` must not be read
        (its values would be copied into every output)."""
        kept: list[Path] = []
        notes: list[IngestNote] = []
        for p in paths:
            real = os.path.realpath(p)
            try:
                inside = os.path.commonpath([real, self.root_real]) == self.root_real
            except ValueError:  # another drive
                inside = False
            if inside:
                kept.append(Path(p))
            else:
                notes.append(
                    IngestNote(
                        "unsupported",
                        f"sidecar {os.path.basename(p)} is a link to a file outside the "
                        "analysed folder; not followed",
                        path=str(p),
                    )
                )
        return kept, notes

    def display(self, rel: str) -> str:
        if rel == ".":
            return self.display_root
        if self.display_root == ".":
            return rel
        return posixpath.join(self.display_root, rel)

    def fs_path(self, rel: str) -> str:
        return self.raw if rel == "." else os.path.join(self.raw, *rel.split("/"))

    def run(self) -> None:
        raw = self.raw
        if not os.path.exists(raw):
            self.errors.append(LoadError(self.display_root, "no such file or directory"))
        elif os.path.isdir(raw):
            self._walk()
        elif os.path.isfile(raw):
            self._single_file()
        else:
            self.errors.append(LoadError(self.display_root, "not a regular file or folder"))

    # -- PATH is a file ------------------------------------------------------------

    def _single_file(self) -> None:
        raw = self.raw
        name = os.path.basename(raw)
        folder = os.path.dirname(raw) or "."
        if is_event_file(name):
            kind: str | None = "tensorboard"
        elif name == "trainer_state.json":
            kind = "hf_trainer_state"
        elif name.endswith(".wandb"):
            kind = "wandb"
        elif name.lower().endswith(_DB_SUFFIXES) and _safe(self.sniff.mlflow_db, raw):
            self._mlflow_db(raw, None)
            return
        else:
            kind = self.sniff.kind(raw, name)
        if kind is None:
            self.errors.append(
                LoadError(self.display_root, "not a training log this tool can read")
            )
            return
        found: list[str] = []
        with contextlib.suppress(OSError):
            found = _scan(folder, self.sniff.sidecars).sidecars
        sidecars, notes = self.sidecars(found)
        self.sources.append(
            RunSource(".", Path(raw), [SourceFile(Path(raw), kind)], sidecars, notes=notes)
        )

    # -- PATH is a folder ----------------------------------------------------------

    def _listing(self, path: str, rel: str) -> _Listing | None:
        cached = self.cache.pop(path, None)
        if cached is not None:
            return cached
        try:
            return _scan(path, self.sniff.sidecars)
        except PermissionError:
            self.errors.append(LoadError(self.display(rel), "permission denied"))
        except OSError as exc:
            self.errors.append(LoadError(self.display(rel), exc.strerror or str(exc)))
        return None

    def _walk(self) -> None:
        try:
            st = os.stat(self.raw)
        except OSError as exc:
            self.errors.append(LoadError(self.display_root, exc.strerror or str(exc)))
            return
        key = (st.st_dev, st.st_ino)
        self.visited.add(key)
        stack: list[tuple[str, str, tuple[tuple[int, int], ...]]] = [(self.raw, ".", (key,))]
        while stack:
            path, rel, ancestors = stack.pop()
            listing = self._listing(path, rel)
            if listing is not None:
                self._visit(listing, rel, ancestors, stack)

    def _visit(
        self,
        listing: _Listing,
        rel: str,
        ancestors: tuple[tuple[int, int], ...],
        stack: list[tuple[str, str, tuple[tuple[int, int], ...]]],
    ) -> None:
        if listing.is_venv:
            return
        here = self.fs_path(rel)
        if listing.is_mlflow_run:
            # The whole folder is one run; artifacts/ is the user's business.
            self.sources.append(RunSource(rel, Path(here), [SourceFile(Path(here), "mlflow")]))
            return
        if listing.wandb:
            # A W&B run folder: files/ and logs/ are W&B's own copies and debug output.
            for p in listing.wandb:
                run_id = rel if len(listing.wandb) == 1 else _join(rel, os.path.basename(p))
                self.sources.append(RunSource(run_id, Path(here), [SourceFile(Path(p), "wandb")]))
            return
        for db in listing.databases:
            if _safe(self.sniff.mlflow_db, db):
                self._mlflow_db(db, _join(rel, os.path.basename(db)))
        base = os.path.basename(os.path.normpath(os.path.abspath(listing.path)))
        own_events = listing.events
        root_split = None
        if rel == "." and own_events and not _has_own_logs(listing):
            root_split = SPLIT_FOLDERS.get(base)
        files = [SourceFile(Path(p), "tensorboard", split=root_split) for p in own_events]
        sidecars = list(listing.sidecars)
        checkpoints: list[tuple[int, str, _Listing]] = []

        for name, child_path, key in listing.dirs:
            child_rel = _join(rel, name)
            if name == "models" and base == "mlruns":
                continue  # the MLflow model registry, not an experiment
            if key in self.visited:
                if key in ancestors:
                    self.errors.append(
                        LoadError(self.display(child_rel), "symlink loop: not followed")
                    )
                continue
            self.visited.add(key)
            child = self._listing(child_path, child_rel)
            if child is None:
                continue
            m = _CHECKPOINT_RE.match(name)
            if m and child.trainer_state:
                checkpoints.append((int(m.group(1)), child.trainer_state, child))
                continue  # consumed: only the newest checkpoint is read, below
            fold = self._fold(name, child, bool(own_events)) if child.events else None
            if fold is not None:
                split, suffix = fold
                files.extend(
                    SourceFile(Path(p), "tensorboard", split=split, tag_suffix=suffix)
                    for p in child.events
                )
                child.events = []  # anything else in it is still walked as its own run
            self.cache[child_path] = child
            stack.append((child_path, child_rel, (*ancestors, key)))

        others = [
            (p, k)
            for p in listing.candidates
            if (k := self.sniff.kind(p, os.path.basename(p))) is not None
        ]
        if listing.trainer_state:
            others.append((listing.trainer_state, "hf_trainer_state"))
        elif checkpoints:
            _, state, newest = max(checkpoints, key=lambda item: item[0])
            others.append((state, "hf_trainer_state"))
            sidecars.extend(newest.sidecars)

        side_paths, side_notes = self.sidecars(sidecars)
        counts = Counter(kind for _, kind in others)
        if any(n > 1 for n in counts.values()):
            # Several logs of one family side by side are several runs (exp1.csv,
            # exp2.csv), not one: each file is a run named after it.
            for p, kind in others:
                self.sources.append(
                    RunSource(
                        _join(rel, os.path.basename(p)),
                        Path(p),
                        [SourceFile(Path(p), kind)],
                        list(side_paths),
                        notes=list(side_notes),
                    )
                )
        else:
            files.extend(SourceFile(Path(p), kind) for p, kind in others)

        if files:
            self.sources.append(
                RunSource(rel, Path(here), files, side_paths, notes=side_notes)
            )

    def _mlflow_db(self, path: str, rel: str | None) -> None:
        """One RunSource per run in an MLflow SQLite store; ids under ``rel`` (the store)."""
        display = self.display(rel) if rel is not None else self.display_root
        try:
            runs = self.sniff.mlflow_runs(Path(path)) if self.sniff.mlflow_runs else []
            ids = self.sniff.mlflow_ids(runs) if self.sniff.mlflow_ids else []
        except Exception as exc:  # a store we cannot list fails alone, in one line
            self.errors.append(LoadError(display, " ".join(str(exc).split()) or "unreadable"))
            return
        if not runs:
            if rel is None:  # named as PATH: say why nothing is analysed
                self.errors.append(LoadError(display, "MLflow database holds no runs"))
            return  # met on the walk: a fresh store (`mlflow ui` makes one) holds no data
        for run, run_id in zip(runs, ids, strict=True):
            self.sources.append(
                RunSource(
                    run_id if rel is None else f"{rel}/{run_id}",
                    Path(path),
                    [SourceFile(Path(path), "mlflow_db", member=run.uuid)],
                )
            )

    def _fold(
        self, name: str, child: _Listing, parent_has_events: bool
    ) -> tuple[str | None, str | None] | None:
        """(split, tag_suffix) when the child's event files belong to the parent run."""
        if name in SPLIT_FOLDERS:
            if _has_own_logs(child):
                return None
            return SPLIT_FOLDERS[name], None
        if _TIME_DIR_RE.match(name):
            return None, None  # torch add_hparams(run_name=None)
        if not parent_has_events or child.dirs:
            # torch's writer always creates the parent's own event file first; without
            # it these are ordinary sibling runs and are not even opened.
            return None
        tags = self.sniff.peek(child.events[0])
        if not tags:
            return None
        scalar_tags = [t for t, plugin in tags.items() if plugin in ("", "scalars")]
        others = [t for t, plugin in tags.items() if plugin not in ("", "scalars")]
        if len(scalar_tags) == 1 and not others:
            prefix = scalar_tags[0].replace("/", "_") + "_"
            if name.startswith(prefix) and len(name) > len(prefix):
                return None, name[len(prefix) :]  # torch add_scalars series folder
        hparam_tags = [t for t in tags if t.startswith("_hparams_/")]
        echoes = [t for t in tags if not t.startswith("_hparams_/")]
        if hparam_tags and len(echoes) <= HPARAMS_CHILD_MAX_ECHOES:
            size = 0
            for p in child.events:
                with contextlib.suppress(OSError):
                    size += os.path.getsize(p)
            if size <= HPARAMS_CHILD_MAX_BYTES:
                return None, None  # add_hparams(run_name=...) echo folder
        return None


def _finish(found: list[tuple[str, RunSource]], dedupe: bool) -> list[RunSource]:
    """Drop runs reached twice, disambiguate ids that clash across PATHs, sort by id.

    One PATH cannot reach a run twice (the walk never revisits a folder), so the
    realpath calls are spent only when several PATHs may overlap.
    """
    seen: set[tuple[tuple[str, str], ...]] = set()
    unique: list[tuple[str, RunSource]] = []
    for raw, source in found:
        if not dedupe:
            unique.append((raw, source))
            continue
        ident = tuple((os.path.realpath(f.path), f.member or "") for f in source.files)
        if ident in seen:
            continue
        seen.add(ident)
        unique.append((raw, source))
    roots: dict[str, set[str]] = {}
    for raw, source in unique:
        roots.setdefault(source.run_id, set()).add(raw)
    out: list[RunSource] = []
    for raw, source in unique:
        if len(roots[source.run_id]) > 1:
            root = raw.replace(os.sep, "/").rstrip("/") or "/"
            source.run_id = root if source.run_id == "." else f"{root}/{source.run_id}"
        out.append(source)
    out.sort(key=lambda s: (s.run_id, str(s.path)))
    return out
