"""How ``verify --read-data`` reads small objects: each pack in a few large reads, each
referenced record found without a pack-map lookup of its own, and every damaged entry still
named with its pack (docs/design.md, "Verify, gc and forget")."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mjvault import Vault
from mjvault.index import packmap as packmap_module
from mjvault.index.packmap import PackMap
from mjvault.integrity import packcheck, sortedids
from mjvault.integrity import verify as verify_module
from mjvault.integrity.verify import verify
from mjvault.store.packfile import read_trailer_of
from mjvault.tree import decode_stored, node_links
from tests.conftest import png_bytes, record_json
from tests.packdamage import drop_packed, flip_packed

JOBS = 600  # enough records for a trained dictionary (500 samples), in one pack


def add_records(vault: Vault, jobs: int = JOBS) -> None:
    with vault.writer("test") as writer:
        for n in range(jobs):
            writer.add_job(record_json(f"job-{n:04d}", f"a red fox number {n}"), [])


def read_syscalls() -> int:
    """Read system calls of this process so far, all threads (the kernel's count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/self/io")


@pytest.fixture
def records_vault(vault: Vault) -> Vault:
    add_records(vault)
    return vault


def packed_count(vault: Vault) -> int:
    return sum(len(read_trailer_of(os.fspath(vault.store.packs.path(name))).entries)
               for name in vault.store.packs.names())  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_read_data_reads_each_pack_in_a_few_large_reads(records_vault: Vault) -> None:
    vault = records_vault
    assert packed_count(vault) >= JOBS
    assert verify(vault, read_data=True).ok  # imports and caches warmed up
    before = read_syscalls()
    report = verify(vault, read_data=True)
    reads = read_syscalls() - before
    assert report.ok and report.objects_read >= JOBS
    # One read per packed object (and the pack read again to hash it) was what made small
    # objects cost a system call each; a pack is now read front to back in large windows.
    assert reads < 60, f"{reads} reads for {report.objects_read} objects in {report.packs} packs"


def _counting(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    original: Callable[..., Any] = getattr(PackMap, name)

    def counted(self: PackMap, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PackMap, name, counted)


@pytest.mark.parametrize("read_data", [False, True], ids=["structure", "read-data"])
def test_the_structural_pass_does_not_look_up_each_record_alone(
    records_vault: Vault, monkeypatch: pytest.MonkeyPatch, read_data: bool
) -> None:
    vault = records_vault
    calls: list[str] = []
    for name in ("locate", "contains"):
        _counting(monkeypatch, name, calls)
    report = verify(vault, read_data=read_data)
    assert report.ok and report.jobs_checked == JOBS
    # Tree nodes, manifests and the dictionary are read by id (a lookup each); the records
    # the tree names are checked in batches, not with a transaction and a lookup each.
    assert len(calls) <= report.tree_nodes + 10, f"{len(calls)} lookups for {JOBS} records"


def _file_order(vault: Vault) -> Iterator[tuple[str, str]]:
    """(pack, object id) of every packed entry, in the order the packs hold them."""
    for name in vault.store.packs.names():
        trailer = read_trailer_of(os.fspath(vault.store.packs.path(name)))
        for entry in sorted(trailer.entries, key=lambda e: e.offset):
            yield name, entry.hex_id


@pytest.mark.parametrize("where", ["first", "straddling", "last"])
@pytest.mark.parametrize("at", [0, 7, -1], ids=["magic", "payload", "end"])
def test_a_flipped_byte_in_any_entry_is_named_with_its_pack(
    records_vault: Vault, monkeypatch: pytest.MonkeyPatch, where: str, at: int
) -> None:
    vault = records_vault
    # Windows far smaller than the pack: entries straddle their edges.
    monkeypatch.setattr(packcheck, "READ_WINDOW", 4096, raising=False)
    entries = list(_file_order(vault))
    pack, object_id = {"first": entries[0], "straddling": entries[len(entries) // 2],
                       "last": entries[-1]}[where]  # fmt: skip
    records = {vault.entry(f"job-{n:04d}").record: f"job-{n:04d}" for n in range(JOBS)}
    flip_packed(vault, object_id, at)
    problems = verify(vault, read_data=True).problems
    found = {(p.kind, p.object_id, p.pack) for p in problems}
    assert ("corrupt", object_id, pack) in found
    record_problems = [p for p in problems if p.object_id == object_id]
    if object_id in records:
        assert record_problems[0].jobs == [records[object_id]]
    # Nothing else is blamed: the pack's name mismatch is explained by the damaged entry.
    assert all(p.object_id == object_id for p in problems), problems


def test_a_damaged_entry_is_found_by_the_subset_part_that_holds_it(records_vault: Vault) -> None:
    vault = records_vault
    _, object_id = list(_file_order(vault))[JOBS // 3]
    pack = flip_packed(vault, object_id, 7).name
    found = []
    for part in (1, 2, 3):
        report = verify(vault, subset=f"{part}/3")
        found += [(p.object_id, p.pack) for p in report.problems if p.object_id]
    assert found == [(object_id, pack)]


def test_the_pack_map_answers_ids_in_key_order_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packmap_module, "ORDERED_CHUNK", 7)
    released: list[int] = []
    packmap = PackMap(tmp_path / "map")
    try:
        monkeypatch.setattr(packmap.pages, "release", lambda: released.append(1))
        held = sorted(os.urandom(32) for _ in range(100))
        packmap.add("aa" * 32, [(oid, 6 + 10 * n, 10) for n, oid in enumerate(held)], None)
        released.clear()
        absent = [os.urandom(32) for _ in range(30)]
        asked = sorted(held[::3] + absent)
        assert list(packmap.absent(asked)) == sorted(absent)
        assert len(released) == -(-len(asked) // 7)  # pages let go after every chunk
        # Any order is answered right; only the cost depends on it.
        assert set(packmap.absent(list(reversed(asked)))) == set(absent)
        assert list(packmap.absent([])) == []
    finally:
        packmap.close()


def test_missing_records_are_named_with_their_jobs_when_looked_up_in_key_order(
    records_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = records_vault
    # Runs and map chunks far smaller than the vault: the ids go through the temporary file
    # and the merge, and the lookups span many transactions.
    monkeypatch.setattr(sortedids, "RUN", 50)
    monkeypatch.setattr(packmap_module, "ORDERED_CHUNK", 16)
    records = {vault.entry(f"job-{n:04d}").record: f"job-{n:04d}" for n in range(JOBS)}
    in_order = sorted(records)
    lost = [in_order[0], in_order[len(in_order) // 2], in_order[-1]]
    for record in lost:
        drop_packed(vault, record)
    head = vault.head()
    assert head is not None
    for read_data in (False, True):
        report = verify(vault, read_data=read_data)
        assert report.jobs_checked == JOBS
        found = sorted((p.kind, p.object_id, tuple(p.jobs), tuple(p.snapshots), p.message)
                       for p in report.problems)  # fmt: skip
        assert found == sorted(
            ("missing", r, (records[r],), (head.id,), f"record of job {records[r]} is missing")
            for r in lost
        )


def test_an_image_many_jobs_share_is_reported_missing_for_each(vault: Vault) -> None:
    with vault.writer("test") as writer:
        for n in range(160):  # more than a leaf holds: the image is met in several leaves
            shared = writer.put_media(png_bytes(1, 2000))
            own = writer.put_media(png_bytes(100 + n, 2000))
            writer.add_job(record_json(f"job-{n:03d}", f"a red fox number {n}"), [shared, own])
    entry = vault.entry("job-000")
    shared_id = entry.images[0]
    assert shared_id is not None
    assert verify(vault).ok  # found once, then remembered as found
    vault.store.path(shared_id).unlink()
    report = verify(vault)
    assert sorted((p.kind, p.object_id, tuple(p.jobs)) for p in report.problems) == [
        ("missing", shared_id, (f"job-{n:03d}",)) for n in range(160)
    ]
    assert all(p.message.startswith("image 0 of job") for p in report.problems)


def _tree_nodes(vault: Vault, root: str) -> set[str]:
    """Every node id of the tree at ``root``."""
    found, stack = set(), [root]
    while stack:
        node_id = stack.pop()
        found.add(node_id)
        links = node_links(vault.store.read(node_id))
        if links is not None:
            stack.extend(child for _, child in links[1])
    return found


def test_snapshots_that_share_subtrees_have_each_node_read_once(
    records_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = records_vault
    first = vault.head()
    assert first is not None
    with vault.writer("test") as writer:  # a second snapshot: a few leaves change
        for n in range(3):
            writer.add_job(record_json(f"late-{n}", f"a late fox {n}"), [])
    second = vault.head()
    assert second is not None and second.id != first.id
    trees = [_tree_nodes(vault, s.tree) for s in (first, second)]
    assert len(trees[0] & trees[1]) > len(trees[1] - trees[0])  # mostly shared
    decoded: list[int] = []
    original = verify_module.decode_stored

    def counted(data: bytes) -> object:
        decoded.append(1)
        return original(data)

    monkeypatch.setattr(verify_module, "decode_stored", counted)
    report = verify(vault)
    assert report.ok
    assert report.tree_nodes == len(decoded) == len(trees[0] | trees[1])
    # A record under a leaf both snapshots share is reported once, under the older one.
    monkeypatch.setattr(verify_module, "decode_stored", original)
    shared_leaf = next(
        node for node in trees[0] & trees[1] if node_links(vault.store.read(node)) is None
    )
    stored = decode_stored(vault.store.read(shared_leaf))
    assert isinstance(stored, list)
    job_id, record, _ = stored[0]
    drop_packed(vault, record.hex())
    problems = verify(vault).problems
    assert [(p.kind, p.object_id, p.jobs, p.snapshots) for p in problems] == [
        ("missing", record.hex(), [job_id], [first.id])
    ]


def test_a_node_refused_in_one_tree_lends_no_children_to_the_next(tmp_path: Path) -> None:
    """Each tree is walked beside the one before it, skipping the children both hold at the
    same place. An inner node whose own walk refused it (here: no job count) was walked no
    further, so nothing below it may count as checked for the next tree."""
    import msgpack

    from mjvault.snapshots import encode_manifest

    vault = Vault.init(tmp_path / "vault")
    with vault.writer("t") as writer:
        for n in range(200):
            writer.add_job(record_json(f"job-{n:04d}", f"fox {n}"), [])
    first = vault.head()
    assert first is not None
    with vault.writer("t") as writer:
        for n in range(200, 260):
            writer.add_job(record_json(f"job-{n:04d}", f"fox {n}"), [])
    last = vault.head()
    assert last is not None
    doc = msgpack.unpackb(vault.store.read(last.tree))
    del doc["n"]  # the same children, but a node decode_node refuses
    batch = vault.store.batch()
    refused = batch.put(msgpack.packb(doc))
    between = first.time + (last.time - first.time) / 2
    manifest = encode_manifest(
        time=between, tree=refused, parent=first.id, source="t", host="h", tool="t", stats={}
    )
    middle = batch.put(manifest, loose=True)
    batch.flush()
    vault.refs.add_snapshot(middle)
    victim = next(e.record for e in vault.entries(last) if e.job_id == "job-0250")
    drop_packed(vault, victim)
    problems = verify(vault).problems
    assert any(p.kind == "corrupt" and p.object_id == refused for p in problems)
    assert any(p.object_id == victim and "job-0250" in p.message for p in problems), problems


def test_a_manifest_time_without_an_offset_is_compared_as_utc(tmp_path: Path) -> None:
    import msgpack

    vault = Vault.init(tmp_path / "vault")
    with vault.writer("test") as writer:
        writer.add_job(record_json("job-0001", "fox"), [writer.put_media(png_bytes(1, size=16))])
    head = vault.head()
    assert head is not None
    doc = msgpack.unpackb(vault.store.read(head.id))
    doc["time"] = "2024-01-01T00:00:00"
    batch = vault.store.batch()
    naive = batch.put(msgpack.packb(doc), loose=True)
    batch.flush()
    vault.refs.add_snapshot(naive)
    assert verify(vault).ok
