"""Rendering a view and keeping it in step with the vault.

A refresh compares what the view should show with what it shows and does only the
difference. Which jobs to look at comes from the tree diff between the tree the view last
rendered and the new one (shared subtrees are skipped by id), so after a sync that added 1%
of jobs a refresh reads 1% of the records and touches 1% of the files. A full pass over the
snapshot happens only when the definition changed (template, filters, link type …), the old
tree is gone, or the vault moved (its symlinks must be re-targeted).

Safety rules, in order of importance:

* a file is removed only if the view created it and it is still what the view made (a
  symlink to the same object, or a file of the same size and modification time); anything
  else at that path is the user's and is left alone and reported;
* a file is never created over something that exists: that image is reported as a conflict
  and retried at every refresh until the way is clear — unless the file is exactly what the
  view would put there (a link to the same object, a copy with the same bytes): a run killed
  before it could record its files made it, and it is adopted;
* the state is saved every few seconds and on interruption, still naming the old tree, so a
  killed refresh resumes and finds the work already done as unchanged; it is marked
  unfinished before the first file is touched, so a rerun (and ``verify --views``) knows to
  look for unrecorded files and temp files.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from mjvault.errors import IntegrityError, JobNotFound, MjvaultError, UsageError
from mjvault.model import Job, MediaRef
from mjvault.snapshots import Snapshot
from mjvault.store.codec import stored_media_kind
from mjvault.tree import JobEntry
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
    remove_temp_files,
)
from mjvault.views.paths import INDEX_DIGITS, fold, resolve_collisions, safe_relpath
from mjvault.views.registry import FileRecord, View, ViewDefinition, ViewRegistry
from mjvault.views.state import FileTable, NewRow
from mjvault.views.template import Template, ext_text

if TYPE_CHECKING:
    from mjvault.index import Index
    from mjvault.index.db import JobSummary
    from mjvault.params import ParamValue
    from mjvault.vault import Vault

Key = tuple[str, int]
Kinds = tuple[str | None, ...]
# An object's type from its head, and whether its file is the image itself (linkable).
Sniffed = tuple[str | None, bool]
_NO_HEAD: Sniffed = (None, False)
_MISSING: Sniffed = ("missing", False)
# Below this many objects a second reading thread costs more than it saves.
SNIFF_PARALLEL_MIN = 256
Progress = Callable[[int], None]
SAVE_SECONDS = 15.0
BATCH_JOBS = 500
# Index lookups between two releases of its mapped pages: each maps up to 64 KiB (the
# kernel's fault-around), so 128 bound a checkout's share to ~8 MB; releasing every 16, as
# other readers do, cost a checkout of 100k images ~0.1 s of page faults more.
SUMMARIES_PER_RELEASE = 128
# The same, for a first checkout that reads every summary in the index's order: a dozen per
# page, and the neighbours the kernel maps are the next summaries, so ~5 MB mapped at most.
SUMMARIES_IN_ORDER_PER_RELEASE = 1024
# Template fields the index's job summaries do not hold: views using them read records.
RECORD_ONLY_FIELDS = frozenset({"job_type", "width", "height"})
MAX_LISTED = 50  # paths listed in a report; counts are always complete
_INERT_BELOW = 10**INDEX_DIGITS  # indexes Template.index_split answers for


@dataclass
class RefreshReport:
    view: str
    directory: str
    snapshot: str | None
    mode: str = "incremental"  # "incremental" | "full" | "up-to-date" | "removed"
    link: str = ""
    jobs_examined: int = 0
    added: int = 0
    removed: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    conflicts: int = 0
    kept: int = 0
    adopted: int = 0  # files an interrupted run made and could not record, taken as the view's
    conflict_paths: list[str] = field(default_factory=list)
    kept_paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def note(self, message: str) -> None:
        if message not in self.notes and len(self.notes) < MAX_LISTED:
            self.notes.append(message)


class _Want(NamedTuple):
    plain: str
    oid: str
    job: Job
    raw: bool = True  # the object's file is the image itself (links can point at it)


class _Reconciler:
    def __init__(
        self,
        vault: Vault,
        registry: ViewRegistry,
        view: View,
        report: RefreshReport,
        progress: Progress | None,
        *,
        snapshot: Snapshot | None,
        embed_changed: bool = False,
        vault_moved: bool = False,
        expected_images: int = 0,
    ) -> None:
        self.vault = vault
        self.snapshot = snapshot
        self.embed_changed = embed_changed
        self.vault_moved = vault_moved
        self.registry = registry
        self.view = view
        self.report = report
        self.progress = progress
        definition = view.definition
        self.template = Template.parse(definition.template)
        self.root = definition.directory
        self.kind = LinkKind.COPY if vault.encrypted else definition.link
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
        self.index = _usable_index(vault, view.definition, self.template)
        # Summaries read ahead with their jobs (a first checkout reading the index in order,
        # _all_jobs): taken by the batch that holds their jobs, so never more than a batch.
        self.prefetched: dict[str, JobSummary] = {}
        self.running = False
        self.reader: ThreadPoolExecutor | None = None
        # New files the plain way (links, or copies of the object files) are made in bulk,
        # by a thread or the link process (mjvault.views.linkproc), one batch at a time
        # while this thread names the next; None: each is made here (reflinks, decoded copies).
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
        # shares one waits for it (_assign, _apply).
        self.in_flight: list[tuple[Key, str, _Want]] = []
        self.in_flight_names: set[str] = set()
        self.in_flight_jobs: set[str] = set()
        self.assigned_names: set[str] = set()
        # The file list, looked up by image and by folded path batch by batch, never loaded
        # whole (mjvault.views.state).
        self.table: FileTable = view.table

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

    # -- what should be there --------------------------------------------------------------
    def wanted(
        self,
        entry: JobEntry | None,
        job: Job | None = None,
        sniffed: dict[str, Sniffed] | None = None,
    ) -> dict[Key, _Want] | None:
        """The files ``entry`` should have; None when its record cannot be read.

        ``job`` is the entry's job from the index when the caller already looked it up (and
        it matched the filter), ``sniffed`` the heads of its objects already read.
        """
        if entry is None:
            return {}
        view_filter = self.view.definition.filter
        if job is None:
            found = self._job_from_index(entry)
            job = found[0] if found is not None else None
            if job is not None and not view_filter.matches(job):
                return {}  # decided without touching the record or the images
            if found is not None and found[1] is not None and sniffed is None:
                sniffed = _known(entry, found[1])
        if sniffed is None:
            sniffed = self._sniff_many([oid for oid in entry.images if oid is not None])
        heads = [sniffed[oid] if oid is not None else _NO_HEAD for oid in entry.images]
        if job is None or any(
            oid is not None and kind is None
            for oid, (kind, _) in zip(entry.images, heads, strict=True)
        ):
            # No usable summary, or an image whose type only the record can tell.
            try:
                job = self.vault.job(entry)
            except MjvaultError as exc:
                # Unknown is not "gone": the job's existing files stay until it can be read.
                self.report.skipped += sum(1 for i in entry.images if i is not None)
                self.report.note(f"job {entry.job_id} skipped: {exc}")
                return None
            if not view_filter.matches(job):
                return {}
        media: list[MediaRef] | None = None
        render = self.template.bind(job)
        out: dict[Key, _Want] = {}
        for index, (oid, (kind, raw)) in enumerate(zip(entry.images, heads, strict=True)):
            if oid is None:
                self.report.skipped += 1
                continue
            if kind == "missing":
                self.report.skipped += 1
                self.report.note(f"image {index} of job {entry.job_id}: object {oid} is missing")
                continue
            if kind is None:
                media = media if media is not None else job.media()
                kind = media[index].ext if index < len(media) else "png"
            plain = safe_relpath(render(index, kind))
            out[(entry.job_id, index)] = _Want(plain, oid, job, raw)
        return out

    def _name_known(
        self, entry: JobEntry, job: Job, kinds: Kinds, desired: dict[Key, _Want]
    ) -> bool:
        """:meth:`wanted` for a job whose summary gives every image's kind, straight into
        ``desired``; False (nothing added) when an image's kind is not known."""
        images = entry.images
        if len(kinds) != len(images) or (
            None in kinds
            and any(
                kind is None and oid is not None for oid, kind in zip(images, kinds, strict=True)
            )
        ):
            return False
        template = self.template
        form = template.job_format(job)
        job_id = entry.job_id
        new_want = tuple.__new__  # a NamedTuple's own constructor is a Python function
        # Named once per job and extension where the index cannot change what safe_relpath
        # does (Template.index_split): then an image's name is a concatenation.
        last_kind: str | None = None
        ext = ""
        split: tuple[str, str] | None = None
        for index, oid in enumerate(images):
            if oid is None:
                self.report.skipped += 1
                continue
            kind = kinds[index]
            if kind != last_kind or not ext:
                last_kind, ext = kind, ext_text(kind)  # type: ignore[arg-type]
                split = template.index_split(form, ext)
            if split is not None and index < _INERT_BELOW:
                plain = f"{split[0]}{index}{split[1]}"
            else:
                plain = safe_relpath(form.format(index, ext))
            desired[(job_id, index)] = new_want(_Want, (plain, oid, job, True))
        return True

    def _summaries(self, entries: Iterable[JobEntry | None]) -> dict[str, JobSummary] | None:
        """A batch's summaries in one go (one transaction, key order), None without an index."""
        if self.index is None:
            return None
        if self.prefetched:
            given = [e.job_id for e in entries if e is not None]
            pop = self.prefetched.pop
            found = {job_id: s for job_id in given if (s := pop(job_id, None)) is not None}
            if len(found) == len(given):
                return found
            rest = [job_id for job_id in given if job_id not in found]
            try:
                found.update(self.index.get_many(rest, release_every=SUMMARIES_PER_RELEASE))
            except MjvaultError:
                self.index = None
                return None
            return found
        try:
            ids = (e.job_id for e in entries if e is not None)
            return self.index.get_many(ids, release_every=SUMMARIES_PER_RELEASE)
        except MjvaultError:
            self.index = None
            return None

    def _job_from_index(
        self, entry: JobEntry, summaries: dict[str, JobSummary] | None = None
    ) -> tuple[Job, Kinds | None] | None:
        """The job (and its images' kinds) from the index when its summary is of this very
        entry, else None.

        A summary is the record already parsed (about a tenth of the cost of reading and
        parsing the record again). It is used only when it holds every field the view needs
        and describes the same record and images as the tree entry, so the files are the same
        whichever source rendered them.
        """
        if self.index is None:
            return None
        if summaries is not None:
            summary = summaries.get(entry.job_id)
        else:
            try:
                summary = self.index.get(entry.job_id)
            except MjvaultError:
                self.index = None
                return None
        if summary is None or summary.record != entry.record or summary.images != entry.images:
            return None
        job = Job(
            id=summary.job_id,
            enqueue_time=summary.time,
            type=summary.type,
            job_type=None,
            event_type=None,
            prompt=summary.prompt,
            full_command="",
            # The summary's own fresh dict (unpacked for this lookup), not copied again.
            params=cast("dict[str, ParamValue]", summary.params),
            username=summary.username,
        )
        return job, summary.kinds

    def _sniff(self, oid: str) -> Sniffed:
        """The image's real type from its first bytes, and whether a link can show it.

        Midjourney records say ``png`` for images that may be WebP or JPEG, and a plain
        vault stores an object raw (the file is the image) only when it is recognisable
        media; anything else is framed and must be decoded into a copy. 16 bytes of one
        read answer both, and catch a missing object before a dangling link is made.
        """
        return self._sniff_many([oid])[oid]

    def _sniff_many(self, oids: list[str]) -> dict[str, Sniffed]:
        """:meth:`_sniff` for many objects; a big batch is read by two threads at once.

        Reading a head is three system calls that release the GIL, so two threads read
        nearly twice as fast as one while this thread waits (it has nothing else to do
        before it knows the extensions).
        """
        if self.vault.encrypted:
            return dict.fromkeys(oids, _NO_HEAD)
        paths = [self._source(oid) for oid in oids]
        if len(paths) < SNIFF_PARALLEL_MIN or not self.running:
            return dict(zip(oids, _read_heads(paths), strict=True))
        half = len(paths) // 2
        if self.reader is None:
            self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjvault-heads")
        second = self.reader.submit(_read_heads, paths[half:])
        heads = _read_heads(paths[:half]) + second.result()
        return dict(zip(oids, heads, strict=True))

    # -- the pass --------------------------------------------------------------------------
    def run(self, changes: Iterator[tuple[str, JobEntry | None]]) -> None:
        self.running = True
        clean = False
        try:
            batch: list[tuple[str, JobEntry | None]] = []
            for change in changes:
                batch.append(change)
                if len(batch) >= BATCH_JOBS:
                    self._apply(batch)
                    batch = []
            self._apply(batch)
            clean = True
        finally:
            try:
                self._drain()  # interrupted or not: what was made is recorded
            except BaseException:
                clean = False
                raise
            finally:
                self.running = False
                if self.linker is not None:
                    # A failing run stops the link process at once; a finished one lets it end.
                    if clean:
                        self.linker.close()
                    else:
                        self.linker.abort()
                    self.linker = None
                if self.reader is not None:
                    self.reader.shutdown(wait=True)

    def _apply(self, batch: list[tuple[str, JobEntry | None]]) -> None:
        if not batch:
            return
        if self.in_flight_jobs and not self.in_flight_jobs.isdisjoint(j for j, _ in batch):
            self._drain()  # a job in two batches in a row: the first one's files first
        desired: dict[Key, _Want] = {}
        touched: set[str] = set()
        # First what the index decides alone (the filter), then the heads of every image
        # still wanted, read in one go, then the names.
        view_filter = self.view.definition.filter
        selects_all = view_filter.empty  # asked once per batch, not of every job
        jobs: list[Job | None] = []
        filtered_out: set[int] = set()
        oids: list[str] = []
        sniffed: dict[str, Sniffed] = {}
        summaries = self._summaries(entry for _, entry in batch)
        # Jobs whose summary gives every image's kind are named right here (the common case,
        # once per image of a checkout); the others go through wanted().
        named: set[int] = set()
        for position, (_job_id, entry) in enumerate(batch):
            job = None
            if entry is not None:
                found = self._job_from_index(entry, summaries)
                job = found[0] if found is not None else None
                if job is not None and not selects_all and not view_filter.matches(job):
                    filtered_out.add(position)
                elif found is not None and found[1] is not None:
                    assert job is not None  # found is (job, kinds)
                    if not self._name_known(entry, job, found[1], desired):
                        sniffed.update(_known(entry, found[1]))  # kept in the index: no read
                    else:
                        named.add(position)
                else:
                    oids.extend(oid for oid in entry.images if oid is not None)
            jobs.append(job)
        if oids:
            sniffed.update(self._sniff_many(oids))
        blocked = self.view.blocked
        others: dict[int, dict[Key, _Want]] = {}
        for position, ((job_id, entry), job) in enumerate(zip(batch, jobs, strict=True)):
            if position not in named and position not in filtered_out:
                wanted = self.wanted(entry, job, sniffed)
                if wanted is None:
                    continue
                if wanted:
                    others[position] = wanted
            touched.add(job_id)
            if blocked:
                blocked.pop(job_id, None)  # retried below with everything else
        if others:
            desired = _in_batch_order(batch, named, desired, others)
        self.report.jobs_examined += len(batch)

        removals: list[tuple[Key, FileRecord]] = []
        replacements: list[tuple[Key, FileRecord, _Want]] = []
        placements: dict[Key, _Want] = {}
        files = self.table.of_jobs(touched)
        for job_id in touched:
            for index, record in files.get(job_id, {}).items():
                key = (job_id, index)
                want = desired.get(key)
                if want is None or want.plain != record.wanted_path:
                    removals.append((key, record))
                elif want.oid != record.oid or self._needs_remake(record, want):
                    replacements.append((key, record, want))
        if not files:
            placements = desired  # none of these jobs has files yet: every image is new
        else:
            removed_keys = {key for key, _ in removals}
            for key, want in desired.items():
                images = files.get(key[0])
                if images is None or key[1] not in images or key in removed_keys:
                    placements[key] = want

        if removals or replacements:
            self._drain()  # a removal may prune a directory a pending link goes into
        for key, record in removals:
            self._remove(key, record)
        for key, record, want in replacements:
            self._replace(key, record, want)
        bulk: list[tuple[Key, str, _Want]] = []
        made_in_bulk = self.bulk_kind is not None
        for key, path, want, is_move in self._assign(placements):
            # _kind_for(want) is the bulk kind iff want.raw
            if made_in_bulk and want.raw and not is_move:
                bulk.append((key, path, want))
            else:
                self._place(key, path, want, moved=is_move)
        self._dispatch(bulk)
        if self.index is not None:
            self.index.release_pages()
        if self.progress:
            self.progress(len(batch))
        self._maybe_save()

    # -- new files made in bulk, by a thread or the link process -----------------------------

    def _dispatch(self, items: list[tuple[Key, str, _Want]]) -> None:
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

    def _outcome(self) -> tuple[list[tuple[Key, str, _Want]], Made] | None:
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

    def _drain(self) -> None:
        """Wait for the batch in flight and record it."""
        previous = self._outcome()
        if previous is not None:
            self._settle(*previous)

    def _settle(self, items: list[tuple[Key, str, _Want]], made: Made) -> None:
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

    def _assign(self, placements: dict[Key, _Want]) -> list[tuple[Key, str, _Want, bool]]:
        """Paths for new images, as ``(key, path, want, is_move)``.

        A name nobody else wants is taken as it is (the common case, no extra work). When
        names collide, the whole collision group is re-resolved, so the result is the same
        whatever order the images arrived in; an earlier image may have to give its plain
        name to one that sorts before it, and moves to its suffixed name.
        """
        # The first image to want each name, and (rarely) the others that want it too.
        first: dict[str, Key] = {}
        shared: dict[str, dict[Key, str]] = {}
        for key, want in placements.items():
            plain = want.plain
            folded = plain.lower() if plain.isascii() else fold(plain)
            holder = first.setdefault(folded, key)
            if holder != key:
                group = shared.get(folded)
                if group is None:
                    group = shared[folded] = {holder: placements[holder].plain}
                group[key] = plain
        # The batch being made is not in the list yet: one of its names wanted here too
        # (rare: a name is made of the job's own fields) waits for it to be recorded.
        if self.in_flight_names and not self.in_flight_names.isdisjoint(first):
            self._drain()
        self.assigned_names = names = set(first)
        result: list[tuple[Key, str, _Want, bool]] = []
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
                    kind, raw = self._sniff(record.oid)
                    want = _Want(record.wanted_path, record.oid, self._job_of(key), raw)
                    # Removed now, so the freed name exists before anything is placed on it.
                    self._drain()
                    self._remove(key, record, counted=False)
                    result.append((key, path, want, True))
        return result

    def _job_of(self, key: Key) -> Job:
        return self.vault.job(self.vault.entry(key[0], self.snapshot))

    def _kind_for(self, want: _Want) -> LinkKind:
        return self.kind if want.raw else LinkKind.COPY

    def _needs_remake(self, record: FileRecord, want: _Want) -> bool:
        """Must an unchanged image's file be made again (link type changed, vault moved)?"""
        expected = self._kind_for(want)
        if record.kind is not expected and not (
            expected is LinkKind.REFLINK and record.kind is LinkKind.COPY
        ):
            return True
        if self.embed_changed and record.kind in (LinkKind.COPY, LinkKind.REFLINK):
            return True
        return self.vault_moved and record.kind is LinkKind.SYMLINK

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

    def _make(self, relpath: str, want: _Want, replace: bool) -> FileRecord:
        dest = os.path.join(self.root_str, relpath)
        kind = self._kind_for(want)
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

    def _decoded(self, want: _Want) -> bool:
        """Is the view's file made of bytes other than the object file's own?"""
        return self.view.definition.embed_metadata or not want.raw

    def _copy_bytes(self, want: _Want) -> bytes:
        """What a copy holds when it is not the object file's bytes: decoded, maybe embedded."""
        data = self.vault.read_object(want.oid)
        if self.view.definition.embed_metadata:
            from mjvault.views.embed import embed_metadata

            data = embed_metadata(data, want.job)
        return data

    def _adopt(self, key: Key, relpath: str, want: _Want) -> bool:
        """Take the file in the way at ``relpath`` as the view's own, if it is exactly that.

        A run killed after making a file and before saving its state leaves such files; they
        are what this run would make, so recording them is safe, and anything else (a file of
        the user's, an image that differs by one byte) is still left alone and reported.
        """
        dest = os.path.join(self.root_str, relpath)
        kind = self._kind_for(want)
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

    def _place(self, key: Key, relpath: str, want: _Want, *, moved: bool = False) -> None:
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

    def _replace(self, key: Key, record: FileRecord, want: _Want) -> None:
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

    def _block(self, key: Key, relpath: str, want: _Want) -> None:
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

    def _maybe_save(self) -> None:
        # By time, not by count: saving a 100k-file state every few thousand files would
        # make a checkout quadratic; every SAVE_SECONDS bounds what an interruption redoes.
        if self.ops_since_save and time.monotonic() - self.saved_at >= SAVE_SECONDS:
            self._drain()  # the saved state names only files that exist
            self.registry.save(self.view)
            self.ops_since_save = 0
            self.saved_at = time.monotonic()


