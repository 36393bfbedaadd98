"""Gradients, units and the learning rate: exploding/vanishing gradients, dead or
saturated units from activation histograms, a learning rate stuck at zero or never
decayed.

Gradient norms span orders of magnitude, so they are compared in log10 space; a global
norm can come from a scalar (``grad_norm``) or be rebuilt from gradient histograms
(sqrt of the sum of squares) when that is all the run logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
)
from diagnose.detectors import params as P
from diagnose.detectors.progress import kept_learning
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
from diagnose.run import Histogram

# ---------------------------------------------------------------------------
# Gradient norms
# ---------------------------------------------------------------------------

_GRAD_HIST = re.compile(r"(^|[/_.])grad(ient)?s?([/_.]|$)", re.I)


def _hist_l2(h: Histogram) -> float:
    """L2 norm of the tensor a histogram summarises (exact when sum_squares is kept)."""
    if np.isfinite(h.sum_squares) and h.sum_squares >= 0 and (h.num or 0) > 0:
        return float(np.sqrt(h.sum_squares))
    b = h.buckets
    if b.size == 0:
        return float("nan")
    centres = (b[:, 0] + b[:, 1]) / 2
    return float(np.sqrt(np.sum(b[:, 2] * centres**2)))


def grad_norm_series(ctx: RuleContext,
                     all_layers: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(tag, steps, norms): the primary grad-norm scalar (every grad-norm scalar with
    ``all_layers``, e.g. per-layer norms), else one series per gradient histogram tag.
    Cached."""

    def compute() -> list[tuple[str, np.ndarray, np.ndarray]]:
        found = [s for s in ctx.roles.candidates(Role.GRAD_NORM) if len(s)]
        if found:
            return [(s.tag, s.steps, s.values) for s in (found if all_layers else found[:1])]
        out = []
        for tag, hs in ctx.histograms(f"re:{_GRAD_HIST.pattern}").items():
            steps = np.array([h.step for h in hs], dtype="int64")
            norms = np.array([_hist_l2(h) for h in hs])
            steps, idx = np.unique(steps, return_index=True)
            out.append((tag, steps, norms[idx]))
        return out

    return ctx.cached(("grad_norms", all_layers), compute)


def _p10(x: float) -> float:
    """10**x that saturates to inf instead of raising (log levels of absurd norms)."""
    return float("inf") if x > 308 else float(np.power(10.0, float(x)))


def _log_levels(steps: np.ndarray, v: np.ndarray, p: Any) -> dict[str, Any] | None:
    """Early, late and lowest smoothed log10 levels (``p``: min_points, early_frac,
    tail_frac)."""
    ok = np.isfinite(v) & (v > 0)
    st, lv = steps[ok], np.log10(v[ok])
    if len(lv) < p.min_points:
        return None
    span = st[-1] - st[0]
    head = lv[st <= st[0] + p.early_frac * span]
    tail = lv[st >= st[-1] - p.tail_frac * span]
    ss, sm = signals.smooth(st, lv, frac=0.05)
    i = int(np.argmin(sm))
    return {
        "early": float(np.median(head)),
        "tail": float(np.median(tail)),
        "min": float(sm[i]),
        "min_step": round(ss[i]),
        "ss": ss,
        "sm": sm,
    }


