"""Score diagnose on the calibration corpus (leave-one-family-out) and on the real logs.

Usage (from the repo root, in the venv)::

    python bench/calibration/evaluate.py [--rendered DIR] [--json FILE] [--jobs N]

1. The stored corpus (``runs.jsonl.gz``) is labelled by ``label_check`` (dropped runs
   are left out) and rendered to log files by ``write_logs`` (into ``--rendered``,
   default ``bench/_out/calibration``; an existing rendering is reused with ``--reuse``).
2. The analyzer runs on the rendered logs through ``diagnose.pipeline`` (the CLI's JSON
   when that import fails); a run's prediction is the union of the ``states`` of every
   run the analyzer found under its folder (error and warning findings).
3. Leave-one-family-out: for each grouping (model family, data set, log format, cause)
   and each of its values, ``fit`` is given the other runs and returns thresholds, and
   the held-out runs are scored with them. Without ``--fit`` there are no overrides (each
   fold's score is the rules' defaults on runs of a family they were not calibrated on);
   with ``--fit GRID`` the thresholds named in the grid are chosen per fold on its
   training runs only (``fitting.py``).
4. A textbook baseline is scored on the same runs: Keras-callback rules (TerminateOnNaN:
   a non-finite loss is divergence; EarlyStopping on val loss with patience 5 evaluations:
   stopped early while train kept falling is overfit, otherwise plateau;
   ReduceLROnPlateau-style on the train loss when there is no val loss: plateau).
5. The real logs (``../shared/real_logs``, ``../shared/real_logs_more`` and, when present,
   ``bench/real_extra``, ``bench/real_extra2``, ``bench/real_extra3``,
   ``bench/real_extra4`` and ``bench/real_extra5``, the third to seventh sets labelled
   blind) are scored with
   ``bench/accuracy.py``'s rules (unambiguous MANIFEST rows only).

Metrics (same scorer everywhere): per-state precision/recall/F1 over runs, macro-F1 over
the five core states, healthy false-alarm rate (a healthy-labelled run with any error or
warning state), exact match (predicted core states == label) and a confusion matrix of
label sets against predicted core-state sets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accuracy  # bench/accuracy.py: the shared scorer and the real-log rules
import fitting
import label_check
import store
import write_logs

REPO = Path(__file__).resolve().parents[2]
CORE = accuracy.CORE
GROUPINGS = ("family", "dataset", "format", "cause")
PATIENCE = 5  # the textbook baseline's EarlyStopping / ReduceLROnPlateau patience

Thresholds = dict[str, dict[str, float]]


# ---------------------------------------------------------------------------
# The calibration hook and the predictors
# ---------------------------------------------------------------------------


def fit(train_runs: list[dict[str, Any]]) -> Thresholds:
    """The fit without a grid: no overrides, every fold runs the rules' defaults.

    With ``--fit GRID`` each fold's thresholds come from ``fitting.Calibrator.fit`` on
    that fold's training runs instead (``{rule_id: {threshold: value}}`` overrides for
    ``Config.thresholds``).
    """
    del train_runs
    return {}


def scored_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs the label check keeps, each with its groupings (family, data set, cause,
    log format), its label (a list of states) and its stored record (``rec``)."""
    checked = {c["id"]: c for c in label_check.check_all(records)}
    return [{"id": rec["id"], "family": rec["family"], "dataset": rec["dataset"],
             "cause": rec["cause"], "format": write_logs.format_of(rec["id"]),
             "label": checked[rec["id"]]["label"], "rec": rec}
            for rec in records if checked[rec["id"]]["status"] != "dropped"]


def analyze_dir(root: Path, thresholds: Thresholds, jobs: int | None) -> accuracy.Outcome:
    """The analyzer over a folder, with threshold overrides when a fold has any."""
    if not thresholds:
        return accuracy.run_analyzer(root, jobs)
    from diagnose.config import Config
    from diagnose.pipeline import Options, analyze

    analysis = analyze([str(root)], Config(thresholds=thresholds), Options(jobs=jobs))
    out = accuracy.Outcome()
    for res in analysis.results:
        out.states[res.run.run_id] = list(res.states)
    for err in analysis.errors:
        out.errors[err.path] = err.message
    return out


