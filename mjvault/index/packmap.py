"""Which pack holds each packed object: an LMDB cache of the packs' trailers.

``index/packs/`` (docs/FORMAT.md, "Packs"). Like the index it is derived data: deleting it
loses nothing, and :meth:`PackMap.add` rebuilds it pack by pack from their trailers. A pack is
numbered when it is added, so each object costs a 32-byte key and a 12-byte value (pack
number, offset, length), and a million records about 60 MB of map, paged in only as looked up.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from mjvault.index.db import (
    _DAMAGE,
    IndexDamaged,
    _disk_full,
    _MappedPages,
    _reason,
    share_environment,
    unshare_environment,
)

LOCATION = struct.Struct(">III")  # pack number, offset, length
PACK_ROW = struct.Struct(">II")  # pack number, object count
NUMBER = struct.Struct(">I")
NO_DICTIONARY = bytes(32)
MAP_FORMAT = b"1"
TABLES = (b"meta", b"objects", b"packs", b"numbers")
# Lookups between two releases of the map's resident pages. Each lookup faults in its path
# and the kernel's read-around: with a map of a million objects, 256 lookups left ~23 MB
# resident, 32 leave ~4 MB for ~4 µs more a lookup (scripts/bench/bench_packmap_release.py;
# a writer asks ~1.4 times a job). The index releases every 16 (RELEASE_EVERY).
MAP_RELEASE_EVERY = 32
# Keys asked in one read transaction by :meth:`PackMap.absent` (ids in ascending order), the
# map's pages released after each: in key order, 4,096 lookups of a million-object map touch
# a few hundred of its pages, not 4,096 paths.
ORDERED_CHUNK = 4096
# Keys a write transaction sets or deletes between two releases: a release costs a walk of
# the map's page tables (~0.4 ms at 40 MB), 64 keys map in about 1 MB.
WRITE_RELEASE_EVERY = 64
# Keys :meth:`PackMap.add` puts in one write transaction. LMDB keeps every page a write
# transaction dirties in the process's heap until it commits (and keeps that memory for later
# ones), and a pack's ids land all over the objects table: one transaction for a whole pack of
# a large vault dirtied tens of MB.
ADD_BATCH = 512
# ``meta`` key of a pack being added (followed by its 32-byte name; value: its number). While
# it is there, the pack's objects may be mapped in part: whoever opens the map finishes the
# add from the pack's trailer, or rolls it back if the pack is gone.
ADDING = b"adding"


def _map_tables(env: lmdb.Environment) -> dict[bytes, Any]:
    dbs = {name: env.open_db(name, create=True) for name in TABLES}
    # Opening a map that has its format reads it and writes nothing: a write transaction's
    # commit syncs the file, 5-12 ms of every command that only reads (issue 12, start-up).
    with env.begin() as txn:
        found = txn.get(b"format", db=dbs[b"meta"])
    if found is None:
        with env.begin(write=True) as txn:
            found = txn.get(b"format", db=dbs[b"meta"])
            if found is None:
                txn.put(b"format", MAP_FORMAT, db=dbs[b"meta"])
    if found not in (None, MAP_FORMAT):
        raise IndexDamaged("the pack map has an unknown format")
    return dbs


@dataclass(frozen=True, slots=True)
class Location:
    pack: str
    offset: int
    length: int
    dictionary: str | None  # the pack's zstd dictionary object, if it has one


class PackMap:
    """Object id -> :class:`Location`, and the set of packs it has read.

    Tables: ``objects`` id (32 bytes) -> pack number, offset, length; ``packs`` pack name
    (32 bytes) -> number, object count; ``numbers`` number -> pack name and its dictionary
    id (32 zero bytes for none); ``meta`` ``format``, ``next`` number, ``dictionary`` (hex).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # The index's folder is private (prompts in plaintext): create it so, not 0755.
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        self._key, self.env, self.db = share_environment(
            path, "the pack map", len(TABLES), _map_tables
        )
        self._closed = False
        self.pages = _MappedPages(path / "data.mdb")
        self._lookups = 0
        self._names: dict[int, tuple[str, str | None]] = {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pages.close()
        unshare_environment(self._key)

    @contextlib.contextmanager
    def _txn(self, *, write: bool = False) -> Iterator[lmdb.Transaction]:
        try:
            with self.env.begin(write=write) as txn:
                yield txn
        except _DAMAGE as exc:
            raise IndexDamaged(f"the pack map at {self.path} is damaged: {_reason(exc)}") from None
        except lmdb.MapFullError:
            raise _disk_full(self.path) from None
        except lmdb.DiskError:
            raise _disk_full(self.path) from None

    # -- lookups -----------------------------------------------------------------------------
    def locate(self, object_id: bytes) -> Location | None:
        """Where a packed object is, or None."""
        self._touched()
        with self._txn() as txn:
            value = txn.get(object_id, db=self.db[b"objects"])
            if value is None:
                return None
            number, offset, length = LOCATION.unpack(value)
            named = self._names.get(number)
            if named is None:
                raw = txn.get(NUMBER.pack(number), db=self.db[b"numbers"])
                if raw is None:
                    return None
                raw = bytes(raw)
                dictionary = raw[32:64]
                named = (raw[:32].hex(), dictionary.hex() if dictionary.strip(b"\0") else None)
                self._names[number] = named
        return Location(named[0], offset, length, named[1])

    def contains(self, object_id: bytes) -> bool:
        self._touched()
        with self._txn() as txn:
            return txn.get(object_id, db=self.db[b"objects"]) is not None

    def contains_many(self, object_ids: list[bytes]) -> list[bool]:
        """:meth:`contains` of each, in one read transaction."""
        self._lookups += len(object_ids) - 1
        self._touched()
        objects = self.db[b"objects"]
        with self._txn() as txn:
            get = txn.get
            return [get(key, db=objects) is not None for key in object_ids]

    def absent(self, object_ids: Iterable[bytes]) -> Iterator[bytes]:
        """Those of ``object_ids`` the map has no row for, for ids given in ascending order
        (:mod:`mjvault.integrity.sortedids`): the lookups then walk the objects table front
        to back, so each of its pages is faulted in about once, however large the map, and
        the pages are released after every :data:`ORDERED_CHUNK` keys (one read transaction
        each). Any order is answered correctly; only the cost depends on it."""
        chunk: list[bytes] = []
        for object_id in object_ids:
            chunk.append(object_id)
            if len(chunk) == ORDERED_CHUNK:
                yield from self._absent_of(chunk)
                chunk = []
        if chunk:
            yield from self._absent_of(chunk)

    def _absent_of(self, chunk: list[bytes]) -> list[bytes]:
        objects = self.db[b"objects"]
        with self._txn() as txn:
            get = txn.get
            found = [key for key in chunk if get(key, db=objects) is None]
        self.pages.release()
        return found

    def _touched(self) -> None:
        self._lookups += 1
        if self._lookups >= MAP_RELEASE_EVERY:
            self._lookups = 0
            self.pages.release()

    def packs(self) -> set[str]:
        """Names of every pack the map has read (a few thousand at a million jobs)."""
        with self._txn() as txn:
            return {
                bytes(key).hex() for key in txn.cursor(db=self.db[b"packs"]).iternext(values=False)
            }

    def iter_ids(self) -> Iterator[bytes]:
        """Every packed object's id, in id order, read in slices so no snapshot is held long."""
        after = b""
        while True:
            with self._txn() as txn:
                cursor = txn.cursor(db=self.db[b"objects"])
                found = cursor.set_range(after) if after else cursor.first()
                chunk: list[bytes] = []
                while found and len(chunk) < 4096:
                    key = bytes(cursor.key())
                    if key != after:
                        chunk.append(key)
                    found = cursor.next()
            self.pages.release()
            if not chunk:
                return
            yield from chunk
            after = chunk[-1]

    def forget_number(self, pack: str) -> None:
        """Forget a pack whose file is gone, and every object the map placed in it."""
        with self._txn() as txn:
            row = txn.get(bytes.fromhex(pack), db=self.db[b"packs"])
            if row is None:
                return
            number = PACK_ROW.unpack(row)[0]
            placed = self._placed_in(txn, number)
        self.remove(pack, placed)

    def entries_of(self, pack: str) -> tuple[list[tuple[bytes, int, int]], str | None] | None:
        """The objects the map places in ``pack`` (id, offset, length) and its dictionary, or
        None if it does not know the pack: what a repair can still read of a pack whose
        trailer is damaged. Scans the map, as :meth:`forget_number` does."""
        name = bytes.fromhex(pack)
        with self._txn() as txn:
            row = txn.get(name, db=self.db[b"packs"])
            if row is None:
                return None
            number = PACK_ROW.unpack(row)[0]
            named = txn.get(NUMBER.pack(number), db=self.db[b"numbers"])
            dictionary = bytes(named[32:64]) if named is not None else NO_DICTIONARY
            # A pack holds a bounded number of objects, so its entries fit in memory.
            found = []
            for key, value in txn.cursor(db=self.db[b"objects"]):
                at, offset, length = LOCATION.unpack(value)
                if at == number:
                    found.append((bytes(key), offset, length))
        return found, dictionary.hex() if dictionary != NO_DICTIONARY else None

    def object_count(self) -> int:
        with self._txn() as txn:
            return int(txn.stat(self.db[b"objects"])["entries"])

    def dictionary(self) -> str | None:
        """The dictionary new packs use: the one the newest dictionary pack named."""
        with self._txn() as txn:
            value = txn.get(b"dictionary", db=self.db[b"meta"])
        return bytes(value).decode("ascii") if value else None

    # -- changes -------------------------------------------------------------------------------
    def add(
        self,
        pack: str,
        entries: Iterable[tuple[bytes, int, int]],
        dictionary: str | None,
        *,
        owner: bool = True,
    ) -> None:
        """Record a pack's objects. An object already mapped elsewhere now points here (both
        copies are the same object; a repack adds its new pack, then removes the old one) —
        unless this call only takes up an add another call began (its marker was there), see
        :meth:`finish`, or is not by the pack's ``owner`` (its writer): a pack found on disk
        unmapped may be one a merge is about to remove, its objects already moved on.

        In transactions of :data:`ADD_BATCH` keys, the first of which numbers the pack and
        marks it being added (:data:`ADDING`) and the last lists it in ``packs``. An add
        stopped between them is taken up again by adding the same pack: it keeps its number."""
        self._add(pack, entries, dictionary, start=True, owner=owner)

    def finish(
        self,
        pack: str,
        entries: Iterable[tuple[bytes, int, int]],
        dictionary: str | None,
    ) -> None:
        """Take up an add of ``pack`` that is marked unfinished (:meth:`unfinished`), from its
        trailer's ``entries``; nothing if it is no longer marked (finished, or rolled back,
        by someone else since). Leaves alone the objects the map places in another listed
        pack: its owner, not a latecomer, decides where they point."""
        self._add(pack, entries, dictionary, start=False, owner=False)

    def _add(
        self,
        pack: str,
        entries: Iterable[tuple[bytes, int, int]],
        dictionary: str | None,
        *,
        start: bool,
        owner: bool,
    ) -> None:
        name = bytes.fromhex(pack)
        marker = ADDING + name
        meta = self.db[b"meta"]
        with self._txn(write=True) as txn:
            if txn.get(name, db=self.db[b"packs"]) is not None:
                # Listed already. A marker left beside it (a finisher of an older release
                # could put the row back after the add was done) would be taken up forever.
                txn.delete(marker, db=meta)
                return
            raw = txn.get(marker, db=meta)
            if raw is not None:
                number = NUMBER.unpack(raw)[0]
                owner = False  # another call began it: this one only finishes it
            elif not start:
                return
            else:
                raw_next = txn.get(b"next", db=meta)
                number = NUMBER.unpack(raw_next)[0] if raw_next else 1
                txn.put(b"next", NUMBER.pack(number + 1), db=meta)
                txn.put(marker, NUMBER.pack(number), db=meta)
            txn.put(
                NUMBER.pack(number),
                name + (bytes.fromhex(dictionary) if dictionary else NO_DICTIONARY),
                db=self.db[b"numbers"],
            )
            if dictionary:
                txn.put(b"dictionary", dictionary.encode("ascii"), db=meta)
        # Every later transaction first checks the marker still holds this number: once it
        # does not, someone else finished the add (or rolled it back), and what happened to
        # the map since (a merge moving these objects on and removing the pack) must stand.
        guard = (marker, NUMBER.pack(number))
        count = 0
        batch: list[tuple[bytes, bytes]] = []
        for object_id, offset, length in entries:
            batch.append((object_id, LOCATION.pack(number, offset, length)))
            if len(batch) == ADD_BATCH:
                if not self._put_objects(batch, guard, keep_listed=None if owner else number):
                    return
                count += len(batch)
                batch.clear()
        if batch:
            if not self._put_objects(batch, guard, keep_listed=None if owner else number):
                return
            count += len(batch)
        with self._txn(write=True) as txn:
            if txn.get(marker, db=meta) != guard[1]:
                return
            txn.put(name, PACK_ROW.pack(number, count), db=self.db[b"packs"])
            txn.delete(marker, db=meta)

    def _put_objects(
        self,
        batch: list[tuple[bytes, bytes]],
        guard: tuple[bytes, bytes],
        keep_listed: int | None,
    ) -> bool:
        """Put ``(id, location)`` pairs in one transaction, if ``meta`` still holds the
        marker ``guard`` (key, value); whether it did. With ``keep_listed`` (the number being
        added), an id the map places in another pack listed in ``packs`` is left there."""
        objects = self.db[b"objects"]
        with self._txn(write=True) as txn:
            if txn.get(guard[0], db=self.db[b"meta"]) != guard[1]:
                return False
            listed: dict[int, bool] = {}
            for n, (object_id, value) in enumerate(batch, 1):
                if keep_listed is not None:
                    held = txn.get(object_id, db=objects)
                    if held is not None:
                        at = LOCATION.unpack(held)[0]
                        if at != keep_listed:
                            if at not in listed:
                                listed[at] = self._is_listed(txn, at)
                            if listed[at]:
                                continue
                txn.put(object_id, value, db=objects)
                # Each put reads its path of the table through the map: without releases
                # inside the transaction, one pack gathers most of a large map (66 MB
                # resident at a 300k-job build's peak).
                if n % WRITE_RELEASE_EVERY == 0:
                    self.pages.release()
        # The ids land all over the objects table: the transaction read pages from all
        # of it through the map, and they would stay in our resident set.
        self.pages.release()
        return True

    def _is_listed(self, txn: lmdb.Transaction, number: int) -> bool:
        """Whether pack ``number`` is one ``packs`` lists (under that number)."""
        named = txn.get(NUMBER.pack(number), db=self.db[b"numbers"])
        if named is None:
            return False
        row = txn.get(bytes(named[:32]), db=self.db[b"packs"])
        return row is not None and PACK_ROW.unpack(row)[0] == number

    def fill(self, pack: str, entries: Iterable[tuple[bytes, int, int]]) -> None:
        """Map those of ``entries`` the map has no row for at all to ``pack`` (listed
        already): what a rollback unmapped that an older pack still holds."""
        objects = self.db[b"objects"]
        batch = list(entries)
        for start in range(0, len(batch), ADD_BATCH):
            with self._txn(write=True) as txn:
                row = txn.get(bytes.fromhex(pack), db=self.db[b"packs"])
                if row is None:
                    return
                number = PACK_ROW.unpack(row)[0]
                for object_id, offset, length in batch[start : start + ADD_BATCH]:
                    if txn.get(object_id, db=objects) is None:
                        txn.put(object_id, LOCATION.pack(number, offset, length), db=objects)
            self.pages.release()

    def unfinished(self) -> list[str]:
        """Packs whose add was stopped part way (:data:`ADDING`), by name."""
        with self._txn() as txn:
            cursor = txn.cursor(db=self.db[b"meta"])
            found = []
            if cursor.set_range(ADDING):
                for key in cursor.iternext(values=False):
                    if not bytes(key).startswith(ADDING):
                        break
                    found.append(bytes(key)[len(ADDING) :].hex())
        return found

    def _placed_in(self, txn: lmdb.Transaction, number: int) -> list[bytes]:
        """Every object id the map places in pack ``number`` (a scan of the whole table: only
        for a pack gone missing). A pack holds a bounded number of objects, so they fit in
        memory."""
        return [
            bytes(key)
            for key, value in txn.cursor(db=self.db[b"objects"])
            if LOCATION.unpack(value)[0] == number
        ]

    def abandon(self, pack: str) -> set[bytes]:
        """Roll back an add stopped part way whose pack is gone: unmap the objects it placed
        there (as :meth:`forget_number` does for a pack that was mapped whole). Returns the
        ids unmapped: the add had pointed them away from any older pack that holds them too,
        so the caller maps those back (:meth:`fill`)."""
        marker = ADDING + bytes.fromhex(pack)
        meta = self.db[b"meta"]
        with self._txn() as txn:
            raw = txn.get(marker, db=meta)
            if raw is None:
                return set()
            raw = bytes(raw)
            number = NUMBER.unpack(raw)[0]
            placed = self._placed_in(txn, number)
        unmapped: set[bytes] = set()
        for start in range(0, len(placed), ADD_BATCH):
            with self._txn(write=True) as txn:
                if txn.get(marker, db=meta) != raw:
                    return unmapped  # taken up or rolled back by someone else meanwhile
                for object_id in placed[start : start + ADD_BATCH]:
                    value = txn.get(object_id, db=self.db[b"objects"])
                    if value is not None and LOCATION.unpack(value)[0] == number:
                        txn.delete(object_id, db=self.db[b"objects"])
                        unmapped.add(object_id)
            self.pages.release()
        with self._txn(write=True) as txn:
            if txn.get(marker, db=meta) == raw:
                txn.delete(NUMBER.pack(number), db=self.db[b"numbers"])
                txn.delete(marker, db=meta)
        self._names.pop(number, None)
        return unmapped

    def move(self, pack: str, entries: Iterable[tuple[bytes, int, int]]) -> None:
        """Point ``entries`` at ``pack`` (already added), whatever pack held them before."""
        name = bytes.fromhex(pack)
        with self._txn(write=True) as txn:
            row = txn.get(name, db=self.db[b"packs"])
            if row is None:
                raise KeyError(pack)
            number = PACK_ROW.unpack(row)[0]
            objects = self.db[b"objects"]
            for n, (object_id, offset, length) in enumerate(entries, 1):
                value = LOCATION.pack(number, offset, length)
                # Mostly there already (`add` points a new pack's objects at it): a put of the
                # same value would still copy its page, and a move of every object would
                # leave the map file twice its size in free pages.
                if txn.get(object_id, db=objects) != value:
                    txn.put(object_id, value, db=objects)
                if n % WRITE_RELEASE_EVERY == 0:
                    self.pages.release()
        self.pages.release()

    def remove(self, pack: str, object_ids: Iterable[bytes]) -> None:
        """Forget a pack, and those of ``object_ids`` that the map still places in it."""
        name = bytes.fromhex(pack)
        with self._txn(write=True) as txn:
            row = txn.get(name, db=self.db[b"packs"])
            if row is None:
                return
            number = PACK_ROW.unpack(row)[0]
            objects = self.db[b"objects"]
            for n, object_id in enumerate(object_ids, 1):
                value = txn.get(object_id, db=objects)
                if value is not None and LOCATION.unpack(value)[0] == number:
                    txn.delete(object_id, db=objects)
                if n % WRITE_RELEASE_EVERY == 0:
                    self.pages.release()
            txn.delete(name, db=self.db[b"packs"])
            txn.delete(NUMBER.pack(number), db=self.db[b"numbers"])
        self.pages.release()
        self._names.pop(number, None)
