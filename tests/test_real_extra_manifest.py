"""bench/real_extra (the third real-log check set, labelled blind): every MANIFEST row
names a folder that holds its log files, the labels use the scorer's vocabulary, and every
run loads and is analysed without an analysis error. Verdicts are not asserted here: the
set is scored by bench/accuracy.py, never tuned against."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from diagnose.config import Config
from diagnose.pipeline import Options, analyze

ROOT = Path(__file__).resolve().parent.parent / "bench" / "real_extra"
COLUMNS = ["id", "repo", "path_in_repo", "commit", "format", "framework", "n_points",
           "label", "reason"]
STATES = {"healthy", "divergence", "overfit", "underfit", "plateau", "batchnorm_collapse",
          "unknown"}


def _rows() -> list[dict[str, str]]:
    with open(ROOT / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        assert reader.fieldnames == COLUMNS
        return list(reader)


ROWS = _rows()


def test_manifest_rows_are_well_formed() -> None:
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids)) >= 25
    for r in ROWS:
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r["id"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", r["repo"]), r["id"]
        assert set(r["label"].split(",")) <= STATES, r["id"]
        assert any(ch.isdigit() for ch in r["reason"]), f"{r['id']}: reason quotes no number"
        assert int(r["n_points"]) >= 8, r["id"]


def test_every_folder_is_in_the_manifest() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir()}
    assert folders == {r["id"] for r in ROWS}


@pytest.fixture(scope="module")
def analysis():
    return analyze([str(ROOT)], Config(), Options(jobs=1))


def test_every_run_loads_without_analysis_error(analysis) -> None:
    assert not analysis.errors, [(e.path, e.message) for e in analysis.errors]
    run_ids = [res.run.run_id for res in analysis.results]
    for r in ROWS:
        assert any(rid == r["id"] or rid.startswith(r["id"] + "/") for rid in run_ids), r["id"]
