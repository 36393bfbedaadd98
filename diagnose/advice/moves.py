"""The shared moves: scale the LR, warm up, clip, stop at a step, train longer, add
momentum, decay the schedule.  Each turns a reason and the run's own numbers into a
:class:`~diagnose.advice.reconcile.Candidate`; its policy numbers come from
:class:`~diagnose.advice.policy.AdvicePolicy` (named, documented, settable in
``[tool.diagnose.advice]``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from diagnose import signals
from diagnose.advice.policy import AdvicePolicy, ordinal
from diagnose.advice.reconcile import Candidate, candidate
from diagnose.findings import SEVERITY_RANK, Finding, RunResult
from diagnose.hparams import canonicalize, finite_number, uses_batch_norm
from diagnose.metrics import Role, RoleMap, Series, resolve_roles
from diagnose.numbers import sig

# ---------------------------------------------------------------------------
# Small numeric helpers
# ---------------------------------------------------------------------------


def nice(x: float, digits: int = 2) -> float:
    """Round to ``digits`` significant figures: proposals should read like settings."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def nice_int(x: float) -> int:
    """Round a step count to two significant figures, at least 1."""
    return max(1, round(nice(float(x), 2)))


def show(x: Any) -> str:
    """Short human form of a number for rationales: 3 significant digits, whole numbers
    whole."""
    return sig(x, 3, whole_below=1e7, missing="None")


def value_at(series: Series, step: float) -> float | None:
    """Last finite value logged at or before ``step`` (a schedule holds its value)."""
    fin = series.finite
    if not len(fin):
        return None
    idx = int(np.searchsorted(fin.steps, step, side="right")) - 1
    return float(fin.values[max(idx, 0)])


def is_sgd(optimizer: Any) -> bool:
    """Plain SGD (with or without momentum), by name."""
    name = str(optimizer or "").lower()
    return "sgd" in name or name in ("momentum", "nesterov")


def lr_is_small(lr: float, optimizer: Any) -> bool:
    """An LR at the bottom of the usual range (seeds 001: 1e-2 / 1e-3 / 1e-4)."""
    return lr < (1e-3 if is_sgd(optimizer) else 1e-4)


def optimizer_family(optimizer: Any) -> str:
    """'sgd', 'adam' (Adam, AdamW, NAdam...), 'rmsprop' or '' (unknown), by name."""
    name = str(optimizer or "").lower()
    if "rmsprop" in name:
        return "rmsprop"
    if "adam" in name:
        return "adam"
    return "sgd" if is_sgd(optimizer) else ""


def usual_lr_range(policy: AdvicePolicy, optimizer: Any) -> tuple[float, float, str]:
    """(low, high, label) of the optimizer's usual LR range; the widest of the known
    ranges for an unknown optimizer."""
    ranges = {
        "sgd": (policy.sgd_lr_low, policy.sgd_lr_high),
        "adam": (policy.adam_lr_low, policy.adam_lr_high),
        "rmsprop": (policy.rmsprop_lr_low, policy.rmsprop_lr_high),
    }
    family = optimizer_family(optimizer)
    if family:
        low, high = ranges[family]
        names = {"sgd": "SGD", "adam": "Adam/AdamW", "rmsprop": "RMSprop"}
        return low, high, f"{names[family]}'s"
    return (min(lo for lo, _ in ranges.values()), max(hi for _, hi in ranges.values()),
            "any common optimizer's")


def landing_range(policy: AdvicePolicy, optimizer: Any) -> tuple[float, float, str]:
    """(low, high, label) of the range an LR far outside its usual range lands in: the
    optimizer's own range; for an unknown optimizer the range where every common optimizer
    trains (the overlap of their ranges), since the widest range's upper part is 10-100x
    above Adam's (a tiny Adam LR moved to 0.03 is far too high in turn)."""
    if optimizer_family(optimizer):
        return usual_lr_range(policy, optimizer)
    ranges = ((policy.sgd_lr_low, policy.sgd_lr_high), (policy.adam_lr_low, policy.adam_lr_high),
              (policy.rmsprop_lr_low, policy.rmsprop_lr_high))
    low, high = max(lo for lo, _ in ranges), min(hi for _, hi in ranges)
    if low > high:  # a policy whose ranges do not overlap: the widest one
        return usual_lr_range(policy, optimizer)
    return low, high, "every common optimizer's"


