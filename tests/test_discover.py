"""discover(): which files under a PATH make up which runs.

Trees are written by the real writers (torch SummaryWriter incl. add_hparams and
add_scalars, Lightning CSVLogger/TensorBoardLogger) or copied from
../shared/real_logs; MLflow's file store and HF's trainer_state.json are written by
hand in the exact layout their writers use (neither library is installed here).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from shared_data import require, shared

from diagnose.discover import discover, event_file_order
from diagnose.sources import RunSource

REAL = shared("real_logs")
REPO = Path(__file__).resolve().parents[1]

#: MANIFEST id -> (run id relative to the folder, file kinds, sidecar names, splits).
#: A new MANIFEST row without an entry here fails test_manifest_rows_are_all_covered.
EXPECTED_REAL: dict[str, tuple[str, set[str], set[str], set[str | None]]] = {
    "keras_tb_mnist_adam512": (".", {"tensorboard"}, set(), {"train", "val"}),
    "keras_tb_hparams_batchlevel": (".", {"tensorboard"}, set(), {None}),
    "yolov5_cots_150e": (".", {"tensorboard", "ultralytics"}, {"opt.yaml"}, {None}),
    "yolov5_cots_600e": (".", {"tensorboard", "ultralytics"}, {"opt.yaml"}, {None}),
    "yolov5_traffic_886ep_resumed": (".", {"tensorboard", "ultralytics"}, {"opt.yaml"}, {None}),
    "ptycho_nan_gs1": ("train_outputs", {"keras_history"}, set(), {None}),
    "ptycho_ok_gs2": ("train_outputs", {"keras_history"}, set(), {None}),
    "keras_car_cnn": (".", {"keras_csv"}, set(), {None}),
    "keras_braincnn_trainonly": (".", {"keras_csv"}, set(), {None}),
    "keras_fer_2epochs": (".", {"keras_csv"}, set(), {None}),
    "hf_whisper_ja_5k": (".", {"hf_trainer_state"}, set(), {None}),
    "hf_finnews_sentiment": ("results", {"hf_trainer_state"}, set(), {None}),
    "eeg_trm_v1_nan_late": (".", {"lightning_csv"}, set(), {None}),
    "eeg_trm_v3_4_nan_early": (".", {"lightning_csv"}, set(), {None}),
    "eeg_trm_v7_2_noisy_val": (".", {"lightning_csv"}, set(), {None}),
    "eeg_tcn_v55_erratic_val": (".", {"lightning_csv"}, set(), {None}),
    "eeg_clf_v19_chance_short": (".", {"lightning_csv"}, set(), {None}),
    "dlrnn_v28_gap": (".", {"lightning_csv"}, {"hparams.yaml"}, {None}),
    "convlstm_v20_healthy": (".", {"lightning_csv"}, set(), {None}),
    "yolov8_xlstm_underfit": (".", {"tensorboard", "ultralytics"}, {"args.yaml"}, {None}),
    "yolov8_kaz_train100": (".", {"ultralytics"}, {"args.yaml"}, {None}),
    "d2_maskrcnn_short": ("output", {"tensorboard", "jsonl"}, set(), {None}),
    "d2_pothole_frcnn": ("output", {"tensorboard", "jsonl"}, set(), {None}),
    "dlgn_v11_memorize": (".", {"tensorboard"}, {"hparams.yaml"}, {None}),
    "dlgn_v58_chance": (".", {"tensorboard"}, {"hparams.yaml"}, {None}),
    "lstm_textgen_tb": (".", {"tensorboard"}, {"hparams.yaml"}, {None}),
    "keras_tb_mnist_sgd200": (".", {'tensorboard'}, set(), {'train', 'val'}),
    "hf_bert_weibo_rumor": (".", {'hf_trainer_state'}, set(), {None}),
    "eeg_trm_v1_4_nan_mid": (".", {'lightning_csv'}, set(), {None}),
    "eeg_trm_v7_8_chance": (".", {'lightning_csv'}, set(), {None}),
    "eeg_clf_v26_overfit": (".", {'lightning_csv'}, set(), {None}),
    "forest_v0_plateau": (".", {'lightning_csv'}, {'hparams.yaml'}, {None}),
    "forest_v23_healthy": (".", {'lightning_csv'}, {'hparams.yaml'}, {None}),
    "convlstm_v3_underfit": (".", {'lightning_csv'}, set(), {None}),
    "keras_deepfake_overfit7": (".", {'keras_csv'}, set(), {None}),
    "keras_deepfake_tiny_chance": (".", {'keras_csv'}, set(), {None}),
    "dlgn_v0_exploding": (".", {'tensorboard'}, {'hparams.yaml'}, {None}),
    "dlgn_v39_overfit": (".", {'tensorboard'}, {'hparams.yaml'}, {None}),
    "dlgn_v65_healthy": (".", {'tensorboard'}, {'hparams.yaml'}, {None}),
    "hf_whisper_braj_unstable": (".", {'hf_trainer_state'}, set(), {None}),
    "hf_tinyllama_sft": (".", {'hf_trainer_state'}, set(), {None}),
    "yolov5_traffic_transient_nan": (".", {'tensorboard', 'ultralytics'}, {'opt.yaml'}, {None}),
    "yolov5_lath_exp8_overfit": (".", {'tensorboard', 'ultralytics'}, {'opt.yaml'}, {None}),
    "d2_medwaste_plateau": ("output", {'jsonl'}, set(), {None}),
}


def manifest_ids() -> list[str]:
    """Ids of the MANIFEST rows (empty when the shared folder is absent)."""
    path = REAL / "MANIFEST.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh, delimiter="\t")]


def ids(sources: list[RunSource]) -> list[str]:
    return [s.run_id for s in sources]


def by_id(sources: list[RunSource]) -> dict[str, RunSource]:
    return {s.run_id: s for s in sources}


def write_events(logdir: Path, n: int = 5, tag: str = "loss") -> Path:
    """A real torch event file with ``n`` points of ``tag``."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for i in range(n):
        w.add_scalar(tag, 1.0 / (i + 1), i)
    w.close()
    return logdir


