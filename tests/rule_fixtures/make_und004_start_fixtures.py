"""Remake UND004's cases for logs that do not start at the untrained model (real short
trainings, torch on the CPU, deterministic).

- ``quiet_first_loss_below_ln2_unconfident``: a 2-class MLP (``make_classification``)
  trained one epoch unlogged, then ten logged epochs with label smoothing 0.1, written
  the way a hand-written loop or a Keras history without an epoch column writes them
  (accuracy, loss, val_accuracy, val_loss per epoch): the first logged loss is already
  below ln 2, the val accuracy ends near 0.97 and the smoothed targets hold the val loss
  about 2x above the calibrated loss at that accuracy.
- ``quiet_two_evals_val_settled``: a regression MLP (``make_friedman1``, noise 1, dropout
  0.3) pretrained 30 epochs unlogged, then fine-tuned 3 epochs on new data: the train
  loss every 5 steps, the val loss after epochs 1 and 2 only (a loss-only log, two
  evaluations): the val loss sits at the noise floor (falls ~3%), the train loss keeps
  falling after the first evaluation.

Run: ``python tests/rule_fixtures/make_und004_start_fixtures.py`` (from the repo root;
needs torch and scikit-learn from the ``dev`` extra).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification, make_friedman1
from torch import nn

HERE = Path(__file__).parent / "UND004"


def _unconfident_finetune(folder: Path) -> None:
    torch.manual_seed(0)
    x, y = make_classification(n_samples=3000, n_features=20, n_informative=8,
                               class_sep=1.5, flip_y=0.02, random_state=1)
    xs, ys = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    xp, yp, xt, yt = xs[:1000], ys[:1000], xs[1000:2400], ys[1000:2400]
    xv, yv = xs[2400:], ys[2400:]
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def epoch(xe: torch.Tensor, ye: torch.Tensor, lossf: nn.Module) -> tuple[float, float]:
        model.train()
        perm, losses, accs = torch.randperm(len(xe)), [], []
        for i in range(0, len(xe), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            out = model(xe[idx])
            loss = lossf(out, ye[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
            accs.append((out.argmax(1) == ye[idx]).float().mean().item())
        return float(np.mean(accs)), float(np.mean(losses))

    epoch(xp, yp, nn.CrossEntropyLoss())  # the pretraining the log does not show
    smoothed = nn.CrossEntropyLoss(label_smoothing=0.1)
    rows = []
    for _ in range(10):
        acc, loss = epoch(xt, yt, smoothed)
        model.eval()
        with torch.no_grad():
            out = model(xv)
            rows.append((acc, loss, (out.argmax(1) == yv).float().mean().item(),
                         smoothed(out, yv).item()))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "training_history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["accuracy", "loss", "val_accuracy", "val_loss"])
        w.writerows([[f"{v:.6g}" for v in r] for r in rows])


def _two_evals_finetune(folder: Path) -> None:
    torch.manual_seed(0)
    x, y = make_friedman1(n_samples=1400, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    xs = torch.tensor(x, dtype=torch.float32)
    ys = torch.tensor(y, dtype=torch.float32)[:, None]
    xp, yp, xt, yt, xv, yv = xs[:600], ys[:600], xs[600:900], ys[600:900], xs[900:], ys[900:]
    model = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256),
                          nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mse = nn.MSELoss()
    rows: list[tuple[int, float | None, float | None]] = []

    def epoch(xe: torch.Tensor, ye: torch.Tensor, step: int, log: bool) -> int:
        model.train()
        perm, window = torch.randperm(len(xe)), []
        for i in range(0, len(xe), 10):
            idx = perm[i:i + 10]
            opt.zero_grad()
            loss = mse(model(xe[idx]), ye[idx])
            loss.backward()
            opt.step()
            step += 1
            window.append(loss.item())
            if log and step % 5 == 0:
                rows.append((step, float(np.mean(window)), None))
                window = []
        return step

    for _ in range(30):  # the pretraining the log does not show
        epoch(xp, yp, 0, False)
    step = 0
    for e in range(3):
        step = epoch(xt, yt, step, True)
        if e < 2:
            model.eval()
            with torch.no_grad():
                rows.append((step, None, mse(model(xv), yv).item()))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics_log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "train_loss", "val_loss"])
        w.writerows([[s, "" if t is None else f"{t:.6g}", "" if v is None else f"{v:.6g}"]
                     for s, t, v in rows])


if __name__ == "__main__":
    _unconfident_finetune(HERE / "quiet_first_loss_below_ln2_unconfident")
    _two_evals_finetune(HERE / "quiet_two_evals_val_settled")
