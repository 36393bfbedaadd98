"""``--format markdown`` and ``--report FILE.md``: the advice report.

Meant to be pasted into a pull request or a GitHub step summary, so everything that came
from a log file (run names, tags, messages, hyperparameter values, note texts) is escaped:
a run called ``a|b`<script>` [x](http://e)`` must neither break a table nor inject HTML or
a link.  The jinja2 environment escapes every ``{{ value }}`` by default; only strings the
Python side built itself are wrapped in :class:`Raw`.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from diagnose import __version__
from diagnose.findings import SEVERITY_RANK, Analysis, Finding, RunResult
from diagnose.report import (
    RuleInfo,
    counts,
    escape_undecodable,
    exit_status,
    fmt_value,
    ordered_findings,
    rule_index,
    run_label,
    verdict,
)
from diagnose.report.plots import draw, key_metric, plot_data
from diagnose.ruledoc import THRESHOLDS_TITLE, doc_sections

#: Most plots one report draws (the most severe runs first); the rest are listed only.
MAX_PLOTS = 200
#: GitHub rejects step summaries over 1 MiB; stay under it.
STEP_SUMMARY_LIMIT = 1_000_000

_ICON = {"error": "❌", "warning": "⚠️", "info": "ℹ️", "healthy": "✅", "not_judged": "❔"}
_SEV_WORD = {"error": "error", "warning": "warning", "info": "info"}


class Raw(str):
    """Markdown the report built itself: emitted as is, never escaped again."""


# The ASCII punctuation that can open markdown or HTML syntax inline (emphasis, code,
# links, images, raw HTML, entities) or a GitHub extension (| tables, ~ strikethrough,
# $ math); '#' and '@' too, though GitHub may still link issue refs and mentions.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#!|~@$&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def md_text(value: Any, limit: int = 400) -> str:
    """Untrusted text as inert markdown on one line (safe in a table cell)."""
    s = _CONTROL.sub(" ", str(value))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return Raw(_MD_SPECIAL.sub(r"\\\1", s))


def md_code(value: Any, *, table: bool = True, limit: int = 200) -> str:
    """Untrusted identifier (run id, tag) as a code span: literal, no links or mentions.

    The fence is one backtick longer than the longest backtick run inside.  In a table,
    GFM splits cells on ``|`` before parsing code spans, so pipes are escaped there.
    """
    s = _CONTROL.sub(" ", str(value))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    if not s.strip():
        return Raw("(empty)")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ")):
        s = f" {s} "
    if table:
        s = s.replace("|", "\\|")
    return Raw(f"{fence}{s}{fence}")


def _finalize(value: Any) -> Any:
    """jinja2 finalize hook: escape everything that is not Raw."""
    if value is None:
        return ""
    if isinstance(value, Raw):
        return value
    return md_text(value)


@lru_cache(maxsize=1)
def _template() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=False,
        finalize=_finalize,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    return env.get_template("report.md.j2")


# ---------------------------------------------------------------------------
# View model
# ---------------------------------------------------------------------------


def _worst(result: RunResult) -> str:
    ranks = [SEVERITY_RANK[f.severity] for f in result.findings]
    if not ranks or max(ranks) == 0:
        return "not_judged" if result.verdict == "not_judged" else "healthy"
    return "error" if max(ranks) == 2 else "warning"


def _evidence(f: Finding, limit: int = 6) -> str:
    items = list(f.evidence.items())
    parts = [f"{md_text(k, 40)}: {md_text(fmt_value(v), 60)}" for k, v in items[:limit]]
    if len(items) > limit:
        parts.append(md_text(f"+{len(items) - limit} more"))
    return Raw("<br>".join(parts)) if parts else Raw("")


def _change(rec: Any) -> str:
    if rec.current is None and rec.proposed is None:
        return Raw("—")
    cur = "?" if rec.current is None else md_text(fmt_value(rec.current), 40)
    also = "".join(f", with {md_code(r.hyperparameter)} {_change(r)}"
                   for r in getattr(rec, "together", ()))
    return Raw(f"{cur} → {md_text(fmt_value(rec.proposed), 40)}{also}")


def _recommendations(result: RunResult) -> list[dict[str, Any]]:
    """One row per distinct change; the rules that asked for it are listed together."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in ordered_findings(result):
        for rec in f.recommendations:
            key = (rec.hyperparameter, rec.action, repr(rec.proposed))
            if key in rows:
                if f.rule not in rows[key]["rules"]:
                    rows[key]["rules"].append(f.rule)
                continue
            rows[key] = {"rec": rec, "rules": [f.rule]}
    out = []
    for row in rows.values():
        rec = row["rec"]
        why = md_text(rec.rationale) if rec.rationale else Raw("")
        out.append({
            "hyperparameter": md_code(rec.hyperparameter),
            "action": rec.action,
            "change": _change(rec),
            "why": Raw(f"{why} ({md_text(', '.join(row['rules']))})"),
        })
    return out


