"""Small objects kept many to a file: ``packs/<name>`` (docs/FORMAT.md, "Packs").

Records and tree nodes are a few hundred bytes each; as loose files a million of them cost a
million inodes, 4 KiB of disk apiece and a million requests to copy offsite. A writer gathers
them in a :class:`PackBuilder` (or, once the vault has its dictionary, a :class:`PackStream`
that writes each to the pack's temp file as it comes) and publishes one pack file of tens of
MB at each flush, as durably as loose objects (written to ``tmp/``, synced, renamed).
:class:`PackReader` finds an object through the pack map (``mjvault.index.packmap``), a cache
of the packs' trailers that is rebuilt from them whenever it misses a pack on disk.

Records compress well against each other but not alone, so a pack's entries may use a zstd
dictionary trained on the vault's first large batch of records; the dictionary is itself an
object (loose), and each pack's trailer names the one its entries use.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mjvault.errors import CorruptObject
from mjvault.store.codec import Dictionary, frame_plain, train_dictionary, unframe_plain
from mjvault.store.packfile import (
    PackDamaged,
    PackFileWriter,
    Trailer,
    encode_pack,
    is_pack_id,
    pack_name,
    read_trailer_of,
)

if TYPE_CHECKING:
    from mjvault.index.packmap import Location, PackMap
    from mjvault.store.crypto import VaultKeys

PACKS_DIR = "packs"
PACK_MAP_DIR = "index/packs"
# A builder publishes a pack once this much plaintext waits in it (it also does at every
# flush): packs of a few MB to tens of MB once compressed, and bounded memory meanwhile.
PACK_PLAINTEXT_LIMIT = 48 * 1024 * 1024
# Objects larger than this stay loose even when small-object code stores them.
MAX_PACKED_OBJECT = 4 * 1024 * 1024
# A dictionary is trained once, from the first pack with enough records to learn from.
DICTIONARY_SIZE = 32 * 1024
DICTIONARY_MIN_SAMPLES = 500
DICTIONARY_MAX_SAMPLE_BYTES = 8 * 1024 * 1024

# Pack files a reader keeps open (a few thousand packs hold a million jobs' metadata).
OPEN_PACKS = 64

ReadObject = Callable[[str], bytes]


class PackReader:
    """Finds and reads packed objects. Opens the pack map only once a pack exists."""

    def __init__(self, root: Path) -> None:
        self.dir = root / PACKS_DIR
        self.map_path = root / PACK_MAP_DIR
        self._dir_text = os.fspath(self.dir)
        self._map: PackMap | None = None
        self._reconciled = False
        self._dictionaries: dict[str, Dictionary] = {}
        # Open packs, most recently used last: reading a pack's objects one by one must not
        # cost an open and a close each. A pack never changes under its name, so a cached
        # descriptor always reads the right bytes, even after gc removed the file.
        self._open: OrderedDict[str, int] = OrderedDict()
        self._open_lock = threading.Lock()

    def present(self) -> bool:
        return self._map is not None or self.dir.is_dir()

    def map(self) -> PackMap:
        if self._map is None:
            from mjvault.index.packmap import PackMap  # the index package imports the store

            self._map = PackMap(self.map_path)
            self._finish_adds(self._map)
        return self._map

    def _finish_adds(self, packmap: PackMap) -> None:
        """Take up the adds to the map a process stopped part way (FORMAT.md §10): from the
        pack's trailer, or rolled back when the pack is gone or its trailer damaged."""
        for name in packmap.unfinished():
            try:
                trailer = read_trailer_of(os.fspath(self.path(name)))
            except (FileNotFoundError, PackDamaged):
                unmapped = packmap.abandon(name)
                if unmapped:
                    self._remap(packmap, unmapped)
                continue
            packmap.finish(name, _map_entries(trailer), trailer.dictionary_id)

    def _remap(self, packmap: PackMap, unmapped: set[bytes]) -> None:
        """Map ``unmapped`` back to the listed packs that hold them (a rolled-back add had
        pointed them away from those): every listed pack's trailer read, rows only added
        where none is. Rare (a pack lost part way through its add), so a full pass is fine."""
        for name in sorted(packmap.packs()):
            if not unmapped:
                return
            try:
                trailer = read_trailer_of(os.fspath(self.path(name)))
            except (FileNotFoundError, PackDamaged):
                continue
            found = [e for e in _map_entries(trailer) if e[0] in unmapped]
            if found:
                packmap.fill(name, found)
                unmapped.difference_update(e[0] for e in found)

    def close(self) -> None:
        with self._open_lock:
            while self._open:
                os.close(self._open.popitem()[1])
        if self._map is not None:
            self._map.close()
            self._map = None

    def _descriptor(self, pack: str) -> int:
        with self._open_lock:
            fd = self._open.get(pack)
            if fd is not None:
                self._open.move_to_end(pack)
                return fd
            fd = os.open(f"{self._dir_text}/{pack}", os.O_RDONLY | os.O_CLOEXEC)
            self._open[pack] = fd
            if len(self._open) > OPEN_PACKS:
                os.close(self._open.popitem(last=False)[1])
            return fd

    def names(self) -> list[str]:
        """Names of the pack files on disk, sorted."""
        try:
            return sorted(name for name in os.listdir(self.dir) if is_pack_id(name))
        except FileNotFoundError:
            return []

    def path(self, pack: str) -> Path:
        return self.dir / pack

    def locate(self, object_id: str, *, fresh: bool = False) -> Location | None:
        """Where the object is packed. A miss looks at the packs on disk once per reader (a
        writer asks for every new object), or every time with ``fresh`` (a read that is
        about to fail: the pack may have come since, from a writer that died before mapping
        it)."""
        if not self.present():
            return None
        key = bytes.fromhex(object_id)
        found = self.map().locate(key)
        if found is None and (fresh or not self._reconciled):
            self.reconcile()
            found = self.map().locate(key)
        return found

    def contains(self, object_id: str) -> bool:
        return self.locate(object_id) is not None

    def not_packed(self, object_ids: list[str]) -> list[str]:
        """Those of ``object_ids`` no pack holds: one map transaction for all, and the packs
        on disk looked at once (as :meth:`locate` does) when some seem missing."""
        if not self.present():
            return object_ids
        found = self.map().contains_many([bytes.fromhex(oid) for oid in object_ids])
        missing = [oid for oid, here in zip(object_ids, found, strict=True) if not here]
        if missing and not self._reconciled:
            self.reconcile()
            return self.not_packed(missing)
        return missing

    def not_packed_in_order(self, object_ids: Iterable[bytes]) -> Iterator[bytes]:
        """:meth:`not_packed` for ids in ascending order, as bytes, streamed
        (:meth:`PackMap.absent`); the packs on disk are looked at once when some seem
        missing, as there."""
        if not self.present():
            yield from object_ids
            return
        reconciled_here = False
        for object_id in self.map().absent(object_ids):
            if not self._reconciled:
                self.reconcile()
                reconciled_here = True
            # The map answered a whole chunk before the packs were looked at: ask it again.
            if reconciled_here and self.map().contains(object_id):
                continue
            yield object_id

    def reconcile(self) -> list[str]:
        """Bring the map up to the packs on disk: read the trailers of packs it lacks, forget
        packs that are gone. Returns the names of damaged packs it could not read."""
        self._reconciled = True
        if not self.present():
            return []
        packmap = self.map()
        on_disk = set(self.names())
        known = packmap.packs()
        damaged = []
        # Gone packs first: their objects are then unmapped, so a pack on disk that holds
        # them too (a pack rewritten in place of one that was lost) maps them again below.
        for name in sorted(known - on_disk):
            packmap.forget_number(name)
        for name in sorted(on_disk - known):
            try:
                trailer = read_trailer_of(os.fspath(self.path(name)))
            except FileNotFoundError:
                continue
            except PackDamaged:
                damaged.append(name)
                continue
            # Not as the pack's owner: it may be one a merge just unmapped (its objects moved
            # to the merged pack) and is about to unlink.
            packmap.add(name, _map_entries(trailer), trailer.dictionary_id, owner=False)
        return damaged

    def read_entry(self, object_id: str, *, fresh: bool = True) -> tuple[bytes, Location] | None:
        """The packed object's framed bytes and where they were, or None if it is not packed
        (``fresh``: see :meth:`locate`)."""
        for attempt in range(2):
            location = self.locate(object_id, fresh=fresh)
            if location is None:
                return None
            try:
                fd = self._descriptor(location.pack)
            except FileNotFoundError:
                # A repack moved it between the lookup and the open: look again, once.
                if attempt == 0:
                    self.reconcile()
                    continue
                raise CorruptObject(f"object {object_id} is in a pack that is gone") from None
            data = os.pread(fd, location.length, location.offset)
            if len(data) != location.length:
                raise CorruptObject(f"object {object_id} is cut short in pack {location.pack}")
            return data, location
        return None

    def dictionary(self, dictionary_id: str, read_object: ReadObject) -> Dictionary:
        found = self._dictionaries.get(dictionary_id)
        if found is None:
            found = Dictionary(dictionary_id, read_object(dictionary_id))
            self._dictionaries[dictionary_id] = found
        return found

    def iter_ids(self) -> Iterator[str]:
        if not self.present():
            return
        if not self._reconciled:
            self.reconcile()
        for key in self.map().iter_ids():
            yield key.hex()


