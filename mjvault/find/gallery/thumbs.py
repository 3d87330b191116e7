"""Thumbnails: WebP images made once per (source object, size) and kept as vault objects.

Which object is the thumbnail of which is remembered in ``<vault>/cache/thumbs.json``
(``{"v": 1, "thumbs": {"<source id>:<size>": ["<thumbnail id>", "<source kind>"]}}``, the
kind being ``png``, ``jpg``, ``webp`` or ``gif`` so a later gallery need not open the source), a cache like the index:
losing it, or the thumbnail objects (nothing in a snapshot refers to them, so a gc may remove
them), only means they are made again.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mjvault.store.fsutil import atomic_write

CACHE_FILE = "cache/thumbs.json"
CACHE_VERSION = 1
WEBP_QUALITY = 78


def make_thumbnail(data: bytes, size: int) -> bytes | None:
    """A WebP of at most ``size`` px on its long side; None for what Pillow cannot decode."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            image: Image.Image = ImageOps.exif_transpose(source)
            image.thumbnail((size, size), reducing_gap=2.0)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            out = io.BytesIO()
            image.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


class ThumbCache:
    """The source-to-thumbnail mapping of one vault."""

    def __init__(self, vault_path: Path) -> None:
        self.path = vault_path / CACHE_FILE
        self.entries: dict[str, tuple[str, str]] = {}
        self.changed = False
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and doc.get("v") == CACHE_VERSION:
            thumbs = doc.get("thumbs")
            if isinstance(thumbs, dict):
                self.entries = {
                    str(k): (str(v[0]), str(v[1]))
                    for k, v in thumbs.items()
                    if isinstance(v, list) and len(v) == 2
                }

    @staticmethod
    def key(source: str, size: int) -> str:
        return f"{source}:{size}"

    def get(self, source: str, size: int) -> tuple[str, str] | None:
        """(thumbnail object id, source kind) when known."""
        return self.entries.get(self.key(source, size))

    def put(self, source: str, size: int, thumb: str, kind: str) -> None:
        self.entries[self.key(source, size)] = (thumb, kind)
        self.changed = True

    def object_ids(self) -> set[str]:
        """Every thumbnail object the cache names: what a gc keeps if galleries are to stay
        whole (a plain vault's gallery links to these object files)."""
        return {thumb for thumb, _ in self.entries.values()}

    def forget(self, source: str, size: int) -> None:
        if self.entries.pop(self.key(source, size), None) is not None:
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        doc = {"v": CACHE_VERSION, "thumbs": {k: list(v) for k, v in self.entries.items()}}
        atomic_write(self.path, json.dumps(doc, separators=(",", ":")).encode(), mode=0o600)
        os.chmod(self.path, 0o600)
        self.changed = False
