"""The markdown advice report: content, escaping of hostile names, plots, step summary."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shared_data import require, shared
from test_report_common import (
    HOSTILE,
    RULES,
    check_snapshot,
    div_finding,
    hostile_analysis,
    many_runs,
    sample_analysis,
)

from diagnose.findings import Analysis, RunResult
from diagnose.report import render, write_report
from diagnose.report.markdown import md_code, md_text
from diagnose.report.plots import draw, envelope, key_metric, plot_data
from diagnose.run import Run, make_scalars


def _cells(row: str) -> list[str]:
    """Split a GFM table row on unescaped pipes, as GitHub does."""
    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def test_markdown_snapshot() -> None:
    check_snapshot("report.md", render(sample_analysis(), "markdown", rules=RULES))


def test_summary_table_and_sections() -> None:
    out = render(sample_analysis(), "markdown", rules=RULES)
    rows = [
        "| ❌ | [`sweep/lr0.1`](#run-1) | divergence | val loss min 0.108 (final 0.753) | 150 |",
        "| ⚠️ | [`sweep/lr0.01`](#run-2) | overfit | val accuracy max 0.76 (final 0.67) | 14 |",
        "| ✅ | `baseline` | healthy | val loss min 0.2 | 19 |",
        "| `learning_rate` | decrease | 0.1 → 0.03 | loss rose 40x before NaN: step size too "
        "large (DIV001) |",
    ]
    for row in rows:
        assert row in out
    assert "first\\_nonfinite\\_step: 170<br>" in out
    assert "- `truncated`: last record cut short; 12 bytes ignored (`events.out.tfevents.1`)" in out
    assert "/somewhere/abs" not in out  # absolute paths never leak into a PR comment
    assert "<details><summary>DIV001 loss-non-finite — Loss becomes NaN" in out
    assert "## Unreadable runs" in out and "## Sweep insights" in out
    assert "1 run with no findings and no ingest notes is listed in the table only." in out


def test_hostile_names_are_escaped() -> None:
    out = render(hostile_analysis(), "markdown")
    # every '<' outside code spans is escaped, except the tags the report writes itself
    outside = re.sub(r"(`+)(?:(?!\1).)+\1", "", out)
    outside = re.sub(r'<a id="run-\d+"></a>|<br>', "", outside)
    assert re.findall(r"(?<!\\)<", outside) == []
    assert re.findall(r"(?<!\\)\]\((?!#run-)", outside) == []  # only our own anchor links
    assert "\\[click\\](http://evil)" in out
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            assert len(_cells(line)) in (2, 4, 5), line
    header = next(ln for ln in out.splitlines() if ln.startswith("## "))
    assert header == "## ⚠️ 1. ``a|b`<script>` [x](http://e)``"
    assert "\\$x\\$ \\@someone" in out  # no math, no mention


def test_escape_helpers() -> None:
    assert md_text("a|b `c` <d> [e](f) *g* _h_ \n i") == (
        "a\\|b \\`c\\` \\<d\\> \\[e\\](f) \\*g\\* \\_h\\_   i")
    assert md_code("x`y|z") == "``x`y\\|z``"
    assert md_code("x|z", table=False) == "`x|z`"
    assert md_code("`a`") == "`` `a` ``"
    assert md_code("") == "(empty)"


def test_plot_data_picks_series_markers_and_best() -> None:
    analysis = sample_analysis()
    data = plot_data(analysis.results[0])
    assert [p["key"] for p in data["panels"]] == ["loss", "lr"]
    loss = data["panels"][0]
    assert [ln["role"] for ln in loss["lines"]] == ["train_loss", "val_loss"]
    assert loss["lines"][0]["nonfinite_steps"][0] == 170
    assert loss["lines"][0]["nonfinite_spans"] == [(170, 199)]
    assert loss["log"] is False  # 0.09 .. 3.9: under two decades
    assert data["markers"] == [{"step": 170, "rules": ["DIV001"], "severity": "error"}]
    assert data["best"]["step"] == 150 and data["best"]["panel"] == "loss"
    overfit = plot_data(analysis.results[1])
    assert [p["key"] for p in overfit["panels"]] == ["loss", "metric"]
    assert overfit["panels"][1]["ylabel"] == "accuracy"
    assert overfit["best"]["step"] == 14 and overfit["best"]["panel"] == "metric"
    assert [m["step"] for m in overfit["markers"]] == [12]  # the info finding has no step


def test_log_scale_when_loss_spans_decades() -> None:
    steps = np.arange(500)
    run = Run("decades", Path("decades"), "csv",
              scalars=make_scalars("loss", steps, 10.0 * np.exp(-steps / 40) + 1e-3)).finalize()
    data = plot_data(RunResult(run))
    assert data["panels"][0]["log"] is True
    neg = Run("neg", Path("neg"), "csv", scalars=make_scalars("loss", steps, -steps - 1.0))
    assert plot_data(RunResult(neg.finalize()))["panels"][0]["log"] is False


def test_envelope_keeps_spikes_of_a_million_points() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1_000_000)
    values = 1 + 0.01 * rng.standard_normal(len(steps))
    values[654_321] = 50.0
    env = envelope(steps, values, max_points=2000)
    assert len(env["values"]) <= 1000
    assert env["high"].max() == 50.0 and env["low"].min() < 0.97
    assert env["steps"][0] < env["steps"][-1]
    small = envelope(steps[:10], values[:10])
    assert small["low"] is None and len(small["values"]) == 10


def test_million_point_run_plots_fast(tmp_path: Path) -> None:
    n = 1_000_000
    steps = np.arange(n)
    loss = 2 * np.exp(-steps / 2e5) + 0.1
    run = Run("big", Path("big"), "tensorboard",
              scalars=make_scalars(["loss/train"] * n, steps, loss)).finalize()
    start = time.perf_counter()
    data = plot_data(RunResult(run, roles={"train_loss": "loss/train"}))
    png = draw(data, tmp_path / "big.png")
    elapsed = time.perf_counter() - start
    assert len(data["panels"][0]["lines"][0]["steps"]) <= 1000
    assert png is not None and png.stat().st_size > 5000
    assert elapsed < 20, f"1M-point plot took {elapsed:.1f}s"


def test_key_metric_falls_back_to_losses() -> None:
    analysis = sample_analysis()
    km = key_metric(analysis.results[0])
    assert (km.role, km.kind, km.step) == ("val_loss", "min", 150)
    train_only = Run("t", Path("t"), "csv",
                     scalars=make_scalars("loss", np.arange(5), [5, 4, 3, 2, 1.0])).finalize()
    km = key_metric(RunResult(train_only))
    assert km.text == "train loss final 1"


def test_key_metric_never_comes_from_a_pinned_accuracy() -> None:
    """A real Keras run (DermaMNIST) whose val accuracy sits at the majority-class share
    every epoch: the key metric and best step come from the val loss, as in sweep."""
    import diagnose
    from diagnose.metrics import Role

    path = require(shared("real_logs_more", "keras_derma_majority_9ep"))
    result = diagnose.analyze(path).results[0]
    acc = result.resolved_roles().get(Role.VAL_METRIC)
    assert acc is not None and len(set(acc.finite.values)) == 1  # the case itself
    km = key_metric(result)
    assert km is not None and (km.role, km.kind, km.step) == ("val_loss", "min", 3)
    assert [r for r, _ in result.resolved_roles().objectives()] == [Role.VAL_LOSS,
                                                                   Role.TRAIN_LOSS]


def _png_ok(path: Path) -> None:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.width > 300 and img.height > 200
        arr = np.asarray(img.convert("L"))
    assert arr.std() > 5  # not a blank canvas


def test_write_report_with_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    report = tmp_path / "out" / "advice.md"
    files = write_report(sample_analysis(), report, rules=RULES)
    assert files[0] == report
    pngs = files[1:]
    assert [p.name for p in pngs] == ["001-sweep_lr0.1.png", "002-sweep_lr0.01.png",
                                      "003-baseline.png"]
    for png in pngs:
        assert png.parent == tmp_path / "out" / "advice_plots"
        _png_ok(png)
    text = report.read_text(encoding="utf-8")
    assert "![curves of sweep/lr0.1](advice_plots/001-sweep_lr0.1.png)" in text
    assert "## ✅ 3. `baseline`" in text  # plotted runs get a section even when healthy
    # a second, smaller analysis removes the stale plots of the first
    small = Analysis(results=sample_analysis().results[:1])
    files = write_report(small, report)
    assert sorted(p.name for p in (tmp_path / "out" / "advice_plots").iterdir()) == [
        "001-sweep_lr0.1.png"]


def test_hostile_report_plots(tmp_path: Path) -> None:
    files = write_report(hostile_analysis(), tmp_path / "r.md")
    assert len(files) == 2
    _png_ok(files[1])
    assert "$" not in files[1].name and "|" not in files[1].name


def test_max_plots_prefers_severe_runs(tmp_path: Path) -> None:
    analysis = sample_analysis()
    files = write_report(analysis, tmp_path / "r.md", max_plots=1)
    assert [p.name for p in files[1:]] == ["001-sweep_lr0.1.png"]
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "_plot omitted: the report draws at most 1 runs_" in text


def test_step_summary_is_appended_without_images(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_report(sample_analysis(), tmp_path / "r.md")
    write_report(Analysis(results=[RunResult(sample_analysis().results[2].run)]),
                 tmp_path / "r2.md")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("previous step\n# diagnose report")
    assert text.count("# diagnose report") == 2
    assert "![" not in text
    assert "_plots are in r.md and r_plots/ (not shown in step summaries)_" in text


def test_thousand_run_markdown_is_quick() -> None:
    analysis = many_runs(1000)
    start = time.perf_counter()
    out = render(analysis, "markdown")
    elapsed = time.perf_counter() - start
    assert out.count("\n| ") >= 1000 and "sweep/run0999" in out
    assert elapsed < 30, f"1,000-run markdown took {elapsed:.1f}s"


def test_hostile_name_constant_is_what_the_brief_names() -> None:
    assert HOSTILE == "a|b`<script>` [x](http://e)"
    assert div_finding().rule == "DIV001"
