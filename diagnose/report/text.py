"""``--format text``: the default listing, for a person at a terminal or a CI log.

Grouped by run, one finding per line, the summary line last (as ruff and pytest do).  Two
renderings of the same listing:

- plain (pipes, files, CI logs): one logical line per output line, never an ANSI code,
  each recommendation on its own line with its rationale, so ``grep`` finds it whole;
- terminal (``color``): styled and wrapped to the terminal's width with a hanging indent,
  a finding's changes on one line (the rationale is in ``-v``, piped output and
  ``--report``), so an 80-column terminal shows no more lines than the pipe does.

Names and messages come from untrusted log files: both paths print them through
:func:`~diagnose.report.clean` (control bytes and undecodable bytes made visible) and
style them with fixed SGR codes, never with markup, so a name cannot inject escapes.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from diagnose.findings import Analysis, RunResult
from diagnose.report import (
    clean,
    display_path,
    exit_status,
    fmt_value,
    ordered_findings,
    recommendation_line,
    run_label,
    summary_line,
    verdict,
)

#: Notes that never change what a run's curves say (a YAML tag read as data, a series
#: written twice, a step logged twice): shown with ``-v`` only.  Every other note (data
#: lost, truncated, restarted, unreadable, any code added later) is shown by default.
ROUTINE_NOTES = frozenset({"unsupported", "duplicate_series", "duplicate_steps"})

_SGR = {"bold": "1", "bold red": "1;31", "yellow": "33", "cyan": "36", "green": "32",
        "dim": "2", "bold green": "1;32"}
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}

#: A wrapped message continues under its rule id (``  warning ``): aligned under the
#: message itself it would get 62 of 80 columns and wrap a third more often.
_HANG = 10
#: Rows a finding's message may take on a terminal at the default verbosity (``-v``: all).
_FINDING_ROWS = 2


def _finding_rows(severity: str) -> int:
    """An info note is context, not a call to act: one row on a terminal (``-v`` and
    piped output show it whole); a warning or error keeps ``_FINDING_ROWS``."""
    return 1 if severity == "info" else _FINDING_ROWS
_NBSP = "\u00a0"  # keeps one change on one row; printed as a plain space
#: Width assumed when the terminal's cannot be read (and never less than this).
_MIN_WIDTH = 40


@dataclass
class _Line:
    """One logical line: a styled head kept whole, then a body wrapped under ``hang``."""

    head: list[tuple[str, str]]
    body: str = ""
    body_style: str = ""
    hang: int = _HANG
    #: On a terminal at the default verbosity, at most this many rows (the last ends in
    #: an ellipsis); ``-v`` and piped output always show the whole line.
    max_rows: int | None = None


def render_text(
    analysis: Analysis,
    fail_on: str = "error",
    *,
    color: bool | None = None,
    verbosity: int = 0,
    width: int | None = None,
) -> str:
    """The listing.  ``color`` (None: when stdout is a terminal) also selects the wrapped
    terminal layout; ``verbosity`` -1 is ``-q`` (findings only), 1 is ``-v`` (every note,
    not-applicable rules, rationales); ``width`` defaults to the terminal's."""
    if color is None:
        color = _stdout_is_tty()
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns if color else 0
    width = max(width, _MIN_WIDTH)
    lines = _listing(analysis, fail_on, verbosity, bool(color), width)
    if not color:
        return "".join(_plain(line) + "\n" for line in lines)
    return "".join(_styled(line, width) for line in lines)


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------
# The listing (shared by both renderings)
# ---------------------------------------------------------------------------


def _steps(result: RunResult) -> str:
    rng = result.run.step_range
    return f"steps {rng[0]}-{rng[1]}" if rng else "no scalars"


def _verdict(result: RunResult) -> tuple[str, str]:
    text = verdict(result)
    if text.startswith("not judged"):
        return text, "yellow"
    if result.states:
        return text, "bold"
    return ("healthy" if result.findings else "healthy: no findings"), "green"


def _insight_line(item: Any) -> str:
    """One sweep insight: its message when it has one, else its key=value pairs."""
    if isinstance(item, dict):
        for key in ("message", "summary", "text"):
            if item.get(key):
                return clean(item[key])
        return ", ".join(f"{clean(k)}={clean(fmt_value(v))}" for k, v in item.items())
    return clean(fmt_value(item))


