"""Every non-TensorBoard log family -> Run: real writers, real files, damaged files."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.discover import discover
from diagnose.ingest import load_run
from diagnose.ingest.csv_logs import LogReadError, load_csv, sniff_csv
from diagnose.ingest.hf_trainer import load_trainer_state
from diagnose.ingest.jsonl import load_jsonl, sniff_jsonl
from diagnose.ingest.keras_history import load_keras_history, sniff_keras_history
from diagnose.ingest.mlflow_store import load_mlflow
from diagnose.ingest.sidecars import SIDECAR_NAMES, PlainSafeLoader, read_sidecars
from diagnose.metrics import Role, RoleMap, resolve_roles
from diagnose.run import SCALAR_COLUMNS, Run
from diagnose.sources import RunSource, SourceFile
from tests.fixtures_csv_family import (
    V5_KEYS,
    V8_KEYS,
    KerasCSVLogger,
    d2_train_record,
    keras_fit,
    write_d2_records,
    write_keras_history,
    write_lightning_run,
    write_mlflow_run,
    write_trainer_state,
    write_yolov5_epoch,
    write_yolov8_epoch,
)
from tests.shared_data import needs, shared

REAL = shared("real_logs")
REAL_EXTRA4 = Path(__file__).resolve().parent.parent / "bench" / "real_extra4"
REAL_EXTRA5 = Path(__file__).resolve().parent.parent / "bench" / "real_extra5"


def _source(path: Path) -> RunSource:
    return RunSource(run_id=path.parent.name, path=path.parent)


def load(path: Path, kind: str | None = None) -> Run:
    """Route a file the way the dispatcher does: by the sniffers."""
    path = Path(path)
    if kind is None:
        if path.is_dir():
            kind = "mlflow"
        elif path.name == "trainer_state.json":
            kind = "hf_trainer_state"
        elif sniff_jsonl(path):
            kind = "jsonl"
        elif sniff_keras_history(path):
            kind = "keras_history"
        else:
            kind = sniff_csv(path) or "csv"
    file = SourceFile(path, kind)
    loader = {
        "mlflow": load_mlflow,
        "hf_trainer_state": load_trainer_state,
        "jsonl": load_jsonl,
        "keras_history": load_keras_history,
    }.get(kind, load_csv)
    run = loader(_source(path), file)
    check_run_shape(run)
    return run


def load_whole(folder: Path) -> Run:
    """The run in ``folder`` as ``diagnose`` reads it: discovered, every file merged."""
    sources, errors = discover([str(folder)])
    assert len(sources) == 1 and not errors
    run = load_run(sources[0])
    check_run_shape(run)
    return run


def check_run_shape(run: Run) -> None:
    """The contract every loader must keep, whatever it read."""
    df = run.scalars
    assert tuple(df.columns) == SCALAR_COLUMNS
    assert str(df["step"].dtype) == "int64"
    assert str(df["value"].dtype) == "float64"
    assert set(df["split"].dropna().unique()) <= {"train", "val", "test", "other"}
    assert df["metric"].notna().all()
    assert run.sources


def values(run: Run, tag: str) -> list[float]:
    return run.series(tag)["value"].tolist()


def steps(run: Run, tag: str) -> list[int]:
    return run.series(tag)["step"].tolist()


def codes(run: Run) -> set[str]:
    return {n.code for n in run.notes}


# ---------------------------------------------------------------------------
# Lightning (real CSVLogger)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightning_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lightning_run(tmp_path_factory.mktemp("pl"), max_epochs=3)


def test_lightning_metrics_csv(lightning_dir: Path) -> None:
    path = lightning_dir / "metrics.csv"
    assert sniff_csv(path) == "lightning_csv"
    run = load(path)
    assert run.format == "lightning_csv"
    # 64 samples / batch 16 = 4 optimizer steps per epoch, 3 epochs, log_every_n_steps=1.
    assert steps(run, "train_loss_step") == list(range(12))
    assert steps(run, "train_loss_epoch") == [3, 7, 11]
    assert steps(run, "val_loss") == [3, 7, 11]
    assert values(run, "epoch") == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.VAL_LOSS).tag == "val_loss"
    assert roles.get(Role.TRAIN_LOSS).metric == "loss"
    assert roles.get(Role.VAL_METRIC).tag == "val_acc"
    # Sparse rows: no empty cell became a point.
    assert run.scalars["value"].notna().all()
    assert not codes(run) - {"duplicate_steps"}


def test_lightning_val_epoch_mean_wins_over_its_per_batch_twin(tmp_path: Path) -> None:
    """``self.log("val_loss", on_step=True, on_epoch=True)``: the val roles are the
    epoch's means (what Lightning calls the val loss), not the longer per-batch series;
    the train loss keeps its per-step series."""
    run = load(write_lightning_run(tmp_path, max_epochs=3, val_on_step=True) / "metrics.csv")
    # 32 val samples / batch 16 = 2 val batches per epoch, 3 epochs
    assert len(values(run, "val_loss_step")) == 6
    assert steps(run, "val_loss_epoch") == [3, 7, 11]
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.VAL_LOSS).tag == "val_loss_epoch"
    assert roles.get(Role.VAL_METRIC).tag == "val_acc_epoch"
    assert roles.get(Role.TRAIN_LOSS).tag == "train_loss_step"


def test_lightning_hparams_yaml(lightning_dir: Path) -> None:
    raw, notes = read_sidecars([lightning_dir / "hparams.yaml"])
    assert raw == {"hidden": 8, "lr": 0.05, "weight_decay": 0.0001}
    assert notes == []


def test_lightning_columns_in_any_order_and_dataloader_idx(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "val_loss/dataloader_idx_1,step,val_loss/dataloader_idx_0,loss,epoch\n"
        ",0,,1.5,0\n"
        "0.9,1,0.8,,0\n"
        ",,,1.2,1\n"  # a row without a step: its epoch is the step
    )
    run = load(path)
    assert run.format == "lightning_csv"
    assert steps(run, "val_loss/dataloader_idx_0") == [1]
    assert values(run, "val_loss/dataloader_idx_1") == [0.9]
    assert steps(run, "loss") == [0, 1]
    assert run.series("val_loss/dataloader_idx_0")["split"].tolist() == ["val"]


# ---------------------------------------------------------------------------
# Keras CSVLogger
# ---------------------------------------------------------------------------


def _keras_logs(epoch: int, offset: float = 0.0) -> dict[str, float]:
    return {
        "accuracy": 0.5 + 0.1 * epoch + offset,
        "loss": 1.0 / (epoch + 1) + offset,
        "val_accuracy": 0.4 + 0.1 * epoch + offset,
        "val_loss": 1.2 / (epoch + 1) + offset,
    }


def test_keras_csvlogger_layout(tmp_path: Path) -> None:
    path = tmp_path / "training.log"
    logger = KerasCSVLogger(path)
    keras_fit(logger, range(4), _keras_logs)
    raw = path.read_bytes()
    assert raw.startswith(b"epoch,accuracy,loss,val_accuracy,val_loss\r\n")
    assert sniff_csv(path) == "keras_csv"
    run = load(path)
    assert run.format == "keras_csv"
    assert steps(run, "val_loss") == [0, 1, 2, 3]
    assert values(run, "loss") == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert "epoch" not in run.tags
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.VAL_LOSS).tag == "val_loss"
    assert roles.get(Role.TRAIN_METRIC).tag == "accuracy"
    assert run.notes == []


def test_keras_na_iterables_and_validation_freq(tmp_path: Path) -> None:
    """validation_freq=2: val columns exist from epoch 0 but hold NA; lists are skipped."""
    path = tmp_path / "history.csv"
    logger = KerasCSVLogger(path, metrics_names=["loss", "val_loss"])

    def logs(epoch: int) -> dict:
        out: dict = {"loss": 1.0 - 0.1 * epoch, "per_class": np.array([0.1, 0.2])}
        if epoch % 2 == 1:
            out["val_loss"] = 2.0 - 0.1 * epoch
        return out

    keras_fit(logger, range(4), logs)
    text = path.read_bytes().decode()
    assert ",NA\r\n" in text and '"""[0.1, 0.2]"""' in text
    run = load(path)
    assert steps(run, "val_loss") == [1, 3]
    assert "per_class" not in run.tags
    unsupported = [n for n in run.notes if n.code == "unsupported"]
    assert unsupported and unsupported[0].details["columns"] == {"per_class": 4}


def test_keras_append_resume_keeps_last_block(tmp_path: Path) -> None:
    path = tmp_path / "training.log"
    keras_fit(KerasCSVLogger(path, append=True), range(5), _keras_logs)  # dies after epoch 4
    # Resumed from the epoch-2 checkpoint: epochs 2..5 again, no second header.
    keras_fit(KerasCSVLogger(path, append=True), range(2, 6), lambda e: _keras_logs(e, 0.01))
    assert path.read_text().count("epoch,") == 1
    run = load(path)
    assert steps(run, "loss") == [0, 1, 2, 3, 4, 5]
    expected = [_keras_logs(0)["loss"], _keras_logs(1)["loss"]] + [
        _keras_logs(e, 0.01)["loss"] for e in range(2, 6)
    ]
    assert values(run, "loss") == pytest.approx(expected)
    restart = [n for n in run.notes if n.code == "restart"]
    assert len(restart) == 1 and restart[0].step == 2
    assert restart[0].details["superseded_points"] == 3 * 4


def test_keras_custom_separator(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    keras_fit(KerasCSVLogger(path, separator=";"), range(3), _keras_logs)
    run = load(path)
    assert run.format == "keras_csv"
    assert len(values(run, "val_accuracy")) == 3


def _tag(roles: RoleMap, role: Role) -> str:
    series = roles.get(role)
    assert series is not None, role
    return series.tag


def test_title_line_above_a_semicolon_header_is_skipped_with_a_note() -> None:
    # a real Keras history (bench/real_extra4): "model_history_log" above an
    # "epoch;accuracy;loss;..." header; it was not discovered at all before
    path = REAL_EXTRA4 / "keras_speechdigit_17ep_semicolon" / "model_history_log.csv"
    assert sniff_csv(path) == "keras_csv"
    run = load(path)
    roles = resolve_roles(run.scalars)
    assert _tag(roles, Role.TRAIN_LOSS) == "loss" and _tag(roles, Role.VAL_LOSS) == "val_loss"
    assert values(run, "val_accuracy")[0] == pytest.approx(0.7954785823822021)
    assert any("title line" in n.message and "model_history_log" in n.message
               for n in run.notes)


def test_a_stage_prefix_before_the_split_word_keeps_train_and_val_apart() -> None:
    # a real Keras history (bench/real_extra5): every column carries a "phase1_" prefix;
    # phase1_val_loss was read as a second train loss and summed into it
    run = load(REAL_EXTRA5 / "keras_car_15ep_nearchance" / "training_history.csv")
    roles = resolve_roles(run.scalars)
    assert _tag(roles, Role.TRAIN_LOSS) == "phase1_loss"
    assert _tag(roles, Role.VAL_LOSS) == "phase1_val_loss"
    assert _tag(roles, Role.VAL_METRIC) == "phase1_val_accuracy"
    assert values(run, "phase1_loss")[0] == pytest.approx(1.9929109811782837)


def test_a_running_best_column_is_not_a_curve() -> None:
    # a real PyTorch script's history (bench/real_extra5): best_auc is the best val AUC so
    # far, flat between improvements; it was read as the train metric
    run = load(REAL_EXTRA5 / "csv_intrusion_100ep_spike" / "history.csv")
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.TRAIN_METRIC) is None
    assert _tag(roles, Role.VAL_METRIC) in ("val_auc", "val_f1")
    assert set(run.scalars.loc[run.scalars["tag"] == "best_auc", "split"]) == {"other"}


def test_rows_within_an_epoch_without_a_step_column_are_all_kept() -> None:
    # a real Lightning 0.5 metrics.csv (bench/real_extra5): no step column, 8 train rows
    # and one val row per epoch; keeping one point per epoch dropped 7 of every 8 losses
    run = load(REAL_EXTRA5 / "pl05_exoplanet_6ep_prior" / "metrics.csv")
    train = values(run, "train_loss")
    assert len(train) == 50 and train[:2] == pytest.approx([0.6907290816307068,
                                                            0.19547614455223083])
    assert len(values(run, "val_loss")) == 6
    assert steps(run, "train_loss") == sorted(set(steps(run, "train_loss")))
    assert "duplicate_steps" not in codes(run) and "steps_from_rows" in codes(run)


def test_rows_wider_than_their_header_are_read_without_the_unnamed_column() -> None:
    # a real training script's log (bench/real_extra5): "epoch;loss" over rows of three
    # fields (a val loss the header never named), after five rows of an aborted start;
    # the run was not discovered at all
    path = REAL_EXTRA5 / "csv_deepfake_12ep_semicolon_unnamedval" / "train_log.csv"
    assert sniff_csv(path) is None and sniff_csv(path, named_log=True) == "keras_csv"
    run = load(path)
    assert values(run, "loss")[:2] == pytest.approx([0.06948393611230509, 0.038730705378647166])
    assert len(values(run, "loss")) == 12 and set(run.scalars["tag"]) == {"loss"}
    assert "skipped_columns" in codes(run) and "skipped_rows" in codes(run)


def test_a_table_wider_than_its_header_needs_most_rows_to_agree(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n0,1.0,7\n1,0.5,7\n2,0.4\n3,0.3\n4,0.2\n")
    assert len(values(load(path), "loss")) == 3  # two wide rows among five: skipped


def test_title_lines_are_bounded(tmp_path: Path) -> None:
    # three separator-free lines above a table is prose, not a title: not a log
    path = tmp_path / "log.csv"
    path.write_text("a\nb\nc\nepoch,loss\n0,1.0\n1,0.5\n")
    assert sniff_csv(path) is None
    path.write_text("my run\nepoch,loss\n0,1.0\n1,0.5\n")
    assert sniff_csv(path) == "keras_csv"


# ---------------------------------------------------------------------------
# Ultralytics
# ---------------------------------------------------------------------------


def test_yolov10_dual_head_losses_are_the_loss() -> None:
    # a real YOLOv10 results.csv (bench/real_extra4): box/cls/dfl losses of the
    # one-to-many (_om) and one-to-one (_oo) heads, no column named "loss"
    run = load(REAL_EXTRA4 / "yolov10_dualhead_15ep_padded" / "results.csv")
    roles = resolve_roles(run.scalars)
    parts = [f"{split}/{c}_{h}" for split in ("train",) for c in ("box", "cls", "dfl")
             for h in ("om", "oo")]
    assert sorted(_tag(roles, Role.TRAIN_LOSS).split("+")) == sorted(parts)
    assert _tag(roles, Role.VAL_LOSS).startswith("val/box_om+")
    assert _tag(roles, Role.VAL_METRIC) == "metrics/mAP50-95(B)"


def _yolo_vals(epoch: int, keys: tuple[str, ...]) -> list[float]:
    return [0.1 + 0.01 * i + 0.001 * epoch for i in range(len(keys))]


def test_yolov5_padded_header(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    for epoch in range(3):
        write_yolov5_epoch(path, epoch, _yolo_vals(epoch, V5_KEYS))
    assert path.read_text().startswith("               epoch,      train/box_loss,")
    assert sniff_csv(path) == "ultralytics"
    run = load(path)
    assert run.format == "ultralytics"
    assert set(run.tags) == set(V5_KEYS)
    assert steps(run, "val/obj_loss") == [0, 1, 2]
    assert values(run, "x/lr0") == pytest.approx([0.1 + 0.01 * 10 + 0.001 * e for e in range(3)])
    assert run.scalars["wall_time"].isna().all()
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.LR) is not None
    assert roles.get(Role.VAL_METRIC).metric.startswith("map")


def test_yolov8_time_is_wall_time(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    for epoch in range(4):
        write_yolov8_epoch(path, epoch, 5.5 * (epoch + 1), _yolo_vals(epoch, V8_KEYS))
    run = load(path)
    assert run.format == "ultralytics"
    assert "time" not in run.tags and set(run.tags) == set(V8_KEYS)
    assert steps(run, "train/box_loss") == [1, 2, 3, 4]  # 1-based, as written
    assert run.series("lr/pg0")["wall_time"].tolist() == pytest.approx([5.5, 11, 16.5, 22])
    assert run.series("metrics/mAP50(B)")["split"].tolist() == ["val"] * 4


def test_ultralytics_resume_repeats_epochs(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    for epoch in range(4):
        write_yolov8_epoch(path, epoch, float(epoch), _yolo_vals(epoch, V8_KEYS))
    for epoch in range(2, 5):
        write_yolov8_epoch(path, epoch, 100.0 + epoch, _yolo_vals(epoch, V8_KEYS))
    run = load(path)
    assert steps(run, "lr/pg0") == [1, 2, 3, 4, 5]
    assert run.series("lr/pg0")["wall_time"].tolist() == [0, 1, 102, 103, 104]
    assert "restart" in codes(run)


# ---------------------------------------------------------------------------
# Hugging Face trainer_state.json
# ---------------------------------------------------------------------------


def _hf_history() -> list[dict]:
    return [
        {"epoch": 0.5, "grad_norm": 3.2, "learning_rate": 4e-5, "loss": 2.1, "step": 10},
        {
            "epoch": 1.0,
            "eval_accuracy": 0.6,
            "eval_loss": 1.9,
            "eval_runtime": 1.5,
            "eval_samples_per_second": 100.0,
            "eval_steps_per_second": 12.5,
            "step": 20,
        },
        {
            "epoch": 1.0,
            "grad_norm": float("inf"),
            "learning_rate": 3e-5,
            "loss": float("nan"),
            "step": 20,
        },
        {
            "epoch": 1.5,
            "grad_norm": float("nan"),
            "learning_rate": 2e-5,
            "loss": float("nan"),
            "step": 30,
        },
        {
            "epoch": 1.5,
            "step": 30,
            "total_flos": 1e12,
            "train_loss": 0.7,
            "train_runtime": 12.0,
            "train_samples_per_second": 50.0,
            "train_steps_per_second": 2.5,
        },
    ]


def test_trainer_state_nan_and_summary(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    write_trainer_state(path, _hf_history(), trial_params={"learning_rate": 5e-5, "seed": 3})
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    run = load(path)
    assert run.format == "hf_trainer_state"
    assert steps(run, "loss") == [10, 20, 30]
    loss = values(run, "loss")
    assert loss[0] == 2.1 and math.isnan(loss[1]) and math.isnan(loss[2])
    assert values(run, "grad_norm")[1] == math.inf
    # The summary's train_loss is bookkeeping, not a point of the train loss.
    summary = run.series("summary/train_loss")
    assert summary["value"].tolist() == [0.7] and summary["split"].tolist() == ["other"]
    assert "train_loss" not in run.tags
    roles = resolve_roles(run.scalars)
    assert [s.tag for s in roles.candidates(Role.TRAIN_LOSS)] == ["loss"]
    assert roles.get(Role.VAL_LOSS).tag == "eval_loss"
    assert roles.get(Role.GRAD_NORM).tag == "grad_norm"
    assert all(s.tag == "loss" for s in roles.losses("train"))
    # Epoch is kept as bookkeeping only.
    assert set(run.series("epoch")["split"]) == {"other"}
    assert run.hparams["learning_rate"] == 5e-5
    assert run.hparams["batch_size"] == 8 and run.hparams["epochs"] == 2
    assert run.raw_hparams["seed"] == 3


def test_trainer_state_truncated_is_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    write_trainer_state(path, _hf_history())
    text = path.read_text()
    cut = text.index('"train_runtime"')  # killed while writing the last entry
    path.write_text(text[:cut])
    run = load(path)
    assert "truncated" in codes(run)
    assert steps(run, "loss") == [10, 20, 30]


@pytest.mark.parametrize("content", ["", "{", '{"log_history": 3}', "[1, 2]"])
def test_trainer_state_unreadable(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(content)
    with pytest.raises(LogReadError):
        load(path)


# ---------------------------------------------------------------------------
# MLflow file store
# ---------------------------------------------------------------------------


def test_mlflow_run_folder(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000
    run_dir = write_mlflow_run(
        tmp_path,
        metrics={
            "train/loss": [(t0 + i * 1000, 1.0 / (i + 1), i) for i in range(5)],
            "val_loss": [(t0 + 4000, 0.9, 4), (t0 + 9000, float("nan"), 9)],
            "lr": [(t0, 0.1, 0), (t0 + 100, 0.05, 0), (t0 + 200, 0.01, 0)],
        },
        params={"learning_rate": "0.1", "batch_size": "32", "optimizer": "adam"},
        run_name="clever-fox",
        status=5,
    )
    run = load(run_dir)
    assert run.format == "mlflow"
    assert steps(run, "train/loss") == [0, 1, 2, 3, 4]
    assert run.series("train/loss")["wall_time"].tolist()[1] == pytest.approx(t0 / 1000 + 1)
    assert math.isnan(values(run, "val_loss")[1])
    assert run.hparams == {"learning_rate": 0.1, "batch_size": 32, "optimizer": "adam"}
    assert steps(run, "lr") == [0, 1, 2] and values(run, "lr") == [0.1, 0.05, 0.01]
    assert "unsupported" in codes(run)  # the stepless lr is named in a note
    status = [n for n in run.notes if n.code == "run_status"]
    assert status and "KILLED" in status[0].message and "clever-fox" in status[0].message


def test_mlflow_two_field_lines_and_truncation(tmp_path: Path) -> None:
    run_dir = write_mlflow_run(tmp_path, metrics={"loss": [(1000, 0.5, 0)]})
    metric = run_dir / "metrics" / "loss"
    # Old clients wrote "ts value"; a killed job leaves a cut last line; junk is counted.
    metric.write_text("1000 0.5\n2000 0.4\n3000 junk 2\n4000 0.3 3\n5000 0.")
    run = load(run_dir)
    # 2-field lines are step 0 (MLflow's reader does the same); the later one wins.
    assert steps(run, "loss") == [0, 3]
    assert values(run, "loss") == [0.4, 0.3]
    assert {"truncated", "bad_value", "duplicate_steps"} <= codes(run)


def test_mlflow_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(LogReadError):
        load_mlflow(_source(tmp_path / "x"), SourceFile(tmp_path, "mlflow"))


# ---------------------------------------------------------------------------
# detectron2 metrics.json
# ---------------------------------------------------------------------------


def test_d2_restart_and_eval_records(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_d2_records(
        path, [d2_train_record(19, 2.0), d2_train_record(39, 1.8), d2_train_record(59, 1.6)]
    )
    # Crash, resume from the iteration-19 checkpoint: iterations 39.. are logged again.
    write_d2_records(
        path, [d2_train_record(39, 1.5), d2_train_record(59, 1.4), d2_train_record(79, 1.3)]
    )
    write_d2_records(path, [{"bbox/AP": 31.5, "bbox/AP50": 52.0, "iteration": 79}])
    assert sniff_jsonl(path)
    run = load(path)
    assert run.format == "jsonl"
    assert steps(run, "total_loss") == [19, 39, 59, 79]
    assert values(run, "total_loss") == pytest.approx([2.0, 1.5, 1.4, 1.3])
    restart = [n for n in run.notes if n.code == "restart"]
    assert len(restart) == 1 and restart[0].step == 39
    assert run.series("bbox/AP")["split"].tolist() == ["val"]
    assert steps(run, "bbox/AP") == [79]
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.TRAIN_LOSS).tag == "total_loss"
    assert roles.get(Role.LR).tag == "lr"


def test_jsonl_truncated_and_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_d2_records(path, [d2_train_record(i, 1.0 / (i + 1)) for i in range(5)])
    with open(path, "a") as f:
        f.write("garbage\n")
        f.write(json.dumps(d2_train_record(5, 0.1)) + "\n")
        f.write('{"iteration": 6, "total_lo')
    run = load(path)
    assert steps(run, "total_loss") == [0, 1, 2, 3, 4, 5]
    assert {"truncated", "corrupt_record"} <= codes(run)


def test_jsonl_nan_kept_and_mode_split(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [
        {"mode": "train", "iter": 10, "loss": 0.9, "lr": 0.1},
        {"mode": "train", "iter": 20, "loss": float("nan"), "lr": 0.1},
        {"mode": "val", "iter": 20, "accuracy": 0.5},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = load(path)
    assert math.isnan(values(run, "loss")[1])
    assert run.series("accuracy")["split"].tolist() == ["val"]
    assert "bad_value" not in codes(run)


def test_jsonl_per_epoch_iteration_counter(tmp_path: Path) -> None:
    """mmdet-style ``iter`` restarts each epoch: not a restart, a two-level counter."""
    path = tmp_path / "20240101.log.json"
    lines = [
        {"mode": "train", "epoch": e, "iter": i, "loss": 1.0 / (e * 10 + i)}
        for e in (1, 2)
        for i in (50, 100)
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = load(path)
    assert steps(run, "loss") == [150, 200, 250, 300]
    assert "restart" not in codes(run)


# ---------------------------------------------------------------------------
# Keras history.json
# ---------------------------------------------------------------------------


def test_history_json_plain_with_nan(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    write_keras_history(
        path,
        {
            "loss": [1.0, 0.5, float("nan")],
            "val_loss": [1.1, 0.7, 0.9],
            "accuracy": [0.1, 0.5, 0.6],
        },
    )
    assert "NaN" in path.read_text()
    assert sniff_keras_history(path)
    run = load(path)
    assert run.format == "keras_history"
    assert steps(run, "loss") == [0, 1, 2]
    assert math.isnan(values(run, "loss")[2])
    assert resolve_roles(run.scalars).get(Role.VAL_LOSS).tag == "val_loss"


def test_history_json_wrapped_and_validation_freq(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    write_keras_history(
        path,
        {
            "history": {"loss": [4, 3, 2, 1], "val_loss": [3.5, 1.5]},
            "params": {"epochs": 4, "steps": 100, "verbose": 1},
        },
    )
    run = load(path)
    assert steps(run, "val_loss") == [1, 3]
    assert run.hparams["epochs"] == 4
    assert "unsupported" in codes(run)


def test_history_json_ptycho_layout(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    write_keras_history(
        path,
        {
            "epochs": [0.0, 1.0, 2.0],
            "metrics": {
                "loss": [-3.9e6, float("nan"), float("nan")],
                "val_loss": [-4.1e6, -4.2e6, float("nan")],
            },
        },
    )
    run = load(path)
    assert steps(run, "val_loss") == [0, 1, 2]
    assert values(run, "loss")[0] == -3.9e6


@pytest.mark.parametrize(
    "content",
    [
        '{"classes": ["cat", "dog"]}',
        '{"ids": [1, 2, 3]}',
        '{"log_history": [{"loss": 1}]}',
        "[1, 2, 3]",
        '{"best_metric": 0.5, "epoch": 3}',
    ],
)
def test_history_sniff_rejects_other_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    assert not sniff_keras_history(path)
    assert not sniff_jsonl(path)


# ---------------------------------------------------------------------------
# Sidecars
# ---------------------------------------------------------------------------


def test_malicious_yaml_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "hparams.yaml"
    path.write_text(
        f'cmd: !!python/object/apply:os.system ["touch {marker}"]\n'
        f'new: !!python/object/new:os.system ["touch {marker}"]\n'
        "args: !!python/object:argparse.Namespace {lr: 0.1, batch_size: 16}\n"
        "dtype: !!python/name:builtins.float ''\n"
        "shape: !!python/tuple [3, 4]\n"
        "custom: !OmegaThing {dropout: 0.2}\n"
    )
    raw, notes = read_sidecars([path])
    assert not marker.exists()
    # The loader is SafeLoader's family (SafeConstructor), never Full/Unsafe.
    assert issubclass(PlainSafeLoader, yaml.constructor.SafeConstructor)
    assert not issubclass(PlainSafeLoader, yaml.constructor.FullConstructor)
    assert raw["cmd"] == "<os.system>" and raw["new"] == "<os.system>"
    assert raw["args.lr"] == 0.1 and raw["args.batch_size"] == 16
    assert raw["dtype"] == "<builtins.float>"
    assert raw["shape"] == "[3, 4]"
    assert raw["custom.dropout"] == 0.2
    assert any(n.code == "unsupported" and "nothing constructed" in n.message for n in notes)


def test_sidecars_merge_and_bad_files(tmp_path: Path) -> None:
    opt = tmp_path / "opt.yaml"
    opt.write_text("epochs: 10\nhyp:\n  lr0: 0.01\n  momentum: 0.9\nbatch_size: 16\n")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"batch_size": 32, "optimizer": {"name": "adam"}}))
    broken = tmp_path / "args.yaml"
    broken.write_text("lr: [0.1\n")
    binary = tmp_path / "params.json"
    binary.write_bytes(b"\x00\x01\x02")
    raw, notes = read_sidecars([opt, cfg, broken, binary, tmp_path / "missing.yaml"])
    assert raw == {
        "epochs": 10,
        "hyp.lr0": 0.01,
        "hyp.momentum": 0.9,
        "batch_size": 32,
        "optimizer.name": "adam",
    }
    assert [n.code for n in notes] == ["unreadable", "unreadable", "unreadable"]
    assert {"hparams.yaml", "opt.yaml", "args.yaml", "config.json"} <= set(SIDECAR_NAMES)


def test_yaml_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    lines.append("m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(9)) + "}")
    for i in range(1, 7):
        lines.append(f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(9)) + "}")
    path = tmp_path / "hparams.yaml"
    path.write_text("\n".join(lines) + "\n")
    raw, notes = read_sidecars([path])
    assert len(raw) <= 5000 and all(len(str(v)) < 10_000 for v in raw.values())
    assert "truncated" in {n.code for n in notes}


# ---------------------------------------------------------------------------
# Damaged and odd CSV input
# ---------------------------------------------------------------------------


def test_non_utf8_csv_reads_as_latin1(tmp_path: Path) -> None:
    path = tmp_path / "training.log"
    path.write_bytes(
        "epoch,loss,val_loss,précision\n0,1.0,1.1,0.5\n1,0.8,0.9,0.6\n".encode("latin-1")
    )
    assert sniff_csv(path) == "keras_csv"
    run = load(path)
    assert "encoding" in codes(run)
    assert values(run, "précision") == [0.5, 0.6]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"   \n\n", "empty file"),
        (b"epoch,loss,val_loss\n", "header only"),
        (b"step,name,comment\n0,a,b\n1,c,d\n", "no numeric column"),
        (b"\x00\x01binary\x00", "binary"),
    ],
)
def test_unreadable_csv(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "metrics.csv"
    path.write_bytes(content)
    with pytest.raises(LogReadError, match=message) as info:
        load(path, "csv")
    assert "\n" not in str(info.value)


def test_nan_inf_and_bad_cells(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text('step,loss,acc\n0,1.0,0.1\n1,nan,0.2\n2,inf,oops\n3,-inf,NA\n4,0.5,"[1, 2]"\n')
    run = load(path)
    loss = values(run, "loss")
    assert loss[0] == 1.0 and math.isnan(loss[1]) and loss[2:] == [math.inf, -math.inf, 0.5]
    assert steps(run, "acc") == [0, 1]
    notes = {n.code: n for n in run.notes}
    assert notes["bad_value"].details["columns"] == {"acc": 1}  # "oops"; NA is just missing
    assert notes["unsupported"].details["columns"] == {"acc": 1}  # the list


def test_truncated_last_line(tmp_path: Path) -> None:
    """A killed job leaves the last row without its line end; it is dropped, not misread."""
    path = tmp_path / "training.log"
    keras_fit(KerasCSVLogger(path), range(3), _keras_logs)
    with open(path, "a") as f:
        f.write("3,0.8123,0.2")
    run = load(path)
    assert steps(run, "loss") == [0, 1, 2]
    note = [n for n in run.notes if n.code == "truncated"]
    assert note and "3,0.8123,0.2" in note[0].details["line"]


def test_cut_full_width_last_row_keeps_its_whole_values(tmp_path: Path) -> None:
    """A row cut inside its last cell loses that cell only: its other values are whole."""
    path = tmp_path / "training.log"
    keras_fit(KerasCSVLogger(path), range(4), _keras_logs)
    path.write_bytes(path.read_bytes().rstrip(b"\r\n")[:-1])  # val_loss "0.3" cut to "0."
    run = load(path)
    assert steps(run, "loss") == [0, 1, 2, 3]
    assert values(run, "val_accuracy")[-1] == pytest.approx(0.7)
    assert steps(run, "val_loss") == [0, 1, 2]
    note = [n for n in run.notes if n.code == "truncated"]
    assert note and "may be cut off and was dropped" in note[0].message


def test_short_rows_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n0,1.0\n1\n2,0.8,9\n3,0.7\n")
    run = load(path)
    assert steps(run, "loss") == [0, 3]
    assert any(n.code == "skipped_rows" and n.details.get("rows") == 2 for n in run.notes)


def test_generic_tsv_without_step_uses_row_index(tmp_path: Path) -> None:
    path = tmp_path / "metrics.tsv"
    path.write_text("train_loss\tval_loss\tval_f1\n0.9\t1.0\t0.2\n0.7\t0.8\t0.4\n0.5\t\t0.5\n")
    assert sniff_csv(path) == "csv"
    run = load(path)
    assert run.format == "csv"
    assert steps(run, "val_loss") == [0, 1] and steps(run, "val_f1") == [0, 1, 2]


def test_semicolon_csv_with_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("epoch;loss;val_loss\n0;0,91;1,5\n1;0,5;1,25e-1\n")
    run = load(path)
    assert values(run, "loss") == [0.91, 0.5] and values(run, "val_loss") == [1.5, 0.125]
    assert "bad_value" not in codes(run)


def test_tensorboard_export_csv(tmp_path: Path) -> None:
    path = tmp_path / "run-logs_fit_validation-tag-epoch_loss.csv"
    path.write_text("Wall time,Step,Value\n1700000000.5,0,0.9\n1700000060.5,1,0.7\n")
    run = load(path)
    assert run.tags == ["epoch_loss"]
    assert run.series("epoch_loss")["split"].tolist() == ["val", "val"]
    assert run.series("epoch_loss")["wall_time"].tolist() == [1700000000.5, 1700000060.5]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("README.md", "# Results\n\nWe report loss, accuracy, and F1 here.\nSee below.\n"),
        ("labels.csv", "image_id,label\n1,cat\n2,dog\n"),
        ("preds.csv", "id,pred,score\n1,0,0.9\n2,1,0.3\n"),
        ("train.log", "Epoch 1/10\n100/100 [====] - loss: 0.5 - accuracy: 0.8\n"),
        ("people.csv", "name,age,city\nbob,3,x\n"),
        ("xy.csv", "x,y\n1,2\n3,4\n"),
        ("empty.csv", ""),
        ("numbers.csv", "1,2,3\n4,5,6\n"),
    ],
)
def test_sniff_rejects_non_metric_tables(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert sniff_csv(path) is None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_keras_roundtrip_property(tmp_path: Path, data: list) -> None:
    """Whatever Keras writes (NaN, inf, NA gaps) reads back value for value."""
    path = tmp_path / "roundtrip.log"
    path.unlink(missing_ok=True)
    logger = KerasCSVLogger(path, metrics_names=["val_loss"])
    logs = {
        e: {"loss": a, **({} if b is None else {"val_loss": b})} for e, (a, b) in enumerate(data)
    }
    keras_fit(logger, range(len(data)), lambda e: logs[e])
    run = load(path)
    got = np.array(values(run, "loss"))
    want = np.array([a for a, _ in data], dtype="float64")
    assert np.array_equal(got, want, equal_nan=True)
    assert steps(run, "val_loss") == [e for e, (_, b) in enumerate(data) if b is not None]


# ---------------------------------------------------------------------------
# Every real log must load
# ---------------------------------------------------------------------------

_REAL_FILES = (
    sorted(p for p in REAL.rglob("*") if p.suffix in (".csv", ".log", ".json") and p.is_file())
    if REAL.is_dir()
    else []
)


@needs(REAL)
@pytest.mark.parametrize("path", _REAL_FILES, ids=lambda p: str(p.relative_to(REAL)))
def test_real_logs_load(path: Path) -> None:
    run = load(path)
    assert len(run.scalars) > 0
    roles = resolve_roles(run.scalars)
    assert roles.get(Role.TRAIN_LOSS) is not None or roles.get(Role.VAL_LOSS) is not None


@needs(REAL)
def test_real_logs_details() -> None:
    d2 = load(REAL / "d2_maskrcnn_short/output/metrics.json")
    assert "restart" in codes(d2) and steps(d2, "total_loss")[:2] == [19, 39]
    nan = load(REAL / "ptycho_nan_gs1/train_outputs/history.json")
    assert np.isnan(values(nan, "loss")[3:]).all()
    hf = load(REAL / "hf_whisper_ja_5k/trainer_state.json")
    assert resolve_roles(hf.scalars).get(Role.VAL_METRIC).tag == "eval_wer"
    assert hf.hparams["max_steps"] == 5000
    v8 = load(REAL / "yolov8_kaz_train100/results.csv")
    assert steps(v8, "train/box_loss")[0] == 1 and v8.scalars["wall_time"].notna().all()
    v5 = load(REAL / "yolov5_traffic_886ep_resumed/results.csv")
    assert steps(v5, "val/obj_loss") == list(range(886))
    eeg = load(REAL / "eeg_trm_v3_4_nan_early/metrics.csv")
    assert np.isnan(values(eeg, "val_loss")[-1])
    raw, notes = read_sidecars([REAL / "dlrnn_v28_gap/hparams.yaml"])
    assert raw["lr"] == 0.001 and raw["model"] == "<model.DeepRNN>"
    assert notes and notes[0].code == "unsupported"


# ---------------------------------------------------------------------------
# Contract: garbage in -> a Run or LogReadError, never anything else
# ---------------------------------------------------------------------------

_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.text(
        alphabet=st.sampled_from(list('epoch,step;loss\t0123456789.-eE"[]{}:\nNaInf ')),
        max_size=300,
    ).map(str.encode),
    st.lists(
        st.dictionaries(
            st.sampled_from(["iteration", "step", "loss", "epoch", "eval_loss", "lr"]),
            st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=3), st.none()),
        ),
        max_size=6,
    ).map(lambda recs: "\n".join(json.dumps(r) for r in recs).encode()),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    blob=_GARBAGE,
    kind=st.sampled_from(
        [
            "csv",
            "keras_csv",
            "lightning_csv",
            "ultralytics",
            "hf_trainer_state",
            "jsonl",
            "keras_history",
        ]
    ),
)
def test_loaders_raise_only_logreaderror(tmp_path: Path, blob: bytes, kind: str) -> None:
    path = tmp_path / "trainer_state.json" if kind == "hf_trainer_state" else tmp_path / "f"
    path.write_bytes(blob)
    sniff_csv(path), sniff_jsonl(path), sniff_keras_history(path)  # never raise either
    try:
        run = load(path, kind)
    except LogReadError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert run.format == kind or kind == "csv"


# ---------------------------------------------------------------------------
# Writer artefacts read as what they are, and said
# ---------------------------------------------------------------------------


def test_lightning_placeholder_zero_losses_are_not_logged(tmp_path: Path) -> None:
    """User code that logs ``train_loss`` on every other batch and 0.0 on the rest: the
    real CSVLogger writes the zeros as values; read as a loss they are 9000-sigma dips.
    They are dropped, with a note that names the count; the real points stay."""
    path = write_lightning_run(tmp_path, max_epochs=6, loss_every=2) / "metrics.csv"
    with path.open() as f:
        raw = [float(r["train_loss_step"]) for r in csv.DictReader(f) if r["train_loss_step"]]
    assert raw.count(0.0) == 12 and len(raw) == 24
    assert values(load(path), "train_loss_step") == raw  # the reader keeps what is written
    run = load_whole(path.parent)
    kept = values(run, "train_loss_step")
    assert kept == [v for v in raw if v != 0.0] and len(kept) == 12
    assert steps(run, "train_loss_step") == [s for s in range(24) if s % 4 in (0, 2)]
    notes = [n for n in run.notes if n.code == "placeholder_zeros"]
    assert len(notes) == 1
    assert notes[0].details == {"tag": "train_loss_step", "zeros": 12, "points": 24}
    assert "12 of 24 values of 'train_loss_step' are exactly 0.0" in notes[0].message
    # The epoch mean (zeros averaged in by Lightning) has no zero: untouched.
    assert len(values(run, "train_loss_epoch")) == 6
    # Said in the report by default, not only with -v.
    out = subprocess.run([sys.executable, "-m", "diagnose", str(path.parent)],
                         capture_output=True, text=True, timeout=120).stdout
    assert "placeholder_zeros: 12 of 24 values of 'train_loss_step'" in out


@pytest.mark.parametrize(
    "curve",
    [
        [0.9, 0.5, 0.2, 0.05, 0.0, 0.0, 0.0, 0.0],  # a loss that reached zero and stayed
        [0.9, 0.4, 0.1, 1e-7, 0.0, 2e-8, 0.0, 1e-8, 0.0, 0.0],  # float32 underflow at the end
        [0.9, 0.0, 0.7, 0.5, 0.3, 0.2, 0.1],  # one zero: too few to call a placeholder
        [0.9, 0.8, 0.0, 0.0, 0.0, 0.0, 0.7, 0.6],  # one run of zeros: not interleaved
        [0.5, -0.2, 0.0, 0.4, 0.0, 0.3, 0.0, 0.2, 0.0, 0.1],  # can go negative: 0 is a value
    ],
)
def test_real_zero_losses_are_kept(tmp_path: Path, curve: list[float]) -> None:
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(curve)))
    run = load_whole(tmp_path)
    assert values(run, "loss") == curve
    assert not [n for n in run.notes if n.code == "placeholder_zeros"]


def test_zero_loss_beside_perfect_accuracy_is_kept(tmp_path: Path) -> None:
    """Saturated outputs (a huge init or LR): a batch classified right underflows the
    cross-entropy to exactly 0.0 between huge values.  Its accuracy of 1 at the same
    step shows the zero is real, so it stays (the same curve beside an imperfect
    accuracy would be read as placeholders)."""
    path = tmp_path / "training.log"
    losses = [400.0, 0.0, 390.0, 0.0, 380.0, 0.0, 370.0, 0.0, 360.0, 0.0, 10.0, 9.0, 8.0]

    def logs(e: int) -> dict[str, float]:
        return {"loss": losses[e], "accuracy": 1.0 if losses[e] == 0.0 else 0.95}

    keras_fit(KerasCSVLogger(path), range(len(losses)), logs)
    run = load_whole(tmp_path)
    assert values(run, "loss") == losses
    assert "placeholder_zeros" not in codes(run)
    keras_fit(KerasCSVLogger(path), range(len(losses)),
              lambda e: {"loss": losses[e], "accuracy": 0.95})
    assert values(load_whole(tmp_path), "loss") == [v for v in losses if v != 0.0]


def test_keras_epoch_column_that_never_advances(tmp_path: Path) -> None:
    """``fit(epochs=1)`` called once per epoch with ``CSVLogger(append=True)``: every row
    says epoch 0.  The rows are successive epochs, not one epoch restarted 7 times."""
    path = tmp_path / "training.log"
    for k in range(8):
        keras_fit(KerasCSVLogger(path, append=True), [0], lambda e, k=k: _keras_logs(k))
    assert path.read_text().count("\n0,") == 8
    run = load(path)
    assert steps(run, "val_loss") == list(range(8))
    assert values(run, "loss") == pytest.approx([1.0 / (k + 1) for k in range(8)])
    assert not [n for n in run.notes if n.code == "restart"]
    note = [n for n in run.notes if n.code == "steps_from_rows"]
    assert len(note) == 1 and "'epoch' is 0 on all 8 rows" in note[0].message
    # Two rows at epoch 0 stay what they were: a crash and its restart.
    short = tmp_path / "short.log"
    for k in range(2):
        keras_fit(KerasCSVLogger(short, append=True), [0], lambda e, k=k: _keras_logs(k))
    assert steps(load(short), "val_loss") == [0]


def test_spaced_headers_keep_their_split_and_role(tmp_path: Path) -> None:
    """Plain loops often save their history with pandas under spoken or camelCase column
    names ("Val Loss", "Learning Rate", "ValLoss"): the split word before a space or a
    capital counts like one before "_"."""
    import pandas as pd

    n = 12
    pd.DataFrame({"Epoch": range(n),
                  "Train Loss": [2.0 * 0.8 ** e for e in range(n)],
                  "Val Loss": [2.1 * 0.85 ** e for e in range(n)],
                  "Val Accuracy": [0.3 + 0.05 * e for e in range(n)],
                  "Learning Rate": [1e-3] * n}).to_csv(tmp_path / "history.csv", index=False)
    roles = resolve_roles(load(tmp_path / "history.csv").scalars)
    assert roles.get(Role.VAL_LOSS).tag == "Val Loss"
    assert roles.get(Role.TRAIN_LOSS).tag == "Train Loss"
    assert roles.get(Role.VAL_METRIC).tag == "Val Accuracy"
    assert roles.get(Role.TRAIN_METRIC) is None
    assert roles.get(Role.LR).tag == "Learning Rate"
    pd.DataFrame({"Epoch": range(n), "TrainLoss": [2.0 * 0.8 ** e for e in range(n)],
                  "ValLoss": [2.1 * 0.85 ** e for e in range(n)],
                  "ValAcc": [0.3 + 0.05 * e for e in range(n)]}).to_csv(
        tmp_path / "camel.csv", index=False)
    roles = resolve_roles(load(tmp_path / "camel.csv").scalars)
    assert (roles.get(Role.TRAIN_LOSS).tag, roles.get(Role.VAL_LOSS).tag,
            roles.get(Role.VAL_METRIC).tag) == ("TrainLoss", "ValLoss", "ValAcc")


def test_a_regression_error_is_the_loss_only_where_no_loss_is_logged(tmp_path: Path) -> None:
    """A loop that logs "Valid MSE" and no val loss is judged on it; beside a logged loss
    an error metric stays a metric (Keras regression: loss and mae)."""
    import pandas as pd

    n = 12
    pd.DataFrame({"epoch": range(n), "Train loss": [1.0 / (e + 1) for e in range(n)],
                  "Valid MSE": [1.2 / (e + 1) for e in range(n)]}).to_csv(
        tmp_path / "metrics.csv", index=False)
    roles = resolve_roles(load(tmp_path / "metrics.csv").scalars)
    assert roles.get(Role.VAL_LOSS).tag == "Valid MSE"
    assert roles.get(Role.VAL_METRIC) is None  # not a second role for the same series
    pd.DataFrame({"epoch": range(n), "loss": [1.0 / (e + 1) for e in range(n)],
                  "mae": [0.9 / (e + 1) for e in range(n)],
                  "val_loss": [1.1 / (e + 1) for e in range(n)],
                  "val_mae": [1.0 / (e + 1) for e in range(n)]}).to_csv(
        tmp_path / "training.log", index=False)
    roles = resolve_roles(load(tmp_path / "training.log").scalars)
    assert roles.get(Role.VAL_LOSS).tag == "val_loss"
    assert roles.get(Role.VAL_METRIC).tag == "val_mae"


def test_a_mean_loss_beside_its_min_and_max_is_the_loss_not_a_sum(tmp_path: Path) -> None:
    """A loop that logs each epoch's avg_loss with its batch min_loss and max_loss: the mean
    is the loss (summing the three as YOLO-style components would be a made-up curve)."""
    import pandas as pd

    n = 12
    pd.DataFrame({"epoch": range(1, n + 1), "avg_loss": [0.5 * 0.9 ** e for e in range(n)],
                  "min_loss": [0.1 * 0.9 ** e for e in range(n)],
                  "max_loss": [0.9 * 0.9 ** e for e in range(n)]}).to_csv(
        tmp_path / "history.csv", index=False)
    roles = resolve_roles(load(tmp_path / "history.csv").scalars)
    assert roles.get(Role.TRAIN_LOSS).tag == "avg_loss"
