"""GRD001-GRD002, UNT001-UNT002, LRS001-LRS002: gradients, units and the learning rate."""

from __future__ import annotations

import math

import numpy as np
from rule_helpers import decay, findings, make_run

from diagnose.run import Histogram


def _hist(tag: str, step: int, values: np.ndarray, edges: np.ndarray) -> Histogram:
    counts, _ = np.histogram(values, bins=edges)
    b = np.c_[edges[:-1], edges[1:], counts].astype(float)
    return Histogram(tag, step, 0.0, b, float(values.min()), float(values.max()),
                     float(len(values)), float(values.sum()), float((values**2).sum()))


def _grad_hists(scale_per_step, tag="dense/kernel/grad", seed=0):
    r = np.random.default_rng(seed)
    out = []
    for step, sc in scale_per_step:
        v = r.normal(0, sc, 2000)
        edges = np.linspace(v.min(), v.max() + 1e-12, 31)
        out.append(_hist(tag, step, v, edges))
    return out


def test_exploding_gradients_from_histograms_when_no_scalar_is_logged():
    steps = np.arange(0, 1000, 50)
    loss = decay(steps)
    hist = _grad_hists([(int(s), 1e-2 * 10 ** (4 * max(s - 400, 0) / 600)) for s in steps])
    (f,) = findings(make_run({"train_loss": (steps, loss)}, histograms=hist), "GRD001")
    assert f.metric == "dense/kernel/grad" and f.evidence["growth_factor"] > 100
    calm = _grad_hists([(int(s), 1e-2) for s in steps])
    assert not findings(make_run({"train_loss": (steps, loss)}, histograms=calm), "GRD001")


def test_exploding_gradients_the_loss_did_not_pay_for_are_info():
    """DESIGN.md: a grad-norm state on its own warns only where it predicts a failure."""
    steps = np.arange(0, 1000, 10)
    g = 1e-2 * 10 ** (4 * np.maximum(steps - 400, 0) / 600)
    (f,) = findings(make_run({"train_loss": (steps, decay(steps)),
                              "grad_norm": (steps, g)}), "GRD001")
    assert f.severity == "info" and f.evidence["kept_learning"] is True
    assert f.evidence["loss_end"] <= f.evidence["loss_at_low"]
    assert "kept learning" in f.message
    # the loss turns back up as the norm grows: the growth cost progress, an error
    rising = decay(steps) + 0.5 * np.maximum(steps - 500, 0) / 500
    (f,) = findings(make_run({"train_loss": (steps, rising), "grad_norm": (steps, g)}),
                    "GRD001")
    assert f.severity == "error" and f.evidence["kept_learning"] is False


def test_nonfinite_grad_norm_is_exploding():
    steps = np.arange(100)
    g = np.r_[np.ones(60), np.full(40, math.inf)]
    (f,) = findings(make_run({"train_loss": (steps, decay(steps)),
                              "grad_norm": (steps, g)}), "GRD001")
    assert f.step == 60 and f.evidence["nonfinite_points"] == 40


def test_vanishing_needs_a_stalled_loss_unless_absolutely_tiny():
    r = np.random.default_rng(1)
    steps = np.arange(1000)
    g = 10 ** (-4.0 * steps / 1000) * np.exp(r.normal(0, 0.1, 1000))  # 1 -> 1e-4
    stalled = math.log(10) + r.normal(0, 0.01, 1000)
    (f,) = findings(make_run({"train_loss": (steps, stalled), "grad_norm": (steps, g)}),
                    "GRD002")
    assert f.evidence["collapse_factor"] > 1e3 and f.evidence["loss_progress"] < 0.5
    converging = 2.3 * np.exp(-steps / 100) + 1e-4
    assert not findings(make_run({"train_loss": (steps, converging),
                                  "grad_norm": (steps, g)}), "GRD002")
    tiny = g * 1e-5
    assert findings(make_run({"train_loss": (steps, converging),
                              "grad_norm": (steps, tiny)}), "GRD002")


