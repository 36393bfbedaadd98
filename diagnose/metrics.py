"""Tag names -> canonical metric, split and role.

Every family names things its own way (``val_loss``, ``eval/loss``, ``epoch_loss`` in a
``validation/`` folder, ``train/box_loss``, ``metrics/mAP50(B)``, ``lr-Adam``).  This
module is the one place that knows those spellings, so rules can ask for a *role*
("train loss", "val metric, higher is better", "learning rate") and never for a tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd


class Role(StrEnum):
    """What a series means to the rules."""

    TRAIN_LOSS = "train_loss"
    VAL_LOSS = "val_loss"
    TRAIN_METRIC = "train_metric"
    VAL_METRIC = "val_metric"
    LR = "learning_rate"
    GRAD_NORM = "grad_norm"


# ---------------------------------------------------------------------------
# Tag normalisation
# ---------------------------------------------------------------------------

_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "trn": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "evaluation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}

#: Folder names that are the splits of their parent run (Keras layout).
SPLIT_FOLDERS = {"train": "train", "validation": "val", "val": "val", "eval": "val", "test": "test"}

_LR_RE = re.compile(
    r"^(?:x/)?(?:lr|learning[-_ ]?rate)(?:[-_/ ].*|\d*)?$"
    r"|^lr-[a-z]+.*$"
    r"|^lr/pg\d+$",
    re.IGNORECASE,
)
_GRAD_RE = re.compile(r"grad(?:ient)?[_-]?(?:[\d_.]+)?norm|global[_-]?norm", re.I)
_PREFIX_RE = re.compile(r"^(?P<word>[A-Za-z]+)(?:[_/]| +)(?P<rest>.+)$")
_SUFFIX_RE = re.compile(r"^(?P<rest>.+)(?:[_/]| +)(?P<word>[A-Za-z]+)$")
#: A split word glued to a capitalised rest, as camelCase/PascalCase columns write it
#: ("ValLoss", "trainAcc").
_CAMEL_RE = re.compile(r"^(?P<word>[A-Za-z][a-z]+)(?P<rest>[A-Z][A-Za-z0-9]*)$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

_ACC_ALIASES = {
    "acc": "accuracy",
    "accuracy": "accuracy",
    "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "binary_accuracy": "accuracy",
    "cls_accuracy": "accuracy",
    "top1": "accuracy",
    "top_1": "accuracy",
    "acc1": "accuracy",
    "acc_top1": "accuracy",
    "top1_acc": "accuracy",
}


def _slug(text: str) -> str:
    return _NON_ALNUM.sub("_", text.lower()).strip("_")


def normalize_tag(tag: str, split_hint: str | None = None) -> tuple[str, str]:
    """Return ``(metric, split)`` for one raw tag.

    ``split_hint`` comes from the layout (a Keras ``validation/`` folder) and wins over
    the tag.  Metrics without a split word default to ``train``; learning rates and
    bookkeeping (``epoch``, ``step``, timings) go to ``other``.
    """
    raw = tag.strip()
    name = raw
    split: str | None = None
    # Keras callback prefixes: epoch_/batch_ (split is the folder), evaluation_*_vs_iterations.
    low = name.lower()
    if low.startswith("evaluation_") and low.endswith("_vs_iterations"):
        name = name[len("evaluation_") : -len("_vs_iterations")]
        split = "val"
    elif low.startswith(("epoch_", "batch_")) and len(name) > 6:
        name = name.split("_", 1)[1]
    # detectron2 evaluation results (bbox/AP, segm/AP50) are validation metrics.
    if low.startswith(("bbox/", "segm/", "keypoints/", "panoptic_seg/", "sem_seg/")):
        split = "val"
    # Ultralytics metrics/* are validation metrics.
    if name.lower().startswith("metrics/"):
        name = name[len("metrics/") :]
        split = split or "val"
    # Lightning forked names.
    for suffix in ("_step", "_epoch"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    # Split words as prefix (val_loss, eval/loss) or suffix (loss/train, loss_val).
    for _ in range(2):
        m = _PREFIX_RE.match(name)
        if m and m.group("word").lower() in _SPLIT_WORDS:
            split = split or _SPLIT_WORDS[m.group("word").lower()]
            name = m.group("rest")
            continue
        m = _SUFFIX_RE.match(name)
        if m and m.group("word").lower() in _SPLIT_WORDS:
            split = split or _SPLIT_WORDS[m.group("word").lower()]
            name = m.group("rest")
            continue
        m = _CAMEL_RE.match(name)
        if m and m.group("word").lower() in _SPLIT_WORDS:
            split = split or _SPLIT_WORDS[m.group("word").lower()]
            name = m.group("rest")
            continue
        break
    if split is None:
        name, split = _inner_split(name)
    if split_hint:
        split = split_hint
    if _LR_RE.match(name) or _LR_RE.match(raw):
        return "lr", "other"
    metric = _slug(name) or _slug(raw) or "value"
    if _GRAD_RE.search(metric):
        return "grad_norm", split or "train"
    metric = _ACC_ALIASES.get(metric, metric)
    if metric.endswith("_b") and "(b)" in raw.lower():
        metric = metric[:-2]
    if metric in _BOOKKEEPING and split is None:
        return metric, "other"
    if _RUNNING_BEST.search(metric):
        return metric, "other"  # the best value so far: a record, not the curve
    return metric, split or "train"


_TOKEN_SEP = re.compile(r"[_/]")
#: A running best (``best_auc``, ``val_loss_best``): a training script's record of the best
#: value so far, flat between improvements; read as a curve it hides every setback.
_RUNNING_BEST = re.compile(r"^best_|_best$")


def _inner_split(name: str) -> tuple[str, str | None]:
    """A split word between other words of a name (``phase1_val_loss``, ``stage2/val/acc``:
    a prefix naming the training stage or model): the split, and the name without it.
    Exactly one split word, and words on both sides, or the name is left as it is."""
    tokens = _TOKEN_SEP.split(name)
    inner = [i for i, t in enumerate(tokens[1:-1], 1) if t.lower() in _SPLIT_WORDS]
    if len(inner) != 1 or any(t.lower() in _SPLIT_WORDS for t in (tokens[0], tokens[-1])):
        return name, None
    i = inner[0]
    return "_".join(tokens[:i] + tokens[i + 1:]), _SPLIT_WORDS[tokens[i].lower()]


_BOOKKEEPING = {
    "epoch",
    "step",
    "global_step",
    "iteration",
    "iter",
    "time",
    "runtime",
    "data_time",
    "eta_seconds",
    "total_flos",
    "steps_per_second",
    "samples_per_second",
    "hp_metric",
}


def normalize_tags(
    tags: Iterable[str], split_hint: str | None = None
) -> tuple[list[str | None], list[str | None]]:
    """Vectorised :func:`normalize_tag`: computes each distinct tag once."""
    column = pd.Series(list(tags) if not isinstance(tags, pd.Series) else tags, dtype="string")
    uniques = column.dropna().unique()
    table = {t: normalize_tag(str(t), split_hint) for t in uniques}
    metric = [table[t][0] if t in table else None for t in column]
    split = [table[t][1] if t in table else None for t in column]
    return metric, split


# ---------------------------------------------------------------------------
# Metric direction
# ---------------------------------------------------------------------------

_HIGHER = re.compile(
    r"acc|f1|precision|recall|map|auc|iou|dice|bleu|rouge|meteor|^r2$|psnr|ssim|"
    r"score|top\d|exact_match|matthews|mcc|kappa|ndcg|hit|(?:^|_)ap(?:\d+|[slm])?(?:_|$)",
    re.I,
)
_LOWER = re.compile(
    r"loss|err|wer|cer|perplexity|ppl|mse|mae|rmse|nll|distance|fid|bpc|bpd", re.I
)


#: YOLOv10's two heads log their box/cls/dfl losses as ``box_om`` (one-to-many head) and
#: ``box_oo`` (one-to-one head) in results.csv: losses without the word.
_HEAD_LOSS_RE = re.compile(r"^(?:box|cls|dfl)_o[mo]$", re.I)


def higher_is_better(metric: str) -> bool | None:
    """True/False for metrics whose direction the name tells; None when unknown."""
    if _LOWER.search(metric) or _HEAD_LOSS_RE.match(metric):
        return False
    if _HIGHER.search(metric):
        return True
    return None


def is_loss(metric: str) -> bool:
    """A loss-like metric (lower is better and named loss/nll)."""
    return bool(re.search(r"loss|nll", metric, re.I) or _HEAD_LOSS_RE.match(metric))


# ---------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One resolved series: the rules' view of a tag.

    ``steps`` are strictly increasing int64 (a step logged twice keeps its last value);
    ``values`` float64 with NaN/inf kept.
    """

    tag: str
    metric: str
    split: str
    role: Role | None
    steps: np.ndarray
    values: np.ndarray
    wall_time: np.ndarray
    higher_is_better: bool | None

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def finite(self) -> Series:
        """The same series without NaN/inf points."""
        ok = np.isfinite(self.values)
        return Series(
            self.tag,
            self.metric,
            self.split,
            self.role,
            self.steps[ok],
            self.values[ok],
            self.wall_time[ok],
            self.higher_is_better,
        )


