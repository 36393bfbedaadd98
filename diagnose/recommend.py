"""Findings + hyperparameters -> concrete, ordered, non-contradictory recommendations.

Each pathological finding gets a list of changes computed from its evidence and from the
run's own numbers (its hyperparameters, logged LR schedule and grad norms): a diverged run
with ``learning_rate = 0.5`` gets a concrete smaller LR, not "lower the LR".  The changes of
all findings of one run are then reconciled so a run never gets two opposite moves on the
same knob (overfit's "more regularisation" against underfit's "less", divergence's "lower
the LR" against plateau's "raise it"): the finding with the higher precedence wins
(:func:`precedence`), and every finding that touches the same hyperparameter carries the
same proposed value.

Domain knowledge (``shared/seeds``, ``shared/research/anchors.md``): importance order LR >
batch size / momentum > Adam params, weight decay, dropout, architecture; weight decay
~5e-4; dropout 0.2-0.5 and never right before BN; SGD momentum 0.9; warmup <= 10% of the
steps; clip at the 90th percentile of grad norms and lower the LR instead when more than
half of the updates would be clipped; batch >= 16-32 for BatchNorm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.advice.moves import (
    AdviceContext,
    add_warmup,
    advice_name,
    augmentation_on,
    clip_grads,
    concrete_hint,
    decay_schedule,
    extend_length,
    land_in_range,
    landing_note,
    landing_point,
    length_target,
    lr_annealed,
    lr_is_small,
    lr_outside_range,
    momentum_fix,
    nice,
    optimizer_family,
    remove_lr_jump,
    scale_lr,
    short_run_extension,
    shorten_warmup,
    show,
    sparse_tail_gain,
    tail_gain,
    truthy,
    usual_lr_range,
    value_at,
)
from diagnose.advice.policy import AdvicePolicy
from diagnose.advice.reconcile import GROUPS, Candidate, candidate, precedence, resolve
from diagnose.findings import Finding, Recommendation, RunResult
from diagnose.hparams import finite_number
from diagnose.metrics import Role

if TYPE_CHECKING:
    from diagnose.detectors.divergence import Blowup

__all__ = ["GROUPS", "precedence", "recommend"]

#: Activations whose gradient vanishes when they saturate: in a network that never left
#: its initial loss with a normal LR they are the first thing to change.
SATURATING = ("sigmoid", "tanh")
#: States whose info-severity findings still get advice (the advice is cheap and safe).
INFO_STATES = ("lr_schedule", "undertrained")


def _ev(finding: Finding, *keys: str) -> float | None:
    """First finite number among ``keys`` of the finding's evidence."""
    for key in keys:
        got = finite_number(finding.evidence.get(key))
        if got is not None:
            return got
    return None


def _ev_flag(finding: Finding, *keys: str) -> bool:
    """True when any of ``keys`` is a truthy flag (or a non-empty string) in the evidence."""
    for key in keys:
        value = finding.evidence.get(key)
        if isinstance(value, (bool, np.bool_)) and bool(value):
            return True
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"):
            return True
    return False


def _ev_text(finding: Finding, *keys: str) -> str:
    """Lower-case text of the first string among ``keys`` of the evidence, '' when none."""
    for key in keys:
        value = finding.evidence.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


# ---------------------------------------------------------------------------
# Per-run context
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Candidates and the generators that make them
# ---------------------------------------------------------------------------


# ----- per-state generators -------------------------------------------------

Generator = Callable[[AdviceContext, Finding], list[Candidate]]