def test_dead_relu_share_uses_exact_zero_buckets_only():
    r = np.random.default_rng(2)
    edges = np.r_[-1e-12, 1e-12, np.linspace(0.01, 4, 30)]
    dead = [_hist("block1/relu", s, np.where(r.random(3000) < 0.9, 0.0,
                                             np.abs(r.normal(0, 1, 3000)) + 0.01), edges)
            for s in (100, 200, 300)]
    (f,) = findings(make_run({"train_loss": ([0, 300], [1.0, 0.5])}, histograms=dead),
                    "UNT001")
    assert f.evidence["zero_share"] > 0.85
    # coarse uniform buckets cannot tell zeros from small values: stays quiet
    coarse = [_hist("block1/relu", s, np.where(r.random(3000) < 0.9, 0.0,
                                               np.abs(r.normal(0, 1, 3000))),
                    np.linspace(0, 4, 31)) for s in (100, 200, 300)]
    assert not findings(make_run({"train_loss": ([0, 300], [1.0, 0.5])}, histograms=coarse),
                        "UNT001")


def test_unit_rules_are_not_applicable_without_histograms():
    from rule_helpers import RULES

    from diagnose.config import Config
    from diagnose.engine import evaluate

    run = make_run({"train_loss": (np.arange(50), decay(np.arange(50)))})
    res = evaluate(run, Config(preview=True), RULES)
    assert {"UNT001", "UNT002", "GRD001", "GRD002", "INS003"} <= set(res.not_applicable)


def test_saturated_sigmoid_preactivations():
    r = np.random.default_rng(3)
    edges = np.linspace(-60, 60, 121)
    sat = [_hist("gate/sigmoid_input", s, r.normal(0, 40, 3000), edges) for s in (1, 2, 3)]
    assert findings(make_run({"train_loss": ([0, 3], [1.0, 0.5])}, histograms=sat), "UNT002")
    ok = [_hist("gate/sigmoid_input", s, r.normal(0, 3, 3000), edges) for s in (1, 2, 3)]
    assert not findings(make_run({"train_loss": ([0, 3], [1.0, 0.5])}, histograms=ok),
                        "UNT002")


def test_lr_zero_ignores_warmup_from_zero_and_a_final_zero():
    steps = np.arange(1000)
    loss = decay(steps)
    warm = np.minimum(steps / 100, 1.0) * 1e-3  # starts at exactly 0
    cos_end = 0.5e-3 * (1 + np.cos(np.pi * steps / 999))  # ends at exactly 0
    for lr in (warm, cos_end):
        assert not findings(make_run({"train_loss": (steps, loss), "lr": (steps, lr)}),
                            "LRS001")
    dead = np.where(steps < 600, 1e-3, 0.0)
    (f,) = findings(make_run({"train_loss": (steps, loss), "lr": (steps, dead)}), "LRS001")
    assert f.step == 600 and 0.35 < f.evidence["share_of_run"] < 0.45


def test_lr_never_decayed_is_preview_and_info():
    steps = np.arange(1000)
    loss = decay(steps, tau=60) * np.exp(np.random.default_rng(4).normal(0, 0.03, 1000))
    run = make_run({"train_loss": (steps, loss), "lr": (steps, np.full(1000, 1e-3))})
    (f,) = findings(run, "LRS002")
    assert f.severity == "info" and f.evidence["gain_share"] < 0.05
    from rule_helpers import RULES

    from diagnose.config import Config
    from diagnose.engine import evaluate

    assert not [x for x in evaluate(run, Config(), RULES).findings if x.rule == "LRS002"]


def test_per_layer_grad_norms_show_vanishing_in_the_first_layer():
    r = np.random.default_rng(6)
    steps = np.arange(200)
    loss = math.log(10) + r.normal(0, 0.005, 200)
    last = 0.7 * np.exp(r.normal(0, 0.2, 200))
    first = 4e-9 * np.exp(r.normal(0, 0.2, 200))
    cols = {"loss/train": (steps, loss), "grad_norm": (steps, last * 1.01),
            "grad_norm/first_layer": (steps, first), "grad_norm/last_layer": (steps, last)}
    (f,) = findings(make_run(cols), "GRD002")
    assert f.metric == "grad_norm/first_layer" and f.evidence["layer_ratio_observed"] < 1e-3
    cols["grad_norm/first_layer"] = (steps, first * 1e6)  # 4e-3: a normal deep net
    assert not findings(make_run(cols), "GRD002")