#: Metrics preferred for the val/train metric role, best first.
_METRIC_PRIORITY = (
    "accuracy",
    "map50_95",
    "map_0_5_0_95",
    "map",
    "map50",
    "map_0_5",
    "f1",
    "macro_f1",
    "auc",
    "iou",
    "miou",
    "dice",
    "bleu",
    "wer",
    "cer",
    "perplexity",
)

_MAIN_LOSS_NAMES = ("loss", "total_loss", "loss_total", "train_loss", "objective", "nll")
#: The mean of a loss logged beside its min and max ("avg_loss, min_loss, max_loss"): the
#: loss itself, not a component to sum.
_MEAN_LOSS_RE = re.compile(r"^(?:avg|mean|average)_?loss$|^loss_?(?:avg|mean|average)$")
#: Regression error metrics a loop logs in place of a loss ("Valid MSE"): the split's loss
#: when it logs nothing named loss.
_ERROR_AS_LOSS = ("mse", "rmse", "mae", "mean_squared_error", "mean_absolute_error",
                  "root_mean_squared_error")


def split_by_tag(scalars: pd.DataFrame) -> dict[str, Series]:
    """Every tag's :class:`Series`, sorted by tag; one numpy pass, no per-tag pandas work.

    A step logged twice keeps its last value (rows are stably sorted by step).
    """
    if not len(scalars):
        return {}
    tags = scalars["tag"]
    cat = tags.array if isinstance(tags.dtype, pd.CategoricalDtype) else pd.Categorical(tags)
    codes = np.asarray(cat.codes)
    steps = scalars["step"].to_numpy(dtype="int64")
    order = np.lexsort((steps, codes))
    order = order[codes[order] >= 0]  # rows without a tag belong to no series
    codes, steps = codes[order], steps[order]
    values = scalars["value"].to_numpy(dtype="float64")[order]
    wall = scalars["wall_time"].to_numpy(dtype="float64")[order]
    metric = scalars["metric"].astype("object").to_numpy()[order]
    split = scalars["split"].astype("object").to_numpy()[order]
    # last row of each (tag, step): the next row has another tag or another step
    last = np.ones(len(codes), dtype=bool)
    last[:-1] = (codes[1:] != codes[:-1]) | (steps[1:] != steps[:-1])
    if not len(codes):
        return {}
    bounds = np.flatnonzero(np.diff(codes)) + 1
    out: dict[str, Series] = {}
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(codes)], strict=True):
        keep = np.flatnonzero(last[lo:hi]) + lo
        name = str(metric[lo])
        out[str(cat.categories[codes[lo]])] = Series(
            tag=str(cat.categories[codes[lo]]),
            metric=name,
            split=str(split[lo]),
            role=None,
            steps=steps[keep],
            values=values[keep],
            wall_time=wall[keep],
            higher_is_better=higher_is_better(name),
        )
    return dict(sorted(out.items()))


