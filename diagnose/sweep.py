"""What separates good runs from bad ones in a hyperparameter sweep.

Runs that share a parent folder and differ in their hyperparameters form a sweep group.
For each group this module says, only when the numbers are unambiguous:

- a failure boundary: "every run with learning_rate >= 0.1 diverged" (a state present in
  some runs and cleanly separated by one hyperparameter's value);
- a best run at the edge of the searched range: widen the range there, or, when the runs
  beyond that edge failed, suspect instability (tuning playbook: "if all LRs above some
  value are infeasible and the best trial sits at that edge, suspect instability");
- a monotone relationship between one hyperparameter and the outcome.

Every claim compares only runs that differ in that one hyperparameter (the other varied
ones held equal), rests on at least :data:`MIN_PER_SIDE` runs on each side, and says how
many runs it rests on: one run that happens to differ in many settings proves nothing.
Deterministic (groups, hyperparameters and runs are sorted) and quiet when nothing is clear.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnose.findings import SEVERITY_RANK, RunResult
from diagnose.hparams import finite_number
from diagnose.metrics import OBJECTIVE_ROLES, Role, Series
from diagnose.numbers import sig

#: Smallest number of runs that makes a sweep group.
MIN_RUNS = 3
#: Smallest number of runs on each side of a failure boundary (and of failed runs beyond
#: a best run that is limited by instability): never a claim from one run.
MIN_PER_SIDE = 2
#: Smallest number of distinct values of a hyperparameter for edge/trend insights.
MIN_VALUES = 3
#: A monotone trend must move the outcome by at least this share of its level.
MIN_EFFECT = 0.02
#: States that make a run a failure worth separating (error/warning findings only).
FAILURE_STATES = (
    "divergence",
    "exploding_gradients",
    "instability",
    "batchnorm_collapse",
    "overfit",
    "underfit",
    "plateau",
)
#: States that make a run infeasible: excluded from "best run" and trend analysis.
INFEASIBLE_STATES = ("divergence", "exploding_gradients")
_VERBS = {"divergence": "diverged", "exploding_gradients": "had exploding gradients"}
#: Preferred order of hyperparameters in the output (seeds 003 importance order).
_ORDER = ("learning_rate", "batch_size", "momentum", "optimizer", "warmup_steps",
          "weight_decay", "dropout", "grad_clip", "lr_schedule", "epochs", "max_steps")


@dataclass(frozen=True)
class _Outcome:
    """One run's score on the group's common outcome metric (None when infeasible)."""

    run_id: str
    hparams: dict[str, Any]
    states: tuple[str, ...]
    score: float | None  # oriented: higher is better




def _numbers(values: list[Any]) -> list[float] | None:
    """Every value as a finite float (:func:`finite_number`), or None when one is not."""
    out = [finite_number(v) for v in values]
    return None if any(x is None for x in out) else [x for x in out if x is not None]


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _group_of(run_id: str) -> str:
    """Parent folder of a run id ('.' for top-level runs)."""
    return run_id.rsplit("/", 1)[0] if "/" in run_id else "."


def outcome_series(result: RunResult) -> dict[str, Series]:
    """Candidate outcome series of a run, keyed by ``role:metric`` (shared with baseline)."""
    return {f"{role.value}:{s.metric}": s for role, s in result.resolved_roles().objectives()}


_OUTCOME_ROLES = tuple(role.value for role in OBJECTIVE_ROLES)


def common_outcome(candidates: list[dict[str, Series]]) -> str | None:
    """The best outcome key every run has: val metric, then val loss, then train loss."""
    if not candidates:
        return None
    common = set.intersection(*(set(c) for c in candidates))
    ranked = sorted(common, key=lambda k: (_OUTCOME_ROLES.index(k.split(":")[0]), k))
    return ranked[0] if ranked else None


def score(series: Series, key: str) -> float:
    """Best val metric, lowest val loss, or final (tail median) train loss; higher = better."""
    values = series.finite.values
    if key.startswith(Role.TRAIN_LOSS.value):
        tail = values[-max(3, len(values) // 10):]
        return -float(np.median(tail))
    if series.higher_is_better:
        return float(np.max(values))
    return -float(np.min(values))


def shown(value: float, higher_is_better: bool | None) -> float:
    """The outcome in its own units (lower-is-better outcomes were negated)."""
    return value if higher_is_better else -value


def describe_outcome(key: str) -> tuple[str, str]:
    """(human name, 'best'/'lowest'/'final') of an outcome key."""
    role, metric = key.split(":", 1)
    if role == Role.VAL_METRIC.value:
        return f"best val {metric}", "best"
    if role == Role.VAL_LOSS.value:
        return "lowest val loss", "lowest"
    return "final train loss", "final"


def _failed_states(result: RunResult) -> tuple[str, ...]:
    seen: list[str] = []
    for f in result.findings:
        serious = SEVERITY_RANK.get(f.severity, 0) >= 1
        if serious and f.state in FAILURE_STATES and f.state not in seen:
            seen.append(f.state)
    return tuple(seen)


#: Recorded settings that identify a run or its machine rather than configure training.
_NOT_HPARAMS = re.compile(
    r"seed|(^|_)dir$|path|(^|_)name$|run_id|time|date|version|device|gpu|worker|logging|"
    r"^save|output|report_to|resume|hub|push_to|rank|world_size|port$|host|wandb|project|"
    r"^tags?$|^notes?$|^id$|checkpoint",
    re.I,
)


def _varied(runs: list[_Outcome]) -> list[str]:
    """Hyperparameters recorded for every run of the group with at least two values.

    Bookkeeping keys (seed, output_dir, run_name...) are skipped, and so are text values
    that differ for every run (identifiers): "every run with output_dir = X diverged" is
    not an insight.
    """
    common = set.intersection(*(set(r.hparams) for r in runs)) if runs else set()
    names = []
    for h in common:
        values = [r.hparams[h] for r in runs]
        distinct = {str(v) for v in values}
        if len(distinct) < 2 or _NOT_HPARAMS.search(str(h)):
            continue
        numeric = all(finite_number(v) is not None for v in values)
        if not numeric and len(distinct) == len(runs):
            continue
        names.append(h)
    return sorted(names, key=lambda h: (_ORDER.index(h) if h in _ORDER else len(_ORDER), h))


def _boundaries(group: str, runs: list[_Outcome], hp: str) -> list[dict[str, Any]]:
    """'every run with hp >= x diverged' when a state is separated by one threshold."""
    out: list[dict[str, Any]] = []
    states = sorted({s for r in runs for s in r.states},
                    key=lambda s: FAILURE_STATES.index(s))
    numeric = all(finite_number(r.hparams[hp]) is not None for r in runs)
    for state in states:
        bad = [r for r in runs if state in r.states]
        good = [r for r in runs if state not in r.states]
        if len(bad) < MIN_PER_SIDE or len(good) < MIN_PER_SIDE:
            continue
        verb = _VERBS.get(state, f"was flagged {state}")
        evidence: dict[str, Any] = {
            "state": state,
            "with_state": {r.run_id: r.hparams[hp] for r in bad},
            "without_state": {r.run_id: r.hparams[hp] for r in good},
        }
        if numeric:
            bad_v = _numbers([r.hparams[hp] for r in bad])
            good_v = _numbers([r.hparams[hp] for r in good])
            if bad_v is None or good_v is None:  # cannot happen: `numeric` checked every run
                continue
            if min(bad_v) > max(good_v):
                edge, other, side = min(bad_v), max(good_v), ">="
            elif max(bad_v) < min(good_v):
                edge, other, side = max(bad_v), min(good_v), "<="
            else:
                continue
            ok = "<" if side == ">=" else ">"
            message = (f"every run with {hp} {side} {sig(edge)} {verb} ({_runs(len(bad))}); "
                       f"none of the {_runs(len(good))} with {hp} {ok}= {sig(other)} did")
            evidence.update({"threshold": edge, "side": side, "nearest_ok": other})
        else:
            values = {str(r.hparams[hp]) for r in bad}
            if len(values) != 1 or values & {str(r.hparams[hp]) for r in good}:
                continue
            value = values.pop()
            message = (f"every run with {hp} = {value} {verb} ({_runs(len(bad))}); none of "
                       f"the {_runs(len(good))} with another {hp} did")
            evidence.update({"value": value})
        out.append({"group": group, "hyperparameter": hp, "message": message,
                    "evidence": {"kind": "failure_boundary", **evidence}})
    return out


def _edge(group: str, runs: list[_Outcome], hp: str, outcome: str,
          higher: bool | None) -> dict[str, Any] | None:
    """The best feasible run at an end of the searched range of a numeric hyperparameter."""
    values = _numbers([r.hparams[hp] for r in runs])
    if values is None or len(set(values)) < MIN_VALUES:
        return None
    scored = [(r, r.score, x) for r, x in zip(runs, values, strict=True) if r.score is not None]
    if len(scored) < 2:
        return None
    best, best_score, v = max(scored, key=lambda rsx: (rsx[1], rsx[0].run_id))
    ties = [r for r, score, _ in scored if score == best_score]
    if len(ties) > 1:
        return None
    lo, hi = min(values), max(values)
    feasible = [x for _, _, x in scored]
    infeasible = [x for x, r in zip(values, runs, strict=True) if r.score is None]
    name, _ = describe_outcome(outcome)
    score_txt = sig(shown(best_score, higher))
    evidence = {"kind": "best_at_edge", "best_run": best.run_id, "best_value": v,
                "outcome": name, "outcome_value": shown(best_score, higher),
                "searched": sorted(set(values)), "infeasible": sorted(set(infeasible))}
    if v in (lo, hi):
        side = "upper" if v == hi else "lower"
        beyond = "above" if side == "upper" else "below"
        message = (f"the best of {_runs(len(scored))} ({best.run_id}, {name} {score_txt}) "
                   f"sits at the {side} edge of the searched {hp} range "
                   f"[{sig(lo)}, {sig(hi)}]: widen it {beyond} {sig(v)}")
        return {"group": group, "hyperparameter": hp, "message": message, "evidence": evidence}
    above = [x for x in infeasible if x > v]
    below = [x for x in infeasible if x < v]
    if len(infeasible) < MIN_PER_SIDE:  # one failed run is no limit
        return None
    if v == max(feasible) and above and all(x > v for x in infeasible):
        nxt = min(above)
        message = (f"the best of {_runs(len(scored))} ({best.run_id}, {name} {score_txt}) "
                   f"has the largest {hp} that did not fail ({sig(v)}; the "
                   f"{_runs(len(infeasible))} at {sig(nxt)} and above failed): the optimum "
                   f"is limited by instability, so add warmup or clipping, or search between "
                   f"{sig(v)} and {sig(nxt)}")
        return {"group": group, "hyperparameter": hp, "message": message, "evidence": evidence}
    if v == min(feasible) and below and all(x < v for x in infeasible):
        nxt = max(below)
        message = (f"the best of {_runs(len(scored))} ({best.run_id}, {name} {score_txt}) "
                   f"has the smallest {hp} that did not fail ({sig(v)}; the "
                   f"{_runs(len(infeasible))} at {sig(nxt)} and below failed): search "
                   f"between {sig(nxt)} and {sig(v)}")
        return {"group": group, "hyperparameter": hp, "message": message, "evidence": evidence}
    return None


def _trend(group: str, runs: list[_Outcome], hp: str, outcome: str,
           higher: bool | None) -> dict[str, Any] | None:
    """A strictly monotone outcome over >= 3 distinct values of one numeric hyperparameter."""
    scored = [r for r in runs if r.score is not None and finite_number(r.hparams[hp]) is not None]
    by_value: dict[float, list[float]] = defaultdict(list)
    for r in runs:
        x = finite_number(r.hparams[hp])
        if r.score is not None and x is not None:
            by_value[x].append(r.score)
    if len(by_value) < MIN_VALUES:
        return None
    xs = sorted(by_value)
    ys = [float(np.median(by_value[x])) for x in xs]
    from scipy.stats import kendalltau  # heavy import, only when a sweep is compared

    tau = kendalltau(xs, ys).statistic
    if not np.isfinite(tau) or abs(tau) < 1.0 - 1e-9:
        return None
    spread = max(ys) - min(ys)
    level = max(abs(y) for y in ys)
    if level == 0 or spread / level < MIN_EFFECT:
        return None
    name, _ = describe_outcome(outcome)
    better = "improves" if tau > 0 else "worsens"
    pairs = ", ".join(f"{sig(x)}: {sig(shown(y, higher))}" for x, y in zip(xs, ys, strict=True))
    message = f"{name} {better} monotonically as {hp} increases over {_runs(len(scored))} ({pairs})"
    best_end = "larger" if tau > 0 else "smaller"
    message += f"; try {best_end} values"
    return {"group": group, "hyperparameter": hp, "message": message,
            "evidence": {"kind": "monotone", "outcome": name, "tau": float(tau),
                         "values": xs, "outcomes": [shown(y, higher) for y in ys]}}


def _group_insights(group: str, results: list[RunResult]) -> list[dict[str, Any]]:
    series = [outcome_series(r) for r in results]
    outcome = common_outcome(series)
    higher = series[0][outcome].higher_is_better if outcome is not None else None
    runs: list[_Outcome] = []
    for r, s in zip(results, series, strict=True):
        states = _failed_states(r)
        infeasible = any(st in INFEASIBLE_STATES for st in states)
        value = None if infeasible or outcome is None else score(s[outcome], outcome)
        runs.append(_Outcome(r.run.run_id, dict(r.run.hparams), states, value))
    runs.sort(key=lambda r: r.run_id)
    varied = _varied(runs)
    out: list[dict[str, Any]] = []
    for hp in varied:
        others = [h for h in varied if h != hp]
        slices = _slices(runs, hp, others)
        compared = [r for part in slices for r in part]
        for insight in _boundaries(group, compared, hp):
            _held_equal(insight, others, len(slices))
            out.append(insight)
        if outcome is None:
            continue
        for part in slices:  # outcomes are compared only between runs of one slice
            edge = _edge(group, part, hp, outcome, higher)
            if edge is not None:
                out.append(_held_equal(edge, others, 1, part[0].hparams))
            trend = _trend(group, part, hp, outcome, higher)
            failed = sum(r.score is None for r in part)
            if trend is not None and failed:  # never "try larger" past runs that failed
                trend["message"] += f", short of the values that failed ({_runs(failed)})"
            if trend is not None:
                out.append(_held_equal(trend, others, 1, part[0].hparams))
    return out


def _slices(runs: list[_Outcome], hp: str, others: list[str]) -> list[list[_Outcome]]:
    """The runs split by the values of every other varied hyperparameter, keeping the
    slices where ``hp`` itself varies: within a slice, only ``hp`` differs."""
    parts: dict[tuple[str, ...], list[_Outcome]] = defaultdict(list)
    for r in runs:
        parts[tuple(str(r.hparams[h]) for h in others)].append(r)
    return [part for _, part in sorted(parts.items())
            if len({str(r.hparams[hp]) for r in part}) >= 2]


def _held_equal(insight: dict[str, Any], others: list[str], slices: int,
                values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Say what was held equal: the claim compares runs that differ only in its hp."""
    if not others:
        return insight
    if values is not None:
        held = ", ".join(f"{h}={sig(values[h])}" for h in others)
        insight["message"] += f" (among runs with {held})"
    else:
        plural = "s" if slices != 1 else ""
        insight["message"] += (f" (comparing runs with the same {', '.join(others)}, "
                               f"{slices} group{plural})")
    insight["evidence"]["held_equal"] = others
    return insight


def sweep_insights(results: list[RunResult]) -> list[dict[str, Any]]:
    """Insights per sweep group: ``{group, hyperparameter, message, evidence}`` dicts.

    A group is the runs under one parent folder (at least :data:`MIN_RUNS`) that differ in
    at least one recorded hyperparameter.  ``evidence["kind"]`` is ``failure_boundary``,
    ``best_at_edge`` or ``monotone``.
    """
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        groups[_group_of(r.run.run_id)].append(r)
    out: list[dict[str, Any]] = []
    for group in sorted(groups):
        members = groups[group]
        if len(members) < MIN_RUNS:
            continue
        out.extend(_group_insights(group, members))
    return out
