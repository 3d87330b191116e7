"""``--anonymize`` for the insights document: no prompt term at all.

Terms are counted from whole prompts, image-prompt URLs included (a URL's path is a word to
the tokenizer), and a count cannot be traced back to where its word stood: so an anonymized
document lists none, rather than some that may name a private image.
"""

from __future__ import annotations

import copy
from typing import Any


def anonymize_terms(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` whose term lists are empty (months kept, so the shape is the same)."""
    out = copy.deepcopy(doc)
    terms = out["terms"]
    terms["top"] = [{"month": m["month"], "terms": []} for m in terms["top"]]
    terms["trends"] = [
        {"month": t["month"], "previous": t["previous"], "rising": [], "falling": []}
        for t in terms["trends"]
    ]
    terms["signature"] = [{"month": m["month"], "terms": []} for m in terms["signature"]]
    terms["anonymized"] = True
    return out
