"""Thumbnails made once per image: the library the web server, sync, import and
``mjvault thumbs`` share (docs/FORMAT.md §12.2, docs/design.md "Thumbnails made once").

A thumbnail is a WebP vault object (sealed like any object in an encrypted vault); which
object is the thumbnail of which image, at which size, is the table of
:class:`~mjvault.find.gallery.thumbs.ThumbCache`. Two sizes: ``s`` (256 px on the long side,
the grid) and ``m`` (768 px, the lightbox while the full image loads).

Storing an object needs the vault's write lock (only its holder writes ``tmp/``). Sync and
import make thumbnails while they hold it; :func:`thumbnail` takes it for a moment when it
must make one, as a *brief* holder (a writer starting then waits for it rather than refusing),
and when a writer holds it, answers the thumbnail made in memory without keeping it (the next
request, or a backfill, keeps it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

from mjvault.errors import CorruptObject, KeysChanged, ObjectNotFound, UsageError, VaultLocked
from mjvault.find.gallery.thumbs import (
    CACHE_FILE,
    ThumbCache,
    make_thumbnail,
    make_thumbnails,
    thumbnails_of_image,
)
from mjvault.lock import WriteLock
from mjvault.reports import Report
from mjvault.store.codec import media_kind
from mjvault.store.objects import WriteBatch

if TYPE_CHECKING:
    from mjvault.similarity.store import HashStore
    from mjvault.vault import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a worker makes of an image: its kind (None: unreadable), thumbnails by size, hashes.
# (kind, thumbnails by size, hashes): hashes None when none were asked, [] when asked of
# what is not an image.
Made = tuple[str | None, dict[int, bytes | None], list[bytes] | None]

SIZES: dict[str, int] = {"s": 256, "m": 768}
# libwebp's effort: 2 makes a 768 px thumbnail ~4x faster than the gallery's 4, ~3 % larger
# (docs/design.md, "Thumbnails made once").
METHOD = 2
FLUSH_EVERY = 256  # thumbnails staged before they are published and the table committed
WINDOW = 64  # images being made at once per worker: bounds memory whatever the vault's size
LOOKUP = 256  # images a backfill looks up in the table at once
FEED_WINDOW = 1  # beside a writer: one in flight, which a stop abandons (never waits for)
# How often a maker waiting for the image in flight looks whether it was stopped: a stop
# (Ctrl-C) waits this long, not for an image made at a lower priority on a busy machine.
STOP_POLL = 0.05
# The share of a run's time a sync or import waits, at its end, for thumbnails not made yet;
# what is left then is made by `mjvault thumbs` (or by the server, on a miss).
WAIT_SHARE = 0.05
NICE = 10  # the feed's threads yield the cores to the downloads and the writer
# Ids a feed holds waiting (~100 bytes each: ~6 MB). A sync that outruns its thumbnails by
# more leaves the rest to `mjvault thumbs` (counted as left) rather than holding them all.
FEED_BOUND = 65536
WALK_RELEASE = 256  # summaries a backfill walks between two releases of the index's pages
NOT_AN_IMAGE = ""  # the table's thumbnail id for a video or an image Pillow cannot read

Progress = Callable[[int, int | None], None]
# An image to make: its id, or (its id, whether it is a 2x2 grid: its quadrants are hashed).
Wanted = str | tuple[str, bool]


def parse_sizes(text: str) -> list[str]:
    """``s,m`` → ``["s", "m"]``; refuses names other than those of :data:`SIZES`."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SIZES]
    if unknown or not names:
        known = ", ".join(f"{k} ({v} px)" for k, v in SIZES.items())
        raise UsageError(f"thumbnail sizes are {known}; not {','.join(unknown) or text!r}")
    return list(dict.fromkeys(names))


def cache_of(vault: Vault) -> ThumbCache:
    """The vault's table, one connection per open vault, shared by threads; closed when the
    vault is (not left to the collector: a watch opens a vault every cycle)."""
    return vault.attached("thumbs", lambda: ThumbCache(vault.path))


def _pixels(size: str) -> int:
    try:
        return SIZES[size]
    except KeyError:
        raise UsageError(f"no thumbnail size {size!r} (sizes: {', '.join(SIZES)})") from None


