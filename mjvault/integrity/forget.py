"""``mjvault forget``: drop snapshots (by restic-style keep policy or by id), or drop jobs.

Forgetting removes snapshot markers (``refs/snapshots/<id>``); the objects stay until
``mjvault gc`` finds them unreferenced. HEAD's snapshot is never forgotten, nor a snapshot a
checkout view is pinned to.

Forgetting a *job* rewrites every snapshot that holds it as a new snapshot without it (same
time, source and host; ``stats["forgotten"]`` counts jobs removed this way), publishes the new
markers, moves HEAD, removes the old markers, rewrites an unfinished sync's checkpoint, brings
the index up to date and refreshes views, so that gc can then remove the job's record and
images. Copies already pushed to remotes, and files in ``quarantine/``, are not touched.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mjvault import __version__
from mjvault.collections import rewrite_without
from mjvault.errors import (
    CorruptObject,
    IntegrityError,
    JobNotFound,
    MjvaultError,
    ObjectNotFound,
    UsageError,
)
from mjvault.integrity import copies, exclusions
from mjvault.integrity.gc import acquire_lock
from mjvault.reports import Report, json_meta
from mjvault.snapshots import Snapshot, decode_manifest, encode_manifest
from mjvault.store.fsutil import atomic_write
from mjvault.tree import JobEntry, Tree, TreeReader
from mjvault.vault import Vault
from mjvault.views import refresh_views
from mjvault.views.registry import View, ViewRegistry

CHECKPOINT_FILE = "checkpoint"

# -- keep policies -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepPolicy:
    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in self.__dict__.values())


_BUCKETS: list[tuple[str, Callable[[datetime], tuple[int, ...]]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: t.isocalendar()[:2]),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: (t.year,)),
]


@dataclass
class Decision(Report):
    snapshot: Snapshot
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the snapshot's fields are flattened into the decision.
        return {
            "id": self.snapshot.id,
            "time": self.snapshot.time.isoformat(),
            "source": self.snapshot.source,
            "jobs": self.snapshot.stats.get("jobs"),
            "keep": self.keep,
            "reasons": self.reasons,
        }


def apply_policy(
    snapshots: Iterable[Snapshot],
    policy: KeepPolicy,
    *,
    protected: dict[str, str] | None = None,
) -> list[Decision]:
    """Which snapshots a policy keeps, newest first, with the rules that keep each.

    restic's rules: ``last`` keeps the N newest; each period rule walks the snapshots newest
    first and keeps the newest snapshot of each of the N most recent periods (hours, days,
    ISO weeks, months, years, in local time) that have one. A snapshot is kept if any rule or
    ``protected`` (id -> reason, e.g. HEAD) keeps it.
    """
    if policy.empty:
        raise UsageError("no keep policy given (--keep-last, --keep-daily, …)")
    # A snapshot rewritten by `forget --job` keeps its original's time; where both are
    # still listed (a remote's), the rewrite (more jobs forgotten) counts as the newer.
    ordered = sorted(snapshots, key=age_order, reverse=True)
    decisions = [Decision(s) for s in ordered]
    for decision in decisions:
        if protected and decision.snapshot.id in protected:
            decision.reasons.append(protected[decision.snapshot.id])
    if policy.last:
        for decision in decisions[: policy.last]:
            decision.reasons.append("last")
    for name, bucket_of in _BUCKETS:
        wanted = getattr(policy, name)
        if not wanted:
            continue
        seen: set[tuple[int, ...]] = set()
        for decision in decisions:
            bucket = bucket_of(decision.snapshot.time.astimezone())
            if bucket in seen:
                continue
            if len(seen) >= wanted:
                break
            seen.add(bucket)
            decision.reasons.append(name)
    return decisions


def age_order(snapshot: Snapshot) -> tuple[datetime, int, str]:
    forgotten = snapshot.stats.get("forgotten", 0)
    return snapshot.time, forgotten if isinstance(forgotten, int) else 0, snapshot.id


@dataclass
class ForgetSnapshotsReport(Report):
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list, metadata=json_meta(name="snapshots"))
    forgotten: list[str] = field(default_factory=list)
    #: The numcopies guard's finding (None: the vault has no remote to check against).
    guard: copies.CopiesCheck | None = field(default=None, metadata=json_meta(name="copies"))


def protected_snapshots(vault: Vault) -> dict[str, str]:
    """Snapshots that are never forgotten: HEAD, and those a checkout view is pinned to."""
    protected: dict[str, str] = {}
    head = vault.refs.head()
    if head:
        protected[head] = "HEAD"
    for view in _views(vault):
        pinned = view.definition.snapshot
        if pinned:
            with contextlib.suppress(MjvaultError):
                protected.setdefault(vault.refs.resolve(pinned), f"view {view.name}")
    return protected


def forget_snapshots(
    vault: Vault,
    *,
    policy: KeepPolicy | None = None,
    snapshot_ids: Sequence[str] = (),
    dry_run: bool = False,
    wait: float | None = None,
    force: bool = False,
) -> ForgetSnapshotsReport:
    """Remove snapshot markers chosen by ``policy`` or named in ``snapshot_ids``.

    A snapshot named by id is forgotten even if its manifest is unreadable (that is how a
    snapshot that cannot be repaired is let go); a policy needs every manifest readable.
    One that no remote holds is not forgotten unless ``force`` (:mod:`.copies`).
    """
    report = ForgetSnapshotsReport(dry_run=dry_run)
    with acquire_lock(vault, wait, "mjvault forget"):
        protected = protected_snapshots(vault)
        readable, unreadable = _read_snapshots(vault)
        if policy is not None:
            if unreadable:
                raise IntegrityError(
                    f"snapshot {unreadable[0][:12]} cannot be read, so no policy can place it",
                    hint="run `mjvault verify --repair`, or forget it by id",
                )
            report.decisions = apply_policy(readable, policy, protected=protected)
            doomed = [d.snapshot.id for d in report.decisions if not d.keep]
        else:
            named = {vault.refs.resolve(ref) for ref in snapshot_ids}
            for snapshot_id in named:
                if snapshot_id in protected:
                    raise UsageError(
                        f"snapshot {snapshot_id[:12]} is {protected[snapshot_id]}: not forgotten"
                    )
            report.decisions = [
                Decision(s, [] if s.id in named else ["not named"]) for s in readable
            ]
            doomed = sorted(named)
        # An unreadable manifest is no copy to protect: it is lost here whatever forget does.
        found = copies.check(vault, (i for i in doomed if i not in unreadable))
        copies.enforce(vault, found, "forget", force=force, dry_run=dry_run)
        report.guard = found
        for snapshot_id in doomed:
            report.forgotten.append(snapshot_id)
            if not dry_run:
                vault.refs.remove_snapshot(snapshot_id)
    return report


def _read_snapshots(vault: Vault) -> tuple[list[Snapshot], list[str]]:
    readable: list[Snapshot] = []
    unreadable: list[str] = []
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            readable.append(decode_manifest(snapshot_id, vault.store.read(snapshot_id)))
        except (ObjectNotFound, CorruptObject, IntegrityError):
            unreadable.append(snapshot_id)
    return readable, unreadable


# -- forgetting jobs -----------------------------------------------------------------------


@dataclass
class ForgetJobsReport(Report):
    jobs: list[str]
    dry_run: bool
    rewritten: dict[str, str] = field(default_factory=dict)  # old snapshot id -> new id
    head: str | None = None
    checkpoint_rewritten: bool = False
    views_refreshed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # newly on the list of forgotten jobs
    already_forgotten: list[str] = field(default_factory=list)


def forget_jobs(
    vault: Vault,
    job_ids: Sequence[str],
    *,
    dry_run: bool = False,
    wait: float | None = None,
    reason: str = "job",
) -> ForgetJobsReport:
    """Add ``job_ids`` to the list of forgotten jobs (:mod:`.exclusions`), then remove them
    from every snapshot (and checkpoint, index and views).

    The list is written first, under the lock: a forget killed after it leaves the jobs kept
    out of every later sync, import and pull, and running it again finishes the rewrite. A
    job no snapshot holds is an error, on the list or not.
    """
    if not job_ids:
        raise UsageError("no job id given")
    report = ForgetJobsReport(jobs=list(job_ids), dry_run=dry_run)
    with acquire_lock(vault, wait, "mjvault forget --job"):
        listed = exclusions.read(vault)
        already = [j for j in job_ids if j in listed.entries]
        rewrite = JobRewrite(vault, job_ids)
        rewrite.find()
        missing = [j for j in job_ids if j not in rewrite.found]
        if missing and not rewrite.checkpoint_holds:
            raise JobNotFound(
                f"no snapshot holds job {', '.join(missing)}",
                hint="already forgotten: see `mjvault forget --list`"
                if set(missing) <= set(already)
                else None,
            )
        report.already_forgotten = already
        if dry_run:
            report.rewritten = dict.fromkeys(rewrite.holding, "(dry run)")
            report.checkpoint_rewritten = rewrite.checkpoint_holds
            return report
        report.added = exclusions.add(vault, job_ids, reason, rewrite.objects())
        rewrite.publish(report)
        thumbs = forget_thumbnails(vault, rewrite.media_ids())
        forget_vectors(vault, rewrite.media_ids())
        forget_hashes(vault, rewrite.media_ids())
        if report.rewritten or thumbs:
            exclusions.note_rewrite(vault, report.rewritten, thumbs)
        new_head = vault.head()
        vault.sync_index(new_head.tree if new_head else None)
    report.views_refreshed = _refresh_views_after(vault, report)
    return report


class JobRewrite:
    """Snapshots (and the checkpoint) rewritten without some jobs, lock held by the caller."""

    def __init__(
        self,
        vault: Vault,
        job_ids: Iterable[str],
        snapshots: Iterable[Snapshot] | None = None,
        read: Callable[[str], bytes] | None = None,
    ) -> None:
        self.vault = vault
        self.job_ids = list(job_ids)
        self.batch = vault.store.batch()
        # ``read``: where nodes the vault lacks come from (a remote's snapshot it let go).
        self.read = read or self.batch.read
        self.tree = Tree(self.read, self.batch.put)
        self.removal: dict[str, JobEntry | None] = dict.fromkeys(self.job_ids)
        # Oldest first, so a rewritten snapshot's parent can point at its parent's rewrite.
        chosen = vault.snapshots() if snapshots is None else list(snapshots)
        self.snapshots = sorted(chosen, key=lambda s: (s.time, s.id))
        self.holding: dict[str, list[JobEntry]] = {}  # snapshot id -> entries it holds
        self.found: set[str] = set()
        self.checkpoint = _read_checkpoint(vault)
        self.checkpoint_holds = False

    @property
    def gone(self) -> set[str]:
        """The jobs removed: also taken out of the collections of each snapshot rewritten."""
        return set(self.job_ids)

    def find(self) -> None:
        for snapshot in self.snapshots:
            held = [
                e for e in (self.tree.get(snapshot.tree, j) for j in self.job_ids) if e is not None
            ]
            if held:
                self.holding[snapshot.id] = held
                self.found |= {e.job_id for e in held}
        tree = self.checkpoint.get("tree") if self.checkpoint else None
        if isinstance(tree, str):
            held = [e for j in self.job_ids if (e := _tree_get(self.vault, self.tree, tree, j))]
            self.checkpoint_holds = bool(held)
            self._checkpoint_entries = held

    def objects(self) -> set[str]:
        """Records and media of the jobs found: gc overwrites them as it removes them."""
        out: set[str] = set()
        for entries in (*self.holding.values(), getattr(self, "_checkpoint_entries", [])):
            for entry in entries:
                out.add(entry.record)
                out.update(i for i in entry.images if i is not None)
        return out

    def media_ids(self) -> set[str]:
        out: set[str] = set()
        for entries in self.holding.values():
            for entry in entries:
                out.update(i for i in entry.images if i is not None)
        return out

    def publish(self, report: ForgetJobsReport) -> None:
        vault, tree, batch = self.vault, self.tree, self.batch
        new_manifests: list[tuple[Snapshot, str]] = []
        for snapshot in self.snapshots:
            held = self.holding.get(snapshot.id)
            if not held:
                continue
            new_root = tree.apply(snapshot.tree, self.removal)
            stats = dict(snapshot.stats)
            stats["jobs"] = stats.get("jobs", 0) - len(held)
            stats["images"] = stats.get("images", 0) - sum(
                sum(1 for i in e.images if i is not None) for e in held
            )
            stats["forgotten"] = stats.get("forgotten", 0) + len(held)
            parent = snapshot.parent
            manifest = encode_manifest(
                time=snapshot.time,
                tree=new_root,
                parent=report.rewritten.get(parent, parent) if parent else None,
                source=snapshot.source,
                host=snapshot.host or socket.gethostname(),
                tool=snapshot.tool or f"mjvault {__version__}",
                stats=stats,
                collections=rewrite_without(
                    vault, batch, snapshot.collections, self.gone, self.read
                ),
            )
            new_id = batch.put(manifest, loose=True)
            report.rewritten[snapshot.id] = new_id
            new_manifests.append((snapshot, new_id))
        checkpoint = self.checkpoint
        checkpoint_tree = checkpoint.get("tree") if checkpoint else None
        if checkpoint and self.checkpoint_holds:
            assert isinstance(checkpoint_tree, str)
            checkpoint["tree"] = tree.apply(checkpoint_tree, self.removal)
        # Publish in the writer's order: objects durable, new markers, HEAD, then old markers.
        batch.flush()
        for _, new_id in new_manifests:
            vault.refs.add_snapshot(new_id)
        head = vault.refs.head()
        if head in report.rewritten:
            vault.refs.set_head(report.rewritten[head])
        for old, _ in new_manifests:
            vault.refs.remove_snapshot(old.id)
        # Let go on purpose: the job is meant to go, every other job is in the rewrite.
        copies.release(vault.path, (old.id for old, _ in new_manifests))
        if checkpoint:
            base = checkpoint.get("base")
            if isinstance(base, str) and base in report.rewritten:
                checkpoint["base"] = report.rewritten[base]
            if self.checkpoint_holds or checkpoint.get("base") != base:
                atomic_write(vault.refs.dir / CHECKPOINT_FILE, json.dumps(checkpoint).encode())
                report.checkpoint_rewritten = True
        report.head = vault.refs.head()


# A pulled snapshot is searched for forgotten jobs by looking each one up while the list is
# this many times smaller than the snapshot (a lookup reads a path of nodes), else by one walk
# of its leaves asking the tokens (~4 µs a job): bounded either way.
LOOKUPS_PER_WALKED_JOB = 8


def without_forgotten(vault: Vault, fetched: list[Snapshot], remote: str) -> list[Snapshot]:
    """After a pull (lock held, markers added): each fetched snapshot that holds a forgotten
    job is rewritten without it as ``forget --job`` would, and ``remote`` is noted as still
    holding those jobs until its next prune. Returns the snapshots as they now are."""
    forgotten = exclusions.load(vault) if fetched else None
    if not forgotten:
        return fetched
    tree = TreeReader(vault.store.read)
    found = forgotten_in(vault, forgotten, tree, fetched)
    if not found:
        return fetched
    rewrite = JobRewrite(vault, sorted(found), fetched)
    rewrite.checkpoint = None  # a pull never touches a writer's checkpoint
    rewrite.find()
    report = ForgetJobsReport(jobs=sorted(rewrite.found), dry_run=False)
    rewrite.publish(report)
    exclusions.note_pulled(vault, rewrite.found, remote, report.rewritten, rewrite.objects())
    return [
        decode_manifest(new, vault.store.read(new)) if (new := report.rewritten.get(s.id)) else s
        for s in fetched
    ]


def forgotten_in(
    vault: Vault, forgotten: exclusions.Forgotten, tree: TreeReader, snapshots: Iterable[Snapshot]
) -> set[str]:
    """The forgotten jobs ``snapshots`` hold, their nodes read through ``tree``."""
    ids: list[str] | None = None
    found: set[str] = set()
    for snapshot in snapshots:
        jobs = snapshot.stats.get("jobs")
        if isinstance(jobs, int) and len(forgotten) * LOOKUPS_PER_WALKED_JOB <= jobs:
            ids = ids if ids is not None else list(exclusions.read(vault).entries)
            found |= {j for j in ids if tree.get(snapshot.tree, j) is not None}
        else:
            found |= {e.job_id for e in tree.walk(snapshot.tree) if e.job_id in forgotten}
    return found


def forget_thumbnails(vault: Vault, media_ids: Iterable[str]) -> set[str]:
    """Drop the gallery's cached thumbnails of forgotten images; returns the thumbnails'
    object ids, which nothing names now: the next gc removes (and overwrites) them."""
    ids = sorted(media_ids)
    if not ids or not (vault.path / "cache" / "thumbs.sqlite").exists():
        return set()
    from mjvault.find.gallery.thumbs import ThumbCache

    thumbs: set[str] = set()
    with ThumbCache(vault.path) as cache:
        for source in ids:
            for size, thumb in cache.db.execute(
                "SELECT size, thumb FROM thumbs WHERE source = ?", (source,)
            ).fetchall():
                cache.forget(source, size)
                if thumb:
                    thumbs.add(thumb)
        cache.commit()
    return thumbs


def forget_vectors(vault: Vault, media_ids: Iterable[str]) -> None:
    """Drop forgotten images' embeddings (`mjvault embed`): a vector says what an image
    shows, so it goes with the image."""
    from mjvault.similarity.embeddings import forget_embeddings

    forget_embeddings(vault, media_ids)


def forget_hashes(vault: Vault, media_ids: Iterable[str]) -> int:
    """Drop the perceptual hashes of forgotten images (cache/hashes.sqlite, FORMAT §7.3): a
    hash says what a picture looks like, so it goes with the picture. Returns the images
    whose rows went."""
    ids = sorted(media_ids)
    from mjvault.similarity.store import FILE, HashStore

    if not ids or not (vault.path / FILE).exists():
        return 0
    with HashStore.open(vault, writable=True) as store:
        return store.remove(ids)


def _tree_get(vault: Vault, tree: TreeReader, root: str, job_id: str) -> JobEntry | None:
    if not vault.store.exists(root):
        return None
    return tree.get(root, job_id)


def _read_checkpoint(vault: Vault) -> dict[str, Any] | None:
    try:
        doc = json.loads((vault.refs.dir / CHECKPOINT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _views(vault: Vault) -> list[View]:
    registry = ViewRegistry(vault)
    views = []
    for name in registry.names():
        with contextlib.suppress(MjvaultError):
            views.append(registry.load(name))
    return views


def _refresh_views_after(vault: Vault, report: ForgetJobsReport) -> list[str]:
    """Re-pin views pinned to a rewritten snapshot, then refresh every view."""
    registry = ViewRegistry(vault)
    if not registry.names():
        return []
    with registry.lock():
        for view in _views(vault):
            pinned = view.definition.snapshot
            old = next((o for o in report.rewritten if pinned and o.startswith(pinned)), None)
            if old is not None:
                view.definition.snapshot = report.rewritten[old]
                registry.save(view)
                report.notes.append(f"view {view.name} now pinned to {report.rewritten[old][:12]}")
    result = refresh_views(vault)
    for name, error in result.errors.items():
        report.notes.append(f"view {name} could not be refreshed: {error}")
    return [v.view for v in result.views]
