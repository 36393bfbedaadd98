"""Check each run's intended label on its own curves, straight from DESIGN.md's definitions.

Usage::

    python bench/calibration/label_check.py [--store runs.jsonl.gz] [-o labels.tsv]

A run is labelled by construction (its cause), then this script reads the stored curves
and decides, state by state, *yes*, *no* or *unclear* with simple, explicit criteria
written from "What each state means" (DESIGN.md). It deliberately shares nothing with
diagnose's detectors (that would make the benchmark circular): plain numpy on the stored
series, thresholds named below.

- Every state decided and the set equals the intended one: **kept**.
- Every state decided but the set differs (a mild cause that did not bite, an underfit
  that also stalled early, a long healthy run that did overfit): **relabelled** to what
  the curves show. batchnorm_collapse is only considered for models with batch norm.
- Any deciding state unclear: **dropped** (with the reason).

Reference levels: the untrained loss ``L0`` is ``ln C`` for C-way cross-entropy (C = the
class count, the vocabulary for the char LM) and the target variance for MSE; the chance
level is the loss of predicting the label frequencies (below ``L0`` on imbalanced sets).
"Good" is measured against ``Lref``, the 10th percentile of the best val loss reached by
the corpus' runs on the same data set and class count (the data set's, scaled by ``L0``,
for rare class counts): quality ``q = (L0 - L) / (L0 - Lref)``, with the level ``L`` the
better of the train and val tails.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store

HERE = Path(__file__).resolve().parent
LABELS = HERE / "labels.tsv"

# Named thresholds (the meaning is DESIGN.md's; these numbers make it checkable).
TAIL = 0.2            # the "end" of a curve: its last 20% of points (at least 2)
DIV_FACTOR = 3.0      # divergence: tail >= 3x the untrained loss ...
DIV_CLEAR_NO = 1.5    # ... and clearly not when the tail is under 1.5x and finite
DIV_BACK_TO_CHANCE = 0.9  # or: after being fine (<= half of L0), back at >= 0.9 L0
OVF_RISE_YES = 0.15   # overfit: val tail >= 15% above its minimum ...
OVF_RISE_NO = 0.07    # ... not overfit below 7% ("flat or wiggling by a few percent")
OVF_ABS = 0.05        # ... the rise is >= 0.05 L0 in loss units ...
OVF_GAP = 0.10        # ... and the val-train gap ends >= 0.1 L0 ("large") and grew
OVF_GAP_NO = 0.05     # not overfit when the gap ends under 0.05 L0
GOOD_Q = 0.8          # quality >= 0.8: a good level
POOR_Q = 0.6          # quality < 0.6: a poor level
LEARNED_BELOW = 0.8   # "learns": its best loss got below 0.8x the chance level
FLAT_BEST = 0.9       # "never leaves its initial level": best >= 0.9x chance ...
FLAT_END = 0.9        # ... and still >= 0.9x chance at the end
GAP_RATIO = 0.75      # underfit's small gap: train tail >= 0.75x val tail
EARLY = 0.2           # plateau: stops improving within the first 20% of the run ...
LATE_GAIN_NO = 0.1    # ... i.e. < 10% of its total improvement comes after that
LATE_GAIN_YES = 0.3   # still improving: >= 30% of it comes later
PLATEAU_VAL_EVALS = 3  # "stops improving" is read on val with >= 3 evaluations, one
                       # by EARLY + EARLY_WINDOW: the per-step train curve's minibatch
                       # noise puts a low dip in any early window, which made steadily
                       # falling runs plateau
EARLY_WINDOW = 0.05   # the level "by EARLY" is read on (EARLY +- 5%) of the run: on train
                      # the median of those points (the tail's statistic, not a noisy
                      # minimum), on val its best evaluation up to EARLY + 5% ("roughly")
NOISE_SE = 2.0        # on train, the late gain is compared with LATE_GAIN_NO/_YES give or
                      # take 2 standard errors of its two medians (minibatch noise): a
                      # gain the noise could make either side of a threshold is unclear
ACC_LEARNED = 0.25    # val accuracy rose >= 25% of the way from chance to 1 (from its first
                      # evaluation, and ends there): it left its initial level whatever the
                      # loss says (under-confident logits keep a cross-entropy near ln C
                      # while the argmax learned)
ACC_GOOD = 0.85       # val accuracy >= 85% of the way from chance to 1 is a good level a
                      # log shows by itself: a loss "poor" only against the data set's
                      # reference (which no log knows) then contradicts it -> unclear
ACC_MIN_EVALS = 3     # accuracy is read only with >= 3 finite val evaluations
BN_TRAIN_GOOD = 0.4   # batchnorm_collapse: train tail <= 0.4 L0 (or quality >= 0.6) ...
BN_VAL_BAD = 0.9      # ... while val sits at >= 0.9 L0 (chance or worse) ...
BN_VAL_NEVER = 0.6    # ... and never got below 0.6 L0 (val never good first)
BN_VAL_GOOD = 0.4     # not BN collapse: val reached <= 0.4 L0 at some point ...
BN_SWING = 1.5        # ... unless it swings: >= 20% of evaluations (>= 2), one of the
                      # first 3 and one in the second half among them, at >= 1.5 L0

VAL_BLOWN = 3.0       # a val loss sitting >= 3x L0 must be explained by a state, or drop

YES, NO, UNCLEAR = "yes", "no", "unclear"


@dataclass
class Curves:
    """The series one run logged, reduced to what the criteria read."""

    train: np.ndarray          # train loss, binned to <= 40 points (median per bin)
    train_raw: np.ndarray
    val: np.ndarray | None     # val loss
    train_x: np.ndarray        # fraction of the run at each binned train point
    val_x: np.ndarray | None
    l0: float                  # the untrained model's loss
    lref: float                # a good loss on this data
    chance: float              # the label-frequency level (<= l0)
    val_acc: np.ndarray | None = None  # val accuracy (finite values), when logged
    chance_acc: float = 0.0    # the accuracy of predicting the majority class


def _binned(steps: Sequence[int], values: Sequence[float], total: int,
            bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Median per equal-width step bin: the per-epoch curve, not the minibatch noise."""
    s, v = np.asarray(steps, float), np.asarray(values, float)
    if len(v) <= bins:
        return s / max(total, 1), v
    edges = np.linspace(s.min(), s.max() + 1, bins + 1)
    xs, ys = [], []
    for lo, hi in itertools.pairwise(edges):
        m = (s >= lo) & (s < hi)
        if m.any():
            vals = v[m]
            fin = vals[np.isfinite(vals)]
            # a bin that is mostly non-finite stays non-finite
            ys.append(np.median(fin) if len(fin) * 2 > len(vals) else np.nan)
            xs.append(s[m].mean())
    return np.asarray(xs) / max(total, 1), np.asarray(ys)


