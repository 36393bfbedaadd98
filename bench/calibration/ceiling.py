"""How far can any classifier read the corpus's states from what its logs carry?

Usage (from the repo root, in the venv)::

    python bench/calibration/ceiling.py --rendered bench/_out/calibration \
        [--features FILE.tsv.gz] [--jobs 2] [--markdown FILE] [--ablate family]

(Reading the 9,693 scored runs' logs twice, as logged and told, takes about 6 minutes
on 2 cores, cached in ``--features``; the trees about 30 more, most of it for the 32
causes held out in turn.)

The rules are scored against labels that come from the DESIGN.md meanings applied to
the *stored* curves and the run's recipe (label_check.py): the untrained level of a run,
for one, is known to the labeller and often not to the log.  This benchmark asks what
part of the rules' remaining misses is information the logs lack rather than rules that
could be better.  It trains gradient-boosted trees (scikit-learn's
HistGradientBoostingClassifier, one per core state) on features read from the rendered
logs only, through diagnose's own readers and role resolver, and scores them
leave-one-group-out (model family, data set, log format, cause) with the same scorer as
``evaluate.py``:

- ``rules``: diagnose's verdicts (the benchmark evaluate.py reports);
- ``rules, told C and norm``: diagnose's verdicts when the user tells it what a log may
  not record, ``--hparam num_classes=C`` (classifiers and language models) and
  ``--hparam normalization=batchnorm|groupnorm|none`` (:func:`told`);
- ``trees(curves)``: trees on curve features (levels, ratios, positions, noise, trends,
  the class count when the log gives one);
- ``trees(curves+rules)``: the same with each rule's firing as a feature (what a learned
  combination of the rules' readings could add);
- ``trees(+recipe)``: the same plus what the labeller knows from the run's recipe and a
  log may not carry (the untrained level, a good level on the data set, the chance
  accuracy, batch norm in the model, the planned length), and the curves read against it.
  The distance between the last two columns is the part of the misses that is
  information the logs lack.

The trees are a yardstick, not a candidate detector (a rule stays an explainable unit):
where they do not beat the rules on held-out groups, more rule tuning on this corpus is
unlikely to reach a target the rules miss; where they do, the features they split on say
where the rules leave information unused.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import re
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate  # the scorer and the groupings
import label_check

CORE = evaluate.CORE
#: Recorded hyperparameters read as features (canonical names; log10 for the scale-free).
HPARAMS = ("learning_rate", "batch_size", "dropout", "weight_decay", "momentum", "epochs",
           "max_steps")
LOG_HPARAMS = {"learning_rate", "batch_size", "weight_decay"}
N_POINTS = 64  # curves are read at this many evenly spaced aggregates (per-epoch-like)


# ---------------------------------------------------------------------------
# Features: what a log carries, through diagnose's readers
# ---------------------------------------------------------------------------


def _curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite points, averaged into at most N_POINTS equal step bins (minibatch noise
    averaged the way an epoch mean would)."""
    from diagnose.signals import downsample_arrays

    ok = np.isfinite(values)
    s, v = steps[ok].astype(float), values[ok].astype(float)
    if len(v) > N_POINTS:
        s, v = downsample_arrays(s, v, N_POINTS, "mean")
    return s, v


