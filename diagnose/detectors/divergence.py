"""Divergence: the loss leaves the finite world, explodes, is astronomical, or climbs.

Every size here is measured against the loss's own scale (its early drop, its noise
floor, its early magnitude), never as a ratio of raw values that might be negative:
some losses (Poisson NLL, ELBO) sit at -4e6 by design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    noise,
    smoothed,
)
from diagnose.detectors import params as P
from diagnose.metrics import Role, Series


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


def _rise_phrase(info: NonFinite, s: Series, ctx: RuleContext) -> tuple[str, dict]:
    """' after rising 40x in 150 steps' (or '') and the numbers behind it."""
    last, best = info.last_finite_value, info.min_value
    ev: dict = {}
    if not (np.isfinite(last) and np.isfinite(best)) or info.last_finite_step is None:
        return "", ev
    span = info.first_step - (info.min_step if info.min_step is not None else info.first_step)
    fin = s.values[np.isfinite(s.values)]
    if best > 0 and np.all(fin > 0):
        ratio = last / best
        ev["rise_ratio_before_nonfinite"] = ratio
        if ratio >= 1.5:
            return f" after rising {fmt(ratio)}x from its best {fmt(best)} in {span} steps", ev
        return "", ev
    floor = max(noise(ctx, s), 1e-12)
    delta = last - best
    ev["rise_before_nonfinite"] = delta
    if delta > 3 * floor:
        return f" after rising {fmt(delta)} above its best {fmt(best)} in {span} steps", ev
    return "", ev


@detector("nonfinite_loss", params=dict(recover_points=P.COUNT, max_bad_share=P.FRACTION))
def detect_nonfinite_loss(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Train/val loss becomes NaN/inf and stays that way (DIV001); see
    :func:`detect_transient_nonfinite` for the recovered case."""
    losses = main_losses(ctx, p.get("splits", ("train", "val")))
    if not losses:
        return None
    hits = []
    for s in losses:
        info = nonfinite_info(ctx, s)
        if info is None or info.recovered(p["recover_points"], p["max_bad_share"]):
            continue
        rise, rise_ev = _rise_phrase(info, s, ctx)
        later = info.points_after_first
        msg = (f"{loss_label(s)} becomes {_kind(info.first_value)} at step {info.first_step}"
               f"{rise} and stays non-finite for {info.bad_points} of the {later} points "
               f"from there on")
        ev = {
            "first_nonfinite_step": info.first_step,
            "last_finite_step": info.last_finite_step,
            "last_finite_value": info.last_finite_value,
            "loss_min": info.min_value,
            "loss_min_step": info.min_step,
            "nonfinite_points": info.bad_points,
            "points_from_first_nonfinite": later,
            "total_points": info.total_points,
            "finite_points_after_last_nonfinite": info.finite_after_last_bad,
            **rise_ev,
            "recover_points": p["recover_points"],
            "max_bad_share": p["max_bad_share"],
        }
        hits.append(Hit(s.tag, info.first_step, msg, ev))
    return hits


