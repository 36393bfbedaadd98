"""Divergence: the loss leaves the finite world, explodes, is astronomical, or climbs.

Every size here is measured against the loss's own scale (its early drop, its noise
floor, its early magnitude), never as a ratio of raw values that might be negative:
some losses (Poisson NLL, ELBO) sit at -4e6 by design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.detectors import (
    RuleContext,
    early_drop,
    finite,
    fmt,
    loss_label,
    main_losses,
    noise,
    smoothed,
)
from diagnose.detectors import params as P
from diagnose.detectors.rule import (
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
from diagnose.metrics import Role, Series

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.findings import Finding


@dataclass(frozen=True)
class NonFinite:
    """Where a series goes non-finite and whether it comes back."""

    first_step: int
    first_value: float
    last_bad_step: int
    bad_points: int
    points_after_first: int
    finite_after_last_bad: int
    last_finite_step: int | None
    last_finite_value: float
    min_step: int | None
    min_value: float
    total_points: int

    def recovered(self, recover_points: int, max_bad_share: float) -> bool:
        """Back to finite values for ``recover_points`` points (or half the points after
        the first non-finite one, when the run ends sooner) and mostly finite since."""
        share = self.bad_points / max(self.points_after_first, 1)
        need = min(recover_points, max(1, self.points_after_first // 2))
        return self.finite_after_last_bad >= need and share <= max_bad_share


def nonfinite_info(ctx: RuleContext, s: Series) -> NonFinite | None:
    """Cached summary of a series' non-finite points; None when all are finite."""

    def compute() -> NonFinite | None:
        v = s.values
        bad = ~np.isfinite(v)
        if not bad.any():
            return None
        i0 = int(np.argmax(bad))
        i1 = len(v) - 1 - int(np.argmax(bad[::-1]))
        before = np.flatnonzero(~bad[:i0])
        last_i = int(before[-1]) if len(before) else None
        min_step, min_value = signals.step_of_best(s.steps[:i0], v[:i0])
        return NonFinite(
            first_step=int(s.steps[i0]),
            first_value=float(v[i0]),
            last_bad_step=int(s.steps[i1]),
            bad_points=int(bad.sum()),
            points_after_first=len(v) - i0,
            finite_after_last_bad=len(v) - 1 - i1,
            last_finite_step=None if last_i is None else int(s.steps[last_i]),
            last_finite_value=float("nan") if last_i is None else float(v[last_i]),
            min_step=min_step,
            min_value=min_value,
            total_points=len(v),
        )

    return ctx.cached(("nonfinite", s.tag, s.role), compute)


def _kind(x: float) -> str:
    return "NaN" if np.isnan(x) else ("inf" if x > 0 else "-inf")


def _rise(info: NonFinite, s: Series, ctx: RuleContext) -> tuple[float | None, float | None,
                                                                 bool]:
    """How far the loss rose from its best before going non-finite: (ratio for a positive
    loss, else None; difference, else None; whether the rise is worth saying)."""
    last, best = info.last_finite_value, info.min_value
    if not (np.isfinite(last) and np.isfinite(best)) or info.last_finite_step is None:
        return None, None, False
    fin = s.values[np.isfinite(s.values)]
    if best > 0 and np.all(fin > 0):
        ratio = last / best
        return ratio, None, bool(ratio >= 1.5)
    floor = max(noise(ctx, s), 1e-12)
    delta = last - best
    return None, delta, bool(delta > 3 * floor)


@dataclass(frozen=True)
class Blowup:
    """What the divergence advice needs about a blow-up, measured on the loss once:
    where it blew up (``bad``), where the loss turned upward (``turn``) and its minimum
    before, how far it rose (peak / minimum), whether it went non-finite, and how many
    logged points lie between the turn and the blow-up (<= 3: sudden)."""

    bad: float | None
    turn: float | None
    loss_min: float | None
    rise: float | None
    nonfinite: bool
    points_between: int | None
    #: the largest step-to-step rise of the logged LR before the blow-up: the LR before
    #: it, after it, and the step it took effect (None when no LR is logged)
    lr_before: float | None = None
    lr_after: float | None = None
    lr_jump_step: float | None = None


def _lr_jump(lr: Series | None, bad: float | None, warmup_end: float | None = None
             ) -> tuple[float | None, float | None, float | None]:
    """(LR before, LR after, step) of the largest rise between consecutive positive logged
    LR values up to ``bad`` from a value held for 3 logged points (not a warmup ramp);
    Nones when there is none.  A rise from the first or second logged point cannot show
    a 3-point hold (an epoch-logged run has a handful of points), so it counts when the
    run's configured warmup (``warmup_end``, its ``warmup_steps``) ended before that point
    (no ramp was running) and the points before it hold their value (a cosine restart
    after one epoch does not); an unknown or running warmup keeps the 3-point hold.
    Whether a rise is a jump (``lr_jump_ratio``) is the advice's call."""
    if lr is None:
        return None, None, None
    fin = lr.finite
    keep = (fin.values > 0) & (fin.steps <= (bad if bad is not None else np.inf))
    steps, vals = fin.steps[keep], fin.values[keep]
    if len(vals) < 2:
        return None, None, None
    i = int(np.argmax(vals[1:] / vals[:-1]))
    held = vals[max(0, i - 2):i + 1]  # a warmup ramp does not hold its value before
    if i < 2 and (warmup_end is None or steps[i] <= warmup_end):
        return None, None, None
    if held.max() / held.min() > 1.5:
        return None, None, None
    return float(vals[i]), float(vals[i + 1]), float(steps[i + 1])


def blowup(loss: Series | None, bad: float | None, turn: float | None,
           loss_min: float | None, rise: float | None, nonfinite: bool,
           lr: Series | None = None, warmup_end: float | None = None) -> Blowup:
    """Complete what a rule's evidence says about a blow-up from its loss series (the
    turn, minimum and rise a rule did not measure) and its logged LR (the largest jump;
    ``warmup_end``: the configured warmup steps, see :func:`_lr_jump`)."""
    points_between: int | None = None
    if loss is not None:
        fin = loss.finite
        pre = fin.steps < bad if bad is not None else np.ones(len(fin), bool)
        if turn is None and pre.any():
            i = int(np.argmin(fin.values[pre]))
            turn = float(fin.steps[pre][i])
        if loss_min is None and pre.any():
            loss_min = float(np.min(fin.values[pre]))
        if not nonfinite:
            nonfinite = bool((~np.isfinite(loss.values)).any())
        if turn is not None:
            after = fin.values[(fin.steps >= turn) & pre]
            if rise is None and loss_min is not None and loss_min > 0 and len(after):
                rise = float(np.max(after)) / loss_min
            points_between = int(((loss.steps > turn) & (loss.steps < (bad or np.inf))).sum())
    return Blowup(bad, turn, loss_min, rise, nonfinite, points_between,
                  *_lr_jump(lr, bad, warmup_end))


def _measured(ctx: RuleContext, found: Found[Any], turn: float | None,
              loss_min: float | None, rise: float | None, nonfinite: bool = False,
              bad: float | None = None) -> Found[Any]:
    """``found`` with its :class:`Blowup` measured on the finding's loss (the advice
    reads it; it is not a JSON key)."""
    loss = ctx.roles.by_tag.get(found.metric) if found.metric else None
    if loss is None or not len(loss.finite):
        loss = ctx.series(Role.TRAIN_LOSS)
        loss = loss if loss is not None and len(loss.finite) else None
    at = bad if bad is not None else (float(found.step) if found.step is not None else None)
    lr = ctx.series(Role.LR)
    b = blowup(loss, at, turn, loss_min, rise, nonfinite,
               lr if lr is not None and len(lr.finite) else None,
               finite_number(ctx.hparams.get("warmup_steps")))
    return replace(found, evidence=replace(found.evidence, blowup=b))