def untrained_loss(cfg: dict[str, Any]) -> float:
    if cfg["task"] == "reg":
        return float(cfg["target_scale"]) ** 2
    return math.log(cfg["n_classes"])


@functools.cache
def prior_entropy(dataset: str) -> float | None:
    """Loss of predicting the class frequencies (the chance level of an imbalanced set)."""
    if dataset not in ("breast_cancer", "wine", "iris", "digits"):
        return None  # the synthetic sets are balanced
    from sklearn import datasets as skd

    target = getattr(skd, f"load_{dataset}")().target
    p = np.bincount(target) / len(target)
    return float(-(p * np.log(p)).sum())


def chance_loss(cfg: dict[str, Any]) -> float:
    """The level a model sits at when it learned nothing but the label frequencies."""
    l0 = untrained_loss(cfg)
    h = prior_entropy(cfg["dataset"]) if cfg["task"] == "cls" else None
    return min(l0, h) if h else l0


def chance_accuracy(cfg: dict[str, Any]) -> float:
    """The accuracy of always predicting the most frequent class (1/C on balanced sets)."""
    if cfg["dataset"] in ("breast_cancer", "wine", "iris", "digits"):
        from sklearn import datasets as skd

        target = getattr(skd, f"load_{cfg['dataset']}")().target
        return float(np.bincount(target).max() / len(target))
    return 1.0 / max(int(cfg.get("n_classes") or 1), 1)


def ref_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    c = rec["config"]
    return (c["dataset"], c.get("n_classes"))


