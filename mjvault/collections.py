"""Collections: named sets of jobs kept in the vault (docs/FORMAT.md §7.1).

A snapshot manifest may name a *collection list* object: each collection's name, how many
jobs it holds, and the ids of its *member chunks*, objects holding sorted runs of job ids.
Chunks end where a job id's hash says (content-defined), so adding or removing a few jobs
rewrites the one or two chunks they fall in, not a 500k-job collection, and a collection is
read a chunk at a time (:func:`members` streams). A change writes a new snapshot (source
``collection``) with the same tree: collections are then carried by every path a snapshot
takes (push, pull, clone) and kept by gc and forget like the tree.
"""

from __future__ import annotations

import heapq
import json
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import blake3
import msgpack

from mjvault import __version__
from mjvault.errors import IntegrityError, MjvaultError, UsageError
from mjvault.reports import Report, json_meta
from mjvault.snapshots import Snapshot, encode_manifest
from mjvault.store.fsutil import atomic_write
from mjvault.store.objects import WriteBatch
from mjvault.vault import Vault

LIST_VERSION = 1
CHUNK_VERSION = 1
# A chunk ends after a job id whose boundary hash is below this (1 in 4096 ids), or once it
# holds CHUNK_MAX ids: ~4096 ids (~150 KB) a chunk on average.
BOUNDARY_BELOW = 16
CHUNK_MAX = 16384
NAME_MAX = 100
SOURCE = "collection"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]*")


@dataclass(frozen=True)
class Collection(Report):
    name: str
    jobs: int
    chunks: tuple[str, ...] = field(metadata=json_meta(omit=True))


def check_name(name: str) -> str:
    """The name if a collection may have it: letters, digits, space, ``. _ + -``; no path
    characters (``/``, ``\\``), no leading dot or space, at most 100 characters."""
    if not (0 < len(name) <= NAME_MAX) or not _NAME.fullmatch(name) or name != name.strip():
        raise UsageError(
            f"{name!r} is not a collection name: use letters, digits, space and . _ + - "
            f"(at most {NAME_MAX}, starting with a letter or digit)"
        )
    return name


def is_boundary(job_id: str) -> bool:
    """Whether a chunk ends after this job id (FORMAT §7.1)."""
    digest = blake3.blake3(b"mjvault collection chunk\x00" + job_id.encode()).digest(2)
    return int.from_bytes(digest, "big") < BOUNDARY_BELOW


# -- objects ------------------------------------------------------------------------------
def encode_list(collections: Iterable[Collection]) -> bytes:
    return msgpack.packb(
        {
            "t": "collections",
            "v": LIST_VERSION,
            "c": [
                [c.name, c.jobs, [bytes.fromhex(x) for x in c.chunks]]
                for c in sorted(collections, key=lambda c: c.name)
            ],
        }
    )


def decode_list(object_id: str, data: bytes) -> list[Collection]:
    try:
        doc = msgpack.unpackb(data)
        if doc.get("t") != "collections" or doc.get("v") != LIST_VERSION:
            raise ValueError("not a collection list of version 1")
        out = [
            Collection(str(name), int(jobs), tuple(bytes(x).hex() for x in chunks))
            for name, jobs, chunks in doc["c"]
        ]
    except Exception as exc:
        raise IntegrityError(f"collection list {object_id[:12]} is malformed: {exc}") from None
    return out


def encode_chunk(job_ids: list[str]) -> bytes:
    return msgpack.packb({"t": "members", "v": CHUNK_VERSION, "ids": job_ids})


def decode_chunk(object_id: str, data: bytes) -> list[str]:
    try:
        doc = msgpack.unpackb(data)
        if doc.get("t") != "members" or doc.get("v") != CHUNK_VERSION:
            raise ValueError("not a member chunk of version 1")
        ids = [str(i) for i in doc["ids"]]
        if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
            raise ValueError("ids are not strictly increasing")
    except Exception as exc:
        raise IntegrityError(f"member chunk {object_id[:12]} is malformed: {exc}") from None
    return ids


def collections_of(vault: Vault, snapshot: Snapshot | None) -> list[Collection]:
    if snapshot is None or snapshot.collections is None:
        return []
    return decode_list(snapshot.collections, vault.store.read(snapshot.collections))


def object_ids(vault: Vault, list_id: str) -> Iterator[str]:
    """The list object and every chunk it names: what reachability, push and pull walk."""
    yield list_id
    for collection in decode_list(list_id, vault.store.read(list_id)):
        yield from collection.chunks


# -- reading ------------------------------------------------------------------------------
def list_collections(vault: Vault) -> list[Collection]:
    """HEAD's collections, by name."""
    return collections_of(vault, vault.head())


def get(vault: Vault, name: str) -> Collection:
    """HEAD's collection ``name``; raises when there is none."""
    check_name(name)
    for collection in collections_of(vault, vault.head()):
        if collection.name == name:
            return collection
    raise MjvaultError(f"no collection {name!r}")


def members(vault: Vault, name: str) -> Iterator[str]:
    """The job ids of a collection of HEAD, sorted, read a chunk at a time."""
    yield from _stream(vault, get(vault, name).chunks)


