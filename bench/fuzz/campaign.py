"""Fuzz campaign: every log family, damaged thousands of ways; prints the counts.

    python bench/fuzz/campaign.py [--seed N] [--flips N] [--last N] [--timeout S] [--quick]

The cases are tests/fuzz_cases.py's (the bounded test suite runs a slice of them): for
each family a valid run from a real writer, cut at every offset of its last ``--last``
bytes, ``--flips`` random bit flips, NUL tails and holes, giant cells and lines, deep
nesting, a huge claimed length, an empty and an all-NUL file; for event files also a
TF2 tensor whose shape claims 1e9 elements.  Each case is
loaded (discovery + ingest) in a worker process watched by this one:

* crash: an exception escaped, or a run error names an exception class;
* hang: no answer within ``--timeout`` seconds (the worker is killed and replaced);
* silent loss: fewer points than the undamaged file and no note or error saying so;
* max RSS: the worker's VmHWM, reset before each case (``/proc/self/clear_refs``).

Then the determinism check: the CLI's JSON for a tree of every family (pristine and
damaged runs) three times, and with ``--jobs 1`` against ``--jobs 2``, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.fuzz_cases import FAMILIES, Case, flipped_byte, mutations, truncations  # noqa: E402


def _peak_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _worker(conn, family_index: int, root: str) -> None:  # type: ignore[no-untyped-def]
    """Build the family's case once, then answer (damaged, offset) requests."""
    case = Case(FAMILIES[family_index], Path(root))
    conn.send(("ready", case.data))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        damaged, offset, flip = msg
        _reset_peak()
        start = time.perf_counter()
        outcome = case.check(damaged, offset, flip)
        conn.send((outcome.kind, outcome.detail, time.perf_counter() - start, _peak_kb()))


class Runner:
    """A worker process for one family, restarted after a hang."""

    def __init__(self, family_index: int, root: Path) -> None:
        self.family_index, self.root = family_index, root
        self.n = 0
        self.start()

    def start(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.n += 1
        folder = self.root / f"w{self.family_index}-{self.n}"
        self.proc = ctx.Process(target=_worker, args=(child, self.family_index, str(folder)))
        self.proc.start()
        _, self.data = self.conn.recv()

    def run(self, damaged: bytes, offset: int | None, flip: int | None, timeout: float) -> tuple:
        self.conn.send((damaged, offset, flip))
        if not self.conn.poll(timeout):
            self.proc.kill()
            self.proc.join()
            self.start()
            return ("hang", f"no answer in {timeout} s", timeout, 0)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


def _cases(
    data: bytes, seed: int, flips: int, last: int, event_file: bool
) -> list[tuple[str, bytes, int | None]]:
    rng = np.random.default_rng(seed)
    out = [(label, d, off) for label, d, off in truncations(data, last)]
    out += [(label, d, None) for label, d in mutations(data, rng, flips, event_file)]
    return out


def _json_runs(tree: Path, *extra: str) -> bytes:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
    out = subprocess.run(
        [sys.executable, "-m", "diagnose", str(tree), "--format", "json", *extra],
        capture_output=True,
        env=env,
        timeout=600,
    )
    return out.stdout


def determinism(root: Path) -> dict[str, object]:
    """Byte-identical JSON over three runs, and --jobs 1 == --jobs 2."""
    tree = root / "tree"
    rng = np.random.default_rng(5)
    for i, family in enumerate(FAMILIES):
        case = Case(family, root / f"det{i}")
        shutil.copytree(case.pristine, tree / f"{family.name}-ok")
        damaged = tree / f"{family.name}-cut"
        shutil.copytree(case.pristine, damaged)
        cut = int(rng.integers(len(case.data) // 2, len(case.data)))
        (damaged / case.rel).write_bytes(case.data[:cut] + b"\x00" * 4096)
    from torch.utils.tensorboard import SummaryWriter

    for r in range(3):
        with SummaryWriter(str(tree / f"hparams{r}")) as w:
            w.add_hparams({f"h{i}": i * r for i in range(40)}, {"hp/x": 1.0}, run_name=".")
            for step in range(20):
                w.add_scalar("loss", 1.0 / (step + 1) + r, step)
    outs = [_json_runs(tree, "--jobs", "1") for _ in range(3)]
    two = _json_runs(tree, "--jobs", "2")
    runs = len(json.loads(outs[0]).get("runs", [])) if outs[0] else 0
    return {
        "runs": runs,
        "three_runs_identical": len(set(outs)) == 1 and bool(outs[0]),
        "jobs1_equals_jobs2": two == outs[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flips", type=int, default=300)
    ap.add_argument("--last", type=int, default=400, help="bytes cut at every offset")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="--flips 30 --last 80")
    ap.add_argument("--no-determinism", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.flips, args.last = 30, 80
    root = Path(tempfile.mkdtemp(prefix="diagnose-fuzz-"))
    totals: Counter[str] = Counter()
    worst_rss = (0, "")
    worst_time = (0.0, "")
    findings: list[str] = []
    started = time.time()
    try:
        for index, family in enumerate(FAMILIES):
            runner = Runner(index, root)
            per: Counter[str] = Counter()
            family_rss = 0
            for label, damaged, offset in _cases(
                runner.data, args.seed, args.flips, args.last, family.name == "tensorboard"
            ):
                kind, detail, seconds, peak = runner.run(
                    damaged, offset, flipped_byte(label), args.timeout
                )
                per[kind] += 1
                name = f"{family.name}:{label}"
                if kind not in ("ok", "undetectable"):
                    findings.append(f"{kind} {name}: {detail}")
                family_rss = max(family_rss, peak)
                if peak > worst_rss[0]:
                    worst_rss = (peak, name)
                if seconds > worst_time[0]:
                    worst_time = (seconds, name)
            runner.close()
            totals.update(per)
            print(
                f"{family.name:18} files {sum(per.values()):5}  crashes {per['crash']}  "
                f"hangs {per['hang']}  silent losses {per['silent_loss']}  "
                f"undetectable flips {per['undetectable']}  max RSS {family_rss / 1024:.0f} MB",
                flush=True,
            )
        files = sum(totals.values())
        print(
            f"\nTOTAL files {files}  crashes {totals['crash']}  hangs {totals['hang']}  "
            f"silent losses {totals['silent_loss']}  undetectable flips {totals['undetectable']}"
        )
        print(f"max RSS {worst_rss[0] / 1024:.0f} MB ({worst_rss[1]})")
        print(f"max time {worst_time[0]:.2f} s ({worst_time[1]})")
        print(f"campaign wall time {time.time() - started:.0f} s")
        for line in findings[:50]:
            print("  " + line)
        if not args.no_determinism:
            print("determinism:", json.dumps(determinism(root)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
