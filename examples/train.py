"""A small, real torch training script that `diagnose probe` can drive.

It trains an MLP classifier on a synthetic two-spirals-plus-noise task (no download) and
logs with torch's SummaryWriter the way most users do: ``loss/train``, ``loss/val``,
``accuracy/val``, ``lr`` and ``grad_norm``, plus a ``config.json`` beside the event file
with its hyperparameters (so diagnose knows the current values).

Try it (about a minute on a laptop CPU)::

    python examples/train.py --lr 2.0 --max-steps 600 --logdir runs/too_high
    diagnose runs/too_high
    diagnose probe runs/too_high \
        --cmd 'python examples/train.py --lr {learning_rate} --max-steps {max_steps} \
               --seed {seed} --logdir {logdir}'

Flags mirror the canonical hyperparameter names diagnose uses in command templates.
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


def build_model(dropout: float, normalization: str) -> nn.Module:
    """A 3-layer MLP; normalization 'batchnorm' | 'layernorm' | 'none'."""

    def norm(width: int) -> nn.Module:
        if normalization == "batchnorm":
            return nn.BatchNorm1d(width)
        if normalization == "layernorm":
            return nn.LayerNorm(width)
        return nn.Identity()

    return nn.Sequential(
        nn.Linear(16, 128), norm(128), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(128, 128), norm(128), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(128, 3),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--max-steps", type=int, default=1500)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--grad-clip", type=float, default=0.0, help="0 disables clipping")
    p.add_argument("--normalization", choices=("none", "batchnorm", "layernorm"), default="none")
    p.add_argument("--train-size", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--logdir", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"train.py: --batch-size must be >= 1, got {args.batch_size}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = torch.device(args.device)
    x, y = make_data(args.train_size + 600, seed=1234)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(99))
    x, y = x[perm].to(device), y[perm].to(device)
    x_train, y_train = x[: args.train_size], y[: args.train_size]
    x_val, y_val = x[args.train_size :], y[args.train_size :]

    model = build_model(args.dropout, args.normalization).to(device)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate,
                               weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.learning_rate,
                              momentum=args.momentum, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()

    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("logdir", "device")}
    (logdir / "config.json").write_text(json.dumps(config, indent=2))
    writer = SummaryWriter(str(logdir))
    g = torch.Generator().manual_seed(args.seed)
    step = 0
    while step < args.max_steps:
        order = torch.randperm(len(x_train), generator=g)
        for start in range(0, len(order), args.batch_size):
            if step >= args.max_steps:
                break
            idx = order[start : start + args.batch_size].to(device)
            lr = args.learning_rate
            if args.warmup_steps and step < args.warmup_steps:
                lr = args.learning_rate * (step + 1) / args.warmup_steps
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            max_norm = args.grad_clip if args.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            opt.step()
            step += 1
            if step % 5 == 0:
                writer.add_scalar("loss/train", loss.item(), step)
                writer.add_scalar("grad_norm", float(grad_norm), step)
                writer.add_scalar("lr", lr, step)
            if step % args.eval_every == 0 or step == args.max_steps:
                model.eval()
                with torch.no_grad():
                    logits = model(x_val)
                    val_loss = loss_fn(logits, y_val).item()
                    acc = (logits.argmax(1) == y_val).float().mean().item()
                writer.add_scalar("loss/val", val_loss, step)
                writer.add_scalar("accuracy/val", acc, step)
    writer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
