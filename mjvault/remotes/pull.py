"""``mjvault pull``: fetch the snapshots a remote has and the vault lacks, checked on arrival.

The reverse of push, with the same guarantee locally: objects are staged through the store's
write batch (durable before visible), snapshot markers are added only once everything they
reference is in the vault, and a pull that is killed resumes by skipping what arrived. Every
fetched object is checked against its name (and AEAD tag) before it is kept; for an
encrypting remote, nodes and manifests are translated back to the vault's plain ids, which
gives back byte-identical objects and therefore the same tree and snapshot ids.

HEAD moves like a fast-forward: to the newest fetched snapshot when the vault has none or
when the current HEAD is among its ancestors; otherwise the vault keeps its HEAD and the
report says the histories diverged (both sets of snapshots are kept).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from mjvault.collections import decode_chunk, decode_list
from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject, IntegrityError
from mjvault.integrity.forget import without_forgotten
from mjvault.remotes import bigobjects
from mjvault.remotes.backend import REMOTE_DAMAGE
from mjvault.remotes.config import state_dir
from mjvault.remotes.crypto import rewrite_ids
from mjvault.remotes.record import note_markers, vault_ids_of
from mjvault.remotes.scratch import Scratch
from mjvault.remotes.session import Link
from mjvault.reports import Report, json_meta
from mjvault.snapshots import Snapshot, decode_manifest
from mjvault.store.objects import WriteBatch
from mjvault.tree import Inner, decode_node
from mjvault.vault import Vault

DEFAULT_THREADS = 8
# Loose media and packed records and nodes alike: a flush publishes one local pack of what
# arrived, so flushing seldom keeps packs large (a pack also goes out whenever it is full).
FLUSH_OBJECTS = 20000
FLUSH_BYTES = 256 * 1024 * 1024
# Records and nodes wait in the vault's pack builder as plaintext until a flush. A
# million-job tree has fewer nodes (~20 KB each) than FLUSH_OBJECTS: without this bound the
# whole tree would wait, up to the builder's own 48 MB.
FLUSH_PACKED_BYTES = 16 * 1024 * 1024
# Nodes and blobs read from the scratch tables at a time.
BATCH = 2048


@dataclass
class PullReport(Report):
    json_before = ("ok",)

    objects_received: int = 0
    bytes_received: int = 0
    snapshots_received: int = 0
    head: str | None = None
    head_moved: bool = False
    diverged: bool = False
    jobs_indexed: int = field(default=0, metadata=json_meta(omit=True))
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


ProgressFn = Callable[[int], None]


class _Fetched(NamedTuple):
    remote_id: str
    data: bytes
    plaintext: bytes
    error: Exception | None
    #: A large object, checked and written to a temp file in the vault instead of ``data``.
    spooled: bigobjects.Spooled | None = None


def _safe_fetch(link: Link, remote_id: str) -> _Fetched:
    try:
        data, plaintext = link.remote.fetch(remote_id)
        return _Fetched(remote_id, data, plaintext, None)
    except REMOTE_DAMAGE as exc:
        return _Fetched(remote_id, b"", b"", exc)


def _fetch_media(vault: Vault, link: Link, remote_id: str) -> _Fetched:
    """A loose image or video: whole when small, else streamed into the vault's ``tmp/`` and
    checked on the way (never whole in memory)."""
    if link.remote.packed(remote_id):
        return _safe_fetch(link, remote_id)
    try:
        spool = bigobjects.download(
            link.remote, remote_id, vault.store.tmp_dir, plain=link.idmap is not None
        )
        if not spool.spilled:
            data = spool.held()
            return _Fetched(remote_id, data, link.remote.open(remote_id, data), None)
        return _Fetched(remote_id, b"", b"", None, spool.finish())
    except REMOTE_DAMAGE as exc:
        return _Fetched(remote_id, b"", b"", exc)


def _current(link: Link, remote_id: str, data: bytes) -> bytes:
    """An encrypted vault's object file as the vault keeps it: sealed under its current key,
    when the remote still held it under a retired one (a remote half sealed again after a
    rotation, :mod:`.reseal`)."""
    keys = link.remote.keys
    if keys is None or not keys.rotating:
        return data
    fresh = keys.reseal(remote_id, data)
    return data if fresh is None else fresh


class _Fetcher:
    def __init__(
        self,
        vault: Vault,
        link: Link,
        pool: ThreadPoolExecutor,
        threads: int,
        report: PullReport,
        progress: ProgressFn | None,
    ) -> None:
        self.vault = vault
        self.link = link
        self.pool = pool
        self.window = threads * 4
        self.report = report
        self.progress = progress
        self.batch: WriteBatch = vault.store.batch()
        self.pairs: list[tuple[str, str]] = []
        self.local_of: dict[str, str] = {}  # remote id -> local id, since the last flush
        self.packed_bytes = 0  # plaintext of records and nodes staged since the last flush

    # -- ids -------------------------------------------------------------------------------
    def local_id(self, remote_id: str) -> str | None:
        """The local id of a remote object when the vault already has it, else None."""
        if self.link.idmap is None:
            return remote_id if self.batch.has(remote_id) else None
        local = self.local_of.get(remote_id) or self.link.idmap.plain_of(remote_id)
        return local if local is not None and self.batch.has(local) else None

    # -- keeping ---------------------------------------------------------------------------
    def keep(
        self, remote_id: str, data: bytes, plaintext: bytes, *, compress: bool, loose: bool = False
    ) -> str:
        """Stage a fetched object in the vault; returns its local id. Records and tree nodes
        go into the vault's packs whether the remote held them loose or packed."""
        if compress:
            local = self.batch.put(plaintext, loose=loose)
            self.packed_bytes += 0 if loose else len(plaintext)
        elif self.link.idmap is None:
            self.batch.put_checked_file(remote_id, _current(self.link, remote_id, data))
            local = remote_id
        else:
            local, _ = self.batch.put_media(plaintext)
        if self.link.idmap is None and local != remote_id:
            raise CorruptObject(f"remote object {remote_id} does not match its name (damaged)")
        if self.link.idmap is not None:
            self.local_of[remote_id] = local
            self.pairs.append((local, remote_id))
        if (
            len(self.batch) >= FLUSH_OBJECTS
            or self.batch.pending_bytes >= FLUSH_BYTES
            or self.packed_bytes >= FLUSH_PACKED_BYTES
        ):
            self.flush()
        return local

    def keep_spooled(self, remote_id: str, spooled: bigobjects.Spooled) -> None:
        """Stage a large object the download wrote to the vault's ``tmp/``, checked already."""
        keys = self.link.remote.keys
        if self.link.idmap is None and keys is not None and keys.rotating:
            # Fetched from a remote not yet sealed again after a rotation (reseal.py).
            from mjvault.integrity.rotate import _reseal_file

            tmp, _ = _reseal_file(keys, remote_id, spooled.path, self.vault.store.tmp_dir)
            if tmp is not None:
                os.replace(tmp, spooled.path)
        self.batch.adopt_file(spooled.local_id, spooled.path)
        if self.link.idmap is not None:
            self.local_of[remote_id] = spooled.local_id
            self.pairs.append((spooled.local_id, remote_id))
        if len(self.batch) >= FLUSH_OBJECTS or self.batch.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        self.batch.flush()
        self.packed_bytes = 0
        if self.link.idmap is not None and self.pairs:
            self.link.idmap.add(self.pairs)
            self.pairs = []
        self.local_of = {}  # the id map and the store answer for what was flushed

    def translate(self, plaintext: bytes) -> bytes:
        """A fetched node or manifest with remote ids replaced by the vault's."""

        def back(remote: bytes) -> bytes | None:
            local = self.local_id(remote.hex())
            return bytes.fromhex(local) if local is not None else None

        return rewrite_ids(plaintext, back)


