"""Underfitting: the model does not learn the task at all, or barely.

* UND001 ``near_chance``: train and val both sit at chance level (accuracy ~ 1/C, or
  cross-entropy ~ ln C) at the end of the run, with C from the hyperparameters or
  inferred from the curves (:func:`diagnose.signals.infer_num_classes`).  The gap is
  small by construction (both splits are at chance), which separates it from
  memorisation (train perfect, val at chance: overfit).
* UND002 ``metric_never_learns``: a bounded task metric (mAP, F1, accuracy...) never
  leaves a poor level over many evaluations while the losses barely fall: the model is
  not learning the task, whatever its losses do.

Neither judges a run whose loss ends NaN/inf (divergence explains that tail).
"""

from __future__ import annotations

import math

import numpy as np

from diagnose import signals
from diagnose.detectors import Hit, RuleContext, detector
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
from diagnose.metrics import Role


def _accuracy(ctx: RuleContext, role: Role) -> Curve | None:
    """The split's accuracy curve (oriented), only when the metric is an accuracy."""
    for s in ctx.roles.candidates(role):
        if s.metric == "accuracy":
            return curve(s, True)
    return None


@detector("near_chance")
def near_chance(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """UND001: every split that is logged ends at chance level."""
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if n_classes is None:
        return None
    chance_acc = signals.chance_accuracy(n_classes)
    chance_loss = signals.chance_loss(n_classes)
    frac = float(p["end_frac"])
    min_points = int(p["min_points"])
    judged: dict[str, dict] = {}
    for split, acc_role, loss_role in (
        ("train", Role.TRAIN_METRIC, Role.TRAIN_LOSS),
        ("val", Role.VAL_METRIC, Role.VAL_LOSS),
    ):
        acc = _accuracy(ctx, acc_role)
        loss = get_curve(ctx, loss_role)
        if acc is not None and len(acc) >= min_points:
            end = acc.raw(end_level(acc, frac))
            limit = chance_acc + float(p["acc_tol"]) * (1.0 - chance_acc)
            near = end <= limit
            # a cross-entropy far below ln C means confident, learned predictions: the
            # accuracy only looks like 1/C by coincidence (C guessed from a first value)
            if near and loss is not None and len(loss) >= min_points and "+" not in loss.tag:
                near = end_level(loss, frac) >= float(p["loss_floor"]) * chance_loss
            judged[split] = {"by": acc.tag, "end": end, "chance": chance_acc, "near": near}
        elif loss is not None and len(loss) >= min_points and "+" not in loss.tag:
            end = end_level(loss, frac)
            limit = (1.0 - float(p["loss_tol"])) * chance_loss
            judged[split] = {"by": loss.tag, "end": end, "chance": chance_loss,
                             "near": end >= limit}
    if not judged:
        return None
    if ends_nonfinite(ctx) or not all(j["near"] for j in judged.values()):
        return []
    # a loss that blew far past chance and fell back to it diverged: a network killed by
    # a too-large step sits at chance too, but "add capacity" would be the wrong advice
    # Underfit means "never learned": a loss that rose well above where it started, or
    # that once fell far below chance and came back, tells a different story
    # (divergence, collapse) that other rules tell better.
    for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
        c = get_curve(ctx, role)
        if c is None or len(c) < 3 or "+" in c.tag:
            continue
        if float(np.max(c.values)) >= float(p["diverged_factor"]) * chance_loss:
            return []
        if end_level(c, frac) > start_level(c) + float(p["loss_tol"]) * chance_loss:
            return []
        if float(np.min(smoothed(ctx, c)[1])) < (1.0 - float(p["max_dip"])) * chance_loss:
            return []
    last = max(
        int(s.steps[-1]) for s in (ctx.series(r) for r in Role) if s is not None and len(s)
    )
    parts = [f"{split} {j['by']} ends at {fmt(j['end'])}" for split, j in judged.items()]
    msg = (
        f"{' and '.join(parts)} by step {last}, chance level for {n_classes} classes "
        f"(accuracy {fmt(chance_acc)}, loss ln {n_classes} = {fmt(chance_loss)})"
    )
    ev: dict = {"num_classes": n_classes, "chance_accuracy": chance_acc,
                "chance_loss": chance_loss, "last_step": last}
    for split, j in judged.items():
        ev[f"{split}_series"] = j["by"]
        ev[f"{split}_end"] = j["end"]
    for role in (Role.TRAIN_LOSS, Role.VAL_LOSS):
        c = get_curve(ctx, role)
        if c is not None and len(c) >= 2:
            first = start_level(c)
            ev[f"{role.value}_start"] = first
            ev[f"{role.value}_end"] = end_level(c, frac)
            ev[f"{role.value}_rel_change_pct"] = (
                100.0 * (end_level(c, frac) - first) / abs(first) if first else math.nan
            )
    ev.update({f"threshold_{k}": v for k, v in p.items()})
    tag = next(iter(judged.values()))["by"] if "val" not in judged else judged["val"]["by"]
    return [Hit(tag, last, msg, ev)]


@detector("metric_never_learns")
def metric_never_learns(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """UND002: a bounded val metric never exceeds ``poor_level`` while losses barely fall."""
    vm = get_curve(ctx, Role.VAL_METRIC)
    if vm is None or not bounded_metric(vm):
        return None
    if len(vm) < int(p["min_points"]):
        return None
    if ends_nonfinite(ctx):
        return []
    best = vm.raw(float(np.min(vm.values)))
    if best > float(p["poor_level"]):
        return []
    loss_note = ""
    ev: dict = {"val_metric": vm.tag, "best": best, "points": len(vm),
                "last_step": int(vm.steps[-1])}
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if train is not None and len(train) >= 3 and float(np.min(train.values)) > 0:
        first, last = start_level(train), end_level(train)
        fall = 1.0 - last / first
        ev.update({"train_loss": train.tag, "train_loss_start": first,
                   "train_loss_end": last, "train_loss_fall_pct": 100.0 * fall})
        if fall > float(p["max_loss_fall"]):
            return []
        loss_note = f" while train loss fell only {pct(fall)}"
    ev.update({f"threshold_{k}": v for k, v in p.items()})
    msg = (
        f"val {vm.series.metric} never exceeds {fmt(best)} over {len(vm)} evaluations up "
        f"to step {int(vm.steps[-1])}{loss_note}"
    )
    return [Hit(vm.tag, int(vm.steps[-1]), msg, ev)]

