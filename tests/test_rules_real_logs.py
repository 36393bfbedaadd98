"""Our rules on real logs from public repositories (labels in real_logs/MANIFEST.tsv).

Divergent runs must be called divergence; healthy runs must get no warning or error from
the divergence / instability / gradient / LR / unit / log rules; and no run labelled
something else (overfit, underfit, plateau) may be called divergence.
"""

from __future__ import annotations

import csv

import pytest
from fallback_loader import load_any
from rule_helpers import RULES
from shared_data import require, shared

from diagnose.config import Config
from diagnose.engine import evaluate

REAL = shared("real_logs")
MINE = ("DIV", "INS", "GRD", "LRS", "UNT", "LOG")
DIVERGED = {"eeg_trm_v1_nan_late", "eeg_trm_v3_4_nan_early", "ptycho_nan_gs1"}
HEALTHY = {"convlstm_v20_healthy", "keras_braincnn_trainonly", "ptycho_ok_gs2",
           "d2_maskrcnn_short", "d2_pothole_frcnn", "yolov8_kaz_train100",
           "keras_tb_hparams_batchlevel", "lstm_textgen_tb", "keras_tb_mnist_adam512"}


@pytest.fixture(autouse=True)
def _real_logs_present() -> None:
    """Skip without the shared real logs; under CI (CI=true) fail instead."""
    require(REAL / "MANIFEST.tsv")


def _manifest() -> dict[str, str]:
    if not (REAL / "MANIFEST.tsv").is_file():
        return {}
    with open(REAL / "MANIFEST.tsv", newline="") as fh:
        return {row["id"]: row["label"] for row in csv.DictReader(fh, delimiter="\t")}


LABELS = _manifest()
_CACHE: dict[str, object] = {}


def _result(name: str):
    if name not in _CACHE:
        run = load_any(REAL / name)
        _CACHE[name] = evaluate(run, Config(preview=True), RULES)
    return _CACHE[name]


def _mine(result, min_rank=1):
    rank = {"info": 0, "warning": 1, "error": 2}
    return [f for f in result.findings if f.rule.startswith(MINE) and rank[f.severity] >= min_rank]


@pytest.mark.parametrize("name", sorted(DIVERGED))
def test_diverged_runs_are_divergence(name):
    res = _result(name)
    assert "divergence" in res.states
    div = [f for f in res.findings if f.rule == "DIV001"]
    assert div and all(f.severity == "error" for f in div)


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_runs_get_no_warning_from_these_rules(name):
    got = _mine(_result(name))
    assert not got, [(f.rule, f.message) for f in got]


@pytest.mark.parametrize("name", sorted(n for n in LABELS if n not in DIVERGED))
def test_no_other_run_is_called_divergence(name):
    if "divergence" in LABELS[name]:
        pytest.skip("labelled divergence")
    res = _result(name)
    div = [f for f in res.findings if f.state == "divergence" and f.rule.startswith(MINE)]
    assert not div, [(f.rule, f.message) for f in div]


def test_the_late_nan_run_reports_the_first_nan_step_and_the_rise():
    res = _result("eeg_trm_v1_nan_late")
    (train,) = [f for f in res.findings if f.rule == "DIV001" and "train" in f.metric]
    assert train.evidence["first_nonfinite_step"] == train.step
    assert train.evidence["rise_ratio_before_nonfinite"] > 10
    assert "rising" in train.message


def test_the_real_logs_are_there() -> None:
    """The parametrised tests above vanish when the manifest is missing; this one makes
    the absence visible (a skip locally, a failure under CI)."""
    assert (REAL / "MANIFEST.tsv").is_file()
