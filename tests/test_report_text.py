"""The text listing: plain without ANSI codes off a terminal, rich with colour on one."""

from __future__ import annotations

import io
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from shared_data import needs, shared
from test_report_common import (
    check_snapshot,
    healthy_run,
    hostile_analysis,
    many_runs,
    sample_analysis,
)

from diagnose.findings import Analysis, LoadError, RunResult
from diagnose.report import display_path, render, run_label
from diagnose.report.text import render_text
from diagnose.run import IngestNote

ANSI = "\x1b["


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Absolute note paths are shown relative to the cwd: pin the cwd for snapshots."""
    monkeypatch.chdir("/")


def test_plain_text_snapshot(at_root: None) -> None:
    out = render(sample_analysis(), "text", color=False)
    check_snapshot("report_text.txt", out)


def test_no_ansi_when_stdout_is_not_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # isatty() is False
    out = render(sample_analysis(), "text")  # color=None: decided by stdout
    assert ANSI not in out
    assert "sweep/lr0.1  tensorboard  steps 0-199  divergence" in out


def test_colour_when_asked() -> None:
    out = render(sample_analysis(), "text", color=True)
    assert ANSI in out
    for needle in ("sweep/lr0.1", "DIV001", "learning_rate 0.1 -> 0.03", "broken/run",
                   "3 runs: 1 error, 1 warning, 1 info, 1 unreadable; exit 1"):
        assert needle in out


def test_hostile_names_cannot_inject_escape_codes() -> None:
    analysis = hostile_analysis()
    analysis.results[0].run.run_id = "evil\x1b[31mred\rline"
    plain = render(analysis, "text", color=False)
    assert ANSI not in plain and "\r" not in plain
    assert "evil\\x1b[31mred\\x0dline" in plain
    rich = render(analysis, "text", color=True)
    assert "\x1b[31mred" not in rich  # shown as text, never as a real escape
    # rich markup in a name is printed literally, not interpreted
    analysis.results[0].run.run_id = "[bold]x[/bold]"
    assert "[bold]x[/bold]" in render(analysis, "text", color=True)


def test_healthy_run_says_so_and_fail_on_changes_the_exit() -> None:
    analysis = Analysis(results=[RunResult(healthy_run())])
    out = render(analysis, "text", "warning", color=False)
    assert "baseline  csv  steps 0-19  healthy: no findings" in out
    assert out.rstrip().endswith("1 run: no findings; exit 0 with --fail-on warning")
    assert "exit 0 with --fail-on never" in render(sample_analysis(), "text", "never",
                                                    color=False)


def test_repeated_recommendations_are_listed_once_per_run() -> None:
    analysis = sample_analysis()
    result = analysis.results[1]
    first, second = result.findings[1], result.findings[0]
    result.findings[0] = second.with_recommendations(list(first.recommendations))
    out = render(analysis, "text", color=False)
    assert out.count("epochs: 30 -> 13") == 1
    assert "-> same changes as OVF001" in out


def test_no_readable_run_exits_2() -> None:
    analysis = Analysis(errors=[LoadError("a", "no readable records")])
    out = render(analysis, "text", color=False)
    assert "errors:\n  a: no readable records" in out
    assert out.rstrip().endswith("0 runs: no findings, 1 unreadable; exit 2 with --fail-on error")


def test_thousand_runs_list_fast() -> None:
    analysis = many_runs(1000)
    start = time.perf_counter()
    plain = render(analysis, "text", color=False)
    rich = render(analysis, "text", color=True)
    elapsed = time.perf_counter() - start
    assert plain.count("\n") > 3000 and "sweep/run0999" in rich
    assert "1000 runs: 334 errors, 333 warnings, 333 info; exit 1" in plain
    assert elapsed < 10, f"1,000-run listing took {elapsed:.1f}s"


# ---------------------------------------------------------------------------
# Terminal layout, verbosity, notes, names (issue 11)
# ---------------------------------------------------------------------------

SGR = re.compile(r"\x1b\[[0-9;]*m")


def _rows(text: str) -> list[str]:
    return SGR.sub("", text).splitlines()


@pytest.fixture(scope="module")
def lr_sweep() -> Analysis:
    """The bundled lr_sweep sample, analysed for real (4 runs, every layout element)."""
    from diagnose.pipeline import analyze

    return analyze([str(Path(__file__).resolve().parents[1] / "sample_logs" / "lr_sweep")])


@pytest.mark.parametrize("width", [40, 80, 120])
def test_terminal_rows_fit_and_never_outnumber_the_piped_lines(
    lr_sweep: Analysis, width: int
) -> None:
    piped = render_text(lr_sweep, color=False)
    shown = render_text(lr_sweep, color=True, width=width)
    rows = _rows(shown)
    assert all(len(r) <= width for r in rows), max(rows, key=len)
    if width >= 100:  # 80 columns: see the real-log test below
        assert len(rows) <= len(piped.splitlines())
    # one finding per line, grouped under its run; the summary line last
    assert "4 runs: 2 errors" in " ".join(rows[-2:])
    assert all(not r.startswith(("::", " ::")) for r in rows)
    for line in piped.splitlines():
        assert "\x1b" not in line


def test_wrapped_rows_hang_under_the_rule_id() -> None:
    out = render_text(sample_analysis(), color=True, width=50)
    rows = _rows(out)
    start = next(i for i, r in enumerate(rows) if "DIV001" in r)
    assert rows[start].startswith("  error   DIV001  train loss")
    assert rows[start + 1].startswith(" " * 10) and rows[start + 1][10] != " "
    # the changes of a finding share one line, without their rationale
    assert any(r.strip().startswith("-> learning_rate 0.1 -> 0.03;") for r in rows)
    assert any("grad_clip -> 1" in r for r in rows)
    assert "step size too large" not in out
    verbose = render_text(sample_analysis(), color=True, verbosity=1, width=50)
    assert "step size too large" in " ".join(r.strip() for r in _rows(verbose))


def test_quiet_lists_findings_only_and_verbose_adds_rules_not_applicable() -> None:
    analysis = sample_analysis()
    analysis.results[0].not_applicable = ["GRD001", "BN001"]
    quiet = render_text(analysis, color=False, verbosity=-1)
    assert "baseline" not in quiet and "note" not in quiet and "sweep insights" not in quiet
    assert "DIV001" in quiet and "broken/run" in quiet
    assert quiet.rstrip().endswith("exit 1 with --fail-on error")
    verbose = render_text(analysis, color=False, verbosity=1)
    assert "n/a     rules not applicable to this run's metrics: GRD001, BN001" in verbose
    assert "GRD001" not in render_text(analysis, color=False)


def test_routine_notes_hidden_repeated_notes_once_verdict_notes_shown() -> None:
    analysis = sample_analysis()
    run = analysis.results[0].run
    restart = "log restarts at step 19; 21 earlier point(s) were replaced"
    f = analysis.results[0].findings[0]
    analysis.results[0].findings.append(
        replace(f, rule="LOG003", severity="info", message=f"the run was restarted: {restart}",
                recommendations=()))
    run.notes = [
        *run.notes,
        IngestNote("unsupported", "2 tagged YAML value(s) read as plain data", "hparams.yaml"),
        IngestNote("duplicate_series", "21 series were written twice"),
        IngestNote("restart", restart, "metrics.json"),
        IngestNote("skipped_rows", "3 rows could not be read", "metrics.csv"),
        IngestNote("skipped_rows", "3 rows could not be read", "metrics.csv"),
    ]
    out = render_text(analysis, color=False)
    assert out.count("skipped_rows: 3 rows could not be read") == 1  # data lost: shown once
    assert "truncated: last record cut short" in out
    assert "unsupported" not in out and "duplicate_series" not in out
    assert "restart: " not in out  # LOG003 already says it
    assert "(3 routine notes hidden, -v)" in out.splitlines()[-1]
    verbose = render_text(analysis, color=False, verbosity=1)
    for code in ("unsupported", "duplicate_series", "restart", "skipped_rows"):
        assert f"note    {code}: " in verbose
    assert verbose.count("skipped_rows: ") == 1


def test_a_run_the_engine_could_not_judge_is_never_called_healthy() -> None:
    result = RunResult(healthy_run(), unjudged="no loss metric")
    assert result.verdict == "not_judged"
    for color in (False, True):
        out = _rows(render_text(Analysis(results=[result]), color=color, width=80))
        assert "not judged (no loss metric)" in out[0] and "healthy" not in out[0]


def test_a_run_given_as_the_path_is_named_by_its_folder(tmp_path: Path) -> None:
    run = healthy_run()
    run.run_id, run.path = ".", tmp_path / "my_run"
    assert run_label(run) == "my_run"
    assert render_text(Analysis(results=[RunResult(run)]), color=False).startswith("my_run  ")
    (tmp_path / "my_run").mkdir()
    (tmp_path / "my_run" / "metrics.csv").write_text("step,loss\n0,1\n")
    run.path = tmp_path / "my_run" / "metrics.csv"  # PATH was the log file itself
    assert run_label(run) == "my_run"
    run.run_id = "sub/run"
    assert run_label(run) == "sub/run"


def test_paths_are_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path("/elsewhere/logs/run/x.csv") == "/elsewhere/logs/run/x.csv"
    assert display_path(tmp_path / "logs" / "a.csv") == "logs/a.csv"
    assert display_path("../rel/a.csv") == "../rel/a.csv"


def test_undecodable_names_are_escaped_not_crashed() -> None:
    analysis = sample_analysis()
    analysis.results[0].run.run_id = "bad\udcff\udcfename"
    for color in (False, True):
        out = render(analysis, "text", color=color)
        out.encode("utf-8")
        assert "bad\\xff\\xfename" in out


REAL = shared("real_logs")


@pytest.mark.slow
@needs(REAL / "MANIFEST.tsv")
def test_real_logs_at_80_columns_take_no_more_lines_than_piped() -> None:
    """The issue's measure: 1,524 rows at 80 columns against 180 piped before; now the
    terminal rendering must not be longer than the pipe's."""
    from diagnose.pipeline import Options, analyze

    analysis = analyze([str(REAL)], options=Options(jobs=1))
    piped = render_text(analysis, color=False).splitlines()
    rows = _rows(render_text(analysis, color=True, width=80))
    assert all(len(r) <= 80 for r in rows)
    assert len(rows) <= len(piped), (len(rows), len(piped))


def test_an_info_note_takes_one_row_on_a_terminal_and_whole_when_piped() -> None:
    """Info notes are context: one row (ending in an ellipsis) at the default terminal
    verbosity; a warning keeps two rows; -v and the pipe show the whole message."""
    analysis = sample_analysis()
    info = next(f for r in analysis.results for f in r.findings if f.severity == "info")
    long = replace(info, message=info.message + " and" + " more context" * 12)
    result = analysis.results[1]
    analysis.results[1] = replace(result, findings=[long if f is info else f
                                                    for f in result.findings])
    rows = _rows(render_text(analysis, color=True, width=60))
    start = next(i for i, r in enumerate(rows) if long.rule in r and "info" in r)
    assert rows[start].endswith("…") and "context" not in rows[start + 1]
    warned = next(i for i, r in enumerate(rows) if r.lstrip().startswith("warning"))
    assert rows[warned + 1].startswith(" " * 10) and not rows[warned + 1].strip().startswith("->")
    assert "more context more context" in render_text(analysis, color=False)
    verbose = " ".join(r.strip() for r in _rows(render_text(analysis, color=True,
                                                            verbosity=1, width=60)))
    assert verbose.count("more context") == 12