def landing_note(policy: AdvicePolicy, optimizer: Any) -> str:
    """How a rationale names where an LR lands when the optimizer is unknown ('' when it
    is known: the usual range named before says it)."""
    if optimizer_family(optimizer):
        return ""
    low, high, label = landing_range(policy, optimizer)
    if label != "every common optimizer's":
        return ""
    return (f"; the optimizer is not logged, so this is inside {label} usual range, "
            f"{show(low)} to {show(high)}")


def landing_point(policy: AdvicePolicy, optimizer: Any, pos: float | None = None) -> float:
    """Where an LR far outside the optimizer's usual range lands inside it (``pos``, by
    default ``lr_range_landing``, geometric, of :func:`landing_range`)."""
    low, high, _ = landing_range(policy, optimizer)
    pos = policy.lr_range_landing if pos is None else pos
    return nice(math.exp(math.log(low) + pos * (math.log(high) - math.log(low))))


def lr_outside_range(policy: AdvicePolicy, optimizer: Any, lr: float | None) -> str:
    """'below' / 'above' the optimizer's usual range by more than ``lr_far_factor``, or ''."""
    if lr is None or lr <= 0:
        return ""
    low, high, _ = usual_lr_range(policy, optimizer)
    if lr < low / policy.lr_far_factor:
        return "below"
    if lr > high * policy.lr_far_factor:
        return "above"
    return ""


def land_in_range(policy: AdvicePolicy, optimizer: Any, lr: float,
                  proposed: float, steps: float | None = None) -> tuple[float, str] | None:
    """(LR inside the usual range, why) when ``lr`` is outside the optimizer's usual range
    and the relative move towards it, to ``proposed``, would stop short of the landing
    point (``lr_range_landing`` of the range, geometric; ``short_diverged_landing`` from
    above for a run of fewer than ``short_run_steps`` ``steps``); None when the move is
    fine.  A tiny LR x10 ends at the bottom of the range, still too slow; a huge one /10
    above it."""
    low, high, label = usual_lr_range(policy, optimizer)
    short = lr > high and steps is not None and steps < policy.short_run_steps
    landed = landing_point(policy, optimizer,
                           policy.short_diverged_landing if short else None)
    # only a move towards the range is resized (a cut of an LR already below it is not)
    above = lr > high and landed < proposed < lr
    below = lr < low and lr < proposed < landed
    if not (above or below):
        return None
    side = "above" if above else "below"
    why = (f" (high in the range: the run has only {show(steps)} steps, fewer than "
           f"{show(policy.short_run_steps)}, to make its progress)" if short else "")
    return landed, (f"{show(lr)} is far {side} {label} usual LR range {show(low)} to "
                    f"{show(high)}, so move into it: {show(landed)}{why}"
                    f"{landing_note(policy, optimizer)} (an LR range test refines it)")


