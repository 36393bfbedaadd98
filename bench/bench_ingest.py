"""Ingest speed: our TensorBoard reader vs EventAccumulator vs tbparse.

Not a test.  Writes event files with torch's SummaryWriter into ``bench/_data/`` (kept
between runs), then times each reader in its own subprocess, so each one's peak memory
(``ru_maxrss``) is its own.  Prints medians, ratios and memory; see bench/README.md.

    python bench/bench_ingest.py            # 1M + 5M scalars, 20k histograms
    python bench/bench_ingest.py --quick    # 1M scalars, 5k histograms, fewer repeats
    python bench/bench_ingest.py --full     # + 100k histograms (~1 GB file)
    python bench/bench_ingest.py --full --ours-only --no-5m   # ours: 1M + 100k histograms
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data"
REPO = Path(__file__).resolve().parents[1]
BASE_WALL = 1_700_000_000.0


def write_scalars(folder: Path, tags: int, steps: int) -> Path:
    """``tags x steps`` torch add_scalar points (old-style simple_value, the default)."""
    if folder.is_dir() and any(folder.glob("events.out.tfevents*")):
        return folder
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"group{t % 4}/metric_{t}" for t in range(tags)]
    t0 = time.perf_counter()
    with SummaryWriter(str(folder), max_queue=100_000, flush_secs=3600) as w:
        for start in range(0, steps, 10_000):
            block = rng.standard_normal((min(10_000, steps - start), tags)).tolist()
            for k, row in enumerate(block):
                step = start + k
                for t in range(tags):
                    w.add_scalar(names[t], row[t], step, walltime=BASE_WALL + step * 0.01)
    print(f"wrote {tags * steps:,} scalars to {folder} in {time.perf_counter() - t0:.0f} s")
    return folder


def write_histograms(folder: Path, count: int) -> Path:
    """``count`` torch add_histogram samples of 1,000 values (default TF-style bins)."""
    if folder.is_dir() and any(folder.glob("events.out.tfevents*")):
        return folder
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tags = [f"layer{t}/weight" for t in range(10)]
    t0 = time.perf_counter()
    with SummaryWriter(str(folder), max_queue=1000, flush_secs=3600) as w:
        for i in range(count):
            w.add_histogram(tags[i % 10], rng.standard_normal(1000) * 0.05, i // 10)
    print(f"wrote {count:,} histograms to {folder} in {time.perf_counter() - t0:.0f} s")
    return folder


# ---------------------------------------------------------------------------
# child: one reader, timed, in its own process
# ---------------------------------------------------------------------------


def _child(reader: str, folder: str, repeats: int) -> None:
    import resource

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if reader == "ours":
        from diagnose.ingest.tensorboard import load_tensorboard
        from diagnose.sources import RunSource, SourceFile

        files = sorted(p for p in Path(folder).iterdir() if "tfevents" in p.name)
        source = RunSource("bench", Path(folder), [SourceFile(p, "tensorboard") for p in files])

        def read() -> dict:
            run = load_tensorboard(source)
            df = run.scalars
            hist_bytes = sum(h.buckets.nbytes for h in run.histograms)
            # deep: categorical columns count their codes and their categories
            table = int(df.memory_usage(index=False, deep=True).sum()) + hist_bytes
            return {
                "scalars": len(df),
                "histograms": len(run.histograms),
                "table_mb": table / 2**20,
            }

    elif reader == "event_accumulator":
        from tensorboard.backend.event_processing import event_accumulator as ea

        guidance = {
            k: 0
            for k in (
                ea.SCALARS,
                ea.HISTOGRAMS,
                ea.TENSORS,
                ea.IMAGES,
                ea.AUDIO,
                ea.COMPRESSED_HISTOGRAMS,
            )
        }

        def read() -> dict:
            acc = ea.EventAccumulator(folder, size_guidance=guidance)
            acc.Reload()
            tags = acc.Tags()
            n = sum(len(acc.Scalars(t)) for t in tags[ea.SCALARS])
            return {
                "scalars": n,
                "histograms": sum(len(acc.Histograms(t)) for t in tags[ea.HISTOGRAMS]),
            }

    elif reader == "tbparse":
        from tbparse import SummaryReader

        def read() -> dict:
            return {"scalars": len(SummaryReader(folder).scalars)}

    else:
        raise SystemExit(f"unknown reader {reader}")
    base = rss_mb()
    times = []
    info: dict = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        info = read()
        times.append(time.perf_counter() - t0)
    info.update(
        times=times, median=statistics.median(times), base_rss_mb=base, peak_rss_mb=rss_mb()
    )
    print("RESULT " + json.dumps(info))


def measure(reader: str, folder: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, __file__, "--child", reader, str(folder), str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{reader} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def file_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def report(name: str, folder: Path, results: dict[str, dict]) -> None:
    ours = results["ours"]
    print(f"\n## {name}: {file_mb(folder):.0f} MB on disk")
    print(
        f"{'reader':<18}{'median s':>10}{'points':>12}{'peak RSS MB':>13}{'+RSS MB':>9}{'ratio':>8}"
    )
    for reader, r in results.items():
        ratio = r["median"] / ours["median"]
        grown = r["peak_rss_mb"] - r["base_rss_mb"]
        points = r.get("scalars", 0) or r.get("histograms", 0)
        print(
            f"{reader:<18}{r['median']:>10.2f}{points:>12,}{r['peak_rss_mb']:>13.0f}"
            f"{grown:>9.0f}{ratio:>7.1f}x"
        )
    if "table_mb" in ours:
        grown = ours["peak_rss_mb"] - ours["base_rss_mb"]
        print(
            f"ours: resulting tables {ours['table_mb']:.0f} MB; RSS growth / table = "
            f"{grown / max(ours['table_mb'], 1e-9):.2f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M scalars and 5k histograms only")
    ap.add_argument("--full", action="store_true", help="also 100k histograms (~1 GB)")
    ap.add_argument("--ours-only", action="store_true", help="skip EventAccumulator/tbparse")
    ap.add_argument("--no-5m", action="store_true", help="skip the 5M-scalar set")
    args = ap.parse_args()
    hist_n = 5_000 if args.quick else 100_000 if args.full else 20_000
    # Write everything first, so timings never share the CPU with a writer.
    scal_1m = write_scalars(DATA / "scalars_1m", 20, 50_000)
    scal_5m = None if args.quick or args.no_5m else write_scalars(DATA / "scalars_5m", 20, 250_000)
    hist = write_histograms(DATA / f"histograms_{hist_n // 1000}k", hist_n)
    sets = [("1M scalars (20 tags x 50,000 steps)", scal_1m, 5, 1)]
    if scal_5m is not None:
        sets.append(("5M scalars (20 tags x 250,000 steps)", scal_5m, 3, 1))
    for name, folder, ours_n, theirs_n in sets:
        results = {"ours": measure("ours", folder, ours_n)}
        if args.ours_only:
            report(name, folder, results)
            continue
        results["event_accumulator"] = measure("event_accumulator", folder, theirs_n)
        results["tbparse"] = measure("tbparse", folder, theirs_n)
        report(name, folder, results)
    results = {"ours": measure("ours", hist, 3)}
    # EventAccumulator's pure-Python CRC makes 1 GB take many minutes
    if hist_n <= 20_000 and not args.ours_only:
        results["event_accumulator"] = measure("event_accumulator", hist, 1)
    report(f"{hist_n:,} histograms (torch add_histogram, 1,000 values each)", hist, results)


if __name__ == "__main__":
    main()
