"""Hyperparameter names: every writer's spelling -> the canonical names of the contract.

Canonical names (DESIGN.md): learning_rate, batch_size, weight_decay, dropout, momentum,
optimizer, warmup_steps, grad_clip, epochs, max_steps, lr_schedule, normalization.
Beyond the contract's list: ``lr_step_factor``, what a step of the LR schedule multiplies
the LR by (PyTorch StepLR/MultiStepLR's ``gamma``, detectron2's ``SOLVER.GAMMA``): the knob
the advice proposes after a mid-run LR jump.  A bare ``gamma`` is not mapped (an RL
discount or a focal-loss gamma is no LR factor); a scheduler-scoped one is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

CANONICAL = (
    "learning_rate",
    "batch_size",
    "weight_decay",
    "dropout",
    "momentum",
    "optimizer",
    "warmup_steps",
    "grad_clip",
    "epochs",
    "max_steps",
    "lr_schedule",
    "normalization",
)

#: alias (lower-case, '-' and '.' read as '_') -> canonical name.
ALIASES: dict[str, str] = {
    # learning rate
    "lr": "learning_rate",
    "learning_rate": "learning_rate",
    "learningrate": "learning_rate",
    "base_lr": "learning_rate",
    "lr0": "learning_rate",  # Ultralytics
    "init_lr": "learning_rate",
    "initial_lr": "learning_rate",
    "max_lr": "learning_rate",
    "optimizer_lr": "learning_rate",
    "solver_base_lr": "learning_rate",  # detectron2 SOLVER.BASE_LR
    # batch size
    "bs": "batch_size",
    "batch": "batch_size",  # Ultralytics
    "batch_size": "batch_size",
    "batchsize": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "ims_per_batch": "batch_size",
    "solver_ims_per_batch": "batch_size",
    "mini_batch_size": "batch_size",
    # weight decay
    "wd": "weight_decay",
    "weight_decay": "weight_decay",
    "weightdecay": "weight_decay",
    "l2": "weight_decay",
    "l2_reg": "weight_decay",
    "solver_weight_decay": "weight_decay",
    # dropout
    "dropout": "dropout",
    "dropout_rate": "dropout",
    "drop_rate": "dropout",
    "dropout_prob": "dropout",
    "hidden_dropout_prob": "dropout",
    "p_dropout": "dropout",
    # momentum
    "momentum": "momentum",
    "beta1": "momentum",
    "adam_beta1": "momentum",
    "solver_momentum": "momentum",
    # optimizer
    "optimizer": "optimizer",
    "optim": "optimizer",
    "opt": "optimizer",
    "optimizer_name": "optimizer",
    # warmup
    "warmup_steps": "warmup_steps",
    "warmup": "warmup_steps",
    "warmup_iters": "warmup_steps",
    "solver_warmup_iters": "warmup_steps",
    "num_warmup_steps": "warmup_steps",
    # clipping
    "grad_clip": "grad_clip",
    "gradient_clip_val": "grad_clip",
    "clip_grad_norm": "grad_clip",
    "max_grad_norm": "grad_clip",
    "clip_norm": "grad_clip",
    "clipnorm": "grad_clip",
    "grad_clip_norm": "grad_clip",
    # length
    "epochs": "epochs",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "max_epochs": "epochs",
    "n_epochs": "epochs",
    "max_steps": "max_steps",
    "max_iter": "max_steps",
    "solver_max_iter": "max_steps",
    "num_steps": "max_steps",
    "total_steps": "max_steps",
    "train_steps": "max_steps",
    # schedule / normalization
    "lr_schedule": "lr_schedule",
    "lr_scheduler": "lr_schedule",
    "lr_scheduler_type": "lr_schedule",
    "scheduler": "lr_schedule",
    "schedule": "lr_schedule",
    # what a schedule step multiplies the LR by (StepLR/MultiStepLR gamma)
    "lr_step_factor": "lr_step_factor",
    "lr_gamma": "lr_step_factor",
    "lr_step_gamma": "lr_step_factor",
    "step_gamma": "lr_step_factor",
    "scheduler_gamma": "lr_step_factor",  # scheduler.gamma
    "lr_scheduler_gamma": "lr_step_factor",  # lr_scheduler.gamma
    "solver_gamma": "lr_step_factor",  # detectron2 SOLVER.GAMMA
    "normalization": "normalization",
    "norm": "normalization",
    "norm_layer": "normalization",
    "batch_norm": "normalization",
    "batchnorm": "normalization",
    "use_bn": "normalization",
    "use_batch_norm": "normalization",
    "use_batchnorm": "normalization",
    "bn": "normalization",
}

_SEP = re.compile(r"[-.\s/]+")


_AMBIGUOUS_TAILS = ("batch", "opt", "norm", "warmup", "bn", "l2")


def canonical_name(key: str) -> str | None:
    """Canonical name for one hyperparameter key, or None when it has none.

    Nested keys (``optimizer.lr``, ``hyp/lr0``, ``optimizer__lr``) map by their last
    part; an underscore alone never splits a key (``cos_lr`` is not a learning rate).
    """
    text = re.sub(r"[-\s]+", "_", str(key).strip().lower())
    flat = re.sub(r"[./]+", "_", text).strip("_")
    if flat in ALIASES:
        return ALIASES[flat]
    parts = [p for p in re.split(r"[./]|__", text) if p]
    if len(parts) > 1:
        tail = parts[-1].strip("_")
        if tail in ALIASES and tail not in _AMBIGUOUS_TAILS:
            return ALIASES[tail]
    return None


def coerce(value: Any) -> float | int | str | bool | None:
    """Plain scalar from a log value; numbers in strings become numbers; None stays None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        try:
            number = float(text)
        except ValueError:
            return text
        if number.is_integer() and re.fullmatch(r"[+-]?\d+", text):
            return int(number)
        return number
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


