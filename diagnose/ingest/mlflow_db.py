"""MLflow SQLite store (``mlflow.db``, MLflow's default since 3.7): one Run per MLflow run.

Read with the stdlib ``sqlite3`` only: no mlflow import, and the file is opened through a
``file:...?mode=ro`` URI with ``query_only`` set, so nothing is ever migrated or written
(mlflow's own client upgrades the schema when it opens a store; we must not).  When a
read-only open cannot work (a killed client's hot journal), a private copy is recovered
and read instead (see :func:`_connect`), and the run gets a note.

The schema has changed over the years and is read by column name: ``metrics.step``
(added 2019, a missing step is 0 as mlflow reads it), ``metrics.is_nan`` (NaN is stored as
0.0 with ``is_nan = 1``), ``runs.name`` (else the ``mlflow.runName`` tag).  MLflow clamps
infinities to +-1.7976931348623157e308 on write; those values are read back as +-inf.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.hparams import canonicalize
from diagnose.ingest.csv_logs import MAX_STEP, LogReadError, finish_long, new_run
from diagnose.run import HParamValue, Run
from diagnose.sources import RunSource, SourceFile

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tables every MLflow tracking schema has had since the first one (2019).
REQUIRED_TABLES = frozenset({"experiments", "runs", "metrics", "params"})
#: The largest float64: what mlflow stores for +inf (and its negative for -inf).
_CLAMPED_INF = 1.7976931348623157e308
#: A query running longer than this is cut off (a hostile file cannot hang the tool).
QUERY_SECONDS = 60.0
#: Params longer than this are not hyperparameters.
MAX_PARAM_CHARS = 100_000


@dataclass(frozen=True)
class DbRun:
    """One run as listed from the store: its uuid and the names for its run id."""

    uuid: str
    experiment: str
    name: str
    status: str
    lifecycle_stage: str


def sniff_mlflow_db(path: Path) -> bool:
    """True for an SQLite file holding MLflow's tracking tables (reads 16 bytes first)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(16) != SQLITE_MAGIC:
                return False
        with _connect(path) as (conn, _):
            return _is_mlflow(conn)
    except (OSError, sqlite3.Error, LogReadError):
        return False


@contextmanager
def _connect(path: Path) -> Iterator[tuple[sqlite3.Connection, str]]:
    """A read-only connection, and how it was opened: ``"ro"``, ``"copy"`` or ``"immutable"``.

    ``Path.as_uri`` percent-encodes the name, so ``?`` or ``#`` in a folder name cannot
    smuggle URI parameters in.  When a read-only open fails, the store has an unfinished
    write (a killed client's hot journal, or a writer holding its lock): SQLite would have
    to roll that back, which is a write.  The store and its journal are then copied to a
    temporary folder and the copy is opened, so SQLite recovers the copy and the user's
    file is never touched.  ``immutable`` (no locks, no journal) is used only when there
    is no journal to honour.
    """
    uri = Path(path).resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    how = "ro"
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        conn, how = _fallback(Path(path), uri)
    try:
        deadline = time.monotonic() + QUERY_SECONDS
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
        conn.execute("PRAGMA trusted_schema = OFF")
        if how == "copy":
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # recovers the copy
        conn.execute("PRAGMA query_only = ON")
        yield conn, how
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise LogReadError(f"SQLite query took over {QUERY_SECONDS:.0f} s") from exc
        raise
    finally:
        conn.close()


#: Recovered copies by (store, journal) identity: discovery and each run's load reuse one
#: copy per process; the folders are removed when the process exits.
_COPIES: dict[tuple[object, ...], tempfile.TemporaryDirectory[str]] = {}


def _fallback(path: Path, uri: str) -> tuple[sqlite3.Connection, str]:
    """Open a private, recoverable copy when a journal or WAL sits beside the store."""
    side = [path.with_name(path.name + s) for s in ("-journal", "-wal")]
    side = [p for p in side if p.exists()]
    if not side:
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True), "immutable"
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in (path, *side))
    if key not in _COPIES:
        tmp = tempfile.TemporaryDirectory(prefix="diagnose-mlflow-")
        for p in (path, *side):
            shutil.copyfile(p, Path(tmp.name) / p.name)  # not -shm: rebuilt from the WAL
        _COPIES[key] = tmp
    copy = Path(_COPIES[key].name) / path.name
    return sqlite3.connect(copy, check_same_thread=False), "copy"


