"""A mid-run LR jump is advised as a probeable knob (issue 10): ``lr_step_factor``, what a
schedule step multiplies the LR by (StepLR's gamma), set to 1; the configured LR stays."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import numpy as np
import pytest
from test_advice_sizes import STEPS, _jumped_run, _recs

from diagnose.hparams import canonicalize
from diagnose.pipeline import analyze

REPO = Path(__file__).resolve().parents[1]

corpus = pytest.importorskip("corpus")
store = pytest.importorskip("store")




@pytest.fixture(scope="module")
def jumped(tmp_path_factory) -> tuple[Path, dict]:
    """Corpus run r00005, re-trained for real (3 s): SGD 0.0125, warmup then cosine, the LR
    x1000 at 69% of the run; the loss blows up after it."""
    cfg = next(r for r in store.load() if r["id"] == "r00005")["config"]
    logdir = tmp_path_factory.mktemp("r00005") / "run"
    corpus.train(cfg, 0, logdir)
    return logdir, cfg


def _top(logdir: Path):
    result = analyze([str(logdir)]).results[0]
    finding = next(f for f in result.findings if f.recommendations)
    return result, finding, finding.recommendations[0]


def test_a_real_mid_run_jump_gets_the_step_factor_first_and_the_probe_can_try_it(
        jumped, fixrate, tmp_path):
    logdir, cfg = jumped
    result, finding, top = _top(logdir)
    assert finding.state == "divergence"
    # current: the logged config's factor; proposed: no jump
    assert (top.hyperparameter, top.action, top.current, top.proposed) == (
        "lr_step_factor", "decrease", 1000.0, 1.0)
    assert "jumped x850" in top.rationale and "gamma" in top.rationale
    recs = {r.hyperparameter: r for r in finding.recommendations}
    assert recs["learning_rate"].proposed == pytest.approx(cfg["lr"], rel=0.01)  # kept
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(cfg))
    keys = list(json.loads((logdir / "config.json").read_text()))
    plan, why = fixrate._plan_top(result, corpus.template(recipe, keys), "lr_step_factor")
    assert why is None and plan.candidates[0].changes == {"lr_step_factor": 1.0}
    assert plan.control["lr_step_factor"] == 1000.0


def test_without_the_factor_in_the_config_current_is_the_jump_the_logged_lr_shows(
        jumped, tmp_path):
    logdir, _ = jumped
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics_log.csv").write_bytes((logdir / "metrics_log.csv").read_bytes())
    config = json.loads((logdir / "config.json").read_text())
    del config["lr_step_factor"]
    (bare / "config.json").write_text(json.dumps(config))
    _, _, top = _top(bare)
    assert (top.hyperparameter, top.current, top.proposed) == ("lr_step_factor", 851.0, 1.0)


@pytest.mark.parametrize("hparams, current", [
    ({"optimizer": "adam"}, 1000.0),  # no config: the jump the logged LR shows
    ({"optimizer": "adam", "lr_scheduler": {"gamma": 500}}, 500),  # a logged alias wins
    ({"optimizer": "adam", "SOLVER": {"GAMMA": 500}}, 500),  # detectron2's
    ({"optimizer": "adam", "gamma": 500}, 1000.0),  # a bare gamma is no LR factor
    ({"optimizer": "adam", "learning_rate": 3.0}, None),  # the config is the jump's level
    ({"optimizer": "adam", "lr_step_factor": 0.1}, None),  # a decay: something else jumped
])
def test_the_step_factor_only_where_the_evidence_and_config_point_at_it(hparams, current):
    curves = _jumped_run(np.where(STEPS >= 300, 3e-3 * 1000, 3e-3))
    # canonicalised as every reader does (ingest), aliases and all
    recs = _recs(curves, canonicalize({**hparams, "max_steps": 600}), "divergence")
    assert ("lr_step_factor" in recs) is (current is not None)
    if current is not None:
        assert next(iter(recs)) == "lr_step_factor"
        assert (recs["lr_step_factor"].current, recs["lr_step_factor"].proposed) == (
            current, 1.0)
