"""MLflow SQLite store (``mlflow.db``): databases written by the real ``mlflow`` package.

The stores are written once per session by a subprocess running mlflow (so mlflow's
import, logging and atexit hooks stay out of this process): several experiments, a
healthy and a diverging run, a run name used twice, a hostile run name, NaN and inf, and
a run still in progress (the writer dies with ``os._exit`` before ``end_run``).

The older-schema store is built from mlflow's own history: its ``initial_models`` (the
first, 2019 schema: metrics without ``step`` or ``is_nan``) and then alembic run to the
first migration only (``451aebb31d03``, which adds ``metrics.step``).  No mlflow client
of that era is installable here and today's client would migrate the file, so the rows
are inserted with SQL in that schema's columns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from diagnose.cli import main
from diagnose.discover import discover
from diagnose.ingest import load_run

pytestmark = pytest.mark.slow  # one mlflow subprocess per session (~10 s)

HOSTILE = "evil\n::error::pwned|`x` \x1b[31mred"

WRITER = textwrap.dedent(
    """
    import math, os, sys

    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base

    out = sys.argv[1]
    # Older schemas: mlflow's first models, then alembic to the first migration only.
    for revision in ("initial", "451aebb31d03"):
        os.makedirs(os.path.join(out, "old_" + revision))
        url = "sqlite:///" + os.path.join(out, "old_" + revision, "mlflow.db")
        engine = sqlalchemy.create_engine(url)
        Base.metadata.create_all(engine)
        if revision != "initial":
            command.upgrade(_get_alembic_config(url), revision)
        engine.dispose()

    import mlflow

    os.makedirs(os.path.join(out, "store"))
    mlflow.set_tracking_uri("sqlite:///" + os.path.join(out, "store", "mlflow.db"))

    mlflow.set_experiment("vision")
    with mlflow.start_run(run_name="healthy"):
        mlflow.log_params({"lr": 0.01, "batch_size": 32, "optimizer": "adam"})
        for s in range(60):
            mlflow.log_metrics(
                {"train_loss": 2.0 / (s + 1) + 0.05, "val_loss": 2.2 / (s + 1) + 0.08}, step=s
            )
    with mlflow.start_run(run_name="healthy"):  # the same name again
        mlflow.log_param("lr", 0.02)
        for s in range(30):
            mlflow.log_metric("train_loss", 1.0 / (s + 1), step=s)

    mlflow.set_experiment("nlp")
    with mlflow.start_run(run_name="diverged"):
        mlflow.log_param("learning_rate", 3.0)
        for s in range(40):
            v = 1.0 + 0.05 * s if s < 30 else (math.inf if s == 30 else math.nan)
            mlflow.log_metric("loss", v, step=s)
    with mlflow.start_run(run_name=sys.argv[2]):
        for s in range(20):
            mlflow.log_metric("loss", 1.0 / (s + 1), step=s)

    mlflow.set_experiment("live")
    mlflow.start_run(run_name="in progress")
    mlflow.log_param("lr", 0.1)
    for s in range(25):
        mlflow.log_metric("train/loss", 1.0 / (s + 1), step=s)
    sys.stdout.flush()
    os._exit(0)  # no end_run, no atexit: the run stays RUNNING
    """
)


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlflow_stores")
    subprocess.run(
        [sys.executable, "-c", WRITER, str(root), HOSTILE],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=240,
    )
    for revision, steps in (("initial", False), ("451aebb31d03", True)):
        _fill_old(root / f"old_{revision}" / "mlflow.db", steps)
    return root


def _fill_old(db: Path, steps: bool) -> None:
    """Rows in the old schema's own columns (what an mlflow 1.0 client wrote)."""
    conn = sqlite3.connect(db)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(metrics)")}
    assert ("step" in cols) == steps and "is_nan" not in cols
    conn.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
        "VALUES (1, 'legacy', '/tmp/x', 'active')"
    )
    conn.execute(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
        "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
        "artifact_uri, experiment_id) VALUES ('0123456789abcdef0123456789abcdef', '', "
        "'LOCAL', 'train.py', '', 'me', 'FINISHED', 1000, 2000, '', 'active', '', 1)"
    )
    conn.execute(
        "INSERT INTO tags (key, value, run_uuid) "
        "VALUES ('mlflow.runName', 'old run', '0123456789abcdef0123456789abcdef')"
    )
    conn.execute(
        "INSERT INTO params (key, value, run_uuid) "
        "VALUES ('lr', '0.3', '0123456789abcdef0123456789abcdef')"
    )
    for i in range(30):
        value = 2.0 / (i + 1)
        if steps:
            conn.execute(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step) "
                "VALUES ('loss', ?, ?, '0123456789abcdef0123456789abcdef', ?)",
                (value, 1_000_000 + i, i * 10),
            )
        else:
            conn.execute(
                "INSERT INTO metrics (key, value, timestamp, run_uuid) "
                "VALUES ('loss', ?, ?, '0123456789abcdef0123456789abcdef')",
                (value, 1_000_000 + i),
            )
    conn.commit()
    conn.close()


