"""Train the calibration corpus: many real, short, seeded CPU trainings with known causes.

Usage (from the repo root, in the venv)::

    nice -n 15 python bench/calibration/generate.py --n 1500 --workers 1

Run ``i`` of campaign seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: a
cause (each core state's usual causes at three severities, and the healthy traps that
DESIGN.md says must stay healthy), then a dataset, a model family, an optimizer, a
schedule, a batch size, a length and a logging cadence compatible with the cause. The
history is appended to ``runs.jsonl.gz`` (see ``store.py``); ids already stored are
skipped, so an interrupted campaign resumes where it stopped and ``--n`` can grow later.

Data needs no download: scikit-learn's bundled and synthetic sets, and the source text of
a few stdlib modules for the character language model.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store

VEC_DATASETS = ("wine", "breast_cancer", "iris", "moons", "classification", "regression",
                "friedman")
CLS_DATASETS = ("digits", "wine", "breast_cancer", "iris", "moons", "classification")
REG_DATASETS = ("regression", "friedman")
ALL_DATASETS = (*CLS_DATASETS, *REG_DATASETS, "chars")
ARCHS = ("linear", "mlp", "mlp_bn", "cnn_bn", "cnn_gn", "gru", "lstm", "transformer")
FAMILY = {"linear": "linear", "mlp": "mlp", "mlp_bn": "mlp", "cnn_bn": "cnn",
          "cnn_gn": "cnn", "gru": "rnn", "lstm": "rnn", "transformer": "transformer"}
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
#: A learning-rate range where each optimizer trains these small models well.
GOOD_LR = {"sgd": (0.05, 0.3), "sgd_momentum": (0.01, 0.05), "adam": (1e-3, 5e-3),
           "adamw": (1e-3, 5e-3), "rmsprop": (5e-4, 3e-3)}
SCHEDULES = ("constant", "step", "cosine", "warmup", "restarts", "onecycle")


@dataclass(frozen=True)
class Cause:
    """One way to produce a state: which data and models it applies to."""

    name: str
    intended: tuple[str, ...]
    datasets: tuple[str, ...] = ALL_DATASETS
    archs: tuple[str, ...] = ARCHS
    weight: float = 1.0


NON_BN = ("linear", "mlp", "cnn_gn", "gru", "lstm", "transformer")
DEEP = ("mlp", "mlp_bn", "cnn_bn", "cnn_gn", "gru", "lstm", "transformer")
CAUSES: tuple[Cause, ...] = (
    # healthy, including the traps DESIGN.md lists
    Cause("default", (), weight=3.0),
    Cause("noisy_small_batch", (), archs=("linear", "mlp", "cnn_gn", "gru", "transformer")),
    Cause("warmup_rise", ()),
    Cause("transient_spike", (), datasets=(*CLS_DATASETS, *REG_DATASETS)),
    Cause("finetune_low_start", ()),
    Cause("short_run", (), datasets=("digits", "wine", "breast_cancer", "iris", "moons")),
    Cause("sparse_val", ()),
    Cause("converged_long_tail", (), datasets=("wine", "breast_cancer", "iris", "moons",
                                               "digits", "friedman", "regression")),
    Cause("dropout_val_below_train", (), archs=("mlp", "mlp_bn")),
    # divergence
    Cause("lr_far_too_high", ("divergence",), weight=1.5),
    Cause("lr_jump_midrun", ("divergence",), weight=1.5),
    Cause("unscaled_inputs_targets", ("divergence",), datasets=REG_DATASETS,
          archs=("linear", "mlp")),
    Cause("huge_init", ("divergence",), datasets=CLS_DATASETS,
          archs=("linear", "mlp", "cnn_gn")),
    # overfit
    Cause("tiny_train_set", ("overfit",), datasets=("digits", "classification",
                                                    "breast_cancer", "wine", "friedman"),
          archs=("mlp", "mlp_bn", "cnn_gn", "gru", "transformer"), weight=1.5),
    Cause("label_noise", ("overfit",), datasets=("digits", "classification", "moons"),
          archs=("mlp", "mlp_bn", "cnn_bn", "cnn_gn", "lstm"), weight=1.5),
    Cause("small_text_big_model", ("overfit",), datasets=("chars",),
          archs=("gru", "lstm", "transformer")),
    # underfit
    Cause("bottleneck", ("underfit",), datasets=("digits", "classification", "chars"),
          archs=("mlp", "gru", "lstm", "cnn_gn")),
    Cause("heavy_weight_decay", ("underfit",), archs=NON_BN),
    Cause("heavy_dropout", ("underfit",), datasets=("digits", "classification", "friedman"),
          archs=("mlp",)),
    Cause("too_few_steps", ("underfit",)),
    Cause("linear_on_nonlinear", ("underfit",), datasets=("moons", "classification",
                                                          "friedman"), archs=("linear",)),
    # plateau (and underfit + plateau)
    Cause("tiny_lr", ("plateau",), weight=1.5),
    Cause("dead_relu", ("plateau",), datasets=(*CLS_DATASETS, *REG_DATASETS),
          archs=("mlp", "cnn_gn")),
    Cause("zero_init", ("plateau",), datasets=CLS_DATASETS, archs=("mlp",)),
    Cause("deep_sigmoid", ("plateau",), datasets=CLS_DATASETS, archs=("mlp",)),
    Cause("endless_warmup", ("plateau",)),
    Cause("lr_decayed_early", ("plateau", "underfit")),
    # batchnorm_collapse
    Cause("bn_frozen_stats", ("batchnorm_collapse",), datasets=CLS_DATASETS,
          archs=("mlp_bn", "cnn_bn"), weight=1.5),
    Cause("bn_tiny_last_batch", ("batchnorm_collapse",), datasets=CLS_DATASETS,
          archs=("mlp_bn", "cnn_bn"), weight=1.5),
    Cause("bn_tiny_batch", ("batchnorm_collapse",), datasets=CLS_DATASETS,
          archs=("mlp_bn", "cnn_bn")),
    Cause("bn_dropout_before", ("batchnorm_collapse",), datasets=CLS_DATASETS,
          archs=("mlp_bn",), weight=0.5),
)
CAUSE_BY_NAME = {c.name: c for c in CAUSES}
#: How often each intended label is drawn (then a cause within it, by weight).
LABEL_WEIGHTS = {(): 0.30, ("divergence",): 0.14, ("overfit",): 0.14, ("underfit",): 0.13,
                 ("plateau",): 0.14, ("plateau", "underfit"): 0.03,
                 ("batchnorm_collapse",): 0.12}


def arch_ok(arch: str, dataset: str) -> bool:
    """Which model families make sense on which data."""
    if dataset == "chars":
        return arch in ("linear", "mlp", "gru", "lstm", "transformer")
    if arch in ("cnn_bn", "cnn_gn"):
        return dataset not in ("iris", "moons")
    if arch in ("gru", "lstm", "transformer"):
        return dataset != "moons"
    return True


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# ---------------------------------------------------------------------------
# Drawing a configuration
# ---------------------------------------------------------------------------


def draw_config(index: int, seed: int) -> dict[str, Any]:
    """The full, JSON-serialisable recipe of run ``index``: everything training needs."""
    rng = np.random.default_rng([seed, index])
    labels = list(LABEL_WEIGHTS)
    p = np.array([LABEL_WEIGHTS[k] for k in labels])
    intended = labels[rng.choice(len(labels), p=p / p.sum())]
    causes = [c for c in CAUSES if c.intended == intended]
    w = np.array([c.weight for c in causes])
    cause = causes[rng.choice(len(causes), p=w / w.sum())]
    severity = int(rng.integers(1, 4))
    while True:
        dataset = str(rng.choice(cause.datasets))
        archs = [a for a in cause.archs if arch_ok(a, dataset)]
        if archs:
            break
    arch = str(rng.choice(archs))
    task = "lm" if dataset == "chars" else "reg" if dataset in REG_DATASETS else "cls"
    opt = str(rng.choice(OPTIMIZERS))
    if arch == "transformer" and opt in ("sgd",):
        opt = "adam"
    lo, hi = GOOD_LR[opt]
    if arch in ("transformer", "gru", "lstm") and opt in ("adam", "adamw", "rmsprop"):
        hi = min(hi, 3e-3)
    cfg: dict[str, Any] = {
        "index": index, "seed": int(seed * 100_003 + index), "cause": cause.name,
        "severity": severity, "intended": list(intended), "dataset": dataset, "arch": arch,
        "family": FAMILY[arch], "task": task, "optimizer": opt,
        "lr": loguniform(rng, lo, hi), "momentum": 0.9 if opt == "sgd_momentum" else 0.0,
        "weight_decay": float(rng.choice([0.0, 0.0, 1e-4, 5e-4])),
        "schedule": {"kind": str(rng.choice(SCHEDULES))},
        "lr_event": None, "batch_size": int(rng.choice([16, 32, 32, 64, 128])),
        "hidden": int(rng.choice([32, 64, 128])), "depth": int(rng.choice([1, 2, 2, 3])),
        "dropout": float(rng.choice([0.0, 0.0, 0.0, 0.1, 0.2])), "dropout_before_bn": False,
        "bn_momentum": 0.1, "activation": "relu", "init": None, "n_train": None,
        "label_noise": 0.0, "input_scale": 1.0, "input_shift": 0.0, "target_scale": 1.0,
        "pretrain_steps": 0, "spike_step": None, "drop_last": False,
        "target_steps": int(loguniform(rng, 120, 400)), "epochs": None,
        "train_log": str(rng.choice(["step", "step", "epoch"])),
        "log_every": int(rng.choice([1, 1, 2, 5, 10])), "val_every": 1,
        "grad_norm": bool(rng.random() < 0.4), "n_features": None, "n_classes_gen": None,
        "text_chars": 40_000,
    }
    if dataset == "classification":
        cfg["n_classes_gen"] = int(rng.choice([2, 3, 4, 5, 6, 8, 10, 12]))
        cfg["n_features"] = int(rng.choice([16, 20, 24, 32]))
    if dataset == "regression":
        cfg["n_features"] = int(rng.choice([8, 12, 16, 24]))
    if rng.random() < 0.25:
        cfg["val_every"] = int(rng.choice([2, 3, 5]))
    _apply_schedule_params(cfg, rng)
    _apply_cause(cfg, cause.name, severity, rng)
    return cfg


def _apply_schedule_params(cfg: dict[str, Any], rng: np.random.Generator) -> None:
    s = cfg["schedule"]
    if s["kind"] == "step":
        s["gamma"] = float(rng.choice([0.1, 0.2, 0.5]))
        s["milestones"] = [0.5, 0.75]
    elif s["kind"] == "warmup":
        s["warmup"] = float(rng.uniform(0.03, 0.1))
        s["then"] = str(rng.choice(["constant", "cosine"]))
    elif s["kind"] == "restarts":
        s["cycles"] = int(rng.choice([2, 3, 4]))
    elif s["kind"] == "onecycle":
        s["peak"] = float(rng.uniform(0.2, 0.35))


def _apply_cause(cfg: dict[str, Any], cause: str, sev: int, rng: np.random.Generator) -> None:
    """Turn a healthy draw into the cause's failure (or trap), scaled by severity."""
    ds, arch = cfg["dataset"], cfg["arch"]
    if cause == "noisy_small_batch":
        cfg["batch_size"] = int(rng.choice([2, 4, 8]))
        cfg["lr"] /= 3
        cfg["train_log"], cfg["log_every"] = "step", int(rng.choice([1, 2]))
        cfg["target_steps"] = int(loguniform(rng, 400, 900))
    elif cause == "warmup_rise":
        cfg["schedule"] = {"kind": "warmup", "warmup": float(rng.uniform(0.05, 0.12)),
                           "then": str(rng.choice(["constant", "cosine"]))}
        cfg["lr"] = GOOD_LR[cfg["optimizer"]][1] * float(rng.uniform(0.8, 1.5))
        cfg["train_log"] = "step"
    elif cause == "transient_spike":
        cfg["spike_scale"] = float(rng.choice([10.0, 30.0, 100.0]))
        cfg["spike_at"] = float(rng.uniform(0.3, 0.7))
        cfg["train_log"], cfg["log_every"] = "step", int(rng.choice([1, 2]))
    elif cause == "finetune_low_start":
        cfg["pretrain_steps"] = int(rng.choice([300, 500]))
        cfg["lr"] /= 5
        cfg["target_steps"] = int(loguniform(rng, 100, 300))
    elif cause == "short_run":
        cfg["epochs"] = int(rng.integers(3, 9))
        cfg["batch_size"] = int(rng.choice([8, 16]))
        cfg["lr"] = GOOD_LR[cfg["optimizer"]][1] * 0.7
        cfg["val_every"] = 1
        cfg["train_log"] = "epoch"
    elif cause == "sparse_val":
        cfg["val_every"] = int(rng.choice([4, 6, 10]))
        cfg["target_steps"] = int(loguniform(rng, 400, 900))
    elif cause == "converged_long_tail":
        cfg["target_steps"] = int(loguniform(rng, 700, 1200))
        cfg["weight_decay"] = 5e-4
        cfg["schedule"] = {"kind": str(rng.choice(["cosine", "step"])), "gamma": 0.1,
                           "milestones": [0.4, 0.7]}
    elif cause == "dropout_val_below_train":
        cfg["dropout"] = float(rng.choice([0.4, 0.5, 0.6]))
        cfg["hidden"] = 128
    elif cause == "lr_far_too_high":
        cfg["lr"] *= {1: 30.0, 2: 200.0, 3: 2000.0}[sev] * float(rng.uniform(0.7, 1.5))
    elif cause == "lr_jump_midrun":
        cfg["lr_event"] = {"at": float(rng.uniform(0.3, 0.7)),
                           "factor": {1: 100.0, 2: 1000.0, 3: 10000.0}[sev]}
    elif cause == "unscaled_inputs_targets":
        cfg["optimizer"] = str(rng.choice(["sgd", "sgd_momentum"]))
        cfg["lr"] = loguniform(rng, *GOOD_LR[cfg["optimizer"]])
        cfg["momentum"] = 0.9 if cfg["optimizer"] == "sgd_momentum" else 0.0
        cfg["input_scale"] = {1: 8.0, 2: 30.0, 3: 100.0}[sev]
        cfg["target_scale"] = {1: 30.0, 2: 100.0, 3: 1000.0}[sev]
    elif cause == "huge_init":
        cfg["init"] = {"kind": "scale", "factor": {1: 15.0, 2: 60.0, 3: 300.0}[sev]}
    elif cause == "tiny_train_set":
        cfg["n_train"] = {1: 150, 2: 80, 3: 40}[sev] if ds != "friedman" else 60
        cfg["hidden"], cfg["depth"], cfg["dropout"], cfg["weight_decay"] = 256, 2, 0.0, 0.0
        cfg["batch_size"] = 16
        cfg["optimizer"] = str(rng.choice(["adam", "adamw", "sgd_momentum"]))
        cfg["lr"] = loguniform(rng, *GOOD_LR[cfg["optimizer"]])
        cfg["momentum"] = 0.9 if cfg["optimizer"] == "sgd_momentum" else 0.0
        cfg["target_steps"] = int(loguniform(rng, 350, 600))
        cfg["schedule"] = {"kind": "constant"}
    elif cause == "label_noise":
        cfg["label_noise"] = {1: 0.2, 2: 0.35, 3: 0.5}[sev]
        cfg["n_train"] = 400
        cfg["hidden"], cfg["depth"], cfg["dropout"], cfg["weight_decay"] = 256, 2, 0.0, 0.0
        cfg["optimizer"] = str(rng.choice(["adam", "adamw"]))
        cfg["lr"] = loguniform(rng, 1e-3, 3e-3)
        cfg["target_steps"] = int(loguniform(rng, 500, 800))
        cfg["batch_size"] = 32
        cfg["schedule"] = {"kind": "constant"}
    elif cause == "small_text_big_model":
        cfg["text_chars"] = {1: 8000, 2: 5000, 3: 3000}[sev]
        cfg["hidden"], cfg["dropout"], cfg["weight_decay"] = 192, 0.0, 0.0
        cfg["optimizer"], cfg["lr"] = "adam", loguniform(rng, 2e-3, 5e-3)
        cfg["batch_size"], cfg["target_steps"] = 16, int(loguniform(rng, 400, 700))
        cfg["schedule"] = {"kind": "constant"}
    elif cause == "bottleneck":
        cfg["hidden"] = {1: 3, 2: 2, 3: 1}[sev]
        cfg["depth"] = 1
        cfg["dropout"] = 0.0
    elif cause == "heavy_weight_decay":
        if cfg["optimizer"] == "adamw":
            cfg["weight_decay"] = {1: 20.0, 2: 60.0, 3: 200.0}[sev]
        elif cfg["optimizer"] == "adam":
            cfg["weight_decay"] = {1: 0.1, 2: 0.3, 3: 1.0}[sev]
        else:
            cfg["weight_decay"] = {1: 0.1, 2: 0.3, 3: 1.0}[sev]
    elif cause == "heavy_dropout":
        cfg["dropout"] = {1: 0.8, 2: 0.9, 3: 0.95}[sev]
        cfg["depth"] = 2
    elif cause == "too_few_steps":
        cfg["lr"] *= {1: 0.3, 2: 0.15, 3: 0.07}[sev]
        cfg["target_steps"] = int(rng.integers(25, 70))
        cfg["schedule"] = {"kind": "constant"}
        cfg["train_log"], cfg["log_every"] = "step", 1
        cfg["batch_size"] = int(rng.choice([16, 32]))
        cfg["val_every_steps"] = int(rng.choice([5, 8]))
    elif cause == "linear_on_nonlinear":
        if ds == "classification":
            cfg["n_classes_gen"] = int(rng.choice([4, 6, 8]))
            cfg["clusters"] = 4
    elif cause == "tiny_lr":
        cfg["lr"] *= {1: 3e-3, 2: 5e-4, 3: 5e-5}[sev]
    elif cause == "dead_relu":
        cfg["init"] = {"kind": "dead_bias", "bias": {1: -8.0, 2: -20.0, 3: -60.0}[sev]}
    elif cause == "zero_init":
        cfg["init"] = {"kind": "zero"}
        cfg["depth"] = int(rng.choice([2, 3]))
    elif cause == "deep_sigmoid":
        cfg["activation"] = "sigmoid"
        cfg["depth"] = {1: 6, 2: 10, 3: 16}[sev]
        cfg["optimizer"] = str(rng.choice(["sgd", "sgd_momentum"]))
        cfg["lr"] = loguniform(rng, *GOOD_LR[cfg["optimizer"]]) / 3
        cfg["momentum"] = 0.9 if cfg["optimizer"] == "sgd_momentum" else 0.0
        cfg["dropout"] = 0.0
    elif cause == "endless_warmup":
        cfg["schedule"] = {"kind": "warmup", "warmup": {1: 40.0, 2: 200.0, 3: 2000.0}[sev],
                           "then": "constant"}
    elif cause == "lr_decayed_early":
        cfg["lr_event"] = {"at": float(rng.uniform(0.06, 0.14)),
                           "factor": {1: 3e-3, 2: 1e-3, 3: 1e-4}[sev]}
        cfg["schedule"] = {"kind": "constant"}
        cfg["lr"] = loguniform(rng, *GOOD_LR[cfg["optimizer"]]) / 2
    elif cause.startswith("bn_"):
        cfg["input_scale"] = float(rng.choice([1.0, 3.0])) if ds != "digits" else 1.0
        cfg["input_shift"] = {1: 2.0, 2: 5.0, 3: 15.0}[sev]
        cfg["raw_inputs"] = ds == "digits"
        cfg["dropout"] = 0.0
        if cause == "bn_frozen_stats":
            cfg["bn_momentum"] = 0.0
        elif cause == "bn_tiny_last_batch":
            cfg["bn_momentum"] = 1.0
            cfg["ragged_last"] = {1: 3, 2: 2, 3: 2}[sev]
        elif cause == "bn_tiny_batch":
            cfg["batch_size"] = {1: 4, 2: 3, 3: 2}[sev]
            cfg["bn_momentum"] = {1: 0.5, 2: 0.9, 3: 1.0}[sev]
            cfg["lr"] /= 3
            cfg["target_steps"] = int(loguniform(rng, 300, 600))
        elif cause == "bn_dropout_before":
            cfg["dropout"] = {1: 0.4, 2: 0.6, 3: 0.75}[sev]
            cfg["dropout_before_bn"] = True
            cfg["depth"] = 3
            cfg["input_shift"] = 0.0
    # keep every run near a second of CPU: sequence models are the costly ones
    if arch in ("gru", "lstm", "transformer"):
        cap = 64 if cause == "small_text_big_model" else 48 if arch != "transformer" else 32
        cfg["hidden"] = min(cfg["hidden"], cap)
        cfg["target_steps"] = min(cfg["target_steps"], 250 if ds == "chars" or arch == "transformer"
                                  else 350)
        cfg["batch_size"] = min(cfg["batch_size"], 32)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def standard_scale(xtr: np.ndarray) -> np.ndarray:
    """Per-feature divisor: the training std (+1e-6), or 1 for a feature constant in training.

    As sklearn's StandardScaler: a training-constant feature is only centred. Dividing it
    by the 1e-6 floor made a digits pixel that is 0 in every training sample but not in
    val a validation input of ~1e6 (114 of the 2,400 stored runs; bench/README.md). Every
    other feature keeps the ``std + 1e-6`` the stored corpus was trained with.
    """
    sd = xtr.std(0)
    return np.where(sd == 0, 1.0, sd + 1e-6)


