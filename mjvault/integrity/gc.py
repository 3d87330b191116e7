"""``mjvault gc``: remove objects nothing refers to any more.

Clear, mark, then sweep, all under the vault's write lock:

* **clear** the temp files dead writers left (:mod:`mjvault.store.tempfiles`) before anything
  else, so that gc runs on a disk that is full;
* **mark** every object reachable from a snapshot marker, from ``refs/checkpoint`` (an
  unfinished sync's work, which its next run resumes from) and from checkout views
  (:mod:`mjvault.integrity.reachability`);
* **sweep** every object file in ``objects/`` that is not marked *and* whose modification time
  is older than the grace period (default one hour), except the dictionaries packs name;
* **repack**, before that sweep, every pack holding unmarked objects when the pack file itself
  is older than the grace period (a pack is never modified, so its mtime is the age of all it
  holds): its marked objects go to a new pack (:mod:`mjvault.store.repack`), which is synced
  and mapped before the old pack is removed. Small packs are merged the same way once more
  than ``auto_pack_after`` pile up (young ones whole, unmarked objects included).

Two guards keep a running sync's objects safe. The lock: a sync holds it from start to
commit, so gc either waits for it (``wait``) or stops with the lock message, as restic's
prune does. The grace period: an object younger than it is never swept, which also covers
writers the lock cannot see (another machine writing to a shared folder whose file system
does not carry ``flock`` across hosts). A gc killed at any moment leaves a consistent vault:
it deletes only unreferenced files and changes no ref.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mjvault.errors import (
    CorruptObject,
    IntegrityError,
    ObjectNotFound,
    UsageError,
    VaultLocked,
)
from mjvault.integrity import copies, exclusions
from mjvault.integrity.reachability import Marks, mark_reachable
from mjvault.lock import WriteLock
from mjvault.reports import Report
from mjvault.store.packfile import read_trailer_of
from mjvault.store.repack import SMALL_PACK_BYTES, Repacker, pack_files
from mjvault.store.tempfiles import remove_stale_temp_files
from mjvault.vault import Vault

if TYPE_CHECKING:
    from mjvault.similarity.store import HashStore

DEFAULT_GRACE_SECONDS = 3600.0
LOCK_POLL_SECONDS = 0.25
MAX_LISTED = 1000  # ids listed in a report; counts and bytes are always complete


@dataclass
class GcReport(Report):
    dry_run: bool
    grace_seconds: float
    snapshots: int = 0
    tree_nodes: int = 0
    jobs: int = 0
    checkpoint_protected: bool = False
    views: int = 0
    objects_seen: int = 0
    objects_kept: int = 0
    unreferenced: int = 0
    kept_young: int = 0
    kept_young_bytes: int = 0
    removed: int = 0
    removed_bytes: int = 0
    packs_seen: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    pack_bytes_written: int = 0
    packs_removed: int = 0
    pack_bytes_removed: int = 0
    temp_files_removed: int = 0
    temp_bytes_removed: int = 0
    mark_memory_bytes: int = 0
    seconds: float = 0.0
    removed_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The numcopies guard's finding (None: the vault has no remote to check against).
    copies: dict[str, object] | None = None


@contextlib.contextmanager
def acquire_lock(vault: Vault, wait: float | None, command: str) -> Iterator[WriteLock]:
    """Hold the write lock; with ``wait`` (seconds, may be ``inf``) poll until it is free."""
    lock = WriteLock(vault.path, command=command)
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            break
        except VaultLocked:
            if deadline is None or time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_POLL_SECONDS)
    try:
        yield lock
    finally:
        lock.release()


def gc(
    vault: Vault,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    wait: float | None = None,
    on_object: Callable[[], None] | None = None,
    now: float | None = None,
    auto_pack_after: int = 0,
    force: bool = False,
    overwrite: bool = True,
) -> GcReport:
    """Remove unreferenced objects older than ``grace_seconds``; see the module docstring.

    Refuses (:class:`~mjvault.integrity.copies.NotOffsite`) to delete the manifest of a
    forgotten snapshot that no remote holds, unless ``force``. With ``overwrite``, the files
    of forgotten jobs are overwritten before they are unlinked (:mod:`.exclusions`).
    """
    if grace_seconds < 0:
        raise UsageError("the grace period cannot be negative")
    started = time.monotonic()
    report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds)
    with acquire_lock(vault, wait, "mjvault gc") as lock:
        if lock.note_error:
            report.notes.append(f"the lock note was not written ({lock.note_error}); gc went on")
        # First, and whatever their age: on a full disk they may be the space gc needs, and
        # holding the lock proves no live writer owns them.
        if not dry_run:  # a gc killed while overwriting left the file in tmp/: finish it
            exclusions.overwrite_leftovers(vault)
        temp = remove_stale_temp_files(vault.path, dry_run=dry_run)
        report.temp_files_removed, report.temp_bytes_removed = temp.files, temp.bytes
        marks, marked = mark_reachable(vault)
        report.snapshots = marked.snapshots
        report.tree_nodes = marked.tree_nodes
        report.jobs = marked.jobs
        report.checkpoint_protected = marked.checkpoint is not None
        report.views = marked.views
        report.mark_memory_bytes = marks.memory_bytes()
        # Taken after marking: anything written after this instant is younger than the cutoff.
        cutoff = (time.time() if now is None else now) - grace_seconds
        found = copies.check_gc(vault, marks, cutoff)
        copies.enforce(vault, found, "gc", force=force, dry_run=dry_run)
        report.copies = found.to_json() if found is not None else None
        plan = _plan_packs(vault, marks, cutoff, auto_pack_after, report, on_object)
        shredder = exclusions.Shredder(vault, overwrite and not dry_run)
        if not dry_run:
            _repack(vault, marks, plan, report, shredder)
        hashes = _hash_rows(vault) if not dry_run else None
        vectors: list[str] = []  # removed objects whose embeddings go too (FORMAT §7.4)
        # Imported here: numpy and Pillow come with it, which a gc of a vault without
        # embeddings should not pay for at start-up.
        from mjvault.similarity.embeddings import forget_embeddings

        for object_id, path in _object_files(vault):
            report.objects_seen += 1
            if on_object:
                on_object()
            if object_id in marks or object_id in plan.dictionaries:
                report.objects_kept += 1
                continue
            report.unreferenced += 1
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if info.st_mtime > cutoff:
                report.kept_young += 1
                report.kept_young_bytes += info.st_size
                continue
            if not dry_run:
                try:
                    shredder.remove(object_id, path)
                except FileNotFoundError:
                    continue
            report.removed += 1
            report.removed_bytes += info.st_size
            if len(report.removed_ids) < MAX_LISTED:
                report.removed_ids.append(object_id)
            if hashes is not None:
                # An image removed takes its perceptual hashes along (FORMAT §7.3): one
                # lookup by id, committed in batches so memory stays flat.
                hashes.remove([object_id])
                if hashes.pending >= HASH_BATCH:
                    hashes.commit()
            if not dry_run:
                vectors.append(object_id)
                if len(vectors) >= HASH_BATCH:
                    forget_embeddings(vault, vectors)
                    vectors.clear()
        if hashes is not None:
            hashes.close()
        if vectors:
            forget_embeddings(vault, vectors)
        if not dry_run:
            copies.tidy_released(vault)
            shredder.finish(vault.store.exists)
            report.notes.extend(shredder.notes())
    report.seconds = time.monotonic() - started
    return report


def _object_files(vault: Vault) -> Iterator[tuple[str, str]]:
    root = os.fspath(vault.store.objects_dir)
    for object_id in vault.store.iter_loose_ids():
        yield object_id, os.path.join(root, object_id[:2], object_id)


@dataclass
class PackPlan:
    rewrite: list[tuple[str, bool]] = field(default_factory=list)  # (pack, old enough)
    dictionaries: set[str] = field(default_factory=set)  # loose objects packs need


def _plan_packs(
    vault: Vault,
    marks: Marks,
    cutoff: float,
    auto_pack_after: int,
    report: GcReport,
    on_object: Callable[[], None] | None,
) -> PackPlan:
    """Which packs to rewrite, counting what goes; reads each trailer once, one at a time."""
    plan = PackPlan()
    store = vault.store
    if not store.packs.present():
        return plan
    damaged = store.packs.reconcile()
    if damaged:
        # Its trailer names its dictionary and its objects: sweeping could take what it needs.
        raise IntegrityError(
            f"pack {damaged[0]} is damaged, so gc cannot tell what it needs",
            hint="run `mjvault verify --repair` first",
        )
    current = store.packs.map().dictionary()
    if current:
        plan.dictionaries.add(current)  # the next pack written will use it
    files = list(pack_files(store))
    small = {p.name for p in files if p.size < SMALL_PACK_BYTES}
    merge_small = 0 < auto_pack_after < len(small)
    for pack in files:
        try:
            trailer = read_trailer_of(os.fspath(store.packs.path(pack.name)))
        except FileNotFoundError:
            continue
        except CorruptObject as exc:
            raise IntegrityError(
                f"pack {pack.name} is damaged ({exc}), so gc cannot tell what it needs",
                hint="run `mjvault verify --repair` first",
            ) from None
        report.packs_seen += 1
        old = pack.mtime <= cutoff
        dead = []
        for entry in trailer.entries:
            report.objects_seen += 1
            if on_object:
                on_object()
            if entry.hex_id in marks:
                report.objects_kept += 1
            else:
                dead.append(entry)
        report.unreferenced += len(dead)
        rewrite = (bool(dead) and old) or (merge_small and pack.name in small)
        if rewrite:
            plan.rewrite.append((pack.name, old))
            report.packs_rewritten += 1
        if trailer.dictionary_id:
            # Kept even for a pack being rewritten: it may survive (a damaged entry), and an
            # unused dictionary costs 32 KiB until the next gc.
            plan.dictionaries.add(trailer.dictionary_id)
        if dead and not (rewrite and old):
            report.kept_young += len(dead)
            report.kept_young_bytes += sum(e.length for e in dead)
            continue
        for entry in dead:
            report.removed += 1
            report.removed_bytes += entry.length
            if len(report.removed_ids) < MAX_LISTED:
                report.removed_ids.append(entry.hex_id)
    return plan


HASH_BATCH = 4096  # removed images' hash rows dropped per commit


def _hash_rows(vault: Vault) -> HashStore | None:
    """The perceptual hashes' store, when the vault has one (images are loose objects: a
    pack holds records and nodes, never hashed)."""
    from mjvault.similarity import store

    if not (vault.path / store.FILE).exists():
        return None
    try:
        return store.HashStore.open(vault, writable=True)
    except (OSError, sqlite3.Error):
        return None  # a cache: a full disk or a damaged file must not stop a gc


def _repack(
    vault: Vault,
    marks: Marks,
    plan: PackPlan,
    report: GcReport,
    shredder: exclusions.Shredder | None = None,
) -> None:
    """Each planned pack's kept objects into new packs, then the old pack removed (overwritten
    first when it holds a forgotten job's record)."""
    if not plan.rewrite:
        return
    store = vault.store
    repacker = Repacker(store)
    if shredder is not None and shredder.ids:
        repacker.before_unlink = shredder.pack_hook()
    try:
        for name, old in plan.rewrite:
            # Streamed into the repacker: a pack's plaintexts are never all held twice.
            try:
                trailer = read_trailer_of(os.fspath(store.packs.path(name)))
                for entry in trailer.entries:
                    if not old or entry.hex_id in marks:
                        repacker.add(entry.hex_id, store.read(entry.hex_id))
            except FileNotFoundError:
                continue
            except (CorruptObject, ObjectNotFound) as exc:
                # Kept whole (what was copied is a harmless duplicate): verify reports it and
                # repair may still save its other objects.
                report.notes.append(f"pack {name[:12]} kept: {exc}")
                continue
            repacker.retire_pack(name)
        repacker.flush()
    except BaseException:
        repacker.discard()
        raise
    finally:
        counts = repacker.counts
        report.packs_written = counts.packs_written
        report.pack_bytes_written = counts.bytes_written
        report.packs_removed = counts.packs_removed
        report.pack_bytes_removed = counts.pack_bytes_removed
        plan.dictionaries |= repacker.dictionaries
