"""``mjvault push``: copy to a remote exactly the objects it lacks, then publish snapshots.

Order is what keeps a remote readable at every instant, even with a push killed halfway:

1. media, loose (concurrently);
2. records and tree nodes in packs built for the remote (docs/FORMAT.md §11.3), filled in the
   order of the tree walk — children before their parents — and uploaded one after another
   (a pack is one atomic PUT, so objects inside one pack arrive together); the media a pack's
   objects name are sent before it;
3. snapshot manifests, loose; 4. snapshot markers.

So whenever the remote holds a tree node it holds the whole subtree below it. Planning uses
that: a subtree whose root the remote already has is skipped without reading it, and a push
after a small change costs about what the change does. Resuming a killed push is the same
operation: the listings (and the trailers of packs the local cache lacks) show what arrived
and only the rest is sent.

Nothing is held per object in memory: the listing of the remote's loose objects and the plan
(what to send, in walk order) are scratch tables on disk (:mod:`.scratch`), and the plan is
sent a batch at a time.

Remote packs name no zstd dictionary: an entry is the object's file exactly as a loose one
would be (a vault entry encoded with the vault's dictionary is re-encoded without it), so a
remote pack is readable with nothing but itself and an encrypting remote never holds the
vault's dictionary (trained on prompts) under any name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from mjvault.collections import decode_list
from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound
from mjvault.remotes import bigobjects
from mjvault.remotes.config import state_dir
from mjvault.remotes.crypto import rewrite_ids
from mjvault.remotes.lease import take_prune_lease, take_push_lease
from mjvault.remotes.packs import REMOTE_PACK_VERSION, pack_key
from mjvault.remotes.record import note_push
from mjvault.remotes.remote import Present, allow_packs, object_key, snapshot_key
from mjvault.remotes.reseal import mark_mixed, note_current, reseal_remote
from mjvault.remotes.scratch import Scratch
from mjvault.remotes.session import Link
from mjvault.reports import Report
from mjvault.snapshots import decode_manifest
from mjvault.store.codec import media_kind
from mjvault.store.packfile import encode_pack, pack_name
from mjvault.tree import Inner, decode_node
from mjvault.vault import Vault

DEFAULT_THREADS = 8
BLOB, RECORD, NODE, MANIFEST = "blob", "record", "node", "manifest"
COLLECTIONS = "collections"  # a collection list: its member chunks are sent as records
LEAF_KINDS = (BLOB, RECORD)
# Bytes of objects per remote pack, and packs built or uploading at once: tens of MB of
# memory at most, and a million records in a few dozen PUTs.
PACK_TARGET_BYTES = 16 * 1024 * 1024
# Planned objects read from the scratch table at a time.
BATCH = 2048
COMMIT_ROWS = 4096
LOCAL_DAMAGE = (ObjectNotFound, CorruptObject, IntegrityError)
# Large objects uploading at once, each streamed in parts: memory stays a few tens of MB
# however many videos a push sends.
BIG_AT_ONCE = 2


@dataclass
class PushReport(Report):
    json_before = ("ok",)

    objects_sent: int = 0
    bytes_sent: int = 0
    #: Packs uploaded (their objects count in ``objects_sent``).
    packs_sent: int = 0
    objects_skipped: int = 0
    snapshots_sent: int = 0
    snapshots_present: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> dict[str, object]:
        """What the push record keeps of it."""
        return {
            "objects_sent": self.objects_sent,
            "bytes_sent": self.bytes_sent,
            "packs_sent": self.packs_sent,
            "snapshots_sent": self.snapshots_sent,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


@dataclass
class _Item:
    local_id: str
    remote_id: str
    kind: str
    deps: list[str]  # local ids sent in this push that must arrive first
    plaintext: bytes | None = None  # translated node or manifest, ready to seal


class _Plan:
    """What to send, on disk (a scratch table), in the order of the tree walk: children
    before their parents. Also every object walked but already on the remote (``planned``
    0), so a subtree two snapshots share is walked once."""

    def __init__(self, scratch: Scratch) -> None:
        self.db = scratch.db
        self.db.execute(
            "CREATE TABLE plan (seq INTEGER PRIMARY KEY, local BLOB NOT NULL UNIQUE,"
            " remote BLOB NOT NULL, kind TEXT NOT NULL, planned INTEGER NOT NULL,"
            " deps BLOB NOT NULL, plaintext BLOB)"
        )
        self.snapshots: dict[str, str] = {}  # local id -> remote id to publish
        self.skipped = 0
        self.rows = 0
        self.count = 0
        self.size = 0

    def get(self, local_id: str) -> tuple[str, bool] | None:
        """(remote id, whether it is sent by this push) of an object already walked."""
        row = self.db.execute(
            "SELECT remote, planned FROM plan WHERE local = ?", (bytes.fromhex(local_id),)
        ).fetchone()
        return None if row is None else (row[0].hex(), bool(row[1]))

    def add(self, item: _Item, *, planned: bool = True) -> None:
        deps = b"".join(bytes.fromhex(d) for d in item.deps)
        self.db.execute(
            "INSERT INTO plan (local, remote, kind, planned, deps, plaintext)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                bytes.fromhex(item.local_id),
                bytes.fromhex(item.remote_id),
                item.kind,
                int(planned),
                deps,
                item.plaintext,
            ),
        )
        if planned:
            self.count += 1
        self.rows += 1
        if self.rows % COMMIT_ROWS == 0:
            self.db.commit()

    def deps_of(self, local_id: str) -> list[str]:
        row = self.db.execute(
            "SELECT deps FROM plan WHERE local = ? AND planned = 1", (bytes.fromhex(local_id),)
        ).fetchone()
        return [] if row is None else _split_ids(row[0])

    def batches(self, *, manifests: bool) -> Iterator[list[_Item]]:
        """The planned objects in walk order, :data:`BATCH` at a time: the manifests alone,
        or every other object."""
        self.db.commit()
        test = "=" if manifests else "!="
        query = (
            "SELECT seq, local, remote, kind, deps, plaintext FROM plan"
            f" WHERE seq > ? AND planned = 1 AND kind {test} ? ORDER BY seq LIMIT {BATCH}"
        )
        last = 0
        while True:
            rows = self.db.execute(query, (last, MANIFEST)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [
                _Item(local.hex(), remote.hex(), kind, _split_ids(deps), plaintext)
                for _, local, remote, kind, deps, plaintext in rows
            ]


def _split_ids(joined: bytes) -> list[str]:
    return [joined[i : i + 32].hex() for i in range(0, len(joined), 32)]


ProgressFn = Callable[[int], None]


def push(
    vault: Vault,
    link: Link,
    *,
    threads: int = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    full: bool = False,
    prune_wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> PushReport:
    """Send what ``link``'s remote lacks. ``on_plan(objects, bytes)`` is told the work first.

    ``full`` trusts nothing the remote already has but its object listing and its packs'
    trailers (all read again): every snapshot is walked whole, so objects deleted from the
    remote behind our back are sent again.

    The push holds a lease on the remote (:mod:`.lease`) from before its listing to after its
    markers; while a prune holds the remote it waits up to ``prune_wait`` seconds
    (``on_wait`` told why), then refuses with :class:`~.lease.RemoteBusy`.
    """
    started = time.monotonic()
    report = PushReport()
    if link.needs_reseal:
        _reseal(vault, link, report, on_wait)
    lease, seen = take_push_lease(link.backend, wait=prune_wait, on_wait=on_wait)
    try:
        _note_object_key(vault, link)
        if seen.prune_interrupted and not full:
            # Its sweep may have left a tree node whose children are gone: trust no subtree.
            report.notes.append(
                "a prune of this remote was cut short: every snapshot was checked whole "
                "(run `mjvault gc --remote` to finish it)"
            )
            full = True
        remote_snapshots, published = _push(vault, link, report, threads, progress, on_plan, full)
    finally:
        lease.release()
    report.seconds = time.monotonic() - started
    # What the remote now holds, for the guard of local forget and gc (and `remote info`).
    note_push(vault.path, link, remote_snapshots, published, report.figures())
    return report


def _reseal(
    vault: Vault, link: Link, report: PushReport, on_wait: Callable[[str], None] | None
) -> None:
    """The remote holds objects under a retired object secret of the vault (after ``key
    rotate``): every one sealed again under the vault's, alone on the remote (a prune's lease:
    no push sends objects meanwhile), before this push sends anything (:mod:`.reseal`)."""
    where = link.spec.name
    if link.openers is None:
        raise MjvaultError(
            f"remote {where} holds objects under a retired key of this vault and no "
            "passphrase was given to seal them again",
            hint="set MJVAULT_PASSPHRASE or pass --passphrase-file FILE, and push again",
        )

    def started(count: int) -> None:
        message = (
            f"remote {where} holds objects under a retired key: sealing them again, {count} objects"
        )
        report.notes.append(message)
        if on_wait:
            on_wait(message)

    lease = take_prune_lease(link.backend)
    try:
        if link.remote.packs is not None:
            link.remote.packs.refresh()
        done = reseal_remote(
            link.backend,
            link.remote,
            link.openers,
            vault.path / "keys",
            state_dir(vault.path, where),
            on_start=started,
        )
    finally:
        lease.leave(cut_short=False)  # a dead prune's lease it broke stays marked
    report.problems.extend(f"not sealed again: {p}" for p in done.problems)
    if not done.problems:
        link.needs_reseal = False
        report.notes.append(
            f"remote {where}: {done.objects} objects sealed again ({done.packs} packs "
            f"read), {len(done.keys_removed)} retired key files removed"
        )


def _note_object_key(vault: Vault, link: Link) -> None:
    """``object-key`` (FORMAT.md §11.2) made true before anything is sent."""
    keys = vault.store.keys
    if keys is None or link.idmap is not None or link.needs_reseal:
        return
    if keys.rotating:
        mark_mixed(link.backend, keys)
    else:
        note_current(link.backend, keys)


def _push(
    vault: Vault,
    link: Link,
    report: PushReport,
    threads: int,
    progress: ProgressFn | None,
    on_plan: Callable[[int, int], None] | None,
    full: bool,
) -> tuple[set[str], list[str]]:
    """Send the plan; the remote's snapshot ids before it, and the local ids now published."""
    link.backend.sweep()
    if link.remote.packs is not None:
        link.remote.packs.refresh(reread=full)
    with Scratch(state_dir(vault.path, link.spec.name)) as scratch:
        remote_have = link.remote.listing(into=scratch.ids("listed"))
        remote_snapshots = link.remote.snapshot_ids()
        planner = _Planner(vault, link, remote_have, _Plan(scratch), report, full=full)
        for snapshot in _local_snapshots_oldest_first(vault, report):
            remote_id = planner.remote_snapshot_id(snapshot)
            if remote_id is not None and remote_id in remote_snapshots and not full:
                report.snapshots_present += 1
                continue
            planner.plan_snapshot(snapshot)
        planner.save_map()
        plan = planner.plan
        report.objects_skipped = plan.skipped
        if on_plan:
            on_plan(plan.count, plan.size)
        failed = _send(vault, link, plan, threads, report, progress)
        published = []
        for local_id, remote_id in plan.snapshots.items():
            if local_id in failed:
                continue
            if link.backend.put(snapshot_key(remote_id), b"", create_only=True):
                report.snapshots_sent += 1
            else:
                report.snapshots_present += 1
            published.append(local_id)
    return remote_snapshots, published