def truthy(value: Any) -> bool | None:
    """Interpret a logged on/off setting; None when it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0", "none", ""):
            return False
    return None


#: Config keys (last dotted part) that switch a data augmentation on when non-zero:
#: Ultralytics' hyp.yaml/args.yaml, timm/torchvision recipes, our own examples.  Not
#: Ultralytics' bare ``augment``, which is test-time augmentation.
AUGMENTATION_KEYS = frozenset({
    "data_augmentation", "augmentation", "mosaic", "mixup", "cutmix", "copy_paste",
    "fliplr", "flipud", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "shear",
    "perspective", "erasing", "random_erasing", "auto_augment", "randaugment",
    "trivialaugment", "color_jitter", "hflip", "vflip", "random_crop",
})


#: Config keys only detection recipes have (YOLO hyp.yaml, detectron2).
DETECTION_KEYS = frozenset({"mosaic", "box", "obj", "cls_pw", "obj_pw", "anchor_t",
                            "iou_t", "fl_gamma", "copy_paste", "roi_heads"})
#: Config keys only transformer recipes have (HF configs, GPT-2 style names).
TRANSFORMER_DROPOUT_KEYS = frozenset({
    "attention_dropout", "attention_probs_dropout_prob", "hidden_dropout_prob",
    "attn_pdrop", "resid_pdrop", "embd_pdrop", "activation_dropout"})
TRANSFORMER_KEYS = TRANSFORMER_DROPOUT_KEYS | {
    "num_attention_heads", "n_head", "num_heads", "n_embd", "model_type", "warmup_ratio"}


def augmentation_on(hp: Mapping[str, Any]) -> str | None:
    """The first config key that already switches an augmentation on (a non-zero number,
    a true flag or a policy name such as 'randaugment'), else None."""
    for key in sorted(hp, key=str):
        if str(key).lower().replace("/", ".").rsplit(".", 1)[-1] not in AUGMENTATION_KEYS:
            continue
        value = hp[key]
        on = truthy(value)
        if on is None and isinstance(value, str):
            on = value.strip().lower() not in ("", "none", "null", "off", "false")
        if on:
            return str(key)
    return None


# ---------------------------------------------------------------------------
# Per-run context
# ---------------------------------------------------------------------------


class AdviceContext:
    """Everything the generators read about one run, computed once and lazily."""

    def __init__(self, result: RunResult, overrides: Mapping[str, Any] | None,
                 policy: AdvicePolicy | None = None):
        self.result = result
        self.policy = policy or AdvicePolicy()
        self.run = result.run
        hp = dict(getattr(self.run, "hparams", {}) or {})
        hp.update(canonicalize(dict(overrides or {})))
        self.hp: dict[str, Any] = hp
        self.overridden = set(canonicalize(dict(overrides or {})))
        self.states = {
            g.state for f in result.findings for g in (f, *f.explained)
            if SEVERITY_RANK.get(g.severity, 0) >= 1
        }

    @cached_property
    def roles(self) -> RoleMap:
        if getattr(self.run, "scalars", None) is None:
            from diagnose.run import empty_scalars

            return resolve_roles(empty_scalars())
        roles: RoleMap = self.result.resolved_roles()
        return roles

    def role(self, role: Role) -> Series | None:
        found = self.roles.get(role)
        return found if found is not None and len(found.finite) else None

    def series_for(self, finding: Finding, fallback: Role) -> Series | None:
        """The finding's own series when its metric is a tag, else the role's series."""
        if finding.metric and finding.metric in self.roles.by_tag:
            s = self.roles.by_tag[finding.metric]
            if len(s.finite):
                return s
        return self.role(fallback)

    @cached_property
    def first_step(self) -> int:
        rng = self.run.step_range if hasattr(self.run, "step_range") else None
        return int(rng[0]) if rng else 0

    @cached_property
    def last_step(self) -> int | None:
        loss = self.role(Role.TRAIN_LOSS) or self.role(Role.VAL_LOSS)
        if loss is not None:
            return int(loss.steps[-1])
        rng = self.run.step_range if hasattr(self.run, "step_range") else None
        return int(rng[1]) if rng else None

    @cached_property
    def total_steps(self) -> float | None:
        """Planned length in log steps: max_steps when the log counts steps, else logged."""
        planned = finite_number(self.hp.get("max_steps"))
        if planned and self.unit == "step":
            return planned
        planned_epochs = finite_number(self.hp.get("epochs"))
        if planned_epochs and self.unit == "epoch":
            return planned_epochs
        return float(self.last_step) if self.last_step else None

    @property
    def run_steps(self) -> float | None:
        """The run's planned (or logged) length in optimizer steps; None when the log
        counts epochs."""
        return self.total_steps if self.unit == "step" else None

    @cached_property
    def unit(self) -> str:
        """'epoch' when the log's step axis counts epochs, else 'step'."""
        fmt = str(getattr(self.run, "format", ""))
        if set(fmt.split("+")) & {"keras_csv", "keras_history", "ultralytics"}:
            return "epoch"
        loss = self.role(Role.TRAIN_LOSS) or self.role(Role.VAL_LOSS)
        if loss is not None and loss.tag.lower().rsplit("/", 1)[-1].startswith("epoch_"):
            return "epoch"  # Keras TensorBoard callback: epoch_loss is logged per epoch
        scalars = getattr(self.run, "scalars", None)
        if scalars is not None and len(scalars):
            rows = scalars[scalars["metric"] == "epoch"]
            if len(rows) >= 2 and np.allclose(rows["value"].to_numpy(), rows["step"].to_numpy()):
                return "epoch"
        return "step"

    @cached_property
    def lr_series(self) -> Series | None:
        return self.role(Role.LR)

    @cached_property
    def grad_series(self) -> Series | None:
        return self.role(Role.GRAD_NORM)

    @cached_property
    def lr(self) -> tuple[float | None, str]:
        """(current LR, where it came from): hparams/--hparam, else the logged peak."""
        given = finite_number(self.hp.get("learning_rate"))
        if given is not None and given > 0:
            source = "--hparam" if "learning_rate" in self.overridden else "hparams"
            return given, source
        if self.lr_series is not None:
            peak = float(np.max(self.lr_series.finite.values))
            if peak > 0:  # logged as float32 (0.0010000000474974513): keep 6 digits
                return nice(peak, 6), "logged peak"
        return None, ""

    @cached_property
    def regression(self) -> bool:
        """A regression run: the config says so, or a loss is named like one (MSE, MAE,
        Huber...), or nothing accuracy-like is logged and the config names no task."""
        task = str(self.hp.get("task") or "").lower()
        if task:
            return "regress" in task
        tags = [str(t).lower() for t in self.roles.by_tag]
        if any(signals.regression_name(t) for t in tags):
            return True
        return not any(k in t for t in tags for k in ("acc", "f1", "map", "auc", "top1"))

    @cached_property
    def family(self) -> str:
        """'detection' or 'transformer' when the config or the tags say so, else ''."""
        keys = {str(k).lower().replace("/", ".").rsplit(".", 1)[-1]
                for k in (*self.hp, *(getattr(self.run, "raw_hparams", None) or {}))}
        tags = " ".join(str(t).lower() for t in self.roles.by_tag)
        if keys & DETECTION_KEYS or "map50" in tags or "box_loss" in tags:
            return "detection"
        if keys & TRANSFORMER_KEYS:
            return "transformer"
        return ""

    def transformer_dropout_keys(self) -> list[str]:
        """The dropout keys a transformer config records (HF names), in config order."""
        return [str(k) for k in self.hp
                if str(k).lower().rsplit(".", 1)[-1] in TRANSFORMER_DROPOUT_KEYS]

    @cached_property
    def uses_batchnorm(self) -> bool | None:
        return uses_batch_norm(self.hp)


