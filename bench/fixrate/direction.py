"""Recommendation direction and range landing on the calibration corpus (no training).

Usage (from the repo root, in the venv)::

    python bench/fixrate/direction.py [--rendered DIR] [--jobs 1] [--out FILE.json]

Issue 10's second target: "recommendation direction stays >= 95% on detected cases; every
proposal for a value that was far outside its usual range lands inside it".  Every broken
run of the calibration corpus (checked label not healthy, ``labels.tsv``) is analysed from
its rendered logs (``bench/_out/calibration/<format>/<id>``, what ``evaluate.py`` writes);
a run is *detected* when the analyzer gives it any core state at warning or error.  The
stored recipe knows the run's cause and its true hyperparameters, so each recommendation
is scored against what an experienced engineer would change for that cause
(:data:`DIRECTIONS`, one line per cause):

- **right**: the recommendation makes one of the cause's right moves;
- **wrong**: it moves the cause's own knob the wrong way (raises an LR that is far too
  high, lowers the dropout of a run that memorises ...);
- **other**: another knob (neither counted right nor wrong).

A move's direction is the proposed value against the current one: the analyzer's
``current`` when it has one, else the recipe's true value (so "batch_size set 32" on a
run at 48 is a decrease), else the recommendation's action.  Top-1 is the first
recommendation of the top finding (the first warning/error finding with advice, as the
probe and ``fixrate.py`` pick it); "any" is any recommendation of that finding; wrong
moves are counted over every recommendation of every warning/error finding, and over the
changes each carries (``together_with``, applied in the same trial).

Range: for the knobs whose usual range diagnose's own policy states
(:class:`~diagnose.advice.policy.AdvicePolicy`: the LR per optimizer, weight decay coupled
or decoupled, dropout, BatchNorm momentum, the batch size of a BatchNorm model), every
proposal on a run whose true value lies far outside that range must land inside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "calibration"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
import corpus  # noqa: E402  (bench/fixrate/corpus.py: the recipe's true hyperparameters)
import label_check  # noqa: E402
import store  # noqa: E402
import write_logs  # noqa: E402

from diagnose.advice.moves import lr_outside_range, usual_lr_range  # noqa: E402
from diagnose.advice.policy import AdvicePolicy  # noqa: E402
from diagnose.hparams import finite_number  # noqa: E402

RENDERED = REPO / "bench/_out/calibration"
#: Hyperparameters whose presence in the logs the report shows (the evidence the advice had).
VISIBLE = ("optimizer", "learning_rate", "weight_decay", "dropout", "batch_size")
CORE = store.CORE

# ---------------------------------------------------------------------------
# The direction table: what an experienced engineer changes for each cause
# ---------------------------------------------------------------------------

#: A move on one knob: "up", "down", "on" (enable), "change" (to another value than the
#: broken one), "in_range" (a value inside the policy's usual range), "restore" (an LR
#: not above the configured base LR: the pre-jump value).
Move = tuple[str, str]
#: What a recommendation's hyperparameter is, as a knob of the table.
KNOB_OF = {"max_steps": "length", "epochs": "length", "early_stopping": "length",
           "model_capacity": "capacity", "hidden": "capacity", "depth": "capacity"}
#: The opposite of each direction (a move the other way is a wrong move).
OPPOSITE = {"up": "down", "down": "up"}


@dataclass(frozen=True)
class Direction:
    """The right moves for a cause, and the knobs whose opposite move is wrong."""

    right: tuple[Move, ...]
    wrong: tuple[Move, ...] = ()
    why: str = ""


REGULARISE = (("weight_decay", "up"), ("dropout", "up"), ("length", "down"),
              ("capacity", "down"), ("data_augmentation", "on"))
MEMORISE_WRONG = (("weight_decay", "down"), ("dropout", "down"), ("length", "up"),
                  ("capacity", "up"))
BN_STATS = (("bn_momentum", "in_range"), ("precise_bn", "on"), ("drop_last", "on"),
            ("normalization", "change"))

#: One line per cause the corpus generator draws (``generate.CAUSES``).  None: the cause
#: has no single right hyperparameter move (healthy traps; a linear model on non-linear
#: data needs another model family) and is left out of the scores.
DIRECTIONS: dict[str, Direction | None] = {
    # healthy causes and traps: nothing to fix (a relabelled run has no known knob)
    "default": None, "noisy_small_batch": None, "warmup_rise": None,
    "transient_spike": None, "finetune_low_start": None, "short_run": None,
    "sparse_val": None, "converged_long_tail": None, "dropout_val_below_train": None,
    # divergence
    "lr_far_too_high": Direction((("learning_rate", "down"),), (("learning_rate", "up"),),
                                 "LR far too high: lower it"),
    "lr_jump_midrun": Direction((("learning_rate", "restore"), ("lr_schedule", "change"),
                                 ("lr_step_factor", "down")),
                                (("learning_rate", "up"), ("lr_step_factor", "up")),
                                "LR jumped mid-run: back to the LR before the jump (the "
                                "step's factor down)"),
    "unscaled_inputs_targets": Direction((("standardize_targets", "on"),),
                                         (("learning_rate", "up"),),
                                         "unscaled targets: standardise them"),
    "huge_init": Direction((("init", "change"),), (), "weights drawn too large: fix the init"),
    # overfit
    "tiny_train_set": Direction(REGULARISE, MEMORISE_WRONG,
                                "tiny train set: regularise or stop earlier"),
    "label_noise": Direction(REGULARISE, MEMORISE_WRONG,
                             "noisy labels: regularise or stop earlier"),
    "small_text_big_model": Direction(REGULARISE, MEMORISE_WRONG,
                                      "small text, big model: regularise or stop earlier"),
    # underfit
    "bottleneck": Direction((("capacity", "up"),), (("capacity", "down"),),
                            "1-3 unit bottleneck: more capacity"),
    "heavy_weight_decay": Direction((("weight_decay", "down"),), (("weight_decay", "up"),),
                                    "heavy weight decay: lower it"),
    "heavy_dropout": Direction((("dropout", "down"),), (("dropout", "up"),),
                               "heavy dropout: lower it"),
    "too_few_steps": Direction((("length", "up"),), (("length", "down"),),
                               "too few steps, still falling: train longer"),
    "linear_on_nonlinear": None,  # a different model family, not a hyperparameter
    # plateau
    "tiny_lr": Direction((("learning_rate", "up"),), (("learning_rate", "down"),),
                         "tiny LR: raise it"),
    "dead_relu": Direction((("init", "change"), ("activation", "change")), (),
                           "dead ReLUs from a negative bias init: fix the init"),
    "zero_init": Direction((("init", "change"),), (), "zero init (symmetric units): init"),
    "deep_sigmoid": Direction((("activation", "change"), ("init", "change"),
                               ("residual_connections", "on"), ("normalization", "change")),
                              (), "deep sigmoid stack: ReLU, a matching init or skips"),
    "endless_warmup": Direction((("warmup_steps", "down"),), (("warmup_steps", "up"),),
                                "warmup longer than the run: shorten it"),
    "lr_decayed_early": Direction((("learning_rate", "up"), ("lr_schedule", "change"),
                                   ("lr_step_factor", "up")),
                                  (("learning_rate", "down"), ("lr_step_factor", "down")),
                                  "LR cut to ~0 early: restore it / a later decay"),
    # batchnorm_collapse
    "bn_frozen_stats": Direction(BN_STATS, (("bn_momentum", "out_range"),),
                                 "BN momentum 0 (frozen running stats): into its range"),
    "bn_tiny_last_batch": Direction(BN_STATS, (("bn_momentum", "out_range"),),
                                    "momentum 1 + a tiny last batch: drop_last / momentum"),
    "bn_tiny_batch": Direction((("batch_size", "up"), ("normalization", "change"),
                                ("bn_momentum", "in_range")),
                               (("batch_size", "down"), ("bn_momentum", "out_range")),
                               "batches of 2-4 under BN: bigger batches or GroupNorm"),
    "bn_dropout_before": Direction((("dropout_placement", "change"), ("dropout", "down")),
                                   (("dropout", "up"),),
                                   "dropout before BN shifts its statistics: move it"),
}

# ---------------------------------------------------------------------------
# Usual ranges (the policy's numbers)
# ---------------------------------------------------------------------------


def usual_range(knob: str, hp: dict[str, Any], bn_model: bool,
                policy: AdvicePolicy) -> tuple[float, float, float, float] | None:
    """(low, high, far_low, far_high) of a knob's usual range under the policy, for a run
    with the true hyperparameters ``hp``; a value below far_low or above far_high is far
    outside.  None for knobs the policy states no range for."""
    opt = hp.get("optimizer")
    if knob == "learning_rate":
        lo, hi, _ = usual_lr_range(policy, opt)
        return lo, hi, lo / policy.lr_far_factor, hi * policy.lr_far_factor
    if knob == "weight_decay":
        decoupled = str(opt).lower() == "adamw"
        hi = policy.max_weight_decay if decoupled else policy.max_coupled_weight_decay
        return 0.0, hi, -math.inf, hi * policy.heavy_reg_factor
    if knob == "dropout":
        return 0.0, policy.max_dropout, -math.inf, policy.max_dropout
    if knob == "bn_momentum" and bn_model:
        # 0 never updates the running statistics, 1 keeps only the last batch's
        return 1e-3, 1 - 1e-3, 1e-3, 1 - 1e-3
    if knob == "batch_size" and bn_model:
        return policy.min_bn_batch, math.inf, policy.tiny_bn_batch + 0.5, math.inf
    return None


def move_of(rec: dict[str, Any], true_hp: dict[str, Any]) -> tuple[str, str]:
    """(knob, direction) a recommendation makes: up/down/on/off/change/same."""
    hyper, action = rec["hyperparameter"], rec["action"]
    knob = KNOB_OF.get(hyper, hyper)
    if hyper in ("early_stopping",) and action in ("enable", "set"):
        return knob, "down"
    if action == "enable":
        return knob, "on"
    if action == "disable":
        return knob, "off"
    new, cur = finite_number(rec["proposed"]), finite_number(rec["current"])
    if cur is None and hyper in true_hp:
        cur = finite_number(true_hp[hyper])
    if new is not None and cur is not None:
        return knob, "up" if new > cur else "down" if new < cur else "same"
    if action in ("increase", "decrease"):
        return knob, "up" if action == "increase" else "down"
    if isinstance(rec["proposed"], bool):
        return knob, "on" if rec["proposed"] else "off"
    old = rec["current"] if rec["current"] is not None else true_hp.get(hyper)
    return knob, "same" if str(rec["proposed"]) == str(old) else "change"


#: A restored LR may sit this much above the pre-jump LR (3 significant digits, float32 logs).
RESTORE_TOLERANCE = 1.05


def classify(rec: dict[str, Any], cause: str, true_hp: dict[str, Any], bn_model: bool,
             policy: AdvicePolicy, pre_jump: float | None = None) -> str:
    """'right', 'wrong' or 'other' for one recommendation on a run of ``cause``
    (``pre_jump``: the LR logged before a mid-run LR event, when there was one)."""
    d = DIRECTIONS[cause]
    assert d is not None
    knob, way = move_of(rec, true_hp)
    proposed = finite_number(rec["proposed"])
    in_range = out_range = False
    if knob == "bn_momentum" and proposed is not None:
        lo, hi, _, _ = usual_range("bn_momentum", true_hp, True, policy) or (0, 1, 0, 0)
        in_range = lo <= proposed <= hi
        out_range = not in_range
    base = max(x for x in (finite_number(true_hp.get("learning_rate")), pre_jump, 0.0)
               if x is not None)

    def makes(move: Move) -> bool:
        k, want = move
        if k != knob:
            return False
        if want == "in_range":
            return in_range
        if want == "out_range":
            return out_range
        if want == "restore":  # back to (or below) the configured LR before the jump
            return proposed is not None and 0 < proposed <= base * RESTORE_TOLERANCE
        if want == "change":
            return way in ("change", "up", "down", "on")
        return way == want

    if any(makes(m) for m in d.wrong):
        return "wrong"
    if any(makes(m) for m in d.right):
        return "right"
    return "other"


# ---------------------------------------------------------------------------
# The corpus: broken runs, the analyzer's advice on them
# ---------------------------------------------------------------------------


def broken_runs(store_path: Path = store.STORE,
                records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every broken corpus run that the label check kept: id, cause, label, recipe (of
    ``records`` when given, else the store's)."""
    labels = label_check.read_labels()
    out = []
    for rec in records if records is not None else store.load(store_path):
        label = labels.get(rec["id"])
        if not label:
            continue  # healthy or dropped
        out.append({"id": rec["id"], "cause": rec["cause"], "label": sorted(label),
                    "config": rec["config"], "format": write_logs.format_of(rec["id"]),
                    "pre_jump_lr": pre_jump_lr(rec)})
    return out


