"""Posting lists as compressed bitmaps of document numbers (docs/FORMAT.md §9).

Every job in the index has a *document number* (``doc``), a 32-bit integer of its own. A
posting list — the jobs with a word, a type, a parameter value, a user, a day — is a Roaring
bitmap of those numbers in its portable serialization (the format every Roaring library
reads). Lists of the words, types, parameters and users tables are cut in *shards* of 65,536
numbers (``doc >> 16``, a Roaring container's span), one LMDB value each (at most 8 KiB), so a
change rewrites the few kilobytes it touches rather than a list of a million jobs; a reader
unions a list's shards. Day lists are small and are one value per day.

Why bitmaps (measured in docs/design.md, "Search at a million jobs"): a posting per LMDB key
costs a Python step per job a query reads; a bitmap is read in one call and intersected in C.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import lmdb
from pyroaring import BitMap

SEP = b"\x00"
SHARD_BITS = 16
_SHARD = struct.Struct(">H")
SHARD_SIZE = _SHARD.size  # bytes of a list key's shard number
_DOC = struct.Struct(">I")
_DAY = struct.Struct(">I")
MICROS_PER_DAY = 86_400_000_000
# Day numbers are offset so that every real day sorts after day 0, the jobs of unknown time.
DAY_OFFSET = 1 << 24
UNKNOWN_DAY = 0


def shard_of(doc: int) -> int:
    return doc >> SHARD_BITS


def list_key(part: bytes, shard: int) -> bytes:
    """``part 00 shard``: a shard of one posting list (``part`` holds no ``00``)."""
    return part + SEP + _SHARD.pack(shard)


def shard_key(doc: int) -> bytes:
    """The ``live`` table's key for the shard holding ``doc``."""
    return _SHARD.pack(shard_of(doc))


def doc_key(doc: int) -> bytes:
    return _DOC.pack(doc)


def doc_of(key: bytes) -> int:
    return int(_DOC.unpack(key)[0])


