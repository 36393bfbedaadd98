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
  the model cannot fit its own training data.

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
    bounded_metric,
    curve,
    end_level,
    ends_nonfinite,
    fmt,
    get_curve,
    pct,
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


def _accuracy(ctx: RuleContext, role: Role) -> Curve | None:
    """The split's accuracy curve (oriented), only when the metric is an accuracy."""
    for s in ctx.roles.candidates(role):
        if s.metric == "accuracy":
            return curve(s, True)
    return None


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
        first = max(float(tl.values[0]), start_level(tl))
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
