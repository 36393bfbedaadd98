"""load_run()/load_all(): the dispatcher that turns a RunSource into ONE Run.

Files come from the real writers (torch SummaryWriter, Lightning CSVLogger) or from
/work/shared/real_logs; damaged files are written byte by byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diagnose.discover import discover
from diagnose.findings import LoadError
from diagnose.ingest import IngestError, load_all, load_run
from diagnose.sources import RunSource, SourceFile
from tests.test_discover import (
    EXPECTED_REAL,
    REAL,
    trainer_state,
    write_events,
    write_json,
    write_lightning_csv,
    write_mlflow_run,
)


def only(path: Path) -> RunSource:
    sources, errors = discover([str(path)])
    assert errors == []
    assert len(sources) == 1, [s.run_id for s in sources]
    return sources[0]


def assert_no_doubled_points(run) -> None:
    """Every (tag, split) series has each step once: no part was merged in twice."""
    dup = run.scalars.duplicated(["tag", "split", "step"])
    assert not dup.any(), run.scalars[dup].head()


# ---------------------------------------------------------------------------
# Real logs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rid", sorted(EXPECTED_REAL))
def test_real_log_run_loads(rid: str) -> None:
    folder = REAL / rid
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    source = only(folder)
    run = load_run(source)
    assert run.run_id == EXPECTED_REAL[rid][0]
    assert run.path == source.path
    assert set(run.format.split("+")) == EXPECTED_REAL[rid][1]
    assert len(run.scalars) > 0
    assert run.scalars["step"].dtype == "int64"
    assert not [n for n in run.notes if n.code == "unreadable"]


def test_real_yolov5_merge_keeps_one_copy_per_series() -> None:
    folder = REAL / "yolov5_cots_150e"
    if not folder.is_dir():
        pytest.skip("absent")
    run = load_run(only(folder))
    assert run.format == "tensorboard+ultralytics"
    assert_no_doubled_points(run)
    assert len(run.series("val/obj_loss")) == 150
    (note,) = [n for n in run.notes if n.code == "duplicate_series"]
    assert "val/obj_loss" in note.details["dropped_tags"]
    assert run.raw_hparams["epochs"] == 150  # opt.yaml sidecar
    assert str(folder / "opt.yaml") in {str(p) for p in run.sources}


def test_real_header_only_event_file_is_a_one_line_error() -> None:
    folder = REAL / "peer_fixtures" / "edge_cases" / "tfevents_header_only_40B"
    if not folder.is_dir():
        pytest.skip("absent")
    with pytest.raises(IngestError) as err:
        load_run(only(folder))
    assert "\n" not in str(err.value) and str(err.value)


# ---------------------------------------------------------------------------
# Layouts merged into one run
# ---------------------------------------------------------------------------


def test_keras_split_folder_sets_the_split(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for folder, scale in (("train", 1.0), ("validation", 1.5)):
        w = SummaryWriter(str(tmp_path / folder))
        for epoch in range(4):
            w.add_scalar("epoch_loss", scale / (epoch + 1), epoch)
        w.close()
    run = load_run(only(tmp_path))
    assert run.run_id == "." and run.format == "tensorboard"
    rows = run.scalars[run.scalars["metric"] == "loss"]
    assert sorted(rows.groupby("split").size().items()) == [("train", 4), ("val", 4)]
    val = rows[rows["split"] == "val"].sort_values("step")["value"].tolist()
    assert val == pytest.approx([1.5, 0.75, 0.5, 0.375])


def test_add_scalars_and_add_hparams_fold_into_one_run(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    for i in range(5):
        w.add_scalars("loss", {"train": 1.0 / (i + 1), "val": 1.2 / (i + 1)}, i)
    w.add_hparams({"lr": 0.1, "bs": 32, "optim": "adam"}, {"hparam/acc": 0.9})
    w.close()
    run = load_run(only(tmp_path))
    assert {"loss/train", "loss/val"} <= set(run.tags)
    splits = dict(run.scalars.drop_duplicates("tag")[["tag", "split"]].values.tolist())
    assert splits["loss/train"] == "train" and splits["loss/val"] == "val"
    assert len(run.series("loss/val")) == 5
    assert run.hparams["learning_rate"] == pytest.approx(0.1)
    assert run.hparams["batch_size"] == 32
    assert run.raw_hparams["lr"] == pytest.approx(0.1)


def test_lightning_csv_gets_hparams_from_its_sidecar(tmp_path: Path) -> None:
    version = write_lightning_csv(tmp_path)
    run = load_run(only(version))
    assert run.format == "lightning_csv"
    assert run.hparams["learning_rate"] == pytest.approx(0.01)
    assert run.hparams["batch_size"] == 32
    assert run.raw_hparams["lr"] == pytest.approx(0.01)
    assert len(run.scalars) > 0


def test_logs_own_hparams_win_over_sidecars(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    w.add_scalar("loss", 1.0, 0)
    w.add_scalar("loss", 0.5, 1)
    w.add_hparams({"lr": 0.1}, {"hparam/acc": 0.9})
    w.close()
    (tmp_path / "hparams.yaml").write_text("lr: 0.5\nweight_decay: 0.01\nmodel:\n  dropout: 0.3\n")
    run = load_run(only(tmp_path))
    assert run.hparams["learning_rate"] == pytest.approx(0.1)
    assert run.hparams["weight_decay"] == pytest.approx(0.01)
    assert run.hparams["dropout"] == pytest.approx(0.3)
    assert run.raw_hparams["lr"] == pytest.approx(0.1)
    assert run.raw_hparams["model.dropout"] == pytest.approx(0.3)


def test_hf_checkpoint_run_reads_the_newest_state(tmp_path: Path) -> None:
    for step in (100, 300, 200):
        write_json(
            tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json", trainer_state(step)
        )
    run = load_run(only(tmp_path))
    assert run.run_id == "out" and run.format == "hf_trainer_state"
    assert run.step_range == (10, 300)


def test_mlflow_run_loads(tmp_path: Path) -> None:
    store = tmp_path / "mlruns" / "0"
    store.mkdir(parents=True)
    (store / "meta.yaml").write_text("experiment_id: '0'\nname: Default\n")
    write_mlflow_run(store, "abc123", points=6)
    run = load_run(only(tmp_path))
    assert run.run_id == "mlruns/0/abc123" and run.format == "mlflow"
    assert run.hparams["learning_rate"] == pytest.approx(0.01)
    assert len(run.scalars) == 12


def test_yolo_like_folder_merges_families_without_doubling(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    cols = ["epoch", "train/box_loss", "metrics/mAP_0.5", "val/box_loss"]
    lines = ["".join(f"{c:>23s}," for c in cols)]
    for e in range(6):
        vals = [0.1 / (e + 1), e / 10, 0.12 / (e + 1)]
        for tag, v in zip(cols[1:], vals, strict=True):
            w.add_scalar(tag, v, e)
        lines.append("".join(f"{v:>23.5g}," for v in [e, *vals]))
    w.add_scalar("x/lr0", 0.01, 0)  # only the event file has it
    w.close()
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "opt.yaml").write_text("lr0: 0.02\nbatch_size: 16\n")
    run = load_run(only(tmp_path))
    assert run.format == "tensorboard+ultralytics"
    assert_no_doubled_points(run)
    assert sorted(run.tags) == ["metrics/mAP_0.5", "train/box_loss", "val/box_loss", "x/lr0"]
    assert len(run.series("train/box_loss")) == 6
    assert run.hparams["learning_rate"] == pytest.approx(0.02)
    assert run.hparams["batch_size"] == 16


# ---------------------------------------------------------------------------
# Damage
# ---------------------------------------------------------------------------


def bad_tree(root: Path) -> None:
    """Two good runs beside an empty event file, a garbage event file and an empty CSV."""
    write_events(root / "good_tb")
    write_lightning_csv(root / "good_csv")
    (root / "empty_events").mkdir()
    (root / "empty_events" / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"")
    (root / "garbage_events").mkdir()
    (root / "garbage_events" / "events.out.tfevents.1700000000.host.1.0").write_bytes(
        os.urandom(3000)
    )
    (root / "empty_csv").mkdir()
    (root / "empty_csv" / "metrics.csv").write_bytes(b"")


def test_bad_runs_fail_alone_with_one_line_errors(tmp_path: Path) -> None:
    bad_tree(tmp_path)
    sources, errors = discover([str(tmp_path)])
    assert errors == []
    assert [s.run_id for s in sources] == [
        "empty_csv",
        "empty_events",
        "garbage_events",
        "good_csv/lightning_logs/version_0",
        "good_tb",
    ]
    runs, errors = load_all(sources)
    assert [r.run_id for r in runs] == ["good_csv/lightning_logs/version_0", "good_tb"]
    assert [e.path for e in errors] == ["empty_csv", "empty_events", "garbage_events"]
    for e in errors:
        assert e.message and "\n" not in e.message and "Traceback" not in e.message
    for s in sources[:3]:
        with pytest.raises(IngestError):
            load_run(s)


def test_a_bad_part_becomes_a_note_when_others_load(tmp_path: Path) -> None:
    write_events(tmp_path / "run")
    (event,) = (tmp_path / "run").iterdir()
    broken = tmp_path / "run" / "trainer_state.json"
    broken.write_text('{"log_history": [{"loss": 1.0, "step": ')
    source = RunSource(
        "run",
        tmp_path / "run",
        [SourceFile(event, "tensorboard"), SourceFile(broken, "hf_trainer_state")],
    )
    run = load_run(source)
    assert run.format == "tensorboard"
    assert len(run.series("loss")) == 5
    (note,) = [n for n in run.notes if n.code == "unreadable"]
    assert note.path == str(broken) and "trainer_state.json" in note.message
    with pytest.raises(IngestError) as err:
        load_run(RunSource("run", tmp_path / "run", [SourceFile(broken, "hf_trainer_state")]))
    assert "\n" not in str(err.value)


def test_unknown_kind_and_no_files_are_ingest_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"\0")
    with pytest.raises(IngestError, match="unsupported file kind 'comet'"):
        load_run(RunSource(".", tmp_path, [SourceFile(f, "comet")]))
    with pytest.raises(IngestError, match="no log files"):
        load_run(RunSource(".", tmp_path, []))
    with pytest.raises(IngestError) as err:
        load_run(RunSource(".", tmp_path, [SourceFile(tmp_path / "gone.csv", "csv")]))
    assert "\n" not in str(err.value)


def test_ingest_error_message_is_one_line() -> None:
    assert str(IngestError("bad\n  thing\thappened\n")) == "bad thing happened"


# ---------------------------------------------------------------------------
# Many runs
# ---------------------------------------------------------------------------


def test_load_all_in_a_pool_matches_sequential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diagnose.ingest

    monkeypatch.setattr(diagnose.ingest, "POOL_MIN_SECONDS", 0.0)  # force the pool
    event = next(write_events(tmp_path / "_src", n=20).iterdir()).read_bytes()
    for i in range(30):
        folder = tmp_path / "runs" / f"r{i:02d}"
        folder.mkdir(parents=True)
        (folder / f"events.out.tfevents.{1700000000 + i}.host.1.0").write_bytes(event)
        (folder / "hparams.yaml").write_text(f"lr: {i / 100}\n")
    (tmp_path / "runs" / "r_bad").mkdir()
    (tmp_path / "runs" / "r_bad" / "events.out.tfevents.1.h").write_bytes(b"\x01" * 10)
    sources, _ = discover([str(tmp_path / "runs")])
    assert diagnose.ingest._worth_a_pool(sources, 2)
    assert not diagnose.ingest._worth_a_pool(sources, 1)
    seen: list[int] = []
    runs_seq, err_seq = load_all(sources)
    runs_par, err_par = load_all(sources, jobs=2, progress=seen.append)
    assert sorted(seen) == list(range(1, len(sources) + 1))
    assert [r.run_id for r in runs_par] == [r.run_id for r in runs_seq]
    assert err_par == err_seq == [LoadError("r_bad", err_seq[0].message)]
    for a, b in zip(runs_seq, runs_par, strict=True):
        assert a.hparams == b.hparams
        assert a.scalars.equals(b.scalars)


def test_load_all_sequential_calls_progress_in_order(tmp_path: Path) -> None:
    write_events(tmp_path / "a")
    write_events(tmp_path / "b")
    sources, _ = discover([str(tmp_path)])
    seen: list[int] = []
    runs, errors = load_all(sources, jobs=4, progress=seen.append)  # too little for a pool
    assert seen == [1, 2] and errors == [] and len(runs) == 2
    assert json.dumps([r.run_id for r in runs]) == '["a", "b"]'