def _usable_index(vault: Vault, definition: ViewDefinition, template: Template) -> Index | None:
    """The index, when its summaries carry everything this view renders and filters by."""
    if (
        vault.encrypted  # types come from decrypting anyway; records are as cheap
        or definition.embed_metadata  # needs the full command
        or definition.filter.types  # needs job and event types
        or template.field_names & RECORD_ONLY_FIELDS
    ):
        return None
    try:
        return vault.current_index()
    except MjvaultError:
        return None


def _in_batch_order(
    batch: list[tuple[str, JobEntry | None]],
    named: set[int],
    desired: dict[Key, _Want],
    others: dict[int, dict[Key, _Want]],
) -> dict[Key, _Want]:
    """The images of jobs named in two passes, in the batch's order again (the order files
    are placed in, and names assigned in, is the same whichever way a job was named)."""
    ordered: dict[Key, _Want] = {}
    for position, (job_id, entry) in enumerate(batch):
        if position in others:
            ordered.update(others[position])
        elif position in named and entry is not None:
            for index in range(len(entry.images)):
                want = desired.get((job_id, index))
                if want is not None:
                    ordered[(job_id, index)] = want
    return ordered


def _read_heads(paths: list[str]) -> list[Sniffed]:
    out: list[Sniffed] = []
    append = out.append
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            append(_MISSING)
            continue
        try:
            head = os.read(fd, 16)
        finally:
            os.close(fd)
        kind = stored_media_kind(head)
        append((kind, kind is not None))
    return out


