"""Did a candidate help?  Compare it with the control at matched steps, over seeds.

A candidate is *confirmed* only when all hold: the pathological state it targets is gone
in every candidate seed (every trial ran), its metric beats the control's by more than
the seed-to-seed spread (a control seed that diverged counts as worst, so a blown-up
control's 1e8 spread cannot hide a fix), and, where the chance level is known, it ends
well away from it (:data:`GOOD_LEVEL_SHARE`).  A better metric alone is not enough (the
detector can stop firing, or the metric improve, while the run is still broken), and
neither is a quiet detector alone.  *Refuted*: the metric is worse beyond the spread, or
the state persists in every candidate seed.  *Inconclusive* otherwise, with the reason.
A ``--try`` candidate has no target state and is judged on the metric alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnose.metrics import OBJECTIVE_ROLES, Role, Series
from diagnose.probe.trials import TrialOutcome

#: Effects smaller than this share of the control's level are noise whatever the spread.
MIN_RELATIVE_EFFECT = 0.02
#: An effect must exceed this many seed-to-seed standard deviations.
SPREAD_FACTOR = 2.0
#: The matched value is the mean over this final share of the compared window.
TAIL_FRACTION = 0.2
#: Where the untrained level is known (a classification loss at ln C, an accuracy at 1/C),
#: a confirmed candidate must end at most this share of the way from perfect to that
#: level: a run that merely left chance a little is not fixed.
GOOD_LEVEL_SHARE = 0.5


@dataclass(frozen=True)
class ArmScore:
    """One arm's per-seed values at the matched step (inf = diverged)."""

    values: list[float]
    states: list[list[str]]
    failed: int

    def blown_up(self, higher: bool) -> ArmScore:
        """Seeds our rules call diverged count as worst (a finite loss of 5e6 is as broken
        as NaN): their size must not widen the seed spread a candidate has to beat."""
        worst = -math.inf if higher else math.inf
        values = [worst if "divergence" in s else v for v, s in zip(self.values, self.states,
                                                                     strict=False)]
        return ArmScore(values, self.states, self.failed)


def primary_role(outcomes: list[TrialOutcome]) -> tuple[Role, bool] | None:
    """The role to compare arms on: the best-ranked objective any successful trial has
    (:meth:`RoleMap.objectives`, the order the report and sweep use), and whether higher
    is better on it."""
    found: dict[Role, bool] = {}
    for o in outcomes:
        if o.result is None:
            continue
        for role, series in o.result.resolved_roles().objectives():
            found.setdefault(role, role == Role.VAL_METRIC and bool(series.higher_is_better))
    for role in OBJECTIVE_ROLES:
        if role in found:
            return role, found[role]
    return None


def _series(outcome: TrialOutcome, role: Role) -> Series | None:

    if outcome.result is None:
        return None
    return outcome.result.resolved_roles().get(role)


def matched_step(outcomes: list[TrialOutcome], role: Role) -> int | None:
    """The last step every successful trial logged (so arms are compared fairly); None
    (each arm's last step) when some trial ended before another's first logged point (a
    bigger batch gives fewer steps): no step is comparable, and a value "at" a step before
    a trial's first point is no value at all, not a divergence."""
    lasts, firsts = [], []
    for o in outcomes:
        s = _series(o, role)
        if s is not None and len(s):
            lasts.append(int(s.steps[-1]))
            firsts.append(int(s.steps[0]))
    if not lasts or min(lasts) < max(firsts):
        return None
    return min(lasts)


def value_at(outcome: TrialOutcome, role: Role, step: int | None, higher: bool) -> float:
    """Mean of the tail window ending at ``step`` (None: the trial's own last step);
    non-finite anywhere up to it = worst."""
    s = _series(outcome, role)
    worst = -math.inf if higher else math.inf
    if s is None or not len(s):
        return worst
    if step is None:
        step = int(s.steps[-1])
    upto = s.steps <= step
    if not upto.any() or not np.isfinite(s.values[upto]).all():
        return worst
    window = upto & (s.steps > step * (1 - TAIL_FRACTION))
    if not window.any():
        window = upto & (s.steps == s.steps[upto][-1])
    return float(np.mean(s.values[window]))


