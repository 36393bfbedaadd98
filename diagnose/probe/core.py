"""The probe: short side-by-side trials of a run's recommendations against a control.

A recommendation is a hypothesis.  The probe fills the user's command template with the
run's current values (the control) and with each recommendation's proposed values (the
candidates), runs every arm over several seeds on a short budget, reads the trials' logs
with our own ingest and rules, and says for each candidate whether it helped.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diagnose.config import Config
from diagnose.findings import RunResult
from diagnose.hparams import finite_number
from diagnose.metrics import Role
from diagnose.probe.template import fill, key_for, placeholders
from diagnose.probe.trials import TrialOutcome, TrialSpec, run_trials, visible_gpus
from diagnose.probe.verdict import decide, matched_step, primary_role, score_arm

#: Hyperparameters that set the training length: a candidate that changes one of them is
#: judged on each arm's final value (the model the user would keep), not at a shared step.
LENGTH_KEYS = ("max_steps", "epochs")
#: A length candidate shorter than this share of the budget is degenerate: not probed.
MIN_LENGTH_SHARE = 0.02

_RELATIVE = re.compile(r"^\s*(?:current\s*)?([x*/])\s*([0-9.eE+-]+)\s*$")


class ProbeError(ValueError):
    """A one-line, user-facing problem with a probe request."""


class TrialsFailed(ProbeError):
    """Every trial failed: the message is one line, ``errors`` each trial's text whole."""

    def __init__(self, message: str, errors: list[str]):
        super().__init__(message)
        self.errors = errors


@dataclass
class Candidate:
    """One arm to try: the changed hyperparameters and what it is meant to fix."""

    key: str
    changes: dict[str, Any]
    finding: str | None = None
    state: str | None = None
    rationale: str = ""
    proposed: dict[str, Any] = field(default_factory=dict)  # as recommended, before scaling


@dataclass
class ProbePlan:
    """Everything decided before any trial runs."""

    control: dict[str, Any]
    candidates: list[Candidate]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    max_steps: int | None = None
    epochs: int | None = None
    length_key: str | None = None  # the placeholder that sets the length, if any
    full_length: float | None = None  # the original run's length in that unit


