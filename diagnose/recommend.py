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
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from diagnose.findings import SEVERITY_RANK, Finding, Recommendation, RunResult
from diagnose.hparams import canonicalize, finite_number
from diagnose.metrics import Role, RoleMap, Series, resolve_roles

#: Expected impact of changing each hyperparameter (seeds 003: LR first; then batch size
#: and momentum; then Adam params, weight decay, dropout, architecture).  A candidate's
#: impact is this weight times the strength of its evidence; findings list their
#: recommendations by impact, highest first.
IMPORTANCE: dict[str, float] = {
    "learning_rate": 1.0,
    "warmup_steps": 0.85,
    "lr_schedule": 0.8,
    "grad_clip": 0.75,
    "batch_size": 0.65,
    "momentum": 0.6,
    "optimizer": 0.55,
    "max_steps": 0.5,
    "epochs": 0.5,
    "weight_decay": 0.45,
    "dropout": 0.4,
    "data_augmentation": 0.4,
    "normalization": 0.35,
    "precise_bn": 0.32,
    "dropout_placement": 0.3,
    "activation": 0.3,
    "init": 0.25,
    "residual_connections": 0.25,
    "drop_last": 0.2,
    "shuffle": 0.2,
    "model_capacity": 0.2,
}

#: Hyperparameters that move the same underlying quantity: a run gets one direction per
#: group (training length, amount of regularisation, model size).
GROUPS: dict[str, str] = {
    "epochs": "training_length",
    "max_steps": "training_length",
    "weight_decay": "regularization",
    "dropout": "regularization",
    "data_augmentation": "regularization",
    "model_capacity": "capacity",
}

#: States whose LR/stability advice beats everything else (tier 0 of :func:`precedence`).
STABILITY_STATES = ("divergence", "exploding_gradients", "instability")

#: Tie-break order of states after tier and severity.
STATE_ORDER = (
    "divergence",
    "exploding_gradients",
    "instability",
    "batchnorm_collapse",
    "dead_units",
    "vanishing_gradients",
    "overfit",
    "underfit",
    "lr_schedule",
    "plateau",
    "undertrained",
)

#: States whose info-severity findings still get advice (the advice is cheap and safe).
INFO_STATES = ("lr_schedule", "undertrained")

#: The LR at which the loss turned, divided by this, is the proposed LR (a margin below
#: the observed unstable LR).
LR_SAFETY_FACTOR = 3.0
#: Weight decay proposed when a run has none (seeds 003).
DEFAULT_WEIGHT_DECAY = 5e-4
#: Dropout proposed when a run has none or very little (seeds 003: 0.2-0.5).
DEFAULT_DROPOUT = 0.3
#: Smallest batch size that gives BatchNorm usable statistics (anchors b9: 16-32).
MIN_BN_BATCH = 32
#: SGD momentum default (seeds 003).
SGD_MOMENTUM = 0.9
#: Warmup is capped at this share of the run's steps (tuning playbook).
MAX_WARMUP_SHARE = 0.10
#: Clip at this percentile of the grad norms logged before the trouble (tuning playbook).
CLIP_PERCENTILE = 90.0
#: When more than this share of all logged updates would be clipped, lower the LR instead.
MAX_CLIPPED_SHARE = 0.5


# ---------------------------------------------------------------------------
# Small numeric helpers
# ---------------------------------------------------------------------------


def _nice(x: float, digits: int = 2) -> float:
    """Round to ``digits`` significant figures: proposals should read like settings."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _nice_int(x: float) -> int:
    """Round a step count to two significant figures, at least 1."""
    return max(1, round(_nice(float(x), 2)))


def _fmt(x: Any) -> str:
    """Short human form of a number for rationales."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    x = float(x)
    if x.is_integer() and abs(x) < 1e7:
        return str(int(x))
    return f"{x:.3g}"


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


def _value_at(series: Series, step: float) -> float | None:
    """Last finite value logged at or before ``step`` (a schedule holds its value)."""
    fin = series.finite
    if not len(fin):
        return None
    idx = int(np.searchsorted(fin.steps, step, side="right")) - 1
    return float(fin.values[max(idx, 0)])


def _is_sgd(optimizer: Any) -> bool:
    """Plain SGD (with or without momentum), by name."""
    name = str(optimizer or "").lower()
    return "sgd" in name or name in ("momentum", "nesterov")


def _lr_is_small(lr: float, optimizer: Any) -> bool:
    """An LR at the bottom of the usual range (seeds 001: 1e-2 / 1e-3 / 1e-4)."""
    return lr < (1e-3 if _is_sgd(optimizer) else 1e-4)


def _truthy(value: Any) -> bool | None:
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


# ---------------------------------------------------------------------------
# Per-run context
# ---------------------------------------------------------------------------


class _Context:
    """Everything the generators read about one run, computed once and lazily."""

    def __init__(self, result: RunResult, overrides: Mapping[str, Any] | None):
        self.result = result
        self.run = result.run
        hp = dict(getattr(self.run, "hparams", {}) or {})
        hp.update(canonicalize(dict(overrides or {})))
        self.hp: dict[str, Any] = hp
        self.overridden = set(canonicalize(dict(overrides or {})))
        self.states = {
            f.state for f in result.findings if SEVERITY_RANK.get(f.severity, 0) >= 1
        }

    @cached_property
    def roles(self) -> RoleMap:
        if getattr(self.run, "scalars", None) is None:
            from diagnose.run import empty_scalars

            return resolve_roles(empty_scalars())
        return self.result.resolved_roles()

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
                return _nice(peak, 6), "logged peak"
        return None, ""

    @cached_property
    def uses_batchnorm(self) -> bool | None:
        norm = self.hp.get("normalization")
        if norm is None:
            return None
        text = str(norm).lower()
        if isinstance(norm, bool) or text in ("true", "false", "1", "0"):
            return bool(_truthy(norm))
        return "batch" in text or text == "bn"