def _series_features(prefix: str, steps: np.ndarray, values: np.ndarray,
                     higher: bool, span: tuple[float, float]) -> dict[str, float]:
    """Level, movement, position and noise of one series (NaN where it is absent)."""
    out: dict[str, float] = {f"{prefix}_n": float(len(values)),
                             f"{prefix}_nonfinite": float(np.mean(~np.isfinite(values)))
                             if len(values) else math.nan}
    s, v = _curve(steps, values)
    if len(v) < 2:
        return out
    lo, hi = span
    width = max(hi - lo, 1.0)
    sign = -1.0 if higher else 1.0  # so "best" is the minimum of sign * v
    g = sign * v
    ib = int(np.argmin(g))
    first, last, best = float(v[0]), float(v[-1]), float(v[ib])
    k = max(1, len(v) // 5)
    head, tail_ = v[:k], v[-k:]
    out |= {
        f"{prefix}_first": first, f"{prefix}_last": last, f"{prefix}_best": best,
        f"{prefix}_max": float(np.max(v)), f"{prefix}_min": float(np.min(v)),
        f"{prefix}_best_pos": (float(s[ib]) - lo) / width,
        f"{prefix}_start_pos": (float(s[0]) - lo) / width,
        f"{prefix}_head": float(np.mean(head)), f"{prefix}_tail": float(np.mean(tail_)),
        f"{prefix}_tail_sd": float(np.std(tail_)),
        f"{prefix}_diff_mad": float(np.median(np.abs(np.diff(v)))),
    }
    if not higher:  # losses: ratios are scale-free
        def r(a: float, b: float) -> float:
            return a / b if b > 0 and math.isfinite(a) else math.nan
        out |= {f"{prefix}_last_over_first": r(last, first),
                f"{prefix}_best_over_first": r(best, first),
                f"{prefix}_last_over_best": r(last, best),
                f"{prefix}_max_over_first": r(float(np.max(v)), first),
                f"{prefix}_tail_over_head": r(float(np.mean(tail_)), float(np.mean(head))),
                f"{prefix}_log_first": math.log10(first) if first > 0 else math.nan,
                f"{prefix}_log_last": math.log10(last) if last > 0 else math.nan}
    # where the run got most of its gain: share of the total movement done by 20% of span
    total = g[0] - np.min(g)
    at20 = g[s <= lo + 0.2 * width]
    out[f"{prefix}_gain_by_20"] = (float((g[0] - np.min(at20)) / total)
                                   if total > 0 and len(at20) else math.nan)
    # trend of the last third, relative to the level's noise
    t = len(v) // 3
    if t >= 3:
        slope = np.polyfit(s[-t:], v[-t:], 1)[0] * (s[-1] - s[-t])
        noise = float(np.std(np.diff(v[-t:]))) or 1e-12
        out[f"{prefix}_tail_trend"] = float(sign * slope) / noise
    return out


def told(rec: dict[str, Any]) -> dict[str, Any]:
    """What a user can tell diagnose about a run whose log does not record it
    (``--hparam``): the class count of a classifier or language model, and the model's
    normalization."""
    cfg = rec["config"]
    out: dict[str, Any] = {"normalization": {"mlp_bn": "batchnorm", "cnn_bn": "batchnorm",
                                             "cnn_gn": "groupnorm"}.get(cfg["arch"], "none")}
    if cfg["task"] != "reg":
        out["num_classes"] = int(cfg["n_classes"])
    return out


def features(job: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, float], list[str],
                                                       list[str]]:
    """One rendered run's features, the rules that fired on it (warning and above, as
    ``RULE[:branch]@state``, the branch when the evidence names one: every state counts,
    as in evaluate.py's scorer), and its states when the user tells the analyzer what
    ``job``'s overrides say (:func:`told`)."""
    from diagnose.config import Config
    from diagnose.findings import SEVERITY_RANK
    from diagnose.metrics import Role
    from diagnose.pipeline import Options, analyze

    run_dir, overrides = job
    feats: dict[str, float] = {}
    fired: list[str] = []
    analysis = analyze([run_dir], Config(), Options(jobs=1))
    told_states = sorted({x for res in analyze([run_dir], Config(), Options(
        jobs=1, hparam_overrides=overrides)).results for x in res.states})
    for res in analysis.results[1:]:  # other runs under the folder: their verdicts count
        fired += [f"{f.rule}@{f.state}" for f in res.findings
                  if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]
    for res in analysis.results[:1]:  # the features: the folder's first run
        roles = res.resolved_roles()
        tables = [roles.get(r) for r in Role]
        spans = [(float(x.steps.min()), float(x.steps.max())) for x in tables
                 if x is not None and len(x.steps)]
        span = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (0.0, 1.0)
        for role in (Role.TRAIN_LOSS, Role.VAL_LOSS, Role.TRAIN_METRIC, Role.VAL_METRIC,
                     Role.LR):
            s = roles.get(role)
            if s is None:
                continue
            higher = bool(s.higher_is_better) if role in (Role.TRAIN_METRIC,
                                                           Role.VAL_METRIC) else False
            feats |= _series_features(role.value, s.steps, s.values, higher, span)
        cc = res.class_count()["count"]
        feats["classes"] = float(cc) if cc else math.nan
        tl, vl = feats.get("train_loss_first"), feats.get("val_loss_first")
        for name, x in (("train_loss", tl), ("val_loss", vl)):
            if cc and x is not None and cc >= 2:
                feats[f"{name}_first_over_lnC"] = x / math.log(cc)
                feats[f"{name}_last_over_lnC"] = feats[f"{name}_last"] / math.log(cc)
        vm = feats.get("val_metric_best")
        if cc and vm is not None:
            feats["val_metric_best_over_chance"] = vm * cc
        if "val_loss_last" in feats and "train_loss_last" in feats:
            t_last = feats["train_loss_last"]
            feats["gap_last"] = (feats["val_loss_last"] / t_last if t_last > 0 else math.nan)
            feats["gap_best"] = (feats["val_loss_best"] / feats["train_loss_best"]
                                 if feats.get("train_loss_best", 0) > 0 else math.nan)
        if "val_metric_best" in feats and "val_loss_best" in feats:
            # a uniform guess at loss L has accuracy exp(-L): how far the metric beats it
            feats["acc_over_guess"] = feats["val_metric_best"] * math.exp(
                min(feats["val_loss_best"], 50.0))
        feats["n_steps"] = span[1] - span[0]
        for name in HPARAMS:  # the recipe, where the log records it
            v = res.run.hparams.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                feats[f"hp_{name}"] = math.log10(v) if name in LOG_HPARAMS and v > 0 else v
        for f in res.findings:
            if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]:
                ev = f.evidence if isinstance(f.evidence, dict) else {}
                branch = ev.get("branch") if isinstance(ev.get("branch"), str) else ""
                fired.append((f"{f.rule}:{branch}" if branch else f.rule) + f"@{f.state}")
    return Path(run_dir).name, feats, sorted(set(fired)), told_states


