"""Write the fire/quiet fixtures of the fitting rules (OVF, UND, PLT, BN, PRG).

Run ``python tests/rule_fixtures/make_fitting_fixtures.py`` from the repo root to remake
them; output is byte-for-byte deterministic (seeded numpy, fixed wall times).  Each
fixture is a small log in a real format (Keras CSVLogger ``training.log``, Lightning
``metrics.csv`` with interleaved train/val rows, Ultralytics ``results.csv``, or a
TensorBoard event file with histograms) whose curves look like real ones: multiplicative
noise, LR step decays, transient spikes, quantised accuracies from tiny val sets.  Every
``quiet`` fixture is a near miss of its rule, the trap the rule must not fall into.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------
# curve shapes
# ---------------------------------------------------------------------------


def decay(t: np.ndarray, start: float, end: float, rate: float) -> np.ndarray:
    """Exponential approach from ``start`` to ``end`` (``rate`` per epoch)."""
    return end + (start - end) * np.exp(-rate * t)


def noisy(rng: np.random.Generator, x: np.ndarray, rel: float) -> np.ndarray:
    """Multiplicative log-normal noise of relative size ``rel`` (losses stay positive)."""
    return x * np.exp(rng.normal(0.0, rel, size=len(x)))


def acc_from_loss(loss: np.ndarray, lo: float, hi: float, l0: float) -> np.ndarray:
    """A plausible accuracy that rises as the loss falls."""
    return np.clip(hi - (hi - lo) * np.clip(loss / l0, 0.0, 1.0), 0.0, 1.0)


def step_schedule(t: np.ndarray, drops: list[int], factor: float) -> np.ndarray:
    """Relative LR of a step schedule (x factor at each epoch in ``drops``)."""
    lr = np.ones(len(t))
    for d in drops:
        lr[t >= d] *= factor
    return lr


# ---------------------------------------------------------------------------
# writers (real formats)
# ---------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "" if x is None or not np.isfinite(x) else repr(float(np.float32(x)))


def write_keras(folder: Path, loss: np.ndarray, val_loss: np.ndarray,
                acc: np.ndarray, val_acc: np.ndarray) -> None:
    """Keras CSVLogger ``training.log``: epoch,accuracy,loss,val_accuracy,val_loss."""
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for e in range(len(loss)):
        lines.append(f"{e},{_fmt(acc[e])},{_fmt(loss[e])},{_fmt(val_acc[e])},"
                     f"{_fmt(val_loss[e])}")
    _write(folder / "training.log", lines)


def write_lightning(folder: Path, steps_per_epoch: int, cols: dict[str, np.ndarray],
                    train_every: int | None = None) -> None:
    """Lightning CSVLogger ``metrics.csv``: one row per epoch for train columns and one
    for val columns (interleaved, blanks elsewhere).  With ``train_every``, train
    columns are logged on step rows every ``train_every`` steps instead (values are
    interpolated from the per-epoch curve)."""
    names = sorted(cols)
    train = [c for c in names if c.startswith("train")]
    val = [c for c in names if not c.startswith("train")]
    header = ["epoch", "step", *names]
    lines = [",".join(header)]
    n = len(next(iter(cols.values())))

    def row(epoch: int, step: int, values: dict[str, float]) -> str:
        cells = [str(epoch), str(step)] + [_fmt(values[c]) if c in values else "" for c in names]
        return ",".join(cells)

    for e in range(n):
        step = (e + 1) * steps_per_epoch - 1
        if val:
            lines.append(row(e, step, {c: cols[c][e] for c in val}))
        if train_every:
            for s in range(e * steps_per_epoch, (e + 1) * steps_per_epoch, train_every):
                pos = s / steps_per_epoch
                lines.append(row(e, s, {c: float(np.interp(pos, np.arange(n), cols[c]))
                                        for c in train}))
        elif train:
            lines.append(row(e, step, {c: cols[c][e] for c in train}))
    _write(folder / "metrics.csv", lines)


def write_ultralytics(folder: Path, cols: dict[str, np.ndarray]) -> None:
    """Ultralytics v8 ``results.csv`` (epoch from 1, no padding)."""
    order = ["train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/precision(B)",
             "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "val/box_loss",
             "val/cls_loss", "val/dfl_loss", "lr/pg0", "lr/pg1", "lr/pg2"]
    n = len(cols["train/box_loss"])
    lines = ["epoch," + ",".join(order)]
    for e in range(n):
        lines.append(f"{e + 1}," + ",".join(f"{float(cols[c][e]):.5g}" for c in order))
    _write(folder / "results.csv", lines)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _record(data: bytes) -> bytes:
    from diagnose.ingest.tfrecord import masked_crc32c

    head = struct.pack("<Q", len(data))
    return (head + struct.pack("<I", masked_crc32c(head)) + data
            + struct.pack("<I", masked_crc32c(data)))


def write_events(folder: Path, scalars: dict[str, np.ndarray],
                 hists: dict[str, list[np.ndarray]], steps: np.ndarray) -> None:
    """A TensorBoard event file (TF1 simple_value scalars + HistogramProto histograms)
    with fixed wall times and file name, so the bytes never change."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    out = [_record(event_pb2.Event(wall_time=1_700_000_000.0,
                                   file_version="brain.Event:2").SerializeToString())]
    for i, step in enumerate(steps):
        values = [summary_pb2.Summary.Value(tag=t, simple_value=float(v[i]))
                  for t, v in scalars.items()]
        for tag, samples in hists.items():
            x = samples[i]
            counts, edges = np.histogram(x, bins=30)
            hp = summary_pb2.HistogramProto(
                min=float(x.min()), max=float(x.max()), num=float(len(x)),
                sum=float(x.sum()), sum_squares=float((x * x).sum()),
                bucket_limit=[float(e) for e in edges[1:]],
                bucket=[float(c) for c in counts])
            values.append(summary_pb2.Summary.Value(tag=tag, histo=hp))
        ev = event_pb2.Event(wall_time=1_700_000_000.0 + 10.0 * (i + 1), step=int(step),
                             summary=summary_pb2.Summary(value=values))
        out.append(_record(ev.SerializeToString()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.out.tfevents.1700000000.fixture").write_bytes(b"".join(out))


# ---------------------------------------------------------------------------
# fixtures, one function per rule and case
# ---------------------------------------------------------------------------


def ovf001_fire(d: Path) -> None:
    """Classic overfit: val loss bottoms out at epoch ~18 and climbs while train falls."""
    rng = np.random.default_rng(101)
    t = np.arange(60.0)
    loss = noisy(rng, decay(t, 1.8, 0.04, 0.09), 0.03)
    val = noisy(rng, decay(t, 1.85, 0.50, 0.2) + 0.011 * np.maximum(t - 18, 0), 0.03)
    write_keras(d, loss, val, acc_from_loss(loss, 0.3, 0.995, 1.8),
                np.clip(noisy(rng, acc_from_loss(val, 0.3, 0.86, 1.85), 0.01), 0, 1))


def ovf001_quiet(d: Path) -> None:
    """Healthy step-decay run (LR x0.1 at epochs 30 and 60) with one transient val spike."""
    rng = np.random.default_rng(102)
    t = np.arange(90.0)
    lr = step_schedule(t, [30, 60], 0.1)
    base = decay(t, 2.2, 0.9, 0.08) * np.where(lr < 1, 0.7, 1.0) * np.where(lr < 0.1, 0.85, 1)
    loss = noisy(rng, base, 0.02)
    val = noisy(rng, base * 1.08, 0.03)
    val[45] *= 2.5
    write_keras(d, loss, val, acc_from_loss(loss, 0.2, 0.9, 2.2),
                acc_from_loss(val, 0.2, 0.88, 2.2))


def ovf002_fire(d: Path) -> None:
    """Val accuracy peaks at epoch ~15 and degrades while train accuracy reaches 0.99."""
    rng = np.random.default_rng(103)
    t = np.arange(50.0)
    tl = noisy(rng, decay(t, 1.2, 0.02, 0.12), 0.03)
    va = decay(t, 0.4, 0.87, 0.25) - 0.004 * np.maximum(t - 15, 0)
    va = np.clip(va + rng.normal(0, 0.006, len(t)), 0, 1)
    vl = noisy(rng, decay(t, 1.2, 0.45, 0.25) + 0.015 * np.maximum(t - 15, 0), 0.03)
    write_lightning(d, 100, {"train_loss": tl, "train_acc": acc_from_loss(tl, 0.4, 0.995, 1.2),
                             "val_loss": vl, "val_acc": va})


def ovf002_quiet(d: Path) -> None:
    """Tiny val set (16 samples): val accuracy quantised in 1/16 steps, noisy but fine."""
    rng = np.random.default_rng(104)
    t = np.arange(120.0)
    p = decay(t, 0.2, 0.9, 0.05)
    va = rng.binomial(16, p) / 16.0
    tl = noisy(rng, decay(t, 2.3, 0.35, 0.04), 0.04)
    vl = noisy(rng, decay(t, 2.3, 0.3, 0.05), 0.12)
    write_lightning(d, 16, {"train_loss": tl, "train_acc": acc_from_loss(tl, 0.1, 0.9, 2.3),
                            "val_loss": vl, "val_acc": va})


def ovf003_fire(d: Path) -> None:
    """Val loss stalls at ~0.74 from epoch ~30, then turns upward (~+15% by the end) while
    train loss keeps falling to 0.2 (a val that only stalls is OVF003/quiet_gap_alone)."""
    rng = np.random.default_rng(105)
    t = np.arange(100.0)
    loss = noisy(rng, decay(t, 1.8, 0.12, 0.03), 0.02)
    vl = noisy(rng, decay(t, 1.9, 0.74, 0.12) + 0.002 * np.clip(t - 40, 0, None), 0.025)
    write_keras(d, loss, vl, acc_from_loss(loss, 0.3, 0.97, 1.8),
                np.clip(acc_from_loss(vl, 0.3, 0.76, 1.9) + rng.normal(0, 0.008, 100), 0, 1))


def ovf003_quiet(d: Path) -> None:
    """Big gap, but val still falls ~6% over the second half: not stalled (OVF004's case)."""
    rng = np.random.default_rng(106)
    t = np.arange(50.0)
    tl = noisy(rng, 1.7 * np.exp(-t / 6.0) + 0.01 * np.exp(-t / 40.0), 0.05)
    vl = noisy(rng, decay(t, 1.0, 0.11, 0.12) + 0.012 * np.exp(-t / 40.0), 0.01)
    write_lightning(d, 40, {"train_loss": tl, "val_loss": vl})


def ovf004_fire(d: Path) -> None:
    """Memorising while val creeps down: train 0.95 -> 1e-3, val 0.5 -> 0.33 slowly."""
    rng = np.random.default_rng(125)
    t = np.arange(150.0)
    tl = noisy(rng, 0.95 * np.exp(-t / 20.0) + 8e-4, 0.08)
    vl = noisy(rng, decay(t, 0.5, 0.33, 0.03), 0.01)
    write_lightning(d, 32, {"train_loss": tl, "val_loss": vl}, train_every=16)


def ovf004_quiet(d: Path) -> None:
    """Heavy augmentation: train loss stays above val loss, both falling."""
    rng = np.random.default_rng(126)
    t = np.arange(100.0)
    tl = noisy(rng, decay(t, 1.3, 0.45, 0.05), 0.03)
    vl = noisy(rng, decay(t, 1.1, 0.34, 0.05), 0.03)
    write_lightning(d, 50, {"train_loss": tl, "val_loss": vl})


def und001_fire(d: Path) -> None:
    """Six classes, nothing learned: losses at ln 6, accuracies at 1/6."""
    rng = np.random.default_rng(107)
    n = 15
    write_lightning(d, 40, {
        "train_loss": 1.7918 + rng.normal(0, 0.002, n) - 0.0002 * np.arange(n),
        "train_acc": 1 / 6 + rng.normal(0, 0.01, n),
        "val_loss": 1.7918 + rng.normal(0, 0.002, n),
        "val_acc": 1 / 6 + rng.normal(0, 0.015, n),
    })


def und001_quiet(d: Path) -> None:
    """Memorisation (binary): train perfect, val at chance: overfit, not underfit."""
    rng = np.random.default_rng(108)
    t = np.arange(60.0)
    tl = noisy(rng, decay(t, 0.69, 1e-4, 0.15), 0.1)
    write_lightning(d, 20, {
        "train_loss": tl,
        "train_acc": np.clip(1 - 0.5 * np.exp(-0.15 * t) + rng.normal(0, 0.005, len(t)), 0, 1),
        "val_loss": noisy(rng, 0.69 + 0.05 * t, 0.03),
        "val_acc": 0.5 + rng.normal(0, 0.02, len(t)),
    })


def und003_fire(d: Path) -> None:
    """A linear model on a 5-class non-linear task (Keras CSVLogger): train accuracy
    0.50 -> 0.64 by epoch 3 and flat, val 0.60 alongside, loss 1.25 -> 1.0 and flat."""
    rng = np.random.default_rng(111)
    t = np.arange(40.0)
    loss = noisy(rng, decay(t, 1.25, 1.0, 1.2), 0.006)
    val_loss = noisy(rng, decay(t, 1.10, 1.05, 1.2), 0.008)
    acc = 0.64 - 0.14 * np.exp(-1.2 * t) + rng.normal(0, 0.004, len(t))
    val_acc = 0.60 - 0.03 * np.exp(-1.2 * t) + rng.normal(0, 0.01, len(t))
    write_keras(d, loss, val_loss, acc, val_acc)


def und003_quiet(d: Path) -> None:
    """Heavy dropout/augmentation (Lightning): train accuracy measured under dropout
    levels off at 0.68 while val reaches 0.93 and its loss keeps its minimum late:
    the train metric is handicapped, the model is fine."""
    rng = np.random.default_rng(112)
    t = np.arange(120.0)
    write_lightning(d, 30, {
        "train_loss": noisy(rng, decay(t, 2.3, 1.05, 0.05), 0.03),
        "train_acc": np.clip(0.68 - 0.58 * np.exp(-0.05 * t) + rng.normal(0, 0.01, len(t)),
                             0, 1),
        "val_loss": noisy(rng, decay(t, 2.3, 0.30, 0.05), 0.03),
        "val_acc": np.clip(np.round((0.93 - 0.83 * np.exp(-0.05 * t)) * 16) / 16, 0, 1),
    })


def _yolo(rng: np.random.Generator, n: int, map50: np.ndarray, fall: float) -> dict:
    t = np.arange(float(n))
    f = 1 - fall * (1 - np.exp(-t / (n / 3)))
    cols = {
        "train/box_loss": noisy(rng, 6.8 * f, 0.01),
        "train/cls_loss": noisy(rng, 13.0 * f, 0.01),
        "train/dfl_loss": noisy(rng, 4.1 * f, 0.01),
        "metrics/mAP50(B)": map50,
        "metrics/mAP50-95(B)": map50 * 0.55,
        "metrics/precision(B)": np.clip(map50 * 1.2 + rng.uniform(0, 0.002, n), 0, 1),
        "metrics/recall(B)": np.clip(map50 * 1.5 + rng.uniform(0, 0.01, n), 0, 1),
        "val/box_loss": noisy(rng, 6.0 * f, 0.01),
        "val/cls_loss": noisy(rng, 12.0 * f, 0.01),
        "val/dfl_loss": noisy(rng, 4.0 * f, 0.01),
    }
    lr = np.where(t < 3, 0.01 * (t + 1) / 3, 0.01 * (1 - t / n) + 1e-4)
    cols.update({"lr/pg0": lr, "lr/pg1": lr, "lr/pg2": lr})
    return cols


def und002_fire(d: Path) -> None:
    """A detector that never learns: mAP50 below 0.006 for 80 epochs, losses -22%."""
    rng = np.random.default_rng(109)
    n = 80
    write_ultralytics(d, _yolo(rng, n, np.abs(rng.normal(0.002, 0.0015, n)), 0.22))


def und002_quiet(d: Path) -> None:
    """From scratch: mAP sits near 0 for the first epochs, then takes off."""
    rng = np.random.default_rng(110)
    n = 60
    t = np.arange(float(n))
    m = 0.5 / (1 + np.exp(-(t - 12) / 3)) + np.abs(rng.normal(0, 0.003, n))
    write_ultralytics(d, _yolo(rng, n, m, 0.45))


def plt001_fire(d: Path) -> None:
    """Ten classes: learns a little, then stuck early at a poor level: the losses fall
    from ln 10 to ~1.7 in the first ~10 of 80 epochs and sit there (74% of ln C), val
    accuracy flat at 0.38 and the val loss creeping up 4% (DESIGN: a plateau is stuck at
    a poor level)."""
    rng = np.random.default_rng(111)
    t = np.arange(80.0)
    loss = noisy(rng, decay(t, 2.30, 1.68, 0.3), 0.004)
    vl = noisy(rng, decay(t, 2.30, 1.70, 0.3) * (1 + 0.04 * np.maximum(t - 40, 0) / 39),
               0.004)
    va = np.clip(decay(t, 0.10, 0.38, 0.3) + rng.normal(0, 0.006, len(t)), 0, 1)
    write_keras(d, loss, vl, acc_from_loss(loss, 0.1, 0.6, 2.3), va)


def plt001_quiet(d: Path) -> None:
    """Step decay at epoch 50 of 80 breaks a mid-run plateau: not stalled at the end."""
    rng = np.random.default_rng(112)
    t = np.arange(80.0)
    base = decay(t, 1.8, 0.6, 0.15) - 0.25 * (1 - np.exp(-np.maximum(t - 50, 0) / 2.0))
    loss = noisy(rng, base * 0.9, 0.02)
    vl = noisy(rng, base, 0.02)
    va = np.clip(acc_from_loss(vl, 0.2, 0.95, 1.8) + rng.normal(0, 0.005, len(t)), 0, 1)
    write_keras(d, loss, vl, acc_from_loss(loss, 0.2, 0.96, 1.8), va)


def plt002_fire(d: Path) -> None:
    """LR far too small: ten classes, losses never leave ln 10, accuracy at 0.1."""
    rng = np.random.default_rng(113)
    n = 30
    write_lightning(d, 200, {
        "train_loss": 2.3026 + rng.normal(0, 0.003, n),
        "train_acc": 0.1 + rng.normal(0, 0.004, n),
        "val_loss": 2.3026 + rng.normal(0, 0.002, n),
        "val_acc": 0.1 + rng.normal(0, 0.006, n),
    })


def plt002_quiet(d: Path) -> None:
    """Fine-tuning that starts low: loss 0.30 -> 0.22 slowly, accuracy improving."""
    rng = np.random.default_rng(114)
    t = np.arange(20.0)
    tl = noisy(rng, decay(t, 0.30, 0.20, 0.08), 0.015)
    vl = noisy(rng, decay(t, 0.28, 0.23, 0.08), 0.01)
    write_lightning(d, 300, {"train_loss": tl, "val_loss": vl,
                             "train_acc": acc_from_loss(tl, 0.8, 0.96, 0.35),
                             "val_acc": acc_from_loss(vl, 0.8, 0.95, 0.35)})


def _converged(rng: np.random.Generator, d: Path) -> None:
    t = np.arange(60.0)
    loss = noisy(rng, decay(t, 1.6, 0.20, 0.3), 0.015)
    vl = noisy(rng, decay(t, 1.6, 0.23, 0.3), 0.02)
    write_keras(d, loss, vl, acc_from_loss(loss, 0.3, 0.95, 1.6),
                np.clip(acc_from_loss(vl, 0.3, 0.93, 1.6) + rng.normal(0, 0.004, 60), 0, 1))


def _cut_short(rng: np.random.Generator, d: Path) -> None:
    t = np.arange(40.0)
    loss = noisy(rng, decay(t, 1.6, 0.05, 0.04), 0.015)
    vl = noisy(rng, decay(t, 1.6, 0.15, 0.04), 0.02)
    write_keras(d, loss, vl, acc_from_loss(loss, 0.3, 0.98, 1.6),
                np.clip(acc_from_loss(vl, 0.3, 0.95, 1.6) + rng.normal(0, 0.004, 40), 0, 1))


def plt003_fire(d: Path) -> None:
    """Converged: fast progress, then train and val both flat for 70% of the run."""
    _converged(np.random.default_rng(115), d)


def plt003_quiet(d: Path) -> None:
    """Stopped while still improving: not converged."""
    _cut_short(np.random.default_rng(116), d)


def prg001_fire(d: Path) -> None:
    """Stopped while train and val loss are still clearly falling."""
    _cut_short(np.random.default_rng(117), d)


def prg001_quiet(d: Path) -> None:
    """Converged run creeping by fractions of a percent: not "still improving"."""
    _converged(np.random.default_rng(118), d)


def bn001_fire(d: Path) -> None:
    """Train fine from epoch 0; val loss jumps between ~1 and ~20 every epoch."""
    rng = np.random.default_rng(119)
    t = np.arange(300.0)
    tl = noisy(rng, decay(t, 0.32, 0.15, 0.01), 0.05)
    write_lightning(d, 4, {
        "train_loss": tl,
        "train_acc": np.clip(acc_from_loss(tl, 0.85, 0.96, 0.35) + rng.normal(0, 0.01, 300),
                             0, 1),
        "val_loss": np.exp(rng.normal(np.log(3.0), 1.0, 300)),
        "val_acc": rng.uniform(0.62, 0.85, 300),
    })


def bn001_quiet(d: Path) -> None:
    """Small val set: val loss noisy (+-15%) around a falling curve, not erratic."""
    rng = np.random.default_rng(120)
    t = np.arange(120.0)
    tl = noisy(rng, decay(t, 1.4, 0.2, 0.05), 0.04)
    vl = noisy(rng, decay(t, 1.4, 0.3, 0.05), 0.15)
    write_lightning(d, 10, {"train_loss": tl, "val_loss": vl,
                            "train_acc": acc_from_loss(tl, 0.3, 0.95, 1.4),
                            "val_acc": np.clip(acc_from_loss(vl, 0.3, 0.9, 1.4), 0, 1)})


def _bn_events(d: Path, seed: int, var_end: float) -> None:
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 2000, 100)
    k = len(steps)
    frac = np.arange(k) / (k - 1)
    var_scale = np.exp(np.log(var_end) * frac)
    tl = noisy(rng, decay(frac * 20, 1.5, 0.3, 0.25), 0.03)
    write_events(
        d,
        {"train/loss": tl, "val/loss": noisy(rng, decay(frac * 20, 1.5, 0.4, 0.25), 0.05)},
        {
            "model/layer1/bn1/running_var": [np.abs(rng.normal(1.0, 0.2, 64)) * s
                                             for s in var_scale],
            "model/layer1/bn1/weight": [rng.normal(1.0, 0.05, 64) for _ in steps],
            "model/layer1/conv1/weight": [rng.normal(0.0, 0.1, 576) for _ in steps],
        },
        steps,
    )
    (d / "hparams.yaml").write_text("batch_size: 4\nlr: 0.01\n", encoding="utf-8")


def bn002_fire(d: Path) -> None:
    """BN running variance collapses 10^4-fold over the run (batch size 4)."""
    _bn_events(d, 121, 1e-4)


def bn002_quiet(d: Path) -> None:
    """BN running variance drifts 30% down: normal adaptation, not a collapse."""
    _bn_events(d, 122, 0.7)


def bn001_val_never_good_rising(d: Path) -> None:
    """Combination: val loss 10x train from the first epoch and val accuracy far below
    train (eval broken from the start), and the val loss still climbs in the second half:
    a batch-norm collapse, not an overfit."""
    rng = np.random.default_rng(123)
    t = np.arange(60.0)
    tl = noisy(rng, decay(t, 1.4, 0.2, 0.08), 0.03)
    vl = noisy(rng, 18.0 + 8.0 * np.clip(t - 30, 0, None) / 30, 0.05)
    write_lightning(d, 10, {"train_loss": tl, "val_loss": vl,
                            "train_acc": acc_from_loss(tl, 0.3, 0.95, 1.4),
                            "val_acc": np.clip(noisy(rng, 0.35 - 0.1 * t / 60, 0.05), 0, 1)})


FIXTURES: dict[str, Callable[[Path], None]] = {
    "OVF001/fire": ovf001_fire, "OVF001/quiet": ovf001_quiet,
    "OVF002/fire": ovf002_fire, "OVF002/quiet": ovf002_quiet,
    "OVF003/fire": ovf003_fire, "OVF003/quiet": ovf003_quiet,
    "OVF004/fire": ovf004_fire, "OVF004/quiet": ovf004_quiet,
    "UND001/fire": und001_fire, "UND001/quiet": und001_quiet,
    "UND002/fire": und002_fire, "UND002/quiet": und002_quiet,
    "UND003/fire": und003_fire, "UND003/quiet": und003_quiet,
    "PLT001/fire": plt001_fire, "PLT001/quiet": plt001_quiet,
    "PLT002/fire": plt002_fire, "PLT002/quiet": plt002_quiet,
    "PLT003/fire": plt003_fire, "PLT003/quiet": plt003_quiet,
    "PRG001/fire": prg001_fire, "PRG001/quiet": prg001_quiet,
    "BN001/fire": bn001_fire, "BN001/quiet": bn001_quiet,
    "BN002/fire": bn002_fire, "BN002/quiet": bn002_quiet,
    "BN001/combo_val_never_good_rising": bn001_val_never_good_rising,
}


def main(root: Path = HERE) -> None:
    """(Re)write every fixture under ``root``."""
    for name, fn in FIXTURES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_file() and old.name not in ("expect.toml", "config.toml"):
                old.unlink()  # a case's expectations and config are hand-written
        fn(folder)


if __name__ == "__main__":
    main()