def _stream(vault: Vault, chunks: Iterable[str]) -> Iterator[str]:
    for chunk in chunks:
        yield from decode_chunk(chunk, vault.store.read(chunk))


# -- writing ------------------------------------------------------------------------------
def write_members(batch: WriteBatch, job_ids: Iterable[str]) -> tuple[int, tuple[str, ...]]:
    """Store sorted, distinct ``job_ids`` as chunks; returns (count, chunk ids)."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for job_id in job_ids:
        current.append(job_id)
        count += 1
        if is_boundary(job_id) or len(current) >= CHUNK_MAX:
            chunks.append(batch.put(encode_chunk(current)))
            current = []
    if current:
        chunks.append(batch.put(encode_chunk(current)))
    return count, tuple(chunks)


def _merged(old: Iterator[str], add: list[str], remove: set[str]) -> Iterator[str]:
    last = None
    for job_id in heapq.merge(old, add):
        if job_id != last and job_id not in remove:
            yield job_id
        last = job_id


def change(
    vault: Vault,
    name: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> Collection:
    """Add and remove jobs (a new collection when ``name`` is new); writes a new snapshot
    when anything changed. Returns the collection as it now is."""
    check_name(name)
    from mjvault.integrity import exclusions

    added = sorted(set(add))
    removed = set(remove)
    with vault.write_lock():
        # The ids were chosen before the lock (a search, a page's selection): a job forgotten
        # since then stays out, or a collection would name a job no tree holds any more.
        forgotten = exclusions.load(vault)
        if forgotten:
            added = [job_id for job_id in added if job_id not in forgotten]
        head = _require_head(vault)
        current = collections_of(vault, head)
        old = next((c for c in current if c.name == name), None)
        batch = vault.store.batch()
        try:
            count, chunks = write_members(
                batch, _merged(_stream(vault, old.chunks if old else ()), added, removed)
            )
            new = Collection(name, count, chunks)
            if old == new:
                batch.discard()
                return new
            others = [c for c in current if c.name != name]
            _publish(vault, batch, head, [*others, new])
        except BaseException:
            batch.discard()
            raise
    return new


def delete(vault: Vault, name: str) -> bool:
    """Remove a collection; False when there was none of that name."""
    check_name(name)
    with vault.write_lock():
        head = _require_head(vault)
        current = collections_of(vault, head)
        if not any(c.name == name for c in current):
            return False
        batch = vault.store.batch()
        try:
            _publish(vault, batch, head, [c for c in current if c.name != name])
        except BaseException:
            batch.discard()
            raise
    return True


def rewrite_without(
    vault: Vault,
    batch: WriteBatch,
    list_id: str | None,
    gone: set[str],
    read: Callable[[str], bytes] | None = None,
) -> str | None:
    """The collection list ``list_id`` without the jobs in ``gone`` (forget); chunks that
    hold none of them keep their ids. Returns the new list's id (the same when unchanged).
    ``read``: where objects the vault lacks come from (a remote's snapshot it let go)."""
    if list_id is None or not gone:
        return list_id
    read = read or vault.store.read
    current = decode_list(list_id, read(list_id))
    rewritten = []
    for collection in current:
        ids = (i for c in collection.chunks for i in decode_chunk(c, read(c)))
        count, chunks = write_members(batch, (i for i in ids if i not in gone))
        rewritten.append(Collection(collection.name, count, chunks))
    if rewritten == current:
        return list_id
    return _put_list(batch, rewritten)


def _put_list(batch: WriteBatch, collections: list[Collection]) -> str | None:
    if not collections:
        return None
    return batch.put(encode_list(collections))


def _require_head(vault: Vault) -> Snapshot:
    head = vault.head()
    if head is None:
        raise MjvaultError("the vault has no snapshot yet: sync or import first")
    return head


def _publish(
    vault: Vault, batch: WriteBatch, head: Snapshot, collections: list[Collection]
) -> None:
    """A snapshot of HEAD's tree with these collections, published as a writer does (§7)."""
    list_id = _put_list(batch, collections)
    stats = {k: v for k, v in head.stats.items() if k in ("jobs", "images")}
    stats.update(added=0, updated=0, removed=0)
    manifest = encode_manifest(
        time=datetime.now(UTC),
        tree=head.tree,
        parent=head.id,
        source=SOURCE,
        host=socket.gethostname(),
        tool=f"mjvault {__version__}",
        stats=stats,
        collections=list_id,
    )
    snapshot_id = batch.put(manifest, loose=True)
    batch.flush()
    vault.refs.add_snapshot(snapshot_id)
    vault.refs.set_head(snapshot_id)
    _rebase_checkpoint(vault, head.id, snapshot_id)


def _rebase_checkpoint(vault: Vault, old: str, new: str) -> None:
    """An unfinished sync's checkpoint based on the old HEAD is based on the new one: same
    tree, so its work still applies, and the next run resumes it instead of starting over."""
    path = vault.refs.dir / "checkpoint"
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return
    if isinstance(doc, dict) and doc.get("base") == old:
        doc["base"] = new
        atomic_write(path, json.dumps(doc).encode("utf-8"))


__all__ = [
    "Collection",
    "change",
    "check_name",
    "delete",
    "get",
    "list_collections",
    "members",
    "object_ids",
    "rewrite_without",
]
