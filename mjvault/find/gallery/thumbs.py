"""Thumbnails: WebP images made once per (source object, size) and kept as vault objects.

Which object is the thumbnail of which is remembered in ``<vault>/cache/thumbs.sqlite``, one
row per (source id, size): the thumbnail's id and the source's kind (``png``, ``jpg``,
``webp`` or ``gif``, so a later gallery need not open the source). A table, not a file read
whole: a gallery of a million images looks up each one and holds none. It is a cache like
the index: losing it, or the thumbnail objects, only means they are made again. gc keeps
the thumbnails the table names for the images it keeps (``integrity/reachability.py``).
``cache/thumbs.json``, where earlier versions kept the mapping, is read once (streamed) into
the table and removed.
"""

from __future__ import annotations

import io
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from PIL import Image, ImageOps, UnidentifiedImageError

from mjvault.store import cachefile

CACHE_FILE = "cache/thumbs.sqlite"
OLD_CACHE_FILE = "cache/thumbs.json"
TABLE_VERSION = 1
WEBP_QUALITY = 78
WEBP_METHOD = 4  # the static gallery's; mjvault/thumbnails.py makes its sizes with 2
CACHE_KIB = 4096  # SQLite's page cache: the table's top levels, not the table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS thumbs (
    source TEXT NOT NULL, size INTEGER NOT NULL, thumb TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (source, size)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"""
# An entry of thumbs.json as its writer laid it out (json.dumps with compact separators).
_OLD_ENTRY = re.compile(
    rb'"([0-9a-f]{16,128}):(\d{1,5})":\["([0-9a-f]{16,128})","([a-z0-9]{1,8})"\]'
)
_OLD_HEAD = b'{"v":1,'
_READ = 1 << 20
_QUERY_MAX = 500  # ids in one IN (...): under any SQLite's limit on parameters


def make_thumbnail(data: bytes, size: int, method: int = WEBP_METHOD) -> bytes | None:
    """A WebP of at most ``size`` px on its long side; None for what Pillow cannot decode.
    ``method``: libwebp's effort, 0 (fastest) to 6."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            image: Image.Image = ImageOps.exif_transpose(source)
            image.thumbnail((size, size), reducing_gap=2.0)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            out = io.BytesIO()
            image.save(out, "WEBP", quality=WEBP_QUALITY, method=method)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def make_thumbnails(
    data: bytes, sizes: list[int], method: int = WEBP_METHOD
) -> dict[int, bytes | None]:
    """:func:`make_thumbnail` of each size, byte for byte, decoding the image once when it is
    not a JPEG (whose decoder is asked for a reduced scale per size instead): the decode is
    most of the cost of a PNG's thumbnail."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            if source.format == "JPEG" or len(sizes) < 2:
                return {size: make_thumbnail(data, size, method) for size in sizes}
            full: Image.Image = ImageOps.exif_transpose(source)
            full.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return dict.fromkeys(sizes)
    return thumbnails_of_image(full, sizes, method)


def thumbnails_of_image(
    full: Image.Image, sizes: list[int], method: int = WEBP_METHOD
) -> dict[int, bytes | None]:
    """WebPs of a decoded, upright image at each of ``sizes`` (None where encoding fails)."""
    out: dict[int, bytes | None] = {}
    for size in sizes:
        try:
            image = full.copy()
            image.thumbnail((size, size), reducing_gap=2.0)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            buffer = io.BytesIO()
            image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=method)
            out[size] = buffer.getvalue()
        except (OSError, ValueError):
            out[size] = None
    return out


def _probe_thumbs(db: sqlite3.Connection) -> None:
    db.execute("SELECT count(*) FROM (SELECT 1 FROM thumbs LIMIT 1)").fetchone()


class ThumbCache:
    """The source-to-thumbnail mapping of one vault.

    Safe to share between threads (one connection behind a lock). Changes are held in one
    transaction until :meth:`commit`: the gallery commits right after the thumbnails named
    are published, so the table never names an object a crash left unwritten.
    """

    def __init__(self, vault_path: Path) -> None:
        self.path = vault_path / CACHE_FILE
        self.lock = threading.Lock()
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        # Damaged: a cache, so start again rather than refuse the gallery.
        self.db = cachefile.open_or_start_again(self.path, self._open)
        self._migrate(vault_path / OLD_CACHE_FILE)

    def _open(self) -> sqlite3.Connection:
        return cachefile.connect(
            self.path, _SCHEMA, TABLE_VERSION, cache_kib=CACHE_KIB, prepare=_probe_thumbs
        )

    def _migrate(self, old: Path) -> None:
        """Move thumbs.json's entries into the table, reading the file a block at a time."""
        try:
            handle = open(old, "rb")  # noqa: SIM115  (closed below, before the unlink)
        except FileNotFoundError:
            return
        with handle:
            data = handle.read(_READ)
            if data.startswith(_OLD_HEAD):
                while data:
                    end = 0
                    rows = []
                    for match in _OLD_ENTRY.finditer(data):
                        source, size, thumb, kind = (g.decode("ascii") for g in match.groups())
                        rows.append((source, int(size), thumb, kind))
                        end = match.end()
                    with self.lock:
                        self._begin()
                        self.db.executemany(
                            "INSERT OR IGNORE INTO thumbs VALUES (?, ?, ?, ?)", rows
                        )
                    # An entry cut by the block's end is read again with the next block.
                    rest = data[end:] if end else data[-512:]
                    more = handle.read(_READ)
                    data = rest + more if more else b""
        self.commit()
        old.unlink(missing_ok=True)

    def _begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")

    def get(self, source: str, size: int) -> tuple[str, str] | None:
        """(thumbnail object id, source kind) when known; the id is "" for a video."""
        with self.lock:
            row = self.db.execute(
                "SELECT thumb, kind FROM thumbs WHERE source = ? AND size = ?", (source, size)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def get_many(self, sources: list[str], size: int) -> dict[str, tuple[str, str]]:
        """:meth:`get` of many images (a few jobs' worth) in a few queries."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(sources), _QUERY_MAX):
            part = sources[start : start + _QUERY_MAX]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows = self.db.execute(
                    f"SELECT source, thumb, kind FROM thumbs WHERE size = ? AND source IN ({marks})",
                    (size, *part),
                ).fetchall()
            found.update((source, (thumb, kind)) for source, thumb, kind in rows)
        return found

    def put(self, source: str, size: int, thumb: str, kind: str) -> None:
        with self.lock:
            self._begin()
            self.db.execute(
                "INSERT OR REPLACE INTO thumbs VALUES (?, ?, ?, ?)", (source, size, thumb, kind)
            )

    def forget(self, source: str, size: int) -> None:
        with self.lock:
            self._begin()
            self.db.execute("DELETE FROM thumbs WHERE source = ? AND size = ?", (source, size))

    def object_ids(self) -> Iterator[str]:
        """Every thumbnail object the cache names: what a gc keeps if galleries are to stay
        whole (a plain vault's gallery links to these object files)."""
        with self.lock:
            rows = self.db.execute("SELECT DISTINCT thumb FROM thumbs ORDER BY thumb")
        for (thumb,) in rows:
            yield thumb

    def commit(self) -> None:
        with self.lock:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def rollback(self) -> None:
        """Drop what is pending: the thumbnails it names were never published."""
        with self.lock:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def close(self) -> None:
        """Commit what is pending and let the file go."""
        self.commit()
        self.db.close()

    def __enter__(self) -> ThumbCache:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def table_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """Every (source, thumbnail id) row of the table at ``path``, streamed (a million rows are
    never held) from a read-only connection of its own: gc keeps the thumbnails of the sources
    it keeps, on a full disk too, where opening the table to write (its schema, its journal)
    would fail."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        yield from db.execute("SELECT source, thumb FROM thumbs")
    finally:
        db.close()