def predictions_by_run(outcome: accuracy.Outcome) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Analyzer run ids (``<format>/<id>/...``) folded back to corpus ids."""
    pred: dict[str, set[str]] = defaultdict(set)
    for run_id, states in outcome.states.items():
        parts = run_id.split("/")
        if len(parts) >= 2:
            pred[parts[1]] |= set(states)
    errors = {p.split("/")[1]: m for p, m in outcome.errors.items() if "/" in p}
    return dict(pred), errors


def textbook(rec: dict[str, Any]) -> set[str]:
    """Keras-callback rules on the stored curves (what a user gets without diagnose)."""
    tr = store.series(rec, "train_loss")
    va = store.series(rec, "val_loss")
    if any(not math.isfinite(v) for s in (tr, va) if s for v in s[1]):
        return {"divergence"}  # TerminateOnNaN
    if va and len(va[1]) > PATIENCE:
        v = np.asarray(va[1])
        best = int(np.argmin(v))
        if len(v) - 1 - best >= PATIENCE:  # EarlyStopping(monitor="val_loss") would stop
            t_steps, t_vals = np.asarray(tr[0]), np.asarray(tr[1])
            at_best = t_vals[t_steps <= va[0][best]]
            after = t_vals[t_steps > va[0][best]]
            if len(at_best) and len(after) and np.median(after) < 0.95 * at_best[-1]:
                return {"overfit"}
            return {"plateau"}
        return set()
    if tr:  # ReduceLROnPlateau(monitor="loss", min_delta=1e-4) on the epoch means
        spe = rec["config"]["steps_per_epoch"]
        epochs: dict[int, list[float]] = defaultdict(list)
        for s, v in zip(*tr, strict=True):
            epochs[(s - 1) // spe].append(v)
        t = np.asarray([np.mean(epochs[e]) for e in sorted(epochs)])
        best, wait = math.inf, 0
        for v in t:
            if v < best - 1e-4:
                best, wait = v, 0
            else:
                wait += 1
                if wait >= PATIENCE:
                    return {"plateau"}
    return set()


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def setname(states: Iterable[str]) -> str:
    s = sorted(set(states) & set(CORE))
    return "+".join(s) if s else "healthy"


def score(pairs: list[tuple[set[str], set[str]]]) -> dict[str, Any]:
    """Per-state P/R/F1, macro-F1 over the 5 core states, healthy FA, exact match."""
    table = accuracy.prf(pairs)
    mf1 = accuracy.macro_f1(table, [e for e, _ in pairs])  # core states in the labels
    healthy = [p for e, p in pairs if not e]
    alarms = sum(1 for p in healthy if p)
    exact = sum(1 for e, p in pairs if e == (p & set(CORE)))
    return {"n": len(pairs), "per_state": {s: table[s] for s in CORE if s in table},
            "macro_f1": mf1, "healthy": len(healthy),
            "healthy_false_alarms": alarms,
            "healthy_fa_rate": alarms / len(healthy) if healthy else 0.0,
            "exact": exact / len(pairs) if pairs else 0.0}


def macro_f1_interval(pairs: list[tuple[set[str], set[str]]], n: int = 1000,
                      seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of macro-F1 over these runs (runs resampled with
    replacement, the states present in the labels each time): how far a fold's score
    moves when a few of its runs change, so a gap between folds can be read as noise or
    not.  None when no core state is labelled."""
    present = [s for s in CORE if any(s in e for e, _ in pairs)]
    if not present:
        return None
    lab = np.array([[s in e for s in present] for e, _ in pairs])
    got = np.array([[s in p for s in present] for _, p in pairs])
    idx = np.random.default_rng(seed).integers(0, len(pairs), size=(n, len(pairs)))
    tp = (lab[idx] & got[idx]).sum(axis=1).astype(float)
    fp = (~lab[idx] & got[idx]).sum(axis=1).astype(float)
    fn = (lab[idx] & ~got[idx]).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    # a state absent from a resample's labels drops out of its mean, as in macro_f1
    f1 = np.where((tp + fn) > 0, f1, np.nan)
    counts = (~np.isnan(f1)).sum(axis=1)
    means = np.nansum(f1, axis=1)[counts > 0] / counts[counts > 0]
    if not means.size:
        return None
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def confusion(pairs: list[tuple[set[str], set[str]]]) -> dict[str, dict[str, int]]:
    """Label set -> predicted core-state set -> count."""
    m: dict[str, Counter[str]] = defaultdict(Counter)
    for e, p in pairs:
        m[setname(e)][setname(p)] += 1
    return {k: dict(v) for k, v in sorted(m.items())}