def lookup(vault: Vault, object_id: str, size: str) -> bytes | None:
    """The stored thumbnail's bytes, or None when none is stored (nothing is made)."""
    cached = cache_of(vault).get(object_id, _pixels(size))
    if cached is None or cached[0] == NOT_AN_IMAGE:
        return None
    try:
        return vault.read_object(cached[0])
    except (ObjectNotFound, CorruptObject, OSError):
        return None


def thumbnail(
    vault: Vault,
    object_id: str,
    size: str,
    *,
    still_named: Callable[[], bool] | None = None,
) -> bytes | None:
    """The WebP thumbnail of image ``object_id`` at ``size`` (``s`` or ``m``); None for a
    video, an image that does not decode, or an object the vault lacks.

    A cached lookup; on a miss the thumbnail is made, kept when the write lock is free, and
    returned. Safe to call from several threads at once. ``still_named``, asked once the lock
    is held, says whether a job still names the image: a forget that ran while it was being
    made has dropped the image's thumbnails (FORMAT §12), and one kept now would outlive it.
    """
    pixels = _pixels(size)
    shared = cache_of(vault)
    cache: ThumbCache | None = shared
    try:
        cached = shared.get(object_id, pixels)
    except sqlite3.DatabaseError:
        cached = None  # a table damaged under an open connection: made, not kept
        cache = None
    if cached is not None:
        if cached[0] == NOT_AN_IMAGE:
            return None
        with contextlib.suppress(ObjectNotFound, CorruptObject, OSError):
            return vault.read_object(cached[0])
    try:
        source = vault.read_object(object_id)
    except (ObjectNotFound, CorruptObject, OSError):
        return None
    kind = media_kind(source[:16])
    made = make_thumbnail(source, pixels, METHOD) if kind not in (None, "mp4") else None
    if cache is None:
        return made
    try:
        # A brief holder: a writer starting now waits these milliseconds out (lock.py).
        with WriteLock(vault.path, brief=True):
            vault.check_keys()  # rotated since the server opened it: answer, keep nothing
            if still_named is not None and not still_named():
                return made  # forgotten meanwhile: answered, never kept
            batch = vault.store.batch()
            try:
                thumb = batch.put_media(made)[0] if made is not None else NOT_AN_IMAGE
                batch.flush()
            except BaseException:
                batch.discard()
                raise
            cache.put(object_id, pixels, thumb, kind or "none")
            cache.commit()
    except VaultLocked:
        pass  # a sync holds the vault: answer now, keep it another time
    except KeysChanged:
        pass  # sealed under a retired secret it would be unreadable: made, not kept
    return made


def made_in_memory(vault: Vault, object_id: str, size: str) -> bytes | None:
    """:func:`thumbnail` for a server that must not write: a kept thumbnail when the table
    names one (the table opened read-only, never created), else one made in memory and
    dropped. No object, row, lock or table file is written."""
    pixels = _pixels(size)
    kept = _kept_read_only(vault, object_id, pixels)
    if kept is not None:
        if kept == NOT_AN_IMAGE:
            return None
        with contextlib.suppress(ObjectNotFound, CorruptObject, OSError):
            return vault.read_object(kept)
    try:
        source = vault.read_object(object_id)
    except (ObjectNotFound, CorruptObject, OSError):
        return None
    kind = media_kind(source[:16])
    return make_thumbnail(source, pixels, METHOD) if kind not in (None, "mp4") else None


def _kept_read_only(vault: Vault, object_id: str, pixels: int) -> str | None:
    path = vault.path / CACHE_FILE
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        row = db.execute(
            "SELECT thumb FROM thumbs WHERE source = ? AND size = ?", (object_id, pixels)
        ).fetchone()
    except sqlite3.Error:
        return None  # a damaged or older table: a cache, so make the thumbnail instead
    finally:
        db.close()
    return str(row[0]) if row else None


@dataclass
class BackfillReport(Report):
    sizes: list[str]
    images: int = 0  # image slots seen (each distinct image once per size)
    made: int = 0
    cached: int = 0
    not_images: int = 0  # videos and images that do not decode
    unreadable: int = 0
    errors: list[str] = field(default_factory=list)
    # Perceptual hashes (mjvault/similarity), made in the same decode: images hashed now,
    # and images whose hashes were there already.
    hashes: bool = False
    hashed: int = 0
    hashes_cached: int = 0

    def to_json(self) -> dict[str, object]:
        # Its own shape: sizes with their pixels, the hash figures only when hashes were made.
        out: dict[str, object] = {
            "sizes": {s: SIZES[s] for s in self.sizes},
            "images": self.images,
            "made": self.made,
            "cached": self.cached,
            "not_images": self.not_images,
            "unreadable": self.unreadable,
        }
        if self.hashes:
            out["hashes"] = {"made": self.hashed, "cached": self.hashes_cached}
        return out


