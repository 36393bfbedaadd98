"""``--format github``: GitHub Actions workflow-command annotations.

``::error file=F,title=T::message`` lines that GitHub turns into annotations on the
workflow run (and on the PR when the file is in the diff).  GitHub shows at most 10
annotations of each type per step, so the most severe are emitted first and, past 10 of a
type, one ``::notice`` says how many were left out; the ``--report`` file (appended to
the step summary too) has them all.  Data and properties are escaped exactly as the Actions runner
unescapes them, so a message from a hostile log cannot end the command early or inject a
second one.
"""

from __future__ import annotations

import re
from typing import Any

from diagnose.findings import Analysis
from diagnose.report import (
    display_path,
    escape_undecodable,
    ordered_findings,
    recommendation_line,
    run_label,
    run_location,
    summary_line,
)

#: GitHub displays at most this many annotations per type (error/warning/notice) per step.
MAX_PER_TYPE = 10

_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def escape_data(text: Any) -> str:
    """Escape a command's message part: control characters other than CR and LF (ESC,
    OSC-8, BEL...) and undecodable bytes made visible as ``\\xNN``, then % CR LF as the
    runner unescapes them, so every annotation stays one physical line."""
    s = escape_undecodable(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}"
                                        if ord(m.group()) < 0x100
                                        else f"\\u{ord(m.group()):04x}", str(text)))
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: Any) -> str:
    """Escape a property value (file=, title=): also ':' and ','."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **props: Any) -> str:
    """One workflow command line; properties with a None value are left out."""
    parts = [f"{k}={escape_property(v)}" for k, v in props.items() if v is not None]
    head = f"::{kind}" + (" " + ",".join(parts) if parts else "")
    return f"{head}::{escape_data(message)}"


def _annotations(analysis: Analysis) -> dict[str, list[str]]:
    """Annotation lines grouped by command type, most severe (then earliest) first."""
    groups: dict[str, list[str]] = {"error": [], "warning": [], "notice": []}
    for result in analysis.results:
        file = display_path(run_location(result.run))
        for f in ordered_findings(result):
            lines = [f"{run_label(result.run)}: {f.message}"]
            if f.step is not None and f"step {f.step}" not in f.message:
                lines[0] += f" (step {f.step})"
            lines.extend(f"-> {recommendation_line(r)}" for r in f.recommendations)
            groups[_COMMAND[f.severity]].append(
                command(_COMMAND[f.severity], "\n".join(lines), file=file,
                        title=f"{f.rule} {f.name}")
            )
    for err in analysis.errors:
        groups["error"].append(
            command("error", f"{err.path}: {err.message}", file=display_path(err.path),
                    title="diagnose could not read this run")
        )
    return groups


def _overflow(kind: str, hidden: int) -> str:
    plural = "s" if hidden != 1 else ""
    return command(
        "notice",
        f"{hidden} more {kind} annotation{plural} not shown (GitHub shows {MAX_PER_TYPE} per "
        "type per step); the --report file, also appended to the step summary, lists them all.",
        title="diagnose: more findings",
    )


def render_github(analysis: Analysis, fail_on: str = "error") -> str:
    """Annotations, capped per type, then the summary line as a plain log line."""
    groups = _annotations(analysis)
    out = groups["error"][:MAX_PER_TYPE] + groups["warning"][:MAX_PER_TYPE]
    overflow = [
        _overflow(kind, len(groups[kind]) - MAX_PER_TYPE)
        for kind in ("error", "warning")
        if len(groups[kind]) > MAX_PER_TYPE
    ]
    notices = groups["notice"]
    slots = MAX_PER_TYPE - len(overflow)
    if len(notices) > slots:
        slots -= 1
        overflow.append(_overflow("notice", len(notices) - slots))
    out += overflow + notices[:slots]
    # a plain log line: it must not start a workflow command (a name cannot reach it)
    out.append(summary_line(analysis, fail_on).lstrip(":"))
    return "\n".join(out) + "\n"
