"""A folder remote is owner-only, as the vault's own keys are: 0700 directories, 0600 files.

Key files wrap the master secret under a passphrase: readable by others, they invite an
offline guessing attack. A plain remote's objects are as private as the archive they copy.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.remotes.session import connect
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): mode(p) for p in [root, *root.rglob("*")]}


def loose(root: Path) -> dict[str, int]:
    """Everything under ``root`` that someone other than the owner could read or enter."""
    return {name: m for name, m in modes(root).items() if m & 0o077}


def pushed_vault(tmp_path: Path, *, encrypted: bool, encrypt_remote: bool = False) -> Path:
    kw = {"encrypt": True, "passphrase": PASSPHRASE, "kdf": CHEAP_KDF} if encrypted else {}
    vault = Vault.init(tmp_path / "vault", **kw)  # type: ignore[arg-type]
    with vault.writer("test") as writer:
        image = writer.put_media(png_bytes(1))
        writer.add_job(record_json("job-1"), [image])
    remote = tmp_path / "drive" / "mj"
    spec = RemoteSpec("drive", normalise_url(str(remote)), encrypt=encrypt_remote)
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        assert push(vault, link).ok
    vault.close()
    return remote


@pytest.mark.parametrize(
    ("encrypted", "encrypt_remote"), [(True, False), (False, True), (False, False)]
)
def test_a_folder_remote_is_owner_only(
    tmp_path: Path, encrypted: bool, encrypt_remote: bool
) -> None:
    remote = pushed_vault(tmp_path, encrypted=encrypted, encrypt_remote=encrypt_remote)
    assert mode(remote / "config") == 0o600
    if encrypted or encrypt_remote:
        assert mode(remote / "keys") == 0o700
        assert {mode(p) for p in (remote / "keys").iterdir()} == {0o600}
    assert loose(remote) == {}


def test_clones_keep_their_key_files_private(tmp_path: Path) -> None:
    remote = pushed_vault(tmp_path, encrypted=True)
    copy, _ = clone(
        RemoteSpec("origin", normalise_url(str(remote))), tmp_path / "copy", passphrase=PASSPHRASE
    )
    copy.close()
    assert mode(tmp_path / "copy") == 0o700
    assert mode(tmp_path / "copy" / "keys") == 0o700
    assert {mode(p) for p in (tmp_path / "copy" / "keys").iterdir()} == {0o600}
    assert mode(tmp_path / "copy" / "remotes") == 0o700
    assert mode(tmp_path / "copy" / "remotes" / "origin.json") == 0o600


def test_push_tightens_the_key_files_of_an_older_remote(tmp_path: Path) -> None:
    remote = pushed_vault(tmp_path, encrypted=True)
    # As an older mjvault left it: key files and config readable by all.
    for path in [remote, remote / "keys"]:
        path.chmod(0o755)
    for path in [remote / "config", *(remote / "keys").iterdir()]:
        path.chmod(0o644)
    with Vault.open(tmp_path / "vault", passphrase=PASSPHRASE) as vault:
        spec = RemoteSpec("drive", normalise_url(str(remote)))
        with connect(vault, spec, passphrase=PASSPHRASE) as link:
            assert push(vault, link).ok
    assert mode(remote / "keys") == 0o700
    assert {mode(p) for p in (remote / "keys").iterdir()} == {0o600}
    assert mode(remote / "config") == 0o600


def test_an_existing_remote_folder_keeps_its_own_mode(tmp_path: Path) -> None:
    # A mount point or a folder the user made for it is theirs; what mjvault adds is private.
    (tmp_path / "drive" / "mj").mkdir(parents=True, mode=0o755)
    remote = pushed_vault(tmp_path, encrypted=True)
    assert mode(remote) == 0o755
    assert loose(remote) == {".": 0o755}
