"""Remake every log under sample_logs/ from real, short trainings (torch on the CPU).

    python sample_logs/make_samples.py                 # all runs (~2 CPU-minutes)
    python sample_logs/make_samples.py tb/plateau_lr_tiny lr_sweep/lr_1.0   # some runs
    python sample_logs/make_samples.py --list          # folder, family, one-line story
    python sample_logs/make_samples.py --out /tmp/x    # write somewhere else

Needs the ``samples`` extra (torch, scikit-learn, lightning). No downloads: the data are
scikit-learn's bundled sets (digits, breast_cancer, wine), its generators (make_moons,
make_classification) and, for the character-level models, the source text of a few
pure-Python stdlib modules (textwrap, string, fnmatch, glob, shlex).

Determinism: one CPU thread, ``torch.use_deterministic_algorithms(True)``, fixed seeds
for weights and batch order. Every event file is rewritten after torch writes it: fixed
name (``events.out.tfevents.1700000000.sample-host.<n>.0``), wall_time = 1.7e9 + step *
dt, hparams maps encoded with sorted keys; HF runtimes are fixed numbers. Regenerating
on the same machine gives identical bytes; another CPU may round differently in the last
bits (the test falls back to comparing values). The character text changes with the
Python version (these logs were made with 3.11).

The labels in LABELS.tsv were read off the generated curves, not off the intent; a run
whose curves did not show the intended state was reconfigured until they did. Every run
records its true hyperparameters under the canonical names (learning_rate, batch_size,
weight_decay, dropout, momentum, optimizer, epochs, normalization, ...): hparams.yaml for
torch SummaryWriter runs, add_hparams for tb/healthy_mlp_adam, hparams.yaml from
``save_hyperparameters`` for Lightning, config.json for the Keras and HF layouts,
args.yaml (lr0, batch, ...) for Ultralytics.

Families and layouts
--------------------
- tb/, lr_sweep/: torch ``SummaryWriter``; tag styles ``loss/train`` + ``loss/val``,
  ``train_loss`` + ``val_loss`` and ``train/loss`` + ``val/loss``, with ``lr`` /
  ``learning_rate`` / ``train/lr`` and ``grad_norm`` (global L2 norm before clipping);
  histograms of BN weight/running stats (bn_collapse_*) and of ReLU activations
  (plateau_dead_relu); per-layer ``grad_norm/first_layer`` and ``grad_norm/last_layer``
  (vanishing_sigmoid_deep).
- keras_tb/: the Keras TensorBoard callback layout: ``train/`` and ``validation/`` event
  files (``.v2``), tensor-style scalars ``epoch_loss``, ``epoch_accuracy`` (both folders)
  and ``epoch_learning_rate`` (train), step = 0-based epoch.
- keras_csv/: Keras ``CSVLogger`` ``training.log``: ``epoch,accuracy,loss,val_accuracy,
  val_loss``, 0-based epochs, float32 values as Python reprs, ``nan`` for NaN.
- hf/: ``trainer_state.json`` as transformers' ``TrainerState.save_to_json`` writes it
  (``json.dumps(indent=2, sort_keys=True)``, NaN literals): ``loss`` (mean since the last
  log), ``grad_norm``, ``learning_rate`` every logging_steps, ``eval_*`` every epoch.
- ultralytics/: a YOLOv8-classify style ``results.csv`` (padded header, metrics/*,
  lr/pg0..2) + ``args.yaml``.
- lightning/<run>/lightning_logs/version_0/: a real ``lightning.Trainer`` with
  ``CSVLogger`` and ``LearningRateMonitor``: ``metrics.csv`` (train_loss_step,
  train_loss_epoch, train_acc, val_loss, val_acc, lr-Adam/lr-SGD) + ``hparams.yaml``.

Runs [labelled states]
----------------------
tb/
- healthy_mlp_adam [healthy]: digits MLP 64-128-10, Adam 1e-3, wd 1e-4, dropout 0.2, 40
    epochs; hparams via add_hparams
- healthy_sgd_cosine [healthy]: digits MLP, SGD 0.05 momentum 0.9, cosine decay to 0
    over 30 epochs, every 10 steps
- healthy_warmup [healthy]: digits MLP, Adam peak 2e-3 after 150 linear warmup steps
    then linear decay; every 5 steps
- healthy_step_schedule [healthy]: digits MLP, SGD 0.03 momentum 0.9, StepLR x0.1 at
    epochs 12 and 24 (36 epochs)
- healthy_transient_spike [healthy]: digits MLP, SGD 0.05; one corrupted batch (wrong
    labels, 2x inputs) at step 205
- healthy_noisy_bs4 [healthy]: digits MLP, batch size 4, SGD 0.01; the raw per-step loss
    every 25 steps is very noisy
- healthy_converged_flat [healthy]: make_moons, small MLP 2-16-2, Adam 1e-2, 150 epochs:
    converged by epoch ~10, then flat
- healthy_finetune_low_start [healthy]: digits MLP pretrained (unlogged) on one half of
    train, fine-tuned on the other at 1e-4
- divergence_nan [divergence]: digits 4-layer LeakyReLU MLP, SGD momentum 0.9,
    exponential LR ramp to 5.0 -> NaN
- divergence_exploding_loss [divergence]: digits LeakyReLU MLP, SGD, clipping 1.0, LR
    ramp x1.01/step to 50: loss up 1e5x, finite
- overfit_noisy_labels [overfit]: make_classification (15% flipped labels), 300 train
    rows, MLP 512-512, Adam 1e-3, no reg
- overfit_digits_subset [overfit]: digits, 120 train images, MLP 512-512, Adam 3e-3, no
    regularisation, 100 epochs
- underfit_bottleneck [underfit]: digits MLP with a 2-unit hidden layer, Adam 3e-3, 80
    epochs: converges at a poor level
- underfit_strong_l2 [underfit,plateau]: digits MLP, SGD 0.05 momentum 0.9 with weight_decay
    0.3: loss stuck near 1.5
- plateau_lr_tiny [plateau,underfit]: digits MLP, plain SGD at LR 1e-5 from the start:
    loss stays at ~ln(10)
- plateau_dead_relu [plateau,underfit,dead_units]: digits MLP whose first-layer biases
    start at -10: every ReLU is dead, nothing learns; activation histograms
- bn_collapse_momentum0 [batchnorm_collapse]: raw 0-255 pixels, BatchNorm(momentum=0):
    running stats never update; BN histograms
- bn_collapse_last_batch [batchnorm_collapse]: raw pixels, BatchNorm(momentum=1.0):
    running stats = the last batch, which holds 2 rows
- instability_lr_high [instability]: digits tanh MLP, SGD 0.4 momentum 0.9 (LR a bit too
    high): spiky, noisy loss
- vanishing_sigmoid_deep [vanishing_gradients,plateau,underfit]: digits 10-hidden-layer
    sigmoid MLP, SGD 0.05: first-layer gradients ~1e-8 of the last's
- exploding_gradients_rnn [exploding_gradients,divergence]: char-level ReLU RNN on
    stdlib source, SGD 0.6 momentum 0.9, no clipping: grad norm 1 -> 1e9 in a few steps,
    then NaN
- undertrained_adam [undertrained]: digits MLP, Adam 1e-4, stopped after 12 epochs while
    val loss still falls fast

lr_sweep/
- lr_0.001 [undertrained]: LR sweep: digits MLP 64-128-10, SGD momentum 0.9, wd 5e-4, LR
    0.001, 50 epochs
- lr_0.01 [healthy]: LR sweep: digits MLP 64-128-10, SGD momentum 0.9, wd 5e-4, LR 0.01,
    50 epochs
- lr_0.1 [healthy]: LR sweep: digits MLP 64-128-10, SGD momentum 0.9, wd 5e-4, LR 0.1,
    50 epochs
- lr_1.0 [divergence,exploding_gradients]: LR sweep: digits MLP 64-128-10, SGD momentum
    0.9, wd 5e-4, LR 1.0, 50 epochs

keras_tb/
- healthy_breast_cancer [healthy]: breast_cancer MLP, Adam 1e-3, dropout 0.2, 26 epochs;
    Keras train/ + validation/ layout
- overfit_classification [overfit]: make_classification (3 classes, 10% flipped), 150
    train rows, MLP 256-256, Adam 1e-3
- plateau_lr_tiny [plateau,underfit]: wine MLP, SGD LR 1e-5 from the start: nothing
    moves for 60 epochs

keras_csv/
- healthy_moons [healthy]: make_moons MLP 32-32, Adam 1e-2, 60 epochs; Keras CSVLogger
    training.log
- overfit_classification [overfit]: make_classification (10% flipped), 200 train rows,
    MLP 256-256, Adam 1e-3, 80 epochs
- divergence_nan [divergence]: digits LeakyReLU MLP, SGD 0.5 momentum 0.9, no warmup:
    loss is nan from the first epoch
- underfit_linear [underfit,plateau]: 5-class make_classification, linear model, SGD 0.05 with
    weight decay 0.05

hf/
- healthy_char_gru [healthy]: char-level GRU(96) on stdlib source, AdamW 3e-3 with
    linear decay, 8 epochs
- overfit_char_lstm [overfit]: char-level LSTM(256) on only 4k characters of stdlib
    source, Adam 3e-3, 80 epochs
- divergence_nan [divergence,exploding_gradients]: digits LeakyReLU MLP, SGD momentum
    0.9, LR 0.3 rising x1.02 per step: NaN in log_history
- undertrained_char_gru [undertrained]: char-level GRU(64), AdamW 1e-3, stopped after 5
    epochs while eval loss still falls

ultralytics/
- healthy_cls_digits [healthy]: digits MLP written as an Ultralytics classify
    results.csv (SGD 0.01, cosine)

lightning/
- healthy_wine [healthy]: wine MLP 13-32-3, Adam 3e-3, dropout 0.2, 40 epochs; lightning
    Trainer + CSVLogger
- overfit_noisy_labels [overfit]: make_classification (10% flipped), 200 train rows, MLP
    256-256, Adam 1e-3, 60 epochs
- plateau_dead_relu [plateau,underfit]: moons MLP whose first-layer biases start at -10
    (all ReLUs dead), SGD 0.05, 40 epochs
- bn_collapse_momentum0 [batchnorm_collapse]: raw 0-255 digits pixels,
    BatchNorm(momentum=0), SGD 0.05, 25 epochs: eval collapses

Not reproduced: dropout placed directly before BatchNorm and batch size 2 with BN were
tried on these MLPs and did not make eval-mode metrics collapse (eval stayed as good as
train), so no run claims them; the BN collapses here come from running statistics that
never update (momentum 0) or that hold one tiny last batch (momentum 1.0).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _lib as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

# ---------------------------------------------------------------------------
# Tag conventions
# ---------------------------------------------------------------------------

SLASH = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train",
         "val_acc": "accuracy/val", "lr": "lr", "grad_norm": "grad_norm"}
UNDERSCORE = {"train_loss": "train_loss", "val_loss": "val_loss", "train_acc": "train_acc",
              "val_acc": "val_acc", "lr": "learning_rate", "grad_norm": "grad_norm"}
PREFIX = {"train_loss": "train/loss", "val_loss": "val/loss", "train_acc": "train/accuracy",
          "val_acc": "val/accuracy", "lr": "train/lr", "grad_norm": "train/grad_norm"}


def scalars(log: L.Log, tags: dict[str, str], *, lr: bool = True, gn: bool = True,
            acc: bool = True) -> list[tuple[int, str, float]]:
    """Turn a training log into (step, tag, value) rows for a TensorBoard writer."""
    out: list[tuple[int, str, float]] = []
    for t in log.train:
        x = int(t["x"])
        out.append((x, tags["train_loss"], t["loss"]))
        if acc:
            out.append((x, tags["train_acc"], t["acc"]))
        if lr:
            out.append((x, tags["lr"], t["lr"]))
        if gn:
            out.append((x, tags["grad_norm"], t["grad_norm"]))
        for k, v in (t.get("extra") or {}).items():  # type: ignore[union-attr]
            out.append((x, k, v))
    for v in log.val:
        x = int(v["x"])
        out.append((x, tags["val_loss"], v["loss"]))
        if acc:
            out.append((x, tags["val_acc"], v["acc"]))
    out.sort(key=lambda r: r[0])
    return out


def hp(optimizer: str, lr: float, bs: int, epochs: int, *, wd: float = 0.0,
       momentum: float | None = None, dropout: float = 0.0, normalization: str = "none",
       **more: Any) -> dict[str, Any]:
    """The hyperparameters a run records, under their canonical names."""
    out: dict[str, Any] = {
        "optimizer": optimizer, "learning_rate": lr, "batch_size": bs, "epochs": epochs,
        "weight_decay": wd, "dropout": dropout, "normalization": normalization,
    }
    if momentum is not None:
        out["momentum"] = momentum
    out.update(more)
    return out


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, wd: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)


def adam(model: nn.Module, lr: float, wd: float = 0.0) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One generated run: its folder under sample_logs/, family and a one-line story."""

    folder: str
    family: str
    story: str
    fn: Callable[[Path], None]


