"""The text listing: plain without ANSI codes off a terminal, rich with colour on one."""

from __future__ import annotations

import io
import sys
import time

import pytest
from test_report_common import (
    check_snapshot,
    healthy_run,
    hostile_analysis,
    many_runs,
    sample_analysis,
)

from diagnose.findings import Analysis, LoadError, RunResult
from diagnose.report import render

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
