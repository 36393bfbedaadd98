"""Plateaus: the objective stops improving.

The same flat tail means different things, so one analysis feeds three rules:

* PLT001 ``plateau_stalled`` (warning): the objective reached its final best level early
  and has not improved beyond noise for at least ``tail_frac`` of the run, AND the level
  is poor by what the log shows (no logged loss fell ``poor_progress`` of its start, or,
  with a flat stretch from early on, the better loss still holds ``poor_chance_share``
  of ln C, or ``poor_untrained_share`` of the untrained level the log shows when the
  class count is unknown, with training stopped early too; or the underfit rule UND004
  finds the model learned but stays poor: underfit AND plateau; or a val objective never
  improved while training got no further).  DESIGN: a plateau is stuck
  at a poor level; a val curve flat at a good level while training still improves is not
  one (that gap is the overfit rules' business), so it is reported by neither rule.
  An objective that never improved beyond noise (nor by ``min_rel_progress`` of its
  level) is stuck from its first evaluation when that level is poor and no loss is low,
  blown up or huge (:func:`_never_left`), and not when, with the class count unknown,
  its first point covers more than ``start_cover`` of the run and the first accuracy
  shows a trained model (:func:`_started_trained`: flat from there is not flat from the
  model's start); a val metric that never moved beside a val loss that did hands the
  tail to the val loss where the poor level rests on when the flat stretch began
  (``_EARLY_POOR``); one logged only ``min_never_points`` to
  ``min_points`` times is judged by that test alone.  A run whose logged learning rate
  was cut ``lr_cut_ratio`` times below its peak early and kept there, with both losses
  frozen after the cut at ``cut_poor_share`` of the untrained level or more, was stopped
  by its schedule (:func:`_stopped_by_lr_cut`), whatever the objective's tail showed.
  Where the tail test finds no flat stretch at a poor level (converged, worse than its
  best, never improved from a first evaluation that came after the early learning, or
  still improving against the objective's own small progress), the early-stop test reads
  the losses instead (:func:`_stopped_early`): both made little of their fall from the
  untrained level late, at a poor level.  Where still nothing is stuck, a loss that fell
  only to the chance level never learned (:func:`_at_chance`: ln C when the class count
  is known; else :func:`_at_guess`: the level whose uniform guess the val accuracy
  barely beats), and a tail worse than its best that ends as a constant guess
  (:func:`_ends_guessing`) never learned beyond the class prior.
* PLT003 ``converged`` (info): the same flat tail after clear progress with training
  flat too: healthy convergence; the message says the last steps were not needed.
* PLT002 ``plateau_from_start`` (warning): the loss never leaves its initial level (tiny
  learning rate, dead network, frozen weights, broken data pipeline), or the val loss
  sits at the untrained level from start to end while no loss reaches a low level (a
  train-mode loss under dropout or minibatch noise may wander meanwhile).

The objective is the val metric when logged (the task measure; it is what flattens in
detection runs whose val loss drifts), else the val loss, else the train loss.  A curve
that gets clearly worse after its best is not a flat tail (a val loss rising while the
train loss falls is overfitting, OVF rules; the early-stop test needs both stopped), and
a loss that ends NaN/inf is divergence's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.detectors import RuleContext
from diagnose.detectors import params as P
from diagnose.detectors.progress import (
    Curve,
    accuracy_curve,
    bounded_metric,
    early_level,
    end_level,
    ends_nonfinite,
    first_point_cover,
    fmt,
    get_curve,
    improvement,
    in_start,
    level_at,
    level_before_log,
    noise,
    pct,
    pinned_accuracy,
    smoothed,
    start_level,
    total_progress,
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
from diagnose.detectors.underfit import learned_but_poor, thrown_back_by_und, untrained_level
from diagnose.hparams import finite_number
from diagnose.metrics import OBJECTIVE_ROLES, Role

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.findings import Finding


@dataclass(frozen=True)
class StallParams(RuleParams):
    """Thresholds of the one tail classifier (:func:`stall`) behind PLT001 and PLT003."""

    min_points: int = param(P.COUNT)
    tail_frac: float = param(P.SHARE)
    min_tail_points: int = param(P.COUNT)
    min_gain_share: float = param(P.FRACTION)
    min_rel_gain: float = param(P.NON_NEGATIVE)
    follow_ratio: float = param(P.NON_NEGATIVE)
    max_worsening: float = param(P.NON_NEGATIVE)
    max_val_loss_rise: float = param(P.NON_NEGATIVE)
    min_train_rel: float = param(P.NON_NEGATIVE)
    min_train_effect: float = param(P.NON_NEGATIVE)
    min_train_share: float = param(P.FRACTION)
    poor_progress: float = param(P.NON_NEGATIVE)
    early_flat_share: float = param(P.FRACTION)
    poor_chance_share: float = param(P.NON_NEGATIVE)
    low_loss_share: float = param(P.NON_NEGATIVE)
    max_loss_rise: float = param(P.NON_NEGATIVE)
    max_start_chance: float = param(P.NON_NEGATIVE)
    min_never_points: int = param(P.COUNT)
    max_late_gain: float = param(P.FRACTION)
    min_rel_progress: float = param(P.FRACTION)
    poor_untrained_share: float = param(P.NON_NEGATIVE)
    flat_gap_ratio: float = param(P.NON_NEGATIVE)
    first_acc_share: float = param(P.FRACTION)
    guess_loss_share: float = param(P.NON_NEGATIVE)
    stopped_poor_share: float = param(P.FRACTION)
    small_worse_noise: float = param(P.NON_NEGATIVE)
    small_worse_share: float = param(P.FRACTION)
    pinned_acc_band: float = param(P.FRACTION)
    near_untrained_share: float = param(P.FRACTION)
    guess_ceiling: float = param(P.AT_LEAST_ONE)
    lr_cut_ratio: float = param(P.AT_LEAST_ONE)
    cut_poor_share: float = param(P.FRACTION)
    start_cover: float = param(P.FRACTION)
    chance_level_share: float = param(P.FRACTION)


@dataclass(frozen=True)
class StallEvidence(RuleEvidence):
    """A flat tail of the objective (PLT001 adds ``last_step``)."""

    name: str = internal("")
    progress_rel: float = internal(0.0)
    objective: str = ""
    flat_since_step: int = 0
    flat_share_of_run: float = 0.0
    best: float = 0.0
    end: float = 0.0
    total_progress: float = 0.0
    tolerance: float = 0.0
    noise: float = 0.0
    poor_level: bool = False
    train_improving: bool = False
    also_flat: list[str] = field(default_factory=list)
    tail_start_step: int = 0
    train_metric: str | None = optional()
    train_from: float | None = optional()
    train_to: float | None = optional()
    train_rel_improvement: float | None = optional()
    poor_loss: str | None = optional()
    loss_progress: float | None = optional()
    loss_vs_chance: float | None = optional()
    untrained_level: float | None = optional()
    untrained_from: str | None = optional()
    train_over_val: float | None = optional()
    constant_accuracy: float | None = optional()
    constant_metric: str | None = optional()
    constant_spread: float | None = optional()
    underfit_by: str | None = optional()
    late_gain: float | None = optional()
    lr_cut_step: int | None = optional()
    lr_cut_ratio: float | None = optional()
    lr_after_cut: float | None = optional()
    chance_level: float | None = optional()
    thresholds: RuleParams | None = field(default=None, metadata=ECHO)
    last_step: int | None = optional()


def _objectives(ctx: RuleContext, min_points: int) -> list[Curve]:
    """Val metric and val loss when validation is logged (the first is the headline),
    else the train loss; a run with validation is never judged by its train loss."""
    vals = [get_curve(ctx, r) for r in OBJECTIVE_ROLES if r != Role.TRAIN_LOSS]
    if any(c is not None for c in vals):
        return [c for c in vals if c is not None and len(c) >= min_points and c.span > 0]
    c = get_curve(ctx, Role.TRAIN_LOSS)
    return [c] if c is not None and len(c) >= min_points and c.span > 0 else []


def _tail_gain(ctx: RuleContext, c: Curve, t0: float) -> tuple[float, float, float]:
    """(gain, total, level noise): how much the smoothed best improved after ``t0``
    compared with before it, the run's total progress, and the noise of a level."""
    s, sm = smoothed(ctx, c)
    before, after = sm[s < t0], sm[s >= t0]
    total = total_progress(ctx, c)
    n_tail = int((c.steps >= t0).sum())
    level_noise = noise(c) / np.sqrt(min(max(n_tail, 1), 16))
    if len(before) == 0 or len(after) == 0:
        return 0.0, total, level_noise
    return float(np.min(before) - np.min(after)), total, level_noise


def _name(c: Curve) -> str:
    split = "val" if c.series.split in ("val", "test") else "train"
    return c.tag if c.tag.lower().startswith(split) else f"{split} {c.tag}"


