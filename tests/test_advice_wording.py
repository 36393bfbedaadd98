"""Rationales say what the numbers say: the bound that set a proposal, no "0 points",
the same tail share as the finding, no share of progress above 100%."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_recommend import STEPS, by_name, diverging_loss, finding, make_run, recs_of

from diagnose.findings import RunResult
from diagnose.recommend import recommend

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _scheduled_divergence(hparam_lr: float, grads_from: int = 0) -> dict:
    lr = np.minimum(0.5, STEPS / 1000 * 0.5 + 1e-3)  # the LR at the turn (800) is 0.401
    keep = grads_from <= STEPS
    grads = 1.0 + 0.5 * np.sin(STEPS / 7.0) ** 2
    run = make_run({"loss/train": (STEPS, diverging_loss()), "lr": (STEPS, lr),
                    "grad_norm": (STEPS[keep], grads[keep])}, {"learning_rate": hparam_lr})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min_step=800, loss_min=0.44,
                rise_ratio_before_nonfinite=40.0)
    return by_name(recs_of(recommend(RunResult(run, findings=[f])), "DIV001"))


def test_lr_at_the_turn_over_three_is_named_only_when_it_sets_the_proposal() -> None:
    by_turn = _scheduled_divergence(0.5)["learning_rate"]
    assert by_turn.proposed == pytest.approx(0.13)  # 0.401 / 3 < 0.5 / 2
    assert "/3 = 0.13" in by_turn.rationale
    halved = _scheduled_divergence(0.02)["learning_rate"]
    assert halved.proposed == pytest.approx(0.01)  # 0.401 / 3 is above 0.02 / 2
    assert "/3 =" not in halved.rationale  # not "use that LR /3 = 0.01"
    assert "halve it to 0.01" in halved.rationale


def test_clip_rationale_without_grad_norms_before_the_trouble_says_so() -> None:
    clip = _scheduled_divergence(0.5, grads_from=900)["grad_clip"]
    assert clip.proposed == 1.0
    assert "only 0" not in clip.rationale
    assert "no grad norm logged before the trouble" in clip.rationale
    few = _scheduled_divergence(0.5, grads_from=780)["grad_clip"]  # 2 points before 800
    assert "after only 2 grad-norm points" in few.rationale


def _prg001_findings() -> list[dict]:
    found = []
    for path in sorted((SNAPSHOTS / "rules").glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")).values():
            found += [f for f in case if isinstance(f, dict) and f.get("rule") == "PRG001"]
    return found


def test_undertrained_advice_names_the_tail_its_finding_names() -> None:
    found = _prg001_findings()
    assert found, "no PRG001 finding in the rule snapshots"
    checked = 0
    for f in found:
        share = re.search(r"over the last (\S+%) of steps", f["message"])
        assert share is not None
        # a change another finding of the run motivated (reconciled onto this one, e.g.
        # an underfit's "train longer") speaks of its own evidence, not of this tail
        own = [r for r in f["recommendations"] if "still improved" in r["rationale"]]
        checked += len(own)
        for rec in own:
            assert f"over the last {share.group(1)} of steps" in rec["rationale"]
            for pct in re.findall(r"(\d+)% of its total progress", rec["rationale"]):
                assert int(pct) <= 100
    assert checked >= 4, "PRG001's own advice is missing from the snapshots"


def test_policy_numbers_move_the_divergence_advice() -> None:
    from diagnose.advice.policy import AdvicePolicy

    loss = 2.0 * np.exp(-STEPS / 300) + 0.3
    loss[STEPS >= 1200] = np.nan  # NaN straight from a healthy loss: violent
    run = make_run({"loss/train": (STEPS, loss)}, {"learning_rate": 0.5})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min=0.3, loss_min_step=1190)
    default = by_name(recs_of(recommend(RunResult(run, findings=[f])), "DIV001"))
    assert default["learning_rate"].proposed == pytest.approx(0.05)
    cut = recommend(RunResult(run, findings=[f]), policy=AdvicePolicy(lr_cut_violent=20.0))
    assert by_name(recs_of(cut, "DIV001"))["learning_rate"].proposed == pytest.approx(0.025)


@pytest.mark.parametrize("rid, field", [("DIV001", "blowup"), ("OVF001", "evaluations"),
                                        ("UND001", "train_tail_gain")])
def test_advice_inputs_are_measured_by_the_detector_not_json_keys(rid: str,
                                                                  field: str) -> None:
    from fallback_loader import load_any

    from diagnose.config import Config
    from diagnose.engine import evaluate, load_rules

    folder = Path(__file__).parent / "rule_fixtures" / rid / "fire"
    result = evaluate(load_any(folder), Config(preview=True), load_rules())
    hits = [f for f in result.findings if f.rule == rid]
    assert hits, f"{rid} does not fire on its case"
    assert getattr(hits[0].detail, field) is not None
    assert field not in hits[0].evidence


def test_a_converged_plateau_says_when_its_tolerance_is_as_large_as_its_value() -> None:
    from diagnose.detectors.plateau import PLT003, StallEvidence

    wide = StallEvidence(name="train loss", best=1.083, tolerance=1.08, flat_since_step=319,
                         flat_share_of_run=0.83)
    assert "(a tolerance of 100% of that value)" in PLT003().message(wide)
    # a best near zero after a fall of orders of magnitude: a share of the progress, not
    # "a tolerance of 12622853104% of that value" (real_extra pl_regression_zero_steps)
    tiny = StallEvidence(name="train_loss", best=4.9e-8, tolerance=6.18, total_progress=61.8,
                         flat_since_step=1399, flat_share_of_run=0.87)
    assert "(10% of its total progress 61.8)" in PLT003().message(tiny)
    narrow = StallEvidence(name="val acc", best=0.84, tolerance=0.026, flat_since_step=12,
                           flat_share_of_run=0.8)
    assert PLT003().message(narrow).startswith("val acc has stayed within 0.026 of its best "
                                               "0.84 since step 12")
