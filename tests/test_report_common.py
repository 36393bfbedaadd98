"""Shared builders for the report tests, and tests of the helpers every format uses.

The Analysis objects here are built from our own data classes (Run via make_scalars,
Finding, Recommendation, RunResult, Analysis) with curves shaped like real ones: a run
that diverges to NaN, one that overfits, one that is healthy.  Paths are relative so the
snapshots do not depend on where the tests run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose.findings import Analysis, Finding, LoadError, Recommendation, RunResult
from diagnose.report import (
    exit_status,
    fmt_value,
    ordered_findings,
    recommendation_line,
    render,
    rule_index,
    summary_line,
    verdict,
)
from diagnose.run import IngestNote, Run, make_scalars

HOSTILE = "a|b`<script>` [x](http://e)"

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _scalars(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    parts = [make_scalars(tag, steps, values) for tag, (steps, values) in columns.items()]
    return pd.concat(parts, ignore_index=True)


def diverged_run(run_id: str = "sweep/lr0.1") -> Run:
    """Train loss falls, then rises 40x and turns NaN at step 170; lr 0.1 throughout."""
    steps = np.arange(0, 200)
    loss = 2.0 * np.exp(-steps / 40.0) + 0.05
    loss[150:170] = loss[149] * np.geomspace(1, 40, 20)
    loss[170:] = np.nan
    vsteps = np.arange(0, 200, 10)
    vloss = loss[vsteps] * 1.1
    run = Run(
        run_id=run_id,
        path=Path("logs") / run_id,
        format="tensorboard",
        scalars=_scalars({
            "loss/train": (steps, loss),
            "loss/val": (vsteps, vloss),
            "lr": (steps, np.full(len(steps), 0.1)),
        }),
        hparams={"learning_rate": 0.1, "batch_size": 64},
        sources=[Path("logs") / run_id / "events.out.tfevents.1"],
        notes=[IngestNote("truncated", "last record cut short; 12 bytes ignored",
                          path="/somewhere/abs/events.out.tfevents.1")],
    )
    return run.finalize()


def overfit_run(run_id: str = "sweep/lr0.01") -> Run:
    """Keras CSVLogger-like epochs: val loss bottoms at epoch 12 and climbs back."""
    ep = np.arange(30)
    loss = 1.8 * np.exp(-ep / 8) + 0.1
    val = 0.7 + 0.004 * (ep - 12) ** 2
    acc = 1 - 0.7 * np.exp(-ep / 8)
    vacc = 0.76 - 0.0004 * (ep - 14) ** 2
    run = Run(
        run_id=run_id,
        path=Path("logs") / run_id,
        format="keras_csv",
        scalars=_scalars({
            "loss": (ep, loss),
            "val_loss": (ep, val),
            "accuracy": (ep, acc),
            "val_accuracy": (ep, vacc),
        }),
        hparams={"epochs": 30},
        sources=[Path("logs") / run_id / "training.log"],
    )
    return run.finalize()


def healthy_run(run_id: str = "baseline") -> Run:
    ep = np.arange(20)
    run = Run(
        run_id=run_id,
        path=Path("logs") / run_id,
        format="csv",
        scalars=_scalars({
            "train_loss": (ep, 1.0 / (ep + 1) + 0.1),
            "val_loss": (ep, 1.0 / (ep + 1) + 0.15),
        }),
    )
    return run.finalize()


def div_finding() -> Finding:
    return Finding(
        rule="DIV001",
        name="loss-non-finite",
        state="divergence",
        severity="error",
        metric="loss/train",
        step=170,
        message="train loss became NaN at step 170 after rising 40x in 20 steps",
        evidence={"first_nonfinite_step": 170, "loss_min": 0.19, "rise_factor": 40.0,
                  "nan_share": float("nan")},
        recommendations=(
            Recommendation("learning_rate", "decrease", 0.1, 0.03,
                           "loss rose 40x before NaN: step size too large"),
            Recommendation("grad_clip", "enable", None, 1.0, "bound the update size"),
        ),
    )


def ovf_finding() -> Finding:
    return Finding(
        rule="OVF001",
        name="val-loss-rising",
        state="overfit",
        severity="warning",
        metric="val_loss",
        step=12,
        message="val loss rose 25% from its minimum at step 12 while train loss fell 61%",
        evidence={"best_step": 12, "val_best": 0.7, "val_end": 0.87,
                  "val_worsening_pct": 24.5},
        recommendations=(
            Recommendation("epochs", "decrease", 30, 13, "val loss bottomed at step 12"),
            Recommendation("weight_decay", "set", None, 0.0005, "regularise"),
        ),
    )


def plateau_info() -> Finding:
    return Finding(
        rule="PLT002",
        name="metric-flat-tail",
        state="plateau",
        severity="info",
        metric="val_accuracy",
        step=None,
        message="val accuracy changed by under 0.5% over the last 40% of steps",
        evidence={"tail_change": 0.004},
    )


def sample_analysis() -> Analysis:
    """Three runs (error, warning+info, healthy), one unreadable path, a sweep insight."""
    return Analysis(
        results=[
            RunResult(diverged_run(), roles={"train_loss": "loss/train", "val_loss": "loss/val",
                                             "learning_rate": "lr"},
                      findings=[div_finding()]),
            RunResult(overfit_run(), findings=[plateau_info(), ovf_finding()]),
            RunResult(healthy_run()),
        ],
        errors=[LoadError("broken/run", "no readable records")],
        extras={"sweeps": [{"message": "learning_rate 0.01 beats 0.1 on val loss (2 runs)"}]},
    )


def hostile_analysis() -> Analysis:
    """Names and messages from a hostile log: pipes, backticks, HTML, links, newlines."""
    f = Finding(
        rule="OVF001",
        name="val-loss-rising",
        state="overfit",
        severity="warning",
        metric="val|loss",
        step=3,
        message="val `loss` | rose\nat <b>step</b> 3 [click](http://evil) $x$ @someone",
        evidence={"tag|x": "<img src=x onerror=alert(1)>"},
        recommendations=(Recommendation("dropout", "set", None, 0.3, "a|b\n<i>c</i>"),),
    )
    run = overfit_run(HOSTILE)
    run.notes.append(IngestNote("bad_value", "row 3: '<script>' | not a number\n", path="x|y"))
    return Analysis(
        results=[RunResult(run, findings=[f])],
        errors=[LoadError("evil\n::error::pwned|`x`", "bad <b>file</b>\r\n")],
    )


RULES = [
    {
        "id": "DIV001", "name": "loss-non-finite", "state": "divergence", "severity": "error",
        "summary": "Loss becomes NaN or infinite and does not recover.",
        "doc": {"what": "The loss turns NaN or inf.", "why": "Training has stopped learning.",
                "fixes": ["Lower the learning rate.", "Clip gradients."],
                "references": ["Goodfellow et al., Deep Learning, ch. 8."]},
        "thresholds": {"recover_window": 3},
    },
    {
        "id": "OVF001", "name": "val-loss-rising", "state": "overfit", "severity": "warning",
        "summary": "Validation loss rises from its minimum while training loss keeps falling.",
        "doc": {"what": "Val loss climbs after its minimum.", "why": "Memorisation.",
                "causes": ["Too many epochs."], "fixes": ["Early stopping."]},
        "thresholds": {"min_effect": 3.0},
    },
]


# ---------------------------------------------------------------------------
# Tests of the shared helpers
# ---------------------------------------------------------------------------


def test_exit_status_follows_fail_on() -> None:
    a = sample_analysis()
    assert exit_status(a, "error") == 1
    assert exit_status(a, "never") == 0
    quiet = Analysis(results=[RunResult(healthy_run())])
    assert exit_status(quiet, "warning") == 0
    assert exit_status(Analysis(errors=[LoadError("x", "y")]), "error") == 2


def test_summary_line_counts_everything() -> None:
    line = summary_line(sample_analysis(), "error")
    assert line == "3 runs: 1 error, 1 warning, 1 info, 1 unreadable; exit 1 with --fail-on error"
    one = Analysis(results=[RunResult(healthy_run())])
    assert summary_line(one, "warning") == "1 run: no findings; exit 0 with --fail-on warning"


def test_ordered_findings_most_severe_first() -> None:
    result = sample_analysis().results[1]
    assert [f.rule for f in ordered_findings(result)] == ["OVF001", "PLT002"]
    assert verdict(result) == "overfit"
    assert verdict(sample_analysis().results[2]) == "healthy"


def test_value_and_recommendation_formatting() -> None:
    assert fmt_value(0.1) == "0.1"
    assert fmt_value(3.0) == "3"
    assert fmt_value(np.float64(1.23456789e-5)) == "1.235e-05"
    assert fmt_value(float("nan")) == "NaN"
    assert fmt_value(None) == "?"
    rec = div_finding().recommendations[0]
    assert recommendation_line(rec) == (
        "learning_rate: 0.1 -> 0.03 (loss rose 40x before NaN: step size too large)"
    )
    assert recommendation_line(div_finding().recommendations[1]).startswith(
        "grad_clip: enable -> 1"
    )


def test_rule_index_merges_specs_and_findings() -> None:
    a = sample_analysis()
    idx = rule_index(RULES, a)
    assert idx["DIV001"].doc["fixes"] == ["Lower the learning rate.", "Clip gradients."]
    assert idx["PLT002"].name == "metric-flat-tail"  # known only from its finding
    assert list(idx)[:2] == ["DIV001", "OVF001"]


def test_render_rejects_unknown_format_and_fail_on() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(sample_analysis(), "html")
    with pytest.raises(ValueError, match="fail_on"):
        render(sample_analysis(), "text", "sometimes")


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/snapshots/NAME; DIAGNOSE_UPDATE_SNAPSHOTS=1 rewrites it.

    A missing snapshot fails (it is never created silently, or the test could not fail).
    """
    import os

    path = SNAPSHOTS / name
    if os.environ.get("DIAGNOSE_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing snapshot {path}; run with DIAGNOSE_UPDATE_SNAPSHOTS=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its snapshot; inspect and update it"


def many_runs(n: int, with_roles: bool = True) -> Analysis:
    """``n`` runs cycling through the three shapes above (for listing-speed tests)."""
    import copy

    bases = [diverged_run(), overfit_run(), healthy_run()]
    roles = [
        {"train_loss": "loss/train", "val_loss": "loss/val", "learning_rate": "lr"},
        {"train_loss": "loss", "val_loss": "val_loss", "val_metric": "val_accuracy",
         "train_metric": "accuracy"},
        {"train_loss": "train_loss", "val_loss": "val_loss"},
    ]
    findings = [[div_finding()], [ovf_finding(), plateau_info()], []]
    results = []
    for i in range(n):
        run = copy.copy(bases[i % 3])
        run.run_id = f"sweep/run{i:04d}"
        results.append(RunResult(run, roles=roles[i % 3] if with_roles else {},
                                 findings=list(findings[i % 3])))
    return Analysis(results=results)
