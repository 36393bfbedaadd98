"""bench/calibration/cadence_invariance.py: the same stored run, logged less often."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import cadence_invariance as ci  # noqa: E402
import store  # noqa: E402
import write_logs  # noqa: E402


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return store.load()


def _first(records: list[dict[str, Any]], **cfg: Any) -> dict[str, Any]:
    return next(r for r in records if all(r["config"][k] == v for k, v in cfg.items())
                and len(r["series"]["train_loss"][0]) >= 40 and "val_loss" in r["series"]
                and len(r["series"]["val_loss"][0]) >= 12)


def _read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()]


def test_thinned_train_keeps_every_kth_step_and_val_keeps_the_last(
        records: list[dict[str, Any]], tmp_path: Path) -> None:
    rec = _first(records, train_log="step")
    steps = rec["series"]["train_loss"][0]
    vsteps = rec["series"]["val_loss"][0]
    t4 = ci.VARIANTS["train/4"](rec)
    assert t4 is not None and t4["series"]["train_loss"][0] == steps[3::4]
    assert t4["series"]["val_loss"] == rec["series"]["val_loss"]  # val untouched
    assert set(t4["series"]["lr"][0]) <= set(steps[3::4])
    v2 = ci.VARIANTS["val/2"](rec)
    assert v2 is not None and v2["series"]["val_loss"][0][-1] == vsteps[-1]
    assert len(v2["series"]["val_loss"][0]) == (len(vsteps) + 1) // 2
    assert v2["series"]["train_loss"] == rec["series"]["train_loss"]
    assert rec["series"]["train_loss"][0] == steps  # the stored record is not changed
    # written through the family's own writer: the log holds the thinned points only
    rows = _read_jsonl(write_logs.render(v2, tmp_path, "jsonl"))
    assert [r["step"] for r in rows if "val_loss" in r] == v2["series"]["val_loss"][0]
    assert sum("train_loss" in r for r in rows) == len(steps)


def test_epoch_means_only_for_step_logged_runs_and_never_below_the_floor(
        records: list[dict[str, Any]]) -> None:
    rec = _first(records, train_log="step")
    ep = ci.VARIANTS["train/epoch"](rec)
    spe, n = rec["config"]["steps_per_epoch"], len(rec["series"]["train_loss"][0])
    assert ep is not None
    means = write_logs.by_epoch(rec, write_logs.points(rec)["train_loss"], mean=True)
    got = dict(zip(ep["series"]["train_loss"][0], ep["series"]["train_loss"][1], strict=True))
    assert len(got) == len(means) < n
    assert all(got[s] == pytest.approx(means[(s - 1) // spe], rel=1e-5) for s in got)
    assert ci.VARIANTS["train/epoch"](_first(records, train_log="epoch")) is None
    short = next(r for r in records
                 if len(r["series"]["train_loss"][0]) < 2 * ci.TRAIN_FLOOR)
    assert ci.VARIANTS["train/2"](short) is None  # kept as logged: the rules need points


def test_report_on_a_few_runs(records: list[dict[str, Any]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    few = tmp_path / "few.jsonl.gz"
    store.append([_first(records, train_log=t) for t in ("step", "epoch")]
                 + [records[0], records[1]], few)
    assert ci.main(["--out", str(tmp_path / "r"), "--store", str(few), "--limit", "3",
                    "--formats", "jsonl",
                    "--variants", "val/2", "--dump", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "the same 3 scored corpus runs" in out
    assert "base         jsonl        3" in out and "val/2" in out
    assert "flip groups" in out
    dumped = (tmp_path / "d" / "val_2.jsonl.tsv").read_text().splitlines()
    assert len(dumped) == 4 and dumped[0].startswith("id\tfamily\tdataset\tformat")


def _dropped(rec: dict[str, Any], variant: str, dropped: tuple[str, ...], kept: str,
             tmp_path: Path) -> list[dict[str, Any]]:
    """The variant's record has none of ``dropped``, ``kept`` as stored, the stored record
    is unchanged; returns the rows the jsonl writer writes for it."""
    before = copy.deepcopy(rec)
    out = ci.VARIANTS[variant](rec)
    assert out is not None
    assert not set(dropped) & set(out["series"])
    assert out["series"][kept] == rec["series"][kept]
    assert rec == before  # the stored record is not changed
    return _read_jsonl(write_logs.render(out, tmp_path, "jsonl"))


def test_val_only_drops_the_train_side_and_the_writer_leaves_no_train_column(
        records: list[dict[str, Any]], tmp_path: Path) -> None:
    rec = _first(records, train_log="step")
    rows = _dropped(rec, "val-only", ci.TRAIN_SIDE, "val_loss", tmp_path)
    assert not any("train_loss" in r for r in rows)
    assert [r["step"] for r in rows if "val_loss" in r] == rec["series"]["val_loss"][0]
    few_evals = {**rec, "series": {n: ([s[:2], v[:2]] if n.startswith("val_") else sv)
                                   for n, sv in rec["series"].items()
                                   for s, v in [sv]}}
    assert ci.VARIANTS["val-only"](few_evals) is None  # too few evaluations to judge


def test_loss_only_drops_every_accuracy_and_keeps_the_losses(
        records: list[dict[str, Any]], tmp_path: Path) -> None:
    rec = next(r for r in records if "val_acc" in r["series"])
    rows = _dropped(rec, "loss-only", ci.ACCURACY_SERIES, "train_loss", tmp_path)
    assert rows and not any("val_acc" in r or "train_acc" in r for r in rows)
    no_acc = {**rec, "series": {n: sv for n, sv in rec["series"].items()
                                if n not in ci.ACCURACY_SERIES}}
    assert ci.VARIANTS["loss-only"](no_acc) is None  # nothing to drop: the base verdict



def test_k_epochs_keeps_k_evaluations_and_averages_the_train_side_between_them(
        records: list[dict[str, Any]]) -> None:
    rec = _first(records, train_log="step")
    pts = write_logs.points(rec)
    vsteps = [s for s, _ in pts["val_loss"]]
    out = ci.VARIANTS["epochs/5"](rec)
    assert out is not None
    ends = out["series"]["val_loss"][0]
    assert len(ends) == 5 and ends[-1] == vsteps[-1] and set(ends) <= set(vsteps)
    assert out["series"]["train_loss"][0] == ends  # one train point per kept evaluation
    first = [v for s, v in pts["train_loss"] if s <= ends[0]]
    assert store.decode_value(out["series"]["train_loss"][1][0]) == pytest.approx(
        sum(first) / len(first), rel=1e-5)
    few = {**rec, "series": {n: ([s[:5], v[:5]] if n.startswith("val_") else sv)
                             for n, sv in rec["series"].items() for s, v in [sv]}}
    assert ci.VARIANTS["epochs/5"](few) is None  # already 5 evaluations: as logged


def test_fresh_from_keeps_the_later_runs_with_the_labels_of_the_whole_store(
        records: list[dict[str, Any]]) -> None:
    import format_invariance as fi

    part = records[:240]
    every = {rec["id"]: lab for rec, lab in fi.sample(part, 0)}
    later = {rec["id"]: lab for rec, lab in fi.sample(part, 0, fresh_from=120)}
    assert later and all(int(rid[1:]) >= 120 for rid in later)
    assert later == {rid: lab for rid, lab in every.items() if int(rid[1:]) >= 120}
