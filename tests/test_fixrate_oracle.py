"""bench/fixrate/oracle.py (the oracle sweep's grids and judge) and constant_features.py."""

from __future__ import annotations

import math
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

oracle = pytest.importorskip("oracle")
constant_features = pytest.importorskip("constant_features")


def _log(tmp_path: Path, name: str, rows: list[tuple[int, float, float]]) -> Path:
    d = tmp_path / name
    d.mkdir()
    lines = ["step,train_loss,val_acc,val_loss"]
    lines += [f"{s},0.1,{acc!r},{loss!r}" for s, acc, loss in rows]
    (d / "metrics_log.csv").write_text("\n".join(lines) + "\n")
    return d


def test_the_metric_is_the_probes_tail_mean_of_val_accuracy(tmp_path: Path) -> None:
    d = _log(tmp_path, "a", [(10 * i, 0.5 + 0.01 * i, 1.0) for i in range(1, 11)])
    # the last 20% of 100 steps: 90 and 100 (0.59, 0.60); cut at 50: 50 only (0.55)
    assert oracle.metric_value(d, None) == pytest.approx(0.595)
    assert oracle.metric_value(d, 50) == pytest.approx(0.55)
    nan = _log(tmp_path, "b", [(10, 0.5, 1.0), (20, math.nan, 2.0)])
    assert oracle.metric_value(nan, None) == -math.inf


def test_beats_uses_the_probes_gate() -> None:
    assert oracle.beats([0.50, 0.52], [0.60, 0.62])  # +0.1 against a gate of 2 x 0.014
    assert not oracle.beats([0.50, 0.60], [0.60, 0.62])  # +0.06 within 2 x 0.071
    assert not oracle.beats([0.50, 0.50], [0.505, 0.505])  # within 2% of the control
    assert oracle.beats([-math.inf, 0.5], [0.4, 0.41])  # a control that blew up
    assert not oracle.beats([0.5, 0.5], [-math.inf, 0.9])


def test_pairs_join_the_best_single_change_of_each_knob() -> None:
    trials = [{"setting": n, "change": ch, "best": b} for n, ch, b in (
        ("control", {}, 0.1), ("wd", {"weight_decay": 5e-3}, 0.5),
        ("dropout0.3", {"dropout": 0.3}, 0.6), ("dropout0.5", {"dropout": 0.5}, 0.4),
        ("capacity_x0.5", {"model_capacity": 0.5}, 0.7),
        ("capacity_x0.25", {"model_capacity": 0.25}, 0.9))]
    got = {p["name"]: p["change"] for p in oracle.pairs(trials)}
    assert got == {"dropout0.5+wd": {"dropout": 0.5, "weight_decay": 5e-3},
                   "dropout0.5+capacity_x0.5": {"dropout": 0.5, "model_capacity": 0.5},
                   "wd+capacity_x0.5": {"weight_decay": 5e-3, "model_capacity": 0.5}}


_HP = {"learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0, "weight_decay": 1e-4,
       "batch_size": 32, "max_steps": 300, "warmup_steps": 0, "lr_schedule": "constant",
       "grad_clip": 0.0, "init": "default", "drop_last": False, "model_capacity": 1.0,
       "dropout": 0.0, "activation": "relu"}


def test_each_state_gets_its_own_grid_without_the_current_value() -> None:
    under = oracle.singles(_HP, "underfit")
    assert under["steps_600"] == {"max_steps": 600} and under["steps_1000"] == {
        "max_steps": 1000}
    assert "steps_1200" in under and under["lr_top"] == {"learning_rate": 0.5}
    assert under["wd0"] == {"weight_decay": 0.0} and "dropout0" not in under  # dropout is 0
    assert under["momentum"] == {"momentum": 0.9}  # plain SGD
    div = oracle.singles({**_HP, "learning_rate": 8.0, "standardize_targets": False},
                         "divergence")
    assert div["lr_low"] == {"learning_rate": 1e-3} and div["clip"] == {"grad_clip": 1.0}
    assert div["standardize"] == {"standardize_targets": True} and "init_default" not in div
    plat = oracle.singles({**_HP, "warmup_steps": 50, "init": "he_normal"}, "plateau")
    assert "init_he" not in plat and "relu_he" not in plat  # already ReLU + He
    assert plat["warmup0"] == {"warmup_steps": 0} and "constant" not in plat
    bn = oracle.singles({**_HP, "bn_momentum": 0.1, "normalization": "batchnorm"},
                        "batchnorm_collapse")
    assert set(bn) == {"control", "drop_last", "groupnorm", "batch_x4"}
    assert bn["batch_x4"] == {"batch_size": 128}
    long = oracle.singles({**_HP, "max_steps": 1500}, "underfit")
    assert "steps_1000" not in long and "steps_3000" in long


def test_pairs_skip_a_blown_setting_and_one_that_shares_a_knob() -> None:
    trials = [{"setting": n, "change": ch, "final": f} for n, ch, f in (
        ("control", {}, 0.1), ("init_he", {"init": "he_normal"}, 0.3),
        ("relu_he", {"activation": "relu", "init": "he_normal"}, 0.2),
        ("lr_top", {"learning_rate": 0.5}, math.inf), ("wd0", {"weight_decay": 0.0}, 0.6),
        ("lr_mid", {"learning_rate": 0.02}, 0.5))]
    got = [p["name"] for p in oracle.pairs(trials, key="final")]
    assert got == ["relu_he+lr_mid", "relu_he+wd0", "lr_mid+wd0"]


