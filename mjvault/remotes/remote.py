"""The remote's own files — ``config`` and ``keys/`` — and reading its objects safely.

A remote holds the objects of one vault's snapshots, framed exactly as a vault frames them, so
every object can be checked alone. An encrypted remote's objects are those an encrypted vault
with the remote's master secret would hold; its key files (same format as a vault's) let
``clone`` open it with a passphrase and nothing else.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3

from mjvault.errors import CorruptObject, MjvaultError, PassphraseRequired, UnsupportedFormat
from mjvault.remotes.backend import Backend, RemoteNotFound
from mjvault.remotes.packs import RemotePacks
from mjvault.remotes.scratch import DiskIds
from mjvault.store.codec import unframe_plain
from mjvault.store.crypto import KdfParams, VaultKeys, unwrap_master, write_keyfile
from mjvault.store.objects import is_object_id

REMOTE_FORMAT = "mjvault-remote"
# Version 3 remotes may hold version 2 tree leaves (in their packs), version 2 ones packs/
# (§11.3); version 1 ones hold loose objects only.
REMOTE_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CONFIG_KEY = "config"
KEYS_PREFIX = "keys/"
OBJECTS_PREFIX = "objects/"
SNAPSHOTS_PREFIX = "snapshots/"

PassphraseSource = str | Callable[[], str] | None


class RemoteMismatch(MjvaultError):
    """The remote was made for a different kind of vault or another key."""


def object_key(object_id: str) -> str:
    return f"{OBJECTS_PREFIX}{object_id[:2]}/{object_id}"


def snapshot_key(snapshot_id: str) -> str:
    return SNAPSHOTS_PREFIX + snapshot_id


def key_check(keys: VaultKeys) -> str:
    """Names a master secret without revealing it: equal checks mean the same naming key."""
    return blake3.blake3(b"mjvault remote key check", key=keys.naming_key).hexdigest()[:32]


@dataclass(frozen=True)
class RemoteInfo:
    """The remote's ``config``."""

    id: str
    created: str
    #: None for a plain remote; else cipher/naming/kdf and ``key_check``.
    encryption: dict[str, Any] | None
    #: What ``clone`` makes by default: "plain" (ids translated back) or "encrypted".
    clone_as: str
    #: 1: loose objects only (made before packs); 2: may hold packs; 3: and version 2 leaves.
    version: int = REMOTE_VERSION

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    def to_json(self) -> dict[str, Any]:
        # Not a report but the remote's stored config: its format and version first.
        return {
            "format": REMOTE_FORMAT,
            "version": self.version,
            "id": self.id,
            "created": self.created,
            "encryption": self.encryption,
            "clone_as": self.clone_as,
        }

    @classmethod
    def new(cls, keys: VaultKeys | None, clone_as: str) -> RemoteInfo:
        encryption = None
        if keys is not None:
            encryption = {
                "cipher": "aes-256-gcm",
                "naming": "blake3-keyed",
                "kdf": "argon2id",
                "key_check": key_check(keys),
            }
        return cls(
            uuid.uuid4().hex, datetime.now(UTC).isoformat(timespec="seconds"), encryption, clone_as
        )


def read_info(backend: Backend) -> RemoteInfo | None:
    try:
        raw = backend.get(CONFIG_KEY)
    except RemoteNotFound:
        return None
    try:
        doc = json.loads(raw)
        if doc.get("format") != REMOTE_FORMAT:
            raise MjvaultError(f"{backend.describe()} is not an mjvault remote")
        if doc.get("version") not in READABLE_VERSIONS:
            raise UnsupportedFormat(
                f"{backend.describe()}: remote format version {doc.get('version')} is not "
                "supported by this mjvault",
                hint="upgrade mjvault",
            )
        return RemoteInfo(
            doc["id"], doc["created"], doc.get("encryption"), doc["clone_as"], doc["version"]
        )
    except (ValueError, KeyError, AttributeError) as exc:
        raise MjvaultError(f"{backend.describe()}/config is malformed: {exc}") from None


def allow_packs(backend: Backend, info: RemoteInfo) -> RemoteInfo:
    """Mark an older remote version 3 before a pack is uploaded (its tree leaves may be
    version 2), so an mjvault that predates packs, or version 2 leaves, refuses the remote
    instead of reporting its packed objects missing or its leaves damaged.

    The one rewrite of ``config`` there is: only ``version`` changes (every other key is
    kept as stored), and two machines doing it at once write the same bytes.
    """
    if info.version >= REMOTE_VERSION:
        return info
    doc = json.loads(backend.get(CONFIG_KEY))
    if doc.get("id") != info.id:
        raise MjvaultError(f"{backend.describe()}/config changed while in use")
    if doc.get("version") in (1, 2):
        doc["version"] = REMOTE_VERSION
        backend.put(CONFIG_KEY, json.dumps(doc, indent=2).encode("utf-8"))
    return replace(info, version=REMOTE_VERSION)


def publish_info(backend: Backend, info: RemoteInfo) -> RemoteInfo:
    """Create the remote's config, create-only: when two machines race, both use the winner's."""
    data = json.dumps(info.to_json(), indent=2).encode("utf-8")
    if backend.put(CONFIG_KEY, data, create_only=True):
        return info
    existing = read_info(backend)
    assert existing is not None
    return existing


