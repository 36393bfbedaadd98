"""Underfitting: the model does not learn the task at all, or barely.

* UND001 ``near_chance``: train and val both sit at chance level (accuracy ~ 1/C, or
  cross-entropy ~ ln C) at the end of the run, with C from the hyperparameters or
  inferred from the curves (:func:`diagnose.signals.infer_num_classes`).  The gap is
  small by construction (both splits are at chance), which separates it from
  memorisation (train perfect, val at chance: overfit).
* UND002 ``metric_never_learns``: a bounded task metric (mAP, F1, accuracy...) never
  leaves a poor level over many evaluations while the losses barely fall: the model is
  not learning the task, whatever its losses do.
* UND003 ``poor_fit``: underfitting above chance: the train accuracy learned something,
  then levelled off at a mediocre level with val as good as train (no generalisation
  gap relative to the error left) and the train loss still a large share of its start:
  the model cannot fit its own training data.  On a many-class task (more than
  ``max_classes``) a mediocre top-1 accuracy is the task's ambiguity: the loss must
  also hold ``many_poor_ratio`` of the untrained level; a val loss well above train
  (``gap_ratio``) is a generalisation gap.  A val accuracy identical at every
  evaluation beside a flat val loss is one class predicted throughout (the class prior:
  plateau only), unless the train loss logged the descent before validation began.
* UND004 ``poor_level``: the loss left its untrained level but ends at a large share of
  it (or, with few classes, at a poor accuracy; or unconfident: the val loss far above
  what calibrated predictions at the val accuracy pay), train about as poor as val.  The
  val loss must show it learned over its own evaluations; a loss-only log (read as a
  regression: its untrained level is the target's variance) is poor at a lower share
  of that level when its val loss shows the descent from it (and, where that level reads
  below ln 2, only if poor against ln 2 too: it may be a classifier logged after it
  learned); so is a run stopped while
  still falling steeply (too few steps: its end is not its level), or whose logged LR
  froze early (it trained only until then: a val loss flat from its first evaluation is
  the frozen model, not a floor; its end is where the freeze stopped it, poor at the
  still-falling share).  A high val accuracy does not clear a loss still
  holding most of its untrained level.  A train loss that blew up several times above
  its first value at the start has that first value as its untrained level (the
  blow-up is the optimiser's, not the untrained model's).  A log with no train series
  (only validation metrics) is judged on val alone, only with the class count known
  (ln C places the untrained level its first evaluation comes after) and only while
  still falling at a poor level (with few classes its val accuracy poor too): what val
  alone shows of "train ~ val" is that it is not a generalisation gap.

None judges a run whose loss ends NaN/inf (divergence explains that tail).  UND001 fires
on a loss that spiked far past chance and settled back at it (stuck at chance after a
too-large step, named in the message); a loss that once fell well below chance and came
back learned first, and is left to the divergence/collapse rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.detectors import RuleContext
from diagnose.detectors import params as P
from diagnose.detectors.progress import (
    Curve,
    accuracy_curve,
    accuracy_fractions,
    bounded_metric,
    calibrated_loss,
    early_level,
    end_level,
    ends_nonfinite,
    epoch_rows_from_zero,
    fall_in_first_stretch,
    first_point_cover,
    fmt,
    get_curve,
    in_start,
    level_at,
    level_before_log,
    pct,
    pinned_accuracy,
    smoothed,
    start_level,
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


def unfinished(ctx: RuleContext, min_share: float) -> bool:
    """The log is a checkpoint of a run still training that had done less than
    ``min_share`` of its planned steps: where the run ends (DESIGN.md's underfit stays
    poor, or is stopped at a poor level) is not in it."""
    reached = signals.plan_reached(ctx.run)
    return reached is not None and reached < min_share


def _accuracy(ctx: RuleContext, role: Role) -> Curve | None:
    """The split's accuracy curve (oriented), only when the metric is an accuracy."""
    return accuracy_curve(ctx, role, fraction_only=False)


def _train_loss_tail_gain(ctx: RuleContext) -> float | None:
    """How much the train loss still fell over the last quarter of the run (the advice
    lengthens an underfit run that is still learning); measured here, once."""
    from diagnose.advice.moves import tail_gain

    s = ctx.series(Role.TRAIN_LOSS)
    return tail_gain(s) if s is not None and len(s.finite) else None


def _underfit_advise(ctx: AdviceContext, reason: str, gain: float | None) -> list[Candidate]:
    from diagnose.recommend import underfit_advice

    return underfit_advice(ctx, reason, gain)