def extract(rendered: Path, runs: list[dict[str, Any]], jobs: int, out: Path) -> None:
    """Features of every scored run (``evaluate.scored_runs``) into a gzipped TSV (id,
    features as k=v, rules that fired, states when told what :func:`told` says)."""
    jobs_ = [(str(rendered / r["format"] / r["id"]), told(r["rec"])) for r in runs]
    with gzip.open(out, "wt") as fh, ProcessPoolExecutor(jobs) as pool:
        for i, (rid, feats, fired, told_states) in enumerate(
                pool.map(features, jobs_, chunksize=16)):
            kv = ";".join(f"{k}={v!r}" for k, v in sorted(feats.items()))
            fh.write(f"{rid}\t{kv}\t{','.join(fired)}\t{','.join(told_states)}\n")
            if i % 1000 == 0:
                print(f"  {i}/{len(jobs_)} runs read", file=sys.stderr, flush=True)


Table = dict[str, tuple[dict[str, float], list[str]]]


def load(path: Path) -> tuple[Table, dict[str, set[str]]]:
    """The feature cache: features and fired rules per run, and the told states."""
    table: Table = {}
    told_states: dict[str, set[str]] = {}
    with gzip.open(path, "rt") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            feats = {k: float(v) for k, v in (kv.split("=", 1) for kv in row[1].split(";")
                                              if kv)}
            table[row[0]] = (feats, [r for r in row[2].split(",") if r])
            told_states[row[0]] = {x for x in row[3].split(",") if x}
    return table, told_states


# ---------------------------------------------------------------------------
# The yardstick: trees scored leave-one-group-out
# ---------------------------------------------------------------------------


def _matrix(runs: list[dict[str, Any]], table: Table,
            with_rules: bool) -> tuple[np.ndarray, list[str]]:
    names = sorted({k for r in runs for k in table[r["id"]][0]})
    rules = sorted({x for r in runs for x in table[r["id"]][1]}) if with_rules else []
    x = np.full((len(runs), len(names) + len(rules)), np.nan)
    col = {n: i for i, n in enumerate(names + rules)}
    for i, r in enumerate(runs):
        feats, fired = table[r["id"]]
        for k, v in feats.items():
            x[i, col[k]] = v if math.isfinite(v) else np.nan
        if with_rules:
            x[i, len(names):] = 0.0
            for f in fired:
                x[i, col[f]] = 1.0
    return x, names + rules


