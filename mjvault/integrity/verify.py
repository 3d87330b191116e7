"""``mjvault verify``: is every snapshot whole, and is every object what its name says?

The structural pass reads refs, manifests and tree nodes (each distinct node once, so shared
subtrees cost nothing extra) and checks that every object they name exists, loose or packed,
and that every pack's trailer is sound; it takes seconds because it reads no image.
``read_data`` then re-hashes loose object files and packs, pack by pack
(:mod:`mjvault.integrity.packcheck`) — all of them or a subset — decrypting and checking the
AEAD tag in encrypted vaults.

Memory: the walk's stack (each tree is walked beside the one before it, not against a set
of every node walked), one run of the records' external sort
(:mod:`mjvault.integrity.sortedids`), two packs' trailers, and the problems found; objects
are streamed.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound, UsageError
from mjvault.integrity.packcheck import PackCheck, check_pack
from mjvault.integrity.problems import Problem
from mjvault.integrity.sortedids import SortedIds
from mjvault.integrity.viewcheck import verify_views
from mjvault.reports import Report
from mjvault.snapshots import Snapshot, decode_manifest
from mjvault.tree import Inner, StoredEntry, decode_stored, walk_nodes
from mjvault.vault import Vault

READ_THREADS = 4
# Packs checked at once. Each reading thread holds a pack's trailer (~20 MB of Python
# tuples for a full pack) and its per-entry work holds the GIL, so past two (this machine's
# cores, one of them shared with the structural pass) threads cost memory, not time: at a
# million jobs 4 peaked at 140 MB and 2 at 100 MB, in the same wall time.
PACK_THREADS = 2
# Image ids remembered as found (see _Present): ~70 bytes each, ~5 MB at most.
PRESENT_MAX = 1 << 16


@dataclass
class VerifyReport(Report):
    json_before = ("ok",)

    snapshots: int = 0
    tree_nodes: int = 0
    jobs_checked: int = 0
    objects_referenced: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    packs: int = 0
    seconds: float = 0.0
    subset: str | None = None
    views: dict[str, object] | None = None  # what `views=True` checked
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


SubsetFilter = Callable[[str], bool]


def parse_subset(spec: str) -> tuple[str, SubsetFilter]:
    """``5%`` (a random sample each run) or ``n/m`` (part n of m fixed parts: all m cover all)."""
    spec = spec.strip()
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)%", spec):
        share = float(match.group(1)) / 100
        if not 0 < share <= 1:
            raise UsageError("--read-data-subset percentage must be in (0, 100]")
        rng = random.Random()
        return spec, lambda _oid: rng.random() < share
    if match := re.fullmatch(r"(\d+)/(\d+)", spec):
        part, parts = int(match.group(1)), int(match.group(2))
        if not 1 <= part <= parts:
            raise UsageError("--read-data-subset n/m needs 1 <= n <= m")
        return spec, lambda oid: int(oid[:8], 16) % parts == part - 1
    raise UsageError("--read-data-subset takes a percentage (5%) or a part (n/m)")


def verify(
    vault: Vault,
    *,
    read_data: bool = False,
    subset: str | None = None,
    views: bool = False,
    on_object: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check structure (always), object data (``read_data``/``subset``), view files (``views``)."""
    started = time.monotonic()
    report = VerifyReport()
    chooser: SubsetFilter | None = None
    if subset:
        report.subset, chooser = parse_subset(subset)
    reading = bool(read_data or subset)
    vault.store.packs.reconcile()  # the map knows every pack on disk: packed objects are present
    snapshots = _check_refs(vault, report)
    # Packs are checked on their own threads while this one walks the trees: hashing and
    # decompressing let go of the GIL, so the two passes overlap on a second core.
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="mjvault-verify-packs") as background:
        packs = background.submit(_check_packs, vault, reading, chooser, on_object, stop)
        try:
            _check_trees(vault, snapshots, report)
            _check_collections(vault, snapshots, report)
            _check_index(vault, snapshots, report)
            if reading:
                _read_loose(vault, report, chooser, on_object)
            packed = packs.result()
        except BaseException:
            stop.set()  # an interrupt or a failure: the packs in flight finish, no more start
            raise
    _report_packs(vault, report, packed)
    if views:
        checked = verify_views(vault)
        report.views = checked.to_json()
        report.problems.extend(checked.problems)
    report.seconds = time.monotonic() - started
    return report


