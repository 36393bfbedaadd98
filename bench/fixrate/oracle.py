"""Oracle sweep: can any small hyperparameter change fix a fix-rate case at all?

The fix-rate judge (``fixrate.judge``) calls an arm fixed when the state is gone in every
seed, it beats the control and its final val loss (mean over seeds) is at most the bar
``ref + GOOD_SHARE * (untrained - ref)`` of ``corpus.levels``.  Before blaming the advice
for a miss, this sweep measures whether *any* setting of a small fixed grid reaches that
bar: a case where none does has no hyperparameter fix on its data under this judge (the
issue counts "cases that have a hyperparameter fix").  The bar and its cap stay as they are.

Grid per case (each through ``corpus.train``, the probe's trainer, 2 seeds; trial seed 0
is the stored run's split and init): ``control`` (the broken settings), the single changes
an engineer would try for the case's state (:func:`singles`), and the pairs of the three
best single changes on different knobs (:func:`pairs`).

- overfit: weight decay at the optimizer's usual size (``decoupled_weight_decay`` for
  AdamW, ``max_coupled_weight_decay`` for SGD/Adam), dropout 0.3 / 0.5, capacity x0.5 /
  x0.25; every setting also with *stop at the val-loss best* (the best checkpoint in each
  seed, read off the same history: what early stopping with restore keeps);
- divergence: LR at the bottom / geometric middle / top of the optimizer's usual range
  (the advice policy's numbers), standardised targets, grad clip 1, init default / He,
  the LR step undone (a recipe with a mid-run LR event);
- underfit: length x2 / x4 / up to ``SHORT_BUDGET`` steps, capacity x2 / x4, weight decay
  0, dropout 0, LR at the top of the range, momentum 0.9 for plain SGD;
- plateau: LR at the middle / top of the range, init He, ReLU + He, warmup 0, constant
  schedule, weight decay 0, dropout 0, momentum 0.9 for plain SGD;
- batchnorm_collapse: ``bn_momentum`` 0.1, ``drop_last``, GroupNorm, batch x4.

A setting is a fix under the fix-rate judge when the case's states (its state and its
label's) are gone in every seed, the mean final val loss is at most the bar, and it beats
the control by the probe's gate.  Each training runs in this one process: ``corpus.train``
restores the hooks it patches after every run.

Usage (resumable: one JSON per trial under ``--out``)::

    nice -n 15 python bench/fixrate/oracle.py --out bench/_out/oracle
    nice -n 15 python bench/fixrate/oracle.py --unfixed \
        bench/fixrate/results_corpus_cpu_round9_underfit.json --singles-only
    python bench/fixrate/oracle.py --unfixed RESULTS.json --report --json OUT.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402
from fixrate import BLOWN_UP_FACTOR, GOOD_SHARE  # noqa: E402

#: The overfit fix-rate cases (round 8's list, probed or not).
OVERFIT_CASES = ("r00011", "r00144", "r00415", "r00819", "r01180", "r01477", "r01584", "r01980",
         "r02073", "r01080", "r01232", "r00805")
SEEDS = (0, 1)
DROPOUTS = (0.3, 0.5)
CAPACITIES = (0.5, 0.25)
#: Underfit: the longer lengths tried (factors) and the usual budget a short run trains to.
LENGTHS = (2, 4)
SHORT_BUDGET = 1000
#: Underfit: the larger widths tried.
WIDER = (2.0, 4.0)
#: Divergence: the gradient clip norm tried.
GRAD_CLIP = 1.0
#: Underfit and plateau: the momentum tried for plain SGD (the usual heavy-ball value).
SGD_MOMENTUM = 0.9
#: Batch-norm collapse: the running-statistics momentum and the batch factor tried.
BN_MOMENTUM = 0.1
BATCH_FACTOR = 4
#: The states the grid covers beside overfit.
OTHER_STATES = ("divergence", "underfit", "plateau", "batchnorm_collapse")


def usual_weight_decay(optimizer: str) -> float:
    """The top of the optimizer's usual weight decay, from the advice policy's numbers."""
    from diagnose.advice.policy import AdvicePolicy

    pol = AdvicePolicy()
    return pol.decoupled_weight_decay if optimizer == "adamw" else pol.max_coupled_weight_decay


def lr_range(optimizer: str) -> tuple[float, float]:
    """The optimizer's usual LR range (bottom, top), from the advice policy's numbers."""
    from diagnose.advice.policy import AdvicePolicy

    pol = AdvicePolicy()
    name = {"adamw": "adam"}.get(optimizer, optimizer)
    return getattr(pol, f"{name}_lr_low"), getattr(pol, f"{name}_lr_high")


def singles(hp: dict[str, Any], state: str = "overfit") -> dict[str, dict[str, Any]]:
    """The single-change settings an engineer would try for ``state`` that this recipe
    can take (a linear model has no width, a recipe without BatchNorm no momentum);
    a setting equal to the current value is left out."""
    out: dict[str, dict[str, Any]] = {"control": {}}
    lo, hi = lr_range(hp["optimizer"])
    mid = math.sqrt(lo * hi)
    lr = {"low": lo, "mid": mid, "top": hi}
    if state == "overfit":
        out["wd"] = {"weight_decay": usual_weight_decay(hp["optimizer"])}
        if "dropout" in hp:
            for d in DROPOUTS:
                out[f"dropout{d}"] = {"dropout": d}
        if "model_capacity" in hp:
            for c in CAPACITIES:
                out[f"capacity_x{c}"] = {"model_capacity": hp["model_capacity"] * c}
    elif state == "divergence":
        for name, v in lr.items():
            out[f"lr_{name}"] = {"learning_rate": v}
        if "standardize_targets" in hp and not hp["standardize_targets"]:
            out["standardize"] = {"standardize_targets": True}
        if not hp["grad_clip"]:
            out["clip"] = {"grad_clip": GRAD_CLIP}
        for init in ("default", "he_normal"):
            if hp["init"] != init:
                out[f"init_{init}"] = {"init": init}
        if hp.get("lr_step_factor", 1.0) != 1.0:
            out["no_lr_step"] = {"lr_step_factor": 1.0}
    elif state == "underfit":
        steps = int(hp["max_steps"])
        lengths = sorted({steps * f for f in LENGTHS} | ({SHORT_BUDGET}
                                                          if steps < SHORT_BUDGET else set()))
        for n in lengths:
            out[f"steps_{n}"] = {"max_steps": n}
        if "model_capacity" in hp:
            for c in WIDER:
                out[f"capacity_x{c:g}"] = {"model_capacity": hp["model_capacity"] * c}
        if hp["weight_decay"]:
            out["wd0"] = {"weight_decay": 0.0}
        if hp.get("dropout"):
            out["dropout0"] = {"dropout": 0.0}
        out["lr_top"] = {"learning_rate": hi}
        if hp["optimizer"] == "sgd" and not hp["momentum"]:
            out["momentum"] = {"momentum": SGD_MOMENTUM}
    elif state == "plateau":
        out["lr_mid"] = {"learning_rate": mid}
        out["lr_top"] = {"learning_rate": hi}
        if hp["init"] != "he_normal":
            out["init_he"] = {"init": "he_normal"}
        if "activation" in hp and (hp["activation"], hp["init"]) != ("relu", "he_normal"):
            out["relu_he"] = {"activation": "relu", "init": "he_normal"}
        if hp["warmup_steps"]:
            out["warmup0"] = {"warmup_steps": 0}
        if hp["lr_schedule"] != "constant":
            out["constant"] = {"lr_schedule": "constant"}
        if hp["weight_decay"]:
            out["wd0"] = {"weight_decay": 0.0}
        if hp.get("dropout"):
            out["dropout0"] = {"dropout": 0.0}
        if hp["optimizer"] == "sgd" and not hp["momentum"]:
            out["momentum"] = {"momentum": SGD_MOMENTUM}
    elif state == "batchnorm_collapse":
        if "bn_momentum" in hp and hp["bn_momentum"] != BN_MOMENTUM:
            out["bn_momentum"] = {"bn_momentum": BN_MOMENTUM}
        if not hp["drop_last"]:
            out["drop_last"] = {"drop_last": True}
        if hp.get("normalization") == "batchnorm":
            out["groupnorm"] = {"normalization": "groupnorm"}
        out[f"batch_x{BATCH_FACTOR}"] = {"batch_size": hp["batch_size"] * BATCH_FACTOR}
    drop = [k for k, ch in out.items() if ch and all(hp.get(h) == v for h, v in ch.items())]
    for k in drop:
        del out[k]
    return out


def history(logdir: Path) -> list[tuple[int, float]]:
    """(step, val loss) of a trial's metrics CSV."""
    rows = []
    with open(logdir / "metrics_log.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("val_loss"):
                rows.append((int(r["step"]), float(r["val_loss"])))
    return rows


def metric_value(logdir: Path, stop: int | None) -> float:
    """The probe's comparison value of a trial cut at ``stop`` (None: its end): the val
    accuracy's tail mean (``verdict.value_at``: the last ``TAIL_FRACTION`` of the steps),
    else minus the val loss's; -inf when non-finite."""
    from diagnose.probe.verdict import TAIL_FRACTION

    with open(logdir / "metrics_log.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    col, sign = ("val_acc", 1.0) if rows and "val_acc" in rows[0] else ("val_loss", -1.0)
    pts = [(int(r["step"]), float(r[col])) for r in rows if r.get(col)]
    if stop is None and pts:
        stop = pts[-1][0]
    upto = [(st, v) for st, v in pts if stop is not None and st <= stop]
    if not upto or not all(math.isfinite(v) for _, v in upto):
        return -math.inf
    window = [v for st, v in upto if st > stop * (1 - TAIL_FRACTION)] or [upto[-1][1]]
    return sign * sum(window) / len(window)


def effect_gate(control: list[float], cand: list[float]) -> tuple[float, float]:
    """The candidate's metric gain over the control and the probe's gate
    (``verdict.decide``): 2 seed spreads, at least 2% of the control."""
    from diagnose.probe.verdict import MIN_RELATIVE_EFFECT, SPREAD_FACTOR, _mean_std

    c_mean, c_std = _mean_std(control)
    k_mean, k_std = _mean_std(cand)
    spread = max(v for v in (c_std, k_std, 0.0) if not math.isnan(v))
    return k_mean - c_mean, max(SPREAD_FACTOR * spread, MIN_RELATIVE_EFFECT * abs(c_mean))


def beats(control: list[float], cand: list[float]) -> bool:
    """The probe's gate: better by more than the gate; any finite arm beats a control
    that blew up."""
    if not all(math.isfinite(v) for v in cand):
        return False
    if not all(math.isfinite(v) for v in control):
        return True
    effect, gate = effect_gate(control, cand)
    return effect > gate


def states_of(logdir: Path, stop: int | None = None) -> list[str]:
    """Our rules' states for the trial, or for its logs cut at step ``stop``."""
    from diagnose.pipeline import analyze

    if stop is not None:
        cut = logdir.parent / (logdir.name + f"_stop{stop}")
        if not (cut / "metrics_log.csv").exists():
            cut.mkdir(parents=True, exist_ok=True)
            with open(logdir / "metrics_log.csv", encoding="utf-8") as fh:
                lines = fh.read().splitlines()
            keep = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= stop]
            (cut / "metrics_log.csv").write_text("\n".join(keep) + "\n")
            cfg = json.loads((logdir / "config.json").read_text())
            (cut / "config.json").write_text(json.dumps({**cfg, "max_steps": stop}))
        logdir = cut
    res = analyze([str(logdir)]).results
    return sorted(res[0].states) if res else ["(no log)"]


def trial(case: dict[str, Any], name: str, change: dict[str, Any], seed: int,
          out: Path) -> dict[str, Any]:
    """Train one setting in one seed (or load its record) and measure it."""
    rec_path = out / case["id"] / f"{name}_s{seed}.json"
    logdir = out / case["id"] / f"{name}_s{seed}"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        if "metric_final" not in rec:  # a record of the first version: add the metric
            rec["metric_final"] = metric_value(logdir, None)
            rec["metric_at_best"] = (metric_value(logdir, rec["best_step"])
                                     if rec["best_step"] else -math.inf)
            rec_path.write_text(json.dumps(rec, indent=1))
        return rec
    start = time.monotonic()
    cfg = corpus.apply(case["config"], {k: v if isinstance(v, str) else repr(v)
                                        for k, v in change.items()})
    corpus.train(cfg, seed, logdir)
    hist = history(logdir)
    finite = [(s, v) for s, v in hist if math.isfinite(v)]
    best_step, best = min(finite, key=lambda sv: sv[1]) if finite else (None, math.inf)
    final = hist[-1][1] if hist and math.isfinite(hist[-1][1]) else math.inf
    rec = {"case": case["id"], "setting": name, "change": change, "seed": seed,
           "final": final, "best": best, "best_step": best_step,
           "metric_final": metric_value(logdir, None),
           "metric_at_best": metric_value(logdir, best_step) if best_step else -math.inf,
           "last_step": hist[-1][0] if hist else None,
           "states": states_of(logdir),
           "states_at_best": (states_of(logdir, best_step) if best_step
                              and case["state"] == "overfit" else []),
           "wall_s": round(time.monotonic() - start, 1)}
    rec_path.write_text(json.dumps(rec, indent=1))
    return rec


def summarize_case(case: dict[str, Any], trials: list[dict[str, Any]],
                   seeds: int = len(SEEDS)) -> dict[str, Any]:
    """Per setting (and its stop-at-best twin) over its first ``seeds`` seeds: mean and
    worst seed level, state gone?"""
    trials = [t for t in trials if t["seed"] < seeds]
    untrained, ref = corpus.levels(case)
    bar = ref + GOOD_SHARE * (untrained - ref)
    by: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        by.setdefault(t["setting"], []).append(t)
    rows = []
    ctl = sorted(by.get("control", []), key=lambda t: t["seed"])
    ctl_metric = [t.get("metric_final", math.nan) for t in ctl]
    blown = any(not math.isfinite(t["final"]) or t["final"] > BLOWN_UP_FACTOR * untrained
                for t in ctl)
    targets = {case["state"], *(s for s in case.get("label", ()) if s in corpus.STATES)}
    for name, ts in by.items():
        if len(ts) < seeds:
            continue
        for stop in (False, True) if case["state"] == "overfit" else (False,):
            vals = [t["best"] if stop else t["final"] for t in ts]
            sts = [t["states_at_best"] if stop else t["states"] for t in ts]
            mean = sum(vals) / len(vals)
            gone = all(not targets & set(s) for s in sts)
            metric = [t.get("metric_at_best" if stop else "metric_final", math.nan)
                      for t in sorted(ts, key=lambda t: t["seed"])]
            better = (math.isfinite(mean) and mean < sum(t["final"] for t in ctl) / len(ctl)
                      if blown else beats(ctl_metric, metric))
            eff, gate = (effect_gate(ctl_metric, metric)
                         if all(math.isfinite(v) for v in ctl_metric + metric)
                         else (math.nan, math.nan))
            rows.append({"setting": name + (" +stop" if stop else ""),
                         "effect": eff, "gate": gate,
                         "changes": len(ts[0]["change"]) + int(stop), "mean": mean,
                         "worst": max(vals), "state_gone": gone, "beats_control": better,
                         "reaches": mean <= bar, "every_seed": max(vals) <= bar,
                         "level_fix": gone and mean <= bar,
                         "fix": gone and mean <= bar and better})
    rows.sort(key=lambda r: r["mean"])
    fixes = [r for r in rows if r["fix"]]
    level = [r for r in rows if r["level_fix"]]
    return {"case": case["id"], "state": case["state"], "label": case.get("label"),
            "cause": case["cause"], "untrained": untrained, "ref": ref,
            "bar": bar, "best": rows[0] if rows else None,
            "best_fix": fixes[0] if fixes else None, "reachable": bool(fixes),
            "best_level_fix": level[0] if level else None, "level_reachable": bool(level),
            "rows": rows}


def pairs(trials: list[dict[str, Any]], top: int = 3,
          key: str = "best") -> list[dict[str, Any]]:
    """Pairs of the ``top`` best single changes (by mean ``key`` val loss: the best for
    overfit, where the stop at the best is tried, else the final), one per knob."""
    by: dict[str, list[float]] = {}
    change: dict[str, dict[str, Any]] = {}
    for t in trials:
        if t["setting"] != "control" and "+" not in t["setting"]:
            by.setdefault(t["setting"], []).append(t[key])
            change[t["setting"]] = t["change"]
    best: dict[str, str] = {}  # knob -> its best setting
    for name in sorted(by, key=lambda n: sum(by[n]) / len(by[n])):
        if math.isfinite(sum(by[name])) and not set(change[name]) & {
                k for n in best.values() for k in change[n]}:
            best.setdefault(next(iter(change[name])), name)
    picked = list(best.values())[:top]
    return [{"name": f"{a}+{b}", "change": {**change[a], **change[b]}}
            for i, a in enumerate(picked) for b in picked[i + 1:]]


def advice_fixed(records: list[Path]) -> dict[str, tuple[str, bool]]:
    """Case -> (state, fixed by the advice in any of the campaigns' records): branches that
    each changed the policy for one state measured the same 60 cases."""
    out: dict[str, tuple[str, bool]] = {}
    for path in records:
        for c in json.loads(path.read_text())["cases"]:
            fixed = bool((c.get("advice") or {}).get("fixed"))
            out[c["case"]] = (c["state"], fixed or out.get(c["case"], ("", False))[1])
    return out


def unfixed(records: list[Path], states: tuple[str, ...] = OTHER_STATES) -> list[str]:
    """The cases of ``states`` that the advice fixed in none of the campaigns' records."""
    return [cid for cid, (st, fixed) in advice_fixed(records).items()
            if st in states and not fixed]


def restate(rec: dict[str, Any], logdir: Path, at_best: bool) -> dict[str, Any]:
    """The record with its states (and with ``at_best``, an overfit case's, those at its
    best step) re-read by today's rules from its logs; no training, the file on disk is left
    as it was: records outlive rule changes."""
    stop = rec["best_step"] if at_best else None
    return {**rec, "states": [str(s) for s in states_of(logdir)],
            "states_at_best": ([str(s) for s in states_of(logdir, stop)] if stop
                               else rec.get("states_at_best", []))}


def run(ids: list[str], out: Path, train: bool = True, with_pairs: bool = True,
        fresh_states: bool = False, seeds: tuple[int, ...] = SEEDS,
        per_state: int = 12) -> list[dict[str, Any]]:
    found = {c["id"]: c for c in corpus.cases(per_state)}
    summaries = []
    for cid in ids:
        case = found.get(cid)
        if case is None:
            print(f"{cid}: not a fix-rate case today: skipped", file=sys.stderr)
            continue
        (out / cid).mkdir(parents=True, exist_ok=True)
        hp = corpus.hparams_of(case["config"])
        if not train:
            trials = [trial(case, r["setting"], r["change"], r["seed"], out) for r in
                      (json.loads(f.read_text()) for f in sorted((out / cid).glob("*.json")))]
            if fresh_states:
                trials = [restate(t, out / cid / f"{t['setting']}_s{t['seed']}",
                                  case["state"] == "overfit") for t in trials]
        else:
            trials = [trial(case, n, ch, s, out)
                      for n, ch in singles(hp, case["state"]).items() for s in seeds]
            key = "best" if case["state"] == "overfit" else "final"
            trials += [trial(case, b["name"], b["change"], s, out)
                       for b in (pairs(trials, key=key) if with_pairs else []) for s in seeds]
        summ = summarize_case(case, trials, len(seeds))
        summ["wall_s"] = round(sum(t["wall_s"] for t in trials), 1)
        summaries.append(summ)
        print(line(summ), file=sys.stderr, flush=True)
    return summaries


def why_not(s: dict[str, Any]) -> dict[str, Any]:
    """Why no setting fixes a case, judged in the judge's order of strictness: ``level``
    (no setting's mean final val loss reaches the bar), ``state`` (some do, but the state
    stays in a seed), ``gate`` (level and state gone, but not beyond the control's gate)."""
    rows = [r for r in s["rows"] if r["setting"] != "control"]
    level = [r for r in rows if r["reaches"]]
    if not level:
        b = min(rows, key=lambda r: r["mean"]) if rows else None
        return {"reason": "level", "closest": b and b["setting"], "mean": b and b["mean"],
                "bar": s["bar"]}
    if not any(r["state_gone"] for r in level):
        return {"reason": "state", "closest": level[0]["setting"], "mean": level[0]["mean"],
                "bar": s["bar"]}
    b = s["best_level_fix"]
    return {"reason": "gate", "closest": b["setting"], "mean": b["mean"], "bar": s["bar"],
            "effect": b.get("effect"), "gate": b.get("gate")}


def table(summaries: list[dict[str, Any]], records: list[Path]) -> dict[str, Any]:
    """Per state: broken, fixed by the advice (the campaign's records), and of the unfixed
    cases measured here: reachable (with one change, or only with two), unreachable by
    reason."""
    by_state: dict[str, dict[str, Any]] = {}
    for state, fixed in advice_fixed(records).values():
        st = by_state.setdefault(state, {
            "broken": 0, "advice_fixed": 0, "unfixed_measured": 0, "reachable": 0,
            "reachable_single": 0, "reachable_pair_only": [], "unreachable": {}})
        st["broken"] += 1
        st["advice_fixed"] += fixed
    for s in summaries:
        st = by_state[s["state"]]
        st["unfixed_measured"] += 1
        fixes = [r for r in s["rows"] if r["fix"]]
        if fixes:
            st["reachable"] += 1
            if any(r["changes"] <= 1 for r in fixes):
                st["reachable_single"] += 1
            else:
                st["reachable_pair_only"].append(s["case"])
        else:
            st["unreachable"][s["case"]] = why_not(s)
    for st in by_state.values():
        st["fix_reachable"] = st["advice_fixed"] + st["reachable"]
    return by_state


def recheck(pairs_: list[str], out: Path, seeds: int) -> list[dict[str, Any]]:
    """A side measurement, not the judge: ``CASE:SETTING`` (a setting already in the grid's
    records under ``REPO/bench/_out/oracle``) and the control over ``seeds`` seeds, in a
    folder of their own; the state per seed, the mean final val loss and the gate."""
    found = {c["id"]: c for c in corpus.cases(12)}
    grid = REPO / "bench" / "_out" / "oracle"
    rows = []
    for item in pairs_:
        cid, name = item.split(":", 1)
        case = found[cid]
        change = json.loads((grid / cid / f"{name}_s0.json").read_text())["change"]
        (out / cid).mkdir(parents=True, exist_ok=True)
        ctl = [trial(case, "control", {}, s, out) for s in range(seeds)]
        cand = [trial(case, name, change, s, out) for s in range(seeds)]
        cm, km = [t["metric_final"] for t in ctl], [t["metric_final"] for t in cand]
        effect, gate = effect_gate(cm, km)
        untrained, ref = corpus.levels(case)
        rows.append({"case": cid, "setting": name, "seeds": seeds,
                     "control_metric": cm, "metric": km, "effect": effect, "gate": gate,
                     "beats_control": beats(cm, km),
                     "control_states": [t["states"] for t in ctl],
                     "states": [t["states"] for t in cand],
                     "mean": sum(t["final"] for t in cand) / seeds,
                     "bar": ref + GOOD_SHARE * (untrained - ref)})
        r = rows[-1]
        print(f"{cid} {name} x{seeds} seeds: {r['mean']:.3g} / bar {r['bar']:.3g}, states "
              f"{r['states']}, effect {effect:+.3f} / gate {gate:.3f}", flush=True)
    return rows


def line(s: dict[str, Any]) -> str:
    b, f = s["best"], s["best_fix"]
    ctl = next((r for r in s["rows"] if r["setting"] == "control"), None)
    return (f"{s['case']} ({s['cause']}): bar {s['bar']:.3g}, control "
            f"{ctl['mean'] if ctl else float('nan'):.3g}, best {b['setting']} {b['mean']:.3g}"
            f" (worst seed {b['worst']:.3g}, state gone {b['state_gone']}); "
            + (f"fix: {f['setting']} {f['mean']:.3g}" if f else
               f"level only: {s['best_level_fix']['setting']} {s['best_level_fix']['mean']:.3g}"
               " (does not beat the control's metric)" if s["best_level_fix"] else
               "NO hyperparameter fix")
            + f"  [{s['wall_s']} s]")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "_out" / "oracle")
    p.add_argument("--cases", help="comma-separated case ids (default: the overfit cases)")
    p.add_argument("--unfixed", type=Path, metavar="RESULTS", action="append",
                   help="the cases of --states that fix-rate campaigns' records (repeat it "
                   "for several) leave unfixed (instead of --cases)")
    p.add_argument("--states", default=",".join(OTHER_STATES),
                   help="the states --unfixed takes (overfit's grid is fix9o's round 9)")
    p.add_argument("--singles-only", action="store_true",
                   help="train the single changes only (a first pass over every case)")
    p.add_argument("--recheck", help="CASE:SETTING,... beside the judge: the control and "
                   "the setting over --seeds seeds, under --out (give a folder of its own)")
    p.add_argument("--seeds", type=int, default=4, help="seeds for --recheck")
    p.add_argument("--corpus", type=int, default=12, metavar="N",
                   help="the fix-rate campaign's cases per state (fixrate.py --corpus N)")
    p.add_argument("--grid-seeds", type=int, default=len(SEEDS),
                   help="seeds of every grid setting (trial seed 0 is the stored run); the "
                   "judge then reads that many seeds, as the fix-rate campaign's --seeds")
    p.add_argument("--report", action="store_true", help="summaries of what is done")
    p.add_argument("--restate", action="store_true", help="with --report: re-read every "
                   "record's states by today's rules (the records stay as they are)")
    p.add_argument("--json", type=Path, help="write the summaries here")
    args = p.parse_args(argv)
    if args.recheck:
        rows = recheck(args.recheck.split(","), args.out, args.seeds)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
        return 0
    states = tuple(args.states.split(","))
    ids = (args.cases.split(",") if args.cases
           else unfixed(args.unfixed, states) if args.unfixed else list(OVERFIT_CASES))
    if args.report:
        ids = [i for i in ids if (args.out / i).is_dir()]
    summaries = run(ids, args.out, train=not args.report, with_pairs=not args.singles_only,
                    fresh_states=args.restate, seeds=tuple(range(args.grid_seeds)),
                    per_state=args.corpus)
    for s in summaries:
        print(line(s))
    if args.json:
        doc: dict[str, Any] = {"cases": summaries}
        if args.unfixed:
            doc = {"advice_records": [str(r) for r in args.unfixed],
                   "states": table(summaries, args.unfixed), **doc}
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    raise SystemExit(main())
