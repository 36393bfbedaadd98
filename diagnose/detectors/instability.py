"""Instability: spikes that recover, and late noise that swamps progress.

A spike is judged against a centred rolling median (its local baseline) and the curve's
own residual noise, so a uniformly noisy small-batch run has no spikes however noisy it
is; it must also be large in the curve's own units (``min_ratio`` x the baseline for a
positive loss), which keeps the epoch resets of Keras' running-average batch metrics
(a sawtooth) from counting.
"""

from __future__ import annotations

import numpy as np

from diagnose import signals
from diagnose.detectors import (
    Hit,
    RuleContext,
    detector,
    early_drop,
    finite,
    fmt,
    loss_label,
    main_losses,
)
from diagnose.detectors import params as P
from diagnose.metrics import Role, Series


def _recovered_spikes(ctx: RuleContext, s: Series, p: dict, log_scale: bool,
                      drop: float) -> list[signals.Spike]:
    f = finite(ctx, s)
    v = f.values
    if log_scale:
        keep = v > 0
        st, v = f.steps[keep], np.log10(v[keep])
    else:
        st = f.steps
    found, _ = signals.spikes(st, v, k=p["k_noise"], window_frac=p["window_frac"])
    out = []
    for sp in found:
        if sp.end_step is None:
            continue  # a rise that never comes back is DIV002's business
        excess = sp.value - sp.baseline
        if log_scale:
            big = excess >= np.log10(p["min_ratio"])
        else:
            big = excess >= (p["min_ratio"] - 1.0) * max(drop, 1e-12)
        if big:
            out.append(sp)
    return out


def _spike_hit(s: Series, found: list[signals.Spike], p: dict, log_scale: bool,
               what: str) -> Hit:
    def ratio(sp: signals.Spike) -> float:
        if log_scale:
            d = sp.value - sp.baseline
            return float("inf") if d > 308 else float(np.power(10.0, d))
        return sp.value / sp.baseline if sp.baseline > 0 else float("nan")

    worst = max(found, key=lambda sp: sp.value - sp.baseline)  # largest excess (log: ratio)
    r = ratio(worst)
    size = (f"{fmt(r)}x its local level" if np.isfinite(r)
            else f"{fmt(worst.height)} noise sigmas above its local level")
    msg = (f"{what} spikes {len(found)} times and recovers each time; the largest is "
           f"{size} at step {worst.step}")
    ev = {
        "spikes": len(found),
        "spike_steps": [sp.step for sp in found[:20]],
        "max_ratio": r if np.isfinite(r) else None,
        "max_height_noise_sigmas": worst.height,
        "largest_step": worst.step,
        "k_noise": p["k_noise"],
        "min_ratio": p["min_ratio"],
        "min_spikes": p["min_spikes"],
        "window_frac": p["window_frac"],
    }
    return Hit(s.tag, found[0].step, msg, ev)


@detector("loss_spikes", params=dict(
    k_noise=P.POSITIVE, min_ratio=P.AT_LEAST_ONE, min_spikes=P.COUNT, window_frac=P.SHARE,
    min_points=P.COUNT,
))
def detect_loss_spikes(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Recovered loss spikes, at least ``min_spikes`` of them (INS001)."""
    losses = main_losses(ctx, p.get("splits", ("train",)))
    if not losses:
        return None
    hits = []
    for s in losses:
        if len(finite(ctx, s)) < p["min_points"]:
            continue
        # a positive loss is judged on a log scale: its noise is multiplicative (it shrinks
        # with the loss), and on a log scale heavy-tailed small-batch noise is tame
        log_scale = bool(np.all(finite(ctx, s).values > 0))
        found = _recovered_spikes(ctx, s, p, log_scale, early_drop(ctx, s))
        if len(found) >= p["min_spikes"]:
            hits.append(_spike_hit(s, found, p, log_scale, loss_label(s)))
    return hits


@detector("grad_norm_spikes", params=dict(
    k_noise=P.POSITIVE, min_ratio=P.AT_LEAST_ONE, min_spikes=P.COUNT, window_frac=P.SHARE,
    min_points=P.COUNT,
))
def detect_grad_norm_spikes(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Recovered gradient-norm spikes on a log scale (INS003)."""
    s = ctx.series(Role.GRAD_NORM)
    if s is None or not len(s):
        return None
    if len(finite(ctx, s)) < p["min_points"]:
        return []
    found = _recovered_spikes(ctx, s, p, True, 0.0)
    if len(found) < p["min_spikes"]:
        return []
    return [_spike_hit(s, found, p, True, "gradient norm")]


@detector("noisy_loss", params=dict(
    tail_frac=P.SHARE, max_noise_ratio=P.POSITIVE, level_frac=P.NON_NEGATIVE,
    min_points=P.COUNT,
))
def detect_noisy_loss(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Step-to-step noise late in training that is large next to the progress made
    (INS002): noise of the last ``tail_frac`` of steps / the loss's scale (its early drop,
    or for a positive loss ``level_frac`` x its late level when that is larger)."""
    losses = main_losses(ctx, p.get("splits", ("train",)))
    if not losses:
        return None
    hits = []
    for s in losses:
        f = signals.tail(finite(ctx, s), p["tail_frac"])
        if len(f) < p["min_points"]:
            continue
        drop = early_drop(ctx, s)
        level = float(np.median(f.values))
        # a positive loss's own level is a floor on the scale: a loss stuck at ln 10 that
        # jitters by 0.01 is flat, not noisy, however little it fell
        positive = bool(np.all(f.values > 0))
        scale = max(drop, p["level_frac"] * level) if positive else drop
        if scale <= 0:
            continue  # no progress to compare with: underfit/plateau rules speak to that
        late = signals.noise_floor(f.values[-20000:])
        ratio = late / scale
        if ratio < p["max_noise_ratio"]:
            continue
        step = int(f.steps[0])
        what = (f"the {fmt(drop)} it fell in training" if scale == drop
                else f"{fmt(p['level_frac'])} x its level {fmt(level)}")
        msg = (f"{loss_label(s)} moves {fmt(late)} from point to point after step {step}, "
               f"{fmt(100 * ratio)}% of {what}")
        ev = {
            "late_noise": late,
            "early_drop": drop,
            "late_level": level,
            "scale": scale,
            "noise_to_progress": ratio,
            "tail_start_step": step,
            "tail_points": len(f),
            "max_noise_ratio": p["max_noise_ratio"],
            "level_frac": p["level_frac"],
            "tail_frac": p["tail_frac"],
        }
        hits.append(Hit(s.tag, step, msg, ev))
    return hits
