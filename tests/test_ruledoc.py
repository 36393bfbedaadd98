"""One rule-doc renderer: explain, the markdown report and SARIF show the same sections
with the same titles, built by diagnose.ruledoc.doc_sections."""

from __future__ import annotations

from diagnose.engine import format_rule_doc, load_rules
from diagnose.report import RuleInfo
from diagnose.report.markdown import _rule_doc
from diagnose.report.sarif import _rule_help
from diagnose.ruledoc import THRESHOLDS_TITLE, doc_sections


def test_every_format_shows_the_same_titled_sections() -> None:
    rules = load_rules()
    assert rules
    for spec in rules:
        sections = doc_sections(spec.doc)
        titles = [s.title for s in sections]
        if spec.thresholds:
            titles.append(THRESHOLDS_TITLE)
        info = RuleInfo.of(spec)
        explain = format_rule_doc(spec)
        md = _rule_doc(info)
        text, sarif_md = _rule_help(info)
        for title in titles:
            assert f"\n{title}" in explain, (spec.id, title)
            assert md is not None and f"**{title}:**" in str(md["body"]), (spec.id, title)
            assert title in text and f"**{title}.**" in sarif_md, (spec.id, title)


def test_sections_keep_the_toml_order_and_skip_empty_ones() -> None:
    doc = {"fixes": ["lower the LR"], "what": "x", "why": "", "references": "a paper"}
    got = [(s.key, s.text, s.items) for s in doc_sections(doc)]
    assert got == [("what", "x", ()), ("fixes", "", ("lower the LR",)),
                   ("references", "", ("a paper",))]
