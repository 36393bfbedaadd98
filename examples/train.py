"""A small, real torch training script that `diagnose probe` can drive.

It trains an MLP on a synthetic three-spirals-plus-noise task (no download) and logs with
torch's SummaryWriter the way most users do: ``loss/train``, ``loss/val``, ``accuracy/val``
(classification), ``lr`` and ``grad_norm``, plus a ``config.json`` beside the event file
with its hyperparameters (so diagnose knows the current values).

Try it (about a minute on a laptop CPU)::

    python examples/train.py --lr 2.0 --max-steps 600 --logdir runs/too_high
    diagnose runs/too_high
    diagnose probe runs/too_high \
        --cmd 'python examples/train.py --lr {learning_rate} --max-steps {max_steps} \
               --seed {seed} --logdir {logdir}'

Every flag's destination is the canonical hyperparameter name diagnose uses in command
templates and recommendations (``--model-capacity`` is ``{model_capacity}``, a width
multiplier), so every recommendation the rules make can be written as a flag here:
:func:`template` writes the whole ``--cmd`` (flag ``--x-y`` for ``{x_y}``).  Switches
take a value (``--drop-last true``) because the probe fills them from a template.  The
defaults train the healthy baseline; the pathologies of the fix-rate benchmark come from flags only
(``--lr 8``, ``--lr-jump-step``, ``--bn-momentum 0``, ``--init dead``, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

#: Base width of the hidden layers; ``--model-capacity`` multiplies it.
BASE_WIDTH = 128

#: Flags that are not hyperparameters: the probe fills {seed}, {logdir} and {device} itself.
_NOT_HYPER = ("logdir", "seed", "device")


def hyperparameter_names() -> list[str]:
    """Every flag's destination except seed, logdir and device (the template's keys)."""
    return [k for k in vars(parse_args(["--logdir", "-"])) if k not in _NOT_HYPER]


def template(python: str, script: str, keys: list[str] | None = None) -> str:
    """A ``diagnose probe --cmd`` template passing ``keys`` (default: every hyperparameter).

    Pass the keys of a run's ``config.json`` to reproduce that run exactly: a template
    placeholder needs a known value for the control.
    """
    words = [python, script]
    for key in keys if keys is not None else hyperparameter_names():
        if key not in _NOT_HYPER:
            words += ["--" + key.replace("_", "-"), "{" + key + "}"]
    return " ".join([*words, "--seed", "{seed}", "--logdir", "{logdir}", "--device", "{device}"])


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three interleaved noisy spirals in 2-D, lifted to 16 features with fixed noise."""
    g = torch.Generator().manual_seed(seed)
    classes = 3
    per = n // classes
    xs, ys = [], []
    for c in range(classes):
        t = torch.linspace(0.2, 1.0, per)
        angle = t * 4.0 + c * 2 * math.pi / classes + 0.25 * torch.randn(per, generator=g)
        xs.append(torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1))
        ys.append(torch.full((per,), c, dtype=torch.long))
    x2 = torch.cat(xs)
    lift = torch.randn(2, 14, generator=torch.Generator().manual_seed(0))
    x = torch.cat([x2, torch.tanh(x2 @ lift) + 0.1 * torch.randn(len(x2), 14, generator=g)], 1)
    return x, torch.cat(ys)


