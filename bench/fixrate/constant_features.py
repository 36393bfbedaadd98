"""Which stored corpus runs have a feature constant in their training split but not in val?

``generate.make_data`` used to standardise with ``(x - mean) / (std + 1e-6)`` over the
training split; a feature that is constant there (a digits pixel 0 in every training
sample) but not in the validation split gave validation inputs of about 1e6 (r01980's val
loss of 1876 at val accuracy 0.90). It now scales such a feature by 1, as sklearn's
StandardScaler does (``generate.standard_scale``), which changed the history of exactly
the stored runs this script lists (re-trained by ``generate.py --retrain``; the list is
``bench/calibration/retrained_ids.txt``); every other run's tensors stayed bit for bit the
same (a constant training column is 0 either way). No training: the splits are recomputed
by ``generate.make_data`` itself.  ``--fixrate N`` instead lists the fix-rate cases (``N``
per state) whose *trial* splits (``corpus.train``'s seed offsets; trial seed 0 is the
stored run) have such a feature: the trials that changed with the fix, e.g. the oracle's.

    python bench/fixrate/constant_features.py [--json OUT] [--fixrate 12]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "calibration"))

def artefact_columns(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's features constant in its training split that val still varies on."""
    import generate

    if cfg["dataset"] == "chars" or cfg.get("raw_inputs"):
        return []
    data = generate.make_data(cfg)
    xtr, xva = data["xtr"].double().numpy(), data["xva"].double().numpy()
    out = []
    for j in range(xtr.shape[1]):
        if np.ptp(xtr[:, j]) != 0:
            continue
        off = xva[:, j] != xtr[0, j]
        if off.any():
            out.append({"feature": j, "val_samples": int(off.sum()),
                        "max_abs_input": float(np.abs(xva[:, j]).max())})
    return out


def trial_columns(cfg: dict[str, Any], seeds: tuple[int, ...] = (0, 1)) -> dict[int, list[int]]:
    """Per trial seed (``corpus.train``'s offset of the recipe's seed), the features constant
    in that trial's training split that its val split varies on (seeds without any left out)."""
    import corpus

    out = {}
    for s in seeds:
        cols = artefact_columns({**cfg, "seed": int(cfg["seed"]) + s * corpus.SEED_STRIDE})
        if cols:
            out[s] = [c["feature"] for c in cols]
    return out


def fixrate_cases(per_state: int, seeds: tuple[int, ...] = (0, 1)) -> list[dict[str, Any]]:
    """The fix-rate cases whose trial splits have a training-constant feature."""
    import corpus

    hits = []
    for case in corpus.cases(per_state):
        cols = trial_columns(case["config"], seeds)
        if cols:
            hits.append({"id": case["id"], "state": case["state"], "cause": case["cause"],
                         "dataset": case["config"]["dataset"],
                         "trial_seeds": {str(k): v for k, v in cols.items()}})
    return hits


def main(argv: list[str] | None = None) -> int:
    import store

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the list here")
    p.add_argument("--fixrate", type=int, metavar="N",
                   help="the fix-rate cases (N per state) with such a feature in a trial split")
    p.add_argument("--seeds", type=int, default=2, help="trial seeds for --fixrate")
    args = p.parse_args(argv)
    if args.fixrate:
        found = fixrate_cases(args.fixrate, tuple(range(args.seeds)))
        for h in found:
            print(f"{h['id']} {h['state']} ({h['cause']}, {h['dataset']}): "
                  + ", ".join(f"trial seed {s}: features {c}"
                              for s, c in h["trial_seeds"].items()))
        print(f"{len(found)} fix-rate cases have a training-constant feature in a trial split")
        if args.json:
            args.json.write_text(json.dumps({"cases": found}, indent=1) + "\n")
        return 0
    hits, total = [], 0
    for rec in store.iter_records():
        total += 1
        cols = artefact_columns(rec["config"])
        if cols:
            hits.append({"id": rec["id"], "cause": rec["cause"],
                         "dataset": rec["config"]["dataset"],
                         "n_train": rec["config"]["n_train"], "columns": cols})
    for h in hits:
        print(f"{h['id']} {h['cause']} {h['dataset']} n_train={h['n_train']}: "
              + ", ".join(f"feature {c['feature']} ({c['val_samples']} val samples, "
                          f"|x| up to {c['max_abs_input']:.3g})" for c in h["columns"]))
    print(f"{len(hits)} of {total} stored runs have a feature constant in training but not "
          "in validation")
    if args.json:
        args.json.write_text(json.dumps({"total": total, "runs": hits}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
