"""Connecting a vault to one of its remotes: open storage, create or check the remote's config.

Which kind of remote goes with which vault:

| vault     | remote added as | remote objects                      | ids on the remote |
|-----------|-----------------|-------------------------------------|-------------------|
| plain     | (default)       | the vault's files as they are       | the vault's       |
| plain     | ``--encrypt``   | sealed with the remote's own key    | translated        |
| encrypted | (any)           | the vault's files (already sealed)  | the vault's       |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mjvault.errors import ConfigError
from mjvault.remotes.backend import Backend
from mjvault.remotes.config import (
    RemoteSpec,
    check_spec,
    open_backend,
    parse_remote_url,
    save_spec,
    spec_path,
    state_dir,
)
from mjvault.remotes.crypto import IdMap
from mjvault.remotes.packs import RemotePacks
from mjvault.remotes.remote import (
    PassphraseSource,
    RemoteInfo,
    RemoteMismatch,
    RemoteObjects,
    key_check,
    local_keyfiles,
    new_remote_keyfiles,
    publish_info,
    read_info,
    resolve_passphrase,
    unlock_remote,
    upload_keyfiles,
)
from mjvault.remotes.reseal import (
    Openers,
    needs_reseal,
    read_state,
    refuse_retired,
    remote_openers,
)
from mjvault.store.crypto import KdfParams
from mjvault.vault import Vault


@dataclass
class Link:
    """An open connection between a vault and a remote."""

    spec: RemoteSpec
    backend: Backend
    info: RemoteInfo
    remote: RemoteObjects
    #: Set for a plain vault's encrypting remote: every id is translated through it.
    idmap: IdMap | None
    #: An encrypted vault's remote that may hold objects under a retired object secret
    #: (FORMAT.md §11.2, ``object-key``): push seals them again first.
    needs_reseal: bool = False
    #: The keys that open them (when a passphrase was given): :mod:`.reseal`.
    openers: Openers | None = None

    @property
    def translating(self) -> bool:
        return self.idmap is not None

    def close(self) -> None:
        if self.remote.packs is not None:
            self.remote.packs.close()
        if self.idmap is not None:
            self.idmap.close()
            self.idmap = None
        self.backend.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_storage(spec: RemoteSpec) -> Backend:
    """The storage behind ``spec``. Every command that reaches a remote (push, pull, clone,
    ``verify --remote``) opens it here, so a test can put a fault-injecting wrapper around
    real storage by replacing this one function."""
    return open_backend(spec)


def connect(
    vault: Vault,
    spec: RemoteSpec,
    *,
    passphrase: PassphraseSource = None,
    create: bool = False,
    kdf: KdfParams | None = None,
) -> Link:
    """Open ``spec`` for ``vault``; with ``create`` an uninitialised remote is set up first."""
    backend = open_storage(spec)
    try:
        return _connect(vault, spec, backend, passphrase, create, kdf)
    except BaseException:
        backend.close()
        raise


def _connect(
    vault: Vault,
    spec: RemoteSpec,
    backend: Backend,
    passphrase: PassphraseSource,
    create: bool,
    kdf: KdfParams | None,
) -> Link:
    where = backend.describe()
    if vault.encrypted and spec.encrypt:
        raise RemoteMismatch(
            "an encrypted vault's objects are already sealed: add the remote without --encrypt"
        )
    info = read_info(backend)
    if info is None and not create:
        raise RemoteMismatch(
            f"{where} holds no mjvault remote",
            hint=f"`mjvault remote remove {spec.name}` and add it again to set it up",
        )
    vault_keys = vault.store.keys
    if vault_keys is not None:
        if info is None:
            # Key files first: a config without them would be a remote nobody can open.
            upload_keyfiles(backend, local_keyfiles(vault.path / "keys"))
            info = publish_info(backend, RemoteInfo.new(vault_keys, "encrypted"))
        if not info.encrypted or info.encryption.get("key_check") != key_check(vault_keys):  # type: ignore[union-attr]
            raise RemoteMismatch(f"{where} belongs to another vault (its keys differ)")
        state = read_state(backend)
        refuse_retired(backend, vault_keys, state)
        keys_dir = vault.path / "keys"
        stale = not vault_keys.rotating and needs_reseal(backend, vault_keys, keys_dir, state)
        openers = None
        remote_keys = vault_keys
        if stale and passphrase is not None:
            # Objects sealed before a rotation of the vault: opened with every secret the
            # passphrase unlocks from the remote's key files, until push seals them again.
            secret = resolve_passphrase(passphrase, f"the remote {where}")
            last = state.check if state is not None else None
            openers = remote_openers(backend, vault_keys, keys_dir, secret, last)
            if openers.retired or state is not None:
                remote_keys = openers.keys[0]
            else:
                # A remote made before `object-key`, holding a key file the vault lacks
                # that wraps no other secret (a passphrase removed): nothing to seal again.
                stale, openers = False, None
        # The vault's key files travel with its objects: a clone opens with the same
        # passphrases, including ones added since the last push.
        upload_keyfiles(backend, local_keyfiles(keys_dir))
        packs = _packs(vault, spec, backend, info)
        link = Link(spec, backend, info, RemoteObjects(backend, remote_keys, packs), None)
        link.needs_reseal, link.openers = stale, openers
        return link
    if not spec.encrypt:
        if info is None:
            info = publish_info(backend, RemoteInfo.new(None, "plain"))
        if info.encrypted:
            raise RemoteMismatch(
                f"{where} is encrypted: add it with --encrypt to push a plain vault to it"
            )
        packs = _packs(vault, spec, backend, info)
        return Link(spec, backend, info, RemoteObjects(backend, None, packs), None)
    if info is None:
        secret = resolve_passphrase(passphrase, f"the new encrypted remote {spec.name}")
        keys, keyfiles = new_remote_keyfiles(secret, kdf)
        # Key files first: a config without them would be a remote nobody can open.
        upload_keyfiles(backend, keyfiles)
        info = publish_info(backend, RemoteInfo.new(keys, "plain"))
        if info.encryption is None or info.encryption.get("key_check") != key_check(keys):
            keys = unlock_remote(backend, info, secret)  # another machine set it up first
    else:
        if not info.encrypted:
            raise RemoteMismatch(f"{where} is a plain remote: add it without --encrypt")
        keys = unlock_remote(backend, info, passphrase)
    # The map belongs to one remote key: a remote set up again under a new key gets a new map.
    idmap = IdMap(state_dir(vault.path, spec.name) / f"idmap-{key_check(keys)[:16]}")
    packs = _packs(vault, spec, backend, info)
    return Link(spec, backend, info, RemoteObjects(backend, keys, packs), idmap)


def _packs(vault: Vault, spec: RemoteSpec, backend: Backend, info: RemoteInfo) -> RemotePacks:
    # Keyed by the remote's id: a remote set up again at the same URL gets a new cache.
    return RemotePacks(backend, state_dir(vault.path, spec.name) / f"packs-{info.id}")


def add_remote(
    vault: Vault,
    spec: RemoteSpec,
    *,
    passphrase: PassphraseSource = None,
    kdf: KdfParams | None = None,
) -> RemoteInfo:
    """Reach the remote, set it up when new (or check it suits this vault), then save it."""
    spec = check_spec(spec)
    if spec_path(vault.path, spec.name).exists():
        raise ConfigError(f"a remote named {spec.name} exists", hint="remove it first")
    url = parse_remote_url(spec.url)
    if url.scheme == "file":
        # The remote's objects/, config and keys/ would land among the vault's own files.
        folder, home = Path(url.path).resolve(), vault.path.resolve()
        if folder == home or home in folder.parents:
            raise ConfigError(f"remote {spec.name}: {url.path} is inside the vault {home}")
    with connect(vault, spec, passphrase=passphrase, create=True, kdf=kdf) as link:
        info = link.info
    save_spec(vault.path, spec)
    return info
