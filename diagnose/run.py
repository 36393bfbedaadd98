"""The Run: the one thing ingest and analysis share.

Every log family is parsed into the same shape: one long scalar table, a list of
histograms, hyperparameters under canonical names, and ingest notes that say what was
lost or odd.  A parser never decides a state and a rule never reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Columns of :attr:`Run.scalars`, in order.
SCALAR_COLUMNS = ("tag", "metric", "split", "step", "wall_time", "value")

#: Splits a scalar can belong to.
SPLITS = ("train", "val", "test", "other")

HParamValue = float | int | str | bool


@dataclass(frozen=True)
class IngestNote:
    """Something the reader noticed about a log: data lost, a restart, a skipped file.

    ``code`` is a stable short name (``truncated``, ``corrupt_record``, ``restart``,
    ``unreadable``, ``skipped_rows``, ``duplicate_steps``, ``bad_value``, ``unfinished``,
    ``unsupported``...).  Rules turn some of them into ``log`` findings.
    """

    code: str
    message: str
    path: str = ""
    step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Histogram:
    """One histogram sample of one tag at one step.

    ``buckets`` is a float64 array of shape ``[k, 3]``: (left edge, right edge, count),
    the normalised form of both TensorBoard encodings.  The summary statistics are NaN
    when the writer did not record them (TF2 ``[k,3]`` tensors carry none).
    """

    tag: str
    step: int
    wall_time: float
    buckets: np.ndarray
    min: float = float("nan")
    max: float = float("nan")
    num: float = float("nan")
    sum: float = float("nan")
    sum_squares: float = float("nan")

    @property
    def mean(self) -> float:
        """Exact mean from sum/num when recorded, else estimated from bucket centres."""
        if self.num and np.isfinite(self.sum) and self.num > 0:
            return float(self.sum / self.num)
        counts = self.buckets[:, 2]
        total = counts.sum()
        if total <= 0:
            return float("nan")
        centres = (self.buckets[:, 0] + self.buckets[:, 1]) / 2
        return float((centres * counts).sum() / total)

    @property
    def std(self) -> float:
        """Exact std from sum_squares when recorded, else estimated from buckets."""
        if self.num and np.isfinite(self.sum_squares) and self.num > 0:
            mean = self.sum / self.num
            var = max(self.sum_squares / self.num - mean * mean, 0.0)
            return float(np.sqrt(var))
        counts = self.buckets[:, 2]
        total = counts.sum()
        if total <= 0:
            return float("nan")
        centres = (self.buckets[:, 0] + self.buckets[:, 1]) / 2
        mean = (centres * counts).sum() / total
        return float(np.sqrt(max(((centres - mean) ** 2 * counts).sum() / total, 0.0)))


def empty_scalars() -> pd.DataFrame:
    """An empty scalar table with the right dtypes."""
    return pd.DataFrame(
        {
            "tag": pd.Series([], dtype="string"),
            "metric": pd.Series([], dtype="string"),
            "split": pd.Series([], dtype="string"),
            "step": pd.Series([], dtype="int64"),
            "wall_time": pd.Series([], dtype="float64"),
            "value": pd.Series([], dtype="float64"),
        }
    )


def make_scalars(
    tag: Any,
    step: Any,
    value: Any,
    wall_time: Any = None,
    split: Any = None,
) -> pd.DataFrame:
    """Build a scalar table from columns; fills ``metric`` and ``split`` from the tag.

    ``split`` may be given (a string for all rows, or an array) when the layout, not the
    tag, says it (Keras ``train/`` + ``validation/`` folders).  Tag normalisation lives
    in :mod:`diagnose.metrics` so every family names metrics the same way.  The text
    columns are categoricals: a million rows of twenty tags cost twenty look-ups.
    """
    from diagnose.metrics import normalize_tag

    n = len(step)
    if isinstance(tag, str):
        tags = pd.Categorical.from_codes(np.zeros(n, dtype="int8"), categories=[tag])
    elif isinstance(tag, pd.Categorical):  # fastest: readers that already hold tag codes
        tags = tag
    else:
        tags = pd.Categorical(np.asarray(tag, dtype=object))
    hint = split if isinstance(split, str) else None
    pairs = [normalize_tag(str(t), hint) for t in tags.categories]
    metric = _recode(tags.codes, [p[0] for p in pairs])
    splits = _recode(tags.codes, [p[1] for p in pairs])
    if split is not None and not isinstance(split, str):
        given = pd.Series(split, dtype="object")
        splits = pd.Categorical(given.where(given.notna(), pd.Series(splits, dtype="object")))
    wall = np.full(n, np.nan) if wall_time is None else np.asarray(wall_time, dtype="float64")
    return pd.DataFrame(
        {
            "tag": tags,
            "metric": metric,
            "split": splits,
            "step": np.asarray(step, dtype="int64"),
            "wall_time": wall,
            "value": np.asarray(value, dtype="float64"),
        }
    )


def _recode(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    """Categorical of ``names[code]`` per row, without a Python loop over rows."""
    uniques = sorted(set(names))
    index = {name: i for i, name in enumerate(uniques)}
    lookup = np.array([index[name] for name in names] + [-1], dtype="int32")
    return pd.Categorical.from_codes(lookup[codes], categories=uniques)


@dataclass
class Run:
    """One training run, whatever wrote it.

    Attributes
    ----------
    run_id:
        Path relative to the PATH argument it was found under, ``/``-separated; ``.``
        when PATH itself is the run (the DESIGN.md contract).
    path:
        The run's folder (or the file, for a single-file family).
    format:
        ``tensorboard``, ``csv``, ``keras_csv``, ``lightning_csv``, ``hf_trainer_state``,
        ``ultralytics``, ``mlflow``, ``jsonl``, ``keras_history``; ``+``-joined when a run
        mixes families (e.g. ``tensorboard+ultralytics``).
    scalars:
        The long table, columns :data:`SCALAR_COLUMNS`; ``step`` int64, ``value``
        float64 (NaN/inf kept: they are evidence), ``split`` in :data:`SPLITS`.
        Sorted by (tag, step) after :meth:`finalize`.
    histograms:
        Histogram samples, in file order.
    hparams:
        Hyperparameters under canonical names (``learning_rate``, ``batch_size``...);
        keys that have no canonical name are kept as written.
    raw_hparams:
        Hyperparameters exactly as the log or sidecar spelled them.
    tag_metadata:
        Plugin name per tag, from the tag's first occurrence (TensorBoard only).
    notes:
        What the reader lost or noticed.
    sources:
        The files that were read.
    """

    run_id: str
    path: Path
    format: str
    scalars: pd.DataFrame = field(default_factory=empty_scalars)
    histograms: list[Histogram] = field(default_factory=list)
    hparams: dict[str, HParamValue] = field(default_factory=dict)
    raw_hparams: dict[str, HParamValue] = field(default_factory=dict)
    tag_metadata: dict[str, str] = field(default_factory=dict)
    notes: list[IngestNote] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)

    def finalize(self) -> Run:
        """Sort the table by (tag, step) keeping write order within a step; returns self."""
        if len(self.scalars):
            self._split_shared_tags()
            self.scalars = self.scalars.sort_values(
                ["tag", "step"], kind="stable", ignore_index=True
            )
        return self

    def _split_shared_tags(self) -> None:
        """Keras writes ``epoch_loss`` in both ``train/`` and ``validation/``: one tag, two
        series.  Such tags become ``<split>/<tag>`` so every tag names one series."""
        pairs = self.scalars[["tag", "split"]].drop_duplicates()
        counts = pairs["tag"].value_counts()
        shared = counts[counts > 1].index
        if len(shared):
            tags = self.scalars["tag"].astype("object")
            splits = self.scalars["split"].astype("object")
            mask = tags.isin(shared)
            tags[mask] = splits[mask] + "/" + tags[mask]
            self.scalars["tag"] = pd.Categorical(tags)

    @property
    def tags(self) -> list[str]:
        """Raw tags present in the scalar table, sorted."""
        return sorted(self.scalars["tag"].dropna().unique().tolist())

    @property
    def step_range(self) -> tuple[int, int] | None:
        """(first, last) step over all scalars, or None when there are none."""
        if not len(self.scalars):
            return None
        steps = self.scalars["step"].to_numpy()
        return int(steps.min()), int(steps.max())

    def series(self, tag: str) -> pd.DataFrame:
        """Rows of one raw tag, sorted by step."""
        rows = self.scalars[self.scalars["tag"] == tag]
        return rows.sort_values("step", kind="stable")

    def note(self, code: str, message: str, **kw: Any) -> None:
        """Record an ingest note."""
        self.notes.append(IngestNote(code=code, message=message, **kw))

    def note_unfinished(self, step: int, planned: int, message: str, path: str = "") -> None:
        """Record that the run went on after this log, at ``step`` of ``planned`` steps (the
        ``unfinished`` note :func:`diagnose.signals.plan_reached` reads)."""
        self.note("unfinished", message, path=path, step=step,
                  details={"step": step, "planned": planned})

    def freeze(self) -> Run:
        """End of ingest: from now on no attribute can be rebound (analysis notes live on
        the result, never on the Run).  Derive a changed Run with
        ``dataclasses.replace``, which gives a new, unfrozen one.  Returns self."""
        object.__setattr__(self, "_frozen", True)
        return self

    @property
    def frozen(self) -> bool:
        """Whether ingest is over (:meth:`freeze`)."""
        return bool(self.__dict__.get("_frozen"))

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"Run {self.run_id!r} is read-only after ingest; "
                                 f"use dataclasses.replace(run, {name}=...)")
        object.__setattr__(self, name, value)
