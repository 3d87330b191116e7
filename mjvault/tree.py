"""The snapshot tree: job id -> (record object, image objects), stored as content-addressed nodes.

A hash array mapped trie. A job's position is given by the hex digits of BLAKE3(job id): a
node at depth d splits its jobs by digit d into up to 16 children. A subtree holding at most
``LEAF_MAX`` jobs is always a single leaf, so a given set of jobs has exactly one tree and
one root id, however it was built. Consequences that the rest of mjvault relies on:

* a change of k jobs rewrites about k leaves and their ancestors, never the whole manifest;
* two snapshots share every unchanged subtree, and :func:`diff` skips those by id alone;
* any snapshot's full job list is readable directly, with no chain of deltas to replay.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import blake3
import msgpack

from mjvault import leaves
from mjvault.errors import CorruptObject, IntegrityError, ObjectNotFound

LEAF_MAX = 128
# Inner nodes have one version. Leaves have two (docs/FORMAT.md §6): version 1 keeps each
# entry as a msgpack array [job id text, record id, [image id or nil, ...]]; version 2, what
# new leaves are written as, keeps the job list as one byte string (mjvault.leaves), ~152
# bytes a job (3.2 images) instead of ~183. Both are read. Tests set LEAF_VERSION to 1 to
# write vaults as older mjvault did.
NODE_VERSION = 1
LEAF_VERSION = 2
LEAF_VERSIONS = (1, 2)
MAX_DEPTH = 63  # 64 hex digits; never reached in practice
# Job entries and child links a Tree keeps decoded (under 2 MB); see Tree._remember.
CACHE_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class JobEntry:
    """What a snapshot holds for one job. ``images[i]`` is None when image i could not be had."""

    job_id: str
    record: str
    images: tuple[str | None, ...]

    def to_wire(self) -> list[object]:
        return [
            self.job_id,
            bytes.fromhex(self.record),
            [bytes.fromhex(i) if i is not None else None for i in self.images],
        ]

    @classmethod
    def from_wire(cls, item: object) -> JobEntry:
        try:
            fields: list[Any] = list(item)  # type: ignore[call-overload]
            job_id, record, images = fields
            return cls(
                str(job_id),
                bytes(record).hex(),
                tuple(bytes(i).hex() if i is not None else None for i in images),
            )
        except (TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed tree entry: {exc}") from None


def key_digits(job_id: str) -> str:
    return blake3.blake3(job_id.encode("utf-8")).hexdigest()


# A node store: read(oid) -> plaintext bytes, write(plaintext) -> oid.
Reader = Callable[[str], bytes]
Writer = Callable[[bytes], str]


@dataclass(frozen=True)
class Leaf:
    entries: tuple[JobEntry, ...]

    @property
    def count(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class Inner:
    depth: int
    count: int
    children: tuple[tuple[int, str, int], ...]  # (digit, child id, jobs below)


Node = Leaf | Inner


def encode_node(node: Node) -> bytes:
    if isinstance(node, Leaf):
        ordered = sorted(node.entries, key=lambda e: e.job_id)
        if LEAF_VERSION == 2:
            jobs = leaves.encode((e.job_id, e.record, e.images) for e in ordered)
            if jobs is not None:
                return msgpack.packb({"t": "leaf", "v": 2, "e": jobs})
        # Version 1: as asked, or for a job version 2 cannot hold (a long id, 256+ images).
        return msgpack.packb({"t": "leaf", "v": 1, "e": [e.to_wire() for e in ordered]})
    return msgpack.packb(
        {
            "t": "node",
            "v": NODE_VERSION,
            "d": node.depth,
            "n": node.count,
            "c": [[digit, bytes.fromhex(child), count] for digit, child, count in node.children],
        }
    )


def decode_node(data: bytes) -> Node:
    with _as_damage():
        doc = msgpack.unpackb(data)
        kind = doc["t"]
        version = _version(doc)
        if kind == "leaf":
            if version == 2:
                return Leaf(tuple(JobEntry(*job) for job in _jobs(doc)))
            return Leaf(tuple(JobEntry.from_wire(item) for item in doc["e"]))
        if kind == "node":
            return _inner(doc)
    raise IntegrityError(f"unknown tree node type {kind!r}")


@contextmanager
def _as_damage() -> Iterator[None]:
    """Any shape error in a node's stored bytes is an integrity problem."""
    try:
        yield
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError(f"malformed tree node: {exc}") from None


def _jobs(doc: Any) -> list[leaves.Job]:
    """A version 2 leaf's job list, checked (the one place it is read)."""
    if not isinstance(doc["e"], bytes):
        raise IntegrityError("malformed tree leaf: version 2 jobs are not bytes")
    return leaves.decode(doc["e"])