def _local_snapshots_oldest_first(vault: Vault, report: PushReport) -> list[str]:
    found = []
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            found.append(decode_manifest(snapshot_id, vault.store.read(snapshot_id)))
        except LOCAL_DAMAGE as exc:
            report.problems.append(f"snapshot {snapshot_id[:12]} not pushed: {exc}")
    # Oldest first: an encrypting remote translates a parent before its children name it.
    return [s.id for s in sorted(found, key=lambda s: s.time)]


def _local_size(vault: Vault, object_id: str) -> int:
    try:
        return vault.store.stored_size(object_id)
    except (OSError, ObjectNotFound):
        return 0


class _Planner:
    """Walks local snapshots and lists what to send, translating ids for an encrypting remote."""

    def __init__(
        self,
        vault: Vault,
        link: Link,
        remote_have: Present,
        plan: _Plan,
        report: PushReport,
        *,
        full: bool,
    ):
        self.full = full
        self.vault = vault
        self.link = link
        self.remote_have = remote_have
        self.report = report
        self.plan = plan
        self._new_pairs: dict[str, str] = {}  # local id -> remote id, not yet in the id map

    # -- ids -------------------------------------------------------------------------------
    def _known_remote_id(self, local_id: str) -> str | None:
        if self.link.idmap is None:
            return local_id
        found = self._new_pairs.get(local_id)
        return found if found is not None else self.link.idmap.remote_of(local_id)

    def _remember(self, local_id: str, remote_id: str) -> None:
        if self.link.idmap is not None:
            self._new_pairs[local_id] = remote_id
            if len(self._new_pairs) >= 2000:
                self.save_map()

    def save_map(self) -> None:
        if self.link.idmap is not None and self._new_pairs:
            self.link.idmap.add(self._new_pairs.items())
            self._new_pairs = {}

    def remote_snapshot_id(self, snapshot_id: str) -> str | None:
        return self._known_remote_id(snapshot_id)

    # -- walking ---------------------------------------------------------------------------
    def plan_snapshot(self, snapshot_id: str) -> None:
        try:
            remote_id, _ = self._object(snapshot_id, MANIFEST)
        except LOCAL_DAMAGE as exc:
            self.report.problems.append(f"snapshot {snapshot_id[:12]} not pushed: {exc}")
            return
        self.plan.snapshots[snapshot_id] = remote_id

    def _object(self, local_id: str, kind: str) -> tuple[str, bool]:
        """(remote id, whether this push sends it) of ``local_id``, planning its upload and
        its subtree's."""
        walked = self.plan.get(local_id)
        if walked is not None:
            return walked
        known = self._known_remote_id(local_id)
        if (
            known is not None
            and known in self.remote_have
            and (kind in LEAF_KINDS or not self.full)
        ):
            # Present on the remote, and (by the upload order) so is all it references.
            self.plan.skipped += 1
            return known, False
        if kind in LEAF_KINDS:
            return self._blob(local_id, known, kind)
        return self._container(local_id, kind)

    def _blob(self, local_id: str, known: str | None, kind: str) -> tuple[str, bool]:
        if self.link.idmap is None:
            if not self.vault.store.exists(local_id):
                raise ObjectNotFound(f"object {local_id} is missing locally")
            remote_id = local_id
        elif known is not None:
            remote_id = known
        elif bigobjects.big_local_file(self.vault.store.path(local_id)) is not None:
            remote_id = bigobjects.remote_name_of_file(
                self.vault.store.path(local_id), local_id, self.vault.store.keys, self.link.remote
            )
            self._remember(local_id, remote_id)
            if remote_id in self.remote_have:
                self.plan.skipped += 1
                return remote_id, False
        else:
            remote_id = self.link.remote.name_of(self.vault.store.read(local_id))
            self._remember(local_id, remote_id)
            if remote_id in self.remote_have:
                self.plan.skipped += 1
                return remote_id, False
        self._add(_Item(local_id, remote_id, kind, []))
        return remote_id, True

    def _container(self, local_id: str, kind: str) -> tuple[str, bool]:
        plaintext = self.vault.store.read(local_id)
        children: list[tuple[str, str]] = []  # (local id, kind)
        if kind == MANIFEST:
            snapshot = decode_manifest(local_id, plaintext)
            children.append((snapshot.tree, NODE))
            if snapshot.collections is not None:
                children.append((snapshot.collections, COLLECTIONS))
        elif kind == COLLECTIONS:
            for collection in decode_list(local_id, plaintext):
                children.extend((chunk, RECORD) for chunk in collection.chunks)
        else:
            node = decode_node(plaintext)
            if isinstance(node, Inner):
                children.extend((child, NODE) for _, child, _ in node.children)
            else:
                for entry in node.entries:
                    children.append((entry.record, RECORD))
                    children.extend((i, BLOB) for i in entry.images if i is not None)
        mapping: dict[bytes, bytes] = {}
        deps = []
        for child, child_kind in children:
            child_remote, sent = self._object(child, child_kind)
            mapping[bytes.fromhex(child)] = bytes.fromhex(child_remote)
            if sent:
                deps.append(child)
        translated: bytes | None = None
        remote_id = local_id
        if self.link.idmap is not None:
            if kind == MANIFEST:
                parent = decode_manifest(local_id, plaintext).parent
                if parent is not None:
                    parent_remote = self._known_remote_id(parent)
                    if parent_remote is not None:
                        mapping[bytes.fromhex(parent)] = bytes.fromhex(parent_remote)
            translated = rewrite_ids(plaintext, mapping.get)
            remote_id = self.link.remote.name_of(translated)
            self._remember(local_id, remote_id)
        if remote_id in self.remote_have:
            # Remembered as walked, so a subtree two snapshots share is walked once.
            self.plan.skipped += 1
            self.plan.add(_Item(local_id, remote_id, kind, []), planned=False)
            return remote_id, False
        self._add(_Item(local_id, remote_id, kind, deps, translated))
        return remote_id, True

    def _add(self, item: _Item) -> None:
        self.plan.add(item)
        self.plan.size += _local_size(self.vault, item.local_id)


