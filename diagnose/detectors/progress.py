"""Progress measurements shared by the fitting detectors, and PRG001 (still improving).

Every fitting rule (overfit, underfit, plateau, undertrained) asks the same questions of
a curve: which way is better, where was it best, how much did it move in total, how much
did it move in a tail window, and is that beyond its noise.  They are answered here once,
in step units and relative to the curve's own progress and noise, so a rule never
compares raw values across runs.  Curves are *oriented* first: lower is always better
(a higher-is-better metric is negated), so one code path serves losses and accuracies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from diagnose import signals
from diagnose.detectors import RuleContext
from diagnose.detectors import params as P
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
from diagnose.metrics import Role, Series
from diagnose.numbers import sig

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.findings import Finding

#: Fraction of the step span used for the robust smoother everywhere in fitting rules.
SMOOTH_FRAC = 0.05


@dataclass(frozen=True)
class Curve:
    """A finite, oriented (lower is better) view of one series.

    ``values`` are oriented; ``sign`` is +1 for lower-is-better series and -1 for
    negated ones, so ``sign * value`` gives the number back in the metric's own units.
    """

    series: Series
    steps: np.ndarray
    values: np.ndarray
    sign: float

    @property
    def tag(self) -> str:
        return self.series.tag

    @property
    def span(self) -> float:
        return float(self.steps[-1] - self.steps[0]) if len(self.steps) > 1 else 0.0

    def raw(self, value: float) -> float:
        """An oriented value back in the metric's own units."""
        return float(self.sign * value)

    def __len__(self) -> int:
        return len(self.steps)


def curve(series: Series | None, higher_is_better: bool | None = None) -> Curve | None:
    """Orient ``series`` (finite points only); None when absent, empty or direction unknown.

    Losses are lower-is-better whatever their name says; metrics use the resolved
    ``Series.higher_is_better`` unless ``higher_is_better`` overrides it.
    """
    if series is None:
        return None
    fin = series.finite
    if len(fin) == 0:
        return None
    hib = higher_is_better if higher_is_better is not None else series.higher_is_better
    if series.role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
        hib = False
    if hib is None:
        return None
    sign = -1.0 if hib else 1.0
    return Curve(series, fin.steps.astype("float64"), sign * fin.values, sign)


def get_curve(ctx: RuleContext, role: Role) -> Curve | None:
    """Cached oriented curve of a role's primary series."""
    return ctx.cached(("fit_curve", role.value), lambda: curve(ctx.series(role)))


