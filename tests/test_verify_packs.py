"""verify, verify --repair and stats of packed objects (docs/FORMAT.md §10, §12)."""

from __future__ import annotations

import os
from pathlib import Path

from mjvault import Vault
from mjvault.index.packmap import PackMap
from mjvault.integrity.verify import verify
from tests.conftest import png_bytes, record_json
from tests.packdamage import flip_packed


def test_a_later_pack_map_add_wins(tmp_path: Path) -> None:
    """A copy of an object written to a new pack (a repair, a repack) is the one read, and
    forgetting the old pack keeps it."""
    packmap = PackMap(tmp_path / "map")
    try:
        oid = bytes(range(32))
        old, new = "aa" * 32, "bb" * 32
        packmap.add(old, [(oid, 6, 10)], None)
        packmap.add(new, [(oid, 6, 12)], None)
        found = packmap.locate(oid)
        assert found is not None and (found.pack, found.length) == (new, 12)
        packmap.remove(old, [oid])
        found = packmap.locate(oid)
        assert found is not None and found.pack == new
    finally:
        packmap.close()


def add_jobs(vault: Vault, numbers: range) -> None:
    with vault.writer("test") as writer:
        for n in numbers:
            slots = [writer.put_media(png_bytes(n * 10 + i, 2000)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"a red fox number {n}"), slots)


def pack_of(vault: Vault, object_id: str) -> Path:
    location = vault.store.packs.locate(object_id)
    assert location is not None
    return vault.store.packs.path(location.pack)


def test_verify_names_a_pack_whose_trailer_is_damaged(vault: Vault) -> None:
    add_jobs(vault, range(5))
    head = vault.head()
    assert head is not None
    path = pack_of(vault, head.tree)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(-30, os.SEEK_END)  # inside the trailer's checksum
        byte = handle.read(1)[0]
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes((byte ^ 1,)))
    for read_data in (False, True):
        problems = verify(vault, read_data=read_data).problems
        assert [(p.kind, p.pack, p.object_id) for p in problems] == [("corrupt", path.name, None)]
        assert "trailer" in problems[0].message
    # Once the map is rebuilt from the trailers alone, what the pack held is missing.
    vault.store.packs.map().forget_number(path.name)
    vault.store.packs.reconcile()
    problems = verify(vault).problems
    assert ("corrupt", path.name) in {(p.kind, p.pack) for p in problems}
    assert head.tree in {p.object_id for p in problems if p.kind == "missing"}


def test_verify_read_data_finds_a_damaged_entry_and_names_its_pack(vault: Vault) -> None:
    add_jobs(vault, range(6))
    record = vault.entry("job-2").record
    flip_packed(vault, record, 10)
    assert verify(vault).ok  # records are not read by the structural pass
    report = verify(vault, read_data=True)
    assert [(p.kind, p.object_id, p.pack, p.jobs) for p in report.problems] == [
        ("corrupt", record, pack_of(vault, record).name, ["job-2"])
    ]
    # Every packed object was read, through its pack.
    packed = sum(1 for _ in vault.store.packs.iter_ids())
    loose = sum(1 for _ in vault.store.iter_loose_ids())
    assert report.objects_read == packed + loose
    assert report.packs == len(vault.store.packs.names())


def test_verify_read_data_finds_a_pack_that_does_not_match_its_name(vault: Vault) -> None:
    add_jobs(vault, range(3))
    path = pack_of(vault, vault.entry("job-1").record)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(5)  # the header's flags byte: no entry and no trailer covers it
        handle.write(b"\x01")
    assert verify(vault).ok
    problems = verify(vault, read_data=True).problems
    assert [(p.kind, p.pack, p.object_id) for p in problems] == [("corrupt", path.name, None)]
    assert "does not match its name" in problems[0].message