def _concrete(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    # 'xavier_uniform' is a value; 'x2', '*3', '/5' and 'current/5' are relative moves
    return isinstance(value, str) and _RELATIVE.match(value) is None and not (
        value.strip().lower().startswith("current"))


def resolve_relative(proposed: Any, current: Any) -> float | None:
    """``x2`` / ``current/5`` / ``*0.5`` against a known current value; None otherwise."""
    if not isinstance(proposed, str):
        return None
    m = _RELATIVE.match(proposed)
    cur = finite_number(current)
    if m is None or cur is None:
        return None
    try:
        factor = float(m.group(2))
    except ValueError:
        return None
    if not math.isfinite(factor) or factor <= 0:
        return None
    return cur / factor if m.group(1) == "/" else cur * factor


def _as_count(hp: str, value: float, current: Any) -> Any:
    """Counts stay integers (batch 32 x2 = 64, not 64.0); other values keep 4 digits."""
    if hp in ("batch_size", "max_steps", "epochs", "warmup_steps") or (
            isinstance(current, int) and not isinstance(current, bool)
            and float(value).is_integer()):
        return max(1, round(value))
    return float(f"{value:.4g}")


def placeholder_hint(hp: str) -> str:
    """The exact step that makes ``hp`` probeable: add its placeholder to --cmd."""
    flag = "--" + hp.replace("_", "-")
    return (f"the command template has no {{{hp}}} placeholder: add your script's flag for "
            f"it to --cmd, e.g. '{flag} {{{hp}}}'")


def budget(result: RunResult, frac: float, steps: int | None) -> int | None:
    """Short budget: ``frac`` of the run's steps, at least past where the problem showed.

    ``frac >= 1`` is the full original length (what the fix-rate benchmark uses).
    """
    if steps:
        return steps
    rng = result.run.step_range
    if not rng:
        return None
    last = rng[1]
    if frac >= 1:
        return int(max(last, 1))
    problem = [
        f.step for f in result.findings if f.step is not None and f.severity != "info"
    ]
    want = max(math.ceil(frac * last), math.ceil(1.2 * min(problem)) if problem else 0, 20)
    return int(min(max(want, 1), max(last, 1)))


def _length_plan(plan: ProbePlan, result: RunResult, keys: set[str], frac: float,
                 max_steps: int | None) -> None:
    control = plan.control
    if "max_steps" in keys:
        plan.max_steps = budget(result, frac, max_steps)
        if plan.max_steps is None:
            raise ProbeError("cannot size the budget: the run has no steps; pass --max-steps")
        planned = finite_number(control.get("max_steps"))
        rng = result.run.step_range
        plan.length_key = "max_steps"
        plan.full_length = planned or (float(rng[1]) if rng else float(plan.max_steps))
        control["max_steps"] = plan.max_steps
    if "epochs" in keys:
        epochs = finite_number(control.get("epochs"))
        if epochs is not None and epochs > 0:
            plan.epochs = max(1, math.ceil(min(frac, 1.0) * epochs))
        elif max_steps:
            plan.epochs = max_steps
        else:
            raise ProbeError("the template has {epochs} but the run records none: "
                             "pass --hparam epochs=N")
        if plan.length_key is None:
            plan.length_key, plan.full_length = "epochs", epochs or float(plan.epochs)
        control["epochs"] = plan.epochs


def _scaled_length(plan: ProbePlan, hp: str, proposed: float, current: Any) -> tuple[
        int | None, str]:
    """A length proposal mapped onto the trial budget: stop at N of 1500 -> same share."""
    full = finite_number(current) or (plan.full_length if hp == plan.length_key else None)
    arm_len = plan.max_steps if hp == "max_steps" else plan.epochs
    if not full or not arm_len:
        return None, (f"the run's current {hp} is unknown, so {hp}={_show(proposed)} cannot be "
                       f"mapped onto the trial budget: pass --hparam {hp}=CURRENT")
    value = max(1, round(arm_len * proposed / full))
    if value < max(1.0, MIN_LENGTH_SHARE * arm_len) or value == arm_len:
        return None, (f"{hp} {_show(proposed)} of {_show(full)} is {value} of the trial budget "
                      f"{arm_len}: nothing to compare")
    return value, ""


def _show(value: Any) -> str:
    from diagnose.probe.template import format_value

    return format_value(value)


def plan_probe(
    result: RunResult,
    template: str,
    *,
    overrides: dict[str, Any],
    top: int,
    extra: list[dict[str, Any]],
    frac: float,
    max_steps: int | None,
) -> ProbePlan:
    """Control values, candidate arms (top-N recommendations + ``--try``) and the budget.

    Relative proposals (``x2``, ``current/5``) become concrete from the recommendation's
    ``current`` or the run's value (``--hparam`` wins); a length proposal is mapped onto the
    trial budget by its share of the original length.  A recommendation the template
    cannot express is listed in ``skipped`` with the step that would make it probeable.
    """
    names = placeholders(template)
    keys = {key_for(n) for n in names}
    if "logdir" not in keys:
        raise ProbeError("the command template must contain {logdir}: the probe reads logs there")
    control: dict[str, Any] = {**result.run.hparams, **overrides}
    plan = ProbePlan(control=control, candidates=[])
    _length_plan(plan, result, keys, frac, max_steps)
    seen: set[str] = set()
    for finding in result.findings:
        for rec in finding.recommendations:
            hp = rec.hyperparameter
            if hp in seen:
                continue
            seen.add(hp)
            changes: dict[str, Any] = {}
            proposed: dict[str, Any] = {}
            value, why = _candidate_value(plan, keys, hp, rec.proposed,
                                          overrides.get(hp, rec.current))
            dropped: list[dict[str, Any]] = []
            if not why:
                changes[hp], proposed[hp] = value, rec.proposed
            for part in rec.together if not why else ():  # a coupled change is one arm
                name = part.hyperparameter
                value, part_why = _candidate_value(plan, keys, name, part.proposed,
                                                   overrides.get(name, part.current),
                                                   same_ok=True)
                if not part_why:
                    changes[name], proposed[name] = value, part.proposed
                elif rec.together_needed:  # half of it is not the advice: no arm
                    why = f"together with {hp}: {part_why}"
                    break
                else:  # a companion: the main change is tried alone, and the plan says so
                    dropped.append({"hyperparameter": name, "proposed": part.proposed,
                                    "finding": finding.rule,
                                    "reason": f"carried by {hp}, tried without it: {part_why}"})
            if why:
                plan.skipped.append({"hyperparameter": hp, "proposed": rec.proposed,
                                     "finding": finding.rule, "reason": why})
                continue
            plan.skipped.extend(dropped)
            if len(plan.candidates) < top:
                plan.candidates.append(Candidate(
                    key=",".join(f"{k}={_show(v)}" for k, v in proposed.items()),
                    changes=changes, finding=finding.rule, state=finding.state,
                    rationale=rec.rationale, proposed=proposed,
                ))
    for changes in extra:
        key = ",".join(f"{k}={_show(v)}" for k, v in changes.items())
        missing = [k for k in changes if k not in keys]
        if missing:
            raise ProbeError(f"--try {key}: {placeholder_hint(missing[0])}")
        concrete: dict[str, Any] = {}
        for k, v in changes.items():
            if k in LENGTH_KEYS and finite_number(v) is not None:
                concrete[k] = max(1, int(float(v)))  # --try max_steps=N: N steps, as given
                continue
            value, why = _candidate_value(plan, keys, k, v, control.get(k), same_ok=True)
            if why:
                raise ProbeError(f"--try {key}: {why}")
            concrete[k] = value
        plan.candidates.append(Candidate(key=key, changes=concrete, proposed=dict(changes),
                                         rationale="requested with --try"))
    return plan


def _candidate_value(plan: ProbePlan, keys: set[str], hp: str, proposed: Any,
                     current: Any, same_ok: bool = False) -> tuple[Any, str]:
    """(the value a trial gets, '') or (None, why it cannot be probed)."""
    if hp not in keys:
        return None, placeholder_hint(hp)
    base = plan.control.get(hp) if current is None else current
    value = proposed
    if not _concrete(proposed):
        resolved = resolve_relative(proposed, base)
        if resolved is None:
            return None, (f"the proposed value '{proposed}' is relative and the current "
                          f"{hp} is unknown: pass --hparam {hp}=CURRENT")
        value = _as_count(hp, resolved, base)
    if hp in LENGTH_KEYS:
        number = finite_number(value)
        if number is None:
            return None, f"{hp} '{proposed}' is not a number"
        scaled, why = _scaled_length(plan, hp, number, current)
        return (scaled, "") if not why else (None, why)
    if not same_ok and _same(plan.control.get(hp), value):
        return None, f"the run already has {hp}={_show(value)}: nothing to change"
    return value, ""


#: Proposed values within this relative distance of the current one are the same value
#: (advice rounds to 2-3 significant digits: 0.00123 restores a configured 0.0012345).
SAME_VALUE_REL = 0.01


def _same(a: Any, b: Any) -> bool:
    if a is None:
        return False
    x, y = finite_number(a), finite_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=SAME_VALUE_REL)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    return str(a).strip().lower() == str(b).strip().lower()