def _meta(result: RunResult) -> str:
    run = result.run
    rng = run.step_range
    parts = [f"format {md_code(run.format, table=False)}"]
    parts.append(f"steps {rng[0]}–{rng[1]}" if rng else "no scalar points")
    tags = run.tags
    if tags:
        shown = ", ".join(md_code(t, table=False) for t in tags[:8])
        more = f" +{len(tags) - 8} more" if len(tags) > 8 else ""
        parts.append(f"metrics {shown}{more}")
    return Raw(" · ".join(parts))


def _hparams(result: RunResult, limit: int = 12) -> str:
    items = list(result.run.hparams.items())
    if not items:
        return Raw("")
    shown = [f"{md_code(k, table=False)}={md_text(fmt_value(v), 60)}" for k, v in items[:limit]]
    if len(items) > limit:
        shown.append(f"+{len(items) - limit} more")
    return Raw(", ".join(shown))


def _note(note: Any) -> str:
    where = f" ({md_code(Path(note.path).name, table=False)})" if note.path else ""
    step = f" at step {note.step}" if note.step is not None else ""
    return Raw(f"{md_code(note.code, table=False)}{step}: {md_text(note.message)}{where}")


def _insight(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("message", "summary", "text"):
            if item.get(key):
                return md_text(item[key])
        return Raw(", ".join(f"{md_text(k)}={md_text(fmt_value(v))}" for k, v in item.items()))
    return md_text(fmt_value(item))


def _rule_doc(info: RuleInfo) -> dict[str, str] | None:
    """Collapsible rule help; rule docs are our own (or the user's) markdown, kept as is."""
    doc = info.doc
    if not (doc or info.summary):
        return None
    head = f"{info.id} {info.name}" + (f" — {info.summary}" if info.summary else "")
    lines: list[str] = []
    for sec in doc_sections(doc):
        if sec.text:
            lines.append(f"**{sec.title}:** {' '.join(sec.text.split())}")
        else:
            lines.append(f"**{sec.title}:**")
            lines.extend(f"- {' '.join(i.split())}" for i in sec.items)
        lines.append("")
    if info.thresholds:
        th = ", ".join(f"`{k}` = {fmt_value(v)}" for k, v in info.thresholds.items())
        lines.append(f"**{THRESHOLDS_TITLE}:** {th}")
    return {"summary": Raw(html.escape(head)), "body": Raw("\n".join(lines).strip())}


def _headline(analysis: Analysis, fail_on: str) -> str:
    c = counts(analysis)
    n = len(analysis.results)
    parts = [f"**{n} run{'s' if n != 1 else ''}**"]
    for sev, word in (("error", "error"), ("warning", "warning"), ("info", "info")):
        if c[sev]:
            plural = "s" if c[sev] != 1 and sev != "info" else ""
            parts.append(f"{_ICON[sev]} {c[sev]} {word}{plural}")
    unjudged = sum(r.verdict == "not_judged" for r in analysis.results)
    if not any(c.values()):
        parts.append(f"{_ICON['healthy']} no findings" if not unjudged else "no findings")
    if unjudged:
        parts.append(f"{_ICON['not_judged']} {unjudged} not judged")
    if analysis.errors:
        parts.append(f"🚫 {len(analysis.errors)} unreadable")
    parts.append(f"exit {exit_status(analysis, fail_on)} with `--fail-on {fail_on}`")
    parts.append(f"diagnose {__version__}")
    return Raw(" · ".join(parts))


def render_markdown(
    analysis: Analysis,
    fail_on: str = "error",
    *,
    rules: Sequence[object] | None = None,
    plot_links: dict[int, str] | None = None,
    plots_note: str | None = None,
) -> str:
    """The report as markdown; ``plot_links`` maps run index -> relative PNG path."""
    plot_links = plot_links or {}
    runs: list[dict[str, Any]] = []
    quiet = 0
    for i, result in enumerate(analysis.results):
        km = key_metric(result)
        worst = _worst(result)
        detail = bool(result.findings or result.run.notes or i in plot_links)
        anchor = f"run-{i + 1}"
        name = md_code(run_label(result.run))
        plot = ""
        if i in plot_links:
            alt = md_text(f"curves of {run_label(result.run)}", 120)
            plot = Raw(f"![{alt}]({plot_links[i]})")
        elif plots_note and detail:
            plot = Raw(f"_{plots_note}_")
        findings = [
            {
                "icon": Raw(f"{_ICON[f.severity]} {_SEV_WORD[f.severity]}"),
                "rule": Raw(f"{md_text(f.rule)} {md_code(f.name)}"),
                "step": "" if f.step is None else str(f.step),
                "message": md_text(f.message),
                "evidence": _evidence(f),
            }
            for f in ordered_findings(result)
        ]
        if not detail:
            quiet += 1
        runs.append({
            "index": i + 1,
            "anchor": anchor,
            "icon": Raw(_ICON[worst]),
            "link": Raw(f"[{name}](#{anchor})") if detail else name,
            "title": md_code(run_label(result.run), table=False),
            "verdict": verdict(result),
            "not_judged": result.not_judged_reason,
            "key_metric": km.text if km else "—",
            "best_step": str(km.step) if km and km.kind != "final" else "—",
            "detail": detail,
            "meta": _meta(result),
            "hparams": _hparams(result),
            "plot": plot,
            "findings": findings,
            "recommendations": _recommendations(result),
            "notes": [_note(n) for n in result.run.notes],
        })
    quiet_line = ""
    if quiet:
        quiet_line = Raw(
            f"{quiet} run{'s' if quiet != 1 else ''} with no findings and no ingest notes "
            f"{'are' if quiet != 1 else 'is'} listed in the table only."
        )
    fired = {f.rule for r in analysis.results for f in r.findings}
    docs = []
    if rules:
        index = rule_index(rules, analysis)
        for rid in sorted(fired):
            d = _rule_doc(index[rid])
            if d is not None:
                docs.append(d)
    sweeps = analysis.extras.get("sweeps") or []
    if not isinstance(sweeps, list):
        sweeps = [sweeps]
    text = _template().render(
        headline=_headline(analysis, fail_on),
        runs=runs,
        runs_without_detail=quiet_line,
        sweeps=[_insight(s) for s in sweeps],
        errors=[{"path": md_code(e.path), "message": md_text(e.message)}
                for e in analysis.errors],
        rule_docs=docs,
    )
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------
# The report file
# ---------------------------------------------------------------------------


def _slug(run_id: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._-")
    return s[:50] or "run"


_PLOT_NAME = re.compile(r"^\d{3,}-.*\.png$")


def write_report(
    analysis: Analysis,
    path: Path,
    *,
    rules: Sequence[object] | None = None,
    fail_on: str = "error",
    max_plots: int = MAX_PLOTS,
) -> list[Path]:
    """Write the report to ``path`` and its PNGs to ``<stem>_plots/`` beside it.

    Returns every file written.  Runs are plotted most severe first, up to ``max_plots``.
    When ``GITHUB_STEP_SUMMARY`` is set, the report is also appended there without image
    links (they would not resolve in a step summary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = path.parent / f"{path.stem}_plots"
    order = sorted(
        range(len(analysis.results)),
        key=lambda i: (-max((SEVERITY_RANK[f.severity] for f in analysis.results[i].findings),
                            default=-1), i),
    )
    chosen = set(order[:max_plots])
    written: list[Path] = []
    links: dict[int, str] = {}
    for i, result in enumerate(analysis.results):
        if i not in chosen:
            continue
        png = plot_dir / f"{i + 1:03d}-{_slug(run_label(result.run))}.png"
        if draw(plot_data(result), png) is not None:
            written.append(png)
            links[i] = quote(f"{plot_dir.name}/{png.name}")
    if plot_dir.is_dir():
        keep = {p.name for p in written}
        for old in plot_dir.iterdir():
            if _PLOT_NAME.match(old.name) and old.name not in keep:
                old.unlink()
    note = None
    if len(analysis.results) > max_plots:
        note = f"plot omitted: the report draws at most {max_plots} runs"
    text = escape_undecodable(render_markdown(analysis, fail_on, rules=rules,
                                              plot_links=links,
                                              plots_note=note))
    path.write_text(text, encoding="utf-8")
    written.insert(0, path)

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        where = f"plots are in {path.name} and {plot_dir.name}/ (not shown in step summaries)"
        body = escape_undecodable(render_markdown(analysis, fail_on, rules=rules,
                                                  plots_note=where))
        _append_step_summary(Path(summary), body)
    return written


def _append_step_summary(target: Path, body: str) -> None:
    """Append, cut at a line under GitHub's 1 MiB limit with a note saying so."""
    data = body.encode("utf-8")
    if len(data) > STEP_SUMMARY_LIMIT:
        cut = data[:STEP_SUMMARY_LIMIT].decode("utf-8", errors="ignore")
        cut = cut[: cut.rfind("\n") + 1]
        body = cut + "\n_Step summary truncated at 1 MB; the full report is in the artifact._\n"
    with target.open("a", encoding="utf-8") as fh:
        fh.write(body)
        if not body.endswith("\n"):
            fh.write("\n")