#: normalization values that name batch norm: "batchnorm", "BatchNorm2d", "bn", "sync_bn"
_BATCH_NORM = re.compile(r"batch|(?<![a-z])(?:sync|frozen)?_?bn(?![a-z])", re.I)
#: values that name another normalization (or none): "GroupNorm", "layernorm", "gn"
_OTHER_NORM = re.compile(r"group|layer|instance|rms|weight|identity|"
                         r"(?<![a-z])(?:gn|ln|in)(?![a-z])", re.I)
#: on/off spellings of a normalization switch (``use_bn: true``, ``batch_norm: 0``)
_ON = ("true", "yes", "on", "1")
_OFF = ("false", "no", "off", "0", "none")


def uses_batch_norm(hparams: Mapping[str, Any]) -> bool | None:
    """Whether the logged configuration says the model has batch norm; None when it does
    not say.  ``normalization`` holds a layer name (``batchnorm``, ``groupnorm``,
    ``layernorm``, ``none``) or an on/off switch its aliases (``use_bn``, ``batch_norm``)
    carry.  Anything else (``norm: 2.0``, ``norm: l2``: a key named like it that holds a
    clipping norm or a p-norm) says nothing."""
    norm = hparams.get("normalization")
    if isinstance(norm, bool):
        return norm
    if isinstance(norm, (int, float)):
        return bool(norm) if norm in (0, 1) else None
    if not isinstance(norm, str):
        return None
    text = norm.strip().lower()
    if text in _ON or _BATCH_NORM.search(text):
        return True
    if text in _OFF or _OTHER_NORM.search(text):
        return False
    return None


def finite_number(value: Any) -> float | None:
    """A finite float from a hyperparameter or evidence value (``"0.1"`` too), else None;
    booleans are not numbers here."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested config dicts with '.'-joined keys (``optimizer.lr``).

    Iterative, in the mapping's order: a config nested thousands of levels deep (a
    hostile log) must not raise RecursionError.
    """
    out: dict[str, Any] = {}
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [(prefix, iter(mapping.items()))]
    while stack:
        base, items = stack[-1]
        for key, value in items:
            name = f"{base}.{key}" if base else str(key)
            if isinstance(value, Mapping):
                stack.append((name, iter(value.items())))
                break
            out[name] = value
        else:
            stack.pop()
    return out


def canonicalize(raw: Mapping[str, Any]) -> dict[str, float | int | str | bool]:
    """Raw (possibly nested) hparams -> canonical names plus the unmapped keys as written.

    The first key that maps to a canonical name wins, except that an exact canonical key
    (``learning_rate``) beats an alias (``lr``).  Values are coerced to plain scalars;
    None values are dropped.
    """
    flat = flatten(raw)
    out: dict[str, float | int | str | bool] = {}
    exact: set[str] = set()
    for key, value in flat.items():
        val = coerce(value)
        if val is None:
            continue
        name = canonical_name(key)
        if name is None:
            out.setdefault(str(key), val)
            continue
        is_exact = _SEP.sub("_", str(key).lower()) == name
        if name not in out or (is_exact and name not in exact):
            out[name] = val
            if is_exact:
                exact.add(name)
    # Sorted keys: the output (JSON, report.md) must not depend on the order a writer
    # (a protobuf map) happened to store them in.
    return dict(sorted(out.items()))