def make_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train/val tensors for the run, with the cause's data changes applied."""
    from sklearn import datasets as skd

    ds, seed = cfg["dataset"], cfg["seed"]
    rng = np.random.default_rng(seed)
    if ds == "chars":
        return _char_data(cfg, rng)
    if ds == "digits":
        d = skd.load_digits()
        x, y = d.data.astype(np.float64), d.target
    elif ds == "wine":
        d = skd.load_wine()
        x, y = d.data, d.target
    elif ds == "breast_cancer":
        d = skd.load_breast_cancer()
        x, y = d.data, d.target
    elif ds == "iris":
        d = skd.load_iris()
        x, y = d.data, d.target
    elif ds == "moons":
        x, y = skd.make_moons(n_samples=1000, noise=0.3, random_state=seed % 1000)
    elif ds == "classification":
        x, y = skd.make_classification(
            n_samples=2000, n_features=cfg["n_features"], n_informative=10, n_redundant=4,
            n_classes=cfg["n_classes_gen"], n_clusters_per_class=cfg.get("clusters", 2),
            flip_y=0.02, class_sep=1.2, random_state=seed % 1000)
    elif ds == "regression":
        x, y = skd.make_regression(n_samples=1500, n_features=cfg["n_features"],
                                   n_informative=cfg["n_features"] // 2, noise=10.0,
                                   random_state=seed % 1000)
    else:  # friedman
        x, y = skd.make_friedman1(n_samples=1500, noise=0.5, random_state=seed % 1000)
    idx = rng.permutation(len(x))
    n_val = max(30, len(x) // 4)
    va, tr = idx[:n_val], idx[n_val:]
    if cfg["n_train"]:
        tr = tr[: cfg["n_train"]]
    xtr, xva = x[tr].astype(np.float64), x[va].astype(np.float64)
    if not cfg.get("raw_inputs"):
        mu, sd = xtr.mean(0), standard_scale(xtr)
        xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    xtr = xtr * cfg["input_scale"] + cfg["input_shift"]
    xva = xva * cfg["input_scale"] + cfg["input_shift"]
    ytr, yva = y[tr], y[va]
    out: dict[str, Any] = {}
    if cfg["task"] == "reg":
        m, s = ytr.mean(), ytr.std() + 1e-9
        ytr, yva = (ytr - m) / s, (yva - m) / s
        ytr, yva = ytr * cfg["target_scale"], yva * cfg["target_scale"]
        out["ytr"] = torch.tensor(ytr, dtype=torch.float32).unsqueeze(1)
        out["yva"] = torch.tensor(yva, dtype=torch.float32).unsqueeze(1)
        out["n_out"], out["n_classes"] = 1, None
    else:
        n_classes = int(y.max()) + 1
        ytr = ytr.copy()
        if cfg["label_noise"]:
            flip = rng.random(len(ytr)) < cfg["label_noise"]
            ytr[flip] = rng.integers(0, n_classes, int(flip.sum()))
        out["ytr"] = torch.tensor(ytr, dtype=torch.long)
        out["yva"] = torch.tensor(yva, dtype=torch.long)
        out["n_out"] = out["n_classes"] = n_classes
    if cfg.get("ragged_last"):
        bs = cfg["batch_size"]
        n = (len(xtr) // bs) * bs + cfg["ragged_last"]
        if n > len(xtr):
            n -= bs
        xtr, out["ytr"] = xtr[:n], out["ytr"][:n]
    out["xtr"] = torch.tensor(xtr, dtype=torch.float32)
    out["xva"] = torch.tensor(xva, dtype=torch.float32)
    out["in_dim"] = x.shape[1]
    return out


def stdlib_text() -> str:
    """Source text of a few pure-Python stdlib modules, printable ASCII only."""
    import importlib

    parts = []
    for name in ("textwrap", "string", "fnmatch", "glob", "shlex", "bisect", "heapq"):
        parts.append(Path(importlib.import_module(name).__file__).read_text(encoding="utf-8"))
    text = "\n".join(parts)
    return "".join(c if 32 <= ord(c) < 127 or c == "\n" else "?" for c in text)


def _char_data(cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:

    text = stdlib_text()
    vocab = sorted(set(text))
    ids = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    lut = np.zeros(256, dtype=np.int64)
    lut[[ord(c) for c in vocab]] = np.arange(len(vocab))
    ids = lut[ids]
    start = int(rng.integers(0, len(ids) - cfg["text_chars"] - 8001))
    train = ids[start : start + cfg["text_chars"]]
    val = ids[start + cfg["text_chars"] : start + cfg["text_chars"] + 4000]
    seq = 32

    def windows(a: np.ndarray) -> tuple[Any, Any]:
        n = (len(a) - 1) // seq
        return (torch.from_numpy(a[: n * seq].reshape(n, seq).copy()),
                torch.from_numpy(a[1 : n * seq + 1].reshape(n, seq).copy()))

    xtr, ytr = windows(train)
    xva, yva = windows(val)
    return {"xtr": xtr, "ytr": ytr, "xva": xva, "yva": yva, "n_out": len(vocab),
            "n_classes": len(vocab), "in_dim": seq}


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def make_model(cfg: dict[str, Any], in_dim: int, n_out: int) -> Any:
    """The run's model; cnn/rnn/transformer read tabular rows as images or token chunks."""
    from torch import nn

    arch, h, depth = cfg["arch"], cfg["hidden"], cfg["depth"]
    act: type[nn.Module] = nn.Sigmoid if cfg["activation"] == "sigmoid" else nn.ReLU
    ds = cfg["dataset"]

    def mlp_layers(d_in: int, bn: bool) -> list[nn.Module]:
        layers: list[nn.Module] = []
        d = d_in
        for i in range(depth):
            if cfg["dropout_before_bn"] and cfg["dropout"] > 0 and i > 0:
                layers.append(nn.Dropout(cfg["dropout"]))
            layers.append(nn.Linear(d, h))
            if bn:
                layers.append(nn.BatchNorm1d(h, momentum=cfg["bn_momentum"]))
            layers.append(act())
            if cfg["dropout"] > 0 and not cfg["dropout_before_bn"]:
                layers.append(nn.Dropout(cfg["dropout"]))
            d = h
        layers.append(nn.Linear(d, n_out))
        return layers

    if cfg["task"] == "lm":
        return _lm_model(cfg, n_out, act)
    if arch == "linear":
        return nn.Linear(in_dim, n_out)
    if arch in ("mlp", "mlp_bn"):
        return nn.Sequential(*mlp_layers(in_dim, arch == "mlp_bn"))
    if arch in ("cnn_bn", "cnn_gn"):
        c = max(2, h // 16) if cfg["cause"] != "bottleneck" else cfg["hidden"]
        two_d = ds == "digits"
        conv = nn.Conv2d if two_d else nn.Conv1d

        def norm(ch: int) -> nn.Module:
            if arch == "cnn_bn":
                return (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(ch,
                                                                    momentum=cfg["bn_momentum"])
            return nn.GroupNorm(min(4, ch) if ch % min(4, ch) == 0 else 1, ch)

        pool = nn.AdaptiveAvgPool2d(2) if two_d else nn.AdaptiveAvgPool1d(4)
        body = [conv(1, c, 3, padding=1), norm(c), act()]
        if cfg["dropout_before_bn"] and cfg["dropout"] > 0:
            body.append(nn.Dropout(cfg["dropout"]))
        body += [conv(c, 2 * c, 3, padding=1), norm(2 * c), act(), pool, nn.Flatten()]
        if cfg["dropout"] > 0 and not cfg["dropout_before_bn"]:
            body.append(nn.Dropout(cfg["dropout"]))
        body.append(nn.Linear(2 * c * 4, n_out))
        shape = (1, 8, 8) if two_d else (1, in_dim)
        return nn.Sequential(nn.Unflatten(1, shape), *body)
    # sequence models over chunks of the feature vector (digits: its 8 pixel rows)
    k = 8 if ds == "digits" else max(1, math.ceil(in_dim / 8))
    return ChunkSeq(in_dim, k, arch, h, n_out, cfg["dropout"])


def _lm_model(cfg: dict[str, Any], vocab: int, act: Any) -> Any:
    from torch import nn

    arch, h = cfg["arch"], cfg["hidden"]
    if arch == "linear":
        return nn.Embedding(vocab, vocab)  # a bigram model: logits straight from a table
    if arch == "mlp":
        return nn.Sequential(nn.Embedding(vocab, 32), nn.Linear(32, h), act(),
                             nn.Dropout(cfg["dropout"]), nn.Linear(h, vocab))
    return CharSeq(vocab, arch, h, cfg["dropout"])


def _seq_core(arch: str, h: int, dropout: float) -> Any:
    from torch import nn

    if arch == "gru":
        return nn.GRU(h, h, batch_first=True)
    if arch == "lstm":
        return nn.LSTM(h, h, batch_first=True)
    layer = nn.TransformerEncoderLayer(h, 4 if h % 4 == 0 else 1, 2 * h, dropout,
                                       batch_first=True)
    return nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)


class ChunkSeq(nn.Module):
    """Vector -> tokens of ``k`` features -> GRU/LSTM/transformer -> class logits."""

    def __init__(self, d: int, k: int, arch: str, h: int, n_out: int, dropout: float):
        from torch import nn

        super().__init__()
        self.k, self.len = k, math.ceil(d / k)
        self.pad = self.len * k - d
        self.inp = nn.Linear(k, h)
        self.arch = arch
        self.core = _seq_core(arch, h, dropout)
        self.pos = nn.Parameter(torch.zeros(1, self.len, h)) if arch == "transformer" else None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(h, n_out)

    def forward(self, x: Any) -> Any:
        from torch.nn import functional as F

        x = F.pad(x, (0, self.pad)).reshape(x.shape[0], self.len, self.k)
        z = self.inp(x)
        if self.arch == "transformer":
            z = self.core(z + self.pos).mean(1)
        else:
            z = self.core(z)[0][:, -1]
        return self.out(self.drop(z))


class CharSeq(nn.Module):
    """Character LM: embedding -> GRU/LSTM/causal transformer -> next-character logits."""

    def __init__(self, vocab: int, arch: str, h: int, dropout: float):
        from torch import nn

        super().__init__()
        self.arch = arch
        self.emb = nn.Embedding(vocab, h)
        self.core = _seq_core(arch, h, dropout)
        self.pos = nn.Parameter(torch.zeros(1, 32, h)) if arch == "transformer" else None
        self.out = nn.Linear(h, vocab)

    def forward(self, x: Any) -> Any:

        z = self.emb(x)
        if self.arch == "transformer":
            t = x.shape[1]
            mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
            z = self.core(z + self.pos[:, :t], mask=mask, is_causal=True)
        else:
            z = self.core(z)[0]
        return self.out(z)


def apply_init(model: Any, init: dict[str, Any] | None) -> None:
    """Dead or broken initialisations (the cause), applied after torch's default init."""

    if not init:
        return
    with torch.no_grad():
        if init["kind"] == "zero":
            for p in model.parameters():
                p.zero_()
        elif init["kind"] == "scale":
            for name, p in model.named_parameters():
                if "weight" in name and p.dim() > 1:
                    p.mul_(init["factor"])
        elif init["kind"] == "dead_bias":
            mods = [m for m in model.modules()
                    if isinstance(m, torch.nn.Linear | torch.nn.Conv1d | torch.nn.Conv2d)]
            for m in mods[:-1]:  # every hidden layer; the output layer keeps its bias
                if m.bias is not None:
                    m.bias.fill_(init["bias"])


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def lr_factor(sched: dict[str, Any], t: int, total: int) -> float:
    """Multiplier of the base LR at optimizer step ``t`` (0-based) of ``total``."""
    kind, f = sched["kind"], t / max(1, total)
    if kind == "step":
        return float(sched["gamma"] ** sum(f >= m for m in sched["milestones"]))
    if kind == "cosine":
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * f))
    if kind == "warmup":
        w = sched["warmup"]
        if f < w:
            return (f + 1 / max(1, total)) / w
        if sched.get("then") == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (f - w) / (1 - w)))
        return 1.0
    if kind == "restarts":
        g = (f * sched["cycles"]) % 1.0
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * g))
    if kind == "onecycle":
        p = sched["peak"]
        if f < p:
            return 0.04 + 0.96 * f / p
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * (f - p) / (1 - p)))
    return 1.0


