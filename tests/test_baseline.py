"""Reference-run comparison (BSL001-003) and the accepted-findings baseline file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose.baseline import (
    BaselineError,
    compare,
    filter_known,
    fingerprint,
    is_baseline_file,
    load_baseline,
    write_baseline,
)
from diagnose.findings import Analysis, Finding, LoadError, RunResult
from diagnose.run import Run, make_scalars

STEPS = np.arange(0, 5000, 50)


def acc_result(run_id: str, final: float, tau: float = 600.0, noise: float = 0.003,
               seed: int = 0, findings: list[Finding] | None = None) -> RunResult:
    """A run whose val accuracy rises from 0.1 to ``final`` with time constant ``tau``."""
    rng = np.random.default_rng(seed)
    acc = 0.1 + (final - 0.1) * (1 - np.exp(-STEPS / tau)) + rng.normal(0, noise, len(STEPS))
    loss = 2.3 * np.exp(-STEPS / tau) + 0.05
    scalars = pd.concat([make_scalars("val/accuracy", STEPS, acc),
                         make_scalars("train/loss", STEPS, loss)], ignore_index=True)
    run = Run(run_id, Path(run_id), "tensorboard", scalars=scalars).finalize()
    return RunResult(run, findings=list(findings or []))


def overfit_finding(step: int = 2400, metric: str = "val/loss", severity: str = "warning",
                    rule: str = "OVF001") -> Finding:
    return Finding(rule, "val-loss-rising", "overfit", severity, metric, step,
                   f"val loss rose 20% from its minimum at step {step}", {"best_step": step})


def test_metric_regression_beyond_the_reference_noise_is_found():
    ref = acc_result("main", 0.90)
    worse = acc_result("pr", 0.85, seed=1)
    found = [f for f in compare(worse, ref) if f.rule == "BSL001"]
    assert len(found) == 1
    f = found[0]
    assert (f.state, f.name, f.severity) == ("regression", "metric-regression", "error")
    assert f.metric == "val/accuracy"
    assert f.evidence["reference_value"] > f.evidence["value"]
    assert f.evidence["delta"] > f.evidence["margin"] > 0
    assert "main" in f.message


def test_difference_within_the_noise_is_not_a_regression():
    ref = acc_result("main", 0.90)
    same = acc_result("pr", 0.899, seed=1)
    assert [f for f in compare(same, ref) if f.rule == "BSL001"] == []
    better = acc_result("pr", 0.95, seed=2)
    assert compare(better, ref) == []


def test_loss_regression_uses_lower_is_better():
    def loss_result(run_id: str, floor: float) -> RunResult:
        val = floor + np.exp(-STEPS / 500)
        sc = make_scalars("loss/val", STEPS, val)
        return RunResult(Run(run_id, Path(run_id), "csv", scalars=sc).finalize())

    assert [f.rule for f in compare(loss_result("pr", 0.40), loss_result("main", 0.30))] == [
        "BSL001"]
    assert compare(loss_result("pr", 0.25), loss_result("main", 0.30)) == []


def test_new_state_is_reported_once_with_its_worst_severity():
    ref = acc_result("main", 0.90)
    run = acc_result("pr", 0.90, seed=1, findings=[
        overfit_finding(2400), overfit_finding(3000, "val/accuracy", "error", "OVF002")])
    new = [f for f in compare(run, ref) if f.rule == "BSL002"]
    assert len(new) == 1
    assert new[0].severity == "error" and new[0].evidence["state"] == "overfit"
    assert new[0].evidence["rules"] == ["OVF001", "OVF002"]
    assert new[0].step == 2400
    ref_with = acc_result("main", 0.90, findings=[overfit_finding(2000)])
    assert [f for f in compare(run, ref_with) if f.rule == "BSL002"] == []


def test_slower_convergence_to_the_reference_level():
    ref = acc_result("main", 0.90, tau=400)
    slow = acc_result("pr", 0.90, tau=900, seed=1)
    found = [f for f in compare(slow, ref) if f.rule == "BSL003"]
    assert len(found) == 1
    ev = found[0].evidence
    assert ev["steps"] > 1.25 * ev["reference_steps"]
    assert found[0].step == ev["steps"]
    same_speed = acc_result("pr", 0.90, tau=400, seed=1)
    assert [f for f in compare(same_speed, ref) if f.rule == "BSL003"] == []


def test_baseline_file_round_trip_filters_only_accepted_findings(tmp_path):
    a = acc_result("sweep/a", 0.9, findings=[overfit_finding(2400)])
    b = acc_result("sweep/b", 0.9, findings=[overfit_finding(1000, rule="OVF003")])
    analysis = Analysis(results=[a, b], errors=[LoadError("broken", "no records")])
    path = tmp_path / "diagnose-baseline.json"
    assert write_baseline(analysis, path) == 2
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert [set(e) >= {"run", "rule", "fingerprint"} for e in doc["findings"]] == [True, True]
    assert is_baseline_file(path)

    baseline = load_baseline(path)
    assert len(baseline) == 2
    # next training: the same findings at other steps, plus one new finding
    a2 = acc_result("sweep/a", 0.9, findings=[overfit_finding(2600)])
    new = Finding("DIV001", "loss-non-finite", "divergence", "error", "train/loss", 10, "NaN")
    b2 = acc_result("sweep/b", 0.9, findings=[overfit_finding(1200, rule="OVF003"), new])
    filtered = filter_known(Analysis(results=[a2, b2], errors=analysis.errors), baseline)
    left = [(r.run.run_id, f.rule) for r in filtered.results for f in r.findings]
    assert left == [("sweep/b", "DIV001")]
    assert filtered.extras["baseline"]["suppressed"] == 2
    assert filtered.extras["baseline"]["stale"] == 0
    assert filtered.errors == analysis.errors
    # the original analysis is untouched
    assert len(b2.findings) == 2
    # a fixed finding leaves a stale entry
    fixed = filter_known(Analysis(results=[acc_result("sweep/a", 0.9)]), baseline)
    assert fixed.extras["baseline"]["stale"] == 2


def test_fingerprint_ignores_step_and_separates_run_rule_and_metric():
    f = overfit_finding(100)
    assert fingerprint("r", f) == fingerprint("r", overfit_finding(900))
    assert fingerprint("r", f) != fingerprint("s", f)
    assert fingerprint("r", f) != fingerprint("r", overfit_finding(100, metric="val/acc"))
    assert fingerprint("r", f) != fingerprint("r", overfit_finding(100, rule="OVF002"))


def test_bad_baseline_files_fail_with_one_line(tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": 2, "findings": []}))
    with pytest.raises(BaselineError, match="version 2"):
        load_baseline(wrong)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(BaselineError, match="not valid JSON"):
        load_baseline(broken)
    with pytest.raises(BaselineError, match="not found"):
        load_baseline(tmp_path / "missing.json")
    assert not is_baseline_file(broken)
    assert not is_baseline_file(tmp_path)  # a run folder
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": [], "global_step": 10}))
    assert not is_baseline_file(state)
