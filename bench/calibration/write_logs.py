"""Render stored histories as real log files, one log family per run.

Usage::

    python bench/calibration/write_logs.py OUT_DIR [--store runs.jsonl.gz] [--ids r00001 ...]

Each run goes to ``OUT_DIR/<format>/<id>/`` in the format ``format_of(id)`` picks (a
stable hash of the id, so every cause and model family is spread over every format):

- ``tensorboard``: torch's own ``SummaryWriter`` (three tag styles; some runs add
  ``add_hparams``);
- ``keras_csv``: Keras ``CSVLogger`` (per epoch: ``epoch,accuracy,loss,val_accuracy,
  val_loss`` with ``NA`` where validation did not run);
- ``lightning``: Lightning's own ``CSVLogger`` (``metrics.csv`` + ``hparams.yaml``);
- ``hf``: Hugging Face ``trainer_state.json`` (``log_history``, bare NaN);
- ``mlflow``: the MLflow file store (``mlruns/0/<run>/metrics/<key>``);
- ``csv``: a plain CSV with a ``config.json`` beside it;
- ``jsonl``: one JSON object per logging step.

Where a family records the configuration (TensorBoard's ``add_hparams`` in one run of
three, Lightning's ``hparams.yaml``, MLflow params, the CSV's ``config.json`` in one of two),
the class count is there for TensorBoard always, Lightning and CSV half the time, MLflow
never; the model's ``normalization`` is there in half the runs (a stable choice apart
from the class count's), as some training scripts record it and others do not.

One TensorBoard or CSV run in eight ends in a torn write (the last record cut short, as a
killed job leaves it): the curves lose their last point and the label still holds.
The formats without an installed writer follow ``tests/fixtures_csv_family.py`` (the
tools' own source, re-implemented line for line). Output is byte-reproducible: fixed wall
times and TensorBoard file names (``sample_logs``' ``normalize_event_files``), sorted keys.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import store
import yaml

from sample_logs._lib import normalize_event_files
from tests.fixtures_csv_family import (
    KerasCSVLogger,
    keras_fit,
    write_mlflow_run,
    write_trainer_state,
)

FORMATS = ("tensorboard", "keras_csv", "lightning", "hf", "mlflow", "csv", "jsonl")
T0 = 1_700_000_000.0  # wall time of step 0
DT = 0.05             # seconds per step
TORN_ONE_IN = 8       # one TensorBoard / CSV run in 8 ends in a torn write (killed job)
TB_STYLES = (
    {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train",
     "val_acc": "accuracy/val", "lr": "lr", "grad_norm": "grad_norm"},
    {"train_loss": "train/loss", "val_loss": "val/loss", "train_acc": "train/acc",
     "val_acc": "val/acc", "lr": "train/lr", "grad_norm": "train/grad_norm"},
    {"train_loss": "train_loss", "val_loss": "val_loss", "train_acc": "train_acc",
     "val_acc": "val_acc", "lr": "lr-Adam", "grad_norm": "grad_norm"},
)


def format_of(run_id: str) -> str:
    """The log family a run is rendered in: a stable hash of its id."""
    return FORMATS[zlib.crc32(run_id.encode()) % len(FORMATS)]


def _pick(run_id: str, salt: str, n: int) -> int:
    """A stable per-run choice among n options (tag style, hparams or not, ...)."""
    return zlib.crc32(f"{run_id}/{salt}".encode()) % n


def hparams(rec: dict[str, Any], with_classes: bool) -> dict[str, Any]:
    """What a training script would record about itself."""
    c = rec["config"]
    hp: dict[str, Any] = {
        "learning_rate": c["lr"], "batch_size": c["batch_size"],
        "optimizer": {"sgd": "SGD", "sgd_momentum": "SGD", "adam": "Adam", "adamw": "AdamW",
                      "rmsprop": "RMSprop"}[c["optimizer"]],
        "weight_decay": c["weight_decay"], "momentum": c["momentum"], "dropout": c["dropout"],
        "epochs": c["epochs"], "lr_schedule": c["schedule"]["kind"],
    }
    if with_classes and c.get("n_classes"):
        hp["num_classes"] = c["n_classes"]
    return hp


#: the normalization layers each model family has (a script records its model's config)
NORMALIZATION = {"mlp_bn": "batchnorm", "cnn_bn": "batchnorm", "cnn_gn": "groupnorm",
                 "transformer": "layernorm"}


def model_hparams(rec: dict[str, Any], with_classes: bool) -> dict[str, Any]:
    """:func:`hparams` plus the model's normalization, which half of the scripts that
    record their configuration record (a stable per-run choice)."""
    hp = hparams(rec, with_classes)
    if _pick(rec["id"], "norm", 2):
        hp["normalization"] = NORMALIZATION.get(rec["config"]["arch"], "none")
    return hp


def points(rec: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Every logged series as (step, value) pairs."""
    out = {}
    for name in rec["series"]:
        steps, values = store.series(rec, name) or ([], [])
        out[name] = list(zip(steps, values, strict=True))
    return out


