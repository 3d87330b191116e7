"""ArchiveWriter: the one way jobs and images enter a vault (import and sync both use it).

    with vault.writer(source="import:/home/me/mj") as writer:
        image = writer.put_media_file(path)
        writer.add_job(raw_json, [image])
    # leaving the block commits one snapshot

Work is grouped into checkpoints. At each, staged objects are made durable (one syncfs), the
tree is updated, ``refs/checkpoint`` records the partial tree, and the index follows. A run
killed at any moment resumes from its last checkpoint: the next writer starts from that tree
(if HEAD has not moved since), so nothing already stored is fetched or hashed again in vain.
A checkpoint falls due after ``checkpoint_jobs`` jobs, ``checkpoint_bytes`` of staged media or,
if set, ``checkpoint_seconds`` since the last one (a sync on a slow link reaches neither count
for minutes). Its cost follows the work since the previous one, not the archive's size.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from mjvault import __version__
from mjvault.errors import CorruptObject, MjvaultError
from mjvault.index import JobSummary
from mjvault.model import Job, job_from_json
from mjvault.records import encode_record
from mjvault.reports import Report
from mjvault.runpacks import MergeReport, RunPacks, merge_run_packs
from mjvault.snapshots import Snapshot, decode_manifest, encode_manifest
from mjvault.store.fsutil import atomic_write
from mjvault.store.objects import MediaSink
from mjvault.tree import JobEntry, Tree

if TYPE_CHECKING:
    from mjvault.thumbnails import BackfillReport, Feed
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

JobStatus = Literal["new", "updated", "unchanged"]
CHECKPOINT_FILE = "checkpoint"
CHECKPOINT_SOURCE_AD = b"mjvault checkpoint source"


@dataclass
class WriteStats(Report):
    jobs_new: int = 0
    jobs_updated: int = 0
    jobs_unchanged: int = 0
    jobs_removed: int = 0
    media_new: int = 0
    media_deduplicated: int = 0
    media_bytes: int = 0
    objects_written: int = 0
    bytes_written: int = 0
    resumed_from_checkpoint: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        # Its own shape: the extra figures are flattened in beside the others.
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


class ArchiveWriter:
    def __init__(
        self,
        vault: Vault,
        source: str,
        *,
        checkpoint_jobs: int = 2000,
        checkpoint_bytes: int = 256 * 1024 * 1024,
        checkpoint_seconds: float | None = None,
        merge_images: bool = True,
        thumbnails: bool = False,
        thumbnail_wait: float | None = None,
    ) -> None:
        self.vault = vault
        self.source = source
        self.checkpoint_jobs = checkpoint_jobs
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = time.monotonic()
        self.merge_images = merge_images
        self.stats = WriteStats()
        self.snapshot: Snapshot | None = None
        self._lock = vault.write_lock()
        self._pending: dict[str, tuple[JobEntry | None, Job | None]] = {}
        # The tree so far; None while a fresh vault has none (its first checkpoint makes one:
        # an empty tree stored up front would be left unreferenced by a run that adds nothing).
        self._root: str | None = None
        self._resumed_source = ""
        self._open = False
        self._run_packs = RunPacks()
        self.merge_report: MergeReport | None = None
        # Thumbnails of the images stored (mjvault/thumbnails.py): ids gathered until a
        # checkpoint publishes them, then made beside the run.
        self.thumbnails = thumbnails
        # At the end, wait for thumbnails not made yet for at most this share of the run's
        # time (None: for all); the rest is left to `mjvault thumbs`.
        self.thumbnail_wait = thumbnail_wait
        self._started = time.monotonic()
        self._thumb_feed: Feed | None = None
        self._new_media: list[str] = []
        # Of those, the images that are a 2x2 grid (a grid job's one image): their quadrants
        # are hashed too (mjvault/similarity/hashing.py).
        self._grid_media: set[str] = set()
        self.thumbnail_report: BackfillReport | None = None
        self._aborting = False
        self.thumbnails_left = 0

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ArchiveWriter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def start(self) -> None:
        self._lock.acquire()
        self._started = time.monotonic()
        try:
            self._remove_stale_temp_files()
            self._batch = self.vault.store.batch()
            self._batch.on_pack = self._run_packs.published
            self._tree = Tree(self._batch.read, self._put_node)
            head = self.vault.head()
            self._base = head
            self._root = head.tree if head else None
            saved = self._read_checkpoint()
            if saved and saved.get("base") == (head.id if head else None):
                tree = saved.get("tree")
                if isinstance(tree, str) and self.vault.store.exists(tree):
                    self._root = tree
                    self.stats.resumed_from_checkpoint = True
                    # An import resumed by a sync (or the reverse) commits both runs' jobs.
                    self._resumed_source = self._saved_source(saved)
            self._base_tree = head.tree if head else None
            self._batch.flush()
            try:
                self.vault.sync_index(self._root)
            except MjvaultError as exc:
                if not self.stats.resumed_from_checkpoint:
                    raise
                # A checkpoint that cannot be indexed would block every writer for good:
                # start from HEAD instead (its objects stay, a rerun re-adds the jobs).
                log.warning("dropping an unusable checkpoint: %s", exc)
                self._clear_checkpoint()
                self._root = head.tree if head else None
                self.stats.resumed_from_checkpoint = False
                self.vault.sync_index(self._root)
            self._last_checkpoint = time.monotonic()
            if self.thumbnails:
                # Imported here, on this thread, before the feed's thread starts: both need
                # them (add_job asks is_grid, the feed opens the hash store), and a Ctrl-C
                # landing in an import this thread shares with the feed's thread can leave
                # that module's import lock held (CPython checks signals inside importlib's
                # lock code), so the feed's thread would wait on it forever and the writer's
                # stop, which joins that thread, with it.
                import mjvault.similarity.hashing
                import mjvault.similarity.store  # noqa: F401
                from mjvault.thumbnails import Feed

                self._thumb_feed = Feed(self.vault)
            self._open = True
        except BaseException:
            self._lock.release()
            raise

    def _put_node(self, plaintext: bytes) -> str:
        node_id = self._batch.put(plaintext)
        self._run_packs.node_put(node_id)
        return node_id

    def _remove_stale_temp_files(self) -> int:
        """Temp files of a writer that died: only writers make them, and we hold the lock."""
        from mjvault.store.tempfiles import remove_stale_temp_files

        return remove_stale_temp_files(self.vault.path).files

    @property
    def _checkpoint_path(self) -> Path:
        return self.vault.refs.dir / CHECKPOINT_FILE

    def _read_checkpoint(self) -> dict[str, object] | None:
        try:
            doc = json.loads(self._checkpoint_path.read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _source_field(self) -> dict[str, str]:
        """The checkpoint's source: an import's names a folder of the user's, so an encrypted
        vault keeps it sealed (``source_sealed``, base64), bound to the checkpoint."""
        keys = self.vault.store.keys
        if keys is None:
            return {"source": self.source}
        sealed = keys.seal_text(self.source, CHECKPOINT_SOURCE_AD)
        return {"source_sealed": base64.b64encode(sealed).decode("ascii")}

    def _saved_source(self, saved: dict[str, object]) -> str:
        keys = self.vault.store.keys
        sealed = saved.get("source_sealed")
        if keys is not None and isinstance(sealed, str):
            try:
                return keys.open_text(base64.b64decode(sealed), CHECKPOINT_SOURCE_AD)
            except (CorruptObject, ValueError):
                return ""  # only the new snapshot's description loses the earlier run's name
        return str(saved.get("source") or "")

    # -- adding ----------------------------------------------------------------------------
    def current(self, job_id: str) -> JobEntry | None:
        """The job as the vault will hold it once this writer commits (None if absent)."""
        if job_id in self._pending:
            return self._pending[job_id][0]
        return self.vault.open_index().entry(job_id)

    def record_id(self, raw_json: bytes) -> str:
        """The id :meth:`add_job` gives this record, without storing it."""
        return self._batch.store.name_of(encode_record(raw_json))

    def put_media(self, data: bytes) -> str:
        object_id, new = self._batch.put_media(data)
        self._count_media(len(data), new, object_id)
        return object_id

    def put_media_file(self, path: Path) -> str:
        object_id, size, new = self._batch.put_media_file(path)
        self._count_media(size, new, object_id)
        return object_id

    def put_media_fd(self, fd: int, size: int) -> tuple[str, int]:
        """Store the rest of open file ``fd`` (``size`` from fstat); returns (id, bytes read)."""
        object_id, read, new = self._batch.put_media_fd(fd, size)
        self._count_media(read, new, object_id)
        return object_id, read

    def put_media_stream(self, chunks: Iterable[bytes]) -> str:
        object_id, size, new = self._batch.put_media_stream(chunks)
        self._count_media(size, new, object_id)
        return object_id

    def media_sink(self) -> MediaSink:
        """A sink a download thread can fill; hand it back with :meth:`adopt_media`."""
        return self._batch.media_sink()

    def adopt_media(self, sink: MediaSink) -> str:
        object_id, size, new = self._batch.adopt(sink)
        self._count_media(size, new, object_id)
        return object_id

    def has_object(self, object_id: str) -> bool:
        return self._batch.has(object_id)

    def _count_media(self, size: int, new: bool, object_id: str) -> None:
        if new and self._thumb_feed is not None:
            self._new_media.append(object_id)
        if new:
            self.stats.media_new += 1
            self.stats.media_bytes += size
        else:
            self.stats.media_deduplicated += 1

    def add_job(
        self, raw_json: bytes, images: Sequence[str | None], job: Job | None = None
    ) -> JobStatus:
        """Record a job (its raw JSON and its image objects, None for one that could not be had)."""
        job = job or job_from_json(raw_json)
        record_id = self._batch.put(encode_record(raw_json))
        existing = self.current(job.id)
        entry = JobEntry(job.id, record_id, self._merged(existing, images))
        if existing == entry:
            self.stats.jobs_unchanged += 1
            return "unchanged"
        self._pending[job.id] = (entry, job)
        if self._thumb_feed is not None and len(images) == 1 and images[0] is not None:
            from mjvault.similarity.hashing import is_grid

            # By ``type`` alone, as the backfill (the index keeps no other) and FORMAT §7.3.
            if is_grid([job.type], 1):
                self._grid_media.add(images[0])
        status: JobStatus = "new" if existing is None else "updated"
        if status == "new":
            self.stats.jobs_new += 1
        else:
            self.stats.jobs_updated += 1
        self._maybe_checkpoint()
        return status

    def keep_unchanged(self, job_id: str, record_id: str, images: Sequence[str | None]) -> bool:
        """Count a job unchanged, without its record's bytes, if adding it would change nothing
        (a record known by its id: the import stat cache); False means: call :meth:`add_job`."""
        existing = self.current(job_id)
        if existing != JobEntry(job_id, record_id, self._merged(existing, images)):
            return False
        self.stats.jobs_unchanged += 1
        return True

    def _merged(
        self, existing: JobEntry | None, images: Sequence[str | None]
    ) -> tuple[str | None, ...]:
        slots = list(images)
        if self.merge_images and existing is not None:
            # An image we already hold is never dropped because a later fetch failed.
            for i, held in enumerate(existing.images):
                if i < len(slots) and slots[i] is None and held is not None:
                    slots[i] = held
                elif i >= len(slots) and held is not None:
                    slots.append(held)
        return tuple(slots)

    def remove_job(self, job_id: str) -> bool:
        if self.current(job_id) is None:
            return False
        self._pending[job_id] = (None, None)
        self.stats.jobs_removed += 1
        self._maybe_checkpoint()
        return True

    def _maybe_checkpoint(self) -> None:
        if (
            len(self._pending) >= self.checkpoint_jobs
            or self._batch.pending_bytes >= self.checkpoint_bytes
            or self._checkpoint_overdue()
        ):
            self.checkpoint()

    def _checkpoint_overdue(self) -> bool:
        # Timed from the end of the last checkpoint, so however slow one is (a syncfs behind
        # a busy disk), at least ``checkpoint_seconds`` of work separate two of them.
        return (
            self.checkpoint_seconds is not None
            and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        )

    # -- durability ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Make everything so far durable and resumable."""
        if not self._pending and not len(self._batch):
            return
        changes = {
            job_id: entry
            for job_id, (entry, _) in self._pending.items()
            # Without a tree, a removal (of a job this run added) has nothing to remove.
            if entry is not None or self._root is not None
        }
        # Records in a pack of their own: the nodes that follow are superseded by the next
        # checkpoint's, and the run's end drops them without reading its records.
        self._batch.end_pack()
        new_root = self._tree.apply(self._root, changes) if changes else self._root
        self._batch.flush()
        self._run_packs.checkpointed()
        if self._thumb_feed is not None:
            # Published: the feed may read them now.
            grids = self._grid_media
            self._thumb_feed.put([(i, i in grids) for i in self._new_media])
            self._new_media = []
            self._grid_media = set()
        # A fresh vault's run with no job yet has no tree to resume from or index.
        if new_root is not None:
            atomic_write(
                self._checkpoint_path,
                json.dumps(
                    {
                        "base": self._base.id if self._base else None,
                        "tree": new_root,
                        **self._source_field(),
                        "time": datetime.now(UTC).isoformat(),
                        "pid": os.getpid(),
                    }
                ).encode("utf-8"),
            )
            # Made one at a time as the index takes them: a list would hold a checkpoint's worth
            # of summaries (parameters, prompts) beside the jobs they come from, at the peak.
            summaries = (
                (
                    job_id,
                    JobSummary.of(entry, job) if entry is not None and job is not None else None,
                )
                for job_id, (entry, job) in self._pending.items()
            )
            self.vault.open_index().apply(summaries, new_root)
        self._root = new_root
        self._pending.clear()
        self._last_checkpoint = time.monotonic()

    def commit(self) -> Snapshot | None:
        """Write one snapshot if the archive changed, move HEAD, and release the lock."""
        if not self._open:
            return None
        try:
            self.checkpoint()
            if (
                self._root is None
                or self._root == self._base_tree
                or (self._base_tree is None and self._tree.count(self._root) == 0)
            ):
                self._clear_checkpoint()
                self._merge_run_packs()
                return None
            self.snapshot = self._write_snapshot(self._root)
            self._clear_checkpoint()
            self._merge_run_packs()
            return self.snapshot
        finally:
            self._close()

    def _merge_run_packs(self) -> None:
        """The run's packs without the tree nodes only its checkpoints named (runpacks.py).
        The snapshot is published already: a failure here costs disk space until gc, so it is
        reported, not raised."""
        try:
            self.merge_report = merge_run_packs(
                self.vault.store, self._run_packs.packs, self._root, self._base_tree
            )
        except (MjvaultError, OSError) as exc:
            log.warning("the packs of this run were not merged (gc will): %s", exc)
        except KeyboardInterrupt:
            # The snapshot is published: what is left of the run is the caller's bookkeeping
            # (a sync's state, its retries), which an interrupt raised from here would skip.
            log.warning("interrupted: the packs of this run were not merged (gc will)")

    def abort(self) -> None:
        """Keep what is done for the next run (a checkpoint), release the lock.

        If the checkpoint cannot be made (the disk is full), the previous one stays and the
        batch's temp files are removed now: they are the room the next run needs."""
        if not self._open:
            return
        self._aborting = True
        try:
            self.checkpoint()
        except BaseException:
            self._batch.discard()
            raise
        finally:
            self._close()

    def _close(self) -> None:
        if self._thumb_feed is not None:
            # Under the lock still: the feed's thumbnails are objects this run writes. A run
            # that stops makes only those in flight; `mjvault thumbs` makes the rest.
            feed, self._thumb_feed = self._thumb_feed, None
            wait = self.thumbnail_wait
            seconds = None if wait is None else wait * (time.monotonic() - self._started)
            self.thumbnail_report = feed.finish(wait=seconds, cancel=self._aborting)
            self.stats.extra["thumbnails_made"] = self.thumbnail_report.made
            self.stats.extra["thumbnails_left"] = self.thumbnails_left = feed.left
        self.stats.objects_written = self._batch.written_objects
        self.stats.bytes_written = self._batch.written_bytes
        self._open = False
        self._lock.release()

    def _clear_checkpoint(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._checkpoint_path)

    def _snapshot_source(self) -> str:
        return _joined_sources(self._resumed_source, self.source)

    def _write_snapshot(self, root: str) -> Snapshot:
        added = updated = removed = images_delta = 0
        for _, old, new in self._tree.diff(self._base_tree, root):
            if old is None:
                added += 1
            elif new is None:
                removed += 1
            else:
                updated += 1
            images_delta += _image_count(new) - _image_count(old)
        base_images = self._base.stats.get("images", 0) if self._base else 0
        stats = {
            "jobs": self._tree.count(root),
            "images": base_images + images_delta,
            "added": added,
            "updated": updated,
            "removed": removed,
        }
        manifest = encode_manifest(
            time=datetime.now(UTC),
            tree=root,
            parent=self._base.id if self._base else None,
            source=self._snapshot_source(),
            host=socket.gethostname(),
            tool=f"mjvault {__version__}",
            stats=stats,
            # Collections are kept by every later snapshot until a change or forget says not.
            collections=self._base.collections if self._base else None,
        )
        snapshot_id = self._batch.put(manifest, loose=True)
        self._batch.flush()
        self.vault.refs.add_snapshot(snapshot_id)
        self.vault.refs.set_head(snapshot_id)
        return decode_manifest(snapshot_id, self.vault.store.read(snapshot_id))


def _joined_sources(earlier: str, current: str) -> str:
    return current if not earlier or earlier == current else f"{earlier}; {current}"


def _image_count(entry: JobEntry | None) -> int:
    return 0 if entry is None else sum(1 for i in entry.images if i is not None)
