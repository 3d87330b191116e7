"""A generated image set with known near-duplicates, to measure perceptual hashes
(``scripts/bench/bench_similar.py``, ``tests/test_similar_hashes.py``).

Each source is drawn from a seed (gradients, shapes, noise textures and mixtures of them; no
text), and comes with the transformations a Midjourney archive shows of one picture: resized,
re-encoded between PNG, WebP and JPEG at several qualities, cropped by up to 5 %, made 10 %
brighter or darker; and, four sources at a time, a 2x2 grid whose quadrants are those sources
(a grid job's image, and the upscales of its tiles). Distinct sources are the negatives.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class Variant:
    """One image of the set: ``source`` is the index of the picture it shows; ``name`` the
    transformation (``original`` for the source itself); ``grid_part`` 1-4 when ``image`` is
    a 2x2 grid and the picture is that quadrant of it (0 otherwise)."""

    source: int
    name: str
    image: Image.Image
    grid_part: int = 0


def _encoded(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    out.seek(0)
    decoded = Image.open(out)
    decoded.load()
    return decoded.convert("RGB")


def _resized(factor: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.resize(
            (max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.LANCZOS
        )

    return apply


def _cropped(share: float, corner: int) -> Callable[[Image.Image], Image.Image]:
    """``share`` of the width and height cut away, all from one corner's two sides."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * share), round(h * share)
        left, top = (dx, dy) if corner in (0, 3) else (0, 0)
        right, bottom = (w, h) if corner in (0, 3) else (w - dx, h - dy)
        return image.crop((left, top, right, bottom))

    return apply


def _brightness(factor: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


def _reencoded(fmt: str, quality: int | None = None) -> Callable[[Image.Image], Image.Image]:
    if quality is None:
        return lambda image: _encoded(image, fmt)
    return lambda image: _encoded(image, fmt, quality=quality)


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize-0.5": _resized(0.5),
    "resize-0.75": _resized(0.75),
    "resize-2": _resized(2.0),
    "png": _reencoded("PNG"),
    "webp-q50": _reencoded("WEBP", 50),
    "webp-q80": _reencoded("WEBP", 80),
    "jpeg-q50": _reencoded("JPEG", 50),
    "jpeg-q75": _reencoded("JPEG", 75),
    "jpeg-q90": _reencoded("JPEG", 90),
    "jpeg-webp": lambda image: _encoded(_encoded(image, "JPEG", quality=75), "WEBP", quality=80),
    "crop-2": _cropped(0.02, 1),
    "crop-5": _cropped(0.05, 0),
    "bright+10": _brightness(1.10),
    "bright-10": _brightness(0.90),
}


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _gradient(rng: np.random.Generator, side: int) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] / side
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (x * np.cos(angle) + y * np.sin(angle)) * rng.uniform(0.5, 2.0)
    else:
        cx, cy = rng.uniform(0.1, 0.9, 2)
        t = np.hypot(x - cx, y - cy) * rng.uniform(1.0, 3.0)
    t = (np.sin(t * np.pi * rng.uniform(0.5, 2.5) + rng.uniform(0, np.pi)) + 1) / 2
    a, b = np.array(_colour(rng)), np.array(_colour(rng))
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def _noise(rng: np.random.Generator, side: int) -> np.ndarray:
    """Value noise: a few octaves of random grids, smoothly upscaled."""
    out = np.zeros((side, side, 3))
    weight = 1.0
    for cells in rng.choice([2, 3, 4, 6, 8, 12], size=3, replace=False):
        grid = rng.random((int(cells), int(cells), 3)) * 255
        layer = Image.fromarray(grid.astype(np.uint8), "RGB").resize(
            (side, side), Image.Resampling.BICUBIC
        )
        out += weight * np.asarray(layer, dtype=np.float64)
        weight *= 0.5
    return out / 1.75


