"""Overfitting: validation gets worse (or stops following) while training keeps improving.

Three views of the same failure, each robust to noisy validation sets:

* OVF001 ``val_loss_rising``: val loss leaves its smoothed minimum for good (rise beyond
  its noise floor, sustained over the second half of the post-minimum segment, over a
  meaningful share of the run) while train loss keeps falling; a short run (a handful
  of evaluations) only on strong evidence: consecutive rises from the minimum to the
  end, large against the noise, train falling and the gap growing.  YOLO-style runs log
  component losses (box/obj/cls); when the total does not rise, a component whose train
  twin keeps falling can still show it (val obj_loss is the classic).  A noisy val that
  steps up from its minimum to a higher level without a trend is judged on the many
  post-minimum points together (median against the level around the minimum, in
  standard errors), with stricter train, gap and size conditions.
* OVF002 ``val_metric_degrading``: the same test on the val metric in its own direction.
* OVF003 ``generalization_gap``: over the second half of the run train loss keeps
  falling in relative terms while val loss does not follow, and the gap is large
  relative to the val loss itself (memorisation without a visible val rise yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.detectors import RuleContext
from diagnose.detectors import params as P
from diagnose.detectors.progress import (
    Curve,
    curve,
    early_eval_ratio,
    early_level,
    end_level,
    fmt,
    get_curve,
    level_at,
    noise,
    pct,
    rel,
    smoothed,
)
from diagnose.detectors.rule import (
    ECHO,
    Found,
    Rule,
    RuleEvidence,
    RuleParams,
    internal,
    optional,
    param,
    rule,
)
from diagnose.hparams import finite_number
from diagnose.metrics import Role

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.findings import Finding


@dataclass(frozen=True)
class RisingParams(RuleParams):
    """Thresholds of a val curve leaving its best for good (OVF002; OVF001 adds one)."""

    min_points: int = param(P.COUNT)
    smooth_window_frac: float = param(P.FRACTION)
    min_tail_frac: float = param(P.FRACTION)
    min_points_after: int = param(P.COUNT)
    end_frac: float = param(P.SHARE)
    min_effect: float = param(P.NON_NEGATIVE)
    min_rise: float = param(P.NON_NEGATIVE)
    min_sustained: float = param(P.FRACTION)
    min_tau: float = param(P.TAU)
    jump_effect: float = param(P.NON_NEGATIVE)
    min_train_effect: float = param(P.NON_NEGATIVE)
    min_train_rel_drop: float = param(P.NON_NEGATIVE)
    max_early_ratio: float = param(P.AT_LEAST_ONE)
    stuck_share: float = param(P.SHARE)
    stuck_never_frac: float = param(P.SHARE)
    stuck_acc_gap: float = param(P.FRACTION)
    min_loss_rise: float = param(P.NON_NEGATIVE)
    recover_noise: float = param(P.NON_NEGATIVE)
    max_train_fit: float = param(P.SHARE)


@dataclass(frozen=True, kw_only=True)
class ValLossRisingParams(RuleParams):
    """OVF001's thresholds: :class:`RisingParams` plus ``check_components`` (TOML order)."""

    min_points: int = param(P.COUNT)
    smooth_window_frac: float = param(P.FRACTION)
    min_tail_frac: float = param(P.FRACTION)
    min_points_after: int = param(P.COUNT)
    end_frac: float = param(P.SHARE)
    min_effect: float = param(P.NON_NEGATIVE)
    min_rise: float = param(P.NON_NEGATIVE)
    min_sustained: float = param(P.FRACTION)
    min_tau: float = param(P.TAU)
    jump_effect: float = param(P.NON_NEGATIVE)
    min_train_effect: float = param(P.NON_NEGATIVE)
    min_train_rel_drop: float = param(P.NON_NEGATIVE)
    check_components: bool | None = param(P.OPTIONAL_FLAG)
    max_early_ratio: float = param(P.AT_LEAST_ONE)
    stuck_share: float = param(P.SHARE)
    stuck_never_frac: float = param(P.SHARE)
    stuck_acc_gap: float = param(P.FRACTION)
    min_gap_ratio: float = param(P.FRACTION)
    train_floor_ratio: float = param(P.FRACTION)
    short_max_points: int = param(P.COUNT)
    short_min_rises: int = param(P.COUNT)
    short_min_rise: float = param(P.NON_NEGATIVE)
    short_min_effect: float = param(P.NON_NEGATIVE)
    level_best_points: int = param(P.COUNT)
    level_min_points_after: int = param(P.COUNT)
    level_min_tail_frac: float = param(P.FRACTION)
    level_min_rise: float = param(P.NON_NEGATIVE)
    level_min_effect: float = param(P.NON_NEGATIVE)
    level_min_gap_ratio: float = param(P.FRACTION)
    level_min_rise_of_start: float = param(P.NON_NEGATIVE)
    level_min_train_drop: float = param(P.FRACTION)
    recover_noise: float = param(P.NON_NEGATIVE)
    max_train_fit: float = param(P.SHARE)
    min_rise_of_start: float = param(P.NON_NEGATIVE)


