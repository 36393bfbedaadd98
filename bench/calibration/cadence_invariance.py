"""Does the verdict hold when the same run is logged less often?  (issue 9, round 17)

The sets the team keeps apart are real runs logged at whatever cadence their authors
chose (train loss every step, every 50 steps, once per epoch; val every epoch or every
5).  The corpus logs each run at the generator's cadence.  This takes the same scored runs
(format_invariance.py's sample) and writes each one, through write_logs.py's writers, at
its own cadence and thinned:

- ``train/2``, ``train/4``: every k-th logged train point (train loss, train accuracy,
  learning rate, gradient norm: a logger called k times less often);
- ``train/epoch``: per-epoch means of the train metrics (the last learning rate of the
  epoch) where the run logs per step, as Lightning's ``on_epoch`` and Keras log;
- ``val/2``: every 2nd evaluation, keeping the last;
- ``val-only``: no train-side series at all, as a logger that writes only the
  validation metrics leaves a run (overfit and batch-norm collapse are read against the
  train side, so their labels do not carry over to this variant);
- ``loss-only``: no accuracy series (train or val), as HF Trainer fine-tunes without a
  ``compute_metrics`` and plain loops that log only losses leave a run: the rules must
  tell a classifier's cross-entropy from a regression loss without an accuracy;
- ``epochs/5``, ``epochs/7``, ``epochs/10``: the run as a K-epoch log shows it (K
  evaluations kept evenly, the train side averaged between them), as a short Keras or
  Lightning run leaves it; these are below the trend rules' usual point counts on purpose
  and are not held to ``TRAIN_FLOOR``.

A series is never thinned below the points the rules need to judge (``TRAIN_FLOOR``:
PLT001's ``min_points`` train loss points; ``VAL_FLOOR``: OVF002's ``min_points`` val
points): such a run keeps that series as logged, and a run a variant leaves unchanged
keeps its unthinned verdict (it is not analysed twice).

    PYTHONPATH=$PWD nice -n 10 python bench/calibration/cadence_invariance.py \\
        --out /tmp/cadinv --limit 200 [--formats jsonl,csv] [--reuse] [--dump DIR]

Prints per variant and family: macro-F1, healthy false alarms, exact match, per-state
P/R, the runs it changed, how often it agrees with the unthinned verdict and how many
runs became "not judged"; then every run whose core states flip (label, cause, states
per variant with the rules behind them) and those flips grouped by state, direction and
rule.  ``--dump DIR`` writes one predictions TSV per variant and family
(``DIR/<variant>.<family>.tsv``, the columns why_quiet.py reads, with ``--rendered
OUT/<variant>``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accuracy  # bench/accuracy.py: the shared scorer
import store
import write_logs
from format_invariance import sample, sample_args, score

RULES = Path(__file__).resolve().parents[2] / "rules"
TRAIN_SIDE = ("train_loss", "train_acc", "lr", "grad_norm")
VAL_SIDE = ("val_loss", "val_acc")
BASE = "base"


def _min_points(rule_id: str) -> int:
    with open(RULES / f"{rule_id}.toml", "rb") as fh:
        return int(tomllib.load(fh)["thresholds"]["min_points"])


TRAIN_FLOOR = _min_points("PLT001")  # train loss points the plateau rule judges from
VAL_FLOOR = _min_points("OVF002")    # val points the first overfit rule judges from

Pts = list[tuple[int, float]]


def _with(rec: dict[str, Any], series: dict[str, Pts]) -> dict[str, Any]:
    """A copy of the record with these series replaced (values encoded as the store
    keeps them)."""
    out = copy.deepcopy(rec)
    for name, pts in series.items():
        out["series"][name] = [[s for s, _ in pts], [store.encode_value(v) for _, v in pts]]
    return out


def every_kth_train(k: int) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The train-side series at every k-th logged train loss step (the steps a logger
    called k times less often would write), or None when that leaves too few points."""
    def thin(rec: dict[str, Any]) -> dict[str, Any] | None:
        pts = write_logs.points(rec)
        keep = {s for s, _ in pts["train_loss"][k - 1::k]}
        if len(keep) < TRAIN_FLOOR:
            return None
        return _with(rec, {n: [(s, v) for s, v in pts[n] if s in keep]
                           for n in TRAIN_SIDE if n in pts})
    return thin