def reference_levels(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], float]:
    """Per data set: the 10th percentile of the runs' best val loss (scale-free for MSE)."""
    best: dict[tuple[Any, ...], list[float]] = {}
    for rec in records:
        s = store.series(rec, "val_loss")
        if not s:
            continue
        v = np.asarray(s[1], float)
        v = v[np.isfinite(v)]
        if len(v):
            scale = untrained_loss(rec["config"])
            best.setdefault(ref_key(rec), []).append(float(v.min()) / scale)
    refs = {k: float(np.percentile(v, 10)) for k, v in best.items() if len(v) >= 5}
    by_ds: dict[tuple[Any, ...], list[float]] = {}
    for k, v in best.items():  # fallback for rare class counts: the data set's ratio
        by_ds.setdefault((k[0],), []).extend(v)
    refs.update({k: float(np.percentile(v, 10)) for k, v in by_ds.items()})
    return refs


def curves(rec: dict[str, Any], refs: dict[tuple[Any, ...], float]) -> Curves | None:
    cfg = rec["config"]
    tr = store.series(rec, "train_loss")
    if not tr:
        return None
    total = cfg["total_steps"]
    tx, ty = _binned(tr[0], tr[1], total)
    va = store.series(rec, "val_loss")
    vx = vy = None
    if va:
        vx, vy = _binned(va[0], va[1], total)
    l0 = untrained_loss(cfg)
    key = ref_key(rec)
    lref = refs.get(key, refs.get(key[:1], 0.0)) * l0
    acc = store.series(rec, "val_acc") if cfg["task"] == "cls" else None
    va_acc = None
    if acc:
        a = np.asarray(acc[1], float)
        va_acc = a[np.isfinite(a)]
    return Curves(ty, np.asarray(tr[1], float), vy, tx, vx, l0, min(lref, 0.5 * l0),
                  chance_loss(cfg), va_acc,
                  chance_accuracy(cfg) if va_acc is not None else 0.0)


def tail(v: np.ndarray) -> np.ndarray:
    return v[-max(2, math.ceil(len(v) * TAIL)):]


def tail_level(v: np.ndarray) -> float:
    """Median of the tail; non-finite if most of the tail is non-finite."""
    t = tail(v)
    fin = t[np.isfinite(t)]
    return float(np.median(fin)) if len(fin) * 2 > len(t) else math.inf


def quality(c: Curves, level: float) -> float:
    return (c.l0 - level) / max(c.l0 - c.lref, 1e-12)


# ---------------------------------------------------------------------------
# One criterion per state
# ---------------------------------------------------------------------------


def divergence(c: Curves) -> tuple[str, str]:
    """Non-finite and staying so, or sustained far above the untrained loss.

    The val loss counts only when the train loss is not fine too: a huge val loss while
    train is fine is not divergence (DESIGN.md: see batchnorm_collapse).
    """
    worst = ""
    train_fine = tail_level(c.train) < DIV_CLEAR_NO * c.l0
    for name, v in (("train", c.train), ("val", c.val)):
        if v is None or len(v) < 2 or (name == "val" and train_fine):
            continue
        t = tail_level(v)
        if not math.isfinite(t):
            return YES, f"{name} loss non-finite at the end"
        if t >= DIV_FACTOR * c.l0:
            return YES, f"{name} tail {t:.3g} >= {DIV_FACTOR}x untrained {c.l0:.3g}"
        k = len(v) - len(tail(v))
        head = v[:k][np.isfinite(v[:k])]
        # back at chance after being fine; with a val curve, val must have been fine too
        # (one noisy minibatch dip in a train curve under heavy dropout is not "fine")
        vfin = _finite(c.val)
        val_was_fine = len(vfin) < 3 or vfin.min() <= 0.5 * c.l0
        if (len(head) and head.min() <= 0.5 * c.l0 and t >= DIV_BACK_TO_CHANCE * c.l0
                and val_was_fine):
            return YES, f"{name} back at chance {t:.3g} after {head.min():.3g}"
        if name == "train" and t >= DIV_CLEAR_NO * c.l0:
            worst = f"train tail {t:.3g} between {DIV_CLEAR_NO}x and {DIV_FACTOR}x untrained"
    # val far above while train is fine is not divergence (DESIGN: see batchnorm_collapse);
    # a train-mode loss raised by heavy dropout while val is fine is not either
    if (worst and c.val is not None and len(c.val) >= 2
            and tail_level(c.val) < DIV_CLEAR_NO * c.l0):
        return NO, ""
    return (UNCLEAR, worst) if worst else (NO, "")


