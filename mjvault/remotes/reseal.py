"""An encrypted vault's remote brought to the vault's object secret after ``key rotate``.

A rotation changes the object secret, not the naming secret (docs/FORMAT.md §5.1): ids stay,
so a push would never send again what it sent before, and the remote would keep those
objects under the retired secret while everything newer arrives under the new one. The
remote's ``object-key`` document (FORMAT.md §11.2) names the object secret its objects are
sealed under; when it names another than the vault's, the next push seals every object and
pack the remote holds again before sending anything:

1. ``object-key`` gets ``resealing`` = the vault's check (readers then open with every
   secret the passphrase unlocks from the remote's key files);
2. each loose object not opening under the vault's key alone is opened under a retired one
   and sealed again (``encoding || payload`` unchanged, a fresh nonce), put over itself;
3. each pack holding such an entry is written again as a new pack, uploaded, then the old
   one deleted (a reader takes any copy of an object, §11.3);
4. the vault's key files are uploaded and every other key file deleted;
5. ``object-key`` names the vault's check alone, the retired checks listed.

Every object opens under the old or the new secret at every instant; a push killed anywhere
is resumed by the next, which finds ``resealing`` (or a check not the vault's) and starts
again, skipping what already opens under the new key.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from mjvault.errors import CorruptObject, MjvaultError
from mjvault.remotes.backend import Backend, RemoteNotFound
from mjvault.remotes.bigobjects import BIG_OBJECT_BYTES
from mjvault.remotes.packs import PACKS_PREFIX, REMOTE_PACK_VERSION, pack_key
from mjvault.remotes.remote import (
    KEYS_PREFIX,
    OBJECTS_PREFIX,
    RemoteMismatch,
    RemoteObjects,
    download_keyfiles,
    local_keyfiles,
    object_key,
    upload_keyfiles,
)
from mjvault.reports import Report
from mjvault.store.crypto import VaultKeys, split_secret, unwrap_document
from mjvault.store.objects import is_object_id
from mjvault.store.packfile import encode_pack, is_pack_id, pack_name, parse_trailer

OBJECT_KEY = "object-key"


@dataclass
class ObjectKeyState(Report):
    """The remote's ``object-key`` document (None fields: not known)."""

    #: The object secret every object on the remote opens under (once ``resealing`` is null).
    check: str | None = None
    #: Set while a push seals the remote's objects again under this check's secret.
    resealing: str | None = None
    #: Checks of secrets the remote was sealed away from: a vault still under one refuses.
    retired: list[str] = field(default_factory=list)


def read_state(backend: Backend) -> ObjectKeyState | None:
    try:
        doc = json.loads(backend.get(OBJECT_KEY))
        return ObjectKeyState(doc.get("check"), doc.get("resealing"), list(doc.get("retired", [])))
    except RemoteNotFound:
        return None
    except (ValueError, AttributeError, TypeError):
        raise MjvaultError(f"{backend.describe()}/{OBJECT_KEY} is malformed") from None


def write_state(backend: Backend, state: ObjectKeyState) -> None:
    backend.put(OBJECT_KEY, json.dumps(state.to_json(), indent=2).encode("utf-8"))


def needs_reseal(
    backend: Backend, keys: VaultKeys, keys_dir: Path, state: ObjectKeyState | None
) -> bool:
    """Whether the remote (whose ``object-key`` is ``state``) may hold objects under an object
    secret other than ``keys``'.

    A remote without ``object-key`` (made before it existed) is taken as sealed under the
    vault's secret unless it holds a key file the vault lacks (what a rotation leaves)."""
    current = keys.object_check()
    if state is not None:
        return state.resealing is not None or state.check != current
    remote = {k[len(KEYS_PREFIX) :] for k in backend.list(KEYS_PREFIX)}
    return bool(remote - set(local_keyfiles(keys_dir)))


def refuse_retired(backend: Backend, keys: VaultKeys, state: ObjectKeyState | None) -> None:
    if state is not None and keys.object_check() in state.retired:
        raise RemoteMismatch(
            f"{backend.describe()} was sealed again under a newer key of this vault: this "
            "copy's key was rotated away",
            hint="clone the remote again, or push from the vault that ran `mjvault key rotate`",
        )


