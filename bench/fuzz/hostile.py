"""Time and peak memory of ingest on the hostile files of issue 11, one subprocess each.

    python bench/fuzz/hostile.py

Each file is built by tests/test_damaged_input.py's writers (real writers' output, then
damaged); each load (discovery + ingest, as the CLI does it) runs in its own interpreter
so its peak RSS (VmHWM) is its own.  Prints: case, seconds, peak RSS MB, points read,
and the notes that say what was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import test_damaged_input as t  # noqa: E402
from tests.fixtures_csv_family import d2_train_record, write_d2_records  # noqa: E402

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from diagnose.discover import discover
from diagnose.ingest import load_all
t1 = time.perf_counter()
runs, errors = load_all(discover([sys.argv[1]])[0])
t2 = time.perf_counter()
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({
    "seconds": t2 - t1,
    "peak_mb": hwm / 1024,
    "points": sum(len(r.scalars) + len(r.histograms) for r in runs),
    "errors": [e.message for e in errors],
    "notes": sorted({n.message[:90] for r in runs for n in r.notes}),
}))
"""


def _tf2(d: Path) -> None:
    t._huge_shape_events(d / "run")


def _row100(d: Path) -> None:
    path = t.keras_csv(d / "training.log")
    with open(path, "a") as f:
        f.write("7," + "0.5," * 25_000_000 + "0.5\r\n")


def _cell(d: Path) -> None:
    path = t.keras_csv(d / "training.log")
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "1," + "9" * 200_000 + ",0.5\r\n"
    path.write_text("".join(lines))


def _deep(d: Path) -> None:
    path = d / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(4)])
    with open(path, "a") as f:
        f.write('{"iteration": 99, "total_loss": ' + "[" * 100_000 + "]" * 100_000 + "}\n")


def _wide_lightning(d: Path) -> None:
    folder = d / "version_0"
    folder.mkdir()
    names = ["step", "epoch", "train_loss"] + [f"m{i}" for i in range(t.WIDE)]
    rows = [",".join(names)]
    for step in range(3):
        rows.append(",".join([str(step), "0", str(1 / (step + 1))] + ["0.5"] * t.WIDE))
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")


def _wide_generic(d: Path) -> None:
    names = ["step", "loss"] + [f"m{i}" for i in range(t.WIDE)]
    body = "".join(f"{s},{1 / (s + 1)}," + "1," * (t.WIDE - 1) + "1\n" for s in range(2))
    (d / "log.csv").write_text(",".join(names) + "\n" + body)


def _wide_jsonl(d: Path) -> None:
    path = d / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(3)])
    record = {"iteration": 99, "total_loss": 0.1, **{f"k{i}": 1.0 for i in range(t.WIDE)}}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _wide_trainer(d: Path) -> None:
    entry = {"loss": 0.5, "step": 9, **{f"k{i}": 1.0 for i in range(t.WIDE)}}
    history = [{"loss": 1.0 / s, "step": s} for s in range(1, 4)] + [entry]
    t.write_trainer_state(d / "trainer_state.json", history)


def _wide_yaml(d: Path) -> None:
    t.lightning_csv(d / "logs")
    hp = d / "logs" / "version_0" / "hparams.yaml"
    hp.write_text("lr: 0.01\n" + "".join(f"k{i}: {i}\n" for i in range(t.WIDE)))


def _sparse(d: Path) -> None:
    path = t.trainer_state(d / "trainer_state.json")
    with open(path, "r+b") as f:
        f.truncate(5 * 1024**3)


def _nul_tail(d: Path) -> None:
    path = t.yolo_v5(d / "results.csv")
    with open(path, "ab") as f:
        f.write(b"\x00" * 65536)


CASES: list[tuple[str, Callable[[Path], None]]] = [
    ("1 TF2 tensor claiming 1e9 elements", _tf2),
    ("4 results.csv with a NUL tail", _nul_tail),
    ("5 one 200 KB cell", _cell),
    ("5 one 100 MB row", _row100),
    ("6 JSON line nested 1e5 deep", _deep),
    ("11 Lightning metrics.csv, 1e6 columns", _wide_lightning),
    ("11 generic CSV, 1e6 columns", _wide_generic),
    ("11 JSON-lines record, 1e6 keys", _wide_jsonl),
    ("11 trainer_state.json entry, 1e6 keys", _wide_trainer),
    ("11 hparams.yaml, 1e6 keys", _wide_yaml),
    ("12 5 GB sparse trainer_state.json", _sparse),
]


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"{'case':42} {'s':>6} {'peak MB':>8} {'points':>7}  notes / errors")
    for name, build in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            build(folder)
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(folder)],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            wall = time.perf_counter() - start
            if out.returncode:
                print(
                    f"{name:42} FAILED rc={out.returncode} after {wall:.1f} s: {out.stderr[-300:]}"
                )
                continue
            r = json.loads(out.stdout)
            said = "; ".join(r["errors"] + r["notes"])[:150]
            print(f"{name:42} {r['seconds']:6.2f} {r['peak_mb']:8.0f} {r['points']:7}  {said}")


if __name__ == "__main__":
    main()