@rule
class UND001(Rule["UND001.Params", "UND001.Evidence"]):
    """Every split that is logged ends at chance level."""

    id = "UND001"
    detector = "near_chance"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        end_frac: float = param(P.SHARE)
        acc_tol: float = param(P.FRACTION)
        loss_tol: float = param(P.FRACTION)
        loss_floor: float = param(P.NON_NEGATIVE)
        diverged_factor: float = param(P.AT_LEAST_ONE)
        max_dip: float = param(P.FRACTION)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        #: the loss that spiked furthest past chance before settling there, and its peak
        spiked: str | None = internal()
        spike_peak: float | None = internal()
        num_classes: int = 0
        chance_accuracy: float = 0.0
        chance_loss: float = 0.0
        last_step: int = 0
        train_series: str | None = optional()
        train_end: float | None = optional()
        val_series: str | None = optional()
        val_end: float | None = optional()
        train_loss_start: float | None = optional()
        train_loss_end: float | None = optional()
        train_loss_rel_change_pct: float | None = optional()
        val_loss_start: float | None = optional()
        val_loss_end: float | None = optional()
        val_loss_rel_change_pct: float | None = optional()
        loss_peak_over_chance: float | None = None
        #: the train loss's gain over the last quarter (the advice lengthens a run
        #: that still learns)
        train_tail_gain: float | None = internal()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: UND001.Params) -> list[Found[UND001.Evidence]] | None:
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        if n_classes is None:
            return None
        chance_acc = signals.chance_accuracy(n_classes)
        chance_loss = signals.chance_loss(n_classes)
        frac = float(p.end_frac)
        min_points = p.min_points
        judged: dict[str, dict[str, Any]] = {}
        for split, acc_role, loss_role in (
            ("train", Role.TRAIN_METRIC, Role.TRAIN_LOSS),
            ("val", Role.VAL_METRIC, Role.VAL_LOSS),
        ):
            acc = _accuracy(ctx, acc_role)
            loss = get_curve(ctx, loss_role)
            if acc is not None and len(acc) >= min_points:
                end = acc.raw(end_level(acc, frac))
                limit = chance_acc + float(p.acc_tol) * (1.0 - chance_acc)
                near = end <= limit
                # a cross-entropy far below ln C means confident, learned predictions: the
                # accuracy only looks like 1/C by coincidence (C guessed from a first
                # value)
                if near and loss is not None and len(loss) >= min_points \
                        and "+" not in loss.tag:
                    near = end_level(loss, frac) >= float(p.loss_floor) * chance_loss
                judged[split] = {"by": acc.tag, "end": end, "near": near}
            elif loss is not None and len(loss) >= min_points and "+" not in loss.tag:
                end = end_level(loss, frac)
                limit = (1.0 - float(p.loss_tol)) * chance_loss
                judged[split] = {"by": loss.tag, "end": end, "near": end >= limit}
        if not judged:
            return None
        if ends_nonfinite(ctx) or not all(j["near"] for j in judged.values()):
            return []
        # Underfit means "never learned": a loss whose end level is well above where it
        # started (still rising: divergence), or that once fell far below chance and came
        # back (learned, then lost it: collapse), tells a different story.  A loss that
        # spiked far past chance and then settled back AT chance is stuck at chance: a
        # too-large step left the network there (the spikes go in the evidence and
        # message, so the advice can point at the learning rate rather than at capacity).
        blew_up: dict[str, float] = {}
        for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
            c = get_curve(ctx, role)
            if c is None or len(c) < 3 or "+" in c.tag:
                continue
            if end_level(c, frac) > start_level(c) + float(p.loss_tol) * chance_loss:
                return []
            if float(np.min(smoothed(ctx, c)[1])) < (1.0 - float(p.max_dip)) * chance_loss:
                return []
            peak = float(np.max(c.values))
            if peak >= float(p.diverged_factor) * chance_loss:
                blew_up[c.tag] = peak
        last = max(
            int(s.steps[-1]) for s in (ctx.series(r) for r in Role)
            if s is not None and len(s)
        )
        losses: dict[str, Any] = {}
        for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
            c = get_curve(ctx, role)
            if c is not None and len(c) >= 2:
                first = start_level(c)
                losses[f"{role.value}_start"] = first
                losses[f"{role.value}_end"] = end_level(c, frac)
                losses[f"{role.value}_rel_change_pct"] = (
                    100.0 * (end_level(c, frac) - first) / abs(first) if first else math.nan
                )
        spiked, spike_peak = (max(blew_up.items(), key=lambda kv: kv[1]) if blew_up
                              else (None, None))
        splits: dict[str, Any] = {f"{split}_{k}": j[v] for split, j in judged.items()
                                  for k, v in (("series", "by"), ("end", "end"))}
        ev = UND001.Evidence(
            spiked=spiked, spike_peak=spike_peak, num_classes=n_classes,
            chance_accuracy=chance_acc, chance_loss=chance_loss, last_step=last,
            **splits, **losses,
            loss_peak_over_chance=(max(blew_up.values()) / chance_loss) if blew_up else None,
            train_tail_gain=_train_loss_tail_gain(ctx), thresholds=p,
        )
        tag = next(iter(judged.values()))["by"] if "val" not in judged else judged["val"]["by"]
        return [Found(tag, last, ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import never_learned_advice, underfit_reason

        ev = finding.detail
        if not isinstance(ev, UND001.Evidence):
            return super().advise(ctx, finding)
        ends = [("val", finite_number(ev.val_end), ev.val_series),
                ("train", finite_number(ev.train_end), ev.train_series)]
        reason = underfit_reason(ends, finite_number(ev.chance_accuracy),
                                 finite_number(ev.chance_loss), "", None)
        # never left chance: the never-learned advice (LR into range, init, activation)
        return never_learned_advice(ctx, reason.replace("the model underfits",
                                                        "the run never left chance"))

    def message(self, ev: UND001.Evidence) -> str:
        parts = [f"{split} {by} ends at {fmt(end)}"
                 for split, by, end in (("train", ev.train_series, ev.train_end),
                                        ("val", ev.val_series, ev.val_end))
                 if by is not None and end is not None]
        n = ev.num_classes
        msg = (f"{' and '.join(parts)} by step {ev.last_step}, chance level for {n} classes "
               f"(accuracy {fmt(ev.chance_accuracy)}, loss ln {n} = {fmt(ev.chance_loss)})")
        if ev.spiked is not None and ev.spike_peak is not None:
            msg += (f", after {ev.spiked} spiked to {fmt(ev.spike_peak)} "
                    f"({fmt(ev.spike_peak / ev.chance_loss)}x ln {n}): a step too large for "
                    f"the model likely left it there")
        return msg


@rule
class UND002(Rule["UND002.Params", "UND002.Evidence"]):
    """A bounded val metric never exceeds ``poor_level`` while losses barely fall."""

    id = "UND002"
    detector = "metric_never_learns"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        poor_level: float = param(P.FRACTION)
        max_loss_fall: float = param(P.FRACTION)
        min_loss_fall: float = param(P.FRACTION)
        min_plan_share: float = param(P.SHARE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        metric: str = internal("")
        fall: float | None = internal()
        val_metric: str = ""
        best: float = 0.0
        points: int = 0
        last_step: int = 0
        train_loss: str | None = optional()
        train_loss_start: float | None = optional()
        train_loss_end: float | None = optional()
        train_loss_fall_pct: float | None = optional()
        #: the train loss's gain over the last quarter (the advice lengthens a run
        #: that still learns)
        train_tail_gain: float | None = internal()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: UND002.Params) -> list[Found[UND002.Evidence]] | None:
        if unfinished(ctx, float(p.min_plan_share)):
            return None
        vm = get_curve(ctx, Role.VAL_METRIC)
        if vm is None or not bounded_metric(vm):
            return None
        if len(vm) < p.min_points:
            return None
        if ends_nonfinite(ctx):
            return []
        best = vm.raw(float(np.min(vm.values)))
        if best > float(p.poor_level):
            return []
        loss: dict[str, Any] = {}
        train = get_curve(ctx, Role.TRAIN_LOSS)
        if train is not None and len(train) >= 3 and float(np.min(train.values)) > 0:
            first, last = start_level(train), end_level(train)
            fall = 1.0 - last / first
            if fall > float(p.max_loss_fall):
                return []
            # a loss that never left its initial level either: the run never learned
            # anything (DESIGN.md: plateau only, PLT002/UND001), not "learns but stays poor"
            if fall < float(p.min_loss_fall):
                return []
            loss = {"fall": fall, "train_loss": train.tag, "train_loss_start": first,
                    "train_loss_end": last, "train_loss_fall_pct": 100.0 * fall}
        ev = UND002.Evidence(metric=vm.series.metric, val_metric=vm.tag, best=best,
                             points=len(vm), last_step=int(vm.steps[-1]), **loss,
                             train_tail_gain=_train_loss_tail_gain(ctx), thresholds=p)
        return [Found(vm.tag, int(vm.steps[-1]), ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import underfit_reason

        ev = finding.detail
        if not isinstance(ev, UND002.Evidence):
            return super().advise(ctx, finding)
        name = ev.val_metric or finding.metric or "the val metric"
        reason = underfit_reason([], None, None, name, finite_number(ev.best))
        return _underfit_advise(ctx, reason, ev.train_tail_gain)

    def message(self, ev: UND002.Evidence) -> str:
        loss_note = (f" while train loss fell only {pct(ev.fall)}" if ev.fall is not None
                     else "")
        return (f"val {ev.metric} never exceeds {fmt(ev.best)} over {ev.points} evaluations "
                f"up to step {ev.last_step}{loss_note}")


@rule
class UND003(Rule["UND003.Params", "UND003.Evidence"]):
    """The model cannot fit its own training data and has stopped trying.

    Train accuracy learned something, then flattened at a mediocre level
    (``max_train_acc``), with val about as good (no generalisation gap to speak of,
    relative to the error left) and, when a train loss is logged, that loss still a large
    share of where it started.  Healthy converged runs fit their training data (train
    accuracy near 1) or show a clear train/val gap; a run whose val accuracy is well
    above its train accuracy is measured under dropout/augmentation, not underfit.
    """

    id = "UND003"
    detector = "poor_fit"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        end_frac: float = param(P.SHARE)
        max_train_acc: float = param(P.FRACTION)
        min_acc_gain: float = param(P.FRACTION)
        tail_frac: float = param(P.SHARE)
        flat_share: float = param(P.NON_NEGATIVE)
        max_gap_share: float = param(P.NON_NEGATIVE)
        max_val_lead_share: float = param(P.NON_NEGATIVE)
        min_loss_ratio: float = param(P.NON_NEGATIVE)
        min_loss_fall: float = param(P.FRACTION)
        max_classes: int = param(P.COUNT)
        many_poor_ratio: float = param(P.FRACTION)
        gap_ratio: float = param(P.FRACTION)
        min_val_fall: float = param(P.FRACTION)
        min_val_points: int = param(P.COUNT)
        min_plan_share: float = param(P.SHARE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        train_series: str = ""
        val_series: str = ""
        train_acc_end: float = 0.0
        val_acc_end: float = 0.0
        train_acc_first: float = 0.0
        train_acc_gain: float = 0.0
        tail_gain: float = 0.0
        gap: float = 0.0
        gap_share_of_error: float = 0.0
        num_classes: int | None = None
        last_step: int = 0
        train_loss: str = ""
        train_loss_start: float = 0.0
        train_loss_end: float = 0.0
        train_loss_end_over_start: float = 0.0
        #: the train loss's gain over the last quarter (the advice lengthens a run
        #: that still learns)
        train_tail_gain: float | None = internal()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: UND003.Params) -> list[Found[UND003.Evidence]] | None:
        if unfinished(ctx, float(p.min_plan_share)):
            return None
        ta = _accuracy(ctx, Role.TRAIN_METRIC)
        if ta is None or len(ta) < p.min_points or ta.span <= 0:
            return None
        va = _accuracy(ctx, Role.VAL_METRIC)
        if va is None or len(va) < 3:
            return None
        if ends_nonfinite(ctx):
            return []
        frac = float(p.end_frac)
        t_end, v_end = ta.raw(end_level(ta, frac)), va.raw(end_level(va, frac))
        t_first = ta.raw(float(np.max(ta.values[:3])))  # oriented: max = worst of first 3
        err = 1.0 - t_end
        if t_end > float(p.max_train_acc) or err <= 0:
            return []
        # learned something: UND001 speaks for a model that never left chance
        gain = t_end - t_first
        if gain < float(p.min_acc_gain):
            return []
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        if n_classes is not None:
            chance = signals.chance_accuracy(n_classes)
            if t_end <= chance + float(p.min_acc_gain) * (1.0 - chance):
                return []
        # flat tail: the last tail_frac of steps adds at most flat_share of what was gained
        t0 = float(ta.steps[-1]) - float(p.tail_frac) * ta.span
        inside = ta.steps >= t0
        tr = signals.robust_trend(ta.steps[inside], ta.values[inside])
        tail_gain = max(-float(tr.change), 0.0) if np.isfinite(tr.change) else 0.0
        if tail_gain > float(p.flat_share) * gain:
            return []
        # small gap, both ways, as a share of the training error left
        gap = t_end - v_end
        if gap > float(p.max_gap_share) * err or -gap > float(p.max_val_lead_share) * err:
            return []
        tl = get_curve(ctx, Role.TRAIN_LOSS)
        if tl is None or len(tl) < 3 or "+" in tl.tag or float(np.min(tl.values)) <= 0:
            return []  # the loss is half the evidence: an accuracy alone is not judged
        first = early_level(tl)
        l_end = end_level(tl, frac)
        best = float(np.min(smoothed(ctx, tl)[1]))
        progress = max(first - best, 0.0)
        # a loss that rose again from its best is diverging, not stuck
        if l_end - best > float(p.flat_share) * max(progress, best):
            return []
        # every misclassified example costs a cross-entropy at least ln 2 (its true class
        # has p <= 1/2), so CE >= (1 - accuracy) ln 2; a loss below that is not the
        # cross-entropy of this accuracy (another loss, or an accuracy measured
        # differently): no verdict
        if l_end < err * math.log(2.0):
            return []
        ratio = l_end / first
        if ratio < float(p.min_loss_ratio):
            return []
        # the loss must have learned too: an accuracy creeping up while the loss never
        # leaves its untrained level is a run that never learned (DESIGN.md: plateau
        # only, not underfit); read on the val loss (:func:`best_loss`) when the train
        # loss is logged more often than val: a per-step train curve dips below any level
        # once by minibatch noise
        ref = untrained_level(ctx)
        vl = get_curve(ctx, Role.VAL_LOSS)
        dense = vl is not None and len(tl) > len(vl)
        if ref is not None and (best > (1.0 - float(p.min_loss_fall)) * ref[0] or (
                dense and not left_untrained_level(ctx, ref[0], float(p.min_loss_fall)))):
            return []
        if not below_chance(ctx, best, float(p.min_loss_fall)):
            return []
        # (fell from an inflated start only to the chance level and stayed: PLT001's
        # chance-level reading, the one UND004 asks too; the run never left its initial
        # level, plateau only, DESIGN.md)
        from diagnose.detectors.plateau import never_left_chance

        if never_left_chance(ctx):
            return []
        # ... and the held-out predictions changed: a val accuracy identical at every
        # evaluation beside a flat val loss is one class predicted throughout (plateau
        # only, DESIGN.md)
        if ref is not None and constant_guess(ctx, ref[0], p.min_val_points,
                                              float(p.min_val_fall), float(p.min_loss_fall)):
            return []
        v_loss = (end_level(vl, frac) if vl is not None and len(vl) >= 2 and "+" not in vl.tag
                  else None)
        # train ~ val on the losses too: a val loss well above train is a generalisation
        # gap (memorised label noise), not a model that cannot fit its data
        if v_loss is not None and v_loss > 0 and l_end < float(p.gap_ratio) * v_loss:
            return []
        # with many classes a mediocre top-1 accuracy is the task's own ambiguity: the
        # better split's loss must also still hold a large share of the untrained level
        if ref is not None and many_classes(ctx, ref[0], p.max_classes):
            level = min(l_end, v_loss) if v_loss is not None else l_end
            if level < float(p.many_poor_ratio) * ref[0]:
                return []
        ev = UND003.Evidence(
            train_series=ta.tag, val_series=va.tag, train_acc_end=t_end, val_acc_end=v_end,
            train_acc_first=t_first, train_acc_gain=gain, tail_gain=tail_gain, gap=gap,
            gap_share_of_error=gap / err, num_classes=n_classes,
            last_step=int(ta.steps[-1]), train_loss=tl.tag, train_loss_start=first,
            train_loss_end=l_end, train_loss_end_over_start=ratio,
            train_tail_gain=_train_loss_tail_gain(ctx), thresholds=p,
        )
        return [Found(ta.tag, int(ta.steps[-1]), ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        ev = finding.detail
        if not isinstance(ev, UND003.Evidence):
            return super().advise(ctx, finding)
        return _underfit_advise(ctx, "the model underfits", ev.train_tail_gain)

    def message(self, ev: UND003.Evidence) -> str:
        return (
            f"train accuracy levels off at {fmt(ev.train_acc_end)} (val "
            f"{fmt(ev.val_acc_end)}) by step {ev.last_step}: the model cannot fit its own "
            f"training data and val is as good as train, so capacity or constraints, not "
            f"generalisation, limit it; train loss still "
            f"{pct(ev.train_loss_end_over_start)} of its start "
            f"({fmt(ev.train_loss_start)} -> {fmt(ev.train_loss_end)})"
        )


#: The cross-entropy of an untrained classifier is ln C >= ln 2 (C >= 2 classes).
CLASSIFIER_FLOOR = math.log(2.0)
#: where an untrained level raised to :data:`CLASSIFIER_FLOOR` says it came from: the
#: log's own values were all below it (a log that starts after the model learned)
FLOOR_HOW = "ln 2, the least untrained cross-entropy"


def untrained_level(ctx: RuleContext) -> tuple[float, str] | None:
    """The loss of the untrained model, from what the log shows, and where it came from.

    The largest of the train loss's first value, its level over the first tenth of the
    run and the val loss's first value (a log written after the first epoch already
    starts below the untrained loss, so the largest early value is the closest), and ln C
    when the class count is known (the cross-entropy of a uniform guess).  None without a
    positive train loss (a loss that goes negative has no scale to measure "poor" on).
    With the class count unknown and the train loss's first point covering more than
    UND004's ``min_first_cover`` of the run (a Keras row averaging the first of a few
    epochs, a first record a third of the way in: :func:`progress.first_point_cover`),
    its first values are a model that already learned: the level is then the train loss
    carried back to the start along its first two points, when higher
    (:func:`progress.level_before_log`, a floor under the untrained level), or, where
    the first val evaluation closes the stretch that first point covers and the log
    shows learning from it (its best loss at most 1 - UND004's ``min_fall`` of it), the
    first point plus what the stretch's second half learned, when higher still
    (:func:`progress.fall_in_first_stretch`: a fast learner did most of its learning
    inside the first epoch, which the later, slower rows understate).
    """

    def compute() -> tuple[float, str] | None:
        tl = get_curve(ctx, Role.TRAIN_LOSS)
        if tl is None or len(tl) < 2 or "+" in tl.tag or float(np.min(tl.values)) <= 0:
            return None
        ref, how = early_level(tl), f"first {tl.tag}"
        before = (level_before_log(ctx, tl, float(ctx.thresholds_of("UND004")["min_first_cover"]))
                  if signals.infer_num_classes(ctx.run, ctx.roles) is None else None)
        vl = get_curve(ctx, Role.VAL_LOSS)
        # (the stretch's own fall, where the log shows learning from its first point: a
        # curve that never left that point shows no learning before it either)
        t = ctx.thresholds_of("UND004")
        best = best_loss(ctx)
        if before is not None and vl is not None and "+" not in vl.tag and best is not None \
                and best[0] <= (1.0 - float(t["min_fall"])) * float(tl.values[0]):
            fall = fall_in_first_stretch(tl, vl)
            if fall is not None:
                before = max(before, float(tl.values[0]) + fall)
        if before is not None and before > ref:
            ref, how = before, f"{tl.tag} carried back to the start"
        if vl is not None and len(vl) and "+" not in vl.tag and float(vl.values[0]) > ref:
            ref, how = float(vl.values[0]), f"first {vl.tag}"
        ref, how = at_least_uniform_guess(ctx, ref, how)
        return (ref, how) if ref > 0 else None

    return ctx.cached(("underfit_untrained_level",), compute)


def at_least_uniform_guess(ctx: RuleContext, level: float, how: str) -> tuple[float, str]:
    """An untrained level read from the log, raised to ln C with the class count known
    (the cross-entropy of a uniform guess), else to ln 2 on a run that logs an accuracy:
    a classifier starts at ln C >= ln 2 however many classes, so a first loss below that
    is a fine-tune or a log written after training began, not the untrained level."""
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if n_classes is not None and signals.chance_loss(n_classes) > level:
        return signals.chance_loss(n_classes), f"ln {n_classes}"
    if n_classes is None and level < CLASSIFIER_FLOOR and any(
            _accuracy(ctx, r) is not None for r in (Role.TRAIN_METRIC, Role.VAL_METRIC)):
        return CLASSIFIER_FLOOR, FLOOR_HOW
    return level, how


def before_early_blowup(ctx: RuleContext, tl: Curve,
                        factor: float) -> tuple[float, str] | None:
    """The untrained level read before an early blow-up: the train loss's first value
    (:func:`at_least_uniform_guess`, as :func:`untrained_level`), when the loss rose
    ``factor`` times above it within the start window (the first tenth of the run,
    :func:`progress.start_level`'s); else None.

    :func:`untrained_level` reads the largest early value because a log written after
    the first epoch starts below the untrained loss; a loss that rose several times
    above its first value right after it (DESIGN.md: about 3x is a blow-up) was blown up
    by the optimiser, and the largest early value (or a val evaluation during it) is
    that blow-up, not the model's untrained level.
    """
    first = float(tl.values[0])
    head = tl.values[in_start(tl)]
    if first <= 0 or float(np.max(head)) < factor * first:
        return None
    peak = float(np.max(head))
    return at_least_uniform_guess(ctx, first,
                                  f"first {tl.tag}, before it blew up {fmt(peak / first)}x")


def thrown_back(ctx: RuleContext, l0: float, min_fall: float, back_share: float,
                factor: float, min_evals: int = 3) -> tuple[float, float] | None:
    """(train end, val end) when the run learned and was thrown back to its start: its
    loss left the untrained level ``l0`` (:func:`left_untrained_level`, ``min_fall``), and
    the train and val losses (each logged ``min_evals`` times: the held-out curve must
    show both the learning and the return, a per-step minibatch dip is not learning) end at
    ``back_share`` of ``l0`` or above, yet below ``factor`` x ``l0`` (DESIGN.md: about 3x
    above the start is a blow-up, divergence's business); else None.

    A mid-run LR jump that both losses felt restarts the run: the stretch after it is a
    run of its own, at the untrained level again and never leaving it (plateau), while the
    run as a whole learned and ends poor (underfit): DESIGN.md, a run can hold two states
    when each has its own evidence.  Its end is not where its learning took it, so the
    checks of a run that settled (a rise from its best, the gap, an accuracy gained since
    the start) do not read it.  The one owner of this reading for UND004 and PLT001.
    Not where the divergence rule DIV005 reads the same return as a loss that was fine
    and gave back all its progress: divergence explains it (DESIGN.md precedence)."""
    if l0 <= 0 or not left_untrained_level(ctx, l0, min_fall) or gave_back_all(ctx):
        return None
    ends: list[float] = []
    for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
        c = get_curve(ctx, role)
        if c is None or len(c) < min_evals or "+" in c.tag:
            return None
        end = end_level(c)
        if not back_share * l0 <= end < factor * l0:
            return None
        ends.append(end)
    return ends[0], ends[1]


def gave_back_all(ctx: RuleContext) -> bool:
    """Whether DIV005, with its configured thresholds, finds the loss settled far above
    or back at the untrained level after being fine (its verdict, asked, not copied)."""
    from diagnose.detectors.divergence import DIV005

    def compute() -> bool:
        p = DIV005.Params.build(ctx.thresholds_of("DIV005"))
        return bool(DIV005().detect(ctx, p))

    return ctx.cached(("underfit_gave_back_all",), compute)


def thrown_back_by_und(ctx: RuleContext, l0: float) -> tuple[float, float] | None:
    """:func:`thrown_back` with UND004's configured thresholds (the plateau rule's half of
    the same reading)."""
    t = ctx.thresholds_of("UND004")
    return thrown_back(ctx, l0, float(t["min_fall"]), float(t["back_share"]),
                       float(t["blowup_factor"]))


def below_chance(ctx: RuleContext, best: float, min_fall: float) -> bool:
    """Whether the loss's best level left the chance level ln C by ``min_fall`` of it
    (True when the class count is unknown: nothing to compare with).

    A loss that falls from a bad initialisation down to ln C has only reached the
    uniform guess: it never left the untrained model's level (DESIGN.md: plateau, not
    underfit), however far it fell from its first value.
    """
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    return n_classes is None or best <= (1.0 - min_fall) * signals.chance_loss(n_classes)


def many_classes(ctx: RuleContext, l0: float, max_classes: int) -> bool:
    """Whether the run is a classifier with more than ``max_classes`` classes: the class
    count when known, else an untrained level above ln ``max_classes`` on a run that logs
    an accuracy (an untrained classifier's loss is ln C or more, so C <= exp(L0) only
    bounds it; a loss-only log is not known to be a classifier).

    The cross-entropy floor of such a task (the entropy of the next character of text,
    fine-grained classes that look alike) is a large share of ln C, as its top-1 accuracy
    is bounded by the same ambiguity: a loss at half its untrained level can be the floor.
    """
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if n_classes is not None:
        return n_classes > max_classes
    return l0 > math.log(max_classes) and any(
        _accuracy(ctx, r) is not None for r in (Role.TRAIN_METRIC, Role.VAL_METRIC))


def val_own_fall(ctx: RuleContext, min_points: int) -> float | None:
    """How far the val loss fell over its own evaluations: 1 - its end level over its
    early level (:func:`progress.early_level`); None with fewer than ``min_points``
    positive evaluations (nothing to read).

    "Learns" must show on the curve whose level is judged: a val loss flat from its first
    evaluation converged before it (a run at its data's floor, a fine-tune that starts
    low) or never left its start (plateau); the fall of the train loss from its own first
    value down to a val loss measured without dropout is not learning.
    """
    vl = get_curve(ctx, Role.VAL_LOSS)
    if vl is None or len(vl) < min_points or "+" in vl.tag or float(np.min(vl.values)) <= 0:
        return None
    return 1.0 - end_level(vl) / early_level(vl)


def val_left_behind(ctx: RuleContext, min_fall: float) -> bool:
    """Whether a val loss evaluated exactly twice fell less than ``min_fall`` between its
    evaluations while the train loss fell at least ``min_fall`` from its level at the
    first evaluation (:func:`progress.level_at`) to its end level.

    Too few evaluations for :func:`val_own_fall`, yet they say the same: the held-out
    loss had settled by its first evaluation (a fine-tune that starts low, a token loss
    at its text's entropy), and the train loss's fall past it is the model fitting its
    own data, not a model that cannot (DESIGN.md's underfit: train ~ val, both poor).
    The train loss's first value is then no untrained level to measure "poor" against:
    on a loss-only log nothing else places the floor."""
    tl, vl = get_curve(ctx, Role.TRAIN_LOSS), get_curve(ctx, Role.VAL_LOSS)
    if tl is None or vl is None or len(vl) != 2 or "+" in vl.tag or "+" in tl.tag \
            or float(np.min(vl.values)) <= 0:
        return False
    v_fall = 1.0 - float(vl.values[1]) / float(vl.values[0])
    at_first = level_at(tl, float(vl.steps[0]))
    if at_first <= 0 or float(tl.steps[-1]) <= float(vl.steps[0]):
        return False
    return v_fall < min_fall and 1.0 - end_level(tl) / at_first >= min_fall


def fall_before_val(ctx: RuleContext, l0: float, min_points: int) -> float | None:
    """How far the train loss fell, as a share of the untrained level ``l0``, before the
    val loss's first evaluation: the median of its first ``min_points`` values minus the
    median of its last ``min_points`` values before that evaluation (at least twice
    ``min_points`` of them; else None).

    A run validated after its learning (per-step train, val every epoch or rarer) shows
    the descent on the train curve only: its val loss is flat from its first evaluation
    because the learning came before it, not because the run never learned.
    """
    tl, vl = get_curve(ctx, Role.TRAIN_LOSS), get_curve(ctx, Role.VAL_LOSS)
    if tl is None or vl is None or not len(vl) or "+" in tl.tag or l0 <= 0:
        return None
    before = tl.values[tl.steps < float(vl.steps[0])]
    if len(before) < 2 * min_points:
        return None
    # medians of the first and the last min_points train values before the evaluation:
    # a single minibatch (the first logged value) cannot make a descent
    return float(np.median(before[:min_points]) - np.median(before[-min_points:])) / l0


def val_learned(ctx: RuleContext, l0: float, min_points: int, min_val_fall: float,
                min_fall: float) -> bool:
    """Whether the run learned on what its val loss shows (the one owner of this half of
    "learns" for the underfit rules, class count unknown): the val loss fell
    ``min_val_fall`` over its own evaluations (:func:`val_own_fall`; fewer than
    ``min_points`` evaluations: nothing to read), or the train curve shows the descent
    from ``l0`` by ``min_fall`` before the first evaluation (:func:`fall_before_val`).

    A val loss flat from its first evaluation with no earlier train points converged
    before the log began (a run at its data's floor, a fine-tune that starts low and
    stays flat) or never left its start (a model predicting the class prior at every
    epoch: plateau only, DESIGN.md)."""
    v_fall = val_own_fall(ctx, min_points)
    if v_fall is None or v_fall >= min_val_fall:
        return True
    before = fall_before_val(ctx, l0, min_points)
    return before is not None and before >= min_fall


def constant_guess(ctx: RuleContext, l0: float, min_points: int, min_val_fall: float,
                   min_fall: float) -> bool:
    """Whether the held-out predictions never changed: the val accuracy is identical at
    every one of at least ``min_points`` evaluations (:func:`pinned_accuracy`, the owner
    the plateau rule asks too) and the val loss did not learn on what it shows
    (:func:`val_learned`: this rule's own half).

    A model predicting one class for every input (the class prior: the majority rate of
    an imbalanced set) scores that class's share at every epoch whatever its weights do;
    with its val loss flat from the first evaluation it never left the level it was first
    seen at: plateau only (DESIGN.md), however far the train loss fell to the prior's
    entropy.  A character model at its unigram level also repeats one symbol, but its val
    loss, or its train loss before validation began, shows the descent: it learned the
    prior (underfit)."""
    va = _accuracy(ctx, Role.VAL_METRIC)
    if va is None or pinned_accuracy(va, min_points) is None:
        return False
    return not val_learned(ctx, l0, min_points, min_val_fall, min_fall)


def late_share(ctx: RuleContext, l0: float, min_val_points: int,
               share: float = 0.25) -> float | None:
    """The share of the run's progress (untrained level ``l0`` down to the end level)
    made over its last ``share`` of steps, read on the val loss when it has at least
    ``min_val_points`` evaluations (per-step train noise dips anywhere), else on the
    train loss; both ends are medians (a spike cannot make a curve look still falling).
    None without a curve of 3 points or with no progress."""
    for role, need in ((Role.VAL_LOSS, min_val_points), (Role.TRAIN_LOSS, 3)):
        c = get_curve(ctx, role)
        if c is None or len(c) < need or "+" in c.tag or c.span <= 0:
            continue
        end = end_level(c)
        if l0 - end <= 0:
            return None
        return (level_at(c, float(c.steps[0]) + (1.0 - share) * c.span) - end) / (l0 - end)
    return None


def lr_frozen_early(ctx: RuleContext, low_share: float, by: float) -> tuple[float, int] | None:
    """The step from which the logged LR stayed below ``low_share`` of its peak
    (:func:`signals.lr_frozen_from`) and how many train loss values were logged before
    it, when that came within the first ``by`` of the run; else None.

    Such a run trained only over that early stretch (a step schedule sized in epochs but
    stepped per batch, a milestone set too early): its later curves are the frozen model,
    flat from the first evaluation because the weights stopped moving, not because the
    model reached its data's floor.  Train values logged before the freeze show the
    descent from the untrained level (the log's first values are that level).
    """
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    at = signals.lr_frozen_from(ctx.series(Role.LR), low_share)
    if tl is None or at is None or tl.span <= 0 or at - float(tl.steps[0]) > by * tl.span:
        return None
    return at, int(np.sum(tl.steps < at))


def val_accuracy_gain(ctx: RuleContext, l0: float, min_points: int) -> float | None:
    """How far the val accuracy rose over its own evaluations, as a share of the room
    above where it began: (end - start) / (1 - start), end the median of its last fifth
    (:func:`progress.end_level`), start the worse of its first two values but at least
    chance (1/C with the class count known, else exp(-l0): C <= exp(L0) bounds it, so
    1/C >= exp(-L0)); None without ``min_points`` evaluations of a val accuracy.

    A first evaluation below chance is noise around it, not room the model gained; a
    first evaluation above chance (learned before it) only makes the share smaller.
    """
    va = _accuracy(ctx, Role.VAL_METRIC)
    if va is None or len(va) < min_points:
        return None
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    chance = (signals.chance_accuracy(n_classes) if n_classes is not None
              else math.exp(-min(l0, 20.0)))
    start = max(float(min(accuracy_fractions(va, va.values[:2]))), chance)
    end = float(accuracy_fractions(va, np.array([end_level(va, 0.2)]))[0])
    return (end - start) / (1.0 - start) if start < 1.0 else None


def best_loss(ctx: RuleContext, min_val_points: int = 3) -> tuple[float, str] | None:
    """The lowest smoothed loss of the run: read on the val loss when it has at least
    ``min_val_points`` evaluations (a per-step train curve dips below any level once by
    minibatch noise), else on the train loss."""
    for role, need in ((Role.VAL_LOSS, min_val_points), (Role.TRAIN_LOSS, 2)):
        c = get_curve(ctx, role)
        if c is not None and len(c) >= need and "+" not in c.tag:
            return float(np.min(smoothed(ctx, c)[1])), c.tag
    return None


def left_untrained_level(ctx: RuleContext, l0: float, min_fall: float) -> bool:
    """Whether the loss left its untrained level ``l0``: the one owner of this half of
    "learns" for the underfit rules.

    The run's lowest smoothed loss (:func:`best_loss`: val when evaluated at least 3
    times, else train, whose per-step noise dips below any level once) is at most
    ``1 - min_fall`` of ``l0`` (else: plateau from the start), and of the chance level
    ln C when the class count is known (a fall from a bad initialisation to the uniform
    guess learned nothing).
    """
    best = best_loss(ctx)
    return best is not None and best[0] <= (1.0 - min_fall) * l0 \
        and below_chance(ctx, best[0], min_fall)


def levels_read(ctx: RuleContext, tl: Curve, min_cover: float) -> int:
    """How many levels of the train loss the rule reads: its logged points, and its start
    too when the first point covers more than ``min_cover`` of the run
    (:func:`progress.first_point_cover`).

    A point at the model's start is the untrained level, one of the logged points; a
    first point that already covers a share of the run (a Keras row, the mean of its
    first epoch) is not, and the untrained level is read apart from it (ln C, or the line
    through the first two points carried back to the start,
    :func:`progress.level_before_log`).  Two per-epoch rows are then three levels, the
    start and two epochs of learning, as a per-step log of the same run shows them: the
    cadence thins the points, not the run (issue 9, round 24)."""
    start = 1 if len(tl) >= 2 and first_point_cover(ctx, tl) > min_cover else 0
    return len(tl) + start


def train_end_level(ctx: RuleContext, tl: Curve, frac: float) -> float:
    """The train loss's end level (:func:`progress.end_level`, the median of its last
    ``frac`` of steps), read at the end of the run where its points are per-epoch means
    (:func:`progress.epoch_rows_from_zero`: a Keras row).

    A mean sits at the centre of the epoch it covers, while the run (and the val loss
    written on the same row) ends half an epoch later: a curve still falling fell on over
    that half.  The line through the last two rows is carried forward half a row (a fall
    only; the mirror of :func:`progress.level_before_log` at the start), so the train end
    compared with the val end and with the untrained level is the run's end, as a per-step
    log of the same run shows it.  The line's slope is the median of the pairwise slopes
    of the last rows (at least three, or the last quarter): one noisy epoch mean does not
    make a fall; and no more than the last row's own fall (a curve falls fastest first)."""
    end = end_level(tl, frac)
    if len(tl) < 2 or not epoch_rows_from_zero(ctx, tl):
        return end
    # the slope over the last rows (at least 3, else the last quarter), the median of
    # their pairwise slopes (Theil-Sen: one noisy epoch mean cannot make the fall)
    k = max(3, math.ceil(0.25 * len(tl)))
    s, v = tl.steps[-k:], tl.values[-k:]
    i, j = np.triu_indices(len(v), 1)
    slope = float(np.median((v[j] - v[i]) / (s[j] - s[i])))
    row = float(np.median(np.diff(s)))
    # (no more than the last row's own fall: a curve falls fastest first, so its last
    # half row fell no more than the row before it; a slope read on a recovery from a
    # spike, or a last row that rose, carries nothing past what the rows show)
    last = max(float(tl.values[-2]) - float(tl.values[-1]), 0.0)
    return end - 0.5 * min(row * max(-slope, 0.0), last)


def val_fell_between(ctx: RuleContext, min_fall: float) -> bool:
    """Whether the val loss, evaluated at least twice, ends at least ``min_fall`` below its
    first evaluation (last over first): what a log of a few per-epoch rows shows of the
    run learning on held-out data, where :func:`val_own_fall` needs more evaluations."""
    vl = get_curve(ctx, Role.VAL_LOSS)
    if vl is None or len(vl) < 2 or "+" in vl.tag or float(np.min(vl.values)) <= 0:
        return False
    return 1.0 - float(vl.values[-1]) / float(vl.values[0]) >= min_fall


@rule
class UND004(Rule["UND004.Params", "UND004.Evidence"]):
    """The model learned but ends at a poor loss, with val about as good as train.

    DESIGN.md's underfit: the loss left its untrained level (it learned: plateau from the
    start is not this), but the better of the train and val end levels is still a large
    share of that untrained level, train is not far below val (no generalisation gap: the
    model cannot fit its own data), the loss did not rise again from its best
    (divergence), and a logged accuracy is not near perfect.  It fires whether the run is
    still falling (stopped too early at a poor level) or has converged there (capacity,
    regularisation): the evidence says which, and the advice follows.
    """

    id = "UND004"
    detector = "poor_level"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        end_frac: float = param(P.SHARE)
        min_fall: float = param(P.FRACTION)
        poor_ratio: float = param(P.FRACTION)
        gap_ratio: float = param(P.FRACTION)
        falling_gap_ratio: float = param(P.FRACTION)
        max_accuracy: float = param(P.FRACTION)
        poor_accuracy: float = param(P.FRACTION)
        acc_max_classes: int = param(P.COUNT)
        acc_min_loss_ratio: float = param(P.FRACTION)
        unconfident_min_loss_ratio: float = param(P.FRACTION)
        min_acc_gain: float = param(P.FRACTION)
        rise_share: float = param(P.NON_NEGATIVE)
        min_val_fall: float = param(P.FRACTION)
        min_val_points: int = param(P.COUNT)
        many_poor_ratio: float = param(P.FRACTION)
        unconfident_ratio: float = param(P.AT_LEAST_ONE)
        settled_unconfident_ratio: float = param(P.AT_LEAST_ONE)
        regression_poor_ratio: float = param(P.FRACTION)
        regression_min_val_fall: float = param(P.FRACTION)
        falling_share: float = param(P.SHARE)
        falling_poor_ratio: float = param(P.FRACTION)
        high_acc_poor_ratio: float = param(P.FRACTION)
        frozen_lr_share: float = param(P.SHARE)
        frozen_by: float = param(P.SHARE)
        blowup_factor: float = param(P.AT_LEAST_ONE)
        back_share: float = param(P.FRACTION)
        acc_learned_share: float = param(P.SHARE)
        min_first_cover: float = param(P.FRACTION)
        min_plan_share: float = param(P.SHARE)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        #: absent on a log with no train series (judged on val alone)
        train_loss: str | None = optional()
        train_end: float | None = optional()
        val_loss: str | None = optional()
        val_end: float | None = optional()
        untrained_level: float = 0.0
        untrained_from: str = ""
        best: float = 0.0
        best_on: str = ""
        end_over_untrained: float = 0.0
        poor_by: str = ""
        train_over_val: float | None = optional()
        accuracy: str | None = optional()
        accuracy_end: float | None = optional()
        accuracy_above_chance: float | None = optional()
        accuracy_gain: float | None = optional()
        #: a high accuracy with a loss this many times the calibrated loss of that accuracy
        unconfident: float | None = optional()
        #: share of the progress (untrained level - end) made over the last quarter
        late_share: float | None = optional()
        num_classes: int | None = optional()
        still_falling: bool = False
        #: the step from which the logged LR stayed below frozen_lr_share of its peak,
        #: when that came within frozen_by of the run (it trained only until then)
        lr_frozen_at: int | None = optional()
        #: the val accuracy's rise over its own evaluations (share of the room above
        #: where it began), when it, not the loss, shows the run learned
        val_acc_gain: float | None = optional()
        last_step: int = 0
        #: the train loss's gain over the last quarter (the advice lengthens a run
        #: that still learns)
        train_tail_gain: float | None = internal()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: UND004.Params) -> list[Found[UND004.Evidence]] | None:
        if unfinished(ctx, float(p.min_plan_share)):
            return None
        return self.poor_after_learning(ctx, p)

    def poor_after_learning(self, ctx: RuleContext,
                            p: UND004.Params) -> list[Found[UND004.Evidence]] | None:
        """The level reading: the model learned and sits at a poor level now (the state
        also asks that the run ended there: :meth:`detect`)."""
        tl = get_curve(ctx, Role.TRAIN_LOSS)
        if tl is None and not any(ctx.roles.candidates(r)
                                  for r in (Role.TRAIN_LOSS, Role.TRAIN_METRIC)):
            return self._val_only(ctx, p)
        if tl is None or levels_read(ctx, tl, float(p.min_first_cover)) < p.min_points \
                or tl.span <= 0:
            return None
        # (a train curve of fewer logged points than min_points, its start read apart:
        # two per-epoch rows show learning on the held-out loss only if it fell over its
        # own evaluations, the judged curve's "learns" that min_val_fall asks of three)
        if len(tl) < p.min_points and not val_fell_between(ctx, float(p.min_val_fall)):
            return None
        ref = untrained_level(ctx)
        if ref is None:
            return None
        if ends_nonfinite(ctx):
            return []
        l0, how = ref
        # (a train loss that blew up blowup_factor above its first value at the start
        # was the optimiser's doing: the untrained model is that first value, not the
        # blown-up level the largest early value reads)
        before = before_early_blowup(ctx, tl, float(p.blowup_factor))
        if before is not None and before[0] < l0:
            l0, how = before
        frac = float(p.end_frac)
        t_end = train_end_level(ctx, tl, frac)
        vl = get_curve(ctx, Role.VAL_LOSS)
        if vl is not None and ("+" in vl.tag or float(np.min(vl.values)) <= 0):
            vl = None
        v_end = end_level(vl, frac) if vl is not None and len(vl) >= 2 else None
        level = min(t_end, v_end) if v_end is not None else t_end
        best = best_loss(ctx)
        if best is None:
            return []
        b, best_on = best
        # (or the val accuracy did, on its own evaluations: logits held small by dropout
        # or weight decay keep the cross-entropy near its untrained level while the
        # argmax learns)
        acc_learned = val_accuracy_gain(ctx, l0, p.min_val_points)
        acc_left = (acc_learned is not None and acc_learned >= float(p.acc_learned_share)
                    and not many_classes(ctx, l0, p.acc_max_classes))
        loss_left = left_untrained_level(ctx, l0, float(p.min_fall))
        if not (acc_left or loss_left):
            return []
        # (thrown back to its start: learned, then both losses went back to the untrained
        # level, short of a blow-up; the checks below read a run that ends where its
        # learning took it, which such a run's end is not)
        back = thrown_back(ctx, l0, float(p.min_fall), float(p.back_share),
                           float(p.blowup_factor)) if loss_left else None
        # ... and the val loss learned over its own evaluations (flat from its first one:
        # converged before it, or never left its start; a fine-tune that starts low keeps
        # the accuracy and confidence it had before the log began, and the untrained
        # level of a loss-only log is unknown)
        # (with the class count known, ln C is the untrained level whatever the log's
        # first values: a val loss flat from its first evaluation at a poor share of it
        # learned before that evaluation and stopped there, underfit and plateau)
        acc = self._accuracy(ctx, frac)
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        v_fall = val_own_fall(ctx, p.min_val_points)
        # (unless the LR froze early: the weights stopped moving then, so a val loss
        # flat from its first evaluation is the frozen model, not one at its data's floor)
        frozen = lr_frozen_early(ctx, float(p.frozen_lr_share), float(p.frozen_by))
        if n_classes is None and v_fall is not None and v_fall < float(p.min_val_fall) \
                and frozen is None and not acc_left and back is None:
            return []
        # (a loss-only log evaluated twice, whose floor is unknown: a val loss that
        # barely moved between them while the train loss kept falling is at its data's
        # floor, and the train's further fall is fitting, not learning that reaches val)
        if n_classes is None and v_fall is None and acc is None and frozen is None \
                and back is None and val_left_behind(ctx, float(p.min_val_fall)):
            return []
        # (one class predicted for every input: never left its initial level, known C too;
        # a model frozen early by its LR also repeats its predictions at every evaluation)
        if frozen is None and back is None and constant_guess(ctx, l0, p.min_val_points,
                                             float(p.min_val_fall), float(p.min_fall)):
            return []
        # (fell from an inflated start only to the chance level and stayed: the fall shrank
        # the logits and learned nothing of the inputs, PLT001's chance-level reading; the
        # run never left its initial level, plateau only)
        from diagnose.detectors.plateau import never_left_chance

        if frozen is None and back is None and never_left_chance(ctx):
            return []
        # poor: the better split still ends at a large share of the untrained loss, or
        # (with a few classes, known) its accuracy is far from perfect above chance; with
        # many classes top-1 accuracy is bounded by the task's own ambiguity (a good
        # char-level language model predicts 40-60% of its next characters)
        many = many_classes(ctx, l0, p.acc_max_classes)
        # a loss-only log (no task metric at all, no class count) reads as a regression:
        # its untrained level is the target's variance, and a loss still holding
        # regression_poor_ratio of it explains too little of the variance to be a fit
        # (read only when the val loss shows the descent from that level on its own
        # evaluations: the log's first values are then the untrained level)
        # (or when the LR froze early with the descent before it logged on the train
        # curve: the log starts at the untrained model)
        loss_only = n_classes is None and not any(
            ctx.roles.candidates(r) for r in (Role.TRAIN_METRIC, Role.VAL_METRIC))
        regression = loss_only and (
            v_fall is None or v_fall >= float(p.regression_min_val_fall)
            or (frozen is not None and frozen[1] >= p.min_val_points))
        cls_ratio = float(p.many_poor_ratio if many else p.poor_ratio)
        ratio = float(p.regression_poor_ratio) if regression and not many else cls_ratio
        # stopped while still falling steeply (DESIGN.md: too few steps): the end is not
        # the level the run was heading to, so a lower share of L0 is already poor
        late = late_share(ctx, l0, p.min_val_points)
        # (so is a run whose logged LR froze early: the freeze stopped it as surely as too
        # few steps, so its end is where the freeze left it, not the level it was heading
        # to; PLT001 calls that stop the plateau half, this the underfit half)
        if (late is not None and late >= float(p.falling_share)) or frozen is not None:
            ratio = min(ratio, float(p.falling_poor_ratio))
            cls_ratio = min(cls_ratio, float(p.falling_poor_ratio))
        by_loss = level >= ratio * l0
        # (a loss-only log whose untrained level reads below ln 2 may as well be a
        # classifier's cross-entropy logged after it learned: an untrained classifier
        # starts at ln C >= ln 2, so that reading's untrained level is at least ln 2;
        # nothing in the log tells the two apart, so it is poor only when poor in both)
        if loss_only and l0 < CLASSIFIER_FLOOR:
            by_loss = by_loss and level >= cls_ratio * CLASSIFIER_FLOOR
        # (its mirror: a loss-only log whose untrained level reads above ln acc_max_classes
        # may as well be a many-class cross-entropy, a language model's token loss, whose
        # floor, the entropy of the next token, is a large share of ln C; nothing in the
        # log tells it from an unscaled regression, so it is poor only when poor in both)
        if loss_only and l0 > math.log(p.acc_max_classes):
            many_ratio = float(p.many_poor_ratio)
            if (late is not None and late >= float(p.falling_share)) or frozen is not None:
                many_ratio = min(many_ratio, float(p.falling_poor_ratio))
            by_loss = by_loss and level >= many_ratio * l0
        # hedged predictions are transient while the loss still falls steeply (confidence
        # is still growing: undertrained); a run that settled with a val loss well above
        # the calibrated loss of its accuracy is held unconfident (regularisation,
        # capacity): a smaller excess already says so
        conf_ratio = float(p.unconfident_ratio if late is not None
                           and late >= float(p.falling_share)
                           else p.settled_unconfident_ratio)
        # the class count, or an upper bound on it: an untrained classifier's loss is
        # ln C or more (a random initialisation is no better than a uniform guess)
        few = (n_classes <= p.acc_max_classes if n_classes is not None
               else acc is not None and l0 <= math.log(p.acc_max_classes))
        # ... and only while the loss still holds a real share of its untrained level: a
        # loss that removed most of it fits what it sees (modest top-1 accuracies then
        # come from the task, not from the fit)
        by_acc = (acc is not None and few and acc[2] <= float(p.poor_accuracy)
                  and level >= float(p.acc_min_loss_ratio) * l0)
        # ... or (the loss still holding unconfident_min_loss_ratio of it) unconfident: the
        # val loss far above what calibrated predictions at the val accuracy pay (right,
        # but hedging; a class count bounded by exp(L0) from a floor L0 is too low, so
        # this asks more of the loss than the accuracy route's measured share)
        unconfident = None
        if not (by_loss or by_acc):
            if level < float(p.unconfident_min_loss_ratio) * l0:
                return []
            # (read only against an untrained level the log shows: one raised to ln 2
            # because every logged loss was below it is a log that began after the
            # model learned, a fine-tune or a transfer head, whose distance from its
            # untrained model, and so its share of it, is unknown)
            if how == FLOOR_HOW:
                return []
            unconfident = self._unconfident(ctx, frac, l0, n_classes)
            if unconfident is None or unconfident < conf_ratio:
                return []
        # a loss that rose again from its best is diverging or collapsing, not stuck
        if back is None and level - b > float(p.rise_share) * max(l0 - b, 0.0):
            return []
        # train ~ val: a val loss well above train is a generalisation gap, not underfit
        # (while both still fall steeply, a modest lead of train over val is the run on
        # its way down, not a gap that settled: falling_gap_ratio)
        gap = float(p.falling_gap_ratio if late is not None and late >= float(p.falling_share)
                    else p.gap_ratio)
        if back is None and v_end is not None and v_end > 0 and t_end < gap * v_end:
            return []
        # a high accuracy is a good fit, unless its loss stays far above what calibrated
        # predictions at that accuracy pay: right but unconfident (weights held small by
        # regularisation, or stopped early), still poor on the loss
        # (a loss still holding most of its untrained level is poor whatever the argmax
        # gets right, high_acc_poor_ratio: read where a val accuracy is logged, the
        # held-out predictions the val loss scores)
        if back is None and acc is not None and acc[2] > float(p.max_accuracy):
            unconfident = unconfident or self._unconfident(ctx, frac, l0, n_classes)
            poor_loss = (level >= float(p.high_acc_poor_ratio) * l0
                         and _accuracy(ctx, Role.VAL_METRIC) is not None)
            if not poor_loss and (
                    unconfident is None or unconfident < conf_ratio):
                return []
            if unconfident is not None and unconfident < conf_ratio:
                unconfident = None  # poor on the loss level, not by confidence
        # a logged accuracy must have learned too: a loss falling from a bad
        # initialisation to the chance level leaves the accuracy where it started
        if back is None and acc is not None and acc[3] < float(p.min_acc_gain):
            return []
        tail = signals.robust_trend(*self._tail(tl))
        falling = bool(np.isfinite(tail.slope_hi) and tail.slope_hi < 0)
        if len(tl) < 3:
            # (two per-epoch rows, read with the start before them: no trend to fit,
            # and the last row below the first is a loss still falling when stopped)
            falling = bool(tl.values[-1] < tl.values[0])
        ev = UND004.Evidence(
            train_loss=tl.tag, train_end=t_end,
            val_loss=vl.tag if v_end is not None and vl is not None else None, val_end=v_end,
            untrained_level=l0, untrained_from=how, best=b, best_on=best_on,
            end_over_untrained=level / l0,
            poor_by="loss" if by_loss else "accuracy" if by_acc else "confidence",
            train_over_val=t_end / v_end if v_end else None,
            accuracy=acc[0] if acc else None, accuracy_end=acc[1] if acc else None,
            accuracy_gain=acc[3] if acc else None,
            accuracy_above_chance=acc[2] if acc and n_classes is not None else None,
            unconfident=unconfident, late_share=late,
            num_classes=n_classes, still_falling=falling,
            lr_frozen_at=int(frozen[0]) if frozen is not None else None,
            val_acc_gain=acc_learned if not loss_left else None,
            last_step=int(tl.steps[-1]),
            train_tail_gain=_train_loss_tail_gain(ctx), thresholds=p,
        )
        return [Found(tl.tag, int(tl.steps[-1]), ev)]

    def _val_only(self, ctx: RuleContext,
                  p: UND004.Params) -> list[Found[UND004.Evidence]] | None:
        """A log with no train series (a logger writing only validation metrics): the val
        curve alone is judged, only with the class count known and only while still
        falling; None when it cannot be.

        Its first evaluation comes after training began, so only ln C places the
        untrained level.  DESIGN.md's "train ~ val" cannot be read without a train side;
        a generalisation gap shows on val alone as a val loss that stops falling and
        rises, so a val loss that left ln C by ``min_fall``, fell ``min_val_fall`` over
        its own evaluations, still made ``falling_share`` of its progress in the last
        quarter (stopped while still falling) and ends at ``poor_ratio`` of ln C or above
        (``many_poor_ratio`` with many classes) is a model that learns but stays poor:
        the run that is too short or too small, not one that memorises."""
        vl = get_curve(ctx, Role.VAL_LOSS)
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        if n_classes is None or vl is None or len(vl) < p.min_val_points or vl.span <= 0 \
                or "+" in vl.tag or float(np.min(vl.values)) <= 0:
            return None
        if ends_nonfinite(ctx):
            return []
        l0, how = at_least_uniform_guess(ctx, early_level(vl), f"first {vl.tag}")
        best = best_loss(ctx, p.min_val_points)
        v_fall = val_own_fall(ctx, p.min_val_points)
        late = late_share(ctx, l0, p.min_val_points)
        if best is None or v_fall is None or late is None \
                or not left_untrained_level(ctx, l0, float(p.min_fall)) \
                or v_fall < float(p.min_val_fall) or late < float(p.falling_share):
            return []
        frac = float(p.end_frac)
        v_end = end_level(vl, frac)
        many = many_classes(ctx, l0, p.acc_max_classes)
        if v_end < float(p.many_poor_ratio if many else p.poor_ratio) * l0:
            return []
        if v_end - best[0] > float(p.rise_share) * max(l0 - best[0], 0.0):
            return []
        # (with no train side the evidence is thinner: a val accuracy logged on a task
        # with few classes must say poor too, poor_accuracy of the room above chance)
        acc = self._accuracy(ctx, frac)
        if acc is not None and (acc[3] < float(p.min_acc_gain) or acc[2] > float(
                p.max_accuracy if many else p.poor_accuracy)):
            return []
        tail = signals.robust_trend(*self._tail(vl))
        ev = UND004.Evidence(
            val_loss=vl.tag, val_end=v_end,
            untrained_level=l0, untrained_from=how, best=best[0], best_on=best[1],
            end_over_untrained=v_end / l0, poor_by="loss",
            accuracy=acc[0] if acc else None, accuracy_end=acc[1] if acc else None,
            accuracy_gain=acc[3] if acc else None,
            accuracy_above_chance=acc[2] if acc else None,
            late_share=late, num_classes=n_classes,
            still_falling=bool(np.isfinite(tail.slope_hi) and tail.slope_hi < 0),
            last_step=int(vl.steps[-1]), train_tail_gain=None, thresholds=p,
        )
        return [Found(vl.tag, int(vl.steps[-1]), ev)]

    @staticmethod
    def _tail(c: Curve, frac: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        inside = c.steps >= float(c.steps[-1]) - frac * c.span
        if inside.sum() < 3:
            inside = np.arange(len(c)) >= len(c) - 3
        return c.steps[inside], c.values[inside]

    @staticmethod
    def _unconfident(ctx: RuleContext, frac: float, l0: float,
                     n_classes: int | None) -> float | None:
        """The val loss over the calibrated loss of the val accuracy (eval mode on both:
        dropout and augmentation off), with the class count, else its upper bound from
        the untrained level (C <= exp(L0): the largest calibrated loss, the cautious
        side); None without a val accuracy and loss."""
        va, vl = _accuracy(ctx, Role.VAL_METRIC), get_curve(ctx, Role.VAL_LOSS)
        if va is None or vl is None or len(va) < 2 or len(vl) < 2 or "+" in vl.tag:
            return None
        c = n_classes if n_classes is not None else max(2, math.floor(math.exp(min(l0, 20.0))))
        ref = calibrated_loss(va.raw(end_level(va, frac)), c)
        return end_level(vl, frac) / ref if ref > 0 else math.inf

    @staticmethod
    def _accuracy(ctx: RuleContext,
                  frac: float) -> tuple[str, float, float, float] | None:
        """The better split's end accuracy: (tag, value, its share of the room above
        chance when the class count is known, else the accuracy itself, and how far it
        learned: its lead over chance when the class count is known, else the larger of
        its gain over its first value, the gain of a split first logged before that value,
        and its lead over 1/2, the highest chance level)."""
        best: tuple[str, float, float, int] | None = None
        # each split's rise over its own evaluations, with the step of its first one
        rises: list[tuple[int, float]] = []
        for role in (Role.TRAIN_METRIC, Role.VAL_METRIC):
            a = _accuracy(ctx, role)
            if a is None or len(a) < 2:
                continue
            end = a.raw(end_level(a, frac))
            first_step = int(a.steps[0])
            rises.append((first_step, end - a.raw(float(a.values[0]))))
            if best is None or end > best[1]:
                best = (a.tag, end, a.raw(float(a.values[0])), first_step)
        if best is None:
            return None
        tag, end, first, since = best
        # (a split logged from before the better one's first evaluation saw learning that
        # evaluation came after: its rise counts too)
        rose = max([end - first] + [r for at, r in rises if at < since])
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        if n_classes is None:
            # chance is 1/C <= 1/2 whatever C: an accuracy that far above 1/2 learned even
            # when its first logged value came after the learning; so did one whose rise
            # a split logged from before that first value shows (a train accuracy logged
            # from the start, beside a val accuracy first evaluated after the learning)
            return tag, end, end, max(rose, end - 0.5)
        chance = signals.chance_accuracy(n_classes)
        return tag, end, (end - chance) / (1.0 - chance), end - chance

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        ev = finding.detail
        if not isinstance(ev, UND004.Evidence):
            return super().advise(ctx, finding)
        if ev.poor_by == "accuracy" and ev.accuracy_above_chance is not None:
            reason = (f"the model underfits ({ev.accuracy} ends at {fmt(ev.accuracy_end)}, "
                      f"{pct(ev.accuracy_above_chance)} of the room above chance)")
        else:
            reason = (f"the model underfits (loss ends at {pct(ev.end_over_untrained)} of "
                      f"its untrained level)")
        return _underfit_advise(ctx, reason, ev.train_tail_gain)

    def message(self, ev: UND004.Evidence) -> str:
        ends = f"{ev.train_loss} ends at {fmt(ev.train_end)}"
        if ev.val_loss is not None and ev.val_end is not None:
            ends += f" and {ev.val_loss} at {fmt(ev.val_end)} (train close to val)"
            if ev.train_loss is None:  # a log with no train series: val alone
                ends = f"{ev.val_loss} ends at {fmt(ev.val_end)} (no train series logged)"
        poor = (f"{pct(ev.end_over_untrained)} of the untrained level "
                f"{fmt(ev.untrained_level)} ({ev.untrained_from})")
        if ev.poor_by == "accuracy" and ev.accuracy_above_chance is not None:
            poor = (f"{ev.accuracy} {fmt(ev.accuracy_end)} is only "
                    f"{pct(ev.accuracy_above_chance)} of the room above chance for "
                    f"{ev.num_classes} classes (loss at {poor})")
        elif ev.accuracy is not None and ev.accuracy_end is not None:
            poor += f", {ev.accuracy} {fmt(ev.accuracy_end)}"
        if ev.unconfident is not None:
            poor += (f"; the val loss is {fmt(ev.unconfident)}x what calibrated predictions "
                     f"at its accuracy pay: right but unconfident")
        how = ("still falling: stopped at a poor level" if ev.still_falling
               else "levelled off at a poor level")
        th = ev.thresholds
        if ev.late_share is not None and isinstance(th, UND004.Params) \
                and ev.late_share >= th.falling_share:
            how = (f"still falling: {pct(ev.late_share)} of its progress made in the last "
                   f"quarter, stopped at a poor level")
        if ev.lr_frozen_at is not None:
            how += (f"; the logged LR froze at step {ev.lr_frozen_at}, below "
                    f"{fmt(th.frozen_lr_share) if isinstance(th, UND004.Params) else 'a sliver'}"
                    f" of its peak: it trained only until then")
        learned = f"after learning to {fmt(ev.best)}"
        if ev.val_acc_gain is not None:
            learned = (f"(best {fmt(ev.best)}, near its untrained level, but the val accuracy "
                       f"rose {pct(ev.val_acc_gain)} of the room above where it began: "
                       f"learned, with unconfident logits)")
        return (f"{ends} by step {ev.last_step} {learned}: "
                f"{poor}; the model learns but stays poor ({how})")


def learned_but_poor(ctx: RuleContext) -> UND004.Evidence | None:
    """UND004's verdict on this run with its configured thresholds (the evidence when the
    model learned but stays poor, else None): the one owner of "poor after learning",
    so that a plateau rule judging a run that flattened early calls the same level poor
    (DESIGN.md: learns, then flattens early at a poor level = underfit AND plateau)."""

    def compute() -> UND004.Evidence | None:
        p = UND004.Params.build(ctx.thresholds_of("UND004"))
        found = UND004().poor_after_learning(ctx, p)
        return found[0].evidence if found else None

    return ctx.cached(("underfit_learned_but_poor",), compute)
