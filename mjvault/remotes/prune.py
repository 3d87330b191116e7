"""``mjvault forget --remote`` and ``mjvault gc --remote``: reclaim space on a remote.

The rules are those of local gc (docs/FORMAT.md §12), on the remote's own objects and ids
(§11.7 states them for the remote):

* both hold the remote's prune lease (:mod:`.lease`) throughout, so no other prune and no push
  runs beside them;
* **forget** removes snapshot markers (never the remote's newest snapshot, its derived HEAD);
* **gc** marks from the remaining markers — manifests, then tree nodes read from the remote's
  packs or loose files, with every id in the remote's id space — into a scratch table on disk
  (nothing per object in memory); if a manifest or tree node cannot be read, or a pack's
  trailer, nothing is swept;
* then plans from listings with sizes and times (:meth:`Backend.list_meta`): a loose object
  unmarked and older than the grace period (by the remote's own time) goes; a pack holding an
  unmarked object and older than the grace period is rewritten — its marked entries, checked
  against their names, into new packs uploaded first, then the old pack deleted and the local
  pack cache updated; a younger pack is kept whole;
* ``dry_run`` stops after the plan, which says what would go and how many bytes.

A gc that stops half-way (an error, ``kill -9``) leaves a valid remote: every marked object is
stored once or twice, never zero times. What it may leave is an unmarked tree node whose
children are already gone, which a push must not take for a complete subtree (§11.4); so an
interrupted prune leaves its lease behind (marked, or left to expire), and a push that finds it
walks every snapshot whole. A gc that keeps young unmarked objects while removing old ones
leaves its lease marked the same way, for the same reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from mjvault.collections import decode_list
from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound, UsageError
from mjvault.integrity import exclusions
from mjvault.integrity.forget import (
    Decision,
    ForgetJobsReport,
    ForgetSnapshotsReport,
    JobRewrite,
    KeepPolicy,
    age_order,
    apply_policy,
    forgotten_in,
)
from mjvault.remotes.backend import RemoteNotFound
from mjvault.remotes.config import list_specs, load_spec, state_dir
from mjvault.remotes.crypto import rewrite_ids
from mjvault.remotes.lease import Lease, take_prune_lease
from mjvault.remotes.packs import PACKS_PREFIX, REMOTE_PACK_VERSION, pack_key
from mjvault.remotes.record import drop_markers, vault_ids_of
from mjvault.remotes.remote import OBJECTS_PREFIX, PassphraseSource, snapshot_key
from mjvault.remotes.scratch import CHUNK, DiskIds, Scratch, scratch_in
from mjvault.remotes.session import Link, connect
from mjvault.reports import Report
from mjvault.snapshots import Snapshot, decode_manifest
from mjvault.store.objects import is_object_id
from mjvault.store.packfile import PackDamaged, encode_pack, is_pack_id, pack_name, parse_trailer
from mjvault.tree import Inner, TreeReader, walk_nodes
from mjvault.vault import Vault

DEFAULT_GRACE_SECONDS = 3600.0
# Bytes of kept entries per new pack: as push fills them.
PACK_TARGET_BYTES = 16 * 1024 * 1024
DELETE_THREADS = 8
# Keys a delete request names, at most (S3's DeleteObjects limit).
DELETE_BATCH = 1000
MAX_LISTED = 1000
UNREADABLE = (RemoteNotFound, CorruptObject, IntegrityError, PackDamaged)

ProgressFn = Callable[[str, int], None]  # (phase, items done since the last call)


# -- forget --------------------------------------------------------------------------------


def forget_remote(
    vault_refs_resolve: Callable[[str], str] | None,
    link: Link,
    *,
    policy: KeepPolicy | None = None,
    snapshot_ids: Sequence[str] = (),
    dry_run: bool = False,
) -> ForgetSnapshotsReport:
    """Remove the remote's markers chosen by ``policy`` or named in ``snapshot_ids``.

    Names are remote snapshot ids or their prefixes; on an encrypting remote a local snapshot
    name is also accepted (``vault_refs_resolve`` turns it into a local id, the id map into
    the remote's). The remote's newest snapshot is never forgotten.
    """
    report = ForgetSnapshotsReport(dry_run=dry_run)
    lease = take_prune_lease(link.backend)
    try:
        readable, unreadable = _remote_snapshots(link)
        protected = {}
        if readable:
            newest = max(readable, key=age_order)
            protected[newest.id] = "the remote's newest"
        if policy is not None:
            if unreadable:
                raise IntegrityError(
                    f"remote snapshot {unreadable[0][:12]} cannot be read, so no policy can "
                    "place it",
                    hint="run `mjvault verify --remote`, or forget it by id",
                )
            report.decisions = apply_policy(readable, policy, protected=protected)
            doomed = [d.snapshot.id for d in report.decisions if not d.keep]
        else:
            every = [s.id for s in readable] + unreadable
            named = {_resolve(link, vault_refs_resolve, ref, every) for ref in snapshot_ids}
            for snapshot_id in named:
                if snapshot_id in protected:
                    raise UsageError(
                        f"snapshot {snapshot_id[:12]} is {protected[snapshot_id]}: not forgotten"
                    )
            report.decisions = [
                Decision(s, [] if s.id in named else ["not named"]) for s in readable
            ]
            doomed = sorted(named)
        for snapshot_id in doomed:
            report.forgotten.append(snapshot_id)
            if not dry_run:
                lease.check()
                link.backend.delete(snapshot_key(snapshot_id))
    finally:
        # Removing markers breaks no rule a push relies on; a cut-short sweep's is kept.
        lease.leave(cut_short=False)
    return report


def _remote_snapshots(link: Link) -> tuple[list[Snapshot], list[str]]:
    readable, unreadable = [], []
    for snapshot_id in sorted(link.remote.snapshot_ids()):
        try:
            _, plaintext = link.remote.fetch(snapshot_id)
            readable.append(decode_manifest(snapshot_id, plaintext))
        except UNREADABLE:
            unreadable.append(snapshot_id)
    return readable, unreadable


def _resolve(
    link: Link, resolve_local: Callable[[str], str] | None, ref: str, every: list[str]
) -> str:
    ref = ref.lower()
    matches = [s for s in every if s.startswith(ref)] if len(ref) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"{ref} names several snapshots on the remote; give more digits")
    if link.idmap is not None and resolve_local is not None:
        local = resolve_local(ref)
        remote = link.idmap.remote_of(local)
        if remote in every:
            return remote
    raise UsageError(f"the remote holds no snapshot {ref}")


# -- gc ------------------------------------------------------------------------------------


@dataclass
class RemoteGcReport(Report):
    json_after = ("bytes_freed",)

    dry_run: bool
    grace_seconds: float
    snapshots: int = 0
    tree_nodes: int = 0
    jobs: int = 0
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
    #: Packs to rewrite that failed a check and were kept whole, unmarked entries and all.
    packs_kept_damaged: int = 0
    seconds: float = 0.0
    removed_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """Loose bytes removed, and pack bytes removed less those written in their place."""
        return self.removed_bytes + self.pack_bytes_removed - self.pack_bytes_written


@dataclass
class _PackPlan:
    name: str
    size: int
    #: Whether every entry is unmarked: the pack is deleted, nothing is rewritten.
    whole: bool


def gc_remote(
    link: Link,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    scratch_dir: Path | None = None,
    progress: ProgressFn | None = None,
    now: float | None = None,
) -> RemoteGcReport:
    """Remove what no marker of the remote reaches and is older than ``grace_seconds``."""
    if grace_seconds < 0:
        raise UsageError("the grace period cannot be negative")
    started = time.monotonic()
    report = RemoteGcReport(dry_run=dry_run, grace_seconds=grace_seconds)
    lease = take_prune_lease(link.backend)
    sweeping = False
    try:
        if not dry_run:
            link.backend.sweep()  # a folder remote's temp files of writers that died
        with scratch_in(scratch_dir, prefix="mjvault-gc-") as scratch:
            marks = scratch.ids("marked")
            _mark(link, marks, report, lease, progress)
            # Taken after marking: anything written after this is younger than the cutoff.
            cutoff = (time.time() if now is None else now) - grace_seconds
            doomed = _plan_loose(link, marks, cutoff, scratch, report, progress)
            packs = _plan_packs(link, marks, cutoff, report, progress)
            if not dry_run:
                sweeping = True
                _delete_loose(link, doomed, lease, progress)
                _rewrite_packs(link, marks, packs, report, lease, progress, scratch.path.parent)
                sweeping = False
    except BaseException:
        lease.leave(cut_short=sweeping)
        raise
    if dry_run:
        lease.leave(cut_short=False)
    else:
        # Only when nothing unmarked is left does every object on the remote have its whole
        # subtree: a young unmarked tree node may name an old object removed now or by an
        # earlier sweep, and pushes must not take it for a complete subtree meanwhile.
        left_unmarked = report.kept_young > 0 or report.packs_kept_damaged > 0
        lease.leave(cut_short=left_unmarked, cleared=True)
        if left_unmarked:
            report.notes.append(
                "unreferenced objects were kept (young, or in a damaged pack): the next push "
                "checks every snapshot whole, until a gc leaves none"
            )
    report.seconds = time.monotonic() - started
    return report


def _refuse(what: str, exc: BaseException) -> IntegrityError:
    return IntegrityError(
        f"{what} cannot be read ({exc}), so gc cannot tell what it needs: nothing was removed",
        hint="run `mjvault verify --remote NAME`, then `mjvault push --full NAME`",
    )


def _mark(
    link: Link,
    marks: DiskIds,
    report: RemoteGcReport,
    lease: Lease,
    progress: ProgressFn | None,
) -> None:
    """Every object a marker reaches, into ``marks``; raises if anything cannot be read."""
    packs = link.remote.packs
    if packs is not None:
        packs.refresh()
        if packs.damaged:
            raise _refuse(f"the trailer of remote pack {packs.damaged[0]}", PackDamaged("damaged"))
    for snapshot_id in sorted(link.remote.snapshot_ids()):
        lease.check()
        try:
            _, plaintext = link.remote.fetch(snapshot_id)
            snapshot = decode_manifest(snapshot_id, plaintext)
        except UNREADABLE as exc:
            raise _refuse(f"snapshot manifest {snapshot_id[:12]}", exc) from None
        report.snapshots += 1
        marks.update([snapshot_id])

        def read(node_id: str) -> bytes:
            return link.remote.fetch(node_id)[1]

        def unreadable(node_id: str, exc: Exception) -> None:
            raise _refuse(f"tree node {node_id[:12]}", exc) from None

        # A subtree shared with a snapshot marked before is skipped (``known``).
        for node_id, node in walk_nodes(
            read, snapshot.tree, known=marks, on_error=unreadable, damage=UNREADABLE
        ):
            marks.update([node_id])
            report.tree_nodes += 1
            if progress:
                progress("marking", 1)
            if isinstance(node, Inner):
                continue
            named = []
            for entry in node.entries:
                report.jobs += 1
                named.append(entry.record)
                named.extend(i for i in entry.images if i is not None)
            marks.update(named)
        if snapshot.collections is not None and snapshot.collections not in marks:
            try:
                _, plaintext = link.remote.fetch(snapshot.collections)
                listed = decode_list(snapshot.collections, plaintext)
            except UNREADABLE as exc:
                raise _refuse(f"collection list {snapshot.collections[:12]}", exc) from None
            marks.update([snapshot.collections, *(c for col in listed for c in col.chunks)])


def _plan_loose(
    link: Link,
    marks: DiskIds,
    cutoff: float,
    scratch: Scratch,
    report: RemoteGcReport,
    progress: ProgressFn | None,
) -> DiskIds:
    """The loose objects to delete, from one listing with sizes and times (a scratch table of
    keys' ids; their sizes are counted here)."""
    doomed = scratch.ids("doomed")
    chunk: list[str] = []
    for meta in link.backend.list_meta(OBJECTS_PREFIX):
        object_id = meta.key.rpartition("/")[2]
        if not is_object_id(object_id):
            continue
        report.objects_seen += 1
        if progress:
            progress("planning", 1)
        if object_id in marks:
            report.objects_kept += 1
            continue
        report.unreferenced += 1
        if meta.mtime > cutoff:
            report.kept_young += 1
            report.kept_young_bytes += meta.size
            continue
        report.removed += 1
        report.removed_bytes += meta.size
        if len(report.removed_ids) < MAX_LISTED:
            report.removed_ids.append(object_id)
        chunk.append(object_id)
        if len(chunk) >= CHUNK:
            doomed.update(chunk)
            chunk = []
    doomed.update(chunk)
    return doomed


def _plan_packs(
    link: Link,
    marks: DiskIds,
    cutoff: float,
    report: RemoteGcReport,
    progress: ProgressFn | None,
) -> list[_PackPlan]:
    """Which packs to rewrite or delete; each known pack's ids come from the local cache."""
    packs = link.remote.packs
    if packs is None:
        return []
    index = packs.index
    plan = []
    for meta in link.backend.list_meta(PACKS_PREFIX):
        name = meta.key[len(PACKS_PREFIX) :]
        if not is_pack_id(name):
            continue
        listed = index.pack_ids(name)
        if listed is None:
            continue  # arrived after the refresh (no push runs beside us): kept whole
        report.packs_seen += 1
        count = len(listed) // 32
        dead = sum(1 for i in range(0, len(listed), 32) if listed[i : i + 32].hex() not in marks)
        report.objects_seen += count
        report.objects_kept += count - dead
        report.unreferenced += dead
        if progress:
            progress("planning", count)
        if not dead:
            continue
        if meta.mtime > cutoff:
            report.kept_young += dead
            report.kept_young_bytes += meta.size * dead // count
            continue
        plan.append(_PackPlan(name, meta.size, whole=dead == count))
        report.packs_rewritten += 1
        report.removed += dead
        report.pack_bytes_removed += meta.size
    return plan


def _delete_loose(link: Link, doomed: DiskIds, lease: Lease, progress: ProgressFn | None) -> None:
    """Deleted in batches (one request each where the store deletes in bulk), several at once."""

    def delete(object_ids: list[str]) -> int:
        link.backend.delete_many([f"{OBJECTS_PREFIX}{i[:2]}/{i}" for i in object_ids])
        return len(object_ids)

    def batches() -> Iterator[list[str]]:
        batch: list[str] = []
        for object_id in doomed:
            batch.append(object_id)
            if len(batch) >= DELETE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    lease.check()
    with ThreadPoolExecutor(DELETE_THREADS) as pool:
        for done in bounded_map(pool, delete, batches(), window=DELETE_THREADS * 2):
            lease.check()
            if progress:
                progress("removing", done)


class _NewPacks:
    """Kept entries gathered into new packs; an old pack is deleted once every entry it
    keeps is in a pack that has been uploaded (the Order rule of §12)."""

    def __init__(self, link: Link, report: RemoteGcReport, lease: Lease) -> None:
        self.link = link
        self.report = report
        self.lease = lease
        self.entries: list[tuple[bytes, bytes]] = []
        self.in_pack: set[bytes] = set()
        self.size = 0
        self.waiting: list[str] = []  # old packs whose kept entries are all gathered

    def add(self, object_id: bytes, data: bytes) -> None:
        if object_id in self.in_pack:
            return
        self.entries.append((object_id, data))
        self.in_pack.add(object_id)
        self.size += len(data)

    def old_done(self, name: str) -> None:
        self.waiting.append(name)
        if self.size >= PACK_TARGET_BYTES:
            self.flush()

    def flush(self) -> None:
        self.lease.check()
        if self.entries:
            data, trailer = encode_pack(self.entries, None, REMOTE_PACK_VERSION)
            name = pack_name(data)
            self.link.backend.put(pack_key(name), data)
            packs = self.link.remote.packs
            assert packs is not None
            packs.uploaded(name, (e.object_id for e in trailer.entries))
            self.report.packs_written += 1
            self.report.pack_bytes_written += len(data)
            self.entries, self.in_pack, self.size = [], set(), 0
        for old in self.waiting:
            self.link.backend.delete(pack_key(old))
            packs = self.link.remote.packs
            assert packs is not None
            packs.index.forget(old)
            self.report.packs_removed += 1
        self.waiting = []


def _rewrite_packs(
    link: Link,
    marks: DiskIds,
    plan: list[_PackPlan],
    report: RemoteGcReport,
    lease: Lease,
    progress: ProgressFn | None,
    spool: Path,
) -> None:
    # Under the prune lease no other gc of this remote runs: a pack copy left in the spool is
    # a killed run's.
    for leftover in spool.glob("gc-*.pack"):
        leftover.unlink(missing_ok=True)
    if not plan:
        return
    removed_bytes = report.pack_bytes_removed
    report.pack_bytes_removed = 0
    builder = _NewPacks(link, report, lease)
    for item in plan:
        lease.check()
        if item.whole:
            builder.old_done(item.name)
        else:
            kept = _kept_entries(link, item.name, marks, spool, report)
            if kept is None:
                removed_bytes -= item.size
                continue
            for object_id, data in kept:
                builder.add(object_id, data)
            builder.old_done(item.name)
        if progress:
            progress("rewriting", 1)
    builder.flush()
    report.pack_bytes_removed = removed_bytes


def _kept_entries(
    link: Link, name: str, marks: DiskIds, spool: Path, report: RemoteGcReport
) -> list[tuple[bytes, bytes]] | None:
    """The marked entries of pack ``name``, each checked against its name; None (the pack
    kept whole, with a note) if the pack or one of them is damaged."""
    path = spool / f"gc-{name}.pack"
    try:
        with open(path, "w+b") as handle:
            link.backend.download(pack_key(name), handle)
            handle.flush()
            fd = handle.fileno()
            size = os.fstat(fd).st_size
            hasher = blake3.blake3()
            handle.seek(0)
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
            if hasher.hexdigest() != name:
                raise PackDamaged(f"remote pack {name} does not hash to its name")
            trailer = parse_trailer(
                lambda n, offset: os.pread(fd, n, offset), size, name, (REMOTE_PACK_VERSION,)
            )
            kept = []
            for entry in trailer.entries:
                if entry.hex_id not in marks:
                    continue
                data = os.pread(fd, entry.length, entry.offset)
                link.remote.open(entry.hex_id, data)  # never copy damage into a new pack
                kept.append((entry.object_id, data))
            return kept
    except (PackDamaged, CorruptObject, IntegrityError, RemoteNotFound) as exc:
        report.notes.append(f"remote pack {name[:12]} kept whole: {exc}")
        report.packs_kept_damaged += 1
        return None
    finally:
        path.unlink(missing_ok=True)


# -- by name (the commands) ----------------------------------------------------------------


def gc_named_remote(
    vault: Vault,
    name: str,
    *,
    passphrase: PassphraseSource = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> RemoteGcReport:
    """``mjvault gc --remote NAME``: :func:`gc_remote` on one of the vault's remotes.

    When the list of forgotten jobs says the remote may still hold some, the remote is first
    given the vault's rewrites of the snapshots that held them and loses its markers of the
    old ones (what ``forget --job`` does when it reaches the remote), and its snapshots the
    vault no longer holds are rewritten without them (:func:`_rewrite_remote_only`); a gc
    that then sweeps to the end, keeping no young or damaged object, and read every such
    snapshot, leaves none pending there.
    """
    pending = exclusions.pending_on(vault.path, name)
    unsure = 0
    with connect(vault, load_spec(vault.path, name), passphrase=passphrase) as link:
        if pending and not dry_run:
            _forget_replaced(vault, link, exclusions.read(vault).replaced)
            unsure = _rewrite_remote_only(vault, link)
        report = gc_remote(
            link,
            grace_seconds=grace_seconds,
            dry_run=dry_run,
            scratch_dir=state_dir(vault.path, name),
            progress=progress,
        )
    if pending and not dry_run and not (report.kept_young or report.packs_kept_damaged or unsure):
        report.notes.append(
            f"{exclusions.pruned(vault, name)} forgotten jobs are no longer on remote {name}"
        )
    elif unsure:
        report.notes.append(
            f"remote {name} may still hold {pending} forgotten jobs: {unsure} of its snapshots "
            f"this vault does not hold could not be read or rewritten (`mjvault pull {name}` "
            "takes them without the forgotten jobs, then run this again; `mjvault verify "
            "--remote` shows damage)"
        )
    elif pending:
        report.notes.append(
            f"remote {name} may still hold {pending} forgotten jobs"
            + ("" if dry_run else " (young or damaged objects were kept: run gc again later)")
        )
    return report


def forget_named_remote(
    vault: Vault,
    name: str,
    *,
    passphrase: PassphraseSource = None,
    policy: KeepPolicy | None = None,
    snapshot_ids: Sequence[str] = (),
    dry_run: bool = False,
) -> ForgetSnapshotsReport:
    """``mjvault forget --remote NAME``: :func:`forget_remote` on one of the vault's remotes."""
    with connect(vault, load_spec(vault.path, name), passphrase=passphrase) as link:
        report = forget_remote(
            vault.refs.resolve, link, policy=policy, snapshot_ids=snapshot_ids, dry_run=dry_run
        )
        if not dry_run:
            _unrecord(vault, link, report.forgotten)
        return report


def _unrecord(vault: Vault, link: Link, forgotten: Sequence[str]) -> None:
    """The local record of what the remote holds loses the snapshots just forgotten there,
    so local forget and gc never count on a copy that is gone."""
    gone = [local for local in vault_ids_of(link, forgotten) if local is not None]
    drop_markers(vault.path, link.spec.name, gone)


# -- forget --job, on every remote ---------------------------------------------------------


@dataclass
class RemoteJobForget(Report):
    """What ``forget --job`` did on one remote."""

    name: str
    pushed: bool = False
    forgotten: list[str] = field(default_factory=list)  # the old snapshots' markers removed
    error: str | None = None


def forget_rewritten_on_remotes(
    vault: Vault, rewritten: dict[str, str], *, passphrase: PassphraseSource = None
) -> list[RemoteJobForget]:
    """After ``forget --job``: on every configured remote, push the rewritten snapshots, then
    remove the markers of the old ones the remote holds (their objects go at its next gc).

    A remote that cannot be reached, or whose push is incomplete, keeps its old markers (its
    only copy of those snapshots may be them) and is reported with why.
    """
    results = []
    for spec in list_specs(vault.path):
        result = RemoteJobForget(spec.name)
        results.append(result)
        try:
            with connect(vault, spec, passphrase=passphrase) as link:
                _replace_forgotten(vault, link, rewritten, result)
        except MjvaultError as exc:
            result.error = str(exc)
    return results


def _forget_replaced(vault: Vault, link: Link, replaced: dict[str, str]) -> None:
    """Before a gc of the remote: forget its markers of snapshots the vault rewrote without
    forgotten jobs. Pushed first only when one of them has no rewrite there yet (the remote
    was not reached by ``forget --job``): a push otherwise would bring back snapshots a
    ``forget --remote`` removed on purpose."""

    def remote_of(local: str) -> str | None:
        return link.idmap.remote_of(local) if link.idmap is not None else local

    def latest(local: str) -> str:
        seen = set()
        while local in replaced and local not in seen:
            seen.add(local)
            local = replaced[local]
        return local

    held = link.remote.snapshot_ids()
    olds = [old for old in replaced if remote_of(old) in held]
    if not olds:
        return
    if any(remote_of(latest(old)) not in held for old in olds):
        _replace_forgotten(vault, link, {old: replaced[old] for old in olds})
        return
    report = forget_remote(None, link, snapshot_ids=[r for o in olds if (r := remote_of(o))])
    _unrecord(vault, link, report.forgotten)


def _rewrite_remote_only(vault: Vault, link: Link) -> int:
    """Before a gc of the remote: its snapshots the vault no longer holds (retention let them
    go here, not there) that hold forgotten jobs are rewritten without them as ``forget
    --job`` would, their nodes read from the remote; the rewrites are pushed and the old
    markers forgotten there. The vault keeps none of the rewrites' markers: it had let those
    snapshots go. Returns how many such snapshots could not be read or rewritten (then the
    remote stays pending)."""
    forgotten = exclusions.load(vault)
    if not forgotten:
        return 0
    idmap = link.idmap

    def local_of(remote_id: str) -> str | None:
        return idmap.plain_of(remote_id) if idmap is not None else remote_id

    def back(remote: bytes) -> bytes | None:
        local = local_of(remote.hex())
        return bytes.fromhex(local) if local is not None else None

    def fetched(remote_id: str) -> bytes:
        _, plaintext = link.remote.fetch(remote_id)
        # An encrypting remote's nodes name its own ids: the vault's, as a pull makes them.
        return rewrite_ids(plaintext, back) if idmap is not None else plaintext

    def read(local_id: str) -> bytes:
        if vault.store.exists(local_id):
            return vault.store.read(local_id)
        remote_id = idmap.remote_of(local_id) if idmap is not None else local_id
        if remote_id is None:
            raise ObjectNotFound(f"object {local_id} has no known name on the remote")
        return fetched(remote_id)

    held = set(vault.refs.snapshot_ids())
    unsure = 0
    holding: list[Snapshot] = []
    found: set[str] = set()
    tree = TreeReader(read)
    for remote_id in sorted(link.remote.snapshot_ids()):
        local_id = local_of(remote_id)
        if local_id is not None and local_id in held:
            continue
        try:
            if local_id is None:
                raise ObjectNotFound(f"remote snapshot {remote_id[:12]} has no known local id")
            snapshot = decode_manifest(local_id, fetched(remote_id))
            jobs = forgotten_in(vault, forgotten, tree, [snapshot])
            if jobs:
                holding.append(snapshot)
                found |= jobs
        except (*UNREADABLE, ObjectNotFound):
            unsure += 1
    if not holding:
        return unsure
    with vault.write_lock():
        rewrite = JobRewrite(vault, sorted(found), holding, read)
        rewrite.checkpoint = None  # the writer's checkpoint is no remote's
        rewrite.find()
        report = ForgetJobsReport(jobs=sorted(rewrite.found), dry_run=False)
        try:
            rewrite.publish(report)
            _replace_forgotten(vault, link, report.rewritten)
        except MjvaultError:
            unsure += len(holding)
        finally:
            # A rewrite equal to a snapshot the vault holds (same jobs, time and parent) is
            # that snapshot: its marker stays.
            for new in set(report.rewritten.values()) - held:
                vault.refs.remove_snapshot(new)
    return unsure


def _replace_forgotten(
    vault: Vault, link: Link, rewritten: dict[str, str], result: RemoteJobForget | None = None
) -> None:
    """Push the vault's snapshots (rewrites included), then forget the remote's markers of
    the snapshots they replaced. An incomplete push forgets nothing: the remote's only copy
    of those snapshots may be the old markers."""
    from mjvault.remotes.push import push

    result = result or RemoteJobForget(link.spec.name)
    pushed = push(vault, link)
    if not pushed.ok:
        raise MjvaultError(f"push incomplete: {pushed.problems[0]}")
    result.pushed = True
    held = link.remote.snapshot_ids()
    old = []
    for old_local in rewritten:
        remote_id = link.idmap.remote_of(old_local) if link.idmap is not None else old_local
        if remote_id is not None and remote_id in held:
            old.append(remote_id)
    if old:
        report = forget_remote(None, link, snapshot_ids=old)
        result.forgotten = report.forgotten
        _unrecord(vault, link, report.forgotten)
