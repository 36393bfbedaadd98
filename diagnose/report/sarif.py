"""``--format sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

One SARIF run per invocation.  Every rule the engine knows is listed under
``tool.driver.rules`` with its help text, so viewers can explain a result offline.  Each
result points at the run's log file (relative to the current directory) and carries a
``partialFingerprints`` entry built from run id + rule + metric, deliberately not the
step: a run that diverges at step 1210 instead of 1200 tomorrow is the same alert, so code
scanning keeps one alert open instead of closing and reopening it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from diagnose import __version__
from diagnose.findings import Analysis, Finding, RunResult
from diagnose.remote import is_remote
from diagnose.report import (
    RuleInfo,
    display_path,
    escape_tree,
    fmt_value,
    rule_index,
    run_label,
    run_location,
)
from diagnose.ruledoc import THRESHOLDS_TITLE, doc_sections

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: Used when the installed package metadata names no project URL.
DEFAULT_INFORMATION_URI = "https://pypi.org/project/diagnose/"
FINGERPRINT_KEY = "diagnoseFinding/v1"

_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def information_uri() -> str:
    """The project URL from the installed metadata, else the package index page."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        meta = metadata("diagnose")
    except (ImportError, PackageNotFoundError):
        return DEFAULT_INFORMATION_URI
    project_urls: list[str] = meta.get_all("Project-URL") or []
    for entry in project_urls:
        _, _, url = entry.partition(",")
        if url.strip().startswith("http"):
            return url.strip()
    homes: list[str] = meta.get_all("Home-page") or []
    home = homes[0] if homes else None
    return home if home and home.startswith("http") else DEFAULT_INFORMATION_URI


def artifact_uri(path: Path | str, cwd: Path | None = None) -> str:
    """A relative URI (``/`` separators, percent-encoded) from the current directory;
    a ``file://`` URI when the path has no relative form (another drive)."""
    text = display_path(path, cwd)
    if is_remote(text):
        return text
    if Path(text).is_absolute():
        return "file://" + quote(os.fsencode(text), safe="/-._~")
    # a name that is not UTF-8 on disk: percent-encode the bytes it really has
    return quote(os.fsencode(text), safe="/-._~")


def fingerprint(run_id: str, rule: str, metric: str | None) -> str:
    """Stable across reruns: same run, rule and metric -> same alert."""
    key = "\0".join([run_id, rule, metric or ""])
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _rule_help(info: RuleInfo) -> tuple[str, str]:
    """(plain text, markdown) help built from the rule's doc sections."""
    doc = info.doc
    text: list[str] = []
    md: list[str] = []
    for sec in doc_sections(doc):
        if sec.text:
            body = " ".join(sec.text.split())
            text.append(f"{sec.title}: {body}")
            md.append(f"**{sec.title}.** {body}")
        else:
            bullets = "\n".join(f"- {' '.join(i.split())}" for i in sec.items)
            text.append(f"{sec.title}:\n{bullets}")
            md.append(f"**{sec.title}.**\n\n{bullets}")
    if info.thresholds:
        given = doc.get("thresholds")
        descr: dict[str, Any] = given if isinstance(given, dict) else {}
        lines = [
            f"- {k} = {fmt_value(v)}" + (f": {descr[k]}" if k in descr else "")
            for k, v in info.thresholds.items()
        ]
        md_lines = [
            f"- `{k}` = {fmt_value(v)}" + (f": {descr[k]}" if k in descr else "")
            for k, v in info.thresholds.items()
        ]
        text.append(f"{THRESHOLDS_TITLE}:\n" + "\n".join(lines))
        md.append(f"**{THRESHOLDS_TITLE}.**\n\n" + "\n".join(md_lines))
    if not text:
        fallback = info.summary or info.name
        return fallback, fallback
    return "\n\n".join(text), "\n\n".join(md)


def _rule_descriptor(info: RuleInfo) -> dict[str, Any]:
    short = info.summary or info.name
    full = " ".join(str(info.doc.get("what", "")).split()) or short
    help_text, help_md = _rule_help(info)
    out: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": help_md},
        "defaultConfiguration": {"level": _LEVEL.get(info.severity, "warning")},
        "properties": {"tags": [t for t in ("training", info.state) if t]},
    }
    return out


def _location(result: RunResult) -> dict[str, Any]:
    run = result.run
    loc = run_location(run)
    physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(loc)}}
    if run.sources and (isinstance(loc, str) or not loc.is_dir()):  # a log file: a region
        physical["region"] = {"startLine": 1}
    return {
        "physicalLocation": physical,
        "logicalLocations": [{"name": run.run_id, "fullyQualifiedName": run.run_id,
                              "kind": "module"}],
    }


def _result(result: RunResult, f: Finding, index: dict[str, int]) -> dict[str, Any]:
    run_id = result.run.run_id
    where = f" (step {f.step})" if f.step is not None else ""
    if f.step is not None and f"step {f.step}" in f.message:
        where = ""
    d = f.to_dict()
    return {
        "ruleId": f.rule,
        "ruleIndex": index[f.rule],
        "level": _LEVEL[f.severity],
        "message": {"text": f"{run_label(result.run)}: {f.message}{where}"},
        "locations": [_location(result)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(run_id, f.rule, f.metric)},
        "properties": {
            "run": run_id,
            "state": f.state,
            "metric": f.metric,
            "step": d["step"],
            "evidence": d["evidence"],
            "recommendations": d["recommendations"],
        },
    }


def _notification(level: str, text: str, uri: str | None, descriptor: str) -> dict[str, Any]:
    note: dict[str, Any] = {
        "level": level,
        "message": {"text": text},
        "descriptor": {"id": descriptor},
    }
    if uri:
        note["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": uri}}}]
    return note


def sarif_log(analysis: Analysis, rules: Sequence[object] | None = None) -> dict[str, Any]:
    """The SARIF log as a dict (for tests and for callers that post-process it)."""
    infos = rule_index(rules, analysis)
    order = list(infos)
    index = {rid: i for i, rid in enumerate(order)}
    results = [
        _result(r, f, index) for r in analysis.results for f in r.findings
    ]
    notes = [
        _notification("error", f"{e.path}: {e.message}", artifact_uri(e.path), "load-error")
        for e in analysis.errors
    ]
    for r in analysis.results:
        for n in r.run.notes:
            notes.append(_notification(
                "note", f"{run_label(r.run)}: {n.code}: {n.message}",
                artifact_uri(n.path) if n.path else artifact_uri(run_location(r.run)),
                f"ingest-{n.code}",
            ))
    invocation: dict[str, Any] = {
        "executionSuccessful": bool(analysis.results) or not analysis.errors,
    }
    if notes:
        invocation["toolExecutionNotifications"] = notes
    driver = {
        "name": "diagnose",
        "version": __version__,
        "semanticVersion": __version__,
        "informationUri": information_uri(),
        "rules": [_rule_descriptor(infos[rid]) for rid in order],
    }
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": driver},
            "invocations": [invocation],
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }


def render_sarif(analysis: Analysis, rules: Sequence[object] | None = None) -> str:
    """SARIF 2.1.0 as indented JSON."""
    return json.dumps(escape_tree(sarif_log(analysis, rules)), indent=2, allow_nan=False)