def _check_refs(vault: Vault, report: VerifyReport) -> list[Snapshot]:
    snapshots: list[Snapshot] = []
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            snapshots.append(decode_manifest(snapshot_id, vault.store.read(snapshot_id)))
        except ObjectNotFound:
            report.problems.append(
                Problem(
                    "missing", "snapshot manifest is missing", snapshot_id, snapshots=[snapshot_id]
                )
            )
        except (CorruptObject, IntegrityError) as exc:
            report.problems.append(
                Problem("corrupt", str(exc), snapshot_id, snapshots=[snapshot_id])
            )
    report.snapshots = len(snapshots)
    try:
        head = vault.refs.head()
    except IntegrityError as exc:
        report.problems.append(Problem("ref", str(exc)))
        return snapshots
    if head is not None and head not in vault.refs.snapshot_ids():
        report.problems.append(
            Problem("ref", "refs/HEAD names a snapshot that is not listed", head)
        )
    return snapshots


def _check_trees(vault: Vault, snapshots: list[Snapshot], report: VerifyReport) -> None:
    """Walk every snapshot's tree: each distinct node read once, the images its leaves name
    looked for as the walk goes, their records gathered and looked for after it, in key
    order (:mod:`mjvault.integrity.sortedids`). Only when a record is missing are the trees
    walked a second time, to name its jobs and snapshots."""
    records = SortedIds()
    present = _Present()
    walk = _Walk(vault, snapshots, report.problems)
    for snapshot_id, entries in walk.leaves():
        report.jobs_checked += len(entries)
        report.objects_referenced += len(entries)
        _check_images(vault, entries, snapshot_id, report, present)
        add = records.add
        for _, record, _ in entries:
            add(record)
    report.tree_nodes = walk.nodes
    missing = set(vault.store.missing_in_order(records.drain()))
    if not missing:
        return
    for snapshot_id, entries in _Walk(vault, snapshots, None).leaves():
        for job_id, record, _ in entries:
            if record.hex() in missing:
                _missing(report, "record", record, job_id, snapshot_id)


def _check_collections(vault: Vault, snapshots: list[Snapshot], report: VerifyReport) -> None:
    """Each collection list a snapshot names, and its member chunks, can be read (each
    distinct object once: snapshots share them)."""
    from mjvault.collections import decode_chunk, decode_list

    seen: set[str] = set()
    for snapshot in snapshots:
        list_id = snapshot.collections
        if list_id is None or list_id in seen:
            continue
        seen.add(list_id)
        try:
            chunks = [
                c for col in decode_list(list_id, vault.store.read(list_id)) for c in col.chunks
            ]
        except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
            kind = "missing" if isinstance(exc, ObjectNotFound) else "corrupt"
            report.problems.append(
                Problem(kind, f"collection list: {exc}", list_id, snapshots=[snapshot.id])
            )
            continue
        for chunk in chunks:
            if chunk in seen:
                continue
            seen.add(chunk)
            try:
                decode_chunk(chunk, vault.store.read(chunk))
            except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
                kind = "missing" if isinstance(exc, ObjectNotFound) else "corrupt"
                report.problems.append(
                    Problem(kind, f"collection members: {exc}", chunk, snapshots=[snapshot.id])
                )


class _Walk:
    """The leaves of every snapshot's tree, in a fixed order (so a second walk meets each
    leaf under the same snapshot as the first), their entries as stored
    (:func:`decode_stored`). A node that is missing or damaged is a problem in ``problems``
    (None: not reported again).

    Snapshots go oldest first, each tree walked beside the one before it: where that tree
    holds the same node at the same place, the subtree is skipped, since it was walked
    there (or skipped for the same reason, down to where it was walked). Memory is the
    walk's stack; a set of every node walked, as before, grew with the vault (~150 B a node,
    a node per ~14 jobs: 10 MB at a million jobs)."""

    def __init__(
        self, vault: Vault, snapshots: list[Snapshot], problems: list[Problem] | None
    ) -> None:
        self.vault = vault
        self.snapshots = sorted(snapshots, key=_oldest_first)
        self.problems = problems
        self.nodes = 0

    def leaves(self) -> Iterator[tuple[str, list[StoredEntry]]]:
        before_root: str | None = None
        for snapshot in self.snapshots:

            def damaged(node_id: str, exc: Exception, snapshot_id: str = snapshot.id) -> None:
                self.nodes += 1
                if isinstance(exc, ObjectNotFound):
                    self._problem("missing", "tree node is missing", node_id, snapshot_id)
                else:
                    self._problem("corrupt", str(exc), node_id, snapshot_id)

            for _, node in walk_nodes(
                self.vault.store.read,
                snapshot.tree,
                decode=decode_stored,
                beside=before_root,
                on_error=damaged,
            ):
                self.nodes += 1
                if not isinstance(node, Inner):
                    yield snapshot.id, node
            before_root = snapshot.tree

    def _problem(self, kind: str, message: str, node_id: str, snapshot_id: str) -> None:
        if self.problems is not None:
            self.problems.append(Problem(kind, message, node_id, snapshots=[snapshot_id]))


