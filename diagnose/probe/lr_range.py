"""LR range test (Smith 2017, as fastai's lr_find) and a largest-batch-that-fits search.

The user names a factory ``module:function`` returning ``(model, loss_fn, loader)`` or
``(model, loss_fn, loader, optimizer_class)``; this is the user's own code, imported on
their explicit request (nothing from a log is ever executed).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Stop when the smoothed loss exceeds this multiple of the best smoothed loss.
DIVERGE_FACTOR = 4.0
#: EMA weight of the newest loss in the smoothed curve (bias-corrected).
SMOOTH_BETA = 0.05
#: Share of the first points and number of last points ignored by the suggestions.
SKIP_START_FRAC, SKIP_END = 0.1, 5


@dataclass
class LRRangeResult:
    """The sweep, the stop reason and the suggested learning rates."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped_early: bool
    suggestions: dict[str, float] = field(default_factory=dict)
    suggested: float | None = None
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggested_lr": self.suggested,
            "rule": self.rule,
            "suggestions": self.suggestions,
            "stopped_early": self.stopped_early,
            "points": len(self.lrs),
            "lr_range": [self.lrs[0], self.lrs[-1]] if self.lrs else [],
        }


def load_factory(spec: str) -> Callable[[], Any]:
    """``module:function`` -> the function (the current folder is importable)."""
    if ":" not in spec:
        raise ValueError(f"--lr-range wants module:function, got '{spec}'")
    module_name, attr = spec.split(":", 1)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{spec}: no callable '{attr}' in module '{module_name}'")
    fn: Callable[[], Any] = factory
    return fn


def _unpack(made: Any) -> tuple[Any, Any, Any, Any]:
    import torch

    if isinstance(made, dict):
        return made["model"], made["loss_fn"], made["loader"], made.get("optimizer")
    parts = tuple(made)
    if len(parts) == 3:
        return (*parts, torch.optim.SGD)
    if len(parts) == 4:
        return parts
    raise ValueError("the factory must return (model, loss_fn, loader[, optimizer_class])")


def _cycle(loader: Any) -> Iterator[Any]:
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError("the factory's loader yields no batches")


def _valley(smoothed: np.ndarray) -> int:
    """Index about 2/3 into the longest decreasing run of the smoothed loss."""
    n = len(smoothed)
    best_start, best_len, start = 0, 1, 0
    for i in range(1, n):
        if smoothed[i] >= smoothed[i - 1]:
            start = i
        if i - start + 1 > best_len:
            best_start, best_len = start, i - start + 1
    return best_start + (2 * (best_len - 1)) // 3


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[dict[str, float], float, str]:
    """Steepest-descent and valley suggestions; valley is the default when it exists."""
    lo = int(len(lrs) * SKIP_START_FRAC)
    hi = max(lo + 2, len(lrs) - SKIP_END)
    window = slice(lo, hi)
    x = np.log10(lrs[window])
    y = smoothed[window]
    out: dict[str, float] = {}
    if len(x) >= 3:
        grad = np.gradient(y, x)
        out["steepest"] = float(lrs[lo + int(np.argmin(grad))])
        out["valley"] = float(lrs[lo + _valley(y)])
        out["minimum/10"] = float(lrs[lo + int(np.argmin(y))] / 10)
    if "valley" in out:
        return out, out["valley"], "valley: 2/3 into the longest falling stretch of the loss"
    if out:
        return out, out["steepest"], "steepest: where the loss falls fastest per decade"
    return out, float("nan"), "too few points"


def lr_range_test(
    factory: Callable[[], Any],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    device: str = "cpu",
) -> LRRangeResult:
    """Exponential LR sweep, one optimizer step per LR, stop at 4x the best smoothed loss."""
    import torch

    model, loss_fn, loader, opt_cls = _unpack(factory())
    model = model.to(device)
    model.train()
    optimizer = opt_cls(model.parameters(), lr=start_lr)
    ratio = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    stopped = False
    batches = _cycle(loader)
    for i in range(num_iter):
        lr = start_lr * ratio**i
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = next(batches)[:2]
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            stopped = True
            break
        avg = SMOOTH_BETA * value + (1 - SMOOTH_BETA) * avg
        smooth = avg / (1 - (1 - SMOOTH_BETA) ** (i + 1))
        smoothed.append(smooth)
        best = min(best, smooth)
        if i > 5 and smooth > DIVERGE_FACTOR * best:
            stopped = True
            break
    n = len(smoothed)
    result = LRRangeResult(lrs[:n], losses[:n], smoothed, stopped)
    result.suggestions, result.suggested, result.rule = suggest(
        np.asarray(result.lrs), np.asarray(smoothed)
    )
    del torch
    return result


def plot_lr_range(result: LRRangeResult, path: Path) -> Path:
    """Loss against log-LR with the suggestions marked (Figure + Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=1.6, label="smoothed loss")
    for i, (name, lr) in enumerate(sorted(result.suggestions.items())):
        ax.axvline(lr, color=f"C{i + 1}", ls="--", lw=1, label=f"{name}: {lr:.2g}")
    ax.set_xscale("log")
    if result.smoothed:
        low, best = min(result.smoothed), min(result.smoothed)
        span = max(DIVERGE_FACTOR * best - low, 1e-12) if best > 0 else None
        if span:  # keep the final blow-up from flattening the interesting part
            ax.set_ylim(low - 0.05 * span, low + span)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(f"LR range test: suggested {result.suggested:.2g} ({result.rule.split(':')[0]})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def max_batch_size(
    factory: Callable[[], Any], device: str = "cuda", limit: int = 1 << 16
) -> dict[str, Any]:
    """Largest power-of-two batch whose forward+backward fits on the GPU."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {"max_batch_size": None, "reason": "the batch-size search needs a CUDA GPU"}
    model, loss_fn, loader, _ = _unpack(factory())
    model = model.to(device)
    inputs, targets = next(iter(loader))[:2]
    fits, size = None, max(1, len(inputs))
    while size <= limit:
        reps = math.ceil(size / len(inputs))
        x = inputs.repeat(reps, *([1] * (inputs.dim() - 1)))[:size].to(device)
        y = targets.repeat(reps, *([1] * (targets.dim() - 1)))[:size].to(device)
        try:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            torch.cuda.synchronize()
            fits = size
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            del x, y
            torch.cuda.empty_cache()
        size *= 2
    return {"max_batch_size": fits, "searched_up_to": min(size, limit),
            "device": torch.cuda.get_device_name(0)}
