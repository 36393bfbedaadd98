"""Meta-test over every built-in rule (ours and everyone's), SQLFluff/ruff style.

Each rule must: have a valid id/name/state/severity, point at a registered detector, be
documented in every section (what, why, evidence, causes, fixes, references) with each
threshold explained, and come with ``tests/rule_fixtures/<ID>/fire/`` (a log it flags)
and ``.../quiet/`` (a log it leaves alone).  Fixtures are loaded the way users' logs are
(``discover`` + ``load_run``) when ingest can read them, else with the test fallback.

Rules evaluated outside the per-run detectors (``evaluated_by = "baseline"``: BSL001-003,
produced by :func:`diagnose.baseline.compare` under ``--baseline``) name no detector and
take no thresholds; their fixtures are *pairs*: ``fire/current`` + ``fire/reference``
and ``quiet/current`` + ``quiet/reference``, compared the way ``--baseline`` compares them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fallback_loader import load_any
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diagnose.config import Config
from diagnose.detectors import get_detector
from diagnose.engine import EVALUATORS, builtin_rules_dir, evaluate, format_rule_doc, load_rules
from diagnose.findings import SEVERITY_RANK
from diagnose.run import Run, make_scalars

FIXTURES = Path(__file__).parent / "rule_fixtures"
RULES = load_rules()
IDS = [r.id for r in RULES]
BY_ID = {r.id: r for r in RULES}
CORE_STATES = {"divergence", "underfit", "overfit", "plateau", "batchnorm_collapse"}


def test_there_are_rules():
    assert len(RULES) >= 18


@pytest.mark.parametrize("rid", IDS)
def test_rule_metadata(rid):
    r = BY_ID[rid]
    assert r.path is not None and r.path.stem == rid, "file name must be the rule id"
    assert r.path.parent == builtin_rules_dir()
    assert re.fullmatch(r"[A-Z]{2,4}\d{3}", r.id)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name)
    assert re.fullmatch(r"[a-z][a-z0-9_]*", r.state)
    assert r.severity in ("error", "warning", "info")
    if r.state == "log":
        assert r.severity in ("warning", "info"), "log findings are never errors"
    if r.per_run:
        assert get_detector(r.detector) is not None, f"detector {r.detector!r} is not registered"
    else:
        assert r.evaluated_by in EVALUATORS and not r.detector and not r.thresholds
    assert r.summary and r.summary[0].isupper() and r.summary.endswith(".")
    for sup in r.supersedes:
        assert sup in BY_ID, f"supersedes unknown rule {sup}"


@pytest.mark.parametrize("rid", IDS)
def test_rule_documentation(rid):
    r = BY_ID[rid]
    for key in ("what", "why", "evidence"):
        assert isinstance(r.doc.get(key), str) and len(r.doc[key].strip()) >= 20, key
    for key in ("causes", "fixes", "references"):
        items = r.doc.get(key)
        assert isinstance(items, list) and items and all(x.strip() for x in items), key
    documented = r.doc.get("thresholds", {}) or {}
    for key in r.thresholds:
        assert documented.get(key, "").strip(), f"threshold {key} is not documented"
    assert not set(documented) - set(r.thresholds), "doc.thresholds names unknown keys"
    text = format_rule_doc(r)
    assert text.startswith(f"{r.id} {r.name}")
    for key in r.thresholds:
        assert f"{key} = " in text


def test_ids_are_unique_per_name():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))


def _evaluate(folder: Path):
    if not folder.is_dir():
        pytest.fail(f"missing fixture {folder.relative_to(FIXTURES.parent)}")
    run = load_any(folder)
    result = evaluate(run, Config(preview=True), RULES)
    errors = [n.message for n in run.notes if n.code == "rule_error"]
    assert not errors, errors
    return result


def _findings(rid: str, sub: str):
    """The findings on a rule's fixture: the run's own, or for a baseline rule the
    comparison of ``current`` with ``reference``."""
    folder = FIXTURES / rid / sub
    if BY_ID[rid].per_run:
        return _evaluate(folder)
    from diagnose.baseline import compare

    current = _evaluate(folder / "current")
    current.findings = current.findings + compare(current, _evaluate(folder / "reference"))
    return current


@pytest.mark.parametrize("rid", IDS)
def test_rule_fires_on_its_fire_fixture(rid):
    result = _findings(rid, "fire")
    hits = [f for f in result.findings if f.rule == rid]
    assert hits, f"{rid} did not fire; findings: {[f.rule for f in result.findings]}"
    for f in hits:
        assert f.state == BY_ID[rid].state
        if BY_ID[rid].per_run:
            assert f.severity == BY_ID[rid].severity
        else:  # the comparison escalates a large regression to an error (documented)
            assert SEVERITY_RANK[f.severity] >= SEVERITY_RANK[BY_ID[rid].severity]
        assert f.message and "\n" not in f.message and not f.message.endswith(".")
        assert isinstance(f.evidence, dict)
        if f.step is not None:
            assert isinstance(f.step, int)


@pytest.mark.parametrize("rid", IDS)
def test_rule_stays_quiet_on_its_quiet_fixture(rid):
    result = _findings(rid, "quiet")
    hits = [f for f in result.findings if f.rule == rid]
    assert not hits, [f.message for f in hits]


# --- the scikit-learn-style contract: every rule survives degenerate input ----------


def _degenerate_runs() -> dict[str, Run]:
    def run(cols: dict[str, tuple]) -> Run:
        frames = [make_scalars(tag, s, v) for tag, (s, v) in cols.items()]
        sc = pd.concat(frames, ignore_index=True) if frames else None
        r = Run("d", path=Path("."), format="csv")
        if sc is not None:
            r.scalars = sc
        return r.finalize()

    nan = float("nan")
    return {
        "empty": run({}),
        "single_point": run({"train_loss": ([0], [1.0]), "val_loss": ([0], [1.2]),
                             "lr": ([0], [0.1]), "grad_norm": ([0], [1.0]),
                             "val_acc": ([0], [0.5])}),
        "all_nan": run({"train_loss": (np.arange(30), [nan] * 30),
                        "val_loss": (np.arange(30), [nan] * 30),
                        "grad_norm": (np.arange(30), [nan] * 30)}),
        "constant": run({"train_loss": (np.arange(200), [0.5] * 200),
                         "val_loss": (np.arange(0, 200, 10), [0.6] * 20),
                         "lr": (np.arange(200), [0.0] * 200),
                         "grad_norm": (np.arange(200), [0.0] * 200),
                         "val_acc": (np.arange(0, 200, 10), [0.3] * 20)}),
        "two_points_inf": run({"train_loss": ([0, 10**9], [math.inf, -math.inf])}),
        "huge_steps": run({"train_loss": (np.array([0, 2**40, 2**41, 2**42]),
                                          [3.0, 2.0, 1.0, 0.5])}),
    }


DEGENERATE = _degenerate_runs()


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_every_rule_survives_degenerate_runs(case):
    run = DEGENERATE[case]
    result = evaluate(run, Config(preview=True), RULES)
    errors = [n.message for n in run.notes if n.code == "rule_error"]
    assert not errors, errors
    for f in result.findings:
        assert f.rule in BY_ID
    assert not {r.id for r in RULES if not r.per_run} & {f.rule for f in result.findings}


_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.floats(-1e3, 1e3), st.just(0.0))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_rule_survives_random_series(data):
    cols = {}
    for tag in data.draw(st.lists(st.sampled_from(
            ["train_loss", "val_loss", "lr", "grad_norm", "val_acc", "train_acc"]),
            min_size=1, max_size=6, unique=True)):
        n = data.draw(st.integers(0, 60))
        steps = sorted(set(data.draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n))))
        values = data.draw(st.lists(_VALUES, min_size=len(steps), max_size=len(steps)))
        cols[tag] = (steps, values)
    frames = [make_scalars(tag, np.asarray(s, dtype="int64"), np.asarray(v, dtype=float))
              for tag, (s, v) in cols.items()]
    run = Run("h", path=Path("."), format="csv", scalars=pd.concat(frames, ignore_index=True))
    run.finalize()
    evaluate(run, Config(preview=True), RULES)
    errors = [n.message for n in run.notes if n.code == "rule_error"]
    assert not errors, errors


# --- scikit-learn-style common check over every registered detector ----------------

_TAGS = ["train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm"]
_TINY = 5e-324  # the smallest subnormal double


def _values(kind: str, n: int) -> st.SearchStrategy:
    if kind == "all_nan":
        return st.just([float("nan")] * n)
    if kind == "constant":
        return st.sampled_from([0.0, 1e-300, 0.5, -3.0, 1e300]).map(lambda c: [c] * n)
    if kind == "subnormal":
        elem = st.one_of(st.integers(1, 8).map(lambda k: k * _TINY),
                         st.integers(0, 2**20).map(lambda k: k * _TINY),
                         st.floats(5e-324, 2.2e-308))
    elif kind == "huge":
        elem = st.one_of(st.floats(1e290, 1.7e308), st.floats(-1.7e308, -1e290))
    elif kind == "negative":
        elem = st.floats(-1e7, -1e-9)
    else:  # non_monotonic_steps / single_point: ordinary values, NaN and inf included
        elem = st.floats(allow_nan=True, allow_infinity=True, width=64)
    return st.lists(elem, min_size=n, max_size=n)


_KINDS = ["empty", "single_point", "all_nan", "constant", "subnormal", "huge", "negative",
          "non_monotonic_steps"]


@st.composite
def _degenerate_run(draw) -> tuple[str, Run]:
    kind = draw(st.sampled_from(_KINDS))
    frames = []
    for tag in draw(st.lists(st.sampled_from(_TAGS), min_size=1, max_size=6, unique=True)):
        n = {"empty": 0, "single_point": 1}.get(kind, draw(st.integers(2, 50)))
        if kind == "non_monotonic_steps":
            steps = draw(st.lists(st.integers(-5, 10**6), min_size=n, max_size=n))
        else:
            gap = draw(st.sampled_from([1, 7, 1000, 2**33]))
            steps = [i * gap for i in range(n)]
        values = draw(_values(kind, n))
        frames.append(make_scalars(tag, np.asarray(steps, dtype="int64"),
                                   np.asarray(values, dtype="float64")))
    run = Run("c", path=Path("."), format="csv")
    if any(len(f) for f in frames):
        run.scalars = pd.concat(frames, ignore_index=True)
    return kind, run.finalize()


def _detector_params() -> dict[str, dict]:
    """Every registered detector with the thresholds of a rule that uses it (the first
    by id); a detector no built-in rule uses gets an empty table."""
    from diagnose.detectors import detector_names

    out: dict[str, dict] = {name: {} for name in detector_names()}
    for r in RULES:
        if r.per_run and not out.get(r.detector):
            out[r.detector] = dict(r.thresholds)
    return out


DETECTOR_PARAMS = _detector_params()


def _subnormal_pair(val_last: float) -> tuple[str, Run]:
    """Train and val losses at the smallest subnormal (8 points): smoothing underflows
    them to 0 (found by hypothesis: OVF003/OVF004 divided by it)."""
    steps = np.arange(0, 80, 10)
    return "subnormal", Run("s", path=Path("."), format="csv", scalars=pd.concat(
        [make_scalars("train_loss", steps, np.full(8, _TINY)),
         make_scalars("val_loss", steps, np.r_[np.full(7, _TINY), val_last])],
        ignore_index=True)).finalize()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_degenerate_run())
@example(case=_subnormal_pair(_TINY))
@example(case=_subnormal_pair(1e-310))
def test_every_detector_survives_degenerate_series(case):
    """Empty, single-point, all-NaN, constant, subnormal, huge, negative and
    non-monotonic-step series: every detector returns None or a list of Hits (it never
    raises), and the engine leaves no rule_error note."""
    import warnings

    from diagnose.detectors import Hit, RuleContext

    kind, run = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = RuleContext(run)
        for name, params in DETECTOR_PARAMS.items():
            if not params:
                continue  # needs a rule's thresholds to mean anything
            out = get_detector(name)(ctx, dict(params))
            assert out is None or isinstance(out, list), (kind, name, out)
            assert all(isinstance(h, Hit) for h in out or []), (kind, name)
        evaluate(run, Config(preview=True), RULES)
    errors = [n.message for n in run.notes if n.code == "rule_error"]
    assert not errors, (kind, errors)


def test_overfit_gap_rules_survive_subnormal_losses():
    """OVF003/OVF004 once raised ZeroDivisionError when smoothing underflowed a subnormal
    loss to 0."""
    for val_last in (_TINY, 1e-310):
        _, run = _subnormal_pair(val_last)
        evaluate(run, Config(preview=True), RULES)
        errors = [n.message for n in run.notes if n.code == "rule_error"]
        assert not errors, errors
