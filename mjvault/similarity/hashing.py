"""Perceptual hashes of images: the 64-bit pHash (imagehash's DCT hash), chosen over dHash and
PDQ by the figures of ``scripts/bench/bench_similar.py`` (docs/design.md, "Similar images: the
hash"). Two images are near-duplicates when their hashes differ in few bits (a Hamming
distance); :data:`LEVELS` names the thresholds.

A grid job's image is the 2x2 grid of its four pictures: it gets a hash of the whole and one
per quadrant (parts 1-4), so an upscale of one picture meets the quadrant it came from.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mjvault.errors import UsageError

# Recorded beside the stored hashes (mjvault/similarity/store.py): a different value means
# they are recomputed, never compared with hashes of another algorithm.
ALGORITHM = "phash64/1"
HASH_BITS = 64
WORDS = HASH_BITS // 64
HASH_BYTES = HASH_BITS // 8

# Named thresholds (as czkawka names its own), each the largest Hamming distance (inclusive)
# still called similar. The default is the measured one: recall >= 0.95 at precision >= 0.99
# on the generated set (docs/design.md, "Similar images: the hash").
# Measured (200 sources, 3200 images, 5.1M negative pairs): distance 10 finds 97 % of the
# variants with no false pair; the window meeting both goals is 8..15 (pHash distances are
# even: half the 64 bits are always set). Beyond 16 false pairs grow a hundredfold per step.
LEVELS: dict[str, int] = {
    "exact": 0,
    "very-high": 4,
    "high": 10,
    "medium": 14,
    "low": 18,
}
DEFAULT_LEVEL = "high"
# The largest distance a search takes. Beyond ~20 bits the pair search of dupes is near
# quadratic (20k rows: 0.1 s at 10, 21 s at 32, 35 s at 64, so days at 3M), and past 16 the
# pairs are mostly strangers anyway (false pairs grow a hundredfold a step): 24 keeps room
# above "low" and refuses what could never finish.
MAX_LEVEL = 24

# pHash reads the 32x32 grey image; a large image is first reduced (Image.reduce is a box
# filter in C, far cheaper than a Lanczos resize of every pixel) to at most this side.
_PREPARE_SIDE = 256
_SIDE = 32  # the DCT's input
_LOW = 8  # the low-frequency corner kept: 8x8 = 64 bits


def parse_level(text: str) -> int:
    """A level name (:data:`LEVELS`) or a plain distance 0..:data:`MAX_LEVEL`, as a distance."""
    value = text.strip().lower()
    if value in LEVELS:
        return LEVELS[value]
    # isdigit() alone takes "²" (a digit to Unicode, not to int()): ASCII digits only.
    if value.isascii() and value.isdigit() and int(value) <= MAX_LEVEL:
        return int(value)
    names = ", ".join(f"{k} ({v})" for k, v in LEVELS.items())
    raise UsageError(f"similarity level {text!r}: one of {names}, or a distance 0-{MAX_LEVEL}")


def _grey(image: Image.Image) -> Image.Image:
    """The image as 8-bit grey, reduced (box filter) to about :data:`_PREPARE_SIDE`."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, as a viewer shows them: their colour is noise.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    grey = image.convert("L")
    factor = min(grey.size) // _PREPARE_SIDE
    return grey.reduce(factor) if factor >= 2 else grey


# The DCT-II matrix of size 32: the hash's transform as two matrix products (no SciPy needed,
# and the same numbers as scipy.fftpack.dct(type=2) up to a scale that the median ignores).
_N = np.arange(_SIDE)
_DCT = np.cos(np.pi * (2 * _N[None, :] + 1) * _N[:, None] / (2 * _SIDE))


def _phash(grey: Image.Image) -> bytes:
    """imagehash.phash's bits: the 8x8 lowest frequencies of the 32x32 image's DCT, each
    above or below their median, packed row by row, first bit the most significant."""
    small = grey.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:_LOW, :_LOW]
    bits = low > np.median(low)
    return np.packbits(bits.ravel()).tobytes()


def quadrants(image: Image.Image) -> list[Image.Image]:
    """The four quarters of a 2x2 grid: top-left, top-right, bottom-left, bottom-right."""
    width, height = image.size
    half_w, half_h = width // 2, height // 2
    return [
        image.crop(box)
        for box in (
            (0, 0, half_w, half_h),
            (half_w, 0, width, half_h),
            (0, half_h, half_w, height),
            (half_w, half_h, width, height),
        )
    ]


def hashes_of_image(image: Image.Image, *, grid: bool) -> list[bytes]:
    """``[whole]``, or for a 2x2 grid ``[whole, top-left, top-right, bottom-left,
    bottom-right]``; each :data:`HASH_BYTES` bytes."""
    grey = _grey(image)
    out = [_phash(grey)]
    if grid:
        # Quarters of the full image, not of the reduced one: each then gets the same
        # reduction a lone upscale of it would.
        out.extend(_phash(_grey(part)) for part in quadrants(image))
    return out


def hashes_of_bytes(data: bytes, *, grid: bool = False) -> list[bytes] | None:
    """:func:`hashes_of_image` of an encoded image; None when Pillow cannot read it (a
    video, a damaged file)."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            # JPEG: decode at a reduced scale (a fraction of the work), as thumbnails do.
            source.draft("L", (_PREPARE_SIDE * (2 if grid else 1),) * 2)
            image = ImageOps.exif_transpose(source)
            image.load()
            return hashes_of_image(image, grid=grid)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def to_words(hashes: Sequence[bytes]) -> np.ndarray:
    """Hashes as an ``(n, WORDS)`` uint64 array, each word big-endian (the first byte of a
    hash is the top byte of its first word)."""
    joined = b"".join(hashes)
    if len(joined) != len(hashes) * HASH_BYTES:
        raise ValueError(f"a hash is {HASH_BYTES} bytes")
    words = np.frombuffer(joined, dtype=">u8").astype(np.uint64)
    return words.reshape(len(hashes), WORDS)


def to_bytes(words: np.ndarray) -> list[bytes]:
    """:func:`to_words` undone."""
    raw = np.ascontiguousarray(words, dtype=np.uint64).astype(">u8").tobytes()
    return [raw[i : i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)]


def distances(words: np.ndarray, one: np.ndarray) -> np.ndarray:
    """The Hamming distance of each row of ``words`` ``(n, WORDS)`` to ``one`` ``(WORDS,)``:
    the popcount of their XOR, summed over the words."""
    xor = np.bitwise_xor(words, one)
    return np.bitwise_count(xor).sum(axis=1, dtype=np.int64)


def is_grid(types: Sequence[str | None], images: int) -> bool:
    """Whether a job's one image is a 2x2 grid: a grid job (``grid``, or ``diffusion`` and
    its ``v6_diffusion``-like variants in later records, videos aside: mjvault/jobtypes.py)
    whose archive holds one image, the grid itself (a job with four images holds its
    pictures apart). ``types``: the job's ``type`` (FORMAT §7.3), the one the index keeps:
    sync and the backfill must agree, or the same vault's hashes would differ by how they
    were made (a ``variation`` whose ``job_type`` is ``v6_diffusion`` is not a grid here)."""
    from mjvault.jobtypes import type_matches

    def grid_word(value: str) -> bool:
        value = value.lower()
        if type_matches(value, "video") or value.startswith("vid"):
            return False
        return type_matches(value, "grid") or value.endswith("diffusion")

    return images == 1 and any(t and grid_word(t) for t in types)
