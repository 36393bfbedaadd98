"""``--format json``: exactly the DESIGN.md contract, nothing added here.

``Analysis.to_dict`` already maps NaN/inf to strings, so ``allow_nan=False`` turns any
non-finite number that slipped through into a loud error instead of invalid JSON.
"""

from __future__ import annotations

import json

from diagnose import __version__
from diagnose.findings import Analysis
from diagnose.report import escape_tree


def render_json(analysis: Analysis) -> str:
    """The schema_version 1 document, indented by 2, keys in contract order."""
    doc = escape_tree(analysis.to_dict(__version__))
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)