def _summary(rows: list[dict[str, object]]) -> dict[str, object]:
    base = {"changes": 1, "state_gone": False, "reaches": False, "beats_control": False,
            "fix": False, "level_fix": False, "mean": 2.0}
    rows = [{**base, **r} for r in rows]
    level = [r for r in rows if r["level_fix"]]
    return {"case": "r1", "state": "plateau", "bar": 1.0, "rows": rows,
            "best_level_fix": level[0] if level else None}


def test_why_not_names_the_first_part_of_the_judge_that_fails() -> None:
    ctl = {"setting": "control", "mean": 0.5, "reaches": True, "state_gone": True}
    assert oracle.why_not(_summary([ctl, {"setting": "a", "mean": 1.5}]))["reason"] == "level"
    assert oracle.why_not(_summary([{"setting": "a", "mean": 0.9, "reaches": True}]))[
        "reason"] == "state"
    gate = _summary([{"setting": "a", "mean": 0.9, "reaches": True, "state_gone": True,
                      "level_fix": True}])
    assert oracle.why_not(gate)["reason"] == "gate"
    assert oracle.why_not(gate)["closest"] == "a"


def test_a_feature_constant_in_training_but_not_in_val_is_found() -> None:
    base = {"dataset": "digits", "seed": 1806, "n_train": 400, "task": "cls",
            "label_noise": 0.0, "input_scale": 1.0, "input_shift": 0.0}
    hits = constant_features.artefact_columns(base | {"seed": 0})
    # found, and (generate.standard_scale) only centred: digits pixels are 0..16, not ~1e6
    assert hits and all(0 < h["max_abs_input"] <= 16 for h in hits)
    assert constant_features.artefact_columns(base | {"seed": 3}) == []  # another split
    assert constant_features.artefact_columns(base | {"dataset": "iris"}) == []


def test_the_table_counts_a_case_fixed_in_any_campaign_and_a_pair_only_fix(
        tmp_path: Path) -> None:
    import json

    def rec(name: str, fixed: set[str]) -> Path:
        cases = [{"case": c, "state": "underfit", "advice": {"fixed": c in fixed}}
                 for c in ("r1", "r2", "r3", "r4")]
        (tmp_path / name).write_text(json.dumps({"cases": cases}))
        return tmp_path / name

    records = [rec("a.json", {"r1"}), rec("b.json", {"r2"})]
    assert oracle.unfixed(records, ("underfit",)) == ["r3", "r4"]
    pair = _summary([{"setting": "a+b", "changes": 2, "fix": True}])
    none = _summary([{"setting": "a", "mean": 1.5}])
    table = oracle.table([{**pair, "case": "r3", "state": "underfit"},
                          {**none, "case": "r4", "state": "underfit"}], records)["underfit"]
    assert (table["broken"], table["advice_fixed"], table["reachable"]) == (4, 2, 1)
    assert table["reachable_pair_only"] == ["r3"] and table["fix_reachable"] == 3
    assert table["unreachable"]["r4"]["reason"] == "level"


def test_trial_splits_are_checked_with_the_trainers_seed_offset() -> None:
    # r01980's recipe: its stored split (trial seed 0) is clean, trial seed 1's is not
    cfg = {"dataset": "digits", "seed": 1980, "n_train": 400, "task": "cls",
           "label_noise": 0.2, "input_scale": 1.0, "input_shift": 0.0}
    assert constant_features.trial_columns(cfg) == {1: [48, 56]}
    assert constant_features.trial_columns(cfg, seeds=(0,)) == {}


def test_restate_rereads_a_records_states_from_its_log(tmp_path: Path) -> None:
    # val loss falls, then climbs back far above its best while train loss stays low
    rows = [(10 * i, 0.5, 2.0 - 0.15 * i) for i in range(1, 11)]
    rows += [(100 + 10 * i, 0.5, 0.5 + 0.2 * i) for i in range(1, 21)]
    d = _log(tmp_path, "r", rows)
    (d / "config.json").write_text("{}")
    stale = {"setting": "control", "seed": 0, "best_step": 100, "states": ["stale"],
             "states_at_best": ["stale"]}
    now = oracle.restate(stale, d, at_best=True)
    assert now["states"] == [str(s) for s in oracle.states_of(d)] != ["stale"]
    assert now["states_at_best"] == [str(s) for s in oracle.states_of(d, 100)]
    assert oracle.restate(stale, d, at_best=False)["states_at_best"] == ["stale"]
    assert stale["states"] == ["stale"]  # the record itself is left as it was


def test_heldout_takes_cases_the_campaign_never_saw() -> None:
    """bench/fixrate/heldout.py checks a coupled move on corpus runs of the same causes
    outside the campaign's sample; relative proposals are taken on the recipe's value."""
    heldout = pytest.importorskip("heldout")
    corpus = pytest.importorskip("corpus")
    ids = heldout.pick("underfit:heavy_weight_decay,heavy_dropout", 12)
    campaign = {c["id"] for c in corpus.cases(12)}
    assert ids and not set(ids) & campaign
    assert "r00015" in ids and "r02022" in campaign
    assert heldout.concrete({"model_capacity": 1.5}, "model_capacity", "x2") == 3.0
    assert heldout.concrete({"max_steps": 129}, "max_steps", 1000) == 1000
