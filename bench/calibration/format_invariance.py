"""Does the verdict depend on the log family a run was written in?  (issue 9)

The sets the team keeps apart hold real trainings in several log formats.  The corpus
evaluation renders each run in ONE family (a hash of its id), so its per-format rows
compare different runs.  This renders the SAME runs in every family and scores each
family on them, so a difference between two rows is the format's doing: what the family
carries (Keras CSV keeps per-epoch means, HF has no train accuracy, some families carry
the hyperparameters and the class count, some do not) or how diagnose reads it.

    PYTHONPATH=$PWD python bench/calibration/format_invariance.py \\
        --out /tmp/fmtinv --limit 400 [--reuse] [--dump runs.tsv]

Prints per family: macro-F1, healthy false alarms and exact match on the same runs, then
how often two families agree on a run's core states, and the runs whose core states
differ between families (with the label and every family's states) for reading.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accuracy  # bench/accuracy.py: the shared scorer
import label_check
import store
import write_logs

FORMATS = sorted(write_logs.WRITERS)


def sample(records: list[dict[str, Any]], limit: int,
           fresh_from: int | None = None) -> list[tuple[dict[str, Any], list[str]]]:
    """The scored runs (label check not 'dropped'), in a stable hashed order, capped.

    ``fresh_from`` keeps only runs with index >= it (a batch drawn after the rules were
    tuned); their labels are still checked against the whole store, as evaluate.py does.
    """
    checked = {c["id"]: c for c in label_check.check_all(records)}
    runs = [(rec, checked[rec["id"]]["label"]) for rec in records
            if checked[rec["id"]]["status"] != "dropped"
            and (fresh_from is None or int(rec["id"][1:]) >= fresh_from)]
    runs.sort(key=lambda r: zlib.crc32(f"fmtinv/{r[0]['id']}".encode()))
    return runs[:limit] if limit else runs


def score(pairs: list[tuple[set[str], set[str]]]) -> tuple[float, int, int, float]:
    """macro-F1 (core states), healthy false alarms, healthy runs, exact match."""
    table = accuracy.prf(pairs)
    f1 = accuracy.macro_f1(table, [e for e, _ in pairs]) or 0.0
    healthy = [(e, p) for e, p in pairs if not e]
    fa = sum(1 for _, p in healthy if p)
    exact = sum(1 for e, p in pairs if e == p) / max(1, len(pairs))
    return f1, fa, len(healthy), exact


def sample_args(ap: argparse.ArgumentParser, limit: int) -> None:
    """The options every re-rendering check shares: where, how many, reuse, which store."""
    ap.add_argument("--out", type=Path, required=True, help="where the renderings go")
    ap.add_argument("--limit", type=int, default=limit, help="runs in the sample (0: all)")
    ap.add_argument("--reuse", action="store_true", help="keep renderings already there")
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--fresh-from", type=int, metavar="INDEX",
                    help="only runs with index >= INDEX (an unseen batch; labels from the "
                         "whole store)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sample_args(ap, 400)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--dump", type=Path, help="one TSV row per run: label and states per family")
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    runs = sample(store.load(args.store), args.limit, args.fresh_from)
    labels = {rec["id"]: set(lab) for rec, lab in runs}
    got: dict[str, dict[str, set[str]]] = {f: {} for f in formats}
    for fmt in formats:
        t0 = time.perf_counter()
        for rec, _ in runs:
            if not (args.reuse and (args.out / fmt / rec["id"]).is_dir()):
                write_logs.render(rec, args.out, fmt)
        outcome = accuracy.run_analyzer(args.out / fmt, 1)
        for run_id, states in outcome.states.items():
            rid = run_id.split("/")[0]
            got[fmt].setdefault(rid, set()).update(accuracy.core(states))
        lost = [rid for rid in labels if rid not in got[fmt]]
        print(f"  {fmt}: {len(runs)} runs rendered and analysed in "
              f"{time.perf_counter() - t0:.0f} s; {len(lost)} not loaded"
              + (f" ({', '.join(lost[:5])})" if lost else ""), file=sys.stderr)
    print(f"== the same {len(runs)} scored corpus runs, rendered in every family")
    print(f"  {'family':<12} macro-F1  healthy FA      exact")
    for fmt in formats:
        pairs = [(labels[r], got[fmt].get(r, set())) for r in labels]
        f1, fa, nh, exact = score(pairs)
        print(f"  {fmt:<12} {f1:8.3f}  {fa:3d}/{nh:<3d} {fa / max(1, nh):5.1%}  {exact:6.3f}")
    print("\n-- pairwise agreement on a run's core states")
    print("  " + " " * 12 + "".join(f"{f[:8]:>9}" for f in formats))
    for a in formats:
        row = [sum(got[a].get(r, set()) == got[b].get(r, set()) for r in labels) / len(labels)
               for b in formats]
        print(f"  {a:<12}" + "".join(f"{x:9.3f}" for x in row))
    differ = [r for r in labels if len({frozenset(got[f].get(r, set())) for f in formats}) > 1]
    print(f"\n-- {len(differ)} runs whose core states differ between families")
    odd: Counter[str] = Counter()
    for r in differ:
        votes = Counter(frozenset(got[f].get(r, set())) for f in formats)
        major = votes.most_common(1)[0][0]
        for f in formats:
            if frozenset(got[f].get(r, set())) != major:
                odd[f] += 1
    print("  runs where the family is off the majority: "
          + ", ".join(f"{f} {n}" for f, n in odd.most_common()))
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as fh:
            fh.write("id\tlabel\t" + "\t".join(formats) + "\n")
            for r in labels:
                cells = ["+".join(sorted(got[f].get(r, set()))) or "healthy" for f in formats]
                fh.write(f"{r}\t{'+'.join(sorted(labels[r])) or 'healthy'}\t"
                         + "\t".join(cells) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
