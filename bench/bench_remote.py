"""Remote TensorBoard reading: spool to a temp folder vs ranged reads (bench/README.md).

Not a test.  Starts moto's S3 server (``moto_server``) in its own process on
127.0.0.1, uploads event files written by torch's SummaryWriter (one 1M-scalar file;
sample_logs' torch and Keras runs copied 5 times), and times, each in a fresh
subprocess after the imports and the client session, from the URL to parsed data:

- ``spool``: list once, download the event files whole (16 at a time) into a temp
  folder, then the memory-mapped reader on each;
- ``ranged``: list once, then each event file read through an fsspec file object in
  8 MiB ranged GETs (readahead cache) into memory and the same parser fed the bytes;
  ``ranged16``: the same with 16 files in flight (threads);
- ``command``: what ``diagnose s3://...`` does (discovery with its spool, then
  ``load_run`` per run); ``local``: the same on the local copy of the tree.

``--components`` instead times the parts in one process, interleaved so the load of a
shared machine hits every variant alike: fetch to disk (/tmp and /dev/shm), ranged
fetch (sequential, 16 at a time), parse from the mmap, parse from bytes.

    python bench/bench_remote.py [--quick] [--repeats N] [--components]
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
import json, os, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
mode, url = sys.argv[1], sys.argv[2]
import fsspec, s3fs  # imports and the client session are the same for every mode
from diagnose.discover import discover
from diagnose.ingest import load_run, tfrecord
from diagnose.ingest.tensorboard import load_tensorboard
from diagnose.sources import RunSource, SourceFile
fs, root = fsspec.core.url_to_fs(url)
fs.ls("bench")

def read(path):
    f = SourceFile(Path(path), "tensorboard")
    return load_tensorboard(RunSource(str(path), Path(path), [f]))

t0 = time.perf_counter()
if mode in ("command", "local"):  # the whole diagnose path: discovery + load_run
    sources, errors = discover([url if mode == "command" else sys.argv[3]])
    t_fetch = time.perf_counter() - t0
    runs = [load_run(s) for s in sources]
else:
    names = sorted(n for n in fs.find(root) if "tfevents" in n)
    if mode == "spool":  # concurrent whole-file downloads, then the mmap reader
        tmp = tempfile.mkdtemp()
        local = [os.path.join(tmp, f"{i}.tfevents") for i in range(len(names))]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(fs.get_file, names, local))
        t_fetch = time.perf_counter() - t0
        runs = [read(p) for p in local]
    else:  # 8 MiB ranged GETs into memory, the same parser fed the bytes
        class Held(bytes):  # nothing to give back to the kernel
            def madvise(self, *args):
                pass

        def ranged_open(path):
            chunks = []
            with fs.open(str(path), "rb", block_size=8 << 20, cache_type="readahead") as fh:
                while chunk := fh.read(8 << 20):
                    chunks.append(chunk)
            data = Held(b"".join(chunks))
            rec = tfrecord._new_records(data, str(path))
            rec._mmap = data
            return rec, bool(data)

        tfrecord._open = ranged_open
        t_fetch = float("nan")
        with ThreadPoolExecutor(16 if mode == "ranged16" else 1) as pool:
            runs = list(pool.map(read, names))
total = time.perf_counter() - t0
import resource
print(json.dumps({"total": total, "fetch": t_fetch, "runs": len(runs),
                  "points": int(sum(len(r.scalars) for r in runs)),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


COMPONENTS = r"""
import os, statistics, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import fsspec
from diagnose.ingest import tfrecord
from diagnose.ingest.tensorboard import load_tensorboard
from diagnose.sources import RunSource, SourceFile
repeats, cases = int(sys.argv[1]), sys.argv[2:]
fs = fsspec.filesystem("s3")
plain_open = tfrecord._open

class Held(bytes):  # bytes in memory: nothing to give back to the kernel
    def madvise(self, *args):
        pass

def ranged(path):
    chunks = []
    with fs.open(path, "rb", block_size=8 << 20, cache_type="readahead") as fh:
        while chunk := fh.read(8 << 20):
            chunks.append(chunk)
    return Held(b"".join(chunks))

def parse(path, data=None):
    if data is not None:
        def fed(_path):
            rec = tfrecord._new_records(data, str(_path))
            rec._mmap = data
            return rec, True
        tfrecord._open = fed
    try:
        return load_tensorboard(RunSource("x", Path(path), [SourceFile(Path(path), "tensorboard")]))
    finally:
        tfrecord._open = plain_open

out = {}
def clock(key, fn):
    t = time.perf_counter()
    result = fn()
    out.setdefault(key, []).append(time.perf_counter() - t)
    return result

for case in cases:
    names = sorted(n for n in fs.find(case) if "tfevents" in n)
    for _ in range(repeats):
        for base in ("/tmp", "/dev/shm"):
            tmp = tempfile.mkdtemp(dir=base)
            local = [os.path.join(tmp, str(i)) for i in range(len(names))]
            with ThreadPoolExecutor(16) as pool:
                clock((case, f"fetch to disk {base}"),
                      lambda: list(pool.map(fs.get_file, names, local)))
            clock((case, f"parse mmap {base}"), lambda: [parse(p) for p in local])
        clock((case, "fetch ranged, 1 at a time"), lambda: [ranged(n) for n in names])
        with ThreadPoolExecutor(16) as pool:
            blobs = clock((case, "fetch ranged, 16 at a time"),
                          lambda: list(pool.map(ranged, names)))
        clock((case, "parse bytes"), lambda: [parse(n, b) for n, b in zip(names, blobs)])
for (case, what), v in out.items():
    print(f"  {case:22s} {what:28s} median {statistics.median(v):5.2f} s "
          f"(min {min(v):.2f}, max {max(v):.2f})")
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
    ap.add_argument("--components", action="store_true")
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
        if args.components:
            keys = [url.removeprefix("s3://") for _, url, _, _ in cases]
            print(f"components, median of {repeats}:")
            subprocess.run([sys.executable, "-c", COMPONENTS, str(repeats), *keys], env=env,
                           check=True)
            return
        for (name, url, n, size), folder in zip(cases, (big, small), strict=True):
            print(f"\n{name}: {n} files, {size / 1e6:.1f} MB")
            for mode in ("spool", "ranged", "ranged16", "command", "local"):
                times, last = [], {}
                for _ in range(repeats):
                    argv = [sys.executable, "-c", CHILD, mode, url, str(folder)]
                    out = subprocess.run(argv, env=env, capture_output=True, text=True)
                    if out.returncode:
                        raise SystemExit(f"{mode} failed: {out.stderr[-2000:]}")
                    last = json.loads(out.stdout.strip().splitlines()[-1])
                    times.append(last["total"])
                print(f"  {mode:9s} median {statistics.median(times):6.2f} s "
                      f"(min {min(times):.2f}, max {max(times):.2f}), fetch "
                      f"{last['fetch']:.2f} s, {last['runs']} runs, {last['points']:,} points, "
                      f"peak RSS {last['rss_mb']:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