#: The roles that can be a run's objective, best first (see :meth:`RoleMap.objectives`).
OBJECTIVE_ROLES = (Role.VAL_METRIC, Role.VAL_LOSS, Role.TRAIN_LOSS)


def _pinned(series: Series) -> bool:
    """The finite values never move over two or more evaluations."""
    values = series.finite.values
    return len(values) >= 2 and bool(np.all(values == values[0]))


#: An accuracy whose best is within this of its first evaluation (and of its median)
#: never left its starting level (see :func:`never_leaves_start`).
STUCK_ACCURACY_TOL = 0.01
#: ... or within this many steps of a small eval set's accuracy grid (1/N), when wider:
#: on 20 samples one flipped prediction moves the accuracy by 0.05.
STUCK_ACCURACY_STEPS = 2


def never_leaves_start(series: Series) -> bool:
    """An accuracy that never rises above its first evaluation (nor above its median) by
    more than :data:`STUCK_ACCURACY_TOL` or two steps of its eval set's grid, over three
    or more evaluations: a constant guess at the majority-class rate, or a model that
    stopped learning before its first evaluation.  Its "best step" is noise, so it is no
    objective (the val loss still measures something)."""
    if series.metric != "accuracy" or not series.higher_is_better:
        return False
    values = series.finite.values
    if len(values) < 3:
        return False
    from diagnose.signals import accuracy_quantum

    tol = max(STUCK_ACCURACY_TOL, STUCK_ACCURACY_STEPS * (accuracy_quantum(values) or 0.0))
    top = float(np.max(values))
    return top - float(values[0]) <= tol and top - float(np.median(values)) <= tol


