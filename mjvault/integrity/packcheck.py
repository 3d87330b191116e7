"""verify's pass over packs (docs/FORMAT.md §10): a pack is checked as a whole, then entry by entry.

Each pack is opened once and read front to back: its trailer (checked against its own
checksum), with ``read_data`` the whole file hashed against the pack's name, then every entry
in file order (:func:`~mjvault.store.packfile.iter_entry_bytes`), opened with the pack's
dictionary and rehashed against its id like a loose object. One open and sequential reads
per pack, instead of a map lookup, an open and a seek per object, is what lets
``verify --read-data`` check small objects at tens of thousands per second.

A damaged trailer makes the pack damaged as a whole: which objects it holds is then unknown
(the structural pass reports those a snapshot needs as missing unless the pack map still
places them). A pack whose name does not match its bytes while every entry checks out is
damaged too (its header or trailer changed); when an entry is damaged, that entry explains
the mismatch and is what is reported.

Memory: one pack's trailer per reading thread, bounded by a pack's size; what is kept across
packs is only the damage found.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from mjvault.errors import CorruptObject, ObjectNotFound
from mjvault.store.objects import ObjectStore
from mjvault.store.packfile import PackDamaged, iter_entry_bytes, read_trailer

HASH_CHUNK = 4 * 1024 * 1024


@dataclass
class PackCheck:
    """What checking one pack found."""

    name: str
    damaged: str | None = None  # why the pack as a whole is damaged, if it is
    objects: int = 0  # entries checked
    bytes: int = 0  # their bytes
    bad_entries: list[tuple[str, str]] = field(default_factory=list)  # (object id, why)
    dictionary_problem: tuple[str, str, str] | None = None  # (kind, dictionary id, why)


def check_pack(
    store: ObjectStore,
    name: str,
    *,
    read_data: bool,
    chooser: Callable[[str], bool] | None = None,
) -> PackCheck:
    """Check pack ``name``: its trailer always; with ``read_data`` its name (unless
    ``chooser`` leaves the pack out) and its entries (those ``chooser`` picks by id)."""
    result = PackCheck(name)
    try:
        fd = os.open(store.packs.path(name), os.O_RDONLY)
    except FileNotFoundError:
        return result  # gone since it was listed (a gc or repack): nothing to check
    try:
        size = os.fstat(fd).st_size
        trailer = read_trailer(fd, size, f"pack {name}")
        if not read_data:
            return result
        name_matches = chooser is not None and not chooser(name) or _hash(fd, size) == name
        dictionary_id = trailer.dictionary_id
        if dictionary_id is not None:
            try:
                store.packs.dictionary(dictionary_id, store.read)
            except ObjectNotFound:
                result.dictionary_problem = (
                    "missing",
                    dictionary_id,
                    f"the zstd dictionary of pack {name} is missing",
                )
                return result
            except CorruptObject as exc:
                result.dictionary_problem = ("corrupt", dictionary_id, str(exc))
                return result
        for entry, data in iter_entry_bytes(fd, trailer):
            object_id = entry.hex_id
            if chooser is not None and not chooser(object_id):
                continue
            result.objects += 1
            result.bytes += entry.length
            try:
                store.open_entry(object_id, data, dictionary_id)
            except CorruptObject as exc:
                result.bad_entries.append((object_id, str(exc)))
        if not name_matches and not result.bad_entries:
            result.damaged = f"pack {name} does not match its name (damaged)"
    except PackDamaged as exc:
        result.damaged = str(exc)
    finally:
        os.close(fd)
    return result


def _hash(fd: int, size: int) -> str:
    import blake3

    hasher = blake3.blake3()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(HASH_CHUNK, size - offset), offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest()
