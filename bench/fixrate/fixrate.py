"""Closed-loop fix-rate benchmark: does following the top recommendation fix the run?

For each pathological case (a broken run of ``examples/train.py``), diagnose it, then
re-train through the probe's own code path (:func:`diagnose.probe.core.run_probe`) at the
run's full original length over ``--seeds`` seeds: the control (the broken settings), the
top recommendation, and a random change of the same size to a randomly chosen other
hyperparameter (the baseline every repair tool must beat).

"Fixed" does not lean on our own detector alone.  An arm fixes the case when all hold:

1. every trial ran and the targeted state is gone in every seed (our rules);
2. its key metric (the probe's: val accuracy where logged, else val loss) beats the
   control's by more than the probe's seed-to-seed gate (2x the larger seed spread, at
   least 2% of the control); against a blown-up control a finite arm beats it;
3. it reaches a good level: below ``ref + GOOD_SHARE * (untrained - ref)``, where
   ``untrained`` is the val loss of the untrained model and ``ref`` the best val loss that
   default-hyperparameter runs of the same data reach (the family's healthy level).

Usage (from the repo root, in the venv)::

    nice -n 10 python bench/fixrate/fixrate.py --workers 1 --seeds 2
    python bench/fixrate/fixrate.py --report          # tables from what is done so far
    # from a saved campaign: re-run only the cases whose top advice changed since
    python bench/fixrate/fixrate.py --corpus 12 --seed-records R.json --refresh

Resumable: every finished case is a JSON file under ``--out``; a rerun skips it.  With
CUDA, each worker process takes one GPU and its trials run there (``--device auto``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "examples" / "train.py"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TRAIN.parent))

#: An arm's final val loss must be below ref + this share of (untrained - ref).
GOOD_SHARE = 0.25
#: A control whose final val loss is non-finite or above this multiple of the untrained
#: loss has blown up: any finite arm at a good level beats it, whatever the control's
#: seed spread (two diverged seeds at 1e3 and 1e8 must not set a gate of 1e8).
BLOWN_UP_FACTOR = 10.0
#: Flags that define a case's data and length (its "family"); everything else is a
#: hyperparameter a recommendation may change.
FAMILY_FLAGS = ("--task", "--train-size", "--max-steps", "--eval-every")


@dataclass(frozen=True)
class Case:
    """One broken training: a name, the flags that break it, and what broke."""

    name: str
    args: tuple[str, ...]
    why: str


#: Every case runs 600 steps (its "full original length"): short enough for a campaign on
#: two shared CPU cores, long enough that the healthy default reaches val loss ~0.03.
#: Cases run in the order listed (one of each state first: a campaign cut short still
#: covers most states).
STEPS = ("--max-steps", "600")

CASES: tuple[Case, ...] = (
    Case("underfit_narrow", (*STEPS, "--model-capacity", "0.02"), "hidden width 3"),
    Case("underfit_width1", (*STEPS, "--model-capacity", "0.008"), "hidden width 1"),
    Case("bn_momentum0", (*STEPS, "--normalization", "batchnorm", "--bn-momentum", "0"),
         "BatchNorm running stats never update"),
    Case("overfit_small_data", (*STEPS, "--train-size", "60"),
         "60 training samples, long run"),
    Case("lr_jump_adam", (*STEPS, "--optimizer", "adam", "--lr", "3e-3", "--lr-jump-step",
                          "300", "--lr-jump-factor", "300"), "Adam 3e-3, LR x300 at mid-run"),
    Case("lr_high_sgd8", (*STEPS, "--lr", "8"), "SGD LR 8, ~100x too high"),
    Case("tiny_lr_sgd", (*STEPS, "--lr", "1e-5"), "SGD LR 1e-5"),
    Case("dead_init", (*STEPS, "--init", "dead"), "every ReLU bias at -3"),
    Case("warmup_never_ends", (*STEPS, "--optimizer", "adam", "--lr", "3e-3",
                               "--warmup-steps", "100000"),
         "warmup 100000 steps in a 600-step run"),
    Case("zero_init", (*STEPS, "--init", "zeros"), "all weights zero"),
    Case("lr_high_rmsprop5", (*STEPS, "--optimizer", "rmsprop", "--lr", "5"), "RMSprop LR 5"),
    Case("lr_high_sgd200", (*STEPS, "--lr", "200"), "SGD LR 200"),
    Case("tiny_lr_adam", (*STEPS, "--optimizer", "adam", "--lr", "1e-6"), "Adam LR 1e-6"),
    Case("bn_last_batch", (*STEPS, "--normalization", "batchnorm", "--bn-momentum", "1",
                           "--train-size", "1186", "--eval-every", "38"),
         "BN momentum 1 and a last batch of 2 right before each evaluation"),
    Case("unscaled_targets", (*STEPS, "--task", "regression", "--target-scale", "1000",
                              "--lr", "0.01"), "regression targets in the thousands"),
)


def family_args(case: Case) -> list[str]:
    """The case's data/length flags with every hyperparameter at its healthy default."""
    out: list[str] = []
    args = list(case.args)
    for i, word in enumerate(args[:-1]):
        if word in FAMILY_FLAGS:
            out += [word, args[i + 1]]
    return out