def score_arm(outcomes: list[TrialOutcome], role: Role, step: int | None,
              higher: bool) -> ArmScore:
    ok = [o for o in outcomes if o.status == "ok"]
    return ArmScore(
        values=[value_at(o, role, step, higher) for o in ok],
        states=[list(o.result.states) if o.result else [] for o in ok],
        failed=len(outcomes) - len(ok),
    )


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if not len(arr):
        return math.nan, math.nan
    if not np.isfinite(arr).all():
        return float(np.mean(arr)), math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def good_level(value: float, untrained: float | None, higher: bool) -> bool:
    """Is ``value`` well away from the untrained level (see :data:`GOOD_LEVEL_SHARE`)?
    Unknown untrained level: True (nothing to check against)."""
    if untrained is None or not math.isfinite(untrained):
        return True
    if higher:  # an accuracy-like metric with chance ``untrained`` and perfect 1
        return value >= untrained + (1 - GOOD_LEVEL_SHARE) * (1 - untrained)
    return value <= GOOD_LEVEL_SHARE * untrained


def decide(
    control: ArmScore, candidate: ArmScore, target_state: str | None, higher: bool,
    untrained: float | None = None,
) -> dict[str, Any]:
    """Verdict, effect size and spread for one candidate against the control.

    A control seed whose run shows divergence counts as diverged whatever its finite value
    (the candidate's seeds are judged by the targeted state instead), and
    ``untrained`` (the metric's chance level, when known) adds the good-level check.
    """
    out: dict[str, Any] = {}
    control = control.blown_up(higher)
    if not candidate.values:
        out.update(verdict="inconclusive", reason="every candidate trial failed")
        return out
    if not control.values:
        out.update(verdict="inconclusive", reason="every control trial failed")
        return out
    c_mean, c_std = _mean_std(control.values)
    k_mean, k_std = _mean_std(candidate.values)
    sign = 1.0 if higher else -1.0
    n_c, n_k = len(control.states), len(candidate.states)
    in_control = sum(target_state in s for s in control.states) if target_state else 0
    in_cand = sum(target_state in s for s in candidate.states) if target_state else 0
    out.update(
        control_mean=c_mean,
        candidate_mean=k_mean,
        control_spread=c_std,
        candidate_spread=k_std,
    )
    if target_state:
        out.update(state_in_control=f"{in_control}/{n_c}", state_in_candidate=f"{in_cand}/{n_k}")
    c_bad, k_bad = not math.isfinite(c_mean), not math.isfinite(k_mean)
    if c_bad and k_bad:
        out.update(effect=math.nan, verdict="refuted",
                   reason="both control and candidate diverged")
        return out
    if k_bad:
        out.update(effect=-math.inf, verdict="refuted",
                   reason="the candidate diverged and the control did not")
        return out
    if c_bad:
        effect, gate, better, worse = math.inf, 0.0, True, False
        how = "the control diverged and the candidate did not"
    else:
        effect = sign * (k_mean - c_mean)
        spread = max(v for v in (c_std, k_std, 0.0) if not math.isnan(v))
        gate = max(SPREAD_FACTOR * spread, MIN_RELATIVE_EFFECT * abs(c_mean))
        better, worse = effect > gate, effect < -gate
        out.update(relative_effect=effect / abs(c_mean) if c_mean else math.nan,
                   spread=spread)
        how = (f"metric better by {effect:.3g}, beyond the seed-to-seed gate {gate:.3g}"
               if better else f"metric worse by {-effect:.3g}, beyond the gate {gate:.3g}"
               if worse else f"metric change {effect:+.3g} within the gate {gate:.3g}")
    out.update(effect=effect, gate=gate)
    failed = f"{candidate.failed} of {n_k + candidate.failed} candidate trials failed"
    if worse:
        out.update(verdict="refuted", reason=how)
    elif target_state and in_cand == n_k:
        out.update(verdict="refuted",
                   reason=f"{target_state} persists in every candidate seed ({how})")
    elif target_state and in_cand:
        out.update(verdict="inconclusive",
                   reason=f"{target_state} persists in {in_cand} of {n_k} candidate seeds "
                   f"({how})")
    elif candidate.failed:
        out.update(verdict="inconclusive", reason=f"{failed} ({how})")
    elif not better:
        gone = f"{target_state} gone in every candidate seed but " if target_state else ""
        out.update(verdict="inconclusive", reason=f"{gone}{how}")
    elif not good_level(k_mean, untrained, higher):
        out.update(verdict="inconclusive",
                   reason=f"{how}, but {k_mean:.3g} is still near the untrained level "
                   f"{untrained:.3g}")
    elif target_state:
        shown = ("" if in_control else
                 f"; the control did not show {target_state} within the budget either")
        out.update(verdict="confirmed",
                   reason=f"{target_state} gone in every candidate seed and {how}{shown}")
    else:
        out.update(verdict="confirmed", reason=how)
    return out