def _divergence(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Divergence from a finding's evidence dict (a user's rule; DIV001-004 measure their
    :class:`~diagnose.detectors.divergence.Blowup` in the detector and advise from it)."""
    from diagnose.detectors.divergence import blowup

    bad = _ev(f, "first_nonfinite_step")
    if bad is None:
        bad = f.step
    # DIV001: loss_min_step; DIV002: best_step (onset_step is mid-rise); DIV004: window start
    turn = _ev(f, "loss_min_step", "best_step", "onset_step", "window_start_step")
    loss_min = _ev(f, "loss_min", "best")
    rise = _ev(f, "rise_ratio_before_nonfinite", "ratio_to_best")
    if rise is None:  # DIV003: astronomical value against the early magnitude
        peak, early = _ev(f, "max_abs", "value"), _ev(f, "early_magnitude")
        rise = peak / early if peak is not None and early else None
    nonfinite = _ev(f, "first_nonfinite_step") is not None
    return divergence_advice(ctx, blowup(ctx.series_for(f, Role.TRAIN_LOSS), bad, turn,
                                         loss_min, rise, nonfinite, ctx.lr_series,
                                         finite_number(ctx.hp.get("warmup_steps"))))


def divergence_advice(ctx: AdviceContext, b: Blowup) -> list[Candidate]:
    """Lower the LR from the measured blow-up (the LR where the loss turned when the LR is
    scheduled, else by how violent it was), then warmup and clipping."""
    bad, turn, rise, nonfinite = b.bad, b.turn, b.rise, b.nonfinite
    points_between = b.points_between
    pol = ctx.policy
    sudden = nonfinite and points_between is not None and points_between <= pol.sudden_points
    violent = sudden or (rise is not None and rise >= pol.violent_rise)
    steep = not violent and (nonfinite or (rise is not None and rise >= pol.steep_rise))
    divisor = (pol.lr_cut_violent if violent else pol.lr_cut_steep if steep
               else pol.lr_cut_mild)
    what = "became non-finite" if nonfinite else "blew up"
    at = f" at step {show(bad)}" if bad is not None else ""
    risen = f" after rising {show(nice(rise))}x" if rise is not None and rise > 1 else ""
    reason = f"the loss {what}{at}{risen}"
    out: list[Candidate] = []
    lr, source = ctx.lr
    lr_turn = value_at(ctx.lr_series, turn) if ctx.lr_series is not None and turn else None
    scheduled = False
    if ctx.lr_series is not None:
        vals = ctx.lr_series.finite.values
        upto = vals[ctx.lr_series.finite.steps <= (bad if bad is not None else np.inf)]
        pos = upto[upto > 0]
        scheduled = len(pos) >= 2 and float(pos.max() / pos.min()) >= pol.scheduled_lr_span
    clip, clip_note = clip_grads(ctx, turn if turn is not None else bad,
                            f"{reason}", strength=0.9)
    before, after = b.lr_before, b.lr_after
    jumped = before is not None and after is not None and after >= pol.lr_jump_ratio * before
    if jumped and before is not None and after is not None:
        note = f"; {clip_note}" if clip_note else ""
        restored = nice(before, 3)
        jump = (f"the logged LR jumped x{show(nice(after / before))} from {show(restored)} to "
                f"{show(nice(after, 3))} at step {show(b.lr_jump_step)} and the loss {what}{at}")
        step = remove_lr_jump(ctx, before, after, jump)
        if step is not None:
            out.append(step)
        configured = finite_number(ctx.hp.get("learning_rate"))
        if (configured is not None and before < configured < pol.lr_jump_ratio * before
                and "learning_rate" not in ctx.overridden):
            # the configured LR's own schedule gave the pre-jump value: a smaller base LR
            # would shrink the schedule that trained fine and keep the jump, so the base
            # stays and the jump itself goes (the probe then has nothing to change)
            out.append(candidate(
                "learning_rate", "decrease", nice(after, 3), nice(configured, 3),
                f"{jump}; the configured learning rate {show(nice(configured, 3))} (its "
                f"schedule gave {show(restored)} before the jump) did not raise it, so keep "
                "it and remove what multiplies the LR at that step (a schedule milestone "
                f"or gamma, a resumed or edited optimizer state){note}.", 1.2))
        else:
            how = (f"so restore the LR before the jump, {show(restored)} (remove what "
                   "raises it: a schedule milestone, a resumed or edited optimizer state)")
            # the LR before the jump may itself sit above the usual range (a warm restart
            # of a cosine from a far-too-high base: its trough is not a working LR)
            landed = (land_in_range(pol, ctx.hp.get("optimizer"), after, restored,
                                    ctx.run_steps)
                      if restored > usual_lr_range(pol, ctx.hp.get("optimizer"))[1] else None)
            if landed is not None:
                restored = landed[0]
                how = (f"and the LR before it, {show(nice(before, 3))}, is above the usual "
                       f"range too: {landed[1]}")
            out.append(candidate(
                "learning_rate", "decrease", nice(after, 3), restored,
                f"{jump}, {how}{note}.", 1.2))
    elif scheduled and lr_turn is not None and lr_turn > 0 and lr is not None:
        safety = ctx.policy.lr_safety_factor
        note = f"; {clip_note}" if clip_note else ""
        turned = (f"the loss turned upward at step {show(turn)} while the logged LR was "
                  f"{show(lr_turn)} and {what}{at}")
        cap = pol.max_scheduled_lr_share
        if lr_turn / safety <= lr * cap:
            proposed = nice(lr_turn / safety)
            how = (f"so use that LR /{show(safety)} = {show(proposed)} "
                   f"(from {source} {show(lr)})")
        else:  # the LR where it turned is not below the current one: cut the current
            proposed = nice(lr * cap)
            half = cap == 0.5
            share = "half" if half else f"{show(cap)}x"
            act = "halve it" if half else f"scale it x{show(cap)}"
            how = (f"and that LR /{show(safety)} would not be below {share} the {source} LR "
                   f"{show(lr)}, so {act} to {show(proposed)}")
        landed = land_in_range(pol, ctx.hp.get("optimizer"), lr, proposed, ctx.run_steps)
        if landed is not None:
            proposed, how = landed[0], f"and the {source} LR {landed[1]}"
        out.append(candidate("learning_rate", "decrease", lr, proposed,
                             f"{turned}, {how}{note}.", 1.2))
    else:
        if sudden:
            how = f"within {pol.sudden_points} logged points of its minimum"
        elif violent:
            how = f"a rise of {show(pol.violent_rise)}x or more"
        elif steep:
            how = ("after a gradual rise" if nonfinite
                   else f"a rise of {show(pol.steep_rise)}x or more")
        else:
            how = f"a rise under {show(pol.steep_rise)}x"
        why = f"{reason} ({how})"
        if clip_note:
            why += f" and {clip_note}"
        out.append(scale_lr(ctx, 1 / divisor, why, 1.2))
    scaled = truthy(ctx.hp.get("standardize_targets"))
    loss_min = b.loss_min if b.loss_min is not None and math.isfinite(b.loss_min) else None
    measured = loss_min is not None
    low, high, _ = usual_lr_range(pol, ctx.hp.get("optimizer"))
    if (ctx.regression and not scaled and loss_min is not None
            and loss_min >= pol.unscaled_loss_level):
        why = (f"the loss never fell below {show(nice(loss_min, 3))} (at least "
               f"{show(pol.unscaled_loss_level)}): a regression loss on unscaled targets")
    elif (ctx.regression and scaled is not True and not measured and lr is not None
          and low <= lr <= high):
        # no finite loss to size, but a normal LR and targets the config does not
        # standardise (bench/fixrate/direction.py: 30 unscaled-target runs NaN from their
        # first point got only an LR cut when the config did not record the scaling)
        raw = ("the config leaves the regression targets unstandardised" if scaled is False
               else "the config does not say the regression targets are standardised")
        why = (f"no finite loss was logged although the LR {show(lr)} is in the usual "
               f"range, and {raw}")
    else:
        why = ""
    if why:
        current_clip = finite_number(ctx.hp.get("grad_clip"))
        together: tuple[Recommendation, ...] = ()
        if (nonfinite and pol.clip_with_first_blowup
                and not (current_clip is not None and current_clip > 0)):
            together = (Recommendation(
                "grad_clip", "set", ctx.hp.get("grad_clip"), pol.default_clip_norm,
                "the loss went non-finite: standardised targets alone leave unscaled inputs "
                "or a bad init free to blow the updates up, so clip the global grad norm at "
                f"{float(pol.default_clip_norm)} in the same run to bound them"),)
        out.append(candidate(
            "standardize_targets", "enable", ctx.hp.get("standardize_targets"), True,
            f"{reason} and {why}; the gradients scale with the targets, so standardise "
            "them (subtract the mean, divide by the std; invert for predictions) before "
            "tuning the LR.", 1.5 if measured else 1.3, together=together,
            together_needed=False))
    init = init_blowup(ctx, b)
    if init is not None:
        out.append(init)
    # a jump mid-run is not a start-up problem: no warmup
    transformer = ctx.family == "transformer"
    warm = None if jumped else add_warmup(
        ctx, turn if turn is not None else bad,
        "the loss started to climb" + (" in a transformer (attention needs a warmup while "
                                        "Adam's statistics settle)" if transformer else ""),
        1.3 if transformer else 1.0)
    if warm is not None:
        out.append(warm)
    if clip is not None:
        out.append(clip)
    return out


def init_blowup(ctx: AdviceContext, b: Blowup | None) -> Candidate | None:
    """A classifier whose loss is already ``init_blowup_factor`` x ln C at its first logged
    point, with an LR not above the optimizer's usual range, had huge logits before any
    step could go wrong: the initial weights are too large (a scaled-up init), so the init
    is the fix and an LR cut only slows the recovery.  With the class count not logged the
    untrained level is ln ``init_blowup_classes`` (an upper bound).  None otherwise
    (regression, a first loss near ln C, an unknown LR or one far too high).  ``b`` is
    None for a run that sat flat after its blown first points (:func:`first_blowup_advice`)."""
    from diagnose.signals import chance_loss, infer_num_classes

    loss = ctx.role(Role.TRAIN_LOSS)
    if loss is None or ctx.regression:
        return None
    found = infer_num_classes(ctx.run, ctx.roles)
    # not a regression: an accuracy-like metric or the config
    known = found is not None and found >= 2
    n = found if found is not None and found >= 2 else ctx.policy.init_blowup_classes
    fin = loss.finite
    first, untrained = float(fin.values[0]), chance_loss(n)
    if first < ctx.policy.init_blowup_factor * untrained:
        return None
    if b is not None and b.bad is not None and b.bad > fin.steps[0] and b.turn is not None and (
            b.turn > fin.steps[0] and b.loss_min is not None
            and b.loss_min < ctx.policy.init_blowup_factor * untrained):
        return None  # it came down to a normal level first: the blow-up came later
    lr, _ = ctx.lr
    if lr is None or lr > usual_lr_range(ctx.policy, ctx.hp.get("optimizer"))[1]:
        # an unknown LR may be the cause as well; so may one above its usual range (the
        # first logged point can average a whole epoch at that LR: sample_logs' LR 1.0)
        return None
    act = str(ctx.hp.get("activation") or "").lower()
    proposed = "xavier_uniform" if act in ("tanh", "sigmoid") else "he_normal"
    return candidate(
        "init", "set", ctx.hp.get("init"), proposed,
        f"the loss was already {show(nice(first, 3))} at the first logged step "
        f"{show(float(fin.steps[0]))}, {show(nice(first / untrained))}x the untrained level "
        f"ln {n} = {show(nice(untrained, 3))}"
        f"{'' if known else ' (the class count is not logged: even that many classes)'}"
        ", with the LR not above its usual range: the "
        f"initial weights are too large (logits far from zero before any step), so use "
        f"{'Xavier (Glorot)' if proposed == 'xavier_uniform' else 'He'} initialisation "
        "(the framework default scale) before touching the LR.",
        # impact 0.25 x 6 = 1.5: above the LR cut (1.2), the cause is not the LR
        6.0, direction=0)


def blown_first_point(ctx: AdviceContext) -> tuple[float, float, str] | None:
    """(first train loss, level, what the level is) when a classifier's train loss's
    first logged point is ``blown_first_factor`` x its untrained level ln C or more and
    came down within the first tenth of the run (plateau's :func:`after_first_blowup`
    reading, its one owner); with C not logged the level is ln ``init_blowup_classes``,
    an upper bound (as :func:`init_blowup`).  None otherwise, and for a regression (no
    untrained level: an unscaled target's loss starts as high as its variance).

    DESIGN.md: a first point that high is blow-up evidence (the first steps' LR or a
    scaled-up init), so the flat stretch after it is not a saddle to push through."""
    from diagnose.detectors.plateau import after_first_blowup
    from diagnose.detectors.progress import curve

    c = curve(ctx.role(Role.TRAIN_LOSS), higher_is_better=False)
    if c is None or len(c) < 2 or ctx.regression:
        return None
    found = signals.infer_num_classes(ctx.run, ctx.roles)
    known = found is not None and found >= 2
    n = found if found is not None and found >= 2 else ctx.policy.init_blowup_classes
    level = signals.chance_loss(n)
    at = f"ln {n} = {show(nice(level, 3))}"
    label = (f"the untrained level {at}" if known else
             f"{at}, the untrained level of even that many classes (the class count is not "
             "logged)")
    cut = after_first_blowup(c, level, ctx.policy.blown_first_factor)
    if cut is None or cut is c:
        return None
    return float(c.values[0]), level, label


def first_blowup_advice(ctx: AdviceContext, first: float, level: float,
                        label: str) -> list[Candidate]:
    """A flat run whose first logged train loss was blown up (:func:`blown_first_point`):
    with the LR known and not above its usual range the blow-up is the init's (as
    :func:`init_blowup`, whose larger ``init_blowup_factor`` it takes first); else an LR
    cut (``lr_cut_violent``, as a violent blow-up) with the init beside it.  Never an LR
    raise: a network its first steps blew up sits dead, not on a saddle."""
    init = init_blowup(ctx, None)
    if init is not None:
        return [init]
    lr, source = ctx.lr
    blown = (f"the train loss was {show(nice(first, 3))} at its first logged step, "
             f"{show(nice(first / level))}x {label}, and flat after it: its first steps "
             "blew up")
    if lr is not None and lr <= usual_lr_range(ctx.policy, ctx.hp.get("optimizer"))[1]:
        return [candidate("init", "set", ctx.hp.get("init"), "he_normal",
                          f"{blown} with the {source} LR {show(lr)} not above its usual "
                          "range, so not on a saddle plateau: the initial weights were too "
                          "large (logits far from zero before any step); use He "
                          "initialisation (the framework default scale) before touching the "
                          "LR.", 1.5, direction=0)]
    why = (f"{blown} (an LR far too high, or weights initialised too large) and left it "
           "there, not on a saddle plateau")
    out = [scale_lr(ctx, 1 / ctx.policy.lr_cut_violent, why, 1.2)]
    out.append(candidate("init", "set", ctx.hp.get("init"), "he_normal",
                         f"{why}; if the LR was not the cause, the initial weights were too "
                         "large (logits far from zero before any step): use He "
                         "initialisation (the framework default scale).", 0.8, direction=0))
    return out


def _instability(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Instability from a finding's evidence dict (a user's rule; INS001-003 advise from
    their typed evidence through :func:`instability_advice`)."""
    first = _ev(f, "onset_step") or (
        float(f.step) if f.step is not None else None)
    # INS002 (noisy_loss) is about late noise by construction: it carries noise_to_progress
    return instability_advice(ctx, first, _ev(f, "spikes"), _ev(f, "noise_to_progress"),
                              "noise_to_progress" in f.evidence, f.metric)