RUNS: dict[str, Spec] = {}


Gen = Callable[[Path], None]


def sample(folder: str, family: str, story: str) -> Callable[[Gen], Gen]:
    """Register a run generator writing into ``sample_logs/<folder>``."""
    def deco(fn: Gen) -> Gen:
        RUNS[folder] = Spec(folder, family, story, fn)
        return fn
    return deco


# ---------------------------------------------------------------------------
# Helpers for histograms and per-layer gradients
# ---------------------------------------------------------------------------


def bn_hists(model: nn.Module) -> dict[str, np.ndarray]:
    """BatchNorm weight and running statistics of every BN layer."""
    out = {}
    i = 0
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm1d):
            out[f"bn{i}/weight"] = mod.weight.detach().numpy().copy()
            out[f"bn{i}/running_mean"] = mod.running_mean.detach().numpy().copy()
            out[f"bn{i}/running_var"] = mod.running_var.detach().numpy().copy()
            i += 1
    return out


def first_last_grad(model: nn.Module) -> dict[str, float]:
    """Gradient norm of the first and the last Linear layer's weight."""
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return {
        "grad_norm/first_layer": float(lin[0].weight.grad.norm()),
        "grad_norm/last_layer": float(lin[-1].weight.grad.norm()),
    }


# ---------------------------------------------------------------------------
# torch SummaryWriter runs (tb/)
# ---------------------------------------------------------------------------