def _send(
    vault: Vault,
    link: Link,
    plan: _Plan,
    threads: int,
    report: PushReport,
    progress: ProgressFn | None,
) -> set[str]:
    """Upload in the order of the module's docstring; returns the local ids that could not be
    sent (and the snapshots that therefore cannot be published).

    The plan is read a batch at a time in walk order (children before parents): a batch's
    media go first, then its records and nodes join the pack being filled. A pack therefore
    goes only once the media its objects name have arrived, and packs go one after another,
    so every child of a packed object is in an earlier pack or its own.
    """
    sender = _Sender(vault, link, threads, report, progress)
    with ThreadPoolExecutor(threads) as pool:
        packer = _Packer(sender, pool)
        for batch in plan.batches(manifests=False):
            sender.send_loose(pool, [i for i in batch if i.kind == BLOB])
            small = [i for i in batch if i.kind != BLOB]
            if small:
                link.info = allow_packs(link.backend, link.info)
                packer.add(small)
        packer.finish()
        for batch in plan.batches(manifests=True):
            sender.send_loose(pool, batch)
    failed = sender.failed
    for snapshot_id in plan.snapshots:
        if snapshot_id in failed or any(d in failed for d in plan.deps_of(snapshot_id)):
            failed.add(snapshot_id)
    return failed


