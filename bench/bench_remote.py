"""Remote TensorBoard reading: spool to a temp folder vs ranged reads (bench/README.md).

Not a test.  Starts moto's S3 server (``moto_server``) in its own process on
127.0.0.1, uploads event files written by torch's SummaryWriter, and times, each in a
fresh subprocess, from the URL to parsed Runs:

- ``spool``: what ``diagnose s3://...`` does (list once, concurrent downloads into a
  temp folder, then the memory-mapped reader on the local files);
- ``ranged``: list once, then each event file read through an fsspec file object in
  8 MiB ranged GETs (readahead cache) straight into the same parser (``_open`` fed the
  bytes instead of an mmap), one file after another;
- ``ranged16``: the same with 16 files in flight at once (threads).

    python bench/bench_remote.py            # 1M scalars in one file + 210 small runs
    python bench/bench_remote.py --quick    # 200k scalars + 42 small runs, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_ingest import DATA, write_scalars  # noqa: E402

BUCKET = "bench"

CHILD = r"""
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
mode, url = sys.argv[1], sys.argv[2]
import fsspec, s3fs  # imports and the client session are the same for every mode
from diagnose.discover import discover
from diagnose.ingest import load_run, tensorboard
fsspec.filesystem("s3").ls("bench")
t0 = time.perf_counter()
if mode == "spool":
    sources, errors = discover([url])
    t_list = time.perf_counter() - t0
    runs = [load_run(s) for s in sources]
else:
    from pathlib import Path
    from diagnose.ingest import tfrecord
    from diagnose.ingest.tensorboard import load_tensorboard
    from diagnose.sources import RunSource, SourceFile
    fs, root = fsspec.core.url_to_fs(url)
    names = sorted(n for n in fs.find(root) if "tfevents" in n)
    t_list = time.perf_counter() - t0

    def ranged_open(path):
        chunks = []
        with fs.open(str(path), "rb", block_size=8 << 20, cache_type="readahead") as fh:
            while chunk := fh.read(8 << 20):
                chunks.append(chunk)
        data = Held(b"".join(chunks))
        rec = tfrecord._new_records(data, str(path))
        rec._mmap = data
        return rec, bool(data)

    class Held(bytes):  # the file's bytes in memory: nothing to give back to the kernel
        def madvise(self, *args):
            pass

    tfrecord._open = ranged_open
    def one(name):
        f = SourceFile(Path(name), "tensorboard")
        return load_tensorboard(RunSource(name, Path(name), [f]))
    workers = 16 if mode == "ranged16" else 1
    with ThreadPoolExecutor(workers) as pool:
        runs = list(pool.map(one, names))
total = time.perf_counter() - t0
import resource
print(json.dumps({"total": total, "list": t_list, "runs": len(runs),
                  "points": int(sum(len(r.scalars) for r in runs)),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def small_runs(copies: int) -> Path:
    """sample_logs/tb (22 torch runs) and keras_tb, ``copies`` times: 42*copies/2 runs."""
    folder = DATA / f"remote_small_{copies}"
    if not folder.is_dir():
        for i in range(copies):
            for fam in ("tb", "keras_tb"):
                shutil.copytree(REPO / "sample_logs" / fam, folder / f"copy{i}" / fam)
    return folder


def upload(endpoint: str, folder: Path, prefix: str) -> tuple[int, int]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                          aws_secret_access_key="s", region_name="us-east-1")
    n = size = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
            n += 1
            size += path.stat().st_size
    return n, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    big = write_scalars(DATA / ("scalars_200k" if args.quick else "scalars_1m"), 10,
                        20_000 if args.quick else 100_000)
    small = small_runs(1 if args.quick else 5)
    proc, endpoint = start_moto()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               PYTHONPATH=str(REPO))
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                     aws_secret_access_key="s", region_name="us-east-1").create_bucket(
            Bucket=BUCKET)
        cases = []
        for name, folder in (("one big file", big), ("many small runs", small)):
            n, size = upload(endpoint, folder, name.replace(" ", "_"))
            cases.append((name, f"s3://{BUCKET}/{name.replace(' ', '_')}", n, size))
        for name, url, n, size in cases:
            print(f"\n{name}: {n} files, {size / 1e6:.1f} MB")
            for mode in ("spool", "ranged", "ranged16"):
                times, last = [], {}
                for _ in range(repeats):
                    out = subprocess.run([sys.executable, "-c", CHILD, mode, url], env=env,
                                         capture_output=True, text=True)
                    if out.returncode:
                        raise SystemExit(f"{mode} failed: {out.stderr[-2000:]}")
                    last = json.loads(out.stdout.strip().splitlines()[-1])
                    times.append(last["total"])
                print(f"  {mode:9s} median {statistics.median(times):6.2f} s "
                      f"(min {min(times):.2f}, max {max(times):.2f}), list "
                      f"{last['list']:.2f} s, {last['runs']} runs, {last['points']:,} points, "
                      f"peak RSS {last['rss_mb']:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
