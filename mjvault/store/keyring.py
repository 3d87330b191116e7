"""Opening an encrypted vault's keys, a key rotation's journal included (FORMAT.md §5).

A rotation (:mod:`mjvault.integrity.rotate`) writes ``keys/.rotation`` before it re-encrypts
anything: the new secret, wrapped under the passphrase the rotation was started with, and its
progress. While the journal exists every object is sealed under the new object secret and
opens under either, so a vault whose rotation was killed stays readable and writable, and the
next ``key rotate`` continues. The journal's name begins with a dot: readers of key files
(this version's and older ones) skip it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mjvault.errors import MjvaultError, WrongPassphrase
from mjvault.store.crypto import (
    VaultKeys,
    split_secret,
    unwrap_all,
    unwrap_document,
    unwrap_master,
)
from mjvault.store.fsutil import atomic_write

JOURNAL = ".rotation"
JOURNAL_VERSION = 1


def journal_path(keys_dir: Path) -> Path:
    return keys_dir / JOURNAL


def read_journal(keys_dir: Path) -> dict[str, Any] | None:
    """The unfinished rotation's journal, or None. A journal that does not parse is refused
    rather than ignored: it may hold the only wrapped copy of the new secret."""
    try:
        data = journal_path(keys_dir).read_bytes()
    except FileNotFoundError:
        return None
    try:
        journal = json.loads(data)
        if not isinstance(journal, dict) or journal.get("version") != JOURNAL_VERSION:
            raise ValueError("unknown journal version")
        if not isinstance(journal.get("key"), dict):
            raise ValueError("no key")
    except ValueError as exc:
        raise MjvaultError(
            f"the key rotation journal {journal_path(keys_dir)} is damaged: {exc}"
        ) from None
    return journal


def write_journal(keys_dir: Path, journal: dict[str, Any]) -> None:
    atomic_write(journal_path(keys_dir), json.dumps(journal, indent=2).encode("utf-8"), mode=0o600)


def open_keys(keys_dir: Path, passphrase: str) -> tuple[VaultKeys, bytes]:
    """The vault's keys and the secret a new key file would wrap.

    Without a journal: the first key file ``passphrase`` opens. With one: the journal's new
    secret, plus as *retired* the object secret of a key file the same passphrase opens, so
    objects not yet re-encrypted still open. A passphrase that opens a key file but not the
    journal is refused: what it would seal, the rotation would have to find again.
    """
    from cryptography.exceptions import InvalidTag

    journal = read_journal(keys_dir)
    if journal is None:
        # The first key file that opens: one Argon2 derivation per key file tried, no more.
        secret, _ = unwrap_master(keys_dir, passphrase)
        return VaultKeys(secret), secret
    opened, _ = unwrap_all(keys_dir, passphrase)
    try:
        secret = unwrap_document(journal["key"], passphrase)
    except InvalidTag:
        if opened:
            raise WrongPassphrase(
                "a key rotation of this vault is unfinished and was started with another "
                "passphrase",
                hint="open it with the passphrase given to `mjvault key rotate`, and run "
                "`mjvault key rotate` again to finish",
            ) from None
        raise WrongPassphrase("wrong passphrase: no key of this vault opens with it") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MjvaultError(f"the key rotation journal in {keys_dir} is damaged: {exc}") from None
    current, _ = split_secret(secret)
    retired = next(
        (split_secret(old)[0] for old, _ in opened if split_secret(old)[0] != current), None
    )
    return VaultKeys(secret, retired=retired), secret


def keys_stamp(keys_dir: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What the key files are now (name, inode, size, modification time of each, the rotation
    journal included): a rotation adds, replaces and removes files here, so a stamp taken when
    the keys were read differs from one taken after it."""
    found = []
    try:
        entries = list(os.scandir(keys_dir))
    except FileNotFoundError:
        return ()
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        found.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(sorted(found))