class _Diverging:
    """The divergence rules' advice: from the :class:`Blowup` their detector measured."""

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import divergence_advice, state_advice

        b = getattr(finding.detail, "blowup", None)
        if not isinstance(b, Blowup):
            return state_advice(ctx, finding)
        return divergence_advice(ctx, b)


@dataclass(frozen=True)
class NonFiniteParams(RuleParams):
    recover_points: int = param(P.COUNT)
    max_bad_share: float = param(P.FRACTION)


@dataclass(frozen=True)
class NonFiniteEvidence(RuleEvidence):
    label: str = internal("")
    kind: str = internal("NaN")
    rise_span: int = internal(0)
    rise_shown: bool = internal(False)
    first_nonfinite_step: int = 0
    last_finite_step: int | None = None
    last_finite_value: float = float("nan")
    loss_min: float = float("nan")
    loss_min_step: int | None = None
    nonfinite_points: int = 0
    points_from_first_nonfinite: int = 0
    total_points: int = 0
    finite_points_after_last_nonfinite: int = 0
    rise_ratio_before_nonfinite: float | None = optional()
    rise_before_nonfinite: float | None = optional()
    recover_points: int = 0
    max_bad_share: float = 0.0
    blowup: Blowup | None = field(default=None, metadata={"json": False})


@rule
class DIV001(_Diverging, Rule[NonFiniteParams, NonFiniteEvidence]):
    """Train/val loss becomes NaN/inf and stays that way; :class:`LOG005` is the recovered
    case."""

    id = "DIV001"
    detector = "nonfinite_loss"
    Params = NonFiniteParams
    Evidence = NonFiniteEvidence

    def detect(self, ctx: RuleContext, p: NonFiniteParams) -> list[Found[NonFiniteEvidence]] | None:
        losses = main_losses(ctx, ("train", "val"))
        if not losses:
            return None
        out = []
        for s in losses:
            info = nonfinite_info(ctx, s)
            if info is None or info.recovered(p.recover_points, p.max_bad_share):
                continue
            ratio, delta, shown = _rise(info, s, ctx)
            span = info.first_step - (info.min_step if info.min_step is not None
                                      else info.first_step)
            ev = NonFiniteEvidence(
                label=loss_label(s),
                kind=_kind(info.first_value),
                rise_span=span,
                rise_shown=shown,
                first_nonfinite_step=info.first_step,
                last_finite_step=info.last_finite_step,
                last_finite_value=info.last_finite_value,
                loss_min=info.min_value,
                loss_min_step=info.min_step,
                nonfinite_points=info.bad_points,
                points_from_first_nonfinite=info.points_after_first,
                total_points=info.total_points,
                finite_points_after_last_nonfinite=info.finite_after_last_bad,
                rise_ratio_before_nonfinite=ratio,
                rise_before_nonfinite=delta,
                recover_points=p.recover_points,
                max_bad_share=p.max_bad_share,
            )
            out.append(_measured(ctx, Found(s.tag, info.first_step, ev),
                                 finite_number(ev.loss_min_step), finite_number(ev.loss_min),
                                 finite_number(ev.rise_ratio_before_nonfinite), True,
                                 float(info.first_step)))
        return out

    def message(self, ev: NonFiniteEvidence) -> str:
        rise = ""
        if ev.rise_shown and ev.rise_ratio_before_nonfinite is not None:
            rise = (f" after rising {fmt(ev.rise_ratio_before_nonfinite)}x from its best "
                    f"{fmt(ev.loss_min)} in {ev.rise_span} steps")
        elif ev.rise_shown and ev.rise_before_nonfinite is not None:
            rise = (f" after rising {fmt(ev.rise_before_nonfinite)} above its best "
                    f"{fmt(ev.loss_min)} in {ev.rise_span} steps")
        return (f"{ev.label} becomes {ev.kind} at step {ev.first_nonfinite_step}{rise} and "
                f"stays non-finite for {ev.nonfinite_points} of the "
                f"{ev.points_from_first_nonfinite} points from there on")


@dataclass(frozen=True)
class TransientNonFiniteEvidence(RuleEvidence):
    label: str = internal("")
    kind: str = internal("NaN")
    first_nonfinite_step: int = 0
    last_nonfinite_step: int = 0
    nonfinite_points: int = 0
    finite_points_after_last_nonfinite: int = 0
    total_points: int = 0
    recover_points: int = 0
    max_bad_share: float = 0.0


@rule
class LOG005(Rule[NonFiniteParams, TransientNonFiniteEvidence]):
    """Non-finite loss points that the run recovers from: a logging/AMP artefact or a
    near-miss, not divergence."""

    id = "LOG005"
    detector = "transient_nonfinite"
    Params = NonFiniteParams
    Evidence = TransientNonFiniteEvidence

    def detect(self, ctx: RuleContext,
               p: NonFiniteParams) -> list[Found[TransientNonFiniteEvidence]] | None:
        losses = main_losses(ctx, ("train", "val"))
        if not losses:
            return None
        out = []
        for s in losses:
            info = nonfinite_info(ctx, s)
            if info is None or not info.recovered(p.recover_points, p.max_bad_share):
                continue
            ev = TransientNonFiniteEvidence(
                label=loss_label(s),
                kind=_kind(info.first_value),
                first_nonfinite_step=info.first_step,
                last_nonfinite_step=info.last_bad_step,
                nonfinite_points=info.bad_points,
                finite_points_after_last_nonfinite=info.finite_after_last_bad,
                total_points=info.total_points,
                recover_points=p.recover_points,
                max_bad_share=p.max_bad_share,
            )
            out.append(Found(s.tag, info.first_step, ev))
        return out

    def message(self, ev: TransientNonFiniteEvidence) -> str:
        n = ev.nonfinite_points
        return (f"{ev.label} is {ev.kind} at {n} point{'s' if n != 1 else ''} from step "
                f"{ev.first_nonfinite_step} to {ev.last_nonfinite_step} and is finite "
                f"again for the {ev.finite_points_after_last_nonfinite} points after")


def _train_or_val(ctx: RuleContext) -> Series | None:
    s = ctx.series(Role.TRAIN_LOSS)
    if s is not None and len(s):
        return s
    return ctx.series(Role.VAL_LOSS)