class _Sender:
    def __init__(
        self,
        vault: Vault,
        link: Link,
        threads: int,
        report: PushReport,
        progress: ProgressFn | None,
    ) -> None:
        self.vault = vault
        self.link = link
        self.window = threads * 4
        self.report = report
        self.progress = progress
        self.failed: set[str] = set()
        self.big_slots = threading.Semaphore(BIG_AT_ONCE)

    def send_big(self, item: _Item) -> int | None:
        """Stream a large loose object to the remote, checked on the way; returns the bytes
        sent, or None when the object is not large (it is sent whole)."""
        if item.kind != BLOB:
            return None  # records, nodes and manifests are small (and may be translated)
        path = self.vault.store.path(item.local_id)
        size = bigobjects.big_local_file(path)
        if size is None:
            return None
        with self.big_slots:
            try:
                return bigobjects.upload_big(
                    path,
                    size,
                    item.local_id,
                    item.remote_id,
                    self.vault.store.keys,
                    self.link.remote,
                    translate=self.link.idmap is not None,
                )
            except FileNotFoundError:
                raise ObjectNotFound(f"object {item.local_id} is missing locally") from None

    def encode(self, item: _Item) -> bytes:
        """The object's file as the remote holds it, loose or as a pack entry (no dictionary)."""
        link = self.link
        if link.idmap is None:
            data = self.vault.store.read_file(item.local_id)
            link.remote.open(item.local_id, data)  # never spread local damage to the remote
            return data
        keys = link.remote.keys
        assert keys is not None
        plaintext = item.plaintext
        if plaintext is None:
            plaintext = self.vault.store.read(item.local_id)
            if link.remote.name_of(plaintext) != item.remote_id:
                raise CorruptObject(f"object {item.local_id} no longer matches its remote id")
        return keys.seal(
            item.remote_id, plaintext, compress=item.kind != BLOB or _compressible(plaintext)
        )

    def _encoded(self, item: _Item) -> tuple[_Item, bytes, Exception | None]:
        if any(dep in self.failed for dep in item.deps):
            return item, b"", IntegrityError("it references an object that could not be sent")
        try:
            return item, self.encode(item), None
        except LOCAL_DAMAGE as exc:
            return item, b"", exc

    def _fail(self, item: _Item, error: Exception) -> None:
        self.failed.add(item.local_id)
        self.report.problems.append(f"object {item.local_id[:16]} not sent: {error}")

    def _sent(self, objects: int, size: int) -> None:
        self.report.objects_sent += objects
        self.report.bytes_sent += size
        if self.progress:
            self.progress(size)

    def send_loose(self, pool: ThreadPoolExecutor, items: list[_Item]) -> None:
        def send(item: _Item) -> tuple[_Item, int, Exception | None]:
            if any(dep in self.failed for dep in item.deps):
                return item, 0, IntegrityError("it references an object that could not be sent")
            try:
                sent = self.send_big(item)
            except LOCAL_DAMAGE as exc:
                return item, 0, exc
            if sent is not None:
                return item, sent, None
            item, data, error = self._encoded(item)
            if error is None:
                self.link.backend.put(object_key(item.remote_id), data)
            return item, len(data), error

        for item, size, error in bounded_map(pool, send, items, window=self.window):
            if error is not None:
                self._fail(item, error)
            else:
                self._sent(1, size)

    def _pack_sent(self, upload: Future[tuple[int, int]]) -> None:
        self._sent(*upload.result())
        self.report.packs_sent += 1

    def _put_pack(self, data: bytes, ids: list[bytes]) -> tuple[int, int]:
        name = pack_name(data)
        self.link.backend.put(pack_key(name), data)
        if self.link.remote.packs is not None:
            self.link.remote.packs.uploaded(name, ids)
        return len(ids), len(data)


