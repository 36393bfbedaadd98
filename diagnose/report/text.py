"""``--format text``: the default listing, for a person at a terminal or a CI log.

Two renderings of the same content: a rich table with colour on a terminal, and plain
aligned lines otherwise (pipes, files, CI logs), which must never carry ANSI codes.  Names
and messages come from untrusted log files, so both paths print them as literal text
(rich ``Text``, never markup) with control bytes made visible.
"""

from __future__ import annotations

import io
import shutil
import sys
from typing import Any

from diagnose.findings import Analysis, RunResult
from diagnose.report import (
    clean,
    display_path,
    exit_status,
    fmt_value,
    ordered_findings,
    recommendation_line,
    summary_line,
    verdict,
)

_SEV_LABEL = {"error": "error", "warning": "warning", "info": "info"}
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_text(analysis: Analysis, fail_on: str = "error", *, color: bool | None = None) -> str:
    """The listing; rich with colour when ``color`` (None: when stdout is a terminal)."""
    if color is None:
        color = _stdout_is_tty()
    if color:
        return _render_rich(analysis, fail_on)
    return _render_plain(analysis, fail_on)


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _steps(result: RunResult) -> str:
    rng = result.run.step_range
    return f"steps {rng[0]}-{rng[1]}" if rng else "no scalars"


def _step(step: int | None) -> str:
    return f"step {step}" if step is not None else "-"


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


def _new_recommendations(f: Any, shown: dict[tuple, str]) -> tuple[list[Any], list[str]]:
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


# ---------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------


Line = list[tuple[str, str]]  # (text, rich style) segments of one output line


def _listing(analysis: Analysis, fail_on: str) -> list[Line]:
    """The listing as styled segments: joined bare for plain text, styled for a terminal.

    String work only (no table layout), so 1,000 runs list in well under a second.
    """
    out: list[Line] = []
    for result in analysis.results:
        run = result.run
        head = f"{clean(run.run_id)}  "
        meta = f"{clean(run.format)}  {_steps(result)}  "
        if result.verdict == "not_judged":  # never "healthy" for a run no rule could judge
            out.append([(head, "bold"), (meta, "dim"),
                        (f"not judged ({clean(result.not_judged_reason or '')})", "yellow")])
        elif result.states:
            out.append([(head, "bold"), (meta, "dim"), (verdict(result), "bold")])
        elif result.findings:
            out.append([(head, "bold"), (meta, "dim"), ("healthy", "green")])
        else:
            out.append([(head, "bold"), (meta, "dim"), ("healthy: no findings", "green")])
        shown: dict[tuple, str] = {}
        for f in ordered_findings(result):
            out.append([
                (f"  {_SEV_LABEL[f.severity]:<8} ", _SEV_STYLE[f.severity]),
                (f"{clean(f.rule):<7} ", "bold"),
                (f"{_step(f.step):<11} ", "dim"),
                (clean(f.message), ""),
            ])
            recs, same_as = _new_recommendations(f, shown)
            out.extend([(f"{'':>30}-> {clean(recommendation_line(rec))}", "green")]
                       for rec in recs)
            if same_as:
                out.append([(f"{'':>30}-> same changes as {', '.join(same_as)}", "green")])
        for note in run.notes:
            where = f" ({clean(display_path(note.path))})" if note.path else ""
            out.append([(f"  {'note':<8} {clean(note.code)}: {clean(note.message)}{where}",
                         "dim")])
    out.extend(_tail(analysis, fail_on))
    return out


def _tail(analysis: Analysis, fail_on: str) -> list[Line]:
    """Sweep insights, unreadable runs and the summary line, after the runs."""
    out: list[Line] = []
    insights = _sweeps(analysis)
    if insights:
        out.append([])
        out.append([("sweep insights:", "bold")])
        out.extend([(f"  {line}", "")] for line in insights)
    if analysis.errors:
        out.append([])
        out.append([("errors:", "bold red")])
        out.extend([("  ", ""), (clean(e.path), "bold"), (f": {clean(e.message)}", "")]
                   for e in analysis.errors)
    out.append([])
    style = "bold red" if exit_status(analysis, fail_on) else "bold"
    out.append([(summary_line(analysis, fail_on), style)])
    return out


def _render_plain(analysis: Analysis, fail_on: str) -> str:
    """Aligned lines without any escape codes, for pipes, files and CI logs."""
    lines = _listing(analysis, fail_on)
    return "\n".join("".join(text for text, _ in line) for line in lines) + "\n"


# ---------------------------------------------------------------------------
# Rich (terminal)
# ---------------------------------------------------------------------------


#: Above this many runs a terminal gets styled lines instead of a table (table layout
#: measures every cell: seconds for 1,000 runs).
RICH_TABLE_MAX_RUNS = 200


def _render_rich(analysis: Analysis, fail_on: str) -> str:
    """A table for a handful of runs (findings inside each run's row); styled lines beyond
    :data:`RICH_TABLE_MAX_RUNS`."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = shutil.get_terminal_size((120, 24)).columns
    buf = io.StringIO()
    console = Console(
        file=buf, force_terminal=True, color_system="standard", width=width,
        highlight=False, emoji=False, soft_wrap=False,
    )
    if len(analysis.results) > RICH_TABLE_MAX_RUNS:
        text = Text()
        for line in _listing(analysis, fail_on):
            for segment, style in line:
                text.append(segment, style=style or None)
            text.append("\n")
        console.print(text, end="", soft_wrap=True)
        return buf.getvalue()
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, expand=False, pad_edge=False)
    table.add_column("run", overflow="fold", max_width=max(20, width // 4))
    table.add_column("format", style="dim", no_wrap=True)
    table.add_column("steps", style="dim", no_wrap=True)
    table.add_column("verdict / findings", overflow="fold")
    for result in analysis.results:
        run = result.run
        cell = Text()
        states = result.states
        if result.verdict == "not_judged":  # never "healthy" for a run no rule could judge
            cell.append(f"not judged ({clean(result.not_judged_reason or '')})",
                        style="yellow")
        elif states:
            cell.append(", ".join(states), style="bold")
        elif result.findings:
            cell.append("healthy", style="green")
        else:
            cell.append("healthy: no findings", style="green")
        shown: dict[tuple, str] = {}
        for f in ordered_findings(result):
            cell.append("\n")
            cell.append(f"{_SEV_LABEL[f.severity]:<8}", style=_SEV_STYLE[f.severity])
            cell.append(f"{clean(f.rule)} ", style="bold")
            if f.step is not None:
                cell.append(f"@{f.step} ", style="dim")
            cell.append(clean(f.message))
            recs, same_as = _new_recommendations(f, shown)
            for rec in recs:
                cell.append("\n    -> ", style="green")
                cell.append(clean(recommendation_line(rec)), style="green")
            if same_as:
                cell.append(f"\n    -> same changes as {', '.join(same_as)}", style="green")
        for note in run.notes:
            cell.append("\n")
            cell.append(f"note    {clean(note.code)}: {clean(note.message)}", style="dim")
        rng = run.step_range
        table.add_row(
            Text(clean(run.run_id)),
            Text(clean(run.format)),
            Text(f"{rng[0]}-{rng[1]}" if rng else "-"),
            cell,
        )
    if analysis.results:
        console.print(table)
    for line in _tail(analysis, fail_on):
        text = Text()
        for segment, style in line:
            text.append(segment, style=style or None)
        console.print(text)
    return buf.getvalue()
