"""Damaged and hostile input, one test per class of issue 11 (items 1, 4-14).

Each damaged file is built from a real writer's output (torch's SummaryWriter,
tensorboard's EventFileWriter, Lightning's CSVLogger, the Keras/Ultralytics/HF/MLflow/
detectron2 writers re-implemented in tests/fixtures_csv_family.py) and then damaged the
way a crash or a hostile log would.  The contract each test checks: what survives is
read, what was lost is said in an IngestNote, nothing raises or hangs, and memory stays
bounded.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diagnose.discover import discover
from diagnose.ingest import load_all
from diagnose.run import Run
from tests.fixtures_csv_family import (
    KerasCSVLogger,
    d2_train_record,
    keras_fit,
    write_d2_records,
    write_keras_history,
    write_mlflow_run,
    write_trainer_state,
    write_yolov5_epoch,
)

NUL_TAIL = b"\x00" * 8192
#: Peak RSS of this process's own memory (VmHWM): ru_maxrss survives exec, so a child of
#: a big pytest process would report its parent's peak.
PEAK_KB = (
    "peak_kb = lambda: next(int(l.split()[1]) for l in open('/proc/self/status') "
    "if l.startswith('VmHWM')); "
)


def load_tree(path: Path) -> tuple[list[Run], list]:
    """Discovery + ingest, as the CLI does it."""
    sources, errors = discover([str(path)])
    runs, load_errors = load_all(sources)
    return runs, errors + load_errors


def only_run(path: Path) -> Run:
    runs, errors = load_tree(path)
    assert not errors, errors
    assert len(runs) == 1, [r.run_id for r in runs]
    return runs[0]


def points(run: Run, tag: str) -> list[float]:
    return run.series(tag)["value"].tolist()


def codes(run: Run) -> set[str]:
    return {n.code for n in run.notes}


def notes_text(run: Run) -> str:
    return " | ".join(n.message for n in run.notes)


# ---------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------


_LIGHTNING: list[Path] = []


def lightning_csv(folder: Path, steps: int = 6) -> Path:
    """A copy of one run of Lightning's real CSVLogger (written once: importing
    Lightning costs seconds); returns its metrics.csv."""
    import shutil

    if not _LIGHTNING:
        import tempfile

        _LIGHTNING.append(_lightning_csv(Path(tempfile.mkdtemp()) / "pl", steps))
    dest = folder / "version_0"
    shutil.copytree(_LIGHTNING[0].parent, dest)
    return dest / "metrics.csv"


def _lightning_csv(folder: Path, steps: int) -> Path:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(folder), name="", version=0)
    logger.log_hyperparams({"lr": 0.01, "batch_size": 32})
    for step in range(steps):
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "epoch": step // 3}, step)
        if step % 3 == 2:
            logger.log_metrics({"val_loss": 1.5 / (step + 1), "epoch": step // 3}, step)
    logger.save()
    logger.finalize("success")
    return Path(logger.log_dir) / "metrics.csv"


def keras_csv(path: Path, epochs: int = 5) -> Path:
    logger = KerasCSVLogger(path)
    keras_fit(logger, range(epochs), lambda e: {"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)})
    return path


def yolo_v5(path: Path, epochs: int = 4) -> Path:
    for e in range(epochs):
        write_yolov5_epoch(path, e, [0.1 / (e + 1)] * 10 + [0.01, 0.01, 0.01])
    return path


def trainer_state(path: Path, steps: int = 6) -> Path:
    history = [
        {"epoch": s / 10, "grad_norm": 1.0, "learning_rate": 1e-4, "loss": 2.0 / s, "step": s}
        for s in range(1, steps + 1)
    ]
    write_trainer_state(path, history)
    return path


# ---------------------------------------------------------------------------
# 1. TF2 tensor whose shape claims 1e9 elements
# ---------------------------------------------------------------------------


def _huge_shape_events(logdir: Path) -> Path:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(5):
            w.add_scalar("loss", 1.0 / (step + 1), step)
    writer = EventFileWriter(str(logdir), filename_suffix=".tf2")
    for plugin, dims in (("scalars", [10**9]), ("histograms", [10**9 // 3, 3])):
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            float_val=[1.0],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in dims]),
        )
        value = summary_pb2.Summary.Value(tag=f"bomb_{plugin}", tensor=tensor)
        value.metadata.plugin_data.plugin_name = plugin
        writer.add_event(
            event_pb2.Event(wall_time=1.0, step=7, summary=summary_pb2.Summary(value=[value]))
        )
    writer.close()
    return logdir


def test_tf2_tensor_claiming_1e9_elements_is_skipped_with_a_note(tmp_path: Path) -> None:
    logdir = _huge_shape_events(tmp_path / "run")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run = only_run(logdir)
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert elapsed < 5, elapsed
    assert grown_mb < 200, grown_mb  # was 4 GB: the decoder repeated the value 1e9 times
    assert len(points(run, "loss")) == 5
    assert "bomb_scalars" not in run.tags and not run.histograms
    text = notes_text(run)
    assert "claims 1000000000 elements" in text  # the scalar
    assert "claims 999999999 elements but the record holds 1" in text  # the histogram


# ---------------------------------------------------------------------------
# 4. NUL-filled tails
# ---------------------------------------------------------------------------


def _nul_note(run: Run) -> None:
    assert any(n.code == "truncated" and "NUL bytes" in n.message for n in run.notes), run.notes


@pytest.mark.slow
def test_nul_tail_lightning_metrics_csv(tmp_path: Path) -> None:
    path = lightning_csv(tmp_path / "logs")
    with open(path, "ab") as f:
        f.write(NUL_TAIL)
    run = only_run(tmp_path / "logs")
    assert len(points(run, "train_loss")) == 6
    _nul_note(run)


def test_nul_tail_keras_training_log(tmp_path: Path) -> None:
    path = keras_csv(tmp_path / "training.log")
    data = path.read_bytes()
    path.write_bytes(data[:-7] + NUL_TAIL)  # the crash also cut the last row
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 4
    _nul_note(run)
    assert "truncated" in codes(run) and "dropped it" in notes_text(run)


def test_nul_tail_ultralytics_results_csv(tmp_path: Path) -> None:
    path = yolo_v5(tmp_path / "results.csv")
    with open(path, "ab") as f:
        f.write(NUL_TAIL)
    run = only_run(tmp_path)
    assert len(points(run, "train/box_loss")) == 4
    _nul_note(run)


def test_nul_tail_trainer_state_json(tmp_path: Path) -> None:
    path = trainer_state(tmp_path / "trainer_state.json")
    text = path.read_bytes()
    cut = text.index(b"}", text.index(b'"step": 5')) + 1  # right after the 5th entry
    path.write_bytes(text[:cut] + NUL_TAIL)
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 5
    _nul_note(run)


def test_nul_tail_detectron2_metrics_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(5)])
    with open(path, "ab") as f:
        f.write(NUL_TAIL)
    run = only_run(tmp_path)
    assert len(points(run, "total_loss")) == 5
    _nul_note(run)


def test_nul_tail_mlflow_metric_file(tmp_path: Path) -> None:
    run_dir = write_mlflow_run(tmp_path, {"loss": [(1000 + s, 1.0 / (s + 1), s) for s in range(6)]})
    with open(run_dir / "metrics" / "loss", "ab") as f:
        f.write(NUL_TAIL)
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 6
    _nul_note(run)


def test_nul_hole_inside_text_drops_only_the_lines_it_cut(tmp_path: Path) -> None:
    path = keras_csv(tmp_path / "training.log", epochs=8)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    hole = len(b"".join(lines[:4])) + 3  # inside the 4th data row (epoch 3)
    path.write_bytes(data[:hole] + b"\x00" * 4096 + data[hole + 4096 :] + data[hole:])
    run = only_run(tmp_path)
    assert "corrupt_record" in codes(run)
    assert len(points(run, "loss")) >= 3


# ---------------------------------------------------------------------------
# 5. Giant cells and rows
# ---------------------------------------------------------------------------


def test_giant_csv_cell_costs_the_row_not_the_run(tmp_path: Path) -> None:
    path = keras_csv(tmp_path / "training.log", epochs=5)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "1," + "9" * 200_000 + ",0.5\r\n"
    path.write_text("".join(lines))
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 4
    assert "cannot be parsed" in notes_text(run)


@pytest.mark.slow
def test_100mb_row_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = keras_csv(tmp_path / "training.log", epochs=5)
    with open(path, "a") as f:
        f.write("7," + "0.5," * 25_000_000 + "0.5\r\n")  # 100 MB, 25e6 cells
    code = (
        "import sys; from diagnose.discover import discover; "
        "from diagnose.ingest import load_all; "
        + PEAK_KB
        + "r,e=load_all(discover([sys.argv[1]])[0]); "
        "print(len(r[0].series('loss')), peak_kb())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    n, rss_kb = map(int, out.stdout.split())
    assert n == 5
    assert rss_kb / 1024 < 600, rss_kb  # was 782 MB over the interpreter's own


# ---------------------------------------------------------------------------
# 6. Deep nesting
# ---------------------------------------------------------------------------


def test_deeply_nested_json_line_is_skipped_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(4)])
    with open(path, "a") as f:
        f.write('{"iteration": 99, "total_loss": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        f.write(json.dumps(d2_train_record(119, 0.1), sort_keys=True) + "\n")
    run = only_run(tmp_path)
    assert len(points(run, "total_loss")) == 5
    assert "nested too deeply" in notes_text(run)


def test_deeply_nested_value_in_trainer_state(tmp_path: Path) -> None:
    path = trainer_state(tmp_path / "trainer_state.json")
    text = path.read_text()
    deep = '{"step": 3, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    text = text.replace('"log_history": [', '"log_history": [' + deep + ",", 1)
    path.write_text(text)
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 6
    assert "nested too deeply" in notes_text(run)


def test_moderately_deep_dicts_do_not_recurse(tmp_path: Path) -> None:
    # 900 levels parse in json but used to blow the recursion limit when flattened.
    path = tmp_path / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(3)])
    with open(path, "a") as f:
        f.write('{"iteration": 79, "total_loss": 0.1, "x": ' + '{"a": ' * 900 + "1" + "}" * 901)
        f.write("\n")
    run = only_run(tmp_path)
    assert len(points(run, "total_loss")) == 4
    assert "bad_value" in codes(run)


# ---------------------------------------------------------------------------
# 7. Ultralytics cut inside the next row's padding; 8. short CSV with a cut row
# ---------------------------------------------------------------------------


def test_ultralytics_cut_inside_padding_keeps_the_last_row(tmp_path: Path) -> None:
    path = yolo_v5(tmp_path / "results.csv", epochs=4)
    with open(path, "a") as f:
        f.write(" " * 11)  # the next row's '%20.5g' padding, killed before its digits
    run = only_run(tmp_path)
    assert len(points(run, "train/box_loss")) == 4
    assert "no values written yet" in notes_text(run)
    assert "dropped it" not in notes_text(run)


def test_short_csv_with_a_cut_last_row_is_discovered(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,acc\n1,0.9,0.1\n2,0.8,0.2\n3,0.7,0.")
    run = only_run(tmp_path)
    assert points(run, "loss") == [0.9, 0.8, 0.7]
    assert points(run, "acc") == [0.1, 0.2]  # the cut value is dropped (item 10)


def test_short_keras_csv_with_a_cut_last_row_is_discovered(tmp_path: Path) -> None:
    path = keras_csv(tmp_path / "training.log", epochs=2)
    path.write_bytes(path.read_bytes()[:-9])
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 1
    assert "truncated" in codes(run)


# ---------------------------------------------------------------------------
# 9. Truncated or big history.json
# ---------------------------------------------------------------------------


def test_truncated_history_json_reads_what_survives(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    write_keras_history(path, {"loss": [1.0 / (e + 1) for e in range(10)], "val_loss": [0.5] * 10})
    data = path.read_text()
    path.write_text(data[: data.index('"val_loss"') + 30])
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == 10
    assert 1 <= len(points(run, "val_loss")) < 10
    assert "cut off" in notes_text(run)


def test_history_json_over_5mb_is_read(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    n = 200_000
    write_keras_history(path, {"loss": [1.0 / (e + 1) for e in range(n)], "val_loss": [0.5] * n})
    assert path.stat().st_size > 5_000_000
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == n


def test_truncated_big_history_json_says_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    n = 200_000
    write_keras_history(path, {"loss": [1.0 / (e + 1) for e in range(n)], "val_loss": [0.5] * n})
    path.write_bytes(path.read_bytes()[:-1000])
    run = only_run(tmp_path)
    assert len(points(run, "loss")) == n
    assert "truncated" in codes(run)


# ---------------------------------------------------------------------------
# 10. Generic CSV cut mid-number
# ---------------------------------------------------------------------------


def test_generic_csv_cut_mid_number_drops_the_cut_value(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,loss\n" + "".join(f"{s},0.{9 - s}1\n" for s in range(5)) + "5,0.")
    run = only_run(tmp_path)
    values = points(run, "loss")
    assert len(values) == 5 and 0.0 not in values
    assert "'0.' may be cut off" in notes_text(run)


# ---------------------------------------------------------------------------
# 11. A million columns or keys
# ---------------------------------------------------------------------------

WIDE = 1_000_000


def _timed_load(path: Path, limit: float = 8.0) -> Run:
    start = time.perf_counter()
    run = only_run(path)
    assert time.perf_counter() - start < limit
    return run


@pytest.mark.slow
def test_lightning_csv_with_a_million_columns(tmp_path: Path) -> None:
    folder = tmp_path / "version_0"
    folder.mkdir()
    names = ["step", "epoch", "train_loss"] + [f"m{i}" for i in range(WIDE)]
    rows = [",".join(names)]
    for step in range(3):
        rows.append(",".join([str(step), "0", str(1 / (step + 1))] + ["0.5"] * WIDE))
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    run = _timed_load(tmp_path)
    assert len(points(run, "train_loss")) == 3
    assert "column cap" in notes_text(run)


def test_generic_csv_with_a_million_columns(tmp_path: Path) -> None:
    names = ["step", "loss"] + [f"m{i}" for i in range(WIDE)]
    body = "".join(f"{s},{1 / (s + 1)}," + "1," * (WIDE - 1) + "1\n" for s in range(2))
    (tmp_path / "log.csv").write_text(",".join(names) + "\n" + body)
    run = _timed_load(tmp_path)
    assert len(points(run, "loss")) == 2
    assert "column cap" in notes_text(run)


def test_json_lines_record_with_a_million_keys(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_d2_records(path, [d2_train_record(i * 20 + 19, 1.0 / (i + 1)) for i in range(3)])
    keys = ", ".join(f'"k{i}": 1.0' for i in range(WIDE))  # json.dumps of it is slow
    with open(path, "a") as f:
        f.write('{"iteration": 99, "total_loss": 0.1, ' + keys + "}\n")
    run = _timed_load(tmp_path)
    assert len(points(run, "total_loss")) == 3
    assert "record(s) over 1024 KiB skipped" in notes_text(run)


def test_json_lines_series_cap(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    records = [
        {"iteration": i, "total_loss": 1.0 / (i + 1), **{f"k{i}_{j}": 1.0 for j in range(400)}}
        for i in range(30)
    ]
    write_d2_records(path, records)
    run = _timed_load(tmp_path)
    assert len(points(run, "total_loss")) == 30
    assert "series cap" in notes_text(run)


@pytest.mark.slow
def test_trainer_state_entry_with_a_million_keys(tmp_path: Path) -> None:
    entry = {"loss": 0.5, "step": 9, **{f"k{i}": 1.0 for i in range(WIDE)}}
    history = [{"loss": 1.0 / s, "step": s} for s in range(1, 4)] + [entry]
    write_trainer_state(tmp_path / "trainer_state.json", history)
    run = _timed_load(tmp_path)
    assert len(points(run, "loss")) == 4
    assert "series cap" in notes_text(run)


def test_hparams_yaml_with_a_million_keys(tmp_path: Path) -> None:
    lightning_csv(tmp_path / "logs")
    hp = tmp_path / "logs" / "version_0" / "hparams.yaml"
    hp.write_text("lr: 0.01\n" + "".join(f"k{i}: {i}\n" for i in range(WIDE)))
    run = _timed_load(tmp_path)
    assert run.hparams.get("learning_rate") == 0.01
    assert any("keys" in n.message and n.code == "truncated" for n in run.notes)


# ---------------------------------------------------------------------------
# 12. A 5 GB sparse trainer_state.json
# ---------------------------------------------------------------------------


def test_sparse_5gb_trainer_state_in_bounded_memory(tmp_path: Path) -> None:
    path = trainer_state(tmp_path / "trainer_state.json")
    with open(path, "r+b") as f:
        f.truncate(5 * 1024**3)  # sparse: what a crashed preallocating writer leaves
    code = (
        "import sys; from diagnose.discover import discover; "
        "from diagnose.ingest import load_all; "
        + PEAK_KB
        + "r,e=load_all(discover([sys.argv[1]])[0]); "
        "print(len(r[0].series('loss')), peak_kb()); "
        "print([n.message for n in r[0].notes])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    first, notes = out.stdout.splitlines()
    n, rss_kb = map(int, first.split())
    assert n == 6
    assert rss_kb / 1024 < 600, rss_kb  # was 5.3 GB
    assert "NUL bytes" in notes


# ---------------------------------------------------------------------------
# 13. Deterministic hparams order; 14. sidecar symlinks out of the tree
# ---------------------------------------------------------------------------


def test_hparams_key_order_is_sorted_whatever_the_writer_order(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    keys = [f"h{i:02d}" for i in range(40)]
    rng = np.random.default_rng(0)
    rng.shuffle(keys)
    with SummaryWriter(str(tmp_path / "run")) as w:
        w.add_hparams({k: i for i, k in enumerate(keys)}, {"hp/loss": 1.0}, run_name=".")
        for step in range(5):
            w.add_scalar("loss", 1.0 / (step + 1), step)
    run = only_run(tmp_path / "run")
    assert list(run.raw_hparams) == sorted(run.raw_hparams)
    assert list(run.hparams) == sorted(run.hparams)
    assert set(keys) <= set(run.raw_hparams)


def _json_output(path: Path, *extra: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    out = subprocess.run(
        [sys.executable, "-m", "diagnose", str(path), "--format", "json", *extra],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert out.returncode in (0, 1), out.stderr
    return out.stdout


@pytest.mark.slow
def test_json_output_is_byte_identical_across_runs_and_jobs(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for r in range(3):
        with SummaryWriter(str(tmp_path / f"run{r}")) as w:
            w.add_hparams({f"h{i}": i * r for i in range(30)}, {"hp/x": 1.0}, run_name=".")
            for step in range(30):
                w.add_scalar("loss", 1.0 / (step + 1) + r, step)
    first = _json_output(tmp_path, "--jobs", "1")
    assert _json_output(tmp_path, "--jobs", "1") == first
    assert _json_output(tmp_path, "--jobs", "2") == first


def test_sidecar_symlink_outside_the_tree_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("api_key: sk-hunter2\nlr: 0.5\n")
    tree = tmp_path / "tree"
    run_dir = lightning_csv(tree).parent
    (run_dir / "hparams.yaml").unlink()
    (run_dir / "hparams.yaml").symlink_to(secret)
    inside = tree / "shared.yaml"
    inside.write_text("batch_size: 64\n")
    (run_dir / "config.yaml").symlink_to(inside)
    run = only_run(tree)
    assert "api_key" not in run.raw_hparams and "sk-hunter2" not in repr(run.raw_hparams)
    assert run.hparams.get("batch_size") == 64  # a link inside the tree is still read
    assert any("outside the analysed folder" in n.message for n in run.notes)


# ---------------------------------------------------------------------------
# 2/3 (ingest side): non-UTF-8 and control characters in names never raise here
# ---------------------------------------------------------------------------


def test_hostile_run_names_load(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    for name in (b"bad-\xff\xfe", b"nl\n::error ::x", b"esc\x1b]8;;http:x\x07"):
        folder = os.path.join(root, name)
        os.mkdir(folder)
        keras_csv(Path(os.fsdecode(os.path.join(folder, b"training.log"))))
    runs, errors = load_tree(tmp_path)
    assert not errors and len(runs) == 3
    assert all(len(points(r, "loss")) == 5 for r in runs)
