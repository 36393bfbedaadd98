"""Snapshots that pin the product (issue 8, deliver 7): every finding (message, evidence,
recommendations) on every case of every rule (``tests/rule_fixtures/<ID>/<case>/``), one
snapshot file per rule in ``tests/snapshots/rules/``, and the whole JSON answer for
``sample_logs/``.  ``DIAGNOSE_UPDATE_SNAPSHOTS=1`` rewrites them; a missing one fails.

A case is a folder.  ``fire`` and ``quiet`` (every rule has both) hold a log and are
judged by their name.  Any other case has an ``expect.toml`` (see :func:`_case_spec`):
it may point at another case's log (``log = "../fire"``) instead of copying it, and may
carry a ``config.toml`` - a ``[tool.diagnose]`` table (``[thresholds.<ID>]``,
``[severity]``, ``ignore``...) validated by the product's ``parse_table`` and
``check_config``.  Non-default config cases flip a verdict on an existing log;
combination cases pin how coupled rules meet (``exclusive``, supersession through
``quiet``, folding through ``[explains]``).  Logs of combination cases are written by
``make_fixtures.py`` (COMBOS) and ``make_fitting_fixtures.py`` (FIXTURES).

Floats are rounded to 9 significant digits so a last-bit difference between numpy
builds does not fail the suite; anything larger is a behaviour change to inspect.
"""

from __future__ import annotations

import json
import os
import tomllib
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fallback_loader import load_any

from diagnose.cli import main
from diagnose.config import Config, parse_table
from diagnose.engine import check_config, load_rules
from diagnose.findings import Analysis
from diagnose.pipeline import Options, apply_baseline, judge_run

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "rule_fixtures"
SNAPSHOTS = REPO / "tests" / "snapshots"
RULES = load_rules()
BY_ID = {r.id: r for r in RULES}


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _check(name: str, doc: Any) -> None:
    text = json.dumps(_round(doc), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    text = text.replace(str(REPO), "<repo>")  # the checkout's place is not the product's
    path = SNAPSHOTS / name
    if os.environ.get("DIAGNOSE_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing snapshot {path}; run with DIAGNOSE_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot"


def _case_config(case: Path) -> Config:
    """The case's ``config.toml`` (a ``[tool.diagnose]`` table: ``[thresholds.<ID>]``,
    ``[severity]``...) validated by the product's own parser; preview rules always run."""
    path = case / "config.toml"
    table = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config = parse_table(table, path if path.is_file() else None)
    config.preview = True
    check_config(RULES, config)  # unknown rule ids, out-of-range thresholds: the CLI's check
    return config


def _case_spec(rid: str, case: Path) -> dict[str, Any]:
    """What the case asserts.  ``expect.toml`` keys: ``log`` (the log folder, relative to
    the case, default the case itself: ``"../fire"`` reuses a log), ``fires`` / ``quiet``
    (rule ids that must / must not have a finding), ``exclusive`` (pairs never both on
    one metric), ``[explains]`` (``HEAD = [ids]``: HEAD's finding folds them as
    ``explains`` evidence) and ``[proposes]`` (``hyperparameter = value``: a
    recommendation proposes it, e.g. under an ``[advice]`` policy override).  Without
    the file the case's name decides: ``fire`` or ``quiet`` for its rule."""
    path = case / "expect.toml"
    if path.is_file():
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
        unknown = set(spec) - {"log", "fires", "quiet", "exclusive", "explains", "proposes",
                               "why"}
        assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
        for rule in [*spec.get("fires", []), *spec.get("quiet", [])]:
            assert rule in BY_ID, f"{path}: unknown rule {rule}"
        return spec
    assert case.name in ("fire", "quiet"), f"{case} needs an expect.toml"
    return {"fires": [rid]} if case.name == "fire" else {"quiet": [rid]}


def _case_findings(rid: str, folder: Path, config: Config) -> list[dict]:
    """The product's own steps: ``judge_run`` per run, ``apply_baseline`` for a
    baseline rule's ``current/`` against ``reference/`` (where select/ignore and
    [severity] apply to BSL findings)."""
    if BY_ID[rid].per_run:
        return [f.to_dict() for f in judge_run(load_any(folder), config, rules=RULES).findings]
    analysis = Analysis(results=[judge_run(load_any(folder / "current"), config, rules=RULES)])
    apply_baseline(analysis, str(folder / "reference"), config, Options())
    return [f.to_dict() for f in analysis.results[0].findings]


def _check_spec(where: str, spec: dict[str, Any], findings: list[dict]) -> None:
    fired = {f["rule"] for f in findings}
    for rule in spec.get("fires", []):
        assert rule in fired, f"{where}: {rule} does not fire"
    for rule in spec.get("quiet", []):
        assert rule not in fired, f"{where}: {rule} fires"
    for a, b in spec.get("exclusive", []):
        both = {f["metric"] for f in findings if f["rule"] == a} & {
            f["metric"] for f in findings if f["rule"] == b}
        assert not both, f"{where}: {a} and {b} both fire on {sorted(both)}"
    for head, folded in spec.get("explains", {}).items():
        heads = [f for f in findings if f["rule"] == head]
        assert heads, f"{where}: {head} does not fire"
        explained = {e["rule"] for f in heads for e in f["evidence"].get("explains", [])}
        for rule in folded:
            assert rule in explained, f"{where}: {head} does not explain {rule}"
            assert rule not in {f["rule"] for f in findings}, f"{where}: {rule} not folded"
    recs = [r for f in findings for r in f.get("recommendations", [])]
    for hp, value in spec.get("proposes", {}).items():
        got = [r["proposed"] for r in recs if r["hyperparameter"] == hp]
        assert value in got, f"{where}: {hp} proposed {got}, expected {value}"


@pytest.mark.parametrize("rid", sorted(BY_ID))
def test_every_case_of_a_rule_matches_its_snapshot(rid: str) -> None:
    cases = sorted(p for p in (FIXTURES / rid).iterdir() if p.is_dir())
    assert {"fire", "quiet"} <= {p.name for p in cases}, rid
    doc = {}
    for case in cases:
        spec = _case_spec(rid, case)
        folder = (case / spec.get("log", ".")).resolve()
        assert folder.is_dir(), f"{case}: log folder {folder} is missing"
        findings = _case_findings(rid, folder, _case_config(case))
        _check_spec(f"{rid}/{case.name}", spec, findings)
        doc[case.name] = findings
    _check(f"rules/{rid}.json", doc)


@pytest.mark.slow
def test_sample_logs_json_matches_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        main(["sample_logs", "--format", "json", "--no-progress"])
    doc = json.loads(out.getvalue())
    doc.pop("tool", None)  # the version changes with every release
    _check("sample_logs.json", doc)