def instability_advice(ctx: AdviceContext, first: float | None, spikes: float | None,
                       ratio: float | None, late_noise: bool,
                       metric: str | None) -> list[Candidate]:
    """Spiky or oscillating loss: milder LR cut, warmup if early, clip, bigger batch, decay."""
    total = ctx.total_steps
    pol = ctx.policy
    late = late_noise or (first is not None and total is not None
                          and first > pol.late_share * total)
    what = "gradient-norm" if "grad" in str(metric or "").lower() else "loss"
    if spikes:
        count = f"{show(spikes)} {what} spikes"
    elif ratio is not None:
        count = f"late loss noise is {ratio:.0%} of the progress made"
    else:
        count = "the loss oscillates"
    where = f" from step {show(first)}" if first is not None else ""
    reason = f"{count}{where}"
    cut = pol.lr_cut_spiky if spikes and spikes >= pol.many_spikes else pol.lr_cut_unstable
    lr, _ = ctx.lr
    # spikes at an LR already below the optimizer's usual range are not the LR's doing
    # (a tiny LR that stalls the run): warmup and clipping bound them, a cut only stalls more
    low = usual_lr_range(pol, ctx.hp.get("optimizer"))[0]
    out = [] if lr is not None and lr < low else [scale_lr(ctx, 1 / cut, reason, 0.9)]
    if not late:
        warm = add_warmup(ctx, first, "instability starts")
        if warm is not None:
            out.append(warm)
    clip, _ = clip_grads(ctx, first, reason, 0.9)
    if clip is not None:
        out.append(clip)
    batch = finite_number(ctx.hp.get("batch_size"))
    if batch is not None and batch < pol.max_batch_to_double:
        out.append(candidate("batch_size", "increase", batch, int(batch * 2),
                         f"{reason}; a larger batch lowers gradient noise (tuning playbook), "
                         f"so double it to {int(batch * 2)} without raising the LR.", 0.8))
    if late:
        sched = decay_schedule(ctx, f"{count} late in training{where}")
        if sched is not None:
            out.append(sched)
    return out


def _exploding(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Exploding gradients from a finding's evidence dict (a user's rule; GRD001 advises
    from its typed evidence through :func:`exploding_advice`)."""
    # GRD001: growth_factor from its low (low_step) to late_level, or first_nonfinite_step
    step = _ev(f, "first_nonfinite_step", "onset_step") or (
        float(f.step) if f.step is not None else None)
    return exploding_advice(ctx, step, _ev(f, "low_step") or step,
                            _ev(f, "growth_factor", "ratio", "explode_factor"),
                            _ev(f, "low"), _ev(f, "late_level"),
                            "first_nonfinite_step" in f.evidence)


def exploding_advice(ctx: AdviceContext, step: float | None, before: float | None,
                     ratio: float | None, low: float | None, late: float | None,
                     nonfinite: bool) -> list[Candidate]:
    """Clip first (the direct fix), then a lower LR, warmup and normalisation."""
    where = f" at step {show(step)}" if step is not None else ""
    if ratio is not None and low is not None and late is not None:
        size = f" ({show(nice(ratio))}x, from {show(nice(low))} to {show(nice(late))})"
    elif ratio is not None:
        size = f" ({show(nice(ratio))}x)"
    else:
        size = " to non-finite values" if nonfinite else ""
    reason = f"grad norms exploded{size}{where}"
    out: list[Candidate] = []
    clip, note = clip_grads(ctx, before, reason, 1.5)
    if clip is not None:
        out.append(clip)
    out.append(scale_lr(ctx, 1 / 3, reason + (f" and {note}" if note else ""), 0.9))
    warm = add_warmup(ctx, step, "gradients exploded")
    if warm is not None:
        out.append(warm)
    if truthy(ctx.hp.get("normalization")) is False:
        out.append(candidate("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                         f"{reason} in a network without normalization layers, so add "
                         "BatchNorm (or LayerNorm) after each linear/conv layer.", 1.0,
                         direction=0))
    return out


def _vanishing(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Vanishing gradients from a finding's evidence dict (a user's rule; GRD002 advises
    from its typed evidence through :func:`vanishing_advice`)."""
    return vanishing_advice(ctx, _ev(f, "late_level", "value"), _ev(f, "collapse_factor"))


def to_relu(ctx: AdviceContext, rationale: str, strength: float) -> Candidate:
    """A switch to ReLU; it carries He init in the same change (``together_with``) unless
    the init is already He or the policy's ``relu_with_he_init`` is off: ReLU under an init
    scaled for sigmoid/tanh still fades through a deep stack, and He init alone leaves a
    saturating net dead, so only both together revive it."""
    init = ctx.hp.get("init")
    name = str(init or "").lower()
    together: tuple[Recommendation, ...] = ()
    if ctx.policy.relu_with_he_init and "he" not in name and "kaiming" not in name:
        together = (Recommendation("init", "set", init, "he_normal",
                                   "He (Kaiming) initialisation is the one scaled for "
                                   "ReLU"),)
    return candidate("activation", "set", ctx.hp.get("activation"), "relu", rationale,
                     strength, direction=0, together=together)


