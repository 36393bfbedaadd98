"""Advice sizes from evidence and from the optimizer's usual LR range (issue 10): each
run goes through the real rules (``engine.evaluate``), then :func:`recommend`."""

from __future__ import annotations

import numpy as np
import pytest
from shared_data import require, shared
from test_recommend import by_name, make_run, overfit_curves

from diagnose import discover, engine, ingest
from diagnose.advice.moves import usual_lr_range
from diagnose.advice.policy import AdvicePolicy
from diagnose.findings import Recommendation
from diagnose.recommend import recommend

STEPS = np.arange(0, 600, 5)


def _recs(curves: dict, hparams: dict, state: str) -> dict[str, Recommendation]:
    result = recommend(engine.evaluate(make_run(curves, hparams)))
    found = [f for f in result.findings if f.state == state]
    assert found, [(f.rule, f.state) for f in result.findings]
    return by_name(list(found[0].recommendations))


@pytest.mark.parametrize("optimizer, lr", [("sgd", 8.0), ("sgd", 1000.0), ("RMSprop", 5.0),
                                           ("AdamW", 1.0), (None, 200.0)])
def test_far_too_high_lr_lands_inside_the_optimizers_usual_range(optimizer, lr):
    loss = 1.1 * np.exp(-STEPS / 2000)
    loss[STEPS >= 40] = np.nan  # NaN within a few points: a /10 cut would stay far above
    hp = {"learning_rate": lr, "max_steps": 600}
    if optimizer:
        hp["optimizer"] = optimizer
    rec = _recs({"loss/train": (STEPS, loss)}, hp, "divergence")["learning_rate"]
    low, high, _ = usual_lr_range(AdvicePolicy(), optimizer)
    assert rec.action == "decrease" and rec.current == lr
    assert low <= rec.proposed <= high < lr
    assert "usual LR range" in rec.rationale and "range test" in rec.rationale


def test_lr_just_above_the_range_keeps_the_evidence_sized_cut():
    loss = 1.1 * np.exp(-STEPS / 2000)
    loss[STEPS >= 40] = np.nan
    rec = _recs({"loss/train": (STEPS, loss)}, {"learning_rate": 1.0, "optimizer": "sgd"},
                "divergence")["learning_rate"]
    assert rec.proposed == pytest.approx(0.1)  # /10 already lands inside 1e-3..0.5
    assert "usual LR range" not in rec.rationale


@pytest.mark.parametrize("optimizer, lr", [("adam", 1e-6), ("adam", 2e-7), ("sgd", 1e-5)])
def test_tiny_lr_stuck_at_the_initial_loss_moves_into_the_usual_range(optimizer, lr):
    rng = np.random.default_rng(0)
    loss = np.log(3) - 2e-5 * STEPS + 0.002 * rng.standard_normal(len(STEPS))
    ev = STEPS[::5]
    curves = {"loss/train": (STEPS, loss), "loss/val": (ev, np.log(3) - 2e-5 * ev),
              "accuracy/val": (ev, np.full(len(ev), 0.34))}
    hp = {"learning_rate": lr, "max_steps": 600, "optimizer": optimizer}
    low, high, _ = usual_lr_range(AdvicePolicy(), optimizer)
    for state in ("plateau",):  # never left the initial level: plateau only (DESIGN.md)
        rec = _recs(curves, hp, state)["learning_rate"]
        assert rec.action == "increase" and rec.current == lr
        # not x3 / x10 (Adam 1e-6 x10 = 1e-5 would sit at the very bottom, still stuck)
        assert low * 10 <= rec.proposed <= high
        assert "range test" in rec.rationale


def _jumped_run(lr: np.ndarray) -> dict:
    loss = 1.1 * np.exp(-STEPS / 100) + 0.05
    up = STEPS >= 300
    loss[up] = 0.1 * np.exp((STEPS[up] - 300) / 20)
    loss[STEPS >= 400] = np.nan
    return {"loss/train": (STEPS, loss), "lr": (STEPS, lr)}


@pytest.mark.parametrize("hparams", [{"learning_rate": 3e-3, "optimizer": "adam"},
                                     {"optimizer": "adam"}])
def test_mid_run_lr_jump_restores_the_lr_before_the_jump(hparams):
    curves = _jumped_run(np.where(STEPS >= 300, 3e-3 * 1000, 3e-3))
    recs = _recs(curves, {**hparams, "max_steps": 600}, "divergence")
    rec = recs["learning_rate"]
    # the same current (the LR in effect at the blow-up) whether or not the config has it
    assert (rec.action, rec.current, rec.proposed) == ("decrease", 3.0, 3e-3)
    assert "jumped x1000" in rec.rationale and "step 300" in rec.rationale
    assert "warmup_steps" not in recs  # a jump mid-run is not a start-up problem


def test_a_warmup_ramp_is_not_a_jump():
    lr = np.minimum(1.0, (STEPS + 5) / 100) * 3e-3 * 1000  # linear warmup to 3, held
    rec = _recs(_jumped_run(lr), {"optimizer": "adam", "max_steps": 600},
                "divergence")["learning_rate"]
    assert "jumped" not in rec.rationale and rec.proposed < 3.0


