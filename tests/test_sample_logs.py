"""sample_logs/: every labelled run exists, every run is labelled, size and structure.

The trainings themselves are not run here (minutes); one small run is regenerated into
a temporary folder to check that the generator is deterministic.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent / "sample_logs"
LABELS = ROOT / "LABELS.tsv"
CORE = {"divergence", "underfit", "overfit", "plateau", "batchnorm_collapse"}
EXTRA = {"instability", "exploding_gradients", "vanishing_gradients", "undertrained", "dead_units"}
KNOWN = CORE | EXTRA | {"healthy"}
CSV_FAMILY = ("training.log", "metrics.csv", "results.csv", "trainer_state.json")
SPLIT_DIRS = {"train", "validation", "val", "eval", "test"}
SIZE_LIMIT = 5 * 1024 * 1024


def _labels() -> list[dict[str, str]]:
    with open(LABELS, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _has_events(folder: Path) -> bool:
    return any(p.is_file() for p in folder.glob("events.out.tfevents.*"))


def _run_folders() -> set[str]:
    """Run ids by DESIGN.md's rules (event folders, Keras split parents, CSV-family files).

    torch's ``add_hparams`` child folder (``<run>/hparams``) belongs to its parent.
    """
    runs: set[str] = set()
    for path in ROOT.rglob("*"):
        if not path.is_dir():
            continue
        rel = path.relative_to(ROOT).as_posix()
        if _has_events(path):
            if path.name in SPLIT_DIRS or (path.name == "hparams" and _has_events(path.parent)):
                continue
            runs.add(rel)
        elif any((path / d).is_dir() and _has_events(path / d) for d in SPLIT_DIRS):
            runs.add(rel)
        if any((path / f).is_file() for f in CSV_FAMILY):
            runs.add(rel)
    return runs


def test_labels_file_shape() -> None:
    rows = _labels()
    assert rows, "LABELS.tsv is empty"
    assert list(rows[0].keys()) == ["run", "states", "reason"]
    ids = [r["run"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate run ids"
    for r in rows:
        states = [s.strip() for s in r["states"].split(",")]
        assert set(states) <= KNOWN, (r["run"], states)
        assert "healthy" not in states or states == ["healthy"], r["run"]
        assert len(r["reason"]) > 20, r["run"]


def test_every_labelled_run_exists_and_every_run_is_labelled() -> None:
    labelled = {r["run"] for r in _labels()}
    found = _run_folders()
    assert labelled - found == set(), "labelled but missing"
    assert found - labelled == set(), "run folders without a label"


def test_states_are_all_shown() -> None:
    counts: dict[str, int] = {}
    for r in _labels():
        for s in r["states"].split(","):
            counts[s] = counts.get(s, 0) + 1
    for state in KNOWN:
        assert counts.get(state, 0) >= 1, state
    for state in ("divergence", "overfit", "underfit", "plateau", "batchnorm_collapse"):
        assert counts[state] >= 2, state
    assert counts["healthy"] >= 8


def test_total_size_under_limit() -> None:
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()
                and "__pycache__" not in p.parts)
    assert total < SIZE_LIMIT, f"{total / 1e6:.2f} MB"


def _hparams_of(run: Path) -> dict:
    for name in ("hparams.yaml", "args.yaml"):
        if (run / name).is_file():
            return yaml.safe_load((run / name).read_text())
    if (run / "config.json").is_file():
        return json.loads((run / "config.json").read_text())
    if (run / "hparams").is_dir() and _has_events(run / "hparams"):
        return {"learning_rate": "in add_hparams"}
    return {}


@pytest.mark.parametrize("run", sorted(r["run"] for r in _labels()) if LABELS.exists() else [])
def test_run_records_hyperparameters(run: str) -> None:
    h = _hparams_of(ROOT / run)
    assert "learning_rate" in h or "lr0" in h, run
    assert "batch_size" in h or "batch" in h or h.get("learning_rate") == "in add_hparams", run


def test_file_layouts() -> None:
    """Cheap checks that each family looks the way its writer lays it out."""
    for run in _run_folders():
        path = ROOT / run
        if (path / "training.log").is_file():
            header = (path / "training.log").read_text().splitlines()[0]
            assert header == "epoch,accuracy,loss,val_accuracy,val_loss", run
        if (path / "trainer_state.json").is_file():
            text = (path / "trainer_state.json").read_text()
            state = json.loads(text)
            assert state["log_history"] and "global_step" in state, run
            assert text == json.dumps(state, indent=2, sort_keys=True) + "\n", run
        if (path / "metrics.csv").is_file():
            assert path.parent.name == "lightning_logs" and path.name.startswith("version_")
            assert (path / "hparams.yaml").is_file(), run
        if (path / "train").is_dir():
            assert _has_events(path / "train") and _has_events(path / "validation"), run


def _load_generator() -> ModuleType:
    """Import sample_logs/make_samples.py (not a package) once."""
    if "make_samples" in sys.modules:
        return sys.modules["make_samples"]
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "make_samples.py")
    assert spec and spec.loader
    sys.path.insert(0, str(ROOT))
    try:
        mod = importlib.util.module_from_spec(spec)
        sys.modules["make_samples"] = mod  # dataclasses look their module up here
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT))
    return mod


def test_generator_registry_matches_labels() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    gen = _load_generator()
    labelled = {r["run"] for r in _labels()}
    for folder in gen.RUNS:
        assert any(r == folder or r.startswith(folder + "/") for r in labelled), folder


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import (
        STORE_EVERYTHING_SIZE_GUIDANCE,
        EventAccumulator,
    )
    from tensorboard.util import tensor_util

    ea = EventAccumulator(str(folder), size_guidance=STORE_EVERYTHING_SIZE_GUIDANCE)
    ea.Reload()
    out = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    for t in ea.Tags().get("tensors", []):
        out[t] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                  for e in ea.Tensors(t)]
    return out


def test_regenerating_one_run_is_identical(tmp_path: Path) -> None:
    """keras_tb/plateau_lr_tiny regenerated: same files, same bytes (or same values)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    gen = _load_generator()
    folder = "keras_tb/plateau_lr_tiny"
    gen.generate([folder], tmp_path, verbose=False)
    ref, new = ROOT / folder, tmp_path / folder
    ref_files = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file())
    new_files = sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file())
    assert ref_files == new_files
    for name in ref_files:
        if (ref / name).read_bytes() == (new / name).read_bytes():
            continue
        # Another CPU may round differently in the last bits: compare the values.
        assert "tfevents" in name, f"{name} differs"
        a, b = _scalars((ref / name).parent), _scalars((new / name).parent)
        assert a.keys() == b.keys()
        for tag in a:
            sa, va = zip(*a[tag], strict=True)
            sb, vb = zip(*b[tag], strict=True)
            assert sa == sb, tag
            np.testing.assert_allclose(va, vb, rtol=1e-4, atol=1e-6, err_msg=tag)