@sample("tb/healthy_mlp_adam", "tensorboard",
        "digits MLP 64-128-10, Adam 1e-3, wd 1e-4, dropout 0.2, 40 epochs; hparams via add_hparams")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(10)
    m = L.mlp([64, 128, 10], dropout=0.2)
    log = L.train(m, d, optimizer=adam(m, 1e-3, 1e-4), epochs=40, batch_size=32, seed=10)
    h = hp("adam", 1e-3, 32, 40, wd=1e-4, dropout=0.2)
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=h,
               add_hparams_metrics={"hparam/val_accuracy": log.val[-1]["acc"]})


@sample("tb/healthy_sgd_cosine", "tensorboard",
        "digits MLP, SGD 0.05 momentum 0.9, cosine decay to 0 over 30 epochs, every 10 steps")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(11)
    m = L.mlp([64, 128, 10])
    epochs, spe = 30, math.ceil(len(d.xtr) / 32)
    total = epochs * spe
    log = L.train(m, d, optimizer=sgd(m, 0.05, wd=5e-4), epochs=epochs, batch_size=32,
                  seed=11, log_every=10,
                  lr_lambda=lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    L.write_tb(out, scalars(log, SLASH), hparams=hp(
        "sgd", 0.05, 32, epochs, wd=5e-4, momentum=0.9, lr_schedule="cosine"))


@sample("tb/healthy_warmup", "tensorboard",
        "digits MLP, Adam peak 2e-3 after 150 linear warmup steps then linear decay; every 5 steps")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(12)
    m = L.mlp([64, 256, 10], dropout=0.2)
    epochs, spe = 25, math.ceil(len(d.xtr) / 32)
    total, warm = epochs * spe, 150

    def sched(s: int) -> float:
        return (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm))

    log = L.train(m, d, optimizer=adam(m, 2e-3, 1e-4), epochs=epochs, batch_size=32, seed=12,
                  log_every=5, lr_lambda=sched)
    L.write_tb(out, scalars(log, UNDERSCORE), hparams=hp(
        "adam", 2e-3, 32, epochs, wd=1e-4, dropout=0.2, warmup_steps=warm,
        lr_schedule="linear"))