@dataclass(frozen=True)
class RisingEvidence(RuleEvidence):
    """A val curve that left its best while the train curve kept improving."""

    name: str = internal("")
    rise: float = internal(0.0)
    train_change: float = internal(0.0)
    best_step: int = 0
    val_best: float = 0.0
    val_best_smoothed: float = 0.0
    val_end: float = 0.0
    val_worsening_pct: float = 0.0
    rise_noise_sigmas: float = 0.0
    sustained_share: float = 0.0
    kendall_tau_after_best: float = 0.0
    val_noise: float = 0.0
    train_metric: str = ""
    train_at_best: float = 0.0
    train_end: float = 0.0
    train_change_pct: float = 0.0
    val_metric: str = ""
    #: the val curve as the advice names it, and its number of evaluations (patience)
    advice_name: str = internal("")
    evaluations: int = internal(0)
    component: bool | None = optional()
    higher_is_better: bool | None = optional()
    #: OVF002: the val loss's rise over the same window (when a val loss is logged)
    val_loss_rise_pct: float | None = optional()
    thresholds: RuleParams | None = field(default=None, metadata=ECHO)


def _train_change(train: Curve, best_step: float, p: Any) -> dict[str, Any] | None:
    """How the train curve moved from ``best_step`` to the end; None if it does not cover
    that window.  ``falling`` says it kept improving beyond its own noise."""
    if len(train) < 3 or train.steps[-1] <= best_step or train.steps[0] > best_step + 0.5 * (
        train.steps[-1] - best_step
    ):
        return None
    at_best = level_at(train, best_step)
    end = end_level(train)
    drop = at_best - end
    # both levels are medians of several points: the noise of their difference is the
    # point-to-point noise over sqrt(points), as for the val rise (a near-zero per-step
    # train loss with spikes falls by less than one spike, yet clearly falls)
    nz = noise(train) * np.sqrt(1.0 / _window_points(train, best_step, 0.05)
                                + 1.0 / _window_points(train, float(train.steps[-1]), 0.1,
                                                       at_end=True))
    # relative size of the improvement: for a bounded higher-is-better metric (accuracy)
    # relative to the error left (0.97 -> 0.99 removes 2/3 of it), else to the level
    bounded = train.sign < 0 and bool(np.all((train.values >= -1.0) & (train.values <= 0.0)))
    scale = (1.0 + at_best) if bounded else abs(at_best)
    rel_drop = drop / scale if scale > 1e-12 else float("inf")
    return {
        "tag": train.tag,
        "first": train.raw(float(train.values[0])),
        "at_best": train.raw(at_best),
        "end": train.raw(end),
        "change": rel(end - at_best, at_best),
        "falling": bool(
            drop > 0
            and drop >= float(p["min_train_effect"]) * nz
            and rel_drop >= float(p["min_train_rel_drop"])
        ),
    }


def _window_points(c: Curve, step: float, frac: float, at_end: bool = False) -> int:
    """Points a level around ``step`` (``level_at``) or ending at it (``end_level``) is the
    median of: at least 3, at most 16 (steps closer than that are not independent)."""
    lo = step - frac * c.span
    hi = step if at_end else step + frac * c.span
    n = int(((c.steps >= lo) & (c.steps <= hi)).sum())
    return min(max(n, 3), 16)


