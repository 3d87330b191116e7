"""The snapshot tree: canonical whatever the history, and diff agrees with a plain dict diff."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.errors import IntegrityError, ObjectNotFound
from mjvault.tree import (
    LEAF_MAX,
    Inner,
    JobEntry,
    Leaf,
    Tree,
    decode_node,
    decode_stored,
    encode_node,
    walk_nodes,
)


class MemoryStore:
    def __init__(self) -> None:
        import blake3

        self.objects: dict[str, bytes] = {}
        self._hash = lambda b: blake3.blake3(b).hexdigest()

    def read(self, oid: str) -> bytes:
        return self.objects[oid]

    def write(self, data: bytes) -> str:
        oid = self._hash(data)
        self.objects[oid] = data
        return oid


def entry(n: int, version: int = 0) -> JobEntry:
    return JobEntry(
        f"job-{n}", f"{(n * 7 + version) % 256:02x}" * 32, (f"{n % 256:02x}" * 32, None)
    )


ops = st.lists(
    st.tuples(st.integers(0, 600), st.integers(0, 2), st.booleans()), min_size=1, max_size=400
)


@settings(max_examples=40, deadline=None)
@given(ops, ops)
def test_tree_is_canonical_and_diff_is_exact(first: list, second: list) -> None:
    store = MemoryStore()
    tree = Tree(store.read, store.write)
    state: dict[str, JobEntry] = {}
    root = tree.empty()
    snapshots = []
    for batch in (first, second):
        changes: dict[str, JobEntry | None] = {}
        for n, version, remove in batch:
            job = f"job-{n}"
            changes[job] = None if remove else entry(n, version)
        for job, value in changes.items():
            if value is None:
                state.pop(job, None)
            else:
                state[job] = value
        old_state = {e.job_id: e for e in tree.walk(root)}
        new_root = tree.apply(root, changes)
        # Canonical: the same set built from scratch has the same root id.
        assert new_root == tree.apply(tree.empty(), dict(state))
        assert {e.job_id: e for e in tree.walk(new_root)} == state
        assert tree.count(new_root) == len(state)
        expected = {j for j in old_state.keys() | state.keys() if old_state.get(j) != state.get(j)}
        got = {j for j, _, _ in tree.diff(root, new_root)}
        assert got == expected
        for j, old, new in tree.diff(root, new_root):
            assert old == old_state.get(j) and new == state.get(j)
        for job in list(state)[:20]:
            assert tree.get(new_root, job) == state[job]
        assert tree.get(new_root, "job-absent") is None
        snapshots.append(new_root)
        root = new_root


def test_a_small_change_to_a_large_tree_writes_few_nodes() -> None:
    store = MemoryStore()
    tree = Tree(store.read, store.write)
    root = tree.apply(tree.empty(), {f"job-{n}": entry(n) for n in range(20_000)})
    before = len(store.objects)
    tree.apply(root, {f"new-{n}": entry(n) for n in range(50)})
    written = len(store.objects) - before
    # ~50 leaves plus their ancestors, not the ~20k/LEAF_MAX leaves of the whole tree.
    assert written <= 50 * 3 + 20
    assert written < 20_000 // LEAF_MAX


@given(st.lists(st.integers(0, 10_000), max_size=50, unique=True))
def test_leaf_encoding_round_trip(numbers: list[int]) -> None:
    from mjvault.tree import Leaf

    leaf = Leaf(tuple(sorted((entry(n) for n in numbers), key=lambda e: e.job_id)))
    assert decode_node(encode_node(leaf)) == leaf


def test_the_node_cache_is_bounded_in_child_links_as_in_entries() -> None:
    """Each checkpoint rewrites every inner node its jobs pass through; 4,096 cached inner
    nodes of 16 child links each held ~15 MB of a large sync's heap, outside the entry
    bound that only counted leaves."""
    from mjvault.tree import Inner, Leaf

    store = MemoryStore()
    tree = Tree(store.read, store.write, cache_entries=256)
    root = tree.empty()
    for start in range(0, 20_000, 1_000):
        root = tree.apply(root, {f"job-{n}": entry(n) for n in range(start, start + 1_000)})
    cached = tree._cache.values()
    links = sum(len(n.children) for n in cached if isinstance(n, Inner))
    entries = sum(len(n.entries) for n in cached if isinstance(n, Leaf))
    assert links + entries <= 256
    assert tree.count(root) == 20_000


ids_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)
job_entries = st.builds(
    JobEntry,
    st.text(min_size=1, max_size=20),
    ids_hex,
    st.lists(st.one_of(st.none(), ids_hex), max_size=5).map(tuple),
)


@settings(max_examples=80)
@given(st.lists(job_entries, max_size=40, unique_by=lambda e: e.job_id))
def test_a_leaf_as_stored_holds_what_decode_node_reads(entries: list[JobEntry]) -> None:
    from mjvault import leaves
    from mjvault import tree as tree_module

    for version in tree_module.LEAF_VERSIONS:  # a tree may hold leaves of both versions
        written = tree_module.LEAF_VERSION
        tree_module.LEAF_VERSION = version
        try:
            data = encode_node(Leaf(tuple(entries)))
        finally:
            tree_module.LEAF_VERSION = written
        ordered = sorted(entries, key=lambda e: e.job_id)
        fits = leaves.encode((e.job_id, e.record, e.images) for e in ordered) is not None
        assert msgpack.unpackb(data)["v"] == (version if fits else 1)  # e.g. a zero id
        leaf = decode_node(data)
        assert isinstance(leaf, Leaf)
        stored = decode_stored(data)
        assert isinstance(stored, list)
        assert [
            (job_id, record.hex(), tuple(i.hex() if i is not None else None for i in images))
            for job_id, record, images in stored
        ] == [(e.job_id, e.record, e.images) for e in leaf.entries]


def test_an_inner_node_as_stored_is_the_inner_node() -> None:
    store = MemoryStore()
    tree = Tree(store.read, store.write)
    root = tree.apply(tree.empty(), {f"job-{n}": entry(n) for n in range(LEAF_MAX * 3)})
    data = store.read(root)
    assert isinstance(decode_node(data), Inner)
    assert decode_stored(data) == decode_node(data)


@pytest.mark.parametrize(
    "entry_wire",
    [
        ["job-1", b"\x01" * 31, []],  # a record id cut short
        ["job-1", b"\x01" * 32, [b"\x02" * 33]],  # an image id too long
        ["job-1", b"\x01" * 32, ["ab" * 32]],  # an image id as text
        ["job-1", b"\x01" * 32],  # a field missing
    ],
)
def test_a_malformed_stored_entry_is_an_integrity_error(entry_wire: list[object]) -> None:
    data = msgpack.packb({"t": "leaf", "v": 1, "e": [entry_wire]})
    with pytest.raises(IntegrityError, match="malformed tree"):
        decode_stored(data)


def test_walk_nodes_skips_what_was_walked_and_hands_damage_to_the_caller() -> None:
    store = MemoryStore()
    tree = Tree(store.read, store.write)
    first = tree.apply(tree.empty(), {f"job-{n}": entry(n) for n in range(600)})
    second = tree.apply(first, {"job-1": entry(1, 1)})  # one leaf and its ancestors differ

    def read(oid: str) -> bytes:
        if oid not in store.objects:
            raise ObjectNotFound(f"object {oid} is missing")
        return store.objects[oid]

    every = [node_id for node_id, _ in walk_nodes(read, first)]
    assert len(every) == len(set(every)) > 1 and every[0] == first
    assert set(every) == set(tree.node_ids(first))
    assert sum(len(n.entries) for _, n in walk_nodes(read, first) if isinstance(n, Leaf)) == 600
    # Beside the earlier tree: only the path to the changed leaf is walked.
    changed = [node_id for node_id, _ in walk_nodes(read, second, beside=first)]
    assert changed[0] == second and len(changed) < len(every)
    assert set(changed) == set(tree.node_ids(second)) - set(every)
    # A seen set shared by two walks: the second meets only what the first did not.
    seen: set[str] = set()
    assert [i for i, _ in walk_nodes(read, first, seen=seen)] == every
    assert set(i for i, _ in walk_nodes(read, second, seen=seen)) == set(changed)
    # Known ids are skipped and left alone.
    known = set(every[1:])
    assert [i for i, _ in walk_nodes(read, first, known=known)] == [first]
    # Damage: to on_error (and nothing below it), or raised without one.
    lost = every[-1]
    del store.objects[lost]
    errors: list[tuple[str, Exception]] = []
    rest = [i for i, _ in walk_nodes(read, first, on_error=lambda i, e: errors.append((i, e)))]
    assert lost not in rest and len(rest) == len(every) - 1
    assert [(i, type(e)) for i, e in errors] == [(lost, ObjectNotFound)]
    with pytest.raises(ObjectNotFound):
        list(walk_nodes(read, first))
    store.objects[first] = b"not a node"
    with pytest.raises(IntegrityError):
        list(walk_nodes(read, first, decode=decode_stored))