def pre_jump_lr(rec: dict[str, Any]) -> float | None:
    """The highest LR the run logged before its mid-run LR event (what restoring the LR
    before a jump goes back to: the schedule may have put it above the configured LR)."""
    cfg = rec["config"]
    event, lr = cfg.get("lr_event"), store.series(rec, "lr")
    if not event or not lr:
        return None
    at = round(event["at"] * corpus._total(cfg))
    before = [v for s, v in zip(*lr, strict=True) if s < at and math.isfinite(v)]
    return max(before) if before else None


def advise_runs(runs: list[dict[str, Any]], rendered: Path,
                jobs: int | None = 1) -> dict[str, dict[str, Any]]:
    """id -> ``{known, findings}``: the hyperparameters the analyzer read from the logs
    (of :data:`VISIBLE`) and its warning/error findings on the run's rendered logs, each
    ``{rule, state, severity, recommendations: [...]}`` in the analyzer's order."""
    from diagnose.config import Config
    from diagnose.pipeline import Options, analyze

    paths = {str(rendered / r["format"] / r["id"]): r["id"] for r in runs}
    analysis = analyze(list(paths), Config(), Options(jobs=jobs))
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"known": [], "findings": []})
    for res in analysis.results:
        rel = Path(str(res.run.path)).resolve().relative_to(rendered.resolve()).parts
        rid = rel[1]
        hp = getattr(res.run, "hparams", None) or {}
        out[rid]["known"] = sorted(k for k in VISIBLE if hp.get(k) is not None)
        for f in res.findings:
            severity = str(getattr(f.severity, "value", f.severity))
            if severity == "info":
                continue
            state = str(getattr(f.state, "value", f.state))
            out[rid]["findings"].append({
                "rule": f.rule, "state": state, "severity": severity,
                "recommendations": [r.to_dict() for r in f.recommendations]})
    return dict(out)