def degradation(ctx: RuleContext | None, val: Curve, p: Any) -> dict[str, Any] | None:
    """Where the oriented val curve leaves its best for good; None if it does not.

    The best is the smoothed minimum; the rise is the median of the last ``end_frac`` of
    steps minus that minimum; it must be ``min_effect`` noise sigmas and ``min_rise`` of
    the best level, cover at least ``min_tail_frac`` of the run with ``min_points_after``
    points, and hold: ``min_sustained`` of the smoothed points in the second half of the
    post-minimum segment sit above the midpoint of the rise (a late jump is not a trend),
    or the smoothed curve never falls after the minimum and rises at most of its steps,
    and the post-minimum segment trends up (Kendall tau >= ``min_tau``) unless the rise is
    a jump of at least ``jump_effect`` noise units (a sudden sustained jump is no noisy
    level either, even if the curve creeps down after it).  A last evaluation back
    within ``recover_noise`` of one point's noise above the best came back: a transient.
    """
    if len(val) < int(p["min_points"]) or val.span <= 0:
        return None
    s, sm = smoothed(ctx, val)
    i = int(np.argmin(sm))
    best_step = float(s[i])
    vmin = float(sm[i])
    # report the raw best point nearest the smoothed minimum (the checkpoint to keep)
    near = np.abs(val.steps - best_step) <= float(p["smooth_window_frac"]) * val.span
    raw_idx = np.flatnonzero(near)
    if len(raw_idx):
        j = raw_idx[int(np.argmin(val.values[raw_idx]))]
        best_step, best_raw = float(val.steps[j]), float(val.values[j])
    else:
        best_raw = vmin
    last = float(val.steps[-1])
    after = val.steps > best_step
    if (last - best_step) < float(p["min_tail_frac"]) * val.span:
        return None
    if after.sum() < int(p["min_points_after"]):
        return None
    nz = noise(val)
    end = end_level(val, float(p["end_frac"]))
    rise = end - vmin
    # the end level is a median of several points: its noise is smaller than one point's
    n_end = int((val.steps >= last - float(p["end_frac"]) * val.span).sum())
    effect = rise / (nz / np.sqrt(min(max(n_end, 3), 16)))
    rise_rel = rel(rise, vmin)
    mid = best_step + 0.5 * (last - best_step)
    late = sm[s >= mid]
    sustained = float(np.mean(late > vmin + 0.5 * rise)) if len(late) and rise > 0 else 0.0
    # a smoothed curve that never falls after its minimum and rises at most of its steps
    # climbs all the way: a trend however late it speeds up (an accelerating rise sits
    # under the midpoint for most of the second half), not the late jump after a flat
    # stretch that the sustained share rules out
    steps_up = np.diff(sm[s >= best_step])
    climbs = bool(len(steps_up) and np.all(steps_up >= 0)
                  and np.mean(steps_up > 0) > 0.5)
    if not (
        effect >= float(p["min_effect"])
        and np.isfinite(rise_rel)
        and rise_rel >= float(p["min_rise"])
        and (sustained >= float(p["min_sustained"]) or climbs)
    ):
        return None
    # the last evaluation back within recover_noise of one point's noise above the best:
    # val came back, it did not leave its best for good (DESIGN.md: a transient spike
    # that recovers is healthy)
    recover = p.get("recover_noise")
    if recover is not None and float(val.values[-1]) <= vmin + float(recover) * nz:
        return None
    # a trend, not a noisy level: the best of a long noisy curve is a lucky excursion
    # below its level, and everything after it looks "worse" without trending
    post = val.steps >= best_step
    tau = float(signals.robust_trend(val.steps[post], val.values[post]).tau)
    if not (tau >= float(p["min_tau"]) or effect >= float(p["jump_effect"])):
        return None
    return {
        "best_step": int(best_step),
        "best": val.raw(best_raw),
        "best_smoothed": val.raw(vmin),
        "end": val.raw(end),
        "rise": rise_rel,
        "effect": effect,
        "sustained": sustained,
        "tau": tau,
        "noise": nz,
    }


def short_rise(val: Curve, p: Any) -> dict[str, Any] | None:
    """Where a short val curve (at most ``short_max_points`` evaluations) leaves its best
    for good; None if it does not.

    With a handful of evaluations the smoothed test of :func:`degradation` has nothing to
    smooth, and the point-to-point noise of a V-shaped curve is mostly its two slopes.
    Strong evidence instead: every one of the last ``short_min_rises`` (or more)
    evaluations is higher than the one before, from the raw minimum to the last point;
    the rise is ``short_min_rise`` of the minimum (DESIGN.md: 5-10% at the very end of a
    converged run is healthy) and ``short_min_effect`` of the curve's noise around its own
    slopes (first differences before and after the minimum, each about its own median:
    a jagged rise is noise, a steady one is a trend).
    """
    n = len(val)
    if n < int(p["min_points"]) or n > int(p["short_max_points"]):
        return None
    v = val.values
    i = int(np.argmin(v))
    ups = np.diff(v[i:])
    if len(ups) < int(p["short_min_rises"]) or not bool(np.all(ups > 0)):
        return None
    vmin, end = float(v[i]), float(v[-1])
    rise_rel = rel(end - vmin, vmin)
    segs = [d - np.median(d) for d in (np.diff(v[: i + 1]), ups) if len(d) >= 2]
    around = signals.mad_sigma(np.concatenate(segs)) / np.sqrt(2.0) if segs else 0.0
    nz = max(float(around), 1e-3 * signals.robust_scale(v),
             1e-12 * max(float(np.max(np.abs(v))), 1.0))
    effect = (end - vmin) / nz
    if not (np.isfinite(rise_rel) and rise_rel >= float(p["short_min_rise"])
            and effect >= float(p["short_min_effect"])):
        return None
    return {
        "best_step": int(val.steps[i]),
        "best": val.raw(vmin),
        "best_smoothed": val.raw(vmin),
        "end": val.raw(end),
        "rise": rise_rel,
        "effect": effect,
        "sustained": 1.0,
        "tau": 1.0,
        "noise": nz,
        "short": True,
    }


