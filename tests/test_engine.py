"""Tests for diagnose.engine: loading and validating rules, evaluating them on a run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose import engine
from diagnose.config import Config, ConfigError
from diagnose.detectors import Hit, RuleContext, detector, get_detector
from diagnose.engine import RuleError, RuleSpec, evaluate, load_rules
from diagnose.metrics import Role
from diagnose.run import Run, make_scalars

# --- test-only detectors -------------------------------------------------------


@detector("_test_always")
def _always(ctx: RuleContext, p: dict) -> list[Hit] | None:
    s = ctx.series(Role.TRAIN_LOSS)
    if s is None:
        return None
    return [Hit(s.tag, int(s.steps[p.get("at", 0)]), "always fires", {"k": p.get("k")})]


@detector("_test_raises")
def _raises(ctx: RuleContext, p: dict) -> list[Hit] | None:
    raise ZeroDivisionError("boom")


def _run(n: int = 50, seed: int = 0) -> Run:
    r = np.random.default_rng(seed)
    steps = np.arange(n)
    loss = 2.3 * np.exp(-steps / (n / 4)) + 0.3 + r.normal(0, 0.01, n)
    frames = [make_scalars("train_loss", steps, loss),
              make_scalars("val_loss", steps[::5], loss[::5] + 0.05)]
    return Run("r", path=Path("."), format="csv",
               scalars=pd.concat(frames, ignore_index=True)).finalize()


def _spec(rid: str, det: str, severity: str = "warning", state: str = "test",
          thresholds: dict | None = None, preview: bool = False,
          supersedes: tuple = ()) -> RuleSpec:
    return RuleSpec(rid, f"rule-{rid.lower()}", state, severity, det, "s",
                    thresholds or {}, {}, preview, None, supersedes)


RULE_TOML = """
id = "ZZZ001"
name = "custom-rule"
state = "instability"
severity = "warning"
detector = "_test_always"
summary = "A user rule."
[thresholds]
k = 3
[doc]
what = "w"
why = "y"
evidence = "e"
causes = ["c"]
fixes = ["f"]
references = ["r"]
"""


# --- loading -------------------------------------------------------------------


def test_builtin_rules_load_and_are_sorted_unique():
    rules = load_rules()
    ids = [r.id for r in rules]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert {"DIV001", "DIV002", "INS001", "LOG001"} <= set(ids)


def test_user_rules_folder_is_added(tmp_path):
    (tmp_path / "ZZZ001.toml").write_text(RULE_TOML)
    rules = load_rules([tmp_path])
    zz = next(r for r in rules if r.id == "ZZZ001")
    assert zz.thresholds == {"k": 3} and zz.path == tmp_path / "ZZZ001.toml"


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda t: t.replace('severity = "warning"', 'severity = "fatal"'), "severity"),
        (lambda t: t.replace('state = "instability"', 'state = "instabilty"'), "state"),
        (lambda t: t.replace('name = "custom-rule"', 'name = "Custom Rule"'), "name"),
        (lambda t: t.replace('id = "ZZZ001"', 'id = "zz1"'), "id"),
        (lambda t: t.replace('summary = "A user rule."\n', ""), "summary"),
        (lambda t: t.replace("k = 3", "k = {a = 1}"), "thresholds.k"),
        (lambda t: t.replace('causes = ["c"]', 'causes = "c"'), "doc.causes"),
        (lambda t: t + 'colour = "red"\n'.replace("colour", "\ncolour"), "colour"),
        (lambda t: t.replace('detector = "_test_always"', 'detector = "nope"'), "detector"),
    ],
)
def test_invalid_rule_files_give_one_line_errors_naming_file_and_key(tmp_path, edit, key):
    text = edit(RULE_TOML)
    if key == "colour":
        text = 'colour = "red"\n' + RULE_TOML
    path = tmp_path / "ZZZ001.toml"
    path.write_text(text)
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and f"'{key}'" in msg


def test_invalid_toml_and_duplicate_ids(tmp_path):
    (tmp_path / "A.toml").write_text("id = ")
    with pytest.raises(RuleError, match="not valid TOML"):
        load_rules([tmp_path])
    (tmp_path / "A.toml").write_text(RULE_TOML.replace("ZZZ001", "DIV001"))
    with pytest.raises(RuleError, match="duplicates DIV001"):
        load_rules([tmp_path])


def test_missing_rules_folder(tmp_path):
    with pytest.raises(RuleError, match="not found"):
        load_rules([tmp_path / "nope"])


# --- evaluation ----------------------------------------------------------------


def test_findings_carry_rule_identity_and_overridden_severity():
    rules = [_spec("TST001", "_test_always", thresholds={"k": 1, "at": 3})]
    cfg = Config(severity={"TST001": "error"}, thresholds={"TST001": {"k": 7}})
    res = evaluate(_run(), cfg, rules)
    (f,) = res.findings
    assert (f.rule, f.name, f.state, f.severity, f.step) == ("TST001", "rule-tst001", "test",
                                                             "error", 3)
    assert f.evidence == {"k": 7}
    assert res.roles["train_loss"] == "train_loss"


def test_unknown_threshold_key_is_a_config_error_naming_it():
    rules = [_spec("TST001", "_test_always", thresholds={"k": 1})]
    with pytest.raises(ConfigError, match=r"thresholds\.TST001\.kk"):
        evaluate(_run(), Config(thresholds={"TST001": {"kk": 2}}), rules)
    with pytest.raises(ConfigError, match="must be a number"):
        evaluate(_run(), Config(thresholds={"TST001": {"k": "lots"}}), rules)


def test_unknown_rule_in_config_is_an_error_with_builtin_rules():
    with pytest.raises(ConfigError, match=r"thresholds\.NOPE001"):
        evaluate(_run(), Config(thresholds={"NOPE001": {"x": 1}}))


def test_select_ignore_and_preview():
    rules = [_spec("TST001", "_test_always", thresholds={"at": 1}),
             _spec("TST002", "_test_always", thresholds={"at": 2}),
             _spec("TSP003", "_test_always", preview=True, thresholds={"at": 3})]
    got = {f.rule for f in evaluate(_run(), Config(), rules).findings}
    assert got == {"TST001", "TST002"}
    got = {f.rule for f in evaluate(_run(), Config(ignore=["TST002"]), rules).findings}
    assert got == {"TST001"}
    got = {f.rule for f in evaluate(_run(), Config(select=["TSP003"]), rules).findings}
    assert got == {"TSP003"}
    got = {f.rule for f in evaluate(_run(), Config(preview=True), rules).findings}
    assert got == {"TST001", "TST002", "TSP003"}


def test_not_applicable_detector_leaves_the_rule_out():
    # no train loss -> the detector says None -> not applicable
    empty = Run("e", path=Path("."), format="csv")
    res = evaluate(empty, Config(), [_spec("TST002", "_test_always")])
    assert res.not_applicable == ["TST002"] and res.findings == []


def test_a_raising_detector_is_our_bug_and_names_rule_and_run():
    """A detector exception must never turn into a skipped rule (a silent "healthy")."""
    rules = [_spec("TST002", "_test_always"), _spec("TST001", "_test_raises")]
    run = _run()
    with pytest.raises(engine.AnalysisError,
                       match=r"^rule TST001 \(_test_raises\) failed on run r: "
                             r"ZeroDivisionError: boom$"):
        evaluate(run, Config(), rules)
    assert not [n for n in run.notes if n.code == "rule_error"]
    with pytest.raises(engine.AnalysisError, match=r"TST003.*_not_registered.*run r"):
        evaluate(run, Config(), [_spec("TST003", "_not_registered")])


def test_supersedes_and_same_step_dedup_and_sorting():
    rules = [
        _spec("TST001", "_test_always", "warning", "a", {"at": 10}),
        _spec("TST002", "_test_always", "error", "a", {"at": 10}),  # same state+step: wins
        _spec("TST003", "_test_always", "info", "b", {"at": 2}),
        _spec("TST004", "_test_always", "warning", "c", {"at": 5}),
        _spec("TST005", "_test_always", "error", "d", {"at": 20}, supersedes=("TST004",)),
    ]
    res = evaluate(_run(), Config(), rules)
    assert [f.rule for f in res.findings] == ["TST002", "TST005", "TST003"]


def test_rule_context_caches_and_filters_histograms():
    from diagnose.run import Histogram

    run = _run()
    b = np.array([[0.0, 1.0, 3.0]])
    run.histograms = [Histogram("a/relu", 2, 0.0, b), Histogram("a/relu", 1, 0.0, b),
                      Histogram("b/kernel", 1, 0.0, b)]
    ctx = RuleContext(run, hparams={"learning_rate": 0.1})
    assert [h.step for h in ctx.histograms("*relu")["a/relu"]] == [1, 2]
    assert set(ctx.histograms("re:KERNEL")) == {"b/kernel"}
    assert set(ctx.histograms()) == {"a/relu", "b/kernel"}
    calls = []
    assert ctx.cached("x", lambda: calls.append(1) or 5) == 5
    assert ctx.cached("x", lambda: calls.append(1) or 6) == 5 and calls == [1]
    assert ctx.hparams["learning_rate"] == 0.1


def test_detector_registry_rejects_a_second_function_under_a_used_name():
    assert get_detector("nonfinite_loss") is not None
    with pytest.raises(ValueError):
        detector("nonfinite_loss")(lambda ctx, p: [])


# --- docs ------------------------------------------------------------------------


def test_catalogue_and_format_rule_doc():
    rules = load_rules()
    rows = engine.catalogue(rules)
    assert {r["id"] for r in rows} == {r.id for r in rules}
    assert set(rows[0]) == {"id", "name", "state", "severity", "summary", "preview"}
    div1 = next(r for r in rules if r.id == "DIV001")
    text = engine.format_rule_doc(div1)
    for part in ("DIV001 loss-non-finite", "What it detects", "Why it matters", "Fixes",
                 "recover_points = 3", "References", "[tool.diagnose.thresholds.DIV001]"):
        assert part in text


# --- speed -----------------------------------------------------------------------


def _big_run(n: int) -> Run:
    r = np.random.default_rng(1)
    steps = np.arange(n)
    loss = 2.3 * np.exp(-steps / (n / 5)) + 0.1 + r.normal(0, 0.05, n)
    vs = steps[:: max(n // 1000, 1)]
    frames = [make_scalars("train/loss", steps, loss),
              make_scalars("val/loss", vs, 2.3 * np.exp(-vs / (n / 5)) + 0.15),
              make_scalars("lr", vs, np.full(len(vs), 1e-3))]
    return Run("big", path=Path("."), format="csv",
               scalars=pd.concat(frames, ignore_index=True)).finalize()


def test_a_million_point_run_evaluates_in_about_a_second():
    run = _big_run(1_000_000)
    rules = load_rules()
    evaluate(run, Config(preview=True), rules)  # warm imports
    t0 = time.perf_counter()
    res = evaluate(run, Config(preview=True), rules)
    elapsed = time.perf_counter() - t0
    assert not [f for f in res.findings if f.severity == "error"]
    # ~0.5 s on an idle core; generous for a shared CI box
    assert elapsed < 4.0, elapsed


def test_many_small_runs_are_fast():
    rules = load_rules()
    runs = [_run(60, seed) for seed in range(100)]
    evaluate(runs[0], Config(), rules)
    t0 = time.perf_counter()
    for run in runs:
        evaluate(run, Config(), rules)
    per_run = (time.perf_counter() - t0) / len(runs)
    assert per_run < 0.05, per_run


# --- rules evaluated outside the per-run detectors (evaluated_by) ---------------


def _baseline_rule(**extra) -> dict:
    data = {"id": "BSL009", "name": "some-regression", "state": "regression",
            "severity": "warning", "evaluated_by": "baseline",
            "summary": "Something got worse than the reference."}
    data.update(extra)
    return data


def test_a_rule_evaluated_by_the_baseline_is_documented_but_not_run():
    spec = engine.parse_rule(_baseline_rule(), Path("BSL009.toml"))
    assert not spec.per_run and spec.evaluated_by == "baseline" and spec.detector == ""
    rules = load_rules()
    bsl = {r.id for r in rules if not r.per_run}
    assert bsl >= {"BSL001", "BSL002", "BSL003"}
    assert bsl <= {row["id"] for row in engine.catalogue(rules)}
    text = engine.format_rule_doc(next(r for r in rules if r.id == "BSL001"))
    assert "evaluated by: comparison with a reference run" in text
    steps = np.arange(50)
    scalars = make_scalars("train_loss", steps, 2.0 * np.exp(-steps / 10) + 0.1)
    result = evaluate(Run("r", path=Path("."), format="csv", scalars=scalars).finalize())
    assert not bsl & {f.rule for f in result.findings}
    assert not bsl & set(result.not_applicable)


@pytest.mark.parametrize("extra, key", [
    ({"evaluated_by": "elsewhere"}, "evaluated_by"),
    ({"detector": "nonfinite_loss"}, "detector"),
    ({"thresholds": {"sigmas": 3.0}}, "thresholds"),
])
def test_evaluated_by_is_validated(extra, key):
    with pytest.raises(RuleError, match=f"key '{key}'"):
        engine.parse_rule(_baseline_rule(**extra), Path("BSL009.toml"))
    # a per-run rule still needs its detector
    data = _baseline_rule()
    del data["evaluated_by"]
    with pytest.raises(RuleError, match="key 'detector' is missing"):
        engine.parse_rule(data, Path("X001.toml"))


def test_a_rule_lowers_one_finding_but_a_configured_severity_wins() -> None:
    """INS001 reports spikes the loss learned through as info (DESIGN: noise that does
    not stop learning); a severity the user sets for the rule is kept as given."""
    from diagnose.api import load_run

    cases = Path(__file__).parent / "rule_fixtures" / "INS001"
    kept = load_run(cases / "info_kept_learning")
    (f,) = [f for f in evaluate(kept).findings if f.rule == "INS001"]
    assert f.severity == "info" and f.evidence["kept_learning"] is True
    (f,) = [f for f in evaluate(kept, Config(severity={"INS001": "warning"})).findings
            if f.rule == "INS001"]
    assert f.severity == "warning"
    lost = load_run(cases / "fire")
    (f,) = [f for f in evaluate(lost).findings if f.rule == "INS001"]
    assert f.severity == "warning" and f.evidence["kept_learning"] is False
