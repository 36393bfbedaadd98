"""W&B offline runs: ``.wandb`` files written by the real ``wandb`` package, offline.

The runs are written once per session by subprocesses with ``WANDB_MODE=offline`` and
W&B's folders pointed into the temp dir (nothing is uploaded; no network is needed): a
healthy run with a nested config, a histogram, a nested metric and a summary-only key; a
diverging run; and a run whose process group is SIGKILLed mid-training.  Damage beyond
a kill (a cut at every offset, a flipped byte) is made by editing copies of those files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from diagnose.discover import discover
from diagnose.ingest import IngestError, load_all, load_run
from diagnose.ingest.csv_logs import LogReadError
from diagnose.ingest.wandb_offline import BLOCK, load_wandb
from diagnose.sources import RunSource, SourceFile

pytestmark = pytest.mark.slow  # wandb subprocesses once per session (~10 s)

WRITER = textwrap.dedent(
    """
    import math, sys
    import numpy as np
    import wandb

    out = sys.argv[1]
    config = {"lr": 0.01, "batch_size": 32, "optimizer": {"name": "adam", "beta2": 0.99}}
    run = wandb.init(project="demo", name="healthy", config=config, dir=out)
    rng = np.random.default_rng(0)
    for s in range(200):
        row = {"train/loss": 2.0 / (s + 1) + 0.05, "lr": 0.01}
        if s % 5 == 4:
            row["val/loss"] = 2.1 / (s + 1) + 0.08
            row["nested"] = {"acc": 0.5 + s / 200}
        if s % 20 == 0:
            row["weights"] = wandb.Histogram(rng.normal(size=500), num_bins=16)
        wandb.log(row, step=s)
    run.summary["test_acc"] = 0.91
    print("healthy", run.id)
    run.finish()

    run = wandb.init(project="demo", name="diverged", config={"lr": 5.0}, dir=out)
    for s in range(40):
        loss = 1.0 + 0.3 * s if s < 30 else float("nan")
        wandb.log({"loss": loss}, step=s)
    print("diverged", run.id)
    run.finish()
    """
)

KILLED = textwrap.dedent(
    """
    import sys, time
    import wandb

    run = wandb.init(project="demo", name="killed", config={"lr": 0.1}, dir=sys.argv[1])
    print("killed", run.id, flush=True)
    for s in range(1_000_000):
        wandb.log({"train/loss": 1.0 / (s + 1)}, step=s)
        if s == 400:
            print("READY", flush=True)
        time.sleep(0.0005)
    """
)


def _env(root: Path) -> dict[str, str]:
    cache = root / "_wandb_home"
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_CACHE_DIR": str(cache),
        "WANDB_CONFIG_DIR": str(cache),
        "WANDB_DATA_DIR": str(cache),
    }


#: display name -> W&B run id, filled by the fixture from what the writers print.
RUN_IDS: dict[str, str] = {}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wandb_runs")
    logs = root / "logs"
    logs.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", WRITER, str(logs)],
        env=_env(root),
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    RUN_IDS.update(line.split() for line in out.stdout.splitlines() if line.strip())
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(logs)],
        env=_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"killed "):
                RUN_IDS["killed"] = line.split()[1].decode()
            if b"READY" in line:
                break
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its wandb-core service
        proc.wait(timeout=30)
    return logs


def sources(path: Path) -> dict[str, RunSource]:
    found, errors = discover([str(path)])
    assert errors == []
    return {s.run_id: s for s in found}


def named(runs: Path, name: str) -> RunSource:
    """The run W&B named ``name`` (its folder ends with the W&B run id)."""
    [source] = [s for i, s in sources(runs).items() if i.endswith("-" + RUN_IDS[name])]
    return source


def test_discovery_finds_each_run_folder_once(runs: Path) -> None:
    found = sources(runs)
    assert len(found) == 3
    for run_id, source in found.items():
        assert run_id.startswith("wandb/offline-run-")  # not wandb/latest-run
        assert [f.kind for f in source.files] == ["wandb"]
        assert source.files[0].path.name.endswith(".wandb")
    # The run folder or its .wandb file as PATH is the run itself.
    folder = next(iter(found.values())).path
    assert list(sources(folder)) == ["."]
    assert list(sources(next(folder.glob("run-*.wandb")))) == ["."]


def test_history_config_summary_and_histograms(runs: Path) -> None:
    run = load_run(named(runs, "healthy"))
    assert run.format == "wandb"
    table = run.scalars
    loss = table[table["tag"] == "train/loss"].sort_values("step")
    assert loss["step"].tolist() == list(range(200))  # _step
    np.testing.assert_allclose(loss["value"], 2.0 / np.arange(1, 201) + 0.05)
    assert (np.diff(loss["wall_time"]) >= 0).all() and loss["wall_time"].iloc[0] > 1.6e9
    val = table[table["tag"] == "val/loss"]
    assert val["step"].tolist() == list(range(4, 200, 5))
    assert table.loc[table["tag"] == "nested/acc", "step"].tolist() == list(range(4, 200, 5))
    summary = table[table["tag"] == "summary/test_acc"]
    assert summary["value"].tolist() == [0.91] and summary["split"].tolist() == ["other"]
    assert run.hparams["learning_rate"] == 0.01
    assert run.hparams["batch_size"] == 32 and isinstance(run.hparams["batch_size"], int)
    assert run.raw_hparams["optimizer.name"] == "adam"
    assert not any(k.startswith("_") for k in run.raw_hparams)
    hists = [h for h in run.histograms if h.tag == "weights"]
    assert [h.step for h in hists] == list(range(0, 200, 20))
    assert hists[0].buckets.shape == (16, 3) and hists[0].buckets[:, 2].sum() == 500
    assert [n.code for n in run.notes] == []


def test_killed_run_reads_what_survives(runs: Path) -> None:
    run = load_run(named(runs, "killed"))
    steps = run.scalars["step"].to_numpy()
    assert len(steps) >= 100 and steps.min() == 0
    codes = {n.code for n in run.notes}
    assert "run_status" in codes  # no exit record
    status = next(n for n in run.notes if n.code == "run_status")
    assert "killed" in status.message


def test_a_cut_at_any_offset_keeps_the_rows_before_it(runs: Path, tmp_path: Path) -> None:
    whole = named(runs, "healthy")
    full = whole.files[0].path.read_bytes()
    full_rows = len(load_run(whole).scalars)
    cut_file = tmp_path / "run-cut.wandb"
    previous = 0
    for cut in [*range(7, len(full), 1999), len(full) - 3]:
        cut_file.write_bytes(full[:cut])
        source = RunSource(".", tmp_path, [SourceFile(cut_file, "wandb")])
        try:
            run = load_wandb(source, source.files[0])
        except LogReadError as exc:
            assert "no numeric history" in str(exc) and previous == 0
            continue
        rows = len(run.scalars)
        assert rows >= previous  # never less than a shorter cut gave
        previous = rows
        codes = {n.code for n in run.notes}
        assert "truncated" in codes or "run_status" in codes, cut
    assert previous >= full_rows - 1  # the last cut loses at most the summary


def test_a_corrupt_record_is_skipped_and_the_rest_read(runs: Path, tmp_path: Path) -> None:
    full = bytearray(named(runs, "healthy").files[0].path.read_bytes())
    assert len(full) > BLOCK + 1000  # the damage sits in block 0, data follows in block 1
    full[BLOCK // 2] ^= 0xFF
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(bytes(full))
    source = RunSource(".", tmp_path, [SourceFile(bad, "wandb")])
    run = load_run(source)
    assert any(n.code == "corrupt_record" for n in run.notes)
    assert run.scalars["step"].max() == 199  # rows after the damaged block survive
    assert len(run.scalars) < len(load_run(named(runs, "healthy")).scalars)


def test_not_a_wandb_file_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "wandb" / "offline-run-20240101_000000-abc"
    folder.mkdir(parents=True)
    (folder / "run-abc.wandb").write_bytes(b"PK\x03\x04" + os.urandom(300))
    (tmp_path / "wandb" / "offline-run-20240101_000001-def").mkdir()
    (tmp_path / "wandb" / "offline-run-20240101_000001-def" / "run-def.wandb").write_bytes(b"")
    found, errors = discover([str(tmp_path)])
    assert errors == [] and len(found) == 2
    runs, errors = load_all(found)
    assert runs == []
    messages = sorted(e.message for e in errors)
    assert messages == ["file is shorter than the W&B header", "not a W&B run file (bad header)"]
    with pytest.raises(IngestError):
        load_run(found[0])


def test_reading_never_writes_or_imports_wandb(runs: Path) -> None:
    before = sorted(str(p) for p in runs.rglob("*"))
    code = textwrap.dedent(
        f"""
        import sys
        from diagnose.discover import discover
        from diagnose.ingest import load_all
        sources, _ = discover([{str(runs)!r}])
        loaded, errors = load_all(sources)
        print(len(loaded), len(errors), "wandb" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["3", "0", "False"]
    assert sorted(str(p) for p in runs.rglob("*")) == before


def test_cli_end_to_end_gives_states_and_findings(runs: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "diagnose", str(runs), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr  # the diverged run is an error
    report = json.loads(out.stdout)
    assert report["errors"] == []
    by_run = {r["run"]: r for r in report["runs"]}
    diverged = by_run[named(runs, "diverged").run_id]
    assert "divergence" in diverged["states"]
    assert "DIV001" in {f["rule"] for f in diverged["findings"]}
    assert diverged["hparams"]["learning_rate"] == 5.0
    healthy = by_run[named(runs, "healthy").run_id]
    assert "divergence" not in healthy["states"]


# ---------------------------------------------------------------------------
# Our declared subset of wandb_internal.proto against W&B's own definitions
# ---------------------------------------------------------------------------

#: our message -> W&B's messages with the same fields.
_WANDB_NAMES = {
    "Record": ["Record"],
    "HistoryRecord": ["HistoryRecord"],
    "HistoryStep": ["HistoryStep"],
    "HistoryItem": ["HistoryItem"],
    "UpdateRecord": ["ConfigRecord", "SummaryRecord"],
    "UpdateItem": ["ConfigItem", "SummaryItem"],
    "RunRecord": ["RunRecord"],
    "RunExitRecord": ["RunExitRecord"],
}


def test_declared_fields_match_wandb_proto() -> None:
    from google.protobuf.descriptor import FieldDescriptor
    from wandb.proto import wandb_internal_pb2 as pb

    from diagnose.ingest.wandb_offline import _SCHEMA

    assert set(_SCHEMA) == set(_WANDB_NAMES)
    for ours, theirs in _WANDB_NAMES.items():
        for name in theirs:
            fields = getattr(pb, name).DESCRIPTOR.fields_by_name
            for fname, number, ftype, *flags in _SCHEMA[ours]:
                real = fields[fname]
                assert real.number == number, (name, fname)
                if hasattr(real, "is_repeated"):
                    repeated = real.is_repeated
                else:  # protobuf < 5
                    repeated = real.label == FieldDescriptor.LABEL_REPEATED
                assert repeated == ("repeated" in flags), (name, fname)
                if isinstance(ftype, str):
                    assert real.type == FieldDescriptor.TYPE_MESSAGE
                elif fname == "none":
                    assert real.type == FieldDescriptor.TYPE_ENUM  # read as its varint
                else:
                    assert real.type == ftype, (name, fname)


def _frame(records: list[bytes]) -> bytes:
    """W&B's framing, written here to feed records built with W&B's own classes."""
    import struct
    import zlib

    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for payload in records:
        left = BLOCK - len(out) % BLOCK
        if left < 7:
            out += b"\0" * left
        assert len(payload) + 7 <= BLOCK - len(out) % BLOCK  # small records: FULL only
        crc = zlib.crc32(payload, zlib.crc32(b"\x01"))
        out += struct.pack("<IHB", crc, len(payload), 1) + payload
    return bytes(out)


def test_typed_history_values_and_removals(tmp_path: Path) -> None:
    """Fields today's client leaves unused (typed values, ``key``, removals) still read."""
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    run = pb.Record()
    run.run.display_name = "typed"
    item = run.run.config.update.add(key="lr")
    item.value_json = "0.3"
    item = run.run.config.update.add(key="scratch")
    item.value_json = '"x"'
    records.append(run)
    cfg = pb.Record()
    cfg.config.remove.add(key="scratch")
    records.append(cfg)
    for s in range(5):
        rec = pb.Record()
        rec.history.step.num = 10 * s
        rec.history.item.add(key="loss").number = 1.0 / (s + 1)
        rec.history.item.add(nested_key=["val", "count"]).integer = -s
        rec.history.item.add(key="flag").boolean = True
        records.append(rec)
    done = pb.Record()
    done.exit.exit_code = 3
    records.append(done)
    path = tmp_path / "run-typed.wandb"
    path.write_bytes(_frame([r.SerializeToString() for r in records]))

    source = RunSource(".", tmp_path, [SourceFile(path, "wandb")])
    result = load_run(source)
    table = result.scalars
    assert table.loc[table["tag"] == "loss", "step"].tolist() == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(table.loc[table["tag"] == "loss", "value"], 1 / np.arange(1, 6))
    assert table.loc[table["tag"] == "val/count", "value"].tolist() == [0, -1, -2, -3, -4]
    assert result.raw_hparams == {"lr": 0.3}
    assert "flag" in next(n for n in result.notes if n.code == "unsupported").message
    status = next(n for n in result.notes if n.code == "run_status")
    assert "exited with code 3" in status.message and "typed" in status.message
