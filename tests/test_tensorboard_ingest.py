"""load_tensorboard agrees value for value with TensorBoard's EventAccumulator.

Fixtures are written by the real writers at test time (tests/fixtures_tensorboard.py);
the reference is EventAccumulator with STORE_EVERYTHING, read independently.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea_mod
from tensorboard.util import tensor_util

from diagnose.ingest.tensorboard import load_tensorboard, peek_tags
from diagnose.run import Run
from diagnose.sources import RunSource, SourceFile
from tests import fixtures_tensorboard as fx

REAL_LOGS = Path(__file__).resolve().parents[1] / ".." / "shared" / "real_logs"
STORE_EVERYTHING = {
    ea_mod.SCALARS: 0,
    ea_mod.HISTOGRAMS: 0,
    ea_mod.TENSORS: 0,
    ea_mod.IMAGES: 0,
    ea_mod.AUDIO: 0,
    ea_mod.COMPRESSED_HISTOGRAMS: 0,
}

Points = dict[tuple[str, str | None], list[tuple[int, float, float]]]


def event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and "tfevents" in p.name)


def source_for(parts: list[tuple[Path, str | None, str | None]]) -> RunSource:
    """RunSource over folders: (folder, split, tag_suffix), files sorted like TensorBoard."""
    files = [
        SourceFile(f, "tensorboard", split, suffix)
        for folder, split, suffix in parts
        for f in event_files(folder)
    ]
    return RunSource("run", parts[0][0], files)


def _compat_buckets(hv: ea_mod.HistogramValue) -> np.ndarray:
    """data_compat's old-style -> [k,3] rule written out independently (float64), then
    the empty buckets dropped, as our reader documents."""
    counts, limits = list(hv.bucket), list(hv.bucket_limit)
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    if not nonzero:
        return np.zeros((0, 3))
    a, b = nonzero[0], nonzero[-1]
    inner = limits[a:b]
    full = np.array([[hv.min, *inner], [*inner, hv.max], counts[a : b + 1]], dtype=float).T
    return full[full[:, 2] > 0]


def reference(parts: list[tuple[Path, str | None, str | None]]) -> tuple[Points, dict]:
    """Scalars and histograms per (tag, split) as EventAccumulator reads them."""
    scalars: Points = defaultdict(list)
    hists: dict = defaultdict(list)
    for folder, split, suffix in parts:
        # EventAccumulator takes a folder whose name contains 'tfevents' for a file.
        files = event_files(folder)
        target = files[0] if len(files) == 1 else folder
        acc = ea_mod.EventAccumulator(str(target), size_guidance=STORE_EVERYTHING)
        acc.Reload()
        tags = acc.Tags()

        def name(tag: str, suffix: str | None = suffix) -> str:
            return f"{tag}/{suffix}" if suffix else tag

        for tag in tags[ea_mod.SCALARS]:
            for e in acc.Scalars(tag):
                scalars[(name(tag), split)].append((e.step, e.wall_time, e.value))
        for tag in tags[ea_mod.HISTOGRAMS]:
            for e in acc.Histograms(tag):
                hists[name(tag)].append((e.step, e.wall_time, _compat_buckets(e.histogram_value)))
        for tag in tags[ea_mod.TENSORS]:
            try:
                plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            except KeyError:
                continue
            for e in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(e.tensor_proto)
                if plugin == "scalars":
                    scalars[(name(tag), split)].append((e.step, e.wall_time, float(arr.item())))
                elif plugin == "histograms":
                    hists[name(tag)].append((e.step, e.wall_time, arr.astype(float)))
    return scalars, hists


def ours(run: Run) -> tuple[Points, dict]:
    scalars: Points = defaultdict(list)
    df = run.scalars
    for tag, split, step, wall, value in zip(
        df["tag"], df["split"], df["step"], df["wall_time"], df["value"], strict=True
    ):
        scalars[(tag, split)].append((int(step), float(wall), float(value)))
    hists: dict = defaultdict(list)
    for h in run.histograms:
        hists[h.tag].append((h.step, h.wall_time, h.buckets))
    return scalars, hists


def assert_same(parts: list[tuple[Path, str | None, str | None]], run: Run) -> int:
    """Exact agreement (NaN == NaN); returns the number of scalar points compared."""
    ref_s, ref_h = reference(parts)
    got_s, got_h = ours(run)
    # Our split column is filled from the tag when the layout gives none.
    got_by_layout: Points = defaultdict(list)
    for (tag, split), pts in got_s.items():
        layout = next((s for _, s, _ in parts if s == split), None)
        got_by_layout[(tag, layout)].extend(pts)
    assert set(got_by_layout) == set(ref_s)
    for key, pts in ref_s.items():
        want = sorted(pts, key=lambda p: p[0])
        got = got_by_layout[key]
        assert [p[0] for p in got] == [p[0] for p in want], key
        np.testing.assert_array_equal([p[1] for p in got], [p[1] for p in want])
        np.testing.assert_array_equal([p[2] for p in got], [p[2] for p in want])
    assert set(got_h) == set(ref_h)
    for tag, items in ref_h.items():
        got = got_h[tag]
        assert [(s, w) for s, w, _ in got] == [(s, w) for s, w, _ in items]
        for (_, _, a), (_, _, b) in zip(got, items, strict=True):
            np.testing.assert_array_equal(a, b)
    return sum(len(v) for v in ref_s.values())


@pytest.mark.parametrize(("new_style", "double"), [(False, False), (True, False), (True, True)])
def test_torch_scalars_match_event_accumulator(tmp_path: Path, new_style: bool, double: bool):
    folder = fx.write_torch_scalars(tmp_path, new_style=new_style, double_precision=double)
    parts = [(folder, None, None)]
    run = load_tensorboard(source_for(parts))
    assert assert_same(parts, run) == 6 * len(fx.STEPS) + 2
    assert run.format == "tensorboard"
    assert run.sources == event_files(folder)
    assert run.tag_metadata["train/loss"] == ("scalars" if new_style else "")
    assert not run.notes
    loss = run.series("train/loss")
    assert np.isnan(loss["value"]).sum() == 1 and np.isinf(loss["value"]).sum() == 1
    assert (run.scalars["step"] == 2**35 + 7).any() and (run.scalars["step"] == -5).any()


def test_torch_histograms_match(tmp_path: Path):
    folder = fx.write_torch_histograms(tmp_path)
    run = load_tensorboard(source_for([(folder, None, None)]))
    assert_same([(folder, None, None)], run)
    assert len(run.histograms) == 15
    h = next(h for h in run.histograms if h.tag == "w/const")
    assert h.num == 10 and h.sum == 25.0 and h.buckets[:, 2].sum() == 10
    assert abs(h.mean - 2.5) < 1e-12
    assert run.tag_metadata["w/layer1"] == "histograms"


def test_torch_hparams_subfolder(tmp_path: Path):
    folder = fx.write_torch_hparams(tmp_path)
    assert peek_tags(event_files(folder)[0])["_hparams_/session_start_info"] == "hparams"
    run = load_tensorboard(source_for([(folder, None, None)]))
    # torch stores bools as numbers (isinstance(True, int) is tested first)
    assert run.raw_hparams == {"lr": 0.01, "bsize": 32, "optim": "adam", "nesterov": 1}
    assert run.hparams["learning_rate"] == 0.01 and run.hparams["optimizer"] == "adam"
    assert_same([(folder, None, None)], run)


def test_torch_add_scalars_series_folders(tmp_path: Path):
    root = fx.write_torch_add_scalars(tmp_path)
    series = sorted(p for p in root.iterdir() if p.is_dir())
    assert [p.name for p in series] == ["loss_train", "loss_val"]
    assert peek_tags(event_files(series[0])[0]) == {"loss": ""}
    parts = [(p, None, p.name.split("_", 1)[1]) for p in series]
    run = load_tensorboard(source_for(parts))
    assert set(run.tags) == {"loss/train", "loss/val"}
    assert set(zip(run.scalars["tag"], run.scalars["split"], strict=True)) == {
        ("loss/train", "train"),
        ("loss/val", "val"),
    }
    assert assert_same(parts, run) == 40


def test_restart_purges_like_event_accumulator(tmp_path: Path):
    folder = fx.write_torch_restart(tmp_path)
    run = load_tensorboard(source_for([(folder, None, None)]))
    assert_same([(folder, None, None)], run)
    loss = run.series("loss")
    assert loss["step"].tolist() == list(range(80))
    assert loss["value"].iloc[60] == 1060.0
    (note,) = [n for n in run.notes if n.code == "restart"]
    assert note.step == 50 and note.details == {"purged_scalars": 50, "purged_histograms": 5}
    assert "50 earlier scalar points" in note.message
    assert [h.step for h in run.histograms] == [0, 10, 20, 30, 40]


def test_tf2_tensors_and_first_metadata(tmp_path: Path):
    folder = fx.write_tb_tensors(tmp_path)
    run = load_tensorboard(source_for([(folder, None, None)]))
    assert assert_same([(folder, None, None)], run) == 4 * 12
    assert run.series("half")["value"].iloc[4] == float(np.float16(4 / 3))
    assert run.tag_metadata["epoch_loss"] == "scalars"
    assert run.tag_metadata["dense/kernel"] == "histograms"
    assert run.tag_metadata["notes"] == "text"
    assert "notes" not in run.tags
    assert run.hparams == {
        "learning_rate": 0.003,
        "batch_size": 64,
        "optimizer": "sgd",
        "normalization": False,
    }
    h = run.histograms[0]
    assert h.buckets.shape == (8, 3) and np.isnan(h.num)


def test_keras_split_folders(tmp_path: Path):
    root = fx.write_keras_layout(tmp_path)
    parts = [(root / "train", "train", None), (root / "validation", "val", None)]
    run = load_tensorboard(source_for(parts))
    assert assert_same(parts, run) == 12
    assert sorted(set(zip(run.scalars["tag"], run.scalars["split"], strict=True))) == [
        ("epoch_loss", "train"),
        ("epoch_loss", "val"),
    ]


def test_tensorboardx(tmp_path: Path):
    folder = fx.write_tbx(tmp_path)
    run = load_tensorboard(source_for([(folder, None, None)]))
    assert assert_same([(folder, None, None)], run) == 60
    assert len(run.histograms) == 6


def test_tag_metadata_first_occurrence_across_files(tmp_path: Path):
    """A later file's metadata for a known tag is ignored (a restarted TF writer)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for k, plugin in enumerate(["scalars", "text"]):
        w = EventFileWriter(str(tmp_path), filename_suffix=f".{k}")
        value = summary_pb2.Summary.Value(tag="t")
        value.tensor.dtype = 1
        value.tensor.float_val.append(float(k))
        value.metadata.plugin_data.plugin_name = plugin
        w.add_event(event_pb2.Event(step=k, summary=summary_pb2.Summary(value=[value])))
        w.close()
    run = load_tensorboard(source_for([(tmp_path, None, None)]))
    assert run.tag_metadata == {"t": "scalars"}
    assert run.series("t")["value"].tolist() == [0.0, 1.0]