@dataclass(frozen=True)
class KeyPoint:
    """A run's key metric: its first objective (:meth:`RoleMap.objectives`) and the best
    point on it, the one "best step" the report, the stop-early advice and the sweep
    share.  ``kind`` is ``max``/``min`` (a val curve's best) or ``final`` (a train loss,
    whose minimum says nothing about generalisation)."""

    role: Role
    series: Series
    kind: str
    step: int
    value: float
    final: float
    final_step: int


def key_point(role: Role, series: Series) -> KeyPoint | None:
    """The best point of one objective series (its first best on ties), None when it has
    no finite point."""
    fin = series.finite
    if not len(fin):
        return None
    final, final_step = float(fin.values[-1]), int(fin.steps[-1])
    if role == Role.TRAIN_LOSS:
        return KeyPoint(role, series, "final", final_step, final, final, final_step)
    higher = role == Role.VAL_METRIC and bool(series.higher_is_better)
    i = int(np.argmax(fin.values) if higher else np.argmin(fin.values))
    return KeyPoint(role, series, "max" if higher else "min", int(fin.steps[i]),
                    float(fin.values[i]), final, final_step)


class RoleMap:
    """The resolved roles of one run; built by :func:`resolve_roles`.

    ``get(role)`` gives the primary series for a role or None; ``candidates(role)`` every
    series that could play it, best first; ``losses(split)`` every loss-like series of a
    split (components included).
    """

    def __init__(self, by_tag: dict[str, Series], chosen: dict[Role, list[Series]]):
        self.by_tag = by_tag
        self._chosen = chosen

    def get(self, role: Role) -> Series | None:
        found = self._chosen.get(role) or []
        return found[0] if found else None

    def candidates(self, role: Role) -> list[Series]:
        return list(self._chosen.get(role) or [])

    def losses(self, split: str) -> list[Series]:
        return [s for s in self.by_tag.values() if s.split == split and is_loss(s.metric)]

    def objectives(self) -> list[tuple[Role, Series]]:
        """The run's objective series, best first (:data:`OBJECTIVE_ROLES`): the val
        metric when its direction is known, the val loss, the train loss; each with
        finite points.  The one resolver behind sweep, baseline, the report's key metric
        and the plateau rules (PRG001 alone asks the val loss first: whether training
        still pays off).  A val metric pinned at one value over several evaluations (an
        accuracy stuck at the majority-class share) measures nothing: not an objective,
        so no "best step" or sweep ranking comes from it; nor does an accuracy that never
        rises above its first evaluation (:func:`never_leaves_start`)."""
        out: list[tuple[Role, Series]] = []
        for role in OBJECTIVE_ROLES:
            s = self.get(role)
            if s is None or not len(s.finite):
                continue
            if role == Role.VAL_METRIC and (s.higher_is_better is None or _pinned(s)
                                            or never_leaves_start(s)):
                continue
            out.append((role, s))
        return out

    def key_point(self) -> KeyPoint | None:
        """The run's key metric and its best point: the first objective's
        (:func:`key_point`); the report's key metric and best step and the stop-early
        advice all read it here."""
        for role, s in self.objectives():
            return key_point(role, s)
        return None

    def role_of(self, tag: str) -> Role | None:
        for role, found in self._chosen.items():
            if found and found[0].tag == tag:
                return role
        return None

    def as_dict(self) -> dict[str, str]:
        """role name -> tag, for listings and JSON."""
        return {role.value: found[0].tag for role, found in self._chosen.items() if found}


