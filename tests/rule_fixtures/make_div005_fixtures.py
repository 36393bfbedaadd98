"""Remake DIV005's fixtures from real short trainings (torch on the CPU, deterministic).

A 3-layer MLP learns a 4-class ``sklearn.datasets.make_classification`` problem with
Adam; the logs are written by torch's own ``SummaryWriter`` (train loss/accuracy every
5 steps, val loss/accuracy every epoch, the hyperparameters with ``num_classes``), so
the rule sees what a real run writes.

- ``fire``: every weight scaled by 10 at init (a huge init, logits 1000x too large):
  the cross-entropy starts in the thousands and, though it falls, ends about 8x ln 4.
- ``quiet``: the same run with PyTorch's default init.
- ``fire_accuracy_ceiling``: the huge init again, with no class count logged (and a
  first loss already blown up, so none is read from the curve): the train loss ends far
  above what a calibrated model at its logged accuracy can cost over any class count up
  to 1000.
- ``fire_blown_at_start``: a smaller huge init (weights x8), no class count logged: the
  first loss (~86) is above any plausible chance level and the train loss ends about
  3x ln 4, under 2x but over 1x the calibrated ceiling of its logged accuracy (the
  ceiling itself is the bound for a loss blown at its first logged point).
- ``fire_lr_jump``: default init, then the LR is raised 3000x after 60% of the run: the
  loss leaves its good level and does not come back.
- ``quiet_train_loss_summed_over_batches``: default init, written by a plain loop's
  ``csv`` module the way many hand-written loops log: the train loss SUMMED over the
  epoch's batches (30 batches: about 30x the mean, far above any chance level from the
  first row) beside the val loss as a mean (below ln 4 throughout) and both accuracies
  in percent: another scale, not a blow-up.

Run: ``python tests/rule_fixtures/make_div005_fixtures.py`` (from the repo root; needs
torch, tensorboard and scikit-learn from the ``dev`` extra).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

HERE = Path(__file__).parent / "DIV005"
EPOCHS = 8
BATCH = 32


def _fresh(folder: Path) -> None:
    """An empty case folder but for its ``expect.toml``/``config.toml`` (the case's
    meaning is written by hand; only the log is remade)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_dir():
            shutil.rmtree(f)
        elif f.name not in ("expect.toml", "config.toml"):
            f.unlink()


def _data_and_model(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                         torch.Tensor, nn.Module]:
    """The 4-class problem (train and val splits) and the 3-layer MLP, seeded."""
    torch.manual_seed(seed)
    x, y = make_classification(n_samples=1200, n_features=20, n_informative=10,
                               n_classes=4, class_sep=2.0, random_state=seed)
    x = (x - x.mean(0)) / x.std(0)
    xt, yt = torch.tensor(x[:960], dtype=torch.float32), torch.tensor(y[:960])
    xv, yv = torch.tensor(x[960:], dtype=torch.float32), torch.tensor(y[960:])
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 4))
    return xt, yt, xv, yv, model


def _step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module,
          x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch: the outputs and the loss."""
    out = model(x)
    loss = loss_fn(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return out, loss


def train(folder: Path, init_scale: float = 1.0, jump_at: float | None = None,
          jump: float = 1.0, seed: int = 0, log_classes: bool = True) -> None:
    xt, yt, xv, yv, model = _data_and_model(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(init_scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    _fresh(folder)
    w = SummaryWriter(str(folder))
    # the hyperparameters, as Lightning's TensorBoardLogger.log_hyperparams writes them
    # (into the run's own event file): the class count is what ln C is computed from
    hp: dict[str, float] = {"lr": 1e-3, "init_scale": init_scale}
    if log_classes:
        hp["num_classes"] = 4
    for summary in hparams(hp, {}):
        w.file_writer.add_summary(summary)
    steps_per_epoch = len(xt) // BATCH
    total = EPOCHS * steps_per_epoch
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=gen)
        for b in range(steps_per_epoch):
            if jump_at is not None and step == int(jump_at * total):
                for g in opt.param_groups:
                    g["lr"] *= jump
            idx = order[b * BATCH:(b + 1) * BATCH]
            out, loss = _step(model, opt, loss_fn, xt[idx], yt[idx])
            step += 1
            if step % 5 == 0:
                w.add_scalar("train/loss", loss.item(), step)
                w.add_scalar("train/acc", (out.argmax(1) == yt[idx]).float().mean().item(),
                             step)
                w.add_scalar("lr", opt.param_groups[0]["lr"], step)
        with torch.no_grad():
            out = model(xv)
            w.add_scalar("val/loss", loss_fn(out, yv).item(), step)
            w.add_scalar("val/acc", (out.argmax(1) == yv).float().mean().item(), step)
    w.close()


def train_summed_csv(folder: Path, seed: int = 0) -> None:
    """The default run, logged per epoch to ``history.csv`` with the train loss summed over
    the epoch's batches (``total += loss.item()``) and the val loss averaged."""
    xt, yt, xv, yv, model = _data_and_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    _fresh(folder)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in range(3 * EPOCHS):
        order = torch.randperm(len(xt), generator=gen)
        total, correct = 0.0, 0
        for b in range(len(xt) // BATCH):
            idx = order[b * BATCH:(b + 1) * BATCH]
            out, loss = _step(model, opt, loss_fn, xt[idx], yt[idx])
            total += loss.item()
            correct += int((out.argmax(1) == yt[idx]).sum())
        with torch.no_grad():
            out = model(xv)
            rows.append({"epoch": epoch + 1, "train_loss": round(total, 4),
                         "train_acc": round(100 * correct / len(xt), 2),
                         "val_loss": round(loss_fn(out, yv).item(), 4),
                         "val_acc": round(100 * (out.argmax(1) == yv).float().mean().item(), 2)})
    with open(folder / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    np.seterr(all="ignore")
    train(HERE / "fire", init_scale=10.0)
    train(HERE / "quiet")
    train(HERE / "fire_lr_jump", jump_at=0.6, jump=3000.0)
    train(HERE / "fire_accuracy_ceiling", init_scale=10.0, log_classes=False)
    train(HERE / "fire_blown_at_start", init_scale=8.0, log_classes=False)
    train_summed_csv(HERE / "quiet_train_loss_summed_over_batches")
    print("DIV005 ok")


if __name__ == "__main__":
    main()
