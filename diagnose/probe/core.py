"""The probe: short side-by-side trials of a run's recommendations against a control.

A recommendation is a hypothesis.  The probe fills the user's command template with the
run's current values (the control) and with each recommendation's proposed values (the
candidates), runs every arm over several seeds on a short budget, reads the trials' logs
with our own ingest and rules, and says for each candidate whether it helped.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diagnose.config import Config
from diagnose.findings import RunResult
from diagnose.metrics import Role
from diagnose.probe.template import fill, key_for, placeholders
from diagnose.probe.trials import TrialOutcome, TrialSpec, run_trials, visible_gpus
from diagnose.probe.verdict import decide, matched_step, primary_role, score_arm

#: Recommendations about when to stop are read off the logs; a trial adds nothing.
_NOT_PROBED = {"max_steps", "epochs"}


class ProbeError(ValueError):
    """A one-line, user-facing problem with a probe request."""


@dataclass
class Candidate:
    """One arm to try: the changed hyperparameters and what it is meant to fix."""

    key: str
    changes: dict[str, Any]
    finding: str | None = None
    state: str | None = None
    rationale: str = ""


@dataclass
class ProbePlan:
    """Everything decided before any trial runs."""

    control: dict[str, Any]
    candidates: list[Candidate]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    max_steps: int | None = None
    epochs: int | None = None


def _concrete(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return isinstance(value, str) and not value.startswith(("x", "*", "/", "current"))


def budget(result: RunResult, frac: float, steps: int | None) -> int | None:
    """Short budget: ``frac`` of the run's steps, at least past where the problem showed."""
    if steps:
        return steps
    rng = result.run.step_range
    if not rng:
        return None
    last = rng[1]
    problem = [
        f.step for f in result.findings if f.step is not None and f.severity != "info"
    ]
    want = max(math.ceil(frac * last), math.ceil(1.2 * min(problem)) if problem else 0, 20)
    return int(min(max(want, 1), max(last, 1)))


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
    """Control values, candidate arms (top-N recommendations + ``--try``) and the budget."""
    names = placeholders(template)
    keys = {key_for(n) for n in names}
    if "logdir" not in keys:
        raise ProbeError("the command template must contain {logdir}: the probe reads logs there")
    control: dict[str, Any] = {**result.run.hparams, **overrides}
    plan = ProbePlan(control=control, candidates=[])
    if "max_steps" in keys:
        plan.max_steps = budget(result, frac, max_steps)
        if plan.max_steps is None:
            raise ProbeError("cannot size the budget: the run has no steps; pass --max-steps")
        control["max_steps"] = plan.max_steps
    if "epochs" in keys:
        epochs = control.get("epochs")
        if isinstance(epochs, (int, float)) and epochs > 0:
            plan.epochs = max(1, math.ceil(frac * float(epochs)))
        elif max_steps:
            plan.epochs = max_steps
        else:
            raise ProbeError("the template has {epochs} but the run records none: "
                             "pass --hparam epochs=N")
        control["epochs"] = plan.epochs
    seen: set[str] = set()
    for finding in result.findings:
        for rec in finding.recommendations:
            hp = rec.hyperparameter
            if hp in seen:
                continue
            seen.add(hp)
            why = None
            if hp in _NOT_PROBED:
                why = "a stopping point is read off the logs (best step); no trial needed"
            elif hp not in keys:
                why = f"the command template has no {{{hp}}} placeholder"
            elif not _concrete(rec.proposed):
                why = (f"the proposed value '{rec.proposed}' is relative: "
                       f"pass --hparam {hp}=CURRENT to make it concrete")
            if why:
                plan.skipped.append({"hyperparameter": hp, "proposed": rec.proposed,
                                     "finding": finding.rule, "reason": why})
                continue
            if len(plan.candidates) < top:
                plan.candidates.append(Candidate(
                    key=f"{hp}={rec.proposed}", changes={hp: rec.proposed},
                    finding=finding.rule, state=finding.state, rationale=rec.rationale,
                ))
    for changes in extra:
        key = ",".join(f"{k}={v}" for k, v in changes.items())
        missing = [k for k in changes if k not in keys]
        if missing:
            raise ProbeError(f"--try {key}: the command template has no {{{missing[0]}}}")
        plan.candidates.append(Candidate(key=key, changes=dict(changes),
                                         rationale="requested with --try"))
    return plan


def _curve(outcome: TrialOutcome, role: Role, max_points: int = 200) -> dict[str, list]:
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
    arms = [("control", {})] + [(c.key, c.changes) for c in plan.candidates]
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
    by_arm: dict[str, list[TrialOutcome]] = {}
    for o in outcomes:
        by_arm.setdefault(o.spec.arm, []).append(o)
    picked = primary_role([o for o in outcomes if o.status == "ok"])
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
        step = matched_step([o for o in outcomes if o.status == "ok"], role)
        section.update(metric=role.value, higher_is_better=higher, matched_step=step)
    control_out = by_arm.get("control", [])
    section["control"]["trials"] = [_trial(o, picked) for o in control_out]
    control_score = (score_arm(control_out, picked[0], step, picked[1])
                     if picked and step is not None else None)
    for cand in plan.candidates:
        outs = by_arm.get(cand.key, [])
        entry: dict[str, Any] = {
            "key": cand.key,
            "changes": cand.changes,
            "from": {k: plan.control.get(k) for k in cand.changes},
            "finding": cand.finding,
            "state": cand.state,
            "rationale": cand.rationale,
            "trials": [_trial(o, picked) for o in outs],
        }
        if control_score is not None and picked is not None and step is not None:
            entry.update(decide(control_score, score_arm(outs, picked[0], step, picked[1]),
                                cand.state, picked[1]))
        else:
            entry.update(verdict="inconclusive",
                         reason="no trial wrote a loss or metric to compare")
        section["candidates"].append(entry)
    return section


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
    if o.result is not None:
        out["states"] = list(o.result.states)
        out["findings"] = [f.rule for f in o.result.findings]
        if picked is not None:
            out["curve"] = _curve(o, picked[0])
    return out
