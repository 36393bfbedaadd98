"""Output formats: one entry point, :func:`render`, for every ``--format``.

Every format is built from the same :class:`~diagnose.findings.Analysis`; the helpers here
(ordering, counts, exit status, rule-doc lookup, value formatting) are shared so that the
text summary, the JUnit failures and the GitHub annotations never disagree about what
"fails" means.  Format modules are imported lazily so ``diagnose --format json`` does not
pay for matplotlib or rich.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnose.findings import SEVERITY_RANK, Analysis, Finding, RunResult
from diagnose.numbers import sig
from diagnose.remote import is_remote

FORMATS = ("text", "markdown", "json", "sarif", "junit", "github")
FAIL_ON = ("error", "warning", "never")

__all__ = [
    "FAIL_ON",
    "FORMATS",
    "RuleInfo",
    "counts",
    "exit_status",
    "fails",
    "fmt_value",
    "ordered_findings",
    "render",
    "rule_index",
    "run_label",
    "summary_line",
    "verdict",
    "write_report",
]


def render(
    analysis: Analysis,
    fmt: str,
    fail_on: str = "error",
    *,
    color: bool | None = None,
    rules: Sequence[object] | None = None,
    verbosity: int = 0,
) -> str:
    """Render ``analysis`` in one of :data:`FORMATS`; returns the whole document.

    ``color`` and ``verbosity`` (-1 ``-q``, 1 ``-v``) only affect ``text`` (None: colour
    when stdout is a terminal).  ``rules`` are the engine's RuleSpecs; SARIF and the
    markdown report take rule help from them.  Whatever the format, a name that was not
    valid UTF-8 on disk comes out escaped (``\\xff``), never as a lone surrogate.
    """
    return escape_undecodable(
        _render(analysis, fmt, fail_on, color=color, rules=rules, verbosity=verbosity)
    )


def _render(
    analysis: Analysis,
    fmt: str,
    fail_on: str,
    *,
    color: bool | None,
    rules: Sequence[object] | None,
    verbosity: int,
) -> str:
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    if fmt == "text":
        from diagnose.report.text import render_text

        return render_text(analysis, fail_on, color=color, verbosity=verbosity)
    if fmt == "markdown":
        from diagnose.report.markdown import render_markdown

        return render_markdown(analysis, fail_on, rules=rules)
    if fmt == "json":
        from diagnose.report.json_out import render_json

        return render_json(analysis)
    if fmt == "sarif":
        from diagnose.report.sarif import render_sarif

        return render_sarif(analysis, rules=rules)
    if fmt == "junit":
        from diagnose.report.junit import render_junit

        return render_junit(analysis, fail_on)
    if fmt == "github":
        from diagnose.report.github import render_github

        return render_github(analysis, fail_on)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_report(
    analysis: Analysis,
    path: Path,
    *,
    rules: Sequence[object] | None = None,
    fail_on: str = "error",
    max_plots: int | None = None,
) -> list[Path]:
    """Write the markdown advice report and its PNG plots; see :mod:`.markdown`."""
    from diagnose.report.markdown import MAX_PLOTS
    from diagnose.report.markdown import write_report as _write

    return _write(analysis, Path(path), rules=rules, fail_on=fail_on,
                  max_plots=MAX_PLOTS if max_plots is None else max_plots)


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def fails(finding: Finding, fail_on: str) -> bool:
    """True when ``finding`` is at or above ``--fail-on`` (never for ``never``)."""
    if fail_on == "never":
        return False
    return SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[fail_on]


def exit_status(analysis: Analysis, fail_on: str) -> int:
    """The exit code DESIGN.md fixes: 2 when no run was read, 1 when a finding fails."""
    if not analysis.results:
        return 2
    if any(fails(f, fail_on) for r in analysis.results for f in r.findings):
        return 1
    return 0


def ordered_findings(result: RunResult) -> list[Finding]:
    """Most severe first, then by step (unknown steps last), then rule id: stable output."""

    def key(f: Finding) -> tuple[int, float, str]:
        step = f.step if f.step is not None else math.inf
        return (-SEVERITY_RANK[f.severity], step, f.rule)

    return sorted(result.findings, key=key)


def counts(analysis: Analysis) -> dict[str, int]:
    """Findings per severity over every run."""
    out = {"error": 0, "warning": 0, "info": 0}
    for r in analysis.results:
        for f in r.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
    return out


def _plural(n: int, word: str) -> str:
    if word == "info":
        return f"{n} info"
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_line(analysis: Analysis, fail_on: str) -> str:
    """One line for the end of a listing: '3 runs: 1 error, 2 warnings; exit 1 with ...'."""
    c = counts(analysis)
    parts = [_plural(c[s], s) for s in ("error", "warning", "info") if c[s]]
    head = _plural(len(analysis.results), "run")
    body = ", ".join(parts) if parts else "no findings"
    if analysis.errors:
        body += f", {len(analysis.errors)} unreadable"
    return f"{head}: {body}; exit {exit_status(analysis, fail_on)} with --fail-on {fail_on}"


def verdict(result: RunResult) -> str:
    """The run's states joined, 'healthy' when no error/warning finding, or 'not judged
    (why)' when the engine could not judge it (never 'healthy' for such a run)."""
    if getattr(result, "verdict", None) == "not_judged":
        why = getattr(result, "not_judged_reason", None)
        return f"not judged ({why})" if why else "not judged"
    return ", ".join(result.states) or "healthy"