def write_lightning_csv(save_dir: Path, n: int = 4) -> Path:
    """A real Lightning CSVLogger version folder (metrics.csv + hparams.yaml)."""
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(save_dir))
    logger.log_hyperparams({"lr": 0.01, "batch_size": 32})
    for i in range(n):
        logger.log_metrics({"train_loss": 1.0 / (i + 1)}, step=i)
        logger.log_metrics({"val_loss": 1.5 / (i + 1), "epoch": i}, step=i)
    logger.save()
    logger.finalize("success")
    return Path(logger.log_dir)


def trainer_state(global_step: int) -> dict:
    """trainer_state.json content in the layout HF's TrainerState writes."""
    history = [
        {"epoch": s / 100, "learning_rate": 1e-4, "loss": 2.0 / (1 + s), "step": s}
        for s in range(10, global_step + 1, 10)
    ]
    return {"global_step": global_step, "epoch": global_step / 100, "log_history": history}


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------
# TensorBoard layouts
# ---------------------------------------------------------------------------


def test_event_files_of_one_folder_are_one_run_ordered_by_timestamp(tmp_path: Path) -> None:
    names = [
        "events.out.tfevents.1700000200.hostb.2.0",
        "events.out.tfevents.1700000100.hostz.9.0",
        "events.out.tfevents.1700000100.hosta.1.0",
        "events.out.tfevents.999999999.old.1.0",  # 9 digits: still a number, sorts first
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "events.out.tfevents.1700000300.host.profile-empty").write_bytes(b"")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["."]
    got = [f.path.name for f in sources[0].files]
    assert got == [
        "events.out.tfevents.999999999.old.1.0",
        "events.out.tfevents.1700000100.hosta.1.0",
        "events.out.tfevents.1700000100.hostz.9.0",
        "events.out.tfevents.1700000200.hostb.2.0",
    ]
    assert {f.kind for f in sources[0].files} == {"tensorboard"}
    assert event_file_order("x/events.out.tfevents.1700000100.h")[0] == 1700000100
    # within one second torch's counter goes .9 -> .10: numbers compare as numbers
    same_second = ["events.out.tfevents.1700000100.h.7.10", "events.out.tfevents.1700000100.h.7.9"]
    assert sorted(same_second, key=event_file_order) == same_second[::-1]


