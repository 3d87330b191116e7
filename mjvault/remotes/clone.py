"""``mjvault clone``: a complete, working vault from a remote alone (the disaster-recovery path).

The new vault is made to match the remote: a plain remote gives a plain vault; an encrypted
vault's remote gives an encrypted vault holding the same key files (the same passphrases
open it); a plain vault's encrypting remote gives a plain vault again, every id translated
back, so the HEAD tree id is the one the original vault had. The remote is registered as
``origin``; an interrupted clone is finished by running the same command again.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mjvault.errors import VaultExists
from mjvault.remotes import session
from mjvault.remotes.config import RemoteSpec, load_spec, save_spec
from mjvault.remotes.pull import DEFAULT_THREADS, ProgressFn, PullReport, pull
from mjvault.remotes.remote import (
    PassphraseSource,
    RemoteMismatch,
    download_keyfiles,
    read_info,
    resolve_passphrase,
    unlock_remote,
)
from mjvault.remotes.reseal import current_keyfiles
from mjvault.store.fsutil import atomic_write
from mjvault.vault import Vault, is_vault, lay_out_vault

ORIGIN = "origin"


def clone(
    spec: RemoteSpec,
    target: str | os.PathLike[str],
    *,
    passphrase: PassphraseSource = None,
    threads: int = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
) -> tuple[Vault, PullReport]:
    """Clone the remote described by ``spec`` (its name is ignored; it becomes ``origin``)."""
    root = Path(target).expanduser()
    spec = replace(spec, name=ORIGIN)
    if is_vault(root):
        existing = _origin_of(root)
        if existing is None or existing.url != spec.url:
            raise VaultExists(f"{root} is already a vault (not a clone of {spec.url})")
        spec = existing  # an interrupted clone: carry on where it stopped
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise VaultExists(f"{root} exists and is not empty", hint="choose a new or empty directory")
    backend = session.open_storage(spec)  # looked up each time: tests may replace it
    try:
        info = read_info(backend)
        if info is None:
            raise RemoteMismatch(f"{backend.describe()} holds no mjvault remote")
        if info.encrypted:
            # Asked once (a prompt is not repeated), and a wrong one fails before any work.
            secret = resolve_passphrase(passphrase, f"the remote {backend.describe()}")
            passphrase = secret
            unlock_remote(backend, info, secret)
        if not is_vault(root):
            if info.encrypted and info.clone_as == "encrypted":
                keyfiles = current_keyfiles(backend, download_keyfiles(backend), passphrase)
                _init_vault(root, encryption=True, keyfiles=keyfiles)
            else:
                _init_vault(root, encryption=False, keyfiles={})
                spec = replace(spec, encrypt=info.encrypted)
            save_spec(root, spec)
    finally:
        backend.close()
    vault = Vault.open(root, passphrase=passphrase)
    try:
        with session.connect(vault, spec, passphrase=passphrase) as link:
            report = pull(vault, link, threads=threads, progress=progress, update_index=False)
        report.jobs_indexed = vault.rebuild_index()
    except BaseException:
        vault.close()
        raise
    return vault, report


def _origin_of(root: Path) -> RemoteSpec | None:
    try:
        return load_spec(root, ORIGIN)
    except Exception:
        return None


def _init_vault(root: Path, *, encryption: bool, keyfiles: dict[str, bytes]) -> None:
    """An empty vault laid out as ``Vault.init`` does, but with the remote's key files."""
    root.mkdir(parents=True, exist_ok=True)
    if encryption:
        keys_dir = root / "keys"
        keys_dir.mkdir(mode=0o700, exist_ok=True)
        for key_id, data in keyfiles.items():
            atomic_write(keys_dir / key_id, data, mode=0o600)
    lay_out_vault(root, encrypted=encryption)
