"""Snapshots that pin the product (issue 8, deliver 7): every finding (message, evidence,
recommendations) on every case of every rule (``tests/rule_fixtures/<ID>/<case>/``), one
snapshot file per rule in ``tests/snapshots/rules/``, and the whole JSON answer for
``sample_logs/``.  ``DIAGNOSE_UPDATE_SNAPSHOTS=1`` rewrites them; a missing one fails.

Floats are rounded to 9 significant digits so a last-bit difference between numpy
builds does not fail the suite; anything larger is a behaviour change to inspect.
"""

from __future__ import annotations

import json
import os
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fallback_loader import load_any

from diagnose.baseline import compare
from diagnose.cli import main
from diagnose.config import Config
from diagnose.engine import evaluate, load_rules
from diagnose.recommend import recommend

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


def _case_findings(rid: str, folder: Path) -> list[dict]:
    config = Config(preview=True)
    if BY_ID[rid].per_run:
        result = recommend(evaluate(load_any(folder), config, RULES))
        return [f.to_dict() for f in result.findings]
    current = evaluate(load_any(folder / "current"), config, RULES)
    reference = evaluate(load_any(folder / "reference"), config, RULES)
    current.findings = current.findings + compare(current, reference)
    return [f.to_dict() for f in recommend(current).findings]


@pytest.mark.parametrize("rid", sorted(BY_ID))
def test_every_case_of_a_rule_matches_its_snapshot(rid: str) -> None:
    cases = sorted(p for p in (FIXTURES / rid).iterdir() if p.is_dir())
    assert {"fire", "quiet"} <= {p.name for p in cases}, rid
    doc = {case.name: _case_findings(rid, case) for case in cases}
    assert any(f["rule"] == rid for f in doc["fire"]), f"{rid} does not fire on 'fire'"
    assert not any(f["rule"] == rid for f in doc["quiet"]), f"{rid} fires on 'quiet'"
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
