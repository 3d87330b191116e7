"""The snapshot tree: canonical whatever the history, and diff agrees with a plain dict diff."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.tree import LEAF_MAX, JobEntry, Tree, decode_node, encode_node


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
