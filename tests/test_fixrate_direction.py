"""bench/fixrate/direction.py: the direction table and the scorer, on real corpus runs."""

from __future__ import annotations

from pathlib import Path

import fixtures_fixrate  # noqa: F401  (bench/fixrate and bench/calibration on the path)
import pytest

REPO = Path(__file__).resolve().parents[1]

direction = pytest.importorskip("direction")
generate = pytest.importorskip("generate")  # torch: the corpus generator's causes
corpus = pytest.importorskip("corpus")
store = pytest.importorskip("store")
write_logs = pytest.importorskip("write_logs")

from diagnose.advice.policy import AdvicePolicy  # noqa: E402

# A tiny Adam LR whose optimizer the log does not name (csv, no config) and a heavy
# dropout run: both detected, both with advice on the cause's knob.
TINY_LR, HEAVY_DROPOUT = "r00135", "r00876"


def test_the_table_covers_every_cause_the_generator_draws() -> None:
    causes = {c.name: c for c in generate.CAUSES}
    assert set(direction.DIRECTIONS) == set(causes)
    for name, d in direction.DIRECTIONS.items():
        if d is None:  # left out: healthy traps and causes without a hyperparameter fix
            assert not causes[name].intended or name in corpus.NO_HPARAM_FIX, name
        else:
            assert d.right and d.why, name
            assert not set(d.right) & set(d.wrong), name


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("rendered")
    by_id = {r["id"]: r for r in store.load()}
    runs = direction.broken_runs(records=[by_id[TINY_LR], by_id[HEAVY_DROPOUT]])
    assert len(runs) == 2
    for r in runs:
        write_logs.render(by_id[r["id"]], root, r["format"])
    summary, rows = direction.run(runs, root, jobs=1)
    assert summary["states"]["all"]["scored"] == 2
    return {r["id"]: {**r, "run": run} for r, run in zip(rows, runs, strict=True)}


def test_real_advice_is_scored_right_and_lands_in_range(scored: dict[str, dict]) -> None:
    tiny, drop = scored[TINY_LR], scored[HEAVY_DROPOUT]
    assert tiny["detected"] and tiny["top1"] == "right" and not tiny["wrong"]
    assert tiny["top_advice"]["hyperparameter"] == "learning_rate"
    # the optimizer is not logged: the LR still lands inside Adam's range (was 0.033)
    assert tiny["landings"] and all(x["inside"] for x in tiny["landings"])
    assert drop["top1"] == "right" and drop["top_advice"]["hyperparameter"] == "dropout"
    assert all(x["inside"] for x in drop["landings"])


def _verdict(row: dict, hyper: str, action: str, current: object, proposed: object) -> str:
    run = row["run"]
    rec = {"hyperparameter": hyper, "action": action, "current": current,
           "proposed": proposed, "rationale": ""}
    return direction.classify(rec, run["cause"], corpus.hparams_of(run["config"]), False,
                              AdvicePolicy())


def test_right_wrong_and_absent_moves_on_the_same_runs(scored: dict[str, dict]) -> None:
    tiny, drop = scored[TINY_LR], scored[HEAVY_DROPOUT]
    lr = corpus.hparams_of(tiny["run"]["config"])["learning_rate"]
    assert _verdict(tiny, "learning_rate", "increase", lr, 1e-3) == "right"
    assert _verdict(tiny, "learning_rate", "decrease", lr, lr / 3) == "wrong"
    assert _verdict(tiny, "grad_clip", "set", None, 1.0) == "other"  # another knob
    # no current value in the log: the direction is against the recipe's true value
    true_drop = corpus.hparams_of(drop["run"]["config"])["dropout"]
    assert true_drop >= 0.8
    assert _verdict(drop, "dropout", "set", None, 0.3) == "right"
    assert _verdict(drop, "dropout", "set", None, 0.99) == "wrong"
    assert _verdict(drop, "weight_decay", "increase", None, "current*3") == "other"


def test_a_carried_change_is_scored_like_any_proposal() -> None:
    """A change a recommendation carries (``together_with``) runs in the same trial, so
    the wrong-move count and the range landings see it: a stop that carried a dropout
    cut on a noisy-label run is a wrong move."""
    stop = {"hyperparameter": "max_steps", "action": "set", "current": 600, "proposed": 60,
            "rationale": ""}
    cut = {"hyperparameter": "dropout", "action": "decrease", "current": 0.3,
           "proposed": 0.0, "rationale": ""}
    finding = {"rule": "OVF001", "state": "overfit", "severity": "warning",
               "recommendations": [{**stop, "together_with": [cut]}]}
    assert direction._proposals(finding) == [{**stop, "together_with": [cut]}, cut]
    run = {"id": "x", "cause": "label_noise", "label": ["overfit"],
           "config": next(r for r in store.load() if r["cause"] == "label_noise")["config"]}
    row = direction.score_run(run, {"findings": [finding]}, AdvicePolicy())
    assert row["top1"] == "right"
    assert [w["hyperparameter"] for w in row["wrong"]] == ["dropout"]