def _map_entries(trailer: Trailer) -> Iterator[tuple[bytes, int, int]]:
    return ((entry.object_id, entry.offset, entry.length) for entry in trailer.entries)


class PackBuilder:
    """Small objects gathered for one pack, kept as plaintext until :meth:`finish` encodes them
    (so the first large pack of a vault can train the dictionary on its own records)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, bool]] = {}  # id -> (plaintext, compress)
        self.plaintext_bytes = 0

    def __len__(self) -> int:
        return len(self.objects)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self.objects

    def add(self, object_id: str, plaintext: bytes, *, compress: bool) -> None:
        self.objects[object_id] = (plaintext, compress)
        self.plaintext_bytes += len(plaintext)

    def read(self, object_id: str) -> bytes | None:
        found = self.objects.get(object_id)
        return None if found is None else found[0]

    @property
    def full(self) -> bool:
        return self.plaintext_bytes >= PACK_PLAINTEXT_LIMIT

    def training_samples(self) -> list[bytes] | None:
        """Enough compressible plaintexts to train a dictionary on, or None."""
        samples: list[bytes] = []
        total = 0
        for plaintext, compress in self.objects.values():
            if compress and 64 <= len(plaintext) <= 64 * 1024:
                samples.append(plaintext)
                total += len(plaintext)
                if total >= DICTIONARY_MAX_SAMPLE_BYTES:
                    break
        return samples if len(samples) >= DICTIONARY_MIN_SAMPLES else None

    def finish(
        self, keys: VaultKeys | None, dictionary: Dictionary | None
    ) -> tuple[str, bytes, Trailer]:
        """Encode every object (with ``dictionary`` where it helps) into one pack."""
        entries = []
        for object_id, (plaintext, compress) in self.objects.items():
            framed = frame_entry(keys, dictionary, object_id, plaintext, compress=compress)
            entries.append((bytes.fromhex(object_id), framed))
        # The objects stay until the caller has listed the pack and begun a new builder: an
        # interruption before then encodes them again.
        data, trailer = encode_pack(entries, dictionary.object_id if dictionary else None)
        return pack_name(data), data, trailer


class PackStream:
    """Small objects gathered for one pack, written to its temp file as they come.

    Once the vault has its dictionary, nothing is left to learn from a pack's plaintext, so
    each object is encoded when added and only its place in the file is kept: a writer's
    memory no longer holds a checkpoint's records and tree nodes (several MB, more as the
    tree widens) until the pack is sealed. The same bytes as :class:`PackBuilder` makes.
    """

    def __init__(self, path: Path, keys: VaultKeys | None, dictionary: Dictionary) -> None:
        self.path = path
        self.keys = keys
        self.dictionary = dictionary
        self._file = PackFileWriter(path, dictionary.object_id)
        self._places: dict[str, tuple[int, int]] = {}  # id -> offset, length in the file
        self.plaintext_bytes = 0
        self._sealed: tuple[str, Trailer, int] | None = None

    def __len__(self) -> int:
        return len(self._places)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._places

    def add(self, object_id: str, plaintext: bytes, *, compress: bool) -> None:
        """Encode and append one object. If its write fails (a full disk), the error is
        raised and the object is not in the pack; the stream goes on as before it."""
        framed = frame_entry(self.keys, self.dictionary, object_id, plaintext, compress=compress)
        offset, length = self._file.add(bytes.fromhex(object_id), framed)
        self._places[object_id] = (offset, length)
        self.plaintext_bytes += len(plaintext)

    def read(self, object_id: str) -> bytes | None:
        found = self._places.get(object_id)
        if found is None:
            return None
        data = self._file.read(found[0], found[1])
        if self.keys is not None:
            return self.keys.open(object_id, data, self.dictionary)
        return unframe_plain(data, self.dictionary)

    @property
    def full(self) -> bool:
        return self.plaintext_bytes >= PACK_PLAINTEXT_LIMIT

    def seal(self) -> tuple[str, Trailer, int]:
        """Write the trailer and close the file (not synced): name, trailer, file size. Called
        again (after an interruption), the same answer; the objects stay readable."""
        if self._sealed is None:
            name, trailer = self._file.finish()
            self._sealed = (name, trailer, self._file.size)
        return self._sealed

    def abort(self) -> None:
        """Remove the temp file: the objects added are dropped."""
        self._file.abort()
        self._places.clear()


def frame_entry(
    keys: VaultKeys | None,
    dictionary: Dictionary | None,
    object_id: str,
    plaintext: bytes,
    *,
    compress: bool,
) -> bytes:
    """A pack entry's bytes (FORMAT.md §10): framed or sealed, against the dictionary."""
    if keys is not None:
        return keys.seal(object_id, plaintext, compress=compress, dictionary=dictionary)
    return frame_plain(plaintext, compress=compress, dictionary=dictionary)


def new_dictionary(samples: list[bytes]) -> bytes | None:
    return train_dictionary(samples, DICTIONARY_SIZE)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