def _train(argv: list[str], logdir: Path, device: str) -> None:
    if (logdir / "config.json").exists() and any(logdir.glob("events.out.tfevents.*")):
        return
    cmd = [sys.executable, str(TRAIN), *argv, "--logdir", str(logdir), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def _val_losses(logdir: Path) -> list[float]:
    from diagnose.metrics import Role
    from diagnose.pipeline import analyze

    results = analyze([str(logdir)]).results
    if not results:  # a trial that crashed before writing any log
        return []
    series = results[0].resolved_roles().get(Role.VAL_LOSS)
    return [] if series is None else [float(v) for v in series.values]


def untrained_loss(case: Case) -> float:
    """Val loss of the freshly initialised default model on the case's data."""
    import torch
    from train import build_model, make_data, parse_args, regression_targets

    args = parse_args([*family_args(case), "--logdir", "-"])
    scale = _target_scale(case)
    torch.manual_seed(0)
    x, y = make_data(args.train_size + 600, seed=1234)
    regression = args.task == "regression"
    if regression:
        y = regression_targets(x, y) * scale
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(99))
    x_val, y_val = x[perm][args.train_size:], y[perm][args.train_size:]
    model = build_model(args=args, outputs=1 if regression else 3).eval()
    with torch.no_grad():
        out = model(x_val)
        if regression:
            return float(torch.nn.functional.mse_loss(out, y_val))
        return float(torch.nn.functional.cross_entropy(out, y_val))


def _target_scale(case: Case) -> float:
    args = list(case.args)
    return float(args[args.index("--target-scale") + 1]) if "--target-scale" in args else 1.0


def reference_level(case: Case, out: Path, seeds: int, device: str) -> float:
    """Best val loss of default-hyperparameter runs of the case's family (mean over seeds).

    A regression family is trained on unit-scale targets and its level scaled back to the
    case's units (loss x scale^2): the healthy level of the same data, whatever its units.
    """
    fam = family_args(case)
    key = "_".join(w.strip("-") for w in fam) or "default"
    best = []
    for seed in range(seeds):
        logdir = out / "family" / key / f"seed{seed}"
        _train([*fam, "--seed", str(seed)], logdir, device)
        vals = [v for v in _val_losses(logdir) if math.isfinite(v)]
        best.append(min(vals) if vals else math.inf)
    return float(sum(best) / len(best)) * _target_scale(case) ** 2


# --- the random control ----------------------------------------------------------------