@sample("tb/healthy_step_schedule", "tensorboard",
        "digits MLP, SGD 0.03 momentum 0.9, StepLR x0.1 at epochs 12 and 24 (36 epochs)")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(13)
    m = L.mlp([64, 128, 10], dropout=0.2)
    spe = math.ceil(len(d.xtr) / 32)
    log = L.train(m, d, optimizer=sgd(m, 0.03, wd=5e-4), epochs=36, batch_size=32, seed=13,
                  log_every=10, lr_lambda=lambda s: 0.1 ** (s // (12 * spe)))
    L.write_tb(out, scalars(log, PREFIX), hparams=hp(
        "sgd", 0.03, 32, 36, wd=5e-4, momentum=0.9, dropout=0.2, lr_schedule="step"))


@sample("tb/healthy_transient_spike", "tensorboard",
        "digits MLP, SGD 0.05; one corrupted batch (wrong labels, 2x inputs) at step 205")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(14)
    m = L.mlp([64, 128, 10])
    log = L.train(m, d, optimizer=sgd(m, 0.05, wd=5e-4), epochs=30, batch_size=32, seed=14,
                  log_every=5, corrupt_steps=[205], corrupt_scale=2.0)
    L.write_tb(out, scalars(log, SLASH), hparams=hp("sgd", 0.05, 32, 30, wd=5e-4, momentum=0.9))


@sample("tb/healthy_noisy_bs4", "tensorboard",
        "digits MLP, batch size 4, SGD 0.01; the raw per-step loss every 25 steps is very noisy")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(15)
    m = L.mlp([64, 64, 10])
    log = L.train(m, d, optimizer=sgd(m, 0.01, momentum=0.0, wd=1e-4), epochs=12, batch_size=4,
                  seed=15, log_every=25)
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=hp(
        "sgd", 0.01, 4, 12, wd=1e-4, momentum=0.0))


@sample("tb/healthy_converged_flat", "tensorboard",
        "make_moons, small MLP 2-16-2, Adam 1e-2, 150 epochs: converged by epoch ~10, then flat")
def _(out: Path) -> None:
    d = L.moons()
    L.seed_all(16)
    m = L.mlp([2, 16, 2])
    log = L.train(m, d, optimizer=adam(m, 1e-2, 1e-4), epochs=150, batch_size=32, seed=16,
                  x_axis="epoch")
    L.write_tb(out, scalars(log, UNDERSCORE, gn=False), hparams=hp(
        "adam", 1e-2, 32, 150, wd=1e-4))


@sample("tb/healthy_finetune_low_start", "tensorboard",
        "digits MLP pretrained (unlogged) on one half of train, fine-tuned on the other at 1e-4")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(17)
    m = L.mlp([64, 128, 10])
    half = len(d.xtr) // 2
    pre = L.Data("pre", d.xtr[:half], d.ytr[:half], d.xva, d.yva, 10)
    L.train(m, pre, optimizer=adam(m, 1e-3), epochs=15, batch_size=32, seed=17)
    ft = L.Data("ft", d.xtr[half:], d.ytr[half:], d.xva, d.yva, 10)
    log = L.train(m, ft, optimizer=adam(m, 1e-4), epochs=20, batch_size=32, seed=18)
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=hp(
        "adam", 1e-4, 32, 20, finetune=True))


@sample("tb/divergence_nan", "tensorboard",
        "digits 4-layer LeakyReLU MLP, SGD momentum 0.9, exponential LR ramp to 5.0 -> NaN")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 256, 256, 256, 10], act=lambda: nn.LeakyReLU(0.1))
    log = L.train(m, d, optimizer=sgd(m, 1.0), epochs=15, batch_size=32, seed=0, log_every=5,
                  lr_lambda=lambda s: min(5.0, 0.01 * 1.015**s))
    L.write_tb(out, scalars(log, UNDERSCORE, gn=False), hparams=hp(
        "sgd", 0.01, 32, 15, momentum=0.9, lr_schedule="exponential_ramp"))


@sample("tb/divergence_exploding_loss", "tensorboard",
        "digits LeakyReLU MLP, SGD, clipping 1.0, LR ramp x1.01/step to 50: loss up 1e5x, finite")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 128, 128, 10], act=lambda: nn.LeakyReLU(0.1))
    log = L.train(m, d, optimizer=sgd(m, 1.0, momentum=0.0), epochs=20, batch_size=32, seed=0,
                  log_every=5, clip=1.0, lr_lambda=lambda s: min(50.0, 0.02 * 1.01**s))
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=hp(
        "sgd", 0.02, 32, 20, momentum=0.0, grad_clip=1.0, lr_schedule="exponential_ramp"))


@sample("tb/overfit_noisy_labels", "tensorboard",
        "make_classification (15% flipped labels), 300 train rows, MLP 512-512, Adam 1e-3, no reg")
def _(out: Path) -> None:
    d = L.classification(flip_y=0.15)
    d.xtr, d.ytr = d.xtr[:300], d.ytr[:300]
    L.seed_all(1)
    m = L.mlp([40, 512, 512, 4])
    log = L.train(m, d, optimizer=adam(m, 1e-3), epochs=60, batch_size=32, seed=1)
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=hp("adam", 1e-3, 32, 60))


@sample("tb/overfit_digits_subset", "tensorboard",
        "digits, 120 train images, MLP 512-512, Adam 3e-3, no regularisation, 100 epochs")
def _(out: Path) -> None:
    d = L.digits(n_train=120)
    L.seed_all(2)
    m = L.mlp([64, 512, 512, 10])
    log = L.train(m, d, optimizer=adam(m, 3e-3), epochs=100, batch_size=16, seed=2, x_axis="epoch")
    L.write_tb(out, scalars(log, UNDERSCORE, gn=False), hparams=hp("adam", 3e-3, 16, 100))