# ---------------------------------------------------------------------------
# Moves
# ---------------------------------------------------------------------------


def relative(factor: float) -> str:
    """Relative proposal when the current value is unknown: 'current/3' or 'current*3'."""
    if factor >= 1:
        return f"current*{show(nice(factor))}"
    return f"current/{show(nice(1 / factor))}"


def concrete_hint(hyper: str) -> str:
    return f"pass --hparam {hyper}=VALUE to get a concrete value"


def scale_lr(ctx: AdviceContext, factor: float, reason: str, strength: float = 1.0) -> Candidate:
    """LR times ``factor`` (concrete when the LR is known, relative otherwise)."""
    action = "increase" if factor > 1 else "decrease"
    lr, source = ctx.lr
    how = f"x{show(nice(factor))}" if factor > 1 else f"/{show(nice(1 / factor))}"
    if lr is None:
        return candidate("learning_rate", action, None, relative(factor),
                     f"{reason}, so scale the LR {how}; {concrete_hint('learning_rate')}.",
                     strength)
    new = nice(lr * factor)
    optimizer = ctx.hp.get("optimizer")
    if factor > 1 and lr_outside_range(ctx.policy, optimizer, lr) == "above":
        # never raise an LR already far above its usual range (a run stuck at chance after
        # that LR blew it up reads as a plateau): move into the range instead.  A cut of
        # an LR far below it stays: a blow-up at that LR is evidence for the cut.
        factor, action = 1 / factor, "decrease"
        new = nice(lr * factor)
    landed = land_in_range(ctx.policy, optimizer, lr, new, ctx.run_steps)
    if landed is not None:
        return candidate("learning_rate", action, lr, landed[0],
                         f"{reason}; the {source} LR {landed[1]}.", strength)
    return candidate("learning_rate", action, lr, new,
                 f"{reason}, so scale the LR ({source} {show(lr)}) {how} to {show(new)}.",
                 strength)


