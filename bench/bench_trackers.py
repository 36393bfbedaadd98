"""Load time of the tracker readers: MLflow's SQLite store and a W&B offline run.

Not a test.  Writes into ``bench/_data/`` (kept between runs):

- ``mlflow/mlflow.db``: the real mlflow creates the store and RUNS runs (params, one
  logged point each), then ``POINTS`` metric rows per run are bulk-inserted with sqlite3
  into mlflow's own ``metrics`` table (what ``log_batch`` writes, without its per-call
  cost: writing 1M rows through the client takes many minutes);
- ``wandb/``: one W&B offline run written by the real wandb, ``ROWS`` ``wandb.log`` calls
  of 3 keys (+ a val key every 100 steps).

Each reader runs in its own subprocess (peak RSS is its own) and reports wall and CPU
seconds of discover + load, median of 3.  For the store, mlflow's own client reading
the same metrics (``MlflowClient.get_metric_history`` per key) is timed as a reference.

    python bench/bench_trackers.py [--runs 20] [--points 50000] [--rows 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data"
REPO = Path(__file__).resolve().parents[1]

MLFLOW_WRITER = textwrap.dedent(
    """
    import sys, mlflow
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    mlflow.set_experiment("bench")
    for i in range(int(sys.argv[2])):
        with mlflow.start_run(run_name=f"run{i}"):
            mlflow.log_params({"lr": 0.01 * (i + 1), "batch_size": 32})
            mlflow.log_metric("train_loss", 1.0, step=0)
    """
)

WANDB_WRITER = textwrap.dedent(
    """
    import math, sys, wandb
    run = wandb.init(project="bench", config={"lr": 0.01}, dir=sys.argv[1], mode="offline")
    for s in range(int(sys.argv[2])):
        row = {"train/loss": 1.0 / math.sqrt(s + 1), "lr": 0.01, "grad_norm": 1.0 + (s % 7) * 0.1}
        if s % 100 == 0:
            row["val/loss"] = 1.1 / math.sqrt(s + 1)
        wandb.log(row, step=s)
    run.finish()
    """
)

OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    from diagnose.discover import discover
    from diagnose.ingest import load_all
    t, c = time.perf_counter(), time.process_time()
    sources, errors = discover([sys.argv[1]])
    runs, errors = load_all(sources)
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "runs": len(runs), "points": sum(len(r.scalars) for r in runs),
                      "errors": len(errors),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

MLFLOW_CLIENT = textwrap.dedent(
    """
    import json, logging, resource, sys, time
    from mlflow.tracking import MlflowClient
    logging.disable(logging.INFO)
    t, c = time.perf_counter(), time.process_time()
    client = MlflowClient(tracking_uri="sqlite:///" + sys.argv[1])
    points = 0
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=50000)
    for run in runs:
        for key in ("train_loss", "val_loss"):  # the bulk rows are not in latest_metrics
            points += len(client.get_metric_history(run.info.run_id, key))
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "runs": len(runs), "points": points, "errors": 0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def write_mlflow(runs: int, points: int) -> Path:
    db = DATA / "mlflow" / f"mlflow_{runs}x{points}.db"
    if db.exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", MLFLOW_WRITER, str(db), str(runs)], check=True)
    conn = sqlite3.connect(db)
    t0 = int(time.time() * 1000)  # after the client's own points, as a live run would be
    uuids = [r[0] for r in conn.execute("SELECT run_uuid FROM runs")]
    for n, uuid in enumerate(uuids):
        rows = [
            (key, 1.0 / (s + 1) + 0.01 * k + 0.001 * n, t0 + s * 10, uuid, s, 0)
            for s in range(1, points // 2 + 1)
            for k, key in enumerate(("train_loss", "val_loss"))
        ]
        conn.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.commit()
    conn.close()
    return db


def write_wandb(rows: int) -> Path:
    folder = DATA / f"wandb_{rows}"
    if folder.is_dir() and list(folder.glob("wandb/offline-run-*/run-*.wandb")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run(
        [sys.executable, "-c", WANDB_WRITER, str(folder), str(rows)], check=True, env=env
    )
    return folder


def measure(code: str, path: Path, repeats: int = 3) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {k: statistics.median(r[k] for r in results) for k in results[0]}
    summary["wall_range"] = (min(r["wall"] for r in results), max(r["wall"] for r in results))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-client", action="store_true", help="skip mlflow's own client")
    args = parser.parse_args()
    db = write_mlflow(args.runs, args.points)
    print("mlflow.db", db.stat().st_size // 2**20, "MB")
    print("  ours  ", measure(OURS, db))
    if not args.no_client:
        print("  mlflow", measure(MLFLOW_CLIENT, db, repeats=1))
    folder = write_wandb(args.rows)
    [wb] = folder.glob("wandb/offline-run-*/run-*.wandb")
    print("wandb", wb.stat().st_size // 2**20, "MB")
    print("  ours  ", measure(OURS, folder))


if __name__ == "__main__":
    main()