def _oldest_first(snapshot: Snapshot) -> tuple[datetime, str]:
    """A manifest's time without an offset is read as UTC (naive and aware times do not
    compare: one such manifest would stop the whole check)."""
    moment = snapshot.time
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)), snapshot.id


class _Present:
    """Image ids already found loose in this run, so an image many jobs share is looked for
    once. Bounded: emptied when full (:data:`PRESENT_MAX`)."""

    def __init__(self) -> None:
        self.ids: set[bytes] = set()

    def add(self, object_ids: set[bytes]) -> None:
        if len(self.ids) + len(object_ids) > PRESENT_MAX:
            self.ids.clear()
        self.ids.update(object_ids)


def _check_images(
    vault: Vault,
    entries: list[StoredEntry],
    snapshot_id: str,
    report: VerifyReport,
    present: _Present,
) -> None:
    """Every image the leaf's jobs refer to exists, looked for loose first (where they are
    kept) unless found already in this run."""
    referenced = [image for _, _, images in entries for image in images if image is not None]
    report.objects_referenced += len(referenced)
    unknown = set(referenced).difference(present.ids)
    if not unknown:
        return
    missing = set(vault.store.missing(sorted(oid.hex() for oid in unknown), packed_first=False))
    present.add({oid for oid in unknown if oid.hex() not in missing})
    if not missing:
        return
    for job_id, _, images in entries:
        for i, image in enumerate(images):
            if image is not None and image.hex() in missing:
                _missing(report, f"image {i}", image, job_id, snapshot_id)


def _missing(
    report: VerifyReport, what: str, object_id: bytes, job_id: str, snapshot_id: str
) -> None:
    """A job's object that neither a pack nor a loose file holds, named with its job."""
    report.problems.append(
        Problem(
            "missing",
            f"{what} of job {job_id} is missing",
            object_id.hex(),
            jobs=[job_id],
            snapshots=[snapshot_id],
        )
    )


def _merely_behind(vault: Vault, indexed: str | None) -> bool:
    """An index with no damage that lags: of an older format or empty (no tree), or at a tree
    of the vault. One found damaged (and discarded) or naming a tree the vault lacks is not."""
    return not vault.index_discarded and (indexed is None or vault.store.exists(indexed))


def _check_index(vault: Vault, snapshots: list[Snapshot], report: VerifyReport) -> None:
    head_id = None
    try:
        head_id = vault.refs.head()
    except IntegrityError:
        return
    head = next((s for s in snapshots if s.id == head_id), None)
    if head is None:
        return
    try:
        index = vault.open_index()
        indexed = index.indexed_tree()
        if indexed != head.tree and _merely_behind(vault, indexed):
            # Behind HEAD, or of an older format (FORMAT §9: rebuilt when the vault opens it):
            # a cache to catch up, not damage. Caught up here under the write lock; a writer
            # holding it keeps the index current itself and it is left as it is.
            index = vault.current_index()
        indexed = index.indexed_tree()
        count = index.job_count()
    except MjvaultError as exc:
        report.problems.append(Problem("index", f"{exc} (run `mjvault index rebuild`)"))
        return
    except Exception as exc:  # a damaged LMDB file can fail in many ways; all mean "rebuild"
        report.problems.append(
            Problem("index", f"the index is damaged: {exc} (run `mjvault index rebuild`)")
        )
        return
    expected = head.stats.get("jobs")
    if indexed is not None and indexed != head.tree and indexed == _checkpoint_tree(vault):
        return  # an unfinished writer's checkpoint: the index follows it, as documented
    if indexed != head.tree and _merely_behind(vault, indexed):
        return  # still behind: a writer is at work and brings it to HEAD itself
    if indexed != head.tree:
        report.problems.append(
            Problem("index", "the index does not match HEAD (run `mjvault index rebuild`)")
        )
    elif expected is not None and count != expected:
        report.problems.append(
            Problem(
                "index",
                f"the index holds {count} jobs, HEAD {expected} (run `mjvault index rebuild`)",
            )
        )


