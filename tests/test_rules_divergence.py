"""DIV001-DIV005 and LOG005: divergence, and NaNs that recover."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rule_helpers import decay, findings, make_run

RNG = np.random.default_rng(42)


def _noisy(curve, sd=0.05, seed=0):
    return curve * np.exp(np.random.default_rng(seed).normal(0, sd, len(curve)))


# --- DIV001 / LOG005 ---------------------------------------------------------------


def test_nan_that_never_recovers_is_divergence_with_evidence():
    steps = np.arange(1000)
    loss = _noisy(decay(steps))
    loss[700:760] *= np.exp(np.linspace(0, 3, 60))
    loss[760:] = np.nan
    (f,) = findings(make_run({"train_loss": (steps, loss)}), "DIV001")
    assert f.step == 760 and f.severity == "error" and f.state == "divergence"
    assert "becomes NaN at step 760" in f.message and "x from its best" in f.message
    ev = f.evidence
    assert ev["first_nonfinite_step"] == 760 and ev["last_finite_step"] == 759
    assert ev["nonfinite_points"] == 240 and ev["total_points"] == 1000
    assert ev["loss_min"] < 0.4 and ev["rise_ratio_before_nonfinite"] > 10
    assert not findings(make_run({"train_loss": (steps, loss)}), "LOG005")


def test_transient_nan_is_a_log_finding_not_divergence():
    steps = np.arange(1000)
    loss = _noisy(decay(steps))
    loss[[300, 301, 640]] = [np.nan, np.inf, np.nan]
    run = make_run({"train_loss": (steps, loss)})
    assert not findings(run, "DIV001")
    (f,) = findings(run, "LOG005")
    assert f.severity == "info" and f.step == 300 and f.evidence["nonfinite_points"] == 3


def test_mostly_nan_with_a_few_finite_blips_is_still_divergence():
    steps = np.arange(200)
    loss = np.full(200, np.nan)
    loss[:50] = decay(steps[:50])
    loss[[120, 150, 190, 195, 196, 197, 198, 199]] = 1.0  # sporadic finite values
    assert findings(make_run({"train_loss": (steps, loss)}), "DIV001")


def test_nan_on_a_negative_loss_reads_without_ratios():
    """PtychoPINN-style Poisson NLL around -3.9e6 that turns NaN."""
    steps = np.arange(5)
    loss = np.array([-3.86e6, -3.94e6, -3.94e6, np.nan, np.nan])
    run = make_run({"loss": (steps, loss), "val_loss": (steps, loss - 5e5)})
    got = findings(run, "DIV001")
    assert {f.metric for f in got} == {"loss", "val_loss"}
    assert all("x from" not in f.message for f in got)


# --- DIV002 --------------------------------------------------------------------


def test_exploding_loss_fires_and_a_recovered_spike_does_not():
    steps = np.arange(1000)
    base = decay(steps, tau=100)
    climb = 3.0 / (1 + np.exp(-(steps - 600) / 30))
    (f,) = findings(make_run({"train_loss": (steps, _noisy(base + climb))}), "DIV002")
    assert 550 < f.step < 700 and f.evidence["ratio_to_best"] > 5
    spike = base + 3.0 * np.exp(-np.abs(steps - 600) / 10)
    assert not findings(make_run({"train_loss": (steps, _noisy(spike))}), "DIV002")


def test_thrash_then_settle_at_a_worse_level_is_judged_against_its_settled_noise():
    """``examples/train.py --lr 0.5``: the per-step loss thrashes between 0.2 and 4 for
    the first half (its whole-run noise is huge), then sits still near ln 3 = 1.1, four
    times its best: the rise is measured against the noise of where it settled."""
    rng = np.random.default_rng(5)
    steps = np.arange(5, 305, 5)
    loss = np.r_[np.exp(rng.normal(-0.3, 0.9, 20)), [0.25, 0.22, 0.24, 0.26],
                 np.exp(rng.normal(0.0, 0.8, 20)), 1.0 + rng.normal(0, 0.03, 16)]
    (f,) = findings(make_run({"train_loss": (steps, loss)}), "DIV002")
    assert f.evidence["tail_median"] > 3 * f.evidence["best"]
    # judged against the whole run's noise (settled window longer than the run) it hides
    assert not findings(make_run({"train_loss": (steps, loss)}), "DIV002",
                        thresholds={"DIV002": {"min_points": 59}})
    # the same run that settles back at its best level is not divergence
    calm = loss.copy()
    calm[-16:] = 0.25 + rng.normal(0, 0.01, 16)
    assert not findings(make_run({"train_loss": (steps, calm)}), "DIV002")


def test_exploding_is_sign_agnostic():
    """A negative-by-design loss that gives back all of its progress is exploding."""
    steps = np.arange(400)
    loss = -4.0e6 + 2e5 * np.exp(-steps / 30)  # falls from -3.8e6 to -4.0e6
    loss = loss + np.where(steps > 200, 4e5 * (1 - np.exp(-(steps - 200) / 20)), 0)
    loss = loss + np.random.default_rng(1).normal(0, 2e3, 400)
    (f,) = findings(make_run({"train_loss": (steps, loss)}), "DIV002")
    assert f.evidence["ratio_to_best"] is None and "early drop" in f.message
    # the healthy negative loss stays quiet
    healthy = -4.0e6 + 2e5 * np.exp(-steps / 30) + np.random.default_rng(2).normal(0, 2e3, 400)
    assert not findings(make_run({"train_loss": (steps, healthy)}), "DIV002")


def test_val_rise_with_falling_train_is_not_divergence():
    """Overfitting (val up, train down) belongs to the overfit rules."""
    steps = np.arange(0, 2000)
    train = _noisy(decay(steps, floor=0.01, tau=200))
    vs = np.arange(0, 2000, 20)
    val = 0.7 + 4.0 * np.clip((vs - 500) / 1500, 0, None)
    run = make_run({"train_loss": (steps, train), "val_loss": (vs, val)})
    assert not findings(run, "DIV002") and not findings(run, "DIV004")


# --- DIV003 --------------------------------------------------------------------


def test_astronomical_cross_entropy_fires_from_the_start():
    steps = np.arange(50)
    loss = 3e5 * np.exp(-steps / 100)
    acc = np.full(50, 0.1)
    got = findings(make_run({"loss": (steps, loss), "accuracy": (steps, acc)}), "DIV003")
    assert got and got[0].step == 0 and got[0].evidence["cross_entropy_like"]


def test_large_by_design_losses_are_not_astronomical():
    steps = np.arange(0, 1800, 20) + 19
    d2 = 1.1 + 85 * np.exp(-(steps - 19) / 25.0)  # detectron2 warmup start near 86
    run = make_run({"total_loss": (steps, d2), "fast_rcnn/cls_accuracy": (steps, steps / 2e3)})
    assert not findings(run, "DIV003")
    ptycho = np.array([-3.82e6, -3.9e6, -3.91e6, -3.92e6, -3.92e6])
    assert not findings(make_run({"loss": (np.arange(5), ptycho)}), "DIV003")
    # unnormalised regression MSE: huge but stable, no sign of classification
    mse = 4e9 * (1 + 0.01 * np.random.default_rng(3).normal(size=100))
    assert not findings(make_run({"train_loss": (np.arange(100), mse)}), "DIV003")


def test_relative_blowup_fires_without_classification():
    steps = np.arange(100)
    mse = np.r_[np.full(60, 0.37), 0.37 * 10 ** np.linspace(1, 8, 40)]
    (f,) = findings(make_run({"train_loss": (steps, mse)}), "DIV003")
    assert not f.evidence["cross_entropy_like"]
    assert f.evidence["value"] >= 1e6 * 0.37


# --- DIV004 --------------------------------------------------------------------


def test_loss_trending_up_fires_with_effect_size_evidence():
    steps = np.arange(2000)
    curve = decay(steps, floor=0.5, tau=80) + 0.4 * np.clip((steps - 300) / 1700, 0, 1)
    (f,) = findings(make_run({"train_loss": (steps, _noisy(curve))}), "DIV004")
    ev = f.evidence
    assert f.severity == "warning" and ev["kendall_tau"] >= 0.4
    assert ev["slope_ci"][0] > 0 and ev["effect_noise_sigmas"] >= 5


def test_trend_advice_measures_the_rise_to_the_end_not_at_the_window_start():
    """The trend's blow-up is sized from its fitted levels and placed at the window's
    end: placed at its start, the advice saw no rise and said the loss blew up there."""
    from diagnose import engine
    from diagnose.recommend import recommend

    steps = np.arange(2000)
    curve = decay(steps, floor=0.5, tau=80) + 0.4 * np.clip((steps - 300) / 1700, 0, 1)
    run = make_run({"train_loss": (steps, _noisy(curve))},
                   {"learning_rate": 1e-3, "optimizer": "adam"})
    (f,) = [f for f in recommend(engine.evaluate(run)).findings if f.rule == "DIV004"]
    lr = next(r for r in f.recommendations if r.hyperparameter == "learning_rate")
    assert "blew up at step 1999 after rising 1.7x" in lr.rationale, lr.rationale
    assert f"at step {f.evidence['window_start_step']} " not in lr.rationale


def test_flat_noisy_or_warmup_bump_is_not_trending_up():
    steps = np.arange(2000)
    flat = 0.8 + np.random.default_rng(4).normal(0, 0.1, 2000)
    assert not findings(make_run({"train_loss": (steps, flat)}), "DIV004")
    warm = decay(steps, tau=300) + 0.5 * np.exp(-((steps - 150) / 60) ** 2)
    assert not findings(make_run({"train_loss": (steps, _noisy(warm))}), "DIV004")


def test_tiny_upward_drift_on_a_smooth_curve_is_not_material():
    """Effect in noise sigmas is huge on a near-noiseless curve; the relative gate holds."""
    steps = np.arange(1000)
    loss = 0.3 + 0.005 * steps / 1000 + np.random.default_rng(5).normal(0, 1e-5, 1000)
    loss[:50] = np.linspace(2.3, 0.3, 50)
    assert not findings(make_run({"train_loss": (steps, loss)}), "DIV004")


def test_nan_supersedes_the_explosion_before_it():
    steps = np.arange(1000)
    loss = _noisy(decay(steps, tau=80))
    loss[500:700] *= np.exp(np.linspace(0, 4, 200))
    loss[700:] = math.nan
    rules = {f.rule for f in findings(make_run({"train_loss": (steps, loss)}))}
    assert "DIV001" in rules and "DIV002" not in rules and "DIV004" not in rules


def test_astronomical_val_loss_next_to_a_sane_train_loss_is_not_divergence():
    """Broken batch-norm statistics blow up eval loss; training itself is fine."""
    steps = np.arange(500)
    train = _noisy(decay(steps, floor=0.05, tau=60))
    vs = np.arange(0, 500, 10)
    val = 10 ** np.random.default_rng(7).uniform(1, 5, len(vs))
    run = make_run({"train_loss": (steps, train), "val_loss": (vs, val),
                    "val_acc": (vs, np.full(len(vs), 0.2))})
    assert not findings(run, "DIV003") and not findings(run, "DIV002")


def test_bn_collapse_last_batch_sample_is_not_divergence():
    """Eval-mode val loss of 15-1000 next to a healthy train loss is an evaluation
    problem (BN running statistics from a 2-row last batch), not divergence: once
    reported as a DIV false positive, it must stay gone."""
    from pathlib import Path

    import pytest

    from diagnose.config import Config
    from diagnose.pipeline import Options, analyze

    path = Path(__file__).resolve().parents[1] / "sample_logs" / "tb" / "bn_collapse_last_batch"
    if not path.is_dir():
        pytest.skip("sample_logs not present")
    (res,) = analyze([str(path)], Config(), Options(jobs=1)).results
    assert "divergence" not in res.states
    assert "batchnorm_collapse" in res.states


# --- DIV005 --------------------------------------------------------------------


def _epochs(n: int = 20, per: int = 50) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(n * per)
    return steps, np.arange(per - 1, n * per, per)


def test_cross_entropy_far_above_ln_c_from_the_start_is_divergence_even_if_falling():
    """A huge init: the logged CE falls from ~900 to ~30 but sits 13x above ln 10."""
    steps, vs = _epochs()
    train = _noisy(30 + 870 * np.exp(-steps / 150), 0.1)
    val = 32 + 800 * np.exp(-vs / 150)
    run = make_run({"train_loss": (steps, train), "val_loss": (vs, val),
                    "val_acc": (vs, np.full(len(vs), 0.12))}, hparams={"num_classes": 10})
    (f,) = findings(run, "DIV005")
    ev = f.evidence
    assert ev["criterion"] == "far_above" and ev["reference_kind"] == "ln C"
    assert ev["num_classes"] == 10 and ev["ratio_to_reference"] > 10
    assert f.step == 0 and "ln 10" in f.message
    # one divergence, and the never-learned symptoms are folded into it
    assert {g.state for g in findings(run) if g.severity != "info"} == {"divergence"}


def test_unknown_class_count_is_judged_against_the_largest_plausible_chance_level():
    steps, _ = _epochs()
    acc = {"train_acc": (steps, np.full(len(steps), 0.3))}
    far = _noisy(40 + 900 * np.exp(-steps / 150), 0.1)
    (f,) = findings(make_run({"train_loss": (steps, far), **acc}), "DIV005")
    assert f.evidence["reference_kind"] == "largest plausible chance level"
    assert f.evidence["criterion"] == "far_above"
    # about 7 at the end: under 3 x ln 1000, but 1.3x the 5.4 a calibrated model at
    # accuracy 0.3 costs over up to 1000 classes; a loss blown at its first logged point
    # whose end is still above that ceiling has not healed (blown_bound_factor 1)
    mid = _noisy(5 + 900 * np.exp(-steps / 150), 0.1)
    (g,) = findings(make_run({"train_loss": (steps, mid), **acc}), "DIV005")
    assert g.evidence["criterion"] == "above_accuracy_ceiling"
    assert g.evidence["blown_at_start"] is True and g.evidence["acc_bound_factor"] == 1.0
    assert "above any plausible chance level" in g.message
    # about 4 at the end: under the ceiling, a calibrated model at that accuracy could cost
    # it; not provably blown up
    near = _noisy(2 + 900 * np.exp(-steps / 150), 0.1)
    assert not findings(make_run({"train_loss": (steps, near), **acc}), "DIV005")
    # the same 1.3x the ceiling from a loss that started sane (a train-mode loss with
    # dropout or a penalty term next to an eval-mode accuracy) needs acc_bound_factor 2
    # (1.32 at accuracy 0.9, whose ceiling is 1.01)
    sane = _noisy(1.32 + 3 * np.exp(-steps / 150), 0.1)
    assert sane[0] < 6.9
    acc9 = {"train_acc": (steps, np.full(len(steps), 0.9))}
    assert not findings(make_run({"train_loss": (steps, sane), **acc9}), "DIV005")
    assert findings(make_run({"train_loss": (steps, sane), **acc9}), "DIV005",
                    thresholds={"DIV005": {"acc_bound_factor": 1.0}})


def test_loss_far_above_what_its_accuracy_explains_is_divergence_without_a_class_count():
    """A blown-up first loss gives no class count, yet a train loss of 15 at accuracy 0.3
    is far above the H(0.3) + 0.7 ln 1000 = 5.4 any calibrated model at that accuracy
    costs: logits blown far beyond what the accuracy explains."""
    from diagnose.detectors.divergence import calibrated_ce_ceiling

    assert calibrated_ce_ceiling(0.1, math.log(10), 0.9) == pytest.approx(math.log(10))
    assert calibrated_ce_ceiling(1.0, 6.9, 1.0) == 0.0  # full credit: a certain model
    steps, vs = _epochs()
    blown = _noisy(13 + 900 * np.exp(-steps / 150), 0.1)
    acc = {"train_acc": (steps, np.full(len(steps), 0.3))}
    (f,) = findings(make_run({"train_loss": (steps, blown), **acc}), "DIV005")
    ev = f.evidence
    assert ev["criterion"] == "above_accuracy_ceiling" and ev["num_classes"] is None
    assert ev["accuracy"] == pytest.approx(0.3)
    assert ev["accuracy_bound"] == pytest.approx(calibrated_ce_ceiling(0.3, 6.9, 0.9))
    assert 2.5 < ev["level"] / ev["accuracy_bound"] < 3.1 and "calibrated model" in f.message
    # the val accuracy stands in when the train split logs none (an HF Trainer log)
    run = make_run({"train_loss": (steps, blown), "val_acc": (vs, np.full(len(vs), 0.3))})
    (f,) = findings(run, "DIV005")
    assert f.evidence["criterion"] == "above_accuracy_ceiling"
    # a logged train accuracy of 1 (a batch) is not certainty: 0.5 there is not blown up
    fine = {"train_loss": (steps, _noisy(0.5 + 2 * np.exp(-steps / 150))),
            "train_acc": (steps, np.ones(len(steps)))}
    assert not findings(make_run(fine), "DIV005")


def test_overconfident_val_loss_alone_is_not_judged_against_its_accuracy():
    """An overfit model's val loss ends at 2.5 with val accuracy 0.85 (1.7x the calibrated
    ceiling): overconfidence on val, not blown logits, so only a train loss is judged."""
    _, vs = _epochs()
    val = np.where(vs < 300, 1.1 - 0.6 * vs / 300, 0.5 + 2.0 * (vs - 300) / (vs[-1] - 300))
    run = make_run({"val_loss": (vs, val), "val_acc": (vs, np.full(len(vs), 0.85))})
    assert not findings(run, "DIV005")


def test_lr_jump_that_gives_back_all_progress_is_divergence():
    steps, vs = _epochs()
    jump = steps >= 600
    train = _noisy(np.where(jump, 1.2, decay(steps, 1.1, 0.2, 100)), 0.15)
    val = np.where(vs >= 600, 1.15, decay(vs, 1.1, 0.25, 100))
    run = make_run({"train_loss": (steps, train), "val_loss": (vs, val)},
                   hparams={"num_classes": 3})
    (f,) = findings(run, "DIV005")
    assert f.evidence["criterion"] == "back_to_start" and 600 <= f.step <= 700
    assert "gave back all its progress" in f.message
    # the same train curve while val stays good: a train-mode loss raised by noise or
    # dropout, not a model that lost what it learned
    good = decay(vs, 1.1, 0.25, 100)
    run = make_run({"train_loss": (steps, train), "val_loss": (vs, good)},
                   hparams={"num_classes": 3})
    assert not findings(run, "DIV005")


def test_fine_tune_starting_low_that_wanders_back_is_not_a_give_back():
    """No class count: the first logged point (0.05) may already be trained; the loss
    wandering back to it while val stays flat is not divergence."""
    steps, vs = _epochs()
    train = _noisy(0.05 - 0.03 * np.sin(np.pi * steps / steps[-1]), 0.2)
    val = np.full(len(vs), 0.3) + 0.001 * np.arange(len(vs))
    assert not findings(make_run({"train_loss": (steps, train), "val_loss": (vs, val)}),
                        "DIV005")


def test_huge_val_counts_only_when_train_is_not_fine_either():
    steps, vs = _epochs()
    val = 10 ** np.random.default_rng(8).uniform(2, 3, len(vs))
    calm = _noisy(decay(steps, 0.7, 0.05, 60))
    run = make_run({"train_loss": (steps, calm), "val_loss": (vs, val)},
                   hparams={"num_classes": 2})
    assert not findings(run, "DIV005")  # batchnorm_collapse's, not divergence
    thrash = calm.copy()
    thrash[steps % 3 == 0] = 500.0  # thrashing between blow-ups: the median looks fine
    run = make_run({"train_loss": (steps, thrash), "val_loss": (vs, val)},
                   hparams={"num_classes": 2})
    (f,) = findings(run, "DIV005")
    assert f.evidence["criterion"] == "val_far_above" and f.metric == "val_loss"


def test_negative_by_design_losses_have_no_untrained_level():
    steps = np.arange(200)
    elbo = -1e4 + 50 * np.r_[np.zeros(100), np.linspace(0, 100, 100)]
    assert not findings(make_run({"train_loss": (steps, elbo)}), "DIV005")


def test_a_known_large_class_count_sets_the_chance_ceiling():
    """A language model over 50,000 tokens starts near ln 50000 = 10.8 and, stopped early,
    ends at 7.5 with a token accuracy of 0.06: above the ceiling over 1000 classes, but
    its start is its chance level, not a blow-up, and a calibrated model over its own
    vocabulary can cost that much: quiet. Without the class count the same curve reads as
    blown at its first logged point."""
    steps, _ = _epochs()
    loss = _noisy(7.5 + 3.2 * np.exp(-steps / 150), 0.05)
    acc = {"train_acc": (steps, np.full(len(steps), 0.06))}
    run = make_run({"train_loss": (steps, loss), **acc}, hparams={"num_classes": 50000})
    assert not findings(run, "DIV005")
    (f,) = findings(make_run({"train_loss": (steps, loss), **acc}), "DIV005")
    assert f.evidence["blown_at_start"] is True
    assert f.evidence["chance_ceiling"] == pytest.approx(6.9)