def pull(
    vault: Vault,
    link: Link,
    *,
    threads: int = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    update_index: bool = True,
) -> PullReport:
    started = time.monotonic()
    report = PullReport()
    with vault.write_lock(), ThreadPoolExecutor(threads) as pool:
        fetcher = _Fetcher(vault, link, pool, threads, report, progress)
        local_snapshots = set(vault.refs.snapshot_ids())
        markers = link.remote.snapshot_ids()
        wanted = sorted(r for r in markers if fetcher.local_id(r) not in local_snapshots)
        manifests: dict[str, tuple[bytes, bytes, Snapshot]] = {}
        for remote_id in wanted:
            try:
                data, plaintext = link.remote.fetch(remote_id)
                report.objects_received += 1
                report.bytes_received += len(data)
                manifests[remote_id] = (data, plaintext, decode_manifest(remote_id, plaintext))
            except REMOTE_DAMAGE as exc:
                report.problems.append(f"snapshot {remote_id[:12]} not pulled: {exc}")
        with Scratch(state_dir(vault.path, link.spec.name)) as scratch:
            # An encrypted vault keeps no node plaintext (job ids) in its scratch file.
            nodes = _Nodes(scratch, link.remote.open if vault.store.keys is not None else None)
            _fetch_nodes(fetcher, nodes, [m[2].tree for m in manifests.values()], report)
            broken = _fetch_blobs(fetcher, nodes, report)
            _keep_nodes(fetcher, nodes, broken)
            fetched: list[Snapshot] = []
            for remote_id, (data, plaintext, snapshot) in sorted(
                manifests.items(), key=lambda item: item[1][2].time
            ):
                try:
                    if not nodes.kept(snapshot.tree, fetcher):
                        raise IntegrityError("part of its tree is missing or damaged on the remote")
                    if snapshot.collections is not None:
                        _fetch_collections(fetcher, snapshot.collections, report)
                    if link.idmap is not None:
                        plaintext = fetcher.translate(plaintext)
                    local = fetcher.keep(remote_id, data, plaintext, compress=True, loose=True)
                except REMOTE_DAMAGE as exc:
                    report.problems.append(f"snapshot {remote_id[:12]} not pulled: {exc}")
                    continue
                fetched.append(decode_manifest(local, fetcher.batch.read(local)))
        fetcher.flush()
        for snapshot in fetched:
            vault.refs.add_snapshot(snapshot.id)
        # The listing is at hand: refresh what the guard of forget and gc knows of the remote.
        note_markers(vault.path, link.spec.name, link.info.id, vault_ids_of(link, markers))
        # Taken without the jobs on the list of forgotten jobs, as `forget --job` would.
        fetched = without_forgotten(vault, fetched, link.spec.name)
        report.snapshots_received = len(fetched)
        _move_head(vault, fetched, report)
        if update_index and report.head is not None:
            head = vault.snapshot(report.head)
            report.jobs_indexed = vault.sync_index(head.tree)
    report.seconds = time.monotonic() - started
    return report


