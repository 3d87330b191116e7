"""How a term becomes the part of an index key that names it (docs/FORMAT.md §9).

The writer (:mod:`mjvault.index.db`) and the readers (:mod:`mjvault.index.search`,
:mod:`mjvault.index.pages`) must cut a term the same way, or a query misses what was
written; both import it from here.
"""

from __future__ import annotations

from mjvault.index.bitmaps import SEP

MAX_KEY_PART = 200  # LMDB keys are at most 511 bytes


def key_part(text: str) -> bytes:
    """``text`` as a key part: UTF-8, cut at :data:`MAX_KEY_PART` bytes, with no separator
    byte inside (a NUL in a term would end the part early)."""
    raw = text.encode("utf-8")[:MAX_KEY_PART]
    return raw.replace(SEP, b" ")
