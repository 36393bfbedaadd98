"""Fuzz cases for every log family: a valid run from a real writer, damaged many ways.

Shared by the bounded fuzz suite (tests/test_fuzz_ingest.py) and the longer campaign
(bench/fuzz/campaign.py).  A case is (family, label, damaged bytes); :func:`check`
loads it through discovery + ingest as the CLI does and classifies the outcome:

* ``crash``: an exception escaped, or a run's error names an exception class (our bug);
* ``silent_loss``: fewer points than the undamaged file, with no note and no error
  saying so (a cut exactly at a record boundary is a valid shorter file: not counted);
* ``ok`` otherwise.  Time is measured by the caller.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.fixtures_csv_family import (
    KerasCSVLogger,
    d2_train_record,
    keras_fit,
    write_d2_records,
    write_keras_history,
    write_mlflow_run,
    write_trainer_state,
    write_yolov5_epoch,
    write_yolov8_epoch,
)

#: Note codes that say data was lost or damaged.
DAMAGE_CODES = frozenset(
    {
        "truncated",
        "corrupt_record",
        "skipped_rows",
        "bad_value",
        "unreadable",
        "encoding",
        "restart",
        "duplicate_steps",
        "unsupported",
        "empty",
    }
)
#: Bytes a flipped cell can become and still read as "not logged" (blank, separator).
_BLANKING = frozenset(bytes([b]) for b in b" \t,;|\r\n\x0b\x0c")
_CRASH = re.compile(r"^[A-Z]\w*(Error|Exception|Exit|Interrupt)\b")


@dataclass
class Family:
    """How to write one valid run, and which file of it the fuzzer damages."""

    name: str
    write: Callable[[Path], Path]  # folder -> the file to damage
    line_based: bool  # a cut right after a line end is a valid shorter file


def _keras(folder: Path) -> Path:
    path = folder / "training.log"
    keras_fit(
        KerasCSVLogger(path),
        range(8),
        lambda e: {"loss": 1.0 / (e + 1), "acc": e / 10, "val_loss": 1.2 / (e + 1)},
    )
    return path


def _lightning(folder: Path) -> Path:
    """Lightning CSVLogger's layout (sparse val rows, ``epoch`` and ``step`` columns)."""
    sub = folder / "version_0"
    sub.mkdir(parents=True)
    rows = ["epoch,step,train_loss,val_loss"]
    for step in range(10):
        rows.append(f"{step // 5},{step},{1.0 / (step + 1)},")
        if step % 5 == 4:
            rows.append(f"{step // 5},{step},,{1.5 / (step + 1)}")
    (sub / "metrics.csv").write_text("\n".join(rows) + "\n")
    (sub / "hparams.yaml").write_text("lr: 0.01\nbatch_size: 32\n")
    return sub / "metrics.csv"


def _yolo5(folder: Path) -> Path:
    path = folder / "results.csv"
    for e in range(6):
        write_yolov5_epoch(path, e, [0.1 / (e + 1)] * 10 + [0.01] * 3)
    return path


def _yolo8(folder: Path) -> Path:
    path = folder / "results.csv"
    for e in range(6):
        write_yolov8_epoch(path, e, 10.0 * e, [0.1 / (e + 1)] * 10 + [0.01] * 3)
    return path


def _trainer_state(folder: Path) -> Path:
    path = folder / "trainer_state.json"
    history = [
        {"epoch": s / 10, "grad_norm": 1.0, "learning_rate": 1e-4, "loss": 2.0 / s, "step": s}
        for s in range(1, 9)
    ]
    history.append({"epoch": 0.8, "eval_loss": 0.9, "step": 8})
    write_trainer_state(path, history)
    return path


def _d2(folder: Path) -> Path:
    path = folder / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(8)])
    return path


def _history(folder: Path) -> Path:
    path = folder / "history.json"
    write_keras_history(
        path, {"loss": [1.0 / (e + 1) for e in range(10)], "val_loss": [0.5 + e for e in range(10)]}
    )
    return path


def _mlflow(folder: Path) -> Path:
    run = write_mlflow_run(
        folder,
        {"loss": [(1000 + s, 1.0 / (s + 1), s) for s in range(10)], "acc": [(1000, 0.5, 0)]},
        params={"lr": "0.01"},
    )
    return run / "metrics" / "loss"


def _generic(folder: Path) -> Path:
    path = folder / "progress.csv"
    rows = "".join(f"{s},{1 / (s + 1):.5f},{s / 20}\n" for s in range(10))
    path.write_text("step,loss,accuracy\n" + rows)
    return path


def _tensorboard(folder: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as w:
        for step in range(10):
            w.add_scalar("loss", 1.0 / (step + 1), step)
            w.add_scalar("acc", step / 10, step)
    return next(folder.glob("events.out.tfevents.*"))


FAMILIES = [
    Family("tensorboard", _tensorboard, False),
    Family("keras_csv", _keras, True),
    Family("lightning_csv", _lightning, True),
    Family("ultralytics_v5", _yolo5, True),
    Family("ultralytics_v8", _yolo8, True),
    Family("generic_csv", _generic, True),
    Family("hf_trainer_state", _trainer_state, False),
    Family("jsonl_detectron2", _d2, True),
    Family("keras_history", _history, False),
    Family("mlflow", _mlflow, True),
]


# ---------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------


def _record_ends(data: bytes) -> list[int]:
    """Byte offsets where a TFRecord ends (a cut there is a valid shorter file)."""
    ends, pos = [], 0
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos : pos + 8], "little")
        pos += 12 + n + 4
        if pos > len(data):
            break
        ends.append(pos)
    return ends


