"""Instability: spikes that recover, and late noise that swamps progress.

A spike is judged against a centred rolling median (its local baseline) and the curve's
own residual noise, so a uniformly noisy small-batch run has no spikes however noisy it
is; it must also be large in the curve's own units (``min_ratio`` x the baseline for a
positive loss), which keeps the epoch resets of Keras' running-average batch metrics
(a sawtooth) from counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

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


@dataclass(frozen=True)
class SpikeParams(RuleParams):
    k_noise: float = param(P.POSITIVE)
    min_ratio: float = param(P.AT_LEAST_ONE)
    min_spikes: int = param(P.COUNT)
    window_frac: float = param(P.SHARE)
    min_points: int = param(P.COUNT)


@dataclass(frozen=True)
class LossSpikeParams(SpikeParams):
    lost_ground_above: float = param(P.POSITIVE)


@dataclass(frozen=True)
class SpikeEvidence(RuleEvidence):
    label: str = internal("")
    spikes: int = 0
    spike_steps: list[int] = field(default_factory=list)
    max_ratio: float | None = None
    max_height_noise_sigmas: float = 0.0
    largest_step: int = 0
    k_noise: float = 0.0
    min_ratio: float = 0.0
    min_spikes: int = 0
    window_frac: float = 0.0
    #: INS001 (a loss whose pre-spike level is positive): the loss's level just before
    #: the first spike, its median over the last tenth of the run, and whether it kept
    #: learning (info)
    pre_spike_level: float | None = optional()
    end_level: float | None = optional()
    kept_learning: bool | None = optional()


def _recovered_spikes(ctx: RuleContext, s: Series, p: SpikeParams, log_scale: bool,
                      drop: float) -> list[signals.Spike]:
    f = finite(ctx, s)
    v = f.values
    if log_scale:
        keep = v > 0
        st, v = f.steps[keep], np.log10(v[keep])
    else:
        st = f.steps
    found, _ = signals.spikes(st, v, k=p.k_noise, window_frac=p.window_frac)
    out = []
    for sp in found:
        if sp.end_step is None:
            continue  # a rise that never comes back is DIV002's business
        excess = sp.value - sp.baseline
        if log_scale:
            big = excess >= np.log10(p.min_ratio)
        else:
            big = excess >= (p.min_ratio - 1.0) * max(drop, 1e-12)
        if big:
            out.append(sp)
    return out


def _spikes_found(s: Series, found: list[signals.Spike], p: SpikeParams, log_scale: bool,
                  what: str) -> Found[SpikeEvidence]:
    def ratio(sp: signals.Spike) -> float:
        if log_scale:
            d = sp.value - sp.baseline
            return float("inf") if d > 308 else float(np.power(10.0, d))
        return sp.value / sp.baseline if sp.baseline > 0 else float("nan")

    worst = max(found, key=lambda sp: sp.value - sp.baseline)  # largest excess (log: ratio)
    r = ratio(worst)
    ev = SpikeEvidence(
        label=what, spikes=len(found), spike_steps=[sp.step for sp in found[:20]],
        max_ratio=r if np.isfinite(r) else None, max_height_noise_sigmas=worst.height,
        largest_step=worst.step, k_noise=p.k_noise, min_ratio=p.min_ratio,
        min_spikes=p.min_spikes, window_frac=p.window_frac,
    )
    return Found(s.tag, found[0].step, ev)


class _SpikeRule(Rule[SpikeParams, SpikeEvidence]):
    Params = SpikeParams
    Evidence = SpikeEvidence

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import instability_advice

        ev = finding.detail
        if not isinstance(ev, SpikeEvidence):
            return super().advise(ctx, finding)
        first = float(finding.step) if finding.step is not None else None
        return instability_advice(ctx, first, float(ev.spikes), None, False, finding.metric)

    def message(self, ev: SpikeEvidence) -> str:
        size = (f"{fmt(ev.max_ratio)}x its local level" if ev.max_ratio is not None
                else f"{fmt(ev.max_height_noise_sigmas)} noise sigmas above its local level")
        out = (f"{ev.label} spikes {ev.spikes} times and recovers each time; the largest "
               f"is {size} at step {ev.largest_step}")
        if ev.kept_learning is not None:  # level before the first spike -> at the end
            how = "it kept learning" if ev.kept_learning else "they cost progress"
            out += f"; {how}, {fmt(ev.pre_spike_level)} -> {fmt(ev.end_level)}"
        return out


@rule
class INS001(_SpikeRule):
    """Recovered loss spikes, at least ``min_spikes`` of them."""

    id = "INS001"
    detector = "loss_spikes"
    Params = LossSpikeParams

    def detect(self, ctx: RuleContext,  # type: ignore[override]
               p: LossSpikeParams) -> list[Found[SpikeEvidence]] | None:
        losses = main_losses(ctx, ("train",))
        if not losses:
            return None
        out = []
        for s in losses:
            if len(finite(ctx, s)) < p.min_points:
                continue
            # a positive loss is judged on a log scale: its noise is multiplicative (it
            # shrinks with the loss), and on a log scale heavy-tailed small-batch noise is
            # tame
            log_scale = bool(np.all(finite(ctx, s).values > 0))
            found = _recovered_spikes(ctx, s, p, log_scale, early_drop(ctx, s))
            if len(found) >= p.min_spikes:
                hit = _spikes_found(s, found, p, log_scale, loss_label(s))
                out.append(_kept_learning(finite(ctx, s), found[0], hit, p, log_scale))
        return out


def _kept_learning(f: Series, first: signals.Spike, hit: Found[SpikeEvidence],
                   p: LossSpikeParams, log_scale: bool) -> Found[SpikeEvidence]:
    """Info, not a warning, unless the loss ends above ``lost_ground_above`` x its level
    just before the first spike: spikes that did not stop learning are noise (DESIGN.md)."""
    pre = float(np.power(10.0, first.baseline)) if log_scale else float(first.baseline)
    if not pre > 0:
        return hit  # a loss that can be negative has no ratio to judge progress by
    end = float(np.median(f.values[-max(3, len(f.values) // 10):]))
    kept = kept_learning(pre, end, p.lost_ground_above)
    ev = replace(hit.evidence, pre_spike_level=pre, end_level=end, kept_learning=kept)
    return Found(hit.metric, hit.step, ev, "info" if kept else None)


@rule
class INS003(_SpikeRule):
    """Recovered gradient-norm spikes on a log scale."""

    id = "INS003"
    detector = "grad_norm_spikes"

    def detect(self, ctx: RuleContext, p: SpikeParams) -> list[Found[SpikeEvidence]] | None:
        s = ctx.series(Role.GRAD_NORM)
        if s is None or not len(s):
            return None
        if len(finite(ctx, s)) < p.min_points:
            return []
        found = _recovered_spikes(ctx, s, p, True, 0.0)
        if len(found) < p.min_spikes:
            return []
        return [_spikes_found(s, found, p, True, "gradient norm")]


@rule
class INS002(Rule["INS002.Params", "INS002.Evidence"]):
    """Step-to-step noise late in training that is large next to the progress made:
    noise of the last ``tail_frac`` of steps / the loss's scale (its early drop, or for a
    positive loss ``level_frac`` x its late level when that is larger)."""

    id = "INS002"
    detector = "noisy_loss"

    @dataclass(frozen=True)
    class Params(RuleParams):
        tail_frac: float = param(P.SHARE)
        max_noise_ratio: float = param(P.POSITIVE)
        level_frac: float = param(P.NON_NEGATIVE)
        min_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        late_noise: float = 0.0
        early_drop: float = 0.0
        late_level: float = 0.0
        scale: float = 0.0
        noise_to_progress: float = 0.0
        tail_start_step: int = 0
        tail_points: int = 0
        max_noise_ratio: float = 0.0
        level_frac: float = 0.0
        tail_frac: float = 0.0

    def detect(self, ctx: RuleContext,
               p: INS002.Params) -> list[Found[INS002.Evidence]] | None:
        losses = main_losses(ctx, ("train",))
        if not losses:
            return None
        out = []
        for s in losses:
            f = signals.tail(finite(ctx, s), p.tail_frac)
            if len(f) < p.min_points:
                continue
            drop = early_drop(ctx, s)
            level = float(np.median(f.values))
            # a positive loss's own level is a floor on the scale: a loss stuck at ln 10
            # that jitters by 0.01 is flat, not noisy, however little it fell
            positive = bool(np.all(f.values > 0))
            scale = max(drop, p.level_frac * level) if positive else drop
            if scale <= 0:
                continue  # no progress to compare with: underfit/plateau rules speak to that
            late = signals.noise_floor(f.values[-20000:])
            ratio = late / scale
            if ratio < p.max_noise_ratio:
                continue
            step = int(f.steps[0])
            ev = INS002.Evidence(
                label=loss_label(s), late_noise=late, early_drop=drop, late_level=level,
                scale=scale, noise_to_progress=ratio, tail_start_step=step,
                tail_points=len(f), max_noise_ratio=p.max_noise_ratio,
                level_frac=p.level_frac, tail_frac=p.tail_frac,
            )
            out.append(Found(s.tag, step, ev))
        return out

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        """Late noise by construction: decay, not warmup."""
        from diagnose.recommend import instability_advice

        ev = finding.detail
        if not isinstance(ev, INS002.Evidence):
            return super().advise(ctx, finding)
        first = float(finding.step) if finding.step is not None else None
        return instability_advice(ctx, first, None, finite_number(ev.noise_to_progress),
                                  True, finding.metric)

    def message(self, ev: INS002.Evidence) -> str:
        what = (f"the {fmt(ev.early_drop)} it fell in training" if ev.scale == ev.early_drop
                else f"{fmt(ev.level_frac)} x its level {fmt(ev.late_level)}")
        return (f"{ev.label} moves {fmt(ev.late_noise)} from point to point after step "
                f"{ev.tail_start_step}, {fmt(100 * ev.noise_to_progress)}% of {what}")