def mark_mixed(backend: Backend, keys: VaultKeys) -> None:
    """A vault in mid-rotation pushes objects under both secrets: the remote's check is
    cleared, so the first push after the rotation seals them again."""
    state = read_state(backend)
    if state is None:
        state = ObjectKeyState()
    elif state.check is None and state.resealing is None:
        return
    state.check = None
    state.resealing = None
    write_state(backend, state)


def note_current(backend: Backend, keys: VaultKeys) -> None:
    """A remote sealed under the vault's secret only: say so, if not said yet."""
    state = read_state(backend)
    current = keys.object_check()
    if state is not None and state.check == current and state.resealing is None:
        return
    write_state(backend, ObjectKeyState(current, None, state.retired if state else []))


@dataclass
class Openers:
    """The vault's current pair with each retired object secret found (``keys[0]``: the one
    the remote last named); ``retired``: the checks of those secrets."""

    keys: list[VaultKeys]
    retired: list[str]


def remote_openers(
    backend: Backend, keys: VaultKeys, keys_dir: Path, passphrase: str, last: str | None
) -> Openers:
    """Keys opening what the remote may hold: the vault's current pair with each other object
    secret ``passphrase`` unlocks from the remote's (and the vault's) key files as retired.
    The first is the one for the secret ``last`` names (``object-key``'s ``check``)."""
    blobs = download_keyfiles(backend) | local_keyfiles(keys_dir)
    current = keys.object_check()
    pairs: list[bytes] = []
    for data in blobs.values():
        try:
            pairs.append(unwrap_document(json.loads(data), passphrase))
        except Exception:
            continue  # another passphrase's key file, or one this version cannot read
    mine = [p for p in pairs if VaultKeys(p).object_check() == current]
    if not mine:
        raise MjvaultError(
            f"no key file opening with this passphrase holds the vault's key: cannot seal "
            f"{backend.describe()} again"
        )
    retired: dict[str, bytes] = {}
    for pair in pairs:
        check = VaultKeys(pair).object_check()
        if check != current:
            retired.setdefault(check, split_secret(pair)[0])
    order = sorted(retired, key=lambda c: c != last)
    openers = [VaultKeys(mine[0], retired=retired[c]) for c in order]
    return Openers(openers or [VaultKeys(mine[0])], order)


@dataclass
class ResealReport:
    objects: int = 0
    packs: int = 0
    keys_removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def reseal_remote(
    backend: Backend,
    remote: RemoteObjects,
    found: Openers,
    keys_dir: Path,
    scratch: Path,
    *,
    on_start: Callable[[int], None] | None = None,
) -> ResealReport:
    """Steps 1-5 of the module's docstring; large objects stream through files in
    ``scratch`` (never whole in memory). ``on_start(n)`` is told how many objects the
    remote holds (loose, and in packs) before any is touched."""
    report = ResealReport()
    openers = found.keys
    current = openers[0].without_retired()
    state = read_state(backend) or ObjectKeyState()
    state.resealing = current.object_check()
    write_state(backend, state)
    loose = sorted(
        (name, meta.size)
        for meta in backend.list_meta(OBJECTS_PREFIX)
        if is_object_id(name := meta.key.rpartition("/")[2])
    )
    packs = sorted(
        name for key in backend.list(PACKS_PREFIX) if is_pack_id(name := key.rpartition("/")[2])
    )
    if on_start:
        packed = remote.packs.count() if remote.packs is not None else 0
        on_start(len(loose) + packed)
    for object_id, size in loose:
        try:
            if size > BIG_OBJECT_BYTES:
                report.objects += _reseal_big(backend, object_id, current, openers, scratch)
                continue
            data = backend.get(object_key(object_id))
            fresh = _resealed(object_id, data, current, openers)
        except RemoteNotFound:
            continue
        except CorruptObject as exc:
            report.problems.append(f"object {object_id[:16]}: {exc}")
            continue
        if fresh is not None:
            backend.put(object_key(object_id), fresh)
            report.objects += 1
    for name in packs:
        try:
            report.objects += _reseal_pack(backend, remote, name, current, openers)
            report.packs += 1
        except CorruptObject as exc:
            report.problems.append(f"pack {name[:16]}: {exc}")
    if report.problems:
        return report  # the old key files stay: they open what could not be sealed again
    local = local_keyfiles(keys_dir)
    upload_keyfiles(backend, local)
    for key in sorted(backend.list(KEYS_PREFIX)):
        key_id = key[len(KEYS_PREFIX) :]
        if key_id not in local:
            backend.delete(key)
            report.keys_removed.append(key_id)
    retired = set(state.retired) | set(found.retired)
    if state.check is not None:
        retired.add(state.check)
    retired.discard(current.object_check())
    write_state(backend, ObjectKeyState(current.object_check(), None, sorted(retired)))
    return report


