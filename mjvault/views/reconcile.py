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

The work is split three ways: this module names what the view should show (template,
filter, the index's summaries) and feeds the jobs to look at batch by batch;
mjvault.views.plan, pure, says what must change; mjvault.views.apply does it on disk, with
its worker threads and the state's bookkeeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mjvault.errors import IntegrityError, JobNotFound, MjvaultError, UsageError
from mjvault.model import Job, MediaRef
from mjvault.snapshots import Snapshot
from mjvault.tree import JobEntry
from mjvault.views import modes
from mjvault.views.apply import NO_HEAD, Applier, Sniffed
from mjvault.views.links import LinkKind, remove_temp_files
from mjvault.views.members import chunks_present, collection_chunks
from mjvault.views.members import member_changes as _member_changes  # its old name
from mjvault.views.paths import INDEX_DIGITS, safe_relpath
from mjvault.views.plan import Key, Want, in_batch_order, plan_jobs
from mjvault.views.registry import View, ViewDefinition, ViewRegistry
from mjvault.views.report import MAX_LISTED, RefreshReport, ViewsReport
from mjvault.views.template import Template, ext_text

if TYPE_CHECKING:
    from mjvault.index import Index
    from mjvault.index.db import JobSummary
    from mjvault.params import ParamValue
    from mjvault.vault import Vault

# Where callers and tests have always found them.
__all__ = [
    "MAX_LISTED",
    "RefreshReport",
    "ViewsReport",
    "check_view_directory",
    "checkout",
    "list_views",
    "refresh_view",
    "refresh_views",
    "remove_view",
    "target_snapshot",
]

Kinds = tuple[str | None, ...]
Progress = Callable[[int], None]
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
_INERT_BELOW = 10**INDEX_DIGITS  # indexes Template.index_split answers for


class _Reconciler:
    """Names what a batch of jobs should show, plans the difference, has it applied."""

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
        self.view = view
        self.report = report
        self.progress = progress
        self.template = Template.parse(view.definition.template)
        self.index = _usable_index(vault, view.definition, self.template)
        # Summaries read ahead with their jobs (a first checkout reading the index in order,
        # _all_jobs): taken by the batch that holds their jobs, so never more than a batch.
        self.prefetched: dict[str, JobSummary] = {}
        self.applier = Applier(
            vault,
            registry,
            view,
            report,
            snapshot=snapshot,
            embed_changed=embed_changed,
            vault_moved=vault_moved,
            expected_images=expected_images,
        )

    # -- what should be there --------------------------------------------------------------
    def wanted(
        self,
        entry: JobEntry | None,
        job: Job | None = None,
        sniffed: dict[str, Sniffed] | None = None,
    ) -> dict[Key, Want] | None:
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
            sniffed = self.applier.sniff_many([oid for oid in entry.images if oid is not None])
        heads = [sniffed[oid] if oid is not None else NO_HEAD for oid in entry.images]
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
        out: dict[Key, Want] = {}
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
            out[(entry.job_id, index)] = Want(plain, oid, job, raw)
        return out

    def _name_known(
        self, entry: JobEntry, job: Job, kinds: Kinds, desired: dict[Key, Want]
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
            desired[(job_id, index)] = new_want(Want, (plain, oid, job, True))
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

    # -- the pass --------------------------------------------------------------------------
    def run(self, changes: Iterator[tuple[str, JobEntry | None]]) -> None:
        applier = self.applier
        applier.start()
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
            applier.finish(clean)  # interrupted or not: what was made is recorded

    def _apply(self, batch: list[tuple[str, JobEntry | None]]) -> None:
        if not batch:
            return
        applier = self.applier
        applier.busy_with(j for j, _ in batch)
        desired: dict[Key, Want] = {}
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
            sniffed.update(applier.sniff_many(oids))
        blocked = self.view.blocked
        others: dict[int, dict[Key, Want]] = {}
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
            desired = in_batch_order(batch, named, desired, others)
        self.report.jobs_examined += len(batch)
        files = applier.table.of_jobs(touched)
        applier.execute(plan_jobs(touched, desired, files, applier.making))
        if self.index is not None:
            self.index.release_pages()
        if self.progress:
            self.progress(len(batch))
        applier.maybe_save()


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


def _known(entry: JobEntry, kinds: Kinds) -> dict[str, Sniffed]:
    """What :meth:`Applier.sniff` would read, from the kinds the index keeps."""
    if len(kinds) != len(entry.images):
        return {oid: NO_HEAD for oid in entry.images if oid is not None}
    return {
        oid: (kind, True) if kind is not None else NO_HEAD
        for oid, kind in zip(entry.images, kinds, strict=True)
        if oid is not None
    }


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
    chunks = collection_chunks(vault, definition, snapshot, report)
    members_changed = chunks is not None and view.collection_chunks != chunks
    if members_changed and not full and not chunks_present(vault, view.collection_chunks):
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
            return _forget_damaged(registry, name, exc)
        report = RefreshReport(
            view=name,
            directory=str(view.definition.directory),
            snapshot=view.snapshot_id,
            mode="removed",
            link=view.definition.link.value,
        )
        try:
            gone = dict.fromkeys([*view.table.job_ids(), *view.blocked])
        except IntegrityError as exc:  # the list is damaged past what loading it checks
            view.release()
            return _forget_damaged(registry, name, exc)
        reconciler = _Reconciler(vault, registry, view, report, None, snapshot=None)
        try:
            reconciler.run((job_id, None) for job_id in gone)
        except BaseException:
            registry.save(view)
            raise
        view.release()
        registry.delete(name)
        return report


def _forget_damaged(registry: ViewRegistry, name: str, exc: IntegrityError) -> RefreshReport:
    """Delete a view whose state cannot be read (both its files), and nothing of its
    directory: without its file list the view cannot tell its files from yours."""
    registry.delete(name)
    report = RefreshReport(view=name, directory="?", snapshot=None, mode="removed")
    report.note(f"{exc}; the view is forgotten and its files were left in place")
    return report


def list_views(vault: Vault) -> list[View]:
    return ViewRegistry(vault).all()