def level_shift(val: Curve, p: Any) -> dict[str, Any] | None:
    """Where a noisy val curve steps up from its minimum to a higher level and stays
    there; None if it does not.

    The smoothed test of :func:`degradation` weighs the rise against one point's noise and
    asks for a trend; a val loss that reaches its minimum early and then sits at a noisy
    higher level has no trend, but many points of evidence together.  The level around
    the minimum is the median of the ``level_best_points`` raw points centred on it (the
    single minimum is biased low: it was picked for being low); the post-minimum level is
    the median of every later point (at least ``level_min_points_after``, covering
    ``level_min_tail_frac`` of the run).  The step up must be ``level_min_rise`` of the
    best level and ``level_min_effect`` standard errors of the difference of the two
    levels (the noise times sqrt(1/n_best + 1/n_after), each n at most 16:
    neighbouring evaluations are not independent), and the later half of the
    post-minimum points must still sit above the midpoint of the step (it stays up).
    Coverage and rise are the stricter of ``level_min_tail_frac`` / ``level_min_rise`` and
    the trend test's ``min_tail_frac`` / ``min_rise``: a level is weaker evidence than a
    trend, so it never passes a bar the trend test would not.
    """
    v, steps = val.values, val.steps
    n, k = len(v), int(p["level_best_points"])
    if n < k + int(p["level_min_points_after"]) or val.span <= 0:
        return None
    i = int(np.argmin(v))
    lo = max(0, min(i - k // 2, n - k))
    after = v[lo + k:]
    if len(after) < int(p["level_min_points_after"]):
        return None
    tail_frac = max(float(p["level_min_tail_frac"]), float(p["min_tail_frac"]))
    if (steps[-1] - steps[lo + k]) < tail_frac * val.span:
        return None
    best = float(np.median(v[lo:lo + k]))
    post = float(np.median(after))
    rise = post - best
    # the point-to-point noise, or the spread of the later points about their own level
    # where larger: one estimate can come out low by chance, and a low noise is a false
    # step
    nz = max(noise(val), float(signals.mad_sigma(after - post)))
    se = nz * np.sqrt(1.0 / min(k, 16) + 1.0 / min(len(after), 16))
    effect = rise / se
    rise_rel = rel(rise, best)
    late = float(np.median(after[len(after) // 2:]))
    min_rise = max(float(p["level_min_rise"]), float(p["min_rise"]))
    if not (np.isfinite(rise_rel) and rise_rel >= min_rise
            and effect >= float(p["level_min_effect"]) and late >= best + 0.5 * rise):
        return None
    tail = steps >= steps[i]
    tau = float(signals.robust_trend(steps[tail], v[tail]).tau)
    return {
        "best_step": int(steps[i]),
        "best": val.raw(float(v[i])),
        "best_smoothed": val.raw(best),
        "end": val.raw(post),
        "rise": rise_rel,
        "effect": effect,
        "sustained": float(np.mean(after > best + 0.5 * rise)),
        "tau": tau,
        "noise": nz,
        "level": True,
    }


def _val_loss_rise(ctx: RuleContext, best_step: float, end_frac: float) -> float | None:
    """How far the val loss rose from its level at ``best_step`` to its end level,
    relative to the former; None when the run logs no usable val and train loss.

    DESIGN.md's overfit is a val loss turning upward with a large, growing gap; a val
    metric that degrades while the val loss stays flat or keeps falling (label noise
    memorised in train only, a tiny val set losing two samples) is not that."""
    val = get_curve(ctx, Role.VAL_LOSS)
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if val is None or train is None or len(val) < 3 or len(train) < 3:
        return None
    if float(np.min(val.values)) <= 0:
        return None
    at_best = level_at(val, best_step)
    return rel(end_level(val, end_frac) - at_best, at_best)


def _start_level(ctx: RuleContext, val: Curve, train_first: float) -> float:
    """The run's starting loss: the larger of the first val and first train loss, and ln C
    when the class count is known (the untrained model's loss).  A val rise is measured
    against it: a fine-tune starting near 0 rising by a few thousandths of a nat, or a
    converged run wiggling near 0, is noise, not memorisation."""
    finite_val = val.values[np.isfinite(val.values)]
    start = max(float(finite_val[0]) if len(finite_val) else 0.0, train_first)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if n_classes is not None and n_classes >= 2:
        start = max(start, float(np.log(n_classes)))
    return start


def _eval_broken(ctx: RuleContext, p: Any) -> bool:
    """Val loss many times the train loss from the first evaluations on, or val accuracy
    stuck at one value while the val loss never improves: evaluation is broken (BN001),
    so the val curve says nothing about generalisation."""
    from diagnose.detectors.batchnorm import eval_outputs_learned, eval_stuck

    # BN001's own boundary: a val that learned is judged here, however far a memorised
    # train loss fell below it
    if eval_outputs_learned(ctx, float(ctx.thresholds_of("BN001")["acc_learned"])):
        return False
    ratio = early_eval_ratio(ctx)
    if ratio is not None and ratio >= float(p["max_early_ratio"]):
        return True
    return eval_stuck(ctx, int(p["min_points"]), float(p["stuck_share"]),
                      float(p["stuck_never_frac"]), float(p["stuck_acc_gap"]))


def train_fit(ctx: RuleContext, max_train_fit: float) -> bool:
    """The model fit its train set (DESIGN.md: overfit is memorisation, train loss keeps
    falling while val turns upward): the train loss, when logged, ends at most
    ``max_train_fit`` of its early level (the larger of its first value and start
    level).  A val that turns upward beside a train loss still near where it started (a
    stuck train, eval-mode statistics drifting) is no train fit pulling away from val."""
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if train is None or len(train) < 2:
        return True
    early = train.raw(early_level(train))
    return not early > 0 or train.raw(end_level(train)) <= max_train_fit * early


def _train_curves(ctx: RuleContext, *roles: Role) -> list[Curve]:
    out = []
    for role in roles:
        c = get_curve(ctx, role)
        if c is not None:
            out.append(c)
    return out


def _evidence(val: Curve, deg: dict[str, Any], tr: dict[str, Any], p: RuleParams,
              **extra: Any) -> RisingEvidence:
    from diagnose.advice.moves import advice_name

    return RisingEvidence(
        name=val.series.metric.replace("_", " "),
        rise=deg["rise"],
        train_change=tr["change"],
        best_step=deg["best_step"],
        val_best=deg["best"],
        val_best_smoothed=deg["best_smoothed"],
        val_end=deg["end"],
        val_worsening_pct=100.0 * deg["rise"],
        rise_noise_sigmas=deg["effect"],
        sustained_share=deg["sustained"],
        kendall_tau_after_best=deg["tau"],
        val_noise=deg["noise"],
        train_metric=tr["tag"],
        train_at_best=tr["at_best"],
        train_end=tr["end"],
        train_change_pct=100.0 * tr["change"],
        val_metric=val.tag,
        advice_name=advice_name(val.series),
        evaluations=len(val),
        thresholds=p,
        **extra,
    )


def _check_pair(ctx: RuleContext | None, val: Curve, trains: list[Curve], p: Any
                ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    deg = degradation(ctx, val, p)
    if deg is None and p.get("short_max_points") is not None:
        deg = short_rise(val, p)
    if deg is None and p.get("level_min_effect") is not None:
        deg = level_shift(val, p)
    if deg is None:
        return None
    for t in trains:
        tr = _train_change(t, deg["best_step"], p)
        if tr is not None and tr["falling"]:
            return deg, tr
        # or it has bottomed out: memorised, a small fraction of the val loss and not
        # rising on val's scale (a train loss at 1e-5 cannot keep falling by its noise,
        # and its drift from 1e-5 to 2e-5 is no turn beside a val whose best is 0.006;
        # OVF001 only)
        floor = p.get("train_floor_ratio")
        if (floor is not None and tr is not None
                and tr["end"] - tr["at_best"] <= float(floor) * float(deg["best"])
                and tr["end"] <= float(floor) * float(deg["end"])):
            return deg, tr
    return None


def _rising_advise(ctx: AdviceContext, finding: Finding,
                   fallback: Callable[[AdviceContext, Finding], list[Candidate]],
                   ) -> list[Candidate]:
    """OVF001/OVF002: the overfit advice from the rise's typed evidence."""
    from diagnose.recommend import overfit_advice

    ev = finding.detail
    if not isinstance(ev, RisingEvidence):
        return fallback(ctx, finding)
    return overfit_advice(ctx, ev.advice_name, float(ev.best_step),
                          finite_number(ev.val_best), finite_number(ev.val_end),
                          finite_number(ev.val_worsening_pct), ev.evaluations)


@rule
class OVF001(Rule[ValLossRisingParams, RisingEvidence]):
    """Val loss rises from its minimum while train loss keeps falling."""

    id = "OVF001"
    detector = "val_loss_rising"
    Params = ValLossRisingParams
    Evidence = RisingEvidence

    def detect(self, ctx: RuleContext,
               p: ValLossRisingParams) -> list[Found[RisingEvidence]] | None:
        val = get_curve(ctx, Role.VAL_LOSS)
        trains = _train_curves(ctx, Role.TRAIN_LOSS)
        if val is None or not trains:
            return None
        if _eval_broken(ctx, p):
            return []
        found = _check_pair(ctx, val, trains, p)
        component = False
        if found is None and p.get("check_components", True):
            # component losses (YOLO box/obj/cls): pair each val component with its train
            # twin
            train_by_metric = {s.metric: s for s in ctx.roles.losses("train")}
            best: tuple[dict[str, Any], dict[str, Any]] | None = None
            for s in ctx.roles.losses("val"):
                twin = train_by_metric.get(s.metric)
                if s.tag == val.tag or twin is None:
                    continue
                vc, tc = curve(s, False), curve(twin, False)
                if vc is None or tc is None:
                    continue
                got = _check_pair(None, vc, [tc], p)
                if got and (best is None or got[0]["effect"] > best[0]["effect"]):
                    best = got
                    val = vc
            found, component = best, best is not None
        if found is None:
            return []
        deg, tr = found
        if not train_fit(ctx, float(p["max_train_fit"])):
            return []
        # DESIGN.md: overfit ends with a large gap; a val loss that rises to meet a train
        # loss above it (heavy dropout, label noise in both) has no gap to speak of
        v_end = float(deg["end"])
        if v_end <= 0 or (v_end - float(tr["end"])) / v_end < float(p["min_gap_ratio"]):
            return []
        # few evaluations: the gap must also have grown since the minimum (val and train
        # moving apart, not both drifting up)
        if deg.get("short") and (v_end - float(tr["end"])
                                 <= float(deg["best"]) - float(tr["at_best"])):
            return []
        # DESIGN.md: a val loss wiggling by a few percent at a converged level is not
        # overfit; "a few percent" of the loss's own scale, the run's starting loss (a
        # val loss near 0 rising 30% of itself has moved by thousandths of a nat)
        start = _start_level(ctx, val, float(tr["first"]))
        if not component and (start <= 0 or (v_end - float(deg["best_smoothed"])) / start
                              < float(p["min_rise_of_start"])):
            return []
        # a step up to a noisy level is weaker evidence than a trend: the gap must be large
        # (level_min_gap_ratio) and have grown since the minimum, train must have kept
        # memorising (level_min_train_drop) and the step must be a real share of the
        # run's starting loss (level_min_rise_of_start), not a wiggle near a converged 0
        if deg.get("level"):
            start = _start_level(ctx, val, float(tr["first"]))
            step_up = v_end - float(deg["best_smoothed"])
            if (
                (v_end - float(tr["end"])) / v_end < float(p["level_min_gap_ratio"])
                or v_end - float(tr["end"]) <= float(deg["best_smoothed"]) - float(tr["at_best"])
                or -float(tr["change"]) < float(p["level_min_train_drop"])
                or start <= 0 or step_up / start < float(p["level_min_rise_of_start"])
            ):
                return []
        return [Found(val.tag, deg["best_step"], _evidence(val, deg, tr, p,
                                                          component=component))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        return _rising_advise(ctx, finding, super().advise)

    def message(self, ev: RisingEvidence) -> str:
        train = f"train {ev.name if ev.component else 'loss'}"
        if ev.train_change > 0:  # bottomed out (train_floor_ratio), drifting by a trifle
            return (f"val {ev.name} rose {pct(ev.rise)} from its minimum at step "
                    f"{ev.best_step} to {fmt(ev.val_end)} while {train} sat memorised "
                    f"near 0 ({fmt(ev.train_at_best)} -> {fmt(ev.train_end)})")
        return (f"val {ev.name} rose {pct(ev.rise)} from its minimum at step {ev.best_step} "
                f"while {train} fell {pct(ev.train_change)}")


@rule
class OVF002(Rule[RisingParams, RisingEvidence]):
    """The val metric degrades from its best while training keeps improving."""

    id = "OVF002"
    detector = "val_metric_degrading"
    Params = RisingParams
    Evidence = RisingEvidence

    def detect(self, ctx: RuleContext, p: RisingParams) -> list[Found[RisingEvidence]] | None:
        val = get_curve(ctx, Role.VAL_METRIC)
        trains = _train_curves(ctx, Role.TRAIN_METRIC, Role.TRAIN_LOSS)
        if val is None or not trains:
            return None
        if _eval_broken(ctx, p):
            return []
        found = _check_pair(ctx, val, trains, p)
        if found is None:
            return []
        deg, tr = found
        if not train_fit(ctx, float(p.max_train_fit)):
            return []
        loss_rise = _val_loss_rise(ctx, float(deg["best_step"]), float(p.end_frac))
        if loss_rise is not None and loss_rise < float(p.min_loss_rise):
            return []  # the val loss did not turn upward: a degrading metric alone
        return [Found(val.tag, deg["best_step"], _evidence(
            val, deg, tr, p, higher_is_better=bool(val.sign < 0),
            val_loss_rise_pct=None if loss_rise is None else 100.0 * loss_rise))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        return _rising_advise(ctx, finding, super().advise)

    def message(self, ev: RisingEvidence) -> str:
        word = "fell" if ev.higher_is_better else "rose"
        return (f"val {ev.name} {word} {pct(ev.rise)} from its best {fmt(ev.val_best)} at "
                f"step {ev.best_step} to {fmt(ev.val_end)} while train {ev.train_metric} "
                f"improved from {fmt(ev.train_at_best)} to {fmt(ev.train_end)}")


@dataclass(frozen=True)
class GapParams(RuleParams):
    min_points: int = param(P.COUNT)
    tail_frac: float = param(P.SHARE)
    min_tail_points: int = param(P.COUNT)
    min_train_fall: float = param(P.NON_NEGATIVE)
    max_val_fall: float = param(P.NON_NEGATIVE)
    min_ratio_growth: float = param(P.NON_NEGATIVE)
    min_gap_ratio: float = param(P.NON_NEGATIVE)
    max_early_ratio: float = param(P.AT_LEAST_ONE)
    stuck_share: float = param(P.SHARE)
    stuck_never_frac: float = param(P.SHARE)
    stuck_acc_gap: float = param(P.FRACTION)
    min_gap_of_progress: float = param(P.NON_NEGATIVE)
    min_val_rise: float = param(P.NON_NEGATIVE)
    min_rise_of_start: float = param(P.NON_NEGATIVE)
    min_rise_noise: float = param(P.NON_NEGATIVE)
    metric_rise_noise: float = param(P.NON_NEGATIVE)
    metric_min_tau: float = param(P.TAU)
    metric_min_effect: float = param(P.NON_NEGATIVE)


@dataclass(frozen=True)
class GapEvidence(RuleEvidence):
    train_fall: float = internal(0.0)
    val_fall: float = internal(0.0)
    gap_ratio: float = internal(0.0)
    tail_frac: float = internal(0.0)
    window_start_step: int = 0
    last_step: int = 0
    train_start: float = 0.0
    train_end: float = 0.0
    val_start: float = 0.0
    val_end: float = 0.0
    train_fall_pct: float = 0.0
    val_fall_pct: float = 0.0
    gap_end: float = 0.0
    gap_over_val: float = 0.0
    gap_over_val_progress: float = 0.0
    log_ratio_growth: float = 0.0
    val_rise_pct: float = 0.0
    val_rise_noise_sigmas: float = 0.0
    val_min: float = 0.0
    val_min_step: int = 0
    train_metric: str = ""
    advice_name: str = internal("")
    evaluations: int = internal(0)
    thresholds: RuleParams | None = field(default=None, metadata=ECHO)


def _metric_still_improving(ctx: RuleContext, start_step: float, p: GapParams) -> bool:
    """The val metric (WER, accuracy: what the run is judged on) still trends better over
    the window where the val loss stalled, by ``metric_min_tau`` (Kendall) and
    ``metric_min_effect`` noise sigmas, and its last evaluation is its best: generalisation
    still improves, so a val loss that wiggles up at a low level, by less than
    ``metric_rise_noise`` of its noise, is not overfit (a val loss that climbs clearly
    while accuracy still creeps up is the usual overconfident overfit)."""
    m = get_curve(ctx, Role.VAL_METRIC)
    if m is None:
        return False
    keep = m.steps >= start_step
    if keep.sum() < p.min_tail_points or m.values[-1] > float(np.min(m.values)):
        return False
    tr = signals.robust_trend(m.steps[keep], m.values[keep])
    return tr.falling(float(p.metric_min_effect), float(p.metric_min_tau))


class _GapRule(Rule[GapParams, GapEvidence]):
    """Train loss keeps falling, val loss does not follow, and the gap is large.

    Train is smoothed and interpolated at the val steps (the two are often logged at
    different steps).  Over the last ``tail_frac`` of the val steps, the train loss's
    relative fall must be at least ``min_train_fall``, the val loss's at most
    ``max_val_fall`` (OVF003: val has stalled; OVF004 lifts this for a huge gap while val
    still creeps down), the val/train ratio must grow by ``min_ratio_growth`` (in log
    units), and the gap at the end must be at least ``min_gap_ratio`` of the val loss and
    ``min_gap_of_progress`` of what the val loss improved over the run; the smoothed val
    loss must end ``min_val_rise`` above its minimum, by at least ``min_rise_of_start`` of
    the larger first loss (or ln C), and by ``min_rise_noise`` of the val loss's
    point-to-point noise (OVF003: a gap alone, or a wiggle, is not overfit; OVF004, a
    preview, sets 0).
    Losses must be positive (ratios need a zero).
    """

    detector = "generalization_gap"
    Params = GapParams
    Evidence = GapEvidence

    def detect(self, ctx: RuleContext, p: GapParams) -> list[Found[GapEvidence]] | None:
        val = get_curve(ctx, Role.VAL_LOSS)
        train = get_curve(ctx, Role.TRAIN_LOSS)
        if val is None or train is None:
            return None
        if len(val) < p.min_points or len(train) < 3:
            return None
        if float(np.min(val.values)) <= 0 or float(np.min(train.values)) <= 0:
            return None
        if _eval_broken(ctx, p):
            return []
        ts, tsm = smoothed(ctx, train)
        vs_, vsm = smoothed(ctx, val)
        # matched steps: val steps inside the train range (no extrapolation)
        ok = (val.steps >= ts[0]) & (val.steps <= ts[-1])
        if ok.sum() < p.min_points:
            return []
        steps = val.steps[ok]
        v = np.interp(steps, vs_, vsm)
        t = np.interp(steps, ts, tsm)
        t0 = steps[-1] - float(p.tail_frac) * (steps[-1] - steps[0])
        tail = steps >= t0
        if tail.sum() < p.min_tail_points:
            return []
        k = max(1, round(0.2 * int(tail.sum())))
        ti = np.flatnonzero(tail)
        v_start, v_end = float(np.median(v[ti[:k]])), float(np.median(v[ti[-k:]]))
        t_start, t_end = float(np.median(t[ti[:k]])), float(np.median(t[ti[-k:]]))
        levels = np.array([v_start, v_end, t_start, t_end])
        # subnormal or huge losses: smoothing/interpolation can underflow a positive level
        # to 0 (or overflow to inf), and a ratio of them means nothing
        if not (np.all(np.isfinite(levels)) and np.all(levels >= np.finfo(float).tiny)):
            return []
        train_fall = 1.0 - t_end / t_start
        val_fall = 1.0 - v_end / v_start
        gap_end = v_end - t_end
        gap_ratio = gap_end / v_end
        # growth of the val/train ratio: scale-free, and it keeps growing when train heads
        # to 0 (in logs, so 1e300 / 1e-300 does not overflow)
        growth = float(np.log(v_end) - np.log(t_end) - np.log(v_start) + np.log(t_start))
        if not all(np.isfinite([train_fall, val_fall, gap_ratio, growth])):
            return []
        # overfit, not a gap alone: the (smoothed) val loss has turned upward from its
        # minimum by min_val_rise; a val flat or wiggling by a few percent at a converged
        # level while train heads to 0 is a healthy gap (DESIGN.md)
        v_low = float(np.min(v))
        val_rise = v_end / v_low - 1.0 if v_low > 0 else 0.0
        finite_val = val.values[np.isfinite(val.values)]
        # ... and by a meaningful amount next to where the run started
        start = _start_level(ctx, val, float(train.values[0]))
        rise_of_start = (v_end - v_low) / start if start > 0 else 0.0
        # ... and beyond the val loss's own point-to-point noise: a val that swings by
        # more than the rise between evaluations is wiggling, not turning upward
        rise_noise = (v_end - v_low) / noise(val)
        progress = float(finite_val[0] - finite_val.min()) if len(finite_val) else 0.0
        gap_of_progress = gap_end / progress if progress > 0 else np.inf
        if not (
            growth >= float(p.min_ratio_growth)
            and gap_ratio >= float(p.min_gap_ratio)
            and gap_of_progress >= float(p.min_gap_of_progress)
            and train_fall >= float(p.min_train_fall)
            and val_fall <= float(p.max_val_fall)
            and val_rise >= float(p.min_val_rise)
            and rise_of_start >= float(p.min_rise_of_start)
            and rise_noise >= float(p.min_rise_noise)
        ):
            return []
        step0 = int(steps[ti[0]])
        # the val loss and what the run is judged on disagree: trust a clear rise only
        if rise_noise < float(p.metric_rise_noise) and _metric_still_improving(ctx, step0, p):
            return []
        from diagnose.advice.moves import advice_name

        ev = GapEvidence(
            train_fall=train_fall, val_fall=val_fall, gap_ratio=gap_ratio,
            tail_frac=float(p.tail_frac),
            window_start_step=step0, last_step=int(steps[-1]), train_start=t_start,
            train_end=t_end, val_start=v_start, val_end=v_end,
            train_fall_pct=100 * train_fall, val_fall_pct=100 * val_fall, gap_end=gap_end,
            gap_over_val=gap_ratio, gap_over_val_progress=gap_of_progress,
            log_ratio_growth=growth, val_rise_pct=100 * val_rise, val_rise_noise_sigmas=rise_noise,
            val_min=float(np.min(val.values)),
            val_min_step=int(val.steps[int(np.argmin(val.values))]),
            train_metric=train.tag, advice_name=advice_name(val.series),
            evaluations=len(val), thresholds=p,
        )
        return [Found(val.tag, step0, ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import overfit_advice

        ev = finding.detail
        if not isinstance(ev, GapEvidence):
            return super().advise(ctx, finding)
        return overfit_advice(ctx, ev.advice_name, float(ev.val_min_step),
                              finite_number(ev.val_min), finite_number(ev.val_end), None,
                              ev.evaluations)

    def message(self, ev: GapEvidence) -> str:
        return (
            f"train loss fell {pct(ev.train_fall)} over the last {pct(ev.tail_frac)} of "
            f"steps (from step {ev.window_start_step}) while val loss "
            f"{'fell only' if ev.val_fall > 0 else 'rose'} {pct(ev.val_fall)}; the gap is "
            f"now {pct(ev.gap_ratio)} of the val loss"
        )


@rule
class OVF003(_GapRule):
    """The generalisation gap grows while the val loss has stalled."""

    id = "OVF003"


@rule
class OVF004(_GapRule):
    """A huge generalisation gap while the val loss still creeps down."""

    id = "OVF004"
