"""bench/calibration/what_logs_know.py: the label checker with knowledge taken away."""

from __future__ import annotations

import sys
from pathlib import Path

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import label_check  # noqa: E402
import store  # noqa: E402
import what_logs_know as wlk  # noqa: E402
import write_logs  # noqa: E402


def test_taking_batch_norm_or_the_untrained_level_away_changes_the_reading() -> None:
    """r00001 (an MLP with batch norm, val at chance while train fits) is
    batchnorm_collapse to the checker; told the model has no batch norm, or handed an
    untrained level ten times the true one, the checker no longer says so."""
    rec = store.record("r00001")
    refs = wlk.fixed_refs([rec], wlk.BASE_REFERENCE)
    assert wlk.states_of(label_check.check(rec, refs)) == {"batchnorm_collapse"}
    assert "batchnorm_collapse" not in wlk.states_of(label_check.check(rec, refs, has_bn=False))
    c = label_check.curves(rec, refs)
    assert c is not None
    inflated = {rec["id"]: {"untrained_level": 10 * c.l0}}
    got = label_check.check(rec, refs, adjust=wlk.rules_untrained_level(inflated))
    assert "batchnorm_collapse" not in wlk.states_of(got)


def test_the_rules_untrained_level_scales_the_reference_and_chance_with_it() -> None:
    rec = store.record("r00001")
    refs = wlk.fixed_refs([rec], 0.25)
    c = label_check.curves(rec, refs)
    assert c is not None and abs(c.lref - 0.25 * c.l0) < 1e-12
    l0 = c.l0
    out = wlk.rules_untrained_level({rec["id"]: {"untrained_level": 2 * l0}})(rec, c)
    assert abs(out.l0 - 2 * l0) < 1e-12 and abs(out.lref - 0.5 * l0) < 1e-12
    assert out.chance <= out.l0
    # no reading from the log: the true level stays
    c2 = label_check.curves(rec, refs)
    assert c2 is not None
    assert wlk.rules_untrained_level({})(rec, c2).l0 == l0


def test_log_facts_read_the_rendered_log(tmp_path: Path) -> None:
    """The facts come from the log as diagnose reads it: a rendered run loads, and its
    untrained level is a positive loss; a folder with no log does not load."""
    rec = store.record("r00001")
    folder = write_logs.render(rec, tmp_path)
    rid, facts = wlk.log_facts((rec["id"], str(folder)))
    assert rid == "r00001" and facts["loaded"]
    assert facts["untrained_level"] is not None and facts["untrained_level"] > 0
    assert isinstance(facts["class_count"], bool)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert wlk.log_facts(("x", str(empty))) == ("x", {"loaded": False})
