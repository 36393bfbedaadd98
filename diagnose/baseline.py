"""Compare a run against a reference run, and remember accepted findings in a file.

Two meanings of "baseline", both behind ``--baseline PATH``:

- a reference run (e.g. the run from ``main``): :func:`compare` reports what got worse:
  the outcome metric beyond the reference's own noise (BSL001), states the reference did
  not have (BSL002), and a later arrival at the reference's 95%-of-best level (BSL003);
- a baseline file of accepted findings (like ruff's or a linter's baseline):
  :func:`write_baseline`, :func:`load_baseline` and :func:`filter_known` let CI fail only
  on findings that are new.  Fingerprints hash run id + rule + metric and never the step,
  which moves from one training to the next.

:func:`is_baseline_file` tells the two apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from diagnose.findings import SEVERITY_RANK, Analysis, Finding, RunResult, Severity
from diagnose.metrics import Series
from diagnose.numbers import sig
from diagnose.sweep import common_outcome, describe_outcome, outcome_series

BASELINE_VERSION = 1

#: A regression must exceed this many reference noise sigmas...
NOISE_SIGMAS = 3.0
#: ...and this share of the reference's best value (guards noise-free curves).
MIN_RELATIVE = 1e-3
#: Share of the reference's improvement that defines "reached the target".
TARGET_SHARE = 0.95
#: A run is slower when it needs this many times the reference's steps to the target.
SLOWER_FACTOR = 1.25
#: States that are not about training (never "new").
_IGNORED_STATES = ("log", "regression")

_BASELINE_MAX_BYTES = 50 * 1024 * 1024


class BaselineError(ValueError):
    """A baseline file that cannot be used (one-line, user-facing)."""


# ---------------------------------------------------------------------------
# Reference run comparison
# ---------------------------------------------------------------------------




def noise_floor(series: Series) -> float:
    """Point-to-point noise of a series' tail (robust sigma of first differences / sqrt 2).

    Differences remove a slow trend, the median absolute deviation ignores spikes; the
    last 20% (at least 5 points) is where a finished run sits.  0 when too short.
    """
    values = series.finite.values
    k = max(5, math.ceil(0.2 * len(values)))
    tail = values[-k:]
    if len(tail) < 4:
        return 0.0
    diffs = np.diff(tail)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return 1.4826 * mad / math.sqrt(2.0)


def _oriented(series: Series) -> np.ndarray:
    """Finite values with higher = better."""
    values = series.finite.values
    return values if series.higher_is_better else -values


def _steps_to(series: Series, target: float) -> int | None:
    """First step whose 3-point running median (oriented) reaches ``target``."""
    fin = series.finite
    values = _oriented(series)
    if len(values) >= 3:
        padded = np.concatenate([values[:1], values, values[-1:]])
        smooth = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    else:
        smooth = values
    hits = np.nonzero(smooth >= target)[0]
    return int(fin.steps[hits[0]]) if len(hits) else None


def _ref_name(reference: RunResult) -> str:
    """The reference's run id, or its folder name when it is the PATH itself ('.')."""
    run_id = reference.run.run_id
    if run_id in (".", ""):
        return Path(str(reference.run.path)).name or run_id
    return run_id


def _display(value: float, series: Series) -> float:
    return value if series.higher_is_better else -value