def make_optimizer(cfg: dict[str, Any], params: Any) -> Any:

    opt, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if opt in ("sgd", "sgd_momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)


def _loss_acc(task: str, out: Any, y: Any) -> tuple[Any, float | None]:
    from torch.nn import functional as F

    if task == "reg":
        return F.mse_loss(out, y), None
    if out.dim() == 3:
        out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
    loss = F.cross_entropy(out, y)
    return loss, float((out.argmax(-1) == y).float().mean())


def evaluate(model: Any, task: str, x: Any, y: Any) -> tuple[float, float | None]:
    """Loss and accuracy in eval mode over the whole validation set."""

    model.eval()
    with torch.no_grad():
        loss, acc = _loss_acc(task, model(x), y)
    model.train()
    return float(loss), acc


def train_run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration and return its store record."""

    torch.set_num_threads(1)
    torch.manual_seed(cfg["seed"])
    t_start = time.perf_counter()
    data = make_data(cfg)
    model = make_model(cfg, data["in_dim"], data["n_out"])
    apply_init(model, cfg["init"])
    task = cfg["task"]
    xtr, ytr, xva, yva = data["xtr"], data["ytr"], data["xva"], data["yva"]
    n, bs = len(xtr), cfg["batch_size"]
    spe = math.ceil(n / bs)
    epochs = cfg["epochs"] or max(2, round(cfg["target_steps"] / spe))
    total = epochs * spe
    gen = torch.Generator().manual_seed(cfg["seed"])

    if cfg["pretrain_steps"]:  # the checkpoint a fine-tune starts from, not logged
        pre = make_optimizer({**cfg, "lr": cfg["lr"] * 5}, model.parameters())
        for _t in range(cfg["pretrain_steps"]):
            i = torch.randint(0, n, (bs,), generator=gen)
            pre.zero_grad()
            _loss_acc(task, model(xtr[i]), ytr[i])[0].backward()
            pre.step()

    opt = make_optimizer(cfg, model.parameters())
    spike_step = round(cfg["spike_at"] * total) if cfg.get("spike_at") else None
    event = cfg["lr_event"]
    event_step = round(event["at"] * total) if event else None
    val_every_steps = cfg.get("val_every_steps")
    ser: dict[str, tuple[list[int], list[float]]] = {
        k: ([], []) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr",
                              "grad_norm")}

    def log(name: str, step: int, value: float | None) -> None:
        if value is not None:
            ser[name][0].append(step)
            ser[name][1].append(value)

    def do_val(step: int) -> None:
        vl, va = evaluate(model, task, xva, yva)
        log("val_loss", step, vl)
        log("val_acc", step, va)

    # at most ~60 validation points and at least 4 (sparse, not absent)
    val_every = min(max(cfg["val_every"], math.ceil(epochs / 60)), max(1, epochs // 4))
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        ep_loss, ep_acc, ep_n = 0.0, 0.0, 0
        for b in range(spe):
            idx = perm[b * bs : (b + 1) * bs]
            if len(idx) < 2 and cfg["arch"] in ("mlp_bn", "cnn_bn"):
                continue  # BatchNorm cannot train on one sample
            xb, yb = xtr[idx], ytr[idx]
            if spike_step is not None and step == spike_step:
                xb = xb * cfg["spike_scale"]
            lr = cfg["lr"] * lr_factor(cfg["schedule"], step, total)
            if event_step is not None and step >= event_step:
                lr *= event["factor"]
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad()
            loss, acc = _loss_acc(task, model(xb), yb)
            loss.backward()
            gnorm = None
            logging_now = cfg["train_log"] == "epoch" or (step + 1) % cfg["log_every"] == 0
            if cfg["grad_norm"] and logging_now:
                norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
                gnorm = float(torch.stack(norms).norm()) if norms else 0.0
            opt.step()
            step += 1
            lv = loss.item()
            ep_loss += lv * len(idx)
            ep_acc += (acc or 0.0) * len(idx)
            ep_n += len(idx)
            if cfg["train_log"] == "step" and step % cfg["log_every"] == 0:
                log("train_loss", step, lv)
                log("train_acc", step, acc)
                log("lr", step, lr)
                log("grad_norm", step, gnorm)
            if val_every_steps and step % val_every_steps == 0:
                do_val(step)
        if cfg["train_log"] == "epoch" and ep_n:
            log("train_loss", step, ep_loss / ep_n)
            log("train_acc", step, ep_acc / ep_n if task != "reg" else None)
            log("lr", step, lr)
            log("grad_norm", step, gnorm)
        if not val_every_steps and ((epoch + 1) % val_every == 0 or epoch == epochs - 1):
            do_val(step)
    cfg = {**cfg, "epochs": epochs, "steps_per_epoch": spe, "val_every": val_every,
           "total_steps": step, "n_train_actual": n, "n_classes": data["n_classes"],
           "train_seconds": round(time.perf_counter() - t_start, 2)}
    series = {k: [s, [store.encode_value(v) for v in vals]]
              for k, (s, vals) in ser.items() if s}
    return {"id": f"r{cfg['index']:05d}", "family": cfg["family"], "arch": cfg["arch"],
            "dataset": cfg["dataset"], "cause": cfg["cause"], "severity": cfg["severity"],
            "intended": cfg["intended"], "config": cfg, "series": series}


def _job(args: tuple[int, int]) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    return train_run(draw_config(*args))


def campaign(n: int, seed: int, workers: int, path: Path, flush_every: int = 10,
             progress: Callable[[str], None] = print) -> int:
    """Train runs 0..n-1 not yet in the store; returns how many were added."""
    done = {r["id"] for r in store.iter_records(path)}
    todo = [(i, seed) for i in range(n) if f"r{i:05d}" not in done]
    progress(f"{len(done)} runs stored, {len(todo)} to train with {workers} worker(s)")
    buf: list[dict[str, Any]] = []
    t0, added = time.perf_counter(), 0
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_job, todo, chunksize=4)
            for rec in results:
                buf.append(rec)
                added += 1
                if len(buf) >= flush_every:
                    store.append(buf, path)
                    buf = []
                    progress(f"  {added}/{len(todo)} ({time.perf_counter() - t0:.0f} s)")
    else:
        for job in todo:
            buf.append(_job(job))
            added += 1
            if len(buf) >= flush_every:
                store.append(buf, path)
                buf = []
                progress(f"  {added}/{len(todo)} ({time.perf_counter() - t0:.0f} s)")
    store.append(buf, path)
    progress(f"done: {added} runs added in {time.perf_counter() - t0:.0f} s")
    return added


def retrain(ids: list[str], seed: int, path: Path, flush_every: int = 10,
            progress: Callable[[str], None] = print) -> int:
    """Train these stored runs again from their drawn configs and replace their records.

    For a generator fix that changes some runs' data (the ids come from a finder such as
    bench/fixrate/constant_features.py): run ``i`` is drawn again from
    ``default_rng([seed, i])``, and a config that no longer matches the stored one stops
    the retrain, so a record is only replaced by the same recipe with the fixed code.
    Records are replaced every ``flush_every`` runs, so an interrupted retrain keeps its work.
    """
    stored = {r["id"]: r["config"] for r in store.iter_records(path) if r["id"] in set(ids)}
    missing = sorted(set(ids) - stored.keys())
    if missing:
        raise SystemExit(f"not in {path}: {', '.join(missing)}")
    post = {"epochs", "steps_per_epoch", "val_every", "total_steps", "n_train_actual",
            "n_classes", "train_seconds"}
    configs = []
    for rid in ids:
        cfg = draw_config(int(rid.lstrip("r")), seed)
        old = stored[rid]
        changed = sorted(k for k in cfg.keys() | old.keys()
                         if k not in post and cfg.get(k) != old.get(k))
        if changed:
            raise SystemExit(f"{rid}: the drawn config differs from the stored one in "
                             f"{', '.join(changed)} (another --seed, or the generator changed)")
        configs.append(cfg)
    t0, buf, done = time.perf_counter(), [], 0
    for cfg in configs:
        buf.append(_job((cfg["index"], seed)))
        if len(buf) >= flush_every or len(buf) + done == len(configs):
            done += store.replace(buf, path)
            buf = []
            progress(f"  {done}/{len(configs)} re-trained ({time.perf_counter() - t0:.0f} s)")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500, help="runs 0..N-1 (default 1500)")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--show", type=int, nargs="*", help="print the configs of these indices")
    ap.add_argument("--retrain", type=Path, metavar="IDS",
                    help="re-train the stored runs listed in this file (one id a line) and "
                         "replace their records in place")
    args = ap.parse_args(argv)
    if args.show is not None:
        import json

        for i in args.show:
            print(json.dumps(draw_config(i, args.seed), sort_keys=True))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.retrain:
        ids = args.retrain.read_text(encoding="utf-8").split()
        retrain(ids, args.seed, args.store)
        return 0
    campaign(args.n, args.seed, args.workers, args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
