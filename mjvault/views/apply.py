"""Carrying out a view's plan: the files, the worker threads and the bookkeeping.

The planner (mjvault.views.plan) says which files of a batch go, are made again or are new;
the :class:`Applier` does it on disk, under the safety rules of mjvault.views.reconcile: it
removes only a file that is still exactly what the view made, never makes a file over
something that exists (it adopts one that is exactly what it would make, else reports the
conflict), gives new images their final names against the names the view's list holds
(collision groups re-resolved whole), and records each outcome in the view's file list,
saving the state every few seconds. New links and plain copies are made in bulk, a batch at
a time, by a thread or the link process (mjvault.views.linkproc) while the caller names the
next batch; the heads of many objects are read by two threads at once.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from mjvault.errors import MjvaultError, UsageError
from mjvault.model import Job
from mjvault.snapshots import Snapshot
from mjvault.store.codec import stored_media_kind
from mjvault.views import linkproc, modes
from mjvault.views.check import is_exactly
from mjvault.views.linkproc import Linker, ThreadLinker, start_linker
from mjvault.views.links import (
    LinkKind,
    Made,
    NameTaken,
    ObjectMissing,
    copy_workers,
    in_the_way,
    place_bytes,
    place_file,
    place_hardlink,
    place_symlink,
    prune_empty_dirs,
)
from mjvault.views.paths import fold, resolve_collisions
from mjvault.views.plan import Key, Making, Plan, Want, name_groups
from mjvault.views.registry import FileRecord, View, ViewRegistry
from mjvault.views.report import MAX_LISTED, RefreshReport
from mjvault.views.state import FileTable, NewRow

if TYPE_CHECKING:
    from mjvault.vault import Vault

# An object's type from its head, and whether its file is the image itself (linkable).
Sniffed = tuple[str | None, bool]
NO_HEAD: Sniffed = (None, False)
MISSING: Sniffed = ("missing", False)
# Below this many objects a second reading thread costs more than it saves.
SNIFF_PARALLEL_MIN = 256
SAVE_SECONDS = 15.0


class Applier:
    """Makes and removes one view's files and keeps its file list and state in step."""

    def __init__(
        self,
        vault: Vault,
        registry: ViewRegistry,
        view: View,
        report: RefreshReport,
        *,
        snapshot: Snapshot | None,
        embed_changed: bool = False,
        vault_moved: bool = False,
        expected_images: int = 0,
    ) -> None:
        self.vault = vault
        self.snapshot = snapshot
        self.registry = registry
        self.view = view
        self.report = report
        definition = view.definition
        self.root = definition.directory
        self.kind = LinkKind.COPY if vault.encrypted else definition.link
        self.making = Making(self.kind, embed_changed, vault_moved)
        self.private = definition.is_private(vault.encrypted)
        self.root_str = os.fspath(self.root)
        self.objects_root = os.fspath(vault.path.resolve())
        self.vault_prefix = os.fspath(vault.path) + os.sep
        self.link_prefixes: dict[str, str] = {}
        # Building a Path per object costs more than the symlink itself; use the store's
        # layout directly when it is the one we know (checked, not assumed).
        probe = "ab" * 32
        self.fan_out_layout = os.sep == "/" and os.fspath(vault.object_path(probe)) == (
            f"{vault.path}/objects/ab/{probe}"
        )
        self.ops_since_save = 0
        self.saved_at = time.monotonic()
        self.running = False
        self.reader: ThreadPoolExecutor | None = None
        # New files the plain way (links, or copies of the object files) are made in bulk,
        # by a thread or the link process (mjvault.views.linkproc), one batch at a time
        # while the caller names the next; None: each is made here (reflinks, decoded copies).
        self.bulk_kind: LinkKind | None = (
            self.kind
            if self.kind in (LinkKind.SYMLINK, LinkKind.HARDLINK)
            or (self.kind is LinkKind.COPY and not definition.embed_metadata)
            else None
        )
        self.linker: Linker | None = None
        self.expected_images = expected_images  # how many a full pass may make: who makes them
        self.dispatched = 0
        # The batch being made: recorded once its outcome is in (so the list never names a
        # file that failed). Meanwhile its names and jobs are kept, so that a batch that
        # shares one waits for it (_assign, execute).
        self.in_flight: list[tuple[Key, str, Want]] = []
        self.in_flight_names: set[str] = set()
        self.in_flight_jobs: set[str] = set()
        self.assigned_names: set[str] = set()
        # The file list, looked up by image and by folded path batch by batch, never loaded
        # whole (mjvault.views.state).
        self.table: FileTable = view.table

    # -- the run ---------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True

    def finish(self, clean: bool) -> None:
        """Record what was made (interrupted or not), then stop the helpers: a failing run
        stops the link process at once, a finished one lets it end."""
        try:
            self.drain()
        except BaseException:
            clean = False
            raise
        finally:
            self.running = False
            if self.linker is not None:
                if clean:
                    self.linker.close()
                else:
                    self.linker.abort()
                self.linker = None
            if self.reader is not None:
                self.reader.shutdown(wait=True)

    def busy_with(self, job_ids: Iterable[str]) -> None:
        """Wait for the batch in flight if it holds one of ``job_ids`` (a job in two batches
        in a row: the first one's files first)."""
        if self.in_flight_jobs and not self.in_flight_jobs.isdisjoint(job_ids):
            self.drain()

    def execute(self, plan: Plan) -> None:
        """Carry out one batch's plan: removals, replacements, then the new files."""
        if plan.removals or plan.replacements:
            self.drain()  # a removal may prune a directory a pending link goes into
        for key, record in plan.removals:
            self._remove(key, record)
        for key, record, want in plan.replacements:
            self._replace(key, record, want)
        bulk: list[tuple[Key, str, Want]] = []
        made_in_bulk = self.bulk_kind is not None
        for key, path, want, is_move in self._assign(plan.placements):
            # making.kind_for(want) is the bulk kind iff want.raw
            if made_in_bulk and want.raw and not is_move:
                bulk.append((key, path, want))
            else:
                self._place(key, path, want, moved=is_move)
        self._dispatch(bulk)

    # -- bookkeeping -----------------------------------------------------------------------
    def _group(self, folded: str) -> set[Key]:
        """The images whose template path folds to ``folded`` (a collision group)."""
        members = self.table.wanting(folded)
        holder = self.table.holder(folded)
        if holder is not None:
            record = self._record(holder)
            if record is not None and record.plain is None:
                members.add(holder)
        return members

    def _record(self, key: Key) -> FileRecord | None:
        return self.table.get(key)

    def _set_record(self, key: Key, record: FileRecord | None) -> None:
        if record is None:
            self.table.delete(key)
        else:
            self.table.put(key, record)

    # -- object heads ----------------------------------------------------------------------
    def sniff(self, oid: str) -> Sniffed:
        """The image's real type from its first bytes, and whether a link can show it.

        Midjourney records say ``png`` for images that may be WebP or JPEG, and a plain
        vault stores an object raw (the file is the image) only when it is recognisable
        media; anything else is framed and must be decoded into a copy. 16 bytes of one
        read answer both, and catch a missing object before a dangling link is made.
        """
        return self.sniff_many([oid])[oid]

    def sniff_many(self, oids: list[str]) -> dict[str, Sniffed]:
        """:meth:`sniff` for many objects; a big batch is read by two threads at once.

        Reading a head is three system calls that release the GIL, so two threads read
        nearly twice as fast as one while this thread waits (it has nothing else to do
        before it knows the extensions).
        """
        if self.vault.encrypted:
            return dict.fromkeys(oids, NO_HEAD)
        paths = [self._source(oid) for oid in oids]
        if len(paths) < SNIFF_PARALLEL_MIN or not self.running:
            return dict(zip(oids, _read_heads(paths), strict=True))
        half = len(paths) // 2
        if self.reader is None:
            self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjvault-heads")
        second = self.reader.submit(_read_heads, paths[half:])
        heads = _read_heads(paths[:half]) + second.result()
        return dict(zip(oids, heads, strict=True))

    # -- new files made in bulk, by a thread or the link process -----------------------------

    def _dispatch(self, items: list[tuple[Key, str, Want]]) -> None:
        """Hand ``items`` over to be made, once the batch before them is made; record that
        one while these are being made."""
        pairs: list[tuple[str, str]] = []
        if items:
            root = self.root_str if self.root_str.endswith(os.sep) else self.root_str + os.sep
            if self.fan_out_layout:  # _source(), inline: this runs once per image
                objects = self.objects_root + "/objects/"
                pairs = [
                    (f"{objects}{oid[:2]}/{oid}", root + relpath)
                    for _, relpath, (_, oid, _, _) in items
                ]
            else:
                source = self._source
                pairs = [(source(want.oid), root + relpath) for _, relpath, want in items]
        previous = self._outcome()
        try:
            if items:
                assert self.bulk_kind is not None
                self._linker(len(items)).submit(self.bulk_kind, pairs)
                self.in_flight = items
                self.in_flight_names = self.assigned_names
                self.in_flight_jobs = {key[0] for key, _, _ in items}
        finally:
            if previous is not None:  # made, whatever happened to the next batch: recorded
                self._settle(*previous)

    def _linker(self, count: int) -> Linker:
        """Threads for a few new files, the link process from PROCESS_MIN_IMAGES on."""
        self.dispatched += count
        wanted = max(self.expected_images, self.dispatched)
        if self.linker is None or (
            isinstance(self.linker, ThreadLinker) and wanted >= linkproc.PROCESS_MIN_IMAGES
        ):
            if self.linker is not None:
                self.linker.close()  # its batch was taken: nothing is in flight
            copiers = copy_workers(self.root) if self.bulk_kind is LinkKind.COPY else 1
            self.linker = start_linker(self.objects_root, copiers, wanted)
        return self.linker

    def _outcome(self) -> tuple[list[tuple[Key, str, Want]], Made] | None:
        """Wait for the batch in flight: its items and what became of them."""
        if not self.in_flight:
            return None
        items, self.in_flight = self.in_flight, []
        self.in_flight_names, self.in_flight_jobs = set(), set()
        assert self.linker is not None
        try:
            return items, self.linker.outcome()
        except BaseException:
            self.linker.abort()  # interrupted mid-answer: the pipe is no use any more
            self.linker = None
            raise

    def drain(self) -> None:
        """Wait for the batch in flight and record it."""
        previous = self._outcome()
        if previous is not None:
            self._settle(*previous)

    def _settle(self, items: list[tuple[Key, str, Want]], made: Made) -> None:
        """Record the files of a batch that were made; set aside the rest (a name taken
        meanwhile, an object gone); raise the first error that must stop the checkout."""
        kind = self.bulk_kind
        assert kind is not None
        stats = made.stats
        failed: set[int] = {at for at, _ in made.failures}
        for untried in made.untried:
            failed.update(untried)
        rows: list[NewRow] = []
        append = rows.append
        link = kind.value
        size = mtime_ns = 0  # a symlink is recognised by its target
        if not failed and not stats:  # every symlink made: the rows in one comprehension
            rows = [
                (job_id, index, relpath, oid, link, plain if plain != relpath else None, 0, 0)
                for (job_id, index), relpath, (plain, oid, _, _) in items
            ]
            items = []
        for position, ((job_id, index), relpath, want) in enumerate(items):
            if failed and position in failed:
                continue
            plain: str | None = want.plain
            if plain == relpath:
                plain = None
            if stats:
                size, mtime_ns = stats[2 * position], stats[2 * position + 1]
            append((job_id, index, relpath, want.oid, link, plain, size, mtime_ns))
        self.table.put_new(rows)  # placements: images the list did not hold
        self.report.added += len(rows)
        self.ops_since_save += len(rows)
        fatal: BaseException | None = None
        for position, error in made.failures:
            key, relpath, want = items[position]
            if isinstance(error, ObjectMissing):
                self.report.skipped += 1
                self.report.note(f"image {key[1]} of job {key[0]}: object {want.oid} is missing")
            elif in_the_way(error):
                if not self._adopt(key, relpath, want):
                    self._block(key, relpath, want)
            elif fatal is None:
                fatal = error
        if fatal is not None:
            raise fatal

    def _assign(self, placements: dict[Key, Want]) -> list[tuple[Key, str, Want, bool]]:
        """Paths for new images, as ``(key, path, want, is_move)``.

        A name nobody else wants is taken as it is (the common case, no extra work). When
        names collide, the whole collision group is re-resolved, so the result is the same
        whatever order the images arrived in; an earlier image may have to give its plain
        name to one that sorts before it, and moves to its suffixed name.
        """
        # The first image to want each name, and (rarely) the others that want it too.
        first, shared = name_groups(placements)
        # The batch being made is not in the list yet: one of its names wanted here too
        # (rare: a name is made of the job's own fields) waits for it to be recorded.
        if self.in_flight_names and not self.in_flight_names.isdisjoint(first):
            self.drain()
        self.assigned_names = names = set(first)
        result: list[tuple[Key, str, Want, bool]] = []
        append = result.append
        taken = self.table.taken(first)  # one query for the batch, not one per image
        for folded, key in first.items():
            if folded not in taken and folded not in shared:
                # Nobody holds or wants this name: the common case, decided by two lookups.
                want = placements[key]
                append((key, want.plain, want, False))
                continue
            new_members = shared.get(folded) or {key: placements[key].plain}
            existing = {k for k in self._group(folded) if k not in new_members}
            if not existing and len(new_members) == 1 and self.table.holder(folded) is None:
                ((key, plain),) = new_members.items()
                result.append((key, plain, placements[key], False))
                continue
            members = dict(new_members)
            own: set[str] = set()
            for key in existing:
                record = self._record(key)
                if record is not None:
                    members[key] = record.wanted_path
                    own.add(fold(record.path))
            assigned = resolve_collisions(members, taken_folded=_Without(self.table, own))
            names.update(fold(path) for path in assigned.values())
            for key, path in sorted(assigned.items()):
                if key in new_members:
                    result.append((key, path, placements[key], False))
                    continue
                record = self._record(key)
                if record is not None and record.path != path:
                    kind, raw = self.sniff(record.oid)
                    want = Want(record.wanted_path, record.oid, self._job_of(key), raw)
                    # Removed now, so the freed name exists before anything is placed on it.
                    self.drain()
                    self._remove(key, record, counted=False)
                    result.append((key, path, want, True))
        return result

    def _job_of(self, key: Key) -> Job:
        return self.vault.job(self.vault.entry(key[0], self.snapshot))

    # -- file operations -------------------------------------------------------------------
    def _source(self, oid: str) -> str:
        """The object's file, under the vault's resolved path (symlinks need a real path)."""
        if self.fan_out_layout:
            return f"{self.objects_root}/objects/{oid[:2]}/{oid}"
        path = os.fspath(self.vault.object_path(oid))
        if path.startswith(self.vault_prefix):
            return self.objects_root + path[len(self.vault_prefix) - 1 :]
        return os.path.realpath(path)

    def _symlink_target(self, relpath: str, oid: str) -> str:
        # One relpath() per directory, not per file: it is the costliest step of a checkout.
        parent = os.path.dirname(relpath)
        prefix = self.link_prefixes.get(parent)
        if prefix is None:
            prefix = self._link_prefix(parent)
        return prefix + self._source(oid)[len(self.objects_root) :]

    def _link_prefix(self, parent: str) -> str:
        prefix = os.path.relpath(self.objects_root, os.path.join(self.root_str, parent))
        self.link_prefixes[parent] = prefix
        return prefix

    def _make(self, relpath: str, want: Want, replace: bool) -> FileRecord:
        dest = os.path.join(self.root_str, relpath)
        kind = self.making.kind_for(want)
        if kind is LinkKind.SYMLINK:
            place_symlink(self._symlink_target(relpath, want.oid), dest, replace=replace)
            # A symlink is recognised by its target, so no stat is needed (or spent).
            return FileRecord(relpath, want.oid, LinkKind.SYMLINK)
        if kind is LinkKind.HARDLINK:
            place_hardlink(self._source(want.oid), dest, replace=replace)
            used = LinkKind.HARDLINK
        elif self._decoded(want):
            used = place_bytes(self._copy_bytes(want), Path(dest), replace=replace)
        else:
            used = place_file(Path(self._source(want.oid)), Path(dest), self.kind, replace=replace)
        if used is not self.kind and not self.vault.encrypted:
            self.report.note(
                f"{self.kind.value} is not possible on this file system: made copies instead"
                if want.raw
                else "some objects are not stored as plain images: they are decoded copies"
            )
        stat = os.lstat(dest)
        return FileRecord(relpath, want.oid, used, None, stat.st_size, stat.st_mtime_ns)

    def _decoded(self, want: Want) -> bool:
        """Is the view's file made of bytes other than the object file's own?"""
        return self.view.definition.embed_metadata or not want.raw

    def _copy_bytes(self, want: Want) -> bytes:
        """What a copy holds when it is not the object file's bytes: decoded, maybe embedded."""
        data = self.vault.read_object(want.oid)
        if self.view.definition.embed_metadata:
            from mjvault.views.embed import embed_metadata

            data = embed_metadata(data, want.job)
        return data

    def _adopt(self, key: Key, relpath: str, want: Want) -> bool:
        """Take the file in the way at ``relpath`` as the view's own, if it is exactly that.

        A run killed after making a file and before saving its state leaves such files; they
        are what this run would make, so recording them is safe, and anything else (a file of
        the user's, an image that differs by one byte) is still left alone and reported.
        """
        dest = os.path.join(self.root_str, relpath)
        kind = self.making.kind_for(want)
        expected: Callable[[], bytes] | None = None
        if kind in (LinkKind.COPY, LinkKind.REFLINK) and self._decoded(want):
            expected = lambda: self._copy_bytes(want)  # noqa: E731 - made only when needed
        if not is_exactly(self.vault, dest, kind, self._source(want.oid), want.oid, expected):
            return False
        if kind is LinkKind.SYMLINK:
            record = FileRecord(relpath, want.oid, kind)
        else:
            if self.private and kind is not LinkKind.HARDLINK:
                modes.protect_file(Path(dest))  # made by an older version, before modes
            stat = os.lstat(dest)
            made = LinkKind.COPY if kind is LinkKind.REFLINK else kind  # shared extents or not
            record = FileRecord(relpath, want.oid, made, None, stat.st_size, stat.st_mtime_ns)
        record = _with_plain(record, relpath, want.plain)
        self._set_record(key, record)
        self.report.adopted += 1
        self.ops_since_save += 1
        return True

    def _place(self, key: Key, relpath: str, want: Want, *, moved: bool = False) -> None:
        try:
            record = self._make(relpath, want, replace=False)
        except (NameTaken, FileExistsError, NotADirectoryError):
            if not self._adopt(key, relpath, want):
                self._block(key, relpath, want)
            return
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EEXIST):
                if not self._adopt(key, relpath, want):
                    self._block(key, relpath, want)
                return
            raise
        except MjvaultError as exc:
            if isinstance(exc, UsageError):
                raise
            self.report.skipped += 1
            self.report.note(f"image {key[1]} of job {key[0]} skipped: {exc}")
            return
        record = _with_plain(record, relpath, want.plain)
        self._set_record(key, record)
        if moved:
            self.report.updated += 1
        else:
            self.report.added += 1
        self.ops_since_save += 1

    def _replace(self, key: Key, record: FileRecord, want: Want) -> None:
        path = self.root / record.path
        if os.path.lexists(path) and not self._is_ours(path, record):
            if self._adopt(key, record.path, want):
                return  # a killed run replaced it already
            self._forget(key, record, kept=path)
            self._place(key, record.path, want)
            return
        try:
            new = self._make(record.path, want, replace=True)
        except MjvaultError as exc:
            if isinstance(exc, UsageError):
                raise
            self.report.skipped += 1
            self.report.note(f"image {key[1]} of job {key[0]} skipped: {exc}")
            return
        new = _with_plain(new, record.path, want.plain)
        self._set_record(key, new)
        self.report.updated += 1
        self.ops_since_save += 1

    def _remove(self, key: Key, record: FileRecord, *, counted: bool = True) -> None:
        path = self.root / record.path
        if os.path.lexists(path):
            if not self._is_ours(path, record):
                self._forget(key, record, kept=path)
                return
            os.unlink(path)
            prune_empty_dirs(path.parent, self.root)
        self._forget(key, record)
        if counted:
            self.report.removed += 1
        self.ops_since_save += 1

    def _forget(self, key: Key, record: FileRecord, *, kept: Path | None = None) -> None:
        self._set_record(key, None)
        if kept is not None:
            self.report.kept += 1
            if len(self.report.kept_paths) < MAX_LISTED:
                self.report.kept_paths.append(str(kept))

    def _block(self, key: Key, relpath: str, want: Want) -> None:
        plain = want.plain if want.plain != relpath else None
        record = FileRecord(relpath, want.oid, self.kind, plain)
        self.view.blocked.setdefault(key[0], {})[key[1]] = record
        self.report.conflicts += 1
        if len(self.report.conflict_paths) < MAX_LISTED:
            self.report.conflict_paths.append(str(self.root / relpath))

    def _is_ours(self, path: Path, record: FileRecord) -> bool:
        """Is the file at ``path`` still exactly what this view made there?"""
        try:
            if record.kind is LinkKind.SYMLINK:
                return os.path.basename(os.readlink(path)) == record.oid
            stat = os.lstat(path)
        except OSError:
            return False
        return (
            not os.path.islink(path)
            and stat.st_size == record.size
            and stat.st_mtime_ns == record.mtime_ns
        )

    def maybe_save(self) -> None:
        # By time, not by count: saving a 100k-file state every few thousand files would
        # make a checkout quadratic; every SAVE_SECONDS bounds what an interruption redoes.
        if self.ops_since_save and time.monotonic() - self.saved_at >= SAVE_SECONDS:
            self.drain()  # the saved state names only files that exist
            self.registry.save(self.view)
            self.ops_since_save = 0
            self.saved_at = time.monotonic()


def _read_heads(paths: list[str]) -> list[Sniffed]:
    out: list[Sniffed] = []
    append = out.append
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            append(MISSING)
            continue
        try:
            head = os.read(fd, 16)
        finally:
            os.close(fd)
        kind = stored_media_kind(head)
        append((kind, kind is not None))
    return out


class _Without:
    """The paths the view's files hold, minus a few (a collision group's own current paths)."""

    def __init__(self, table: FileTable, without: set[str]) -> None:
        self.table = table
        self.without = without

    def __contains__(self, folded: object) -> bool:
        return (
            isinstance(folded, str)
            and folded not in self.without
            and self.table.holder(folded) is not None
        )


def _with_plain(record: FileRecord, relpath: str, plain: str) -> FileRecord:
    return FileRecord(
        path=relpath,
        oid=record.oid,
        kind=record.kind,
        plain=plain if plain != relpath else None,
        size=record.size,
        mtime_ns=record.mtime_ns,
    )
