"""A prompt's MinHash bands: the keys of the index's ``bands`` lists (docs/FORMAT.md §9.4).

Two prompts whose shingle sets have Jaccard similarity ``s`` share at least one band with
probability ``1 - (1 - s**ROWS)**BANDS``: with 16 bands of 3 rows that is one half at
s = 0.40, 0.97 at s = 0.6 (a short prompt with one word changed) and 0.05 at s = 0.15
(unrelated prompts on one subject), so variants of an idea meet in a band and unrelated
prompts seldom do; the re-ranking (rapidfuzz) sorts out the rest.
The figures that chose these are in docs/design.md, "Prompt families".
"""

from __future__ import annotations

from functools import cache
from hashlib import blake2b, sha1
from typing import Any

from mjvault.find.anonymize import scrub
from mjvault.params import PARAM_START
from mjvault.text import search_tokens

NUM_PERM = 48
BANDS = 16
ROWS = NUM_PERM // BANDS
SEED = 1
# Recorded with the bands (FORMAT §9.4): a change of any of these gives other band keys, so it
# is an index format of its own.
SCHEME = f"minhash affine32 seed={SEED} perm={NUM_PERM} bands={BANDS}x{ROWS}"


def normalized_words(prompt: str) -> list[str]:
    """The prompt's words as search compares them (accent-folded, case-folded), without its
    parameters and URLs (image prompts say nothing of the idea)."""
    return search_tokens(scrub(_without_params(prompt)))


def _without_params(prompt: str) -> str:
    """The prompt up to its first parameter ("… --ar 16:9 --v 6", or an em dash for "--"),
    where the params module says the command's part starts: the idea is what comes before."""
    start = PARAM_START.search(prompt)
    return prompt if start is None else prompt[: start.start()]


def normalized(prompt: str) -> str:
    """The prompt as the re-ranking compares it: its normalised words, one space apart."""
    return " ".join(normalized_words(prompt))


def shingles(prompt: str) -> set[bytes]:
    """Each word and each pair of neighbouring words (UTF-8): words alone say what the prompt
    is about, pairs how they are put together; a changed word changes one word and two pairs."""
    words = normalized_words(prompt)
    found = {w.encode("utf-8") for w in words}
    found.update(f"{a} {b}".encode() for a, b in zip(words, words[1:], strict=False))
    return found


@cache
def _permutations() -> tuple[Any, Any]:
    """datasketch 2.0's ``affine32`` permutations for ``seed``: odd multipliers ``a`` and
    offsets ``b``, drawn in that order from numpy's ``RandomState(seed)``."""
    import numpy as np

    draw = np.random.RandomState(SEED)
    a = draw.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


def _fmix32(values: Any) -> Any:
    """MurmurHash3's 32-bit finalizer (wrapping arithmetic), as datasketch mixes a value
    before its permutations."""
    import numpy as np

    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def signature(prompt: str) -> Any | None:
    """The prompt's MinHash values (numpy uint32, NUM_PERM of them); None for a prompt with
    no words (it is like no other).

    The values of datasketch 2.0's ``MinHash(num_perm=NUM_PERM, seed=SEED)`` given the
    shingles (``tests/test_prompt_families.py`` checks them bit for bit), computed here in a
    few numpy operations: importing datasketch brings scipy, 60 MB and 0.3 s that every
    sync and import would pay when it writes the index."""
    found = shingles(prompt)
    if not found:
        return None
    import numpy as np

    a, b = _permutations()
    first4 = (sha1(shingle).digest()[:4] for shingle in sorted(found))
    hashed = np.frombuffer(b"".join(first4), dtype="<u4").astype(np.uint32).reshape(-1, 1)
    with np.errstate(over="ignore"):
        return (_fmix32(hashed) * a + b).min(axis=0)


def bands(prompt: str) -> list[bytes]:
    """The ``bands`` parts of a prompt: ``b:hex``, ``b`` the band's number and ``hex`` the first
    8 bytes of BLAKE2b over its ROWS values (4-byte little-endian each), so no part holds a
    ``00`` byte and a band's key says nothing of its words."""
    values = signature(prompt)
    if values is None:
        return []
    raw = values.astype("<u4").tobytes()
    step = ROWS * 4
    return [
        f"{b}:{blake2b(raw[b * step : (b + 1) * step], digest_size=8).hexdigest()}".encode()
        for b in range(BANDS)
    ]