def upload_keyfiles(backend: Backend, keyfiles: dict[str, bytes]) -> int:
    """Key files are immutable and named by id: upload the ones the remote lacks."""
    present = {k[len(KEYS_PREFIX) :] for k in backend.list(KEYS_PREFIX)}
    sent = 0
    for key_id, data in keyfiles.items():
        if key_id not in present and backend.put(KEYS_PREFIX + key_id, data, create_only=True):
            sent += 1
    return sent


def download_keyfiles(backend: Backend) -> dict[str, bytes]:
    return {k[len(KEYS_PREFIX) :]: backend.get(k) for k in backend.list(KEYS_PREFIX)}


def local_keyfiles(keys_dir: Path) -> dict[str, bytes]:
    if not keys_dir.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in keys_dir.iterdir() if not p.name.startswith(".")}


def resolve_passphrase(passphrase: PassphraseSource, what: str) -> str:
    if passphrase is None:
        raise PassphraseRequired(
            f"{what} is encrypted and no passphrase was given",
            hint="set MJVAULT_PASSPHRASE or pass --passphrase-file FILE",
        )
    return passphrase() if callable(passphrase) else passphrase


def unlock_remote(backend: Backend, info: RemoteInfo, passphrase: PassphraseSource) -> VaultKeys:
    """The remote's keys from its key files and a passphrase (Argon2id, as for a vault)."""
    blobs = download_keyfiles(backend)
    if not blobs:
        raise MjvaultError(f"{backend.describe()} is encrypted but holds no key file")
    secret = resolve_passphrase(passphrase, f"the remote {backend.describe()}")
    with tempfile.TemporaryDirectory(prefix="mjvault-keys-") as tmp:
        for key_id, data in blobs.items():
            (Path(tmp) / key_id).write_bytes(data)
        master, _ = unwrap_master(Path(tmp), secret)
    keys = VaultKeys(master)
    if info.encryption and info.encryption.get("key_check") != key_check(keys):
        raise RemoteMismatch(f"{backend.describe()}: its key files do not match its config")
    return keys


def new_remote_keyfiles(
    passphrase: str, kdf: KdfParams | None = None
) -> tuple[VaultKeys, dict[str, bytes]]:
    """A fresh master secret for an encrypting remote, wrapped as a vault key file."""
    master = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="mjvault-keys-") as tmp:
        key_id = write_keyfile(Path(tmp), master, passphrase, label="remote", kdf=kdf)
        blob = (Path(tmp) / key_id).read_bytes()
    return VaultKeys(master), {key_id: blob}


class Present:
    """What a remote holds: its loose objects (listed) and its packs' (the local cache)."""

    def __init__(self, loose: set[str] | DiskIds, packs: RemotePacks | None) -> None:
        self.loose = loose
        self.packs = packs

    def __contains__(self, object_id: object) -> bool:
        if object_id in self.loose:
            return True
        return self.packs is not None and object_id in self.packs

    def __iter__(self) -> Iterator[str]:
        """Loose ids in id order, then packed ones in id order (an id may come twice)."""
        yield from self.loose if isinstance(self.loose, DiskIds) else sorted(self.loose)
        if self.packs is not None:
            yield from self.packs.iter_ids()


class RemoteObjects:
    """Reading and naming objects on a remote under the remote's keys (None: plain).

    An object is a loose file or an entry of one of ``packs`` (read the same way, §11.3).
    """

    def __init__(
        self, backend: Backend, keys: VaultKeys | None, packs: RemotePacks | None = None
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.packs = packs

    def name_of(self, plaintext: bytes) -> str:
        if self.keys is not None:
            return blake3.blake3(plaintext, key=self.keys.naming_key).hexdigest()
        return blake3.blake3(plaintext).hexdigest()

    def open(self, object_id: str, data: bytes) -> bytes:
        """Plaintext of a fetched object file, checked against its name (and AEAD tag)."""
        plaintext = self.keys.open(object_id, data) if self.keys else unframe_plain(data)
        if self.name_of(plaintext) != object_id:
            raise CorruptObject(f"remote object {object_id} does not match its name (damaged)")
        return plaintext

    def fetch(self, object_id: str) -> tuple[bytes, bytes]:
        """(file bytes, checked plaintext) of a remote object, loose or packed."""
        data = self.packs.read_entry(object_id) if self.packs is not None else None
        if data is None:
            data = self.backend.get(object_key(object_id))
        return data, self.open(object_id, data)

    def packed(self, object_id: str) -> bool:
        return self.packs is not None and self.packs.has(object_id)

    def listing(self, into: DiskIds | None = None) -> Present:
        """Every object the remote holds: one listing of its loose objects, and its packs'.

        ``into``: a scratch table the loose ids are streamed into instead of a set in memory.
        """
        if into is None:
            return Present(self.object_ids(), self.packs)
        into.update(self._iter_object_ids())
        return Present(into, self.packs)

    def object_ids(self) -> set[str]:
        return set(self._iter_object_ids())

    def _iter_object_ids(self) -> Iterator[str]:
        for key in self.backend.list(OBJECTS_PREFIX):
            name = key.rpartition("/")[2]
            if is_object_id(name):
                yield name

    def snapshot_ids(self) -> set[str]:
        ids = set()
        for key in self.backend.list(SNAPSHOTS_PREFIX):
            name = key.rpartition("/")[2]
            if is_object_id(name):
                ids.add(name)
        return ids