def _alias_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _synth_total(parts: list[Series], split: str, role: Role) -> Series | None:
    """Sum component losses (YOLO box+obj+cls) at their shared steps into one series."""
    common = parts[0].steps
    for p in parts[1:]:
        common = np.intersect1d(common, p.steps)
    if len(common) < 2:
        return None
    total = np.zeros(len(common))
    wall = np.full(len(common), np.nan)
    for p in parts:
        idx = np.searchsorted(p.steps, common)
        total = total + p.values[idx]
        wall = p.wall_time[idx]
    tag = "+".join(p.tag for p in parts)
    return Series(tag, "loss", split, role, common, total, wall, False)


def _epoch_aggregate(s: Series, tags: set[str]) -> bool:
    """A Lightning ``X_epoch`` evaluation series whose per-batch twin ``X_step`` is logged
    too: the epoch's mean is what Lightning means by the val loss, while the longer
    ``_step`` series is the noise between a val set's batches."""
    tag = s.tag
    return (s.split in ("val", "test") and tag.lower().endswith("_epoch")
            and f"{tag[:-len('_epoch')]}_step" in tags)


def _split_losses(pool: list[Series], split: str) -> list[Series]:
    """The split's loss-like series: those named loss, else a regression error metric."""
    return ([s for s in pool if s.split == split and is_loss(s.metric)]
            or [s for s in pool if s.split == split and s.metric in _ERROR_AS_LOSS])


def _pick_loss(
    pool: list[Series], split: str, role: Role, reference: Series | None
) -> list[Series]:
    losses = _split_losses(pool, split)
    if not losses:
        return []
    tags = {s.tag for s in pool}
    main = [s for s in losses if s.metric in _MAIN_LOSS_NAMES or _MEAN_LOSS_RE.match(s.metric)]
    if not main and len(losses) >= 2:
        synth = _synth_total(sorted(losses, key=lambda s: s.tag), split, role)
        if synth is not None:
            main = [synth]

    def score(s: Series) -> tuple[int, bool, bool, int]:
        axis_ok = 1
        if reference is not None and len(reference) and len(s):
            ratio = (s.steps[-1] + 1) / (reference.steps[-1] + 1)
            axis_ok = 1 if 0.5 <= ratio <= 2.0 else 0
        return (axis_ok, _epoch_aggregate(s, tags), min(len(s), 10_000) > 2, len(s))

    ranked = sorted(main, key=score, reverse=True) + sorted(
        [s for s in losses if s not in main], key=score, reverse=True
    )
    return [_with_role(s, role) for s in ranked]