def smoothed(ctx: RuleContext | None, c: Curve) -> tuple[np.ndarray, np.ndarray]:
    """House-smoothed oriented curve: rolling median over SMOOTH_FRAC of the span, but at
    least three typical point gaps wide, so a short run's best is never one lucky point
    (a 16-sample val set scores 1.0 once by chance)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        if len(c) < 3 or c.span <= 0:
            return c.steps.copy(), c.values.copy()
        gap = float(np.median(np.diff(c.steps)))
        frac = min(max(SMOOTH_FRAC, 3.0 * gap / c.span), 0.5)
        s, sm = signals.smooth(c.steps, c.values, frac=frac)
        return s, _full_edge_windows(c, sm, frac)

    if ctx is None:
        return compute()
    return ctx.cached(("fit_smooth", c.tag, c.sign), compute)


def _full_edge_windows(c: Curve, sm: np.ndarray, frac: float) -> np.ndarray:
    """The smoothed curve with each window that the curve's first or last point cuts
    short refilled to the typical window's point count, shifted inward.  Cut to two
    points, a median is their mean, and one spike beside the last evaluation moves the
    curve's end level by half of it; a full window's median does not move.  Only where
    that window is not monotone: points that all climb (or all fall) to the end are a
    trend, which the refilled median would read one point late.  Curves the
    house smoother bins (longer than its ``max_points``) keep many points at each end."""
    ok = np.isfinite(c.values)
    steps, values = c.steps[ok], c.values[ok]
    n = len(values)
    if n != len(sm) or n < 3:
        return sm
    w = max(frac * float(steps[-1] - steps[0]), 1.0)
    lo = np.searchsorted(steps, steps - w / 2, side="left")
    hi = np.searchsorted(steps, steps + w / 2, side="right")
    k = min(int(np.median(hi - lo)), n)
    out = sm.copy()
    for i in np.flatnonzero((hi - lo < k) & ((lo == 0) | (hi == n))):
        window = values[:k] if lo[i] == 0 else values[n - k:]
        moves = np.diff(window)
        if np.all(moves >= 0) or np.all(moves <= 0):
            continue  # a monotone end is a trend, no spike to resist: refilling would lag it
        out[i] = float(np.median(window))
    return out


def noise(c: Curve) -> float:
    """Point-to-point noise of the curve, floored so a perfectly smooth curve is not 0."""
    n = signals.noise_floor(c.values)
    scale = signals.robust_scale(c.values)
    return max(n, 1e-3 * scale, 1e-12 * max(float(np.max(np.abs(c.values))), 1.0))


def level(steps: np.ndarray, values: np.ndarray, start: float, end: float,
          min_points: int = 3, at_end: bool = True) -> float:
    """Median of the points with ``start <= step <= end``; when fewer than ``min_points``
    fall inside, the ``min_points`` nearest to the window's ``end`` (or start) instead.
    A median of several points is a level a single spike cannot move."""
    inside = (steps >= start) & (steps <= end)
    if inside.sum() >= min_points or len(values) <= min_points:
        sel = values[inside] if inside.any() else values
        return float(np.median(sel))
    anchor = end if at_end else start
    order = np.argsort(np.abs(steps - anchor), kind="stable")[:min_points]
    return float(np.median(values[order]))


def end_level(c: Curve, frac: float = 0.1, min_points: int = 3) -> float:
    """Oriented level at the end of the run: median of the last ``frac`` of steps."""
    last = float(c.steps[-1])
    return level(c.steps, c.values, last - frac * c.span, last, min_points)


def in_start(c: Curve, frac: float = 0.1) -> np.ndarray:
    """Mask of the points in the first ``frac`` of the run's steps (the start window
    :func:`start_level` reads)."""
    return c.steps <= float(c.steps[0]) + frac * c.span


def start_level(c: Curve, frac: float = 0.1, min_points: int = 3) -> float:
    """Oriented level at the start: median of the first ``frac`` of steps."""
    first = float(c.steps[0])
    return level(c.steps, c.values, first, first + frac * c.span, min_points, at_end=False)


def early_level(c: Curve) -> float:
    """The larger of a loss's first logged value and its start level: the closest the log
    gets to the untrained model's loss (a log written after the first epoch already
    starts below it)."""
    return max(float(c.values[0]), start_level(c))


#: Run formats whose rows are per-epoch aggregates numbered from epoch 0 (Keras's
#: CSVLogger and ``History``): the row of epoch 0 is written after the whole first epoch.
EPOCH_ROW_FORMATS = frozenset({"keras_csv", "keras_history"})


def epoch_rows_from_zero(ctx: RuleContext | None, c: Curve) -> bool:
    """Whether ``c``'s steps are epochs numbered from 0, each point written at the end of
    its epoch (Keras: its CSV and history rows, and the ``epoch_*`` tags its TensorBoard
    callback writes), so step e already covers e + 1 epochs."""
    formats = set(ctx.run.format.split("+")) if ctx is not None else set()
    return bool(formats & EPOCH_ROW_FORMATS) or c.tag.rsplit("/", 1)[-1].lower().startswith(
        "epoch_")


def first_point_cover(ctx: RuleContext | None, c: Curve) -> float:
    """How much of the run the first logged point of ``c`` already covers, in [0, 1]: the
    one owner of "is the log's first point the model's start?".

    A point at step 0 (or 1 of many) is the untrained model; the first row of N per-epoch
    aggregates numbered from 0 (:func:`epoch_rows_from_zero`) averages the whole first
    epoch, 1/N of the run; a first point at step s of S (per-epoch logging, a resumed run,
    a fine-tune logged from its checkpoint's step) comes after s/S of it.  A first value
    that covers a real share of the run is already below the untrained loss by whatever
    the model learned in that share, so with the class count unknown (no ln C) the log
    does not show the untrained level, only a bound below it."""
    if len(c) < 2:
        return 0.0
    first, last = float(c.steps[0]), float(c.steps[-1])
    if epoch_rows_from_zero(ctx, c):
        first, last = first + 1.0, last + 1.0
    return min(max(first / last, 0.0), 1.0) if last > 0 else 0.0


def level_before_log(ctx: RuleContext | None, c: Curve, min_cover: float) -> float | None:
    """The oriented level of ``c`` at the model's start, when its first point covers more
    than ``min_cover`` of the run (:func:`first_point_cover`); else None (the first
    point is the start).

    Each of the first two points is read at the centre of the stretch it covers (a
    Keras row, a Trainer's logged loss and a Lightning epoch value are means over it;
    a single late point only makes the estimate lower), and the line through them is
    carried back to the start: v0 + (v0 - v1) * s0 / s1 in covered steps.  A training
    curve falls fastest first, so the model learned at least that much before its first
    point: a floor under the untrained level, closer to it than the first value (a fast
    learner already flat at its second point keeps a floor near its first value)."""
    cover = first_point_cover(ctx, c)
    if cover <= min_cover or len(c) < 2:
        return None
    # Keras numbers epochs from 0: row e closes epoch e, e + 1 epochs into the run
    offset = 1.0 if epoch_rows_from_zero(ctx, c) else 0.0
    s0, s1 = float(c.steps[0]) + offset, float(c.steps[1]) + offset
    v0, v1 = float(c.values[0]), float(c.values[1])
    if s1 <= s0:
        return None
    # centres s0 / 2 and (s0 + s1) / 2: the slope's run is s1 / 2, carried back s0 / 2
    return v0 + max(v0 - v1, 0.0) * s0 / s1


def fall_in_first_stretch(train: Curve, val: Curve) -> float | None:
    """How far the loss fell over the second half of the stretch the train curve's first
    point covers, when the first val evaluation closes that stretch (both logged at the
    same step: a Keras row, the epoch's mean train loss and the val loss after it, or a
    per-epoch train mean written beside the epoch's evaluation); else None.

    A mean sits at its stretch's centre, the evaluation at its end: their difference,
    less the train/val offset that remains at the end of the run (dropout, augmentation
    keep train above val throughout), is what the model learned in the stretch's second
    half.  A training curve falls fastest first, so its first half fell at least as much:
    the first point plus this fall is a floor under the level at the model's start, read
    on the first stretch itself rather than on the later, slower ones.  A first point
    that is one value, not a mean, is read at the evaluation's own step: the difference
    is then the offset alone, and nothing is added."""
    if len(train) < 2 or len(val) < 2 or float(val.steps[0]) != float(train.steps[0]):
        return None
    offset = max(end_level(train) - end_level(val), 0.0)
    return max(float(train.values[0]) - float(val.values[0]) - offset, 0.0)


def level_at(c: Curve, step: float, frac: float = 0.05, min_points: int = 3) -> float:
    """Oriented level around ``step`` (median over +-``frac`` of the span)."""
    half = frac * c.span
    inside = (c.steps >= step - half) & (c.steps <= step + half)
    if inside.sum() >= min_points:
        return float(np.median(c.values[inside]))
    order = np.argsort(np.abs(c.steps - step), kind="stable")[:min_points]
    return float(np.median(c.values[order]))


def total_progress(ctx: RuleContext | None, c: Curve) -> float:
    """How far the oriented curve fell from its start to its best smoothed point (>= 0):
    the run's own unit of "a meaningful amount" for this curve."""
    _, sm = smoothed(ctx, c)
    if len(sm) == 0:
        return 0.0
    return max(start_level(c) - float(np.min(sm)), 0.0)


def kept_learning(before: float | None, end: float | None, lost_ground_above: float) -> bool:
    """Whether a loss kept learning through an event (spikes, a grad-norm growth): it
    ends at most ``lost_ground_above`` x its level just before the event.  Noise that did
    not stop learning is info, not a warning (DESIGN.md); False when either level is
    unknown."""
    return before is not None and end is not None and bool(end <= lost_ground_above * before)


def rel(delta: float, ref: float) -> float:
    """``delta / |ref|`` as a fraction, NaN when the reference is ~0."""
    return float(delta / abs(ref)) if abs(ref) > 1e-12 else float("nan")


def pct(x: float) -> str:
    """A fraction as a short percentage for messages (``38%``, ``0.4%``, ``n/a``)."""
    if not np.isfinite(x):
        return "n/a"
    v = abs(x) * 100
    return f"{v:.0f}%" if v >= 10 else f"{v:.1f}%" if v >= 0.1 else f"{v:.2f}%"


def fmt(x: float | None) -> str:
    """A value for messages: 4 significant digits ("n/a" when unknown)."""
    return sig(x)


def accuracy_curve(ctx: RuleContext, role: Role, fraction_only: bool = True) -> Curve | None:
    """The role's accuracy curve (oriented: higher is better), only when the metric is an
    accuracy; with ``fraction_only``, only one logged as a fraction (a value outside
    [0, 1] is a percentage or not one)."""
    for s in ctx.roles.candidates(role):
        if s.metric == "accuracy":
            c = curve(s, True)
            if c is not None and (not fraction_only
                                  or np.all((c.values <= 0) & (c.values >= -1))):
                return c
            if not fraction_only:
                return None
    return None


def accuracy_fractions(acc: Curve, values: np.ndarray) -> np.ndarray:
    """Oriented accuracy ``values`` of ``acc`` read as fractions: a logged value above 1
    is a percentage (read value by value, as logged)."""
    raw = np.abs(np.array([acc.raw(float(v)) for v in values]))
    fractions: np.ndarray = np.where(raw > 1.0, raw / 100.0, raw)
    return fractions


def evaluation_window(c: Curve, min_points: int, tail_frac: float | None = None,
                      min_tail_points: int = 0) -> np.ndarray:
    """The evaluations that say where a curve ended up: those over its last ``tail_frac``
    of steps when there are ``min_tail_points`` or more of them, else every evaluation
    (a split evaluated a few times; ``tail_frac`` None: always every one); empty when
    those are fewer than ``min_points`` (too few to say anything held)."""
    if tail_frac is not None:
        tail = c.values[c.steps >= float(c.steps[-1]) - tail_frac * c.span]
        if len(tail) >= min_tail_points:
            return tail
    return c.values if len(c) >= min_points else c.values[:0]


@dataclass(frozen=True)
class Pinned:
    """An accuracy that held one value over its evaluation window."""

    curve: Curve
    fractions: np.ndarray  # the window's values, as fractions (:func:`accuracy_fractions`)

    @property
    def spread(self) -> float:
        return float(np.ptp(self.fractions))


def pinned_accuracy(acc: Curve, min_points: int, band: float | None = None,
                    tail_frac: float | None = None, min_tail_points: int = 0) -> Pinned | None:
    """Whether the accuracy ``acc`` stayed at one value over its evaluation window
    (:func:`evaluation_window`): the one owner of "the model predicts the same thing at
    every evaluation" (the plateau and underfit rules both ask it).

    ``band`` None: identical as logged (to 1e-9, in the metric's own units: the
    predictions never changed, whatever the unit); else a spread of at most ``band`` as
    fractions (a sample or two of a small val set moving either way).  A model predicting
    one class for every input scores that class's share at every evaluation whatever its
    weights do: a pinned accuracy alone is not "learned"."""
    window = evaluation_window(acc, min_points, tail_frac, min_tail_points)
    if not len(window) or (band is None and float(np.ptp(window)) > 1e-9):
        return None
    pinned = Pinned(acc, accuracy_fractions(acc, window))
    return None if band is not None and pinned.spread > band else pinned


def primary_objective(ctx: RuleContext) -> Curve | None:
    """The curve that says whether training still pays off: val loss, else the val
    metric, else the train loss (a run without validation is judged by its train loss)."""
    for role in (Role.VAL_LOSS, Role.VAL_METRIC, Role.TRAIN_LOSS):
        c = get_curve(ctx, role)
        if c is not None and len(c) >= 3:
            return c
    return None


def lr_evidence(ctx: RuleContext) -> dict[str, float]:
    """The learning rate at the end relative to its peak, when logged (a schedule that
    already annealed to ~0 changes what "train longer" means)."""
    lr = ctx.series(Role.LR)
    if lr is None:
        return {}
    f = lr.finite
    if len(f) == 0 or np.max(f.values) <= 0:
        return {}
    peak = float(np.max(f.values))
    return {"lr_end": float(f.values[-1]), "lr_end_over_peak": float(f.values[-1]) / peak}


# ---------------------------------------------------------------------------
# PRG001 still-improving
# ---------------------------------------------------------------------------


@rule
class PRG001(Rule["PRG001.Params", "PRG001.Evidence"]):
    """The objective is still improving at the last step: training was stopped early.

    The tail is the last ``tail_frac`` of the steps, widened to ``min_tail_points``
    points for short runs.  Fires when its robust (Theil-Sen) trend improves with a 95%
    slope interval below zero, Kendall tau past ``min_tau`` and ``min_effect`` noise
    sigmas, the best value lies in the tail, and the fitted improvement is meaningful:
    at least ``min_rel_gain`` of the level (of the error left, for accuracy-like
    metrics), or for a curve at or below zero, ``min_tail_share`` of its total progress.
    A converged curve creeping down by 0.5% of its level does not fire.
    """

    id = "PRG001"
    detector = "still_improving"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        tail_frac: float = param(P.SHARE)
        min_tail_points: int = param(P.COUNT)
        min_effect: float = param(P.NON_NEGATIVE)
        min_tau: float = param(P.TAU)
        min_rel_gain: float = param(P.NON_NEGATIVE)
        min_tail_share: float = param(P.FRACTION)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        name: str = internal("")
        #: the objective as the advice names it ("val loss", "val accuracy")
        metric_name: str = internal("")
        frac_steps: float = internal(0.0)
        tail_start_step: int = 0
        last_step: int = 0
        tail_start_value: float = 0.0
        tail_end_value: float = 0.0
        tail_rel_gain: float = 0.0
        tail_gain_share: float = 0.0
        effect_noise_sigmas: float = 0.0
        kendall_tau: float = 0.0
        noise: float = 0.0
        lr_end: float | None = optional()
        lr_end_over_peak: float | None = optional()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: PRG001.Params) -> list[Found[PRG001.Evidence]] | None:
        c = primary_objective(ctx)
        if c is None or len(c) < p.min_points or c.span <= 0:
            return None
        k = p.min_tail_points
        t0 = min(float(c.steps[-1]) - float(p.tail_frac) * c.span, float(c.steps[-k]))
        tail = c.steps >= t0
        tr = signals.robust_trend(c.steps[tail], c.values[tail])
        if not np.isfinite(tr.slope):
            return []
        total = total_progress(ctx, c)
        gain = -tr.change
        nz = noise(c)
        effect = gain / nz
        share = gain / total if total > 0 else float("nan")
        start = float(tr.start)
        if bounded_metric(c):
            rel_gain = gain / max(1.0 + start, 1e-12)
        elif start > 0:
            rel_gain = gain / start
        else:
            rel_gain = float("nan")
        meaningful = (
            rel_gain >= float(p.min_rel_gain) if np.isfinite(rel_gain)
            else bool(np.isfinite(share) and share >= float(p.min_tail_share))
        )
        _, sm = smoothed(ctx, c)
        # the best point must be in the tail: a curve that rose and came back is not
        # improving
        best_in_tail = float(np.min(sm[-max(1, int(tail.sum())):])) <= float(np.min(sm)) + nz
        if not (
            tr.slope_hi < 0
            and tr.tau <= -float(p.min_tau)
            and effect >= float(p.min_effect)
            and meaningful
            and best_in_tail
        ):
            return []
        seen = (float(np.min(c.values[tail])), float(np.max(c.values[tail])))
        what = "val" if c.series.split in ("val", "test") else "train"
        metric_name = c.series.metric.replace("_", " ")
        if what == "val" and not metric_name.startswith("val"):
            metric_name = f"val {metric_name}"
        ev = PRG001.Evidence(
            name=c.tag if c.tag.lower().startswith(what) else f"{what} {c.tag}",
            metric_name=metric_name,
            frac_steps=(float(c.steps[-1]) - float(c.steps[tail][0])) / c.span,
            tail_start_step=int(c.steps[tail][0]),
            last_step=int(c.steps[-1]),
            # the trend line's ends, kept inside what the tail showed: a steep fall
            # extrapolated to the last step must not report a loss below zero
            tail_start_value=c.raw(float(np.clip(start, *seen))),
            tail_end_value=c.raw(float(np.clip(float(tr.end), *seen))),
            tail_rel_gain=_shown_gain(c, *(float(np.clip(v, *seen)) for v in (start, tr.end)))
            if np.isfinite(rel_gain) else rel_gain,
            tail_gain_share=share,
            effect_noise_sigmas=effect,
            kendall_tau=tr.tau,
            noise=nz,
            **lr_evidence(ctx),
            thresholds=p,
        )
        return [Found(c.tag, int(c.steps[-1]), ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        """Extend training by the gain the detector measured over the tail."""
        from diagnose.recommend import extend_advice

        ev = finding.detail
        if not isinstance(ev, PRG001.Evidence) or ev.thresholds is None:
            return super().advise(ctx, finding)
        from diagnose.hparams import finite_number

        # a share over no total progress is NaN: not a number to advise from
        start, end = finite_number(ev.tail_start_value), finite_number(ev.tail_end_value)
        gain = (abs(end - start) / abs(start) if start is not None and end is not None
                and start != 0 else None)
        return extend_advice(ctx, ev.metric_name, start, end, gain,
                             finite_number(ev.tail_gain_share), ev.frac_steps,
                             finite_number(ev.lr_end_over_peak))

    def message(self, ev: PRG001.Evidence) -> str:
        gain = ev.tail_rel_gain if np.isfinite(ev.tail_rel_gain) else ev.tail_gain_share
        return (f"{ev.name} still improves from {fmt(ev.tail_start_value)} to "
                f"{fmt(ev.tail_end_value)} over the last {pct(ev.frac_steps)} of steps up "
                f"to step {ev.last_step} ({pct(gain)} better)")


def calibrated_loss(accuracy: float, n_classes: float) -> float:
    """The cross-entropy of predictions that are right with confidence ``accuracy`` and
    spread the rest evenly over the other ``n_classes - 1`` classes: about the most a
    calibrated model with that accuracy pays (real errors concentrate on a few classes,
    which costs less).  A loss well above it means right but unconfident predictions
    (UND004); a loss far above it at a low accuracy is blown up (DIV005)."""
    a = min(max(accuracy, 1e-9), 1.0 - 1e-9)
    return -a * math.log(a) - (1.0 - a) * math.log((1.0 - a) / max(n_classes - 1, 1))


def _shown_gain(c: Curve, start: float, end: float) -> float:
    """The relative gain between two oriented values, as PRG001 measures it (a bounded
    metric against what was left to gain, a loss against its start)."""
    if bounded_metric(c):
        return (start - end) / max(1.0 + start, 1e-12)
    return (start - end) / start if start > 0 else float("nan")


# ---------------------------------------------------------------------------
# Helpers for the other fitting modules
# ---------------------------------------------------------------------------


def bounded_metric(c: Curve) -> bool:
    """A higher-is-better metric living in [0, 1] (accuracy, mAP, F1...)."""
    return c.sign < 0 and bool(np.all((c.values >= -1.0) & (c.values <= 0.0)))


def improvement(c: Curve, start: float, end: float | None = None) -> dict[str, float]:
    """How much the oriented curve improved between ``start`` and ``end`` (default: the
    last step), by the level around each end.  ``rel`` is relative to the starting level
    (for bounded metrics: to the error left, 1 - value), ``effect`` in noise sigmas,
    ``tau`` the Kendall tau of the window (negative = improving)."""
    stop = float(c.steps[-1]) if end is None else end
    a = level_at(c, start)
    b = level(c.steps, c.values, stop - 0.1 * max(stop - start, 0.0), stop)
    drop = a - b
    scale = (1.0 + a) if bounded_metric(c) else abs(a)
    inside = (c.steps >= start) & (c.steps <= stop)
    tr = signals.robust_trend(c.steps[inside], c.values[inside])
    return {
        "from": c.raw(a),
        "to": c.raw(b),
        "drop": drop,
        "rel": drop / scale if scale > 1e-12 else float("inf") if drop > 0 else 0.0,
        "effect": drop / noise(c),
        "tau": float(tr.tau) if np.isfinite(tr.tau) else 0.0,
    }


def ends_nonfinite(ctx: RuleContext) -> bool:
    """True when a train or val loss ends NaN/inf: that run is divergence's business, and
    fitting rules (plateau, underfit) must not read its collapsed tail as a state."""
    for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
        s = ctx.series(role)
        if s is not None and len(s) and not np.isfinite(s.values[-1]):
            return True
    return False


def early_eval_ratio(ctx: RuleContext, frac: float = 0.2) -> float | None:
    """Val loss over train loss at the start of the run (medians over the first ``frac``
    of the val steps; train taken over the same steps, or its first value when that is
    higher); None unless both are positive.

    Overfitting starts with val tracking train (ratio ~1) and drifts apart; a val loss
    10x the train loss from the first evaluation on means evaluation itself is broken
    (batch-norm running statistics, eval-mode preprocessing), not generalisation.
    """

    def compute() -> float | None:
        val, train = get_curve(ctx, Role.VAL_LOSS), get_curve(ctx, Role.TRAIN_LOSS)
        if val is None or train is None or len(val) < 2 or len(train) < 2:
            return None
        if float(np.min(val.values)) <= 0 or float(np.min(train.values)) <= 0:
            return None
        end = float(val.steps[0]) + frac * val.span
        v = level(val.steps, val.values, float(val.steps[0]), end, at_end=False)
        lo = min(float(val.steps[0]), float(train.steps[0]))
        t = level(train.steps, train.values, lo, max(end, float(train.steps[0])), at_end=False)
        # against the train loss's first value too: a fine-tune can memorise before
        # its first evaluation (train 0.3 -> 0.02) while val sits at 0.32
        t = max(t, float(train.values[0]))
        return v / t if t > 0 else None

    return ctx.cached(("fit_early_ratio", frac), compute)