@detector("transient_nonfinite", params=dict(recover_points=P.COUNT, max_bad_share=P.FRACTION))
def detect_transient_nonfinite(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Non-finite loss points that the run recovers from (LOG005): a logging/AMP artefact
    or a near-miss, not divergence."""
    losses = main_losses(ctx, p.get("splits", ("train", "val")))
    if not losses:
        return None
    hits = []
    for s in losses:
        info = nonfinite_info(ctx, s)
        if info is None or not info.recovered(p["recover_points"], p["max_bad_share"]):
            continue
        msg = (f"{loss_label(s)} is {_kind(info.first_value)} at {info.bad_points} point"
               f"{'s' if info.bad_points != 1 else ''} from step {info.first_step} to "
               f"{info.last_bad_step} and is finite again for the "
               f"{info.finite_after_last_bad} points after")
        ev = {
            "first_nonfinite_step": info.first_step,
            "last_nonfinite_step": info.last_bad_step,
            "nonfinite_points": info.bad_points,
            "finite_points_after_last_nonfinite": info.finite_after_last_bad,
            "total_points": info.total_points,
            "recover_points": p["recover_points"],
            "max_bad_share": p["max_bad_share"],
        }
        hits.append(Hit(s.tag, info.first_step, msg, ev))
    return hits


def _train_or_val(ctx: RuleContext) -> Series | None:
    s = ctx.series(Role.TRAIN_LOSS)
    if s is not None and len(s):
        return s
    return ctx.series(Role.VAL_LOSS)


@detector("exploding_loss", params=dict(
    explode_factor=P.POSITIVE, ratio_factor=P.AT_LEAST_ONE, rel_floor=P.NON_NEGATIVE,
    noise_mult=P.NON_NEGATIVE, tail_frac=P.SHARE, min_sustained=P.FRACTION, min_points=P.COUNT,
))
def detect_exploding_loss(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """The loss climbs far above its best and stays up (DIV002).

    Far = back above where it started (``explode_factor`` x its early drop, floored by
    ``rel_floor`` x |best| and ``noise_mult`` x its noise), or, for a positive loss,
    ``ratio_factor`` x its best.  Stays = the median of the last ``tail_frac`` of steps is
    still up there and most smoothed points since the rise are too.  Train loss is used;
    val loss only when there is no train loss (a val rise with a falling train loss is
    overfitting, not divergence).
    """
    s = _train_or_val(ctx)
    if s is None:
        return None
    f = finite(ctx, s)
    if len(f) < p["min_points"]:
        return []
    ss, sm = smoothed(ctx, s)
    i = int(np.argmin(sm))
    best, best_step = float(sm[i]), float(ss[i])
    t0 = f.steps[-1] - p["tail_frac"] * (f.steps[-1] - f.steps[0])
    tail_vals = f.values[(f.steps >= t0) & (f.steps > best_step)]
    if len(tail_vals) == 0:
        return []
    tail = float(np.median(tail_vals))
    rise = tail - best
    drop = early_drop(ctx, s)
    nz = noise(ctx, s)
    # the noise that matters is the one around the level the loss settled at (the last
    # tail_frac of steps, at least min_points points): a run that thrashed early (too
    # large a step) and then sat still at a worse level has a huge whole-run noise that
    # would hide the rise
    settled = f.values[f.steps > best_step]
    k = max(int(p["min_points"]), len(tail_vals))
    if len(settled) >= k:
        nz = min(nz, signals.noise_floor(settled[-k:]))
    positive = bool(np.all(f.values > 0)) and best > 0
    # |best| is a meaningful unit only for a positive loss; a negative-by-design loss has
    # an arbitrary offset, so there only its early drop and noise set the scale
    rel = p["rel_floor"] * best if positive else 0.0
    scale = max(drop, rel, p["noise_mult"] * nz, 1e-12)
    by_drop = rise >= p["explode_factor"] * scale
    by_ratio = positive and tail >= p["ratio_factor"] * best and rise >= p["noise_mult"] * nz
    if not (by_drop or by_ratio):
        return []
    half = best + 0.5 * rise
    after = np.flatnonzero((ss > best_step) & (sm >= half))
    if len(after) == 0:
        return []
    onset = float(ss[after[0]])
    since = sm[ss >= onset]
    sustained = float(np.mean(since >= half))
    if sustained < p["min_sustained"]:
        return []
    onset_step = round(onset)
    how = (f"{fmt(tail / best)}x its best" if positive
           else f"{fmt(rise / max(drop, 1e-12))}x its early drop")
    msg = (f"{loss_label(s)} rises from its best {fmt(best)} at step {round(best_step)} to "
           f"{fmt(tail)} at the end of the run ({how}) and stays up from step {onset_step}")
    ev = {
        "best": best,
        "best_step": round(best_step),
        "tail_median": tail,
        "rise": rise,
        "early_drop": drop,
        "noise": nz,
        "scale": scale,
        "ratio_to_best": tail / best if positive else None,
        "onset_step": onset_step,
        "sustained_share": sustained,
        "explode_factor": p["explode_factor"],
        "ratio_factor": p["ratio_factor"],
        "rel_floor": p["rel_floor"],
        "noise_mult": p["noise_mult"],
        "tail_frac": p["tail_frac"],
    }
    return [Hit(s.tag, onset_step, msg, ev)]


_CE_NAME = re.compile(r"(^|[_/])(ce|nll|xent|cross_?entropy|cls|class|classification)"
                      r"([_/]|loss|$)", re.I)


def _ce_like(ctx: RuleContext, s: Series, fin: np.ndarray) -> bool:
    """Non-negative and plausibly a cross-entropy: named so, or the run is a
    classification (class count known or an accuracy metric logged)."""
    if len(fin) == 0 or np.any(fin < 0):
        return False
    if _CE_NAME.search(s.tag):
        return True
    if any(m.metric == "accuracy" for m in ctx.roles.by_tag.values()):
        return True
    return ctx.cached("num_classes",
                      lambda: signals.infer_num_classes(ctx.run, ctx.roles)) is not None


@detector("astronomical_loss", params=dict(
    rel_max=P.AT_LEAST_ONE, ce_abs_max=P.POSITIVE, early_frac=P.SHARE,
))
def detect_astronomical_loss(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """The train loss (val when no train loss is logged) is enormous (DIV003): ``rel_max``
    x its own early magnitude at any point, or, for a cross-entropy-like loss, above
    ``ce_abs_max`` (CE of a sane model is a few units; detectron2's warmup start near 86
    is not astronomical)."""
    losses = main_losses(ctx)
    if not losses:
        return None
    # divergence is a training failure: an astronomical val loss next to a sane train
    # loss is an evaluation problem (batch-norm statistics, overconfidence), not this
    train = [s for s in losses if s.role == Role.TRAIN_LOSS]
    hits = []
    for s in train or losses:
        f = finite(ctx, s)
        if len(f) == 0:
            continue
        v = f.values
        span = f.steps[-1] - f.steps[0]
        head = v[f.steps <= f.steps[0] + p["early_frac"] * span]
        head = head if len(head) >= 3 else v[:3]
        early = float(np.median(np.abs(head)))
        ce = _ce_like(ctx, s, v)
        idx = None
        reason = ""
        if early > 0:
            over = np.flatnonzero(np.abs(v) >= p["rel_max"] * early)
            if len(over):
                idx = int(over[0])
                with np.errstate(over="ignore"):
                    factor = abs(v[idx]) / early
                reason = f"{fmt(factor)}x its early magnitude {fmt(early)}"
        if ce:
            over = np.flatnonzero(v >= p["ce_abs_max"])
            if len(over) and (idx is None or over[0] < idx):
                idx = int(over[0])
                reason = (f"above {fmt(p['ce_abs_max'])}, impossible for a working "
                          f"cross-entropy")
        if idx is None:
            continue
        step = int(f.steps[idx])
        msg = f"{loss_label(s)} reaches {fmt(v[idx])} at step {step}, {reason}"
        ev = {
            "value": float(v[idx]),
            "max_abs": float(np.max(np.abs(v))),
            "early_magnitude": early,
            "cross_entropy_like": ce,
            "points_over": int(np.sum(np.abs(v) >= p["rel_max"] * early)) if early > 0 else None,
            "rel_max": p["rel_max"],
            "ce_abs_max": p["ce_abs_max"],
        }
        hits.append(Hit(s.tag, step, msg, ev))
    return hits


@detector("loss_trending_up", params=dict(
    skip_frac=P.START_SKIP, min_tau=P.TAU, min_effect=P.NON_NEGATIVE,
    min_rel_rise=P.NON_NEGATIVE, min_points=P.COUNT,
))
def detect_loss_trending_up(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """Train loss trends up over most of the run (DIV004): Theil-Sen slope with its CI
    above 0, Kendall tau past ``min_tau``, the fitted rise ``min_effect`` noise sigmas and
    ``min_rel_rise`` of the loss's scale, all after skipping the first ``skip_frac``."""
    s = ctx.series(Role.TRAIN_LOSS)
    if s is None or not len(s):
        return None
    f = finite(ctx, s)
    if len(f) < p["min_points"]:
        return []
    start = f.steps[0] + p["skip_frac"] * (f.steps[-1] - f.steps[0])
    w = signals.window(f, start=start)
    if len(w) < p["min_points"]:
        return []
    # cheap exit before Theil-Sen: a window that ends no higher than it starts is not rising
    k = max(len(w) // 5, 1)
    if np.median(w.values[-k:]) <= np.median(w.values[:k]):
        return []
    tr = ctx.cached(("trend", s.tag, start),
                    lambda: signals.robust_trend(w.steps, w.values))
    if not tr.rising(p["min_effect"], p["min_tau"]):
        return []
    scale = max(early_drop(ctx, s), abs(tr.start), 1e-12)
    rel = tr.change / scale
    if rel < p["min_rel_rise"]:
        return []
    step = int(w.steps[0])
    msg = (f"{loss_label(s)} trends up from step {step} to the end, rising {fmt(tr.change)} "
           f"({fmt(100 * rel)}% of its scale, Kendall tau {tr.tau:.2f})")
    ev = {
        "slope_per_step": tr.slope,
        "slope_ci": [tr.slope_lo, tr.slope_hi],
        "kendall_tau": tr.tau,
        "fitted_rise": tr.change,
        "fitted_start": tr.start,
        "fitted_end": tr.end,
        "effect_noise_sigmas": tr.effect,
        "relative_rise": rel,
        "window_start_step": step,
        "points": tr.n,
        "min_tau": p["min_tau"],
        "min_effect": p["min_effect"],
        "min_rel_rise": p["min_rel_rise"],
        "skip_frac": p["skip_frac"],
    }
    return [Hit(s.tag, step, msg, ev)]
