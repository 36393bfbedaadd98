"""Training loop, datasets and log writers shared by ``make_samples.py``.

Everything here is deterministic: one CPU thread, fixed seeds, deterministic torch
algorithms, and log files whose wall times and names are fixed after writing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

T0 = 1_700_000_000.0  # wall time of step 0 in every generated log
HOST = "sample-host"


def setup_torch() -> None:
    """One thread, deterministic kernels, no TF32 surprises."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_all(seed: int) -> None:
    """Seed torch and numpy."""
    torch.manual_seed(seed)
    np.random.seed(seed)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@dataclass
class Data:
    """A classification (or sequence) data set already split into train and val."""

    name: str
    xtr: torch.Tensor
    ytr: torch.Tensor
    xva: torch.Tensor
    yva: torch.Tensor
    n_classes: int


def _split(x: np.ndarray, y: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.RandomState(seed)
    idx = rng.permutation(len(x))
    va, tr = idx[:n_val], idx[n_val:]
    return x[tr], y[tr], x[va], y[va]


def _to_data(
    name: str, x: np.ndarray, y: np.ndarray, n_val: int, seed: int, standardize: bool
) -> Data:
    xtr, ytr, xva, yva = _split(x.astype(np.float32), y.astype(np.int64), n_val, seed)
    if standardize:
        mu = xtr.mean(0)
        sd = xtr.std(0) + 1e-6
        xtr = (xtr - mu) / sd
        xva = (xva - mu) / sd
    n_classes = int(y.max()) + 1
    return Data(
        name,
        torch.from_numpy(np.ascontiguousarray(xtr, dtype=np.float32)),
        torch.from_numpy(ytr),
        torch.from_numpy(np.ascontiguousarray(xva, dtype=np.float32)),
        torch.from_numpy(yva),
        n_classes,
    )


def digits(standardize: bool = True, n_train: int | None = None, seed: int = 0) -> Data:
    """sklearn digits (8x8 images, 10 classes): 497 validation images, the rest train.

    ``standardize=False`` keeps the raw 0..16 pixel values (mean ~5, variance ~30), which
    is what makes BatchNorm's running statistics matter.
    """
    from sklearn.datasets import load_digits

    ds = load_digits()
    d = _to_data("digits", ds.data, ds.target, 497, seed, standardize)
    if n_train is not None:
        d.xtr, d.ytr = d.xtr[:n_train], d.ytr[:n_train]
    return d


def breast_cancer(seed: int = 0) -> Data:
    """sklearn breast_cancer (30 features, 2 classes): 169 validation rows."""
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    return _to_data("breast_cancer", ds.data, ds.target, 169, seed, True)


def wine(seed: int = 0) -> Data:
    """sklearn wine (13 features, 3 classes): 58 validation rows."""
    from sklearn.datasets import load_wine

    ds = load_wine()
    return _to_data("wine", ds.data, ds.target, 58, seed, True)


def moons(n: int = 1200, noise: float = 0.3, seed: int = 0) -> Data:
    """make_moons with label noise from overlap: 400 validation points."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _to_data("moons", x, y, 400, seed, True)


def classification(
    n: int = 3000, n_features: int = 40, n_informative: int = 12, n_classes: int = 4,
    flip_y: float = 0.05, seed: int = 0,
) -> Data:
    """make_classification: a harder synthetic set; a third is validation."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=n_features, n_informative=n_informative,
        n_redundant=4, n_classes=n_classes, n_clusters_per_class=2, flip_y=flip_y,
        class_sep=1.0, random_state=seed,
    )
    return _to_data("classification", x, y, n // 3, seed, True)


STDLIB_TEXT_MODULES = ("textwrap", "string", "fnmatch", "glob", "shlex")


def stdlib_text(max_chars: int = 60_000) -> str:
    """Text of a few pure-Python stdlib modules (varies with the Python version)."""
    import importlib

    parts = []
    for name in STDLIB_TEXT_MODULES:
        mod = importlib.import_module(name)
        parts.append(Path(mod.__file__).read_text(encoding="utf-8"))
    text = "\n".join(parts)
    return "".join(c if 32 <= ord(c) < 127 or c == "\n" else "?" for c in text)[:max_chars]


def char_data(seq_len: int = 48, max_chars: int = 60_000, val_frac: float = 0.15) -> Data:
    """Character windows from stdlib source: predict each next character.

    ``x`` holds ``seq_len`` character ids, ``y`` the next ``seq_len`` ids (shifted by 1).
    The last ``val_frac`` of the text is validation.
    """
    text = stdlib_text(max_chars)
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], dtype=np.int64)
    n_val = int(len(ids) * val_frac)
    def windows(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        n = (len(a) - 1) // seq_len
        x = a[: n * seq_len].reshape(n, seq_len)
        y = a[1 : n * seq_len + 1].reshape(n, seq_len)
        return torch.from_numpy(x), torch.from_numpy(y)
    xtr, ytr = windows(ids[:-n_val])
    xva, yva = windows(ids[-n_val:])
    return Data("stdlib_chars", xtr, ytr, xva, yva, len(vocab))


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def mlp(
    sizes: list[int],
    act: Callable[[], nn.Module] = nn.ReLU,
    bn: bool = False,
    bn_momentum: float | None = 0.1,
    dropout: float = 0.0,
    dropout_before_bn: bool = False,
) -> nn.Sequential:
    """Plain MLP; with ``bn`` a BatchNorm1d after each hidden Linear.

    ``dropout_before_bn`` puts the Dropout directly before each BatchNorm (the bad
    placement); otherwise dropout follows the activation.
    """
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        if dropout_before_bn and dropout > 0 and i > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if last:
            break
        if bn:
            layers.append(nn.BatchNorm1d(sizes[i + 1], momentum=bn_momentum))
        layers.append(act())
        if dropout > 0 and not dropout_before_bn:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CharRNN(nn.Module):
    """Embedding -> RNN/GRU/LSTM -> Linear over the vocabulary."""

    def __init__(self, vocab: int, hidden: int, cell: str = "gru", layers: int = 1,
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 32)
        if cell == "rnn":
            self.rnn: nn.Module = nn.RNN(32, hidden, layers, batch_first=True,
                                         nonlinearity=nonlinearity)
        elif cell == "lstm":
            self.rnn = nn.LSTM(32, hidden, layers, batch_first=True)
        else:
            self.rnn = nn.GRU(32, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.emb(x))
        return self.out(h)  # (B, T, V)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class Log:
    """What a training loop observed: train points, val points, histograms."""

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    hists: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    steps_per_epoch: int = 0
    total_steps: int = 0


def grad_norm(model: nn.Module) -> float:
    """Global L2 norm of all gradients (NaN if any is NaN)."""
    norms = [p.grad.detach().norm(2) for p in model.parameters() if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.norm(torch.stack(norms), 2))


def _seq_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return nn.functional.cross_entropy(logits, y)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 512
) -> tuple[float, float]:
    """Loss and accuracy in eval mode."""
    was = model.training
    model.eval()
    tot_loss, tot_acc, n = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            out = model(x[i : i + bs])
            yy = y[i : i + bs]
            m = yy.numel()
            tot_loss += float(_seq_loss(out, yy)) * m
            tot_acc += _acc(out, yy) * m
            n += m
    model.train(was)
    return tot_loss / n, tot_acc / n