def _proposals(finding: dict[str, Any]) -> list[dict[str, Any]]:
    """Every change a finding proposes: its recommendations and the changes they carry
    (``together_with``, applied in the same trial), so a coupled move is scored for a
    wrong direction and its range landing like any other."""
    return [p for r in finding["recommendations"] for p in (r, *r.get("together_with", ()))]


def _bn_model(cfg: dict[str, Any]) -> bool:
    return cfg["arch"] in ("mlp_bn", "cnn_bn")


def score_run(run: dict[str, Any], advice: dict[str, Any],
              policy: AdvicePolicy) -> dict[str, Any]:
    """One broken run (``advice``: :func:`advise_runs`' entry): detected?, its top
    finding's advice scored, range landings."""
    findings = advice.get("findings", [])
    cfg = run["config"]
    hp = corpus.hparams_of(cfg)
    bn = _bn_model(cfg)
    core = [f for f in findings if f["state"] in CORE]
    row: dict[str, Any] = {"id": run["id"], "cause": run["cause"], "label": run["label"],
                           "detected": bool(core), "states": sorted({f["state"] for f in core}),
                           "known": advice.get("known", [])}
    direction = DIRECTIONS.get(run["cause"])
    row["scored"] = direction is not None and bool(core)
    top = next((f for f in findings if f["recommendations"]), None)
    if row["scored"]:
        assert direction is not None
        jump = run.get("pre_jump_lr")
        verdicts = [] if top is None else [classify(r, run["cause"], hp, bn, policy, jump)
                                           for r in top["recommendations"]]
        row.update(top_rule=top and top["rule"], top1=verdicts[0] if verdicts else "none",
                   any_right="right" in verdicts,
                   top_advice=top and top["recommendations"][0])
        wrong = []
        for f in findings:
            for r in _proposals(f):
                if classify(r, run["cause"], hp, bn, policy, jump) == "wrong":
                    wrong.append({"rule": f["rule"], **r})
        row["wrong"] = wrong
    # range: every proposal on a knob whose true value is far outside its usual range
    landings = []
    for f in findings:
        for r in _proposals(f):
            knob = r["hyperparameter"]
            rng = usual_range(knob, hp, bn, policy)
            value = finite_number(hp.get(knob))
            if rng is None or value is None:
                continue
            lo, hi, far_lo, far_hi = rng
            if knob == "learning_rate":
                far = bool(lr_outside_range(policy, hp.get("optimizer"), value))
            else:
                far = value < far_lo or value > far_hi
            if not far:
                continue
            new = finite_number(r["proposed"])
            inside = new is not None and lo <= new <= hi
            landings.append({"rule": f["rule"], "hyperparameter": knob, "true": value,
                             "current": r["current"], "proposed": r["proposed"],
                             "range": [lo, hi], "inside": inside,
                             "optimizer": hp.get("optimizer"),
                             "optimizer_logged": "optimizer" in advice.get("known", [])})
    row["landings"] = landings
    return row