def _resealed(
    object_id: str, data: bytes, current: VaultKeys, openers: list[VaultKeys]
) -> bytes | None:
    """``data`` sealed under the current key (None: it is already), checked against its name."""
    try:
        plaintext = current.open(object_id, data)
    except CorruptObject:
        pass
    else:
        _check_name(object_id, plaintext, current)
        return None
    for keys in openers:
        try:
            fresh = keys.reseal(object_id, data)
        except CorruptObject:
            continue
        if fresh is None:
            continue
        _check_name(object_id, current.open(object_id, fresh), current)
        return fresh
    raise CorruptObject(f"object {object_id} opens under no key of this vault (damaged)")


def _reseal_big(
    backend: Backend, object_id: str, current: VaultKeys, openers: list[VaultKeys], scratch: Path
) -> int:
    """A large loose object streamed down, sealed again through a temp file and checked
    against its name, streamed up over itself; 1 if it was under a retired key, else 0."""
    from mjvault.integrity.rotate import _check_file, _reseal_file

    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="reseal-", dir=scratch) as tmp:
        path = Path(tmp) / object_id
        with open(path, "wb") as out:
            backend.download(object_key(object_id), out)
        try:
            _check_file(current, object_id, path)
            return 0
        except CorruptObject:
            pass
        for keys in openers:
            try:
                fresh, _ = _reseal_file(keys, object_id, path, Path(tmp))
            except CorruptObject:
                continue
            if fresh is None:
                continue
            _check_file(current, object_id, fresh)
            backend.upload_file(object_key(object_id), fresh, os.stat(fresh).st_size)
            return 1
    raise CorruptObject(f"object {object_id} opens under no key of this vault (damaged)")


def _check_name(object_id: str, plaintext: bytes, keys: VaultKeys) -> None:
    if blake3.blake3(plaintext, key=keys.naming_key).hexdigest() != object_id:
        raise CorruptObject(f"remote object {object_id} does not match its name (damaged)")


def _reseal_pack(
    backend: Backend,
    remote: RemoteObjects,
    name: str,
    current: VaultKeys,
    openers: list[VaultKeys],
) -> int:
    """A remote pack with an entry under a retired key written again as a new pack, uploaded
    before the old one is deleted; the number of entries sealed again."""
    data = backend.get(pack_key(name))
    trailer = parse_trailer(
        lambda n, offset: data[offset : offset + n], len(data), name, (REMOTE_PACK_VERSION,)
    )
    entries: list[tuple[bytes, bytes]] = []
    changed = 0
    for entry in sorted(trailer.entries, key=lambda e: e.offset):
        framed = data[entry.offset : entry.offset + entry.length]
        fresh = _resealed(entry.hex_id, framed, current, openers)
        changed += fresh is not None
        entries.append((entry.object_id, framed if fresh is None else fresh))
    if not changed:
        return 0
    packed, new_trailer = encode_pack(entries, None, REMOTE_PACK_VERSION)
    new_name = pack_name(packed)
    backend.put(pack_key(new_name), packed)
    if remote.packs is not None:
        remote.packs.uploaded(new_name, [e.object_id for e in new_trailer.entries])
    backend.delete(pack_key(name))
    if remote.packs is not None:
        remote.packs.index.forget(name)
    return changed


def current_keyfiles(
    backend: Backend, keyfiles: dict[str, bytes], passphrase: object
) -> dict[str, bytes]:
    """The key files a clone keeps: not those ``passphrase`` opens to a secret other than the
    one ``object-key`` names (a remote half sealed again still holds the retired ones, and a
    vault opens with the first key file its passphrase opens)."""
    state = read_state(backend)
    target = state.resealing or state.check if state is not None else None
    if target is None or not isinstance(passphrase, str):
        return keyfiles
    kept = {}
    for key_id, data in keyfiles.items():
        try:
            pair = unwrap_document(json.loads(data), passphrase)
        except Exception:
            kept[key_id] = data  # another passphrase's
            continue
        if VaultKeys(pair).object_check() == target:
            kept[key_id] = data
    return kept or keyfiles