def _curve(outcome: TrialOutcome, role: Role, max_points: int = 200) -> dict[str, list[float]]:
    if outcome.result is None:
        return {"steps": [], "values": []}
    series = outcome.result.resolved_roles().get(role)
    if series is None:
        return {"steps": [], "values": []}
    idx = np.unique(np.linspace(0, len(series) - 1, min(len(series), max_points)).astype(int))
    return {"steps": series.steps[idx].tolist(), "values": series.values[idx].tolist()}


def run_probe(
    result: RunResult,
    template: str,
    *,
    config: Config | None = None,
    overrides: dict[str, Any] | None = None,
    top: int = 3,
    seeds: int = 2,
    extra: list[dict[str, Any]] | None = None,
    frac: float = 0.1,
    max_steps: int | None = None,
    device: str = "auto",
    timeout: float = 900.0,
    workdir: Path | None = None,
    on_done: Callable[[TrialOutcome], None] | None = None,
) -> dict[str, Any]:
    """Plan, run and judge the trials; returns the JSON-ready ``probe`` section."""
    config = config or Config()
    plan = plan_probe(result, template, overrides=overrides or {}, top=top,
                      extra=extra or [], frac=frac, max_steps=max_steps)
    if not plan.candidates:
        reasons = "; ".join(f"{s['hyperparameter']}: {s['reason']}" for s in plan.skipped)
        raise ProbeError("nothing to probe: no recommendation can be expressed with this "
                         f"template{' (' + reasons + ')' if reasons else ''}; use --try KEY=VALUE")
    gpus = [] if device == "cpu" else visible_gpus()
    if device == "cuda" and not gpus:
        raise ProbeError("--device cuda but no GPU is visible")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="diagnose-probe-"))
    device_value = "cuda" if gpus else "cpu"
    specs: list[TrialSpec] = []
    arms: list[tuple[str, dict[str, Any]]] = [("control", {})]
    arms += [(c.key, c.changes) for c in plan.candidates]
    for a, (arm, changes) in enumerate(arms):
        for seed in range(seeds):
            params = {**plan.control, **changes, "seed": seed, "device": device_value}
            logdir = workdir / f"arm{a}" / f"seed{seed}"
            params["logdir"] = str(logdir)
            specs.append(TrialSpec(arm=arm, seed=seed, argv=fill(template, params),
                                   logdir=logdir, params=params))
    start = time.monotonic()
    outcomes = run_trials(specs, gpus, timeout, config, on_done=on_done)
    wall = time.monotonic() - start
    ok = [o for o in outcomes if o.status == "ok"]
    if not ok:
        raise TrialsFailed(
            f"every trial failed ({len(outcomes)} of {len(outcomes)}); nothing to compare",
            [f"{o.spec.arm} seed {o.spec.seed}: {o.status}: {o.error or o.message}"
             for o in outcomes])
    by_arm: dict[str, list[TrialOutcome]] = {}
    for o in outcomes:
        by_arm.setdefault(o.spec.arm, []).append(o)
    picked = primary_role(ok)
    section: dict[str, Any] = {
        "device": ",".join(f"cuda:{g}" for g in gpus) if gpus else "cpu",
        "workdir": str(workdir),
        "max_steps": plan.max_steps,
        "epochs": plan.epochs,
        "seeds": seeds,
        "wall_s": round(wall, 2),
        "control": {"params": _public(plan.control)},
        "candidates": [],
        "skipped": plan.skipped,
    }
    step = None
    if picked is not None:
        role, higher = picked
        step = matched_step([o for o in ok if o.spec.arm not in _length_arms(plan)], role)
        section.update(metric=role.value, higher_is_better=higher, matched_step=step)
    untrained = None if picked is None else untrained_level(result, ok, picked[0])
    if untrained is not None:
        section["untrained_level"] = untrained
    control_out = by_arm.get("control", [])
    section["control"]["trials"] = [_trial(o, picked) for o in control_out]
    for cand in plan.candidates:
        outs = by_arm.get(cand.key, [])
        entry: dict[str, Any] = {
            "key": cand.key,
            "changes": cand.changes,
            "from": {k: _from_value(plan, k) for k in cand.changes},
            "proposed": cand.proposed,
            "finding": cand.finding,
            "state": cand.state,
            "rationale": cand.rationale,
            "trials": [_trial(o, picked) for o in outs],
        }
        if picked is not None:
            # matched on the control and this candidate alone: another arm that logged
            # fewer steps (a bigger batch) must not move this comparison
            at = None if cand.key in _length_arms(plan) else matched_step(
                [o for o in [*control_out, *outs] if o.status == "ok"], picked[0])
            entry["compared_at"] = "each arm's last step" if at is None else f"step {at}"
            entry.update(decide(score_arm(control_out, picked[0], at, picked[1]),
                                score_arm(outs, picked[0], at, picked[1]),
                                cand.state, picked[1], untrained))
        else:
            entry.update(verdict="inconclusive",
                         reason="no trial wrote a loss or metric to compare")
        section["candidates"].append(entry)
    return section