def by_id(root: Path | str) -> dict[str, object]:
    sources, errors = discover([str(root)])
    assert errors == []
    return {s.run_id: s for s in sources}


def test_one_run_per_mlflow_run_named_by_experiment_and_run(stores: Path) -> None:
    runs = by_id(stores / "store")
    ids = sorted(runs)
    healthy = [i for i in ids if i.startswith("mlflow.db/vision/healthy-")]
    assert len(healthy) == 2  # a name used twice gets the uuid's first 8 characters
    assert "mlflow.db/nlp/diverged" in ids
    assert "mlflow.db/live/in progress" in ids
    assert f"mlflow.db/nlp/{HOSTILE}" in ids
    assert len(ids) == 5
    # The store itself as PATH: ids start at the experiment.
    direct = by_id(stores / "store" / "mlflow.db")
    assert sorted(direct) == sorted(i.removeprefix("mlflow.db/") for i in ids)


def test_metrics_steps_timestamps_params_and_non_finite_values(stores: Path) -> None:
    runs = by_id(stores / "store")
    run = load_run(runs["mlflow.db/nlp/diverged"])
    assert run.format == "mlflow"
    loss = run.scalars[run.scalars["tag"] == "loss"].sort_values("step")
    assert loss["step"].tolist() == list(range(40))
    values = loss["value"].to_numpy()
    np.testing.assert_allclose(values[:30], 1.0 + 0.05 * np.arange(30))
    assert values[30] == np.inf  # stored clamped to the largest float, read back as inf
    assert np.isnan(values[31:]).all()  # stored as 0.0 with is_nan = 1
    wall = loss["wall_time"].to_numpy()
    assert (np.diff(wall) >= 0).all() and 1.6e9 < wall[0] < 4e9  # ms -> seconds
    assert run.hparams["learning_rate"] == 3.0

    healthy = [load_run(s) for i, s in runs.items() if i.startswith("mlflow.db/vision/healthy-")]
    run = next(r for r in healthy if r.hparams["learning_rate"] == 0.01)
    assert set(run.scalars["tag"].astype(str)) == {"train_loss", "val_loss"}
    assert run.hparams["learning_rate"] == 0.01 and run.hparams["batch_size"] == 32
    assert not [n for n in run.notes if n.code == "run_status"]


def test_a_run_still_in_progress_loads_with_a_status_note(stores: Path) -> None:
    run = load_run(by_id(stores / "store")["mlflow.db/live/in progress"])
    assert len(run.scalars) == 25
    status = [n for n in run.notes if n.code == "run_status"]
    assert len(status) == 1 and "RUNNING" in status[0].message


