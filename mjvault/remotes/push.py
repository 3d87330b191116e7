"""``mjvault push``: copy to a remote exactly the objects it lacks, then publish snapshots.

Order is what keeps a remote readable at every instant, even with a push killed halfway:

1. media and records (any order, concurrently);
2. tree nodes by height — leaves, then their parents, … — each level only after the level
   below has fully arrived;
3. snapshot manifests; 4. snapshot markers.

So whenever the remote holds a tree node it holds the whole subtree below it. Planning uses
that: a subtree whose root the remote already has is skipped without reading it, and a push
after a small change costs about what the change does. Resuming a killed push is the same
operation: the listing shows what arrived and only the rest is sent.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, IntegrityError, ObjectNotFound
from mjvault.remotes.crypto import rewrite_ids
from mjvault.remotes.remote import object_key, snapshot_key
from mjvault.remotes.session import Link
from mjvault.snapshots import decode_manifest
from mjvault.tree import Inner, decode_node
from mjvault.vault import Vault

DEFAULT_THREADS = 8
BLOB, NODE, MANIFEST = "blob", "node", "manifest"
LOCAL_DAMAGE = (ObjectNotFound, CorruptObject, IntegrityError)


@dataclass
class PushReport:
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_skipped: int = 0
    snapshots_sent: int = 0
    snapshots_present: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "objects_sent": self.objects_sent,
            "bytes_sent": self.bytes_sent,
            "objects_skipped": self.objects_skipped,
            "snapshots_sent": self.snapshots_sent,
            "snapshots_present": self.snapshots_present,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Item:
    local_id: str
    remote_id: str
    kind: str
    height: int
    deps: list[str]  # local ids sent in this push that must arrive first
    plaintext: bytes | None = None  # translated node or manifest, ready to seal


@dataclass
class _Plan:
    items: dict[str, _Item] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # local id -> remote id to publish
    skipped: int = 0


ProgressFn = Callable[[int], None]


def push(
    vault: Vault,
    link: Link,
    *,
    threads: int = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    full: bool = False,
) -> PushReport:
    """Send what ``link``'s remote lacks. ``on_plan(objects, bytes)`` is told the work first.

    ``full`` trusts nothing the remote already has but its object listing: every snapshot is
    walked whole, so objects deleted from the remote behind our back are sent again.
    """
    started = time.monotonic()
    report = PushReport()
    link.backend.sweep()
    remote_have = link.remote.object_ids()
    remote_snapshots = link.remote.snapshot_ids()
    planner = _Planner(vault, link, remote_have, report, full=full)
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
        on_plan(len(plan.items), sum(_local_size(vault, i.local_id) for i in plan.items.values()))
    failed = _send(vault, link, plan, threads, report, progress)
    for local_id, remote_id in plan.snapshots.items():
        if local_id in failed:
            continue
        if link.backend.put(snapshot_key(remote_id), b"", create_only=True):
            report.snapshots_sent += 1
        else:
            report.snapshots_present += 1
    report.seconds = time.monotonic() - started
    return report


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
        self, vault: Vault, link: Link, remote_have: set[str], report: PushReport, *, full: bool
    ):
        self.full = full
        self.vault = vault
        self.link = link
        self.remote_have = remote_have
        self.report = report
        self.plan = _Plan()
        self._done: dict[str, tuple[str, int]] = {}  # local id -> (remote id, height)
        self._new_pairs: list[tuple[str, str]] = []

    # -- ids -------------------------------------------------------------------------------
    def _known_remote_id(self, local_id: str) -> str | None:
        if self.link.idmap is None:
            return local_id
        if local_id in self._done:
            return self._done[local_id][0]
        return self.link.idmap.remote_of(local_id)

    def _remember(self, local_id: str, remote_id: str) -> None:
        if self.link.idmap is not None:
            self._new_pairs.append((local_id, remote_id))
            if len(self._new_pairs) >= 2000:
                self.save_map()

    def save_map(self) -> None:
        if self.link.idmap is not None and self._new_pairs:
            self.link.idmap.add(self._new_pairs)
            self._new_pairs = []

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

    def _object(self, local_id: str, kind: str) -> tuple[str, int]:
        """(remote id, height) of ``local_id``, planning its upload and its subtree's."""
        if local_id in self._done:
            return self._done[local_id]
        known = self._known_remote_id(local_id)
        if known is not None and known in self.remote_have and (kind == BLOB or not self.full):
            # Present on the remote, and (by the upload order) so is all it references.
            self.plan.skipped += 1
            self._done[local_id] = (known, -1)
            return known, -1
        result = self._blob(local_id, known) if kind == BLOB else self._container(local_id, kind)
        self._done[local_id] = result
        return result

    def _blob(self, local_id: str, known: str | None) -> tuple[str, int]:
        if self.link.idmap is None:
            if not self.vault.store.exists(local_id):
                raise ObjectNotFound(f"object {local_id} is missing locally")
            remote_id = local_id
        elif known is not None:
            remote_id = known
        else:
            remote_id = self.link.remote.name_of(self.vault.store.read(local_id))
            self._remember(local_id, remote_id)
            if remote_id in self.remote_have:
                self.plan.skipped += 1
                return remote_id, -1
        self.plan.items[local_id] = _Item(local_id, remote_id, BLOB, -1, [])
        return remote_id, -1

    def _container(self, local_id: str, kind: str) -> tuple[str, int]:
        plaintext = self.vault.store.read(local_id)
        children: list[tuple[str, str]] = []  # (local id, kind)
        if kind == MANIFEST:
            snapshot = decode_manifest(local_id, plaintext)
            children.append((snapshot.tree, NODE))
        else:
            node = decode_node(plaintext)
            if isinstance(node, Inner):
                children.extend((child, NODE) for _, child, _ in node.children)
            else:
                for entry in node.entries:
                    children.append((entry.record, BLOB))
                    children.extend((i, BLOB) for i in entry.images if i is not None)
        mapping: dict[bytes, bytes] = {}
        height = 0
        deps = []
        for child, child_kind in children:
            child_remote, child_height = self._object(child, child_kind)
            mapping[bytes.fromhex(child)] = bytes.fromhex(child_remote)
            height = max(height, child_height + 1)
            if child in self.plan.items:
                deps.append(child)
        if kind == MANIFEST:
            height = 1 << 20  # after every node
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
            self.plan.skipped += 1
            return remote_id, -1
        self.plan.items[local_id] = _Item(local_id, remote_id, kind, height, deps, translated)
        return remote_id, height


