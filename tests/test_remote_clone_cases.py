"""The cases of `clone` (mjvault/remotes/clone.py) around the round trip: where it refuses to
write, an interrupted clone finished by the same call, a folder that holds no remote, and the
vault each kind of remote gives back. Real vaults pushed to a real folder remote."""

from __future__ import annotations

from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import VaultExists, WrongPassphrase
from mjvault.remotes.clone import ORIGIN, clone
from mjvault.remotes.config import RemoteSpec, load_spec, normalise_url, save_spec
from mjvault.remotes.push import push
from mjvault.remotes.remote import RemoteMismatch
from mjvault.remotes.session import connect
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json


def folder_spec(path: Path, *, encrypt: bool = False) -> RemoteSpec:
    return RemoteSpec("offsite", normalise_url(str(path)), encrypt=encrypt)


def pushed(tmp_path: Path, *, encrypted_vault: bool = False, encrypt: bool = False) -> RemoteSpec:
    """A vault of three jobs pushed to a folder remote; the remote's spec."""
    if encrypted_vault:
        source = Vault.init(tmp_path / "src", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        source = Vault.init(tmp_path / "src")
    spec = folder_spec(tmp_path / "remote", encrypt=encrypt)
    with source:
        with source.writer("test") as writer:
            for n in range(3):
                image = writer.put_media(png_bytes(n, 64))
                writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image])
        with connect(source, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
            assert push(source, link).ok
    return spec


@pytest.fixture
def spec(tmp_path: Path) -> RemoteSpec:
    return pushed(tmp_path)


def test_a_clone_registers_its_remote_as_origin(spec: RemoteSpec, tmp_path: Path) -> None:
    copy, report = clone(spec, tmp_path / "copy")
    with copy:
        assert report.ok and report.jobs_indexed == 3
        assert load_spec(copy.path, ORIGIN) == RemoteSpec(ORIGIN, spec.url)
        assert len(copy.current_index().search(words=["fox"])) == 3


def test_a_clone_into_an_empty_folder_that_exists(spec: RemoteSpec, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    copy, report = clone(spec, tmp_path / "empty")
    with copy:
        assert report.ok and report.jobs_indexed == 3


def test_a_target_that_holds_something_is_refused(spec: RemoteSpec, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(VaultExists, match="exists and is not empty"):
        clone(spec, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_a_file_as_the_target_is_refused(spec: RemoteSpec, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("mine")
    with pytest.raises(VaultExists, match="exists and is not empty"):
        clone(spec, target)
    assert target.read_text() == "mine"


def test_a_vault_that_is_no_clone_is_refused(spec: RemoteSpec, tmp_path: Path) -> None:
    Vault.init(tmp_path / "mine").close()
    with pytest.raises(VaultExists, match=r"already a vault \(not a clone of file://"):
        clone(spec, tmp_path / "mine")


def test_a_clone_of_another_remote_is_refused(spec: RemoteSpec, tmp_path: Path) -> None:
    Vault.init(tmp_path / "mine").close()
    save_spec(tmp_path / "mine", RemoteSpec(ORIGIN, str(tmp_path / "elsewhere")))
    with pytest.raises(VaultExists, match="already a vault"):
        clone(spec, tmp_path / "mine")


def test_a_vault_whose_origin_is_broken_is_refused(spec: RemoteSpec, tmp_path: Path) -> None:
    Vault.init(tmp_path / "mine").close()
    (tmp_path / "mine" / "remotes").mkdir()
    (tmp_path / "mine" / "remotes" / "origin.json").write_text("{broken")
    with pytest.raises(VaultExists, match="already a vault"):
        clone(spec, tmp_path / "mine")


def test_an_interrupted_clone_is_finished_by_the_same_call(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    # What a clone stopped after its first step leaves: the vault laid out, origin saved,
    # nothing pulled yet.
    target = tmp_path / "copy"
    Vault.init(target).close()
    save_spec(target, RemoteSpec(ORIGIN, spec.url))
    copy, report = clone(spec, target)
    with copy:
        assert report.ok and report.snapshots_received == 1 and report.jobs_indexed == 3
    # and once more: nothing left to do
    again, report = clone(spec, target)
    with again:
        assert report.ok and report.snapshots_received == 0 and report.jobs_indexed == 3


def test_a_folder_that_holds_no_remote(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(RemoteMismatch, match="holds no mjvault remote"):
        clone(folder_spec(tmp_path / "nothing"), tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_an_encrypting_remote_gives_back_a_plain_vault(tmp_path: Path) -> None:
    spec = pushed(tmp_path, encrypt=True)
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and not copy.encrypted
        # origin keeps sealing what is pushed to it
        assert load_spec(copy.path, ORIGIN).encrypt
        assert len(copy.current_index().search(words=["fox"])) == 3


def test_an_encrypted_vaults_remote_gives_back_an_encrypted_vault(tmp_path: Path) -> None:
    spec = pushed(tmp_path, encrypted_vault=True)
    with pytest.raises(WrongPassphrase):
        clone(spec, tmp_path / "wrong", passphrase="not it")
    assert not (tmp_path / "wrong").exists()
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and copy.encrypted and report.jobs_indexed == 3
        assert sorted((copy.path / "keys").iterdir())
    # the same passphrase opens it again
    Vault.open(tmp_path / "copy", passphrase=PASSPHRASE).close()


def test_a_remote_that_lost_objects_gives_a_clone_that_says_so(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    remote = Path(spec.url.removeprefix("file://"))
    lost = [p for p in (remote / "objects").rglob("*") if p.is_file()]
    assert lost
    for path in lost:
        path.unlink()
    copy, report = clone(spec, tmp_path / "copy")
    with copy:
        # nothing half-pulled is taken for the history: the report names what is missing
        assert not report.ok and report.snapshots_received == 0 and copy.head() is None
        assert len(report.problems) == 1 and "is missing from" in report.problems[0]
        assert report.jobs_indexed == 0