@rule
class DIV002(_Diverging, Rule["DIV002.Params", "DIV002.Evidence"]):
    """The loss climbs far above its best and stays up.

    Far = back above where it started (``explode_factor`` x its early drop, floored by
    ``rel_floor`` x |best| and ``noise_mult`` x its noise), or, for a positive loss,
    ``ratio_factor`` x its best.  Stays = the median of the last ``tail_frac`` of steps is
    still up there and most smoothed points since the rise are too.  Train loss is used;
    val loss only when there is no train loss (a val rise with a falling train loss is
    overfitting, not divergence).  A positive loss must also end far above where it
    started (``start_factor`` x its early level: DESIGN.md's about 3x), or be "blown up
    mid-run after being fine": its best at most ``fine_share`` of its early level, and back
    at ``back_share`` of that level or above.  A loss that learned a little and climbed back
    to its start (an LR jump that undid the progress) stalls at the untrained level: plateau
    and underfit, not a blow-up; a loss ten times its best that still sits well below its
    start has not lost what it learned.  A val loss judged with the train side unlogged
    needs ``start_factor``: one that fell to a minimum and rose to below that is overfit's
    shape as much as a blow-up's.
    """

    id = "DIV002"
    detector = "exploding_loss"

    @dataclass(frozen=True)
    class Params(RuleParams):
        explode_factor: float = param(P.POSITIVE)
        ratio_factor: float = param(P.AT_LEAST_ONE)
        rel_floor: float = param(P.NON_NEGATIVE)
        noise_mult: float = param(P.NON_NEGATIVE)
        tail_frac: float = param(P.SHARE)
        min_sustained: float = param(P.FRACTION)
        min_points: int = param(P.COUNT)
        start_factor: float = param(P.AT_LEAST_ONE)
        fine_share: float = param(P.FRACTION)
        back_share: float = param(P.FRACTION)
        tail_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        best: float = 0.0
        best_step: int = 0
        tail_median: float = 0.0
        rise: float = 0.0
        early_drop: float = 0.0
        noise: float = 0.0
        scale: float = 0.0
        ratio_to_best: float | None = None
        onset_step: int = 0
        sustained_share: float = 0.0
        explode_factor: float = 0.0
        ratio_factor: float = 0.0
        rel_floor: float = 0.0
        noise_mult: float = 0.0
        tail_frac: float = 0.0
        #: a positive loss: its early level, the end over it, and whether it was fine first
        early_level: float | None = optional()
        start_factor: float | None = optional()
        fine_first: bool | None = optional()
        blowup: Blowup | None = field(default=None, metadata={"json": False})

    def detect(self, ctx: RuleContext,
               p: DIV002.Params) -> list[Found[DIV002.Evidence]] | None:
        s = _train_or_val(ctx)
        if s is None:
            return None
        f = finite(ctx, s)
        if len(f) < p.min_points:
            return []
        ss, sm = smoothed(ctx, s)
        i = int(np.argmin(sm))
        best, best_step = float(sm[i]), float(ss[i])
        t0 = f.steps[-1] - p.tail_frac * (f.steps[-1] - f.steps[0])
        after_best = f.values[f.steps > best_step]
        tail_vals = f.values[(f.steps >= t0) & (f.steps > best_step)]
        # "stays up" is read from tail_points logged points after the best at least: a
        # sparse log's last tail_frac of steps may hold one or two points (a per-epoch
        # log's last epoch, a per-step log's last batch), and a median of two is their
        # mean, so one spike at the end of a log would read as a level; fewer points
        # after the best than that and the log cannot show the loss stays up
        if len(after_best) < p.tail_points:
            return []
        if len(tail_vals) < p.tail_points:
            tail_vals = after_best[-p.tail_points:]
        tail = float(np.median(tail_vals))
        rise = tail - best
        drop = early_drop(ctx, s)
        nz = noise(ctx, s)
        # the noise that matters is the one around the level the loss settled at (the last
        # tail_frac of steps, at least min_points points): a run that thrashed early (too
        # large a step) and then sat still at a worse level has a huge whole-run noise
        # that would hide the rise
        settled = f.values[f.steps > best_step]
        k = max(int(p.min_points), len(tail_vals))
        if len(settled) >= k:
            nz = min(nz, signals.noise_floor(settled[-k:]))
        positive = bool(np.all(f.values > 0)) and best > 0
        # |best| is a meaningful unit only for a positive loss; a negative-by-design loss
        # has an arbitrary offset, so there only its early drop and noise set the scale
        rel = p.rel_floor * best if positive else 0.0
        scale = max(drop, rel, p.noise_mult * nz, 1e-12)
        by_drop = rise >= p.explode_factor * scale
        by_ratio = positive and tail >= p.ratio_factor * best and rise >= p.noise_mult * nz
        if not (by_drop or by_ratio):
            return []
        early: float | None = None
        fine_first: bool | None = None
        if positive or s.role == Role.VAL_LOSS:
            from diagnose.detectors import progress

            c = progress.curve(s)
            early = progress.early_level(c) if c is not None else None
            if early is None or not positive:
                return []
            # a train cross-entropy's untrained level is ln C where the class count is
            # known: a first logged level below it had already learned, and "back at its
            # start" or "3x its start" is read against the untrained model, not it
            n_cls = _num_classes(ctx)
            if s.role != Role.VAL_LOSS and n_cls is not None and n_cls >= 2 \
                    and cross_entropy_like(ctx, s, f.values):
                early = max(early, signals.chance_loss(n_cls))
            fine_first = (s.role != Role.VAL_LOSS and best <= p.fine_share * early
                          and tail >= p.back_share * early)
            if tail < p.start_factor * early and not fine_first:
                return []
        half = best + 0.5 * rise
        after = np.flatnonzero((ss > best_step) & (sm >= half))
        if len(after) == 0:
            return []
        onset = float(ss[after[0]])
        since = sm[ss >= onset]
        sustained = float(np.mean(since >= half))
        if sustained < p.min_sustained:
            return []
        onset_step = round(onset)
        ev = DIV002.Evidence(
            label=loss_label(s), best=best, best_step=round(best_step), tail_median=tail,
            rise=rise, early_drop=drop, noise=nz, scale=scale,
            ratio_to_best=tail / best if positive else None, onset_step=onset_step,
            sustained_share=sustained, explode_factor=p.explode_factor,
            ratio_factor=p.ratio_factor, rel_floor=p.rel_floor, noise_mult=p.noise_mult,
            tail_frac=p.tail_frac, early_level=early,
            start_factor=p.start_factor if early is not None else None,
            fine_first=fine_first,
        )
        return [_measured(ctx, Found(s.tag, onset_step, ev), float(ev.best_step),
                          finite_number(ev.best), finite_number(ev.ratio_to_best))]

    def message(self, ev: DIV002.Evidence) -> str:
        how = (f"{fmt(ev.ratio_to_best)}x its best" if ev.ratio_to_best is not None
               else f"{fmt(ev.rise / max(ev.early_drop, 1e-12))}x its early drop")
        return (f"{ev.label} rises from its best {fmt(ev.best)} at step {ev.best_step} to "
                f"{fmt(ev.tail_median)} at the end of the run ({how}) and stays up from "
                f"step {ev.onset_step}")


_CE_NAME = signals.CE_LOSS_NAME  # one owner: a loss named cross-entropy


def calibrated_ce_ceiling(accuracy: float, max_chance_loss: float, credit: float) -> float:
    """The most cross-entropy a calibrated classifier with top-1 ``accuracy`` costs over at
    most C classes, ln C = ``max_chance_loss``: its top class at probability a, the rest
    spread evenly, H(a) + (1 - a) ln(C - 1) (ln C itself at a = 1/C).  ``a`` is clipped to
    [1/C, ``credit``]: a logged accuracy of 1 (a batch, a small set) does not mean the
    model is certain, and the ceiling would be 0."""
    from diagnose.detectors.progress import calibrated_loss

    a = min(max(accuracy, math.exp(-max_chance_loss)), credit)
    return calibrated_loss(a, math.exp(max_chance_loss)) if a < 1 else 0.0