def compare(result: RunResult, reference: RunResult) -> list[Finding]:
    """Findings (state ``regression``) where ``result`` is worse than ``reference``.

    BSL001 metric-regression: the best outcome (best val metric, else lowest val loss,
    else final train loss) is worse by more than 3 reference noise sigmas; error when the
    gap exceeds three such margins.  BSL002 new-state: an error/warning state the
    reference does not have.  BSL003 slower-convergence: the reference's 95%-of-best
    level is reached 1.25x or more steps later.
    """
    out: list[Finding] = []
    ref_id = _ref_name(reference)
    cands = [outcome_series(result), outcome_series(reference)]
    key = common_outcome(cands)
    if key is not None:
        mine, ref = cands[0][key], cands[1][key]
        name, _ = describe_outcome(key)
        ref_vals, my_vals = _oriented(ref), _oriented(mine)
        if key.startswith("train_loss"):
            ref_best = float(np.median(ref_vals[-max(3, len(ref_vals) // 10):]))
            my_best = float(np.median(my_vals[-max(3, len(my_vals) // 10):]))
        else:
            ref_best, my_best = float(ref_vals.max()), float(my_vals.max())
        noise = noise_floor(ref)
        margin = max(NOISE_SIGMAS * noise, MIN_RELATIVE * abs(ref_best), 1e-12)
        delta = ref_best - my_best
        evidence: dict[str, Any] = {
            "reference_run": ref_id,
            "outcome": name,
            "reference_value": _display(ref_best, ref),
            "value": _display(my_best, mine),
            "delta": abs(delta),
            "reference_noise": noise,
            "margin": margin,
            "reference_final": float(ref.finite.values[-1]),
            "final": float(mine.finite.values[-1]),
        }
        if delta > margin:
            severity: Severity = "error" if delta > 3 * margin else "warning"
            rel = abs(delta / ref_best) * 100 if ref_best else float("inf")
            out.append(Finding(
                "BSL001", "metric-regression", "regression", severity, mine.tag, None,
                f"{name} is {sig(_display(my_best, mine))} against "
                f"{sig(_display(ref_best, ref))} in the reference {ref_id} ({rel:.3g}% worse, "
                f"beyond its noise margin {sig(margin)})",
                evidence,
            ))
        slower = _slower(mine, ref, ref_id, name)
        if slower is not None:
            out.append(slower)
    out.extend(_new_states(result, reference))
    return out


def _slower(mine: Series, ref: Series, ref_id: str, name: str) -> Finding | None:
    """BSL003 when ``mine`` reaches the reference's 95%-of-improvement level later."""
    ref_vals = _oriented(ref)
    if len(ref_vals) < 3 or len(mine.finite) < 3:
        return None
    start = float(np.median(ref_vals[:3]))
    best = float(ref_vals.max())
    if best <= start:
        return None
    target = start + TARGET_SHARE * (best - start)
    ref_steps = _steps_to(ref, target)
    my_steps = _steps_to(mine, target)
    if ref_steps is None or my_steps is None:
        return None
    interval = float(np.median(np.diff(mine.finite.steps))) if len(mine.finite) > 1 else 1.0
    base = max(ref_steps - int(ref.finite.steps[0]), 1)
    mine_rel = my_steps - int(ref.finite.steps[0])
    if mine_rel < SLOWER_FACTOR * base or my_steps - ref_steps <= interval:
        return None
    level = _display(target, ref)
    return Finding(
        "BSL003", "slower-convergence", "regression", "warning", mine.tag, my_steps,
        f"{name.split(' ', 1)[-1]} reached the reference's 95%-of-best level "
        f"{sig(level)} at step {my_steps}, {mine_rel / base:.3g}x later than {ref_id} "
        f"(step {ref_steps})",
        {"reference_run": ref_id, "target": level, "steps": my_steps,
         "reference_steps": ref_steps, "ratio": mine_rel / base},
    )


def _new_states(result: RunResult, reference: RunResult) -> list[Finding]:
    """BSL002: one finding per error/warning state absent from the reference."""
    ref_states = set(reference.states)
    out: list[Finding] = []
    for state in result.states:
        if state in ref_states or state in _IGNORED_STATES:
            continue
        hits = [f for f in result.findings
                if f.state == state and SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]
        worst = max(hits, key=lambda f: SEVERITY_RANK[f.severity])
        first = min(hits, key=lambda f: (f.step is None, f.step or 0))
        new_severity: Severity = "error" if worst.severity == "error" else "warning"
        rules = sorted({f.rule for f in hits})
        at = f" at step {first.step}" if first.step is not None else ""
        out.append(Finding(
            "BSL002", "new-state", "regression", new_severity, first.metric, first.step,
            f"{state} ({', '.join(rules)}){at} is new: the reference {_ref_name(reference)} "
            f"has {', '.join(reference.states) or 'no problem state'}",
            {"state": state, "rules": rules, "reference_run": _ref_name(reference),
             "reference_states": list(reference.states)},
        ))
    return out


# ---------------------------------------------------------------------------
# Baseline file of accepted findings
# ---------------------------------------------------------------------------


def fingerprint(run_id: str, finding: Finding) -> str:
    """Stable id of a finding: run id + rule + metric (never the step, which moves)."""
    text = "\x1f".join((run_id, finding.rule, finding.metric or ""))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline file: its entries and the set of accepted fingerprints."""

    version: int
    entries: tuple[dict[str, Any], ...] = ()
    path: str | None = None
    fingerprints: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.entries)


def baseline_entries(analysis: Analysis) -> list[dict[str, Any]]:
    """Sorted, de-duplicated entries for every finding of every run."""
    seen: dict[str, dict[str, Any]] = {}
    for result in analysis.results:
        run_id = result.run.run_id
        for f in result.findings:
            fp = fingerprint(run_id, f)
            seen.setdefault(fp, {"run": run_id, "rule": f.rule, "metric": f.metric,
                                 "fingerprint": fp})
    return sorted(seen.values(), key=lambda e: (e["run"], e["rule"], e["metric"] or "",
                                                e["fingerprint"]))


def write_baseline(analysis: Analysis, path: str | Path) -> int:
    """Write the accepted-findings file; returns the number of entries written.

    The output is deterministic (sorted keys and entries) so it diffs well in review.
    """
    entries = baseline_entries(analysis)
    doc = {"version": BASELINE_VERSION, "tool": "diagnose", "findings": entries}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return len(entries)


def _read_doc(path: Path) -> Any:
    if not path.is_file():
        raise BaselineError(f"baseline file not found: {path}")
    if path.stat().st_size > _BASELINE_MAX_BYTES:
        raise BaselineError(f"{path}: too large for a baseline file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc})") from None


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file written by :func:`write_baseline`."""
    path = Path(path)
    doc = _read_doc(path)
    if not isinstance(doc, dict) or "findings" not in doc or "version" not in doc:
        raise BaselineError(f"{path}: not a diagnose baseline file (needs version, findings)")
    if doc["version"] != BASELINE_VERSION:
        raise BaselineError(
            f"{path}: baseline version {doc['version']!r} is not supported (expected "
            f"{BASELINE_VERSION})")
    if not isinstance(doc["findings"], list):
        raise BaselineError(f"{path}: 'findings' must be a list")
    entries: list[dict[str, Any]] = []
    for i, entry in enumerate(doc["findings"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
            raise BaselineError(f"{path}: findings[{i}] has no fingerprint")
        entries.append(dict(entry))
    return Baseline(BASELINE_VERSION, tuple(entries), str(path),
                    frozenset(e["fingerprint"] for e in entries))


def filter_known(analysis: Analysis, baseline: Baseline) -> Analysis:
    """A copy of ``analysis`` without the findings the baseline already accepts.

    ``extras["baseline"]`` records how many findings were suppressed and how many
    baseline entries matched nothing any more (fixed: the file can be regenerated).
    """
    used: set[str] = set()
    suppressed = 0
    results: list[RunResult] = []
    for result in analysis.results:
        keep: list[Finding] = []
        for f in result.findings:
            fp = fingerprint(result.run.run_id, f)
            if fp in baseline.fingerprints:
                used.add(fp)
                suppressed += 1
            else:
                keep.append(f)
        results.append(replace(result, findings=keep))
    extras = dict(analysis.extras)
    extras["baseline"] = {
        "file": baseline.path,
        "version": baseline.version,
        "suppressed": suppressed,
        "stale": len(baseline.fingerprints - used),
    }
    return Analysis(results=results, errors=list(analysis.errors), extras=extras)


def is_baseline_file(path: str | Path) -> bool:
    """True when ``path`` is a baseline file (not a run folder or a run's JSON log)."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".json":
        return False
    try:
        doc = _read_doc(p)
    except BaselineError:
        return False
    return (isinstance(doc, dict) and doc.get("tool", "diagnose") == "diagnose"
            and "version" in doc and isinstance(doc.get("findings"), list))
