"""A static HTML gallery of a vault (or a search): opens from disk, needs no server.

DIR gets ``index.html``, ``gallery.css``, ``gallery.js`` and ``data.js`` (the jobs, as a
script assigning ``window.MJVAULT_GALLERY``: browsers refuse ``fetch()`` of local files but
run local scripts). Thumbnails are WebP objects cached in the vault (see ``thumbs``). In a
plain vault the page points at the object files themselves (media objects are the image
files, byte for byte); an encrypted vault's objects are ciphertext, so decrypted copies of
every image and thumbnail shown are written under DIR, and the report says so.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, ObjectNotFound, UsageError
from mjvault.find.gallery.thumbs import ThumbCache, make_thumbnail
from mjvault.index.db import JobSummary
from mjvault.index.query import parse_query
from mjvault.index.search import search
from mjvault.jobtypes import TYPE_ALIASES
from mjvault.params import ALIASES
from mjvault.store.codec import media_kind

if TYPE_CHECKING:
    from mjvault.store.objects import WriteBatch
    from mjvault.vault import Vault

STATIC_FILES = ("index.html", "gallery.css", "gallery.js")
DEFAULT_THUMB_SIZE = 320
FLUSH_EVERY = 500  # thumbnails staged before they are published (bounds tmp/ and lost work)


@dataclass
class GalleryReport:
    directory: Path
    jobs: int = 0  # jobs shown (with at least one image)
    jobs_without_images: int = 0  # matched but not shown: nothing to show
    images: int = 0
    videos: int = 0
    thumbs_made: int = 0
    thumbs_cached: int = 0
    unreadable: list[str] = field(default_factory=list)  # image object ids
    decrypted_copies: int = 0
    decrypted_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": os.fspath(self.directory),
            "index": os.fspath(self.directory / "index.html"),
            "jobs": self.jobs,
            "jobs_without_images": self.jobs_without_images,
            "images": self.images,
            "videos": self.videos,
            "thumbs_made": self.thumbs_made,
            "thumbs_cached": self.thumbs_cached,
            "unreadable": self.unreadable,
            "decrypted_copies": self.decrypted_copies,
            "decrypted_dir": os.fspath(self.decrypted_dir) if self.decrypted_dir else None,
        }


@dataclass
class _Image:
    source: str
    kind: str | None = None  # png, jpg, webp, gif, mp4; None when unreadable
    thumb: str | None = None  # thumbnail object id
    thumb_bytes: bytes | None = None  # a thumbnail made just now, to be stored
    plaintext: bytes | None = None  # encrypted vault: for the decrypted copy


def params_command(params: dict[str, str]) -> str:
    return " ".join(f"--{k}" if v == "true" else f"--{k} {v}" for k, v in params.items())


def build_gallery(
    vault: Vault,
    directory: Path,
    query: str | None = None,
    *,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    title: str | None = None,
    workers: int | None = None,
    on_job: Callable[[], None] | None = None,
) -> GalleryReport:
    """Write the gallery of the jobs matching ``query`` (all when None) into ``directory``."""
    if thumb_size < 16 or thumb_size > 2048:
        raise UsageError("thumbnail size must be between 16 and 2048 pixels")
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory == vault.path.resolve() or vault.path.resolve() in directory.parents:
        raise UsageError("write the gallery outside the vault")
    directory.mkdir(parents=True, exist_ok=True)
    index = vault.index  # brought up to HEAD before the lock is taken
    job_ids = search(index, parse_query(query or "")).job_ids
    report = GalleryReport(directory)
    encrypted = vault.encrypted
    if encrypted:
        report.decrypted_dir = directory / "media"
        (directory / "media").mkdir(exist_ok=True)
        (directory / "thumbs").mkdir(exist_ok=True)
    cache = ThumbCache(vault.path)
    made = _Made()
    with vault.write_lock():
        batch = vault.store.batch()
        try:
            with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2)) as pool:
                summaries = (s for s in map(index.get, job_ids) if s is not None)
                prepared = bounded_map(
                    pool,
                    lambda s: (
                        s,
                        [
                            _prepare(vault, directory, cache, made, i, thumb_size)
                            for i in s.images
                            if i
                        ],
                    ),
                    summaries,
                    window=16,  # an encrypted vault holds each window's plaintexts
                )
                rows = _rows(vault, directory, batch, cache, thumb_size, prepared, report, on_job)
                head = {
                    "title": title or f"mjvault: {vault.path.name}",
                    "query": query or "",
                    "layout": "copies" if encrypted else "objects",
                    # Parameter names and aliases, for the page's v:6-style filters.
                    "aliases": ALIASES,
                    "type_aliases": TYPE_ALIASES,  # type:video is video_diffusion too
                    # Plain vault: image URLs are this prefix + id[:2]/id (relative to DIR).
                    "objects": "" if encrypted else _url(directory, vault.store.objects_dir) + "/",
                }
                _write_data(directory / "data.js", rows, head)
            batch.flush()
        except BaseException:
            batch.discard()
            raise
        finally:
            cache.save()
    for name in STATIC_FILES:
        source = resources.files("mjvault.find.gallery").joinpath("static", name)
        with source.open("rb") as src, open(directory / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return report


class _Made:
    """Thumbnails made during this build, so jobs sharing an image do not make it again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thumbs: dict[str, bytes | None] = {}