def _thrashing(c: Any, frac: float, level: float) -> float:
    """The smaller share of raw points at or above ``level`` in the two halves of the
    last ``frac`` of the run (a loss that keeps returning there over a long part of the
    run, not one spike nor a blow-up it recovered from); 0 when either half has fewer
    than 2 points."""
    cut = float(c.steps[-1] - frac * c.span)
    mid = float(c.steps[-1] - frac * c.span / 2)
    first = c.values[(c.steps >= cut) & (c.steps < mid)]
    second = c.values[c.steps >= mid]
    if len(first) < 2 or len(second) < 2:
        return 0.0
    return min(float(np.mean(first >= level)), float(np.mean(second >= level)))


def _thrashing_swings(c: Any, frac: float, factor: float,
                      floor: float) -> tuple[float, float]:
    """Thrashing read on the loss's own low points, for a start whose untrained level the
    log does not show (blown at its first point, class count unknown): in each half of
    the last ``frac`` of the run, the share of raw points at ``factor`` times that half's
    lowest point or more (and at ``floor`` or more).  Returns the smaller share and the
    lower of the two halves' levels; (0, floor) when either half has fewer than 2 points.
    A loss that keeps leaping back to ``factor`` x where it got down to, over a long part
    of the run, is thrashing whatever its chance level; minibatch noise at a good level
    stays under ``floor``."""
    cut = float(c.steps[-1] - frac * c.span)
    mid = float(c.steps[-1] - frac * c.span / 2)
    shares, levels = [], []
    for part in (c.values[(c.steps >= cut) & (c.steps < mid)], c.values[c.steps >= mid]):
        if len(part) < 2:
            return 0.0, floor
        level = max(floor, factor * float(np.min(part)))
        shares.append(float(np.mean(part >= level)))
        levels.append(level)
    return min(shares), min(levels)


def _num_classes(ctx: RuleContext) -> int | None:
    """The run's class count (signals.infer_num_classes), once per run for every rule."""
    return ctx.cached("num_classes", lambda: signals.infer_num_classes(ctx.run, ctx.roles))


def cross_entropy_like(ctx: RuleContext, s: Series, fin: np.ndarray) -> bool:
    """Non-negative and plausibly a cross-entropy: named so (language-model losses too),
    or the run is a classification (class count known or an accuracy metric logged).
    A sum of loss components (a detector's box + cls + dfl) is not one."""
    if len(fin) == 0 or np.any(fin < 0) or "+" in s.tag:
        return False
    if _CE_NAME.search(s.tag):
        return True
    if any(m.metric == "accuracy" for m in ctx.roles.by_tag.values()):
        return True
    return _num_classes(ctx) is not None