# ---------------------------------------------------------------------------
# Summary and report
# ---------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per labelled state and overall: detected, scored, top-1 right, any right, wrong."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups["+".join(r["label"])].append(r)
        groups["all"].append(r)
    table = {}
    for name, rs in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        scored = [r for r in rs if r["scored"]]
        n = len(scored)
        top1 = sum(r["top1"] == "right" for r in scored)
        anyr = sum(r["any_right"] for r in scored)
        table[name] = {
            "broken": len(rs), "detected": sum(r["detected"] for r in rs), "scored": n,
            "top1_right": top1, "top1_wrong": sum(r["top1"] == "wrong" for r in scored),
            "top1_other": sum(r["top1"] == "other" for r in scored),
            "no_advice": sum(r["top1"] == "none" for r in scored),
            "any_right": anyr,
            "runs_with_wrong": sum(bool(r["wrong"]) for r in scored),
            "wrong_proposals": sum(len(r["wrong"]) for r in scored),
            "top1_rate": top1 / n if n else None, "any_rate": anyr / n if n else None,
            # the "direction": top-1 advice that touches the cause's knob moves it
            # the right way, and runs with no wrong-way proposal at all
            "direction_rate": (top1 / (top1 + wrong1)) if (
                wrong1 := sum(r["top1"] == "wrong" for r in scored)) + top1 else None,
            "no_wrong_rate": (n - sum(bool(r["wrong"]) for r in scored)) / n if n else None,
        }
    lands = [x for r in rows for x in r["landings"]]
    by_knob: dict[str, Counter[str]] = defaultdict(Counter)
    for x in lands:
        by_knob[x["hyperparameter"]]["inside" if x["inside"] else "outside"] += 1
    per_cause: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if r["scored"]:
            per_cause[r["cause"]][r["top1"]] += 1
    known = [x for x in lands if x["current"] is not None and (
        x["hyperparameter"] != "learning_rate" or x["optimizer_logged"])]
    return {"states": table, "per_cause_top1": {k: dict(v) for k, v in sorted(per_cause.items())},
            "range": {"far_proposals": len(lands), "inside": sum(x["inside"] for x in lands),
                      "known_proposals": len(known),
                      "known_inside": sum(x["inside"] for x in known),
                      "current_unknown": sum(x["current"] is None for x in lands),
                      "by_knob": {k: dict(v) for k, v in sorted(by_knob.items())},
                      "misses": [{"id": r["id"], "cause": r["cause"], **x} for r in rows
                                 for x in r["landings"] if not x["inside"]]},
            "unscored_causes": dict(Counter(r["cause"] for r in rows
                                            if r["detected"] and not r["scored"]))}


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def render(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    out = ["== recommendation direction on detected broken corpus runs (direction: top-1 "
           "right / (right + wrong way on the cause's knob))",
           f"{'state':30s} {'broken':>6s} {'detect':>6s} {'scored':>6s} {'top-1 right':>14s} "
           f"{'any right':>14s} {'top-1 wrong':>11s} {'wrong props (runs)':>18s} "
           f"{'direction':>9s}"]
    for name, s in summary["states"].items():
        rate = "-" if s["direction_rate"] is None else format(s["direction_rate"], ".1%")
        out.append(f"{name:30s} {s['broken']:6d} {s['detected']:6d} {s['scored']:6d} "
                   f"{_pct(s['top1_right'], s['scored']):>14s} "
                   f"{_pct(s['any_right'], s['scored']):>14s} {s['top1_wrong']:11d} "
                   f"{s['wrong_proposals']:>10d} ({s['runs_with_wrong']})"
                   f"{rate:>11s}")
    out += ["", "-- top-1 verdict per cause (right / other / wrong / none)"]
    for cause, c in summary["per_cause_top1"].items():
        out.append(f"  {cause:26s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if summary["unscored_causes"]:
        out.append("  detected, cause without a single right knob (left out): " + ", ".join(
            f"{k} {v}" for k, v in sorted(summary["unscored_causes"].items())))
    wrong = [(r, w) for r in rows if r.get("scored") for w in r["wrong"]]
    if wrong:
        out += ["", "-- wrong-direction proposals"]
        out += [f"  {r['id']} ({r['cause']}): {w['rule']} {w['hyperparameter']} "
                f"{w['action']} {w['current']} -> {w['proposed']}" for r, w in wrong]
    rg = summary["range"]
    out += ["", f"== range: proposals for a value far outside its usual range landing inside "
            f"it: {_pct(rg['inside'], rg['far_proposals'])}",
            "  by knob: " + ", ".join(f"{k} {v.get('inside', 0)}/{sum(v.values())}"
                                      for k, v in rg["by_knob"].items()),
            f"  where the analyzer knew the value (and, for the LR, the optimizer): "
            f"{_pct(rg['known_inside'], rg['known_proposals'])}; current value unknown to "
            f"the analyzer (a relative proposal): {rg['current_unknown']}"]
    out += [f"  MISS {m['id']} ({m['cause']}, {m['optimizer']}"
            f"{'' if m['optimizer_logged'] else ' not logged'}): {m['rule']} "
            f"{m['hyperparameter']} true {m['true']:g} (current {m['current']}) -> "
            f"{m['proposed']}, usual {m['range'][0]:g}-{m['range'][1]:g}"
            for m in rg["misses"]]
    return "\n".join(out)


def run(runs: Iterable[dict[str, Any]], rendered: Path, jobs: int | None = 1,
        policy: AdvicePolicy | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Analyse and score the runs: (summary, per-run rows)."""
    policy = policy or AdvicePolicy()
    runs = list(runs)
    advice = advise_runs(runs, rendered, jobs)
    rows = [score_run(r, advice.get(r["id"], {}), policy) for r in runs]
    return summarize(rows), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Direction and range landing of the advice on "
                                 "the calibration corpus (no training).")
    ap.add_argument("--rendered", type=Path, default=RENDERED,
                    help="the rendered corpus (evaluate.py's --rendered); read only")
    ap.add_argument("--store", type=Path, default=store.STORE)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--ids", help="only these corpus ids (comma-separated)")
    ap.add_argument("--out", type=Path, help="write the summary and per-run rows as JSON")
    args = ap.parse_args(argv)
    if not args.rendered.exists():
        print(f"error: no rendered corpus at {args.rendered} (run bench/calibration/"
              "evaluate.py first)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = broken_runs(args.store)
    if args.ids:
        wanted = set(args.ids.split(","))
        runs = [r for r in runs if r["id"] in wanted]
    summary, rows = run(runs, args.rendered, args.jobs)
    print(render(summary, rows))
    print(f"\n({len(runs)} broken runs, {time.perf_counter() - t0:.0f} s)")
    if args.out:  # the rows without the rationales (the analyzer's text is long)
        for r in rows:
            for rec in [r.get("top_advice") or {}, *r.get("wrong", [])]:
                rec.pop("rationale", None)
        kept = [r for r in rows if r["detected"]]
        args.out.write_text(json.dumps({"summary": summary, "runs": kept}, default=str,
                                       sort_keys=True, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
