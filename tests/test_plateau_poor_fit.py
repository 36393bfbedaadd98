"""PLT001 reuses UND004's judgement of "learned but poor" (underfit AND plateau): the
thresholds it reads are the ones configured for UND004, else the rule file's defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

from diagnose.config import Config
from diagnose.detectors import RuleContext
from diagnose.detectors.underfit import learned_but_poor
from diagnose.discover import discover
from diagnose.engine import builtin_rules_dir, evaluate
from diagnose.ingest import load_run

CASE = Path(__file__).parent / "rule_fixtures" / "PLT001" / "fire_flat_early_poor_fit_regression"


def _run():  # a regression whose val loss flattened early at 59% of its untrained level
    sources, errors = discover([str(CASE)])
    assert sources and not errors
    return load_run(sources[0])


def _defaults() -> dict:
    return tomllib.loads((builtin_rules_dir() / "UND004.toml").read_text())["thresholds"]


def test_thresholds_of_falls_back_to_the_rule_files_defaults():
    ctx = RuleContext(_run())
    assert ctx.thresholds_of("UND004") == _defaults()
    ev = learned_but_poor(ctx)
    assert ev is not None and ev.poor_by == "loss"
    assert 0.55 < ev.end_over_untrained < 0.65


def test_thresholds_of_reads_the_engines_configured_values():
    ctx = RuleContext(_run())
    ctx.configured = lambda rid: ({**_defaults(), "regression_poor_ratio": 0.7}
                                  if rid == "UND004" else None)
    assert learned_but_poor(ctx) is None  # 59% is not poor at 0.7


def test_plateau_follows_the_underfit_thresholds_the_user_set():
    run = _run()
    fired = {f.rule for f in evaluate(run).findings}
    assert {"PLT001", "UND004"} <= fired
    cfg = Config(thresholds={"UND004": {"regression_poor_ratio": 0.7}})
    fired = {f.rule for f in evaluate(_run(), cfg).findings}
    assert "UND004" not in fired and "PLT001" not in fired and "PLT003" in fired
