"""Factory for ``diagnose probe --lr-range examples.lr_factory:make``.

Returns ``(model, loss_fn, loader)`` for the same spirals task as ``examples/train.py``;
the LR range test then sweeps the learning rate over one pass of fresh optimizer steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import build_model, make_data


def make(batch_size: int = 32) -> tuple[nn.Module, nn.Module, DataLoader]:
    """A fresh model, its loss and a shuffled loader (fixed seeds: repeatable)."""
    torch.manual_seed(0)
    x, y = make_data(1200, seed=1234)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    return build_model(dropout=0.0, normalization="none"), nn.CrossEntropyLoss(), loader