def batchnorm_collapse(c: Curves) -> tuple[str, str]:
    """Train good while val sits at chance or worse from the first evaluations."""
    if c.val is None or len(c.val) < 3:
        return NO, ""
    t = tail_level(c.train)
    vfin = c.val[np.isfinite(c.val)]
    if not len(vfin):
        return UNCLEAR, "val never finite"
    vmed, vmin = float(np.median(vfin)), float(vfin.min())
    train_good = t <= BN_TRAIN_GOOD * c.l0 or quality(c, t) >= POOR_Q
    high = vfin >= BN_SWING * c.l0
    # swinging: high evaluations from the first three on, and still in the second half
    swings = (high.sum() >= max(2, 0.2 * len(vfin)) and bool(high[:3].any())
              and bool(high[len(high) // 2:].any()))
    if train_good and vmed >= BN_VAL_BAD * c.l0 and vmin >= BN_VAL_NEVER * c.l0:
        return YES, f"train {t:.3g} good, val median {vmed:.3g} min {vmin:.3g} vs L0 {c.l0:.3g}"
    if train_good and swings:
        return YES, f"train {t:.3g} good, val swings: {int(high.sum())}/{len(vfin)} evals " \
                    f">= {BN_SWING} L0 from the start"
    if not train_good or (not swings and (vmin <= BN_VAL_GOOD * c.l0
                                          or vmed < BN_VAL_BAD * c.l0)):
        return NO, ""
    return UNCLEAR, f"val median {vmed:.3g} min {vmin:.3g}, train {t:.3g}"


def overfit(c: Curves, has_bn: bool) -> tuple[str, str]:
    """Val turns upward after its minimum while train keeps falling; the gap grows.

    With batch norm, val must have learned first (else it is batchnorm_collapse); without
    it a val that never got good and rises is memorisation, which is overfit. "Learned"
    is read on the level val reached, not on its own first evaluation: a val already far
    below chance at its first evaluation learned before it (a sparse or late first eval).
    A batch-norm val that never left chance yet rises with train falling and the gap
    growing is not healthy either: collapse or overfit, which batchnorm_collapse() did not
    decide, so it is unclear (dropped), never "no".
    """
    if c.val is None or len(c.val) < 3:
        return NO, ""
    v = c.val
    fin = np.isfinite(v)
    if not fin.all():
        return UNCLEAR, "non-finite val"
    i = int(np.argmin(v))
    vmin, vt = float(v[i]), tail_level(v)
    rise = (vt - vmin) / max(abs(vmin), 1e-12)
    # train at the val minimum vs at the end (binned train on the same run fraction)
    j = int(np.searchsorted(c.train_x, c.val_x[i])) if c.val_x is not None else 0
    j = min(j, len(c.train) - 1)
    t_at, t_end = float(c.train[j]), tail_level(c.train)
    gap_min, gap_end = vmin - t_at, vt - t_end
    if rise < OVF_RISE_NO or i >= len(v) - 1 or gap_end < OVF_GAP_NO * c.l0:
        return NO, ""
    train_falls = t_end <= 0.9 * t_at or t_end <= 0.05 * c.l0
    growing = gap_end >= max(gap_min, 0.0) + 0.5 * (vt - vmin)
    learned_first = vmin <= LEARNED_BELOW * c.chance or not has_bn
    # a trend, not noise: the rise beats twice the val curve's point-to-point jitter
    jitter = float(np.median(np.abs(np.diff(v)))) if len(v) > 2 else 0.0
    if (rise >= OVF_RISE_YES and vt - vmin >= OVF_ABS * c.l0 and train_falls and growing
            and gap_end >= OVF_GAP * c.l0 and learned_first and vt - vmin >= 2 * jitter):
        return YES, f"val {vmin:.3g} -> {vt:.3g} (+{rise:.0%}), train {t_at:.3g} -> {t_end:.3g}"
    if not train_falls:
        return NO, ""
    if not learned_first:
        return UNCLEAR, f"batch-norm val never left chance (min {vmin:.3g}, chance " \
                        f"{c.chance:.3g}) yet rises {rise:.0%}: collapse or overfit"
    return UNCLEAR, f"val rise {rise:.0%}, gap {gap_min:.3g} -> {gap_end:.3g}"


def _finite(v: np.ndarray | None) -> np.ndarray:
    return np.zeros(0) if v is None else v[np.isfinite(v)]


def accuracy_quality(c: Curves) -> tuple[float, float] | None:
    """(rise from the first evaluation, end level) of the val accuracy, as fractions of
    the way from chance to 1; None when not logged.

    Knowable from the log alone (no reference level): what the argmax learned.
    """
    a = c.val_acc
    if a is None or len(a) < ACC_MIN_EVALS:
        return None
    span = max(1.0 - c.chance_acc, 1e-12)
    end = float(np.median(tail(a)))
    return (end - float(a[0])) / span, (end - c.chance_acc) / span


def _median_se(v: np.ndarray, n: int) -> float:
    """Standard error of the median of n points of a noisy curve (noise from its steps)."""
    if len(v) < 3 or n < 1:
        return 0.0
    sd = float(np.median(np.abs(np.diff(v)))) / (0.6745 * math.sqrt(2))
    return 1.2533 * sd / math.sqrt(n)


def late_gains(c: Curves) -> list[tuple[str, float, float, float, float]]:
    """(curve, level by EARLY, end level, late gain, its standard error) for "stops
    improving early".

    The late gain is the share of the curve's improvement (from the untrained level, or
    from its own start when that is higher: a blown-up first point) made after EARLY.
    Train: the median of its points within EARLY_WINDOW of EARLY (the nearest point when
    none) against its tail median, both robust to minibatch noise. Val, when it has >=
    PLATEAU_VAL_EVALS evaluations and one by EARLY + EARLY_WINDOW: its best one by then
    (per-epoch evaluations: no minibatch noise term).
    """
    out: list[tuple[str, float, float, float, float]] = []
    curves_ = [("train", c.train_x, c.train)]
    if c.val is not None and c.val_x is not None:
        curves_.append(("val", c.val_x, c.val))
    for name, xs, ys in curves_:
        fin = np.isfinite(ys)
        x, y = xs[fin], ys[fin]
        if name == "val":
            by = x <= EARLY + EARLY_WINDOW
            if len(y) < PLATEAU_VAL_EVALS or not by.any():
                continue
            early = float(y[by].min())
            se = 0.0
        else:
            if not len(y):
                continue
            near = np.abs(x - EARLY) <= EARLY_WINDOW
            window = y[near] if near.any() else y[[int(np.argmin(np.abs(x - EARLY)))]]
            early = float(np.median(window))
            se = math.hypot(_median_se(y, len(window)), _median_se(y, len(tail(ys))))
        end = tail_level(ys)
        total = max(c.l0, float(y[0])) - end
        # a curve that ends above where it started did not improve late: no noise term
        out.append((name, early, end, (early - end) / total if total > 0 else 0.0,
                    se / total if total > 0 else 0.0))
    return out


def fit_state(c: Curves) -> tuple[str, str, str, str]:
    """(underfit, why, plateau, why): how well and how long the model fitted its data.

    The fitting is read on the train curve (binned); "poor" and "good" on the better of
    the train and val tails (train-mode loss under heavy dropout sits above val).
    """
    tr = _finite(c.train)
    if len(tr) < 3:
        return UNCLEAR, "too few points", UNCLEAR, "too few points"
    va = _finite(c.val)
    t_end = tail_level(c.train)
    v_end = tail_level(c.val) if len(va) >= 2 else math.inf
    level = min(t_end, v_end)
    q = quality(c, level)
    # did it learn? read on val when there are >= 3 evaluations (minibatch noise in a
    # per-step train curve can dip below any threshold once)
    best = float(va.min()) if len(va) >= 3 else float(tr.min())
    aq = accuracy_quality(c)
    # the val accuracy left chance: the run left its initial level even when its loss
    # (under-confident logits, heavy dropout) stays near ln C
    acc_left = aq is not None and min(aq) >= ACC_LEARNED
    acc_good = aq is not None and aq[1] >= ACC_GOOD
    flat_from_start = (best >= FLAT_BEST * c.chance and level >= FLAT_END * c.chance
                       and not acc_left)
    learned = best <= LEARNED_BELOW * c.chance or acc_left  # else "learned a little"?
    small_gap = not math.isfinite(v_end) or t_end >= GAP_RATIO * v_end
    # underfit
    if q >= GOOD_Q:
        und, uw = NO, ""
    elif acc_good and aq is not None:
        und, uw = UNCLEAR, f"loss quality {q:.2f} is poor but val accuracy ends " \
                           f"{aq[1]:.2f} of the way from chance to 1 (good)"
    elif flat_from_start:
        und, uw = NO, "never left its initial level"
    elif learned and q < POOR_Q and small_gap:
        und, uw = YES, f"learned (best {best:.3g}, chance {c.chance:.3g}) but ends at " \
                       f"quality {q:.2f}"
    elif not small_gap and q < POOR_Q:
        und, uw = NO, "large gap"
    elif not learned and q < POOR_Q:
        und, uw = UNCLEAR, f"barely left the chance level (best {best:.3g})"
    else:
        und, uw = UNCLEAR, f"quality {q:.2f}, best {best:.3g} vs chance {c.chance:.3g}"
    # plateau
    if flat_from_start:
        return und, uw, YES, f"flat from the start near the initial level ({level:.3g})"
    if q >= GOOD_Q:
        return und, uw, NO, ""
    # stopped improving: read on val when it can be (per-epoch, no minibatch noise), else
    # on train; train still falling while val is stuck is not "stuck" (nor healthy)
    gains = {n: (e, t, g, se) for n, e, t, g, se in late_gains(c)}
    read = "val" if "val" in gains else "train"
    early, end, late_gain, gain_se = gains[read]
    seen = f"{read} {early:.3g} -> {end:.3g}"
    if read == "train" and len(va) >= 2:
        # val first evaluated after EARLY: its gain since then is a lower bound of the
        # late gain, enough to say "still improving"
        v_gain = (float(va[0]) - v_end) / max(max(c.l0, float(va[0])) - v_end, 1e-12)
        if v_gain >= LATE_GAIN_YES:
            return und, uw, NO, ""
    stopped = late_gain + NOISE_SE * gain_se < LATE_GAIN_NO
    improving = late_gain - NOISE_SE * gain_se >= LATE_GAIN_YES
    if (read == "val" and late_gain < LATE_GAIN_NO
            and gains["train"][2] - NOISE_SE * gains["train"][3] >= LATE_GAIN_YES):
        if end >= (1 + OVF_RISE_NO) * float(va.min()):
            return und, uw, NO, ""  # val turned up while train falls: overfit's to judge
        return und, uw, UNCLEAR, f"val stopped improving by {EARLY:.0%} ({seen}) while " \
                                 f"train still gains {gains['train'][2]:.0%} after it"
    if q < POOR_Q and stopped:
        if acc_good and aq is not None:
            return und, uw, UNCLEAR, f"stopped improving by {EARLY:.0%} at loss quality " \
                                     f"{q:.2f}, but val accuracy ends {aq[1]:.2f} (good)"
        return und, uw, YES, f"stopped improving by {EARLY:.0%} of the run ({seen}) at " \
                             f"quality {q:.2f}"
    if improving:
        return und, uw, NO, ""
    return und, uw, UNCLEAR, f"late gain {late_gain:.0%} (+- {NOISE_SE * gain_se:.0%} " \
                             f"noise, {read}), quality {q:.2f}"


def check(rec: dict[str, Any], refs: dict[tuple[Any, ...], float], *,
          adjust: Callable[[dict[str, Any], Curves], Curves] | None = None,
          has_bn: bool | None = None) -> dict[str, Any]:
    """The curves' verdict on one run: status kept/relabelled/dropped, label, reasons.

    ``adjust`` and ``has_bn`` take knowledge away from the checker (what_logs_know.py):
    ``adjust`` rewrites the levels read from the run's configuration, ``has_bn`` replaces
    whether its model has batch norm.
    """
    intended = sorted(rec["intended"])
    out = {"id": rec["id"], "intended": intended, "label": None, "status": "dropped",
           "why": ""}
    c = curves(rec, refs)
    if c is not None and adjust is not None:
        c = adjust(rec, c)
    if c is None or len(c.train) < 3:
        out["why"] = "too few train points"
        return out
    d, dw = divergence(c)
    if d == UNCLEAR:
        out["why"] = f"divergence unclear: {dw}"
        return out
    if d == YES:
        states = ["divergence"]
        why = dw
    else:
        # batch-norm collapse needs batch norm: without it, the same curves are memorisation
        if has_bn is None:
            has_bn = rec["config"]["arch"] in ("mlp_bn", "cnn_bn")
        b, bw = batchnorm_collapse(c) if has_bn else (NO, "")
        if b == UNCLEAR:
            out["why"] = f"batchnorm_collapse unclear: {bw}"
            return out
        if b == YES:
            states, why = ["batchnorm_collapse"], bw
        else:
            o, ow = overfit(c, has_bn)
            u, uw, p, pw = fit_state(c)
            unclear = [n for n, s in (("overfit", o), ("underfit", u), ("plateau", p))
                       if s == UNCLEAR]
            if unclear:
                out["why"] = "; ".join(f"{n} unclear: {w}" for n, w in
                                       (("overfit", ow), ("underfit", uw), ("plateau", pw))
                                       if n in unclear)
                return out
            states = sorted(n for n, s in (("overfit", o), ("underfit", u), ("plateau", p))
                            if s == YES)
            why = "; ".join(w for w, s in ((ow, o), (uw, u), (pw, p)) if s == YES)
    if (c.val is not None and len(_finite(c.val))
            and float(np.median(_finite(c.val))) >= VAL_BLOWN * c.l0
            and not {"divergence", "batchnorm_collapse"} & set(states)):
        out["why"] = f"val loss far above the untrained level, unexplained ({states})"
        return out
    out["label"] = sorted(states)
    out["status"] = "kept" if out["label"] == intended else "relabelled"
    out["why"] = why
    return out


def check_all(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    refs = reference_levels(records)
    return [check(r, refs) for r in records]


def fmt(states: Sequence[str] | None) -> str:
    if states is None:
        return "-"
    return ",".join(states) if states else "healthy"


def write_tsv(results: list[dict[str, Any]], path: Path) -> None:
    lines = ["id\tintended\tlabel\tstatus\twhy"]
    for r in results:
        why = r["why"].replace("\t", " ").replace("\n", " ")
        lines.append(f"{r['id']}\t{fmt(r['intended'])}\t{fmt(r['label'])}\t{r['status']}\t{why}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_labels(path: Path = LABELS) -> dict[str, list[str]]:
    """id -> checked label (healthy = []) for every run that was not dropped."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        rid, _, label, status, _ = line.split("\t", 4)
        if status != "dropped":
            out[rid] = [] if label == "healthy" else label.split(",")
    return out


def summary(results: list[dict[str, Any]]) -> str:
    n = len(results)
    st = Counter(r["status"] for r in results)
    lines = [f"{n} runs: {st['kept']} kept, {st['relabelled']} relabelled, "
             f"{st['dropped']} dropped"]
    moves = Counter((fmt(r["intended"]), fmt(r["label"])) for r in results
                    if r["status"] == "relabelled")
    for (a, b), k in moves.most_common():
        lines.append(f"  relabelled {a} -> {b}: {k}")
    drops = Counter((fmt(r["intended"]), r["why"].split(":")[0]) for r in results
                    if r["status"] == "dropped")
    for (a, why), k in drops.most_common():
        lines.append(f"  dropped {a} ({why}): {k}")
    final = Counter(fmt(r["label"]) for r in results if r["status"] != "dropped")
    lines.append("final labels: " + ", ".join(f"{k} {v}" for k, v in final.most_common()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check intended labels on the curves.")
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("-o", "--output", type=Path, default=LABELS)
    ap.add_argument("--show", nargs="*", default=None, help="print these runs' verdicts")
    args = ap.parse_args(argv)
    results = check_all(store.load(args.store))
    if args.show is not None:
        for r in results:
            if not args.show or r["id"] in args.show:
                print(f"{r['id']}\t{fmt(r['intended'])}\t{fmt(r['label'])}\t{r['status']}"
                      f"\t{r['why']}")
        return 0
    write_tsv(results, args.output)
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