def _inner(doc: Any) -> Inner:
    children = tuple((int(d), bytes(c).hex(), int(n)) for d, c, n in doc["c"])
    return Inner(int(doc["d"]), int(doc["n"]), children)


# A leaf's entry as stored: job id, record id, image ids (32 bytes each; None: no image).
StoredEntry = tuple[str, bytes, tuple[bytes | None, ...]]
ID_BYTES = 32


def decode_stored(data: bytes) -> Inner | list[StoredEntry]:
    """:func:`decode_node` for a pass over every reference of a tree (verify): a leaf's
    entries as stored, ids as bytes, not :class:`JobEntry` objects with hex ids (whose
    conversions were ~3 µs an entry, seconds at a million jobs). The same errors, and an
    id that is not 32 bytes is a malformed entry."""
    with _as_damage():
        doc = msgpack.unpackb(data)
        kind = doc["t"]
        version = _version(doc)
        if kind == "leaf" and version == 2:
            # leaves.decode checks the job list and gives hex ids (what the writer wants);
            # back to bytes here, ~1 µs a job.
            return [
                (job_id, bytes.fromhex(record), tuple(_raw(image) for image in images))
                for job_id, record, images in _jobs(doc)
            ]
        if kind == "leaf":
            entries: list[StoredEntry] = []
            for job_id, record, images in doc["e"]:
                stored = (str(job_id), bytes(record), tuple(images))
                for oid in (stored[1], *stored[2]):
                    if oid is not None and (type(oid) is not bytes or len(oid) != ID_BYTES):
                        raise IntegrityError(f"malformed tree entry: an id of {oid!r}")
                entries.append(stored)
            return entries
        if kind == "node":
            return _inner(doc)
    raise IntegrityError(f"unknown tree node type {kind!r}")


def _raw(image: str | None) -> bytes | None:
    return None if image is None else bytes.fromhex(image)


def node_links(data: bytes) -> tuple[int, tuple[tuple[int, str], ...]] | None:
    """An inner node's depth and (digit, child id) links, or None for a leaf: what a walk of
    the tree's nodes needs, without decoding a leaf's job entries."""
    with _as_damage():
        doc = msgpack.unpackb(data)
        kind = doc["t"]
        _version(doc)
        if kind == "leaf":
            return None
        if kind == "node":
            # Checked as decode_node checks it: a walk that pairs this node's children with
            # another tree's (verify) must not lean on a node decode_node would refuse.
            inner = _inner(doc)
            return inner.depth, tuple((digit, child) for digit, child, _ in inner.children)
    raise IntegrityError(f"unknown tree node type {kind!r}")


# What reading a node raises when the node is missing or damaged (a remote's reader adds its
# own kinds through ``damage``).
NODE_DAMAGE: tuple[type[Exception], ...] = (ObjectNotFound, CorruptObject, IntegrityError)
# What a walk yields for a leaf: a Leaf (decode_node) or its entries as stored (decode_stored).
L = TypeVar("L")
OnError = Callable[[str, Exception], None]


@overload
def walk_nodes(
    read: Reader,
    root: str,
    *,
    seen: set[str] | None = None,
    known: Container[str] = (),
    beside: str | None = None,
    on_error: OnError | None = None,
    damage: tuple[type[Exception], ...] = NODE_DAMAGE,
) -> Iterator[tuple[str, Node]]: ...


@overload
def walk_nodes(
    read: Reader,
    root: str,
    *,
    decode: Callable[[bytes], Inner | L],
    seen: set[str] | None = None,
    known: Container[str] = (),
    beside: str | None = None,
    on_error: OnError | None = None,
    damage: tuple[type[Exception], ...] = NODE_DAMAGE,
) -> Iterator[tuple[str, Inner | L]]: ...


