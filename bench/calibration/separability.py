"""Does any log-visible feature separate a state's missed runs from the healthy runs they
are confused with?  (issue 9, round 11: check before writing another branch)

Reads a predictions TSV from ``evaluate.py --predictions`` and the shared rendered corpus.
Positives: runs labelled with ``--state`` whose prediction lacks it (the misses).
Negatives: runs labelled healthy and predicted healthy.  The healthy false alarms of the
state (labelled healthy, predicted with it) are shown beside every split, so a candidate
that would add an alarm is visible.

For each run it computes a handful of features from what the detectors see (through
diagnose's own loaders, role resolution and progress helpers): the end level over the
untrained level, the share of the fall made in the first 20% of the run, the share made
in the last quarter, the late relative slope, the train/val end ratio, the accuracy's
share of the room above chance, the number of evaluations, the logged LR drop.

Then (a) for every single feature the best one-sided threshold and how it holds
leave-one-cause-out (threshold chosen on the other causes, scored on the held-out one),
and (b) a depth-2/3 decision tree scored leave-one-cause-out, with the splits of the tree
fitted on all runs.  A split that holds across held-out causes is a candidate criterion
for a rule (as a named, ranged threshold: never ship the tree).  A finding of "nothing
separates them" is a result too.

    PYTHONPATH=$PWD python bench/calibration/separability.py \\
        --predictions /tmp/pred.tsv --state underfit [--only-format csv] [--dump f.tsv]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

RENDERED = Path("/work/main/bench/_out/calibration")

FEATURES = [
    "end_over_l0",      # better split's end level / untrained level (UND004's L0)
    "early_share",      # share of the fall (L0 - end) made by 20% of the run (judged curve)
    "late_share",       # share of the fall made in the last quarter (UND004's late_share)
    "late_rel_slope",   # Theil-Sen change over the last quarter / end level (train loss)
    "train_over_val",   # train end / val end (losses)
    "acc_share",        # better end accuracy as a share of the room above chance (C known
                        # or bounded by exp(L0)), NaN without an accuracy
    "val_points",       # number of val loss evaluations
    "val_own_fall",     # 1 - val end / val early level
    "lr_drop",          # logged LR end / peak (NaN without an LR)
    "first_over_l0",    # judged curve's first value / L0 (a log starting after learning)
    "unconfident",      # val loss / calibrated loss of the val accuracy (NaN w/o both)
    "lr_dead_at",       # share of the run at which the logged LR fell below 5% of its
                        # peak and stayed there (NaN: never, or no LR logged)
]


def load_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def rule_context(folder: Path) -> Any:
    """The RuleContext of the first run found under ``folder`` with the default config,
    as the engine builds it (None if nothing loads): what a rule's ``detect`` reads."""
    from diagnose.config import Config
    from diagnose.detectors import RuleContext
    from diagnose.discover import discover
    from diagnose.ingest import load_run
    from diagnose.metrics import resolve_roles

    sources, _ = discover([str(folder)])
    if not sources:
        return None
    run = load_run(sources[0])
    cfg = Config()
    return RuleContext(run, roles=resolve_roles(run.scalars, cfg.metrics), hparams=cfg.hparams)


