"""Write the fixtures of the reference-run rules BSL001-BSL003 (deterministic).

These rules are not run by a detector on one run (``evaluated_by = "baseline"``): they
compare a run with a reference (``diagnose RUN --baseline REFERENCE``).  Each fixture is
therefore a *pair* of Keras CSVLogger logs: ``<ID>/fire/current`` + ``<ID>/fire/reference``
(the comparison must flag it) and ``<ID>/quiet/current`` + ``<ID>/quiet/reference`` (a
close pair it must leave alone: another seed of the same configuration).

Run ``python tests/rule_fixtures/make_baseline_fixtures.py`` from the repo root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EPOCHS = 40


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else repr(float(np.float32(x)))


def keras_log(folder: Path, seed: int, final_acc: float = 0.95, tau: float = 4.0,
              nan_from: int | None = None) -> None:
    """A classifier whose val accuracy rises 0.1 -> ``final_acc`` with time constant
    ``tau`` epochs; losses fall alongside; NaN losses from epoch ``nan_from``."""
    rng = np.random.default_rng(seed)
    t = np.arange(EPOCHS, dtype=float)
    rise = 1 - np.exp(-(t + 1) / tau)
    acc = np.clip(0.1 + (final_acc + 0.02 - 0.1) * rise + rng.normal(0, 0.003, EPOCHS), 0, 1)
    val_acc = np.clip(0.1 + (final_acc - 0.1) * rise + rng.normal(0, 0.003, EPOCHS), 0, 1)
    loss = (2.3 * (1 - rise) + 0.08) * np.exp(rng.normal(0, 0.02, EPOCHS))
    val_loss = (2.3 * (1 - rise) + 0.15) * np.exp(rng.normal(0, 0.02, EPOCHS))
    if nan_from is not None:
        loss[nan_from - 3:nan_from] *= [3.0, 12.0, 80.0]
        loss[nan_from:] = val_loss[nan_from:] = np.nan
        acc[nan_from:] = val_acc[nan_from:] = 0.1
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for e in range(EPOCHS):
        lines.append(f"{e},{_fmt(acc[e])},{_fmt(loss[e])},{_fmt(val_acc[e])},"
                     f"{_fmt(val_loss[e])}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training.log").write_text("\n".join(lines) + "\n", encoding="utf-8")


PAIRS = {
    # the outcome ends ten points lower than the reference's
    "BSL001/fire": (dict(seed=1, final_acc=0.85), dict(seed=2)),
    # another seed of the same configuration
    "BSL001/quiet": (dict(seed=3), dict(seed=4)),
    # the run diverges (NaN from epoch 25); the reference is healthy
    "BSL002/fire": (dict(seed=5, nan_from=25), dict(seed=6)),
    "BSL002/quiet": (dict(seed=7), dict(seed=8)),
    # the same final accuracy, reached about three times later
    "BSL003/fire": (dict(seed=9, tau=8.0), dict(seed=10, tau=3.0)),
    "BSL003/quiet": (dict(seed=11, tau=3.0), dict(seed=12, tau=3.0)),
}


def main(root: Path = HERE) -> None:
    """(Re)write every pair under ``root``."""
    for name, (current, reference) in PAIRS.items():
        keras_log(root / name / "current", **current)
        keras_log(root / name / "reference", **reference)


if __name__ == "__main__":
    main()