def _sweeps(analysis: Analysis) -> list[str]:
    sweeps = analysis.extras.get("sweeps")
    if not sweeps:
        return []
    items = sweeps if isinstance(sweeps, list) else [sweeps]
    return [_insight_line(i) for i in items]


def _new_recommendations(
    f: Any, shown: dict[tuple[str, str, str], str]
) -> tuple[list[Any], list[str]]:
    """Recommendations not yet printed for this run, and the rules that printed the rest.

    The recommender attaches a run's changes to each finding that motivates them; a
    listing repeats each change once, under the most severe finding.
    """
    fresh, earlier = [], []
    for rec in f.recommendations:
        key = (rec.hyperparameter, rec.action, repr(rec.proposed))
        if key in shown:
            if shown[key] not in earlier and shown[key] != f.rule:
                earlier.append(shown[key])
        else:
            shown[key] = f.rule
            fresh.append(rec)
    return fresh, earlier


def _change(rec: Any) -> str:
    """'learning_rate 0.1 -> 0.03', 'warmup_steps -> 500', 'enable data_augmentation':
    a recommendation without its rationale, for the terminal's one line of changes."""
    if rec.action in ("enable", "disable") and rec.current is None and (
        rec.proposed is None or isinstance(rec.proposed, bool)
    ):
        return f"{rec.action} {rec.hyperparameter}"
    if rec.proposed is None:
        return f"{rec.hyperparameter}: {rec.action}"
    current = "" if rec.current is None else f"{fmt_value(rec.current)} "
    return f"{rec.hyperparameter} {current}-> {fmt_value(rec.proposed)}"


def visible_notes(result: RunResult, verbosity: int = 0) -> tuple[list[Any], int]:
    """The run's notes worth showing, without repeats, and how many were held back.

    A note is held back at the default verbosity when it is routine (:data:`ROUTINE_NOTES`)
    or when one of the run's findings already says it (the restart note beside LOG003).
    """
    said = " ".join(f.message for f in result.findings)
    seen: set[tuple[str, str, str]] = set()
    shown, hidden = [], 0
    for note in result.run.notes:
        key = (note.code, note.message, str(note.path or ""))
        if key in seen:
            continue
        seen.add(key)
        repeated = bool(note.message) and note.message in said
        if verbosity < 1 and (note.code in ROUTINE_NOTES or repeated):
            hidden += 1
        else:
            shown.append(note)
    return shown, hidden


def _line_start(name: str) -> str:
    """A run name that begins a line: escaped, and never starting with ``::`` (a GitHub
    runner reads a log line that starts so as a workflow command)."""
    text = clean(name)
    return "\\x3a" + text[1:] if text.startswith("::") else text


def _run_lines(
    result: RunResult, verbosity: int, terminal: bool, width: int
) -> tuple[list[_Line], int]:
    run = result.run
    text, style = _verdict(result)
    name, meta = f"{_line_start(run_label(run))}  ", f"{clean(run.format)}  {_steps(result)}  "
    if terminal and len(name) + len(meta) + len(text) > width:
        meta = ""  # the format and steps give way before the verdict wraps
    out = [_Line([(name, "bold"), (meta, "dim"), (text, style)], hang=4)]
    shown: dict[tuple[str, str, str], str] = {}
    for f in ordered_findings(result):
        message = clean(f.message)
        if f.step is not None and f"step {f.step}" not in f.message:
            message += f" (step {f.step})"
        out.append(_Line([(f"  {f.severity:<8}", _SEV_STYLE[f.severity]),
                          (f"{clean(f.rule):<7} ", "bold")], message,
                         max_rows=_finding_rows(f.severity) if terminal and verbosity < 1
                         else None))
        recs, same_as = _new_recommendations(f, shown)
        pad = " " * _HANG
        if terminal and verbosity < 1:
            # the changes already listed under an earlier finding are not repeated here
            changes = [clean(_change(r)).replace(" ", _NBSP) for r in recs]
            if changes:  # wrapped between changes, never inside one
                out.append(_Line([(f"{pad}-> ", "green")], "; ".join(changes), "green",
                                 _HANG + 3))
        else:
            out.extend(_Line([(f"{pad}-> ", "green")], clean(recommendation_line(r)), "green",
                             _HANG + 3) for r in recs)
            if same_as:
                out.append(_Line([(f"{pad}-> ", "green")],
                                 f"same changes as {', '.join(same_as)}", "green", _HANG + 3))
    notes, hidden = visible_notes(result, verbosity)
    for note in notes:
        where = f" ({clean(display_path(note.path))})" if note.path else ""
        out.append(_Line([("  note    ", "dim")],
                         f"{clean(note.code)}: {clean(note.message)}{where}", "dim", 10,
                         max_rows=1 if terminal and verbosity < 1 else None))
    if verbosity >= 1:
        classes = result.class_count()
        said = (f"{classes['count']} (from {classes['source']})" if classes["count"]
                else "unknown: chance levels are read from the log's own first losses; "
                     "for a classifier, --hparam num_classes=N sets them")
        out.append(_Line([("  classes ", "dim")], clean(said), "dim", 10))
    if verbosity >= 1 and result.not_applicable:
        out.append(_Line([("  n/a     ", "dim")],
                         "rules not applicable to this run's metrics: "
                         + ", ".join(clean(r) for r in result.not_applicable), "dim", 10))
    return out, hidden