def head_images(vault: Vault) -> Iterator[str]:
    """Every image object of HEAD's jobs, in tree order (an image two jobs share comes twice:
    the table answers the second)."""
    for entry in vault.entries():
        for image in entry.images:
            if image is not None:
                yield image


def head_images_typed(vault: Vault) -> Iterator[tuple[str, bool]]:
    """:func:`head_images` from the index's summaries (in the index's order), each with
    whether it is a 2x2 grid (:func:`mjvault.similarity.hashing.is_grid`): the job's type
    says so, and the tree alone does not hold it. The caller brings the index current
    before it takes the write lock this runs under."""
    from mjvault.similarity.hashing import is_grid

    # Pages released every WALK_RELEASE summaries: a backfill's peak RSS stays flat with the
    # vault's size (docs/design.md, "Similar images: the hash"), where 4096 let it grow.
    for summary in vault.open_index().iter_summaries(release_every=WALK_RELEASE):
        images = [i for i in summary.images if i is not None]
        grid = is_grid([summary.type], len(summary.images))
        for image in images:
            yield image, grid


class Maker:
    """Makes thumbnails of images on worker threads while the caller holds the write lock,
    publishing them in batches: the table names a thumbnail only once its object is durable,
    so a kill loses at most the thumbnails since the last publish."""

    def __init__(
        self,
        vault: Vault,
        sizes: list[str],
        *,
        workers: int | None = None,
        report: BackfillReport | None = None,
        window: int = WINDOW,
        nice: bool = False,
        hashes: bool = False,
        stopping: threading.Event | None = None,
    ) -> None:
        self.vault = vault
        # Set by whoever stops this maker from another thread (a feed's writer): a wait for
        # the image in flight gives up then, and :meth:`stop` abandons it.
        self._stopping = stopping
        self.window = window
        self.sizes = sizes
        self.cache = cache_of(vault)
        self.report = report or BackfillReport(sizes)
        self.report.hashes = hashes
        # The perceptual hashes, made in the decode that makes the thumbnails (the caller
        # holds the write lock: this is the store's one writer).
        self.hash_store: HashStore | None = None
        self.hash_problem: str | None = None
        if hashes:
            from mjvault.similarity.store import HashStore

            try:
                self.hash_store = HashStore.open(vault, writable=True)
            except (OSError, sqlite3.Error) as exc:
                # A cache (a full disk, say): the thumbnails go on, `mjvault thumbs` hashes.
                # Beside a writer the feed reports it at its end, with its own failures.
                self.hash_problem = f"perceptual hashes not made: {exc}"
                if not nice:
                    log.warning("%s", self.hash_problem)
                self.report.hashes = False
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        # Beside a writer (``nice``): one daemon thread at a lower priority, whose image in
        # flight a stop abandons rather than waits for (at that priority, on a busy machine,
        # it could take seconds, a minute when the first image also imports numpy); its
        # bytes are simply never stored. Nothing here waits for that thread: it only reads
        # the vault and hands back bytes, never touching the batch or the tables.
        self._wait_for_workers = not nice
        self._pool: ThreadPoolExecutor | _DaemonWorker = (
            _DaemonWorker()
            if nice
            else ThreadPoolExecutor(self.workers, thread_name_prefix="thumbs")
        )
        self._pending: deque[tuple[str, Future[Made]]] = deque()
        self._batch: WriteBatch = vault.store.batch()
        self._staged = 0
        self._seen: set[str] = set()  # sources queued since the last publish
        self.finished = 0  # images added whose thumbnails are published or were there
        self._unhashed: set[str] = set()  # of the group looked up last: images to hash

    def add(self, image: Wanted, wanted: list[int] | None = None) -> None:
        """Queue an image (``wanted``: its missing sizes, when looked up already); returns at
        once unless WINDOW images per worker are in flight."""
        object_id, grid = (image, False) if isinstance(image, str) else image
        self.report.images += len(self.sizes)
        if object_id in self._seen:  # a second job showing it, before the publish
            self.report.cached += len(self.sizes)
            self.finished += 1
            return
        if wanted is None:
            wanted = self._wanted([object_id]).get(object_id)
        wanted = wanted or []
        hash_it = self.hash_store is not None and object_id in self._unhashed
        if self.hash_store is not None and not hash_it:
            self.report.hashes_cached += 1
        if not wanted and not hash_it:
            self.report.cached += len(self.sizes)
            self.finished += 1
            return
        self.report.cached += len(self.sizes) - len(wanted)
        self._seen.add(object_id)
        self._unhashed.discard(object_id)
        self._pending.append(
            (object_id, self._pool.submit(self._make, object_id, wanted, grid, hash_it))
        )
        while len(self._pending) >= self.window * self.workers:
            if not self._store_one():
                break  # stopped: the caller sees the stop and calls stop()

    def add_many(self, images: Iterable[Wanted], progress: Progress | None = None) -> None:
        done = 0
        items = iter(images)
        # Looked up LOOKUP at a time: a query per size for the group, not per image.
        while group := list(islice(items, LOOKUP)):
            ids = [i if isinstance(i, str) else i[0] for i in group]
            wanted = self._wanted([i for i in dict.fromkeys(ids) if i not in self._seen])
            for image, object_id in zip(group, ids, strict=True):
                self.add(image, wanted.get(object_id, []) if object_id in wanted else None)
            done += len(group)
            if progress is not None:
                progress(done, None)
        if progress is not None:
            progress(done, None)

    def _wanted(self, sources: list[str]) -> dict[str, list[int]]:
        """Per image, the sizes (pixels) whose thumbnail is not in the table (or is gone);
        and, in :attr:`_unhashed`, the images without hashes that may be images (a video's
        or a damaged file's thumbnail row says it is none: it is not read again)."""
        out: dict[str, list[int]] = {s: [] for s in sources}
        not_images: set[str] = set()
        for name in self.sizes or (["s"] if self.hash_store is not None else []):
            pixels = SIZES[name]
            found = self.cache.get_many(sources, pixels)
            for source in sources:
                known = found.get(source)
                if known is not None and known[0] == NOT_AN_IMAGE:
                    not_images.add(source)
                if name not in self.sizes:
                    continue
                if known is None or (
                    known[0] != NOT_AN_IMAGE and not self.vault.store.exists(known[0])
                ):
                    out[source].append(pixels)
        if self.hash_store is not None:
            hashed = self.hash_store.has_many(sources)
            self._unhashed = {s for s in sources if s not in hashed and s not in not_images}
        return out

    def _make(self, object_id: str, sizes: list[int], grid: bool, hash_it: bool) -> Made:
        try:
            data = self.vault.read_object(object_id)
        except (ObjectNotFound, CorruptObject, OSError):
            return None, {}, None
        kind = media_kind(data[:16])
        if kind is None or kind == "mp4":
            return kind or "none", dict.fromkeys(sizes), [] if hash_it else None
        if not hash_it:
            return kind, make_thumbnails(data, sizes, METHOD), None
        thumbs, hashes = thumbnails_and_hashes(data, sizes, grid=grid)
        return kind, thumbs, hashes if hashes is not None else []

    def _result(self, future: Future[Made]) -> Made | None:
        """The image's making; None when this maker was stopped before it was done."""
        if self._stopping is None:
            return future.result()
        # Waits in slices: the stop is another thread's event, which no future wait wakes on.
        while not future.done() and not self._stopping.is_set():
            wait_for([future], timeout=STOP_POLL)
        return future.result() if future.done() else None

    def _store_one(self) -> bool:
        """Store the oldest image in flight; False (and it stays in flight) when a stop
        came before it was made."""
        result = self._result(self._pending[0][1])
        if result is None:
            return False
        source, _ = self._pending.popleft()
        kind, made, hashes = result
        self.finished += 1
        if kind is None:
            self.report.unreadable += 1
            return True
        if hashes and self.hash_store is not None:
            self.hash_store.put(source, hashes)
            self.report.hashed += 1
        elif hashes == [] and SIZES["s"] not in made:
            # Asked for a hash, not an image (a video, a damaged file), and no thumbnail row
            # says so (--hashes-only): the "s" row is the mark _wanted reads, or every run
            # would read the object again. (No "s" thumbnail can be made of it either.)
            self.cache.put(source, SIZES["s"], NOT_AN_IMAGE, kind)
            self.report.not_images += 1
        for pixels, data in made.items():
            if data is None:
                self.cache.put(source, pixels, NOT_AN_IMAGE, kind)
                self.report.not_images += 1
                continue
            thumb, _ = self._batch.put_media(data)
            self.cache.put(source, pixels, thumb, kind)
            self.report.made += 1
            self._staged += 1
        if self._staged >= FLUSH_EVERY or (
            self.hash_store is not None and self.hash_store.pending >= FLUSH_EVERY
        ):
            self.publish()
        return True

    def publish(self) -> None:
        """Objects durable first, then the table that names them (and the hashes, which
        name none)."""
        self._batch.flush()
        self.cache.commit()
        if self.hash_store is not None:
            self.hash_store.commit()
        self._staged = 0
        self._seen.clear()

    def finish(self) -> BackfillReport:
        try:
            while self._pending:
                if not self._store_one():
                    return self.stop()  # stopped meanwhile: what is made is published
            self.publish()
        finally:
            self._pool.shutdown(wait=self._wait_for_workers, cancel_futures=True)
            self._close_hashes()
        return self.report

    def _close_hashes(self) -> None:
        if self.hash_store is not None:
            self.hash_store.rollback()  # what was published is committed; the rest is not
            self.hash_store.close()
            self.hash_store = None

    def stop(self) -> BackfillReport:
        """Publish what is made; drop what is queued, and the image in flight."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        while self._pending and self._pending[0][1].done() and not self._pending[0][1].cancelled():
            self._store_one()
        self._pending.clear()
        self.publish()
        self._close_hashes()
        return self.report

    def abort(self) -> None:
        self._pool.shutdown(wait=self._wait_for_workers, cancel_futures=True)
        self._batch.discard()
        self.cache.rollback()
        self._close_hashes()


def make_for(
    vault: Vault,
    object_ids: Iterable[Wanted],
    sizes: list[str] | None = None,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
    hashes: bool = True,
) -> BackfillReport:
    """Make the missing thumbnails (of ``sizes``: all when None, none when empty) and, with
    ``hashes``, perceptual hashes of these images; the caller holds the write lock."""
    maker = Maker(vault, list(SIZES) if sizes is None else sizes, workers=workers, hashes=hashes)
    try:
        maker.add_many(object_ids, progress)
        return maker.finish()
    except BaseException:
        maker.abort()
        raise


def backfill(
    vault: Vault,
    sizes: list[str] | None = None,
    progress: Progress | None = None,
    *,
    workers: int | None = None,
    hashes: bool = True,
) -> BackfillReport:
    """Make every missing thumbnail (and, with ``hashes``, perceptual hash) of HEAD's images,
    under the write lock. Resumable: what was published stays in the tables, so a run after
    a kill starts where that one stopped (each image is looked up, none made again). Memory
    stays flat: images stream from the tree (the index, for hashes: it knows which images
    are grids) and at most WINDOW per worker are in flight."""
    for name in sizes or []:
        _pixels(name)
    images: Iterable[Wanted]
    if hashes:
        vault.current_index()  # before the lock is taken: bringing it current takes it
    with vault.write_lock():
        images = head_images_typed(vault) if hashes else head_images(vault)
        return make_for(vault, images, sizes, progress=progress, workers=workers, hashes=hashes)


def thumbnails_and_hashes(
    data: bytes, sizes: list[int], *, grid: bool
) -> tuple[dict[int, bytes | None], list[bytes] | None]:
    """The thumbnails of :func:`make_thumbnails` and the perceptual hashes of
    :func:`mjvault.similarity.hashing.hashes_of_image`, from one decode (but a JPEG's: each
    is a decode at a reduced scale, a fraction of a full one)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from mjvault.similarity.hashing import hashes_of_bytes, hashes_of_image

    try:
        with Image.open(io.BytesIO(data)) as source:
            if source.format == "JPEG":
                # A JPEG is decoded at a reduced scale per size (make_thumbnails): cheap, and
                # its thumbnails stay the bytes they always were; the hash has its own.
                return make_thumbnails(data, sizes, METHOD), hashes_of_bytes(data, grid=grid)
            full: Image.Image = ImageOps.exif_transpose(source)
            full.load()
        hashes = hashes_of_image(full, grid=grid)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return dict.fromkeys(sizes), None
    return thumbnails_of_image(full, sizes, METHOD), hashes