def vanishing_advice(ctx: AdviceContext, level: float | None,
                     collapse: float | None) -> list[Candidate]:
    """Vanishing gradients: activation, normalisation, residuals, init (AUTOTRAINER order)."""
    reason = "gradients vanish" + (f" (norm {show(nice(level))}" if level is not None else "")
    if level is not None:
        reason += (f", {show(nice(collapse))}x below its early level)" if collapse
                   else ")")
    out: list[Candidate] = []
    act = str(ctx.hp.get("activation", "") or "").lower()
    if "relu" not in act and "gelu" not in act and "silu" not in act:
        out.append(to_relu(ctx, f"{reason}; saturating activations (sigmoid/tanh) shrink "
                           "gradients layer by layer, so use ReLU with He initialisation.",
                           1.2))
    if not ctx.uses_batchnorm and truthy(ctx.hp.get("normalization")) is not True:
        out.append(candidate("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                         f"{reason}, so normalise activations (BatchNorm after each dense/conv "
                         "layer, LayerNorm for sequence models).", 1.2, direction=0))
    out.append(candidate("residual_connections", "enable", ctx.hp.get("residual_connections"),
                     True, f"{reason}, so add residual connections x + f(Norm(x)) to give "
                     "gradients a short path (tuning playbook).", 1.0))
    out.append(candidate("init", "set", ctx.hp.get("init"), "he_normal",
                     f"{reason}, so use He (Kaiming) initialisation matched to ReLU.", 1.0,
                     direction=0))
    return out


def _dead_units(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Dead or saturated units from a finding's evidence dict (a user's rule; UNT001 and
    UNT002 advise from their typed evidence)."""
    saturated = _ev(f, "saturated_share")  # UNT002
    if saturated is not None:
        return saturated_advice(ctx, saturated, f.metric)
    return dead_relu_advice(ctx, _ev(f, "zero_share", "dead_share"), f.metric)  # UNT001


def saturated_advice(ctx: AdviceContext, saturated: float,
                     metric: str | None) -> list[Candidate]:
    """Saturated tanh/sigmoid: ReLU, normalisation, Xavier init."""
    where = f" of {metric}" if metric else ""
    reason = f"{saturated:.0%}{where} sits in the flat tails of its activation"
    return [
        to_relu(ctx, f"{reason}, where the gradient is ~0, so use ReLU with He "
                "initialisation.", 1.3),
        candidate("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                  f"{reason}, so normalise the pre-activations (BatchNorm/LayerNorm) to keep "
                  "them in the responsive range.", 1.2, direction=0),
        candidate("init", "set", ctx.hp.get("init"), "xavier_uniform",
                  f"{reason}, so use Xavier/Glorot initialisation scaled for tanh/sigmoid.",
                  1.0, direction=0),
    ]


def dead_relu_advice(ctx: AdviceContext, share: float | None,
                     metric: str | None) -> list[Candidate]:
    """Dying ReLU: lower LR, leaky activation, He init."""
    where = f" of {metric}" if metric else ""
    reason = (f"{share:.0%}{where} is exactly zero (dead ReLU units)"
              if share is not None and share <= 1 else "ReLU units died")
    out = [scale_lr(ctx, 1 / ctx.policy.lr_cut_unstable,
                    f"{reason}; large updates push units below zero for good", 0.9)]
    out.append(candidate("activation", "set", ctx.hp.get("activation"), "leaky_relu",
                     f"{reason}, so use LeakyReLU (slope 0.01) or ELU, which keep a gradient "
                     "for negative inputs.", 1.3, direction=0))
    out.append(candidate("init", "set", ctx.hp.get("init"), "he_normal",
                     f"{reason}, so use He initialisation with zero biases.", 1.0, direction=0))
    return out


def _overfit(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Overfitting from a finding's evidence dict (a user's rule; OVF001-004 advise from
    their typed evidence through :func:`overfit_advice`); what the evidence lacks is read
    from the val series."""
    val = ctx.series_for(f, Role.VAL_LOSS)
    if val is None or val.split not in ("val", "test"):
        val = ctx.role(Role.VAL_LOSS) or ctx.role(Role.VAL_METRIC)
    # OVF001/OVF002: best_step, val_best, val_end, val_worsening_pct; OVF003: val_min(_step)
    best = _ev(f, "best_step", "val_min_step")
    best_value = _ev(f, "val_best", "val_min")
    end_value = _ev(f, "val_end")
    if val is not None:
        fin = val.finite
        better = np.argmax if val.higher_is_better else np.argmin
        if best is None:
            best = float(fin.steps[int(better(fin.values))])
        if best_value is None:
            best_value = value_at(val, best)
        if end_value is None:
            end_value = float(fin.values[-1])
    return overfit_advice(ctx, advice_name(val) if val is not None else "val loss", best,
                          best_value, end_value, _ev(f, "val_worsening_pct"),
                          len(val.finite) if val is not None else 0)


def key_metric_stop(ctx: AdviceContext, name: str,
                    best: float | None) -> tuple[float | None, str]:
    """Where to stop so that the run keeps its own best checkpoint: the step of the key
    metric's best (:meth:`RoleMap.key_point`) when the key metric is a val metric other
    than the curve ``name`` that worsened (a YOLO mAP, a WER, an accuracy that kept
    improving while the val loss rose), None when the key metric was still at its best
    at its last evaluation (a stop earlier would lose it), else ``best``; and a clause
    that names the key metric for the rationale."""
    if best is None:
        return None, ""
    key = ctx.roles.key_point()
    if key is None or key.role != Role.VAL_METRIC or advice_name(key.series) == name:
        return best, ""
    key_name, value = advice_name(key.series), show(nice(key.value, 3))
    if key.step >= key.final_step:
        return None, ""
    if key.step == int(best):
        return best, ""
    return float(key.step), f", but {key_name}, the run's key metric, was best ({value}) at " \
                            f"step {key.step}"


def overfit_advice(ctx: AdviceContext, name: str, best: float | None,
                   best_value: float | None, end_value: float | None, rise: float | None,
                   n_evals: int) -> list[Candidate]:
    """Best at ``best`` then worse by ``rise`` %: stop at the best step, then regularise
    (weight decay, dropout, augmentation, size)."""
    if rise is None and best_value and end_value is not None:
        rise = abs(end_value - best_value) / abs(best_value) * 100
    where = f" at step {show(best)}" if best is not None else ""
    drift = f" and ended {show(nice(rise))}% worse" if rise is not None else ""
    best_txt = f" {show(nice(best_value, 3))}" if best_value is not None else ""
    reason = f"{name} was best ({best_txt.strip() or 'lowest'}){where}{drift}"
    strength = 1.0 if rise is None else float(np.clip(rise / 20.0, 0.6, 1.5))
    out: list[Candidate] = broken_bn_momentum(ctx, reason)
    last = ctx.last_step
    stop, key_note = key_metric_stop(ctx, name, best)
    stop_at: int | None = None
    if stop is not None and (last is None or stop < last):
        stop_at = len(out)
        hyper, current, proposed = length_target(ctx, stop)
        pol = ctx.policy  # AUTOTRAINER: max(3, epochs/15)
        patience = max(pol.min_patience,
                       min(pol.max_patience, n_evals // pol.evals_per_patience))
        floor = ""
        if current is not None and proposed < pol.min_stop_share * current:
            proposed = max(proposed, round(pol.min_stop_share * current))
            floor = (f" at the earliest: {pol.min_stop_share:.0%} of the run, since a stop "
                     "at the very first evaluations leaves nothing to train")
        out.append(candidate(
            hyper, "set", current, proposed,
            f"{reason}{key_note}, so stop at {hyper.replace('_', ' ')} {proposed}{floor} "
            "(or early-stop "
            f"on it with patience {patience} evaluations and restore the best weights).",
            1.4 * strength, direction=-1))
    wd = finite_number(ctx.hp.get("weight_decay"))
    optimizer = str(ctx.hp.get("optimizer") or "")
    decoupled = "adamw" in optimizer.lower()
    adaptive = optimizer_family(optimizer) in ("adam", "rmsprop") and not decoupled
    default_wd = (ctx.policy.decoupled_weight_decay if decoupled
                  else ctx.policy.adaptive_coupled_weight_decay if adaptive
                  else ctx.policy.default_weight_decay)
    max_wd = (ctx.policy.max_coupled_weight_decay if optimizer_family(optimizer) and not
              decoupled else ctx.policy.max_weight_decay)
    usual = (f" ({optimizer} decouples the decay from the gradient, so its usual values "
             f"are larger, up to {show(ctx.policy.max_weight_decay)})"
             if decoupled else f" ({optimizer} adds it to the gradient, which its adaptive "
             "step scales down, so it needs the top of the usual "
             f"{show(ctx.policy.default_weight_decay)} to "
             f"{show(ctx.policy.max_coupled_weight_decay)})" if adaptive
             else " (the usual default)")
    if wd is None:
        out.append(candidate("weight_decay", "set", None, default_wd,
                         f"{reason}, so add weight decay {default_wd:g}"
                         f"{usual if decoupled or adaptive else ''} (if the run "
                         "already uses some, multiply it by 3 instead; "
                         f"{concrete_hint('weight_decay')}).", strength, direction=1))
    elif wd <= 0:
        out.append(candidate("weight_decay", "increase", wd, default_wd,
                         f"{reason} with no weight decay, so add {default_wd:g}{usual}.",
                         strength))
    elif wd < max_wd:
        strong = rise is not None and rise >= ctx.policy.strong_overfit_pct
        factor = (ctx.policy.strong_weight_decay_factor if strong
                  else ctx.policy.weight_decay_factor)
        new = nice(min(wd * factor, max_wd))
        out.append(candidate("weight_decay", "increase", wd, new,
                         f"{reason} with weight decay {show(wd)}, so raise it x{show(factor)} "
                         f"to {show(new)}.", strength))
    tkeys = ctx.transformer_dropout_keys() if ctx.family == "transformer" else []
    for k in tkeys:
        drop = finite_number(ctx.hp.get(k))
        if drop is not None and drop < ctx.policy.max_dropout:
            new = round(min(ctx.policy.max_dropout, max(ctx.policy.default_transformer_dropout,
                                                        drop + ctx.policy.dropout_step)), 2)
            out.append(candidate(k, "increase", drop, new,
                                 f"{reason} with {k} {show(drop)}, so raise it to "
                                 f"{show(new)} (the transformer's own dropout).", strength))
    if "batchnorm_collapse" not in ctx.states and ctx.family != "detection" and not tkeys:
        drop = finite_number(ctx.hp.get("dropout"))
        placement = ("between dense layers, never directly before a BatchNorm layer"
                     if ctx.uses_batchnorm is not False else "between dense layers")
        if drop is None:
            out.append(candidate("dropout", "set", None, ctx.policy.default_dropout,
                             f"{reason}, so add dropout {ctx.policy.default_dropout} {placement} "
                             f"({concrete_hint('dropout')} if the model has some).",
                             strength, direction=1))
        elif drop < ctx.policy.min_dropout:
            out.append(candidate("dropout", "increase", drop, ctx.policy.default_dropout,
                             f"{reason} with dropout {show(drop)}, so use "
                             f"{ctx.policy.default_dropout} "
                             f"{placement}.", strength))
        elif drop < ctx.policy.max_dropout:
            new = round(min(ctx.policy.max_dropout, drop + ctx.policy.dropout_step), 2)
            out.append(candidate("dropout", "increase", drop, new,
                             f"{reason} with dropout {show(drop)}, so raise it to {show(new)} "
                             f"({show(ctx.policy.max_dropout)} is the usual ceiling).",
                             strength))
    # never propose what the config already does (YOLO's hyp.yaml: mosaic 1.0, mixup 0.1)
    if augmentation_on(ctx.hp) is None:
        aug = ctx.hp.get("data_augmentation")
        out.append(candidate("data_augmentation", "enable", aug, True,
                         f"{reason}, so enlarge the effective data set with augmentation "
                         "(crops/flips for images, noise or mixup elsewhere).", strength))
    out.append(candidate("model_capacity", "decrease", None, "x0.5",
                     f"{reason}, so if regularisation is not enough halve the width or depth.",
                     strength))
    if stop_at is not None and ctx.policy.stop_with_dropout:
        out[stop_at] = stop_with_dropout(ctx, out[stop_at], out, tkeys)
    return out


def stop_with_dropout(ctx: AdviceContext, stop: Candidate, cands: list[Candidate],
                      keys: list[str]) -> Candidate:
    """The stop with the finding's own dropout move in the same trial when the run has
    (almost) no dropout (policy ``stop_with_dropout``): the stop keeps the best checkpoint,
    dropout lowers the level it reaches.  ``stop`` unchanged when there is no such move."""
    for c in cands:
        now = finite_number(c.rec.current)
        if (c.rec.hyperparameter in ("dropout", *keys) and now is not None
                and now < ctx.policy.min_dropout):
            return with_companions(
                stop, (c.rec,), f"In the same run, set {c.rec.hyperparameter} "
                f"{show(now)} -> {show(c.rec.proposed)}: the stop keeps the best checkpoint "
                "of a model with next to no dropout, and dropout lowers the level that "
                "checkpoint reaches.")
    return stop


def with_companions(c: Candidate, companions: tuple[Recommendation, ...],
                    why: str) -> Candidate:
    """``c`` carrying changes that help it in the same trial (``together_needed`` False:
    the change alone is still the advice), its rationale extended by ``why``."""
    return replace(c, rec=replace(c.rec, rationale=f"{c.rec.rationale} {why}",
                                  together=companions, together_needed=False))


def already_done(ctx: AdviceContext, c: Candidate) -> bool:
    """The config already has the proposed value (init he_normal, drop_last on): never
    propose it.  The advice's own ``current`` wins over the config (the LR in effect at a
    mid-run jump is not the configured one).  Relative proposals and unknown current
    values are kept."""
    now = c.rec.current if c.rec.current is not None else ctx.hp.get(c.rec.hyperparameter)
    new = c.rec.proposed
    if now is None or new is None or (isinstance(new, str) and new[:1] in "x*/") or (
            isinstance(new, str) and new.startswith("current")):
        return False
    a, b = finite_number(now), finite_number(new)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9)
    ta, tb = truthy(now), truthy(new)
    if ta is not None and tb is not None:
        return ta == tb
    return str(now).strip().lower() == str(new).strip().lower()


def _underfit(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Underfitting from a finding's evidence dict (a user's rule; UND001-003 advise from
    their typed evidence through :func:`underfit_advice`)."""
    # UND001: {split}_series/{split}_end against chance_accuracy/chance_loss;
    # UND002: best of val_metric, train_loss_fall_pct
    ends = [(split, _ev(f, f"{split}_end"), f.evidence.get(f"{split}_series"))
            for split in ("val", "train")]
    best = _ev(f, "best", "value")
    name = str(f.evidence.get("val_metric") or f.metric or "the val metric")
    loss = ctx.role(Role.TRAIN_LOSS)
    return underfit_advice(ctx, underfit_reason(ends, _ev(f, "chance_accuracy"),
                                                _ev(f, "chance_loss"), name, best),
                           tail_gain(loss) if loss is not None else None)


def underfit_reason(ends: list[tuple[str, float | None, Any]], chance_accuracy: float | None,
                    chance_loss: float | None, name: str, best: float | None) -> str:
    """'the model underfits (val accuracy ends at 0.1, chance 0.1)': the first split with
    an end level, else the best of the val metric."""
    reason = "the model underfits"
    for split, end, tag in ends:
        if end is not None:
            acc = "acc" in str(tag).lower()
            chance = chance_accuracy if acc else chance_loss
            what = f"{split} {'accuracy' if acc else 'loss'}"
            reason += f" ({what} ends at {show(nice(end, 3))}"
            reason += f", chance {show(nice(chance, 3))})" if chance is not None else ")"
            return reason
    if best is not None:
        reason += f" ({name} never beats {show(nice(best, 3))})"
    return reason


def underfit_advice(ctx: AdviceContext, reason: str,
                    train_gain: float | None) -> list[Candidate]:
    """Too little capacity or too much regularisation: bigger model, less reg, longer
    (when the train loss still fell ``train_gain`` over the last quarter)."""
    pol = ctx.policy
    out: list[Candidate] = []
    lr, _ = ctx.lr
    ramp = shorten_warmup(ctx, reason)
    heavy = heavy_regularisation(ctx, reason)
    # the running statistics only act in eval mode: a train curve that underfits is not
    # theirs, so a broken BN momentum is listed after the fixes for training itself
    out += broken_bn_momentum(ctx, reason, strength=1.0) + heavy
    decayed = early_lr_decay(ctx, reason)  # trained only until the LR froze: the schedule first
    if decayed is not None:
        out.append(decayed)
    if ramp is not None:
        out.append(ramp)
    elif lr is not None and lr_is_small(lr, ctx.hp.get("optimizer")):
        factor = pol.tiny_lr_factor if lr < pol.tiny_lr else pol.small_lr_factor
        out.append(scale_lr(ctx, factor, f"{reason} with a small LR", 1.0))
    out.append(candidate("model_capacity", "increase", None, "x2",
                     f"{reason}, so double the width or add layers (residual connections for "
                     "deep ones).", 2.6))
    wd = finite_number(ctx.hp.get("weight_decay"))
    done = {c.rec.hyperparameter for c in heavy}
    if wd is not None and wd > 0 and "weight_decay" not in done:
        lower = wd / pol.weight_decay_divisor
        new = nice(lower) if lower >= 1e-6 else 0.0
        out.append(candidate("weight_decay", "decrease", wd, new,
                         f"{reason} while regularised with weight decay {show(wd)}, so lower "
                         f"it to {show(new)}.", 1.0))
    drop = finite_number(ctx.hp.get("dropout"))
    if drop is not None and drop >= pol.min_dropout_to_halve and "dropout" not in done:
        new = round(drop / 2, 2)
        out.append(candidate("dropout", "decrease", drop, new,
                         f"{reason} with dropout {show(drop)}, so halve it to {show(new)}.",
                         1.0))
    gain = train_gain
    loss = ctx.role(Role.TRAIN_LOSS)
    if gain is None and loss is not None:  # an epoch-logged run of 3-5 points
        gain = sparse_tail_gain(loss)
    learning = gain is not None and gain > pol.still_learning_gain
    short = short_run_extension(ctx)
    annealed = short is not None and not learning and lr_annealed(ctx)
    if learning or annealed:
        # impact 0.5 x 1.2 = 0.6 beats capacity's 0.52: a run stopped mid-descent first
        # trains longer; a nearly flat one (gain under longer_first_gain) grows first.  A
        # short run (fewer than short_run_steps) trains up to that budget: its progress is
        # about LR x steps, and a tail flattened by an annealed LR is the schedule's end,
        # not convergence.  The order stays the slope's (round 9: putting every short run's
        # length first cost 5 bottleneck runs their capacity advice in direction.py)
        first = gain is not None and gain >= pol.longer_first_gain
        where = ("between its two logged points" if loss is not None and len(loss.finite) == 2
                 else "over the last quarter of the run")
        why = (f"{reason} and train loss still fell {gain:.0%} {where}"
               if learning and gain is not None else
               f"{reason} and its LR annealed to the end of the run, which flattened the tail")
        if short is not None:
            why += (f"; the run has only {show(ctx.run_steps)} steps, fewer than "
                    f"{show(pol.short_run_steps)}")
        out.append(extend_length(ctx, short if short is not None else pol.long_extension,
                                 why, 1.2 if first else 1.0))
    mom = momentum_fix(ctx, reason)
    if mom is not None:
        out.append(mom)
    if heavy and pol.heavy_reg_with_fit:
        fit = tuple(c.rec for c in out if c.rec.hyperparameter in (
            "model_capacity", "max_steps", "epochs") and c.direction > 0)
        out = [heavy_with_fit(c, fit) if c in heavy else c for c in out]
    if short is not None and (learning or annealed) and pol.capacity_with_length:
        out = capacity_with_length(out)
    return out


def capacity_with_length(cands: list[Candidate]) -> list[Candidate]:
    """The capacity increase of a short underfitting run with the finding's own length
    extension in the same trial (policy ``capacity_with_length``): a bigger model needs at
    least the steps the small one lacked.  The capacity keeps its rank."""
    length = next((c.rec for c in cands if c.rec.hyperparameter in ("max_steps", "epochs")
                   and c.direction > 0 and not c.rec.together), None)
    if length is None:
        return cands
    why = (f"In the same run, {length.hyperparameter} {show(length.proposed)}: a bigger "
           "model needs at least the steps the small one lacked, and this run is short.")
    return [with_companions(c, (length,), why)
            if c.rec.hyperparameter == "model_capacity" and c.direction > 0
            and not c.rec.together else c for c in cands]


def heavy_with_fit(c: Candidate, fit: tuple[Recommendation, ...]) -> Candidate:
    """A heavy regulariser set back together with the finding's capacity increase and
    length extension (policy ``heavy_reg_with_fit``): it held the fit down all run, so
    lifting it alone leaves a model that cannot fit in the steps it has."""
    if not fit:
        return c
    with_ = ", ".join(f"{r.hyperparameter} {show(r.proposed)}" for r in fit)
    return with_companions(c, fit, f"In the same run, {with_}: the regularisation held the "
                           "fit down for the whole run, so lifting it alone leaves a model "
                           "that still cannot fit in the steps it has.")


def _plateau(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """A plateau from a finding's evidence dict (a user's rule; PLT001-003 advise from
    their typed evidence through :func:`plateau_advice`)."""
    # PLT001: flat_since_step, end, poor_level, train_improving; PLT002 (flat from the
    # start: nothing learned, so always poor): start, end, max_rel_move
    start = _ev(f, "flat_since_step") or (
        float(f.step) if f.step is not None else None)
    from_start = "max_rel_move" in f.evidence
    poor = _ev_flag(f, "poor_level") or from_start
    return plateau_advice(ctx, start, _ev(f, "end"), poor, from_start)


def heavy_regularisation(ctx: AdviceContext, reason: str,
                         strength: float = 3.0) -> list[Candidate]:
    """Weight decay far above the optimizer's usual maximum (x ``heavy_reg_factor``) or
    dropout above ``max_dropout``: the regularisation itself holds the run down, so it
    goes back to the usual default first (weight decay 5e-4, AdamW 0.05; dropout 0.3)."""
    pol = ctx.policy
    out: list[Candidate] = []
    wd = finite_number(ctx.hp.get("weight_decay"))
    optimizer = str(ctx.hp.get("optimizer") or "")
    decoupled = "adamw" in optimizer.lower()
    top = (pol.max_weight_decay if decoupled or not optimizer_family(optimizer)
           else pol.max_coupled_weight_decay)
    if wd is not None and wd > pol.heavy_reg_factor * top:
        new = pol.decoupled_weight_decay if decoupled else pol.default_weight_decay
        out.append(candidate("weight_decay", "decrease", wd, new,
                             f"{reason} with weight decay {show(wd)}, far above the usual "
                             f"maximum {show(top)} for {optimizer or 'this optimizer'}, so "
                             f"lower it to {show(new)}.", strength))
    drop = finite_number(ctx.hp.get("dropout"))
    if drop is not None and drop > pol.max_dropout:
        out.append(candidate("dropout", "decrease", drop, pol.default_dropout,
                             f"{reason} with dropout {show(drop)}, above the usual ceiling "
                             f"{show(pol.max_dropout)}, so lower it to "
                             f"{show(pol.default_dropout)}.", strength * 0.9))
    return out


def never_learned_advice(ctx: AdviceContext, reason: str) -> list[Candidate]:
    """A run that never left its initial level (UND001 at chance, PLT002 flat from the
    start): a warmup that never ended is shortened; an LR far outside the optimizer's usual
    range moves into it; with a normal LR the init or activations keep the network dead.
    Never capacity: a bigger model at chance learns nothing either."""
    ramp = shorten_warmup(ctx, reason)
    if ramp is not None:
        return [ramp]
    heavy = broken_bn_momentum(ctx, reason) + heavy_regularisation(ctx, reason)
    if heavy:
        return heavy
    lr, source = ctx.lr
    opt = ctx.hp.get("optimizer")
    side = lr_outside_range(ctx.policy, opt, lr)
    if lr is not None and side:
        low, high, label = usual_lr_range(ctx.policy, opt)
        pol = ctx.policy
        steps = ctx.total_steps if ctx.unit == "step" else None
        short = side == "below" and steps is not None and steps < pol.short_run_steps
        new = landing_point(pol, opt, pol.short_run_landing if short else None)
        lr_move = candidate(
            "learning_rate", "increase" if side == "below" else "decrease", lr, new,
            f"{reason}; the {source} LR {show(lr)} is far {side} {label} usual range "
            f"{show(low)} to {show(high)}, so move into it: {show(new)}"
            + (f" (high in the range: the run has only {show(steps)} steps, fewer than "
               f"{show(pol.short_run_steps)}, to make its progress)" if short else "")
            + f"{landing_note(pol, opt)} (an LR range test refines it).", 2.0)
        return [lr_move]
    dead = dead_start_advice(ctx, reason)
    if dead:
        return dead
    return [scale_lr(ctx, ctx.policy.plateau_lr_factor, f"{reason}: a saddle plateau", 1.0)]


def early_lr_decay(ctx: AdviceContext, reason: str) -> Candidate | None:
    """The logged LR fell below ``annealed_share`` of its peak within ``early_decay_share``
    of the run and stayed there: the configured LR is normal, but the run trained at a
    negligible one, so the schedule is sized to the run (not the init, not the base LR)."""
    s = ctx.lr_series
    pol = ctx.policy
    frozen = signals.lr_frozen_from(s, pol.annealed_share)
    if s is None or frozen is None:
        return None
    steps, values = s.finite.steps, s.finite.values
    peak = float(np.max(values))
    first = int(np.searchsorted(steps, frozen))  # stays low from here
    span = float(steps[-1] - steps[0])
    step = float(steps[first])
    if span <= 0 or (step - steps[0]) > pol.early_decay_share * span:
        return None
    current = ctx.hp.get("lr_schedule")
    total = ctx.total_steps
    horizon = f"{show(total)} steps" if total else "the full run"
    name = str(current) if current and str(current).lower() not in ("constant", "none") \
        else "cosine"
    after = float(np.median(values[first:]))
    return candidate(
        "lr_schedule", "set", current, f"{name} over {horizon}",
        f"{reason}: the logged LR fell from {show(nice(peak, 3))} to {show(nice(after, 3))} "
        f"(below {show(pol.annealed_share)} of its peak) at step {show(step)}, "
        f"{(step - steps[0]) / span:.0%} into the run, and stayed there, so the run trained "
        f"at a negligible LR: decay it over {horizon} instead (remove the early milestone "
        "or the scheduler sized in epochs but stepped per batch).", 2.0, direction=0)


def dead_start_advice(ctx: AdviceContext, reason: str) -> list[Candidate]:
    """A network that never left its initial loss with a normal LR: the init or the
    activations keep it dead (every ReLU off, zero weights), so change those, not the LR;
    unless the logged LR collapsed early (:func:`early_lr_decay`)."""
    decayed = early_lr_decay(ctx, reason)
    if decayed is not None:
        return [decayed]
    why = f"{reason} with an LR inside the optimizer's usual range, so nothing was learned"
    out: list[Candidate] = []
    act = str(ctx.hp.get("activation") or "").lower()
    if act in SATURATING:
        # impact 0.3 x 6 = 1.8: before the init (0.375), the activation is the cause
        out.append(to_relu(ctx, f"{why}: {act} saturates, so the gradient shrinks at every "
                           "layer and a deep stack of them stops learning (vanishing "
                           "gradients); use ReLU with He initialisation.", 6.0))
    init = str(ctx.hp.get("init") or "").lower()
    if "he" not in init and "kaiming" not in init:
        out.append(candidate("init", "set", ctx.hp.get("init"), "he_normal",
                             f"{why}: a dead or zero initialisation (biases pushing every "
                             "ReLU below zero, zero weights) gives no gradient; use He "
                             "initialisation with zero biases.", 1.5, direction=0))
    if act in ("", "relu"):
        out.append(candidate("activation", "set", ctx.hp.get("activation"), "leaky_relu",
                             f"{why}; LeakyReLU (slope 0.01) keeps a gradient for units "
                             "that start below zero.", 1.0, direction=0))
    if truthy(ctx.hp.get("normalization")) is False:
        out.append(candidate("normalization", "set", ctx.hp.get("normalization"),
                             "batchnorm", f"{why}; normalisation re-centres the "
                             "pre-activations so units cannot all start off.", 0.8,
                             direction=0))
    return out


def plateau_advice(ctx: AdviceContext, start: float | None, level: float | None,
                   poor: bool, from_start: bool = False) -> list[Candidate]:
    """Stalled since ``start`` at ``level``: raise/cycle the LR when stuck at a poor level
    (or an underfit run) with a small LR; fix SGD; cut a run that saturated early.  A run
    flat ``from_start`` with a normal LR gets init/activation advice instead."""
    poor = poor or "underfit" in ctx.states
    lr, _ = ctx.lr
    at = f" at {show(nice(level, 3))}" if level is not None else ""
    ramp = shorten_warmup(ctx, f"the curve is flat{at}")
    if ramp is not None:
        return [ramp]
    never = f"the loss never left its initial level{at}"
    if from_start and lr_outside_range(ctx.policy, ctx.hp.get("optimizer"), lr):
        return never_learned_advice(ctx, never)
    blown = blown_first_point(ctx)
    if blown is not None:
        return first_blowup_advice(ctx, *blown)
    heavy = (broken_bn_momentum(ctx, never) + heavy_regularisation(ctx, never)
             if from_start else [])
    if heavy:
        return heavy
    if from_start and lr is not None and not lr_is_small(lr, ctx.hp.get("optimizer")):
        low, high, _ = usual_lr_range(ctx.policy, ctx.hp.get("optimizer"))
        if low <= lr <= high:
            dead = dead_start_advice(ctx, never)
            if dead:
                return dead
    lr_now = value_at(ctx.lr_series, start) if ctx.lr_series is not None and start else None
    small = lr is not None and lr_is_small(lr, ctx.hp.get("optimizer"))
    pol = ctx.policy
    annealed = (lr_now is not None and lr is not None and lr_now < pol.annealed_share * lr)
    since = f" since step {show(start)}" if start is not None else ""
    at = f" at {show(nice(level, 3))}" if level is not None else ""
    reason = f"the curve is flat{at}{since}"
    out: list[Candidate] = []
    decayed = early_lr_decay(ctx, reason) if annealed else None
    if decayed is not None:  # flat because the LR froze early: size the schedule to the run
        out.append(decayed)
    if (poor or small) and not annealed:
        why = reason + (" at a poor level" if poor else "") + (
            f" with a small LR ({show(lr)})" if small else "")
        out.append(scale_lr(ctx, pol.plateau_lr_factor, f"{why}: a saddle plateau, not a minimum",
                             1.0))
        out.append(candidate("lr_schedule", "set", ctx.hp.get("lr_schedule"), "cyclic",
                         f"{why}, so cycle the LR (cyclical LR, Smith 2017, or cosine with "
                         "warm restarts) to cross the plateau.", 0.9, group="learning_rate",
                         direction=1))
    mom = momentum_fix(ctx, reason)
    if mom is not None:
        out.append(mom)
    total = ctx.total_steps
    if (not poor and start is not None and total
            and start - ctx.first_step < pol.early_saturation * total):
        hyper, current, proposed = length_target(ctx, start + pol.cut_share * (total - start))
        if current is not None and proposed < current:
            out.append(candidate(hyper, "set", current, proposed,
                             f"{reason} and saturated long before the end, so cut the run to "
                             f"{proposed} and spend the compute on other trials (tuning "
                             "playbook).", 0.6, direction=-1))
    if not out and not annealed:
        out.append(candidate("lr_schedule", "set", ctx.hp.get("lr_schedule"), "cyclic",
                         f"{reason}, so cycle the LR (cyclical LR, Smith 2017) to test whether "
                         "it sits on a saddle plateau rather than at a minimum.", 0.7,
                         group="learning_rate", direction=1))
    return out


def _batchnorm(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """BN statistics broken, from a finding's evidence dict (a user's rule; BN001 and
    BN002 advise from their typed evidence through :func:`batchnorm_advice`)."""
    # BN001 branch erratic: val_median_jump_factor; branch chance: val_acc_median against
    # chance_accuracy; BN002: worst_tag, kind (collapse/explode), ratio; both: batch_size
    tag = f.evidence.get("worst_tag")
    return batchnorm_advice(ctx, _ev_text(f, "branch"), _ev(f, "val_median_jump_factor"),
                            _ev(f, "val_acc_median"), _ev(f, "chance_accuracy"),
                            _ev(f, "ratio"), str(tag) if tag else None,
                            _ev_text(f, "kind"), _ev(f, "batch_size"))


def batchnorm_advice(ctx: AdviceContext, branch: str, jump: float | None,
                     v_med: float | None, chance: float | None, ratio: float | None,
                     worst_tag: str | None, kind: str,
                     logged_batch: float | None) -> list[Candidate]:
    """BN statistics broken: bigger batch, other norm, precise BN, drop_last, dropout
    order."""
    if branch == "erratic" and jump is not None:
        reason = (f"val loss jumps {show(nice(jump))}x between evaluations while train "
                  "loss is smooth (eval-mode BatchNorm statistics)")
    elif branch == "chance" and v_med is not None:
        at = f" (chance {show(nice(chance, 3))})" if chance is not None else ""
        reason = (f"val accuracy stays at {show(nice(v_med, 3))}{at} while train accuracy "
                  "is good (eval-mode BatchNorm statistics)")
    elif ratio is not None and worst_tag:
        verb = "collapse" if kind == "collapse" else "explode"
        reason = (f"BatchNorm statistics {verb} ({worst_tag} RMS changes "
                  f"{show(nice(ratio))}x)")
    else:
        reason = "BatchNorm statistics look broken"
    pol = ctx.policy
    batch = finite_number(ctx.hp.get("batch_size"))
    if batch is None:
        batch = logged_batch
    out: list[Candidate] = []
    mom = finite_number(ctx.hp.get("bn_momentum"))
    out += broken_bn_momentum(ctx, reason)
    tiny = batch is not None and batch <= pol.tiny_bn_batch
    small = batch is not None and batch < pol.min_bn_batch
    norm = str(ctx.hp.get("normalization") or "").lower()
    if "group" not in norm and "layer" not in norm:
        out.append(candidate("normalization", "set", ctx.hp.get("normalization"), "groupnorm",
                             f"{reason}{' and the batch is tiny' if tiny else ''}, so use "
                             "GroupNorm (or LayerNorm), which does not depend on batch "
                             "statistics.", 3.5 if tiny else 1.2 if small else 0.9,
                             direction=0))
    if small and batch is not None:
        # never a size when the batch is unknown: it could be a decrease
        out.append(candidate("batch_size", "increase", batch, pol.min_bn_batch,
                             f"{reason} with batch size {show(batch)}, so use at least "
                             f"{pol.min_bn_batch} for stable batch statistics.", 1.0))
    if truthy(ctx.hp.get("drop_last")) is not True:
        last = " (with momentum 1 the statistics are the last batch's)" if mom == 1.0 else ""
        out.append(candidate("drop_last", "enable", ctx.hp.get("drop_last"), True,
                             f"{reason}, so shuffle the training data and drop the last "
                             f"incomplete batch so no BN step sees a tiny batch{last}.",
                             2.0 if mom == 1.0 else 1.0))
    if truthy(ctx.hp.get("precise_bn")) is not True:
        out.append(candidate("precise_bn", "enable", None, True,
                             f"{reason}, so recompute the BN running statistics over ~200 "
                             "training batches before evaluating (precise BN).", 1.0))
    drop = finite_number(ctx.hp.get("dropout"))
    if drop is not None and drop > 0:
        out.append(candidate("dropout_placement", "set", None, "after_batchnorm",
                             f"{reason}; dropout right before a BN layer shifts the variance "
                             "BN estimates, so move dropout after the last BN layer.", 1.0,
                             direction=0))
    return out


def broken_bn_momentum(ctx: AdviceContext, reason: str,
                       strength: float = 4.0) -> list[Candidate]:
    """A logged BatchNorm momentum of 0 or 1 breaks eval mode whatever state the curves
    show (running statistics never updated, or the last batch's alone): fix it first,
    unless ``strength`` says the state cannot come from eval mode (an underfit train
    curve: training normalises with the batch's own statistics)."""
    mom = finite_number(ctx.hp.get("bn_momentum"))
    if mom is None or mom not in (0.0, 1.0):
        return []
    fix = ctx.policy.bn_momentum_fix
    what = ("never update (training statistics are not tracked)" if mom == 0 else
            "are the last training batch's alone")
    out = candidate("bn_momentum", "set", mom, fix,
                    f"{reason} with BatchNorm momentum {show(mom)}: the running statistics "
                    f"{what}, so eval mode uses wrong statistics (PyTorch's convention; in "
                    f"Keras's inverted one the fix is 0.9); set it to {show(fix)}.",
                    strength, direction=0)
    if (mom == 1.0 and ctx.policy.bn_momentum_with_drop_last
            and truthy(ctx.hp.get("drop_last")) is not True):
        drop = candidate("drop_last", "enable", ctx.hp.get("drop_last"), True,
                         "drop the last incomplete batch of each epoch", 1.0)
        out = with_companions(out, (drop.rec,), "In the same run, drop_last on: the "
                              "statistics eval mode used were the last batch's, and the last "
                              "batch of an epoch is the incomplete one, often tiny.")
    return [out]


def _lr_schedule(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Schedule anomalies from a finding's evidence dict (a user's rule; the built-in
    LRS001/LRS002 advise from their typed evidence through the same functions)."""
    zero_from = _ev(f, "zero_from_step")  # LRS001
    if zero_from is not None:
        return lr_zero_advice(ctx, zero_from, _ev(f, "share_of_run"))
    return lr_flat_advice(ctx, _ev(f, "lr"), _ev(f, "gain_share"))  # LRS002


def lr_zero_advice(ctx: AdviceContext, zero_from: float,
                   share: float | None) -> list[Candidate]:
    """The LR sits at 0 from ``zero_from``: size the schedule to the run, or stop there."""
    current = ctx.hp.get("lr_schedule")
    total = ctx.total_steps
    part = f" ({share:.0%} of the run)" if share is not None else ""
    reason = f"the LR is 0 from step {show(zero_from)}{part}, so those steps change nothing"
    horizon = f"{show(total)} steps" if total else "the full run"
    name = str(current) if current else "cosine"
    out = [candidate("lr_schedule", "set", current, f"{name} over {horizon}",
                     f"{reason}: the scheduler's horizon is shorter than the run (often "
                     "stepped per batch but sized in epochs), so size it to "
                     f"{horizon}.", 1.0, direction=0)]
    hyper, cur, proposed = length_target(ctx, zero_from)
    if cur is not None and proposed < cur:
        out.append(candidate(hyper, "set", cur, proposed,
                             f"{reason}, so stop at {proposed} if the schedule stays as it "
                             "is.", 0.8, direction=-1))
    return out


def lr_flat_advice(ctx: AdviceContext, lr: float | None,
                   share: float | None) -> list[Candidate]:
    """A constant LR while the loss stalls: decay it."""
    current = ctx.hp.get("lr_schedule")
    text = str(current or "").lower()
    proposed = "step" if "cos" in text else "cosine"
    flat = f"the LR stays at {show(lr)}" if lr is not None else "the LR never decays"
    tail = (f" while the loss gains only {share:.0%} of its progress in the second half"
            if share is not None else "")
    return [candidate("lr_schedule", "set", current, proposed,
                      f"{flat}{tail}, so decay it with a {proposed} schedule (to ~1% of the "
                      "peak at the last step).", 1.0, direction=0)]


def _undertrained(ctx: AdviceContext, f: Finding) -> list[Candidate]:
    """Still improving at the end, from a finding's evidence dict (a user's rule; the
    built-in PRG001 advises from its typed evidence through :func:`extend_advice`)."""
    start, end = _ev(f, "tail_start_value"), _ev(f, "tail_end_value")
    share = _ev(f, "tail_gain_share")
    tail_frac = _ev(f, "threshold_tail_frac") or 0.25
    series = ctx.series_for(f, Role.VAL_LOSS) or ctx.role(Role.VAL_METRIC) or ctx.role(
        Role.TRAIN_LOSS)
    gain = None
    if start is not None and end is not None and start != 0:
        gain = abs(end - start) / abs(start)
    elif series is not None:
        gain = tail_gain(series, tail_frac)
    name = series.metric.replace("_", " ") if series is not None else "the curve"
    if series is not None and series.split in ("val", "test") and not name.startswith("val"):
        name = f"val {name}"
    return extend_advice(ctx, name, start, end, gain, share, tail_frac,
                         _ev(f, "lr_end_over_peak"))


def extend_advice(ctx: AdviceContext, name: str, start: float | None, end: float | None,
                  gain: float | None, share: float | None, tail_frac: float,
                  annealed: float | None) -> list[Candidate]:
    """Still improving at the end: extend by the observed gain (+50% or +100%) and decay
    the LR when it does not yet."""
    pol = ctx.policy
    big = ((gain is not None and gain >= pol.big_tail_gain)
           or (share is not None and share >= pol.big_tail_share))
    factor = pol.long_extension if big else pol.short_extension
    if gain is not None and gain > 0:
        moved = (f" from {show(nice(start, 3))} to {show(nice(end, 3))}"
                 if start is not None and end is not None else "")
        # the tail can gain more than the run's net progress (it rose first): say that,
        # not "109% of its total progress"
        of_total = ("" if share is None else f", {share:.0%} of its total progress"
                    if share <= 1 else ", more than its net progress over the whole run")
        reason = (f"{name} still improved{moved} ({gain:.1%}) over the last "
                  f"{tail_frac:.0%} of steps{of_total}")
    else:
        reason = f"{name} is still improving at the end"
    if annealed is not None and annealed < pol.annealed_share:
        reason += " even though the LR had already decayed (stretch the whole schedule)"
    out = [extend_length(ctx, factor, reason, 1.2)]
    sched = decay_schedule(ctx, f"{reason}")
    if sched is not None:
        out.append(replace(sched, impact=sched.impact * 0.5))
    return out


GENERATORS: dict[str, Generator] = {
    "divergence": _divergence,
    "instability": _instability,
    "exploding_gradients": _exploding,
    "vanishing_gradients": _vanishing,
    "dead_units": _dead_units,
    "overfit": _overfit,
    "underfit": _underfit,
    "plateau": _plateau,
    "batchnorm_collapse": _batchnorm,
    "lr_schedule": _lr_schedule,
    "undertrained": _undertrained,
}


# ---------------------------------------------------------------------------
# Conflict resolution
# ---------------------------------------------------------------------------


def advise(ctx: AdviceContext, finding: Finding) -> list[Candidate]:
    """The candidates for one finding: its rule class's ``advise`` when the rule has one
    (a built-in rule), else the advice for its state."""
    from diagnose.detectors.rule import rule_class

    cls = rule_class(finding.rule)
    if cls is not None:
        return cls().advise(ctx, finding)
    return state_advice(ctx, finding)


def state_advice(ctx: AdviceContext, finding: Finding) -> list[Candidate]:
    """The shared advice for the finding's state (``GENERATORS``); [] for a state that
    has none."""
    gen = GENERATORS.get(finding.state)
    return gen(ctx, finding) if gen is not None else []


def _wants_advice(finding: Finding) -> bool:
    """Pathological findings only: not ``log``/unknown states, info only where useful."""
    if finding.state not in GENERATORS:
        return False
    return finding.severity != "info" or finding.state in INFO_STATES


def recommend(result: RunResult, overrides: Mapping[str, Any] | None = None,
              policy: AdvicePolicy | None = None) -> RunResult:
    """Attach concrete, ordered, mutually consistent recommendations to every finding.

    ``overrides`` are ``--hparam KEY=VALUE`` / ``[tool.diagnose.hparams]`` values; they
    are canonicalised and win over what the log recorded.  Findings that already carry
    recommendations (from a custom rule) keep them, but they take part in the conflict
    resolution.  ``policy`` is the advice policy (``[tool.diagnose.advice]``).  Returns a
    new :class:`RunResult`; the input is not modified.
    """
    if not result.findings:
        return replace(result, findings=[])
    ctx = AdviceContext(result, overrides, policy)
    cands: list[list[Candidate]] = []
    for f in result.findings:
        found: list[Candidate] = []
        if f.recommendations:
            found = [
                candidate(r.hyperparameter, r.action, r.current, r.proposed, r.rationale,
                      strength=1.0 - 0.01 * k)
                for k, r in enumerate(f.recommendations)
            ]
        elif _wants_advice(f):
            found = advise(ctx, f)
            # what the symptoms it explains would have advised, for knobs it leaves alone,
            # ranked after its own advice (the explained state is a symptom of this one)
            for g in f.explained:
                if _wants_advice(g):
                    own = {c.rec.hyperparameter for c in found}
                    floor = min((c.impact for c in found), default=None)
                    found += [c if floor is None else replace(c, impact=min(c.impact,
                                                                            0.99 * floor))
                              for c in advise(ctx, g) if c.rec.hyperparameter not in own]
            found = [c for c in found if not already_done(ctx, c)]
        cands.append(found)
    recs = resolve(result.findings, cands)
    findings = [
        f.with_recommendations(r) if (r or f.recommendations) else f
        for f, r in zip(result.findings, recs, strict=True)
    ]
    return replace(result, findings=findings)