def _prepare(
    vault: Vault, directory: Path, cache: ThumbCache, made: _Made, source: str, size: int
) -> _Image:
    """Worker-thread part: what the image is, and its thumbnail (cached or made now)."""
    image = _Image(source)
    cached = cache.get(source, size)
    if cached is not None and vault.store.exists(cached[0]):
        # Known from an earlier gallery: no need to open the image at all, unless an
        # encrypted vault's decrypted copy is missing from this gallery.
        image.thumb, image.kind = cached
        if vault.encrypted and not (directory / "media" / f"{source}.{image.kind}").exists():
            try:
                image.plaintext = vault.read_object(source)
            except (OSError, ObjectNotFound, CorruptObject):
                image.kind = None
        return image
    try:
        if vault.encrypted:
            image.plaintext = vault.read_object(source)
            head = image.plaintext[:16]
        else:
            with open(vault.object_path(source), "rb") as handle:
                head = handle.read(16)
    except (OSError, ObjectNotFound, CorruptObject):
        return image
    image.kind = media_kind(head)
    if image.kind is None or image.kind == "mp4":
        return image
    with made.lock:
        known = source in made.thumbs
        image.thumb_bytes = made.thumbs.get(source)
    if not known:
        data = image.plaintext if image.plaintext is not None else vault.read_object(source)
        image.thumb_bytes = make_thumbnail(data, size)
        with made.lock:
            made.thumbs[source] = image.thumb_bytes
    if image.thumb_bytes is None:
        image.kind = None
    return image


def _url(directory: Path, target: Path) -> str:
    try:
        relative = os.path.relpath(target, directory)
    except ValueError:  # another drive (Windows): only an absolute file URL reaches it
        return target.as_uri()
    return quote(relative.replace(os.sep, "/"))


def _rows(
    vault: Vault,
    directory: Path,
    batch: WriteBatch,
    cache: ThumbCache,
    size: int,
    prepared: Iterator[tuple[JobSummary, list[_Image]]],
    report: GalleryReport,
    on_job: Callable[[], None] | None,
) -> Iterator[list[Any]]:
    """Main-thread part: store new thumbnails, write decrypted copies, yield data rows."""
    staged = 0
    for summary, images in prepared:
        if on_job is not None:
            on_job()
        shown = []
        for image in images:
            if image.kind is None:
                report.unreadable.append(image.source)
                continue
            known = cache.get(image.source, size)
            if image.thumb_bytes is not None and known is None:
                image.thumb, _ = batch.put_media(image.thumb_bytes)
                cache.put(image.source, size, image.thumb, image.kind)
                report.thumbs_made += 1
                staged += 1
            else:
                if image.thumb is None and known is not None:
                    image.thumb = known[0]  # made for an earlier job of this build
                report.thumbs_cached += 1
            _copy_out(vault, directory, image, report)
            shown.append([image.thumb or "", image.source, image.kind])
            report.images += image.kind != "mp4"
            report.videos += image.kind == "mp4"
        if staged >= FLUSH_EVERY:
            batch.flush()
            cache.save()
            staged = 0
        if not shown:
            report.jobs_without_images += 1
            continue
        report.jobs += 1
        when = summary.time.astimezone(UTC).isoformat(timespec="seconds") if summary.time else ""
        yield [
            summary.job_id,
            when,
            summary.type,
            summary.prompt,
            params_command(summary.params),
            shown,
        ]


def image_paths(head: dict[str, Any], image: list[str]) -> tuple[str, str]:
    """(thumbnail URL or "", full URL) of a data.js image ``[thumb id, source id, kind]``;
    the same rule gallery.js applies."""
    thumb, source, kind = image
    if head["layout"] == "objects":
        prefix = head["objects"]
        full = f"{prefix}{source[:2]}/{source}"
        return (f"{prefix}{thumb[:2]}/{thumb}" if thumb else ""), full
    return (f"thumbs/{thumb}.webp" if thumb else ""), f"media/{source}.{kind}"


def _copy_out(vault: Vault, directory: Path, image: _Image, report: GalleryReport) -> None:
    """Encrypted vault: write the decrypted image and thumbnail the page shows, if missing."""
    if not vault.encrypted:
        return
    full_path = directory / "media" / f"{image.source}.{image.kind}"
    if image.plaintext is not None and not _same_size(full_path, len(image.plaintext)):
        _write_copy(full_path, image.plaintext)
        report.decrypted_copies += 1
    if image.thumb:
        thumb_path = directory / "thumbs" / f"{image.thumb}.webp"
        if not thumb_path.exists():
            data = (
                image.thumb_bytes
                if image.thumb_bytes is not None
                else vault.read_object(image.thumb)
            )
            _write_copy(thumb_path, data)
            report.decrypted_copies += 1


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _write_copy(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_data(path: Path, rows: Iterator[list[Any]], head: dict[str, Any]) -> None:
    """``data.js``, one job per line, written as the rows come (never held whole).

    Each job is ``[id, time, type, prompt, params, images]``, each image ``[thumbnail id or
    "", image id, kind]``: ids, not paths, keep 100k jobs to tens of megabytes.
    """
    head = head | {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "columns": ["id", "time", "type", "prompt", "params", "images"],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("window.MJVAULT_GALLERY = ")
        out.write(json.dumps(head, ensure_ascii=False)[:-1])
        out.write(', "jobs": [')
        for n, row in enumerate(rows):
            out.write(",\n" if n else "\n")
            # "</script>" cannot end anything here (a separate file), but U+2028/9 must be
            # escaped for older JS parsers: ensure_ascii=False keeps them, so escape by hand.
            text = json.dumps(row, ensure_ascii=False)
            out.write(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
        out.write("\n]};\n")
    os.replace(tmp, path)
