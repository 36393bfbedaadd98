"""A plateau that follows learning is no dead network (issue 10): PLT001 flat from its
first evaluation, on a run UND004 found learned but poor, gets the plateau advice (LR up,
cycle it), not the never-learned advice (init, "the loss never left its initial level")."""

from __future__ import annotations

from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

from diagnose.pipeline import analyze

REPO = Path(__file__).resolve().parents[1]

corpus = pytest.importorskip("corpus")
store = pytest.importorskip("store")


@pytest.mark.slow
def test_learned_then_stuck_gets_the_lr_not_the_init(tmp_path: Path) -> None:
    """Corpus run r01067, re-trained for real: a char model (SGD 0.015, one-cycle, 120
    steps) whose loss falls to 74% of its untrained level while val accuracy stays flat
    from its first evaluation (re-trained seeds: LR x3 3.10, He init 3.37, control 3.56)."""
    cfg = next(r for r in store.load() if r["id"] == "r01067")["config"]
    corpus.train(cfg, 0, tmp_path / "run")
    result = analyze([str(tmp_path / "run")]).results[0]
    plt = next(f for f in result.findings if f.rule == "PLT001")
    assert plt.evidence.get("underfit_by")  # UND004's judgement: it learned
    top = plt.recommendations[0]
    assert (top.hyperparameter, top.action) == ("learning_rate", "increase")
    assert all("never left its initial level" not in r.rationale
               for r in plt.recommendations)
    assert "init" not in {r.hyperparameter for r in plt.recommendations}