def untrained_level(result: RunResult, ok: list[TrialOutcome], role: Role) -> float | None:
    """The compared metric's chance level when the class count is unambiguous (ln C for a
    loss, 1/C for an accuracy), from the run or a trial; None otherwise."""
    from diagnose.signals import chance_accuracy, chance_loss, infer_num_classes

    runs = [result] + [o.result for o in ok if o.result is not None]
    n = next((c for r in runs if (c := infer_num_classes(r.run, r.resolved_roles()))), None)
    if not n:
        return None
    if role in (Role.VAL_LOSS, Role.TRAIN_LOSS):
        return chance_loss(n)
    series = result.resolved_roles().get(role)
    if series is not None and "acc" in series.metric.lower():
        return chance_accuracy(n)
    return None


def _length_arms(plan: ProbePlan) -> set[str]:
    """Candidates that change the training length: compared on each arm's final value."""
    return {c.key for c in plan.candidates if set(c.changes) & set(LENGTH_KEYS)}


def _from_value(plan: ProbePlan, key: str) -> Any:
    """The control's value of ``key`` as the trials ran it (None when the run never set it)."""
    return plan.control.get(key)


def _public(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("logdir",)}


def _trial(o: TrialOutcome, picked: tuple[Role, bool] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seed": o.spec.seed,
        "status": o.status,
        "wall_s": round(o.wall_s, 2),
        "device": o.device,
        "argv": o.spec.argv,
    }
    if o.message:
        out["message"] = o.message
    if o.error:
        out["error"] = o.error
    if o.result is not None:
        out["states"] = list(o.result.states)
        out["findings"] = [f.rule for f in o.result.findings]
        if picked is not None:
            out["curve"] = _curve(o, picked[0])
    return out
