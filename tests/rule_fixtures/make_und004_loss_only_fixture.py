"""Remake UND004's ``quiet_loss_only_classifier_below_ln2`` case (a real short training,
torch on the CPU, deterministic).

A healthy 2-class MLP on ``make_moons`` (noise 0.45, so its Bayes floor is high) trained
40 epochs with Adam, logging only what a loop without metrics writes: the mean train
loss of each epoch and the val loss after it, no accuracy.  Its first row averages an
epoch of learning, so the log starts below ln 2.

Run: ``python tests/rule_fixtures/make_und004_loss_only_fixture.py`` (from the repo root;
needs torch and scikit-learn from the ``dev`` extra).
"""

from __future__ import annotations

from pathlib import Path

import torch
from sklearn.datasets import make_moons

CASE = Path(__file__).parent / "UND004" / "quiet_loss_only_classifier_below_ln2"


def main() -> None:
    torch.manual_seed(0)
    x_np, y_np = make_moons(n_samples=1200, noise=0.45, random_state=0)
    x, y = torch.tensor(x_np, dtype=torch.float32), torch.tensor(y_np)
    xtr, ytr, xva, yva = x[:900], y[:900], x[900:], y[900:]
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows, step = ["step,train_loss,val_loss"], 0
    for _ in range(40):
        perm, total = torch.randperm(900), 0.0
        model.train()
        for i in range(0, 900, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            step += 1
        model.eval()
        with torch.no_grad():
            val = loss_fn(model(xva), yva).item()
        rows.append(f"{step},{total / 900:.6g},{val:.6g}")
    CASE.mkdir(parents=True, exist_ok=True)
    (CASE / "metrics_log.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
