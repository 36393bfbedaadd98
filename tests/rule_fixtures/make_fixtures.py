"""Remake the rule fixtures for DIV/INS/GRD/LRS/UNT/LOG rules (deterministic).

Each rule gets ``<ID>/fire/`` (a log the rule must flag) and ``<ID>/quiet/`` (a close,
healthy-looking log it must leave alone).  Logs are written in real formats: a Lightning
``metrics.csv`` (per-step rows, val every N steps, ``lr-Adam`` from LearningRateMonitor),
a Keras ``CSVLogger`` file, or a TensorBoard event file for histograms.  Curves are
exponential decays with multiplicative noise, warmup + cosine schedules, and the one
pathology each rule is about, so the fixtures look like training, not step functions.

Run: ``python tests/rule_fixtures/make_fixtures.py`` (from the repo root).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
N = 800  # steps per Lightning-style fixture


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def decay(steps: np.ndarray, start: float = 2.3, floor: float = 0.35,
          tau: float = 150.0) -> np.ndarray:
    return floor + (start - floor) * np.exp(-steps / tau)


def noisy(curve: np.ndarray, r: np.random.Generator, sd: float = 0.06) -> np.ndarray:
    return curve * np.exp(r.normal(0.0, sd, len(curve)))


def cosine_lr(steps: np.ndarray, peak: float = 1e-3, warmup: int = 50,
              total: int | None = None) -> np.ndarray:
    total = total or int(steps[-1]) + 1
    warm = peak * (steps + 1) / warmup
    prog = np.clip((steps - warmup) / max(total - warmup, 1), 0, 1)
    cos = 0.5 * peak * (1 + np.cos(math.pi * prog))
    return np.where(steps < warmup, warm, cos)


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def write_lightning(folder: Path, steps: np.ndarray, train: np.ndarray,
                    val_every: int = 50, val: np.ndarray | None = None,
                    lr: np.ndarray | None = None, grad: np.ndarray | None = None,
                    steps_per_epoch: int = 100) -> None:
    """A Lightning CSVLogger metrics.csv: one row per logged step, val on epoch rows."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = ["epoch", "step", "train_loss"]
    if val is not None:
        cols.append("val_loss")
    if lr is not None:
        cols.append("lr-Adam")
    if grad is not None:
        cols.append("grad_norm")
    lines = [",".join(cols)]
    for i, s in enumerate(steps):
        row = [str(int(s) // steps_per_epoch), str(int(s)), fmt(float(train[i]))]
        if val is not None:
            row.append(fmt(float(val[i])) if (int(s) + 1) % val_every == 0 else "")
        if lr is not None:
            row.append(fmt(float(lr[i])))
        if grad is not None:
            row.append(fmt(float(grad[i])))
        lines.append(",".join(row))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def write_keras(folder: Path, rows: list[dict], truncate: bool = False) -> None:
    """A Keras CSVLogger training.log."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join(fmt(float(r[c])) if c != "epoch" else str(r[c])
                                         for c in cols) for r in rows]
    text = "\n".join(lines) + "\n"
    if truncate:
        text = text.rstrip("\n")
        text = text[: text.rfind(",")]  # the job died mid-line
    (folder / "training.log").write_text(text)


def keras_rows(epochs: int, seed: int, start: float = 1.9, floor: float = 0.35,
               tau: float = 6.0, acc: bool = True) -> list[dict]:
    r = rng(seed)
    e = np.arange(epochs, dtype=float)
    loss = noisy(decay(e, start, floor, tau), r, 0.03)
    vloss = noisy(decay(e, start * 0.95, floor * 1.3, tau), r, 0.04)
    rows = []
    for i in range(epochs):
        row: dict = {"epoch": i}
        if acc:
            row["accuracy"] = 1 - loss[i] / (start * 1.1)
        row["loss"] = loss[i]
        if acc:
            row["val_accuracy"] = 1 - vloss[i] / (start * 1.1)
        row["val_loss"] = vloss[i]
        rows.append(row)
    return rows


def healthy(seed: int, sd: float = 0.06) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = rng(seed)
    steps = np.arange(N)
    train = noisy(decay(steps), r, sd)
    val = noisy(decay(steps, 2.25, 0.42, 160.0), r, 0.02)
    return steps, train, val


# ---------------------------------------------------------------------------
# Fixtures per rule
# ---------------------------------------------------------------------------


def div001(root: Path) -> None:
    steps, train, val = healthy(1)
    lr = cosine_lr(steps, 3e-3)
    t, v = train.copy(), val.copy()
    # LR bumped at 480: the loss climbs ~6x over 60 steps, then NaN for good
    ramp = (steps >= 480) & (steps < 540)
    t[ramp] *= np.exp(np.linspace(0, 1.9, ramp.sum()))
    v[ramp] *= np.exp(np.linspace(0, 1.5, ramp.sum()))
    t[steps >= 540] = np.nan
    v[steps >= 540] = np.nan
    write_lightning(root / "fire", steps, t, val=v, lr=lr)
    # quiet: healthy run, same schedule
    steps, train, val = healthy(2)
    write_lightning(root / "quiet", steps, train, val=val, lr=cosine_lr(steps, 3e-3))


def div002(root: Path) -> None:
    r = rng(3)
    steps = np.arange(N)
    base = decay(steps, 2.3, 0.4, 90.0)
    # from step 380 the loss walks back up past its start and stays there
    climb = 2.5 / (1 + np.exp(-(steps - 450) / 25.0))
    write_lightning(root / "fire", steps, noisy(base + climb, r, 0.05),
                    lr=np.full(N, 5e-3))
    # quiet: one large spike that recovers within ~30 steps
    steps, train, val = healthy(4)
    bump = 2.0 * np.exp(-np.clip(steps - 500, 0, None) / 8.0) * (steps >= 500)
    write_lightning(root / "quiet", steps, train + bump, val=val, lr=cosine_lr(steps))


def div003(root: Path) -> None:
    r = rng(5)
    rows = keras_rows(30, 5)
    for i, row in enumerate(rows):
        if i >= 18:  # blows up to ~1e5-1e7 while staying finite
            row["loss"] = float(3e4 * 10 ** (0.15 * (i - 18)) * math.exp(r.normal(0, 0.1)))
            row["val_loss"] = float(row["loss"] * 1.1)
            row["accuracy"] = 0.1
            row["val_accuracy"] = 0.1
    write_keras(root / "fire", rows)
    # quiet: detectron2-like start near 86 during warmup, then a normal decay
    steps = np.arange(0, 1800, 20) + 19
    train = noisy(1.1 + 85 * np.exp(-(steps - 19) / 25.0), r, 0.05)
    acc = np.clip(0.6 * (1 - np.exp(-(steps - 19) / 400.0)), 0, 1)
    folder = root / "quiet"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,step,train_loss,train_acc"] + [
        f"{int(s) // 200},{int(s)},{fmt(float(a))},{fmt(float(b))}"
        for s, a, b in zip(steps, train, acc, strict=True)
    ]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def div004(root: Path) -> None:
    r = rng(6)
    steps = np.arange(N)
    # falls fast, then drifts up ~60% over the rest of the run (a pipeline bug)
    curve = decay(steps, 2.3, 0.5, 60.0) + 0.35 * np.clip((steps - 150) / 650, 0, 1)
    write_lightning(root / "fire", steps, noisy(curve, r, 0.05), lr=np.full(N, 1e-3))
    # quiet: healthy decay with the same noise, reaching a plateau
    steps, train, _ = healthy(7, 0.05)
    write_lightning(root / "quiet", steps, train, lr=cosine_lr(steps))


def spiky(seed: int, spike_steps: list[int], height: float) -> tuple:
    steps, train, val = healthy(seed)
    t = train.copy()
    for s in spike_steps:
        width = np.arange(6)
        t[s + width] *= 1 + (height - 1) * np.exp(-width / 1.5)
    return steps, t, val


def ins001(root: Path) -> None:
    # fire: five spikes, each leaving the loss 30% higher than before, so the run ends
    # above its pre-spike level: the spikes cost progress (a warning)
    steps, t, val = spiky(8, [220, 350, 470, 610, 700], 4.0)
    for s in (220, 350, 470, 610, 700):
        t[s + 6:] *= 1.3
    write_lightning(root / "fire", steps, t, val=val, lr=cosine_lr(steps, 3e-3))
    # quiet: heavy-tailed small-batch noise (batch of 8 gamma-distributed sample
    # losses) plus one transient spike
    r = rng(9)
    steps = np.arange(N)
    mean = decay(steps)
    t = r.gamma(4.0, mean / 4.0)
    t[500:503] *= np.array([3.5, 2.0, 1.3])
    write_lightning(root / "quiet", steps, t, lr=cosine_lr(steps, 3e-3))


def ins001_kept_learning(folder: Path) -> None:
    """Five recovered spikes on a loss that goes on falling: noise that did not stop
    learning (info)."""
    steps, t, val = spiky(8, [220, 350, 470, 610, 700], 4.0)
    write_lightning(folder, steps, t, val=val, lr=cosine_lr(steps, 3e-3))


def ins002(root: Path) -> None:
    r = rng(10)
    steps = np.arange(N)
    mean = decay(steps, 2.3, 1.5, 120.0)
    sd = 0.05 + 0.3 * np.clip((steps - 300) / 300, 0, 1)  # noise grows late
    write_lightning(root / "fire", steps, mean + r.normal(0, 1, N) * sd, lr=np.full(N, 3e-2))
    steps, train, _ = healthy(11, 0.08)
    write_lightning(root / "quiet", steps, train, lr=cosine_lr(steps, 3e-2))


def ins003(root: Path) -> None:
    r = rng(12)
    steps, train, _val = healthy(12)
    g = 2.0 * np.exp(-steps / 400.0) + 0.5
    g = g * np.exp(r.normal(0, 0.15, N))
    gf = g.copy()
    for s in (150, 290, 420, 560, 690):
        gf[s] *= 25.0
        gf[s + 1] *= 4.0
    write_lightning(root / "fire", steps, train, lr=cosine_lr(steps), grad=gf)
    write_lightning(root / "quiet", steps, train, lr=cosine_lr(steps), grad=g)


def grd001(root: Path) -> None:
    r = rng(13)
    steps = np.arange(N)
    g = np.exp(r.normal(0, 0.2, N)) * np.where(
        steps < 300, 3.0 * np.exp(-steps / 150.0) + 0.8, 0.8 * 10 ** (3.2 * (steps - 300) / 500))
    loss = noisy(decay(steps, 2.3, 0.6, 100.0) + 0.0004 * np.clip(steps - 300, 0, None), r)
    write_lightning(root / "fire", steps, loss, lr=np.full(N, 1e-2), grad=g)
    steps, train, _ = healthy(14)
    g = np.exp(r.normal(0, 0.2, N)) * (4.0 * np.exp(-steps / 150.0) + 0.5)
    write_lightning(root / "quiet", steps, train, lr=cosine_lr(steps), grad=g)


def grd002(root: Path) -> None:
    r = rng(15)
    steps = np.arange(N)
    # gradients die off while the loss sits at ln(10)
    g = 10 ** (-0.5 - 9.0 * np.clip(steps / 500, 0, 1)) * np.exp(r.normal(0, 0.2, N))
    loss = math.log(10) + r.normal(0, 0.01, N)
    write_lightning(root / "fire", steps, loss, lr=np.full(N, 1e-3), grad=g)
    # quiet: gradients shrink 1e4x because the loss converges to ~0 (memorisation)
    g = 10 ** (-4.0 * np.clip(steps / 600, 0, 1)) * np.exp(r.normal(0, 0.2, N))
    loss = 2.3 * np.exp(-steps / 60.0) * np.exp(r.normal(0, 0.05, N)) + 1e-5
    write_lightning(root / "quiet", steps, loss, lr=np.full(N, 1e-3), grad=g)


def _hist_run(folder: Path, tag: str, make, seed: int) -> None:
    from tensorboardX import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    r = rng(seed)
    w = SummaryWriter(str(folder), filename_suffix=".fixture")
    for i, step in enumerate(range(0, 1000, 100)):
        loss = 2.3 * math.exp(-step / 400) + 0.4 + r.normal(0, 0.02)
        w.add_scalar("train_loss", loss, step, walltime=1.7e9 + step)
        w.add_histogram(tag, make(r, i), step, walltime=1.7e9 + step)
    w.close()
    # a stable file name so the fixture does not churn
    files = sorted(folder.glob("events.out.tfevents.*"))
    files[0].rename(folder / "events.out.tfevents.1700000000.fixture")


def unt001(root: Path) -> None:
    def dead(r, i):
        share = min(0.5 + 0.06 * i, 0.92)  # units die as training goes on
        return np.where(r.random(4000) < share, 0.0, np.abs(r.normal(0, 1, 4000)))

    def alive(r, i):
        return np.where(r.random(4000) < 0.45, 0.0, np.abs(r.normal(0, 1, 4000)))

    _hist_run(root / "fire", "dense_1/relu", dead, 16)
    _hist_run(root / "quiet", "dense_1/relu", alive, 17)


def unt002(root: Path) -> None:
    def saturated(r, i):
        return np.tanh(r.normal(0, 2.0 + 1.5 * i, 4000))

    def fine(r, i):
        return np.tanh(r.normal(0, 0.8, 4000))

    _hist_run(root / "fire", "lstm/tanh", saturated, 18)
    _hist_run(root / "quiet", "lstm/tanh", fine, 19)


def lrs001(root: Path) -> None:
    steps, train, val = healthy(20)
    # cosine sized for 450 steps, run goes on to 800 at lr 0
    lr = np.where(steps < 450, cosine_lr(steps, 1e-3, 50, 450), 0.0)
    write_lightning(root / "fire", steps, train, val=val, lr=lr)
    write_lightning(root / "quiet", steps, train, val=val, lr=cosine_lr(steps, 1e-3, 50, N))


def lrs002(root: Path) -> None:
    r = rng(21)
    steps = np.arange(N)
    # converges by step ~300 and then sits in the constant-LR noise ball
    train = noisy(decay(steps, 2.3, 0.4, 60.0), r, 0.06)
    val = noisy(decay(steps, 2.25, 0.47, 60.0), r, 0.02)
    write_lightning(root / "fire", steps, train, val=val, lr=np.full(N, 1e-3))
    lr = np.where(steps < 400, 1e-3, np.where(steps < 600, 1e-4, 1e-5))
    write_lightning(root / "quiet", steps, train, val=val, lr=lr)


def log001(root: Path) -> None:
    rows = [{"epoch": r["epoch"], "accuracy": r["accuracy"], "val_accuracy": r["val_accuracy"]}
            for r in keras_rows(20, 22)]
    write_keras(root / "fire", rows)
    write_keras(root / "quiet", keras_rows(20, 22))


def log002(root: Path) -> None:
    write_keras(root / "fire", keras_rows(25, 23), truncate=True)
    write_keras(root / "quiet", keras_rows(25, 23))


def log003(root: Path) -> None:
    steps, train, val = healthy(24)
    # crashed at step 520, resumed from the checkpoint at step 400 into the same file
    s2 = np.r_[steps[:520], steps[400:]]
    t2 = np.r_[train[:520], noisy(decay(steps[400:]), rng(25))]
    v2 = np.r_[val[:520], val[400:]]
    write_lightning(root / "fire", s2, t2, val=v2, lr=np.r_[cosine_lr(steps)[:520],
                                                             cosine_lr(steps)[400:]])
    write_lightning(root / "quiet", steps, train, val=val, lr=cosine_lr(steps))


def log004(root: Path) -> None:
    write_keras(root / "fire", keras_rows(4, 26))
    write_keras(root / "quiet", keras_rows(30, 26))


def log005(root: Path) -> None:
    steps, train, val = healthy(27)
    t = train.copy()
    t[[333, 334, 612]] = [np.nan, np.inf, np.nan]  # AMP-skipped steps, then fine
    write_lightning(root / "fire", steps, t, val=val, lr=cosine_lr(steps))
    write_lightning(root / "quiet", steps, train, val=val, lr=cosine_lr(steps))


def grd001_folded_by_divergence(folder: Path) -> None:
    """Combination: the loss walks back up from ~380 (DIV002) while the grad norm grows
    three orders from 420 on (GRD001): the divergence explains the exploding gradients,
    which fold into its finding as ``explains`` evidence."""
    r = rng(31)
    steps = np.arange(N)
    base = decay(steps, 2.3, 0.4, 90.0)
    climb = 2.5 / (1 + np.exp(-(steps - 450) / 25.0))
    g = np.exp(r.normal(0, 0.2, N)) * np.where(
        steps < 420, 3.0 * np.exp(-steps / 150.0) + 0.8,
        0.8 * 10 ** (3.2 * (steps - 420) / 380))
    write_lightning(folder, steps, noisy(base + climb, r, 0.05), lr=np.full(N, 5e-3), grad=g)


BUILDERS = {
    "DIV001": div001, "DIV002": div002, "DIV003": div003, "DIV004": div004,
    "INS001": ins001, "INS002": ins002, "INS003": ins003,
    "GRD001": grd001, "GRD002": grd002, "UNT001": unt001, "UNT002": unt002,
    "LRS001": lrs001, "LRS002": lrs002,
    "LOG001": log001, "LOG002": log002, "LOG003": log003, "LOG004": log004, "LOG005": log005,
}


#: Combination cases: a log of its own in ``<ID>/<case>/`` beside its ``expect.toml``.
COMBOS = {
    ("GRD001", "folded_by_divergence"): grd001_folded_by_divergence,
    ("INS001", "info_kept_learning"): ins001_kept_learning,
}


def main() -> None:
    for (rule, case), build in COMBOS.items():
        log = HERE / rule / case / "metrics.csv"
        if log.exists():
            log.unlink()
        build(HERE / rule / case)
        print(rule, case, "ok")
    for rule, build in BUILDERS.items():
        root = HERE / rule
        for sub in ("fire", "quiet"):
            if (root / sub).exists():
                shutil.rmtree(root / sub)
        build(root)
        print(rule, "ok")


if __name__ == "__main__":
    main()