def test_reading_never_writes_or_imports_mlflow(stores: Path) -> None:
    db = stores / "store" / "mlflow.db"
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    listing = sorted(p.name for p in db.parent.iterdir())
    code = textwrap.dedent(
        f"""
        import sys
        from diagnose.discover import discover
        from diagnose.ingest import load_run
        sources, _ = discover([{str(db)!r}])
        for s in sources:
            load_run(s)
        print(len(sources), "mlflow" in sys.modules, "sqlalchemy" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["5", "False", "False"]
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in db.parent.iterdir()) == listing  # no -journal, -wal


@pytest.mark.parametrize(("revision", "steps"), [("initial", False), ("451aebb31d03", True)])
def test_older_schemas_are_read_without_migrating(stores: Path, revision: str, steps: bool) -> None:
    db = stores / f"old_{revision}" / "mlflow.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    runs = by_id(db.parent)
    assert list(runs) == ["mlflow.db/legacy/old run"]  # name from the mlflow.runName tag
    run = load_run(runs["mlflow.db/legacy/old run"])
    loss = run.scalars.sort_values("step")
    expected = [i * 10 for i in range(30)] if steps else list(range(30))
    assert loss["step"].tolist() == expected
    np.testing.assert_allclose(loss["value"], 2.0 / np.arange(1, 31))
    assert run.hparams["learning_rate"] == 0.3
    assert any(n.code == "unsupported" for n in run.notes) is not steps
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_other_sqlite_files_are_ignored_quietly(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "cache.db")
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    (tmp_path / "garbage.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(200))
    (tmp_path / "notes.db").write_text("not a database")
    assert discover([str(tmp_path)]) == ([], [])
    sources, errors = discover([str(tmp_path / "cache.db")])
    assert sources == [] and "not a training log" in errors[0].message


KILL_MID_WRITE = textwrap.dedent(
    """
    import os, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    uuid = conn.execute("SELECT run_uuid FROM runs WHERE name = 'diverged'").fetchone()[0]
    conn.execute("PRAGMA cache_size = 1")  # spill the uncommitted pages into the file
    conn.execute("BEGIN EXCLUSIVE")
    conn.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "VALUES ('loss', 0.5, 0, ?, ?, 0)",
        [(uuid, 1000 + i) for i in range(20000)],
    )
    os._exit(0)  # killed mid-transaction: a hot journal stays beside the store
    """
)


def test_a_store_killed_mid_write_is_read_from_a_recovered_copy(
    stores: Path, tmp_path: Path
) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes((stores / "store" / "mlflow.db").read_bytes())
    subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(db)], check=True, timeout=60)
    journal = tmp_path / "mlflow.db-journal"
    assert journal.stat().st_size > 0
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, journal)]

    run = load_run(by_id(tmp_path)["mlflow.db/nlp/diverged"])
    assert run.scalars["step"].tolist() == list(range(40))  # only what was committed
    assert any(n.code == "unfinished_write" for n in run.notes)
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, journal)] == before


def test_an_empty_store_is_quiet_on_the_walk_and_explained_as_path(
    stores: Path, tmp_path: Path
) -> None:
    db = tmp_path / "mlflow.db"
    conn = sqlite3.connect(db)
    conn.execute(f"ATTACH DATABASE '{stores / 'store' / 'mlflow.db'}' AS src")
    for (sql,) in conn.execute(
        "SELECT sql FROM src.sqlite_master WHERE type = 'table' AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(sql)
    conn.commit()
    conn.close()
    assert discover([str(tmp_path)]) == ([], [])
    sources, errors = discover([str(db)])
    assert sources == [] and errors[0].message == "MLflow database holds no runs"


def test_a_view_posing_as_mlflow_tables_is_not_read(tmp_path: Path) -> None:
    """Only real tables count: a view could run any query the file's author wrote."""
    conn = sqlite3.connect(tmp_path / "mlflow.db")
    for table in ("experiments", "runs", "params"):
        conn.execute(f"CREATE TABLE {table} (x)")
    conn.execute("CREATE VIEW metrics AS SELECT 1 AS key")
    conn.commit()
    conn.close()
    assert discover([str(tmp_path)]) == ([], [])


def test_cli_end_to_end_states_findings_and_escaped_names(stores: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "diagnose", str(stores / "store")]
    out = subprocess.run(
        [*cmd, "--format", "json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 1, out.stderr  # a diverged run is an error
    report = json.loads(out.stdout)
    states = {r["run"]: r["states"] for r in report["runs"]}
    assert "divergence" in states["mlflow.db/nlp/diverged"]
    assert {
        f["rule"]
        for r in report["runs"]
        if r["run"] == "mlflow.db/nlp/diverged"
        for f in r["findings"]
    } >= {"DIV001"}
    assert states["mlflow.db/live/in progress"] == []
    assert report["errors"] == []

    gh, text = io.StringIO(), io.StringIO()
    with redirect_stdout(gh):
        main([str(stores / "store"), "--format", "github"])
    with redirect_stdout(text):
        main([str(stores / "store"), "--format", "text"])
    assert not any(line.startswith("::error::pwned") for line in gh.getvalue().splitlines())
    assert "\x1b" not in text.getvalue() and "mlflow.db/nlp/diverged" in text.getvalue()