def test_bulk_fast_path_equals_protobuf_path(tmp_path: Path):
    folder = fx.write_bulk_scalars(tmp_path, tags=7, steps=400)
    run = load_tensorboard(source_for([(folder, None, None)]))
    assert assert_same([(folder, None, None)], run) == 2800


def _real_dirs() -> list[Path]:
    if not REAL_LOGS.is_dir():
        return []
    return sorted({p.parent for p in REAL_LOGS.rglob("events.out.tfevents*") if p.is_file()})


@pytest.mark.skipif(not _real_dirs(), reason="shared real_logs not present")
@pytest.mark.parametrize("folder", _real_dirs(), ids=lambda p: str(p.relative_to(REAL_LOGS)))
def test_real_logs_match_event_accumulator(folder: Path):
    split = {"train": "train", "validation": "val"}.get(folder.name)
    parts = [(folder, split, None)]
    run = load_tensorboard(source_for(parts))
    assert_same(parts, run)
    assert not [n for n in run.notes if n.code in ("truncated", "corrupt_record")]


@pytest.mark.skipif(not _real_dirs(), reason="shared real_logs not present")
def test_real_keras_hparams_and_tags():
    run = load_tensorboard(source_for([(REAL_LOGS / "keras_tb_hparams_batchlevel", None, None)]))
    assert run.raw_hparams == {"units": 200, "dropout": 0.2, "optimizer": "sgd"}
    assert run.hparams["dropout"] == 0.2
    tags = peek_tags(event_files(REAL_LOGS / "keras_tb_hparams_batchlevel")[0])
    assert tags.get("_hparams_/session_start_info") == "hparams"