def _shapes(rng: np.random.Generator, side: int, background: np.ndarray) -> np.ndarray:
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = (int(v) for v in rng.integers(-side // 4, side, 2))
        w, h = (int(v) for v in rng.integers(side // 8, side // 2, 2))
        box = (x0, y0, x0 + w, y0 + h)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse(box, fill=_colour(rng))
        elif kind == 1:
            draw.rectangle(box, fill=_colour(rng))
        else:
            points = [tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(3)]
            draw.polygon(points, fill=_colour(rng))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(side / 128))
    return np.asarray(image, dtype=np.float64)


def source_image(seed: int, side: int = 256, *, family: int | None = None) -> Image.Image:
    """Picture ``seed``: one of five families (``seed % 5`` unless given; 5 is a bare
    gradient), its details all drawn from the seed."""
    rng = np.random.default_rng(seed)
    family = seed % 5 if family is None else family
    if family == 5:
        return Image.fromarray(np.clip(_gradient(rng, side), 0, 255).astype(np.uint8), "RGB")
    if family == 0:
        # A bare gradient has almost no features: pHash is unstable on it (docs/design.md,
        # "Similar images: the hash", measures it apart); a textured one is what images show.
        pixels = 0.7 * _gradient(rng, side) + 0.3 * _noise(rng, side)
    elif family == 1:
        pixels = _noise(rng, side)
    elif family == 2:
        pixels = _shapes(rng, side, np.full((side, side, 3), _colour(rng), dtype=np.float64))
    elif family == 3:
        pixels = _shapes(rng, side, _gradient(rng, side))
    else:
        pixels = 0.6 * _noise(rng, side) + 0.4 * _shapes(rng, side, _gradient(rng, side))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def grid_of(tiles: list[Image.Image]) -> Image.Image:
    """Four tiles as a 2x2 grid, each at half its side (a grid job's image)."""
    w, h = tiles[0].size
    half = (w // 2, h // 2)
    grid = Image.new("RGB", (half[0] * 2, half[1] * 2))
    for n, tile in enumerate(tiles):
        grid.paste(
            tile.resize(half, Image.Resampling.LANCZOS), ((n % 2) * half[0], (n // 2) * half[1])
        )
    return grid


def variants(
    count: int, side: int = 256, *, first_seed: int = 0, family: int | None = None
) -> Iterator[Variant]:
    """``count`` sources, each followed by its transformations; then, per four sources, their
    grid (one variant per quadrant, the same grid image each time)."""
    sources = []
    for n in range(count):
        source = source_image(first_seed + n, side, family=family)
        sources.append(source)
        yield Variant(n, "original", source)
        for name, transform in TRANSFORMS.items():
            yield Variant(n, name, transform(source))
    for start in range(0, count - 3, 4):
        grid = grid_of(sources[start : start + 4])
        for part in range(4):
            yield Variant(start + part, "grid-tile", grid, grid_part=part + 1)


@dataclass(frozen=True)
class Quality:
    """Pairs within each distance: ``positives[d]`` (a source and one of its variants) and
    ``negatives[d]`` (images of two distinct sources), cumulative over 0..d."""

    positives: np.ndarray
    negatives: np.ndarray
    total_positives: int
    total_negatives: int

    def recall(self, distance: int) -> float:
        return float(self.positives[distance]) / max(1, self.total_positives)

    def precision(self, distance: int) -> float:
        found = int(self.positives[distance] + self.negatives[distance])
        return float(self.positives[distance]) / found if found else 1.0


def quality(sources: list[int], originals: list[bool], words: np.ndarray) -> Quality:
    """Recall and precision by distance of hashes ``words`` ``(n, words)`` uint64 of images
    showing ``sources[i]``, ``originals[i]`` telling the source itself. A positive pair is a
    source and one of its variants (two variants of one source are neither); a negative, any
    two images of distinct sources. Row by row: memory in n, not n squared."""
    bits = words.shape[1] * 64
    label = np.asarray(sources)
    original = np.asarray(originals)
    positives = np.zeros(bits + 1, dtype=np.int64)
    negatives = np.zeros(bits + 1, dtype=np.int64)
    for i in range(len(label) - 1):
        rest = words[i + 1 :]
        d = np.bitwise_count(np.bitwise_xor(rest, words[i])).sum(axis=1)
        same = label[i + 1 :] == label[i]
        paired = same & (original[i + 1 :] | original[i])
        positives += np.bincount(d[paired], minlength=bits + 1)
        negatives += np.bincount(d[~same], minlength=bits + 1)
    return Quality(
        np.cumsum(positives), np.cumsum(negatives), int(positives.sum()), int(negatives.sum())
    )