def _with_role(s: Series, role: Role) -> Series:
    return Series(
        s.tag, s.metric, s.split, role, s.steps, s.values, s.wall_time, s.higher_is_better
    )


def _pick_metric(pool: list[Series], split: str, role: Role) -> list[Series]:
    loss_tags = {s.tag for s in _split_losses(pool, split)}
    found = [
        s
        for s in pool
        if s.split == split and s.tag not in loss_tags and s.higher_is_better is not None
        and s.metric not in ("lr", "grad_norm")
    ]

    tags = {s.tag for s in pool}

    def rank(s: Series) -> tuple[int, bool, int]:
        try:
            pri = _METRIC_PRIORITY.index(s.metric)
        except ValueError:
            pri = len(_METRIC_PRIORITY)
        return (pri, not _epoch_aggregate(s, tags), -len(s))

    return [_with_role(s, role) for s in sorted(found, key=rank)]


def resolve_roles(scalars: pd.DataFrame, aliases: Mapping[str, object] | None = None) -> RoleMap:
    """Assign roles to the tags of a scalar table.

    ``aliases`` maps a role name (``train_loss``, ``val_metric``...) to a tag or list of
    tags the user says play it (from ``[tool.diagnose.metrics]``); those win.  A metric
    role's direction can be forced with ``val_metric_higher_is_better = false``.
    """
    by_tag = split_by_tag(scalars)
    pool = list(by_tag.values())
    chosen: dict[Role, list[Series]] = {}
    aliases = dict(aliases or {})
    for role in Role:
        wanted = aliases.get(role.value)
        if wanted:
            hits = [by_tag[t] for t in _alias_list(wanted) if t in by_tag]  # type: ignore[arg-type]
            if hits:
                chosen[role] = [_with_role(s, role) for s in hits]
    if Role.VAL_LOSS not in chosen:
        val = _pick_loss(pool, "val", Role.VAL_LOSS, None) or _pick_loss(
            pool, "test", Role.VAL_LOSS, None
        )
        if val:
            chosen[Role.VAL_LOSS] = val
    if Role.TRAIN_LOSS not in chosen:
        ref = chosen.get(Role.VAL_LOSS, [None])[0]
        train = _pick_loss(pool, "train", Role.TRAIN_LOSS, ref)
        if train:
            chosen[Role.TRAIN_LOSS] = train
    if Role.VAL_METRIC not in chosen:
        vm = _pick_metric(pool, "val", Role.VAL_METRIC) or _pick_metric(
            pool, "test", Role.VAL_METRIC
        )
        if vm:
            chosen[Role.VAL_METRIC] = vm
    if Role.TRAIN_METRIC not in chosen:
        tm = _pick_metric(pool, "train", Role.TRAIN_METRIC)
        if tm:
            chosen[Role.TRAIN_METRIC] = tm
    if Role.LR not in chosen:
        lrs = sorted((s for s in pool if s.metric == "lr"), key=lambda s: (s.tag, -len(s)))
        if lrs:
            chosen[Role.LR] = [_with_role(s, Role.LR) for s in lrs]
    if Role.GRAD_NORM not in chosen:
        gn = sorted((s for s in pool if s.metric == "grad_norm"), key=lambda s: -len(s))
        if gn:
            chosen[Role.GRAD_NORM] = [_with_role(s, Role.GRAD_NORM) for s in gn]
    for key in ("val_metric", "train_metric"):
        forced = aliases.get(f"{key}_higher_is_better")
        role = Role(key)
        if forced is not None and chosen.get(role):
            chosen[role] = [
                Series(s.tag, s.metric, s.split, s.role, s.steps, s.values, s.wall_time,
                       bool(forced))
                for s in chosen[role]
            ]
    return RoleMap(by_tag, chosen)