#: Categorical knobs and their choices (what examples/train.py accepts).
CHOICES: dict[str, tuple[Any, ...]] = {
    "optimizer": ("sgd", "adam", "adamw", "rmsprop"),
    "normalization": ("none", "batchnorm", "layernorm", "groupnorm"),
    "activation": ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"),
    "init": ("default", "he_normal", "xavier_uniform"),
    "lr_schedule": ("constant", "cosine", "step", "linear", "cyclic"),
    "dropout_placement": ("after_batchnorm", "before_batchnorm"),
}
#: Numeric knobs a random change may scale, with their valid ranges.
NUMERIC: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-8, 1e4),
    "batch_size": (1, 1024),
    "weight_decay": (1e-8, 1.0),
    "dropout": (0.0, 0.9),
    "momentum": (0.0, 0.99),
    "warmup_steps": (1, 1e6),
    "grad_clip": (1e-3, 1e4),
    "model_capacity": (0.01, 16),
    "bn_momentum": (0.0, 1.0),
}
SWITCHES = ("precise_bn", "drop_last", "shuffle", "residual_connections",
            "data_augmentation", "standardize_targets")


def random_change(control: dict[str, Any], change: dict[str, Any], seed: int,
                  choices: dict[str, tuple[Any, ...]] | None = None,
                  switches: tuple[str, ...] = SWITCHES) -> dict[str, Any]:
    """A change of the same size as ``change`` to a randomly chosen other hyperparameter.

    Size: a numeric change from a positive value keeps its factor |log(new/old)| in a random
    direction on a random numeric knob that is positive now; any other change (categorical,
    switch, from zero) is one switch of a random categorical knob or on/off setting.  A
    coupled change (activation with its init) gets one such change per knob it changes.
    """
    if len(change) > 1:  # a coupled change: as many random changes, each of its size
        out: dict[str, Any] = {}
        for i, (hp, new) in enumerate(change.items()):
            rest = {k: v for k, v in control.items()
                    if k not in out and (k == hp or k not in change)}
            (key, value), = random_change(rest, {hp: new}, seed + i, choices,
                                          switches).items()
            out[key] = value
        return out
    rng = random.Random(seed)
    choices = CHOICES if choices is None else choices
    (hp, new), = change.items()
    old = control.get(hp)
    factor = None
    try:
        if float(old) > 0 and float(new) > 0 and not isinstance(new, bool):
            factor = abs(math.log(float(new) / float(old)))
    except (TypeError, ValueError):
        factor = None
    if factor:
        pool = [k for k in NUMERIC if k != hp and _positive(control.get(k))
                and _applies(k, control)]
        if pool:
            key = rng.choice(sorted(pool))
            lo, hi = NUMERIC[key]
            value = float(control[key]) * math.exp(factor * rng.choice((-1, 1)))
            value = min(max(value, lo), hi)
            if key in ("batch_size", "warmup_steps"):
                value = max(1, round(value))
            elif key in ("momentum", "dropout", "bn_momentum"):
                value = round(value, 3)
            else:
                value = float(f"{value:.3g}")
            return {key: value}
    pool = [k for k in (*choices, *switches) if k != hp and k in control
            and _applies(k, control)]
    key = rng.choice(sorted(pool))
    if key in switches:
        return {key: not bool(control[key])}
    others = [c for c in choices[key] if str(c) != str(control[key])]
    return {key: rng.choice(others)}


def _applies(key: str, control: dict[str, Any]) -> bool:
    """A knob that changes the model at all (BN knobs need BatchNorm; placement, dropout)."""
    bn = str(control.get("normalization", "")).lower() == "batchnorm"
    if key in ("bn_momentum", "precise_bn"):
        return bn
    if key == "dropout_placement":
        return bn and _positive(control.get("dropout"))
    if key == "standardize_targets":
        return control.get("task") == "regression" or "standardize_targets" in control
    return True


