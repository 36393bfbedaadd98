"""--format json is exactly Analysis.to_dict: the DESIGN.md contract."""

from __future__ import annotations

import json

from test_report_common import check_snapshot, sample_analysis

from diagnose import __version__
from diagnose.report import render


def _no_constants(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name} in output")


def test_json_is_to_dict_and_strict() -> None:
    analysis = sample_analysis()
    out = render(analysis, "json")
    doc = json.loads(out, parse_constant=_no_constants)
    assert doc == json.loads(json.dumps(analysis.to_dict(__version__)))
    assert list(doc)[:4] == ["schema_version", "tool", "runs", "errors"]
    assert doc["runs"][0]["findings"][0]["evidence"]["nan_share"] == "NaN"
    assert doc["runs"][0]["findings"][0]["recommendations"][0] == {
        "hyperparameter": "learning_rate", "action": "decrease", "current": 0.1,
        "proposed": 0.03, "rationale": "loss rose 40x before NaN: step size too large",
    }
    assert doc["sweeps"] == [{"message": "learning_rate 0.01 beats 0.1 on val loss (2 runs)"}]
    assert out.startswith('{\n  "schema_version": 1,')


def test_json_snapshot() -> None:
    check_snapshot("report.json", render(sample_analysis(), "json"))
