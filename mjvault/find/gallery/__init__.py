"""A static HTML gallery of a vault (or a search): opens from disk, needs no server.

DIR gets ``index.html``, ``gallery.css``, ``gallery.js``, ``data.js`` and ``chunks/`` (the
jobs, in chunk files the page loads as it needs them; see ``chunks``). Thumbnails are WebP
objects cached in the vault (see ``thumbs``). In a plain vault the page points at the object
files themselves (media objects are the image files, byte for byte); an encrypted vault's
objects are ciphertext, so decrypted copies of every image and thumbnail shown are written
under DIR, and the report says so.

Memory stays flat whatever the vault's size: jobs are streamed from the index, rows written a
chunk at a time, the thumbnail cache is a table looked up per image, and what the run keeps
besides (thumbnails not yet published, a few unreadable ids) is bounded.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mjvault.errors import CorruptObject, ObjectNotFound, UsageError
from mjvault.find.anonymize import scrub, scrub_params
from mjvault.find.gallery.chunks import CHUNK_JOBS, ChunkWriter, write_head
from mjvault.find.gallery.thumbs import ThumbCache, make_thumbnail
from mjvault.index.db import JobSummary
from mjvault.index.query import parse_query
from mjvault.index.search import iter_search
from mjvault.jobtypes import TYPE_ALIASES
from mjvault.params import ALIASES
from mjvault.reports import Report
from mjvault.store.codec import media_kind

if TYPE_CHECKING:
    from mjvault.store.objects import WriteBatch
    from mjvault.vault import Vault

STATIC_FILES = ("index.html", "gallery.css", "gallery.js")
DEFAULT_THUMB_SIZE = 320
FLUSH_EVERY = 500  # thumbnails staged before they are published (bounds tmp/, lost work, RAM)
WINDOW = 16  # jobs in flight (an encrypted vault holds each one's plaintexts)
LOOKUP_JOBS = 64  # jobs whose images are looked up in the thumbnail cache at once
UNREADABLE_LISTED = 100  # unreadable image ids named in the report; the rest are counted


@dataclass
class GalleryReport(Report):
    directory: Path
    jobs: int = 0  # jobs shown (with at least one image)
    jobs_without_images: int = 0  # matched but not shown: nothing to show
    images: int = 0
    videos: int = 0
    thumbs_made: int = 0
    thumbs_cached: int = 0
    unreadable: list[str] = field(default_factory=list)  # the first UNREADABLE_LISTED ids
    unreadable_count: int = 0
    decrypted_copies: int = 0
    decrypted_dir: Path | None = None
    chunks: int = 0  # chunk files the page has
    chunks_written: int = 0  # of which written by this run (the others were unchanged)

    def add_unreadable(self, object_id: str) -> None:
        self.unreadable_count += 1
        if len(self.unreadable) < UNREADABLE_LISTED:
            self.unreadable.append(object_id)

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the page's path is derived, the decrypted copies come last.
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
            "unreadable_count": self.unreadable_count,
            "chunks": self.chunks,
            "chunks_written": self.chunks_written,
            "decrypted_copies": self.decrypted_copies,
            "decrypted_dir": os.fspath(self.decrypted_dir) if self.decrypted_dir else None,
        }


@dataclass
class _Image:
    source: str
    kind: str | None = None  # png, jpg, webp, gif, mp4; None when unreadable
    thumb: str | None = None  # thumbnail object id
    thumb_bytes: bytes | None = None  # a thumbnail made just now, to be stored
    stale: bool = False  # the cache named a thumbnail object that is gone (a gc took it)
    known: bool = False  # the cache knew it
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
    chunk_jobs: int = CHUNK_JOBS,
    anonymize: bool = False,
) -> GalleryReport:
    """Write the gallery of the jobs matching ``query`` (all when None) into ``directory``.

    ``anonymize``: prompts and parameters without image-prompt URLs, and a title that does
    not name the vault's folder (:mod:`mjvault.find.anonymize`; the page shows no username).

    Made again into the same directory, only the thumbnails and chunk files that are missing
    are made; chunk files the page no longer names are removed.
    """
    if thumb_size < 16 or thumb_size > 2048:
        raise UsageError("thumbnail size must be between 16 and 2048 pixels")
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory == vault.path.resolve() or vault.path.resolve() in directory.parents:
        raise UsageError("write the gallery outside the vault")
    directory.mkdir(parents=True, exist_ok=True)
    for inside in ("chunks", "media", "thumbs"):
        if (directory / inside).exists() and not (directory / inside).is_dir():
            raise UsageError(f"{directory / inside} exists and is not a directory")
    index = vault.current_index()  # brought up to HEAD before the lock is taken
    report = GalleryReport(directory)
    encrypted = vault.encrypted
    if encrypted:
        report.decrypted_dir = directory / "media"
        (directory / "media").mkdir(exist_ok=True)
        (directory / "thumbs").mkdir(exist_ok=True)
    chunks = ChunkWriter(directory, chunk_jobs)
    with vault.write_lock():
        cache = ThumbCache(vault.path)
        made = _Made()
        batch = vault.store.batch()
        try:
            with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2)) as pool:
                job_ids = iter_search(index, parse_query(query or ""))
                summaries = (s for s in map(index.get, job_ids) if s is not None)
                prepared = _prepared(pool, vault, directory, cache, made, thumb_size, summaries)
                rows = _rows(vault, directory, batch, cache, made, thumb_size, prepared, report)
                if anonymize:
                    rows = (_anonymized(summary, row, n) for summary, row, n in rows)
                for summary, row, images in rows:
                    chunks.add(summary.job_id, row, images)
                    if on_job is not None:
                        on_job()
                listed = chunks.finish()
            batch.flush()
            cache.commit()
        except BaseException:
            batch.discard()
            cache.rollback()
            raise
        finally:
            cache.close()
        # Under the lock still: a gallery made at the same time into the same directory
        # must not remove the chunk files this one names.
        report.chunks, report.chunks_written = len(listed), chunks.written
        if anonymize and title is None:
            title = "mjvault"
        write_head(directory / "data.js", _head(vault, directory, report, listed, query, title))
        chunks.remove_stale()
    for name in STATIC_FILES:
        data = resources.files("mjvault.find.gallery").joinpath("static", name).read_bytes()
        _write_if_changed(directory / name, data)
    return report


def _head(
    vault: Vault,
    directory: Path,
    report: GalleryReport,
    listed: list[tuple[str, int, int]],
    query: str | None,
    title: str | None,
) -> dict[str, Any]:
    """What data.js holds: everything the page needs but the jobs."""
    return {
        "title": title or f"mjvault: {vault.path.name}",
        "query": query or "",
        "layout": "copies" if vault.encrypted else "objects",
        # Parameter names and aliases, for the page's v:6-style filters.
        "aliases": ALIASES,
        "type_aliases": TYPE_ALIASES,  # type:video is video_diffusion too
        # Plain vault: image URLs are this prefix + id[:2]/id (relative to DIR).
        "objects": "" if vault.encrypted else _url(directory, vault.store.objects_dir) + "/",
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        # Each job is [id, time, type, prompt, params, images], each image [thumbnail id or
        # "", image id, kind]: ids, not paths, keep a chunk of 500 jobs near half a megabyte.
        "columns": ["id", "time", "type", "prompt", "params", "images"],
        "jobs": report.jobs,
        "images": report.images + report.videos,  # tiles: videos are tiles too
        "chunks": [list(c) for c in listed],
    }


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Made:
    """Thumbnails made since the last publish, so jobs sharing an image do not make it
    twice. Cleared at each publish: from then on the cache names them (bounded memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thumbs: dict[str, bytes | None] = {}
        self.stored: set[str] = set()  # sources whose thumbnail was staged since then

    def clear(self) -> None:
        with self.lock:
            self.thumbs.clear()
            self.stored.clear()


def _prepared(
    pool: ThreadPoolExecutor,
    vault: Vault,
    directory: Path,
    cache: ThumbCache,
    made: _Made,
    size: int,
    summaries: Iterable[JobSummary],
) -> Iterator[tuple[JobSummary, list[_Image]]]:
    """Each job with its images prepared, in order, at most WINDOW jobs ahead. A job whose
    thumbnails are all cached (every job, the second time) is answered on this thread."""
    pending: deque[tuple[JobSummary, list[_Image] | Future[list[_Image]]]] = deque()

    def work(images: list[_Image | str]) -> list[_Image]:
        return [
            i if isinstance(i, _Image) else _prepare(vault, directory, cache, made, i, size)
            for i in images
        ]

    encrypted = vault.encrypted
    jobs = iter(summaries)
    while group := list(islice(jobs, LOOKUP_JOBS)):
        found = cache.get_many([i for job in group for i in job.images if i], size)
        for summary in group:
            sources = [i for i in summary.images if i]
            known = [_cached(vault, encrypted, directory, s, found.get(s)) or s for s in sources]
            if all(isinstance(i, _Image) for i in known):
                pending.append((summary, work(known)))
            else:
                pending.append((summary, pool.submit(work, known)))
            while pending and (len(pending) >= WINDOW or isinstance(pending[0][1], list)):
                first, images = pending.popleft()
                yield first, images if isinstance(images, list) else images.result()
    while pending:
        first, images = pending.popleft()
        yield first, images if isinstance(images, list) else images.result()


def _cached(
    vault: Vault, encrypted: bool, directory: Path, source: str, cached: tuple[str, str] | None
) -> _Image | None:
    """The image as the cache knows it, when nothing needs reading: its thumbnail is there
    (or it is a video) and, in an encrypted vault, so is its decrypted copy. None: a worker
    must look."""
    if cached is None:
        return None
    thumb, kind = cached
    if thumb and not vault.store.exists(thumb):
        return None
    if encrypted and not (directory / "media" / f"{source}.{kind}").exists():
        return None
    return _Image(source, kind=kind, thumb=thumb or None, known=True)


def _prepare(
    vault: Vault, directory: Path, cache: ThumbCache, made: _Made, source: str, size: int
) -> _Image:
    """Worker-thread part: what the image is, and its thumbnail (cached or made now)."""
    image = _Image(source)
    cached = cache.get(source, size)
    if cached is not None and (not cached[0] or vault.store.exists(cached[0])):
        # Known from an earlier gallery: no need to open the image at all, unless an
        # encrypted vault's decrypted copy is missing from this gallery.
        image.thumb, image.kind, image.known = cached[0] or None, cached[1], True
        if vault.encrypted and not (directory / "media" / f"{source}.{image.kind}").exists():
            try:
                image.plaintext = vault.read_object(source)
            except (OSError, ObjectNotFound, CorruptObject):
                image.kind = None
        return image
    image.stale = cached is not None
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
    made: _Made,
    size: int,
    prepared: Iterator[tuple[JobSummary, list[_Image]]],
    report: GalleryReport,
) -> Iterator[tuple[JobSummary, list[Any], int]]:
    """Main-thread part: store new thumbnails, write decrypted copies, yield data rows
    (with the number of images each shows)."""
    staged = 0
    for summary, images in prepared:
        shown = []
        for image in images:
            if image.kind is None:
                report.add_unreadable(image.source)
                continue
            if image.thumb_bytes is None:
                report.thumbs_cached += 1  # the cache named it and its object is there
                if image.kind == "mp4" and not image.known:
                    # Remembered too, so the next gallery need not open the video.
                    cache.put(image.source, size, "", "mp4")
            else:
                known = cache.get(image.source, size)
                if known is not None and (image.source in made.stored or not image.stale):
                    image.thumb = known[0]  # made for an earlier job of this build
                    report.thumbs_cached += 1
                else:
                    image.thumb, _ = batch.put_media(image.thumb_bytes)
                    cache.put(image.source, size, image.thumb, image.kind)
                    made.stored.add(image.source)
                    report.thumbs_made += 1
                    staged += 1
            _copy_out(vault, directory, image, report)
            shown.append([image.thumb or "", image.source, image.kind])
            report.images += image.kind != "mp4"
            report.videos += image.kind == "mp4"
        if staged >= FLUSH_EVERY or len(made.thumbs) >= 2 * FLUSH_EVERY:
            # Published before the cache names them; then the thumbnails held can go (also
            # when images that do not decode, which stage nothing, fill the list).
            batch.flush()
            cache.commit()
            made.clear()
            staged = 0
        if not shown:
            report.jobs_without_images += 1
            continue
        report.jobs += 1
        when = summary.time.astimezone(UTC).isoformat(timespec="seconds") if summary.time else ""
        row = [
            summary.job_id,
            when,
            summary.type,
            summary.prompt,
            params_command(summary.params),
            shown,
        ]
        yield summary, row, len(shown)


def _anonymized(
    summary: JobSummary, row: list[Any], shown: int
) -> tuple[JobSummary, list[Any], int]:
    row = list(row)
    row[3] = scrub(summary.prompt)
    row[4] = params_command(scrub_params(summary.params))
    return summary, row, shown


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