def epoch_means(rec: dict[str, Any]) -> dict[str, Any] | None:
    """Per-epoch train metrics at each epoch's last logged step (means; the learning
    rate's last value), where the run logs per step; None otherwise or when too few
    epochs."""
    if rec["config"]["train_log"] != "step":
        return None
    pts = write_logs.points(rec)
    spe = rec["config"]["steps_per_epoch"]
    new: dict[str, Pts] = {}
    for n in TRAIN_SIDE:
        if n not in pts:
            continue
        last: dict[int, int] = {}
        for s, _ in pts[n]:
            last[max(0, (s - 1) // spe)] = s  # write_logs.by_epoch's epoch of a step
        per = write_logs.by_epoch(rec, pts[n], mean=n != "lr")
        new[n] = [(last[e], per[e]) for e in sorted(per)]
    if len(new["train_loss"]) < TRAIN_FLOOR or new["train_loss"] == pts["train_loss"]:
        return None
    return _with(rec, new)


def every_2nd_val(rec: dict[str, Any]) -> dict[str, Any] | None:
    """Every 2nd evaluation counted back from the last (which is kept), or None when the
    run has no validation or that leaves too few points."""
    pts = write_logs.points(rec)
    if "val_loss" not in pts and "val_acc" not in pts:
        return None
    ref = pts.get("val_loss") or pts["val_acc"]
    keep = {s for s, _ in ref[::-1][::2]}
    if len(keep) < VAL_FLOOR:
        return None
    return _with(rec, {n: [(s, v) for s, v in pts[n] if s in keep]
                       for n in VAL_SIDE if n in pts})


def val_only(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The run with its train-side series dropped, as a logger that writes only the
    validation metrics would leave it (many Lightning and plain-loop logs), or None when
    the run has too few evaluations.  Overfit and batch-norm collapse are read against the
    train side, so under this variant only the verdicts that val alone shows (healthy,
    divergence, plateau, underfit) are comparable with the labels."""
    pts = write_logs.points(rec)
    ref = pts.get("val_loss") or pts.get("val_acc") or []
    if len(ref) < VAL_FLOOR:
        return None
    out = copy.deepcopy(rec)
    for n in TRAIN_SIDE:
        out["series"].pop(n, None)
    return out


def k_epochs(k: int) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The run as a K-epoch log would show it (a Keras CSVLogger of a short run): K
    evaluations picked evenly by index (the last kept), each train-side metric averaged
    over the steps since the previous kept evaluation (the learning rate: its last value)
    and written at the evaluation's step.  None when the run has K or fewer evaluations
    (it is already that short) or no train loss.  The curve keeps its shape at a coarser
    resolution, so the labels carry over; below ``TRAIN_FLOOR`` points the trend rules
    must judge from few epochs, which is what this variant measures."""
    def thin(rec: dict[str, Any]) -> dict[str, Any] | None:
        pts = write_logs.points(rec)
        ref = pts.get("val_loss") or pts.get("val_acc")
        if not ref or len(ref) <= k or "train_loss" not in pts:
            return None
        n = len(ref)
        ends = [ref[i][0] for i in sorted({round((j + 1) * n / k) - 1 for j in range(k)})]
        keep = set(ends)
        new: dict[str, Pts] = {name: [(s, v) for s, v in pts[name] if s in keep]
                               for name in VAL_SIDE if name in pts}
        for name in TRAIN_SIDE:
            if name not in pts:
                continue
            out: Pts = []
            prev: int | None = None
            for e in ends:
                vs = [v for s, v in pts[name] if (prev is None or s > prev) and s <= e]
                prev = e
                if vs:
                    out.append((e, vs[-1] if name == "lr" else sum(vs) / len(vs)))
            new[name] = out
        return _with(rec, new)
    return thin


ACCURACY_SERIES = ("train_acc", "val_acc")


def loss_only(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The run with its accuracy series dropped (train and val), as a logger that writes
    only losses leaves it, or None when it logs no accuracy (nothing changes)."""
    if not set(ACCURACY_SERIES) & set(rec["series"]):
        return None
    out = copy.deepcopy(rec)
    for n in ACCURACY_SERIES:
        out["series"].pop(n, None)
    return out


VARIANTS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "train/2": every_kth_train(2), "train/4": every_kth_train(4),
    "train/epoch": epoch_means, "val/2": every_2nd_val, "val-only": val_only,
    "loss-only": loss_only,
    "epochs/5": k_epochs(5), "epochs/7": k_epochs(7), "epochs/10": k_epochs(10),
}


def analyse(root: Path) -> tuple[dict[str, set[str]], dict[str, str], dict[str, set[str]]]:
    """Core states, verdict and the rules behind the core states (error/warning
    findings) per run id of every run under ``root``."""
    from diagnose.config import Config
    from diagnose.findings import SEVERITY_RANK
    from diagnose.pipeline import Options, analyze

    states: dict[str, set[str]] = {}
    verdict: dict[str, str] = {}
    rules: dict[str, set[str]] = {}
    if not root.is_dir():
        return states, verdict, rules
    for res in analyze([str(root)], Config(), Options(jobs=1)).results:
        rid = res.run.run_id.split("/")[0]
        states.setdefault(rid, set()).update(accuracy.core(res.states))
        rules.setdefault(rid, set()).update(
            f.rule for f in res.findings if f.state in store.CORE
            and SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"])
        if verdict.get(rid) != "findings":
            verdict[rid] = res.verdict
    return states, verdict, rules


def _name(states: set[str]) -> str:
    return "+".join(sorted(states)) or "healthy"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sample_args(ap, 200)
    ap.add_argument("--formats", default="jsonl,csv")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--dump", type=Path, help="one predictions TSV per variant and family")
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    variants = [v for v in args.variants.split(",") if v]
    runs = sample(store.load(args.store), args.limit, args.fresh_from)
    labels = {rec["id"]: set(lab) for rec, lab in runs}
    recs = {rec["id"]: rec for rec, _ in runs}
    thinned = {v: {rid: t for rid, rec in recs.items() if (t := VARIANTS[v](rec)) is not None}
               for v in variants}
    got: dict[tuple[str, str], dict[str, set[str]]] = {}
    verdicts: dict[tuple[str, str], dict[str, str]] = {}
    fired: dict[tuple[str, str], dict[str, set[str]]] = {}
    for fmt in formats:
        for v in [BASE, *variants]:
            t0 = time.perf_counter()
            todo = recs if v == BASE else thinned[v]
            root = args.out / v.replace("/", "_") / fmt
            for rid, rec in todo.items():
                if not (args.reuse and (root / rid).is_dir()):
                    write_logs.render(rec, root.parent, fmt)
            states, verdict, rules = analyse(root)
            if v != BASE:  # a run the variant leaves as logged keeps its verdict
                for rid in recs.keys() - todo.keys():
                    states[rid] = got[(BASE, fmt)].get(rid, set())
                    verdict[rid] = verdicts[(BASE, fmt)].get(rid, "lost")
                    rules[rid] = fired[(BASE, fmt)].get(rid, set())
            got[(v, fmt)], verdicts[(v, fmt)], fired[(v, fmt)] = states, verdict, rules
            print(f"  {v} {fmt}: {len(todo)} runs written and analysed in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"== the same {len(runs)} scored corpus runs, thinned (floors: train loss "
          f"{TRAIN_FLOOR} points, val {VAL_FLOOR})")
    states_seen = list(store.CORE)
    print(f"  {'variant':<12} {'family':<6} {'changed':>7} {'macroF1':>7} {'healthyFA':>12} "
          f"{'exact':>6} {'agree':>6} {'->NJ':>4}  " + " ".join(f"{s[:9]:>9}" for s in states_seen))
    for v in [BASE, *variants]:
        for fmt in formats:
            pairs = [(labels[r], got[(v, fmt)].get(r, set())) for r in labels]
            f1, fa, nh, exact = score(pairs)
            table = accuracy.prf(pairs)
            agree = sum(got[(v, fmt)].get(r, set()) == got[(BASE, fmt)].get(r, set())
                        for r in labels) / len(labels)
            nj = sum(verdicts[(v, fmt)].get(r) == "not_judged"
                     and verdicts[(BASE, fmt)].get(r) != "not_judged" for r in labels)
            changed = len(recs) if v == BASE else len(thinned[v])
            pr = " ".join(f"{table[s]['precision']:.2f}/{table[s]['recall']:.2f}"
                          if s in table else f"{'-':>9}" for s in states_seen)
            print(f"  {v:<12} {fmt:<6} {changed:7d} {f1:7.3f} {fa:4d}/{nh:<3d}"
                  f"{fa / max(1, nh):5.1%} {exact:6.3f} {agree:6.3f} {nj:4d}  {pr}")
    print("  (per-state columns: precision/recall)")
    for fmt in formats:
        flips = [r for r in labels if any(got[(v, fmt)].get(r, set())
                                          != got[(BASE, fmt)].get(r, set()) for v in variants)]
        print(f"\n-- {fmt}: {len(flips)} runs whose core states flip under thinning "
              f"(label | {BASE} {' '.join(variants)})")
        for r in sorted(flips):
            cells = " ".join(_name(got[(v, fmt)].get(r, set()))
                             + f"({','.join(sorted(fired[(v, fmt)].get(r, set())))})"
                             for v in [BASE, *variants])
            print(f"  {r} {recs[r]['cause']:<24} {_name(labels[r]):<18} | {cells}")
        print(f"\n-- {fmt}: flip groups (state appears/vanishes under a variant, the rules "
              "behind it, right/WRONG against the label): count, first runs")
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for r in flips:
            base, base_rules = got[(BASE, fmt)].get(r, set()), fired[(BASE, fmt)].get(r, set())
            for v in variants:
                now, now_rules = got[(v, fmt)].get(r, set()), fired[(v, fmt)].get(r, set())
                for st, how, why in [
                        *((x, "appears", now_rules - base_rules) for x in now - base),
                        *((x, "vanishes", base_rules - now_rules) for x in base - now)]:
                    right = (st in labels[r]) == (how == "appears")
                    key = (st, how, ",".join(sorted(why)) or "-", "right" if right else "WRONG")
                    groups.setdefault(key, []).append(f"{r}:{v}")
        for key, where in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
            print(f"  {len(where):4d} {' '.join(key)}  {' '.join(where[:4])}")
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for (v, fmt), states in got.items():
            path = args.dump / f"{v.replace('/', '_')}.{fmt}.tsv"
            with open(path, "w", encoding="utf-8") as fh:
                fh.write("id\tfamily\tdataset\tformat\tcause\tlabel\tprediction\tverdict"
                         "\trules\n")
                for r in sorted(labels):
                    rec = recs[r]
                    fh.write(f"{r}\t{rec['family']}\t{rec['dataset']}\t{fmt}\t{rec['cause']}\t"
                             f"{_name(labels[r])}\t{_name(states.get(r, set()))}\t"
                             f"{verdicts[(v, fmt)].get(r, 'lost')}\t"
                             f"{','.join(sorted(fired[(v, fmt)].get(r, set())))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
