"""Damage done to a packed object's bytes inside its pack, for tests of verify and repair.

A packed record or tree node has no file of its own: where a test of loose objects flips a
byte of the object's file, a test of packed ones flips it in the pack, at the entry's place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mjvault import Vault
from mjvault.store.packfile import encode_pack, pack_name, read_trailer_of


def packed_path(vault: Vault, object_id: str) -> tuple[Path, int, int]:
    """The pack holding ``object_id`` and the entry's offset and length there."""
    location = vault.store.packs.locate(object_id)
    assert location is not None, f"{object_id} is not packed"
    assert not vault.store.is_loose(object_id), f"{object_id} is also loose"
    return vault.store.packs.path(location.pack), location.offset, location.length


def spoil_packed(vault: Vault, object_id: str, spoil: Callable[[bytes], bytes]) -> Path:
    """Replace the entry's bytes by ``spoil(bytes)`` of the same length, in place."""
    path, offset, length = packed_path(vault, object_id)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        spoiled = spoil(handle.read(length))
        assert len(spoiled) == length, "damage in place keeps the entry's length"
        handle.seek(offset)
        handle.write(spoiled)
    return path


def flip_packed(vault: Vault, object_id: str, at: int = -1) -> Path:
    """Flip a bit of the entry's byte ``at`` (counted from its start, or its end if < 0)."""

    def flip(data: bytes) -> bytes:
        out = bytearray(data)
        out[at] ^= 0x40
        return bytes(out)

    return spoil_packed(vault, object_id, flip)


def drop_packed(vault: Vault, object_id: str) -> None:
    """Lose ``object_id``: its pack is rewritten without it (the others keep their bytes),
    as if it had never been written there."""
    path, _, _ = packed_path(vault, object_id)
    trailer = read_trailer_of(os.fspath(path))
    data = path.read_bytes()
    kept = [
        (e.object_id, data[e.offset : e.offset + e.length])
        for e in trailer.entries
        if e.hex_id != object_id
    ]
    rewritten, _ = encode_pack(kept, trailer.dictionary_id)
    (path.parent / pack_name(rewritten)).write_bytes(rewritten)
    path.unlink()
    vault.store.packs.reconcile()
    assert not vault.store.exists(object_id)