def _fetch_collections(fetcher: _Fetcher, remote_list: str, report: PullReport) -> None:
    """A fetched snapshot's collection list and member chunks, chunks first (a list present
    means its chunks are), before its manifest is kept."""
    if fetcher.local_id(remote_list) is not None:
        return
    data, plaintext = fetcher.link.remote.fetch(remote_list)
    report.objects_received += 1
    report.bytes_received += len(data)
    for collection in decode_list(remote_list, plaintext):
        for chunk in collection.chunks:
            if fetcher.local_id(chunk) is None:
                chunk_data, chunk_plain = fetcher.link.remote.fetch(chunk)
                report.objects_received += 1
                report.bytes_received += len(chunk_data)
                decode_chunk(chunk, chunk_plain)
                fetcher.keep(chunk, chunk_data, chunk_plain, compress=True)
    if fetcher.link.idmap is not None:
        plaintext = fetcher.translate(plaintext)
    fetcher.keep(remote_list, data, plaintext, compress=True)


# Node states in the scratch table.
WANTED, MISSING, FETCHED, KEPT, INCOMPLETE = 0, 1, 2, 3, 4


class _Nodes:
    """The tree nodes a pull fetches and the blobs their leaves name, in scratch tables on
    disk: nothing is held per node or per image in memory."""

    def __init__(
        self, scratch: Scratch, reopen: Callable[[str, bytes], bytes] | None = None
    ) -> None:
        """``reopen``: keep only a node's file and open it again when it is kept (the
        scratch file lies in the vault, and a node's plaintext names jobs)."""
        self.db = scratch.db
        self._reopen = reopen
        self.db.execute(
            "CREATE TABLE nodes (id BLOB PRIMARY KEY, level INTEGER NOT NULL,"
            " state INTEGER NOT NULL, data BLOB, plaintext BLOB)"
        )
        self.db.execute("CREATE INDEX nodes_level ON nodes (level, id)")
        self.db.execute(
            "CREATE TABLE blobs (id BLOB PRIMARY KEY, record INTEGER NOT NULL) WITHOUT ROWID"
        )

    def want(self, remote_id: str, level: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO nodes (id, level, state) VALUES (?, ?, ?)",
            (bytes.fromhex(remote_id), level, WANTED),
        )

    def want_blob(self, remote_id: str, record: bool) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO blobs VALUES (?, ?)", (bytes.fromhex(remote_id), int(record))
        )

    def has(self, remote_id: str) -> bool:
        return self.state(remote_id) is not None

    def state(self, remote_id: str) -> int | None:
        row = self.db.execute(
            "SELECT state FROM nodes WHERE id = ?", (bytes.fromhex(remote_id),)
        ).fetchone()
        return None if row is None else int(row[0])

    def set(
        self, remote_id: str, state: int, data: bytes | None = None, plain: bytes | None = None
    ) -> None:
        self.db.execute(
            "UPDATE nodes SET state = ?, data = ?, plaintext = ? WHERE id = ?",
            (state, data, plain if self._reopen is None else None, bytes.fromhex(remote_id)),
        )

    def fetched(self, remote_id: str) -> tuple[bytes, bytes]:
        data, plaintext = self.db.execute(
            "SELECT data, plaintext FROM nodes WHERE id = ?", (bytes.fromhex(remote_id),)
        ).fetchone()
        if plaintext is None and self._reopen is not None:
            plaintext = self._reopen(remote_id, data)
        return data, plaintext

    def deepest(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(level), -1) FROM nodes").fetchone()[0])

    def at_level(self, level: int, state: int) -> Iterator[list[str]]:
        """Ids of the nodes at ``level`` in ``state``, :data:`BATCH` at a time."""
        self.db.commit()
        last = b""
        query = (
            "SELECT id FROM nodes WHERE level = ? AND id > ? AND state = ?"
            f" ORDER BY id LIMIT {BATCH}"
        )
        while True:
            rows = self.db.execute(query, (level, last, state)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [r[0].hex() for r in rows]
            self.db.commit()

    def blobs(self) -> Iterator[tuple[str, bool]]:
        self.db.commit()
        last = b""
        query = f"SELECT id, record FROM blobs WHERE id > ? ORDER BY id LIMIT {BATCH}"
        while True:
            rows = self.db.execute(query, (last,)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield from ((key.hex(), bool(record)) for key, record in rows)

    def kept(self, remote_id: str, fetcher: _Fetcher) -> bool:
        """Whether the node is in the vault now (kept by this pull, or there before)."""
        state = self.state(remote_id)
        if state is None:
            return fetcher.local_id(remote_id) is not None
        return state == KEPT


def _fetch_nodes(fetcher: _Fetcher, nodes: _Nodes, roots: list[str], report: PullReport) -> None:
    """Every tree node the vault lacks, level by level; and the blob ids their leaves name,
    each with whether it is a record (else an image or video)."""
    for root in dict.fromkeys(roots):
        if fetcher.local_id(root) is None:
            nodes.want(root, 0)
    level = 0
    while level <= nodes.deepest():
        for batch in nodes.at_level(level, WANTED):
            for remote_id, data, plaintext, error, _ in bounded_map(
                fetcher.pool,
                lambda r: _safe_fetch(fetcher.link, r),
                batch,
                window=fetcher.window,
            ):
                if error is not None:
                    nodes.set(remote_id, MISSING)
                    report.problems.append(f"tree node {remote_id[:16]}: {error}")
                    continue
                report.objects_received += 1
                report.bytes_received += len(data)
                nodes.set(remote_id, FETCHED, data, plaintext)
                node = decode_node(plaintext)
                if isinstance(node, Inner):
                    for _, child, _ in node.children:
                        if not nodes.has(child) and fetcher.local_id(child) is None:
                            nodes.want(child, level + 1)
                    continue
                for entry in node.entries:
                    for blob in (entry.record, *entry.images):
                        if blob is not None and fetcher.local_id(blob) is None:
                            nodes.want_blob(blob, blob == entry.record)
        level += 1


def _fetch_blobs(fetcher: _Fetcher, nodes: _Nodes, report: PullReport) -> set[str]:
    """Fetch and stage the blobs; returns those missing or damaged on the remote."""
    broken: set[str] = set()

    def fetch(blob: tuple[str, bool]) -> tuple[_Fetched, bool]:
        remote_id, is_record = blob
        if is_record:
            return _safe_fetch(fetcher.link, remote_id), True
        return _fetch_media(fetcher.vault, fetcher.link, remote_id), False

    for (remote_id, data, plaintext, error, spooled), is_record in bounded_map(
        fetcher.pool, fetch, nodes.blobs(), window=fetcher.window
    ):
        if error is not None:
            broken.add(remote_id)
            report.problems.append(f"object {remote_id[:16]}: {error}")
            continue
        if spooled is not None:
            report.objects_received += 1
            report.bytes_received += spooled.size
            if fetcher.progress:
                fetcher.progress(spooled.size)
            fetcher.keep_spooled(remote_id, spooled)
            continue
        report.objects_received += 1
        report.bytes_received += len(data)
        if fetcher.progress:
            fetcher.progress(len(data))
        # Records go to packs; media stay loose files (views link to them) whatever their kind.
        fetcher.keep(remote_id, data, plaintext, compress=is_record)
    return broken


def _keep_nodes(fetcher: _Fetcher, nodes: _Nodes, broken: set[str]) -> None:
    """Stage fetched nodes children-first, deepest level first; a node whose subtree is
    incomplete is not kept."""

    def decide(remote_id: str) -> bool:
        data, plaintext = nodes.fetched(remote_id)
        node = decode_node(plaintext)
        if isinstance(node, Inner):
            ok = all([child_ok(child) for _, child, _ in node.children])
        else:
            ok = all(
                blob not in broken and fetcher.local_id(blob) is not None
                for entry in node.entries
                for blob in (entry.record, *entry.images)
                if blob is not None
            )
        if ok:
            translated = plaintext if fetcher.link.idmap is None else fetcher.translate(plaintext)
            fetcher.keep(remote_id, data, translated, compress=True)
        nodes.set(remote_id, KEPT if ok else INCOMPLETE)
        return ok

    def child_ok(child: str) -> bool:
        state = nodes.state(child)
        if state == FETCHED:  # met at a shallower level too: decided now
            return decide(child)
        return nodes.kept(child, fetcher)

    for level in range(nodes.deepest(), -1, -1):
        for batch in nodes.at_level(level, FETCHED):
            for remote_id in batch:
                if nodes.state(remote_id) == FETCHED:
                    decide(remote_id)


def _move_head(vault: Vault, fetched: list[Snapshot], report: PullReport) -> None:
    current = vault.refs.head()
    report.head = current
    if not fetched:
        return
    newest = max(fetched, key=lambda s: s.time)
    if current is not None and not _descends_from(vault, newest, current):
        report.diverged = newest.id != current
        return
    vault.refs.set_head(newest.id)
    report.head = newest.id
    report.head_moved = newest.id != current


def _descends_from(vault: Vault, snapshot: Snapshot, ancestor: str) -> bool:
    seen = set()
    current: Snapshot | None = snapshot
    while current is not None and current.id not in seen:
        if current.id == ancestor:
            return True
        seen.add(current.id)
        if current.parent is None or not vault.store.exists(current.parent):
            return False
        current = decode_manifest(current.parent, vault.store.read(current.parent))
    return False
