"""The vault through its library API: objects, snapshots, index, keys, locks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import blake3
import pytest

from mjvault import Vault
from mjvault.errors import (
    CorruptObject,
    JobNotFound,
    ObjectNotFound,
    VaultExists,
    VaultLocked,
    VaultNotFound,
    WrongPassphrase,
)
from mjvault.integrity.verify import verify
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli
from tests.packdamage import spoil_packed


def add_jobs(vault: Vault, count: int, start: int = 0, source: str = "test") -> None:
    with vault.writer(source) as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n}", f"prompt number {n} fox"), [image, None])


def test_plain_image_object_is_the_image_and_b3sum_is_its_name(vault: Vault) -> None:
    data = png_bytes(1, 5000)
    with vault.writer("t") as writer:
        oid = writer.put_media(data)
        writer.add_job(record_json("j1"), [oid])
    path = vault.object_path(oid)
    assert path.read_bytes() == data
    assert blake3.blake3(path.read_bytes()).hexdigest() == oid
    assert vault.read_object(oid) == data


def test_objects_are_visible_only_after_their_batch_is_durable(vault: Vault) -> None:
    writer = vault.writer("t")
    writer.start()
    oid = writer.put_media(png_bytes(2))
    assert not vault.object_path(oid).exists()  # staged in tmp/, not yet published
    writer.add_job(record_json("j2"), [oid])
    writer.commit()
    assert vault.object_path(oid).exists()


def test_snapshots_log_and_index(vault: Vault) -> None:
    add_jobs(vault, 300)
    add_jobs(vault, 10, start=300)
    snapshots = vault.snapshots()
    assert [s.stats["jobs"] for s in snapshots] == [310, 300]
    assert snapshots[0].stats["added"] == 10 and snapshots[0].parent == snapshots[1].id
    assert snapshots[0].stats["images"] == 310
    assert len(vault.current_index().search(words=["fox"])) == 310
    assert vault.current_index().search(words=["number", "305"]) == ["job-305"]
    assert len(vault.current_index().search(params={"ar": "16:9", "version": "6"})) == 310
    assert sum(1 for _ in vault.entries(snapshots[1])) == 300


def test_reimport_of_identical_jobs_writes_no_snapshot(vault: Vault) -> None:
    add_jobs(vault, 20)
    with vault.writer("again") as writer:
        for n in range(20):
            image = writer.put_media(png_bytes(n))
            assert (
                writer.add_job(record_json(f"job-{n}", f"prompt number {n} fox"), [image, None])
                == "unchanged"
            )
    assert writer.snapshot is None
    assert len(vault.snapshots()) == 1


def test_a_failed_fetch_never_drops_a_held_image(vault: Vault) -> None:
    add_jobs(vault, 1)
    held = vault.entry("job-0").images[0]
    with vault.writer("later") as writer:
        writer.add_job(record_json("job-0", "prompt number 0 fox"), [None, None])
    assert vault.entry("job-0").images[0] == held


def test_index_is_a_cache_deleted_or_damaged_it_is_rebuilt(vault: Vault) -> None:
    add_jobs(vault, 50)
    path = vault.path
    vault.close()
    shutil.rmtree(path / "index")
    reopened = Vault.open(path)
    assert len(reopened.current_index().search(words=["fox"])) == 50
    reopened.close()
    with open(path / "index" / "data.mdb", "r+b") as handle:
        handle.seek(0)
        handle.write(b"\xff" * 4096)
    damaged = Vault.open(path)
    assert damaged.rebuild_index() == 50
    assert len(damaged.current_index().search(words=["fox"])) == 50
    assert verify(damaged).ok
    damaged.close()


def test_verify_detects_flip_truncate_delete_and_wrong_object(vault: Vault) -> None:
    add_jobs(vault, 5)
    assert verify(vault, read_data=True).ok
    images = [vault.entry(f"job-{n}").images[0] for n in range(4)]
    paths = [vault.object_path(oid) for oid in images]
    for path in paths:
        os.chmod(path, 0o644)
    flipped = bytearray(paths[0].read_bytes())
    flipped[100] ^= 0x01
    paths[0].write_bytes(bytes(flipped))
    paths[1].write_bytes(paths[1].read_bytes()[:50])
    paths[2].unlink()
    paths[3].write_bytes(png_bytes(999))  # a valid image, but not the one named
    structural = verify(vault)
    assert [p.kind for p in structural.problems] == ["missing"]
    assert structural.problems[0].jobs == ["job-2"]
    full = verify(vault, read_data=True)
    bad = {p.object_id: p for p in full.problems}
    assert set(bad) == set(images)
    assert bad[images[0]].jobs == ["job-0"] and bad[images[3]].jobs == ["job-3"]
    with pytest.raises(CorruptObject):
        vault.read_object(images[0])
    with pytest.raises(ObjectNotFound):
        vault.read_object(images[2])


def test_verify_detects_damaged_manifest_and_tree_node(vault: Vault) -> None:
    add_jobs(vault, 5)
    head = vault.head()
    assert head is not None
    # The root node is packed: its last bytes in the pack are spoiled (zeroed).
    spoil_packed(vault, head.tree, lambda data: data[:-3] + bytes(3))
    problems = verify(vault).problems
    assert any(p.object_id == head.tree and head.id in p.snapshots for p in problems)
    manifest = vault.object_path(head.id)
    os.chmod(manifest, 0o644)
    manifest.write_bytes(b"garbage")
    problems = verify(vault).problems
    assert any(p.object_id == head.id for p in problems)


def test_subset_parts_cover_everything(vault: Vault) -> None:
    add_jobs(vault, 40)
    total = verify(vault, read_data=True).objects_read
    parts = sum(verify(vault, subset=f"{n}/3").objects_read for n in (1, 2, 3))
    assert parts == total


def test_init_refuses_existing_and_open_refuses_non_vault(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(VaultExists):
        Vault.init(tmp_path / "full")
    with pytest.raises(VaultNotFound):
        Vault.open(tmp_path / "full")


def test_encrypted_vault_round_trip_and_names_leak_nothing(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    data = png_bytes(7, 2000)
    with encrypted_vault.writer("t") as writer:
        oid = writer.put_media(data)
        writer.add_job(record_json("secret-job", "a very private prompt"), [oid])
    assert oid != blake3.blake3(data).hexdigest()
    stored = encrypted_vault.object_path(oid).read_bytes()
    assert data not in stored and stored.startswith(b"MJVE")
    for path in (encrypted_vault.path / "objects").rglob("*"):
        if path.is_file():
            assert b"private" not in path.read_bytes()
    keyfile = next((encrypted_vault.path / "keys").iterdir())
    assert keyfile.stat().st_mode & 0o777 == 0o600
    reopened = Vault.open(encrypted_vault.path, passphrase=PASSPHRASE)
    assert reopened.read_object(oid) == data
    assert reopened.job(reopened.entry("secret-job")).prompt == "a very private prompt"
    with pytest.raises(WrongPassphrase):
        Vault.open(encrypted_vault.path, passphrase="wrong")


def test_flipped_byte_in_encrypted_manifest_is_detected(encrypted_vault: Vault) -> None:
    with encrypted_vault.writer("t") as writer:
        writer.add_job(record_json("j"), [])
    head = encrypted_vault.head()
    assert head is not None
    path = encrypted_vault.object_path(head.id)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObject):
        encrypted_vault.head()
    assert any(p.object_id == head.id for p in verify(encrypted_vault).problems)


def test_keys_add_remove_and_change_passphrase(encrypted_vault: Vault) -> None:
    path = encrypted_vault.path
    second = encrypted_vault.add_key("second passphrase", label="laptop", kdf=CHEAP_KDF)
    assert Vault.open(path, passphrase="second passphrase").id == encrypted_vault.id
    first = next(k["id"] for k in encrypted_vault.list_keys() if k["id"] != second)
    encrypted_vault.remove_key(first)
    with pytest.raises(WrongPassphrase):
        Vault.open(path, passphrase=PASSPHRASE)
    encrypted_vault.change_passphrase("second passphrase", "third", kdf=CHEAP_KDF)
    assert Vault.open(path, passphrase="third").id == encrypted_vault.id
    with pytest.raises(WrongPassphrase):
        Vault.open(path, passphrase="second passphrase")
    only = encrypted_vault.list_keys()
    assert len(only) == 1
    with pytest.raises(Exception, match="last key"):
        encrypted_vault.remove_key(only[0]["id"])


def test_one_writer_at_a_time_and_readers_never_block(vault: Vault) -> None:
    add_jobs(vault, 3)
    first = vault.writer("one")
    first.start()
    try:
        with pytest.raises(VaultLocked, match="locked by pid"):
            Vault.open(vault.path).writer("two").start()
        reader = Vault.open(vault.path)
        assert reader.entry("job-1").job_id == "job-1"
        assert len(reader.current_index().search(words=["fox"])) == 3
        reader.close()
    finally:
        first.commit()


@pytest.mark.parametrize("encrypted", [False, True])
def test_find_job_by_a_unique_prefix_from_the_index(tmp_path: Path, encrypted: bool) -> None:
    """A prefix is looked up in the index (a range of its job keys, or one bucket of a sealed
    index's vocabulary): one job is found, two are ambiguous, none or a too short one is not
    found; each with a message naming the prefix."""
    vault = (
        Vault.init(tmp_path / "v", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
        if encrypted
        else Vault.init(tmp_path / "v")
    )
    ids = ["3f2a1b9c-one", "3f2a1b77-two", "3f2a1c00-three", "a0000000-four"]
    with vault.writer("test") as writer:
        for n, job_id in enumerate(ids):
            writer.add_job(record_json(job_id), [writer.put_media(png_bytes(n))])
    assert vault.find_job("3f2a1b9c-one").job_id == "3f2a1b9c-one"  # a whole id
    assert vault.find_job("3f2a1b9").job_id == "3f2a1b9c-one"
    assert vault.find_job("3f2a1c").job_id == "3f2a1c00-three"
    with pytest.raises(JobNotFound, match=r"job prefix 3f2a1b is ambiguous \(2 jobs\)"):
        vault.find_job("3f2a1b")
    for missing in ("3f2a1d", "b00000", "3f2a1"):  # none; none; too short to look up
        with pytest.raises(JobNotFound, match=f"no job {missing} in the vault"):
            vault.find_job(missing)
    vault.close()
    if not encrypted:  # the command says it in one line, and exits non-zero
        shown = run_cli("--vault", str(tmp_path / "v"), "show", "3f2a1b")
        assert shown.returncode != 0 and b"Traceback" not in shown.stderr
        assert b"job prefix 3f2a1b is ambiguous (2 jobs)" in shown.stderr