def lofo(runs: list[dict[str, Any]], predict: Callable[[list[dict[str, Any]], Thresholds],
                                                     dict[str, set[str]]],
         fit_fold: Callable[[list[dict[str, Any]]], Thresholds] = fit,
         ) -> dict[str, dict[str, Any]]:
    """Hold out each value of each grouping in turn; fit on the rest, score the held out."""
    out: dict[str, dict[str, Any]] = {}
    for key in GROUPINGS:
        folds: dict[str, Any] = {}
        pooled: list[tuple[set[str], set[str]]] = []
        for value in sorted({r[key] for r in runs}):
            test = [r for r in runs if r[key] == value]
            train = [r for r in runs if r[key] != value]
            pred = predict(test, fit_fold(train))
            pairs = [(set(r["label"]), pred.get(r["id"], set())) for r in test]
            pooled += pairs
            folds[value] = score(pairs) | {"macro_f1_95": macro_f1_interval(pairs)}
        out[key] = {"folds": folds, "pooled": score(pooled),
                    "worst_macro_f1": min((f["macro_f1"] for f in folds.values()
                                           if f["macro_f1"] is not None), default=None)}
    return out


# ---------------------------------------------------------------------------
# Real logs
# ---------------------------------------------------------------------------


def score_real_set(root: Path, jobs: int | None) -> dict[str, Any] | None:
    if not (root / "MANIFEST.tsv").exists():
        return None
    r = accuracy.score_real(root, jobs)
    scored = [row for row in r["rows_detail"] if row["scored"]]
    pairs = [(accuracy.parse_states(row["label"]),
              set(row["got"]) - {"healthy"}) for row in scored]
    s = score(pairs)
    return {"path": str(root), "rows": r["rows"], "scored": r["scored"], "agree": r["agree"],
            "agree_rate": r["agree_rate"], "healthy": r["healthy_runs"],
            "healthy_false_alarms": r["healthy_false_alarms"], "macro_f1_present":
            r["macro_f1_core"], "exact": s["exact"], "per_state": s["per_state"],
            "all_load": r["all_load"],
            "wrong": [f"{row['id']}: label {row['label']}, got {','.join(row['got'])}"
                      for row in scored if not row["agrees"]]}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _f(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def _band(s: dict[str, Any]) -> str:
    """A fold's 95% bootstrap band of macro-F1 as " [lo-hi]", or "" when it has none."""
    ci = s.get("macro_f1_95")
    return f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""


def fa_rate_interval(alarms: int, healthy: int) -> tuple[float, float] | None:
    """95% Wilson interval of a healthy false-alarm rate: two batches of a few hundred
    healthy runs drawn the same way differ by points of this rate by chance alone."""
    if healthy <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(alarms, healthy).proportion_ci(method="wilson")
    return float(ci.low), float(ci.high)


def _bands(s: dict[str, Any]) -> str:
    """A split's 95% bands: macro-F1 (bootstrap) and the false-alarm rate (Wilson)."""
    fa = s.get("healthy_fa_95")
    return (f"\n{'':28s} 95%: macro-F1{_band(s) or ' -'}"
            + (f", healthy FA [{fa[0]:.1%}-{fa[1]:.1%}]" if fa else ""))


def _line(name: str, s: dict[str, Any]) -> str:
    return (f"{name:28s} n={s['n']:5d}  macro-F1 {_f(s['macro_f1'])}  healthy FA "
            f"{s['healthy_false_alarms']}/{s['healthy']} ({s['healthy_fa_rate']:.1%})  "
            f"exact {s['exact']:.3f}")


def _choice_counts(chosen: list[Thresholds]) -> dict[str, int]:
    """How many folds chose each threshold value (``RULE.name=value``)."""
    c: Counter[str] = Counter()
    for th in chosen:
        for rule, params in th.items():
            for name, v in params.items():
                c[f"{rule}.{name}={v:g}"] += 1
    return dict(c.most_common())


def _fit_lines(res: dict[str, Any]) -> list[str]:
    f = res.get("fitted") or {}
    if not f.get("grid"):
        return ["   thresholds are not fitted: each held-out fold is scored with the",
                "   rules' defaults (no --fit grid given)"]
    folds = f["fold_choices"]
    return [f"   thresholds fitted on each fold's training runs over a grid of {len(f['grid'])}"
            f" thresholds ({f['passes']} analyzer passes); fold choices: "
            + (", ".join(f"{k} x{n}" for k, n in folds.items()) or "the defaults everywhere"),
            "   chosen on all runs: " + (", ".join(
                f"{r}.{n}={v:g}" for r, p in f["all_runs"].items() for n, v in p.items())
                or "the defaults")]


def render_report(res: dict[str, Any]) -> str:
    out = [f"== calibration corpus: {res['corpus']['stored']} stored runs, "
           f"{res['corpus']['scored']} scored ({res['corpus']['dropped']} dropped by the "
           "label check)", *_fit_lines(res), ""]
    d, b = res["diagnose"]["all"], res["baseline"]["all"]
    out += [_line("diagnose (all runs)", d), _line("textbook baseline", b)]
    out += [_line(f"diagnose, held-out by {key}", res["diagnose"]["lofo"][key]["pooled"])
            for key in GROUPINGS]
    out.append("")
    out.append(f"  {'state':20s} {'diagnose P/R/F1':>20s}   {'baseline P/R/F1':>20s}")
    for s in CORE:
        dm, bm = d["per_state"].get(s), b["per_state"].get(s)

        def f(m: dict[str, float] | None) -> str:
            return "-" if not m else f"{m['precision']:.2f}/{m['recall']:.2f}/{m['f1']:.2f}"
        n = int(dm["support"]) if dm else 0
        out.append(f"  {s:20s} {f(dm):>20s}   {f(bm):>20s}   (n={n})")
    for key in GROUPINGS:
        dl, bl = res["diagnose"]["lofo"][key], res["baseline"]["lofo"][key]
        out += ["", f"-- leave one {key} out (diagnose macro-F1 [95% bootstrap] | baseline"
                    " macro-F1, healthy FA, exact)"]
        for value, s in dl["folds"].items():
            t = bl["folds"][value]
            band = _band(s) or " " * 12
            out.append(f"  {value:26s} n={s['n']:4d}  {_f(s['macro_f1'])}{band} | "
                       f"{_f(t['macro_f1'])}"
                       f"   FA {s['healthy_fa_rate']:5.1%} | {t['healthy_fa_rate']:5.1%}"
                       f"   exact {s['exact']:.3f} | {t['exact']:.3f}")
        out.append(f"  worst fold macro-F1: diagnose {_f(dl['worst_macro_f1'])}, baseline "
                   f"{_f(bl['worst_macro_f1'])}")
    if res.get("split"):
        sp = res["split"]
        out += ["", f"-- runs drawn before {sp['at']} (the rules were tuned on them) vs "
                    f"from {sp['at']} on (drawn later, the same way)",
                _line(f"diagnose, before {sp['at']}", sp["seen"]) + _bands(sp["seen"]),
                _line(f"diagnose, from {sp['at']}", sp["fresh"]) + _bands(sp["fresh"]),
                _line(f"textbook, from {sp['at']}", sp["fresh_baseline"]),
                "  per-state F1 before | from: " + ", ".join(
                    f"{s} {_f(sp['seen']['per_state'].get(s, {}).get('f1'))} | "
                    f"{_f(sp['fresh']['per_state'].get(s, {}).get('f1'))}" for s in CORE)]
    out += ["", "-- confusion (rows: label; columns: diagnose's core states)"]
    for lab, row in res["diagnose"]["confusion"].items():
        cells = ", ".join(f"{k} {v}" for k, v in sorted(row.items(), key=lambda kv: -kv[1]))
        out.append(f"  {lab:30s} {cells}")
    if res["analysis_errors"]:
        out.append(f"  analysis/load errors: {len(res['analysis_errors'])}")
    for name, r in res["real"].items():
        if not r:
            continue
        mf = "n/a" if r["macro_f1_present"] is None else f"{r['macro_f1_present']:.3f}"
        out += ["", f"== {name}: {r['rows']} rows, {r['scored']} unambiguous",
                f"  agree {r['agree']}/{r['scored']} ({r['agree_rate']:.0%}), healthy false "
                f"alarms {len(r['healthy_false_alarms'])}/{r['healthy']}, exact "
                f"{r['exact']:.3f}, macro-F1 (states present) {mf}, all load: {r['all_load']}"]
        out += [f"  WRONG {w}" for w in r["wrong"]]
    return "\n".join(out)


def render_markdown(res: dict[str, Any]) -> str:
    """The figures as markdown tables (bench/calibration/RESULTS.md)."""
    c = res["corpus"]
    out = ["# Calibration corpus: today's scores", "",
           "Written by `python bench/calibration/evaluate.py --markdown "
           "bench/calibration/RESULTS.md`.", "", *[ln.strip() for ln in _fit_lines(res)], "",
           f"Corpus: {c['stored']} stored runs, {c['scored']} scored, {c['dropped']} dropped "
           "by the label check. Labels: " + ", ".join(f"{k} {v}" for k, v in
                                                    sorted(c["labels"].items())) + ".", "",
           "| scorer | runs | macro-F1 (5 core) | healthy false alarms | exact |",
           "|---|---:|---:|---:|---:|"]
    rows = [("diagnose, all runs", res["diagnose"]["all"]),
            ("textbook baseline", res["baseline"]["all"])]
    if res.get("split"):
        sp = res["split"]
        rows += [(f"diagnose, runs before {sp['at']} (tuned on)", sp["seen"]),
                 (f"diagnose, runs from {sp['at']} (drawn later)", sp["fresh"])]
    rows += [(f"diagnose, held out by {g} (pooled)", res["diagnose"]["lofo"][g]["pooled"])
             for g in GROUPINGS]
    for name, s in rows:
        out.append(f"| {name} | {s['n']} | {_f(s['macro_f1'])} | {s['healthy_false_alarms']}/"
                   f"{s['healthy']} ({s['healthy_fa_rate']:.1%}) | {s['exact']:.3f} |")
    out += ["", "| state | n | diagnose P / R / F1 | baseline P / R / F1 |", "|---|---:|---|---|"]
    for st in CORE:
        dm, bm = res["diagnose"]["all"]["per_state"].get(st), \
            res["baseline"]["all"]["per_state"].get(st)

        def f(m: dict[str, float] | None) -> str:
            return "-" if not m else f"{m['precision']:.2f} / {m['recall']:.2f} / {m['f1']:.2f}"
        out.append(f"| {st} | {int(dm['support']) if dm else 0} | {f(dm)} | {f(bm)} |")
    for key in GROUPINGS:
        dl, bl = res["diagnose"]["lofo"][key], res["baseline"]["lofo"][key]
        out += ["", f"## Leave one {key} out", "",
                "| held out | runs | macro-F1 diagnose [95% bootstrap] / baseline | healthy FA "
                "diagnose / "
                "baseline | exact diagnose / baseline |", "|---|---:|---|---|---|"]
        for value, s in dl["folds"].items():
            t = bl["folds"][value]
            out.append(f"| {value} | {s['n']} | {_f(s['macro_f1'])}{_band(s)} / "
                       f"{_f(t['macro_f1'])} | "
                       f"{s['healthy_false_alarms']}/{s['healthy']} / "
                       f"{t['healthy_false_alarms']}/{t['healthy']} | {s['exact']:.3f} / "
                       f"{t['exact']:.3f} |")
        out.append(f"| worst fold | | {_f(dl['worst_macro_f1'])} / {_f(bl['worst_macro_f1'])}"
                   " | | |")
    labels = list(res["diagnose"]["confusion"])
    cols = sorted({k for row in res["diagnose"]["confusion"].values() for k in row},
                  key=lambda k: (k != "healthy", k))
    out += ["", "## Confusion (rows: label, columns: diagnose's core states)", "",
            "| label | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for lab in labels:
        row = res["diagnose"]["confusion"][lab]
        out.append(f"| {lab} | " + " | ".join(str(row.get(k, "")) for k in cols) + " |")
    for name, r in res["real"].items():
        if not r:
            continue
        mf = "n/a" if r["macro_f1_present"] is None else f"{r['macro_f1_present']:.3f}"
        out += ["", f"## {name}", "",
                f"{r['rows']} rows, {r['scored']} unambiguous: agree {r['agree']}/{r['scored']}"
                f" ({r['agree_rate']:.0%}), healthy false alarms "
                f"{len(r['healthy_false_alarms'])}/{r['healthy']}, exact {r['exact']:.3f}, "
                f"macro-F1 over the states present {mf}.", ""]
        out += [f"- wrong: {w}" for w in r["wrong"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Leave-one-family-out scores of diagnose.")
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--rendered", type=Path, default=REPO / "bench/_out/calibration")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing rendering")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--no-real", action="store_true", help="skip the real logs")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    ap.add_argument("--fit", type=Path, metavar="GRID",
                    help="choose the thresholds of this grid (TOML: [RULE] name = [values])"
                         " on each fold's training runs (bench/calibration/fitting.py)")
    ap.add_argument("--predictions", type=Path,
                    help="also write one TSV row per run: id, family, dataset, format, "
                         "cause, label, prediction (for reading the misses)")
    ap.add_argument("--fresh-from", type=int, metavar="INDEX",
                    help="also score runs with index >= INDEX apart from those before it "
                         "(a campaign grown after the rules were tuned: an unseen sample)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    records = store.load(args.store)
    runs = scored_runs(records)
    if not (args.reuse and args.rendered.exists()):
        if args.rendered.exists():
            import shutil

            shutil.rmtree(args.rendered)
        write_logs.render_all((r["rec"] for r in runs), args.rendered)
    else:  # a rendering made under older labels lacks the runs they dropped then
        missing = [r for r in runs if not (args.rendered / r["format"] / r["id"]).is_dir()]
        if missing:
            print(f"  rendering {len(missing)} scored runs missing from {args.rendered}",
                  file=sys.stderr)
            write_logs.render_all((r["rec"] for r in missing), args.rendered)
    t_render = time.perf_counter() - t0
    outcome = analyze_dir(args.rendered, {}, args.jobs)
    pred, errors = predictions_by_run(outcome)
    unseen = sorted(r["id"] for r in runs if r["id"] not in pred and r["id"] not in errors)
    if unseen:  # a run the analyzer never saw must not score as "healthy"
        print(f"error: {len(unseen)} scored runs have no analyzer result (not rendered "
              f"under {args.rendered}?): {' '.join(unseen[:20])}", file=sys.stderr)
        return 2
    t_analyze = time.perf_counter() - t0 - t_render

    def analyze_all(th: Thresholds) -> dict[str, set[str]]:
        if not th:
            return pred
        print(f"  (analyzer pass with {th})", file=sys.stderr)
        return predictions_by_run(analyze_dir(args.rendered, th, args.jobs))[0]

    def objective(train: list[dict[str, Any]], p: dict[str, set[str]]) -> float:
        s = score([(set(r["label"]), p.get(r["id"], set())) for r in train])
        return float(s["macro_f1"] or 0.0) - float(s["healthy_fa_rate"])

    grid = fitting.read_grid(args.fit) if args.fit else []
    cal = fitting.Calibrator(grid, analyze_all, objective)

    def predict_diagnose(test: list[dict[str, Any]], th: Thresholds) -> dict[str, set[str]]:
        p = cal.predictions(th)  # a fitted fold: the analyzer with its thresholds (cached)
        return {r["id"]: p.get(r["id"], set()) for r in test}

    def predict_baseline(test: list[dict[str, Any]], th: Thresholds) -> dict[str, set[str]]:
        return {r["id"]: textbook(r["rec"]) for r in test}

    all_pairs = [(set(r["label"]), pred.get(r["id"], set())) for r in runs]
    if args.predictions:
        rows = ["id\tfamily\tdataset\tformat\tcause\tlabel\tprediction\tall_states"]
        rows += ["\t".join([r["id"], r["family"], r["dataset"], r["format"], r["cause"],
                            setname(r["label"]), setname(pred.get(r["id"], set())),
                            "+".join(sorted(pred.get(r["id"], set()))) or "-"])
                 for r in runs]
        args.predictions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    base_pairs = [(set(r["label"]), textbook(r["rec"])) for r in runs]
    res: dict[str, Any] = {
        "corpus": {"stored": len(records), "scored": len(runs),
                   "dropped": len(records) - len(runs),
                   "labels": dict(Counter(setname(r["label"]) for r in runs))},
        "diagnose": {"all": score(all_pairs),
                     "lofo": lofo(runs, predict_diagnose, cal.fit if grid else fit),
                     "confusion": confusion(all_pairs)},
        "baseline": {"all": score(base_pairs), "lofo": lofo(runs, predict_baseline),
                     "confusion": confusion(base_pairs)},
        "analysis_errors": errors, "real": {},
        "fitted": {"grid": [[r, n, v] for r, n, v in grid],
                   "all_runs": cal.fit(runs) if grid else {},
                   "fold_choices": _choice_counts(cal.chosen), "passes": cal.runs()},
        "seconds": {"render": round(t_render, 1), "analyze": round(t_analyze, 1)},
    }
    if args.fresh_from is not None:
        cut = f"r{args.fresh_from:05d}"

        def part(rs: list[dict[str, Any]], p: Callable[[dict[str, Any]], set[str]]
                 ) -> dict[str, Any]:
            pairs = [(set(r["label"]), p(r)) for r in rs]
            s = score(pairs)
            return s | {"macro_f1_95": macro_f1_interval(pairs),
                        "healthy_fa_95": fa_rate_interval(s["healthy_false_alarms"],
                                                          s["healthy"])}
        seen = [r for r in runs if r["id"] < cut]
        fresh = [r for r in runs if r["id"] >= cut]
        res["split"] = {"at": cut, "seen": part(seen, lambda r: pred.get(r["id"], set())),
                        "fresh": part(fresh, lambda r: pred.get(r["id"], set())),
                        "fresh_baseline": part(fresh, lambda r: textbook(r["rec"]))}
    if not args.no_real:
        shared = REPO.parent / "shared"
        for name in ("real_logs", "real_logs_more"):
            res["real"][name] = score_real_set(shared / name, args.jobs)
        for name in ("real_extra", "real_extra2", "real_extra3", "real_extra4",
                     "real_extra5"):
            res["real"][name] = score_real_set(REPO / "bench" / name, args.jobs)
    print(render_report(res))
    print(f"\n(render {t_render:.0f} s, analyze {t_analyze:.0f} s, total "
          f"{time.perf_counter() - t0:.0f} s)")
    if args.markdown:
        args.markdown.write_text(render_markdown(res), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True, default=sorted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
