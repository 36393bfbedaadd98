"""Reconciliation: one coherent set of changes per run.

Every move proposes a :class:`Candidate` (a recommendation with an impact, the quantity
group it moves and its direction); :func:`resolve` keeps one direction per group and one
value per hyperparameter across all findings of a run, the finding with the higher
:func:`precedence` deciding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnose.findings import SEVERITY_RANK, Finding, Recommendation
from diagnose.hparams import finite_number

#: Expected impact of changing each hyperparameter (seeds 003: LR first; then batch size
#: and momentum; then Adam params, weight decay, dropout, architecture).  A candidate's
#: impact is this weight times the strength of its evidence; findings list their
#: recommendations by impact, highest first.
IMPORTANCE: dict[str, float] = {
    "learning_rate": 1.0,
    "lr_step_factor": 1.0,  # the LR itself after a schedule step
    "standardize_targets": 1.0,  # unscaled regression targets: the LR cannot fix the scale
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
    "bn_momentum": 0.35,
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


@dataclass(frozen=True)
class Candidate:
    """A recommendation before conflict resolution."""

    rec: Recommendation
    impact: float
    group: str
    direction: int  # +1 more of the group's quantity, -1 less, 0 a categorical setting


def candidate(
    hyper: str,
    action: str,
    current: Any,
    proposed: Any,
    rationale: str,
    strength: float = 1.0,
    group: str | None = None,
    direction: int | None = None,
    together: tuple[Recommendation, ...] = (),
    together_needed: bool = True,
) -> Candidate:
    """Build a candidate; the direction follows the action unless given.  ``together``:
    changes applied in the same trial (``together_needed``: the change only works with
    them; else they are companions that help it)."""
    if direction is None:
        if action in ("increase", "enable"):
            direction = 1
        elif action in ("decrease", "disable"):
            direction = -1
        else:
            cur, new = finite_number(current), finite_number(proposed)
            direction = 0 if cur is None or new is None else int(np.sign(new - cur))
    if hyper in COUNTS:
        current, proposed = as_int(current), as_int(proposed)
    rec = Recommendation(hyper, action, current, proposed, rationale,  # type: ignore[arg-type]
                         together, together_needed)
    return Candidate(rec, IMPORTANCE.get(hyper, 0.2) * strength, group or GROUPS.get(hyper, hyper),
                 direction)


#: Hyperparameters that count things: shown as integers when integral.
COUNTS = ("epochs", "max_steps", "warmup_steps", "batch_size")


def as_int(value: Any) -> Any:
    """12.0 -> 12 for counts read from logs as floats; anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value



def precedence(finding: Finding, index: int = 0) -> tuple[Any, ...]:
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


def resolve(findings: list[Finding], cands: list[list[Candidate]]) -> list[list[Recommendation]]:
    """One coherent set per run: one direction per group, one value per hyperparameter."""
    order = sorted(range(len(findings)), key=lambda i: precedence(findings[i], i))
    direction: dict[str, int] = {}
    value: dict[str, Recommendation] = {}
    for i in order:
        for c in sorted(cands[i], key=lambda c: -c.impact):
            if c.direction != 0:
                direction.setdefault(c.group, c.direction)
    kept: list[list[Candidate]] = []
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