def _checkpoint_tree(vault: Vault) -> str | None:
    from mjvault.integrity.reachability import checkpoint_tree

    return checkpoint_tree(vault)


def _read_loose(
    vault: Vault,
    report: VerifyReport,
    chooser: SubsetFilter | None,
    on_object: Callable[[int], None] | None,
) -> None:
    ids = (oid for oid in vault.store.iter_loose_ids() if chooser is None or chooser(oid))

    def check(object_id: str) -> tuple[str, int, Exception | None]:
        try:
            return object_id, vault.store.check(object_id), None
        except (CorruptObject, ObjectNotFound) as exc:
            return object_id, 0, exc

    damaged: list[tuple[str, Exception]] = []
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for object_id, size, error in bounded_map(pool, check, ids):
            report.objects_read += 1
            report.bytes_read += size
            if error is not None:
                damaged.append((object_id, error))
            if on_object:
                on_object(size)
    for object_id, error in damaged:
        jobs = _jobs_using(vault, object_id)
        report.problems.append(Problem("corrupt", str(error), object_id, jobs=jobs))


@dataclass
class _PackPass:
    """What the pass over packs found: totals, and only the packs with damage."""

    packs: int = 0
    objects: int = 0
    bytes: int = 0
    damaged: list[PackCheck] = field(default_factory=list)


def _check_packs(
    vault: Vault,
    read_data: bool,
    chooser: SubsetFilter | None,
    on_object: Callable[[int], None] | None,
    stop: threading.Event,
) -> _PackPass:
    """Every pack's trailer; with ``read_data`` its name and entries. Packs are checked
    concurrently, each read front to back by one thread."""
    store = vault.store

    def check(name: str) -> PackCheck:
        return check_pack(store, name, read_data=read_data, chooser=chooser)

    names = (name for name in store.packs.names() if not stop.is_set())
    found = _PackPass()
    with ThreadPoolExecutor(PACK_THREADS) as pool:
        for checked in bounded_map(pool, check, names, window=2 * PACK_THREADS):
            found.packs += 1
            found.objects += checked.objects
            found.bytes += checked.bytes
            if on_object and checked.bytes:
                on_object(checked.bytes)
            if checked.damaged or checked.dictionary_problem or checked.bad_entries:
                found.damaged.append(checked)
    return found


def _report_packs(vault: Vault, report: VerifyReport, found: _PackPass) -> None:
    report.packs += found.packs
    report.objects_read += found.objects
    report.bytes_read += found.bytes
    # A damaged tree node is already a problem of the structural pass: its entry is named
    # there, not reported twice.
    reported = {p.object_id: p for p in report.problems if p.kind == "corrupt" and p.object_id}
    dictionaries: set[str] = set()
    for checked in found.damaged:
        if checked.damaged is not None:
            report.problems.append(Problem("corrupt", checked.damaged, pack=checked.name))
        if checked.dictionary_problem is not None:
            kind, dictionary, why = checked.dictionary_problem
            if dictionary not in dictionaries and dictionary not in reported:
                dictionaries.add(dictionary)
                report.problems.append(Problem(kind, why, dictionary))
        for object_id, why in checked.bad_entries:
            known = reported.get(object_id)
            if known is not None:
                known.pack = checked.name
                continue
            jobs = _jobs_using(vault, object_id)
            report.problems.append(Problem("corrupt", why, object_id, jobs=jobs, pack=checked.name))


def _jobs_using(vault: Vault, object_id: str) -> list[str]:
    """Which jobs (of HEAD, via the index) refer to ``object_id``; used only for damaged objects."""
    try:
        index = vault.open_index()
        jobs = set(index.jobs_with_image(object_id))
        if not jobs:
            jobs = {s.job_id for s in index.iter_summaries() if s.record == object_id}
        return sorted(jobs)
    except Exception:
        return []