def regression_targets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth function of the inputs (radius and class) for ``--task regression``."""
    return (x[:, :2].norm(dim=1) * 3.0 + y.float() + torch.sin(4.0 * x[:, 0])).unsqueeze(1)


class Block(nn.Module):
    """Linear -> norm -> activation -> dropout (dropout before or after the norm)."""

    def __init__(self, width_in: int, width: int, args: argparse.Namespace):
        super().__init__()
        self.linear = nn.Linear(width_in, width)
        self.norm = _norm(args.normalization, width, args.bn_momentum)
        self.act = _activation(args.activation)
        self.drop = nn.Dropout(args.dropout)
        self.before_norm = args.dropout_placement == "before_batchnorm"
        self.residual = args.residual_connections and width_in == width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.before_norm:
            h = self.norm(self.drop(h))
            h = self.act(h)
        else:
            h = self.drop(self.act(self.norm(h)))
        return x + h if self.residual else h


def _norm(kind: str, width: int, bn_momentum: float) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm1d(width, momentum=bn_momentum)
    if kind == "layernorm":
        return nn.LayerNorm(width)
    if kind == "groupnorm":
        return nn.GroupNorm(math.gcd(8, width), width)
    return nn.Identity()


def _activation(kind: str) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
            "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]()


def build_model(dropout: float = 0.0, normalization: str = "none",
                args: argparse.Namespace | None = None, outputs: int = 3) -> nn.Module:
    """A 3-layer MLP; ``args`` (this script's flags) sets width, norm, activation, init."""
    if args is None:
        args = parse_args(["--logdir", "-", "--dropout", str(dropout),
                           "--normalization", normalization])
    width = max(1, round(BASE_WIDTH * args.model_capacity))
    model = nn.Sequential(Block(16, width, args), Block(width, width, args),
                          nn.Linear(width, outputs))
    _init(model, args.init)
    return model


def _init(model: nn.Module, kind: str) -> None:
    """'default' keeps torch's init; 'dead' (biases -3) and 'zeros' are the broken ones."""
    if kind == "default":
        return
    for mod in model.modules():
        if not isinstance(mod, nn.Linear):
            continue
        if kind == "he_normal":
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            nn.init.zeros_(mod.bias)
        elif kind == "xavier_uniform":
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
        elif kind == "zeros":
            nn.init.zeros_(mod.weight)
            nn.init.zeros_(mod.bias)
        elif kind == "dead":
            nn.init.constant_(mod.bias, -3.0)


def _flag(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", "none", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def _schedule(text: str) -> str:
    """First word of a schedule name ('cosine over 1500 steps' -> 'cosine')."""
    word = str(text).strip().lower().split()[0] if str(text).strip() else "constant"
    aliases = {"none": "constant", "cos": "cosine", "cosine_annealing": "cosine",
               "multistep": "step", "cyclical": "cyclic", "clr": "cyclic"}
    word = aliases.get(word, word)
    if word not in ("constant", "cosine", "step", "linear", "cyclic"):
        raise argparse.ArgumentTypeError(f"unknown schedule '{text}'")
    return word


def _init_name(text: str) -> str:
    low = str(text).strip().lower()
    aliases = {"he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
               "xavier": "xavier_uniform", "glorot": "xavier_uniform",
               "glorot_uniform": "xavier_uniform"}
    low = aliases.get(low, low)
    if low not in ("default", "he_normal", "xavier_uniform", "zeros", "dead"):
        raise argparse.ArgumentTypeError(f"unknown init '{text}'")
    return low


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--dropout-placement", choices=("after_batchnorm", "before_batchnorm"),
                   default="after_batchnorm")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"), default="sgd")
    p.add_argument("--max-steps", type=int, default=1500)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--lr-schedule", type=_schedule, default="constant",
                   help="constant | cosine | step | linear | cyclic")
    p.add_argument("--lr-jump-step", type=int, default=0,
                   help="multiply the LR by --lr-step-factor from this step on (0: never)")
    p.add_argument("--lr-step-factor", "--lr-jump-factor", dest="lr_step_factor", type=float,
                   default=1.0, help="the LR's factor from --lr-jump-step on (a schedule "
                   "step's gamma; 1: no jump)")
    p.add_argument("--grad-clip", type=float, default=0.0, help="0 disables clipping")
    p.add_argument("--normalization", choices=("none", "batchnorm", "layernorm", "groupnorm"),
                   default="none")
    p.add_argument("--bn-momentum", type=float, default=0.1, help="torch's BatchNorm momentum")
    p.add_argument("--precise-bn", type=_flag, default=False,
                   help="recompute BN running statistics over training batches before eval")
    p.add_argument("--drop-last", type=_flag, default=False)
    p.add_argument("--shuffle", type=_flag, default=True)
    p.add_argument("--model-capacity", type=float, default=1.0,
                   help=f"width multiplier of the {BASE_WIDTH}-unit hidden layers")
    p.add_argument("--activation", choices=("relu", "leaky_relu", "elu", "gelu", "tanh",
                                            "sigmoid"), default="relu")
    p.add_argument("--init", type=_init_name, default="default",
                   help="default | he_normal | xavier_uniform | zeros | dead (biases -3)")
    p.add_argument("--residual-connections", type=_flag, default=False)
    p.add_argument("--data-augmentation", type=_flag, default=False,
                   help="Gaussian input noise (0.1) on every training batch")
    p.add_argument("--task", choices=("classification", "regression"),
                   default="classification")
    p.add_argument("--target-scale", type=float, default=1.0,
                   help="regression targets are multiplied by this (1000: unscaled targets)")
    p.add_argument("--standardize-targets", type=_flag, default=False,
                   help="regression: train on standardised targets (loss logged unscaled)")
    p.add_argument("--train-size", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--logdir", required=True)
    return p.parse_args(argv)


def _lr_at(args: argparse.Namespace, step: int) -> float:
    """Base LR x warmup ramp x schedule x the injected jump, at optimizer step ``step``."""
    lr = args.learning_rate
    if args.warmup_steps and step < args.warmup_steps:
        return lr * (step + 1) / args.warmup_steps
    total = max(1, args.max_steps - args.warmup_steps)
    t = (step - args.warmup_steps) / total
    if args.lr_schedule == "cosine":
        lr *= 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
    elif args.lr_schedule == "linear":
        lr *= max(0.01, 1 - t)
    elif args.lr_schedule == "step":
        lr *= 0.1 ** int(t * 3)
    elif args.lr_schedule == "cyclic":
        lr *= 0.1 + 0.9 * abs(((t * 4) % 2) - 1)
    if args.lr_jump_step and step >= args.lr_jump_step:
        lr *= args.lr_step_factor
    return lr


def _optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), args.learning_rate, args.weight_decay
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if args.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=args.momentum, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=args.momentum, weight_decay=wd)


