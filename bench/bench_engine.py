"""Benchmark: the rule engine against parsing, and `diagnose` over 1,000 small runs.

Run: ``python bench/bench_engine.py [--runs 1000] [--points 1000000]``.  Prints:

1. on one run of ``--points`` scalars written by torch's SummaryWriter (20 tags, with a
   train/val loss, lr and grad norm among them): parse time (our reader), engine time,
   and their ratio (target: the engine takes well under the parse time);
2. the whole ``diagnose`` command (a subprocess, start-up included) over a folder of
   ``--runs`` small runs in mixed formats (half torch event files, half Keras CSVLogger
   files), with ``--jobs`` = cores (target: under 30 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "_data"


def write_big_run(folder: Path, points: int) -> Path:
    """20 tags x points/20 steps; loss/train, loss/val, lr, grad_norm and 16 others."""
    from torch.utils.tensorboard import SummaryWriter

    if any(folder.glob("events.out.tfevents.*")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    steps = points // 20
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    curves = {
        "loss/train": 2.0 * np.exp(-t / (steps / 5)) + 0.3 + 0.05 * rng.standard_normal(steps),
        "loss/val": 2.1 * np.exp(-t / (steps / 5)) + 0.35 + 0.02 * rng.standard_normal(steps),
        "lr": 0.1 * 0.5 * (1 + np.cos(math.pi * t / steps)),
        "grad_norm": 1.0 + 0.2 * rng.standard_normal(steps) ** 2,
    }
    for i in range(16):
        curves[f"extra/metric_{i}"] = rng.standard_normal(steps).cumsum() * 1e-3
    writer = SummaryWriter(str(folder), max_queue=10_000, flush_secs=3600)
    for s in range(steps):
        for tag, values in curves.items():
            writer.add_scalar(tag, float(values[s]), s)
    writer.close()
    return folder


def write_small_runs(root: Path, count: int) -> Path:
    """``count`` small runs: even ones torch event files, odd ones Keras CSVLogger files."""
    from torch.utils.tensorboard import SummaryWriter

    marker = root / f".complete_{count}"
    if marker.exists():
        return root
    rng = np.random.default_rng(1)
    for i in range(count):
        folder = root / f"run_{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        epochs = 30
        e = np.arange(epochs)
        rate = rng.uniform(3, 12)
        train = 1.5 * np.exp(-e / rate) + 0.1 + 0.02 * rng.standard_normal(epochs)
        val = 1.5 * np.exp(-e / rate) + 0.2 + 0.03 * rng.standard_normal(epochs)
        if i % 7 == 0:  # some overfit
            val = val + np.clip(e - 15, 0, None) * 0.03
        acc = 1 - val / 2
        if i % 2 == 0:
            writer = SummaryWriter(str(folder))
            for s in range(epochs):
                writer.add_scalar("loss/train", float(train[s]), s)
                writer.add_scalar("loss/val", float(val[s]), s)
                writer.add_scalar("accuracy/val", float(acc[s]), s)
            writer.close()
        else:
            lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
            lines += [f"{s},{1 - train[s] / 2},{train[s]},{acc[s]},{val[s]}"
                      for s in range(epochs)]
            (folder / "training.log").write_text("\n".join(lines) + "\n")
    marker.write_text("ok")
    return root


def bench_engine(points: int, repeats: int) -> dict[str, float]:
    from diagnose.config import Config
    from diagnose.discover import discover
    from diagnose.engine import evaluate, load_rules
    from diagnose.ingest import load_run

    folder = write_big_run(DATA / f"engine_{points}", points)
    sources, _ = discover([str(folder)])
    rules = load_rules()
    parse, engine = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = load_run(sources[0])
        t1 = time.perf_counter()
        evaluate(run, Config(), rules)
        t2 = time.perf_counter()
        parse.append(t1 - t0)
        engine.append(t2 - t1)
    out = {
        "points": len(run.scalars),
        "parse_s": statistics.median(parse),
        "engine_s": statistics.median(engine),
    }
    out["engine_over_parse"] = out["engine_s"] / out["parse_s"]
    return out


def bench_many(count: int, repeats: int, jobs: int) -> dict[str, float]:
    root = write_small_runs(DATA / f"many_{count}", count)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "diagnose", str(root), "--format", "json",
             "-o", os.devnull, "--jobs", str(jobs), "--fail-on", "never"],
            capture_output=True, text=True,
        )
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"diagnose failed: {proc.stderr[-500:]}")
    return {"runs": count, "jobs": jobs, "wall_s": statistics.median(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    e = bench_engine(args.points, args.repeats)
    print(f"engine on one run of {e['points']:,} scalars: parse {e['parse_s']:.3f} s, "
          f"engine {e['engine_s']:.3f} s, engine/parse = {e['engine_over_parse']:.2f} "
          f"(target: well under 1)")
    m = bench_many(args.runs, args.repeats, args.jobs)
    print(f"diagnose over {m['runs']} small runs (--jobs {m['jobs']}): {m['wall_s']:.1f} s "
          f"median of {args.repeats} (target: under 30 s)")


if __name__ == "__main__":
    main()
