"""bench/fixrate: the random control and the "fixed" judge (no training here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

REPO = Path(__file__).resolve().parents[1]




CONTROL = {"learning_rate": 8.0, "batch_size": 32, "momentum": 0.9, "weight_decay": 0.0,
           "dropout": 0.0, "model_capacity": 1.0, "bn_momentum": 0.1, "optimizer": "sgd",
           "normalization": "none", "activation": "relu", "init": "default",
           "lr_schedule": "constant", "drop_last": False, "shuffle": True,
           "precise_bn": False, "residual_connections": False, "data_augmentation": False}


def test_random_change_has_the_same_size_on_another_knob(fixrate) -> None:
    sizes = set()
    for seed in range(40):
        (key, value), = fixrate.random_change(CONTROL, {"learning_rate": 0.8}, seed).items()
        assert key != "learning_rate"
        assert key not in ("bn_momentum", "precise_bn")  # no BatchNorm: a no-op change
        ratio = abs(math.log(float(value) / float(CONTROL[key])))
        lo, hi = fixrate.NUMERIC[key]
        if lo < float(value) < hi and key not in ("batch_size", "momentum"):
            assert ratio == pytest.approx(math.log(10), rel=0.01)
        sizes.add(key)
    assert len(sizes) >= 3  # really random over knobs
    (key, value), = fixrate.random_change(CONTROL, {"drop_last": True}, 1).items()
    assert key in (*fixrate.CHOICES, *fixrate.SWITCHES) and value != CONTROL[key]


def test_fixed_needs_state_gone_better_than_control_and_a_good_level(fixrate) -> None:
    ok = [{"status": "ok", "states": []}, {"status": "ok", "states": []}]
    arm = {"trials": ok, "effect": 0.5, "gate": 0.1, "candidate_mean": 0.1}
    assert fixrate.judge(arm, "plateau", bar=0.3)["fixed"]
    assert not fixrate.judge({**arm, "candidate_mean": 0.5}, "plateau", bar=0.3)["fixed"]
    assert not fixrate.judge({**arm, "effect": 0.05}, "plateau", bar=0.3)["fixed"]
    stays = [{"status": "ok", "states": ["plateau"]}, ok[1]]
    assert not fixrate.judge({**arm, "trials": stays}, "plateau", bar=0.3)["fixed"]
    crashed = [{"status": "crashed"}, ok[1]]
    assert not fixrate.judge({**arm, "trials": crashed}, "plateau", bar=0.3)["fixed"]


def test_family_keeps_data_and_length_flags_only(fixrate) -> None:
    case = fixrate.Case("x", ("--max-steps", "600", "--lr", "8", "--train-size", "60"), "")
    assert fixrate.family_args(case) == ["--max-steps", "600", "--train-size", "60"]
    assert {c.name for c in fixrate.CASES} >= {"lr_high_sgd8", "overfit_small_data",
                                               "bn_momentum0", "underfit_narrow"}


def test_a_finite_good_run_beats_a_blown_up_control(fixrate) -> None:
    ok = [{"status": "ok", "states": []}, {"status": "ok", "states": []}]
    # RMSprop LR 5: the control's seeds end at 3e3 and 2e8, so its seed gate is ~3e8
    arm = {"trials": ok, "effect": 1e8, "gate": 2.8e8, "candidate_mean": 0.033,
           "control_mean": 1e8}
    assert fixrate.judge(arm, "divergence", bar=0.29, untrained=1.1)["fixed"]
    nan = {**arm, "control_mean": math.nan, "effect": math.inf, "gate": 0.0}
    assert fixrate.judge(nan, "divergence", bar=0.29, untrained=1.1)["fixed"]
    # a control that did not blow up still needs the gate
    calm = {**arm, "control_mean": 5.0, "effect": 0.0, "gate": 1.0}
    assert not fixrate.judge(calm, "divergence", bar=0.29, untrained=1.1)["beats_control"]
    # and a blown-up control is no excuse for a bad level
    assert not fixrate.judge({**arm, "candidate_mean": 0.9}, "divergence", bar=0.29,
                             untrained=1.1)["fixed"]


def test_a_saved_campaign_seeds_the_case_records_it_holds(fixrate, tmp_path):
    """``--seed-records``: a results JSON's rows become the per-case files ``--report`` and
    ``--refresh`` read, the tables unchanged; a case already done is left alone."""
    row = {"case": "lr_jump_adam", "broken": True, "state": "divergence", "probed": False,
           "why_not": "no recommendation"}
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps({"cases": [row, {**row, "case": "not_a_case"}]}))
    cases = [c for c in fixrate.CASES if c.name in ("lr_jump_adam", "dead_init")]
    out = tmp_path / "out"
    assert fixrate.seed_records(saved, cases, out) == ["lr_jump_adam"]
    assert fixrate.summarize(out)["cases"] == [row]
    assert fixrate.seed_records(saved, cases, out) == []  # done: not overwritten


def test_a_case_that_left_the_case_list_no_longer_counts(fixrate, tmp_path):
    """A label audit can swap corpus cases: the old case's file stays in ``out`` (kept for
    the record) but the tables count only the cases of today's list."""
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("r1", "r2"):
        (cases / f"{name}.json").write_text(json.dumps(
            {"case": name, "broken": True, "state": "divergence", "probed": False}))
    assert fixrate.summarize(tmp_path)["total"]["broken"] == 2
    kept = fixrate.summarize(tmp_path, {"r2"})
    assert [r["case"] for r in kept["cases"]] == ["r2"]
    assert kept["total"]["broken"] == 1