class _Packer:
    """Fills remote packs of about :data:`PACK_TARGET_BYTES` from items given in walk order,
    and uploads them one after another (the next is filled while one uploads)."""

    def __init__(self, sender: _Sender, pool: ThreadPoolExecutor) -> None:
        self.sender = sender
        self.pool = pool
        self.entries: list[tuple[bytes, bytes]] = []
        self.in_pack: set[bytes] = set()
        self.size = 0
        self.uploading: Future[tuple[int, int]] | None = None

    def add(self, items: list[_Item]) -> None:
        sender = self.sender
        # Local damage is found (and a parent of a damaged object dropped) in walk order,
        # here on one thread, so a parent is never packed once its child has failed.
        for item, data, error in bounded_map(
            self.pool, sender._encoded, items, window=sender.window
        ):
            if error is None and any(dep in sender.failed for dep in item.deps):
                error = IntegrityError("it references an object that could not be sent")
            if error is not None:
                sender._fail(item, error)
                continue
            remote = bytes.fromhex(item.remote_id)
            if remote in self.in_pack:
                continue
            self.entries.append((remote, data))
            self.in_pack.add(remote)
            self.size += len(data)
            if self.size >= PACK_TARGET_BYTES:
                self._upload()

    def _upload(self) -> None:
        # The earlier pack may hold children of this one's objects, so it must have arrived;
        # waiting before encoding also keeps two packs, not three, in memory at once.
        self._wait()
        data, trailer = encode_pack(self.entries, None, REMOTE_PACK_VERSION)
        ids = [e.object_id for e in trailer.entries]
        self.entries, self.in_pack, self.size = [], set(), 0
        self.uploading = self.pool.submit(self.sender._put_pack, data, ids)

    def _wait(self) -> None:
        if self.uploading is not None:
            self.sender._pack_sent(self.uploading)
            self.uploading = None

    def finish(self) -> None:
        if self.entries:
            self._upload()
        self._wait()


def _compressible(plaintext: bytes) -> bool:
    return media_kind(plaintext[:16]) is None
