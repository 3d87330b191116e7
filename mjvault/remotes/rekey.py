"""``mjvault key passwd --remote NAME``: the passphrase of an encrypted remote's key files.

An *encrypting remote* (a plain vault's ``remote add --encrypt``) has a master secret of its
own, wrapped in its key files. Changing its passphrase wraps the same secret under the new
passphrase in a new key file, uploaded create-only, and only then deletes the key file the
old passphrase opened. A run killed between the two leaves both: either passphrase opens the
remote, and running the command again (with either) finishes the change. Objects are never
re-encrypted, the id map stays valid (same secret, same ``key_check``).

An encrypted vault's remote holds copies of the vault's own key files, so its passphrases are
the vault's. There the command makes the remote's key files those of the vault: after
``mjvault key passwd`` (or ``key add``/``key remove``) locally, the vault's new key files are
uploaded and the ones it no longer has are deleted, so an old passphrase stops opening the
remote too. A push only ever adds key files, never deletes one (another clone of the vault
may still use it); deleting is this explicit command's job.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mjvault.errors import MjvaultError
from mjvault.remotes.backend import Backend
from mjvault.remotes.remote import (
    KEYS_PREFIX,
    RemoteInfo,
    RemoteMismatch,
    download_keyfiles,
    key_check,
    local_keyfiles,
    upload_keyfiles,
)
from mjvault.reports import Report
from mjvault.store.crypto import KdfParams, VaultKeys, unwrap_master, write_keyfile


@dataclass
class RekeyReport(Report):
    #: "passphrase" (an encrypting remote) or "mirrored" (an encrypted vault's remote).
    mode: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def change_remote_passphrase(
    backend: Backend,
    info: RemoteInfo,
    old_passphrase: str,
    new_passphrase: str,
    *,
    kdf: KdfParams | None = None,
) -> RekeyReport:
    """Wrap the remote's master secret under ``new_passphrase``; retire the old key file."""
    if not info.encrypted:
        raise MjvaultError(f"{backend.describe()} is a plain remote: it has no passphrase")
    blobs = download_keyfiles(backend)
    with tempfile.TemporaryDirectory(prefix="mjvault-keys-") as tmp:
        for key_id, data in blobs.items():
            (Path(tmp) / key_id).write_bytes(data)
        master, old_id = unwrap_master(Path(tmp), old_passphrase)
    if info.encryption is None or info.encryption.get("key_check") != key_check(VaultKeys(master)):
        raise RemoteMismatch(f"{backend.describe()}: its key files do not match its config")
    with tempfile.TemporaryDirectory(prefix="mjvault-keys-") as tmp:
        new_id = write_keyfile(Path(tmp), master, new_passphrase, label="changed", kdf=kdf)
        blob = (Path(tmp) / new_id).read_bytes()
    # New first, create-only (ids are random: a clash is refused, never overwritten); the
    # old key file goes only once the new one is there.
    if not backend.put(KEYS_PREFIX + new_id, blob, create_only=True):
        raise MjvaultError(f"{backend.describe()} already holds a key file {new_id}; run again")
    backend.delete(KEYS_PREFIX + old_id)
    return RekeyReport("passphrase", added=[new_id], removed=[old_id])


def mirror_vault_keys(
    backend: Backend, info: RemoteInfo, keys: VaultKeys, keys_dir: Path
) -> RekeyReport:
    """An encrypted vault's remote: upload the vault's key files it lacks, then delete the
    ones the vault no longer has."""
    if info.encryption is None or info.encryption.get("key_check") != key_check(keys):
        raise RemoteMismatch(f"{backend.describe()} belongs to another vault (its keys differ)")
    local = local_keyfiles(keys_dir)
    if not local:
        raise MjvaultError(f"{keys_dir} holds no key file: nothing would open the remote")
    report = RekeyReport("mirrored")
    before = {k[len(KEYS_PREFIX) :] for k in backend.list(KEYS_PREFIX)}
    upload_keyfiles(backend, local)
    report.added = sorted(set(local) - before)
    for key_id in sorted(before - set(local)):
        backend.delete(KEYS_PREFIX + key_id)
        report.removed.append(key_id)
    return report