@sample("tb/underfit_bottleneck", "tensorboard",
        "digits MLP with a 2-unit hidden layer, Adam 3e-3, 80 epochs: converges at a poor level")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 2, 10])
    log = L.train(m, d, optimizer=adam(m, 3e-3), epochs=80, batch_size=32, seed=1)
    L.write_tb(out, scalars(log, SLASH, gn=False), hparams=hp("adam", 3e-3, 32, 80, hidden=2))


@sample("tb/underfit_strong_l2", "tensorboard",
        "digits MLP, SGD 0.05 momentum 0.9 with weight_decay 0.3: loss stuck near 1.5")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 64, 10])
    log = L.train(m, d, optimizer=sgd(m, 0.05, wd=0.3), epochs=40, batch_size=32, seed=1)
    L.write_tb(out, scalars(log, PREFIX), hparams=hp("sgd", 0.05, 32, 40, wd=0.3, momentum=0.9))


@sample("tb/plateau_lr_tiny", "tensorboard",
        "digits MLP, plain SGD at LR 1e-5 from the start: loss stays at ~ln(10)")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 128, 10])
    log = L.train(m, d, optimizer=sgd(m, 1e-5, momentum=0.0), epochs=40, batch_size=32, seed=1)
    L.write_tb(out, scalars(log, SLASH), hparams=hp("sgd", 1e-5, 32, 40, momentum=0.0))


@sample("tb/plateau_dead_relu", "tensorboard",
        "digits MLP whose first-layer biases start at -10: every ReLU is dead, nothing learns; "
        "activation histograms")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 128, 128, 10])
    with torch.no_grad():
        m[0].bias.fill_(-10.0)
    probe = d.xva[:256]

    def acts(model: nn.Module) -> dict[str, np.ndarray]:
        with torch.no_grad():
            h1 = model[1](model[0](probe))
            h2 = model[3](model[2](h1))
        return {"activations/relu1": h1.numpy().ravel(), "activations/relu2": h2.numpy().ravel()}

    spe = math.ceil(len(d.xtr) / 32)
    log = L.train(m, d, optimizer=sgd(m, 0.05), epochs=40, batch_size=32, seed=1,
                  hist_fn=acts, hist_every=5 * spe)
    L.write_tb(out, scalars(log, SLASH), hists=log.hists, hparams=hp(
        "sgd", 0.05, 32, 40, momentum=0.9))


@sample("tb/bn_collapse_momentum0", "tensorboard",
        "raw 0-255 pixels, BatchNorm(momentum=0): running stats never update; BN histograms")
def _(out: Path) -> None:
    d = L.digits(standardize=False)
    d.xtr, d.xva = d.xtr * 16, d.xva * 16
    L.seed_all(1)
    m = L.mlp([64, 128, 128, 10], bn=True, bn_momentum=0.0)
    spe = math.ceil(len(d.xtr) / 32)
    log = L.train(m, d, optimizer=sgd(m, 0.05), epochs=30, batch_size=32, seed=1,
                  hist_fn=bn_hists, hist_every=3 * spe)
    L.write_tb(out, scalars(log, SLASH), hists=log.hists, hparams=hp(
        "sgd", 0.05, 32, 30, momentum=0.9, normalization="batchnorm", bn_momentum=0.0))


@sample("tb/bn_collapse_last_batch", "tensorboard",
        "raw pixels, BatchNorm(momentum=1.0): running stats = the last batch, which holds 2 rows")
def _(out: Path) -> None:
    d = L.digits(standardize=False)
    d.xtr, d.ytr = d.xtr[:1282], d.ytr[:1282]  # 40 batches of 32 + a last batch of 2
    L.seed_all(1)
    m = L.mlp([64, 128, 128, 10], bn=True, bn_momentum=1.0)
    spe = math.ceil(len(d.xtr) / 32)
    log = L.train(m, d, optimizer=sgd(m, 0.05), epochs=30, batch_size=32, seed=1,
                  hist_fn=bn_hists, hist_every=3 * spe)
    L.write_tb(out, scalars(log, UNDERSCORE), hists=log.hists, hparams=hp(
        "sgd", 0.05, 32, 30, momentum=0.9, normalization="batchnorm", bn_momentum=1.0))


@sample("tb/instability_lr_high", "tensorboard",
        "digits tanh MLP, SGD 0.4 momentum 0.9 (LR a bit too high): spiky, noisy loss")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 128, 128, 10], act=nn.Tanh)
    log = L.train(m, d, optimizer=sgd(m, 0.4), epochs=30, batch_size=32, seed=1, log_every=5)
    L.write_tb(out, scalars(log, SLASH), hparams=hp("sgd", 0.4, 32, 30, momentum=0.9))


@sample("tb/vanishing_sigmoid_deep", "tensorboard",
        "digits 10-hidden-layer sigmoid MLP, SGD 0.05: first-layer gradients ~1e-8 of the last's")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64] + [64] * 10 + [10], act=nn.Sigmoid)
    log = L.train(m, d, optimizer=sgd(m, 0.05), epochs=40, batch_size=32, seed=1, log_every=10,
                  extra_fn=first_last_grad)
    L.write_tb(out, scalars(log, SLASH), hparams=hp("sgd", 0.05, 32, 40, momentum=0.9,
                                                     activation="sigmoid", depth=11))


@sample("tb/exploding_gradients_rnn", "tensorboard",
        "char-level ReLU RNN on stdlib source, SGD 0.6 momentum 0.9, no clipping: "
        "grad norm 1 -> 1e9 in a few steps, then NaN")