def clean_cut(family: Family, data: bytes, offset: int) -> bool:
    """True when data[:offset] is itself a valid, complete file of the family."""
    if offset == len(data):
        return True
    if family.name == "tensorboard":
        return offset in set(_record_ends(data))
    if family.line_based:  # at a line end, or just before one (the line is whole)
        return data[offset - 1 : offset] in (b"\n", b"\r") or data[offset : offset + 1] in (
            b"\n",
            b"\r",
        )
    return False


def flipped_byte(label: str) -> int | None:
    """The byte offset a ``flip@<pos>.<bit>`` case changed, else None."""
    return int(label[5:].split(".")[0]) if label.startswith("flip@") else None


def truncations(data: bytes, last: int) -> Iterator[tuple[str, bytes, int]]:
    """Every cut in the last ``last`` bytes: (label, bytes, offset)."""
    for offset in range(max(1, len(data) - last), len(data)):
        yield f"cut@{offset}", data[:offset], offset


def _huge_tensor_record() -> bytes:
    """A TFRecord holding a TF2 scalar and a histogram whose shapes claim 1e9 elements."""
    import io

    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.record_writer import RecordWriter

    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for plugin, dims in (("scalars", [10**9]), ("histograms", [10**9 // 3, 3])):
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            float_val=[1.0],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in dims]),
        )
        value = summary_pb2.Summary.Value(tag=f"bomb_{plugin}", tensor=tensor)
        value.metadata.plugin_data.plugin_name = plugin
        event = event_pb2.Event(wall_time=1.0, step=3, summary=summary_pb2.Summary(value=[value]))
        writer.write(event.SerializeToString())
    return buf.getvalue()


def mutations(
    data: bytes, rng: np.random.Generator, n_flips: int, event_file: bool = False
) -> Iterator[tuple[str, bytes]]:
    """Bit flips, NUL tails and holes, giant cells and lines, deep nesting, huge sizes."""
    if event_file:
        yield "tf2_tensor_claiming_1e9", data + _huge_tensor_record()
    for _ in range(n_flips):
        pos = int(rng.integers(len(data)))
        bit = int(rng.integers(8))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << bit
        yield f"flip@{pos}.{bit}", bytes(flipped)
    yield "nul_tail", data + b"\x00" * 4096
    cut = int(rng.integers(len(data) // 2, len(data)))
    yield f"nul_tail_after_cut@{cut}", data[:cut] + b"\x00" * 8192
    yield f"nul_hole@{cut}", data[:cut] + b"\x00" * 512 + data[cut + 512 :]
    line = data.rfind(b"\n", 0, len(data) - 1) + 1
    yield "giant_cell", data[:line] + b"9" * 200_000 + b"," + data[line:]
    yield "giant_line", data[:line] + b"1," * 1_000_000 + b"\n" + data[line:]
    yield "deep_nesting", data[:line] + b"[" * 100_000 + b"]" * 100_000 + b"\n" + data[line:]
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    yield "deep_object", data[:line] + deep + b"\n" + data[line:]
    yield "huge_length", data[:line] + (2**62).to_bytes(8, "little") + b"\x00" * 8 + data[line:]
    yield "empty", b""
    yield "only_nul", b"\x00" * 10_000


# ---------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # ok, crash, silent_loss
    detail: str
    points: int


def _points(runs: list) -> int:
    return sum(len(r.scalars) + len(r.histograms) for r in runs)


def load_tree(folder: Path) -> tuple[list, list]:
    from diagnose.discover import discover
    from diagnose.ingest import load_all

    sources, errors = discover([str(folder)])
    runs, load_errors = load_all(sources)
    return runs, errors + load_errors


class Case:
    """One family's valid run, written once; :meth:`check` damages its target file."""

    def __init__(self, family: Family, root: Path) -> None:
        self.family = family
        self.pristine = root / f"{family.name}-pristine"
        self.pristine.mkdir(parents=True)
        target = family.write(self.pristine)
        self.rel = target.relative_to(self.pristine)
        self.data = target.read_bytes()
        self.work = root / f"{family.name}-work"
        runs, errors = load_tree(self.pristine)
        assert runs and not errors, (family.name, errors)
        self.points = _points(runs)

    def check(self, damaged: bytes, offset: int | None = None, flip: int | None = None) -> Outcome:
        """Load the damaged file.  ``flip``: the byte a bit flip changed; a value flipped
        into a blank or a separator reads as "not logged" (undetectable, not silent)."""
        if not self.work.exists():
            shutil.copytree(self.pristine, self.work, symlinks=True)
        (self.work / self.rel).write_bytes(damaged)  # only this file ever changes
        try:
            runs, errors = load_tree(self.work)
        except BaseException as exc:  # the point is to catch anything
            return Outcome("crash", f"{type(exc).__name__}: {exc}"[:300], 0)
        for e in errors:
            if _CRASH.match(e.message):
                return Outcome("crash", e.message[:300], 0)
        points = _points(runs)
        said = bool(errors) or any(n.code in DAMAGE_CODES for r in runs for n in r.notes)
        allowed = offset is not None and clean_cut(self.family, self.data, offset)
        if points < self.points and not said and not allowed:
            if flip is not None and damaged[flip : flip + 1] in _BLANKING:
                return Outcome(
                    "undetectable", f"byte {flip} became {damaged[flip : flip + 1]!r}", points
                )
            return Outcome("silent_loss", f"{points} of {self.points} points, no note", points)
        return Outcome("ok", "", points)


def dump_case(path: Path, family: str, label: str, outcome: Outcome) -> None:
    """One JSON line per finding, for the campaign's report."""
    with open(path, "a") as f:
        f.write(json.dumps({"family": family, "case": label, **outcome.__dict__}) + "\n")
