"""Event files written at test time by the real writers (torch, tensorboard, tensorboardX).

Each writer returns the log folder it wrote.  Values include NaN/inf, step 0 (which
protobuf omits), multi-byte and negative steps, so the byte-level fast path and the
protobuf path are both exercised.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

BASE_WALL = 1_700_000_000.25

#: Steps used by the scalar writers: 0 (omitted on the wire), small, and multi-byte varints.
STEPS = [0, 1, 2, 127, 128, 300, 16_383, 16_384, 2_097_152, 2**35 + 7]


def _scalar_values(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = (rng.standard_normal(n) * 10).tolist()
    vals[1 % n] = math.nan
    vals[2 % n] = math.inf
    vals[3 % n] = 0.0
    vals[4 % n] = 1e-40  # float32 subnormal
    return vals


def write_torch_scalars(
    logdir: Path, new_style: bool = False, double_precision: bool = False
) -> Path:
    """torch SummaryWriter.add_scalar, old style (simple_value) or new style tensors."""
    from torch.utils.tensorboard import SummaryWriter

    tags = ["train/loss", "val/loss", "lr", "x" * 120, "ünïcode/acc", ""]
    with SummaryWriter(str(logdir)) as w:
        for k, tag in enumerate(tags):
            for step, value in zip(STEPS, _scalar_values(len(STEPS), k), strict=True):
                w.add_scalar(
                    tag,
                    value,
                    global_step=step,
                    walltime=BASE_WALL + step / 7,
                    new_style=new_style,
                    double_precision=double_precision,
                )
        w.add_scalar("no_step", 3.5)  # no global_step at all
        w.add_scalar("neg_step", 1.25, global_step=-5, walltime=0.0)
    return Path(logdir)


def write_torch_histograms(logdir: Path) -> Path:
    """torch add_histogram: default TF-style bins, numpy 'auto' bins, constant data."""
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(1)
    with SummaryWriter(str(logdir)) as w:
        for step in range(5):
            w.add_histogram("w/layer1", rng.standard_normal(500) * (step + 1), step)
            w.add_histogram("w/auto", rng.standard_normal(200), step, bins="auto")
            w.add_histogram("w/const", np.full(10, 2.5), step)
            w.add_scalar("loss", 1.0 / (step + 1), step)
    return Path(logdir)


def write_torch_hparams(logdir: Path) -> Path:
    """torch add_hparams: writes the hparams and metric echoes into ``logdir/hp``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        w.add_scalar("train/loss", 0.5, 1)
        w.add_hparams(
            {"lr": 0.01, "bsize": 32, "optim": "adam", "nesterov": True},
            {"hparam/accuracy": 0.9},
            run_name="hp",
        )
    return Path(logdir) / "hp"


def write_torch_add_scalars(logdir: Path) -> Path:
    """torch add_scalars: one sub-folder per series, the tag is the main tag in each."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(20):
            w.add_scalars("loss", {"train": 1.0 / (step + 1), "val": 1.5 / (step + 1)}, step)
    return Path(logdir)


def write_torch_restart(logdir: Path) -> Path:
    """A run resumed from step 50 with ``purge_step``: the second file starts with START."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(100):
            w.add_scalar("loss", 100.0 - step, step)
            if step % 10 == 0:
                w.add_histogram("w", np.arange(step + 3, dtype=float), step)
    # File names carry the time in seconds, then a per-process counter that sorts as
    # text ('10' < '9'); a new second keeps name order = write order, as in real resumes.
    time.sleep(1.05)
    with SummaryWriter(str(logdir), purge_step=50, filename_suffix=".resumed") as w:
        for step in range(50, 80):
            w.add_scalar("loss", 1000.0 + step, step)
    return Path(logdir)


def write_tb_tensors(logdir: Path) -> Path:
    """TF2-style tensors through tensorboard's own writer (no TensorFlow needed).

    Metadata is kept on the first value of each tag only, as TF's writer does, and the
    scalars use every tensor encoding: float_val, double_val, half_val, tensor_content.
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.plugins.histogram.summary_v2 import histogram_pb
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    rng = np.random.default_rng(2)
    w = EventFileWriter(str(logdir))
    w.add_event(
        event_pb2.Event(
            wall_time=BASE_WALL,
            summary=hparams_pb(
                {"learning_rate": 0.003, "batch_size": 64, "optimizer": "sgd", "use_bn": False}
            ),
        )
    )
    seen: set[str] = set()

    def emit(summary: summary_pb2.Summary, step: int) -> None:
        for v in summary.value:
            if v.tag in seen:
                v.ClearField("metadata")
            seen.add(v.tag)
        w.add_event(event_pb2.Event(wall_time=BASE_WALL + step, step=step, summary=summary))

    for step in range(12):
        emit(scalar_pb("epoch_loss", 1.0 / (step + 1)), step)
        emit(histogram_pb("dense/kernel", rng.standard_normal(100), buckets=8), step)
        half = np.array(step / 3, dtype=np.float16).view(np.uint16).item()
        for tag, tensor in (
            ("dbl", tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[step / 3])),
            ("half", tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, half_val=[half])),
            (
                "packed",
                tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_FLOAT,
                    tensor_content=np.array(step * 1.5, dtype="<f4").tobytes(),
                ),
            ),
        ):
            value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
            value.metadata.plugin_data.plugin_name = "scalars"
            emit(summary_pb2.Summary(value=[value]), step)
        # a tensor of some other plugin: must be skipped quietly
        text = summary_pb2.Summary.Value(
            tag="notes",
            tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"hello"]),
        )
        text.metadata.plugin_data.plugin_name = "text"
        emit(summary_pb2.Summary(value=[text]), step)
    w.close()
    return Path(logdir)


def write_keras_layout(logdir: Path) -> Path:
    """Keras-like ``train/`` and ``validation/`` folders with the same tag in both."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for sub, scale in (("train", 1.0), ("validation", 1.3)):
        w = EventFileWriter(str(Path(logdir) / sub))
        for epoch in range(6):
            w.add_event(
                event_pb2.Event(
                    wall_time=BASE_WALL + epoch,
                    step=epoch,
                    summary=scalar_pb("epoch_loss", scale / (epoch + 1)),
                )
            )
        w.close()
    return Path(logdir)


def write_tbx(logdir: Path) -> Path:
    """tensorboardX SummaryWriter: scalars (incl. several per event), histograms."""
    from tensorboardX import SummaryWriter

    rng = np.random.default_rng(3)
    with SummaryWriter(str(logdir)) as w:
        for step in range(30):
            w.add_scalar("tbx/loss", 2.0 / (step + 1), step)
            w.add_scalar("tbx/acc", step / 30, step, walltime=BASE_WALL + step)
            if step % 5 == 0:
                w.add_histogram("tbx/w", rng.standard_normal(300), step)
    return Path(logdir)


def write_bulk_scalars(logdir: Path, tags: int, steps: int) -> Path:
    """Many torch add_scalar points (for the benchmark and speed sanity checks)."""
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    values = rng.standard_normal((steps, tags)).astype(np.float32).tolist()
    names = [f"group{t % 4}/metric_{t}" for t in range(tags)]
    with SummaryWriter(str(logdir), max_queue=10_000, flush_secs=3600) as w:
        for step in range(steps):
            row = values[step]
            for t in range(tags):
                w.add_scalar(names[t], row[t], step, walltime=BASE_WALL + step * 0.01)
    return Path(logdir)
