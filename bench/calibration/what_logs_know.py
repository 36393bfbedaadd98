"""What the logs know: where the rules' misses sit, and which piece of the labels'
knowledge no log carries (issue 9, round 31).

The labels come from ``label_check.py`` (DESIGN.md's meanings made checkable), which reads
more than a log holds: the untrained model's loss (ln C from the class count, or the
target's variance), the data set's reference level (the 10th percentile of its runs' best
val loss: how far "poor" is from what the data allows) and whether the model has batch
norm.  Two measurements on one store, its labels and ``evaluate.py --predictions``:

1. The rules' scores split by what each run's log records (read through diagnose's own
   loaders): classification logs that carry the class count (``signals.class_count``:
   configuration, per-class columns or the curves), classification logs that do not,
   character language models, regressions.
2. The label checker re-run with one piece of its knowledge taken away, each reading
   scored against the labels exactly as the rules are (a run the reading leaves unclear
   counts as healthy): a fixed reference level (0, 0.25, 0.5 of the untrained level)
   instead of the data set's; at 0.25, the untrained level the rules read from the log
   (UND004's ``untrained_level``; the reference and chance levels scale with it) instead
   of the true one; batch norm assumed on every model, or on none.

The reading that falls furthest when a piece is taken away names what the misses need; a
target the checker itself cannot reach without that piece is not a rule's to reach.

    PYTHONPATH=$PWD python bench/calibration/what_logs_know.py \\
        --store bench/calibration/runs.jsonl.gz --rendered bench/_out/calibration \\
        --predictions /tmp/pred.tsv [--before r09000] [--since r05000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate
import label_check
import separability
import store

#: the fixed reference levels tried, as shares of the untrained level (label_check caps
#: the data set's own at 0.5)
FIXED_REFERENCES = (0.0, 0.25, 0.5)
#: the fixed reference the other readings keep (the middle of that range)
BASE_REFERENCE = 0.25


def log_facts(item: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """(id, {class count in the log?, the rules' untrained level}) of one rendered run."""
    from diagnose import signals
    from diagnose.detectors import underfit

    rid, folder = item
    ctx = separability.rule_context(Path(folder))
    if ctx is None:
        return rid, {"loaded": False}
    ul = underfit.untrained_level(ctx)
    return rid, {"loaded": True,
                 "class_count": signals.class_count(ctx.run, ctx.roles) is not None,
                 "untrained_level": ul[0] if ul is not None else None}


def log_group(rec: dict[str, Any], facts: dict[str, Any]) -> str:
    task = rec["config"]["task"]
    if task == "reg":
        return "regression"
    if task == "lm":
        return "language model"
    return ("classification, class count in the log" if facts.get("class_count")
            else "classification, no class count in the log")


def fixed_refs(records: list[dict[str, Any]], share: float) -> dict[tuple[Any, ...], float]:
    """Every data set's reference level set to ``share`` of its untrained level."""
    keys = {label_check.ref_key(r) for r in records}
    return {**{k: share for k in keys}, **{k[:1]: share for k in keys}}


def rules_untrained_level(facts: dict[str, dict[str, Any]]
                          ) -> Callable[[dict[str, Any], label_check.Curves],
                                        label_check.Curves]:
    """An ``adjust`` that replaces the true untrained level with the rules' reading."""
    def adjust(rec: dict[str, Any], c: label_check.Curves) -> label_check.Curves:
        got = facts.get(rec["id"], {}).get("untrained_level")
        if not got or c.l0 <= 0:
            return c
        s = got / c.l0
        c.l0, c.lref, c.chance = got, c.lref * s, min(c.chance * s, got)
        return c
    return adjust


def states_of(res: dict[str, Any]) -> set[str]:
    return set() if res["status"] == "dropped" else set(res["label"])


def table_line(name: str, s: dict[str, Any]) -> str:
    per = " ".join(f"{st[:3]} {s['per_state'][st]['f1']:.3f}" if st in s["per_state"]
                   else f"{st[:3]}   -  " for st in evaluate.CORE)
    return (f"  {name:44s} n={s['n']:5d}  macro-F1 {s['macro_f1']:.3f}  healthy FA "
            f"{s['healthy_false_alarms']:3d}/{s['healthy']:4d} ({s['healthy_fa_rate']:.1%})"
            f"  exact {s['exact']:.3f}  | {per}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--labels", type=Path, default=label_check.LABELS)
    ap.add_argument("--rendered", type=Path, required=True,
                    help="the rendered corpus evaluate.py read (<format>/<id>/)")
    ap.add_argument("--predictions", type=Path, required=True,
                    help="evaluate.py --predictions output on that corpus")
    ap.add_argument("--before", default=None,
                    help="score only runs with ids before this one (e.g. r09000)")
    ap.add_argument("--since", default=None,
                    help="score only runs with ids from this one on (e.g. r10200)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)

    records = store.load(args.store)
    by_id = {r["id"]: r for r in records}
    labels = label_check.read_labels(args.labels)
    with open(args.predictions, encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t")
                if r["id"] in labels and r["id"] in by_id
                and (args.before is None or r["id"] < args.before)
                and (args.since is None or r["id"] >= args.since)]
    predicted = {r["id"]: set() if r["all_states"] == "-" else set(r["all_states"].split("+"))
                 for r in rows}
    items = [(r["id"], str(args.rendered / r["format"] / r["id"])) for r in rows]
    with Pool(max(1, args.jobs)) as pool:
        facts = dict(pool.map(log_facts, items, chunksize=64))
    ids = [r["id"] for r in rows]
    truth = {i: set(labels[i]) for i in ids}
    unloaded = sum(1 for i in ids if not facts[i]["loaded"])

    print(f"== what the logs know: {len(ids)} scored runs"
          + (f" before {args.before}" if args.before else "")
          + (f" from {args.since} on" if args.since else "")
          + (f" ({unloaded} did not load)" if unloaded else ""))
    print("\n-- 1. the rules, by what the log records")
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(log_group(by_id[i], facts[i]), []).append(i)
    for name in sorted(groups):
        print(table_line(name, evaluate.score([(truth[i], predicted[i]) for i in groups[name]])))
    rules_all = evaluate.score([(truth[i], predicted[i]) for i in ids])
    print(table_line("all", rules_all))

    print("\n-- 2. the label checker with a piece of its knowledge taken away "
          "(beside the rules)")
    print(table_line("the rules", rules_all))
    recs = [by_id[i] for i in ids]
    readings: list[tuple[str, dict[tuple[Any, ...], float], dict[str, Any]]] = [
        (f"reference fixed at {share:g} L0", fixed_refs(records, share), {})
        for share in FIXED_REFERENCES]
    base = fixed_refs(records, BASE_REFERENCE)
    readings += [
        (f"{BASE_REFERENCE:g} L0, L0 as the rules read it", base,
         {"adjust": rules_untrained_level(facts)}),
        (f"{BASE_REFERENCE:g} L0, batch norm on every model", base, {"has_bn": True}),
        (f"{BASE_REFERENCE:g} L0, batch norm on no model", base, {"has_bn": False}),
    ]
    for name, refs, kw in readings:
        pairs = [(truth[r["id"]], states_of(label_check.check(r, refs, **kw))) for r in recs]
        print(table_line(name, evaluate.score(pairs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
