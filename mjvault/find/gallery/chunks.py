"""The page's data: a small ``data.js`` and the jobs in chunk files the page loads on demand.

``data.js`` assigns ``window.MJVAULT_GALLERY``: the title, the query, how image URLs are
made, the totals, and ``chunks``, the list ``[name, jobs, images]`` of the chunk files in the
order they are shown. ``chunks/<name>.js`` calls ``MJVAULT_CHUNK("<name>", [job, ...])``
(scripts, not JSON: browsers refuse ``fetch()`` of local files but run local scripts). So
neither this process nor the page ever holds every job: a page of a million jobs loads the
chunks it shows as it is scrolled, and a search reads them one after the other.

Boundaries are chosen by the jobs themselves, as content-defined chunking does: a chunk ends
after a job whose id hashes to 0 modulo the target size (``CHUNK_JOBS`` on average, at least
an eighth of it, at most four times it). A chunk's name is a hash of its bytes, so a chunk
whose jobs did not change keeps its name and is not written again, and a new job (or a
removed one) changes the chunk it falls in and rarely the next: a gallery made again after
a sync rewrites what changed, not the whole page.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK_JOBS = 500  # jobs per chunk file on average: about half a megabyte
CHUNK_DIR = "chunks"
HEAD_PREFIX = "window.MJVAULT_GALLERY = "
CALL = "MJVAULT_CHUNK"


class ChunkWriter:
    """Takes the page's rows in order and writes the chunk files that are not there yet."""

    def __init__(self, directory: Path, target: int = CHUNK_JOBS) -> None:
        if target < 1:
            raise ValueError("a chunk holds at least one job")
        self.directory = directory / CHUNK_DIR
        self.directory.mkdir(exist_ok=True)
        self.target = target
        self.least = max(1, target // 8)
        self.most = target * 4
        self.rows: list[str] = []
        self.images = 0
        self.chunks: list[tuple[str, int, int]] = []  # name, jobs, images: one per chunk
        self.written = 0

    def add(self, job_id: str, row: list[Any], images: int) -> None:
        # U+2028/9 must be escaped for older JS parsers; ensure_ascii=False keeps them.
        text = json.dumps(row, ensure_ascii=False)
        self.rows.append(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
        self.images += images
        held = len(self.rows)
        if held >= self.most or (
            held >= self.least and zlib.crc32(job_id.encode("utf-8")) % self.target == 0
        ):
            self._cut()

    def _cut(self) -> None:
        if not self.rows:
            return
        body = ("[\n" + ",\n".join(self.rows) + "\n]").encode("utf-8")
        name = hashlib.blake2b(body, digest_size=12).hexdigest()
        path = self.directory / f"{name}.js"
        if not path.exists():
            _write(path, f'{CALL}("{name}", '.encode(), body, b");\n")
            self.written += 1
        self.chunks.append((name, len(self.rows), self.images))
        self.rows = []
        self.images = 0

    def finish(self) -> list[tuple[str, int, int]]:
        self._cut()
        return self.chunks

    def remove_stale(self) -> int:
        """Delete chunk files the page no longer names (after data.js names the new ones)."""
        keep = {f"{name}.js" for name, _, _ in self.chunks}
        removed = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name not in keep and entry.is_file():
                    os.unlink(entry.path)
                    removed += 1
        return removed


def write_head(path: Path, head: dict[str, Any]) -> None:
    text = HEAD_PREFIX + json.dumps(head, ensure_ascii=False) + ";\n"
    _write(path, text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8"))


def _write(path: Path, *parts: bytes) -> None:
    # Derived output, rebuilt by the next run: atomic (an open page never reads half a
    # file), not durable. In parts: a chunk's body is not copied once more to be framed.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        for part in parts:
            handle.write(part)
    os.replace(tmp, path)


def read_head(directory: Path) -> dict[str, Any]:
    """The ``data.js`` of the gallery in ``directory``."""
    text = (directory / "data.js").read_text(encoding="utf-8").rstrip()
    if not text.startswith(HEAD_PREFIX) or not text.endswith(";"):
        raise ValueError(f"{directory / 'data.js'} is not a gallery's data file")
    head: dict[str, Any] = json.loads(text[len(HEAD_PREFIX) : -1])
    return head


def gallery_rows(directory: Path) -> Iterator[list[Any]]:
    """Every job of the gallery in ``directory``, in page order, a chunk at a time."""
    for name, _, _ in read_head(directory)["chunks"]:
        text = (directory / CHUNK_DIR / f"{name}.js").read_text(encoding="utf-8").rstrip()
        start = f'{CALL}("{name}", '
        if not text.startswith(start) or not text.endswith(");"):
            raise ValueError(f"{directory / CHUNK_DIR / name}.js is not a gallery chunk")
        yield from json.loads(text[len(start) : -2])