def train(
    model: nn.Module,
    data: Data,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    lr_lambda: Callable[[int], float] | None = None,
    log_every: int | None = None,
    x_axis: str = "step",
    clip: float | None = None,
    drop_last: bool = False,
    corrupt_steps: Iterable[int] = (),
    corrupt_scale: float = 8.0,
    hist_every: int | None = None,
    hist_fn: Callable[[nn.Module], dict[str, np.ndarray]] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    val_every: int = 1,
    log_mean: bool = False,
    extra_fn: Callable[[nn.Module], dict[str, float]] | None = None,
) -> Log:
    """Mini-batch training with logging the way a hand-written loop would log.

    - ``log_every=None``: one train point per epoch (means over the epoch's batches);
      ``log_every=k``: the batch loss every k optimizer steps (instantaneous, or the
      mean since the last point with ``log_mean``, as HF's Trainer does).
    - ``extra_fn(model)``: more scalars (e.g. per-layer grad norms) taken after the
      backward pass at each logged step.
    - ``x_axis``: 'step' (global optimizer steps) or 'epoch' (0-based epoch index, only
      with per-epoch logging).
    - val points are computed in eval mode after every ``val_every`` epochs.
    - ``corrupt_steps``: optimizer steps whose batch gets wrong labels and inputs scaled
      by ``corrupt_scale`` (a bad batch), for the transient-spike run.
    """
    g = torch.Generator().manual_seed(seed)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda) if lr_lambda else None
    n = len(data.xtr)
    spe = n // batch_size if drop_last else math.ceil(n / batch_size)
    log = Log(steps_per_epoch=spe)
    corrupt = set(corrupt_steps)
    step = 0
    model.train()
    since: list[float] = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        losses, accs, gns = [], [], []
        for b in range(spe):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            xb, yb = data.xtr[idx], data.ytr[idx]
            if step + 1 in corrupt:
                xb = xb * corrupt_scale
                yb = yb[torch.randperm(len(yb), generator=g)]
                shift = torch.randint(0, data.n_classes - 1, yb.shape, generator=g)
                yb = (yb + 1 + shift) % data.n_classes
            out = model(xb)
            loss = _seq_loss(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gn = grad_norm(model)
            logging_now = log_every is not None and (step + 1) % log_every == 0
            extra = extra_fn(model) if extra_fn is not None and logging_now else None
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            lr_now = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if sched is not None:
                sched.step()
            step += 1
            lv = float(loss.detach())
            av = _acc(out.detach(), yb)
            losses.append(lv)
            accs.append(av)
            gns.append(gn)
            since.append(lv)
            if logging_now:
                point = {"x": step, "epoch": epoch, "loss": float(np.mean(since)) if log_mean
                         else lv, "acc": av, "lr": lr_now, "grad_norm": gn}
                if extra:
                    point["extra"] = extra  # type: ignore[assignment]
                log.train.append(point)
                since = []
            if hist_fn is not None and hist_every and step % hist_every == 0:
                for tag, arr in hist_fn(model).items():
                    log.hists.append((tag, step, arr))
        x = epoch if x_axis == "epoch" else step
        if log_every is None:
            log.train.append({
                "x": x, "epoch": epoch, "loss": float(np.mean(losses)),
                "acc": float(np.mean(accs)), "lr": optimizer.param_groups[0]["lr"],
                "grad_norm": float(np.mean(gns)),
            })
        if (epoch + 1) % val_every == 0 or epoch == epochs - 1:
            vl, va = evaluate(model, data.xva, data.yva)
            log.val.append({"x": x, "epoch": epoch, "loss": vl, "acc": va})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    log.total_steps = step
    return log


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def f32(v: float) -> float:
    """The value as a float32 would store it (what every logger writes)."""
    return float(np.float32(v))


def _read_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    pos, out = 0, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        pos += 12
        out.append(data[pos : pos + length])
        pos += length + 4
    return out


def normalize_event_files(run_dir: Path, dt: float, v2: bool = False) -> None:
    """Give every event file under ``run_dir`` a fixed name and fixed wall times.

    torch's writer stamps the current time, host and pid into file names and events;
    rewriting them (wall_time = T0 + step * dt) makes the output byte-reproducible.
    Nested protobuf payloads (the hparams plugin's map of values) are re-encoded with
    sorted map keys.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    for folder in sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")}):
        files = sorted(folder.glob("events.out.tfevents.*"))
        for i, path in enumerate(files):
            records = _read_records(path)
            path.unlink()
            name = f"events.out.tfevents.{int(T0)}.{HOST}.{1000 + i}.0" + (".v2" if v2 else "")
            with open(folder / name, "wb") as fh:
                rw = RecordWriter(fh)
                for rec in records:
                    ev = event_pb2.Event.FromString(rec)
                    ev.wall_time = T0 + ev.step * dt
                    for val in ev.summary.value:
                        data = val.metadata.plugin_data
                        if data.plugin_name == "hparams" and data.content:
                            msg = plugin_data_pb2.HParamsPluginData.FromString(data.content)
                            data.content = msg.SerializeToString(deterministic=True)
                    rw.write(ev.SerializeToString(deterministic=True))


def write_tb(
    run_dir: Path,
    scalars: list[tuple[int, str, float]],
    *,
    hists: list[tuple[str, int, np.ndarray]] = (),  # type: ignore[assignment]
    hparams: dict[str, Any] | None = None,
    add_hparams_metrics: dict[str, float] | None = None,
    new_style: bool = False,
    dt: float = 0.05,
    v2: bool = False,
) -> None:
    """Write scalars (step, tag, value) in step order with torch's SummaryWriter.

    With ``add_hparams_metrics`` the hyperparameters go through ``add_hparams`` (torch
    writes them into a sub-folder); otherwise they go to an ``hparams.yaml`` sidecar.
    """
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    w = SummaryWriter(log_dir=str(run_dir))
    events: list[tuple[int, int, str, Any]] = []
    for i, (step, tag, val) in enumerate(scalars):
        events.append((step, i, tag, val))
    for j, (tag, step, arr) in enumerate(hists):
        events.append((step, len(scalars) + j, tag, arr))
    events.sort(key=lambda e: (e[0], e[1]))
    for step, _, tag, val in events:
        if isinstance(val, np.ndarray):
            w.add_histogram(tag, val, step)
        else:
            w.add_scalar(tag, float(val), step, new_style=new_style)
    if hparams is not None and add_hparams_metrics is not None:
        w.add_hparams(
            {k: v for k, v in hparams.items() if v is not None},
            add_hparams_metrics,
            run_name="hparams",
        )
    w.close()
    normalize_event_files(run_dir, dt, v2=v2)
    if hparams is not None and add_hparams_metrics is None:
        write_yaml(run_dir / "hparams.yaml", hparams)


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Plain YAML (sorted keys) the way Lightning's save_hparams_to_yaml writes it."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")


def write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Pretty JSON (NaN allowed, as Python's json writes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def write_keras_csv(path: Path, log: Log, *, metric: str = "accuracy") -> None:
    """A Keras CSVLogger file: ``epoch`` then sorted keys, 0-based epochs, 'NA' for gaps."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    val_by_epoch = {v["epoch"]: v for v in log.val}
    keys = sorted([metric, "loss", f"val_{metric}", "val_loss"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", *keys], lineterminator="\n")
        w.writeheader()
        for t in log.train:
            e = int(t["epoch"])
            v = val_by_epoch.get(e)
            row: dict[str, Any] = {"epoch": e, metric: f32(t["acc"]), "loss": f32(t["loss"])}
            row[f"val_{metric}"] = f32(v["acc"]) if v else "NA"
            row["val_loss"] = f32(v["loss"]) if v else "NA"
            w.writerow(row)


def write_hf_state(run_dir: Path, log: Log, *, hparams: dict[str, Any], logging_steps: int,
                   eval_steps: int, num_epochs: int, batch_size: int) -> None:
    """``trainer_state.json`` as transformers' TrainerState.save_to_json writes it.

    Training entries carry ``loss, grad_norm, learning_rate, epoch, step``; evaluation
    entries ``eval_loss, eval_accuracy, eval_runtime, ...``. Runtimes are derived from
    sample counts (not measured) so the file is reproducible.
    """
    spe = log.steps_per_epoch
    entries: list[tuple[int, int, dict[str, Any]]] = []
    for t in log.train:
        step = int(t["x"])
        entries.append((step, 0, {
            "epoch": round(step / spe, 4), "grad_norm": f32(t["grad_norm"]),
            "learning_rate": f32(t["lr"]), "loss": round(f32(t["loss"]), 4), "step": step,
        }))
    n_val = 0
    for v in log.val:
        step = int(v["x"])
        n_val = max(n_val, 1)
        rt = 0.0421
        entries.append((step, 1, {
            "epoch": round(step / spe, 4), "eval_accuracy": f32(v["acc"]),
            "eval_loss": f32(v["loss"]), "eval_runtime": rt,
            "eval_samples_per_second": 11876.5, "eval_steps_per_second": 23.753, "step": step,
        }))
    entries.sort(key=lambda e: (e[0], e[1]))
    history = [e[2] for e in entries]
    last = log.total_steps
    finite = [t["loss"] for t in log.train]
    history.append({
        "epoch": float(num_epochs), "step": last, "total_flos": 0.0,
        "train_loss": float(np.mean(finite)) if finite else float("nan"),
        "train_runtime": 12.3456, "train_samples_per_second": 1234.5,
        "train_steps_per_second": 38.6,
    })
    evals = [(f32(v["loss"]), int(v["x"])) for v in log.val if math.isfinite(v["loss"])]
    best = min(evals) if evals else None
    state = {
        "best_global_step": best[1] if best else None,
        "best_metric": best[0] if best else None,
        "best_model_checkpoint": f"{run_dir.name}/checkpoint-{best[1]}" if best else None,
        "epoch": float(num_epochs),
        "eval_steps": eval_steps,
        "global_step": last,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": logging_steps,
        "max_steps": last,
        "num_input_tokens_seen": 0,
        "num_train_epochs": num_epochs,
        "save_steps": 500,
        "stateful_callbacks": {},
        "total_flos": 0.0,
        "train_batch_size": batch_size,
        "trial_name": None,
        "trial_params": None,
    }
    write_json(run_dir / "trainer_state.json", state, sort_keys=True)
    write_json(run_dir / "config.json", hparams, sort_keys=True)


def write_ultralytics_cls(path: Path, log: Log, lr_groups: int = 3) -> None:
    """An Ultralytics (YOLOv8-cls style) results.csv with per-epoch rows."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["epoch", "train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5",
            "val/loss"] + [f"lr/pg{i}" for i in range(lr_groups)]
    val_by_epoch = {v["epoch"]: v for v in log.val}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([f"{c:>25}" if i else c for i, c in enumerate(cols)])
        for t in log.train:
            e = int(t["epoch"])
            v = val_by_epoch[e]
            w.writerow([e + 1, f"{t['loss']:.5g}", f"{v['acc']:.5g}", "1",
                        f"{v['loss']:.5g}", *[f"{t['lr']:.5g}"] * lr_groups])


def clean_dir(path: Path) -> None:
    """Remove and recreate a folder."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def quiet() -> None:
    """Silence library chatter (Lightning tips, sklearn/torch user warnings)."""
    import logging

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.stderr.flush()
