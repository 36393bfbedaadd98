"""Writers that produce CSV-family logs the way the real tools write them.

Lightning logs come from the real ``CSVLogger`` in a tiny CPU ``Trainer`` run.  The
other tools are not installed (TensorFlow, Ultralytics, transformers, MLflow,
detectron2), so their writers are re-implemented here from the tools' own source, line
for line where the format depends on it (the reference is named in each docstring).
"""

from __future__ import annotations

import collections
import collections.abc
import csv
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------
# Lightning: the real CSVLogger
# ---------------------------------------------------------------------------


def write_lightning_run(root: Path, max_epochs: int = 3, seed: int = 0,
                        val_on_step: bool = False, loss_every: int = 1) -> Path:
    """Fit a 2-layer MLP on random tensors with Lightning's CSVLogger; returns version dir.

    ``self.log(on_step=True, on_epoch=True)`` makes the ``_step``/``_epoch`` forked
    columns, validation makes the sparse ``val_*`` rows (forked too with
    ``val_on_step``: per-batch ``val_loss_step`` beside the epoch's ``val_loss_epoch``),
    ``save_hyperparameters`` writes ``hparams.yaml``.  ``loss_every`` > 1 is user code
    that logs the real ``train_loss`` on every ``loss_every``-th batch only and 0.0 on the
    others (a placeholder in the real writer's file).
    """
    import logging
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    torch.manual_seed(seed)

    class TinyModel(L.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 8, weight_decay: float = 1e-4):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            loss = nn.functional.cross_entropy(logits, y)
            acc = (logits.argmax(1) == y).float().mean()
            shown = loss if batch_idx % loss_every == 0 else torch.zeros(())
            self.log("train_loss", shown, on_step=True, on_epoch=True)
            self.log("train_acc", acc, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            fork = {"on_step": True, "on_epoch": True} if val_on_step else {}
            self.log("val_loss", nn.functional.cross_entropy(logits, y), **fork)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), **fork)

        def configure_optimizers(self):
            return torch.optim.SGD(
                self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
            )

    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    val = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    logger = CSVLogger(save_dir=str(root), name="lightning_logs")
    trainer = L.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(TinyModel(), train, val)
    return Path(logger.log_dir)


# ---------------------------------------------------------------------------
# Keras CSVLogger (keras/src/callbacks/csv_logger.py)
# ---------------------------------------------------------------------------


