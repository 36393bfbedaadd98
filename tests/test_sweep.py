"""Sweep insights: failure boundaries, best-at-edge, monotone trends, and quiet otherwise."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose.findings import Finding, RunResult
from diagnose.run import Run, make_scalars
from diagnose.sweep import sweep_insights

STEPS = np.arange(0, 1000, 10)


def make_result(run_id: str, hparams: dict, val_floor: float | None,
                diverged: bool = False) -> RunResult:
    """A run whose val loss decays to ``val_floor``, or whose train loss goes NaN."""
    train = np.exp(-STEPS / 200) + 0.1
    parts = []
    findings = []
    if diverged:
        train = train.copy()
        train[STEPS >= 300] = np.nan
        findings.append(Finding("DIV001", "loss-non-finite", "divergence", "error",
                                "loss/train", 300, "NaN", {"first_nonfinite_step": 300}))
    parts.append(make_scalars("loss/train", STEPS, train))
    if val_floor is not None:
        parts.append(make_scalars("loss/val", STEPS, val_floor + 0.5 * np.exp(-STEPS / 200)))
    run = Run(run_id, Path(run_id), "tensorboard", scalars=pd.concat(parts, ignore_index=True),
              hparams=dict(hparams)).finalize()
    return RunResult(run, findings=findings)


def lr_sweep() -> list[RunResult]:
    return [
        make_result("sweep/lr0.001", {"learning_rate": 0.001, "batch_size": 64}, 0.50),
        make_result("sweep/lr0.01", {"learning_rate": 0.01, "batch_size": 64}, 0.31),
        make_result("sweep/lr0.1", {"learning_rate": 0.1, "batch_size": 64}, 0.9, True),
        make_result("sweep/lr0.5", {"learning_rate": 0.5, "batch_size": 64}, 0.9, True),
    ]


def test_lr_sweep_where_the_largest_lrs_diverge():
    insights = sweep_insights(lr_sweep())
    assert all(set(i) == {"group", "hyperparameter", "message", "evidence"} for i in insights)
    kinds = {i["evidence"]["kind"]: i for i in insights}
    boundary = kinds["failure_boundary"]
    assert boundary["group"] == "sweep" and boundary["hyperparameter"] == "learning_rate"
    assert boundary["message"].startswith("every run with learning_rate >= 0.1 diverged")
    assert boundary["evidence"]["threshold"] == 0.1
    assert boundary["evidence"]["nearest_ok"] == 0.01
    edge = kinds["best_at_edge"]
    assert edge["evidence"]["best_run"] == "sweep/lr0.01"
    assert edge["evidence"]["outcome_value"] == pytest.approx(0.31, abs=0.005)
    assert "instability" in edge["message"] and "between 0.01 and 0.1" in edge["message"]
    # batch_size did not vary: nothing about it
    assert all(i["hyperparameter"] == "learning_rate" for i in insights)


def test_best_run_at_the_edge_of_the_range_and_a_monotone_trend():
    runs = [
        make_result("s/a", {"learning_rate": 1e-4}, 0.60),
        make_result("s/b", {"learning_rate": 1e-3}, 0.45),
        make_result("s/c", {"learning_rate": 1e-2}, 0.30),
    ]
    insights = sweep_insights(runs)
    kinds = {i["evidence"]["kind"]: i for i in insights}
    assert "upper edge" in kinds["best_at_edge"]["message"]
    assert "widen it above 0.01" in kinds["best_at_edge"]["message"]
    trend = kinds["monotone"]
    assert trend["evidence"]["tau"] == pytest.approx(1.0)
    assert "improves monotonically as learning_rate increases" in trend["message"]
    assert trend["evidence"]["outcomes"] == pytest.approx([0.60, 0.45, 0.30], abs=0.005)
    assert "failure_boundary" not in kinds


def test_quiet_when_nothing_is_clear():
    # two runs are not a sweep
    assert sweep_insights(lr_sweep()[:2]) == []
    # identical hyperparameters: nothing varies
    same = [make_result(f"g/{i}", {"learning_rate": 0.01}, 0.3 + 0.01 * i) for i in range(4)]
    assert sweep_insights(same) == []
    # best in the middle, no failures, no monotone trend
    middle = [
        make_result("m/a", {"learning_rate": 1e-4}, 0.50),
        make_result("m/b", {"learning_rate": 1e-3}, 0.30),
        make_result("m/c", {"learning_rate": 1e-2}, 0.45),
    ]
    assert sweep_insights(middle) == []
    # a trend smaller than the effect floor is not reported
    flat = [make_result(f"f/{i}", {"learning_rate": 10.0 ** -i}, 0.300 + 0.0005 * i)
            for i in (2, 3, 4)]
    assert not [i for i in sweep_insights(flat) if i["evidence"]["kind"] == "monotone"]


def test_groups_are_separate_and_output_is_deterministic():
    runs = [
        *lr_sweep(),
        make_result("other/x", {"dropout": 0.1}, 0.5),
        make_result("other/y", {"dropout": 0.3}, 0.4),
        make_result("other/z", {"dropout": 0.5}, 0.35),
    ]
    first = sweep_insights(runs)
    shuffled = runs[:]
    random.Random(3).shuffle(shuffled)
    assert sweep_insights(shuffled) == first
    groups = [i["group"] for i in first]
    assert groups == sorted(groups) and set(groups) == {"other", "sweep"}
    other = [i for i in first if i["group"] == "other"]
    assert {i["hyperparameter"] for i in other} == {"dropout"}


def test_categorical_failure_boundary():
    runs = [
        make_result("o/sgd1", {"optimizer": "sgd", "learning_rate": 0.1}, 0.9, True),
        make_result("o/sgd2", {"optimizer": "sgd", "learning_rate": 0.01}, 0.9, True),
        make_result("o/adam1", {"optimizer": "adam", "learning_rate": 0.1}, 0.3),
        make_result("o/adam2", {"optimizer": "adam", "learning_rate": 0.01}, 0.35),
    ]
    insights = sweep_insights(runs)
    opt = [i for i in insights if i["hyperparameter"] == "optimizer"]
    assert len(opt) == 1 and opt[0]["message"].startswith("every run with optimizer = sgd")
    # learning_rate does not separate the failures: no boundary for it
    assert not [i for i in insights if i["hyperparameter"] == "learning_rate"
                and i["evidence"]["kind"] == "failure_boundary"]


def test_bookkeeping_keys_are_ignored_and_confounded_factors_prove_nothing():
    runs = [
        make_result("c/a", {"learning_rate": 0.001, "batch_size": 32, "seed": 1,
                            "output_dir": "/out/a"}, 0.5),
        make_result("c/b", {"learning_rate": 0.01, "batch_size": 64, "seed": 2,
                            "output_dir": "/out/b"}, 0.4),
        make_result("c/c", {"learning_rate": 0.1, "batch_size": 128, "seed": 3,
                            "output_dir": "/out/c"}, 0.9, True),
        make_result("c/d", {"learning_rate": 0.5, "batch_size": 256, "seed": 4,
                            "output_dir": "/out/d"}, 0.9, True),
    ]
    # learning_rate and batch_size changed together: no pair of runs differs in only
    # one of them, so the sweep cannot say which one matters and claims nothing
    assert sweep_insights(runs) == []


def test_never_a_claim_from_one_run():
    # one diverged run among four: "every run with lr >= 0.5 diverged (1 run)" is a
    # claim from one run, and so is "limited by instability" with one failure beyond
    runs = [make_result(f"one/lr{lr}", {"learning_rate": lr}, floor)
            for lr, floor in ((0.001, 0.5), (0.01, 0.4), (0.1, 0.45))]
    runs.append(make_result("one/lr0.5", {"learning_rate": 0.5}, 0.9, True))
    insights = sweep_insights(runs)
    assert not [i for i in insights if i["evidence"]["kind"] == "failure_boundary"]
    assert not [i for i in insights if "instability" in i["message"]]


def test_claims_hold_within_runs_that_differ_only_in_that_hyperparameter():
    # a 2x3 grid: lr 0.1 diverges at both batch sizes; the batch-size-64 slice has a
    # monotone improvement below it.  Each claim says how many runs it rests on.
    runs = []
    for bs in (32, 64):
        for lr, floor in ((0.001, 0.5), (0.01, 0.4), (0.1, 0.9)):
            runs.append(make_result(f"grid/bs{bs}_lr{lr}", {"learning_rate": lr,
                                                             "batch_size": bs},
                                    floor + (0.01 if bs == 32 else 0), diverged=lr == 0.1))
    insights = sweep_insights(runs)
    boundary = [i for i in insights if i["evidence"]["kind"] == "failure_boundary"]
    assert len(boundary) == 1 and boundary[0]["hyperparameter"] == "learning_rate"
    message = boundary[0]["message"]
    assert "(2 runs); none of the 4 runs with learning_rate <= 0.01 did" in message
    assert "same batch_size, 2 groups" in message
    # batch_size never separates the failures
    assert not [i for i in insights if i["hyperparameter"] == "batch_size"
                and i["evidence"]["kind"] == "failure_boundary"]