@rule
class DIV003(_Diverging, Rule["DIV003.Params", "DIV003.Evidence"]):
    """The train loss (val when no train loss is logged) is enormous: ``rel_max`` x its
    own early magnitude at any point, or, for a cross-entropy-like loss, above
    ``ce_abs_max`` (CE of a sane model is a few units; detectron2's warmup start near 86
    is not astronomical)."""

    id = "DIV003"
    detector = "astronomical_loss"

    @dataclass(frozen=True)
    class Params(RuleParams):
        rel_max: float = param(P.AT_LEAST_ONE)
        ce_abs_max: float = param(P.POSITIVE)
        early_frac: float = param(P.SHARE)
        recover_factor: float = param(P.AT_LEAST_ONE)
        tail_frac: float = param(P.SHARE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        step: int = internal(0)
        by_ce: bool = internal(False)
        value: float = 0.0
        max_abs: float = 0.0
        early_magnitude: float = 0.0
        late_level: float = 0.0
        cross_entropy_like: bool = False
        points_over: int | None = None
        rel_max: float = 0.0
        ce_abs_max: float = 0.0
        recover_factor: float = 0.0
        blowup: Blowup | None = field(default=None, metadata={"json": False})

    def detect(self, ctx: RuleContext,
               p: DIV003.Params) -> list[Found[DIV003.Evidence]] | None:
        losses = main_losses(ctx)
        if not losses:
            return None
        # divergence is a training failure: an astronomical val loss next to a sane train
        # loss is an evaluation problem (batch-norm statistics, overconfidence), not this
        train = [s for s in losses if s.role == Role.TRAIN_LOSS]
        out = []
        for s in train or losses:
            f = finite(ctx, s)
            if len(f) == 0:
                continue
            v = f.values
            span = f.steps[-1] - f.steps[0]
            head = v[f.steps <= f.steps[0] + p.early_frac * span]
            head = head if len(head) >= 3 else v[:3]
            early = float(np.median(np.abs(head)))
            ce = cross_entropy_like(ctx, s, v)
            idx = None
            by_ce = False
            if early > 0:
                over = np.flatnonzero(np.abs(v) >= p.rel_max * early)
                if len(over):
                    idx = int(over[0])
            if ce:
                over = np.flatnonzero(v >= p.ce_abs_max)
                if len(over) and (idx is None or over[0] < idx):
                    idx = int(over[0])
                    by_ce = True
            if idx is None:
                continue
            # one astronomical spike the loss comes back from (DESIGN.md: not
            # divergence) is quiet: its late level is back under recover_factor x the
            # early magnitude (and under ce_abs_max for a cross-entropy); whether that
            # level is still far above the untrained loss is DIV005's question
            t0 = f.steps[-1] - p.tail_frac * span
            late_v = v[f.steps >= t0]
            late = float(np.median(np.abs(late_v if len(late_v) >= 3 else v[-3:])))
            if late < p.recover_factor * early and not (ce and late >= p.ce_abs_max):
                continue
            step = int(f.steps[idx])
            ev = DIV003.Evidence(
                label=loss_label(s), step=step, by_ce=by_ce, value=float(v[idx]),
                max_abs=float(np.max(np.abs(v))), early_magnitude=early, late_level=late,
                cross_entropy_like=ce,
                points_over=(int(np.sum(np.abs(v) >= p.rel_max * early)) if early > 0
                             else None),
                rel_max=p.rel_max, ce_abs_max=p.ce_abs_max, recover_factor=p.recover_factor,
            )
            peak, base = finite_number(ev.max_abs), finite_number(ev.early_magnitude)
            out.append(_measured(ctx, Found(s.tag, step, ev), None, None,
                                 peak / base if peak is not None and base else None))
        return out

    def message(self, ev: DIV003.Evidence) -> str:
        if ev.by_ce:
            reason = f"above {fmt(ev.ce_abs_max)}, impossible for a working cross-entropy"
        else:
            with np.errstate(over="ignore"):
                factor = abs(ev.value) / ev.early_magnitude
            reason = f"{fmt(factor)}x its early magnitude {fmt(ev.early_magnitude)}"
        return (f"{ev.label} reaches {fmt(ev.value)} at step {ev.step}, {reason}, and is "
                f"still at {fmt(ev.late_level)} at the end of the run")


@rule
class DIV004(_Diverging, Rule["DIV004.Params", "DIV004.Evidence"]):
    """Train loss trends up over most of the run: Theil-Sen slope with its CI above 0,
    Kendall tau past ``min_tau``, the fitted rise ``min_effect`` noise sigmas and
    ``min_rel_rise`` of the loss's scale, all after skipping the first ``skip_frac``."""

    id = "DIV004"
    detector = "loss_trending_up"

    @dataclass(frozen=True)
    class Params(RuleParams):
        skip_frac: float = param(P.START_SKIP)
        min_tau: float = param(P.TAU)
        min_effect: float = param(P.NON_NEGATIVE)
        min_rel_rise: float = param(P.NON_NEGATIVE)
        min_points: int = param(P.COUNT)
        worse_min_points: int = param(P.COUNT)
        worse_rise: float = param(P.NON_NEGATIVE)
        worse_never: float = param(P.SHARE)
        min_chance_loss: float = param(P.POSITIVE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        branch: str = "trend"
        val_first: float | None = optional()
        val_end: float | None = optional()
        slope_per_step: float = 0.0
        slope_ci: list[float] = field(default_factory=list)
        kendall_tau: float = 0.0
        fitted_rise: float = 0.0
        fitted_start: float = 0.0
        fitted_end: float = 0.0
        effect_noise_sigmas: float = 0.0
        relative_rise: float = 0.0
        window_start_step: int = 0
        points: int = 0
        min_tau: float = 0.0
        min_effect: float = 0.0
        min_rel_rise: float = 0.0
        skip_frac: float = 0.0
        blowup: Blowup | None = field(default=None, metadata={"json": False})

    def detect(self, ctx: RuleContext,
               p: DIV004.Params) -> list[Found[DIV004.Evidence]] | None:
        s = ctx.series(Role.TRAIN_LOSS)
        if s is None or not len(s):
            return None
        f = finite(ctx, s)
        worse = self._ends_worse(ctx, s, f, p)
        if worse is not None:
            return [worse]
        if len(f) < p.min_points:
            return []
        start = f.steps[0] + p.skip_frac * (f.steps[-1] - f.steps[0])
        w = signals.window(f, start=start)
        if len(w) < p.min_points:
            return []
        # cheap exit before Theil-Sen: a window that ends no higher than it starts is not
        # rising
        k = max(len(w) // 5, 1)
        if np.median(w.values[-k:]) <= np.median(w.values[:k]):
            return []
        tr = ctx.cached(("trend", s.tag, start),
                        lambda: signals.robust_trend(w.steps, w.values))
        if not tr.rising(p.min_effect, p.min_tau):
            return []
        scale = max(early_drop(ctx, s), abs(tr.start), 1e-12)
        rel = tr.change / scale
        if rel < p.min_rel_rise:
            return []
        # a val loss that ends no higher than where it stood when the train loss began to
        # rise says the model is not getting worse: a train-mode loss raised by dropout or
        # noise while the model is fine is not divergence
        if self._val_holds(ctx, float(w.steps[0]), p):
            return []
        # a cross-entropy still below the untrained level at the end (ln C, or ln 2 with
        # no class count) is a model better than an untrained one: weight decay or a
        # regulariser pulling it back is underfit's, not a blow-up
        if self._below_untrained(ctx, s, f, p, float(np.median(w.values[-k:]))):
            return []
        step = int(w.steps[0])
        ev = DIV004.Evidence(
            label=loss_label(s), slope_per_step=tr.slope, slope_ci=[tr.slope_lo, tr.slope_hi],
            kendall_tau=tr.tau, fitted_rise=tr.change, fitted_start=tr.start,
            fitted_end=tr.end, effect_noise_sigmas=tr.effect, relative_rise=rel,
            window_start_step=step, points=tr.n, min_tau=p.min_tau, min_effect=p.min_effect,
            min_rel_rise=p.min_rel_rise, skip_frac=p.skip_frac,
        )
        # the blow-up for the advice: the loss turns at the window start and rises to the
        # end (the trend's fitted levels, not a spike), its minimum taken over the run
        # before the end; measured at the window start, the rise had no points to show
        rise = tr.end / tr.start if tr.start > 0 and tr.end > 0 else None
        return [_measured(ctx, Found(s.tag, step, ev), float(ev.window_start_step), None,
                          rise, bad=float(w.steps[-1]))]

    @staticmethod
    def _below_untrained(ctx: RuleContext, s: Series, f: Series, p: DIV004.Params,
                         end: float) -> bool:
        """A cross-entropy-like loss whose ``end`` is below the untrained level: ln C with
        the class count known, else ``min_chance_loss`` (ln 2, the least untrained level
        of any classifier)."""
        if not cross_entropy_like(ctx, s, f.values):
            return False
        n = _num_classes(ctx)
        return end < (signals.chance_loss(n) if n is not None and n >= 2 else p.min_chance_loss)

    @staticmethod
    def _val_holds(ctx: RuleContext, start: float, p: DIV004.Params) -> bool:
        """The val loss (``min_points`` evaluations from ``start`` on) ends, as the median of
        its last 20%, no higher than its median over the first 20% of them."""
        val = ctx.series(Role.VAL_LOSS)
        if val is None:
            return False
        vf = val.finite
        v = vf.values[vf.steps >= start]
        if len(v) < p.min_points:
            return False
        k = max(2, round(0.2 * len(v)))
        return bool(np.median(v[-k:]) <= np.median(v[:k]))

    def _ends_worse(self, ctx: RuleContext, s: Series, f: Series,
                    p: DIV004.Params) -> Found[DIV004.Evidence] | None:
        """Training made the model worse: train and val losses both end ``worse_rise``
        above their first logged values and never got below ``worse_never`` of them (a
        warmup rise that then falls, or a spike that recovers, ends below its start).
        Judged from ``worse_min_points`` train points: a trend test needs many, this
        needs the val loss's ``min_points`` evaluations to agree.  A cross-entropy must
        end at or above the untrained model's loss: ln C with the class count known, else
        ``min_chance_loss`` (ln 2, the least of any classifier)."""
        val = ctx.series(Role.VAL_LOSS)
        vf = val.finite if val is not None else None
        if vf is None or len(f) < p.worse_min_points or len(vf) < p.min_points:
            return None
        ends = []
        for c in (f, vf):
            v = c.values
            if np.any(v <= 0):
                return None  # ratios need a zero
            k = max(2, round(0.2 * len(v)))
            end = float(np.median(v[-k:]))
            if not (end >= (1.0 + p.worse_rise) * v[0] and np.min(v) >= p.worse_never * v[0]):
                return None
            ends.append(end)
        # worse than before is not yet blown up: a cross-entropy still below the
        # untrained level (ln C, or ln 2 with no class count: weight decay pulling a
        # model back) is underfit
        if self._below_untrained(ctx, s, f, p, ends[0]):
            return None
        rel = ends[0] / float(f.values[0]) - 1.0
        ev = DIV004.Evidence(
            label=loss_label(s), branch="ends_worse", val_first=float(vf.values[0]),
            val_end=ends[1], fitted_rise=ends[0] - float(f.values[0]),
            fitted_start=float(f.values[0]), fitted_end=ends[0], relative_rise=rel,
            window_start_step=int(f.steps[0]), points=len(f), min_tau=p.min_tau,
            min_effect=p.min_effect, min_rel_rise=p.min_rel_rise, skip_frac=p.skip_frac,
        )
        # the blow-up for the advice: from the first point (the best) to the worst one
        worst = int(np.argmax(f.values))
        return _measured(ctx, Found(s.tag, int(f.steps[0]), ev), float(f.steps[0]),
                         float(f.values[0]), float(f.values[worst] / f.values[0]),
                         bad=float(f.steps[worst]))

    def message(self, ev: DIV004.Evidence) -> str:
        if ev.branch == "ends_worse":
            return (f"{ev.label} ends at {fmt(ev.fitted_end)}, {100 * ev.relative_rise:.0f}% "
                    f"above its first value {fmt(ev.fitted_start)}, and the val loss at "
                    f"{fmt(ev.val_end)} above its first {fmt(ev.val_first)}: neither ever "
                    f"got better than where the run started")
        return (f"{ev.label} trends up from step {ev.window_start_step} to the end, rising "
                f"{fmt(ev.fitted_rise)} ({fmt(100 * ev.relative_rise)}% of its scale, "
                f"Kendall tau {ev.kendall_tau:.2f})")


@rule
class DIV005(_Diverging, Rule["DIV005.Params", "DIV005.Evidence"]):
    """The loss settles far above the untrained model's level, or gives back all of its
    progress (DESIGN.md: "rises far above its starting level ... and does not come back").

    The reference level L0 is the untrained loss: ln C for a C-class cross-entropy when C
    is known; else, for a cross-entropy-like loss, the lower of its own starting level and
    ``max_chance_loss`` (no plausible chance level is higher, so a loss logged already
    blown up is judged against it); else (MSE and other losses) its own starting level.
    Fires when the loss's late level is ``far_factor`` x L0 or more, or when, after its
    smoothed best got to ``fine_frac`` x L0, the late level is back at ``back_frac`` x L0
    (the start, or chance) with the val loss, when logged, back at its own start too.
    Judged on the train loss (val when none is logged): a huge val loss while train is
    fine is an evaluation problem (batchnorm_collapse), not divergence.
    """

    id = "DIV005"
    detector = "loss_above_untrained"

    @dataclass(frozen=True)
    class Params(RuleParams):
        far_factor: float = param(P.AT_LEAST_ONE)
        max_chance_loss: float = param(P.POSITIVE)
        fine_frac: float = param(P.SHARE)
        back_frac: float = param(P.SHARE)
        head_frac: float = param(P.SHARE)
        tail_frac: float = param(P.SHARE)
        unfit_factor: float = param(P.AT_LEAST_ONE)
        thrash_share: float = param(P.SHARE)
        thrash_frac: float = param(P.SHARE)
        min_chance_loss: float = param(P.POSITIVE)
        acc_bound_factor: float = param(P.AT_LEAST_ONE)
        blown_bound_factor: float = param(P.AT_LEAST_ONE)
        max_accuracy_credit: float = param(P.SHARE)
        blown_share: float = param(P.SHARE)
        level_points: int = param(P.COUNT)
        min_points: int = param(P.COUNT)
        short_min_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        val_label: str = internal("")
        accuracy_label: str = internal("")
        criterion: str = "far_above"
        level: float = 0.0
        reference: float = 0.0
        reference_kind: str = ""
        ratio_to_reference: float = 0.0
        start_level: float = 0.0
        best: float = 0.0
        best_step: int = 0
        onset_step: int = 0
        num_classes: int | None = None
        val_level: float | None = optional()
        val_start_level: float | None = optional()
        thrash_share_seen: float = 0.0
        #: against its own start: the share of the smoothed curve at far_factor x the
        #: start or more (a blow-up sustained over most of the run)
        blown_share_seen: float | None = optional()
        #: thrashing: the least share of raw points at or above the thrash level in
        #: either half of the last thrash_frac of the run, and that level
        thrash_late_share: float | None = optional()
        thrash_level: float | None = optional()
        #: the L0 it is sized on (ref, or min_chance_loss where higher for a cross-entropy)
        thrash_base: float | None = optional()
        thrash_frac: float | None = optional()
        #: thrashing read on the loss's own low points (far_factor x each half's lowest
        #: point, at least far_factor x min_chance_loss): thrash_base is that low point
        thrash_own_lows: bool | None = optional()
        accuracy: float | None = optional()
        accuracy_bound: float | None = optional()
        far_factor: float = 0.0
        acc_bound_factor: float | None = optional()
        #: the first logged level was already above max_chance_loss (blown at the start),
        #: so the ceiling itself was the bound (blown_bound_factor)
        blown_at_start: bool | None = optional()
        #: the chance level the ceiling is sized on: max_chance_loss, or ln C where higher
        chance_ceiling: float | None = optional()
        max_chance_loss: float = 0.0
        fine_frac: float = 0.0
        back_frac: float = 0.0
        blowup: Blowup | None = field(default=None, metadata={"json": False})

    def detect(self, ctx: RuleContext,
               p: DIV005.Params) -> list[Found[DIV005.Evidence]] | None:
        from diagnose.detectors import progress

        s = _train_or_val(ctx)
        c = progress.curve(s)
        if s is None or c is None:
            return None
        if not np.all(c.values >= 0):
            return []  # a negative-by-design loss has no untrained level to compare with
        # a log of fewer than min_points points (a per-epoch log of a run stopped after an
        # epoch or two: each point the mean of an epoch of steps) has no trend to read,
        # but a loss that is at every logged point far above a real untrained level (ln C,
        # the largest plausible chance level, what a calibrated model at its accuracy
        # costs) is blown over the whole log: read with its lowest point as the late level
        short = len(c) < p.min_points
        if short and len(c) < p.short_min_points:
            return []
        # the untrained level is closest to the first logged point: a loss that blows up
        # within its first head_frac of steps has a head median that is already blown
        # (a first point of exactly 0 is a logging artefact, not a level)
        head, first = progress.start_level(c, p.head_frac, p.level_points), float(c.values[0])
        start = min(first, head) if first > 0 else head
        late = progress.end_level(c, p.tail_frac, p.level_points)
        if short:
            late = float(np.min(c.values))
        n_cls = _num_classes(ctx)
        if n_cls is not None:
            ref, kind = signals.chance_loss(n_cls), "ln C"
        elif cross_entropy_like(ctx, s, c.values) and start > p.max_chance_loss:
            ref, kind = p.max_chance_loss, "largest plausible chance level"
        else:
            ref, kind = start, "starting level"
        if ref <= 0:
            return []
        ss, sm = smoothed(ctx, s)
        ok = np.isfinite(sm)
        ss, sm = ss[ok], sm[ok]
        if not len(sm):
            return []
        i = int(np.argmin(sm))
        best, best_step = float(sm[i]), float(ss[i])
        val_late = val_start = val_best = None
        metric = s.tag
        v = progress.curve(ctx.series(Role.VAL_LOSS)) if s.role == Role.TRAIN_LOSS else None
        if v is not None and len(v) >= p.level_points:
            vhead, vfirst = progress.start_level(v, p.head_frac, p.level_points), v.values[0]
            val_start = min(float(vfirst), vhead) if vfirst > 0 else vhead
            val_late = progress.end_level(v, p.tail_frac, p.level_points)
            val_best = float(np.nanmin(smoothed(ctx, v.series)[1]))
        own = kind == "starting level"
        # the val loss's own reference: the same L0 when it is a real untrained level;
        # its own starting level when L0 is only the train loss's first logged point
        vref = (val_start if own else ref) or 0.0
        # the train loss is not fine when its late level is well above the untrained one,
        # or when it thrashes up to far above it (its median can sit at a good level
        # between blow-ups); only then does a val loss far above L0 count: a huge val
        # loss next to a fine train loss is batchnorm_collapse's, not divergence
        # (thrashing read as the thrashing criterion reads it, in each half of the last
        # thrash_frac of the run: one spike in a short tail window, the likelier the
        # sparser the log, is not thrashing)
        thrash = _thrashing(c, p.thrash_frac, p.far_factor * ref)
        train_bad = late >= p.unfit_factor * ref or thrash >= p.thrash_share
        # ... and, against its own first level, a cross-entropy that ends below the least
        # chance level of any classifier is at a good level (it beats every chance guess):
        # fine, whatever its ratio to a first logged point taken after training began
        if own and late < p.min_chance_loss and cross_entropy_like(ctx, s, c.values):
            train_bad = False
        # a give-back against a first logged point (which may come after an epoch of
        # training: a fine-tune starting low, warm restarts wander back to it) needs the
        # val loss to show it on its own too: down to fine_frac of its start (and of the
        # train loss's: a val loss far above train from the start is a broken eval,
        # batchnorm_collapse's), then back;
        # against a real untrained level the val loss must at least be back at its start
        # (a train-mode loss raised by dropout or noise while the model is fine is not)
        val_gave_back = val_late is None or val_start is None or (
            val_late >= p.back_frac * val_start
            and (not own or (val_best is not None
                             and val_best <= p.fine_frac * min(val_start, start))))
        if own and val_late is None:
            val_gave_back = False
        # against a real untrained level, "after being fine" is the model's, not one
        # train minibatch's: the val loss, when logged, got down to fine_frac x L0 too
        if not own and val_best is not None and val_best > p.fine_frac * ref:
            val_gave_back = False
        # the train loss against the most a calibrated model at its logged accuracy could
        # cost (no class count needed); the train split's accuracy, else the val split's
        # (a train accuracy is at least the val's, so its ceiling is the lower one); a
        # val loss alone only when blown at its first evaluation: an overfit model is
        # overconfident on val, but starts sane
        acc_c = acc_level = acc_bound = None
        # a loss whose first logged level is already above any plausible chance level was
        # blown at the start: the blow-up has not healed while its late level is still above
        # what a calibrated model at its accuracy could cost at all (factor 1), where a loss
        # that started sane needs acc_bound_factor x it (a train-mode loss with dropout or a
        # penalty term sits somewhat above the eval-mode accuracy's ceiling)
        # (over at most e^max_chance_loss classes, or the known C where ln C is higher: a
        # language model's vocabulary)
        top = max(p.max_chance_loss, ref) if n_cls is not None else p.max_chance_loss
        blown = start > top
        acc_factor = p.blown_bound_factor if blown else p.acc_bound_factor
        # (with no train loss logged, a val loss blown at its first evaluation is judged
        # so too: an overconfident overfit val loss starts sane)
        if (s.role == Role.TRAIN_LOSS or blown) and cross_entropy_like(ctx, s, c.values):
            acc_c = (progress.accuracy_curve(ctx, Role.TRAIN_METRIC)
                     or progress.accuracy_curve(ctx, Role.VAL_METRIC))
        if acc_c is not None:
            acc_level = -progress.end_level(acc_c, p.tail_frac, p.level_points)
            acc_bound = calibrated_ce_ceiling(acc_level, top, p.max_accuracy_credit)
        # thrashing at a high level: far_factor x L0, where L0 is at least the least
        # chance level of any classifier for a cross-entropy (a fine-tune's first logged
        # loss near 0 is no untrained level)
        thrash_base = max(ref, p.min_chance_loss) if cross_entropy_like(ctx, s, c.values) else ref
        # against its own start, a loss that already swung to the thrash level as often
        # within its head (the start itself) has not risen from its start: a noisy
        # per-step loss whose first logged point is one lucky minibatch (the likelier the
        # sparser the log) swings far above that point from the start on
        in_head = progress.in_start(c, p.head_frac)
        head_share = float(np.mean(c.values[in_head] >= p.far_factor * thrash_base)) \
            if own else 0.0
        thrash_seen = _thrashing(c, p.thrash_frac, p.far_factor * thrash_base)
        # or, for a cross-entropy, far_factor x its own low points in each half (at
        # least far_factor x min_chance_loss): the untrained level a blown start hides
        swings_seen, swing_level = (
            _thrashing_swings(c, p.thrash_frac, p.far_factor,
                              p.far_factor * p.min_chance_loss)
            if cross_entropy_like(ctx, s, c.values) else (0.0, 0.0))
        own_lows = False
        # judged against its own first level, a cross-entropy that ends below the least
        # chance level of any classifier beats every chance guess: a good level, which
        # DESIGN.md's divergence never ends at (3x a fine-tune's first logged loss near 0,
        # or 3x one lucky early minibatch, or all the way back to it, is still near 0)
        good_end = own and cross_entropy_like(ctx, s, c.values) and late < p.min_chance_loss
        # (against its own start, the late level must also be above the head's median
        # where the head holds level_points points: a loss that ends below where its first
        # steps sat has not risen, its first point was a lucky low one; a head of fewer
        # points borrows later ones, which a blow-up may already have raised)
        # ... unless the smoothed loss sat at far_factor x that first level or more over
        # blown_share of the run or more: a blow-up within the head raised its median, and
        # a loss blown for most of the run is no lucky first point (a lucky minibatch is
        # one point the smoothed curve does not stay 3x above)
        # and where every point after the first within the head (level_points points or
        # more: a jump read on fewer is one noisy neighbour) is far_factor x it or more:
        # the loss jumped from its first level at once and stayed there, where a lucky
        # minibatch's noisy neighbours come back near it
        after_first = c.values[in_head][1:]
        blown_seen = float(np.mean(sm >= p.far_factor * ref)) if own else 0.0
        blown_start = (own and int(in_head.sum()) >= p.level_points
                       and float(np.min(after_first)) >= p.far_factor * ref
                       and blown_seen >= p.blown_share)
        low_first = own and int(in_head.sum()) >= p.level_points and late <= head
        lucky_first = low_first and not blown_start
        # a train loss above every plausible chance level from its first point while the
        # same run's val loss sits below that level from its first evaluation to its end,
        # and the train loss falls: the train loss is on another scale (summed over the
        # batches of an epoch, not averaged), not blown; a blown model's eval-mode loss
        # is blown too (DESIGN.md: sustained far above chance)
        other_scale = (kind == "largest plausible chance level" and s.role == Role.TRAIN_LOSS
                       and v is not None and val_late is not None
                       and float(np.nanmax(v.values)) < p.max_chance_loss and late < start
                       # a sum over an epoch's batches is many times their mean: a train
                       # loss within far_factor x the val loss is on the same scale
                       and late >= p.far_factor * val_late)
        if other_scale:
            return []
        if late >= p.far_factor * ref and not good_end and not lucky_first:
            criterion, threshold, after = "far_above", p.far_factor * ref, float(ss[0])
        elif acc_bound is not None and late >= acc_factor * acc_bound:
            criterion, threshold = "above_accuracy_ceiling", acc_factor * acc_bound
            after = float(ss[0])
        elif v is not None and val_late is not None and vref > 0 and train_bad \
                and val_late >= p.far_factor * vref:
            vs, vm = smoothed(ctx, v.series)
            keep = np.isfinite(vm)
            ss, sm, metric = vs[keep], vm[keep], v.series.tag
            criterion, threshold, after = "val_far_above", p.far_factor * vref, float(v.steps[0])
        elif (best <= p.fine_frac * ref and late >= p.back_frac * ref and late > best
              # (a good level for a give-back is below back_frac x ln 2: a loss
              # within back_frac of ln 2 is back at a binary classifier's untrained level)
              and val_gave_back
              and not (good_end and late < p.back_frac * p.min_chance_loss)):
            criterion, threshold, after = "back_to_start", p.back_frac * ref, best_step
        elif blown_start and late >= p.back_frac * ref and not good_end:
            # blown up from its first logged level over most of the run and not back
            # below it at the end (DESIGN.md: rises far above its starting level and does
            # not come back to a good level)
            criterion, threshold, after = "blown_not_back", p.far_factor * ref, float(ss[0])
        elif thrash_seen >= p.thrash_share and thrash_seen > head_share:
            criterion, threshold = "thrashing", p.far_factor * thrash_base
            after = float(c.steps[-1] - p.thrash_frac * c.span)
        elif swings_seen >= p.thrash_share:
            criterion, threshold, own_lows = "thrashing", swing_level, True
            thrash_seen, thrash_base = swings_seen, swing_level / p.far_factor
            after = float(c.steps[-1] - p.thrash_frac * c.span)
        else:
            return []
        if short and not ((criterion == "far_above" and not own)
                          or criterion == "above_accuracy_ceiling"):
            return []
        # onset: the first smoothed point over the threshold (after the best, for a
        # give-back) from which the loss stays over it to the end, in the median
        over = (ss >= after) & (sm >= threshold)
        idx = np.flatnonzero(over)
        onset = float(ss[idx[0]]) if len(idx) else float(c.steps[-1])
        for j in idx:
            if np.median(sm[j:]) >= threshold:
                onset = float(ss[j])
                break
        if criterion == "thrashing":
            # the median sits below a thrashing loss: its first raw point up there
            onset = float(c.steps[(c.steps >= after) & (c.values >= threshold)][0])
        ev = DIV005.Evidence(
            label=loss_label(s), criterion=criterion, level=late, reference=ref,
            reference_kind=kind, ratio_to_reference=late / ref, start_level=start,
            best=best, best_step=round(best_step), onset_step=round(onset),
            num_classes=n_cls, val_level=val_late, val_start_level=val_start,
            val_label=loss_label(v.series) if v is not None else "",
            thrash_share_seen=thrash,
            blown_share_seen=blown_seen if criterion == "blown_not_back"
            or (criterion == "far_above" and low_first) else None,
            far_factor=p.far_factor,
            max_chance_loss=p.max_chance_loss,
            fine_frac=p.fine_frac, back_frac=p.back_frac,
        )
        # the advice sizes its LR cut by how violent the blow-up was: against the
        # untrained level for a loss that sits far above it (from the start, often), and
        # against the best for a give-back
        if criterion == "above_accuracy_ceiling" and acc_c is not None:
            # the accuracy's evidence only where it is the criterion
            ev = replace(ev, accuracy=acc_level, accuracy_bound=acc_bound,
                         accuracy_label=acc_c.series.tag, chance_ceiling=top,
                         acc_bound_factor=acc_factor, blown_at_start=blown)
        if criterion == "thrashing":
            ev = replace(ev, thrash_late_share=thrash_seen, thrash_level=threshold,
                         thrash_base=thrash_base, thrash_frac=p.thrash_frac,
                         thrash_own_lows=own_lows or None)
        if criterion == "far_above":
            rise = max(start, late) / ref
        elif criterion == "blown_not_back":
            rise = float(np.max(sm)) / ref
        elif criterion == "thrashing":
            rise = float(np.max(c.values[c.steps >= after])) / thrash_base
        elif criterion == "val_far_above":
            rise = (val_late or 0.0) / vref
        elif criterion == "above_accuracy_ceiling":
            rise = max(start, late) / (acc_bound or 1.0)
        else:
            rise = late / best if best > 0 else float("nan")
        # a thrashing loss's smoothed best may come after its blow-ups (a restart's low
        # LR at the end): the blow-up's turn is then measured before its onset
        turn = None if criterion == "thrashing" else float(ev.best_step)
        return [_measured(ctx, Found(metric, ev.onset_step, ev), turn,
                          None if turn is None else finite_number(ev.best),
                          finite_number(rise))]

    def message(self, ev: DIV005.Evidence) -> str:
        ref = f"{ev.reference_kind} {fmt(ev.reference)}"
        if ev.num_classes is not None:
            ref = f"ln {ev.num_classes} = {fmt(ev.reference)}, the untrained level"
        if ev.criterion == "thrashing":
            if ev.thrash_own_lows:
                ref = (f"{fmt(ev.thrash_base)}, its own low point in that half or ln 2 "
                       f"where higher")
            elif (ev.thrash_base or 0.0) > ev.reference:
                ref = f"{fmt(ev.thrash_base)}, the least chance level of a classifier"
            return (f"{ev.label} thrashes at a high level: over the last "
                    f"{fmt(100 * (ev.thrash_frac or 0.0))}% of the run, in each half, at "
                    f"least {fmt(100 * (ev.thrash_late_share or 0.0))}% of its points are at "
                    f"or above {fmt(ev.thrash_level)} ({fmt(ev.far_factor)}x {ref}), from step "
                    f"{ev.onset_step}")
        if ev.criterion == "val_far_above":
            return (f"{ev.val_label} ends at {fmt(ev.val_level)}, "
                    f"{fmt((ev.val_level or 0.0) / ev.reference)}x {ref}, while "
                    f"{ev.label} is not fine either ({fmt(ev.level)} at the end, "
                    f"at least {fmt(100 * ev.thrash_share_seen)}% of its points in each "
                    f"late half above "
                    f"{fmt(ev.far_factor)}x it), from step {ev.onset_step}")
        if ev.criterion == "above_accuracy_ceiling":
            top = ev.chance_ceiling or ev.max_chance_loss
            up_to = (ev.num_classes if ev.num_classes and top > ev.max_chance_loss
                     else float(f"{math.exp(top):.1g}"))
            blown = (f" (it started at {fmt(ev.start_level)}, above any plausible chance "
                     f"level, ln {up_to:g} = {fmt(top)})"
                     if ev.blown_at_start else "")
            return (f"{ev.label} ends at {fmt(ev.level)}{blown} while {ev.accuracy_label} "
                    f"ends at {fmt(ev.accuracy)}: "
                    f"{fmt(ev.level / (ev.accuracy_bound or 1.0))}x "
                    f"the {fmt(ev.accuracy_bound)} a calibrated model at that accuracy "
                    f"costs over up to {up_to:g} classes (logits blown far beyond what the "
                    f"accuracy explains), above {fmt(ev.acc_bound_factor)}x it from step "
                    f"{ev.onset_step}")
        if ev.criterion == "blown_not_back":
            return (f"{ev.label} blew up from its first level {fmt(ev.reference)}: its "
                    f"smoothed curve sat at {fmt(ev.far_factor)}x it or more over "
                    f"{fmt(100 * (ev.blown_share_seen or 0.0))}% of the run, and it ends at "
                    f"{fmt(ev.level)}, still {fmt(ev.ratio_to_reference)}x that level: it "
                    f"is not back below where it started")
        if ev.criterion == "far_above":
            return (f"{ev.label} ends at {fmt(ev.level)}, {fmt(ev.ratio_to_reference)}x "
                    f"{ref}, and stays above {fmt(ev.far_factor)}x it from step "
                    f"{ev.onset_step}")
        return (f"{ev.label} fell to {fmt(ev.best)} at step {ev.best_step} and is back at "
                f"{fmt(ev.level)} ({fmt(ev.ratio_to_reference)}x {ref}) from step "
                f"{ev.onset_step}: it gave back all its progress")