# ---------------------------------------------------------------------------
# Candidates and the generators that make them
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cand:
    """A recommendation before conflict resolution."""

    rec: Recommendation
    impact: float
    group: str
    direction: int  # +1 more of the group's quantity, -1 less, 0 a categorical setting


def _cand(
    hyper: str,
    action: str,
    current: Any,
    proposed: Any,
    rationale: str,
    strength: float = 1.0,
    group: str | None = None,
    direction: int | None = None,
) -> _Cand:
    """Build a candidate; the direction follows the action unless given."""
    if direction is None:
        if action in ("increase", "enable"):
            direction = 1
        elif action in ("decrease", "disable"):
            direction = -1
        else:
            cur, new = finite_number(current), finite_number(proposed)
            direction = 0 if cur is None or new is None else int(np.sign(new - cur))
    if hyper in _COUNTS:
        current, proposed = _as_int(current), _as_int(proposed)
    rec = Recommendation(hyper, action, current, proposed, rationale)  # type: ignore[arg-type]
    return _Cand(rec, IMPORTANCE.get(hyper, 0.2) * strength, group or GROUPS.get(hyper, hyper),
                 direction)


#: Hyperparameters that count things: shown as integers when integral.
_COUNTS = ("epochs", "max_steps", "warmup_steps", "batch_size")


