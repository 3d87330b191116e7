"""Small JSON documents kept beside the objects (sync state), sealed in an encrypted vault.

A plain vault keeps such a document as JSON text. An encrypted vault keeps ``MJVS``, a version
byte (1), then the JSON text sealed with the text key (``VaultKeys.seal_text``) under a
context naming the file, so a document copied over another fails to open (FORMAT.md §1.1).
Both forms are read in both kinds of vault: a plain document in an encrypted vault was written
by an earlier version, and the next write seals it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault.errors import CorruptObject
from mjvault.store.fsutil import atomic_write

if TYPE_CHECKING:
    from mjvault.store.crypto import VaultKeys

MAGIC = b"MJVS"
VERSION = 1


def context_of(name: str) -> bytes:
    """The associated data of the document at ``name`` (its path in the vault, ``/``-separated)."""
    return b"mjvault sealed document\0" + name.encode("utf-8")


def encode(doc: Any, keys: VaultKeys | None, name: str) -> bytes:
    text = json.dumps(doc, indent=None if keys else 2)
    if keys is None:
        return text.encode("utf-8")
    return MAGIC + bytes((VERSION,)) + keys.seal_text(text, context_of(name))


def decode(data: bytes, keys: VaultKeys | None, name: str) -> Any:
    """The document in ``data``; ValueError when it is not one (damaged, or sealed in a vault
    without keys), never a partial one."""
    if data[:4] == MAGIC:
        if keys is None or data[4:5] != bytes((VERSION,)):
            raise ValueError(f"{name} is sealed and cannot be opened here")
        try:
            data = keys.open_text(data[5:], context_of(name)).encode("utf-8")
        except CorruptObject as exc:
            raise ValueError(str(exc)) from None
    return json.loads(data)


def read(root: Path, name: str, keys: VaultKeys | None) -> Any:
    """The document at ``root/name``, or None when it is missing or unreadable."""
    try:
        return decode((root / name).read_bytes(), keys, name)
    except (OSError, ValueError):
        return None


def write(root: Path, name: str, doc: Any, keys: VaultKeys | None) -> None:
    path = root / name
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, encode(doc, keys, name), mode=0o600 if keys else 0o644)


def reseal_all(root: Path, keys: VaultKeys, folder: str = "state") -> int:
    """Every sealed document under ``root/folder`` written again under ``keys``' current text
    key (a key rotation: ``keys`` still opens what the retired one sealed). A document that
    opens under neither is left as it is: reading it already gives "no document"."""
    resealed = 0
    base = root / folder
    if not base.is_dir():
        return 0
    for path in sorted(base.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        name = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
            if data[:4] != MAGIC:
                continue
            doc = decode(data, keys, name)
        except (OSError, ValueError):
            continue
        write(root, name, doc, keys)
        resealed += 1
    return resealed