def test_unreadable_inputs_give_notes_not_errors(tmp_path: Path):
    empty = tmp_path / "events.out.tfevents.1.empty"
    empty.write_bytes(b"")
    garbage = tmp_path / "events.out.tfevents.2.garbage"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    missing = tmp_path / "events.out.tfevents.3.missing"
    files = [SourceFile(p, "tensorboard") for p in (empty, garbage, missing)]
    run = load_tensorboard(RunSource("run", tmp_path, files))
    assert run.scalars.empty and not run.histograms
    codes = [n.code for n in run.notes]
    assert codes[0] == "empty" and "unreadable" in codes
    assert any(c in ("corrupt_record", "truncated") for c in codes[1:-1])
    assert peek_tags(garbage) == {} and peek_tags(missing) == {}


def test_plain_histogram_decoder_equals_protobuf(tmp_path: Path):
    """The byte-level histogram decoder reads torch/tensorboardX events like protobuf."""
    from tensorboard.compat.proto import event_pb2

    from diagnose.ingest.tensorboard import _plain_histogram
    from diagnose.ingest.tfrecord import read_records

    decoded = 0
    for writer in (fx.write_torch_histograms, fx.write_tbx, fx.write_tb_tensors):
        folder = writer(tmp_path / writer.__name__)
        for path in event_files(folder):
            rec = read_records(path)
            for i in range(len(rec)):
                data = rec.payload(i)
                event = event_pb2.Event.FromString(data)
                plain = _plain_histogram(data)
                values = event.summary.value
                if not (len(values) == 1 and values[0].HasField("histo")):
                    assert plain is None
                    continue
                assert plain is not None
                decoded += 1
                wall, step, tag, stats, limits, counts = plain
                h = values[0].histo
                assert (wall, step, tag) == (event.wall_time, event.step, values[0].tag)
                assert stats == [h.min, h.max, h.num, h.sum, h.sum_squares]
                assert limits.tolist() == list(h.bucket_limit)
                assert counts.tolist() == list(h.bucket)
    assert decoded == 15 + 6


def test_placeholder_zero_losses_in_event_files(tmp_path: Path):
    """The same writer artefact as in a Lightning metrics.csv, through SummaryWriter: a
    falling loss logged on every third step and 0.0 on the others reads as the loss's
    own points, with a note that names the count; a logged accuracy of 1 at a zero's
    step would make that zero real (tests/test_ingest_csv_family.py)."""
    from torch.utils.tensorboard import SummaryWriter

    from diagnose.discover import discover
    from diagnose.ingest import load_run

    with SummaryWriter(str(tmp_path)) as w:
        for step in range(30):
            w.add_scalar("train_loss", 200.0 * 0.7 ** step if step % 3 == 0 else 0.0, step)
    sources, errors = discover([str(tmp_path)])
    assert len(sources) == 1 and not errors
    run = load_run(sources[0])
    series = run.series("train_loss")
    assert series["step"].tolist() == list(range(0, 30, 3))
    assert (series["value"] > 0).all()
    notes = [n for n in run.notes if n.code == "placeholder_zeros"]
    assert len(notes) == 1 and notes[0].details["zeros"] == 20