def test_sub_folders_are_separate_runs(tmp_path: Path) -> None:
    write_events(tmp_path / "sweep")
    write_events(tmp_path / "sweep" / "lr0.1")
    write_events(tmp_path / "sweep" / "lr0.01")
    write_events(tmp_path / "other" / "deep" / "run")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["other/deep/run", "sweep", "sweep/lr0.01", "sweep/lr0.1"]
    assert all(len(s.files) == 1 for s in sources)


def test_keras_split_folders_are_one_run(tmp_path: Path) -> None:
    for split in ("train", "validation"):
        write_events(tmp_path / "exp" / split, tag="epoch_loss")
    write_events(tmp_path / "exp2" / "train", tag="epoch_loss")
    write_events(tmp_path / "exp2" / "eval", tag="epoch_loss")
    write_events(tmp_path / "exp2" / "test", tag="epoch_loss")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["exp", "exp2"]
    runs = by_id(sources)
    assert [f.split for f in runs["exp"].files] == ["train", "val"]
    assert [f.path.parent.name for f in runs["exp"].files] == ["train", "validation"]
    assert runs["exp"].path == tmp_path / "exp"
    assert sorted(f.split for f in runs["exp2"].files) == ["test", "train", "val"]


def test_keras_split_folder_given_as_path_keeps_its_split(tmp_path: Path) -> None:
    write_events(tmp_path / "exp" / "validation", tag="epoch_loss")
    sources, _ = discover([str(tmp_path / "exp" / "validation")])
    assert ids(sources) == ["."]
    assert sources[0].files[0].split == "val"


def test_ultralytics_train_folders_are_runs_not_splits(tmp_path: Path) -> None:
    header = "epoch,train/box_loss,metrics/mAP50(B),val/box_loss,lr/pg0\n"
    rows = "".join(
        f"{e},{1 / (e + 1):.4f},{e / 10:.3f},{1.2 / (e + 1):.4f},0.01\n" for e in range(5)
    )
    for name in ("train", "train2"):
        folder = tmp_path / "runs" / "detect" / name
        write_events(folder, tag="train/box_loss")
        (folder / "results.csv").write_text(header + rows)
        (folder / "args.yaml").write_text("lr0: 0.01\nbatch: 16\n")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["runs/detect/train", "runs/detect/train2"]
    for s in sources:
        assert s.kinds == ["tensorboard", "ultralytics"]
        assert [p.name for p in s.sidecars] == ["args.yaml"]
        assert all(f.split is None for f in s.files)


def test_add_hparams_child_is_folded_into_parent(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "run"))
    for i in range(5):
        w.add_scalar("loss", 1.0 / (i + 1), i)
    w.add_hparams({"lr": 0.1, "bs": 32}, {"hparam/acc": 0.9})  # time-named folder
    w.add_hparams({"lr": 0.1, "bs": 32}, {"hparam/acc": 0.9}, run_name="trial")
    w.close()
    children = sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir())
    assert len(children) == 2 and "trial" in children
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["run"]
    folders = [f.path.parent.name for f in sources[0].files]
    assert folders[0] == "run"  # the parent's own files come first
    assert sorted(folders[1:]) == children


def test_real_runs_with_hparams_under_a_run_are_not_folded(tmp_path: Path) -> None:
    """A trial folder with its own history is a run, even if it logs hparams too."""
    from torch.utils.tensorboard import SummaryWriter

    write_events(tmp_path / "parent")
    w = SummaryWriter(str(tmp_path / "parent" / "trial_1"))
    for i in range(3000):
        w.add_scalar("loss", 1.0 / (i + 1), i)
    w.close()
    w = SummaryWriter(str(tmp_path / "parent" / "trial_1"))
    w.add_hparams({"lr": 0.1}, {"hparam/acc": 0.9}, run_name=".")
    w.close()
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["parent", "parent/trial_1"]


def test_add_scalars_series_folders_are_folded_with_suffix(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "run"))
    for i in range(4):
        w.add_scalar("lr", 0.1, i)
        w.add_scalars("loss/all", {"train": 1.0 / (i + 1), "val": 1.2 / (i + 1)}, i)
    w.close()
    assert {p.name for p in (tmp_path / "run").iterdir() if p.is_dir()} == {
        "loss_all_train",
        "loss_all_val",
    }
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["run"]
    files = sources[0].files
    assert files[0].path.parent.name == "run" and files[0].tag_suffix is None
    assert sorted((f.path.parent.name, f.tag_suffix) for f in files[1:]) == [
        ("loss_all_train", "train"),
        ("loss_all_val", "val"),
    ]