def _send(
    vault: Vault,
    link: Link,
    plan: _Plan,
    threads: int,
    report: PushReport,
    progress: ProgressFn | None,
) -> set[str]:
    """Upload level by level; returns the local ids that could not be sent (and snapshots)."""
    by_height: dict[int, list[_Item]] = defaultdict(list)
    for item in plan.items.values():
        by_height[item.height].append(item)
    failed: set[str] = set()
    keys = link.remote.keys

    def encode(item: _Item) -> bytes:
        if link.idmap is None:
            data = vault.store.read_file(item.local_id)
            link.remote.open(item.local_id, data)  # never spread local damage to the remote
            return data
        assert keys is not None
        plaintext = item.plaintext
        if plaintext is None:
            plaintext = vault.store.read(item.local_id)
            if link.remote.name_of(plaintext) != item.remote_id:
                raise CorruptObject(f"object {item.local_id} no longer matches its remote id")
        return keys.seal(
            item.remote_id, plaintext, compress=item.kind != BLOB or _compressible(plaintext)
        )

    def send(item: _Item) -> tuple[_Item, int, Exception | None]:
        if any(dep in failed for dep in item.deps):
            return item, 0, IntegrityError("it references an object that could not be sent")
        try:
            data = encode(item)
        except LOCAL_DAMAGE as exc:
            return item, 0, exc
        link.backend.put(object_key(item.remote_id), data)
        return item, len(data), None

    with ThreadPoolExecutor(threads) as pool:
        for height in sorted(by_height):
            # A level starts only when the one below is complete: the remote never holds a
            # node without its subtree, even if this process is killed right here.
            for item, size, error in bounded_map(pool, send, by_height[height], window=threads * 4):
                if error is not None:
                    failed.add(item.local_id)
                    report.problems.append(f"object {item.local_id[:16]} not sent: {error}")
                    continue
                report.objects_sent += 1
                report.bytes_sent += size
                if progress:
                    progress(size)
    for snapshot_id in plan.snapshots:
        manifest = plan.items.get(snapshot_id)
        if snapshot_id in failed or (
            manifest is not None and any(d in failed for d in manifest.deps)
        ):
            failed.add(snapshot_id)
    return failed


def _compressible(plaintext: bytes) -> bool:
    from mjvault.store.codec import media_kind

    return media_kind(plaintext[:16]) is None