def _as_int(value: Any) -> Any:
    """12.0 -> 12 for counts read from logs as floats; anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _relative(factor: float) -> str:
    """Relative proposal when the current value is unknown: 'current/3' or 'current*3'."""
    if factor >= 1:
        return f"current*{_fmt(_nice(factor))}"
    return f"current/{_fmt(_nice(1 / factor))}"


def _concrete_hint(hyper: str) -> str:
    return f"pass --hparam {hyper}=VALUE to get a concrete value"


def _scale_lr(ctx: _Context, factor: float, reason: str, strength: float = 1.0) -> _Cand:
    """LR times ``factor`` (concrete when the LR is known, relative otherwise)."""
    action = "increase" if factor > 1 else "decrease"
    lr, source = ctx.lr
    how = f"x{_fmt(_nice(factor))}" if factor > 1 else f"/{_fmt(_nice(1 / factor))}"
    if lr is None:
        return _cand("learning_rate", action, None, _relative(factor),
                     f"{reason}, so scale the LR {how}; {_concrete_hint('learning_rate')}.",
                     strength)
    new = _nice(lr * factor)
    return _cand("learning_rate", action, lr, new,
                 f"{reason}, so scale the LR ({source} {_fmt(lr)}) {how} to {_fmt(new)}.",
                 strength)


def _warmup(ctx: _Context, trouble_step: float | None, reason: str,
            strength: float = 1.0) -> _Cand | None:
    """Warmup long enough to cover the early trouble, at most 10% of the run."""
    total = ctx.total_steps
    if trouble_step is None or not total or trouble_step > 0.5 * total:
        return None
    if MAX_WARMUP_SHARE * total < 1:
        return None  # the run is too short to warm up within 10% of it in log units
    current = finite_number(ctx.hp.get("warmup_steps"))
    # The playbook picks the largest feasible warmup within 10% of the run; a ramp shorter
    # than ~5% of it, or than twice the time the trouble took to show, does little.
    target = min(MAX_WARMUP_SHARE * total,
                 max(2 * (trouble_step - ctx.first_step), 0.05 * total))
    proposed = _nice_int(target)
    if current is not None and current >= proposed:
        return None
    unit = "epochs" if ctx.unit == "epoch" else "steps"
    note = " (the log counts epochs; convert to optimizer steps)" if ctx.unit == "epoch" else ""
    return _cand(
        "warmup_steps", "set" if current is None else "increase", current, proposed,
        f"{reason} at {unit[:-1]} {_fmt(trouble_step)} of {_fmt(total)}, so ramp the LR up "
        f"over {proposed} {unit} (at most {int(MAX_WARMUP_SHARE * 100)}% of the run){note}.",
        strength,
    )


def _clip(ctx: _Context, before_step: float | None, reason: str,
          strength: float = 1.0) -> tuple[_Cand | None, str]:
    """Clip threshold from the logged grad norms; returns (candidate, note for the LR).

    The note is non-empty when clipping is the wrong tool (more than half of the updates
    would be clipped: the playbook says lower the LR instead).
    """
    current = finite_number(ctx.hp.get("grad_clip"))
    clipping = current is not None and current > 0
    grads = ctx.grad_series
    if grads is None:
        if clipping:
            return None, ""
        return _cand(
            "grad_clip", "set", current, 1.0,
            f"{reason} and no grad-norm series is logged, so clip the global grad norm at 1.0 "
            "(the usual default) and log grad norms to set it at their 90th percentile.",
            0.8 * strength,
        ), ""
    fin = grads.finite
    pre = fin.values[fin.steps < before_step] if before_step is not None else fin.values
    if len(pre) < 5:
        # Too little calm history to take a percentile of: the norms logged during the
        # blow-up would set the threshold far too high.  Fall back to the usual default.
        if clipping:
            return None, ""
        return _cand(
            "grad_clip", "set", current, 1.0,
            f"{reason} after only {len(pre)} grad-norm points before the trouble, too few to "
            "take their 90th percentile, so clip the global grad norm at 1.0 (the usual "
            "default) and refine it from a calm run's grad norms.",
            0.8 * strength,
        ), ""
    p90 = float(np.percentile(pre, CLIP_PERCENTILE))
    if p90 <= 0:
        return None, ""
    if clipping:
        clipped = float(np.mean(fin.values > current))
        if clipped > MAX_CLIPPED_SHARE:
            return None, (f"{clipped:.0%} of the logged updates already exceed the clip "
                          f"threshold {_fmt(current)}")
        if p90 >= 0.8 * current:
            return None, ""
    share = float(np.mean(fin.values > p90))
    if share > MAX_CLIPPED_SHARE:
        return None, f"{share:.0%} of the logged updates would be clipped at {_fmt(_nice(p90))}"
    proposed = _nice(p90)
    where = f"before step {_fmt(before_step)}" if before_step is not None else "logged"
    return _cand(
        "grad_clip", "decrease" if clipping else "set", current, proposed,
        f"{reason}; the 90th percentile of the grad norms {where} is {_fmt(proposed)}, "
        f"so clip there ({share:.0%} of all logged updates would be clipped).",
        strength,
    ), ""


def _length_target(ctx: _Context, step: float) -> tuple[str, float | None, int]:
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


def _extend_length(ctx: _Context, factor: float, reason: str, strength: float = 1.0) -> _Cand:
    """Train ``factor`` times longer (epochs when the log counts epochs)."""
    max_steps, epochs = finite_number(ctx.hp.get("max_steps")), finite_number(ctx.hp.get("epochs"))
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
        return _cand(hyper, "increase", None, _relative(factor),
                     f"{reason}; {_concrete_hint(hyper)}.", strength)
    proposed = _nice_int(current * factor)
    return _cand(hyper, "increase", current, proposed,
                 f"{reason}, so train {round((factor - 1) * 100)}% longer: "
                 f"{_fmt(current)} -> {proposed}.", strength)


def _tail_gain(series: Series, share: float = 0.25) -> float | None:
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


def _momentum_fix(ctx: _Context, reason: str, strength: float = 1.0) -> _Cand | None:
    """SGD without momentum -> momentum 0.9 (seeds 003).

    Only when the run records momentum 0: most SGD setups keep momentum in a file the log
    does not carry (YOLOv5's hyp.yaml), so an unknown momentum is not evidence.
    """
    momentum = finite_number(ctx.hp.get("momentum"))
    if momentum is None or momentum > 0 or not _is_sgd(ctx.hp.get("optimizer")):
        return None
    return _cand("momentum", "increase", momentum, SGD_MOMENTUM,
                 f"{reason} with plain SGD (momentum 0), so use momentum {SGD_MOMENTUM} (or "
                 "switch to Adam, which is less sensitive to the LR).", strength)


# ----- per-state generators -------------------------------------------------

Generator = Callable[[_Context, Finding], list[_Cand]]


def _divergence(ctx: _Context, f: Finding) -> list[_Cand]:
    """Lower the LR from the evidence, then warmup and clipping."""
    loss = ctx.series_for(f, Role.TRAIN_LOSS)
    bad = _ev(f, "first_nonfinite_step", "nonfinite_step", "diverge_step", "divergence_step",
              "explode_step")
    if bad is None:
        bad = f.step
    # DIV001: loss_min_step; DIV002: best_step (onset_step is mid-rise); DIV004: window start
    turn = _ev(f, "loss_min_step", "best_step", "climb_step", "rise_start_step", "onset_step",
               "window_start_step", "min_step")
    loss_min = _ev(f, "loss_min", "best", "min_loss", "min_value")
    rise = _ev(f, "rise_ratio_before_nonfinite", "ratio_to_best", "rise_factor", "rise_ratio")
    if rise is None:  # DIV003: astronomical value against the early magnitude
        peak, early = _ev(f, "max_abs", "value"), _ev(f, "early_magnitude")
        rise = peak / early if peak is not None and early else None
    nonfinite = _ev(f, "first_nonfinite_step", "nonfinite_step") is not None
    points_between: int | None = None
    if loss is not None:
        fin = loss.finite
        pre = fin.steps < bad if bad is not None else np.ones(len(fin), bool)
        if turn is None and pre.any():
            i = int(np.argmin(fin.values[pre]))
            turn = float(fin.steps[pre][i])
        if loss_min is None and pre.any():
            loss_min = float(np.min(fin.values[pre]))
        if not nonfinite:
            nonfinite = bool((~np.isfinite(loss.values)).any())
        if turn is not None:
            after = fin.values[(fin.steps >= turn) & pre]
            if rise is None and loss_min is not None and loss_min > 0 and len(after):
                rise = float(np.max(after)) / loss_min
            points_between = int(((loss.steps > turn) & (loss.steps < (bad or np.inf))).sum())
    sudden = nonfinite and points_between is not None and points_between <= 3
    if (nonfinite and sudden) or (rise is not None and rise >= 100):
        divisor = 10.0
    elif nonfinite or (rise is not None and rise >= 10):
        divisor = 5.0
    else:
        divisor = 3.0
    what = "became non-finite" if nonfinite else "blew up"
    at = f" at step {_fmt(bad)}" if bad is not None else ""
    risen = f" after rising {_fmt(_nice(rise))}x" if rise is not None and rise > 1 else ""
    reason = f"the loss {what}{at}{risen}"
    out: list[_Cand] = []
    lr, source = ctx.lr
    lr_turn = _value_at(ctx.lr_series, turn) if ctx.lr_series is not None and turn else None
    scheduled = False
    if ctx.lr_series is not None:
        vals = ctx.lr_series.finite.values
        upto = vals[ctx.lr_series.finite.steps <= (bad if bad is not None else np.inf)]
        pos = upto[upto > 0]
        scheduled = len(pos) >= 2 and float(pos.max() / pos.min()) >= 1.5
    clip, clip_note = _clip(ctx, turn if turn is not None else bad,
                            f"{reason}", strength=0.9)
    if scheduled and lr_turn is not None and lr_turn > 0 and lr is not None:
        proposed = _nice(min(lr_turn / LR_SAFETY_FACTOR, lr / 2))
        note = f"; {clip_note}" if clip_note else ""
        out.append(_cand(
            "learning_rate", "decrease", lr, proposed,
            f"the loss turned upward at step {_fmt(turn)} while the logged LR was "
            f"{_fmt(lr_turn)} and {what}{at}, so use that LR /{_fmt(LR_SAFETY_FACTOR)} = "
            f"{_fmt(proposed)} (from {source} {_fmt(lr)}){note}.", 1.2))
    else:
        if sudden:
            how = "within 3 logged points of its minimum"
        elif divisor == 10:
            how = "a rise of 100x or more"
        elif divisor == 5:
            how = "after a gradual rise" if nonfinite else "a rise of 10x or more"
        else:
            how = "a rise under 10x"
        why = f"{reason} ({how})"
        if clip_note:
            why += f" and {clip_note}"
        out.append(_scale_lr(ctx, 1 / divisor, why, 1.2))
    warm = _warmup(ctx, turn if turn is not None else bad, "the loss started to climb")
    if warm is not None:
        out.append(warm)
    if clip is not None:
        out.append(clip)
    return out


def _instability(ctx: _Context, f: Finding) -> list[_Cand]:
    """Spiky or oscillating loss: milder LR cut, warmup if early, clip, bigger batch, decay."""
    first = _ev(f, "first_spike_step", "onset_step", "start_step") or (
        float(f.step) if f.step is not None else None)
    spikes = _ev(f, "spike_count", "n_spikes", "spikes", "oscillations")
    total = ctx.total_steps
    # INS002 (noisy_loss) is about late noise by construction: it carries noise_to_progress
    late = _ev_flag(f, "late") or "noise_to_progress" in f.evidence or (
        first is not None and total is not None and first > 0.5 * total)
    ratio = _ev(f, "noise_to_progress")
    what = "gradient-norm" if "grad" in str(f.metric or "").lower() else "loss"
    if spikes:
        count = f"{_fmt(spikes)} {what} spikes"
    elif ratio is not None:
        count = f"late loss noise is {ratio:.0%} of the progress made"
    else:
        count = "the loss oscillates"
    where = f" from step {_fmt(first)}" if first is not None else ""
    reason = f"{count}{where}"
    out = [_scale_lr(ctx, 1 / 3 if spikes and spikes >= 5 else 1 / 2, reason, 0.9)]
    if not late:
        warm = _warmup(ctx, first, "instability starts")
        if warm is not None:
            out.append(warm)
    clip, _ = _clip(ctx, first, reason, 0.9)
    if clip is not None:
        out.append(clip)
    batch = finite_number(ctx.hp.get("batch_size"))
    if batch is not None and batch < 256:
        out.append(_cand("batch_size", "increase", batch, int(batch * 2),
                         f"{reason}; a larger batch lowers gradient noise (tuning playbook), "
                         f"so double it to {int(batch * 2)} without raising the LR.", 0.8))
    if late:
        sched = _decay_schedule(ctx, f"{count} late in training{where}")
        if sched is not None:
            out.append(sched)
    return out


def _decay_schedule(ctx: _Context, reason: str, strength: float = 1.0) -> _Cand | None:
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
    return _cand("lr_schedule", "set", current, "cosine",
                 f"{reason} and {flat}, so decay it with a cosine schedule to ~1% of the "
                 "peak by the last step.", strength, direction=0)


def _exploding(ctx: _Context, f: Finding) -> list[_Cand]:
    """Clip first (the direct fix), then a lower LR, warmup and normalisation."""
    # GRD001: growth_factor from its low (low_step) to late_level, or first_nonfinite_step
    step = _ev(f, "explode_step", "first_nonfinite_step", "onset_step") or (
        float(f.step) if f.step is not None else None)
    before = _ev(f, "low_step") or step
    ratio = _ev(f, "growth_factor", "ratio", "growth", "explode_factor")
    low, late = _ev(f, "low"), _ev(f, "late_level")
    where = f" at step {_fmt(step)}" if step is not None else ""
    if ratio is not None and low is not None and late is not None:
        size = f" ({_fmt(_nice(ratio))}x, from {_fmt(_nice(low))} to {_fmt(_nice(late))})"
    elif ratio is not None:
        size = f" ({_fmt(_nice(ratio))}x)"
    else:
        size = " to non-finite values" if "first_nonfinite_step" in f.evidence else ""
    reason = f"grad norms exploded{size}{where}"
    out: list[_Cand] = []
    clip, note = _clip(ctx, before, reason, 1.5)
    if clip is not None:
        out.append(clip)
    out.append(_scale_lr(ctx, 1 / 3, reason + (f" and {note}" if note else ""), 0.9))
    warm = _warmup(ctx, step, "gradients exploded")
    if warm is not None:
        out.append(warm)
    if _truthy(ctx.hp.get("normalization")) is False:
        out.append(_cand("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                         f"{reason} in a network without normalization layers, so add "
                         "BatchNorm (or LayerNorm) after each linear/conv layer.", 1.0,
                         direction=0))
    return out


def _vanishing(ctx: _Context, f: Finding) -> list[_Cand]:
    """Vanishing gradients: activation, normalisation, residuals, init (AUTOTRAINER order)."""
    # GRD002: early_level -> late_level, collapse_factor
    level = _ev(f, "late_level", "grad_norm_median", "grad_norm", "value")
    collapse = _ev(f, "collapse_factor")
    reason = "gradients vanish" + (f" (norm {_fmt(_nice(level))}" if level is not None else "")
    if level is not None:
        reason += f", {_fmt(_nice(collapse))}x below its early level)" if collapse else ")"
    out: list[_Cand] = []
    act = str(ctx.hp.get("activation", "") or "").lower()
    if "relu" not in act and "gelu" not in act and "silu" not in act:
        out.append(_cand("activation", "set", ctx.hp.get("activation"), "relu",
                         f"{reason}; saturating activations (sigmoid/tanh) shrink gradients "
                         "layer by layer, so use ReLU.", 1.2, direction=0))
    if not ctx.uses_batchnorm and _truthy(ctx.hp.get("normalization")) is not True:
        out.append(_cand("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                         f"{reason}, so normalise activations (BatchNorm after each dense/conv "
                         "layer, LayerNorm for sequence models).", 1.2, direction=0))
    out.append(_cand("residual_connections", "enable", ctx.hp.get("residual_connections"),
                     True, f"{reason}, so add residual connections x + f(Norm(x)) to give "
                     "gradients a short path (tuning playbook).", 1.0))
    out.append(_cand("init", "set", ctx.hp.get("init"), "he_normal",
                     f"{reason}, so use He (Kaiming) initialisation matched to ReLU.", 1.0,
                     direction=0))
    return out


def _dead_units(ctx: _Context, f: Finding) -> list[_Cand]:
    """Dying ReLU: lower LR, leaky activation, init.  Saturated tanh/sigmoid: ReLU, norm."""
    saturated = _ev(f, "saturated_share")  # UNT002
    if saturated is not None:
        where = f" of {f.metric}" if f.metric else ""
        reason = f"{saturated:.0%}{where} sits in the flat tails of its activation"
        return [
            _cand("activation", "set", ctx.hp.get("activation"), "relu",
                  f"{reason}, where the gradient is ~0, so use ReLU.", 1.3,
                  direction=0),
            _cand("normalization", "set", ctx.hp.get("normalization"), "batchnorm",
                  f"{reason}, so normalise the pre-activations (BatchNorm/LayerNorm) to keep "
                  "them in the responsive range.", 1.2, direction=0),
            _cand("init", "set", ctx.hp.get("init"), "xavier_uniform",
                  f"{reason}, so use Xavier/Glorot initialisation scaled for tanh/sigmoid.",
                  1.0, direction=0),
        ]
    share = _ev(f, "zero_share", "dead_fraction", "dead_share")  # UNT001
    where = f" of {f.metric}" if f.metric else ""
    reason = (f"{share:.0%}{where} is exactly zero (dead ReLU units)"
              if share is not None and share <= 1 else "ReLU units died")
    out = [_scale_lr(ctx, 1 / 2, f"{reason}; large updates push units below zero for good",
                     0.9)]
    out.append(_cand("activation", "set", ctx.hp.get("activation"), "leaky_relu",
                     f"{reason}, so use LeakyReLU (slope 0.01) or ELU, which keep a gradient "
                     "for negative inputs.", 1.3, direction=0))
    out.append(_cand("init", "set", ctx.hp.get("init"), "he_normal",
                     f"{reason}, so use He initialisation with zero biases.", 1.0, direction=0))
    return out


def _overfit(ctx: _Context, f: Finding) -> list[_Cand]:
    """Stop at the best step, then regularise: weight decay, dropout, augmentation, size."""
    val = ctx.series_for(f, Role.VAL_LOSS)
    if val is None or val.split not in ("val", "test"):
        val = ctx.role(Role.VAL_LOSS) or ctx.role(Role.VAL_METRIC)
    # OVF001/OVF002: best_step, val_best, val_end, val_worsening_pct; OVF003: val_min(_step)
    best = _ev(f, "best_step", "val_min_step", "min_step", "best_epoch")
    best_value = _ev(f, "val_best", "val_min", "best_value", "min_value")
    end_value = _ev(f, "val_end", "val_final", "final_value", "last_value", "val_last")
    rise = _ev(f, "val_worsening_pct", "rise_pct", "rise_percent", "increase_pct")
    if val is not None:
        fin = val.finite
        better = np.argmax if val.higher_is_better else np.argmin
        if best is None:
            best = float(fin.steps[int(better(fin.values))])
        if best_value is None:
            best_value = _value_at(val, best)
        if end_value is None:
            end_value = float(fin.values[-1])
    if rise is None and best_value and end_value is not None:
        rise = abs(end_value - best_value) / abs(best_value) * 100
    name = val.metric.replace("_", " ") if val is not None else "val loss"
    if val is not None and val.split in ("val", "test") and not name.startswith(("val", "test")):
        name = f"val {name}"
    where = f" at step {_fmt(best)}" if best is not None else ""
    drift = f" and ended {_fmt(_nice(rise))}% worse" if rise is not None else ""
    best_txt = f" {_fmt(_nice(best_value, 3))}" if best_value is not None else ""
    reason = f"{name} was best ({best_txt.strip() or 'lowest'}){where}{drift}"
    strength = 1.0 if rise is None else float(np.clip(rise / 20.0, 0.6, 1.5))
    out: list[_Cand] = []
    last = ctx.last_step
    if best is not None and (last is None or best < last):
        hyper, current, proposed = _length_target(ctx, best)
        n_evals = len(val.finite) if val is not None else 0
        patience = max(3, min(10, n_evals // 15))  # AUTOTRAINER: max(3, epochs/15)
        out.append(_cand(
            hyper, "set", current, proposed,
            f"{reason}, so stop at {hyper.replace('_', ' ')} {proposed} (or early-stop on it "
            f"with patience {patience} evaluations and restore the best weights).",
            1.4 * strength, direction=-1))
    wd = finite_number(ctx.hp.get("weight_decay"))
    if wd is None:
        out.append(_cand("weight_decay", "set", None, DEFAULT_WEIGHT_DECAY,
                         f"{reason}, so add weight decay {DEFAULT_WEIGHT_DECAY:g} (if the run "
                         "already uses some, multiply it by 3 instead; "
                         f"{_concrete_hint('weight_decay')}).", strength, direction=1))
    elif wd <= 0:
        out.append(_cand("weight_decay", "increase", wd, DEFAULT_WEIGHT_DECAY,
                         f"{reason} with no weight decay, so add {DEFAULT_WEIGHT_DECAY:g} "
                         "(the usual default).", strength))
    elif wd < 0.1:
        factor = 10.0 if rise is not None and rise >= 50 else 3.0
        new = _nice(min(wd * factor, 0.1))
        out.append(_cand("weight_decay", "increase", wd, new,
                         f"{reason} with weight decay {_fmt(wd)}, so raise it x{_fmt(factor)} "
                         f"to {_fmt(new)}.", strength))
    if "batchnorm_collapse" not in ctx.states:
        drop = finite_number(ctx.hp.get("dropout"))
        placement = ("between dense layers, never directly before a BatchNorm layer"
                     if ctx.uses_batchnorm is not False else "between dense layers")
        if drop is None:
            out.append(_cand("dropout", "set", None, DEFAULT_DROPOUT,
                             f"{reason}, so add dropout {DEFAULT_DROPOUT} {placement} "
                             f"({_concrete_hint('dropout')} if the model has some).",
                             strength, direction=1))
        elif drop < 0.2:
            out.append(_cand("dropout", "increase", drop, DEFAULT_DROPOUT,
                             f"{reason} with dropout {_fmt(drop)}, so use {DEFAULT_DROPOUT} "
                             f"{placement}.", strength))
        elif drop < 0.5:
            new = round(min(0.5, drop + 0.1), 2)
            out.append(_cand("dropout", "increase", drop, new,
                             f"{reason} with dropout {_fmt(drop)}, so raise it to {_fmt(new)} "
                             "(0.5 is the usual ceiling).", strength))
    aug = next((k for k in ctx.hp if "augment" in str(k).lower()), None)
    aug_on = _truthy(ctx.hp.get(aug)) if aug else None
    if aug_on is not True:
        out.append(_cand("data_augmentation", "enable", ctx.hp.get(aug) if aug else None, True,
                         f"{reason}, so enlarge the effective data set with augmentation "
                         "(crops/flips for images, noise or mixup elsewhere).", strength))
    out.append(_cand("model_capacity", "decrease", None, "x0.5",
                     f"{reason}, so if regularisation is not enough halve the width or depth.",
                     strength))
    return out


def _underfit(ctx: _Context, f: Finding) -> list[_Cand]:
    """Too little capacity or too much regularisation: bigger model, less reg, longer."""
    reason = "the model underfits"
    # UND001: {split}_series/{split}_end against chance_accuracy/chance_loss;
    # UND002: best of val_metric, train_loss_fall_pct
    for split in ("val", "train"):
        end, tag = _ev(f, f"{split}_end"), f.evidence.get(f"{split}_series")
        if end is not None:
            acc = "acc" in str(tag).lower()
            chance = _ev(f, "chance_accuracy" if acc else "chance_loss")
            what = f"{split} {'accuracy' if acc else 'loss'}"
            reason += f" ({what} ends at {_fmt(_nice(end, 3))}"
            reason += f", chance {_fmt(_nice(chance, 3))})" if chance is not None else ")"
            break
    else:
        best = _ev(f, "best", "level", "value")
        if best is not None:
            name = str(f.evidence.get("val_metric") or f.metric or "the val metric")
            reason += f" ({name} never beats {_fmt(_nice(best, 3))})"
    out: list[_Cand] = []
    lr, _ = ctx.lr
    if lr is not None and _lr_is_small(lr, ctx.hp.get("optimizer")):
        factor = 10.0 if lr < 1e-5 else 3.0
        out.append(_scale_lr(ctx, factor, f"{reason} with a small LR", 1.0))
    out.append(_cand("model_capacity", "increase", None, "x2",
                     f"{reason}, so double the width or add layers (residual connections for "
                     "deep ones).", 2.6))
    wd = finite_number(ctx.hp.get("weight_decay"))
    if wd is not None and wd > 0:
        new = _nice(wd / 10) if wd / 10 >= 1e-6 else 0.0
        out.append(_cand("weight_decay", "decrease", wd, new,
                         f"{reason} while regularised with weight decay {_fmt(wd)}, so lower "
                         f"it to {_fmt(new)}.", 1.0))
    drop = finite_number(ctx.hp.get("dropout"))
    if drop is not None and drop >= 0.1:
        new = round(drop / 2, 2)
        out.append(_cand("dropout", "decrease", drop, new,
                         f"{reason} with dropout {_fmt(drop)}, so halve it to {_fmt(new)}.",
                         1.0))
    loss = ctx.role(Role.TRAIN_LOSS)
    gain = _tail_gain(loss) if loss is not None else None
    if gain is not None and gain > 0.02:
        out.append(_extend_length(ctx, 2.0, f"{reason} and train loss still fell "
                                  f"{gain:.0%} over the last quarter of the run", 1.0))
    mom = _momentum_fix(ctx, reason)
    if mom is not None:
        out.append(mom)
    return out


def _plateau(ctx: _Context, f: Finding) -> list[_Cand]:
    """Stalled: raise/cycle the LR when stuck at a poor level with a small LR; fix SGD."""
    # PLT001: flat_since_step, end, poor_level, train_improving; PLT002 (flat from the
    # start: nothing learned, so always poor): start, end, max_rel_move
    start = _ev(f, "flat_since_step", "plateau_start", "stall_step", "since_step") or (
        float(f.step) if f.step is not None else None)
    level = _ev(f, "end", "level", "plateau_level")
    poor = (_ev_flag(f, "poor_level", "poor", "at_chance", "near_chance")
            or "max_rel_move" in f.evidence or "underfit" in ctx.states)
    lr, _ = ctx.lr
    lr_now = _value_at(ctx.lr_series, start) if ctx.lr_series is not None and start else None
    small = lr is not None and _lr_is_small(lr, ctx.hp.get("optimizer"))
    annealed = (lr_now is not None and lr is not None and lr_now < 0.05 * lr)
    since = f" since step {_fmt(start)}" if start is not None else ""
    at = f" at {_fmt(_nice(level, 3))}" if level is not None else ""
    reason = f"the curve is flat{at}{since}"
    out: list[_Cand] = []
    if (poor or small) and not annealed:
        why = reason + (" at a poor level" if poor else "") + (
            f" with a small LR ({_fmt(lr)})" if small else "")
        out.append(_scale_lr(ctx, 3.0, f"{why}: a saddle plateau, not a minimum",
                             1.0))
        out.append(_cand("lr_schedule", "set", ctx.hp.get("lr_schedule"), "cyclic",
                         f"{why}, so cycle the LR (cyclical LR, Smith 2017, or cosine with "
                         "warm restarts) to cross the plateau.", 0.9, group="learning_rate",
                         direction=1))
    mom = _momentum_fix(ctx, reason)
    if mom is not None:
        out.append(mom)
    total = ctx.total_steps
    if not poor and start is not None and total and start - ctx.first_step < 0.5 * total:
        hyper, current, proposed = _length_target(ctx, start + 0.2 * (total - start))
        if current is not None and proposed < current:
            out.append(_cand(hyper, "set", current, proposed,
                             f"{reason} and saturated long before the end, so cut the run to "
                             f"{proposed} and spend the compute on other trials (tuning "
                             "playbook).", 0.6, direction=-1))
    if not out and not annealed:
        out.append(_cand("lr_schedule", "set", ctx.hp.get("lr_schedule"), "cyclic",
                         f"{reason}, so cycle the LR (cyclical LR, Smith 2017) to test whether "
                         "it sits on a saddle plateau rather than at a minimum.", 0.7,
                         group="learning_rate", direction=1))
    return out


def _batchnorm(ctx: _Context, f: Finding) -> list[_Cand]:
    """BN statistics broken: bigger batch, other norm, precise BN, drop_last, dropout order."""
    # BN001 branch erratic: val_median_jump_factor; branch chance: val_acc_median against
    # chance_accuracy; BN002: worst_tag, kind (collapse/explode), ratio; both: batch_size
    branch = _ev_text(f, "branch")
    jump, v_med = _ev(f, "val_median_jump_factor"), _ev(f, "val_acc_median")
    chance, ratio = _ev(f, "chance_accuracy"), _ev(f, "ratio")
    if branch == "erratic" and jump is not None:
        reason = (f"val loss jumps {_fmt(_nice(jump))}x between evaluations while train "
                  "loss is smooth (eval-mode BatchNorm statistics)")
    elif branch == "chance" and v_med is not None:
        at = f" (chance {_fmt(_nice(chance, 3))})" if chance is not None else ""
        reason = (f"val accuracy stays at {_fmt(_nice(v_med, 3))}{at} while train accuracy "
                  "is good (eval-mode BatchNorm statistics)")
    elif ratio is not None and f.evidence.get("worst_tag"):
        verb = "collapse" if _ev_text(f, "kind") == "collapse" else "explode"
        reason = (f"BatchNorm statistics {verb} ({f.evidence['worst_tag']} RMS changes "
                  f"{_fmt(_nice(ratio))}x)")
    else:
        reason = "BatchNorm statistics look broken"
    batch = finite_number(ctx.hp.get("batch_size"))
    if batch is None:
        batch = _ev(f, "batch_size")
    out: list[_Cand] = []
    if batch is not None and batch < MIN_BN_BATCH:
        out.append(_cand("batch_size", "increase", batch, MIN_BN_BATCH,
                         f"{reason} with batch size {_fmt(batch)}, so use at least "
                         f"{MIN_BN_BATCH} for stable batch statistics.",
                         1.5 if batch <= 8 else 1.0))
    elif batch is None:
        out.append(_cand("batch_size", "set", None, MIN_BN_BATCH,
                         f"{reason}; if the batch is below {MIN_BN_BATCH}, raise it "
                         f"({_concrete_hint('batch_size')}).", 0.8, direction=1))
    small = batch is not None and batch < MIN_BN_BATCH
    out.append(_cand("normalization", "set", ctx.hp.get("normalization"), "groupnorm",
                     f"{reason}{' and the batch is small' if small else ''}, so use "
                     "GroupNorm (or LayerNorm), which does not depend on batch statistics.",
                     1.2 if small else 0.9, direction=0))
    out.append(_cand("precise_bn", "enable", None, True,
                     f"{reason}, so recompute the BN running statistics over ~200 training "
                     "batches before evaluating (precise BN).", 1.0))
    drop = finite_number(ctx.hp.get("dropout"))
    if drop is None or drop > 0:
        out.append(_cand("dropout_placement", "set", None, "after_batchnorm",
                         f"{reason}; dropout right before a BN layer shifts the variance BN "
                         "estimates, so move dropout after the last BN layer.", 1.0,
                         direction=0))
    out.append(_cand("drop_last", "enable", ctx.hp.get("drop_last"), True,
                     f"{reason}, so shuffle the training data and drop the last incomplete "
                     "batch so no BN step sees a tiny batch.", 1.0))
    return out


def _lr_schedule(ctx: _Context, f: Finding) -> list[_Cand]:
    """Schedule anomalies: LR at zero for part of the run, or never decayed."""
    current = ctx.hp.get("lr_schedule")
    total = ctx.total_steps
    zero_from = _ev(f, "zero_from_step")  # LRS001
    if zero_from is not None:
        share = _ev(f, "share_of_run")
        part = f" ({share:.0%} of the run)" if share is not None else ""
        reason = f"the LR is 0 from step {_fmt(zero_from)}{part}, so those steps change nothing"
        horizon = f"{_fmt(total)} steps" if total else "the full run"
        name = str(current) if current else "cosine"
        out = [_cand("lr_schedule", "set", current, f"{name} over {horizon}",
                     f"{reason}: the scheduler's horizon is shorter than the run (often "
                     "stepped per batch but sized in epochs), so size it to "
                     f"{horizon}.", 1.0, direction=0)]
        hyper, cur, proposed = _length_target(ctx, zero_from)
        if cur is not None and proposed < cur:
            out.append(_cand(hyper, "set", cur, proposed,
                             f"{reason}, so stop at {proposed} if the schedule stays as it "
                             "is.", 0.8, direction=-1))
        return out
    lr = _ev(f, "lr")  # LRS002
    text = str(current or "").lower()
    proposed = "step" if "cos" in text else "cosine"
    flat = f"the LR stays at {_fmt(lr)}" if lr is not None else "the LR never decays"
    share = _ev(f, "gain_share")
    tail = (f" while the loss gains only {share:.0%} of its progress in the second half"
            if share is not None else "")
    return [_cand("lr_schedule", "set", current, proposed,
                  f"{flat}{tail}, so decay it with a {proposed} schedule (to ~1% of the peak "
                  "at the last step).", 1.0, direction=0)]


def _undertrained(ctx: _Context, f: Finding) -> list[_Cand]:
    """Still improving at the end: extend by the observed slope (+50% or +100%)."""
    # PRG001: tail_start_value -> tail_end_value over the last threshold_tail_frac of
    # steps, tail_gain_share = that gain over the run's total progress, lr_end_over_peak
    start, end = _ev(f, "tail_start_value"), _ev(f, "tail_end_value")
    share = _ev(f, "tail_gain_share")
    tail_frac = _ev(f, "threshold_tail_frac") or 0.25
    series = ctx.series_for(f, Role.VAL_LOSS) or ctx.role(Role.VAL_METRIC) or ctx.role(
        Role.TRAIN_LOSS)
    gain = None
    if start is not None and end is not None and start != 0:
        gain = abs(end - start) / abs(start)
    elif series is not None:
        gain = _tail_gain(series, tail_frac)
    name = series.metric.replace("_", " ") if series is not None else "the curve"
    if series is not None and series.split in ("val", "test") and not name.startswith("val"):
        name = f"val {name}"
    big = (gain is not None and gain >= 0.05) or (share is not None and share >= 0.15)
    factor = 2.0 if big else 1.5
    if gain is not None and gain > 0:
        moved = (f" from {_fmt(_nice(start, 3))} to {_fmt(_nice(end, 3))}"
                 if start is not None and end is not None else "")
        of_total = f", {share:.0%} of its total progress" if share is not None else ""
        reason = (f"{name} still improved{moved} ({gain:.1%}) over the last "
                  f"{tail_frac:.0%} of steps{of_total}")
    else:
        reason = f"{name} is still improving at the end"
    annealed = _ev(f, "lr_end_over_peak")
    if annealed is not None and annealed < 0.05:
        reason += " even though the LR had already decayed (stretch the whole schedule)"
    out = [_extend_length(ctx, factor, reason, 1.2)]
    sched = _decay_schedule(ctx, f"{reason}")
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


def precedence(finding: Finding, index: int = 0) -> tuple:
    """Sort key: lower wins.  Stability states first, then severity, state order, step.

    Divergence/instability always decide the LR direction over plateau/underfit (a run
    that blows up must not be told to raise its LR); otherwise the more severe finding
    wins, then the state order, then the earlier finding.
    """
    tier = 0 if finding.state in STABILITY_STATES else 1
    order = STATE_ORDER.index(finding.state) if finding.state in STATE_ORDER else len(
        STATE_ORDER)
    step = finding.step if finding.step is not None else math.inf
    return (tier, -SEVERITY_RANK.get(finding.severity, 0), order, step, index)


def _resolve(findings: list[Finding], cands: list[list[_Cand]]) -> list[list[Recommendation]]:
    """One coherent set per run: one direction per group, one value per hyperparameter."""
    order = sorted(range(len(findings)), key=lambda i: precedence(findings[i], i))
    direction: dict[str, int] = {}
    value: dict[str, Recommendation] = {}
    for i in order:
        for c in sorted(cands[i], key=lambda c: -c.impact):
            if c.direction != 0:
                direction.setdefault(c.group, c.direction)
    kept: list[list[_Cand]] = []
    for i in range(len(findings)):
        keep = [c for c in cands[i] if c.direction == 0 or direction.get(c.group) == c.direction]
        kept.append(keep)
    for i in order:
        for c in sorted(kept[i], key=lambda c: -c.impact):
            value.setdefault(c.rec.hyperparameter, c.rec)
    out: list[list[Recommendation]] = []
    for i in range(len(findings)):
        seen: set[str] = set()
        recs: list[Recommendation] = []
        for c in sorted(kept[i], key=lambda c: (-c.impact, c.rec.hyperparameter)):
            name = c.rec.hyperparameter
            if name in seen:
                continue
            seen.add(name)
            recs.append(value[name])
        out.append(recs)
    return out


def _wants_advice(finding: Finding) -> bool:
    """Pathological findings only: not ``log``/unknown states, info only where useful."""
    if finding.state not in GENERATORS:
        return False
    return finding.severity != "info" or finding.state in INFO_STATES


def recommend(result: RunResult, overrides: Mapping[str, Any] | None = None) -> RunResult:
    """Attach concrete, ordered, mutually consistent recommendations to every finding.

    ``overrides`` are ``--hparam KEY=VALUE`` / ``[tool.diagnose.hparams]`` values; they
    are canonicalised and win over what the log recorded.  Findings that already carry
    recommendations (from a custom rule) keep them, but they take part in the conflict
    resolution.  Returns a new :class:`RunResult`; the input is not modified.
    """
    if not result.findings:
        return replace(result, findings=[])
    ctx = _Context(result, overrides)
    cands: list[list[_Cand]] = []
    for f in result.findings:
        found: list[_Cand] = []
        if f.recommendations:
            found = [
                _cand(r.hyperparameter, r.action, r.current, r.proposed, r.rationale,
                      strength=1.0 - 0.01 * k)
                for k, r in enumerate(f.recommendations)
            ]
        elif _wants_advice(f):
            found = GENERATORS[f.state](ctx, f)
        cands.append(found)
    recs = _resolve(result.findings, cands)
    findings = [
        f.with_recommendations(r) if (r or f.recommendations) else f
        for f, r in zip(result.findings, recs, strict=True)
    ]
    return replace(result, findings=findings)