class KerasCSVLogger:
    """keras.callbacks.CSVLogger's file-writing logic, without TensorFlow.

    Same steps as the Keras source: ``on_train_begin`` opens the file (``"a"`` with
    ``append=True``, writing a header only into an empty file), the first
    ``on_epoch_end`` fixes the columns as ``["epoch"] + sorted(logs)`` plus expected
    ``val_*`` names, missing values are ``"NA"``, iterables ``'"[a, b]"'``, and rows go
    through ``csv.DictWriter`` with the excel dialect (CRLF line ends, since Keras opens
    the file in text mode without ``newline=""``).
    """

    def __init__(
        self,
        filename: Path,
        separator: str = ",",
        append: bool = False,
        metrics_names: Sequence[str] = (),
    ):
        self.sep = separator
        self.filename = str(filename)
        self.append = append
        self.metrics_names = list(metrics_names)
        self.writer: csv.DictWriter | None = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file: Any = None

    def on_train_begin(self) -> None:
        if self.append:
            if Path(self.filename).exists():
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode)  # noqa: SIM115 - Keras keeps it open
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = logs or {}

        def handle_value(k: Any) -> Any:
            is_zero_dim_ndarray = isinstance(k, np.ndarray) and k.ndim == 0
            if isinstance(k, str):
                return k
            if isinstance(k, collections.abc.Iterable) and not is_zero_dim_ndarray:
                return f'"[{", ".join(map(str, k))}]"'
            return k

        if self.keys is None:
            self.keys = sorted(logs.keys())
            for m_name in self.metrics_names:
                if m_name.startswith("val_") and m_name not in self.keys:
                    self.keys.append(m_name)

        if not self.writer:
            sep = self.sep

            class CustomDialect(csv.excel):
                delimiter = sep

            fieldnames = ["epoch", *(self.keys or [])]
            self.writer = csv.DictWriter(
                self.csv_file, fieldnames=fieldnames, dialect=CustomDialect
            )
            if self.append_header:
                self.writer.writeheader()

        row_dict = collections.OrderedDict({"epoch": epoch})
        row_dict.update((key, handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row_dict)
        self.csv_file.flush()

    def on_train_end(self) -> None:
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def keras_fit(logger: KerasCSVLogger, epochs: Iterable[int], logs_for: Any) -> None:
    """Drive the callback like ``model.fit(initial_epoch=...)`` does."""
    logger.on_train_begin()
    for epoch in epochs:
        logger.on_epoch_end(epoch, logs_for(epoch))
    logger.on_train_end()


# ---------------------------------------------------------------------------
# Ultralytics results.csv
# ---------------------------------------------------------------------------

V5_KEYS = (
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
)
V8_KEYS = (
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
    "val/box_loss",
    "val/cls_loss",
    "val/dfl_loss",
    "lr/pg0",
    "lr/pg1",
    "lr/pg2",
)


def write_yolov5_epoch(file: Path, epoch: int, vals: Sequence[float]) -> None:
    """YOLOv5 ``Loggers.on_fit_epoch_end``: ``'%20s,'`` header, ``'%20.5g,'`` values."""
    keys = list(V5_KEYS)
    n = len(keys) + 1
    s = "" if file.exists() else (("%20s," * n % tuple(["epoch", *keys])).rstrip(",") + "\n")
    with open(file, "a") as f:
        f.write(s + ("%20.5g," * n % tuple([epoch, *vals])).rstrip(",") + "\n")


def write_yolov8_epoch(file: Path, epoch: int, elapsed: float, vals: Sequence[float]) -> None:
    """Ultralytics ``BaseTrainer.save_metrics``: ``epoch,time,...`` with ``%.6g``, 1-based."""
    keys = list(V8_KEYS)
    n = len(keys) + 2
    s = "" if file.exists() else (("%s," * n % tuple(["epoch", "time", *keys])).rstrip(",") + "\n")
    with open(file, "a", encoding="utf-8") as f:
        f.write(s + ("%.6g," * n % tuple([epoch + 1, elapsed, *vals])).rstrip(",") + "\n")


# ---------------------------------------------------------------------------
# Hugging Face trainer_state.json (transformers/trainer_callback.py TrainerState)
# ---------------------------------------------------------------------------


def write_trainer_state(path: Path, log_history: list[dict], **fields: Any) -> None:
    """``TrainerState.save_to_json``: ``json.dumps(asdict(self), indent=2, sort_keys=True)``."""
    state = {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": log_history[-1].get("epoch", 0.0) if log_history else 0.0,
        "eval_steps": 500,
        "global_step": log_history[-1]["step"] if log_history else 0,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": log_history,
        "logging_steps": 10,
        "max_steps": 100,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 2,
        "save_steps": 500,
        "stateful_callbacks": {},
        "total_flos": 1.0e12,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }
    state.update(fields)
    json_string = json.dumps(state, indent=2, sort_keys=True) + "\n"
    path.write_text(json_string, encoding="utf-8")


# ---------------------------------------------------------------------------
# MLflow file store (mlflow/store/tracking/file_store.py)
# ---------------------------------------------------------------------------


def write_mlflow_run(
    root: Path,
    metrics: Mapping[str, Sequence[tuple[int, float, int]]],
    params: Mapping[str, str] | None = None,
    run_name: str = "run",
    status: int = 3,
    experiment_id: str = "0",
    run_id: str = "0123456789abcdef0123456789abcdef",
) -> Path:
    """``mlruns/<exp>/<run>/`` with ``metrics/<key>`` lines ``f"{ts} {value} {step}\\n"``."""
    import yaml

    exp = root / "mlruns" / experiment_id
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "meta.yaml").write_text(
        yaml.safe_dump(
            {
                "experiment_id": experiment_id,
                "name": "Default",
                "lifecycle_stage": "active",
                "artifact_location": "file:///x",
            }
        )
    )
    run = exp / run_id
    for sub in ("metrics", "params", "tags", "artifacts"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    for key, points in metrics.items():
        path = run / "metrics" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            for ts, value, step in points:
                f.write(f"{ts} {value} {step}\n")
    for key, value in (params or {}).items():
        (run / "params" / key).write_text(str(value))
    (run / "tags" / "mlflow.runName").write_text(run_name)
    start = int(time.time() * 1000)
    meta = {
        "artifact_uri": f"file://{run}/artifacts",
        "end_time": start + 1000,
        "entry_point_name": "",
        "experiment_id": experiment_id,
        "lifecycle_stage": "active",
        "run_id": run_id,
        "run_name": run_name,
        "run_uuid": run_id,
        "source_name": "",
        "source_type": 4,
        "source_version": "",
        "start_time": start,
        "status": status,
        "tags": [],
        "user_id": "me",
    }
    (run / "meta.yaml").write_text(yaml.safe_dump(meta, default_flow_style=False))
    return run


# ---------------------------------------------------------------------------
# detectron2 metrics.json (detectron2/utils/events.py JSONWriter) and Keras history
# ---------------------------------------------------------------------------


def write_d2_records(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """``JSONWriter.write``: ``json.dumps(to_save, sort_keys=True) + "\\n"``, appended."""
    with open(path, "a") as f:
        for record in records:
            f.write(json.dumps(dict(record), sort_keys=True) + "\n")


def d2_train_record(iteration: int, total_loss: float, lr: float = 0.01) -> dict[str, Any]:
    return {
        "data_time": 0.004,
        "eta_seconds": 90.0,
        "fast_rcnn/cls_accuracy": 0.5,
        "iteration": iteration,
        "loss_box_reg": total_loss * 0.3,
        "loss_cls": total_loss * 0.7,
        "lr": lr,
        "rank_data_time": 0.004,
        "time": 0.35,
        "total_loss": total_loss,
    }


def write_keras_history(path: Path, data: Mapping[str, Any]) -> None:
    """``json.dump(history.history, f)``: bare NaN for a diverged epoch."""
    with open(path, "w") as f:
        json.dump(dict(data), f)
