"""Repair from a remote: `pull --repair NAME` and `verify --repair --from-remote NAME` take one
path (mjvault.integrity.repair), which verifies again after each round and rebuilds the index."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import isolate, run_cli

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.remotes.repair import repair_from_remote
from mjvault.remotes.session import connect
from mjvault.tree import Inner, Leaf, decode_node
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

JOBS = 300  # more than one leaf: the root is an inner node


def add_jobs(vault: Vault, count: int) -> None:
    with vault.writer("test") as writer:
        for n in range(count):
            image = writer.put_media(png_bytes(n, 256))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])


def damage_packed(vault: Vault, object_id: str) -> bytes:
    """Flip the last byte of a packed object inside its pack; the pack's new bytes."""
    where = vault.store.packs.locate(object_id)
    assert where is not None and not vault.store.is_loose(object_id)
    path = vault.store.packs.path(where.pack)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[where.offset + where.length - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def a_leaf(vault: Vault) -> tuple[str, Leaf]:
    head = vault.head()
    assert head is not None
    root = decode_node(vault.read_object(head.tree))
    assert isinstance(root, Inner)
    leaf_id = root.children[0][1]
    leaf = decode_node(vault.read_object(leaf_id))
    assert isinstance(leaf, Leaf) and leaf.entries
    return leaf_id, leaf


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A vault of JOBS jobs whose remote `nas` (a folder) holds all of it."""
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        add_jobs(vault, JOBS)
    return tmp_path


def test_pull_repair_finds_what_a_lost_node_hid_and_rebuilds_the_index(
    pushed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = ("--vault", str(pushed / "vault"))
    assert run_cli(capsys, *v, "remote", "add", "nas", str(pushed / "nas")).code == 0
    assert run_cli(capsys, *v, "push", "nas").code == 0
    with Vault.open(pushed / "vault") as vault:
        leaf_id, leaf = a_leaf(vault)
        hidden = leaf.entries[0]
        assert hidden.images[0] is not None
        # The leaf is damaged, and below it an image is lost: the first check cannot see the
        # image (the leaf naming it does not read), only a check after the leaf's repair can.
        vault.object_path(hidden.images[0]).unlink()
        damage_packed(vault, leaf_id)
        # And the index lost a job while still naming HEAD's tree (only a rebuild brings it).
        dropped = leaf.entries[-1].job_id
        head = vault.head()
        assert head is not None
        vault.current_index().apply([(dropped, None)], head.tree)
        assert vault.current_index().get(dropped) is None
    problems = verify_of(pushed).problems
    assert {(p.kind, p.object_id) for p in problems} == {("corrupt", leaf_id), ("index", None)}

    result = run_cli(capsys, "--json", *v, "pull", "--repair", "nas")
    assert result.code == 0, result.err
    report = result.json()
    assert set(report["repaired"]) == {leaf_id, hidden.images[0]}
    assert report["unavailable"] == [] and report["remaining_problems"] == []
    assert report["index_rebuilt"] is True and report["ok"] is True
    assert verify_of(pushed, read_data=True).ok
    with Vault.open(pushed / "vault") as vault:
        assert vault.current_index().get(dropped) is not None
        assert vault.current_index().job_count() == JOBS


def verify_of(root: Path, *, read_data: bool = False):  # type: ignore[no-untyped-def]
    with Vault.open(root / "vault") as vault:
        return verify(vault, read_data=read_data)


def test_pull_repair_names_what_the_remote_lacks_too(
    pushed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = ("--vault", str(pushed / "vault"))
    assert run_cli(capsys, *v, "remote", "add", "nas", str(pushed / "nas")).code == 0
    assert run_cli(capsys, *v, "push", "nas").code == 0
    with Vault.open(pushed / "vault") as vault:
        image = vault.entry("job-3").images[0]
        assert image is not None
        vault.object_path(image).unlink()
    next((pushed / "nas").glob(f"objects/*/{image}")).unlink()
    result = run_cli(capsys, *v, "pull", "--repair", "nas")
    assert result.code == 4, result.err  # EXIT_PARTIAL, as before
    assert f"not on the remote either: {image}" in result.err
    assert "1 damaged or missing objects, 0 repaired" in result.out
    assert "index rebuilt" in result.out
    assert "Traceback" not in result.err


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain-remote", "sealed-remote"])
def test_repair_from_remote_retires_a_damaged_pack(encrypt: bool, tmp_path: Path) -> None:
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 8)
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")), encrypt=encrypt)
    with connect(source, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        assert push(source, link).ok
    entries = list(source.entries())
    lost, damaged = entries[0].images[0], entries[1].record
    assert lost
    original = source.read_object(damaged)
    source.object_path(lost).unlink()
    data = damage_packed(source, damaged)
    pack = source.store.packs.locate(damaged)
    assert pack is not None
    assert {p.object_id for p in verify(source, read_data=True).problems} == {lost, damaged}
    with connect(source, spec, passphrase=PASSPHRASE) as link:
        report = repair_from_remote(source, link)
    assert {a.object_id for a in report.repaired} == {lost, damaged} and not report.unrepaired
    assert {a.source for a in report.repaired} == {"remote offsite"}
    assert report.ok and report.index_rebuilt and report.after is not None
    assert verify(source, read_data=True).ok
    # The damaged pack goes to quarantine whole, its other objects copied out first.
    kept = list((source.path / "quarantine").rglob(pack.pack))
    assert len(kept) == 1 and kept[0].read_bytes() == data  # damaged bytes kept
    assert not source.store.packs.path(pack.pack).exists()
    assert source.read_object(damaged) == original
    source.close()
