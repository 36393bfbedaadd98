"""JUnit XML: one test case per run, failures at or above --fail-on, parsed back."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from test_report_common import check_snapshot, hostile_analysis, sample_analysis

from diagnose.report import render


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def test_junit_structure_with_fail_on_error() -> None:
    suite = _parse(render(sample_analysis(), "junit", "error"))
    assert suite.get("name") == "diagnose"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["sweep/lr0.1", "sweep/lr0.01", "baseline", "broken/run"]
    assert all(c.get("classname") == "diagnose" for c in cases.values())
    failure = cases["sweep/lr0.1"].find("failure")
    assert failure is not None and failure.get("type") == "error"
    assert failure.get("message") == (
        "DIV001 loss-non-finite: train loss became NaN at step 170 after rising 40x in 20 steps")
    assert "evidence first_nonfinite_step: 170" in failure.text
    assert "-> learning_rate: 0.1 -> 0.03" in failure.text
    overfit = cases["sweep/lr0.01"]
    assert overfit.find("failure") is None
    assert "warning OVF001" in overfit.find("system-out").text
    assert "info PLT002" in overfit.find("system-out").text
    assert list(cases["baseline"]) == []
    error = cases["broken/run"].find("error")
    assert error is not None and error.get("message") == "no readable records"


def test_fail_on_moves_findings_between_failure_and_output() -> None:
    warn = _parse(render(sample_analysis(), "junit", "warning"))
    overfit = next(c for c in warn.findall("testcase") if c.get("name") == "sweep/lr0.01")
    assert [f.get("message")[:6] for f in overfit.findall("failure")] == ["OVF001"]
    assert "PLT002" in overfit.find("system-out").text
    assert warn.get("failures") == "2"
    never = _parse(render(sample_analysis(), "junit", "never"))
    assert never.get("failures") == "0" and not never.findall(".//failure")


def test_hostile_text_stays_well_formed() -> None:
    analysis = hostile_analysis()
    analysis.results[0].run.run_id = "bell\x07 and \x1b[31m <x> & \"q\""
    suite = _parse(render(analysis, "junit", "warning"))  # would raise if not well-formed
    case = suite.findall("testcase")[0]
    assert case.get("name") == 'bell\\x07 and \\x1b[31m <x> & "q"'
    assert "<b>step</b>" in case.find("failure").get("message")


def test_junit_snapshot() -> None:
    check_snapshot("report_junit.xml", render(sample_analysis(), "junit"))
