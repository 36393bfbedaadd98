"""The probe, end to end on the real example training script (CPU), plus its pieces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import require, shared

from diagnose.findings import Finding, Recommendation, RunResult
from diagnose.probe.core import ProbeError, plan_probe, resolve_relative
from diagnose.probe.render import change_text, probe_lines
from diagnose.probe.template import TemplateError, fill, placeholders
from diagnose.probe.verdict import ArmScore, decide

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "train.py"
TEMPLATE = (
    f"{sys.executable} {TRAIN} --lr {{learning_rate}} --batch-size {{batch_size}} "
    "--max-steps {max_steps} --seed {seed} --logdir {logdir} --device {device}"
)

torch = pytest.importorskip("torch")


def _train(logdir: Path, lr: float, steps: int) -> Path:
    subprocess.run(
        [sys.executable, str(TRAIN), "--lr", str(lr), "--max-steps", str(steps),
         "--logdir", str(logdir)],
        check=True, capture_output=True, timeout=300,
    )
    return logdir


def _probe(*args: str, cwd: Path = REPO) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", *args, "--format", "json"],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )
    payload = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, payload, proc.stderr


# --- template -------------------------------------------------------------------------


def test_template_fills_each_word_without_a_shell() -> None:
    argv = fill("python t.py --lr {lr} --name '{logdir}' --wd {weight_decay}",
                {"learning_rate": 0.03, "logdir": "a b; rm -rf /", "weight_decay": 5e-4})
    assert argv == ["python", "t.py", "--lr", "0.03", "--name", "a b; rm -rf /", "--wd",
                    "0.0005"]
    assert placeholders("x {a} {b} {a}") == ["a", "b"]


def test_template_names_the_missing_value() -> None:
    with pytest.raises(TemplateError, match=r"\{dropout\}.*--hparam dropout=VALUE"):
        fill("python t.py --p {dropout}", {})


# --- verdict logic ----------------------------------------------------------------------


def test_verdict_confirms_when_the_control_diverges_and_the_candidate_does_not() -> None:
    control = ArmScore([math.inf, math.inf], [["divergence"], ["divergence"]], 0)
    cand = ArmScore([0.4, 0.5], [[], []], 0)
    out = decide(control, cand, "divergence", higher=False)
    assert out["verdict"] == "confirmed"


def test_verdict_is_inconclusive_inside_the_seed_spread() -> None:
    control = ArmScore([0.50, 0.60], [[], []], 0)
    cand = ArmScore([0.52, 0.58], [[], []], 0)
    out = decide(control, cand, "overfit", higher=False)
    assert out["verdict"] == "inconclusive"
    assert out["spread"] > 0


def test_verdict_refutes_a_clearly_worse_candidate() -> None:
    control = ArmScore([0.20, 0.21], [[], []], 0)
    cand = ArmScore([0.60, 0.62], [[], []], 0)
    assert decide(control, cand, None, higher=False)["verdict"] == "refuted"


def test_a_better_metric_alone_does_not_confirm_while_the_state_stays() -> None:
    control = ArmScore([1.00, 1.02], [["plateau"], ["plateau"]], 0)
    # much better metric, but the targeted state is still there in one or both seeds
    one = decide(control, ArmScore([0.30, 0.31], [["plateau"], []], 0), "plateau", False)
    assert one["verdict"] == "inconclusive" and "1 of 2" in one["reason"]
    both = decide(control, ArmScore([0.30, 0.31], [["plateau"], ["plateau"]], 0), "plateau",
                  False)
    assert both["verdict"] == "refuted" and "persists in every" in both["reason"]
    # a control that diverged against a finite candidate that still diverges (DIV004)
    div = decide(ArmScore([math.inf, math.inf], [["divergence"]] * 2, 0),
                 ArmScore([0.9, 0.95], [["divergence"], []], 0), "divergence", False)
    assert div["verdict"] == "inconclusive"


def test_a_quiet_detector_alone_does_not_confirm_either() -> None:
    control = ArmScore([0.50, 0.52], [["overfit"], ["overfit"]], 0)
    same = decide(control, ArmScore([0.50, 0.51], [[], []], 0), "overfit", False)
    assert same["verdict"] == "inconclusive" and "gone in every candidate seed" in same["reason"]
    better = decide(control, ArmScore([0.30, 0.31], [[], []], 0), "overfit", False)
    assert better["verdict"] == "confirmed"
    crashed = decide(control, ArmScore([0.30], [[]], 1), "overfit", False)
    assert crashed["verdict"] == "inconclusive" and "1 of 2 candidate trials failed" in (
        crashed["reason"])


# --- planning: relative and length proposals, hints ----------------------------------


def _result(hparams: dict, recs: list[Recommendation], state: str = "underfit") -> RunResult:
    from diagnose.run import Run, make_scalars

    run = Run(run_id=".", path=Path("."), format="tensorboard",
              scalars=make_scalars(["loss/train"] * 3, [10, 20, 1500], [1.0, 0.9, 0.8]),
              hparams=dict(hparams))
    finding = Finding("UND001", "near-chance", state, "error", "loss/train", 20, "m",
                      recommendations=tuple(recs))
    return RunResult(run=run, findings=[finding])


def _rec(hp: str, current: object, proposed: object) -> Recommendation:
    return Recommendation(hp, "increase", current, proposed, "why")


TPL = "python t.py --w {model_capacity} --lr {lr} --n {max_steps} --logdir {logdir}"


def test_relative_proposals_become_concrete_from_the_known_value() -> None:
    assert resolve_relative("x2", 1) == 2 and resolve_relative("current/5", 8) == 1.6
    assert resolve_relative("x0.5", None) is None and resolve_relative(0.1, 1) is None
    assert resolve_relative("xavier_uniform", 1) is None
    result = _result({"learning_rate": 8.0, "max_steps": 1500},
                     [_rec("model_capacity", None, "x2"), _rec("learning_rate", 8.0,
                                                               "current/10")])
    plan = plan_probe(result, TPL, overrides={"model_capacity": 1}, top=3, extra=[],
                      frac=1.0, max_steps=None)
    changes = {k: v for c in plan.candidates for k, v in c.changes.items()}
    assert changes == {"model_capacity": 2, "learning_rate": 0.8}
    # without the current value the hint says exactly what to pass
    plan = plan_probe(result, TPL, overrides={}, top=3, extra=[], frac=1.0, max_steps=None)
    (skip,) = plan.skipped
    assert "--hparam model_capacity=CURRENT" in skip["reason"]


def test_length_proposals_are_probed_on_the_budget_scale() -> None:
    result = _result({"max_steps": 1500}, [_rec("max_steps", 1500, 600)], state="overfit")
    full = plan_probe(result, TPL, overrides={}, top=3, extra=[], frac=1.0, max_steps=None)
    assert full.max_steps == 1500 and full.candidates[0].changes == {"max_steps": 600}
    short = plan_probe(result, TPL, overrides={}, top=3, extra=[], frac=0.1, max_steps=300)
    assert short.candidates[0].changes == {"max_steps": 120}  # 600/1500 of 300 steps
    longer = _result({"max_steps": 1500}, [_rec("max_steps", 1500, 3000)])
    plan = plan_probe(longer, TPL, overrides={}, top=3, extra=[], frac=0.1, max_steps=300)
    assert plan.candidates[0].changes == {"max_steps": 600}


def test_unexpressible_candidates_are_listed_with_a_step_that_works() -> None:
    result = _result({"dropout": 0.0, "init": "default"},
                     [_rec("dropout", 0.0, 0.3), _rec("model_capacity", 1, "x2"),
                      _rec("init", "default", "xavier_uniform")])
    plan = plan_probe(result, "python t.py --w {model_capacity} --i {init} --logdir {logdir}",
                      overrides={}, top=3, extra=[], frac=1.0, max_steps=None)
    reasons = {s["hyperparameter"]: s["reason"] for s in plan.skipped}
    assert "'--dropout {dropout}'" in reasons["dropout"]
    assert [c.changes for c in plan.candidates] == [{"model_capacity": 2},
                                                    {"init": "xavier_uniform"}]
    with pytest.raises(ProbeError, match=r"--grad-clip \{grad_clip\}"):
        plan_probe(result, "python t.py --logdir {logdir}", overrides={}, top=0,
                   extra=[{"grad_clip": 1.0}], frac=1.0, max_steps=None)


def test_text_output_has_no_placeholders_for_unknown_values() -> None:
    assert change_text("drop_last", False, True) == "enable drop_last"
    assert change_text("dropout", None, 0.3) == "dropout = 0.3 (the run records no dropout)"
    assert change_text("model_capacity", 1, 2.0, "x2") == "model_capacity: 1 -> 2 (recommended x2)"
    probe = {"device": "cpu", "seeds": 2, "wall_s": 1.0, "max_steps": None, "epochs": None,
             "control": {"trials": [{"seed": 0, "status": "ok", "states": []}]},
             "candidates": [{"key": "drop_last=true", "changes": {"drop_last": True},
                             "from": {"drop_last": None}, "verdict": "inconclusive",
                             "reason": "r", "trials": []}],
             "skipped": []}
    text = "\n".join(probe_lines(probe))
    for bad in ("None", "?", "False -> True"):
        assert bad not in text, text


# --- end to end on the real example ------------------------------------------------------


@pytest.mark.slow
def test_probe_confirms_a_lower_learning_rate_for_a_diverged_run(tmp_path: Path) -> None:
    run = _train(tmp_path / "diverged", lr=2.0, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "1",
                            "--max-steps", "150", "--device", "cpu",
                            "--workdir", str(tmp_path / "trials"))
    assert code == 0, err
    result = out["runs"][0]
    assert "divergence" in result["states"]
    probe = result["probe"]
    assert probe["device"] == "cpu" and probe["max_steps"] == 150
    cand = probe["candidates"][0]
    assert cand["changes"]["learning_rate"] < 2.0
    assert cand["verdict"] == "confirmed", cand
    assert all(t["status"] == "ok" for t in cand["trials"])
    assert all("divergence" in t["states"] for t in probe["control"]["trials"])


@pytest.mark.slow
def test_probe_refutes_a_bad_candidate_and_survives_a_crashing_one(tmp_path: Path) -> None:
    run = _train(tmp_path / "healthy", lr=0.05, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "0",
                            "--max-steps", "150", "--device", "cpu",
                            "--try", "learning_rate=1.5", "--try", "batch_size=0",
                            "--workdir", str(tmp_path / "trials"))
    assert code == 0, err
    probe = out["runs"][0]["probe"]
    by_key = {c["key"]: c for c in probe["candidates"]}
    bad = by_key["learning_rate=1.5"]
    assert bad["verdict"] == "refuted", bad
    crashed = by_key["batch_size=0"]
    assert {t["status"] for t in crashed["trials"]} == {"crashed"}
    assert "batch-size" in crashed["trials"][0]["message"]
    assert crashed["verdict"] == "inconclusive"
    assert all(t["status"] == "ok" for t in probe["control"]["trials"])


@pytest.mark.slow
def test_every_trial_crashing_exits_2_with_each_error_whole(tmp_path: Path) -> None:
    run = _train(tmp_path / "r", lr=0.05, steps=60)
    broken = TEMPLATE.replace("{batch_size}", "0")  # every arm, control included, crashes
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", str(run), "--cmd", broken, "--top", "0",
         "--seeds", "1", "--try", "learning_rate=0.01", "--max-steps", "20",
         "--device", "cpu", "--workdir", str(tmp_path / "t")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "every trial failed (2 of 2)" in proc.stderr
    assert proc.stderr.count("--batch-size must be >= 1, got 0") == 2
    assert "Traceback" not in proc.stderr.split("---")[0]


def test_probe_explains_a_template_without_logdir(tmp_path: Path) -> None:
    run = _train(tmp_path / "r", lr=0.05, steps=60)
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", str(run), "--cmd", "python x.py"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert "{logdir}" in proc.stderr and "Traceback" not in proc.stderr


def test_lr_range_test_suggests_a_plausible_rate(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", "--lr-range", "examples.lr_factory:make",
         "--lr-iters", "80", "--device", "cpu", "--format", "json",
         "--report", str(tmp_path / "lr.md")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["lr_range_test"]
    assert 1e-3 <= out["suggested_lr"] <= 3.0
    assert set(out["suggestions"]) >= {"steepest", "valley"}
    png = tmp_path / "lr_range_test.png"
    assert png.stat().st_size > 5000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_probe_runs_trials_on_the_gpu(tmp_path: Path) -> None:
    run = _train(tmp_path / "diverged", lr=2.0, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "1",
                            "--max-steps", "150", "--device", "cuda")
    assert code == 0, err
    probe = out["runs"][0]["probe"]
    assert probe["device"].startswith("cuda")
    assert all(t["device"].startswith("cuda") for t in probe["control"]["trials"])


def test_trials_are_compared_on_the_runs_objective() -> None:
    """The probe judges a trial's logs with the pipeline's per-run step and compares arms
    on the objective the report and sweep use (RoleMap.objectives): the val accuracy
    when it moves, the val loss when the accuracy is pinned (majority class)."""
    from diagnose.config import Config
    from diagnose.metrics import Role
    from diagnose.probe.trials import TrialOutcome, TrialSpec, judge_logdir
    from diagnose.probe.verdict import primary_role

    def outcome(folder: str, root: Path = REPO / "sample_logs" / "keras_csv") -> TrialOutcome:
        logdir = require(root / folder)
        result = judge_logdir(logdir, Config())
        assert result is not None
        return TrialOutcome(TrialSpec("control", 0, [], logdir), "ok", 0, 1.0, "cpu",
                            result=result)

    moving = outcome("overfit_classification")
    assert any(f.recommendations for f in moving.result.findings)  # advice attached too
    assert primary_role([moving]) == (Role.VAL_METRIC, True)
    assert primary_role([outcome("divergence_nan")]) is None  # pinned acc, NaN losses
    pinned = outcome("keras_derma_majority_9ep", shared("real_logs_more"))
    assert primary_role([pinned]) == (Role.VAL_LOSS, False)
    assert primary_role([]) is None


def test_a_blown_up_control_does_not_hide_behind_its_seed_spread() -> None:
    # RMSprop LR 5: the control ends at finite but astronomical losses (spread ~1e8)
    control = ArmScore([3.0e3, 2.0e8], [["divergence"], ["divergence"]], 0)
    cand = ArmScore([0.033, 0.034], [[], []], 0)
    out = decide(control, cand, "divergence", higher=False)
    assert out["verdict"] == "confirmed" and "control diverged" in out["reason"]
    # the same values with no divergence in the control stay inside the spread
    calm = decide(ArmScore([3.0e3, 2.0e8], [[], []], 0), cand, "divergence", higher=False)
    assert calm["verdict"] == "inconclusive"


def test_confirmed_needs_a_good_level_where_the_untrained_level_is_known() -> None:
    control = ArmScore([1.10, 1.10], [["plateau"], ["plateau"]], 0)
    # left chance (ln 3 = 1.10) a little: gone and better beyond the spread, still not good
    near = decide(control, ArmScore([0.80, 0.81], [[], []], 0), "plateau", False,
                  untrained=math.log(3))
    assert near["verdict"] == "inconclusive" and "untrained level" in near["reason"]
    good = decide(control, ArmScore([0.20, 0.21], [[], []], 0), "plateau", False,
                  untrained=math.log(3))
    assert good["verdict"] == "confirmed"
    # an accuracy: chance 1/3, must reach at least halfway to 1
    acc = ArmScore([0.34, 0.35], [["plateau"], ["plateau"]], 0)
    assert decide(acc, ArmScore([0.55, 0.56], [[], []], 0), "plateau", True,
                  untrained=1 / 3)["verdict"] == "inconclusive"
    assert decide(acc, ArmScore([0.9, 0.91], [[], []], 0), "plateau", True,
                  untrained=1 / 3)["verdict"] == "confirmed"


def test_the_untrained_level_is_the_chance_level_when_the_class_count_is_clear() -> None:
    import numpy as np
    from test_recommend import make_run

    from diagnose import engine
    from diagnose.metrics import Role
    from diagnose.probe.core import untrained_level

    steps = np.arange(0, 300, 10)
    loss = 0.2 + (math.log(3) - 0.2) * np.exp(-steps / 60)
    acc = 1 - (1 - 1 / 3) * np.exp(-steps / 60)
    curves = {"loss/train": (steps, loss), "loss/val": (steps, loss + 0.01),
              "accuracy/val": (steps, acc)}
    result = engine.evaluate(make_run(curves, {"num_classes": 3}))
    assert untrained_level(result, [], Role.VAL_LOSS) == pytest.approx(math.log(3))
    assert untrained_level(result, [], Role.VAL_METRIC) == pytest.approx(1 / 3)
    # no class count: no level, so no good-level check (a regression loss has no chance)
    unknown = engine.evaluate(make_run({"loss/train": (steps, loss * 7)}))
    assert untrained_level(unknown, [], Role.TRAIN_LOSS) is None


@pytest.mark.slow
def test_arms_that_share_no_logged_step_are_compared_at_their_own_last_step(
        tmp_path: Path) -> None:
    """A trial that ended before another's first evaluation (a random change to batch
    1024 leaves a corpus recipe a few steps) shares no step with it: comparing "at" the
    short one's last step made every other arm's value worst ("both control and candidate
    diverged", fix-rate r00150, r00209, r02290); each arm's last value is compared then."""
    from diagnose.config import Config
    from diagnose.metrics import Role
    from diagnose.probe.trials import TrialOutcome, TrialSpec, judge_logdir
    from diagnose.probe.verdict import matched_step, value_at

    def outcome(name: str, steps: int, every: int) -> TrialOutcome:
        logdir = tmp_path / name
        subprocess.run([sys.executable, str(TRAIN), "--max-steps", str(steps),
                        "--eval-every", str(every), "--logdir", str(logdir)],
                       check=True, capture_output=True, timeout=300)
        result = judge_logdir(logdir, Config())
        assert result is not None
        return TrialOutcome(TrialSpec(name, 0, [], logdir), "ok", 0, 1.0, "cpu",
                            result=result)

    long, short = outcome("long", 200, 100), outcome("short", 40, 20)
    assert matched_step([long, short], Role.VAL_LOSS) is None
    assert math.isfinite(value_at(long, Role.VAL_LOSS, None, False))
    assert matched_step([long, outcome("long2", 300, 100)], Role.VAL_LOSS) == 200
