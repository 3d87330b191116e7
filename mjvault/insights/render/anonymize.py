"""``--anonymize`` for the insights document: its terms are kept, and it says so.

Terms are counted with every URL of the prompt taken out first (FORMAT §9.3: image prompts and
``s.mj.run`` links, what :mod:`mjvault.find.anonymize` scrubs), and a prompt's other words are
what an anonymized export keeps too: nothing in a term list names a person or a quoted image.
Snapshot sources are reduced to their kind where the history is shown, not here.
"""

from __future__ import annotations

import copy
from typing import Any


def anonymize_terms(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` marked anonymized (``terms.anonymized``); its terms stay, since the
    counters never held a URL's words."""
    out = copy.deepcopy(doc)
    out["terms"]["anonymized"] = True
    return out
