"""Recommendations: direction AND value per state, unknown values, and no contradictions.

Runs are real :class:`diagnose.run.Run` objects built with ``make_scalars`` from curves
shaped like the failure; findings carry the evidence keys the detectors emit
(``diagnose/detectors``).  One test goes through the real pipeline on files written by
TensorBoard's own event writer, and one over a committed real log when it is present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import require, shared
from tensorboard.summary.writer import event_file_writer as writer

from diagnose import discover, engine, ingest
from diagnose.findings import Finding, Recommendation, RunResult
from diagnose.recommend import GROUPS, precedence, recommend
from diagnose.run import Run, make_scalars

REAL_LOGS = shared("real_logs")


def make_run(curves: dict[str, tuple[np.ndarray, np.ndarray]], hparams: dict | None = None,
             run_id: str = "run", fmt: str = "tensorboard") -> Run:
    """A Run from {tag: (steps, values)}."""
    parts = [make_scalars(tag, steps, values) for tag, (steps, values) in curves.items()]
    scalars = pd.concat(parts, ignore_index=True)
    return Run(run_id, Path(run_id), fmt, scalars=scalars, hparams=dict(hparams or {})).finalize()


def finding(state: str, rule: str, severity: str = "warning", metric: str | None = None,
            step: int | None = None, **evidence) -> Finding:
    return Finding(rule, rule.lower(), state, severity, metric, step, f"{state} found", evidence)


def recs_of(result: RunResult, rule: str) -> list[Recommendation]:
    return list(next(f for f in result.findings if f.rule == rule).recommendations)


def by_name(recs: list[Recommendation]) -> dict[str, Recommendation]:
    return {r.hyperparameter: r for r in recs}


def assert_coherent(result: RunResult) -> None:
    """One direction per group and one proposed value per hyperparameter, run-wide."""
    directions: dict[str, set[int]] = {}
    values: dict[str, set[str]] = {}
    for f in result.findings:
        for r in f.recommendations:
            group = GROUPS.get(r.hyperparameter, r.hyperparameter)
            sign = {"increase": 1, "enable": 1, "decrease": -1, "disable": -1}.get(r.action)
            if sign is None and isinstance(r.current, (int, float)) and isinstance(
                    r.proposed, (int, float)):
                sign = int(np.sign(r.proposed - r.current))
            if sign:
                directions.setdefault(group, set()).add(sign)
            values.setdefault(r.hyperparameter, set()).add(repr(r.proposed))
    for group, signs in directions.items():
        assert len(signs) == 1, f"contradictory moves on {group}: {signs}"
    for name, seen in values.items():
        assert len(seen) == 1, f"{name} proposed as {seen}"


# ---------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------

STEPS = np.arange(0, 2000, 10)


def diverging_loss(turn: int = 800, nan_at: int = 1200) -> np.ndarray:
    loss = 2.0 * np.exp(-STEPS / 300) + 0.3
    up = turn <= STEPS
    loss[up] = loss[up] * np.exp((STEPS[up] - turn) / 100)
    loss[nan_at <= STEPS] = np.nan
    return loss


def overfit_curves(best: int = 2400, last: int = 6000) -> dict:
    steps = np.arange(0, last + 1, 100)
    train = 2.0 * np.exp(-steps / 1500) + 0.05
    val = 0.3 + 0.5 * np.exp(-steps / 600) + np.where(steps > best, (steps - best) / 30000, 0)
    return {"loss/train": (steps, train), "loss/val": (steps, val)}


# ---------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------


def test_divergence_known_lr_sudden_nan_cuts_lr_tenfold_and_adds_warmup_and_clip():
    loss = 2.0 * np.exp(-STEPS / 300) + 0.3
    loss[STEPS >= 1200] = np.nan  # NaN straight from a healthy loss: violent
    run = make_run({"loss/train": (STEPS, loss)}, {"learning_rate": 0.5, "batch_size": 64})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min=float(np.nanmin(loss)),
                loss_min_step=1190)
    out = recommend(RunResult(run, findings=[f]))
    recs = recs_of(out, "DIV001")
    assert recs[0].hyperparameter == "learning_rate"  # LR first (seeds' importance order)
    lr = recs[0]
    assert lr.action == "decrease" and lr.current == 0.5
    assert lr.proposed == pytest.approx(0.05)  # /10: NaN within 3 points of the minimum
    named = by_name(recs)
    assert named["grad_clip"].proposed == 1.0  # no grad norms logged: the usual default
    assert "90th percentile" in named["grad_clip"].rationale
    # warmup is not proposed for a NaN at 60% of the run (it is not early trouble)
    assert "warmup_steps" not in named


def test_divergence_with_lr_schedule_uses_lr_at_the_turn_and_grad_norm_percentile():
    lr = np.minimum(0.5, STEPS / 1000 * 0.5 + 1e-3)  # linear ramp to 0.5 at step 1000
    grads = 1.0 + 0.5 * np.sin(STEPS / 7.0) ** 2
    grads[STEPS >= 800] *= 50
    grads[STEPS >= 1200] = np.nan
    run = make_run({"loss/train": (STEPS, diverging_loss()), "lr": (STEPS, lr),
                    "grad_norm": (STEPS, grads)}, {"learning_rate": 0.5})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min_step=800, loss_min=0.44,
                rise_ratio_before_nonfinite=40.0)
    out = recommend(RunResult(run, findings=[f]))
    named = by_name(recs_of(out, "DIV001"))
    lr_turn = lr[STEPS == 800][0]
    assert named["learning_rate"].proposed == pytest.approx(float(f"{lr_turn / 3:.2g}"))
    assert named["learning_rate"].proposed < 0.5
    assert "0.401" in named["learning_rate"].rationale  # cites the LR at the turn
    p90 = float(np.percentile(grads[STEPS < 800], 90))
    assert named["grad_clip"].proposed == pytest.approx(float(f"{p90:.2g}"))
    assert named["grad_clip"].current is None
    warm = named["warmup_steps"]
    assert warm.proposed == 200  # 10% cap of the 1990-step run (trouble at step 800)


def test_divergence_unknown_lr_gives_relative_proposal_and_says_how_to_make_it_concrete():
    run = make_run({"loss/train": (STEPS, diverging_loss())})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min_step=800)
    lr = by_name(recs_of(recommend(RunResult(run, findings=[f])), "DIV001"))["learning_rate"]
    assert lr.current is None
    assert lr.action == "decrease"
    assert lr.proposed == "current/5"  # gradual rise then NaN: /5
    assert "--hparam learning_rate=" in lr.rationale


def test_divergence_without_nan_cuts_lr_threefold_for_a_mild_rise():
    loss = 1.0 + 0.5 * np.exp(-STEPS / 200)
    loss[STEPS > 1000] += (STEPS[STEPS > 1000] - 1000) / 1000  # doubles, no NaN
    run = make_run({"loss/train": (STEPS, loss)}, {"learning_rate": 0.03})
    f = finding("divergence", "DIV002", "error", "loss/train", 1500, best_step=1000,
                best=1.0, ratio_to_best=1.9, onset_step=1500)
    lr = by_name(recs_of(recommend(RunResult(run, findings=[f])), "DIV002"))["learning_rate"]
    assert lr.proposed == pytest.approx(0.01)


def test_hparam_override_wins_over_the_logged_value_and_is_canonicalised():
    run = make_run({"loss/train": (STEPS, diverging_loss())}, {"learning_rate": 0.5})
    f = finding("divergence", "DIV001", "error", "loss/train", 1200,
                first_nonfinite_step=1200, loss_min_step=800)
    out = recommend(RunResult(run, findings=[f]), {"lr": "0.2"})
    lr = by_name(recs_of(out, "DIV001"))["learning_rate"]
    assert lr.current == 0.2
    assert lr.proposed == pytest.approx(0.04)
    assert "--hparam" in lr.rationale


# ---------------------------------------------------------------------------
# Overfit / underfit
# ---------------------------------------------------------------------------


def test_overfit_stops_at_best_step_and_adds_default_weight_decay():
    curves = overfit_curves()
    run = make_run(curves, {"learning_rate": 1e-3, "weight_decay": 0.0, "max_steps": 6000})
    f = finding("overfit", "OVF001", "warning", "loss/val", 2400, best_step=2400,
                val_best=0.34, val_end=0.42, val_worsening_pct=23.5)
    recs = recs_of(recommend(RunResult(run, findings=[f])), "OVF001")
    assert recs[0].hyperparameter == "max_steps"  # strongest evidence first
    stop = recs[0]
    assert (stop.action, stop.current, stop.proposed) == ("set", 6000, 2400)
    named = by_name(recs)
    wd = named["weight_decay"]
    assert (wd.action, wd.current, wd.proposed) == ("increase", 0.0, 5e-4)
    assert named["dropout"].proposed == 0.3
    assert "BatchNorm" in named["dropout"].rationale
    assert named["data_augmentation"].action == "enable"
    assert named["model_capacity"].action == "decrease"
    assert "2400" in stop.rationale and "0.34" in stop.rationale


def test_overfit_multiplies_existing_weight_decay_by_evidence_strength():
    run = make_run(overfit_curves(), {"weight_decay": 1e-4, "dropout": 0.5})
    mild = finding("overfit", "OVF001", "warning", "loss/val", 2400, best_step=2400,
                   val_worsening_pct=20.0)
    strong = finding("overfit", "OVF001", "warning", "loss/val", 2400, best_step=2400,
                     val_worsening_pct=80.0)
    wd_mild = by_name(recs_of(recommend(RunResult(run, findings=[mild])), "OVF001"))
    wd_strong = by_name(recs_of(recommend(RunResult(run, findings=[strong])), "OVF001"))
    assert wd_mild["weight_decay"].proposed == pytest.approx(3e-4)
    assert wd_strong["weight_decay"].proposed == pytest.approx(1e-3)
    assert "dropout" not in wd_mild  # already at the 0.5 ceiling


def test_overfit_in_epoch_log_proposes_epochs_and_skips_dropout_with_bn_collapse():
    steps = np.arange(0, 100)
    train = 2.0 * np.exp(-steps / 30) + 0.1
    val = 0.7 + 0.5 * np.exp(-steps / 10) + np.where(steps > 42, (steps - 42) / 300, 0)
    run = make_run({"loss": (steps, train), "val_loss": (steps, val)}, fmt="keras_csv")
    f = finding("overfit", "OVF003", "warning", "val_loss", 50, val_min_step=42,
                val_min=0.717)
    bn = finding("batchnorm_collapse", "BN001", "warning", "val_loss", 0, branch="chance",
                 val_acc_median=0.1, chance_accuracy=0.1)
    out = recommend(RunResult(run, findings=[f, bn]))
    named = by_name(recs_of(out, "OVF003"))
    assert named["epochs"].current == 100 and named["epochs"].proposed == 43  # 0-indexed
    assert "dropout" not in named  # dropout is suspect when BN statistics are broken
    assert_coherent(out)


def test_overfit_without_val_rise_at_end_gives_no_early_stop():
    steps = np.arange(0, 1000, 10)
    run = make_run({"loss/train": (steps, np.exp(-steps / 100)),
                    "loss/val": (steps, 1 + np.exp(-steps / 300))})
    f = finding("overfit", "OVF003", "warning", "loss/val", 500, val_min_step=990)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "OVF003"))
    assert "max_steps" not in named and "epochs" not in named
    assert named["weight_decay"].current is None  # unknown: concrete default, said so
    assert "--hparam weight_decay=" in named["weight_decay"].rationale


def test_underfit_reduces_regularisation_and_grows_the_model():
    steps = np.arange(0, 1000, 10)
    loss = 1.79 - 0.2 * (steps / 1000)  # still falling slowly at a poor level
    run = make_run({"loss/train": (steps, loss)},
                   {"learning_rate": 1e-5, "optimizer": "adam", "weight_decay": 1e-3,
                    "dropout": 0.5, "max_steps": 1000})
    f = finding("underfit", "UND001", "warning", "loss/train", 990, num_classes=6,
                chance_accuracy=1 / 6, chance_loss=1.792, train_series="loss/train",
                train_end=1.6)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "UND001"))
    assert named["learning_rate"].action == "increase"
    assert named["learning_rate"].proposed == pytest.approx(3e-5)
    assert (named["weight_decay"].action, named["weight_decay"].proposed) == ("decrease", 1e-4)
    assert (named["dropout"].action, named["dropout"].proposed) == ("decrease", 0.25)
    assert named["model_capacity"].action == "increase"
    assert (named["max_steps"].action, named["max_steps"].proposed) == ("increase", 2000)
    assert "train loss ends at 1.6, chance 1.79" in named["model_capacity"].rationale


# ---------------------------------------------------------------------------
# Plateau, batch norm, instability, gradients, schedule, undertrained
# ---------------------------------------------------------------------------


def test_plateau_with_small_lr_and_plain_sgd_raises_lr_and_adds_momentum():
    steps = np.arange(0, 1000, 10)
    run = make_run({"loss/train": (steps, 1.1 + 0.01 * np.cos(steps))},
                   {"learning_rate": 1e-4, "optimizer": "SGD", "momentum": 0.0})
    f = finding("plateau", "PLT001", "warning", "loss/train", 100, flat_since_step=100,
                end=1.1, poor_level=False, train_improving=False)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "PLT001"))
    assert named["learning_rate"].action == "increase"
    # SGD 1e-4 x3 would stay below SGD's usual range (1e-3..0.5): it lands inside it
    assert named["learning_rate"].proposed == pytest.approx(0.11)
    assert (named["momentum"].current, named["momentum"].proposed) == (0.0, 0.9)
    assert named["lr_schedule"].proposed == "cyclic"
    # an unrecorded momentum is not evidence of plain SGD (YOLOv5 keeps it in hyp.yaml)
    run.hparams.pop("momentum")
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "PLT001"))
    assert "momentum" not in named and named["learning_rate"].proposed == pytest.approx(0.11)


def test_plateau_at_a_good_level_cuts_the_run_instead():
    steps = np.arange(0, 10000, 100)
    run = make_run({"loss/train": (steps, 0.1 + np.exp(-steps / 300))},
                   {"learning_rate": 3e-3, "optimizer": "adamw", "max_steps": 10000})
    f = finding("plateau", "PLT001", "warning", "loss/train", 2000, flat_since_step=2000,
                poor_level=False, train_improving=True)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "PLT001"))
    assert "learning_rate" not in named
    assert named["max_steps"].proposed == 3600  # 2000 + 20% of the rest
    assert named["max_steps"].proposed < named["max_steps"].current


def test_batchnorm_collapse_with_tiny_batch():
    steps = np.arange(0, 100)
    run = make_run({"loss/train": (steps, np.exp(-steps / 30)),
                    "loss/val": (steps, np.full(100, 5.0))},
                   {"batch_size": 4, "dropout": 0.3, "normalization": "batchnorm"})
    f = finding("batchnorm_collapse", "BN001", "error", "loss/val", 0, branch="erratic",
                val_median_jump_factor=12.0, batch_size=4, small_batch=True)
    recs = recs_of(recommend(RunResult(run, findings=[f])), "BN001")
    # a batch of 4 is tiny: GroupNorm first (issue 10), a bigger batch next
    assert recs[0].hyperparameter == "normalization" and recs[0].proposed == "groupnorm"
    named = by_name(recs)
    assert (named["batch_size"].action, named["batch_size"].current,
            named["batch_size"].proposed) == ("increase", 4, 32)
    assert named["dropout_placement"].proposed == "after_batchnorm"
    assert named["precise_bn"].action == "enable"
    assert "12x" in named["precise_bn"].rationale


def test_instability_spikes_lower_lr_and_double_the_batch():
    steps = np.arange(0, 5000, 10)
    loss = np.exp(-steps / 1000) + 0.2
    run = make_run({"loss/train": (steps, loss)}, {"learning_rate": 0.1, "batch_size": 32})
    f = finding("instability", "INS001", "warning", "loss/train", 300, spikes=6,
                spike_steps=[300, 900, 1500], max_ratio=4.0)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "INS001"))
    assert named["learning_rate"].proposed == pytest.approx(0.033)  # /3 for >= 5 spikes
    assert (named["batch_size"].current, named["batch_size"].proposed) == (32, 64)
    # twice the time to the first spike (600) capped at 10% of the 4990-step run
    assert named["warmup_steps"].proposed == 500


def test_late_noise_gets_lr_decay_not_warmup():
    steps = np.arange(0, 5000, 10)
    run = make_run({"loss/train": (steps, np.exp(-steps / 1000) + 0.2),
                    "lr": (steps, np.full(len(steps), 0.01))}, {"learning_rate": 0.01})
    f = finding("instability", "INS002", "warning", "loss/train", 3750,
                noise_to_progress=0.4, tail_start_step=3750)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "INS002"))
    assert named["lr_schedule"].proposed == "cosine"
    assert "warmup_steps" not in named
    assert named["learning_rate"].proposed == pytest.approx(0.005)


def test_exploding_gradients_clip_first_at_the_90th_percentile():
    steps = np.arange(0, 1000)
    grads = 2.0 + np.sin(steps / 3.0) ** 2
    grads[600:] *= 100
    run = make_run({"loss/train": (steps, np.exp(-steps / 300)), "grad_norm": (steps, grads)},
                   {"learning_rate": 3e-3})
    f = finding("exploding_gradients", "GRD001", "error", "grad_norm", 650, low=2.0,
                low_step=600, late_level=250.0, growth_factor=125.0)
    recs = recs_of(recommend(RunResult(run, findings=[f])), "GRD001")
    assert recs[0].hyperparameter == "grad_clip"
    assert recs[0].proposed == pytest.approx(float(f"{np.percentile(grads[:600], 90):.2g}"))
    assert by_name(recs)["learning_rate"].proposed == pytest.approx(1e-3)


def test_clipping_that_would_bite_most_updates_is_replaced_by_a_lower_lr():
    steps = np.arange(0, 1000)
    grads = np.full(1000, 50.0)
    grads[:100] = 1.0 + 0.1 * np.sin(steps[:100])  # 90% of the run beyond the early p90
    run = make_run({"loss/train": (steps, np.exp(-steps / 300)), "grad_norm": (steps, grads)},
                   {"learning_rate": 3e-3})
    f = finding("exploding_gradients", "GRD001", "error", "grad_norm", 100, low_step=100,
                growth_factor=50.0)
    named = by_name(recs_of(recommend(RunResult(run, findings=[f])), "GRD001"))
    assert "grad_clip" not in named
    assert "would be clipped" in named["learning_rate"].rationale


def test_vanishing_and_dead_units_change_activation_and_init():
    steps = np.arange(0, 100)
    run = make_run({"loss/train": (steps, np.full(100, 0.69))},
                   {"learning_rate": 0.01, "activation": "sigmoid"})
    van = finding("vanishing_gradients", "GRD002", "warning", "grad_norm", 99,
                  early_level=1e-2, late_level=1e-9, collapse_factor=1e7)
    named = by_name(recs_of(recommend(RunResult(run, findings=[van])), "GRD002"))
    assert (named["activation"].current, named["activation"].proposed) == ("sigmoid", "relu")
    assert named["normalization"].proposed == "batchnorm"
    dead = finding("dead_units", "UNT001", "warning", "relu1", 50, zero_share=0.8)
    named = by_name(recs_of(recommend(RunResult(run, findings=[dead])), "UNT001"))
    assert named["activation"].proposed == "leaky_relu"
    assert named["learning_rate"].proposed == pytest.approx(0.005)
    assert "80% of relu1" in named["activation"].rationale
    sat = finding("dead_units", "UNT002", "warning", "tanh1", 50, saturated_share=0.7)
    named = by_name(recs_of(recommend(RunResult(run, findings=[sat])), "UNT002"))
    assert named["activation"].proposed == "relu"  # saturation is not a dying-ReLU problem
    assert "learning_rate" not in named


def test_lr_schedule_never_decayed_sets_cosine_and_lr_zero_fixes_the_horizon():
    steps = np.arange(0, 1000, 10)
    run = make_run({"loss/train": (steps, np.exp(-steps / 300))},
                   {"lr_schedule": "constant", "max_steps": 990})
    f = finding("lr_schedule", "LRS002", "info", "lr", 500, lr=0.01, gain_share=0.02)
    rec = recs_of(recommend(RunResult(run, findings=[f])), "LRS002")[0]
    assert (rec.hyperparameter, rec.current, rec.proposed) == ("lr_schedule", "constant",
                                                               "cosine")
    zero = finding("lr_schedule", "LRS001", "warning", "lr", 400, zero_from_step=400,
                   zero_to_step=990, share_of_run=0.6)
    named = by_name(recs_of(recommend(RunResult(run, findings=[zero])), "LRS001"))
    assert named["lr_schedule"].proposed == "constant over 990 steps"
    assert (named["max_steps"].current, named["max_steps"].proposed) == (990, 400)


def test_undertrained_extends_by_the_observed_slope():
    steps = np.arange(0, 5001, 50)
    val = 0.4 + 0.5 * np.exp(-steps / 4000)
    run = make_run({"loss/train": (steps, val - 0.1), "loss/val": (steps, val)},
                   {"max_steps": 5000})
    strong = finding("undertrained", "PRG001", "info", "loss/val", 5000,
                     tail_start_value=0.52, tail_end_value=0.47, tail_gain_share=0.2,
                     threshold_tail_frac=0.2)
    weak = finding("undertrained", "PRG001", "info", "loss/val", 5000,
                   tail_start_value=0.50, tail_end_value=0.49, tail_gain_share=0.05,
                   threshold_tail_frac=0.2)
    a = by_name(recs_of(recommend(RunResult(run, findings=[strong])), "PRG001"))["max_steps"]
    b = by_name(recs_of(recommend(RunResult(run, findings=[weak])), "PRG001"))["max_steps"]
    assert (a.action, a.current, a.proposed) == ("increase", 5000, 10000)
    assert b.proposed == 7500  # +50% when the tail gain is small
    assert "0.52" in a.rationale and "0.47" in a.rationale


def test_log_findings_and_info_findings_get_no_advice():
    run = make_run({"loss/train": (STEPS, np.exp(-STEPS / 300))}, {"learning_rate": 0.1})
    log = finding("log", "LOG001", "warning", None, None)
    info = finding("overfit", "OVF009", "info", "loss/train", 10, best_step=10)
    out = recommend(RunResult(run, findings=[log, info]))
    assert all(not f.recommendations for f in out.findings)


# ---------------------------------------------------------------------------
# Conflicts
# ---------------------------------------------------------------------------


def test_overfit_and_underfit_on_one_run_give_one_direction_for_regularisation():
    curves = overfit_curves()
    run = make_run(curves, {"learning_rate": 1e-5, "optimizer": "adam", "weight_decay": 1e-3,
                            "dropout": 0.2, "max_steps": 6000})
    ovf = finding("overfit", "OVF001", "warning", "loss/val", 2400, best_step=2400,
                  val_worsening_pct=25.0)
    und = finding("underfit", "UND001", "warning", "loss/train", 6000, level=0.4)
    out = recommend(RunResult(run, findings=[und, ovf]))
    assert_coherent(out)
    ovf_recs = by_name(recs_of(out, "OVF001"))
    und_recs = by_name(recs_of(out, "UND001"))
    assert ovf_recs["weight_decay"].action == "increase"  # overfit wins over underfit
    assert ovf_recs["model_capacity"].action == "decrease"
    assert ovf_recs["max_steps"].proposed == 2400
    # underfit's less-regularisation, bigger-model and train-longer moves are dropped; it
    # keeps the advice that does not contradict: raise the tiny LR
    alone = by_name(recs_of(recommend(RunResult(run, findings=[und])), "UND001"))
    assert {"weight_decay", "dropout", "model_capacity", "max_steps"} <= set(alone)
    assert set(und_recs) == {"learning_rate"}
    assert und_recs["learning_rate"].action == "increase"


def test_divergence_beats_plateau_on_the_lr_direction():
    lr = np.full(len(STEPS), 1e-4)
    run = make_run({"loss/train": (STEPS, diverging_loss()), "lr": (STEPS, lr)},
                   {"learning_rate": 1e-4, "optimizer": "sgd", "momentum": 0.0})
    plt = finding("plateau", "PLT001", "error", "loss/train", 300, flat_since_step=300,
                  poor_level=True)
    div = finding("divergence", "DIV001", "warning", "loss/train", 1200,
                  first_nonfinite_step=1200, loss_min_step=800)
    out = recommend(RunResult(run, findings=[plt, div]))
    assert_coherent(out)
    every = [r for f in out.findings for r in f.recommendations]
    lr_recs = [r for r in every if r.hyperparameter == "learning_rate"]
    assert lr_recs and all(r.action == "decrease" and r.proposed < 1e-4 for r in lr_recs)
    assert not any(r.proposed == "cyclic" for r in every)
    assert by_name(recs_of(out, "PLT001"))["momentum"].proposed == 0.9  # still coherent


def test_same_knob_from_two_findings_gets_one_value():
    steps = np.arange(0, 1000)
    grads = 2.0 + np.sin(steps / 3.0) ** 2
    grads[600:] *= 100
    loss = np.exp(-steps / 300) + 0.1
    loss[700:] = np.nan
    run = make_run({"loss/train": (steps, loss), "grad_norm": (steps, grads)},
                   {"learning_rate": 0.3})
    exg = finding("exploding_gradients", "GRD001", "error", "grad_norm", 620, low_step=600,
                  growth_factor=100.0)
    div = finding("divergence", "DIV001", "error", "loss/train", 700,
                  first_nonfinite_step=700, loss_min_step=600)
    out = recommend(RunResult(run, findings=[exg, div]))
    assert_coherent(out)
    assert by_name(recs_of(out, "GRD001"))["learning_rate"].proposed == by_name(
        recs_of(out, "DIV001"))["learning_rate"].proposed


def test_precedence_orders_stability_then_severity_then_state():
    div = finding("divergence", "DIV001", "warning", None, 900)
    plt = finding("plateau", "PLT001", "error", None, 10)
    ovf = finding("overfit", "OVF001", "warning", None, 500)
    und = finding("underfit", "UND001", "warning", None, 100)
    ranked = sorted([und, plt, ovf, div], key=precedence)
    assert [f.rule for f in ranked] == ["DIV001", "PLT001", "OVF001", "UND001"]


def test_existing_recommendations_are_kept_and_input_is_not_modified():
    run = make_run({"loss/train": (STEPS, diverging_loss())}, {"learning_rate": 0.5})
    own = Recommendation("label_smoothing", "set", 0.0, 0.1, "custom rule advice.")
    custom = Finding("CUS001", "custom", "overfit", "warning", None, None, "x", {}, (own,))
    div = finding("divergence", "DIV001", "error", "loss/train", 1200,
                  first_nonfinite_step=1200, loss_min_step=800)
    result = RunResult(run, findings=[custom, div])
    out = recommend(result)
    assert recs_of(out, "CUS001") == [own]
    assert all(not f.recommendations for f in result.findings if f.rule == "DIV001")
    assert out is not result


def test_every_state_gives_json_ready_recommendations_with_one_sentence_rationales():
    steps = np.arange(0, 1000, 10)
    run = make_run({"loss/train": (steps, np.exp(-steps / 300) + 0.1),
                    "loss/val": (steps, np.exp(-steps / 300) + 0.3)}, {"learning_rate": 0.01})
    states = ["divergence", "instability", "exploding_gradients", "vanishing_gradients",
              "dead_units", "overfit", "underfit", "plateau", "batchnorm_collapse",
              "lr_schedule", "undertrained"]
    for state in states:
        f = finding(state, "XXX001", "warning", "loss/val", 500)
        out = recommend(RunResult(run, findings=[f]))
        recs = out.findings[0].recommendations
        assert recs, state
        for r in recs:
            d = r.to_dict()
            assert d["action"] in ("increase", "decrease", "set", "enable", "disable")
            # one sentence, and one more ("In the same run, ...") per trial that carries
            # companions (recommend.with_companions)
            own, *more = (r.rationale.split(" In the same run, ") if r.together
                          else [r.rationale])
            assert own.endswith(".") and own.count(". ") == 0, r.rationale
            assert len(more) <= 1 and all(m.endswith(".") and m.count(". ") == 0
                                          for m in more), r.rationale
            if r.current is not None:
                assert not (isinstance(r.proposed, str) and r.proposed.startswith("current"))


# ---------------------------------------------------------------------------
# Through the real pipeline
# ---------------------------------------------------------------------------


def test_pipeline_overfit_run_written_by_tensorboard_event_writer(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    rng = np.random.default_rng(0)
    w = writer.EventFileWriter(str(tmp_path / "run"))  # TensorBoard's own writer, no torch
    for step in range(0, 6001, 100):
        train = 2.0 * np.exp(-step / 1500) + 0.05
        val = 0.3 + 0.5 * np.exp(-step / 600) + max(step - 2400, 0) / 20000
        values = [Summary.Value(tag="loss/train", simple_value=train),
                  Summary.Value(tag="loss/val", simple_value=val + rng.normal(0, 0.002))]
        w.add_event(Event(step=step, wall_time=1.7e9 + step, summary=Summary(value=values)))
    w.close()
    (tmp_path / "run" / "hparams.yaml").write_text("lr: 0.001\nweight_decay: 0.0\n")
    sources, _ = discover.discover([str(tmp_path / "run")])
    run = ingest.load_run(sources[0])
    result = recommend(engine.evaluate(run))
    ovf = [f for f in result.findings if f.rule == "OVF001"]
    assert ovf, [f.rule for f in result.findings]
    named = by_name(list(ovf[0].recommendations))
    best = ovf[0].evidence["best_step"]
    assert 2000 <= best <= 2800
    assert named["max_steps"].proposed == best
    assert run.hparams["learning_rate"] == 0.001  # hparams.yaml sidecar, canonical names
    wd = named["weight_decay"]
    assert (wd.current, wd.proposed) == (0.0, 5e-4)
    assert_coherent(result)


def test_real_whisper_overfit_log_gets_early_stopping_at_its_best_eval():
    """The val loss is best at step 1000 but the WER, the run's key metric, keeps
    improving to step 3000 (0.789 -> 0.743): the stop keeps the run's own best checkpoint
    (the key metric's), not the loss minimum where the WER was worst."""
    sources, _ = discover.discover([str(require(REAL_LOGS / "hf_whisper_ja_5k"))])
    result = recommend(engine.evaluate(ingest.load_run(sources[0])))
    ovf = [f for f in result.findings if f.state == "overfit"]
    assert ovf, [f.rule for f in result.findings]
    assert ovf[0].evidence["best_step"] == 1000  # the val loss's minimum
    stop = by_name(list(ovf[0].recommendations)).get("max_steps")
    assert stop is not None and stop.current == 5000
    key = result.resolved_roles().key_point()
    assert key is not None and key.series.tag == "eval_wer" and key.step == 3000
    assert stop.proposed == key.step
    assert "val wer, the run's key metric, was best (0.743) at step 3000" in stop.rationale
    assert_coherent(result)