def _(out: Path) -> None:
    d = L.char_data(seq_len=64)
    L.seed_all(1)
    m = L.CharRNN(d.n_classes, 128, cell="rnn", nonlinearity="relu")
    log = L.train(m, d, optimizer=sgd(m, 0.6), epochs=2, batch_size=32, seed=0, log_every=1)
    L.write_tb(out, scalars(log, UNDERSCORE), hparams=hp(
        "sgd", 0.6, 32, 2, momentum=0.9, grad_clip=None, model="rnn_relu_128"))


@sample("tb/undertrained_adam", "tensorboard",
        "digits MLP, Adam 1e-4, stopped after 12 epochs while val loss still falls fast")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(1)
    m = L.mlp([64, 128, 10])
    log = L.train(m, d, optimizer=adam(m, 1e-4), epochs=12, batch_size=32, seed=1, log_every=10)
    L.write_tb(out, scalars(log, SLASH), hparams=hp("adam", 1e-4, 32, 12))


# ---------------------------------------------------------------------------
# LR sweep (tb format, one model, four learning rates)
# ---------------------------------------------------------------------------


def _sweep(lr: float) -> Callable[[Path], None]:
    def fn(out: Path) -> None:
        d = L.digits()
        L.seed_all(3)
        m = L.mlp([64, 128, 10])
        log = L.train(m, d, optimizer=sgd(m, lr, wd=5e-4), epochs=50, batch_size=32, seed=3)
        L.write_tb(out, scalars(log, SLASH), hparams=hp("sgd", lr, 32, 50, wd=5e-4, momentum=0.9))
    return fn


for _lr in ("0.001", "0.01", "0.1", "1.0"):
    sample(f"lr_sweep/lr_{_lr}", "tensorboard",
           f"LR sweep: digits MLP 64-128-10, SGD momentum 0.9, wd 5e-4, LR {_lr}, 50 epochs")(
        _sweep(float(_lr)))


# ---------------------------------------------------------------------------
# Keras layouts, HF trainer_state, Ultralytics results.csv (written from torch loops)
# ---------------------------------------------------------------------------


def keras_tb(out: Path, log: L.Log, h: dict[str, Any]) -> None:
    """Keras TensorBoard callback layout: epoch_* scalars in train/ and validation/."""
    tr = [(int(t["epoch"]), "epoch_loss", t["loss"]) for t in log.train]
    tr += [(int(t["epoch"]), "epoch_accuracy", t["acc"]) for t in log.train]
    tr += [(int(t["epoch"]), "epoch_learning_rate", t["lr"]) for t in log.train]
    va = [(int(v["epoch"]), "epoch_loss", v["loss"]) for v in log.val]
    va += [(int(v["epoch"]), "epoch_accuracy", v["acc"]) for v in log.val]
    L.write_tb(out / "train", sorted(tr, key=lambda r: r[0]), new_style=True, dt=1.0, v2=True)
    L.write_tb(out / "validation", sorted(va, key=lambda r: r[0]), new_style=True, dt=1.0, v2=True)
    L.write_json(out / "config.json", h)


@sample("keras_tb/healthy_breast_cancer", "keras_tensorboard",
        "breast_cancer MLP, Adam 1e-3, dropout 0.2, 26 epochs; Keras train/ + validation/ layout")
def _(out: Path) -> None:
    d = L.breast_cancer()
    L.seed_all(20)
    m = L.mlp([30, 64, 2], dropout=0.2)
    log = L.train(m, d, optimizer=adam(m, 1e-3, 1e-4), epochs=26, batch_size=32, seed=20)
    keras_tb(out, log, hp("adam", 1e-3, 32, 26, wd=1e-4, dropout=0.2))


@sample("keras_tb/overfit_classification", "keras_tensorboard",
        "make_classification (3 classes, 10% flipped), 150 train rows, MLP 256-256, Adam 1e-3")
def _(out: Path) -> None:
    d = L.classification(n=900, n_features=40, n_informative=8, n_classes=3, flip_y=0.1, seed=5)
    d.xtr, d.ytr = d.xtr[:150], d.ytr[:150]
    L.seed_all(21)
    m = L.mlp([40, 256, 256, 3])
    log = L.train(m, d, optimizer=adam(m, 1e-3), epochs=80, batch_size=16, seed=21)
    keras_tb(out, log, hp("adam", 1e-3, 16, 80))


@sample("keras_tb/plateau_lr_tiny", "keras_tensorboard",
        "wine MLP, SGD LR 1e-5 from the start: nothing moves for 60 epochs")
def _(out: Path) -> None:
    d = L.wine()
    L.seed_all(22)
    m = L.mlp([13, 32, 3])
    log = L.train(m, d, optimizer=sgd(m, 1e-5, momentum=0.0), epochs=60, batch_size=16, seed=22)
    keras_tb(out, log, hp("sgd", 1e-5, 16, 60, momentum=0.0))


@sample("keras_csv/healthy_moons", "keras_csv",
        "make_moons MLP 32-32, Adam 1e-2, 60 epochs; Keras CSVLogger training.log")
def _(out: Path) -> None:
    d = L.moons()
    L.seed_all(30)
    m = L.mlp([2, 32, 32, 2])
    log = L.train(m, d, optimizer=adam(m, 1e-2, 1e-4), epochs=60, batch_size=32, seed=30)
    L.write_keras_csv(out / "training.log", log)
    L.write_json(out / "config.json", hp("adam", 1e-2, 32, 60, wd=1e-4))