@rule
class GRD001(Rule["GRD001.Params", "GRD001.Evidence"]):
    """Gradient norm non-finite, or its late level ``orders`` decades above its lowest
    smoothed level and ``over_early`` decades above its early level (a norm that only
    climbs back from a converged near-zero low to its starting scale predicts nothing).
    A growth the loss did not pay for (it ends at most ``lost_ground_above`` x its level
    where the norm began to grow) is info: on its own a grad-norm state warns only where
    it predicts a failure (DESIGN.md)."""

    id = "GRD001"
    detector = "exploding_gradients"

    @dataclass(frozen=True)
    class Params(RuleParams):
        orders: float = param(P.POSITIVE)
        over_early: float = param(P.ANY_NUMBER)
        early_frac: float = param(P.SHARE)
        tail_frac: float = param(P.SHARE)
        min_points: int = param(P.COUNT)
        lost_ground_above: float = param(P.POSITIVE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        #: the first non-finite value (non-finite branch) or where the growth passes
        #: halfway (growth branch)
        value: float | None = internal()
        step: int = internal(0)
        first_nonfinite_step: int | None = optional()
        nonfinite_points: int | None = optional()
        points: int | None = optional()
        low: float | None = optional()
        low_step: int | None = optional()
        late_level: float | None = optional()
        early_level: float | None = optional()
        growth_factor: float | None = optional()
        orders: float = 0.0
        over_early: float | None = optional()
        tail_frac: float | None = optional()
        #: the main loss where the norm began to grow (its last point within a quarter
        #: of the growth above its low) and at the end (growth branch)
        growth_start_step: int | None = optional()
        loss_at_low: float | None = optional()
        loss_end: float | None = optional()
        kept_learning: bool | None = optional()

    def detect(self, ctx: RuleContext,
               p: GRD001.Params) -> list[Found[GRD001.Evidence]] | None:
        series = grad_norm_series(ctx)
        if not series:
            return None
        out = []
        for tag, steps, v in series:
            bad = ~np.isfinite(v)
            if bad.any():
                i = int(np.argmax(bad))
                out.append(Found(tag, int(steps[i]), GRD001.Evidence(
                    value=float(v[i]), step=int(steps[i]), first_nonfinite_step=int(steps[i]),
                    nonfinite_points=int(bad.sum()), points=len(v), orders=p.orders)))
                continue
            lv = _log_levels(steps, v, p)
            if lv is None:
                continue
            growth = lv["tail"] - lv["min"]
            if growth < p.orders or lv["tail"] - lv["early"] < p.over_early:
                continue
            ss, sm = lv["ss"], lv["sm"]
            up = np.flatnonzero((ss > lv["min_step"]) & (sm >= lv["min"] + growth / 2))
            step = round(ss[up[0]]) if len(up) else lv["min_step"]
            # where the norm began to grow: its last point within a quarter of the growth
            # of its low before passing halfway (a flat low can stretch back to step 0)
            began = np.flatnonzero((ss >= lv["min_step"]) & (ss <= step)
                                   & (sm <= lv["min"] + growth / 4))
            start = float(ss[began[-1]]) if len(began) else float(lv["min_step"])
            at_low, end = _loss_since(ctx, start)
            kept = kept_learning(at_low, end, p.lost_ground_above)
            out.append(Found(tag, step, GRD001.Evidence(
                step=step, low=_p10(lv["min"]), low_step=lv["min_step"],
                late_level=_p10(lv["tail"]), early_level=_p10(lv["early"]),
                growth_factor=_p10(growth), orders=p.orders, over_early=p.over_early,
                tail_frac=p.tail_frac, growth_start_step=round(start), loss_at_low=at_low,
                loss_end=end,
                kept_learning=None if at_low is None else kept), "info" if kept else None))
        return out

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import exploding_advice

        ev = finding.detail
        if not isinstance(ev, GRD001.Evidence):
            return super().advise(ctx, finding)
        step = finite_number(ev.first_nonfinite_step) or (
            float(finding.step) if finding.step is not None else None)
        return exploding_advice(ctx, step, finite_number(ev.low_step) or step,
                                finite_number(ev.growth_factor), finite_number(ev.low),
                                finite_number(ev.late_level),
                                ev.first_nonfinite_step is not None)

    def message(self, ev: GRD001.Evidence) -> str:
        if ev.first_nonfinite_step is not None:
            return (f"gradient norm is {fmt(ev.value)} at step {ev.first_nonfinite_step} "
                    f"({ev.nonfinite_points} of {ev.points} points non-finite)")
        kept = (f"; the loss kept learning ({fmt(ev.loss_at_low)} at step "
                f"{ev.growth_start_step} where the norm began to grow, {fmt(ev.loss_end)} at "
                f"the end)" if ev.kept_learning else "")
        return (f"gradient norm grows {fmt(ev.growth_factor)}x from its low of "
                f"{fmt(ev.low)} at step {ev.low_step} to {fmt(ev.late_level)} late in the "
                f"run, passing halfway at step {ev.step}{kept}")


def _loss_since(ctx: RuleContext, step: float) -> tuple[float | None, float | None]:
    """The main loss's level around ``step`` (median of the points just before it) and at
    the end (median of the last tenth); (None, None) without a positive finite loss."""
    from diagnose.detectors.progress import level

    losses = main_losses(ctx)
    if not losses:
        return None, None
    f = finite(ctx, losses[0])
    if len(f) < 3 or not np.all(f.values > 0):
        return None, None
    st, v = f.steps.astype(float), f.values
    span = float(st[-1] - st[0])
    at = level(st, v, step - 0.05 * span, step)
    end = level(st, v, st[-1] - 0.1 * span, st[-1])
    return at, end


def _loss_stalled(ctx: RuleContext, p: GRD002.Params) -> tuple[bool | None, dict[str, Any]]:
    """Train loss flat over the tail and still far from any progress; None if no loss."""
    losses = main_losses(ctx, ("train", "val"))
    if not losses:
        return None, {}
    s = losses[0]
    f = finite(ctx, s)
    if len(f) < 5:
        return None, {}
    t = signals.tail(f, 0.5)
    tr = signals.robust_trend(t.steps, t.values)
    drop = early_drop(ctx, s)
    head = float(np.median(f.values[: max(3, len(f) // 10)]))
    end = float(np.median(t.values[-max(3, len(t) // 5):]))
    progress = (head - end) / abs(head) if head != 0 else 0.0
    flat = bool(np.isnan(tr.effect) or not tr.falling(3.0, 0.3))
    stalled = flat and progress < p.stall_progress
    return stalled, {"loss_tag": s.tag, "loss_progress": progress, "loss_early_drop": drop,
                     "loss_tail_tau": tr.tau}


def _layer_ratio_found(ctx: RuleContext, p: GRD002.Params) -> Found[GRD002.Evidence] | None:
    """AUTOTRAINER's vanish test across per-layer norms: the weakest layer's late norm is
    below ``layer_abs`` and ``layer_ratio`` x the strongest layer's."""
    levels = []
    for tag, steps, v in grad_norm_series(ctx, all_layers=True):
        lv = _log_levels(steps, v, p)
        if lv is not None:
            levels.append((lv["tail"], tag, int(steps[np.isfinite(v)][-1])))
    if len(levels) < 2:
        return None
    low, high = min(levels), max(levels)
    ratio = _p10(low[0] - high[0])
    if _p10(low[0]) >= p.layer_abs or ratio >= p.layer_ratio:
        return None
    return Found(low[1], low[2], GRD002.Evidence(
        branch="layer", weakest=low[1], weakest_level=_p10(low[0]), strongest=high[1],
        strongest_level=_p10(high[0]), layer_ratio_observed=ratio,
        layer_ratio=p.layer_ratio, layer_abs=p.layer_abs))


@rule
class GRD002(Rule["GRD002.Params", "GRD002.Evidence"]):
    """Gradient norm below ``abs_min`` late in the run, or collapsed ``orders`` decades
    below its early level while the loss stalls, or (with per-layer norms) one layer's
    norm tiny next to another's."""

    id = "GRD002"
    detector = "vanishing_gradients"

    @dataclass(frozen=True)
    class Params(RuleParams):
        abs_min: float = param(P.NON_NEGATIVE)
        orders: float = param(P.POSITIVE)
        stall_progress: float = param(P.NON_NEGATIVE)
        layer_ratio: float = param(P.POSITIVE)
        layer_abs: float = param(P.NON_NEGATIVE)
        early_frac: float = param(P.SHARE)
        tail_frac: float = param(P.SHARE)
        min_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        #: "layer" (one layer's norm tiny next to another's), "abs" (below abs_min) or
        #: "collapse" (collapsed while the loss stalls)
        branch: str = internal("abs")
        weakest: str | None = optional()
        weakest_level: float | None = optional()
        strongest: str | None = optional()
        strongest_level: float | None = optional()
        layer_ratio_observed: float | None = optional()
        layer_ratio: float | None = optional()
        layer_abs: float | None = optional()
        early_level: float | None = optional()
        late_level: float | None = optional()
        collapse_factor: float | None = optional()
        abs_min: float | None = optional()
        orders: float | None = optional()
        stall_progress: float | None = optional()
        loss_tag: str | None = optional()
        loss_progress: float | None = optional()
        loss_early_drop: float | None = optional()
        loss_tail_tau: float | None = optional()

    def detect(self, ctx: RuleContext,
               p: GRD002.Params) -> list[Found[GRD002.Evidence]] | None:
        series = grad_norm_series(ctx)
        if not series:
            return None
        layer = _layer_ratio_found(ctx, p)
        if layer is not None:
            return [layer]
        out = []
        for tag, steps, v in series:
            lv = _log_levels(steps, v, p)
            if lv is None:
                continue
            late = _p10(lv["tail"])
            collapse = lv["early"] - lv["tail"]
            ev = GRD002.Evidence(
                early_level=_p10(lv["early"]), late_level=late,
                collapse_factor=_p10(collapse), abs_min=p.abs_min, orders=p.orders,
                stall_progress=p.stall_progress)
            tail_step = int(steps[np.isfinite(v)][-1])
            if late < p.abs_min:
                out.append(Found(tag, tail_step, ev))
                continue
            if collapse >= p.orders:
                stalled, lev = _loss_stalled(ctx, p)
                if stalled:
                    out.append(Found(tag, tail_step, replace(ev, branch="collapse", **lev)))
        return out

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import vanishing_advice

        ev = finding.detail
        if not isinstance(ev, GRD002.Evidence):
            return super().advise(ctx, finding)
        return vanishing_advice(ctx, finite_number(ev.late_level),
                                finite_number(ev.collapse_factor))

    def message(self, ev: GRD002.Evidence) -> str:
        if ev.branch == "layer":
            return (f"gradient norm of {ev.weakest} is {fmt(ev.weakest_level)} late in the "
                    f"run, {fmt(ev.layer_ratio_observed)} of {ev.strongest}'s "
                    f"{fmt(ev.strongest_level)}: the gradient vanishes before it reaches "
                    f"that layer")
        if ev.branch == "collapse":
            return (f"gradient norm collapses {fmt(ev.collapse_factor)}x to "
                    f"{fmt(ev.late_level)} while the loss stalls with "
                    f"{fmt(100 * (ev.loss_progress or 0.0))}% progress")
        return (f"gradient norm is {fmt(ev.late_level)} late in the run (below "
                f"{fmt(ev.abs_min)}), down from {fmt(ev.early_level)} early on")


# ---------------------------------------------------------------------------
# Units: dead ReLUs and saturated tanh/sigmoid from activation histograms
# ---------------------------------------------------------------------------


def _mass_where(b: np.ndarray, lo: float, hi: float) -> float:
    """Share of a histogram's mass inside [lo, hi], uniform within buckets."""
    counts = b[:, 2]
    total = counts.sum()
    if total <= 0:
        return float("nan")
    left, right = b[:, 0], b[:, 1]
    width = right - left
    inside = np.clip(np.minimum(right, hi) - np.maximum(left, lo), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(width > 0, inside / width,
                        ((left >= lo) & (left <= hi)).astype(float))
    return float((counts * frac).sum() / total)


def _last_samples(hs: list[Histogram], n: int) -> list[Histogram]:
    return hs[-n:] if len(hs) > n else hs


@rule
class UNT001(Rule["UNT001.Params", "UNT001.Evidence"]):
    """ReLU activation histograms whose mass sits exactly at zero: the share in buckets
    within ``zero_tol`` of 0 (or at/below 0 for pre-activation tags) is at least
    ``dead_share`` in the latest ``last_samples`` samples."""

    id = "UNT001"
    detector = "dead_units"

    @dataclass(frozen=True)
    class Params(RuleParams):
        pattern: str = param(P.TAG_PATTERN)
        dead_share: float = param(P.SHARE)
        zero_tol: float = param(P.NON_NEGATIVE)
        last_samples: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        tag: str = internal("")
        step: int = internal(0)
        zero_share: float = 0.0
        min_share_last_samples: float = 0.0
        samples: int = 0
        dead_share: float = 0.0
        zero_tol: float = 0.0
        pre_activation: bool = False

    def detect(self, ctx: RuleContext,
               p: UNT001.Params) -> list[Found[UNT001.Evidence]] | None:
        hists = ctx.histograms(p.pattern)
        if not hists:
            return None
        out = []
        for tag, hs in sorted(hists.items()):
            pre = bool(re.search(r"input|preact|pre_act|logits", tag, re.I))
            shares = []
            for h in _last_samples(hs, p.last_samples):
                if h.buckets.size == 0:
                    continue
                if pre:
                    shares.append(_mass_where(h.buckets, -np.inf, 0.0))
                else:
                    shares.append(_mass_where(h.buckets, -p.zero_tol, p.zero_tol))
            shares = [x for x in shares if np.isfinite(x)]
            if not shares or min(shares) < p.dead_share:
                continue
            step = hs[-1].step
            out.append(Found(tag, step, UNT001.Evidence(
                tag=tag, step=step, zero_share=shares[-1],
                min_share_last_samples=min(shares), samples=len(shares),
                dead_share=p.dead_share, zero_tol=p.zero_tol, pre_activation=pre)))
        return out

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import dead_relu_advice

        ev = finding.detail
        if not isinstance(ev, UNT001.Evidence):
            return super().advise(ctx, finding)
        return dead_relu_advice(ctx, finite_number(ev.zero_share), finding.metric)

    def message(self, ev: UNT001.Evidence) -> str:
        return (f"{fmt(100 * ev.zero_share)}% of {ev.tag} is "
                f"{'<= 0' if ev.pre_activation else 'exactly 0'} at step {ev.step}, so most "
                f"units pass no gradient")


@rule
class UNT002(Rule["UNT002.Params", "UNT002.Evidence"]):
    """tanh/sigmoid histograms with ``saturated_share`` of their mass in the flat tails:
    outputs within ``output_margin`` of the asymptotes, or pre-activations past SageMaker
    Debugger's bounds (tanh +-9.5, sigmoid -23/17)."""

    id = "UNT002"
    detector = "saturated_units"

    @dataclass(frozen=True)
    class Params(RuleParams):
        pattern: str = param(P.TAG_PATTERN)
        saturated_share: float = param(P.SHARE)
        output_margin: float = param(P.FRACTION)
        tanh_bound: float = param(P.POSITIVE)
        sigmoid_low: float = param(P.ANY_NUMBER)
        sigmoid_high: float = param(P.ANY_NUMBER)
        last_samples: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        tag: str = internal("")
        step: int = internal(0)
        saturated_share: float = 0.0
        min_share_last_samples: float = 0.0
        samples: int = 0
        threshold: float = 0.0

    def detect(self, ctx: RuleContext,
               p: UNT002.Params) -> list[Found[UNT002.Evidence]] | None:
        hists = ctx.histograms(p.pattern)
        if not hists:
            return None
        out = []
        for tag, hs in sorted(hists.items()):
            sig = "sigmoid" in tag.lower()
            shares = []
            for h in _last_samples(hs, p.last_samples):
                b = h.buckets
                if b.size == 0:
                    continue
                lo, hi = float(b[:, 0].min()), float(b[:, 1].max())
                m = p.output_margin
                if sig and lo >= -1e-6 and hi <= 1 + 1e-6:
                    share = _mass_where(b, -np.inf, m) + _mass_where(b, 1 - m, np.inf)
                elif not sig and lo >= -1 - 1e-6 and hi <= 1 + 1e-6:
                    share = _mass_where(b, -np.inf, -1 + m) + _mass_where(b, 1 - m, np.inf)
                elif sig:
                    share = _mass_where(b, -np.inf, p.sigmoid_low) + _mass_where(
                        b, p.sigmoid_high, np.inf)
                else:
                    share = _mass_where(b, -np.inf, -p.tanh_bound) + _mass_where(
                        b, p.tanh_bound, np.inf)
                shares.append(share)
            shares = [x for x in shares if np.isfinite(x)]
            if not shares or min(shares) < p.saturated_share:
                continue
            step = hs[-1].step
            out.append(Found(tag, step, UNT002.Evidence(
                tag=tag, step=step, saturated_share=shares[-1],
                min_share_last_samples=min(shares), samples=len(shares),
                threshold=p.saturated_share)))
        return out

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import saturated_advice

        ev = finding.detail
        share = finite_number(ev.saturated_share) if isinstance(ev, UNT002.Evidence) else None
        if share is None:
            return super().advise(ctx, finding)
        return saturated_advice(ctx, share, finding.metric)

    def message(self, ev: UNT002.Evidence) -> str:
        return (f"{fmt(100 * ev.saturated_share)}% of {ev.tag} sits in the saturated tails "
                f"at step {ev.step}, where the activation's gradient is near zero")


# ---------------------------------------------------------------------------
# Learning rate
# ---------------------------------------------------------------------------


def _lr(ctx: RuleContext) -> Series | None:
    s = ctx.series(Role.LR)
    if s is None or not len(finite(ctx, s)):
        return None
    return finite(ctx, s)


@rule
class LRS001(Rule["LRS001.Params", "LRS001.Evidence"]):
    """Learning rate at (effectively) zero for ``min_frac`` of the run's steps while the
    run keeps logging."""

    id = "LRS001"
    detector = "lr_zero"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_frac: float = param(P.FRACTION)
        zero_rel: float = param(P.NON_NEGATIVE)
        zero_abs: float = param(P.NON_NEGATIVE)
        min_points: int = param(P.COUNT)
        min_zero_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        zero_from_step: int = 0
        zero_to_step: int = 0
        zero_points: int = 0
        share_of_run: float = 0.0
        peak_lr: float = 0.0
        min_frac: float = 0.0
        zero_rel: float = 0.0
        zero_abs: float = 0.0

    def detect(self, ctx: RuleContext,
               p: LRS001.Params) -> list[Found[LRS001.Evidence]] | None:
        lr = _lr(ctx)
        if lr is None:
            return None
        v = lr.values
        peak = float(np.max(np.abs(v)))
        if peak <= 0 or len(v) < p.min_points:
            return []
        zero = np.abs(v) <= max(p.zero_abs, p.zero_rel * peak)
        if not zero.any():
            return []
        edges = np.flatnonzero(np.diff(np.r_[0, zero.astype(np.int8), 0]))
        rng = ctx.run.step_range or (int(lr.steps[0]), int(lr.steps[-1]))
        run_span = max(rng[1] - rng[0], 1)
        best = None
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            start = int(lr.steps[a])
            end = int(lr.steps[b]) if b < len(v) else rng[1]
            if best is None or end - start > best[1] - best[0]:
                best = (start, end, b - a)
        assert best is not None  # zero.any(): at least one run of zeros
        start, end, pts = best
        frac = (end - start) / run_span
        if frac < p.min_frac or pts < p.min_zero_points:
            return []
        return [Found(lr.tag, start, LRS001.Evidence(
            zero_from_step=start, zero_to_step=end, zero_points=int(pts), share_of_run=frac,
            peak_lr=peak, min_frac=p.min_frac, zero_rel=p.zero_rel, zero_abs=p.zero_abs))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import lr_zero_advice

        ev = finding.detail
        if not isinstance(ev, LRS001.Evidence):
            return super().advise(ctx, finding)
        return lr_zero_advice(ctx, ev.zero_from_step, ev.share_of_run)

    def message(self, ev: LRS001.Evidence) -> str:
        return (f"learning rate is 0 from step {ev.zero_from_step} to {ev.zero_to_step} "
                f"({fmt(100 * ev.share_of_run)}% of the run) while training keeps logging")


@rule
class LRS002(Rule["LRS002.Params", "LRS002.Evidence"]):
    """A constant learning rate over a long run whose loss has stopped improving:
    decaying it is the cheapest next gain."""

    id = "LRS002"
    detector = "lr_never_decayed"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        warmup_frac: float = param(P.START_SKIP)
        const_tol: float = param(P.NON_NEGATIVE)
        plateau_share: float = param(P.FRACTION)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        step: int = internal(0)
        lr: float = 0.0
        lr_max_over_min: float = 0.0
        second_half_gain: float = 0.0
        early_drop: float = 0.0
        gain_share: float = 0.0
        plateau_share: float = 0.0
        const_tol: float = 0.0
        min_points: int = 0

    def detect(self, ctx: RuleContext,
               p: LRS002.Params) -> list[Found[LRS002.Evidence]] | None:
        lr = _lr(ctx)
        if lr is None:
            return None
        losses = main_losses(ctx, ("val", "train"))
        if not losses:
            return None
        # val is what the schedule should serve; a sparsely evaluated val falls back to
        # train
        long = [s for s in losses if len(finite(ctx, s)) >= p.min_points]
        if not long or len(lr) < 3:
            return []
        s = long[0]
        f = finite(ctx, s)
        after = signals.window(lr, start=lr.steps[0] + p.warmup_frac *
                               (lr.steps[-1] - lr.steps[0]))
        v = after.values
        if len(v) < 2 or v.min() <= 0:
            return []
        if v.max() / v.min() > 1 + p.const_tol:
            return []
        lr_cover = (lr.steps[-1] - lr.steps[0]) / max(f.steps[-1] - f.steps[0], 1)
        if lr_cover < 0.8:
            return []
        drop = early_drop(ctx, s)
        if drop <= 0:
            return []
        second = signals.tail(f, 0.5)
        _, sm = signals.smooth(second.steps, second.values)
        gain = float(sm[0] - np.min(sm))
        share = gain / drop
        if share >= p.plateau_share:
            return []
        step = int(second.steps[0])
        return [Found(lr.tag, step, LRS002.Evidence(
            label=loss_label(s), step=step, lr=float(np.median(v)),
            lr_max_over_min=float(v.max() / v.min()), second_half_gain=gain,
            early_drop=drop, gain_share=share, plateau_share=p.plateau_share,
            const_tol=p.const_tol, min_points=p.min_points))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import lr_flat_advice

        ev = finding.detail
        if not isinstance(ev, LRS002.Evidence):
            return super().advise(ctx, finding)
        return lr_flat_advice(ctx, ev.lr, ev.gain_share)

    def message(self, ev: LRS002.Evidence) -> str:
        return (f"learning rate stays at {fmt(ev.lr)} for the whole run while {ev.label} "
                f"improves only {fmt(100 * ev.gain_share)}% of its total progress after "
                f"step {ev.step}")