def run_features(folder: Path) -> dict[str, float] | None:
    """The features of the first run found under ``folder`` (None if nothing loads)."""
    from diagnose import signals
    from diagnose.detectors import underfit as U
    from diagnose.detectors.progress import (
        accuracy_curve,
        calibrated_loss,
        end_level,
        get_curve,
        level_at,
    )
    from diagnose.metrics import Role

    ctx = rule_context(folder)
    if ctx is None:
        return None
    nan = math.nan
    f: dict[str, float] = dict.fromkeys(FEATURES, nan)
    ref = U.untrained_level(ctx)
    tl = get_curve(ctx, Role.TRAIN_LOSS)
    if ref is None or tl is None or len(tl) < 3 or tl.span <= 0:
        return f
    l0 = ref[0]
    vl = get_curve(ctx, Role.VAL_LOSS)
    if vl is not None and ("+" in vl.tag or float(np.min(vl.values)) <= 0):
        vl = None
    t_end = end_level(tl, 0.2)
    v_end = end_level(vl, 0.2) if vl is not None and len(vl) >= 2 else None
    level = min(t_end, v_end) if v_end is not None else t_end
    f["end_over_l0"] = level / l0
    judged = vl if vl is not None and len(vl) >= 3 and vl.span > 0 else tl
    j_end = end_level(judged)
    if l0 - j_end > 0:
        at20 = level_at(judged, float(judged.steps[0]) + 0.2 * judged.span)
        f["early_share"] = (l0 - at20) / (l0 - j_end)
    f["first_over_l0"] = float(judged.values[0]) / l0
    ls = U.late_share(ctx, l0, 3)
    f["late_share"] = ls if ls is not None else nan
    inside = tl.steps >= float(tl.steps[-1]) - 0.25 * tl.span
    tr = signals.robust_trend(tl.steps[inside], tl.values[inside])
    if np.isfinite(tr.change) and t_end > 0:
        f["late_rel_slope"] = float(tr.change) / t_end
    if v_end:
        f["train_over_val"] = t_end / v_end
    f["val_points"] = float(len(vl)) if vl is not None else 0.0
    vf = U.val_own_fall(ctx, 3)
    f["val_own_fall"] = vf if vf is not None else nan
    lr = ctx.series(Role.LR)
    if lr is not None and len(lr.finite) and float(np.max(lr.finite.values)) > 0:
        lv, ls_ = lr.finite.values, lr.finite.steps
        f["lr_drop"] = float(lv[-1]) / float(np.max(lv))
        low = lv < 0.05 * float(np.max(lv))
        if low[-1] and ls_[-1] > ls_[0]:
            first = len(low) - int(np.argmin(low[::-1])) if not low.all() else 0
            f["lr_dead_at"] = float(ls_[first] - ls_[0]) / float(ls_[-1] - ls_[0])
    n = signals.infer_num_classes(ctx.run, ctx.roles)
    c = n if n is not None else max(2, math.floor(math.exp(min(l0, 20.0))))
    best = None
    for role in (Role.TRAIN_METRIC, Role.VAL_METRIC):
        a = accuracy_curve(ctx, role, fraction_only=False)
        if a is not None and len(a) >= 2:
            end = a.raw(end_level(a, 0.2))
            best = end if best is None else max(best, end)
    if best is not None:
        chance = 1.0 / c
        f["acc_share"] = (best - chance) / (1.0 - chance)
    va = accuracy_curve(ctx, Role.VAL_METRIC, fraction_only=False)
    if va is not None and vl is not None and len(va) >= 2 and len(vl) >= 2:
        ref_loss = calibrated_loss(va.raw(end_level(va, 0.2)), c)
        if ref_loss > 0:
            f["unconfident"] = end_level(vl, 0.2) / ref_loss
    return f


def folder_of(row: dict[str, str]) -> Path:
    return RENDERED / row["format"] / row["id"]


def best_threshold(x: np.ndarray, y: np.ndarray) -> tuple[float, str, int, int]:
    """The one-sided cut (x >= t or x <= t) that catches the most positives with no
    negative caught (ties: fewest negatives then most positives), NaNs never caught.
    Returns (t, side, positives caught, negatives caught)."""
    best = (math.nan, ">=", 0, 0)
    ok = np.isfinite(x)
    for side in (">=", "<="):
        for t in np.unique(x[ok]):
            hit = ok & ((x >= t) if side == ">=" else (x <= t))
            tp, fp = int(np.sum(hit & y)), int(np.sum(hit & ~y))
            if fp == 0 and tp > best[2]:
                best = (float(t), side, tp, fp)
    return best