def _batches(n: int, args: argparse.Namespace, g: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=g) if args.shuffle else torch.arange(n)
    out = [order[s : s + args.batch_size] for s in range(0, n, args.batch_size)]
    if args.drop_last and len(out) > 1 and len(out[-1]) < args.batch_size:
        out.pop()
    return out


def _precise_bn(model: nn.Module, x: torch.Tensor, args: argparse.Namespace,
                g: torch.Generator) -> None:
    """Recompute BN running statistics as a plain average over up to 50 training batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for idx in _batches(len(x), args, g)[:50]:
            if len(idx) > 1:
                model(x[idx.to(x.device)])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"train.py: --batch-size must be >= 1, got {args.batch_size}")
    if args.model_capacity <= 0:
        raise SystemExit(f"train.py: --model-capacity must be > 0, got {args.model_capacity}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = torch.device(args.device)
    regression = args.task == "regression"
    x, y = make_data(args.train_size + 600, seed=1234)
    if regression:
        y = regression_targets(x, y) * args.target_scale
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(99))
    x, y = x[perm].to(device), y[perm].to(device)
    x_train, y_train = x[: args.train_size], y[: args.train_size]
    x_val, y_val = x[args.train_size :], y[args.train_size :]
    mean, std = (y_train.mean(), y_train.std()) if regression and args.standardize_targets \
        else (0.0, 1.0)

    model = build_model(args=args, outputs=1 if regression else 3).to(device)
    opt = _optimizer(model, args)
    loss_fn: nn.Module = nn.MSELoss() if regression else nn.CrossEntropyLoss()

    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("logdir", "device")}
    if not regression:
        for key in ("task", "target_scale", "standardize_targets"):
            config.pop(key)
    (logdir / "config.json").write_text(json.dumps(config, indent=2))
    writer = SummaryWriter(str(logdir))
    g = torch.Generator().manual_seed(args.seed)
    noise = torch.Generator(device=device).manual_seed(args.seed + 1)
    step = 0
    while step < args.max_steps:
        for idx in _batches(len(x_train), args, g):
            if step >= args.max_steps:
                break
            idx = idx.to(device)
            lr = _lr_at(args, step)
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            xb = x_train[idx]
            if args.data_augmentation:
                xb = xb + 0.1 * torch.randn(xb.shape, generator=noise, device=device)
            out = model(xb)
            loss = loss_fn(out, (y_train[idx] - mean) / std if regression else y_train[idx])
            opt.zero_grad()
            loss.backward()
            max_norm = args.grad_clip if args.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            opt.step()
            step += 1
            if step % 5 == 0:
                shown = loss.item() * (float(std) ** 2 if regression else 1.0)
                writer.add_scalar("loss/train", shown, step)
                writer.add_scalar("grad_norm", float(grad_norm), step)
                writer.add_scalar("lr", lr, step)
            if step % args.eval_every == 0 or step == args.max_steps:
                if args.precise_bn:
                    _precise_bn(model, x_train, args, torch.Generator().manual_seed(step))
                model.eval()
                with torch.no_grad():
                    out = model(x_val)
                    if regression:
                        val_loss = loss_fn(out * std + mean, y_val).item()
                    else:
                        val_loss = loss_fn(out, y_val).item()
                        acc = (out.argmax(1) == y_val).float().mean().item()
                writer.add_scalar("loss/val", val_loss, step)
                if not regression:
                    writer.add_scalar("accuracy/val", acc, step)
    writer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