@sample("keras_csv/overfit_classification", "keras_csv",
        "make_classification (10% flipped), 200 train rows, MLP 256-256, Adam 1e-3, 80 epochs")
def _(out: Path) -> None:
    d = L.classification(n=1500, flip_y=0.1, seed=7)
    d.xtr, d.ytr = d.xtr[:200], d.ytr[:200]
    L.seed_all(31)
    m = L.mlp([40, 256, 256, 4])
    log = L.train(m, d, optimizer=adam(m, 1e-3), epochs=80, batch_size=16, seed=31)
    L.write_keras_csv(out / "training.log", log)
    L.write_json(out / "config.json", hp("adam", 1e-3, 16, 80))


@sample("keras_csv/divergence_nan", "keras_csv",
        "digits LeakyReLU MLP, SGD 0.5 momentum 0.9, no warmup: loss is nan from the first epoch")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(32)
    m = L.mlp([64, 256, 256, 10], act=lambda: nn.LeakyReLU(0.1))
    log = L.train(m, d, optimizer=sgd(m, 0.5), epochs=20, batch_size=32, seed=32)
    L.write_keras_csv(out / "training.log", log)
    L.write_json(out / "config.json", hp("sgd", 0.5, 32, 20, momentum=0.9))


@sample("keras_csv/underfit_linear", "keras_csv",
        "5-class make_classification, linear model, SGD 0.05 with weight decay 0.05")
def _(out: Path) -> None:
    d = L.classification(n=1500, n_features=20, n_informative=10, n_classes=5, flip_y=0.0,
                         seed=8)
    L.seed_all(33)
    m = L.mlp([20, 5])
    log = L.train(m, d, optimizer=sgd(m, 0.05, wd=0.05), epochs=40, batch_size=32, seed=33)
    L.write_keras_csv(out / "training.log", log)
    L.write_json(out / "config.json", hp("sgd", 0.05, 32, 40, wd=0.05, momentum=0.9,
                                         model="linear"))


def hf_run(out: Path, log: L.Log, h: dict[str, Any], logging_steps: int, epochs: int,
           bs: int) -> None:
    L.write_hf_state(out, log, hparams=h, logging_steps=logging_steps,
                     eval_steps=log.steps_per_epoch, num_epochs=epochs, batch_size=bs)


@sample("hf/healthy_char_gru", "hf_trainer_state",
        "char-level GRU(96) on stdlib source, AdamW 3e-3 with linear decay, 8 epochs")
def _(out: Path) -> None:
    d = L.char_data(seq_len=64)
    L.seed_all(40)
    m = L.CharRNN(d.n_classes, 96, cell="gru")
    epochs, bs = 8, 32
    total = epochs * math.ceil(len(d.xtr) / bs)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01)
    log = L.train(m, d, optimizer=opt, epochs=epochs, batch_size=bs, seed=40, log_every=10,
                  log_mean=True, lr_lambda=lambda s: 1 - s / total, clip=1.0)
    hf_run(out, log, hp("adamw", 3e-3, bs, epochs, wd=0.01, grad_clip=1.0,
                        lr_schedule="linear"), 10, epochs, bs)


@sample("hf/overfit_char_lstm", "hf_trainer_state",
        "char-level LSTM(256) on only 4k characters of stdlib source, Adam 3e-3, 80 epochs")
def _(out: Path) -> None:
    d = L.char_data(seq_len=64, max_chars=4000)
    L.seed_all(41)
    m = L.CharRNN(d.n_classes, 256, cell="lstm")
    epochs, bs = 80, 16
    log = L.train(m, d, optimizer=adam(m, 3e-3), epochs=epochs, batch_size=bs, seed=41,
                  log_every=5, log_mean=True, clip=1.0)
    hf_run(out, log, hp("adam", 3e-3, bs, epochs, grad_clip=1.0), 5, epochs, bs)


@sample("hf/divergence_nan", "hf_trainer_state",
        "digits LeakyReLU MLP, SGD momentum 0.9, LR 0.3 rising x1.02 per step: NaN in log_history")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(42)
    m = L.mlp([64, 256, 256, 10], act=lambda: nn.LeakyReLU(0.1))
    epochs, bs = 8, 32
    log = L.train(m, d, optimizer=sgd(m, 0.3), epochs=epochs, batch_size=bs, seed=42,
                  log_every=5, log_mean=True, lr_lambda=lambda s: min(20.0, 0.05 * 1.02**s))
    hf_run(out, log, hp("sgd", 0.3, bs, epochs, momentum=0.9, lr_schedule="exponential_ramp"),
           5, epochs, bs)


@sample("hf/undertrained_char_gru", "hf_trainer_state",
        "char-level GRU(64), AdamW 1e-3, stopped after 5 epochs while eval loss still falls")
def _(out: Path) -> None:
    d = L.char_data(seq_len=64)
    L.seed_all(43)
    m = L.CharRNN(d.n_classes, 64, cell="gru")
    epochs, bs = 5, 32
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    log = L.train(m, d, optimizer=opt, epochs=epochs, batch_size=bs, seed=43, log_every=5,
                  log_mean=True, val_every=1)
    hf_run(out, log, hp("adamw", 1e-3, bs, epochs, wd=0.01), 5, epochs, bs)


@sample("ultralytics/healthy_cls_digits", "ultralytics",
        "digits MLP written as an Ultralytics classify results.csv (SGD 0.01, cosine)")
