"""verify detects every kind of damage; --repair quarantines, refetches and rebuilds."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.repair import repair
from mjvault.integrity.verify import verify
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli
from tests.packdamage import drop_packed, flip_packed, spoil_packed


def add_jobs(vault: Vault, numbers: range) -> None:
    with vault.writer("test") as writer:
        for n in numbers:
            slots = [writer.put_media(png_bytes(n * 10 + i, 2000)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"prompt {n}"), slots)


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def flip(path: Path, offset: int = -1) -> None:
    data = bytearray(writable(path).read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def pack_of(vault: Vault, object_id: str) -> str:
    location = vault.store.packs.locate(object_id)
    assert location is not None
    return location.pack


def quarantined(vault: Vault) -> dict[str, bytes]:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = vault.path / "quarantine" / day
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


# -- detection of what test_vault.py does not cover ----------------------------------------


def test_verify_detects_damaged_record_and_missing_manifest(vault: Vault) -> None:
    add_jobs(vault, range(5))
    add_jobs(vault, range(5, 7))
    record = vault.entry("job-3").record
    flip_packed(vault, record)
    report = verify(vault, read_data=True)
    assert [(p.kind, p.object_id, p.jobs) for p in report.problems] == [
        ("corrupt", record, ["job-3"])
    ]
    older = vault.snapshots()[1]
    vault.object_path(older.id).unlink()
    problems = verify(vault).problems
    assert any(p.kind == "missing" and p.snapshots == [older.id] for p in problems)


def test_verify_detects_damaged_and_stale_index(vault: Vault) -> None:
    add_jobs(vault, range(5))
    vault.current_index().search(words=["prompt"])
    path = vault.path
    vault.close()
    with open(path / "index" / "data.mdb", "r+b") as handle:
        handle.write(b"\x00" * 8192)
    with Vault.open(path) as damaged:
        problems = verify(damaged).problems
        assert [p.kind for p in problems] == ["index"]
        assert "index rebuild" in problems[0].message
        damaged.rebuild_index()
        assert verify(damaged).ok
    # An index that reflects an older tree than HEAD (and no unfinished writer) is reported.
    with Vault.open(path) as vault2:
        index = vault2.open_index()
        index.apply([], "ab" * 32)
        assert [p.kind for p in verify(vault2).problems] == ["index"]


def test_verify_detects_head_naming_an_unlisted_snapshot(vault: Vault) -> None:
    add_jobs(vault, range(2))
    head = vault.refs.head()
    assert head is not None
    vault.refs.remove_snapshot(head)
    assert any(p.kind == "ref" for p in verify(vault).problems)


def test_verify_detects_damage_in_an_encrypted_vault(encrypted_vault: Vault) -> None:
    add_jobs(encrypted_vault, range(3))
    image = encrypted_vault.entry("job-1").images[0]
    assert image is not None
    path = writable(encrypted_vault.object_path(image))
    path.write_bytes(path.read_bytes()[:-10])
    other = encrypted_vault.entry("job-2").images[1]
    assert other is not None
    # An object copied under another name fails its tag: the id is associated data.
    writable(encrypted_vault.object_path(other)).write_bytes(
        encrypted_vault.object_path(encrypted_vault.entry("job-0").images[0] or "").read_bytes()
    )
    bad = {p.object_id for p in verify(encrypted_vault, read_data=True).problems}
    assert bad == {image, other}


# -- repair ----------------------------------------------------------------------------------


def test_repair_quarantines_and_reports_what_it_cannot_fix(vault: Vault) -> None:
    add_jobs(vault, range(4))
    image = vault.entry("job-2").images[0]
    assert image is not None
    flip(vault.object_path(image), 100)
    damaged_bytes = vault.object_path(image).read_bytes()
    report = repair(vault)
    assert not report.ok
    assert [a.object_id for a in report.unrepaired] == [image]
    assert report.unrepaired[0].jobs == ["job-2"]
    assert quarantined(vault) == {image: damaged_bytes}  # moved aside, never deleted
    assert not vault.object_path(image).exists()
    assert report.index_rebuilt
    # Now it is missing, and says so; a second repair does not quarantine anything more.
    assert [p.kind for p in report.remaining] == ["missing"]
    again = repair(vault)
    assert [a.problem for a in again.unrepaired] == ["missing"]
    assert len(quarantined(vault)) == 1


def test_repair_refetches_from_another_vault(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "a") as a, Vault.init(tmp_path / "b") as b:
        add_jobs(a, range(200))  # more than one leaf: the tree has inner nodes
        add_jobs(b, range(200))
        head = a.head()
        assert head is not None
        entries = [a.entry(f"job-{n}") for n in (3, 4, 5)]
        image, record, lost = entries[0].images[0], entries[1].record, entries[2].images[1]
        assert image and lost
        leaf = next(n for n in a.tree.node_ids(head.tree) if n != head.tree)
        a.tree._cache.clear()
        below = list(a.tree.walk(leaf))
        drop_packed(a, below[0].record)  # lost, and hidden below the damaged node
        packs_before = set(a.store.packs.names())
        packed_before = set(a.store.packs.iter_ids())
        flip(a.object_path(image))  # flipped byte
        # Records and tree nodes are packed: damage their entries in place.
        spoil_packed(a, record, lambda d: b"MJVO\x01\x00short".ljust(len(d), b"!"))  # wrong
        spoil_packed(a, leaf, lambda d: d[:20] + bytes(len(d) - 20))  # a tree node, cut
        damaged_packs = {pack_of(a, record), pack_of(a, leaf)}
        a.object_path(lost).unlink()  # deleted
        report = repair(a, sources=[b.path])
        assert report.ok, report.to_json()
        fixed = {x.object_id for x in report.repaired}
        assert {image, record, lost, leaf, below[0].record} <= fixed
        # The damaged packs went to quarantine whole; every object they held is still here.
        assert set(quarantined(a)) == {image, *damaged_packs}
        assert not damaged_packs & set(a.store.packs.names()) and damaged_packs <= packs_before
        assert packed_before | {below[0].record} <= set(a.store.packs.iter_ids())
        assert report.index_rebuilt
        assert verify(a, read_data=True).ok
        assert a.current_index().get("job-5") is not None


def test_repair_rehashes_the_original_archive_folder(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_sample_archive(archive, jobs=12, seed=3)
    with Vault.init(tmp_path / "vault") as vault:
        import_archive(vault, archive)
        entries = list(vault.entries())
        lost = [e.images[0] for e in entries[:3] if e.images and e.images[0]]
        record = entries[4].record
        for oid in lost:
            vault.object_path(oid).unlink()
        flip_packed(vault, record)
        report = repair(vault, sources=[archive])
        assert report.ok, report.to_json()
        sources = {a.object_id: a.source for a in report.repaired}
        assert set(sources) == {*lost, record}
        assert sources[record] is not None and sources[record].endswith(".json")
        assert verify(vault, read_data=True).ok


def test_repair_of_an_encrypted_vault_accepts_only_copies_under_its_keys(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "v", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as v:
        add_jobs(v, range(3))
        shutil.copytree(v.path, tmp_path / "clone")  # a clone: same keys, same ids
        with Vault.init(
            tmp_path / "stranger", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF
        ) as stranger:
            add_jobs(stranger, range(3))
        image = v.entry("job-1").images[0]
        assert image is not None
        flip(v.object_path(image))
        first = repair(v, sources=[tmp_path / "stranger"])
        assert [a.object_id for a in first.unrepaired] == [image]
        second = repair(v, sources=[tmp_path / "clone"])
        assert second.ok and verify(v, read_data=True).ok


def test_verify_repair_command_line_exit_codes_and_json(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "a") as a, Vault.init(tmp_path / "b") as b:
        add_jobs(a, range(3))
        add_jobs(b, range(3))
        images = [a.entry(f"job-{n}").images[0] for n in range(3)]
        a.object_path(images[0] or "").unlink()
    plain = run_cli("--vault", str(tmp_path / "a"), "verify")
    assert plain.returncode == 3 and b"missing" in plain.stderr
    fixed = run_cli("--vault", str(tmp_path / "a"), "verify", "--repair", "--from", str(b.path))
    assert fixed.returncode == 0, fixed.stderr
    assert b"repaired" in fixed.stdout and b"the vault is whole" in fixed.stdout
    # Damage that nothing can repair: exit 3, and the JSON names it.
    with Vault.open(tmp_path / "a") as again:
        flip(again.object_path(images[1] or ""))
    broken = run_cli("--vault", str(tmp_path / "a"), "--json", "verify", "--repair")
    assert broken.returncode == 3
    doc = json.loads(broken.stdout)
    assert [u["object_id"] for u in doc["unrepaired"]] == [images[1]]
    assert doc["unrepaired"][0]["quarantined"]
    usage = run_cli("--vault", str(tmp_path / "a"), "verify", "--from", str(b.path))
    assert usage.returncode == 2


def test_repair_downloads_damaged_images_from_midjourney(tmp_path: Path) -> None:
    from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
    from mjvault.sync import sync
    from mjvault.testing.accounts import Account
    from mjvault.testing.server import FakeMidjourney

    account = Account.generate(7, 6)
    with FakeMidjourney(account) as site, Vault.init(tmp_path / "v") as vault:
        settings = ClientSettings(
            web_base=site.web_base,
            cdn_base=site.cdn_base,
            token=site.token,
            user_id=site.user_id,
            max_rps=1000,
            burst=1000,
        )
        with MidjourneyClient(settings) as client:
            sync(vault, client)
            entries = [e for e in vault.entries() if any(e.images)]
            images = [next(i for i in e.images if i) for e in entries[:2]]
            flip(vault.object_path(images[0]))
            vault.object_path(images[1]).unlink()
            report = repair(vault, midjourney=client)
        assert report.ok, report.to_json()
        assert all(a.source and a.source.startswith("midjourney:") for a in report.repaired)
        assert {a.object_id for a in report.repaired} == set(images)
        assert verify(vault, read_data=True).ok


def test_repair_waits_or_fails_on_the_lock(vault: Vault) -> None:
    from mjvault.errors import VaultLocked

    add_jobs(vault, range(1))
    writer = Vault.open(vault.path).writer("busy")
    writer.start()
    try:
        with pytest.raises(VaultLocked):
            repair(vault)
    finally:
        writer.commit()


def test_repair_rebuilds_a_damaged_index_and_relists_head(vault: Vault) -> None:
    add_jobs(vault, range(3))
    vault.current_index().search(words=["prompt"])
    head = vault.refs.head()
    assert head is not None
    vault.refs.remove_snapshot(head)
    path = vault.path
    vault.close()
    with open(path / "index" / "data.mdb", "r+b") as handle:
        handle.write(b"\x00" * 8192)
    with Vault.open(path) as damaged:
        assert {p.kind for p in verify(damaged).problems} == {"ref"}  # index: once HEAD is listed
        report = repair(damaged)
        assert report.ok, report.to_json()
        assert report.index_rebuilt and damaged.refs.snapshot_ids() == [head]
        assert damaged.current_index().search(words=["prompt", "2"]) == ["job-2"]


def test_an_unrepairable_snapshot_can_be_forgotten_by_id(vault: Vault) -> None:
    from mjvault.errors import IntegrityError
    from mjvault.integrity.forget import KeepPolicy, forget_snapshots
    from mjvault.integrity.gc import gc

    add_jobs(vault, range(2))
    add_jobs(vault, range(2, 4))
    older = vault.snapshots()[1]
    flip(vault.object_path(older.id))
    report = repair(vault)
    assert [a.object_id for a in report.unrepaired] == [older.id]
    with pytest.raises(IntegrityError, match="verify --repair"):
        gc(vault)  # it will not sweep while a snapshot cannot be read
    with pytest.raises(IntegrityError):
        forget_snapshots(vault, policy=KeepPolicy(last=1))
    forget_snapshots(vault, snapshot_ids=[older.id[:12]])
    assert verify(vault, read_data=True).ok
    gc(vault, grace_seconds=0)
    assert verify(vault, read_data=True).ok


def test_repair_takes_objects_from_any_fetcher_but_checks_them(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "a") as a, Vault.init(tmp_path / "b") as b:
        add_jobs(a, range(3))
        add_jobs(b, range(3))
        images = [a.entry(f"job-{n}").images[0] or "" for n in range(2)]
        for oid in images:
            flip(a.object_path(oid))

        def liar(ids: set[str]) -> list[tuple[str, bytes, str]]:
            return [(oid, b"\x89PNG\r\n\x1a\nnot the image", "liar") for oid in ids]

        def honest(ids: set[str]) -> list[tuple[str, bytes, str]]:
            return [(oid, b.read_object(oid), "remote b") for oid in ids if oid == images[0]]

        report = repair(a, fetchers=[liar, honest])
        assert {x.object_id: x.source for x in report.repaired} == {images[0]: "remote b"}
        assert [x.object_id for x in report.unrepaired] == [images[1]]
        assert a.read_object(images[0]) == b.read_object(images[0])


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain-remote", "sealed-remote"])
def test_verify_repair_refetches_from_a_configured_remote(tmp_path: Path, encrypt: bool) -> None:
    with Vault.init(tmp_path / "v") as vault:
        add_jobs(vault, range(4))
        images = [vault.entry(f"job-{n}").images[1] or "" for n in range(2)]
    path = str(tmp_path / "v")
    env = {"MJVAULT_PASSPHRASE": "remote passphrase"}
    added = run_cli(
        "--vault", path, "remote", "add", "nas", str(tmp_path / "nas"),
        *(["--encrypt"] if encrypt else []), env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    pushed = run_cli("--vault", path, "push", "nas", env=env)
    assert pushed.returncode == 0, pushed.stderr
    with Vault.open(path) as vault:
        flip(vault.object_path(images[0]))
        vault.object_path(images[1]).unlink()
    fixed = run_cli("--vault", path, "verify", "--repair", "--from-remote", "nas", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.count(b"from remote nas") == 2
    with Vault.open(path) as vault:
        assert verify(vault, read_data=True).ok
        assert set(quarantined(vault)) == {images[0]}


def test_sealed_object_check_without_copies_catches_every_damage(encrypted_vault: Vault) -> None:
    from mjvault.errors import CorruptObject
    from mjvault.store.objects import REUSED_BUFFER_MAX

    big = png_bytes(5, REUSED_BUFFER_MAX + 1000)  # beyond the reused per-thread buffers
    with encrypted_vault.writer("t") as writer:
        media = [writer.put_media(png_bytes(n, 5000)) for n in range(4)] + [writer.put_media(big)]
        writer.add_job(record_json("j", "a prompt " * 50), media)
    store = encrypted_vault.store
    record = encrypted_vault.entry("j").record  # zstd inside the seal
    for oid in media:
        assert store.check(oid) == store.path(oid).stat().st_size
    assert store.check(record) == store.stored_size(record)  # packed: its entry's length
    damage = {
        media[0]: lambda d: d[:-1] + bytes([d[-1] ^ 1]),  # tag
        media[1]: lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:],  # nonce
        media[2]: lambda d: d[:20],  # shorter than header and tag
        media[3]: lambda d: b"MJVO" + d[4:],  # not sealed
        media[4]: lambda d: d[:5000] + bytes([d[5000] ^ 1]) + d[5001:],  # ciphertext
    }
    for oid, spoil in damage.items():
        path = writable(store.path(oid))
        path.write_bytes(spoil(path.read_bytes()))
        with pytest.raises(CorruptObject):
            store.check(oid)
    # The record's entry in its pack: its second half zeroed (ciphertext and tag).
    spoil_packed(encrypted_vault, record, lambda d: d[: len(d) // 2] + bytes(len(d) - len(d) // 2))
    with pytest.raises(CorruptObject):
        store.check(record)
