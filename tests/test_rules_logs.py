"""LOG001-LOG004: findings about the log itself."""

from __future__ import annotations

import numpy as np
from rule_helpers import RULES, decay, findings, make_run

from diagnose.config import Config
from diagnose.engine import evaluate
from diagnose.run import IngestNote


def test_no_loss_metric_lists_tags_and_suppresses_nothing_else():
    run = make_run({"val_accuracy": (np.arange(10), np.linspace(0.1, 0.9, 10))})
    (f,) = findings(run, "LOG001")
    assert f.severity == "warning" and f.metric is None and "val_accuracy" in f.message
    res = evaluate(run, Config(), RULES)
    assert "DIV001" in res.not_applicable


def test_empty_run_says_so():
    (f,) = findings(make_run({}), "LOG001")
    assert "no scalar metrics" in f.message


def test_notes_become_log_findings():
    notes = [IngestNote("truncated", "record at byte 120 is cut off", "a/events", None),
             IngestNote("corrupt_record", "bad crc", "a/events", 40),
             IngestNote("restart", "log restarts at step 400", "m.csv", 400)]
    run = make_run({"loss": (np.arange(20), decay(np.arange(20)))}, notes=notes)
    (trunc,) = findings(run, "LOG002")
    assert trunc.severity == "info" and trunc.evidence["notes"] == 2 and trunc.step == 40
    (rst,) = findings(run, "LOG003")
    assert rst.step == 400 and "restarted" in rst.message
    assert "log" not in evaluate(run, Config(), RULES).states


def test_too_few_points_counts_finite_points_of_the_best_loss():
    run = make_run({"loss": (np.arange(5), [2.0, 1.5, np.nan, 1.2, 1.1]),
                    "val_loss": (np.arange(3), [2.1, 1.6, 1.4])})
    (f,) = findings(run, "LOG004")
    assert f.evidence["points"] == 4
    run = make_run({"loss": (np.arange(5), [2.0, 1.5, 1.3, 1.2, 1.1]),
                    "val_loss": (np.arange(30), decay(np.arange(30)))})
    assert not findings(run, "LOG004")