def day_of(micros: int) -> int:
    """The day list a job of this enqueue time (µs since epoch; 0 = unknown) is in."""
    if micros == 0:
        return UNKNOWN_DAY
    return max(1, micros // MICROS_PER_DAY + DAY_OFFSET)


def day_key(day: int) -> bytes:
    return _DAY.pack(day)


def day_from_key(key: bytes) -> int:
    return int(_DAY.unpack(key[:4])[0])


def day_bounds(day: int) -> tuple[int, int]:
    """The first and last µs of a day list (never called for UNKNOWN_DAY)."""
    low = (day - DAY_OFFSET) * MICROS_PER_DAY
    return low, low + MICROS_PER_DAY - 1


def load(value: bytes | memoryview) -> BitMap:
    return BitMap.deserialize(bytes(value))


# A one-number list in Roaring's portable format: cookie 12346 (no runs), one container, its
# key (2 bytes) and cardinality - 1 (0), its offset, then the number's low 16 bits.
_ONE_HEAD = bytes.fromhex("3a30000001000000")
_ONE_SIZE = 18


def only_number(value: bytes | memoryview) -> int | None:
    """The number of a list value holding exactly one, read from its bytes (no bitmap made:
    most prompt bands hold one job); None for any other value."""
    if len(value) != _ONE_SIZE or value[:8] != _ONE_HEAD:
        return None
    return int.from_bytes(value[8:10], "little") << 16 | int.from_bytes(value[16:], "little")


def holds_two(cursor: lmdb.Cursor, part: bytes) -> bool:
    """Whether one posting list's shards hold two numbers or more between them."""
    prefix = part + SEP
    held = 0
    if cursor.set_range(prefix):
        for key, value in cursor.iternext():
            if not bytes(key).startswith(prefix):
                break
            held += 1 if only_number(value) is not None else len(load(value))
            if held >= 2:
                return True
    return False


def dump(bitmap: BitMap) -> bytes:
    bitmap.run_optimize()
    return bytes(bitmap.serialize())


def read_list(cursor: lmdb.Cursor, part: bytes) -> BitMap:
    """The union of one posting list's shards."""
    prefix = part + SEP
    shards = []
    if cursor.set_range(prefix):
        for key, value in cursor.iternext():
            if not bytes(key).startswith(prefix):
                break
            shards.append(load(value))
    if not shards:
        return BitMap()
    if len(shards) == 1:
        return shards[0]
    return BitMap.union(*shards)


def parts_with_prefix(cursor: lmdb.Cursor, prefix: bytes) -> Iterator[bytes]:
    """Distinct parts starting with ``prefix``, jumping over each part's shards."""
    position = prefix
    while cursor.set_range(position):
        key = bytes(cursor.key())
        if not key.startswith(prefix):
            return
        part = key[: key.index(SEP)]
        yield part
        position = part + b"\x01"  # the first key after every "part 00 …"


class Changes:
    """Numbers to add to and remove from lists, gathered over many jobs and written together:
    a list shard is read, changed and written once per batch, not once per job.

    A number both removed and added stays (a job re-indexed with the same word); one added
    and then removed goes. Writing is idempotent: applying the same changes twice leaves the
    same lists, which is what lets an interrupted update be applied again.
    """

    def __init__(self) -> None:
        # (table, key) -> the one number to add, or (numbers to add, numbers to remove). Most
        # lists a batch touches get one number (nearly every prompt band, rare words): a
        # plain int is a tenth of two bitmaps, which kept a batch of 8,192 jobs' bands at
        # ~200 MB (docs/design.md, "Prompt families").
        self._lists: dict[tuple[bytes, bytes], int | tuple[BitMap, BitMap]] = {}
        self.numbers = 0

    def _pair(self, table: bytes, key: bytes) -> tuple[BitMap, BitMap]:
        entry = self._lists.get((table, key))
        if isinstance(entry, tuple):
            return entry
        pair = (BitMap() if entry is None else BitMap([entry]), BitMap())
        self._lists[(table, key)] = pair
        return pair

    def add(self, table: bytes, key: bytes, doc: int) -> None:
        entry = self._lists.get((table, key))
        if entry is None:
            self._lists[(table, key)] = doc
        elif isinstance(entry, tuple):
            entry[0].add(doc)
        elif entry != doc:
            self._lists[(table, key)] = (BitMap([entry, doc]), BitMap())
        self.numbers += 1

    def remove(self, table: bytes, key: bytes, doc: int) -> None:
        adds, removes = self._pair(table, key)
        adds.discard(doc)
        removes.add(doc)
        self.numbers += 1

    def writes(self) -> Iterator[tuple[bytes, bytes, Change]]:
        """(table, key, change) in key order, so neighbouring writes share pages; a change is
        written by :func:`write_change`."""
        for (table, key), entry in sorted(self._lists.items(), key=_first):
            yield table, key, entry


# A list's change: the one number to add, or (numbers to add, numbers to remove).
Change = int | tuple[BitMap, BitMap]


def _first(item: tuple[tuple[bytes, bytes], Any]) -> tuple[bytes, bytes]:
    return item[0]


def write_change(txn: lmdb.Transaction, db: Any, key: bytes, change: Change) -> int:
    """One shard changed as :meth:`Changes.writes` gave it; the numbers it now holds."""
    if isinstance(change, int):
        return write_list(txn, db, key, BitMap([change]), BitMap())
    return write_list(txn, db, key, *change)


def write_list(txn: lmdb.Transaction, db: Any, key: bytes, adds: BitMap, removes: BitMap) -> int:
    """One shard: read, change, write back (or delete when it empties); the numbers it now
    holds."""
    old = txn.get(key, db=db)
    bitmap = load(old) if old is not None else BitMap()
    bitmap -= removes
    bitmap |= adds
    if bitmap:
        txn.put(key, dump(bitmap), db=db)
    elif old is not None:
        txn.delete(key, db=db)
    return len(bitmap)