def run_label(run: Any) -> str:
    """The name a person sees for a run: its id, except that a run given as the PATH
    itself (id ``.``, DESIGN.md) is named by its folder, never ``.``."""
    run_id = str(getattr(run, "run_id", "") or "")
    if run_id not in (".", ""):
        return run_id
    path = str(getattr(run, "path", "") or ".")
    if os.path.isfile(path):  # a single log file given as PATH: its folder holds the run
        path = os.path.dirname(path) or "."
    return os.path.basename(os.path.abspath(path).rstrip(os.sep)) or os.path.abspath(path)


def fmt_value(value: Any) -> str:
    """Short human form of a number or value: 4 significant digits, ints as ints."""
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return sig(value, whole_below=1e15)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
#: What os.fsdecode makes of bytes that are not UTF-8 (PEP 383), and any other lone
#: surrogate: none can be encoded, so each is shown as the byte it stands for.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _byte_escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def escape_undecodable(text: str) -> str:
    """``text`` with every lone surrogate (an undecodable byte of a file name) written as
    ``\\xNN``, so it can be encoded, hashed and printed."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: _byte_escape(m.group()), text)


def escape_tree(value: Any) -> Any:
    """A JSON-ready tree with :func:`escape_undecodable` applied to every string (keys
    too): a JSON document never carries a lone surrogate, escaped or raw."""
    if isinstance(value, str):
        return escape_undecodable(value)
    if isinstance(value, dict):
        return {escape_tree(k): escape_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_tree(v) for v in value]
    return value


def _control_escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: Any) -> str:
    """Text from untrusted files made safe for a terminal: control bytes (ANSI escapes,
    carriage returns, OSC-8 links) and undecodable bytes become visible ``\\xNN``
    escapes and newlines become spaces."""
    s = str(text).replace("\r\n", " ").replace("\n", " ")
    return escape_undecodable(_CONTROL.sub(_control_escape, s))


def recommendation_line(rec: Any) -> str:
    """'learning_rate: 0.1 -> 0.03 (why)' for listings; 'enable' style when no value."""
    if rec.current is None and rec.proposed is None:
        change = rec.action
    elif rec.current is None:
        change = f"{rec.action} -> {fmt_value(rec.proposed)}"
    else:
        change = f"{fmt_value(rec.current)} -> {fmt_value(rec.proposed)}"
    why = f" ({rec.rationale})" if rec.rationale else ""
    also = "".join(f", with {recommendation_line(replace(r, rationale=''))}"
                   for r in getattr(rec, "together", ()))
    return f"{rec.hyperparameter}: {change}{also}{why}"


def display_path(path: Path | str, cwd: Path | None = None) -> str:
    """A path as a reader (or GitHub) wants it, ``/``-separated: an absolute path under
    the current directory relative to it, any other path as the user gave it (never
    climbing out with ``../../..``)."""
    if isinstance(path, str) and is_remote(path):
        return path
    p = Path(path)
    if p.is_absolute():
        base = (cwd or Path.cwd()).resolve()
        try:
            return p.relative_to(base).as_posix() or "."
        except ValueError:  # not under the current directory: keep it absolute
            return p.as_posix()
    return p.as_posix()


def run_location(run: Any) -> Path | str:
    """The file a run's findings point at: its first source file, else its folder (a
    URL string for a run read from a remote PATH: ``Path`` would fold its ``//``)."""
    sources = list(getattr(run, "sources", None) or [])
    loc = sources[0] if sources else run.path
    return loc if isinstance(loc, str) and is_remote(loc) else Path(loc)


# ---------------------------------------------------------------------------
# Rule documentation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleInfo:
    """What the formats need of a rule, from an engine RuleSpec, a dict or a finding."""

    id: str
    name: str
    state: str = ""
    severity: str = "warning"
    summary: str = ""
    doc: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Any) -> RuleInfo:
        """Duck-typed read: attribute or key access, so RuleSpec and dicts both work."""

        def get(key: str, default: Any = None) -> Any:
            if isinstance(spec, Mapping):
                return spec.get(key, default)
            return getattr(spec, key, default)

        return cls(
            id=str(get("id", "")),
            name=str(get("name", "") or get("id", "")),
            state=str(get("state", "") or ""),
            severity=str(get("severity", "warning") or "warning"),
            summary=str(get("summary", "") or ""),
            doc=dict(get("doc", None) or {}),
            thresholds=dict(get("thresholds", None) or {}),
        )

    @classmethod
    def from_finding(cls, f: Finding) -> RuleInfo:
        return cls(id=f.rule, name=f.name, state=f.state, severity=f.severity, summary="")


def rule_index(rules: Iterable[Any] | None, analysis: Analysis) -> dict[str, RuleInfo]:
    """Rule id -> RuleInfo: the given rules first, then any rule only seen in findings."""
    out: dict[str, RuleInfo] = {}
    for spec in rules or ():
        info = RuleInfo.of(spec)
        if info.id:
            out.setdefault(info.id, info)
    for r in analysis.results:
        for f in r.findings:
            if f.rule not in out:
                out[f.rule] = RuleInfo.from_finding(f)
    return out
