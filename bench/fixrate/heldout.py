"""Held-out check of a coupled advice move: the top recommendation alone against the top
with the changes it carries (``together_with``), on corpus runs outside the fix-rate
campaign's sample.

A policy that makes the top recommendation carry other changes is written after a few
campaign cases; this measures it on runs of the same causes that the campaign never saw
(``corpus.cases`` beyond the campaign's ``--corpus`` per state).  For each case: the
control (the broken recipe), the top recommendation of the control's own logs (trial
seed 0 is the stored run) alone, and with what it carries, each over the oracle's seeds
through ``corpus.train`` (the probe's trainer), judged as the oracle judges a setting
(the fix-rate judge's three parts: states gone in every seed, mean final val loss at the
bar, the probe's gate).  Relative proposals (``x2``) are taken on the recipe's value.

Usage (resumable: the oracle's one JSON per trial under ``--out``)::

    nice -n 15 python bench/fixrate/heldout.py --cases r00015,r00775 \\
        --out bench/_out/heldout --json bench/fixrate/results_heldout_round11.json
    python bench/fixrate/heldout.py --pick underfit:heavy_weight_decay,heavy_dropout
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402
import oracle  # noqa: E402


def concrete(hp: dict[str, Any], name: str, proposed: Any) -> Any:
    """A recommendation's value for ``corpus.apply``: ``x2`` on the recipe's value."""
    if isinstance(proposed, str) and proposed[:1] in "x*":
        return float(hp[name]) * float(proposed[1:])
    return proposed


def pick(spec: str, campaign: int) -> list[str]:
    """``STATE:CAUSE,CAUSE``: the corpus cases of that state and those causes that the
    campaign's ``campaign`` per state leave out."""
    state, causes = spec.split(":", 1)
    seen = {c["id"] for c in corpus.cases(campaign)}
    return [c["id"] for c in corpus.cases(10_000, runs=None) if c["id"] not in seen
            and c["state"] == state and c["cause"] in causes.split(",")]


def check(case: dict[str, Any], out: Path) -> dict[str, Any]:
    """Control, top alone, top with what it carries: the oracle's summary rows."""
    from diagnose.pipeline import analyze

    trials = [oracle.trial(case, "control", {}, s, out) for s in oracle.SEEDS]
    logdir = out / case["id"] / "control_s0"
    result = analyze([str(logdir)]).results[0]
    found = next(((f, f.recommendations[0]) for f in result.findings
                  if f.recommendations and f.severity != "info"), None)
    row: dict[str, Any] = {"case": case["id"], "cause": case["cause"], "label": case["label"]}
    if found is None:
        return {**row, "skipped": "no recommendation"}
    finding, rec = found
    hp = json.loads((logdir / "config.json").read_text())
    parts = (rec, *rec.together)
    row.update(rule=finding.rule, top={rec.hyperparameter: rec.proposed},
               together={r.hyperparameter: r.proposed for r in rec.together})
    missing = [r.hyperparameter for r in parts if r.hyperparameter not in hp]
    if missing:
        return {**row, "skipped": f"the recipe has no {', '.join(missing)}"}
    alone = {rec.hyperparameter: concrete(hp, rec.hyperparameter, rec.proposed)}
    trials += [oracle.trial(case, "top", alone, s, out) for s in oracle.SEEDS]
    if rec.together:
        both = {r.hyperparameter: concrete(hp, r.hyperparameter, r.proposed) for r in parts}
        trials += [oracle.trial(case, "top+together", both, s, out) for s in oracle.SEEDS]
    summary = oracle.summarize_case(case, trials)
    rows = {r["setting"]: r for r in summary["rows"] if not r["setting"].endswith(" +stop")}
    return {**row, "bar": summary["bar"], "settings": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", help="comma-separated corpus case ids")
    p.add_argument("--pick", action="append", default=[],
                   help="STATE:CAUSE,... the held-out cases of those causes (repeatable)")
    p.add_argument("--campaign", type=int, default=12,
                   help="the campaign's cases per state (left out by --pick)")
    p.add_argument("--limit", type=int, default=12, help="at most this many per --pick")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "_out" / "heldout")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    ids = args.cases.split(",") if args.cases else []
    for spec in args.pick:
        ids += pick(spec, args.campaign)[: args.limit]
    found = {c["id"]: c for c in corpus.cases(10_000, runs=None)}
    rows = []
    for cid in ids:
        row = check(found[cid], args.out)
        rows.append(row)
        if "skipped" in row:
            print(f"{cid} ({row['cause']}): skipped, {row['skipped']}", flush=True)
            continue
        cells = "; ".join(f"{k} {r['mean']:.3g}{' FIX' if r['fix'] else ''}"
                          for k, r in row["settings"].items())
        print(f"{cid} ({row['cause']}, {row['rule']}) top {row['top']} with "
              f"{row['together']}, bar {row['bar']:.3g}: {cells}", flush=True)
    done = [r for r in rows if "settings" in r and "top+together" in r["settings"]]
    total = {k: sum(r["settings"][k]["fix"] for r in done) for k in ("top", "top+together")}
    print(f"{len(done)} cases with a coupled top: fixed alone {total['top']}, with what it "
          f"carries {total['top+together']}")
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "fixed": total,
                                         "compared": len(done)}, indent=1,
                                        default=str) + "\n")
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    raise SystemExit(main())