def test_folder_named_like_add_scalars_but_with_other_tags_is_a_run(tmp_path: Path) -> None:
    write_events(tmp_path / "run")
    write_events(tmp_path / "run" / "loss_extra", tag="accuracy")
    sources, _ = discover([str(tmp_path)])
    assert ids(sources) == ["run", "run/loss_extra"]


# ---------------------------------------------------------------------------
# Other families
# ---------------------------------------------------------------------------


def test_lightning_version_folders_are_runs(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    write_lightning_csv(tmp_path)
    write_lightning_csv(tmp_path)
    tb = TensorBoardLogger(str(tmp_path / "tb"))
    tb.log_hyperparams({"lr": 0.01})
    tb.log_metrics({"train_loss": 0.5}, step=0)
    tb.finalize("success")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == [
        "lightning_logs/version_0",
        "lightning_logs/version_1",
        "tb/lightning_logs/version_0",
    ]
    runs = by_id(sources)
    for rid in ("lightning_logs/version_0", "lightning_logs/version_1"):
        assert runs[rid].kinds == ["lightning_csv"]
        assert [p.name for p in runs[rid].sidecars] == ["hparams.yaml"]
    assert runs["tb/lightning_logs/version_0"].kinds == ["tensorboard"]
    assert [p.name for p in runs["tb/lightning_logs/version_0"].sidecars] == ["hparams.yaml"]


def test_hf_checkpoints_use_the_highest_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for step in (200, 1000, 50):  # 1000 > 200 numerically, not as text
        write_json(out / f"checkpoint-{step}" / "trainer_state.json", trainer_state(step))
        (out / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"\0" * 64)
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["out"]
    (f,) = sources[0].files
    assert f.kind == "hf_trainer_state"
    assert f.path == out / "checkpoint-1000" / "trainer_state.json"
    assert sources[0].path == out


def test_hf_output_folder_state_wins_over_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_json(out / "checkpoint-500" / "trainer_state.json", trainer_state(500))
    write_json(out / "trainer_state.json", trainer_state(600))
    sources, _ = discover([str(tmp_path)])
    assert ids(sources) == ["out"]
    assert [f.path for f in sources[0].files] == [out / "trainer_state.json"]


def test_hf_checkpoint_given_as_path(tmp_path: Path) -> None:
    ckpt = tmp_path / "out" / "checkpoint-30"
    write_json(ckpt / "trainer_state.json", trainer_state(30))
    sources, _ = discover([str(ckpt)])
    assert ids(sources) == ["."]
    assert sources[0].kinds == ["hf_trainer_state"]


def write_mlflow_run(exp: Path, run_id: str, points: int = 5) -> Path:
    """One run in MLflow's file-store layout (file_store.py)."""
    run = exp / run_id
    (run / "metrics" / "train").mkdir(parents=True)
    (run / "params").mkdir()
    (run / "tags").mkdir()
    (run / "artifacts").mkdir()
    (run / "meta.yaml").write_text(f"run_id: {run_id}\nstatus: 3\nlifecycle_stage: active\n")
    lines = "".join(f"{1700000000000 + i} {1.0 / (i + 1)} {i}\n" for i in range(points))
    (run / "metrics" / "train" / "loss").write_text(lines)
    (run / "metrics" / "val_loss").write_text(lines)
    (run / "params" / "lr").write_text("0.01")
    (run / "tags" / "mlflow.runName").write_text("trial")
    return run


def test_mlflow_file_store_gives_one_run_per_mlflow_run(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    (store / "0").mkdir(parents=True)
    (store / "0" / "meta.yaml").write_text("experiment_id: '0'\nname: Default\n")
    write_mlflow_run(store / "0", "a1b2c3")
    write_mlflow_run(store / "0", "d4e5f6")
    (store / "7").mkdir()
    (store / "7" / "meta.yaml").write_text("experiment_id: '7'\nname: sweep\n")
    write_mlflow_run(store / "7", "0f0f0f")
    write_mlflow_run(store / ".trash", "deadbeef")
    (store / "models" / "clf" / "version-1").mkdir(parents=True)
    (store / "models" / "clf" / "meta.yaml").write_text("name: clf\n")
    (store / "models" / "clf" / "version-1" / "meta.yaml").write_text("version: 1\n")
    (store / "models" / "clf" / "version-1" / "metrics").mkdir()
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["mlruns/0/a1b2c3", "mlruns/0/d4e5f6", "mlruns/7/0f0f0f"]
    for s in sources:
        assert [(f.kind, f.path) for f in s.files] == [("mlflow", s.path)]


def test_yolo_folder_is_one_run_with_three_families(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "train" / "exp"
    write_events(folder, tag="train/box_loss")
    cols = ["epoch", "train/box_loss", "metrics/mAP_0.5", "val/box_loss", "x/lr0"]
    lines = ["".join(f"{c:>23s}," for c in cols)]
    for e in range(5):
        vals = [e, 0.1 / (e + 1), e / 10, 0.12 / (e + 1), 0.01]
        lines.append("".join(f"{v:>23.5g}," for v in vals))
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    (folder / "opt.yaml").write_text("epochs: 5\nbatch_size: 16\n")
    (folder / "weights").mkdir()
    (folder / "weights" / "best.pt").write_bytes(b"\x80\x02" + b"\0" * 100)
    (folder / "results.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["runs/train/exp"]
    assert sources[0].kinds == ["tensorboard", "ultralytics"]
    assert [p.name for p in sources[0].sidecars] == ["opt.yaml"]


def test_csv_family_run_id_is_its_folder(tmp_path: Path) -> None:
    keras = tmp_path / "keras"
    keras.mkdir()
    (keras / "training.log").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.2,0.4,1.3\n1,0.6,1.0,0.5,1.1\n"
    )
    hist = tmp_path / "hist" / "outputs"
    write_json(hist / "history.json", {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.9]})
    d2 = tmp_path / "d2"
    d2.mkdir()
    (d2 / "metrics.json").write_text(
        "".join(
            json.dumps({"iteration": i, "total_loss": 1.0 / (i + 1), "lr": 0.01}) + "\n"
            for i in range(19, 200, 20)
        )
    )
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    runs = by_id(sources)
    assert sorted(runs) == ["d2", "hist/outputs", "keras"]
    assert runs["keras"].kinds == ["keras_csv"]
    assert runs["hist/outputs"].kinds == ["keras_history"]
    assert runs["d2"].kinds == ["jsonl"]


def test_several_logs_of_one_family_in_a_folder_are_separate_runs(tmp_path: Path) -> None:
    for name in ("exp1.csv", "exp2.csv"):
        (tmp_path / name).write_text("step,loss\n0,1.0\n1,0.5\n2,0.4\n")
    (tmp_path / "config.yaml").write_text("lr: 0.1\n")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == ["exp1.csv", "exp2.csv"]
    assert all([p.name for p in s.sidecars] == ["config.yaml"] for s in sources)
    assert sources[0].path == tmp_path / "exp1.csv"


# ---------------------------------------------------------------------------
# Noise, damage and odd paths
# ---------------------------------------------------------------------------


def test_files_that_are_not_logs_are_ignored_quietly(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# my project\n")
    (tmp_path / "requirements.txt").write_text("torch==2.0\nnumpy\n")
    (tmp_path / "labels.csv").write_text("id,path,label\n1,a.png,cat\n2,b.png,dog\n")
    (tmp_path / "blob.txt").write_bytes(os.urandom(4096))
    (tmp_path / "model.pt").write_bytes(os.urandom(1024))
    (tmp_path / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    write_json(tmp_path / "annotations.json", {"images": [{"id": 1}], "categories": []})
    (tmp_path / "config.json").write_text('{"lr": 0.1}')  # a sidecar with no log is no run
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    write_events(tmp_path / ".git" / "objects")  # hidden folders are not walked
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    write_events(tmp_path / "venv" / "lib" / "pkg")  # nor virtualenvs
    write_events(tmp_path / "node_modules" / "x")
    sources, errors = discover([str(tmp_path)])
    assert (sources, errors) == ([], [])


def test_wandb_run_folder_is_one_run_and_its_own_folders_are_not_walked(
    tmp_path: Path,
) -> None:
    run = tmp_path / "wandb" / "offline-run-20240101_120000-abc123"
    (run / "files").mkdir(parents=True)
    (run / "run-abc123.wandb").write_bytes(b":W&B\xe1\xbe\x00" + os.urandom(64))
    (run / "files" / "config.yaml").write_text("lr:\n  value: 0.1\n")
    (run / "files" / "wandb-summary.json").write_text('{"loss": 0.1, "_step": 3}\n')
    write_events(run / "files")  # synced with sync_tensorboard: a copy of the history
    (tmp_path / "wandb" / "latest-run").symlink_to(run.name)
    synced = tmp_path / "wandb" / "run-20240102_120000-def456"  # a synced (online) run
    synced.mkdir()
    (synced / "run-def456.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    write_events(tmp_path / "tb")
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert ids(sources) == [
        "tb",
        "wandb/offline-run-20240101_120000-abc123",
        "wandb/run-20240102_120000-def456",
    ]
    wandb = sources[1]
    assert [(f.path.name, f.kind) for f in wandb.files] == [("run-abc123.wandb", "wandb")]


def test_symlink_loop_is_reported_once_and_discovery_finishes(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    write_events(root / "a")
    write_events(root / "b")
    os.symlink(root, root / "a" / "loop")
    os.symlink(root / "b", root / "b_again")  # a second way in is not a loop
    sources, errors = discover([str(root)])
    assert ids(sources) == ["a", "b"]
    assert len(errors) == 1
    assert errors[0].path == f"{root.as_posix()}/a/loop"
    assert "loop" in errors[0].message


def test_symlinked_run_folder_is_followed(tmp_path: Path) -> None:
    write_events(tmp_path / "store" / "run1")
    (tmp_path / "view").mkdir()
    os.symlink(tmp_path / "store" / "run1", tmp_path / "view" / "linked")
    sources, errors = discover([str(tmp_path / "view")])
    assert errors == []
    assert ids(sources) == ["linked"]


def test_missing_path_is_an_error_and_others_are_still_found(tmp_path: Path) -> None:
    write_events(tmp_path / "run")
    missing = str(tmp_path / "nope")
    sources, errors = discover([missing, str(tmp_path / "run")])
    assert ids(sources) == ["."]
    assert [(e.path, e.message) for e in errors] == [(missing, "no such file or directory")]


def test_path_that_is_a_file_is_one_run(tmp_path: Path) -> None:
    write_events(tmp_path / "run")
    (event,) = (tmp_path / "run").iterdir()
    (tmp_path / "run" / "hparams.yaml").write_text("lr: 0.1\n")
    (tmp_path / "m.csv").write_text("step,train_loss\n0,1.0\n1,0.9\n")
    sources, errors = discover([str(event)])
    assert errors == []
    assert ids(sources) == ["."]
    assert sources[0].path == event
    assert [f.kind for f in sources[0].files] == ["tensorboard"]
    assert [p.name for p in sources[0].sidecars] == ["hparams.yaml"]
    sources, errors = discover([str(tmp_path / "m.csv")])
    assert errors == [] and ids(sources) == ["."] and sources[0].kinds == ["csv"]
    (tmp_path / "notes.md").write_text("hello\n")
    sources, errors = discover([str(tmp_path / "notes.md")])
    assert sources == [] and len(errors) == 1 and "not a training log" in errors[0].message


def test_ids_clashing_across_paths_are_prefixed_and_duplicates_dropped(tmp_path: Path) -> None:
    write_events(tmp_path / "a")
    write_events(tmp_path / "b")
    sources, errors = discover([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "a")])
    assert errors == []
    assert ids(sources) == [(tmp_path / "a").as_posix(), (tmp_path / "b").as_posix()]
    sources, _ = discover([str(tmp_path), str(tmp_path / "a")])
    assert ids(sources) == ["a", "b"]  # the run under both PATHs is listed once


@pytest.mark.skipif(os.geteuid() != 0, reason="the chmod variant covers non-root")
def test_unreadable_folder_without_root_powers(tmp_path: Path) -> None:
    """Root reads chmod-000 folders, so discovery runs in a child without those powers."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not available to drop root's read override")
    write_events(tmp_path / "ok")
    write_events(tmp_path / "locked" / "inner")
    os.chmod(tmp_path / "locked", 0o000)
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from diagnose.discover import discover
        s, e = discover([{str(tmp_path)!r}])
        print(json.dumps([[x.run_id for x in s], [[x.path, x.message] for x in e]]))
        """
    )
    drop = "-dac_override,-dac_read_search"
    try:
        proc = subprocess.run(
            [
                setpriv,
                f"--bounding-set={drop}",
                f"--inh-caps={drop}",
                "--",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    if proc.returncode != 0 and "setpriv" in proc.stderr:
        pytest.skip(f"setpriv refused: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    run_ids, errs = json.loads(proc.stdout)
    assert run_ids == ["ok"]
    assert errs == [[f"{tmp_path.as_posix()}/locked", "permission denied"]]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores chmod; see the setpriv variant")
def test_unreadable_folder_chmod(tmp_path: Path) -> None:
    write_events(tmp_path / "ok")
    write_events(tmp_path / "locked" / "inner")
    os.chmod(tmp_path / "locked", 0o000)
    try:
        sources, errors = discover([str(tmp_path)])
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert ids(sources) == ["ok"]
    assert [(e.path, e.message) for e in errors] == [
        (f"{tmp_path.as_posix()}/locked", "permission denied")
    ]


def test_thousand_small_runs_are_discovered_fast(tmp_path: Path) -> None:
    event = next(write_events(tmp_path / "_src").iterdir()).read_bytes()
    shutil.rmtree(tmp_path / "_src")
    csv_text = "epoch,step,train_loss,val_loss\n0,9,1.0,\n0,9,,1.1\n1,19,0.8,\n1,19,,0.9\n"
    for i in range(1000):
        folder = tmp_path / "sweep" / f"trial_{i:04d}"
        folder.mkdir(parents=True)
        (folder / "hparams.yaml").write_text(f"lr: {0.001 * (i + 1)}\n")
        if i % 2:
            (folder / f"events.out.tfevents.{1700000000 + i}.host.1.0").write_bytes(event)
        else:
            (folder / "metrics.csv").write_text(csv_text)
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"\0" * 128)
    discover([str(tmp_path)])  # warm the sniffer imports
    # CPU time, best of 3: the limit is about our cost, not about a busy shared machine.
    cpu = []
    for _ in range(3):
        t0 = time.process_time()
        sources, errors = discover([str(tmp_path)])
        cpu.append(time.process_time() - t0)
    assert errors == []
    assert len(sources) == 1000
    assert ids(sources) == sorted(ids(sources))
    assert min(cpu) < 0.5, f"discovery of 1000 runs took {min(cpu):.2f}s of CPU"


# ---------------------------------------------------------------------------
# The shared real logs
# ---------------------------------------------------------------------------


def test_manifest_rows_are_all_covered() -> None:
    rows = manifest_ids()
    if not rows:
        require(REAL)
    assert sorted(set(rows) - set(EXPECTED_REAL)) == []


@pytest.mark.parametrize("rid", sorted(EXPECTED_REAL))
def test_real_log_folder_is_exactly_its_manifest_run(rid: str) -> None:
    folder = REAL / rid
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    run_id, kinds, sidecars, splits = EXPECTED_REAL[rid]
    sources, errors = discover([str(folder)])
    assert errors == []
    assert ids(sources) == [run_id]
    (source,) = sources
    assert set(source.kinds) == kinds
    assert {p.name for p in source.sidecars} == sidecars
    assert {f.split for f in source.files} == splits


def test_whole_real_logs_tree() -> None:
    if not REAL.is_dir():
        require(REAL)
    sources, errors = discover([str(REAL)])
    assert errors == []
    got = ids(sources)
    expected = {
        rid if EXPECTED_REAL[rid][0] == "." else f"{rid}/{EXPECTED_REAL[rid][0]}"
        for rid in manifest_ids()
        if (REAL / rid).is_dir()
    }
    assert expected <= set(got)
    assert got == sorted(got)
    fixtures = {g for g in got if g.startswith("peer_fixtures/")}
    assert set(got) - fixtures == expected
    assert "peer_fixtures/tbt_mnist_extra_metrics_nonscalar" in fixtures