class Feed:
    """Thumbnails of the images a writer (sync, import) stores, made beside it.

    The writer hands over the ids of the images each checkpoint published (so they are read
    from the store, never from files still being written); one thread of this feed makes
    their thumbnails with a worker of its own and publishes them, so the writer never
    waits for a thumbnail until its end, when :meth:`finish` lets the rest be made (still
    under the writer's lock). A failure here is logged, never the writer's failure:
    ``mjvault thumbs`` makes what is missing.
    """

    def __init__(
        self,
        vault: Vault,
        sizes: list[str] | None = None,
        *,
        bound: int | None = None,
        hashes: bool = True,
    ) -> None:
        self.report = BackfillReport(sizes or list(SIZES))
        self._hashes = hashes
        self._vault = vault
        self._queue: queue.SimpleQueue[list[Wanted] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self.handed = 0  # images handed over
        self.bound = FEED_BOUND if bound is None else bound
        self.dropped = 0  # handed over while the queue was full: left to `mjvault thumbs`
        self._queued = 0  # ids in the queue
        self._count_lock = threading.Lock()
        self._maker: Maker | None = None
        self._thread = threading.Thread(target=self._run, name="mjvault-thumbs", daemon=True)
        self._thread.start()

    def put(self, object_ids: Sequence[Wanted]) -> None:
        """Hand over ids; never blocks. Beyond :attr:`bound` ids waiting, they are dropped
        and counted in :attr:`left`: a backlog is the backfill's, not the writer's memory."""
        if not object_ids:
            return
        with self._count_lock:
            self.handed += len(object_ids)
            room = max(0, self.bound - self._queued)
            kept = list(object_ids[:room] if len(object_ids) > room else object_ids)
            self.dropped += len(object_ids) - len(kept)
            self._queued += len(kept)
        if kept:
            self._queue.put(kept)

    def _run(self) -> None:
        maker: Maker | None = None
        try:
            maker = self._maker = Maker(
                self._vault,
                self.report.sizes,
                workers=1,
                report=self.report,
                window=FEED_WINDOW,
                nice=True,
                hashes=self._hashes,
                stopping=self._stop,
            )
            while (ids := self._queue.get()) is not None:
                with self._count_lock:
                    self._queued -= len(ids)
                for object_id in ids:
                    if self._stop.is_set():
                        break
                    maker.add(object_id)
            if self._stop.is_set():
                maker.stop()
            else:
                maker.finish()
        except BaseException as exc:  # noqa: BLE001  (reported by finish, on the writer's thread)
            self._failed = exc
            if maker is not None:
                with contextlib.suppress(BaseException):
                    maker.abort()

    def finish(self, *, wait: float | None = None, cancel: bool = False) -> BackfillReport:
        """Let the thumbnails handed over be made: all of them (``wait`` None), or those made
        within ``wait`` seconds, or (``cancel``) only those in flight; the rest are left to
        ``mjvault thumbs`` (counted in :attr:`left`)."""
        if cancel:
            self._stop.set()
        self._queue.put(None)
        self._thread.join(wait)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        # A writer that stops (its own error, an interrupt) says why in its one line: what
        # the feed could not do then is a consequence (a full disk, most often), logged for
        # --verbose only; `mjvault thumbs` makes what is missing either way.
        note = log.debug if cancel else log.warning
        if self._maker is not None and self._maker.hash_problem is not None:
            note("%s", self._maker.hash_problem)
        if self._failed is not None:
            note("thumbnails not all made (`mjvault thumbs` makes them): %s", self._failed)
        return self.report

    @property
    def queued(self) -> int:
        """Ids waiting in the queue (at most :attr:`bound`)."""
        with self._count_lock:
            return self._queued

    @property
    def left(self) -> int:
        """Images handed over whose thumbnails were not made (a stop, a failure, a full
        queue)."""
        return self.handed - (self._maker.finished if self._maker is not None else 0)


class _DaemonWorker:
    """A one-thread executor whose thread is a daemon (a ThreadPoolExecutor's threads are
    joined at exit) running at a lower priority."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mjvault-thumbs-worker", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        return future

    def _run(self) -> None:
        _lower_priority()
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001  (handed to whoever waits on it)
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        self._queue.put(None)
        if wait:
            self._thread.join()


def _lower_priority() -> None:
    """This thread at a lower scheduling priority (Linux: per thread), where the OS allows."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
