"""bench/real_extra, bench/real_extra2, bench/real_extra3, bench/real_extra4 and
bench/real_extra5 (the third to seventh real-log check sets, labelled blind): every MANIFEST
row names a folder that holds its log files, the labels use the scorer's vocabulary, and
every run loads and is analysed without an analysis error. Verdicts are not asserted here:
the sets are scored by bench/accuracy.py, never tuned against."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from diagnose.config import Config
from diagnose.pipeline import Options, analyze

BENCH = Path(__file__).resolve().parent.parent / "bench"
COLUMNS = ["id", "repo", "path_in_repo", "commit", "format", "framework", "n_points",
           "label", "reason"]
STATES = {"healthy", "divergence", "overfit", "underfit", "plateau", "batchnorm_collapse",
          "unknown"}
#: set name -> the fewest logged points a row may have (real_extra2 to real_extra5 take
#: 5-point runs: short runs are a weak spot those sets were built to cover).
SETS = {"real_extra": 8, "real_extra2": 5, "real_extra3": 5, "real_extra4": 5,
        "real_extra5": 5}
#: Rows the analyser does not find yet, each a known ingest miss recorded in its set's
#: README; the strict xfail below fails once one of them loads, so it is moved back.
NOT_FOUND_YET: dict[tuple[str, str], str] = {}


def _rows(name: str) -> list[dict[str, str]]:
    with open(BENCH / name / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.mark.parametrize("name", SETS)
def test_manifest_rows_are_well_formed(name: str) -> None:
    rows = _rows(name)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) >= 25
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r["id"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", r["repo"]), r["id"]
        assert set(r["label"].split(",")) <= STATES, r["id"]
        assert any(ch.isdigit() for ch in r["reason"]), f"{r['id']}: reason quotes no number"
        assert int(r["n_points"]) >= SETS[name], r["id"]


@pytest.mark.parametrize("name", SETS)
def test_every_folder_is_in_the_manifest(name: str) -> None:
    root = BENCH / name
    rows = _rows(name)
    assert {p.name for p in root.iterdir() if p.is_dir()} == {r["id"] for r in rows}
    for r in rows:  # the stored file keeps its name (or its whole path) in its repository
        folder = root / r["id"]
        assert ((folder / Path(r["path_in_repo"]).name).is_file()
                or (folder / r["path_in_repo"]).is_file()), r["id"]


@pytest.mark.parametrize("name", SETS)
def test_every_run_loads_without_analysis_error(name: str) -> None:
    analysis = analyze([str(BENCH / name)], Config(), Options(jobs=1))
    assert not analysis.errors, [(e.path, e.message) for e in analysis.errors]
    run_ids = [res.run.run_id for res in analysis.results]
    for r in _rows(name):
        if (name, r["id"]) in NOT_FOUND_YET:
            continue
        assert any(rid == r["id"] or rid.startswith(r["id"] + "/") for rid in run_ids), r["id"]


@pytest.mark.parametrize(("name", "row_id"), sorted(NOT_FOUND_YET))
@pytest.mark.xfail(strict=True, reason="known ingest miss (see the set's README)")
def test_known_unread_rows_load(name: str, row_id: str) -> None:
    analysis = analyze([str(BENCH / name / row_id)], Config(), Options(jobs=1))
    assert not analysis.errors and analysis.results, NOT_FOUND_YET[(name, row_id)]