def _is_mlflow(conn: sqlite3.Connection) -> bool:
    return _tables(conn).issuperset(REQUIRED_TABLES)


def _tables(conn: sqlite3.Connection) -> set[str]:
    """Real tables only: a view named ``metrics`` could hide anything."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}


def list_runs(path: Path) -> list[DbRun]:
    """Every run in the store, oldest first, with its experiment and run names."""
    try:
        with _connect(path) as (conn, _):
            if not _is_mlflow(conn):
                raise LogReadError("not an MLflow tracking database")
            return _list(conn)
    except sqlite3.Error as exc:
        raise LogReadError(f"SQLite: {exc}") from exc


def _list(conn: sqlite3.Connection, uuid: str | None = None) -> list[DbRun]:
    """The runs table (one run when ``uuid`` is given), read by the columns it has."""
    cols = _columns(conn, "runs")
    name = "r.name" if "name" in cols else "NULL"
    stage = "r.lifecycle_stage" if "lifecycle_stage" in cols else "'active'"
    order = "r.start_time, r.run_uuid" if "start_time" in cols else "r.run_uuid"
    where, args = ("WHERE r.run_uuid = ?", (uuid,)) if uuid is not None else ("", ())
    rows = conn.execute(
        f"SELECT r.run_uuid, e.name, {name}, r.status, {stage} "
        "FROM runs r LEFT JOIN experiments e ON e.experiment_id = r.experiment_id "
        f"{where} ORDER BY {order}",
        args,
    ).fetchall()
    names = _run_name_tags(conn, uuid)
    return [
        DbRun(
            uuid=str(u),
            experiment="" if exp is None else str(exp),
            name=str(rname or names.get(str(u), "")),
            status="" if status is None else str(status),
            lifecycle_stage="" if lifecycle is None else str(lifecycle),
        )
        for u, exp, rname, status, lifecycle in rows
    ]


def _run_name_tags(conn: sqlite3.Connection, uuid: str | None) -> dict[str, str]:
    """Run names from the ``mlflow.runName`` tag (the only place before ``runs.name``)."""
    if "tags" not in _tables(conn):
        return {}
    query = "SELECT run_uuid, value FROM tags WHERE key = 'mlflow.runName'"
    if uuid is not None:
        rows = conn.execute(query + " AND run_uuid = ?", (uuid,))
    else:
        rows = conn.execute(query)
    return {str(u): str(v) for u, v in rows.fetchall() if v is not None}


def run_ids(runs: list[DbRun]) -> list[str]:
    """``<experiment>/<run name>`` per run; a name used twice in one experiment (or none)
    gets the first 8 characters of its uuid so every id stays distinct."""
    seen: dict[tuple[str, str], int] = {}
    for r in runs:
        seen[(r.experiment, r.name)] = seen.get((r.experiment, r.name), 0) + 1
    out = []
    for r in runs:
        name = r.name if r.name else r.uuid[:8]
        if r.name and seen[(r.experiment, r.name)] > 1:
            name = f"{r.name}-{r.uuid[:8]}"
        out.append(f"{r.experiment or '(no experiment)'}/{name}")
    return out


def load_mlflow_db(source: RunSource, file: SourceFile) -> Run:
    """Read one run (``file.member`` is its uuid) of an MLflow SQLite store."""
    if not file.member:
        raise LogReadError("no MLflow run uuid given for the SQLite store")
    uuid = file.member
    path = Path(file.path)
    run = new_run(source, file, "mlflow")
    try:
        with _connect(path) as (conn, how):
            if not _is_mlflow(conn):
                raise LogReadError("not an MLflow tracking database")
            if how == "copy":
                run.note(
                    "unfinished_write",
                    "the store has an unfinished write (a killed or active client); read "
                    "from a recovered private copy, the file itself was not changed",
                    path=str(path),
                )
            elif how == "immutable":
                run.note(
                    "unfinished_write",
                    "the store could not be locked for reading; read as it is on disk",
                    path=str(path),
                )
            long = _metrics(conn, uuid)
            raw = _params(conn, uuid)
            info = _list(conn, uuid)
    except sqlite3.Error as exc:
        raise LogReadError(f"SQLite: {exc}") from exc
    if raw:
        run.raw_hparams = raw
        run.hparams = canonicalize(raw)
    if not info:
        raise LogReadError(f"MLflow run {uuid} is not in the database")
    _status_notes(run, info[0], path)
    if long.empty:
        raise LogReadError("no metric values in the MLflow run")
    stepless = _number_stepless(long)
    if stepless:
        run.note(
            "unsupported",
            f"metric(s) logged without steps, point order used: {', '.join(stepless[:5])}",
            path=str(path),
        )
    return finish_long(run, long, file, path, equal_is_restart=False)


def _number_stepless(long: pd.DataFrame) -> list[str]:
    """Keys whose points all sit at step 0 (``log_metric`` without a step, or a schema
    older than steps) are numbered in logging order, as the file-store reader does."""
    by_key = long.groupby("tag", sort=True)["step"]
    flat = (
        (by_key.transform("size") > 1)
        & (by_key.transform("min") == 0)
        & (by_key.transform("max") == 0)
    )
    if not flat.any():
        return []
    long.loc[flat, "step"] = long[flat].groupby("tag").cumcount().astype("int64")
    return sorted(set(long.loc[flat, "tag"]))


def _metrics(conn: sqlite3.Connection, uuid: str) -> pd.DataFrame:
    """The run's metric rows in the order they were logged: insertion (rowid) order, the
    store's equivalent of the file store's line order.  Timestamps come from the client
    (``log_batch`` takes them as given), so they place points in time, not in order."""
    cols = _columns(conn, "metrics")
    step = "step" if "step" in cols else "0"
    is_nan = "is_nan" if "is_nan" in cols else "0"
    rows = conn.execute(
        f"SELECT key, {step}, value, timestamp, {is_nan} FROM metrics "
        "WHERE run_uuid = ? ORDER BY rowid",
        (uuid,),
    ).fetchall()
    if not rows:
        return pd.DataFrame({"tag": [], "step": [], "value": [], "wall_time": []})
    keys, steps, values, stamps, nans = zip(*rows, strict=True)
    value = np.array([np.nan if v is None else v for v in values], dtype="float64")
    value[np.asarray(nans, dtype=bool)] = np.nan
    value[value >= _CLAMPED_INF] = np.inf
    value[value <= -_CLAMPED_INF] = -np.inf
    step_arr = np.array([0 if s is None else s for s in steps], dtype="int64")
    step_arr = np.clip(step_arr, -MAX_STEP, MAX_STEP)
    wall = np.array([np.nan if t is None else t for t in stamps], dtype="float64") / 1000.0
    return pd.DataFrame(
        {
            "tag": np.array([str(k) for k in keys], dtype=object),
            "step": step_arr,
            "value": value,
            "wall_time": wall,
        }
    )


def _params(conn: sqlite3.Connection, uuid: str) -> dict[str, HParamValue]:
    rows = conn.execute("SELECT key, value FROM params WHERE run_uuid = ?", (uuid,)).fetchall()
    return {
        str(k): str(v)
        for k, v in sorted(rows, key=lambda r: str(r[0]))
        if v is not None and len(str(v)) <= MAX_PARAM_CHARS
    }


def _status_notes(run: Run, info: DbRun, path: Path) -> None:
    """A run still RUNNING, FAILED or KILLED, or deleted, is worth a note (as the file store)."""
    if info.status and info.status != "FINISHED":
        name = f" (run {info.name!r})" if info.name else ""
        run.note(
            "run_status",
            f"MLflow run status is {info.status}{name}",
            path=str(path),
            details={"status": info.status, "run_name": info.name},
        )
    if info.lifecycle_stage == "deleted":
        run.note("run_status", "MLflow run is marked deleted", path=str(path))