def catch(x: np.ndarray, t: float, side: str) -> np.ndarray:
    ok = np.isfinite(x)
    return np.asarray(ok & ((x >= t) if side == ">=" else (x <= t)), dtype=bool)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=Path, required=True)
    ap.add_argument("--state", default="underfit")
    ap.add_argument("--dump", type=Path, help="write the feature table here (TSV)")
    ap.add_argument("--load", type=Path, help="read a feature table written by --dump")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--dataset", help="only runs of this data set")
    args = ap.parse_args(argv)
    rows = load_rows(args.predictions)
    st = args.state

    def has(s: str) -> bool:
        return st in s.split("+")

    groups: dict[str, str] = {}
    for r in rows:
        if args.dataset and r["dataset"] != args.dataset:
            continue
        if has(r["label"]) and not has(r["prediction"]):
            groups[r["id"]] = "miss"
        elif r["label"] == "healthy" and r["prediction"] == "healthy":
            groups[r["id"]] = "healthy"
        elif r["label"] == "healthy" and has(r["prediction"]):
            groups[r["id"]] = "alarm"
    by_id = {r["id"]: r for r in rows}
    feats: dict[str, dict[str, float]] = {}
    if args.load:
        for r in load_rows(args.load):
            feats[r["id"]] = {k: float(r[k]) for k in FEATURES}
    else:
        for i, rid in enumerate(sorted(groups)):
            got = run_features(folder_of(by_id[rid]))
            if got is not None:
                feats[rid] = got
            if i % 100 == 0:
                print(f"  features {i}/{len(groups)}", file=sys.stderr)
    if args.dump:
        with open(args.dump, "w") as fh:
            fh.write("\t".join(["id", "group", "cause", "dataset", *FEATURES]) + "\n")
            for rid, fv in sorted(feats.items()):
                r = by_id[rid]
                fh.write("\t".join([rid, groups[rid], r["cause"], r["dataset"],
                                    *(f"{fv[k]:.6g}" for k in FEATURES)]) + "\n")
    ids = [i for i in sorted(feats) if i in groups]
    X = np.array([[feats[i][k] for k in FEATURES] for i in ids])
    grp = np.array([groups[i] for i in ids])
    cause = np.array([by_id[i]["cause"] for i in ids])
    y = grp == "miss"
    sel = grp != "alarm"
    alarm = grp == "alarm"
    print(f"{st}: {int(y.sum())} misses vs {int((grp == 'healthy').sum())} healthy "
          f"(predicted healthy); {int(alarm.sum())} healthy false alarms shown aside")
    print(f"misses by cause: {dict(Counter(cause[y]).most_common())}")

    # (a) one feature at a time, leave-one-cause-out
    print("\n-- one feature, one-sided cut with no healthy run caught "
          "(all runs | leave-one-cause-out: cut from the other causes)")
    print(f"  {'feature':16s} {'cut':>14s} {'miss':>5s} {'alarms':>6s} | "
          f"{'LOCO miss':>9s} {'LOCO FA':>7s}  causes caught held-out")
    for j, name in enumerate(FEATURES):
        x = X[:, j]
        t, side, tp, _ = best_threshold(x[sel], y[sel])
        if not tp:
            print(f"  {name:16s} {'-':>14s} {0:5d}")
            continue
        al = int(np.sum(catch(x, t, side) & alarm))
        loco_tp = loco_fp = 0
        held: Counter[str] = Counter()
        for c in sorted(set(cause[sel])):
            tr = sel & (cause != c)
            te = sel & (cause == c)
            t2, s2, tp2, _ = best_threshold(x[tr], y[tr])
            if not tp2:
                continue
            hit = catch(x, t2, s2)
            k = int(np.sum(hit & te & y))
            loco_tp += k
            loco_fp += int(np.sum(hit & te & ~y))
            if k:
                held[c] = k
        print(f"  {name:16s} {side + ' ' + f'{t:.4g}':>14s} {tp:5d} {al:6d} | "
              f"{loco_tp:9d} {loco_fp:7d}  {dict(held.most_common(5))}")

    # (b) a shallow tree, leave-one-cause-out
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.tree import DecisionTreeClassifier, export_text

    Xs = np.nan_to_num(X, nan=-1.0)  # NaN (feature absent) as its own low value
    for depth in sorted({args.depth, 3}):
        tp = fp = 0
        per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for tr, te in LeaveOneGroupOut().split(Xs[sel], y[sel], cause[sel]):
            clf = DecisionTreeClassifier(max_depth=depth, class_weight="balanced",
                                         min_samples_leaf=3, random_state=0)
            clf.fit(Xs[sel][tr], y[sel][tr])
            pr = clf.predict(Xs[sel][te]).astype(bool)
            yt = y[sel][te]
            c = cause[sel][te][0]
            per[c][0] += int(np.sum(pr & yt))
            per[c][1] += int(np.sum(yt))
            per[c][2] += int(np.sum(pr & ~yt))
            per[c][3] += int(np.sum(~yt))
            tp += int(np.sum(pr & yt))
            fp += int(np.sum(pr & ~yt))
        print(f"\n-- depth-{depth} tree, leave-one-cause-out: misses caught {tp}/{int(y.sum())},"
              f" healthy caught {fp}/{int((grp == 'healthy').sum())}")
        for c, (a, b, d, e) in sorted(per.items(), key=lambda kv: -kv[1][1]):
            if b or d:
                print(f"     {c:26s} miss {a}/{b}  healthy {d}/{e}")
        clf = DecisionTreeClassifier(max_depth=depth, class_weight="balanced",
                                     min_samples_leaf=3, random_state=0).fit(Xs[sel], y[sel])
        print("   tree on all runs (NaN read as -1):")
        print("     " + export_text(clf, feature_names=FEATURES).replace("\n", "\n     "))
        # no false alarm of this state to show: predict() refuses an empty array
        pa = clf.predict(Xs[alarm]).astype(bool) if alarm.any() else np.zeros(0, dtype=bool)
        print(f"   healthy false alarms the tree calls missed-{st}: {int(pa.sum())}/"
              f"{int(alarm.sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