def stall(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """Classify the objective's tail: None (not applicable), or a dict whose ``kind`` is
    ``improving``, ``worsening``, ``no_progress``, ``stalled`` or ``converged``."""
    # keyed by every threshold (PLT001 and PLT003 share the analysis when theirs agree)
    key = ("fit_stall", *(p[f.name] for f in fields(StallParams)))
    return ctx.cached(key, lambda: _stall_or_stopped(ctx, p))


def _stall_or_stopped(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """The tail and stop tests (:func:`_tail_or_stop`), and where they find no stall, no
    blow-up and no overfitting symptom, the chance-level test (:func:`_at_chance`): a
    run whose losses end at the uniform guess's cross-entropy never learned, whatever
    shape its tail has; then a tail worse than its best that ends as a constant guess
    (:func:`_ends_guessing`)."""
    st = _tail_or_stop(ctx, p)
    if st is not None and (st["kind"] in ("stalled", "nonfinite") or "worse_val_loss" in st):
        return st
    return _at_chance(ctx, p) or _ends_guessing(ctx, p, st) or st


def _ends_guessing(ctx: RuleContext, p: Any, st: dict[str, Any] | None
                   ) -> dict[str, Any] | None:
    """A tail called worse than its best that ends as a constant guess
    (:func:`_identical_guess`: every logged accuracy identical over the last
    ``tail_frac`` of the run, every loss at that guess's least entropy or above): the
    model predicts one class for every input, so whatever its first evaluations showed it
    ends never having learned more than the class prior, at the chance level (DESIGN.md:
    flat near its chance level).  Not when a loss ever got below ``low_loss_share`` of
    that entropy (it learned, then was thrown back: a blow-up's business)."""
    if st is None or st.get("kind") != "worsening" or "curve" not in st:
        return None
    guess = _identical_guess(ctx, p)
    if not guess:
        return None
    floor = float(p["low_loss_share"]) * _guess_entropy(float(guess["constant_accuracy"]))
    tl, vl = get_curve(ctx, Role.TRAIN_LOSS), get_curve(ctx, Role.VAL_LOSS)
    if tl is None or any(float(np.min(smoothed(ctx, c)[1])) < floor
                         for c in (tl, vl) if c is not None and len(c) >= 3):
        return None
    return _stuck_whole_run({**st, **guess, "poor_by": "constant_guess",
                             "since": float(smoothed(ctx, st["curve"])[0][0]), "eps": 0.0,
                             "also_flat": []}, st["curve"])


def _stuck_whole_run(st: dict[str, Any], c: Curve) -> dict[str, Any]:
    """A stall reading ``st`` made a verdict: stuck at a poor level for the whole run
    (train not improving), its progress measured from ``c``'s start level."""
    first = start_level(c)
    return {**st, "kind": "stalled", "poor": True, "flat_share": 1.0, "train": None,
            "train_improving": False,
            "progress_rel": st["total"] / abs(first) if first else float("nan")}


def never_left_chance(ctx: RuleContext) -> bool:
    """PLT001's chance-level reading (:func:`_at_chance`, with PLT001's thresholds as set
    for this run): the losses fell from an inflated start only to the uniform guess's
    level and stayed, learning nothing of the inputs.  UND004 asks it: such a run never
    left its initial level, plateau only (DESIGN.md), not "learns but stays poor"."""
    return ctx.cached(("fit_never_left_chance",),
                      lambda: _at_chance(ctx, ctx.thresholds_of("PLT001")) is not None)


def _at_chance(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """Never left the chance level: with the class count C known, the better of the val
    and train losses ends at ``chance_level_share`` of ln C or more (and below
    ``max_start_chance`` x ln C: a loss sustained far above chance is divergence's).
    ln C is the cross-entropy of the uniform guess, the level any model reaches by
    shrinking its logits; a loss falling from a large initial value down to it (a huge
    initialisation, a too-large learning rate) and staying there learned nothing of the
    inputs (DESIGN.md: flat near its initial or chance level is a plateau), whether its
    tail reads flat, still creeping or a few evaluations noisy.  Only for a fall from
    above the band: the untrained level L0 the log shows (:func:`untrained_level`) lies
    above ln C / ``chance_level_share`` (a run that started in the band and stayed is
    PLT002's, never left its initial level).  However far above: a first point blown up
    past ``max_start_chance`` x ln C (a huge initialisation, a far too large learning
    rate) is where the run started, and DESIGN.md reads the starting level as ln C then,
    so a loss that came down from it only to ln C never left that level (only the end
    is held below ``max_start_chance`` x ln C: a loss sustained that far above chance is
    divergence's).  Not when a loss ends
    non-finite (divergence), nor when a loss ever got below ``low_loss_share`` of ln C
    (it left the chance level and was thrown back: a blow-up's business), nor without a
    train loss of 3 points."""
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    if tl is None or len(tl) < 3 or tl.span <= 0 or ends_nonfinite(ctx):
        return None
    if not n_classes:
        return _at_guess(ctx, p, tl)
    if n_classes < 2:
        return None
    chance = signals.chance_loss(n_classes)
    # fell to the chance band from above it: one that started there and stayed is
    # PLT002's (never left its initial level); a start blown up however far (a huge
    # initialisation, a far too large LR) is read as ln C (DESIGN.md), so a fall from it
    # only to the band never left the initial level either
    found = untrained_level(ctx)
    if found is None or not chance / float(p["chance_level_share"]) < found[0]:
        return None
    vl = get_curve(ctx, Role.VAL_LOSS)
    losses = [c for c in (vl, tl) if c is not None and len(c) >= int(p["min_never_points"])]
    if not losses:
        return None
    ends = [_end_of(c, p) for c in losses]
    better = min(ends)
    if not (float(p["chance_level_share"]) * chance <= better
            < float(p["max_start_chance"]) * chance):
        return None
    # never left: no loss ever got below low_loss_share x ln C (a loss thrown back to
    # chance after learning, by a blow-up, is divergence's or the thrown-back stop's)
    if any(float(np.min(smoothed(ctx, o)[1])) < float(p["low_loss_share"]) * chance
           for o in losses):
        return None
    c = losses[int(np.argmin(ends))]
    # the chance band is entered where the smoothed loss last came down to ln C /
    # chance_level_share and stayed: flat at the chance level from there
    s, sm = smoothed(ctx, c)
    above = np.flatnonzero(sm > chance / float(p["chance_level_share"]))
    since = float(s[0]) if not len(above) else float(s[min(int(above[-1]) + 1, len(s) - 1)])
    start = float(c.values[0])
    return {"curve": c, "total": max(0.0, start - better), "noise": noise(c),
            "best": float(np.min(sm)), "tail_start": since, "tail_gain": 0.0,
            "since": since, "eps": abs(better - chance), "also_flat": [],
            "kind": "stalled", "flat_share": (float(c.steps[-1]) - since) / c.span
            if c.span > 0 else 1.0, "train": None, "train_improving": False,
            "poor": True, "progress_rel": max(0.0, start - better) / start
            if start > 0 else float("nan"),
            "poor_by": "chance_level", "poor_loss": c.tag, "loss_vs_chance": better / chance,
            "untrained_level": chance, "untrained_from": f"ln {n_classes}",
            "chance_level": chance}


def _at_guess(ctx: RuleContext, p: Any, tl: Curve) -> dict[str, Any] | None:
    """:func:`_at_chance` with the class count unknown: the val accuracy says which
    chance level the val loss sits at.  A cross-entropy L is the loss of a uniform guess
    over e^L classes, whose accuracy is exp(-L); a model whose predictions depend on
    its inputs beats it by far (its loss averages -ln p over inputs it gets right and
    wrong: exp(-L), a geometric mean, lies well below the accuracy), while one that
    gives every input the same near-uniform distribution does not.  So the val loss
    ending at L (at least ``chance_level_share`` x ln 2: a guess over two classes or
    more) with the best val accuracy never leading exp(-L) by ``first_acc_share`` of the
    room above it, after falling from an untrained level L0 above L /
    ``chance_level_share`` (at most ``max_start_chance`` x L; a start blown up past that
    within the first tenth of the run is read as L itself in the two-class band, DESIGN.md's
    starting level for a blown-up log, the accuracies after the blow-up), is a loss that fell only
    to the chance level by shrinking its logits: it learned nothing of the inputs.  The
    val loss must have fallen into that band itself, or been first evaluated past
    ``start_cover`` of the run (after the early learning the train loss shows): one
    evaluated from the start inside the band that stayed there is PLT002's.  It must sit
    in the band for the last ``tail_frac`` of the run (a loss still falling that reaches
    it at its last evaluations is just starting to learn), and above the two-class band
    (ln 2 / ``chance_level_share``) still hold ``near_untrained_share`` of L0: a guess
    over more classes may be the class prior a unigram-level model learned.  Not when
    the train loss ends below ``flat_gap_ratio`` of L (training got further than
    validation: it fitted something validation does not see) nor when a loss ever got
    below ``low_loss_share`` x L (it left that level)."""
    vl = get_curve(ctx, Role.VAL_LOSS)
    acc = get_curve(ctx, Role.VAL_METRIC)
    found = untrained_level(ctx)
    if (vl is None or len(vl) < 3 or float(np.min(vl.values)) <= 0 or acc is None
            or len(acc) < 3 or not bounded_metric(acc) or found is None):
        return None
    share = float(p["chance_level_share"])
    level = _end_of(vl, p)
    if level < share * signals.chance_loss(2):
        return None
    # a start blown up past max_start_chance x L (a huge initialisation, a far too large
    # learning rate) is where the run started: DESIGN.md reads the starting level as the
    # untrained model's loss, and in the two-class band L is that level (the prior and the
    # uniform guess are one chance level there; above it the log cannot say which one a
    # blown-up start hides), so a fall from the blow-up to L never left it; the
    # accuracies are read after the blown-up head, which is the start, not learning
    cap = float(p["max_start_chance"]) * level
    head = None
    if found[0] > cap:
        head = _blown_head_end((vl, tl), tl, cap)
        if head is None or level > signals.chance_loss(2) / share:
            return None
        keep = acc.steps > head
        acc = Curve(acc.series, acc.steps[keep], acc.values[keep], acc.sign)
        if len(acc) < 3:
            return None
    guess = float(np.exp(-level))
    best_acc = acc.raw(float(np.min(acc.values)))
    if leads_guess(best_acc, level, float(p["first_acc_share"])):
        return None
    # an accuracy a is at best a uniform guess over 1/a classes, chance level ln(1/a): a
    # loss above max_start_chance x that (for the worst accuracy logged) is sustained far
    # above any chance level the accuracy allows, a blow-up (divergence's business)
    worst_acc = acc.raw(float(np.max(acc.values)))
    if worst_acc > 0 and level > float(p["max_start_chance"]) * -float(np.log(worst_acc)):
        return None
    if not (level / share < found[0] and (found[0] <= cap or head is not None)):
        return None
    # the val loss fell into the band (or was first evaluated after the early learning,
    # past start_cover of the run): one evaluated from the start in the band and staying
    # there never left its initial level, PLT002's
    if (float(vl.values[0]) <= level / share
            and first_point_cover(ctx, vl) <= float(p["start_cover"])):
        return None
    # a guess over more than two classes may be the class prior's (a unigram model's
    # accuracy and loss relate as a uniform guess's over e^H classes, H its entropy), a
    # prior learned from a higher untrained level: only a loss still near that level
    # is one that never learned; at the two-class level the prior and the uniform guess
    # are one chance level
    if (level > signals.chance_loss(2) / share
            and level < float(p["near_untrained_share"]) * found[0]):
        return None
    if _end_of(tl, p) < float(p["flat_gap_ratio"]) * level:
        return None
    if any(float(np.min(smoothed(ctx, o)[1])) < float(p["low_loss_share"]) * level
           for o in (vl, tl)):
        return None
    s, sm = smoothed(ctx, vl)
    above = np.flatnonzero(sm > level / share)
    since = float(s[0]) if not len(above) else float(s[min(int(above[-1]) + 1, len(s) - 1)])
    # in that band for the flat stretch a plateau needs (tail_frac of the run), not a loss
    # still falling that reached it at its last evaluations (just starting to learn)
    flat_share = (float(tl.steps[-1]) - since) / tl.span
    if flat_share < float(p["tail_frac"]):
        return None
    start = float(vl.values[0])
    return {"curve": vl, "total": max(0.0, start - level), "noise": noise(vl),
            "best": float(np.min(sm)), "tail_start": since, "tail_gain": 0.0,
            "since": since, "eps": 0.0, "also_flat": [],
            "kind": "stalled", "flat_share": flat_share, "train": None,
            "train_improving": False, "poor": True,
            "progress_rel": max(0.0, start - level) / start
            if start > 0 else float("nan"),
            "poor_by": "chance_level", "poor_loss": vl.tag, "loss_vs_chance": 1.0,
            "untrained_level": level,
            "untrained_from": f"ln {fmt(float(np.exp(level)))}: {acc.tag} {fmt(best_acc)} "
                              f"barely beats that guess's accuracy {fmt(guess)}",
            "chance_level": level}


def _blown_head_end(losses: tuple[Curve, ...], tl: Curve, cap: float) -> float | None:
    """The last step of a blown-up head: every logged point at ``cap`` or above, on every
    loss, lies within the first tenth of the run (the train loss's steps, the start
    window :func:`progress.in_start` reads), and the first point of some loss is one of
    them.  None otherwise (no logged point blown up, or one later: a loss that stays
    blown up past the start is divergence's business)."""
    window = float(tl.steps[0]) + 0.1 * tl.span
    last, first_blown = None, False
    for c in losses:
        hit = c.steps[c.values >= cap]
        if not len(hit):
            continue
        if float(hit[-1]) > window:
            return None
        first_blown = first_blown or float(c.values[0]) >= cap
        last = float(hit[-1]) if last is None else max(last, float(hit[-1]))
    return last if first_blown else None


def _tail_or_stop(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """The tail analysis (:func:`_stall`), and where it finds no flat tail at a poor
    level (too few evaluations for a tail, a tail called worse than its best, never
    improved or still improving, or flat at a level it did not call poor), the early-stop
    test :func:`_stopped_early`, which reads the losses, not the objective's tail: a val
    accuracy first evaluated after the early learning looks never-improved, one sample
    of a small val set either way looks worse, a run thrown back to its start ends worse
    than its best, a slow creep after an early stop (a val accuracy gaining a few points,
    a loss 2-3%) is "improving" against the objective's own small progress but a small
    share of the losses' fall from the untrained level, while both losses show a run
    that learned and then stopped early.
    Not where a val metric is flat beside a rising val loss (``max_val_loss_rise``:
    overfitting's symptom).  Where still no stall is
    found, a stop by an early LR cut (:func:`_stopped_by_lr_cut`), but not for a curve
    that clearly got worse (overfitting's) nor one that ends non-finite."""
    st = _stall(ctx, p)
    small_worse = _small_worsening(st, p) if st is not None else False
    # a flat val metric beside a rising val loss stays overfitting's symptom
    if st is None or (st["kind"] in ("converged", "worsening", "no_progress", "improving")
                      and "worse_val_loss" not in st):
        st = _stopped_early(ctx, p) or st
    if st is None or (st["kind"] not in ("stalled", "nonfinite")
                      and "worse_val_loss" not in st
                      and (st["kind"] != "worsening" or small_worse)):
        return _stopped_by_lr_cut(ctx, p) or st
    return st


def _small_worsening(st: dict[str, Any], p: Any) -> bool:
    """A tail called ``worsening`` only because the objective barely improved (so
    ``max_worsening`` of that small progress is a tiny drop): the drop from the best is
    within ``small_worse_noise`` times the noise of one point or ``small_worse_share`` of
    the best level, so the curve is flat, not getting worse."""
    if st.get("kind") != "worsening" or "worse" not in st:
        return False
    return bool(st["worse"] <= max(float(p["small_worse_noise"]) * st["noise"],
                                   float(p["small_worse_share"]) * abs(st["best"])))


def _late_share(c: Curve, early: float, level0: float, end: float) -> float | None:
    """The share of a loss's fall from the untrained level ``level0`` to ``end`` that came
    after step ``early`` (negative when it ended worse than it was by then), read from the
    best value logged by ``early``; None without a value by then or without a fall."""
    by = c.values[c.steps <= early]
    fell = level0 - end
    if not len(by) or fell <= 0:
        return None
    # from a huge initialisation's first loss a large late fall is a small share: the
    # share of the level reached by then bounds it too
    return max((float(np.min(by)) - end) / fell, (float(np.min(by)) - end) / float(np.min(by)))


def _stopped_early(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """Stopped improving early, read as the label of DESIGN.md reads it: the val loss
    (else the train loss) and the train loss each made at most ``max_late_gain`` of their
    fall from the untrained level L0 the log shows (:func:`untrained_level`) after the
    first ``1 - early_flat_share`` of the run, and :func:`_poor_level` finds the level
    poor.  Needs no flat tail: a run validated a few times, or one that ended worse than
    a best it barely improved to (a mid-run LR jump that both losses felt: training got
    worse too, so not overfitting), stopped as surely as a flat one.  A run whose losses
    barely fell from their first values is judged by the untrained test too when that
    first point is no trained start (class count known, or the first accuracy not
    leading exp(-L0) by ``first_acc_share`` of the room)."""
    got = _stop_losses(ctx, p)
    if got is None or got[2]:
        return None  # (a val loss too short for any verdict but never-improved)
    tl, vl, _, found = got
    vl = vl or tl
    level0 = found[0]
    early = float(tl.steps[0]) + (1.0 - float(p["early_flat_share"])) * tl.span
    v_end = _end_of(vl, p)
    # thrown back to the untrained level after learning, short of a blow-up (a mid-run LR
    # jump both losses felt): the stretch it ends on never left that level, the plateau
    # half of underfit + plateau (:func:`underfit.thrown_back`, UND004's the other half)
    back = thrown_back_by_und(ctx, level0) is not None
    lates = []
    for c, end in ((vl, v_end), (tl, end_level(tl))):
        late = _late_share(c, early, level0, end)
        by = c.values[c.steps <= early]
        if back and late is None and len(by):
            late = (float(np.min(by)) - end) / float(np.min(by))  # ended worse: negative
        # a loss ending above the untrained level blew up: divergence's business
        if late is None or late > float(p["max_late_gain"]) or (end >= level0 and not back):
            return None
        lates.append(late)
    # ... or rose back more than max_loss_rise above the best it had by then (a blow-up
    # back towards chance, as after a large LR jump)
    if not back and v_end > (1.0 + float(p["max_loss_rise"])) * float(
            np.min(vl.values[vl.steps <= early])):
        return None
    pl = _poor_level(ctx, vl, p, float(p["early_flat_share"]))
    if back and pl["poor_by"] in (None, "progress", "loss_progress"):
        # thrown back: both losses end at UND004's back_share of L0 or above, a poor level
        # whatever the first evaluation (after the early learning) says of the progress
        ends = {c.tag: e for c, e in ((vl, v_end), (tl, end_level(tl)))}
        tag = min(ends, key=lambda t: ends[t])
        pl = {**pl, "poor_by": "untrained", "loss_vs_chance": ends[tag] / level0,
              "poor_loss": tag, "untrained_level": level0, "untrained_from": found[1]}
    elif pl["poor_by"] in ("progress", "loss_progress"):
        # barely fell from its first point, which may be a fine-tune's low start; but
        # where the untrained test finds both losses still at a poor share of L0 and the
        # first accuracy shows no trained start (class count unknown), the first point is
        # the untrained model's: it stopped early near where it started
        unt = _poor_untrained(ctx, p)
        if unt and (signals.infer_num_classes(ctx.run, ctx.roles) or not _trained_start(
                ctx, level0, float(p["first_acc_share"]), int(p["min_never_points"]))):
            pl = {**pl, **unt}
    # without a flat tail the level must be poor by the run's own measure of learning
    # (not "barely fell": a fine-tune starting low), and, against the untrained level,
    # by the stricter share whether or not the class count is known (ln C of a
    # many-class set is far above a good loss)
    if pl["poor_by"] in (None, "progress", "loss_progress") or (
            pl["poor_by"] == "untrained"
            and pl["loss_vs_chance"] < float(p["stopped_poor_share"])):
        return None
    return {**_stop_stall(vl, tl, level0, early, v_end, lates[0]), **pl}


def _stop_stall(vl: Curve, tl: Curve, level0: float, since: float, v_end: float,
                late: float) -> dict[str, Any]:
    """The stall a stop test found (kind ``stalled``, poor): the val loss (else the
    train loss) ``vl`` flat from step ``since`` at ``v_end`` after falling from the
    untrained level ``level0`` to its best by then (by its first evaluation, when that
    came later), ``late`` the share of its fall made after it; the caller adds why the
    level is poor."""
    by = float(np.min(vl.values[vl.steps <= max(since, float(vl.steps[0]))]))
    return {"curve": vl, "total": level0 - by, "noise": noise(vl),
            "best": float(np.min(vl.values)), "tail_start": since, "tail_gain": by - v_end,
            "since": since, "eps": abs(by - v_end), "also_flat": [], "kind": "stalled",
            "flat_share": (float(tl.steps[-1]) - since) / tl.span, "late_gain": late,
            "train": None, "train_improving": False, "poor": True,
            "progress_rel": (level0 - by) / level0}


def _low_loss(p: Any) -> float:
    """``low_loss_share`` x ln 2: a loss below it is at a low level whatever the class
    count (ln 2 is the lowest chance level), a fine-tune's or a run that learned, never
    an untrained or constant-guess level."""
    return float(p["low_loss_share"]) * signals.chance_loss(2)


def _stop_losses(ctx: RuleContext, p: Any
                 ) -> tuple[Curve, Curve | None, bool, tuple[float, str]] | None:
    """What the two stop tests read: (train loss, val loss, whether a logged val loss is
    unusable: evaluated fewer than ``min_never_points`` times or not positive, in which
    case the val loss is None; the untrained level L0 and its source).  None without a
    train loss of 3 points over a span, without L0, or when a loss ends non-finite."""
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    found = untrained_level(ctx)
    if tl is None or found is None or len(tl) < 3 or tl.span <= 0 or ends_nonfinite(ctx):
        return None
    vl = get_curve(ctx, Role.VAL_LOSS)
    unusable = vl is not None and (len(vl) < int(p["min_never_points"])
                                   or float(np.min(vl.values)) <= 0)
    return tl, None if unusable else vl, unusable, found


def _end_of(c: Curve, p: Any) -> float:
    """A loss's end level, or its last value when logged fewer than ``min_points`` times
    (too few for the tail's median to be a level)."""
    return end_level(c) if len(c) >= int(p["min_points"]) else float(c.values[-1])


def _early_lr_cut(ctx: RuleContext, p: Any, first: float, span: float
                  ) -> tuple[float, float, float, float] | None:
    """(cut step, step the stop is read from, peak over after, LR at the end) of a logged learning
    rate cut ``lr_cut_ratio`` times or more below its peak within the first
    ``1 - early_flat_share`` of the run (``first`` + that share of ``span``) and kept
    there to the end: a step decay that came early, not a cosine tail nor a restart (whose
    LR comes back up)."""
    lr = ctx.series(Role.LR)
    at = signals.lr_frozen_from(lr, 1.0 / float(p["lr_cut_ratio"]), min_points=3)
    if lr is None or at is None:
        return None
    v, s = lr.finite.values, lr.finite.steps.astype(float)
    j, ipk = int(np.searchsorted(s, at)), int(np.argmax(v))
    early = first + (1.0 - float(p["early_flat_share"])) * span
    # low before the final low stretch and back up: a restart, not a cut
    if float(s[j]) > early or np.any(v[ipk:j] * float(p["lr_cut_ratio"]) < v[ipk]):
        return None
    # a loss logged at the cut may average steps before it: the first LR point after the
    # cut is the first step trained wholly at the low rate; and the stop is read from the
    # end of the early share of the run at the soonest (as :func:`_stopped_early`)
    since = max(float(s[min(j + 1, len(s) - 1)]), early)
    return float(s[j]), since, float(v[ipk]) / float(np.max(v[j:])), float(v[-1])


def _stopped_by_lr_cut(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """Stopped early by the schedule: the logged learning rate was cut early
    (:func:`_early_lr_cut`) and after it (from the first step trained wholly at the low
    rate, and not before the first ``1 - early_flat_share`` of the run) the val loss (else
    the train loss) and the train loss each made at most ``max_late_gain`` of their fall
    from the untrained level L0 (:func:`_late_share`, from their best by then, or a val
    loss's first evaluation when it came later), neither ending at L0 or above and the
    val loss not ``max_loss_rise`` above its best by then, while the better of them still
    holds ``cut_poor_share`` of L0 (and ``low_loss_share`` x ln 2, and with the class
    count unknown the first accuracy does not lead the uniform guess by
    ``first_acc_share`` of the room: a fine-tune starts low).  The log shows why the
    loss stopped falling (the LR cut froze the weights), so a level short of the
    untrained tests' shares is still not convergence: learned a little, then stuck early
    (DESIGN.md).  A late step decay (a healthy schedule) is not
    early; a loss that keeps falling after the cut is not stopped."""
    got = _stop_losses(ctx, p)
    if got is None:
        return None
    tl, vl, _, found = got
    cut = _early_lr_cut(ctx, p, float(tl.steps[0]), tl.span)
    if cut is None:
        return None
    vl = vl or tl
    level0 = found[0]
    # with the class count unknown, a first accuracy already well above the uniform guess
    # exp(-L0) makes L0 a trained model's loss (a fine-tune whose LR was stepped down
    # early), not the untrained level
    if signals.infer_num_classes(ctx.run, ctx.roles) is None and _trained_start(
            ctx, level0, float(p["first_acc_share"]), int(p["min_never_points"])):
        return None
    ends = []
    lates = []
    for c in (vl, tl):
        end = _end_of(c, p)
        since = max(cut[1], float(c.steps[0]))
        late = _late_share(c, since, level0, end)
        # ... nor the val loss rose back max_loss_rise above its best by then (as in
        # _stopped_early; a noisy train loss's best is one lucky batch)
        if (late is None or late > float(p["max_late_gain"]) or end >= level0
                or (c is vl and end > (1.0 + float(p["max_loss_rise"])) * float(
                    np.min(c.values[c.steps <= since])))):
            return None
        ends.append(end)
        lates.append(late)
    better = min(ends)
    if better < float(p["cut_poor_share"]) * level0 or better < _low_loss(p):
        return None
    return {**_stop_stall(vl, tl, level0, cut[1], ends[0], lates[0]), "poor_by": "lr_cut",
            "poor_loss": (vl, tl)[int(np.argmin(ends))].tag, "loss_vs_chance": better / level0,
            "untrained_level": level0, "untrained_from": found[1], "loss_progress": None,
            "lr_cut_step": int(cut[0]), "lr_cut_ratio": cut[2], "lr_after_cut": cut[3]}


def _trend_gain(c: Curve, t0: float, scale: float) -> float:
    """Relative improvement of the Theil-Sen fit over the tail, 0 unless its 95% slope
    interval excludes zero (a still-falling loss, not a lucky noisy minimum)."""
    tail = c.steps >= t0
    tr = signals.robust_trend(c.steps[tail], c.values[tail])
    if not (np.isfinite(tr.slope_hi) and tr.slope_hi < 0) or scale <= 1e-12:
        return 0.0
    return float(-tr.change / scale)


#: Poor levels that judge a flat stretch by when it began (learned a little, then stuck
#: early), not by the run never having moved (:func:`_poor_level`).
_EARLY_POOR = ("untrained", "held_out", "underfit")


def _improved(ctx: RuleContext, c: Curve, t0: float, p: Any) -> bool:
    """Whether ``c`` improved beyond the noise of a level over the run, and by
    ``min_rel_progress`` of its start level (of the error left for a bounded metric)."""
    total, level_noise = total_progress(ctx, c), _tail_gain(ctx, c, t0)[2]
    a0 = start_level(c)
    scale = (1.0 + a0) if bounded_metric(c) else abs(a0)
    return total > max(level_noise, float(p["min_rel_progress"]) * scale)


def _stall(ctx: RuleContext, p: Any, curves: list[Curve] | None = None) -> dict[str, Any] | None:
    """The analysis behind :func:`stall` (uncached); see the module docstring.  ``curves``
    (default: :func:`_objectives`) are the objective and the curves read beside it."""
    if curves is None:
        curves = _objectives(ctx, int(p["min_points"]))
    if not curves:
        return _few_points(ctx, p)
    if ends_nonfinite(ctx):
        return {"kind": "nonfinite"}
    c = curves[0]
    s, sm = smoothed(ctx, c)
    last = float(s[-1])
    t0 = last - float(p["tail_frac"]) * c.span
    if int((c.steps >= t0).sum()) < int(p["min_tail_points"]):
        return {"kind": "short"}
    share = float(p["min_gain_share"])
    gain, total, level_noise = _tail_gain(ctx, c, t0)
    best = float(np.min(sm))
    out: dict[str, Any] = {"curve": c, "total": total, "noise": noise(c), "best": best,
                 "tail_start": t0, "tail_gain": gain}
    a0 = start_level(c)
    scale = (1.0 + a0) if bounded_metric(c) else abs(a0)
    if total <= max(level_noise, float(p["min_rel_progress"]) * scale):
        st = _never_left(ctx, c, p, {**out, "since": float(s[0]), "eps": level_noise,
                                     "also_flat": [o.tag for o in curves[1:]]})
        # a val metric that never moved beside a val loss that did: the metric cannot say
        # when a flat stretch began; the val loss decides whether the run stopped early
        # at a poor level.  Not for an accuracy identical at every evaluation: one class
        # predicted for every input, the loss learning only the class prior
        moved = [o for o in curves[1:] if _improved(ctx, o, t0, p)]
        if (st["kind"] == "stalled" and st.get("poor_by") in _EARLY_POOR and moved
                and pinned_accuracy(c, int(p["min_never_points"])) is None):
            return _stall(ctx, p, moved)
        return st
    worse = end_level(c) - best
    if worse > float(p["max_worsening"]) * total:
        return {**out, "kind": "worsening", "worse": worse}
    # a flat val metric beside a clearly rising val loss is overfitting's symptom
    vl = get_curve(ctx, Role.VAL_LOSS)
    if c.series.role == Role.VAL_METRIC and vl is not None and len(vl) >= 3:
        vmin = float(np.min(smoothed(ctx, vl)[1]))
        if vmin > 0 and end_level(vl) - vmin >= float(p["max_val_loss_rise"]) * vmin:
            return {**out, "kind": "worsening", "worse_val_loss": end_level(vl) - vmin}
    # is training still improving over the same tail?
    train_imp = None
    if c.series.split in ("val", "test"):
        for role in (Role.TRAIN_LOSS, Role.TRAIN_METRIC):
            tc = get_curve(ctx, role)
            if tc is None or len(tc) < 3 or tc.steps[-1] <= t0:
                continue
            imp: dict[str, Any] = dict(improvement(tc, max(t0, float(tc.steps[0]))))
            imp["tag"] = tc.tag
            tot = total_progress(ctx, tc)
            imp["share"] = imp["drop"] / tot if tot > 0 else 0.0
            train_imp = imp
            break
    out["train"] = train_imp
    train_rel = train_imp["rel"] if train_imp is not None else 0.0
    for other in curves:
        g, tot, ln = (gain, total, level_noise) if other is c else _tail_gain(ctx, other, t0)
        if g <= ln:
            continue
        # meaningful against the run's own progress, or keeping pace with training in
        # relative terms (a late LR decay that helps train and val alike)
        a = level_at(other, t0)
        scale = (1.0 + a) if bounded_metric(other) else abs(a)
        g_rel = g / scale if scale > 1e-12 else float("inf")
        if (
            g > share * tot
            or (not bounded_metric(other) and _trend_gain(other, t0, scale)
                >= float(p["min_rel_gain"]))
            or (train_rel > 0 and g_rel >= float(p["follow_ratio"]) * train_rel)
        ):
            return {**out, "kind": "improving", "improving": other.tag}
    eps = max(share * total, level_noise)
    since = float(s[int(np.flatnonzero(sm <= best + eps)[0])])
    out.update({"since": since, "eps": eps, "flat_share": (last - since) / c.span,
                "also_flat": [o.tag for o in curves[1:]]})
    train_improving = bool(
        train_imp is not None
        and train_imp["rel"] >= float(p["min_train_rel"])
        and train_imp["effect"] >= float(p["min_train_effect"])
        and train_imp["tau"] < 0
        # a meaningful share of the train curve's own progress, not an already converged
        # loss polishing its last digits (0.005 -> 0.001) or settling after a spike
        and train_imp["share"] >= float(p["min_train_share"])
    )
    first = start_level(c)
    out.update(_poor_level(ctx, c, p, out["flat_share"]))
    poor = out["poor_by"] is not None
    out.update({"train_improving": train_improving, "poor": poor,
                "progress_rel": total / abs(first) if first else float("nan")})
    # DESIGN: a plateau is stuck at a poor level; val flat while train still improves at
    # a good level is the fitting rules' business (overfit), not a plateau
    kind = "stalled" if poor else "val_flat" if train_improving else "converged"
    return {**out, "kind": kind}


def _few_points(ctx: RuleContext, p: Any) -> dict[str, Any] | None:
    """Too few objective points for a tail, but ``min_never_points`` suffice to see that
    it never improved at all: only that verdict (:func:`_never_left`) is given.  So few
    points give no noise estimate (one real jump reads as noise) nor a robust start
    level, so every logged value must be the same (a val accuracy whose predictions never
    changed) or none may improve on the first by more than ``min_rel_progress`` of the
    level (one that only got worse never improved either), the latter unless the first
    accuracy shows a run that started trained (:func:`_trained_start`)."""
    curves = _objectives(ctx, int(p["min_never_points"]))
    if not curves or ends_nonfinite(ctx):
        return None
    c = curves[0]
    a0 = float(c.values[0])
    # improvement on the first evaluation (values are oriented lower-is-better): an
    # objective that only got worse never improved either
    total = max(0.0, a0 - float(np.min(c.values)))
    scale = (1.0 + a0) if bounded_metric(c) else abs(a0)
    level_noise = 1e-9 * max(1.0, abs(a0))
    spread = float(np.ptp(c.values))
    if spread > level_noise:
        # not identical, but within min_rel_progress of the level: never improved either,
        # unless the class count is unknown and the first accuracy shows a run that
        # started trained (a fine-tune validated a few times, flat where it started)
        found = (None if signals.infer_num_classes(ctx.run, ctx.roles)
                 else untrained_level(ctx))
        if (total > float(p["min_rel_progress"]) * scale
                and not _pinned_guess(ctx, p)) or (
                found is not None
                and _trained_start(ctx, found[0], float(p["first_acc_share"]),
                              int(p["min_never_points"]))):
            return None
        level_noise = spread
    s = smoothed(ctx, c)[0]
    out = {"curve": c, "total": total, "noise": noise(c), "best": float(np.min(
        smoothed(ctx, c)[1])), "tail_start": float(s[0]), "tail_gain": 0.0,
        "since": float(s[0]), "eps": level_noise, "also_flat": [o.tag for o in curves[1:]]}
    st = _never_left(ctx, c, p, out)
    return st if st["kind"] == "stalled" else None


def _never_left(ctx: RuleContext, c: Curve, p: Any, out: dict[str, Any]) -> dict[str, Any]:
    """The objective never improved beyond noise from its first evaluation: stuck (kind
    ``stalled``, flat for the whole run) when the level is poor by :func:`_poor_level`
    and no logged loss ever got below ``low_loss_share`` of ln C (ln 2, the lowest chance
    level, when C is unknown) nor rose ``max_loss_rise`` above its start (the larger of
    its first value and its start level: :func:`progress.early_level`) or started above
    ``max_start_chance`` x ln C (a blow-up or a huge initialisation: divergence's
    business); else ``no_progress``.  DESIGN: a run that never leaves its initial level is
    a plateau; a fine-tune or resumed run that starts low and stays flat is at a good
    level, not stuck."""
    pl = _poor_level(ctx, c, p, 1.0)
    if pl["poor_by"] is None:
        return {**out, "kind": "no_progress"}
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    # a first evaluation that is a trained model's (class count unknown): flat where a
    # fine-tune or a model that learned before its first point started, not stuck
    if pl["poor_by"] != "constant_guess" and _started_trained(
            ctx, c, n_classes, float(p["first_acc_share"]), int(p["min_never_points"]),
            float(p["start_cover"])):
        return {**out, "kind": "no_progress"}
    chance = signals.chance_loss(n_classes or 2)
    # a constant guess never learned, whatever its first loss or spikes were
    roles = () if pl["poor_by"] == "constant_guess" else (Role.VAL_LOSS, Role.TRAIN_LOSS)
    for role in roles:
        lc = get_curve(ctx, role)
        # (a loss logged min_never_points times, a Keras log of two epochs, too)
        if lc is None or len(lc) < int(p["min_never_points"]):
            continue
        sm = smoothed(ctx, lc)[1]
        start = start_level(lc)
        # rose above where it started: its first value counts as its start too (a noisy
        # train-mode loss under heavy dropout whose first minibatches sit far above the
        # median of its first tenth did not rise when its smoothed curve begins there)
        if (float(np.min(sm)) < float(p["low_loss_share"]) * chance
                or float(np.max(sm)) > (1.0 + float(p["max_loss_rise"])) * early_level(lc)
                or (n_classes and start > float(p["max_start_chance"]) * chance)):
            return {**out, "kind": "no_progress"}
    return _stuck_whole_run({**out, **pl}, c)


def _poor_level(ctx: RuleContext, c: Curve, p: Any, flat_share: float) -> dict[str, Any]:
    """Is the flat level poor, by what the log shows?

    ``poor_by`` is None, ``"progress"`` (every logged loss fell less than
    ``poor_progress`` of its start, for a clean curve read from its first value when that
    is higher: the first evaluation may come after the early learning, which the train
    loss logged from the first steps still shows; ``"loss_progress"`` when the objective
    is a metric, whose headline hides losses that barely moved), a constant guess
    (:func:`_constant_guess`), or, for a flat stretch that began within the first
    ``1 - early_flat_share`` of the run: ``"untrained"`` (the losses still hold a poor
    share of the untrained level with training stopped early, :func:`_poor_untrained`),
    ``"held_out"`` (:func:`_poor_held_out`) or ``"underfit"`` (the underfit rule finds the
    model learned but stays poor, :func:`_poor_fit`): learned a little, then stuck.
    """
    out: dict[str, Any] = {"poor_by": None, "loss_vs_chance": None, "loss_progress": None}
    # the val loss, else (fewer evaluations: a run validated twice) the train loss; a run
    # whose every loss has only min_never_points rows (a Keras log of two epochs) is read
    # on those rows
    few = int(p["min_never_points"])
    losses = [lc for lc in (get_curve(ctx, Role.VAL_LOSS), get_curve(ctx, Role.TRAIN_LOSS))
              if lc is not None]
    loss = next((lc for lc in losses if len(lc) >= 3),
                next((lc for lc in losses if len(lc) >= few), None))
    if loss is None or float(np.min(loss.values)) <= 0:
        return out
    progs = []
    for lc in losses:
        if len(lc) < min(3, len(loss)) or start_level(lc) <= 0:
            continue
        start = start_level(lc)
        if noise(lc) <= float(p["poor_progress"]) * start:
            # a clean curve from its first value when higher: a fall within the first
            # epoch is progress (a noisy per-step loss's first batch proves nothing); and
            # from the level before the log when its first point already covers more than
            # start_cover of the run (a Keras row averaging the first of a few epochs:
            # what the model learned in it is progress the per-step log shows)
            before = level_before_log(ctx, lc, float(p["start_cover"]))
            start = max(float(lc.values[0]), start, before if before is not None else start)
        progs.append((start - float(np.min(smoothed(ctx, lc)[1]))) / start)
    if progs and max(progs) < float(p["poor_progress"]) and not _low_unseen_start(ctx, p):
        if c.series.role == loss.series.role or c.series.role == Role.TRAIN_LOSS:
            return {**out, "poor_by": "progress"}
        return {**out, "poor_by": "loss_progress", "loss_progress": max(progs),
                "poor_loss": loss.tag}
    guess = _constant_guess(ctx, p)
    if guess:
        return {**out, **guess}
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if flat_share >= float(p["early_flat_share"]):
        found = _poor_untrained(ctx, p)
        if not found and not n_classes and flat_share >= 1.0 and c.series.split in ("val", "test"):
            found = _poor_held_out(ctx, p)
        if not found:
            found = _poor_fit(ctx)
        return {**out, **found}
    return out


def _low_unseen_start(ctx: RuleContext, p: Any) -> bool:
    """With no train loss logged and the class count unknown, whether the val loss ends
    below ``low_loss_share`` x ln 2 (the lowest chance level): its first evaluation comes
    after the early learning, which only a train loss logged from the first steps would
    show, so "fell less than ``poor_progress`` from its start" measures the fall from a
    level the model had already reached, and that level is low: nothing in the log shows
    it poor (a log of validation metrics alone, DESIGN.md's run flat at a good level)."""
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    vl = get_curve(ctx, Role.VAL_LOSS)
    if (tl is not None and len(tl) >= 2) or vl is None or len(vl) < 3 or (
            signals.infer_num_classes(ctx.run, ctx.roles)):
        return False
    return end_level(vl) < float(p["low_loss_share"]) * signals.chance_loss(2)


def _poor_fit(ctx: RuleContext) -> dict[str, Any]:
    """The ``"underfit"`` poor level: the underfit rule's own judgement
    (:func:`underfit.learned_but_poor`, UND004 with its configured thresholds) finds that
    the model learned but stays poor.  A flat stretch that began early at that level is
    DESIGN.md's "learns, then flattens early at a poor level": underfit AND plateau."""
    ev = learned_but_poor(ctx)
    if ev is None:
        return {}
    return {"poor_by": "underfit", "underfit_by": ev.poor_by, "poor_loss": ev.best_on,
            "loss_vs_chance": ev.end_over_untrained, "untrained_level": ev.untrained_level,
            "untrained_from": ev.untrained_from}


def _guess_entropy(acc: float) -> float:
    """A lower bound on the label entropy of a data set whose largest class holds the
    share ``acc``: the cross-entropy a constant guess cannot beat (both -ln acc and the
    two-class entropy h(acc) bound it from below)."""
    if not 0.0 < acc < 1.0:
        return 0.0
    two = -acc * np.log(acc) - (1.0 - acc) * np.log(1.0 - acc)
    return float(max(two, -np.log(acc)))


def _constant_guess(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """The ``"constant_guess"`` poor level: every logged accuracy stayed identical over
    the last ``tail_frac`` of the run (at least ``min_tail_points`` evaluations; every
    evaluation, at least ``min_never_points``, of a split evaluated fewer times there),
    and every logged loss (train and val) ends at ``guess_loss_share`` or more of the
    least cross-entropy a constant guess of its split's accuracy (else the other split's)
    can have, and at ``low_loss_share`` x ln 2 or more.  A model predicting one class for
    every input scores that class's share at every epoch whatever its weights do: the
    majority class of an imbalanced set (0.63 on breast_cancer) looks learned but never
    left the untrained level (DESIGN.md: plateau).  A train loss falling below that level
    learned something (only validation is broken).  Needs no class count nor a sane
    first loss (a huge initialisation's first loss says nothing about the untrained
    level)."""
    return _identical_guess(ctx, p) or _pinned_guess(ctx, p)


def _identical_guess(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """:func:`_constant_guess`'s first test: every logged accuracy identical
    (:func:`pinned_accuracy`)."""
    accs: dict[str, tuple[float, str]] = {}
    for split, role in (("train", Role.TRAIN_METRIC), ("val", Role.VAL_METRIC)):
        acc = accuracy_curve(ctx, role, fraction_only=False)
        if acc is None:
            continue
        pinned = pinned_accuracy(acc, int(p["min_never_points"]), None, float(p["tail_frac"]),
                                 int(p["min_tail_points"]))
        if pinned is None:
            return {}
        accs[split] = (float(pinned.fractions[-1]), acc.tag)
    if not accs:
        return {}
    found: dict[str, Any] = {}
    for split, role in (("train", Role.TRAIN_LOSS), ("val", Role.VAL_LOSS)):
        lc = get_curve(ctx, role)
        if lc is None or len(lc) < int(p["min_never_points"]):
            continue
        a, tag = accs.get(split, next(iter(accs.values())))
        bound, end = _guess_entropy(a), end_level(lc)
        if bound <= 0 or end < max(float(p["guess_loss_share"]) * bound, _low_loss(p)):
            return {}
        if not found:
            found = {"poor_by": "constant_guess", "constant_accuracy": a,
                     "constant_metric": tag, "poor_loss": lc.tag, "loss_vs_chance": end / bound}
    return found


def _pinned_guess(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """:func:`_constant_guess`'s second test: the val accuracy stayed within
    ``pinned_acc_band`` of one value over the last ``tail_frac`` of the run (every
    evaluation of a run validated fewer than ``min_tail_points`` times there, at least
    ``min_never_points``: a sample or two of a small val set either way, the class prior
    predicted for every input; :func:`pinned_accuracy`, which the underfit rules ask
    too), the val loss never fell ``poor_progress`` below its first evaluation, and both
    the val and the train loss are still near the untrained level: at
    ``near_untrained_share`` or more of the L0 the log shows (:func:`untrained_level`:
    ln C, or the log's own), or between ``guess_loss_share`` and ``guess_ceiling`` times
    the least cross-entropy of a constant guess of that accuracy (the entropy of the
    class prior, which a binary set's accuracy gives exactly: an L0 read from a first
    loss blown up by a large LR says nothing).  A character model at its unigram level
    also predicts one symbol, but its loss fell far below ln C and sits far above that
    guess's least entropy: it learned the prior (underfit, not never-learned).  Not for a
    loss ending above ``max_start_chance`` x ln C (ln 2 or that least entropy when C is
    unknown): a huge initialisation's loss, divergence's business.

    The val-loss test (first evaluation to lowest smoothed level) stays this rule's own,
    apart from :func:`underfit.val_learned` (end over early level, or a train descent
    before validation): sharing one would move which runs fire."""
    acc = accuracy_curve(ctx, Role.VAL_METRIC, fraction_only=False)
    vl = get_curve(ctx, Role.VAL_LOSS)
    if acc is None or vl is None or len(vl) < int(p["min_never_points"]):
        return {}
    pinned = pinned_accuracy(acc, int(p["min_never_points"]), float(p["pinned_acc_band"]),
                             float(p["tail_frac"]), int(p["min_tail_points"]))
    v0 = float(vl.values[0])
    # a band (not identity) needs min_never_points evaluations whichever the window: a
    # tail of min_tail_points (< min_never_points when so configured) may agree by chance
    if (pinned is None or len(pinned.fractions) < int(p["min_never_points"]) or v0 <= 0 or (
            v0 - float(np.min(smoothed(ctx, vl)[1]))) >= float(p["poor_progress"]) * v0):
        return {}
    a = float(np.median(pinned.fractions))
    bound, found = _guess_entropy(a), untrained_level(ctx)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    # a loss far above any chance level is a huge initialisation's (divergence's business)
    ceiling = float(p["max_start_chance"]) * (
        signals.chance_loss(n_classes) if n_classes else max(bound, signals.chance_loss(2)))
    if bound <= 0:
        return {}
    out: dict[str, Any] = {}
    for role in (Role.VAL_LOSS, Role.TRAIN_LOSS):
        lc = get_curve(ctx, role)
        if lc is None or len(lc) < int(p["min_never_points"]):
            return {}
        end = end_level(lc) if len(lc) >= 3 else float(lc.values[-1])
        by_l0 = found is not None and end >= float(p["near_untrained_share"]) * found[0]
        by_guess = (float(p["guess_loss_share"]) * bound <= end
                    <= float(p["guess_ceiling"]) * bound)
        if end < _low_loss(p) or end > ceiling or not (by_l0 or by_guess):
            return {}
        if not out:
            out = {"poor_by": "constant_guess", "constant_accuracy": a,
                   "constant_metric": acc.tag, "poor_loss": lc.tag,
                   "constant_spread": pinned.spread}
            out.update({"loss_vs_chance": end / found[0], "untrained_level": found[0],
                        "untrained_from": found[1]} if by_l0 and found is not None
                       else {"loss_vs_chance": end / bound})
    return out


def _poor_held_out(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """The ``"held_out"`` poor level, for a val objective that never improved from its
    first evaluation (class count unknown): the val loss ends at ``low_loss_share`` x ln
    2 or more and the train loss ends at ``flat_gap_ratio`` of it or above (training got
    no further than validation: the fall of a train-mode loss under dropout or from a
    bad initialisation taught nothing that validation sees), unless the first evaluated
    accuracy already leads the uniform guess exp(-L0) by ``first_acc_share`` of the room
    (a fine-tune or resumed run, flat at the level it started from)."""
    vl, tl = get_curve(ctx, Role.VAL_LOSS), get_curve(ctx, Role.TRAIN_LOSS)
    found = untrained_level(ctx)
    if vl is None or tl is None or len(vl) < 3 or len(tl) < 3 or found is None:
        return {}
    v_end, t_end = end_level(vl), end_level(tl)
    if (v_end < _low_loss(p)
            or t_end < float(p["flat_gap_ratio"]) * v_end
            or _trained_start(ctx, found[0], float(p["first_acc_share"]),
                              int(p["min_never_points"]))):
        return {}
    return {"poor_by": "held_out", "poor_loss": vl.tag, "train_over_val": t_end / v_end}


def _started_trained(ctx: RuleContext, c: Curve, n_classes: int | None, share: float,
                     min_points: int, start_cover: float) -> bool:
    """With the class count unknown, whether the first point of ``c`` is a trained
    model's rather than the model's start: it covers more than ``start_cover`` of the run
    (:func:`progress.first_point_cover`: a Keras row averaging the first of a few epochs,
    a first evaluation or record late in the run; past the start window where the log
    would show the untrained level) and the first accuracy leads the uniform guess of the
    untrained level the log shows by ``share`` of the room (:func:`_trained_start`).
    Then "never left its first level" is flat where a fine-tune, or a model that learned
    before its first point, already was: it says nothing of the model's start."""
    if n_classes or first_point_cover(ctx, c) <= start_cover:
        return False
    found = untrained_level(ctx)
    return found is not None and _trained_start(ctx, found[0], share, min_points)


def _low_from_late_start(ctx: RuleContext, c: Curve, n_classes: int | None,
                         p: PLT002.Params) -> bool:
    """With the class count unknown, whether the judged loss ``c`` is a val loss (no
    train loss logged to show the model's start) flat from a first evaluation that is
    not the model's start (it covers more than ``start_cover`` of the run,
    :func:`progress.first_point_cover`: evaluated after the early learning, as a log of
    validation metrics alone shows a run) at a low level (it ends below
    ``min_chance_share`` x ln 2, the lowest chance level).  The log then does not show
    the initial level, only a low one the model reached before its first evaluation:
    DESIGN.md's fine-tune or converged run flat at a low loss (healthy), not one that
    never left its initial level."""
    return (not n_classes and c.series.role is Role.VAL_LOSS
            and first_point_cover(ctx, c) > float(p.start_cover)
            and end_level(c) < float(p.min_chance_share) * signals.chance_loss(2))


def _trained_start(ctx: RuleContext, level0: float, share: float, min_points: int) -> bool:
    """Whether the first evaluated accuracy (val, else train) leads the uniform guess
    exp(-L0) that the untrained loss L0 implies by ``share`` of the room above it: then
    the first logged loss is already a trained model's (a fine-tune, a resumed run).
    An accuracy identical at every one of at least ``min_points`` evaluations is not: its
    predictions never changed (a constant guess, the majority class of an imbalanced
    set leads the uniform guess without learning anything)."""
    for role in (Role.VAL_METRIC, Role.TRAIN_METRIC):
        acc = get_curve(ctx, role)
        if acc is None or not len(acc) or not bounded_metric(acc):
            continue
        if pinned_accuracy(acc, min_points) is not None:
            return False
        return leads_guess(acc.raw(float(acc.values[0])), level0, share)
    return False


def leads_guess(accuracy: float, loss: float, share: float) -> bool:
    """``accuracy`` leads the uniform guess at cross-entropy ``loss`` (exp(-loss), the
    accuracy of a uniform guess over e^loss classes) by ``share`` of the room above it:
    the argmax learned something of the inputs."""
    guess = float(np.exp(-loss))
    return accuracy >= guess + share * (1.0 - guess)


def _poor_untrained(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """The ``"untrained"`` poor level: the better of the val and train losses ends at
    ``poor_chance_share`` or more of ln C when the class count C is known, else at
    ``poor_untrained_share`` or more of the untrained level L0 the log shows
    (:func:`untrained_level`: the largest early loss; stricter, as a log written after
    the first epoch starts below the untrained loss) and at
    ``low_loss_share`` x ln 2 or more (a fine-tune flat at a low loss starts low too), and
    the train loss gained at most ``max_late_gain`` of its fall from L0 after the first
    ``1 - early_flat_share`` of the run: learned a little, then stuck early.  A train loss
    still falling late is a slow convergence (a noisy data set's level), not a plateau."""
    found = untrained_level(ctx)
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    share = float(p["poor_untrained_share"])
    if n_classes:
        found, share = (signals.chance_loss(n_classes), f"ln {n_classes}"), float(
            p["poor_chance_share"])
    if found is None or tl is None or len(tl) < 3:
        return {}
    level0 = found[0]
    ends = {c.tag: end_level(c) for c in (get_curve(ctx, Role.VAL_LOSS), tl)
            if c is not None and len(c) >= 3}
    tag = min(ends, key=lambda t: ends[t])
    better = ends[tag]
    if better < max(share * level0, _low_loss(p)):
        return {}
    early = float(tl.steps[0]) + (1.0 - float(p["early_flat_share"])) * tl.span
    fell = level0 - end_level(tl)
    late = level_at(tl, early) - end_level(tl)
    if fell > 0 and late > float(p["max_late_gain"]) * fell:
        return {}
    return {"poor_by": "untrained", "loss_vs_chance": better / level0, "poor_loss": tag,
            "untrained_level": level0, "untrained_from": found[1]}


def _pinned(ev: StallEvidence) -> str:
    """How a constant guess's accuracy held: identical, or within its spread."""
    if not ev.constant_spread:
        return f"identical at {fmt(ev.constant_accuracy)}"
    return f"pinned at {fmt(ev.constant_accuracy)} (within {fmt(ev.constant_spread)})"


def _evidence(st: dict[str, Any], p: StallParams, last_step: int | None = None) -> StallEvidence:
    c: Curve = st["curve"]
    tr = st.get("train") or {}
    return StallEvidence(
        name=_name(c),
        progress_rel=st["progress_rel"],
        objective=c.tag,
        flat_since_step=int(st["since"]),
        flat_share_of_run=st["flat_share"],
        best=c.raw(st["best"]),
        end=c.raw(end_level(c)),
        total_progress=st["total"],
        tolerance=st["eps"],
        noise=st["noise"],
        poor_level=st["poor"],
        train_improving=st["train_improving"],
        also_flat=st["also_flat"],
        tail_start_step=int(st["tail_start"]),
        train_metric=tr.get("tag"),
        train_from=tr.get("from"),
        train_to=tr.get("to"),
        train_rel_improvement=tr.get("rel"),
        poor_loss=st.get("poor_loss"),
        loss_progress=st.get("loss_progress"),
        loss_vs_chance=st.get("loss_vs_chance"),
        untrained_level=st.get("untrained_level"),
        untrained_from=st.get("untrained_from"),
        train_over_val=st.get("train_over_val"),
        constant_accuracy=st.get("constant_accuracy"),
        constant_metric=st.get("constant_metric"),
        constant_spread=st.get("constant_spread"),
        underfit_by=st.get("underfit_by"),
        late_gain=st.get("late_gain"),
        lr_cut_step=st.get("lr_cut_step"),
        lr_cut_ratio=st.get("lr_cut_ratio"),
        lr_after_cut=st.get("lr_after_cut"),
        chance_level=st.get("chance_level"),
        thresholds=p,
        last_step=last_step,
    )


def _stall_advise(ctx: AdviceContext, finding: Finding,
                  fallback: Callable[[AdviceContext, Finding], list[Candidate]],
                  ) -> list[Candidate]:
    """PLT001/PLT003: the plateau advice from the stall's typed evidence."""
    from diagnose.recommend import plateau_advice

    ev = finding.detail
    if not isinstance(ev, StallEvidence):
        return fallback(ctx, finding)
    start = float(ev.flat_since_step) or (
        float(finding.step) if finding.step is not None else None)
    # flat for the whole run (never improved from its first evaluation): the
    # never-learned advice (init, LR into range), as for PLT002; not when UND004's
    # judgement found the model learned (underfit_by): learned, then stuck is no dead net
    return plateau_advice(ctx, start, finite_number(ev.end), bool(ev.poor_level),
                          from_start=ev.flat_share_of_run >= 1.0 and ev.underfit_by is None)


@rule
class PLT001(Rule[StallParams, StallEvidence]):
    """Flat for a long tail while training improves, or flat at a poor level."""

    id = "PLT001"
    detector = "plateau_stalled"
    Params = StallParams
    Evidence = StallEvidence

    def detect(self, ctx: RuleContext, p: StallParams) -> list[Found[StallEvidence]] | None:
        st = stall(ctx, p)
        if st is None:
            return None
        if st["kind"] != "stalled":
            return []
        c: Curve = st["curve"]
        return [Found(c.tag, int(st["since"]), _evidence(st, p, int(c.steps[-1])))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        return _stall_advise(ctx, finding, super().advise)

    def message(self, ev: StallEvidence) -> str:
        if ev.chance_level is not None and ev.loss_vs_chance is not None:
            return (f"{ev.poor_loss} ends at {pct(ev.loss_vs_chance)} of the chance level "
                    f"{fmt(ev.chance_level)} ({ev.untrained_from}, the uniform guess's "
                    f"cross-entropy), in that band since step {ev.flat_since_step} (the "
                    f"last {pct(ev.flat_share_of_run)} of the run): never learned beyond "
                    f"chance")
        if ev.underfit_by is not None and ev.loss_vs_chance is not None:
            why = (f"after learning to a poor level (UND004, poor by {ev.underfit_by}: the "
                   f"loss ends at {pct(ev.loss_vs_chance)} of the untrained level "
                   f"{fmt(ev.untrained_level)} ({ev.untrained_from})): learned, then "
                   f"stuck early")
        elif (ev.constant_accuracy is not None and ev.loss_vs_chance is not None
              and ev.untrained_level is not None):
            why = (f"with {ev.constant_metric} {_pinned(ev)} and "
                   f"{ev.poor_loss} still at {pct(ev.loss_vs_chance)} of the untrained "
                   f"level {fmt(ev.untrained_level)} ({ev.untrained_from}): one class "
                   f"predicted for every input, never learned")
        elif ev.lr_cut_ratio is not None and ev.loss_vs_chance is not None:
            why = (f"by the learning rate, cut {fmt(ev.lr_cut_ratio)}x below its peak to "
                   f"{fmt(ev.lr_after_cut)} at step {ev.lr_cut_step}, with "
                   f"{ev.poor_loss} still at {pct(ev.loss_vs_chance)} of the untrained "
                   f"level {fmt(ev.untrained_level)} ({ev.untrained_from}): a poor level")
        elif ev.loss_vs_chance is not None and ev.untrained_level is not None:
            why = (f"with {ev.poor_loss} still at {pct(ev.loss_vs_chance)} of the untrained "
                   f"level {fmt(ev.untrained_level)} ({ev.untrained_from}): a poor level")
        elif ev.constant_accuracy is not None and ev.loss_vs_chance is not None:
            why = (f"with {ev.constant_metric} {_pinned(ev)} and "
                   f"{ev.poor_loss} at {pct(ev.loss_vs_chance)} of the entropy of such a "
                   f"guess: one class predicted for every input, never learned")
        elif ev.train_over_val is not None:
            why = (f"with {ev.poor_loss} never improving and the train loss ending at "
                   f"{pct(ev.train_over_val)} of it: training got no further than validation")
        elif ev.loss_vs_chance is not None:
            why = (f"with {ev.poor_loss} still at {pct(ev.loss_vs_chance)} of the untrained "
                   f"level ln C: a poor level")
        elif ev.loss_progress is not None:
            why = (f"while no loss improved more than {pct(ev.loss_progress)} from its "
                   f"start")
        else:
            why = f"after improving only {pct(ev.progress_rel)} from its start"
        if ev.train_improving:
            why += (f", while train {ev.train_metric} still improves from "
                    f"{fmt(ev.train_from)} to {fmt(ev.train_to)}")
        if ev.late_gain is not None:
            # (a run thrown back to its start ends worse than it was by then)
            made = (f"made {pct(ev.late_gain)} of its fall from the untrained level after"
                    if ev.late_gain >= 0 else "ended worse than it was at")
            return (f"{ev.name} {made} step {ev.flat_since_step} (the last "
                    f"{pct(ev.flat_share_of_run)} of the run; {fmt(ev.end)} at the end, best "
                    f"{fmt(ev.best)}), the train loss little more: stopped early {why}")
        return (f"{ev.name} has not improved beyond noise since step {ev.flat_since_step} "
                f"({pct(ev.flat_share_of_run)} of the run, best {fmt(ev.best)}) {why}")


@rule
class PLT003(Rule[StallParams, StallEvidence]):
    """Flat at the level it reached after clear progress, training flat too."""

    id = "PLT003"
    detector = "converged"
    Params = StallParams
    Evidence = StallEvidence

    def detect(self, ctx: RuleContext, p: StallParams) -> list[Found[StallEvidence]] | None:
        st = stall(ctx, p)
        if st is None:
            return None
        if st["kind"] != "converged":
            return []
        c: Curve = st["curve"]
        return [Found(c.tag, int(st["since"]), _evidence(st, p))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        return _stall_advise(ctx, finding, super().advise)

    def message(self, ev: StallEvidence) -> str:
        # a tolerance as large as the value itself: say what it is a share of (the run's
        # total progress), not "within 1.08 of 1.083" nor a percentage of a best near 0
        big = ev.best != 0 and ev.tolerance >= 0.5 * abs(ev.best)
        share = ""
        if big and ev.total_progress > 0:
            share = (f" ({pct(ev.tolerance / ev.total_progress)} of its total progress "
                     f"{fmt(ev.total_progress)})")
        elif big:
            share = f" (a tolerance of {pct(ev.tolerance / abs(ev.best))} of that value)"
        return (f"{ev.name} has stayed within {fmt(ev.tolerance)} of its best "
                f"{fmt(ev.best)}{share} since step {ev.flat_since_step}, the last "
                f"{pct(ev.flat_share_of_run)} of the run: converged")


def _own_smoothed(ctx: RuleContext, c: Curve) -> np.ndarray:
    """:func:`smoothed` values of ``c``, cached only for the role's own curve (a view
    :func:`after_first_blowup` cut is smoothed afresh: the cache is keyed by tag)."""
    own = c.series.role is not None and get_curve(ctx, c.series.role) is c
    return smoothed(ctx if own else None, c)[1]


def after_first_blowup(c: Curve | None, level0: float, factor: float,
                        share: float = 0.1) -> Curve | None:
    """The curve from where the run's own level starts: after its last point at
    ``factor`` x the untrained level ``level0`` (ln C) or more within the first ``share``
    of the run, when its first point is such a point; else ``c`` itself.

    DESIGN.md: when the first logged point is already blown up, the starting level is the
    untrained model's loss ln C: a loss that came down from a huge initialisation within
    the first steps and then sat at ln C never left that level (plateau); the blown-up
    points are where the run started, not a level it left.  A loss that stays blown up
    past the first ``share`` of the run is divergence's business and is not cut."""
    if c is None or len(c) < 2 or level0 <= 0 or float(c.values[0]) < factor * level0:
        return c
    head = np.flatnonzero((c.values >= factor * level0) & in_start(c, share))
    k = int(head[-1]) + 1
    if k >= len(c) or np.any(c.values[k:] >= factor * level0):
        return c
    return Curve(c.series, c.steps[k:], c.values[k:], c.sign)


def _flat_move(ctx: RuleContext, c: Curve, p: Any) -> tuple[float, float]:
    """(movement, noise tolerance) of a positive loss relative to its initial level.

    A clean curve is anchored at its first value (a loss that fell in its first epoch and
    then froze did learn something) and has no tolerance.  A curve whose point-to-point
    noise exceeds ``max_rel_move`` of its level (a per-step minibatch loss) with at least
    ``chunked_points`` points is read on the medians of ten consecutive chunks instead,
    so one lucky minibatch neither moves it nor anchors it; its tolerance is ``noise_z``
    standard errors of such a median.
    """
    first = float(c.values[0])
    meds = _chunk_medians(c, first, p)
    if meds is None:
        drop = first - float(np.min(_own_smoothed(ctx, c)))
        change = abs(end_level(c) - first)
        return max(drop, change) / first, 0.0
    a = float(meds[0])
    move = max(a - float(np.min(meds)), abs(float(meds[-1]) - a)) / a
    return move, float(p.noise_z) * noise(c) / np.sqrt(len(c) // 10) / a


def _chunk_medians(c: Curve, level: float, p: PLT002.Params) -> np.ndarray | None:
    """The medians of ten consecutive chunks of a noisy per-step loss (point-to-point
    noise above ``max_rel_move`` of ``level``, at least ``chunked_points`` points), the
    reading PLT002 gives such a loss so that one lucky minibatch, or a run of them,
    neither moves it nor anchors it; None for a clean or short loss."""
    if noise(c) <= float(p.max_rel_move) * level or len(c) < int(p.chunked_points):
        return None
    return np.array([float(np.median(ch)) for ch in np.array_split(c.values, 10)])


def _untrained(ctx: RuleContext, main: Curve, n_classes: int | None,
               p: PLT002.Params) -> tuple[float, str] | None:
    """The untrained level L0 the losses are compared with, and where it came from: ln C
    when the class count C is known, else the level the log shows (the largest early
    loss, :func:`untrained_level`).  None when the log's own level cannot be the
    untrained one: the loss ends below ``min_chance_share`` of ln 2 (the lowest chance
    level: a fine-tune flat at a low loss), or the first evaluated accuracy already leads
    the uniform guess exp(-L0) by ``first_acc_share`` of the room above it (the first
    loss is a trained model's: a fine-tune or a resumed run)."""
    if n_classes:
        return signals.chance_loss(n_classes), f"ln {n_classes}"
    found = untrained_level(ctx)
    if found is None or end_level(main) < float(p.min_chance_share) * signals.chance_loss(2):
        return None
    if _trained_start(ctx, found[0], float(p.first_acc_share), p.min_points):
        return None
    return found


def _near_level(ctx: RuleContext, c: Curve, level0: float, p: PLT002.Params) -> bool:
    """True when the smoothed loss stays between ``near_chance`` x L0 and L0 /
    ``near_chance`` from start to end: the untrained level, however its first logged
    points moved (a loss far above it is divergence's business).  A noisy per-step loss
    (as in :func:`_flat_move`) is read on the medians of ten chunks, so one run of lucky
    minibatches does not take it out of the band."""
    lo, hi = float(p.near_chance) * level0, level0 / float(p.near_chance)
    meds = _chunk_medians(c, level0, p)
    if meds is not None:
        return bool(float(np.min(meds)) >= lo and float(np.max(meds)) <= hi
                    and lo <= float(meds[-1]) <= hi)
    sm = _own_smoothed(ctx, c)
    return bool(float(np.min(sm)) >= lo and float(np.max(sm)) <= hi
                and lo <= end_level(c) <= hi)


def _warmup_unended(ctx: RuleContext, p: PLT002.Params) -> tuple[float, float] | None:
    """(LR at the end, its rise over the last half of the run) when the logged learning
    rate was still ramping up at the last logged point: a warmup that never ended (DESIGN:
    a plateau cause), the weights trained at a fraction of the intended rate throughout.
    Its last ``min_points`` values rise at every point, the last is the run's peak, and
    it is ``min_lr_rise`` x its level at the middle of the run (a mid-run LR jump that then
    holds, or a restart schedule's last climb from a peak it already reached, is not
    one).  None without such a logged LR."""
    lr = ctx.series(Role.LR)
    if lr is None or len(lr.finite) < max(3, p.min_points):
        return None
    steps, values = lr.finite.steps, lr.finite.values
    tail = values[-max(3, p.min_points):]
    last = float(values[-1])
    if not (last > 0 and bool(np.all(np.diff(tail) > 0)) and last >= float(np.max(values))):
        return None
    middle = float(values[steps <= float(steps[0]) + 0.5 * float(steps[-1] - steps[0])][-1])
    rise = last / middle if middle > 0 else float("inf")
    return (last, rise) if rise >= float(p.min_lr_rise) else None


def _near_own_start(ctx: RuleContext, p: PLT002.Params) -> Curve | None:
    """The loss that never left its own first level under an unended warmup: the val loss
    when evaluated ``min_points`` times (the whole held-out set: no minibatch noise), else
    the train loss from its start level; within ``near_chance`` of that level from start
    to end (:func:`_near_level`).  None when it left it."""
    for role in (Role.VAL_LOSS, Role.TRAIN_LOSS):
        c = get_curve(ctx, role)
        if c is None or len(c) < p.min_points or float(np.min(c.values)) <= 0:
            continue
        first = float(c.values[0]) if role is Role.VAL_LOSS else start_level(c)
        return c if _near_level(ctx, c, first, p) else None
    return None


def _lowest_level(ctx: RuleContext, c: Curve, level0: float, p: PLT002.Params) -> float:
    """The lowest level a positive loss reached: its smoothed minimum, or for a noisy
    per-step loss (read as :func:`_near_level` reads it against L0 ``level0``) the least
    of its ten chunk medians, so one lucky minibatch does not count as a level reached."""
    meds = _chunk_medians(c, level0, p)
    return float(np.min(meds)) if meds is not None else float(np.min(smoothed(ctx, c)[1]))


def _held_out_untrained(ctx: RuleContext, level0: tuple[float, str] | None,
                        at_chance: list[str], p: PLT002.Params) -> Curve | None:
    """The val loss, when it sat within ``near_chance`` of the untrained level L0 from start
    to end (evaluated ``min_points`` times or more: the whole held-out set, no minibatch
    noise) while no logged loss ever reached a low level (:func:`_lowest_level` at
    ``min_chance_share`` x L0 or above): what the model predicts on held-out data is still
    the untrained distribution, so the run never left its initial level (DESIGN), however
    a train-mode loss under dropout or minibatch noise moved meanwhile.  A train loss
    that fell to a low level learned something (only validation is broken: batch norm's
    business), and so did one ending below ``min_train_over_val`` of the val loss (a
    generalisation gap: memorised label noise, overfitting's); nor one whose val
    accuracy (else train accuracy) gained ``first_acc_share`` of the room above the
    uniform guess exp(-L0) (the argmax learned, whatever the under-confident loss says).
    None otherwise."""
    vl = get_curve(ctx, Role.VAL_LOSS)
    if (level0 is None or vl is None or vl.tag not in at_chance
            or len(vl) < max(3, p.min_points)):
        return None
    guess = float(np.exp(-level0[0]))
    for acc in (get_curve(ctx, Role.VAL_METRIC), get_curve(ctx, Role.TRAIN_METRIC)):
        if acc is not None and len(acc) >= 3 and bounded_metric(acc):
            if total_progress(ctx, acc) >= float(p.first_acc_share) * (1.0 - guess):
                return None
            break
    if _learned_beside(ctx, vl, level0[0], p):
        return None
    return vl


def _learned_beside(ctx: RuleContext, vl: Curve, level0: float, p: PLT002.Params) -> bool:
    """Something was learned beside a val loss stuck at its untrained level ``level0``: a
    logged (positive) loss got below ``min_chance_share`` of it (so only validation is
    broken: batch norm's business), or the train loss ends below ``min_train_over_val``
    of the val loss (it learned what validation does not see: a generalisation gap,
    overfitting's).  Shares of a level mean something for a positive loss only."""
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    for c in (tl, vl):
        if (c is not None and len(c) >= 3 and float(np.min(c.values)) > 0
                and _lowest_level(ctx, c, level0, p) < float(p.min_chance_share) * level0):
            return True
    return (tl is not None and len(tl) >= 3 and float(np.min(tl.values)) > 0
            and end_level(tl) < float(p.min_train_over_val) * end_level(vl))


def _held_out_at_guess(ctx: RuleContext, n_classes: int | None,
                       p: PLT002.Params) -> Curve | None:
    """With the class count unknown (so no ln C, and the log's own untrained level is a
    first minibatch's loss, which dropout or batch noise lifts above the held-out one),
    the val loss that never left its first evaluation's level (it moves at most
    ``max_rel_move`` of it, as :func:`_flat_move` reads a loss, evaluated ``min_points``
    times or more, above ``min_chance_share`` x ln 2) while the val accuracy never led
    the uniform guess that level implies, exp(-L) (a loss of L is the cross-entropy of
    a uniform guess over e^L classes), by ``first_acc_share`` of the room above it: the
    held-out predictions
    are still as uncertain as an untrained model's and their argmax little better than
    that guess, so the run never left its initial level (DESIGN), however a train-mode
    loss under dropout or minibatch noise moved meanwhile.  A trained model's accuracy
    (a fine-tune flat where it started) leads exp(-L) by far; nor when something was
    learned beside it (:func:`_learned_beside`).  None otherwise."""
    vl = get_curve(ctx, Role.VAL_LOSS)
    acc = get_curve(ctx, Role.VAL_METRIC)
    if (n_classes or vl is None or len(vl) < max(3, p.min_points)
            or float(np.min(vl.values)) <= 0 or acc is None or len(acc) < 3
            or not bounded_metric(acc)):
        return None
    v0 = float(vl.values[0])
    v_end = end_level(vl)
    if v_end < float(p.min_chance_share) * signals.chance_loss(2):
        return None
    # flat from that first evaluation (PLT002's own "did not move": max_rel_move, within
    # noise), not merely inside the near_chance band: a val loss still falling is learning
    move, tol = _flat_move(ctx, vl, p)
    if move > float(p.max_rel_move) + tol:
        return None
    if leads_guess(acc.raw(float(np.min(acc.values))), min(v0, v_end),
                   float(p.first_acc_share)):
        return None
    # the untrained level: the val loss's first level, or the log's own where higher (a
    # train loss that fell from it below min_chance_share of it before the first
    # evaluation learned; so did a val loss that fell below that share of it)
    found = untrained_level(ctx)
    level0 = max(v0, found[0]) if found is not None else v0
    if _learned_beside(ctx, vl, level0, p):
        return None
    return vl


@rule
class PLT002(Rule["PLT002.Params", "PLT002.Evidence"]):
    """The loss never leaves its initial level.

    Judged on the train loss (else the val loss), which must be positive so that "moved
    less than ``max_rel_move`` of its level" means something; every other logged loss
    and accuracy-like metric must not have moved either (a fine-tune whose loss starts
    low but whose metric improves is not stuck), nor sit at a good level (a resumed run
    that is flat because it already converged is not stuck).  A val loss at the
    untrained level from start to end decides alone when no loss reached a low level
    (:func:`_held_out_untrained`); so does an unended warmup (:func:`_warmup_unended`).
    """

    id = "PLT002"
    detector = "plateau_from_start"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        max_rel_move: float = param(P.NON_NEGATIVE)
        max_metric_gain: float = param(P.NON_NEGATIVE)
        good_metric: float = param(P.FRACTION)
        unknown_chance: float = param(P.FRACTION)
        noise_z: float = param(P.NON_NEGATIVE)
        min_chance_share: float = param(P.NON_NEGATIVE)
        near_chance: float = param(P.NON_NEGATIVE)
        chunked_points: int = param(P.COUNT)
        first_acc_share: float = param(P.FRACTION)
        min_lr_rise: float = param(P.AT_LEAST_ONE)
        min_train_over_val: float = param(P.NON_NEGATIVE)
        blowup_factor: float = param(P.AT_LEAST_ONE)
        start_cover: float = param(P.FRACTION)
        min_rows: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        name: str = internal("")
        start: float = 0.0
        end: float = 0.0
        max_rel_move: float = 0.0
        moves: dict[str, float] = field(default_factory=dict)
        noise_tolerance: dict[str, float] | None = field(default=None, metadata={"omit_none": True})
        at_chance_loss: float | None = optional()
        untrained_from: str | None = optional()
        lr_end: float | None = optional()
        lr_rise: float | None = optional()
        last_step: int = 0
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: PLT002.Params) -> list[Found[PLT002.Evidence]] | None:
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        # with ln C known, each loss is judged from where its own level starts: after a
        # blow-up of its first logged points (DESIGN: the starting level is then ln C)
        own = {role: (after_first_blowup(get_curve(ctx, role), signals.chance_loss(n_classes),
                                          float(p.blowup_factor))
                      if n_classes else get_curve(ctx, role))
               for role in (Role.TRAIN_LOSS, Role.VAL_LOSS)}
        main = None
        for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
            c = own[role]
            if c is not None and len(c) >= p.min_points and c.span > 0:
                main = c
                break
        if main is None:
            # (a log whose every loss has a few rows: a Keras log of two epochs)
            return self._few_rows(ctx, n_classes, own, p)
        if float(np.min(main.values)) <= 0:
            return None
        if ends_nonfinite(ctx):
            return []
        level0 = _untrained(ctx, main, n_classes, p)
        moves: dict[str, float] = {}
        tols: dict[str, float] = {}
        at_chance: list[str] = []
        for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
            c = own[role]
            if c is None or len(c) < 3 or float(np.min(c.values)) <= 0:
                continue
            moves[c.tag], tols[c.tag] = _flat_move(ctx, c, p)
            if level0 is not None and _near_level(ctx, c, level0[0], p):
                at_chance.append(c.tag)
        if not moves:
            return []
        # a cross-entropy well below ln C is a low level (a fine-tune that starts low and
        # stays nearly flat), not the untrained one
        if n_classes and end_level(main) < float(p.min_chance_share) * signals.chance_loss(
                n_classes):
            return []
        allowed = float(p.max_rel_move)
        # every loss stays within its tolerance or sits at ln C from start to end, and one
        # of them is measured precisely enough for "did not move" to mean something (not
        # only per-step noise) or sits at ln C
        still = [t for t in moves if moves[t] <= allowed + tols[t]]
        # a warmup that never ended, with a loss still at its own first level: the run
        # trained at a fraction of its LR throughout (DESIGN: plateau, never left its
        # initial level), however a noisy minibatch loss wandered meanwhile
        warm = _warmup_unended(ctx, p)
        flat = (all(t in still or t in at_chance for t in moves)
                and (at_chance or min(tols[t] for t in still) <= allowed))
        stuck = _near_own_start(ctx, p) if warm is not None and not flat else None
        # the held-out loss never left the untrained level, no loss reached a low level
        held = _held_out_untrained(ctx, level0, at_chance, p)
        # (the class count unknown: the held-out loss at the level whose uniform guess the
        # val accuracy barely beats)
        guessed = (_held_out_at_guess(ctx, n_classes, p)
                   if held is None and stuck is None and not flat else None)
        held = held if held is not None else guessed
        if not flat and stuck is None and held is None:
            return []
        # flat from a first point that is a trained model's, not the model's start
        if stuck is None and held is None and (_started_trained(
                ctx, main, n_classes, float(p.first_acc_share), p.min_points,
                float(p.start_cover)) or _low_from_late_start(ctx, main, n_classes, p)):
            return []
        # unknown class count: the most generous chance level, two classes (a
        # majority-class accuracy of 0.6 on a binary set is not a "good" level)
        chance = (signals.chance_accuracy(n_classes) if n_classes
                  else float(p.unknown_chance))
        # held-out accuracy decides when logged: a train accuracy on minibatches can rise
        # to the majority-class rate while nothing that generalises is learned
        metrics = [c for c in (get_curve(ctx, Role.VAL_METRIC), get_curve(ctx, Role.TRAIN_METRIC))
                   if c is not None and len(c) >= 3 and bounded_metric(c)][:1]
        # every loss at ln C: the predicted distribution is still the untrained one, and
        # an accuracy that rises meanwhile is its argmax reaching the majority class
        all_at_chance = all(t in at_chance for t in moves)
        for c in metrics:
            # per-batch accuracies (1/32 quanta) wander: a gain must also beat their noise
            level_noise = noise(c) / np.sqrt(max(1.0, min(16.0, 0.05 * len(c))))
            # (under an unended warmup, the loss still at its first level: the same
            # argmax drifting while the distribution stays untrained)
            # (or the held-out loss still at the untrained level: argmax drift too)
            gain = max(float(p.max_metric_gain), 3.0 * level_noise)
            if (not all_at_chance and stuck is None and held is None
                    and total_progress(ctx, c) > gain):
                return []
            # flat at a good level from the start: a resumed or fine-tuned run, not a
            # stuck one
            if c.raw(end_level(c)) >= chance + float(p.good_metric) * (1.0 - chance):
                return []
        # the loss that decided: an unended warmup's, or the val loss at L0 where no
        # loss was flat
        judged = stuck or (held if not flat else None)
        if judged is not None:
            main = judged
        ev = PLT002.Evidence(
            name=_name(main), start=float(main.values[0]), end=end_level(main),
            max_rel_move=moves[main.tag] if judged is not None else max(moves.values()),
            moves=moves,
            noise_tolerance={t: v for t, v in tols.items() if v > 0} or None,
            at_chance_loss=(float(guessed.values[0]) if guessed is not None
                            else level0[0] if at_chance and level0 else None),
            untrained_from=(f"first {guessed.tag}, its accuracy at the uniform guess"
                            if guessed is not None
                            else level0[1] if at_chance and level0 else None),
            lr_end=warm[0] if stuck is not None and warm else None,
            lr_rise=warm[1] if stuck is not None and warm else None,
            last_step=int(main.steps[-1]), thresholds=p)
        return [Found(main.tag, int(main.steps[0]), ev)]

    def _few_rows(self, ctx: RuleContext, n_classes: int | None,
                  own: dict[Role, Curve | None],
                  p: PLT002.Params) -> list[Found[PLT002.Evidence]] | None:
        """A log whose every loss has fewer than ``min_points`` but at least ``min_rows``
        rows (a Keras log of two epochs) with the class count C known: stuck when every
        logged value of every loss sits within ``near_chance`` of ln C (and not above ln C
        / ``near_chance``) and the accuracy (val, else train) stays near chance too: its
        best row is within ``first_acc_share`` of the room above 1/C.  ln C is the
        untrained level whatever the log shows, so no noise estimate or run of points is
        needed to place the loss there: at every row the log has, the model's predictions
        are still the untrained distribution (DESIGN: flat from the start near its chance
        level).  None (not judged) otherwise, as for any log with too few rows; with the
        class count unknown the log's own untrained level is a first point that may
        already be a trained model's."""
        if not n_classes:
            return None
        losses = [c for c in own.values() if c is not None and len(c)]
        if (not losses or any(len(c) < int(p.min_rows) for c in losses)
                or any(float(np.min(c.values)) <= 0 for c in losses) or ends_nonfinite(ctx)):
            return None
        level0 = signals.chance_loss(n_classes)
        lo, hi = float(p.near_chance) * level0, level0 / float(p.near_chance)
        if not all(lo <= float(v) <= hi for c in losses for v in c.values):
            return None
        chance = signals.chance_accuracy(n_classes)
        for role in (Role.VAL_METRIC, Role.TRAIN_METRIC):
            acc = get_curve(ctx, role)
            if acc is None or len(acc) < int(p.min_rows) or not bounded_metric(acc):
                continue
            # near chance at every row: its best (values oriented lower-is-better) is
            # within first_acc_share of the room above chance (an accuracy that rose
            # there in the first epoch, before the first row, learned)
            best = acc.raw(float(np.min(acc.values)))
            if best >= chance + float(p.first_acc_share) * (1.0 - chance):
                return None
            break
        main = next(c for c in (own[Role.VAL_LOSS], own[Role.TRAIN_LOSS])
                    if c is not None and len(c))
        moves = {c.tag: max(float(c.values[0]) - float(np.min(c.values)),
                            abs(float(c.values[-1]) - float(c.values[0]))) / float(c.values[0])
                 for c in losses}
        ev = PLT002.Evidence(
            name=_name(main), start=float(main.values[0]), end=float(main.values[-1]),
            max_rel_move=moves[main.tag], moves=moves, at_chance_loss=level0,
            untrained_from=f"ln {n_classes}", last_step=int(main.steps[-1]), thresholds=p)
        return [Found(main.tag, int(main.steps[0]), ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        """Flat from the start: nothing was learned, so the level is poor."""
        from diagnose.recommend import plateau_advice

        ev = finding.detail
        if not isinstance(ev, PLT002.Evidence):
            return super().advise(ctx, finding)
        start = float(finding.step) if finding.step is not None else None
        return plateau_advice(ctx, start, finite_number(ev.end), True, from_start=True)

    def message(self, ev: PLT002.Evidence) -> str:
        noisy = (f"; within noise for {', '.join(sorted(ev.noise_tolerance))}"
                 if ev.noise_tolerance else "")
        if ev.at_chance_loss is not None:
            noisy += (f"; never left the untrained level {fmt(ev.at_chance_loss)} "
                      f"({ev.untrained_from})")
        if ev.lr_end is not None and ev.lr_rise is not None:
            noisy += (f"; the learning rate was still warming up at the end "
                      f"({fmt(ev.lr_rise)}x over the last half, to {fmt(ev.lr_end)}): "
                      f"a warmup that never ended")
        return (f"{ev.name} stays at its initial level ({fmt(ev.start)} -> {fmt(ev.end)}, "
                f"at most {pct(ev.max_rel_move)} of movement{noisy}) through step "
                f"{ev.last_step}")