def _positive(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and float(value) > 0
    except (TypeError, ValueError):
        return False


# --- one case --------------------------------------------------------------------------


def control_blown_up(control_final: float | None, untrained: float | None) -> bool:
    """Did the control diverge: non-finite, or far above the untrained model's loss?"""
    if control_final is None:
        return False  # no control value: nothing compared
    if not math.isfinite(control_final):
        return True
    return untrained is not None and control_final > BLOWN_UP_FACTOR * untrained


def judge(arm: dict[str, Any], state: str | None, bar: float,
          untrained: float | None = None, states: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fixed = state gone in every seed, better than the control beyond the gate, good level.

    ``states`` are further states that must be gone too (the corpus label beside the
    finding's state).  Against a blown-up control (:func:`control_blown_up`) a finite arm
    beats it without the seed-spread gate.
    """
    trials = arm.get("trials", [])
    ran = bool(trials) and all(t["status"] == "ok" for t in trials)
    targets = {s for s in (state, *states) if s}
    loss = arm.get("val_loss")  # level and blow-up in val-loss units (the bar's)
    gone = ran and bool(targets) and all(not targets & set(t.get("states") or [])
                                         for t in trials)
    effect, gate = arm.get("effect"), arm.get("gate")
    final = arm.get("candidate_mean") if loss is None else loss
    control = arm.get("control_mean") if loss is None else arm.get("control_val_loss")
    finite = final is not None and math.isfinite(final)
    if control_blown_up(control, untrained):
        beats = finite and (not math.isfinite(control) or final < control)
    else:
        beats = effect is not None and gate is not None and effect > gate
    good = finite and final <= bar
    return {"ran": ran, "state_gone": gone, "beats_control": bool(beats), "good_level": good,
            "final": final, "fixed": bool(ran and gone and beats and good)}


def final_val_loss(logdirs: list[Path]) -> float | None:
    """Mean over seeds of each trial's last val loss (the model one keeps); inf when a
    trial's val loss went non-finite or is missing; None without trials."""
    if not logdirs:
        return None
    finals = []
    for d in logdirs:
        vals = _val_losses(d) if d.exists() else []
        finals.append(vals[-1] if vals and math.isfinite(vals[-1]) else math.inf)
    return float(sum(finals) / len(finals))


def _arm_dirs(section: dict[str, Any], arm: str) -> list[Path]:
    """The trial log folders of one arm ('control' or a candidate key)."""
    trials = (section["control"]["trials"] if arm == "control" else
              next(c["trials"] for c in section["candidates"] if c["key"] == arm))
    out = []
    for t in trials:
        argv = t.get("argv") or []
        if "--logdir" in argv:
            out.append(Path(argv[argv.index("--logdir") + 1]))
    return out


def with_val_loss(section: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """The arm with its and the control's final val loss (the judge's level units)."""
    return {**arm, "val_loss": final_val_loss(_arm_dirs(section, arm["key"])),
            "control_val_loss": final_val_loss(_arm_dirs(section, "control"))}


def _template(logdir: Path) -> str:
    """Every hyperparameter the broken run's config.json records, as a placeholder."""
    from train import template

    keys = list(json.loads((logdir / "config.json").read_text()))
    return template(sys.executable, str(TRAIN), keys)


def _plan_top(result: Any, template: str, hyperparameter: str,
              together: tuple[str, ...] = ()) -> tuple[Any, str | None]:
    """The probe's plan for the top recommendation alone (with the changes it carries
    ``together``), or why it cannot be probed (the template cannot express it, or another
    candidate came first)."""
    from diagnose.probe.core import plan_probe

    plan = plan_probe(result, template, overrides={}, top=1, extra=[], frac=1.0,
                      max_steps=None)
    if plan.candidates and plan.candidates[0].changes.keys() == {hyperparameter, *together}:
        return plan, None
    return plan, next((s["reason"] for s in plan.skipped
                       if s["hyperparameter"] == hyperparameter), "not the first candidate")


def _top(rec: Any) -> dict[str, Any]:
    """A case record's ``top``: the recommendation (and the changes it carries)."""
    out = {"hyperparameter": rec.hyperparameter, "current": rec.current,
           "proposed": rec.proposed, "rationale": rec.rationale}
    if rec.together:
        out["together"] = {r.hyperparameter: r.proposed for r in rec.together}
    return out


def run_case(case: Case, out: Path, seeds: int, device: str) -> dict[str, Any]:
    """Broken run -> diagnosis -> probe (control, top recommendation, random) -> judged."""
    from diagnose.pipeline import analyze
    from diagnose.probe.core import ProbeError, run_probe

    start = time.monotonic()
    broken = out / "broken" / case.name
    _train(list(case.args), broken, device)
    result = analyze([str(broken)]).results[0]
    record: dict[str, Any] = {"case": case.name, "why": case.why, "args": list(case.args),
                              "states": list(result.states), "device": device}
    pathological = [f for f in result.findings if f.severity != "info"]
    record["broken"] = bool(pathological)
    top = next(((f, f.recommendations[0]) for f in result.findings if f.recommendations), None)
    if top is None:
        record.update(state=pathological[0].state if pathological else None, probed=False,
                      why_not="no recommendation", wall_s=round(time.monotonic() - start, 1))
        return record
    finding, rec = top
    record.update(state=finding.state, rule=finding.rule,
                  top=_top(rec))
    template = _template(broken)
    plan, why = _plan_top(result, template, rec.hyperparameter,
                          tuple(r.hyperparameter for r in rec.together))
    if why is not None:
        record.update(probed=False, why_not=why, wall_s=round(time.monotonic() - start, 1))
        return record
    cand = plan.candidates[0]
    rand = random_change(plan.control, cand.changes, zlib.crc32(case.name.encode()))
    record["random_change"] = rand
    try:
        section = run_probe(result, template, overrides={}, top=1, seeds=seeds,
                            extra=[rand], frac=1.0, device=device,
                            workdir=out / "trials" / case.name)
    except ProbeError as exc:
        record.update(probed=False, why_not=str(exc), wall_s=round(time.monotonic() - start, 1))
        return record
    untrained = untrained_loss(case)
    ref = reference_level(case, out, seeds, device)
    bar = ref + GOOD_SHARE * (untrained - ref)
    arms = [with_val_loss(section, a) for a in section["candidates"]]
    control_trials = section["control"]["trials"]
    record.update(
        probed=True, untrained=untrained, reference=ref, bar=bar,
        metric=section.get("metric"),
        control_final=arms[0].get("control_val_loss"),
        state_in_control=sum(finding.state in (t.get("states") or []) for t in control_trials),
        advice={"changes": arms[0]["changes"], "verdict": arms[0]["verdict"],
                "reason": arms[0].get("reason"), **judge(arms[0], finding.state, bar, untrained)},
        random={"changes": arms[1]["changes"], "verdict": arms[1]["verdict"],
                **judge(arms[1], finding.state, bar, untrained)},
        wall_s=round(time.monotonic() - start, 1),
    )
    return record


def run_corpus_case(case: dict[str, Any], out: Path, seeds: int,
                    device: str) -> dict[str, Any]:
    """The same loop for a broken run of the calibration corpus (see ``corpus.py``): the
    stored recipe re-trained (trial seed 0 is the stored run), diagnosed, probed."""
    import corpus

    from diagnose.pipeline import analyze
    from diagnose.probe.core import ProbeError, run_probe

    start = time.monotonic()
    name = case["id"]
    recipe = out / "recipes" / f"{name}.json"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(json.dumps(case["config"]))
    broken = out / "broken" / name
    if not (broken / "config.json").exists():
        corpus.train(case["config"], 0, broken)
    result = analyze([str(broken)]).results[0]
    record: dict[str, Any] = {"case": name, "why": case["cause"], "label": case["label"],
                              "label_state": case["state"], "states": list(result.states),
                              "device": device, "broken": True}
    top = next(((f, f.recommendations[0]) for f in result.findings
                if f.recommendations and f.severity != "info"), None)
    record["state"] = case["state"]
    if top is None:
        record.update(probed=False, why_not="no recommendation (diagnosed "
                      f"{', '.join(result.states) or 'healthy'})",
                      wall_s=round(time.monotonic() - start, 1))
        return record
    finding, rec = top
    record.update(rule=finding.rule, finding_state=finding.state,
                  top=_top(rec))
    keys = list(json.loads((broken / "config.json").read_text()))
    template = corpus.template(recipe, keys)
    plan, why = _plan_top(result, template, rec.hyperparameter,
                          tuple(r.hyperparameter for r in rec.together))
    if why is not None:
        record.update(probed=False, why_not=why, wall_s=round(time.monotonic() - start, 1))
        return record
    cand = plan.candidates[0]
    rand = random_change(plan.control, cand.changes, zlib.crc32(name.encode()),
                         choices=corpus.CHOICES, switches=corpus.SWITCHES)
    record["random_change"] = rand
    try:
        section = run_probe(result, template, overrides={}, top=1, seeds=seeds,
                            extra=[rand], frac=1.0, device=device,
                            workdir=out / "trials" / name)
    except ProbeError as exc:
        record.update(probed=False, why_not=str(exc), wall_s=round(time.monotonic() - start, 1))
        return record
    untrained, ref = corpus.levels(case)
    bar = ref + GOOD_SHARE * (untrained - ref)
    arms = [with_val_loss(section, a) for a in section["candidates"]]
    also = (case["state"],)
    record.update(
        probed=True, untrained=untrained, reference=ref, bar=bar,
        metric=section.get("metric"),
        control_final=arms[0].get("control_val_loss"),
        state_in_control=sum(finding.state in (t.get("states") or [])
                             for t in section["control"]["trials"]),
        advice={"changes": arms[0]["changes"], "verdict": arms[0]["verdict"],
                "reason": arms[0].get("reason"),
                **judge(arms[0], finding.state, bar, untrained, also)},
        random={"changes": arms[1]["changes"], "verdict": arms[1]["verdict"],
                **judge(arms[1], finding.state, bar, untrained, also)},
        wall_s=round(time.monotonic() - start, 1),
    )
    return record


# --- the campaign ----------------------------------------------------------------------


def _worker_init(gpus: Any) -> None:
    """Give each worker process one GPU (its trials then run there), or none."""
    if gpus is None:
        return
    ident = gpus.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = ident


def _name(case: Case | dict[str, Any]) -> str:
    return case.name if isinstance(case, Case) else case["id"]


def _run_one(job: tuple[Case | dict[str, Any], str, int, str]) -> dict[str, Any]:
    case, out, seeds, device = job
    try:
        if isinstance(case, Case):
            record = run_case(case, Path(out), seeds, device)
        else:
            record = run_corpus_case(case, Path(out), seeds, device)
    except Exception as exc:  # one broken case must not stop the campaign
        record = {"case": _name(case), "error": f"{type(exc).__name__}: {exc}"}
    record["gpu"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    path = Path(out) / "cases" / f"{_name(case)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return record


def stale(cases: list[Any], out: Path) -> list[str]:
    """Done corpus cases whose top recommendation today differs from the one they were
    probed with (the advice changed since): ``--refresh`` re-runs them."""
    from diagnose.pipeline import analyze

    names = []
    for case in cases:
        path = out / "cases" / f"{_name(case)}.json"
        broken = out / "broken" / _name(case)
        if isinstance(case, Case) or not path.exists() or not broken.exists():
            continue
        rec = json.loads(path.read_text())
        result = analyze([str(broken)]).results[0]
        top = next(((f.recommendations[0]) for f in result.findings
                    if f.recommendations and f.severity != "info"), None)
        now = None if top is None else [top.hyperparameter, str(top.proposed),
                                        {r.hyperparameter: str(r.proposed)
                                         for r in top.together}]
        old = rec.get("top")
        was = None if not old else [old["hyperparameter"], str(old["proposed"]),
                                    {k: str(v) for k, v in old.get("together", {}).items()}]
        if now != was:
            names.append(_name(case))
    return names


def seed_records(records: Path, cases: list[Any], out: Path) -> list[str]:
    """Start ``out`` from a saved campaign (a ``results_*.json``: its ``cases`` rows are
    the per-case records): one case file per row not done yet, and each corpus case's
    broken run re-trained (trial seed 0 is the stored run), so ``--refresh`` re-runs only
    the cases whose top recommendation changed since.  Returns the names written."""
    rows = {r["case"]: r for r in json.loads(records.read_text())["cases"]}
    written = []
    for case in cases:
        name = _name(case)
        path = out / "cases" / f"{name}.json"
        if name not in rows or path.exists():
            continue
        if not isinstance(case, Case) and not (out / "broken" / name / "config.json").exists():
            import corpus

            corpus.train(case["config"], 0, out / "broken" / name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows[name], indent=2, default=str))
        written.append(name)
    return written


def campaign(cases: list[Any], out: Path, seeds: int, workers: int, device: str,
             budget_s: float | None = None) -> None:
    """Run every case not done yet, ``workers`` at a time, with a progress bar; stop
    starting new cases once ``budget_s`` seconds have passed (rerun to resume)."""
    import multiprocessing as mp

    from rich.progress import Progress

    t0 = time.monotonic()
    done = {p.stem for p in (out / "cases").glob("*.json")}
    todo = [c for c in cases if _name(c) not in done]
    from diagnose.probe.trials import visible_gpus

    gpus = [] if device == "cpu" else visible_gpus()
    if device == "cuda" and not gpus:
        raise SystemExit("fixrate: --device cuda but no GPU is visible")
    if gpus:
        workers = min(workers, len(gpus)) if workers > 1 else 1
    jobs = [(c, str(out), seeds, "cuda" if gpus else "cpu") for c in todo]
    with Progress(transient=False) as bar:
        task = bar.add_task(f"fix-rate ({len(done)} done before)", total=len(todo))
        if workers <= 1 and not gpus:
            for job in jobs:
                if budget_s is not None and time.monotonic() - t0 > budget_s:
                    bar.console.print(f"time budget {budget_s:.0f} s spent: stopping")
                    return
                rec = _run_one(job)
                bar.console.print(_line(rec))
                bar.advance(task)
            return
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for g in gpus[:workers] or []:
            queue.put(g)
        with ctx.Pool(workers, initializer=_worker_init,
                      initargs=(queue if gpus else None,)) as pool:
            for rec in pool.imap_unordered(_run_one, jobs):
                bar.console.print(_line(rec))
                bar.advance(task)


def _line(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return f"{rec['case']}: ERROR {rec['error']}"
    if not rec.get("probed"):
        return f"{rec['case']}: {rec.get('state')} not probed ({rec.get('why_not')})"
    a, r = rec["advice"], rec["random"]
    return (f"{rec['case']}: {rec['state']} advice {a['changes']} fixed={a['fixed']} "
            f"random {r['changes']} fixed={r['fixed']} ({rec['wall_s']} s)")


def summarize(out: Path, names: set[str] | None = None) -> dict[str, Any]:
    """Per state: broken, probed, fixed, random fixed; and one row per case (only the
    cases in ``names`` when given: a case that left the case list keeps its file in
    ``out`` but no longer counts)."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "cases").glob("*.json"))
            if names is None or p.stem in names]
    states: dict[str, dict[str, int]] = {}
    for r in rows:
        if not r.get("broken"):
            continue
        s = states.setdefault(r.get("state") or "?", dict(broken=0, probed=0, fixed=0,
                                                          random_fixed=0))
        s["broken"] += 1
        if r.get("probed"):
            s["probed"] += 1
            s["fixed"] += bool(r["advice"]["fixed"])
            s["random_fixed"] += bool(r["random"]["fixed"])
    total = {k: sum(s[k] for s in states.values())
             for k in ("broken", "probed", "fixed", "random_fixed")}
    return {"states": states, "total": total, "cases": rows}


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| state | broken | probed | fixed by the advice | fixed by a random change |",
             "|---|---|---|---|---|"]
    for name, s in sorted(summary["states"].items()):
        lines.append(f"| {name} | {s['broken']} | {s['probed']} | {s['fixed']} | "
                     f"{s['random_fixed']} |")
    t = summary["total"]
    lines.append(f"| **all** | {t['broken']} | {t['probed']} | {t['fixed']} | "
                 f"{t['random_fixed']} |")
    if t["broken"]:
        lines += ["", f"Advice fixed {t['fixed']}/{t['broken']} broken runs "
                  f"({t['fixed'] / t['broken']:.0%}), {t['fixed']}/{t['probed'] or 1} of those "
                  f"probed; a random change of the same size {t['random_fixed']}/{t['broken']}."]
    lines += ["", "| case | state | advice | final / bar | fixed | random change | final | "
              "fixed |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["cases"]:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | | | | |")
        elif not r.get("probed"):
            cause = f" ({r['why']})" if "label" in r else ""
            lines.append(f"| {r['case']} | {r.get('state') or 'healthy'}{cause} | not probed: "
                         f"{r.get('why_not', '')} | | | | | |")
        else:
            a, x = r["advice"], r["random"]
            seen = r.get("finding_state")
            state = r["state"] + (f" ({r['why']}; ours: {seen})" if "label" in r else "")
            lines.append(
                f"| {r['case']} | {state} | {_ch(a['changes'])} ({a['verdict']}) | "
                f"{_f(a['final'])} / {_f(r['bar'])} | {_yes(a)} | {_ch(x['changes'])} | "
                f"{_f(x['final'])} | {_yes(x)} |")
    return "\n".join(lines)


def _ch(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def _f(x: Any) -> str:
    return "diverged" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _yes(arm: dict[str, Any]) -> str:
    if arm["fixed"]:
        return "yes"
    miss = [n for n, k in (("state stays", "state_gone"), ("not better", "beats_control"),
                           ("level", "good_level")) if not arm[k]]
    return "no (" + ", ".join(miss) + ")"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "bench" / "_out" / "fixrate"))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--corpus", type=int, metavar="N",
                   help="cases from the calibration corpus instead: N broken runs per state")
    p.add_argument("--budget-s", type=float, help="start no new case after this many seconds")
    p.add_argument("--refresh", action="store_true",
                   help="first re-run done cases whose top recommendation changed since")
    p.add_argument("--seed-records", type=Path, metavar="JSON",
                   help="first take the done cases from a saved campaign's records (a "
                        "results_*.json), re-training their broken runs")
    p.add_argument("--report", action="store_true", help="only print the tables")
    args = p.parse_args(argv)
    out = Path(args.out)
    wanted = set(args.cases.split(",")) if args.cases else None
    cases: list[Any]
    if args.corpus:
        import corpus

        cases = [c for c in corpus.cases(args.corpus) if wanted is None or c["id"] in wanted]
    else:
        cases = [c for c in CASES if wanted is None or c.name in wanted]
    if args.seed_records:
        got = seed_records(args.seed_records, cases, out)
        print(f"{len(got)} case records taken from {args.seed_records}", file=sys.stderr)
    if args.refresh:
        import shutil

        for name in stale(cases, out):
            print(f"{name}: the advice changed since it ran: re-running", file=sys.stderr)
            (out / "cases" / f"{name}.json").unlink()
            shutil.rmtree(out / "trials" / name, ignore_errors=True)
    if not args.report:
        start = time.monotonic()
        campaign(cases, out, args.seeds, args.workers, args.device, args.budget_s)
        print(f"campaign wall time {time.monotonic() - start:.0f} s", file=sys.stderr)
    summary = summarize(out, {_name(c) for c in cases} if not wanted else None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
