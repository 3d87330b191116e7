"""Moving stored objects into new packs, safely: what `mjvault pack` and gc share.

One rule makes every moment of a move safe to die at: an old copy (a loose file, or a whole
old pack) is removed only after the new pack holding the object is synced, renamed into
``packs/``, synced again and mapped, with the map pointing at it (docs/FORMAT.md §12). A
killed move therefore leaves an object stored twice, never zero times; the next run, or a
reader's map reconciliation, settles the duplicates.

Memory stays bounded whatever the vault's size: a :class:`Repacker` holds one pack's worth of
plaintexts and the names of the copies that pack replaces, and flushes when the pack is full.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgpack

from mjvault.errors import ObjectNotFound
from mjvault.store.codec import ENCODING_IDENTITY, MAGIC_ENCRYPTED, MAGIC_FRAMED, media_kind
from mjvault.store.objects import ObjectStore
from mjvault.store.packfile import Trailer, read_trailer_of
from mjvault.store.packs import MAX_PACKED_OBJECT

# A pack smaller than this is "small": the packs of daily syncs, a few dozen records each.
# Full packs are tens of MB of plaintext, several MB once compressed with the dictionary.
SMALL_PACK_BYTES = 4 * 1024 * 1024
# Kinds of plaintext that belong in packs: records and tree nodes (records.py, tree.py).
# Snapshot manifests stay loose (refs name them), as do media and dictionaries.
PACKED_KINDS = frozenset({"record", "leaf", "node"})
UNLINK_THREADS = 8
_HEAD = 22  # MJVO header (6 bytes) and enough of an identity payload to tell media


@dataclass(frozen=True, slots=True)
class PackFile:
    name: str
    size: int
    mtime: float


def pack_files(store: ObjectStore) -> Iterator[PackFile]:
    """The packs on disk with their sizes and ages (a pack is never modified after rename)."""
    for name in store.packs.names():
        try:
            info = os.stat(store.packs.path(name))
        except FileNotFoundError:
            continue
        yield PackFile(name, info.st_size, info.st_mtime)


def small_packs(store: ObjectStore) -> list[PackFile]:
    return [p for p in pack_files(store) if p.size < SMALL_PACK_BYTES]


def is_packed_kind(plaintext: bytes) -> bool:
    """Whether an object's plaintext is a record or a tree node (a msgpack map whose ``t`` says
    so); media, manifests and dictionaries are not."""
    if not plaintext or not (0x80 <= plaintext[0] <= 0x8F or plaintext[0] in (0xDE, 0xDF)):
        return False  # not a msgpack map: saves unpacking every image of an encrypted vault
    try:
        doc = msgpack.unpackb(plaintext)
    except Exception:
        return False
    return isinstance(doc, dict) and doc.get("t") in PACKED_KINDS


def loose_small_plaintext(store: ObjectStore, object_id: str) -> bytes | None:
    """The plaintext of a loose record or tree node, or None for anything else (media are told
    by size and by their first bytes, without reading them whole). Raises
    :class:`~mjvault.errors.CorruptObject` for a damaged object."""
    path = store.path(object_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, _HEAD, 0)
    finally:
        os.close(fd)
    if size > MAX_PACKED_OBJECT + 64 or head[:4] not in (MAGIC_FRAMED, MAGIC_ENCRYPTED):
        return None  # large, or raw media
    framed_media = head[:4] == MAGIC_FRAMED and len(head) > 5 and head[5] == ENCODING_IDENTITY
    if framed_media and media_kind(head[6:]) is not None:
        return None
    try:
        plaintext = store.read(object_id)
    except ObjectNotFound:
        return None
    return plaintext if is_packed_kind(plaintext) else None


@dataclass
class MoveCounts:
    packs_written: int = 0
    bytes_written: int = 0
    objects_packed: int = 0
    loose_removed: int = 0
    loose_bytes_removed: int = 0
    packs_removed: int = 0
    pack_bytes_removed: int = 0


class Repacker:
    """Gathers objects for new packs and retires the copies they replace, in the safe order.

    :meth:`add` an object's plaintext, :meth:`retire_loose` / :meth:`retire_pack` what it
    replaces; :meth:`flush` (also called by :meth:`add` when a pack is full) publishes the
    new pack, points the map at it, then removes the retired copies.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.counts = MoveCounts()
        self.dictionaries: set[str] = set()  # named by the packs written
        self._batch = store.batch()
        self._batch.on_pack = self._mapped
        self._loose: list[str] = []
        self._packs: list[str] = []
        self._unmapped: set[str] = set()  # packs handed in whole that the map did not list
        #: Told of each old pack (path, entry ids) after its replacement is durable and
        #: mapped, before its file is unlinked (gc overwrites a forgotten job's pack there).
        self.before_unlink: Callable[[str, list[str]], None] | None = None

    def _mapped(self, name: str, trailer: Trailer) -> None:
        # The new pack must win before the old goes. `add` points every object of a pack it
        # maps at it; a pack the map listed already (one of ours may hash to a pack on disk)
        # is left as it was, and an object a later pack took over must be pointed back here.
        # A pack handed in whole that was not listed is mapped by `add` alone: walking its
        # entries again would only read every key a second time.
        if name in self._unmapped:
            self._unmapped.discard(name)
        else:
            self.store.packs.map().move(
                name, ((e.object_id, e.offset, e.length) for e in trailer.entries)
            )
        self.counts.packs_written += 1
        with contextlib.suppress(FileNotFoundError):
            self.counts.bytes_written += os.stat(self.store.packs.path(name)).st_size
        if trailer.dictionary_id:
            self.dictionaries.add(trailer.dictionary_id)

    def add(self, object_id: str, plaintext: bytes) -> None:
        self._batch.put_packed(object_id, plaintext)
        self.counts.objects_packed += 1
        if self._batch.pack_full:
            self.flush()

    def add_pack_file(
        self, name: str, tmp: Path, trailer: Trailer, dictionary_id: str | None
    ) -> None:
        """Publish a pack file written whole in ``tmp/`` by the caller (entries copied from
        other packs byte for byte) at the next :meth:`flush`, mapped like one of ours."""
        if not self.store.packs.present() or name not in self.store.packs.map().packs():
            self._unmapped.add(name)
        self._batch.add_pack_file(name, tmp, trailer, dictionary_id)
        self.counts.objects_packed += len(trailer.entries)

    def retire_loose(self, object_id: str) -> None:
        """Remove this loose file once what was added so far is durable in a pack."""
        self._loose.append(object_id)

    def retire_pack(self, name: str) -> None:
        """Remove this pack once what was added so far is durable in new packs."""
        self._packs.append(name)

    def flush(self) -> None:
        self._batch.flush()
        while self._packs:
            self._remove_pack(self._packs[0])
            self._packs.pop(0)
        if self._loose:
            # Unlinking a synced file costs milliseconds on ext4 (directory and inode blocks
            # read back), and overlaps well: a few threads make it ten times faster.
            with ThreadPoolExecutor(UNLINK_THREADS, thread_name_prefix="mjvault-unlink") as pool:
                for size in pool.map(self._remove_loose, self._loose):
                    if size is not None:
                        self.counts.loose_removed += 1
                        self.counts.loose_bytes_removed += size
            self._loose.clear()

    def discard(self) -> None:
        """Drop what is not yet published (temp files); nothing old is removed."""
        self._batch.discard()
        self._unmapped.clear()
        self._packs.clear()
        self._loose.clear()

    def _remove_pack(self, name: str) -> None:
        path = self.store.packs.path(name)
        try:
            size = os.stat(path).st_size
            trailer = read_trailer_of(os.fspath(path))
        except FileNotFoundError:
            return
        # Map first: entries still placed in the old pack are those nobody kept (dead ones).
        self.store.packs.map().remove(name, (e.object_id for e in trailer.entries))
        if self.before_unlink is not None:
            # The new packs are durable and mapped: the old file may now be overwritten.
            self.before_unlink(os.fspath(path), [e.hex_id for e in trailer.entries])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.counts.packs_removed += 1
        self.counts.pack_bytes_removed += size

    def _remove_loose(self, object_id: str) -> int | None:
        """Remove one loose file; its size, or None if it was gone already."""
        path = self.store.path(object_id)
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return None
        return size
