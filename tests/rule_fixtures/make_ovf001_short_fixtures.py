"""Remake OVF001's short-run fixtures from real tiny trainings (torch on the CPU).

A 64-256-10 MLP learns scikit-learn's bundled ``digits`` from 60 training images with
Adam at lr 0.02 (batch 16, 10 epochs), evaluated every epoch on 400 held-out images; the
log is written by torch's own ``SummaryWriter`` (train loss as the epoch mean, val loss
and val accuracy).  With so few training images the model memorises them within a few
epochs and the val loss turns upward: overfit on 10 evaluations, too few to smooth.

- ``fire_short_run_flat_step`` (seed 84): val falls to 0.857 at epoch 4, then rises at
  every evaluation but one, where it stays flat (1.274 -> 1.271, far inside its noise).
- ``quiet_short_run_falls_beyond_noise`` (seed 105): val reaches 0.691 at epoch 5, then
  0.915, 0.752 (a fall larger than its noise), 0.794, 0.898: jagged, not a steady rise.

Run: ``python tests/rule_fixtures/make_ovf001_short_fixtures.py`` (from the repo root;
needs torch, tensorboard and scikit-learn from the ``dev`` extra).  The event file names
carry the wall time; the values are the same on every run of this torch version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.tensorboard import SummaryWriter

HERE = Path(__file__).resolve().parent / "OVF001"
CASES = {"fire_short_run_flat_step": 84, "quiet_short_run_falls_beyond_noise": 105}


def train(seed: int, out: Path) -> None:
    """One tiny training, logged per epoch into ``out``."""
    x_all, y_all = load_digits(return_X_y=True)
    x_all = (x_all / 16.0).astype(np.float32)
    idx = np.random.default_rng(seed).permutation(len(x_all))
    tr, va = idx[:60], idx[60:460]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.tensor(x_all[tr]), torch.tensor(y_all[tr])
    xv, yv = torch.tensor(x_all[va]), torch.tensor(y_all[va])
    writer = SummaryWriter(str(out))
    for epoch in range(10):
        perm = torch.randperm(len(tr))
        losses = []
        for i in range(0, len(tr), 16):
            batch = perm[i:i + 16]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            logits = model(xv)
            val_loss = nn.functional.cross_entropy(logits, yv).item()
            val_acc = (logits.argmax(1) == yv).float().mean().item()
        writer.add_scalar("train/loss", float(np.mean(losses)), epoch)
        writer.add_scalar("val/loss", val_loss, epoch)
        writer.add_scalar("val/accuracy", val_acc, epoch)
    writer.close()


def main() -> None:
    for case, seed in CASES.items():
        out = HERE / case
        for old in out.glob("events.out.tfevents.*"):
            old.unlink()
        tmp = out / "_tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        train(seed, tmp)
        for f in tmp.iterdir():
            f.rename(out / f.name)
        tmp.rmdir()


if __name__ == "__main__":
    main()