def _listing(
    analysis: Analysis, fail_on: str, verbosity: int, terminal: bool, width: int
) -> list[_Line]:
    """Every line of the listing, runs first and the summary line last."""
    out: list[_Line] = []
    hidden = 0
    for result in analysis.results:
        if verbosity < 0 and not result.findings:
            continue
        lines, held = _run_lines(result, verbosity, terminal, width)
        out.extend(lines if verbosity >= 0 else [ln for ln in lines if not _is_note(ln)])
        hidden += held if verbosity >= 0 else 0
    insights = _sweeps(analysis) if verbosity >= 0 else []
    if insights:
        out += [_Line([]), _Line([("sweep insights:", "bold")])]
        out.extend(_Line([("  ", "")], line, "", 4) for line in insights)
    if analysis.errors:
        out += [_Line([]), _Line([("errors:", "bold red")])]
        out.extend(_Line([("  ", ""), (clean(display_path(e.path)), "bold")],
                         f": {clean(e.message)}", "", 4) for e in analysis.errors)
    summary = summary_line(analysis, fail_on)
    if hidden:
        summary += f" ({hidden} routine note{'s' if hidden != 1 else ''} hidden, -v)"
    style = "bold red" if exit_status(analysis, fail_on) else "bold"
    out += [_Line([]), _Line([(summary, style)], hang=4)]
    return out


def _is_note(line: _Line) -> bool:
    return bool(line.head) and line.head[0][0].startswith(("  note ", "  n/a "))


# ---------------------------------------------------------------------------
# Renderings
# ---------------------------------------------------------------------------


def _plain(line: _Line) -> str:
    return "".join(text for text, _ in line.head) + line.body


def _paint(text: str, style: str) -> str:
    code = _SGR.get(style)
    return f"\x1b[{code}m{text}\x1b[0m" if code and text else text


def _styled(line: _Line, width: int) -> str:
    """The line wrapped to ``width`` under its hanging indent, styled with SGR codes.

    Every continuation line starts with spaces, so no wrapped text can begin a line
    (a ``::command`` in a name cannot become a GitHub workflow command).
    """
    head = "".join(text for text, _ in line.head)
    hang = min(line.hang, width // 2)
    if len(head) >= width - 10:  # a very long name: wrap the head too
        wrapped = _wrap(head + line.body, width, 0, hang)
        return "".join(_paint(row, line.body_style or "bold") + "\n" for row in wrapped)
    rows = _wrap(line.body, width, len(head), hang) if line.body else [""]
    if line.max_rows is not None and len(rows) > line.max_rows:
        rows = rows[: line.max_rows]
        rows[-1] = rows[-1][: width - 1].rstrip() + "…"
    first = "".join(_paint(text, style) for text, style in line.head)
    first += _paint(rows[0][len(head):], line.body_style)
    rest = "".join(" " * hang + _paint(row[hang:], line.body_style) + "\n" for row in rows[1:])
    return first + "\n" + rest


def _wrap(text: str, width: int, first: int, hang: int) -> list[str]:
    rows = textwrap.wrap(
        text, width, initial_indent=" " * first, subsequent_indent=" " * hang,
        break_on_hyphens=False, drop_whitespace=True,
    )
    return [row.replace(_NBSP, " ") for row in rows] or [" " * first]