def walk_nodes(
    read: Reader,
    root: str,
    *,
    decode: Callable[[bytes], Any] = decode_node,
    seen: set[str] | None = None,
    known: Container[str] = (),
    beside: str | None = None,
    on_error: OnError | None = None,
    damage: tuple[type[Exception], ...] = NODE_DAMAGE,
) -> Iterator[tuple[str, Any]]:
    """(node id, node) for every node of the tree at ``root``, each parent before its
    children: the one walk over a tree's nodes (verify, gc's marking, repair, a remote's
    verify, :meth:`Tree.node_ids`).

    Depth first on an explicit stack (a path is at most 64 nodes, but the stack holds the
    siblings met on the way), in a fixed order, so two walks of one tree meet its nodes
    alike. ``read`` gives a node's plaintext and ``decode`` parses it (:func:`decode_node`,
    or :func:`decode_stored` for a pass over every reference).

    * ``seen``: node ids walked already (by an earlier walk of another tree sharing it);
      those are skipped, and every node met is added. Memory grows with the vault.
    * ``known``: node ids to skip, left as they are (marks the caller keeps itself).
    * ``beside``: the root of an earlier tree walked already; a subtree it holds at the
      same place is skipped. Memory is the stack alone.
    * ``on_error``: called with the node id and the exception when a node cannot be read
      or decoded (``damage``), and the walk goes on without what lies below it; without
      it, the exception goes to the caller.
    """
    stack: list[tuple[str, str | None]] = [(root, beside)]
    while stack:
        node_id, before = stack.pop()
        if node_id == before or node_id in known:
            continue
        if seen is not None:
            if node_id in seen:
                continue
            seen.add(node_id)
        try:
            node = decode(read(node_id))
        except damage as exc:
            if on_error is None:
                raise
            on_error(node_id, exc)
            continue
        yield node_id, node
        if isinstance(node, Inner):
            if before is None:
                stack.extend((child, None) for _, child, _ in node.children)
            else:
                earlier = _children_of(read, before, node.depth, damage)
                stack.extend((child, earlier.get(digit)) for digit, child, _ in node.children)


def _children_of(
    read: Reader, node_id: str, depth: int, damage: tuple[type[Exception], ...]
) -> dict[int, str]:
    """The children by digit of an earlier tree's inner node at ``depth``; none for a leaf,
    another depth, or a node that cannot be read (its own walk reported it): then nothing
    below is skipped."""
    try:
        links = node_links(read(node_id))
    except damage:
        return {}
    if links is None or links[0] != depth:
        return {}
    return dict(links[1])


def _version(doc: dict[str, Any]) -> int:
    """The node's version, if this mjvault reads it for the node's type."""
    version = doc.get("v")
    known = LEAF_VERSIONS if doc["t"] == "leaf" else (NODE_VERSION,)
    if type(version) is not int or version not in known:
        raise IntegrityError(f"tree node version {version!r} is not supported")
    return version


def _weight(node: Node) -> int:
    """What a cached node costs against Tree's entry bound: its entries or child links."""
    return len(node.entries) if isinstance(node, Leaf) else len(node.children)