def warmup_never_ends(ctx: AdviceContext) -> bool:
    """The warmup outlasts the run: the configured warmup is at least the run's length, or
    the logged LR still rises over the last ``ramp_tail_share`` of the run (over its last
    half of points when it is logged too sparsely for that) and ends at its peak."""
    total = ctx.total_steps
    warm = finite_number(ctx.hp.get("warmup_steps"))
    if warm is not None and total and warm >= total:
        return True
    s = ctx.lr_series
    if s is None or len(s.finite) < 3:
        return False
    steps, values = s.finite.steps, s.finite.values
    tail = values[steps >= steps[0] + (1 - ctx.policy.ramp_tail_share) * (steps[-1] - steps[0])]
    if len(tail) < 2:
        # an LR logged at a few points only (3-7 over the run): its last half of points
        tail = values[len(values) // 2:] if len(values) >= 4 else values[-2:]
    if tail[0] <= 0:
        return False
    rising = bool(np.all(np.diff(tail) >= 0)) and tail[-1] >= float(np.max(values))
    return rising and tail[-1] / tail[0] >= ctx.policy.ramp_min_rise


def shorten_warmup(ctx: AdviceContext, reason: str, strength: float = 2.0) -> Candidate | None:
    """A warmup that never ends: shorten it to ``max_warmup_share`` of the run (the LR
    never reached its set value, so raising the set value is not the fix)."""
    if not warmup_never_ends(ctx):
        return None
    total = ctx.total_steps
    if not total:
        return None
    current = finite_number(ctx.hp.get("warmup_steps"))
    proposed = max(1, nice_int(ctx.policy.max_warmup_share * total))
    unit = "epochs" if ctx.unit == "epoch" else "steps"
    was = f" (now {show(current)})" if current is not None else ""
    return candidate(
        "warmup_steps", "decrease" if current is not None else "set", current, proposed,
        f"{reason} while the LR was still warming up at the end of the run{was}, so shorten "
        f"the warmup to {proposed} {unit} ({int(ctx.policy.max_warmup_share * 100)}% of the "
        "run) and let the LR reach its set value.", strength, direction=-1)


def add_warmup(ctx: AdviceContext, trouble_step: float | None, reason: str,
            strength: float = 1.0) -> Candidate | None:
    """Warmup long enough to cover the early trouble, at most 10% of the run."""
    total = ctx.total_steps
    if trouble_step is None or not total or trouble_step > ctx.policy.max_warmup_onset * total:
        return None
    if ctx.policy.max_warmup_share * total < 1:
        return None  # the run is too short to warm up within 10% of it in log units
    current = finite_number(ctx.hp.get("warmup_steps"))
    # The playbook picks the largest feasible warmup within 10% of the run; a ramp shorter
    # than ~5% of it, or than twice the time the trouble took to show, does little.
    target = min(ctx.policy.max_warmup_share * total,
                 max(ctx.policy.warmup_onset_multiple * (trouble_step - ctx.first_step),
                     ctx.policy.min_warmup_share * total))
    proposed = nice_int(target)
    if current is not None and current >= proposed:
        return None
    unit = "epochs" if ctx.unit == "epoch" else "steps"
    note = " (the log counts epochs; convert to optimizer steps)" if ctx.unit == "epoch" else ""
    return candidate(
        "warmup_steps", "set" if current is None else "increase", current, proposed,
        f"{reason} at {unit[:-1]} {show(trouble_step)} of {show(total)}, so ramp the LR up "
        f"over {proposed} {unit} (at most {int(ctx.policy.max_warmup_share * 100)}% of the "
        f"run){note}.",
        strength,
    )


def clip_grads(ctx: AdviceContext, before_step: float | None, reason: str,
          strength: float = 1.0) -> tuple[Candidate | None, str]:
    """Clip threshold from the logged grad norms; returns (candidate, note for the LR).

    The note is non-empty when clipping is the wrong tool (more than half of the updates
    would be clipped: the playbook says lower the LR instead).
    """
    pol = ctx.policy
    pct = ordinal(pol.clip_percentile)
    current = finite_number(ctx.hp.get("grad_clip"))
    clipping = current is not None and current > 0
    grads = ctx.grad_series
    if grads is None:
        if clipping:
            return None, ""
        return candidate(
            "grad_clip", "set", current, pol.default_clip_norm,
            f"{reason} and no grad-norm series is logged, so clip the global grad norm at "
            f"{float(pol.default_clip_norm)} (the usual default) and log grad norms to set it "
            f"at their {pct} percentile.",
            0.8 * strength,
        ), ""
    fin = grads.finite
    pre = fin.values[fin.steps < before_step] if before_step is not None else fin.values
    if len(pre) < 5:
        # Too little calm history to take a percentile of: the norms logged during the
        # blow-up would set the threshold far too high.  Fall back to the usual default.
        if clipping:
            return None, ""
        few = (f"after only {len(pre)} grad-norm point{'s' if len(pre) > 1 else ''} before "
               f"the trouble, too few to take their {pct} percentile" if len(pre) else
               f"and no grad norm logged before the trouble to take a {pct} percentile of")
        return candidate(
            "grad_clip", "set", current, pol.default_clip_norm,
            f"{reason} {few}, so clip the global grad norm at "
            f"{float(pol.default_clip_norm)} (the usual default) and refine it from a calm "
            "run's grad norms.",
            0.8 * strength,
        ), ""
    p90 = float(np.percentile(pre, ctx.policy.clip_percentile))
    if p90 <= 0:
        return None, ""
    if clipping and current is not None:
        clipped = float(np.mean(fin.values > current))
        if clipped > ctx.policy.max_clipped_share:
            return None, (f"{clipped:.0%} of the logged updates already exceed the clip "
                          f"threshold {show(current)}")
        if p90 >= 0.8 * current:
            return None, ""
    share = float(np.mean(fin.values > p90))
    if share > ctx.policy.max_clipped_share:
        return None, f"{share:.0%} of the logged updates would be clipped at {show(nice(p90))}"
    proposed = nice(p90)
    where = f"before step {show(before_step)}" if before_step is not None else "logged"
    return candidate(
        "grad_clip", "decrease" if clipping else "set", current, proposed,
        f"{reason}; the {pct} percentile of the grad norms {where} is {show(proposed)}, "
        f"so clip there ({share:.0%} of all logged updates would be clipped).",
        strength,
    ), ""


def length_target(ctx: AdviceContext, step: float) -> tuple[str, float | None, int]:
    """(hyperparameter, current, proposed) to stop training at log step ``step``."""
    last = ctx.last_step
    max_steps, epochs = finite_number(ctx.hp.get("max_steps")), finite_number(ctx.hp.get("epochs"))
    if ctx.unit == "epoch":
        offset = 1 if ctx.first_step == 0 else 0  # 0-indexed epochs: epoch e is the (e+1)th
        current = epochs if epochs is not None else (last + offset if last is not None else None)
        return "epochs", current, int(step) + offset
    if max_steps is not None or epochs is None:
        return "max_steps", max_steps if max_steps is not None else last, int(step)
    per_epoch = (last / epochs) if last and epochs else None
    return "epochs", epochs, max(1, math.ceil(step / per_epoch)) if per_epoch else int(step)


def extend_length(ctx: AdviceContext, factor: float, reason: str,
                  strength: float = 1.0) -> Candidate:
    """Train ``factor`` times longer (epochs when the log counts epochs)."""
    max_steps, epochs = finite_number(ctx.hp.get("max_steps")), finite_number(ctx.hp.get("epochs"))
    current: float | None
    if max_steps is not None and ctx.unit == "step":
        hyper, current = "max_steps", max_steps
    elif epochs is not None:
        hyper, current = "epochs", epochs
    elif ctx.unit == "epoch":
        last = ctx.last_step
        hyper = "epochs"
        current = None if last is None else float(last + (1 if ctx.first_step == 0 else 0))
    else:
        hyper, current = "max_steps", None if ctx.last_step is None else float(ctx.last_step)
    if current is None or current <= 0:
        return candidate(hyper, "increase", None, relative(factor),
                     f"{reason}; {concrete_hint(hyper)}.", strength)
    proposed = nice_int(current * factor)
    return candidate(hyper, "increase", current, proposed,
                 f"{reason}, so train {round((factor - 1) * 100)}% longer: "
                 f"{show(current)} -> {proposed}.", strength)


def lr_annealed(ctx: AdviceContext) -> bool:
    """The logged LR ends below ``annealed_share`` of its peak (a cosine, step or one-cycle
    schedule run to its end): the last quarter trained at a negligible LR, so a flat tail
    there says nothing about convergence."""
    s = ctx.lr_series
    if s is None or len(s.finite) < 2:
        return False
    values = s.finite.values
    peak = float(np.max(values))
    return peak > 0 and float(values[-1]) < ctx.policy.annealed_share * peak


def short_run_extension(ctx: AdviceContext) -> float | None:
    """How many times longer a run of fewer than ``short_run_steps`` steps trains: up to
    that budget, at least ``long_extension``, at most ``max_short_extension``; None for a
    run that is not short (or counts epochs)."""
    pol = ctx.policy
    steps = ctx.run_steps
    if steps is None or steps <= 0 or steps >= pol.short_run_steps:
        return None
    return min(pol.max_short_extension, max(pol.long_extension, pol.short_run_steps / steps))


def advice_name(val: Series) -> str:
    """How the advice names a val curve: 'val loss', 'val accuracy'."""
    name = val.metric.replace("_", " ")
    if val.split in ("val", "test") and not name.startswith(("val", "test")):
        name = f"val {name}"
    return name


def tail_gain(series: Series, share: float = 0.25) -> float | None:
    """Relative improvement over the last ``share`` of a series (positive = improving)."""
    fin = series.finite
    n = len(fin)
    if n < 6:
        return None
    k = max(3, math.ceil(n * share))
    head = float(np.median(fin.values[-k - 2 : -k + 1])) if n > k + 2 else float(fin.values[-k])
    tail = float(np.median(fin.values[-3:]))
    scale = max(abs(head), 1e-12)
    gain = (tail - head) / scale
    return gain if series.higher_is_better else -gain


def sparse_tail_gain(series: Series, share: float = 0.25) -> float | None:
    """:func:`tail_gain` for a curve of 2-5 points (logged once per epoch), too few for
    its medians: the last value against the one where the last ``share`` of the logged
    steps begins (an epoch's point already averages that epoch; of two, the first);
    None otherwise."""
    fin = series.finite
    if not 2 <= len(fin) < 6:
        return None
    steps, values = fin.steps, fin.values
    cut = float(steps[-1]) - share * float(steps[-1] - steps[0])
    i = min(int(np.searchsorted(steps, cut, side="right")) - 1, len(fin) - 2)
    head, tail = float(values[max(i, 0)]), float(values[-1])
    gain = (tail - head) / max(abs(head), 1e-12)
    return gain if series.higher_is_better else -gain


def momentum_fix(ctx: AdviceContext, reason: str, strength: float = 1.0) -> Candidate | None:
    """SGD without momentum -> momentum 0.9 (seeds 003).

    Only when the run records momentum 0: most SGD setups keep momentum in a file the log
    does not carry (YOLOv5's hyp.yaml), so an unknown momentum is not evidence.
    """
    momentum = finite_number(ctx.hp.get("momentum"))
    if momentum is None or momentum > 0 or not is_sgd(ctx.hp.get("optimizer")):
        return None
    return candidate("momentum", "increase", momentum, ctx.policy.sgd_momentum,
                 f"{reason} with plain SGD (momentum 0), so use momentum "
                 f"{ctx.policy.sgd_momentum} (or "
                 "switch to Adam, which is less sensitive to the LR).", strength)


def decay_schedule(ctx: AdviceContext, reason: str, strength: float = 1.0) -> Candidate | None:
    """Cosine decay when the run does not decay its LR (flat logged LR or no schedule)."""
    current = ctx.hp.get("lr_schedule")
    text = str(current or "").lower()
    if any(k in text for k in ("cos", "step", "poly", "linear", "exp", "multistep", "plateau")):
        decaying = True
    elif ctx.lr_series is not None:
        vals = ctx.lr_series.finite.values
        decaying = len(vals) >= 2 and vals[-1] < 0.5 * float(vals.max())
    else:
        decaying = False
    if decaying:
        return None
    flat = "the logged LR never decays" if ctx.lr_series is not None else "no LR decay is set"
    return candidate("lr_schedule", "set", current, "cosine",
                 f"{reason} and {flat}, so decay it with a cosine schedule to ~1% of the "
                 "peak by the last step.", strength, direction=0)


def remove_lr_jump(ctx: AdviceContext, before: float, after: float, reason: str,
                   strength: float = 1.5) -> Candidate | None:
    """A mid-run LR jump (the logged LR rose ``after / before`` in one logged step, and the
    loss blew up after it) as the knob that makes it: ``lr_step_factor``, what a schedule
    step multiplies the LR by (StepLR/MultiStepLR's ``gamma``), set to
    ``lr_step_factor_fix``.  ``current`` is the logged config's factor, else the jump the
    logged LR shows.  None when the configured LR is itself at the post-jump level (the
    base LR is then the fix) or the logged factor already is the fix (something else
    raised the LR)."""
    pol = ctx.policy
    configured = finite_number(ctx.hp.get("learning_rate"))
    if configured is not None and configured >= pol.lr_jump_ratio * before:
        return None
    logged = finite_number(ctx.hp.get("lr_step_factor"))
    if logged is not None and logged <= pol.lr_step_factor_fix:
        return None
    current = logged if logged is not None else nice(after / before, 3)
    fix = pol.lr_step_factor_fix
    keep = "no jump" if fix == 1 else f"x{show(fix)} at that step"
    return candidate(
        "lr_step_factor", "decrease", current, fix,
        f"{reason}: what multiplies the LR at that step (a StepLR/MultiStepLR gamma, a "
        f"schedule milestone's factor) raised it x{show(nice(after / before))} over the LR "
        f"that trained fine before it, so set that factor to {show(fix)} ({keep}).",
        strength)