def _flat_from_start() -> dict:
    rng = np.random.default_rng(0)
    ev = STEPS[::5]
    return {"loss/train": (STEPS, np.log(3) + 5e-4 * rng.standard_normal(len(STEPS))),
            "loss/val": (ev, np.full(len(ev), np.log(3))),
            "accuracy/val": (ev, np.full(len(ev), 0.333))}


def test_dead_network_with_a_normal_lr_gets_init_advice_not_a_higher_lr():
    hp = {"learning_rate": 0.05, "optimizer": "sgd", "init": "dead", "activation": "relu"}
    recs = _recs(_flat_from_start(), hp, "plateau")
    assert "learning_rate" not in recs
    first = next(iter(recs.values()))
    assert (first.hyperparameter, first.current, first.proposed) == ("init", "dead",
                                                                      "he_normal")
    assert recs["activation"].proposed == "leaky_relu"


def test_flat_from_start_with_a_tiny_lr_still_raises_the_lr():
    recs = _recs(_flat_from_start(), {"learning_rate": 1e-5, "optimizer": "sgd"}, "plateau")
    assert recs["learning_rate"].action == "increase" and "init" not in recs


@pytest.mark.parametrize("hparams, standardise", [
    ({"task": "regression"}, True),
    ({"standardize_targets": True}, False),  # never propose what the config already does
    ({"task": "classification"}, False),
])
def test_diverging_loss_in_the_thousands_standardises_regression_targets(hparams,
                                                                          standardise):
    loss = 1e6 * np.exp(-STEPS / 200) + 2e5  # MSE on targets x1000
    up = STEPS >= 100
    loss[up] = loss[up] * np.exp((STEPS[up] - 100) / 10)
    loss[STEPS >= 200] = np.nan
    result = recommend(engine.evaluate(make_run(
        {"loss/train": (STEPS, loss)}, {"learning_rate": 0.05, "optimizer": "sgd",
                                        **hparams})))
    recs = next(f for f in result.findings if f.state == "divergence").recommendations
    first = recs[0]
    if standardise:
        assert (first.hyperparameter, first.proposed) == ("standardize_targets", True)
        assert "unscaled targets" in first.rationale
    else:
        assert "standardize_targets" not in {r.hyperparameter for r in recs}
        assert first.hyperparameter == "learning_rate" and first.action == "decrease"


@pytest.mark.parametrize("hparams, proposed", [
    ({"optimizer": "AdamW", "weight_decay": 0.0}, 0.05),  # decoupled: usual 0.01-0.1
    ({"optimizer": "AdamW"}, 0.05),
    ({"optimizer": "AdamW", "weight_decay": 0.01}, 0.03),
    ({"optimizer": "SGD", "weight_decay": 0.0}, 5e-4),
    ({"optimizer": "Adam", "weight_decay": 2e-3}, 5e-3),  # x3 capped at 5e-3 (coupled)
])
def test_overfit_weight_decay_follows_the_optimizer(hparams, proposed):
    recs = _recs(overfit_curves(), {**hparams, "max_steps": 6000}, "overfit")
    assert recs["weight_decay"].proposed == pytest.approx(proposed)
    assert recs["weight_decay"].action in ("set", "increase")


def test_early_stop_when_val_is_best_at_the_first_evaluation_is_not_degenerate():
    steps = np.arange(0, 2401, 50)
    curves = {"loss/train": (steps, 2.0 * np.exp(-steps / 300) + 0.05),
              "loss/val": (steps, 0.5 + steps / 2000)}
    stop = _recs(curves, {"max_steps": 2400}, "overfit")["max_steps"]
    assert (stop.current, stop.proposed) == (2400, 240)  # 10% of the run, not step 0 or 8
    assert "at the earliest" in stop.rationale


def test_augmentation_already_on_in_the_yolo_config_is_not_proposed():
    sources, _ = discover.discover([str(require(shared("real_logs") /
                                                "yolov5_traffic_886ep_resumed"))])
    run = ingest.load_run(sources[0])
    assert run.hparams["hyp.mosaic"] == 1.0 and run.hparams["hyp.mixup"] == 0.1
    result = recommend(engine.evaluate(run))
    recs = [r for f in result.findings for r in f.recommendations]
    assert any(f.state == "overfit" for f in result.findings)
    assert "data_augmentation" not in {r.hyperparameter for r in recs}
    # a run with augmentation off still gets it
    assert "data_augmentation" in _recs(overfit_curves(), {"max_steps": 6000,
                                                           "data_augmentation": False},
                                        "overfit")


@pytest.mark.parametrize("recorded, standardise", [(False, True), (None, False)])
def test_regression_nan_from_the_first_point_with_raw_targets_standardises(recorded,
                                                                            standardise):
    hp = {"learning_rate": 0.01, "optimizer": "sgd", "task": "regression"}
    if recorded is not None:
        hp["standardize_targets"] = recorded  # the config says the targets stay raw
    loss = np.full(len(STEPS), np.nan)  # no finite loss to size: only the config speaks
    recs = _recs({"loss/train": (STEPS, loss)}, hp, "divergence")
    assert ("standardize_targets" in recs) == standardise
    if standardise:
        assert next(iter(recs)) == "standardize_targets"
