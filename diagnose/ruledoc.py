"""A rule's documentation as titled sections, built once for every format.

``diagnose explain`` (plain text), the markdown report's rule help and SARIF's rule help
render these sections; none of them picks its own section names or order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The doc sections of a rule TOML's ``[doc]`` table, in the order every format shows them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("what", "What it detects"),
    ("why", "Why it matters"),
    ("evidence", "Evidence"),
    ("causes", "Common causes"),
    ("fixes", "Fixes"),
    ("references", "References"),
)
#: Sections that are prose; the others are lists.
PROSE = frozenset({"what", "why", "evidence"})
#: The title of the thresholds section (rendered with each format's detail).
THRESHOLDS_TITLE = "Thresholds"


@dataclass(frozen=True)
class DocSection:
    """One titled part of a rule's doc: prose ``text`` or list ``items`` (as written)."""

    key: str
    title: str
    text: str = ""
    items: tuple[str, ...] = ()


def doc_sections(doc: Mapping[str, Any]) -> list[DocSection]:
    """The non-empty doc sections of a rule, in :data:`SECTIONS` order."""
    out: list[DocSection] = []
    for key, title in SECTIONS:
        value = doc.get(key)
        if not value:
            continue
        if key in PROSE:
            out.append(DocSection(key, title, text=str(value)))
        else:
            items = [value] if isinstance(value, str) else list(value)
            out.append(DocSection(key, title, items=tuple(str(i) for i in items)))
    return out