def _known(entry: JobEntry, kinds: Kinds) -> dict[str, Sniffed]:
    """What :meth:`_Reconciler._sniff` would read, from the kinds the index keeps."""
    if len(kinds) != len(entry.images):
        return {oid: _NO_HEAD for oid in entry.images if oid is not None}
    return {
        oid: (kind, True) if kind is not None else _NO_HEAD
        for oid, kind in zip(entry.images, kinds, strict=True)
        if oid is not None
    }


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


# -- the library API -----------------------------------------------------------------------


def target_snapshot(vault: Vault, definition: ViewDefinition) -> Snapshot | None:
    return vault.snapshot(definition.snapshot) if definition.snapshot else vault.head()


def refresh_view(
    vault: Vault,
    view: View,
    *,
    registry: ViewRegistry | None = None,
    progress: Progress | None = None,
    previous: ViewDefinition | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RefreshReport:
    """Bring one view's files in line with its definition and snapshot; saves its state.

    ``previous`` is the definition the files were made with, when the caller just changed it.
    The caller holds ``registry.lock()``.
    """
    registry = registry or ViewRegistry(vault)
    definition = view.definition
    snapshot = target_snapshot(vault, definition)
    new_tree = snapshot.tree if snapshot else None
    kind = LinkKind.COPY if vault.encrypted else definition.link
    report = RefreshReport(
        view=definition.name,
        directory=str(definition.directory),
        snapshot=snapshot.id if snapshot else None,
        link=kind.value,
    )
    fingerprint = definition.fingerprint()
    vault_path = str(vault.path.resolve())
    vault_moved = view.vault_path is not None and view.vault_path != vault_path
    old_tree_gone = view.tree is not None and not vault.store.exists(view.tree)
    full = view.fingerprint != fingerprint or vault_moved or old_tree_gone
    # A collection view: the members of the collection in the snapshot rendered. A change
    # of the collection writes a snapshot with the same tree, so it is told by its chunks.
    chunks = _collection_chunks(vault, definition, snapshot, report)
    members_changed = chunks is not None and view.collection_chunks != chunks
    if members_changed and not full and not _chunks_present(vault, view.collection_chunks):
        full = True  # what the view showed cannot be read back: render it whole
    private = definition.is_private(vault.encrypted)
    if vault.encrypted:
        report.note(_plaintext_note(definition.directory, private))
    if private:
        modes.protect_root(definition.directory)
    modes_changed = view.private_files != private
    if modes_changed:
        # Files made before the setting changed (or by a version without it) follow it now.
        modes.apply(
            definition.directory, ((r.path, r.kind) for _, _, r in view.iter_files()), private
        )
        view.private_files = private
    if (
        not full
        and view.tree == new_tree
        and not members_changed
        and not view.blocked
        and not view.unfinished
    ):
        if modes_changed:
            registry.save(view)
        report.mode = "up-to-date"
        report.unchanged = view.file_count()
        return report
    report.mode = "full" if full else "incremental"
    if full and on_total is not None and snapshot is not None:
        on_total(int(snapshot.stats.get("jobs", 0)))  # a full pass visits every job once
    interrupted = view.unfinished
    view.unfinished = True
    registry.save(view)  # before the first file is touched: a kill from here on is known
    if interrupted or full or view.blocked:
        # A killed run's temp files: only ours (exact names), and we hold the views' lock.
        swept = remove_temp_files(definition.directory)
        if swept:
            report.note(f"removed {swept} temporary files left by an interrupted checkout")
    before = view.file_count()
    reconciler = _Reconciler(
        vault,
        registry,
        view,
        report,
        progress,
        snapshot=snapshot,
        embed_changed=previous is not None and previous.embed_metadata != definition.embed_metadata,
        vault_moved=vault_moved,
        expected_images=int(snapshot.stats.get("images", 0)) if full and snapshot else 0,
    )
    changes = (
        _all_jobs(vault, view, snapshot, reconciler.index, reconciler.prefetched)
        if full
        else _changed_jobs(
            vault,
            view,
            snapshot,
            new_tree,
            _member_changes(vault, view.collection_chunks, chunks) if members_changed else (),
        )
    )
    try:
        with modes.creating(private):
            reconciler.run(changes)
    except BaseException:
        registry.save(view)  # what is done stays known; the old tree makes the next run redo
        raise
    view.unfinished = False
    view.fingerprint = fingerprint
    view.tree = new_tree
    view.collection_chunks = chunks
    view.snapshot_id = snapshot.id if snapshot else None
    view.vault_path = vault_path
    registry.save(view)
    report.unchanged = max(0, before - report.removed - report.updated)
    view.release()
    return report


def _plaintext_note(directory: Path, private: bool) -> str:
    readers = (
        "readable by you alone (files 0600, folders 0700)"
        if private
        else "readable as your umask allows (--no-private)"
    )
    return f"{directory} is plaintext: decrypted copies of this encrypted vault's images, {readers}"


def _all_jobs(
    vault: Vault,
    view: View,
    snapshot: Snapshot | None,
    index: Index | None = None,
    prefetched: dict[str, JobSummary] | None = None,
) -> Iterator[tuple[str, JobEntry | None]]:
    table = view.table
    # A list empty at the start (a first checkout) will only ever hold jobs of this walk:
    # nothing to remember about which jobs it saw.
    walked_only = table.empty()
    batch: list[str] = []
    ordered = None
    if snapshot is not None and walked_only and index is not None and prefetched is not None:
        ordered = _in_index_order(index, snapshot.tree)
    if ordered is not None:
        assert prefetched is not None
        # The index holds exactly this tree's jobs, each with its summary: read in the
        # index's order, it gives both at a third of the cost of walking the tree and
        # looking each summary up (whose pages are all over the index).
        for summary in ordered:
            job_id = summary.job_id
            prefetched[job_id] = summary
            yield job_id, JobEntry(job_id, summary.record, summary.images)
    elif snapshot is not None:
        for entry in vault.entries(snapshot):
            if not walked_only:
                batch.append(entry.job_id)
                if len(batch) >= BATCH_JOBS:
                    table.mark_seen(batch)  # in the table's store: no set of every job id
                    batch = []
            yield entry.job_id, entry
    if walked_only:
        # Blocked jobs the snapshot no longer has: their blocks go (a handful of lookups).
        for job_id in list(view.blocked):
            if _entry_or_none(vault, job_id, snapshot) is None:
                yield job_id, None
        return
    table.mark_seen(batch)
    # Jobs with files that the snapshot no longer has (their files go), then blocked ones.
    for job_id in table.unseen_jobs([*view.blocked]):
        yield job_id, None


def _in_index_order(index: Index, tree: str | None) -> Iterator[JobSummary] | None:
    """``tree``'s summaries in the index's order, if the index is exactly that tree's (every
    job of it, and no other) in the transaction they are read in; else None."""
    if tree is None:
        return None
    summaries = index.iter_summaries(release_every=SUMMARIES_IN_ORDER_PER_RELEASE, of_tree=tree)
    try:
        first = next(summaries)
    except StopIteration:
        return iter(())
    except MjvaultError:  # IndexNotOfTree, or an index that cannot be read: walk the tree
        return None
    return itertools.chain((first,), summaries)


def _changed_jobs(
    vault: Vault,
    view: View,
    snapshot: Snapshot | None,
    new_tree: str | None,
    members: Iterable[str] = (),
) -> Iterator[tuple[str, JobEntry | None]]:
    seen: set[str] = set()
    for job_id, _old, new in vault.diff(view.tree, new_tree):
        seen.add(job_id)
        yield job_id, new
    for job_id in members:  # jobs that joined or left the view's collection
        if job_id not in seen:
            seen.add(job_id)
            yield job_id, _entry_or_none(vault, job_id, snapshot)
    for job_id in list(view.blocked):  # a user file was in the way last time: try again
        if job_id not in seen:
            yield job_id, _entry_or_none(vault, job_id, snapshot)


def _collection_chunks(
    vault: Vault, definition: ViewDefinition, snapshot: Snapshot | None, report: RefreshReport
) -> list[str] | None:
    """A collection view's member chunks in ``snapshot`` (binding the filter to its members);
    None for a view without a collection. A collection the snapshot lacks has no member."""
    name = definition.filter.collection
    if name is None:
        return None
    from mjvault.collections import collections_of

    found = next((c for c in collections_of(vault, snapshot) if c.name == name), None)
    if found is None:
        report.note(f"no collection {name!r} in the snapshot: the view shows no job")
    chunks = list(found.chunks) if found is not None else []
    definition.filter = definition.filter.bound(frozenset(_stream_chunks(vault, chunks)))
    return chunks


def _chunks_present(vault: Vault, chunks: list[str] | None) -> bool:
    return chunks is not None and all(vault.store.exists(c) for c in chunks)


def _member_changes(vault: Vault, old: list[str] | None, new: list[str] | None) -> Iterator[str]:
    """The job ids in one of the two collections and not the other, in id order: a merge of
    the two sorted streams (FORMAT §7.1). A chunk both lists name holds the same ids on
    both sides and none of the others' (a collection names each id once): skipped unread."""
    shared = set(old or ()) & set(new or ())
    before = _stream_chunks(vault, [c for c in old or () if c not in shared])
    after = _stream_chunks(vault, [c for c in new or () if c not in shared])
    a, b = next(before, None), next(after, None)
    while a is not None and b is not None:
        if a < b:
            yield a
            a = next(before, None)
        elif b < a:
            yield b
            b = next(after, None)
        else:
            a, b = next(before, None), next(after, None)
    if a is not None:
        yield a
        yield from before
    if b is not None:
        yield b
        yield from after


def _stream_chunks(vault: Vault, chunks: list[str]) -> Iterator[str]:
    from mjvault.collections import decode_chunk

    for chunk in chunks:
        yield from decode_chunk(chunk, vault.store.read(chunk))


def _entry_or_none(vault: Vault, job_id: str, snapshot: Snapshot | None) -> JobEntry | None:
    if snapshot is None:
        return None
    try:
        return vault.entry(job_id, snapshot)
    except JobNotFound:
        return None


def _check_directory(vault: Vault, directory: Path) -> None:
    check_view_directory(vault.path, directory)


def check_view_directory(vault_path: Path, directory: Path) -> None:
    """A view's (resolved) directory must lie beside the vault, neither in it nor around it."""
    vault_root = vault_path.resolve()
    if directory == vault_root or vault_root in directory.parents:
        raise UsageError(f"{directory} is inside the vault; choose a directory outside it")
    if directory in vault_root.parents:
        raise UsageError(f"{directory} contains the vault; choose a directory beside it")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")


def checkout(
    vault: Vault,
    definition: ViewDefinition,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RefreshReport:
    """Define (or redefine) a view and render it. Library form of ``mjvault checkout DIR``."""
    Template.parse(definition.template)  # a bad template fails before anything is touched
    definition.directory = definition.directory.expanduser().resolve()
    _check_directory(vault, definition.directory)
    if definition.snapshot:
        definition.snapshot = vault.snapshot(definition.snapshot).id
    registry = ViewRegistry(vault)
    with registry.lock():
        previous: ViewDefinition | None = None
        if registry.exists(definition.name):
            view = registry.load(definition.name)
            previous = view.definition
            if previous.directory != definition.directory:
                raise UsageError(
                    f"view {definition.name!r} already shows {previous.directory}",
                    hint="choose another --name, or `mjvault checkout --remove` it first",
                )
            view.definition = definition
        else:
            other = registry.find_by_directory(definition.directory)
            if other is not None:
                raise UsageError(
                    f"{definition.directory} is already the view {other.name!r}",
                    hint=f"refresh it with `mjvault checkout`, or use --name {other.name}",
                )
            view = View(definition=definition)
        definition.directory.mkdir(parents=True, exist_ok=True)
        return refresh_view(
            vault, view, registry=registry, progress=progress, previous=previous, on_total=on_total
        )


@dataclass
class ViewsReport:
    """The outcome of refreshing several views (``mjvault checkout`` with no arguments)."""

    views: list[RefreshReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        names = (
            "added", "removed", "updated", "unchanged", "skipped", "conflicts", "kept", "adopted"
        )  # fmt: skip
        return {n: sum(getattr(r, n) for r in self.views) for n in names}

    def to_json(self) -> dict[str, Any]:
        return {
            "views": [r.to_json() for r in self.views],
            "errors": self.errors,
            "totals": self.totals(),
        }


def refresh_views(
    vault: Vault,
    *,
    auto_only: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ViewsReport:
    """Refresh every view of the vault; ``auto_only`` skips views that opted out (for sync).

    A view that fails (its disk is not mounted, say) is reported and the others still run.
    """
    registry = ViewRegistry(vault)
    result = ViewsReport()
    if not registry.names():
        return result
    with registry.lock():
        for name in registry.names():
            try:
                view = registry.load(name)
                if auto_only and not view.definition.auto_refresh:
                    continue
                result.views.append(
                    refresh_view(
                        vault, view, registry=registry, progress=progress, on_total=on_total
                    )
                )
            except (MjvaultError, OSError) as exc:
                result.errors[name] = str(exc)
    return result


def remove_view(vault: Vault, name: str) -> RefreshReport:
    """Delete a view: its own files (never one the user changed) and its registry entry."""
    registry = ViewRegistry(vault)
    with registry.lock():
        try:
            view = registry.load(name)
        except IntegrityError as exc:
            # Without its file list the view cannot tell its files from yours: keep them all.
            registry.delete(name)
            report = RefreshReport(view=name, directory="?", snapshot=None, mode="removed")
            report.note(f"{exc}; the view is forgotten and its files were left in place")
            return report
        report = RefreshReport(
            view=name,
            directory=str(view.definition.directory),
            snapshot=view.snapshot_id,
            mode="removed",
            link=view.definition.link.value,
        )
        reconciler = _Reconciler(vault, registry, view, report, None, snapshot=None)
        try:
            gone = dict.fromkeys([*view.table.job_ids(), *view.blocked])
            reconciler.run((job_id, None) for job_id in gone)
        except BaseException:
            registry.save(view)
            raise
        view.release()
        registry.delete(name)
        return report


def list_views(vault: Vault) -> list[View]:
    return ViewRegistry(vault).all()