class TreeReader:
    """Reading trees through the object store's reader: what an open vault offers. Writing
    is :class:`Tree`'s, built by a writer over its own batch, so a write through a reader
    is a type error, not a failure at run time."""

    def __init__(
        self,
        read: Reader,
        *,
        cache_size: int = 4096,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        self._read = read
        self._cache: dict[str, Node] = {}
        self._cache_size = cache_size
        self._cache_entries = cache_entries
        self._cached_entries = 0

    def load(self, node_id: str) -> Node:
        node = self._cache.get(node_id)
        if node is None:
            node = decode_node(self._read(node_id))
            self._remember(node_id, node)
        return node

    def _remember(self, node_id: str, node: Node) -> None:
        # Bounded, oldest first out: a long import writes millions of nodes over its life. The
        # bound is in job entries too, as leaves hold up to LEAF_MAX each: 4,096 full leaves
        # would keep half a million jobs' entries, the whole archive of most users. An inner
        # node's child links weigh as entries: a checkpoint rewrites every inner node its jobs
        # pass through, and 4,096 of them (16 links each) held ~15 MB of a large sync's heap.
        if node_id in self._cache:
            return
        weight = _weight(node)
        while self._cache and (
            len(self._cache) >= self._cache_size
            or self._cached_entries + weight > self._cache_entries
        ):
            self._cached_entries -= _weight(self._cache.pop(next(iter(self._cache))))
        self._cache[node_id] = node
        self._cached_entries += weight

    # -- reading ---------------------------------------------------------------------------
    def count(self, root: str) -> int:
        return self.load(root).count

    def get(self, root: str, job_id: str) -> JobEntry | None:
        digits = key_digits(job_id)
        node = self.load(root)
        while isinstance(node, Inner):
            digit = int(digits[node.depth], 16)
            child = next((c for d, c, _ in node.children if d == digit), None)
            if child is None:
                return None
            node = self.load(child)
        return next((e for e in node.entries if e.job_id == job_id), None)

    def walk(self, root: str) -> Iterator[JobEntry]:
        # Not through the cache: a walk reads every node once, and remembering them would
        # hold up to cache_size leaves of entries (hundreds of MB at a million jobs).
        node = self._cache.get(root) or decode_node(self._read(root))
        if isinstance(node, Leaf):
            yield from sorted(node.entries, key=lambda e: e.job_id)
            return
        for _, child, _ in node.children:
            yield from self.walk(child)

    def node_ids(self, root: str) -> Iterator[str]:
        """Every node id of the tree."""
        for node_id, _ in walk_nodes(self._read, root):
            yield node_id

    # -- comparing -------------------------------------------------------------------------
    def diff(
        self, old: str | None, new: str | None
    ) -> Iterator[tuple[str, JobEntry | None, JobEntry | None]]:
        """(job id, old entry, new entry) for every job that differs; shared subtrees are skipped."""
        if old == new:
            return
        old_node = self.load(old) if old else Leaf(())
        new_node = self.load(new) if new else Leaf(())
        if (
            isinstance(old_node, Inner)
            and isinstance(new_node, Inner)
            and old_node.depth == new_node.depth
        ):
            old_children = {d: c for d, c, _ in old_node.children}
            new_children = {d: c for d, c, _ in new_node.children}
            for digit in sorted(old_children.keys() | new_children.keys()):
                yield from self.diff(old_children.get(digit), new_children.get(digit))
            return
        # At least one side is a leaf (at most LEAF_MAX jobs): hold it, stream the other.
        if isinstance(old_node, Leaf):
            held = {e.job_id: e for e in old_node.entries}
            for entry in self.walk(new) if new else ():
                before = held.pop(entry.job_id, None)
                if before != entry:
                    yield entry.job_id, before, entry
            for job_id in sorted(held):
                yield job_id, held[job_id], None
        else:
            held = {e.job_id: e for e in new_node.entries}  # type: ignore[union-attr]
            for entry in self.walk(old) if old else ():
                after = held.pop(entry.job_id, None)
                if after != entry:
                    yield entry.job_id, entry, after
            for job_id in sorted(held):
                yield job_id, None, held[job_id]


class Tree(TreeReader):
    """Reading and writing trees through a reader/writer pair (a writer's batch)."""

    def __init__(
        self,
        read: Reader,
        write: Writer,
        *,
        cache_size: int = 4096,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        super().__init__(read, cache_size=cache_size, cache_entries=cache_entries)
        self._write = write

    def store(self, node: Node) -> str:
        node_id = self._write(encode_node(node))
        self._remember(node_id, node)
        return node_id

    def empty(self) -> str:
        return self.store(Leaf(()))

    # -- writing ---------------------------------------------------------------------------
    def apply(self, root: str | None, changes: Mapping[str, JobEntry | None]) -> str:
        """A new root with ``changes`` applied (an entry sets a job, None removes it) to the
        tree ``root`` (None: the empty tree, stored only now)."""
        if not changes and root is not None:
            return root
        keyed = {job_id: (key_digits(job_id), entry) for job_id, entry in changes.items()}
        return self._apply(root, 0, keyed)

    def _apply(
        self, node_id: str | None, depth: int, changes: dict[str, tuple[str, JobEntry | None]]
    ) -> str:
        node = self.load(node_id) if node_id is not None else Leaf(())
        if isinstance(node, Leaf):
            merged = {e.job_id: e for e in node.entries}
            for job_id, (_, entry) in changes.items():
                if entry is None:
                    merged.pop(job_id, None)
                else:
                    merged[job_id] = entry
            return self._build(list(merged.values()), depth)
        by_digit: dict[int, dict[str, tuple[str, JobEntry | None]]] = {}
        for job_id, (digits, entry) in changes.items():
            by_digit.setdefault(int(digits[depth], 16), {})[job_id] = (digits, entry)
        children = {d: (c, n) for d, c, n in node.children}
        for digit, sub in by_digit.items():
            old = children.get(digit)
            new_id = self._apply(old[0] if old else None, depth + 1, sub)
            new_count = self.load(new_id).count
            if new_count == 0:
                children.pop(digit, None)
            else:
                children[digit] = (new_id, new_count)
        total = sum(n for _, n in children.values())
        if total <= LEAF_MAX:
            # Canonical form: a small subtree is a leaf, whatever history produced it.
            entries = [e for _, (c, _) in sorted(children.items()) for e in self.walk(c)]
            return self.store(Leaf(tuple(entries)))
        return self.store(
            Inner(depth, total, tuple((d, c, n) for d, (c, n) in sorted(children.items())))
        )

    def _build(self, entries: list[JobEntry], depth: int) -> str:
        if len(entries) <= LEAF_MAX or depth >= MAX_DEPTH:
            return self.store(Leaf(tuple(entries)))
        groups: dict[int, list[JobEntry]] = {}
        for entry in entries:
            groups.setdefault(int(key_digits(entry.job_id)[depth], 16), []).append(entry)
        children = []
        for digit in sorted(groups):
            child_entries = groups[digit]
            children.append((digit, self._build(child_entries, depth + 1), len(child_entries)))
        return self.store(Inner(depth, len(entries), tuple(children)))