def _(out: Path) -> None:
    d = L.digits()
    L.seed_all(50)
    m = L.mlp([64, 128, 10], dropout=0.2)
    epochs = 40
    log = L.train(m, d, optimizer=sgd(m, 0.01, wd=5e-4), epochs=epochs, batch_size=32, seed=50,
                  lr_lambda=lambda s: 0.5 * (1 + math.cos(math.pi * s / (epochs * 41))))
    L.write_ultralytics_cls(out / "results.csv", log)
    L.write_yaml(out / "args.yaml", {"lr0": 0.01, "batch": 32, "epochs": epochs,
                                     "weight_decay": 5e-4, "momentum": 0.9, "optimizer": "SGD",
                                     "dropout": 0.2, "cos_lr": True})


# ---------------------------------------------------------------------------
# Lightning CSVLogger runs (a real Trainer)
# ---------------------------------------------------------------------------


def lightning_run(out: Path, data: L.Data, model: nn.Module, *, seed: int, epochs: int,
                  lr: float, bs: int, optimizer: str = "adam", wd: float = 0.0,
                  momentum: float = 0.9, **extra: Any) -> None:
    """Train with lightning.Trainer + CSVLogger into out/lightning_logs/version_0."""
    import lightning as pl
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    L.quiet()  # lightning sets its own log levels on import

    class Lit(pl.LightningModule):
        def __init__(self, **hparams: Any) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            out = self.net(x)
            loss = nn.functional.cross_entropy(out, y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("train_acc", (out.argmax(-1) == y).float().mean(), on_epoch=True,
                     on_step=False)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            out = self.net(x)
            self.log("val_loss", nn.functional.cross_entropy(out, y), on_epoch=True)
            self.log("val_acc", (out.argmax(-1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            if optimizer == "sgd":
                return torch.optim.SGD(self.parameters(), lr=lr, momentum=momentum,
                                       weight_decay=wd)
            return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)

    pl.seed_everything(seed, workers=True, verbose=False)
    g = torch.Generator().manual_seed(seed)
    train_dl = DataLoader(TensorDataset(data.xtr, data.ytr), batch_size=bs, shuffle=True,
                          generator=g)
    val_dl = DataLoader(TensorDataset(data.xva, data.yva), batch_size=256)
    h = hp(optimizer, lr, bs, epochs, wd=wd, momentum=momentum if optimizer == "sgd" else None,
           **extra)
    lit = Lit(**h)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True,
        logger=CSVLogger(save_dir=str(out), name="lightning_logs", version=0),
        callbacks=[LearningRateMonitor(logging_interval="epoch")],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=5,
    )
    trainer.fit(lit, train_dl, val_dl)


@sample("lightning/healthy_wine", "lightning_csv",
        "wine MLP 13-32-3, Adam 3e-3, dropout 0.2, 40 epochs; lightning Trainer + CSVLogger")
def _(out: Path) -> None:
    d = L.wine()
    L.seed_all(60)
    lightning_run(out, d, L.mlp([13, 32, 3], dropout=0.2), seed=60, epochs=40, lr=3e-3, bs=16,
                  wd=1e-4, dropout=0.2)


@sample("lightning/overfit_noisy_labels", "lightning_csv",
        "make_classification (10% flipped), 200 train rows, MLP 256-256, Adam 1e-3, 60 epochs")
def _(out: Path) -> None:
    d = L.classification(n=1500, flip_y=0.1, seed=9)
    d.xtr, d.ytr = d.xtr[:200], d.ytr[:200]
    L.seed_all(61)
    lightning_run(out, d, L.mlp([40, 256, 256, 4]), seed=61, epochs=60, lr=1e-3, bs=16)


@sample("lightning/plateau_dead_relu", "lightning_csv",
        "moons MLP whose first-layer biases start at -10 (all ReLUs dead), SGD 0.05, 40 epochs")
def _(out: Path) -> None:
    d = L.moons()
    L.seed_all(62)
    m = L.mlp([2, 64, 64, 2])
    with torch.no_grad():
        m[0].bias.fill_(-10.0)
    lightning_run(out, d, m, seed=62, epochs=40, lr=0.05, bs=32, optimizer="sgd")


@sample("lightning/bn_collapse_momentum0", "lightning_csv",
        "raw 0-255 digits pixels, BatchNorm(momentum=0), SGD 0.05, 25 epochs: eval collapses")
def _(out: Path) -> None:
    d = L.digits(standardize=False)
    d.xtr, d.xva = d.xtr * 16, d.xva * 16
    L.seed_all(63)
    lightning_run(out, d, L.mlp([64, 128, 128, 10], bn=True, bn_momentum=0.0), seed=63,
                  epochs=25, lr=0.05, bs=32, optimizer="sgd", normalization="batchnorm",
                  bn_momentum=0.0)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def generate(folders: list[str], root: Path, verbose: bool = True) -> dict[str, float]:
    """(Re)generate the given runs under ``root``; returns seconds per run."""
    L.setup_torch()
    L.quiet()
    times: dict[str, float] = {}
    for folder in folders:
        spec = RUNS[folder]
        out = root / folder
        L.clean_dir(out)
        t0 = time.perf_counter()
        spec.fn(out)
        times[folder] = time.perf_counter() - t0
        if verbose:
            print(f"{times[folder]:6.1f}s  {folder}", flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate all runs, or only those named."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="run folders to regenerate (default: all)")
    ap.add_argument("--out", type=Path, default=HERE, help="root folder (default: sample_logs/)")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    args = ap.parse_args(argv)
    if args.list:
        for spec in RUNS.values():
            print(f"{spec.folder}\t{spec.family}\t{spec.story}")
        return 0
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        ap.error(f"unknown run(s): {', '.join(unknown)}; see --list")
    folders = args.runs or list(RUNS)
    t0 = time.perf_counter()
    generate(folders, args.out)
    print(f"{len(folders)} runs in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
