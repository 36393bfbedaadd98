"""Coupled changes (issue 10): a switch from sigmoid/tanh to ReLU carries He init with it
(``Recommendation.together``, JSON ``together_with``), and the probe applies both in one
trial: on corpus run r01136 (a 10-layer sigmoid MLP) ReLU alone and He init alone stay at
the majority-class loss; only both together learn (bench/README.md, round 5)."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest
from test_advice_sizes import _all_recs, _at_chance
from test_probe import _result
from test_recommend import make_run

from diagnose import engine
from diagnose.advice.policy import AdvicePolicy
from diagnose.config import ConfigError
from diagnose.findings import Recommendation
from diagnose.probe.core import plan_probe
from diagnose.recommend import recommend
from diagnose.report import recommendation_line

REPO = Path(__file__).resolve().parents[1]
HP = {"learning_rate": 0.05, "optimizer": "sgd", "max_steps": 600}


def _top(hparams: dict) -> Recommendation:
    _, recs = _all_recs(_at_chance(), hparams)
    return next(iter(recs.values()))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_relu_for_a_saturating_net_carries_he_init(activation: str) -> None:
    top = _top({**HP, "activation": activation, "init": "default"})
    assert (top.hyperparameter, top.proposed) == ("activation", "relu")
    (init,) = top.together
    assert (init.hyperparameter, init.action, init.current, init.proposed) == (
        "init", "set", "default", "he_normal")
    doc = top.to_dict()
    assert doc["together_with"] == [init.to_dict()]
    assert set(doc["together_with"][0]) == {"hyperparameter", "action", "current",
                                            "proposed", "rationale"}
    assert ", with init: default -> he_normal (" in recommendation_line(top)


def test_no_companion_when_the_init_is_already_he_or_the_policy_says_no() -> None:
    top = _top({**HP, "activation": "sigmoid", "init": "kaiming_normal"})
    assert top.hyperparameter == "activation" and top.together == ()
    assert "together_with" not in top.to_dict()  # schema_version 1 stays as it was
    off = AdvicePolicy.from_config({"relu_with_he_init": False})
    run = make_run(_at_chance(), {**HP, "activation": "sigmoid"})
    result = recommend(engine.evaluate(run), policy=off)
    recs = [r for f in result.findings for r in f.recommendations]
    assert recs and all(not r.together for r in recs)
    with pytest.raises(ConfigError, match="relu_with_he_init"):
        AdvicePolicy.from_config({"relu_with_he_init": "maybe"})


TPL = "python t.py --act {activation} --init {init} --lr {lr} --logdir {logdir}"


def _coupled() -> Recommendation:
    init = Recommendation("init", "set", "default", "he_normal", "goes with ReLU")
    return Recommendation("activation", "set", "sigmoid", "relu", "why", (init,))


def test_the_probe_applies_a_coupled_change_in_one_trial_or_not_at_all() -> None:
    hp = {"learning_rate": 0.05, "activation": "sigmoid", "init": "default"}
    result = _result(hp, [_coupled()], state="plateau")
    plan = plan_probe(result, TPL, overrides={}, top=1, extra=[], frac=1.0, max_steps=None)
    (cand,) = plan.candidates
    assert cand.changes == {"activation": "relu", "init": "he_normal"}
    assert cand.key == "activation=relu,init=he_normal"
    # half of it is not the advice: without an {init} placeholder nothing is tried
    plan = plan_probe(result, TPL.replace(" --init {init}", ""), overrides={}, top=1,
                      extra=[], frac=1.0, max_steps=None)
    assert plan.candidates == []
    (skip,) = plan.skipped
    assert skip["hyperparameter"] == "activation"
    assert skip["reason"].startswith("together with activation:") and "{init}" in skip["reason"]




def test_a_companion_the_template_cannot_carry_leaves_the_main_change_alone() -> None:
    """A companion (dropout beside an early stop) helps the change but is not part of it:
    without its placeholder the main change is still tried, and the plan says what was
    left out and why; a needed part (He init with ReLU) keeps the all-or-nothing rule."""
    dropout = Recommendation("dropout", "increase", 0.0, 0.3, "regularise the checkpoint")
    stop = Recommendation("learning_rate", "decrease", 0.05, 0.01, "why", (dropout,),
                          together_needed=False)
    hp = {"learning_rate": 0.05, "dropout": 0.0}
    result = _result(hp, [stop], state="overfit")
    with_both = "python t.py --lr {lr} --dropout {dropout} --logdir {logdir}"
    plan = plan_probe(result, with_both, overrides={}, top=1, extra=[], frac=1.0,
                      max_steps=None)
    (cand,) = plan.candidates
    assert cand.changes == {"learning_rate": 0.01, "dropout": 0.3} and not plan.skipped
    plan = plan_probe(result, "python t.py --lr {lr} --logdir {logdir}", overrides={}, top=1,
                      extra=[], frac=1.0, max_steps=None)
    (cand,) = plan.candidates
    assert cand.changes == {"learning_rate": 0.01}
    (skip,) = plan.skipped
    assert skip["hyperparameter"] == "dropout"
    assert skip["reason"].startswith("carried by learning_rate, tried without it:")
    assert "{dropout}" in skip["reason"]


def test_the_random_control_of_a_coupled_change_changes_as_many_other_knobs(fixrate) -> None:
    from test_probe_fixrate import CONTROL

    control = {**CONTROL, "activation": "sigmoid"}
    for seed in range(20):
        rand = fixrate.random_change(control, {"activation": "relu", "init": "he_normal"},
                                     seed)
        assert len(rand) == 2 and not {"activation", "init"} & set(rand)
        assert all(str(v) != str(control[k]) for k, v in rand.items())
    single = fixrate.random_change(control, {"activation": "relu"}, 3)
    assert len(single) == 1


def test_a_case_record_names_the_companion_and_refresh_sees_it(fixrate) -> None:
    top = fixrate._top(_coupled())
    assert top["together"] == {"init": "he_normal"}
    assert "together" not in fixrate._top(Recommendation("dropout", "set", 0.5, 0.3, "w"))
    assert json.loads(json.dumps(top))["together"]["init"] == "he_normal"
