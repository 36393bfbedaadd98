"""Exact-0.0 loss values that a writer put where nothing was logged.

User code that logs a loss only on some steps and ``0.0`` on the others (a Lightning
``train_loss`` that two of every three rows hold as 0.0) leaves values no loss takes:
read as values they are deep dips that the spike and trend rules take at face value.
They are read as not logged, and said, with the count.  The check runs once per run on
the merged table, whatever family wrote it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from diagnose.metrics import is_loss
from diagnose.run import IngestNote

#: A loss's exact 0.0 values are read as "not logged" when at least this many separate
#: runs of them sit between two logged values at or above the loss's median: a loss
#: cannot drop from its typical level to exactly zero and be back there at the next
#: point, again and again, but a writer's placeholder does.  A zero beside a perfect
#: accuracy of the same split at the same step is real (a batch classified right with
#: saturated outputs: cross-entropy underflows to 0.0) and kept.
MIN_PLACEHOLDER_RUNS = 3


def placeholder_zeros(values: np.ndarray, real: np.ndarray) -> np.ndarray | None:
    """Mask of a loss's exact zeros (``values`` in step order) that are placeholders
    (:data:`MIN_PLACEHOLDER_RUNS`; ``real`` marks zeros shown real), else None.  A loss
    that can go negative has no special zero, and zeros only at the ends (a loss that
    reached 0) are not boxed in."""
    zero = (values == 0) & ~real
    finite = np.isfinite(values)
    if int(zero.sum()) < MIN_PLACEHOLDER_RUNS or bool((values[finite] < 0).any()):
        return None
    logged = np.flatnonzero(finite & (values != 0))
    if len(logged) < 2:
        return None
    level = float(np.median(values[logged]))
    # one entry per gap between consecutive logged values that holds a zero
    gaps = np.unique(np.searchsorted(logged, np.flatnonzero(zero)))
    inside = gaps[(gaps > 0) & (gaps < len(logged))]
    lows = np.minimum(values[logged[inside - 1]], values[logged[inside]])
    boxed = int((lows >= level).sum())
    return zero if boxed >= MIN_PLACEHOLDER_RUNS else None


def drop_placeholder_zeros(
    scalars: pd.DataFrame, path: str
) -> tuple[pd.DataFrame, list[IngestNote]]:
    """The run's scalar table without its losses' exact-zero placeholders, and a note per
    tag that names the count (``scalars`` sorted by tag and step, as a finalized Run's)."""
    if scalars.empty or not bool((scalars["value"] == 0).any()):
        return scalars, []
    tags = scalars["tag"].astype("string")
    value = scalars["value"].to_numpy(dtype="float64")
    step = scalars["step"].to_numpy()
    metric = scalars["metric"].astype("string").to_numpy()
    split = scalars["split"].astype("string").to_numpy()
    rows_of = {str(t): r for t, r in tags.groupby(tags, sort=False).indices.items()}
    # steps at which an accuracy of each split was logged as perfect (1 or 100%)
    perfect: dict[str, set[int]] = {}
    for r in rows_of.values():
        if metric[r[0]] == "accuracy":
            ok = np.isin(value[r], (1.0, 100.0))
            perfect.setdefault(str(split[r[0]]), set()).update(step[r][ok].tolist())
    drop = np.zeros(len(scalars), dtype=bool)
    notes: list[IngestNote] = []
    for tag, rows in rows_of.items():
        values = value[rows]
        if not is_loss(str(metric[rows[0]])) or not bool((values == 0).any()):
            continue
        real = np.isin(step[rows], list(perfect.get(str(split[rows[0]]), ())))
        mask = placeholder_zeros(values, real)
        if mask is None:
            continue
        drop[rows[mask]] = True
        logged = values[np.isfinite(values) & (values != 0)]
        notes.append(
            IngestNote(
                code="placeholder_zeros",
                message=(
                    f"{int(mask.sum())} of {len(values)} values of {tag!r} are exactly 0.0 "
                    f"between logged values up to {float(logged.max()):.4g}; read as not "
                    "logged (a placeholder, not a loss of zero)"
                ),
                path=path,
                step=int(step[rows[mask]][0]),
                details={"tag": tag, "zeros": int(mask.sum()), "points": len(values)},
            )
        )
    if not notes:
        return scalars, []
    return scalars[~drop].reset_index(drop=True), notes
