"""Meta-test over every built-in rule (ours and everyone's), SQLFluff/ruff style.

Each rule must: have a valid id/name/state/severity, point at a registered detector, be
documented in every section (what, why, evidence, causes, fixes, references) with each
threshold explained, and come with ``tests/rule_fixtures/<ID>/fire/`` (a log it flags)
and ``.../quiet/`` (a log it leaves alone).  Fixtures are loaded the way users' logs are
(``discover`` + ``load_run``) when ingest can read them, else with the test fallback.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fallback_loader import load_any
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.config import Config
from diagnose.detectors import get_detector
from diagnose.engine import builtin_rules_dir, evaluate, format_rule_doc, load_rules
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
    assert get_detector(r.detector) is not None, f"detector {r.detector!r} is not registered"
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


def _findings(rid: str, sub: str):
    folder = FIXTURES / rid / sub
    if not folder.is_dir():
        pytest.fail(f"missing fixture {folder.relative_to(FIXTURES.parent)}")
    run = load_any(folder)
    result = evaluate(run, Config(preview=True), RULES)
    errors = [n.message for n in run.notes if n.code == "rule_error"]
    assert not errors, errors
    return result


@pytest.mark.parametrize("rid", IDS)
def test_rule_fires_on_its_fire_fixture(rid):
    result = _findings(rid, "fire")
    hits = [f for f in result.findings if f.rule == rid]
    assert hits, f"{rid} did not fire; findings: {[f.rule for f in result.findings]}"
    for f in hits:
        assert f.state == BY_ID[rid].state and f.severity == BY_ID[rid].severity
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