def tree_predictions(runs: list[dict[str, Any]], x: np.ndarray, key: str,
                     seed: int = 0) -> dict[str, set[str]]:
    """Each group of ``key`` predicted by trees trained on the other groups."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    pred: dict[str, set[str]] = {r["id"]: set() for r in runs}
    groups = np.array([r[key] for r in runs])
    labels = {s: np.array([s in r["label"] for r in runs]) for s in CORE}
    for value in sorted(set(groups)):
        test = groups == value
        seen = ~np.isnan(x[~test]).all(axis=0)  # a column the training runs never carry
        for s in CORE:
            y = labels[s][~test]
            if y.all() or not y.any():
                continue
            model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.12,
                                                   max_leaf_nodes=31, l2_regularization=1.0,
                                                   random_state=seed)
            model.fit(x[~test][:, seen], y)
            got = model.predict(x[test][:, seen])
            for r, g in zip((r for r, t in zip(runs, test, strict=True) if t), got,
                            strict=True):
                if g:
                    pred[r["id"]].add(s)
    return pred


def recipe_features(rec: dict[str, Any], refs: dict[tuple[Any, ...], float],
                    feats: dict[str, float]) -> dict[str, float]:
    """What the labeller knows and a log may not: the untrained level from the recipe
    (ln C, the target's variance), a good level on the data set, the chance accuracy,
    batch norm in the model, the planned length; and the curves read against them."""
    c = label_check.curves(rec, refs)
    if c is None:
        return {}
    out = {"recipe_l0": c.l0, "recipe_lref": c.lref, "recipe_chance_acc": c.chance_acc,
           "recipe_bn": float(rec["config"]["arch"] in ("mlp_bn", "cnn_bn")),
           "recipe_total_steps": float(rec["config"]["total_steps"])}
    for name in ("train_loss_first", "train_loss_last", "train_loss_best", "val_loss_first",
                 "val_loss_last", "val_loss_best", "train_loss_tail", "val_loss_tail"):
        if name in feats and c.l0 > 0:
            out[f"{name}_over_l0"] = feats[name] / c.l0
            span = c.l0 - c.lref
            out[f"{name}_room"] = (feats[name] - c.lref) / span if span > 0 else math.nan
    if "val_metric_best" in feats:
        out["val_metric_best_over_chance_acc"] = feats["val_metric_best"] - c.chance_acc
    if "n_steps" in feats:
        out["logged_share_of_plan"] = feats["n_steps"] / max(out["recipe_total_steps"], 1.0)
    return out


#: The recipe's facts in groups, for the ablation: which feature names each one gives.
RECIPE_GROUPS: dict[str, Callable[[str], bool]] = {
    "the untrained level": lambda k: k == "recipe_l0" or k.endswith(("_over_l0", "_room")),
    "the data set's reference level": lambda k: k == "recipe_lref" or k.endswith("_room"),
    "batch norm in the model": lambda k: k == "recipe_bn",
    "the chance accuracy": lambda k: k.startswith("recipe_chance")
    or k == "val_metric_best_over_chance_acc",
    "the planned length": lambda k: k in ("recipe_total_steps", "logged_share_of_plan"),
}


def _keep_all(name: str) -> bool:
    return False


def ablation(runs: list[dict[str, Any]], recipe: Table, key: str) -> list[str]:
    """trees(+recipe) held out by ``key`` with each recipe fact taken away in turn."""
    lines = [f"| trees(+recipe) held out by {key}, without | macro-F1 / healthy FA / exact |",
             "|---|---|"]
    groups: list[tuple[str, Callable[[str], bool]]] = [("nothing", _keep_all),
                                                       *RECIPE_GROUPS.items()]
    for name, drop in groups:
        kept = {i: ({k: v for k, v in f.items() if not drop(k)}, r)
                for i, (f, r) in recipe.items()}
        pred = tree_predictions(runs, _matrix(runs, kept, True)[0], key)
        sc = evaluate.score([(r["label"], pred[r["id"]]) for r in runs])
        lines.append(f"| {name} | {sc['macro_f1']:.3f} / {sc['healthy_false_alarms']} of "
                     f"{sc['healthy']} / {sc['exact']:.3f} |")
        print(lines[-1], flush=True)
    return lines


#: "10 classes", "5-class", "binary": how a MANIFEST row states its task's class count.
_STATED_CLASSES = re.compile(r"(\d+)[ -](?:classes|class\b|way\b|labels\b)", re.I)
_BINARY = re.compile(r"\bbinary\b", re.I)


def stated_class_count(row: dict[str, str]) -> int | None:
    """The class count a real set's MANIFEST row states (its description and reason), as
    the run's author would know it; None where the row does not say."""
    text = " ".join(str(v) for k, v in row.items() if k not in ("id", "label"))
    m = _STATED_CLASSES.search(text)
    if m and 2 <= int(m.group(1)) <= 1_000_000:
        return int(m.group(1))
    return 2 if _BINARY.search(text) else None


def real_sets_told(roots: list[Path]) -> list[str]:
    """Each real set's agreement as logged and when told the class count its MANIFEST
    states (``--hparam num_classes``), with the runs whose verdict changes."""
    import accuracy

    from diagnose.config import Config
    from diagnose.pipeline import Options, analyze

    def states(folder: Path, overrides: dict[str, Any]) -> set[str]:
        found = analyze([str(folder)], Config(), Options(jobs=1, hparam_overrides=overrides))
        return {x for res in found.results for x in res.states}

    lines = ["| real set | scored | told C | agree as logged -> told | healthy FA |",
             "|---|---|---|---|---|"]
    changed: list[str] = []
    for root in roots:
        if not (root / "MANIFEST.tsv").exists():
            continue
        n = told = a0 = a1 = fa0 = fa1 = 0
        for row in accuracy.read_tsv(root / "MANIFEST.tsv"):
            if not accuracy.unambiguous(row):
                continue
            c = stated_class_count(row)
            expected = accuracy.parse_states(row["label"])
            p0 = states(root / row["id"], {})
            p1 = states(root / row["id"], {"num_classes": c}) if c else p0
            n, told = n + 1, told + (c is not None)
            a0, a1 = a0 + accuracy.agrees(expected, p0), a1 + accuracy.agrees(expected, p1)
            if not expected:
                fa0, fa1 = fa0 + bool(p0), fa1 + bool(p1)
            if accuracy.agrees(expected, p0) != accuracy.agrees(expected, p1):
                changed.append(f"- {root.name}/{row['id']} (label {row['label']}, C={c}): "
                               f"{'+'.join(sorted(p0)) or 'healthy'} -> "
                               f"{'+'.join(sorted(p1)) or 'healthy'}")
        lines.append(f"| {root.name} | {n} | {told} | {a0} -> {a1} | {fa0} -> {fa1} |")
        print(lines[-1], flush=True)
    return [*lines, "", *changed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rendered", type=Path, default=Path("bench/_out/calibration"))
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--features", type=Path, default=Path("bench/_out/ceiling_features.tsv.gz"),
                    help="feature cache (read when present, written otherwise)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--ablate", metavar="GROUPING", default=None,
                    help="also hold out by this grouping with each recipe fact taken away")
    ap.add_argument("--only-ablate", action="store_true",
                    help="print the ablation alone (with --ablate)")
    ap.add_argument("--real-told", action="store_true",
                    help="score the real sets as logged and told the class count their "
                         "MANIFEST states, and stop")
    a = ap.parse_args(argv)
    if a.real_told:
        repo = Path(__file__).resolve().parents[2]
        roots = [repo.parent / "shared" / n for n in ("real_logs", "real_logs_more")]
        roots += [repo / "bench" / f"real_extra{k}" for k in ("", "2", "3", "4", "5")]
        print("\n".join(real_sets_told(roots)))
        return 0

    import store

    records = store.load(a.store) if a.store else store.load()
    runs = [r | {"label": set(r["label"]) & set(CORE)} for r in evaluate.scored_runs(records)]
    if not a.features.exists():
        print(f"reading {len(runs)} runs' logs under {a.rendered} ...", file=sys.stderr)
        extract(a.rendered, runs, a.jobs, a.features)
    table, told_states = load(a.features)
    runs = [r for r in runs if r["id"] in table]
    refs = label_check.reference_levels(records)
    recipe = {r["id"]: (table[r["id"]][0] | recipe_features(r["rec"], refs,
                                                            table[r["id"]][0]),
                        table[r["id"]][1]) for r in runs}
    rules_pred = {r["id"]: {x.rsplit("@", 1)[1] for x in table[r["id"]][1]} for r in runs}
    lines = [f"{len(runs)} scored runs; features read from the logs under {a.rendered}", ""]
    if a.ablate and a.only_ablate:
        print("\n".join(lines + ablation(runs, recipe, a.ablate)))
        return 0
    lines.append(f"| held out by | {'rules':>22s} | {'rules, told C and norm':>22s} | "
                 f"{'trees(curves)':>22s} | {'trees(curves+rules)':>22s} | "
                 f"{'trees(+recipe)':>22s} |")
    lines.append("|---|---|---|---|---|---|")
    mats = [_matrix(runs, table, False)[0], _matrix(runs, table, True)[0],
            _matrix(runs, recipe, True)[0]]
    rng = np.random.default_rng(0)
    for r, k in zip(runs, rng.integers(0, 5, len(runs)), strict=True):
        r["random fifth"] = f"fold{k}"
    for key in ("random fifth", *evaluate.GROUPINGS):
        cells = []
        for pred in (rules_pred, told_states,
                     *(tree_predictions(runs, m, key) for m in mats)):
            sc = evaluate.score([(r["label"], pred.get(r["id"], set())) for r in runs])
            cells.append(f"{sc['macro_f1']:.3f} / {sc['healthy_false_alarms']} of "
                         f"{sc['healthy']} / {sc['exact']:.3f}")
        lines.append(f"| {key} | " + " | ".join(f"{c:>22s}" for c in cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", "cells: macro-F1 / healthy false alarms / exact match, every run scored "
              "while its group was held out (the rules are not fitted: their column is "
              "the same in every row); 'random fifth' holds out a random fifth of the "
              "runs in turn (no group unseen)"]
    if a.ablate:
        lines += ["", *ablation(runs, recipe, a.ablate)]
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        a.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
