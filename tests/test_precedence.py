"""Run-level precedence across metrics (issue 8, deliver 4; DESIGN.md "What each state
means"): divergence > batchnorm_collapse > overfit, plateau, underfit > other states,
with the explained findings folded into the core finding as evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.config import Config
from diagnose.engine import evaluate, fold_explained, load_rules
from diagnose.findings import Finding
from diagnose.ingest import load_run
from diagnose.metrics import resolve_roles
from diagnose.recommend import recommend
from diagnose.run import Run, make_scalars

REPO = Path(__file__).resolve().parents[1]


def _f(rule: str, state: str, metric: str | None, step: int | None,
       severity: str = "error") -> Finding:
    return Finding(rule, rule.lower(), state, severity, metric, step,  # type: ignore[arg-type]
                   f"{rule} fired", {"k": 1})


def test_symptoms_with_or_after_the_divergence_are_folded_into_it() -> None:
    findings = [_f("DIV001", "divergence", "loss", 180),
                _f("GRD001", "exploding_gradients", "grad_norm", 180),
                _f("OVF002", "overfit", "val_acc", 200, "warning"),
                _f("DIV001", "divergence", "val_loss", 205)]
    out = fold_explained(findings)
    assert [f.rule for f in out] == ["DIV001", "DIV001"]
    head = out[0]
    assert [e["rule"] for e in head.evidence["explains"]] == ["GRD001", "OVF002"]
    assert head.evidence["explains"][0] == {
        "rule": "GRD001", "state": "exploding_gradients", "metric": "grad_norm",
        "step": 180, "message": "GRD001 fired"}
    assert [g.rule for g in head.explained] == ["GRD001", "OVF002"]
    assert head.evidence["k"] == 1  # the rule's own evidence is kept


def test_a_state_with_its_own_earlier_evidence_stays() -> None:
    """Overfit first, then divergence after an LR jump: two states (DESIGN.md)."""
    findings = [_f("OVF001", "overfit", "val_loss", 4505, "warning"),
                _f("DIV001", "divergence", "train_loss", 16403)]
    assert [f.rule for f in fold_explained(findings)] == ["OVF001", "DIV001"]


def test_info_findings_and_unrelated_states_are_left_alone() -> None:
    findings = [_f("DIV002", "divergence", "loss", 10),
                _f("PLT003", "plateau", "val_loss", 50, "info"),
                _f("LRS002", "lr_schedule", "lr", 60, "warning"),
                _f("LOG002", "log", None, None, "warning")]
    assert fold_explained(findings) == findings


def _bn_run() -> Run:
    steps = np.arange(40)
    r = np.random.default_rng(0)
    scalars = pd.concat([make_scalars("train_loss", steps, 1.0 / (1 + steps) + 0.1),
                         make_scalars("val_loss", steps, np.exp(r.normal(1.0, 1.5, 40)))],
                        ignore_index=True)
    return Run("bn", path=Path("."), format="csv", scalars=scalars).finalize()


def test_batchnorm_collapse_explains_val_side_findings_only() -> None:
    roles = resolve_roles(_bn_run().scalars)
    findings = [_f("BN001", "batchnorm_collapse", "val_loss", 0),
                _f("OVF003", "overfit", "val_loss", 30, "warning"),
                _f("INS001", "instability", "train_loss", 7, "warning"),
                _f("UND003", "underfit", "train_loss", 39, "warning")]
    out = fold_explained(findings, roles)
    assert [f.rule for f in out] == ["BN001", "INS001", "UND003"]
    assert [e["rule"] for e in out[0].evidence["explains"]] == ["OVF003"]


def test_exploding_gradients_sample_is_one_divergence_with_the_gradient_advice() -> None:
    """The grad norm exploded because the loss diverged: one state, and the divergence
    finding still carries what the gradient finding advised (normalisation)."""
    from diagnose.discover import discover

    (source,), errors = discover([str(REPO / "sample_logs" / "tb" / "exploding_gradients_rnn")])
    assert not errors
    result = recommend(evaluate(load_run(source), Config(), load_rules()))
    assert result.states == ["divergence"]
    head = next(f for f in result.findings if f.evidence.get("explains"))
    assert head.rule == "DIV001"
    assert [e["rule"] for e in head.evidence["explains"]] == ["GRD001"]
    hypers = [r.hyperparameter for r in head.recommendations]
    assert hypers[:3] == ["learning_rate", "warmup_steps", "grad_clip"]
    assert "normalization" in hypers
