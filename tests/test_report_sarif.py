"""SARIF 2.1.0: valid against the vendored OASIS schema, stable fingerprints, locations."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from test_report_common import (
    RULES,
    check_snapshot,
    hostile_analysis,
    overfit_run,
    sample_analysis,
)

from diagnose.findings import Analysis, RunResult
from diagnose.report import render
from diagnose.report.sarif import FINGERPRINT_KEY, artifact_uri, fingerprint, sarif_log

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-2.1.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def test_vendored_schema_is_the_oasis_one() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$id"].endswith("/Schemata/sarif-schema-2.1.0.json")
    assert schema["properties"]["version"] == {
        "description": "The SARIF format version of this log file.", "enum": ["2.1.0"]}
    assert len(schema["definitions"]) == 52


@pytest.mark.parametrize("rules", [RULES, None], ids=["with-rule-docs", "from-findings"])
@pytest.mark.parametrize("make", [sample_analysis, hostile_analysis], ids=["sample", "hostile"])
def test_sarif_validates(validator: jsonschema.Draft7Validator, make, rules) -> None:
    doc = json.loads(render(make(), "sarif", rules=rules))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_schema_catches_a_broken_log(validator: jsonschema.Draft7Validator) -> None:
    doc = sarif_log(sample_analysis(), RULES)
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert not validator.is_valid(doc)


def test_results_rules_and_notifications() -> None:
    doc = sarif_log(sample_analysis(), RULES)
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "diagnose" and driver["version"]
    ids = [r["id"] for r in driver["rules"]]
    assert ids == ["DIV001", "OVF001", "PLT002"]  # given rules, then ones seen only in findings
    div = driver["rules"][0]
    assert div["defaultConfiguration"] == {"level": "error"}
    assert "Lower the learning rate." in div["help"]["text"]
    assert "- Clip gradients." in div["help"]["markdown"]
    results = run["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("DIV001", "error"), ("PLT002", "note"), ("OVF001", "warning")]
    for r in results:
        assert ids[r["ruleIndex"]] == r["ruleId"]
    first = results[0]
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "logs/sweep/lr0.1/events.out.tfevents.1"
    assert first["properties"]["recommendations"][0]["proposed"] == 0.03
    assert first["properties"]["evidence"]["nan_share"] == "NaN"
    assert first["message"]["text"].startswith("sweep/lr0.1: train loss became NaN")
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["level"] == "error" and notes[0]["message"]["text"] == (
        "broken/run: no readable records")
    assert any(n["descriptor"]["id"] == "ingest-truncated" for n in notes)


def test_fingerprint_ignores_the_step_but_not_the_metric() -> None:
    a = sample_analysis()
    before = sarif_log(a)["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    f = a.results[0].findings[0]
    a.results[0].findings[0] = replace(f, step=999, message="same problem, later")
    after = sarif_log(a)["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    assert before == after == fingerprint("sweep/lr0.1", "DIV001", "loss/train")
    assert fingerprint("sweep/lr0.1", "DIV001", "loss/val") != before
    assert fingerprint("sweep/lr0.2", "DIV001", "loss/train") != before


def test_uri_is_relative_to_the_working_directory(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "runs" / "my run" / "training.log"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,loss\n")
    run = overfit_run("my run")
    run.sources = [log]
    doc = sarif_log(Analysis(results=[RunResult(run, findings=[])]))
    assert doc["runs"][0]["results"] == []
    assert artifact_uri(log) == "runs/my%20run/training.log"
    run.sources = []
    run.path = tmp_path / "runs" / "my run"
    assert artifact_uri(run.path) == "runs/my%20run"


def test_sarif_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    doc = sarif_log(sample_analysis(), RULES)
    doc["runs"][0]["tool"]["driver"]["informationUri"] = "<from package metadata>"
    check_snapshot("report.sarif", json.dumps(doc, indent=2) + "\n")
