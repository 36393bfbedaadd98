"""GitHub workflow-command annotations: escaping and the 10-per-type display cap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from test_report_common import (
    check_snapshot,
    div_finding,
    healthy_run,
    hostile_analysis,
    ovf_finding,
    plateau_info,
    sample_analysis,
)

from diagnose.findings import Analysis, RunResult
from diagnose.report import render
from diagnose.report.github import MAX_PER_TYPE, command, escape_data, escape_property


def test_escaping_follows_the_runner() -> None:
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert command("error", "x: y, z", file="a,b:c", title="T 1") == (
        "::error file=a%2Cb%3Ac,title=T 1::x: y, z")
    assert command("notice", "m") == "::notice::m"


def test_annotations_are_one_line_each_and_cannot_inject() -> None:
    out = render(hostile_analysis(), "github")
    lines = out.splitlines()
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines[:-1])
    assert lines[-1].startswith("1 run:")
    assert len(lines) == 3  # one load error, one warning, the summary
    assert "::error::pwned" not in out.replace("%0A::error::pwned", "")
    warning = next(x for x in lines if x.startswith("::warning"))
    head, _, message = warning.partition("::")[2].partition("::")
    assert "title=OVF001 val-loss-rising" in head
    assert "%0Aat <b>step</b> 3" in message


def test_sample_annotations_snapshot() -> None:
    out = render(sample_analysis(), "github")
    assert out.splitlines()[0].startswith("::error file=logs/sweep/lr0.1/events.out.tfevents.1,")
    check_snapshot("report_github.txt", out)


def _flood(n_err: int, n_warn: int, n_info: int) -> Analysis:
    results = []
    for i in range(max(n_err, n_warn, n_info)):
        findings = []
        if i < n_err:
            findings.append(replace(div_finding(), step=i))
        if i < n_warn:
            findings.append(replace(ovf_finding(), step=i))
        if i < n_info:
            findings.append(replace(plateau_info(), step=i))
        run = healthy_run(f"run{i:02d}")
        results.append(RunResult(run, findings=findings))
    return Analysis(results=results)


def test_ten_per_type_most_severe_first_then_overflow_notices() -> None:
    lines = render(_flood(25, 12, 15), "github").splitlines()
    kinds = [line.split(" ", 1)[0].split("::")[1] for line in lines if line.startswith("::")]
    assert kinds.count("error") == MAX_PER_TYPE
    assert kinds.count("warning") == MAX_PER_TYPE
    assert kinds.count("notice") <= MAX_PER_TYPE
    assert kinds[:10] == ["error"] * 10  # errors first
    notices = [line for line in lines if line.startswith("::notice")]
    assert "15 more error annotations not shown" in notices[0]
    assert "2 more warning annotations not shown" in notices[1]
    assert "more notice annotations not shown" in notices[2]
    shown_info = sum("PLT002" in n for n in notices)
    hidden = int(notices[2].split("::")[-1].split(" ")[0])
    assert shown_info + hidden == 15


def test_no_overflow_notice_under_the_cap() -> None:
    out = render(_flood(10, 3, 2), "github")
    assert "not shown" not in out
    assert out.count("::error ") == 10 and out.count("::notice ") == 2


def test_escape_bytes_osc8_and_c0_never_reach_the_log() -> None:
    analysis = hostile_analysis()
    run = analysis.results[0].run
    run.run_id = "a\x1b]8;;http://evil\x07click\x1b]8;;\x07\x1b[2J\x00\x08b\udcff"
    run.sources = [Path(f"logs/{run.run_id}/events.out.tfevents.1")]
    out = render(analysis, "github")
    for raw in ("\x1b", "\x07", "\x00", "\x08", "\udcff"):
        assert raw not in out
    line = next(ln for ln in out.splitlines() if ln.startswith("::") and "\\x1b]8" in ln)
    file_prop = line.split("file=", 1)[1].split(",", 1)[0]
    assert "\\x1b]8;;http%3A/evil\\x07click" in file_prop and "\\xff" in file_prop
    assert "a\\x1b]8;;http://evil\\x07click\\x1b]8;;\\x07\\x1b[2J\\x00\\x08b\\xff: " in line
    # every line is an annotation of ours or the summary: nothing can start a command
    assert all(ln.startswith(("::error ", "::warning ", "::notice ")) or " runs" in ln
               or ln.startswith("1 run") for ln in out.splitlines())
