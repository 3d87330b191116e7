"""verify, verify --repair and stats of packed objects (docs/FORMAT.md §10, §12)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.index.packmap import PackMap
from mjvault.integrity.repair import repair
from mjvault.integrity.verify import verify
from mjvault.store.packfile import read_trailer_of
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli
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


def _day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _all_ids(vault: Vault) -> set[str]:
    return set(vault.store.iter_ids())


def _quarantine(vault: Vault) -> dict[str, bytes]:
    folder = vault.path / "quarantine"
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_repair_restores_a_damaged_entry_and_quarantines_its_pack(
    tmp_path: Path, encrypted: bool
) -> None:
    options = {"encrypt": True, "passphrase": PASSPHRASE, "kdf": CHEAP_KDF} if encrypted else {}
    with Vault.init(tmp_path / "a", **options) as a:  # type: ignore[arg-type]
        add_jobs(a, range(40))
        shutil.copytree(a.path, tmp_path / "b")  # a copy: the same keys, the same ids
        record = a.entry("job-7").record
        pack = pack_of(a, record)
        held = set(read_trailer_of(os.fspath(pack)).entries)
        before = _all_ids(a)
        flip_packed(a, record, 12)
        damaged_bytes = pack.read_bytes()
        report = repair(a, sources=[tmp_path / "b"])
        assert report.ok, report.to_json()
        assert [(x.object_id, x.problem) for x in report.repaired] == [(record, "corrupt")]
        assert report.repaired[0].quarantined == str(
            tmp_path / "a" / "quarantine" / _day() / pack.name
        )
        # The pack went to quarantine whole, with its damage, once its other objects had a
        # new pack; the map forgot it and nothing was lost.
        assert _quarantine(a) == {pack.name: damaged_bytes}
        assert pack.name not in a.store.packs.names()
        assert pack.name not in a.store.packs.map().packs()
        assert [(p.pack, p.restored, p.damaged) for p in report.packs] == [
            (pack.name, len(held) - 1, 1)
        ]
        assert _all_ids(a) >= before
        assert verify(a, read_data=True).ok
        assert b"a red fox number 7" in a.read_object(record)


def test_repair_without_a_copy_still_moves_the_good_objects_out(vault: Vault) -> None:
    add_jobs(vault, range(20))
    record = vault.entry("job-3").record
    pack = pack_of(vault, record)
    others = {e.hex_id for e in read_trailer_of(os.fspath(pack)).entries} - {record}
    flip_packed(vault, record)
    report = repair(vault)
    assert not report.ok
    assert [(x.object_id, x.reason) for x in report.unrepaired] == [
        (record, "no good copy found (give --from DIR or --from-midjourney)")
    ]
    assert report.unrepaired[0].quarantined and pack.name in _quarantine(vault)
    # What remains is the one object no copy could be found of (and the index, which needs
    # every record); every other object reads.
    assert {(p.kind, p.object_id) for p in report.remaining} == {
        ("missing", record),
        ("index", None),
    }
    for oid in others:
        vault.store.read(oid)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_repair_of_a_damaged_trailer_keeps_every_object_the_map_places(
    tmp_path: Path, encrypted: bool
) -> None:
    options = {"encrypt": True, "passphrase": PASSPHRASE, "kdf": CHEAP_KDF} if encrypted else {}
    vault = Vault.init(tmp_path / "v", **options)  # type: ignore[arg-type]
    add_jobs(vault, range(20))
    record = vault.entry("job-3").record
    pack = pack_of(vault, record)
    held = {e.hex_id for e in read_trailer_of(os.fspath(pack)).entries}
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as handle:
        handle.seek(-30, os.SEEK_END)
        handle.write(b"\xff")
    report = repair(vault)  # no other copy needed: the map still says where each entry is
    assert report.ok, report.to_json()
    assert [(p.pack, p.restored) for p in report.packs] == [(pack.name, len(held))]
    assert set(_quarantine(vault)) == {pack.name}
    assert held <= _all_ids(vault)
    assert verify(vault, read_data=True).ok
    # A plain vault's objects encode again to the very pack its name promised, which then
    # replaces the damaged file under that name; sealed anew, they make another pack.
    assert (pack.name in vault.store.packs.names()) is not encrypted
    vault.close()


def test_verify_and_repair_on_the_command_line_name_the_pack(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "a") as a:
        add_jobs(a, range(5))
        shutil.copytree(a.path, tmp_path / "b")
        record = a.entry("job-1").record
        pack = pack_of(a, record).name
        flip_packed(a, record)
    found = run_cli("--vault", str(tmp_path / "a"), "--json", "verify", "--read-data")
    assert found.returncode == 3
    assert [(p["object"], p["pack"]) for p in json.loads(found.stdout)["problems"]] == [
        (record, pack)
    ]
    fixed = run_cli(
        "--vault", str(tmp_path / "a"), "verify", "--repair", "--from", str(tmp_path / "b")
    )
    assert fixed.returncode == 0, fixed.stderr
    assert f"damaged pack {pack[:16]}… quarantined".encode() in fixed.stdout
    assert b"the vault is whole" in fixed.stdout