def by_epoch(rec: dict[str, Any], pts: Iterable[tuple[int, float]],
             mean: bool) -> dict[int, float]:
    """Per-epoch values (0-based epoch of each step): mean of the epoch, or its last value.

    A mean over an epoch holding a NaN is NaN, as a running average would be.
    """
    spe = rec["config"]["steps_per_epoch"]
    groups: dict[int, list[float]] = {}
    for s, v in pts:
        groups.setdefault(max(0, (s - 1) // spe), []).append(v)
    return {e: (sum(vs) / len(vs) if mean else vs[-1]) for e, vs in groups.items()}


# ---------------------------------------------------------------------------
# One writer per family
# ---------------------------------------------------------------------------


def write_tensorboard(rec: dict[str, Any], out: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    style = TB_STYLES[_pick(rec["id"], "tb", len(TB_STYLES))]
    w = SummaryWriter(log_dir=str(out))
    for name, pts in points(rec).items():
        for s, v in pts:
            w.add_scalar(style[name], v, global_step=s, walltime=T0 + s * DT)
    if _pick(rec["id"], "hp", 3) == 0:
        last = [v for _, v in points(rec).get("val_loss") or points(rec)["train_loss"]][-1]
        hp = {k: v for k, v in model_hparams(rec, True).items() if v is not None}
        w.add_hparams(hp, {"hparam/final_loss": last}, run_name=str(T0))
    w.close()
    normalize_event_files(out, DT)  # fixed names and wall times: byte-reproducible
    if _pick(rec["id"], "torn", TORN_ONE_IN) == 0:  # a job killed mid-write
        (event,) = (p for p in out.iterdir() if p.name.startswith("events.out.tfevents"))
        data = event.read_bytes()
        event.write_bytes(data[: len(data) - 7])


def write_keras_csv(rec: dict[str, Any], out: Path) -> None:
    pts = points(rec)
    per = {"loss": by_epoch(rec, pts["train_loss"], True)}
    if "train_acc" in pts:
        per["accuracy"] = by_epoch(rec, pts["train_acc"], True)
    if "val_loss" in pts:
        per["val_loss"] = by_epoch(rec, pts["val_loss"], False)
    if "val_acc" in pts:
        per["val_accuracy"] = by_epoch(rec, pts["val_acc"], False)
    if "lr" in pts and _pick(rec["id"], "lr", 2):
        per["learning_rate"] = by_epoch(rec, pts["lr"], False)
    epochs = sorted(per["loss"])
    names = list(per)

    def logs_for(epoch: int) -> dict[str, float]:
        return {k: per[k][epoch] for k in names if epoch in per[k]}

    out.mkdir(parents=True, exist_ok=True)
    name = ("training.log", "history.csv", "log.csv")[_pick(rec["id"], "kname", 3)]
    logger = KerasCSVLogger(out / name, metrics_names=names)
    keras_fit(logger, epochs, logs_for)


def write_lightning(rec: dict[str, Any], out: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    spe = rec["config"]["steps_per_epoch"]
    logger = CSVLogger(save_dir=str(out), name="lightning_logs", version=0)
    logger.log_hyperparams(model_hparams(rec, bool(_pick(rec["id"], "ncls", 2))))
    pts = points(rec)
    per_step = rec["config"]["train_log"] == "step"
    names = {"train_loss": "train_loss", "train_acc": "train_acc", "val_loss": "val_loss",
             "val_acc": "val_acc", "lr": "lr-" + hparams(rec, False)["optimizer"],
             "grad_norm": "grad_norm"}
    rows: dict[tuple[int, str], dict[str, float]] = {}
    for name, series in pts.items():
        kind = "val" if name.startswith("val") else "train"
        for s, v in series:
            rows.setdefault((s - 1, kind), {})[names[name]] = v
    for (step, kind), metrics in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        key = "_step" if per_step and kind == "train" else ""
        metrics = {(k + key if k in ("train_loss", "train_acc") else k): v
                   for k, v in metrics.items()}
        logger.log_metrics({**metrics, "epoch": max(0, step // spe)}, step=step)
    logger.save()


def write_hf(rec: dict[str, Any], out: Path) -> None:
    c = rec["config"]
    spe = c["steps_per_epoch"]
    pts = points(rec)
    hist: dict[tuple[int, int], dict[str, Any]] = {}
    train_keys = {"train_loss": "loss", "lr": "learning_rate", "grad_norm": "grad_norm"}
    for name, series in pts.items():
        for s, v in series:
            if name in train_keys:
                hist.setdefault((s, 0), {})[train_keys[name]] = v
            elif name == "val_loss":
                hist.setdefault((s, 1), {})["eval_loss"] = v
            elif name == "val_acc":
                hist.setdefault((s, 1), {})["eval_accuracy"] = v
    log_history = []
    for (s, kind), entry in sorted(hist.items()):
        entry = {**entry, "epoch": round(s / spe, 4), "step": s}
        if kind == 1:
            entry.update({"eval_runtime": 0.5, "eval_samples_per_second": 100.0,
                          "eval_steps_per_second": 4.0})
        log_history.append(entry)
    losses = [v for _, v in pts["train_loss"]]
    log_history.append({"epoch": round(c["total_steps"] / spe, 4), "step": c["total_steps"],
                        "total_flos": 1.0e12, "train_loss": sum(losses) / len(losses),
                        "train_runtime": 10.0, "train_samples_per_second": 100.0,
                        "train_steps_per_second": 10.0})
    out.mkdir(parents=True, exist_ok=True)
    log_every = c["log_every"] if c["train_log"] == "step" else spe
    write_trainer_state(out / "trainer_state.json", log_history,
                        global_step=c["total_steps"], max_steps=c["total_steps"],
                        num_train_epochs=c["epochs"], logging_steps=log_every,
                        eval_steps=spe * c["val_every"], train_batch_size=c["batch_size"])


def write_mlflow(rec: dict[str, Any], out: Path) -> None:
    names = {"train_loss": "train_loss", "val_loss": "val_loss", "train_acc": "train_acc",
             "val_acc": "val_acc", "lr": "lr", "grad_norm": "grad_norm"}
    metrics = {names[k]: [(int((T0 + s * DT) * 1000), v, s) for s, v in pts]
               for k, pts in points(rec).items()}
    params = {k: str(v) for k, v in model_hparams(rec, False).items()}
    run = write_mlflow_run(out, metrics, params, run_name=rec["id"],
                           run_id=f"{zlib.crc32(rec['id'].encode()):08x}" * 4)
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    meta["start_time"] = int(T0 * 1000)  # the fixture stamps the current time
    meta["end_time"] = int((T0 + rec["config"]["total_steps"] * DT) * 1000)
    (run / "meta.yaml").write_text(yaml.safe_dump(meta, default_flow_style=False))


def _wide_rows(rec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    pts = points(rec)
    spe = rec["config"]["steps_per_epoch"]
    rows: dict[int, dict[str, Any]] = {}
    for name, series in pts.items():
        for s, v in series:
            rows.setdefault(s, {"step": s, "epoch": max(0, (s - 1) // spe)})[name] = v
    cols = ["step", "epoch", *sorted(pts)]
    return cols, [rows[s] for s in sorted(rows)]


def _drop_epoch(cols: list[str], rows: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
    return [c for c in cols if c != "epoch"], [{k: v for k, v in r.items() if k != "epoch"}
                                                for r in rows]


def write_csv(rec: dict[str, Any], out: Path) -> None:
    cols, rows = _drop_epoch(*_wide_rows(rec))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics_log.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)  # empty cell where a series did not log
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    if _pick(rec["id"], "torn", TORN_ONE_IN) == 0:  # a job killed mid-write: half a line
        data = (out / "metrics_log.csv").read_bytes()
        cut = data.rstrip(b"\n").rfind(b"\n") + 1
        (out / "metrics_log.csv").write_bytes(data[: cut + (len(data) - cut) // 2])
    if _pick(rec["id"], "cfg", 2):
        hp = model_hparams(rec, bool(_pick(rec["id"], "ncls", 2)))
        (out / "config.json").write_text(json.dumps(hp, indent=2, sort_keys=True) + "\n")


def write_jsonl(rec: dict[str, Any], out: Path) -> None:
    _, rows = _wide_rows(rec)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, sort_keys=True) + "\n")  # NaN stays a bare NaN


WRITERS = {"tensorboard": write_tensorboard, "keras_csv": write_keras_csv,
           "lightning": write_lightning, "hf": write_hf, "mlflow": write_mlflow,
           "csv": write_csv, "jsonl": write_jsonl}


def render(rec: dict[str, Any], root: Path, fmt: str | None = None) -> Path:
    """Write one run under ``root/<format>/<id>``; returns that folder."""
    fmt = fmt or format_of(rec["id"])
    out = root / fmt / rec["id"]
    if out.exists():
        shutil.rmtree(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        WRITERS[fmt](rec, out)
    return out


def render_all(records: Iterable[dict[str, Any]], root: Path) -> dict[str, str]:
    """Render every record; returns id -> format."""
    formats = {}
    for rec in records:
        fmt = format_of(rec["id"])
        render(rec, root, fmt)
        formats[rec["id"]] = fmt
    return formats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render stored runs as log files.")
    ap.add_argument("out", type=Path)
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--ids", nargs="*", help="only these run ids")
    args = ap.parse_args(argv)
    recs = store.load(args.store)
    if args.ids:
        recs = [r for r in recs if r["id"] in set(args.ids)]
    formats = render_all(recs, args.out)
    print(f"wrote {len(formats)} runs under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
