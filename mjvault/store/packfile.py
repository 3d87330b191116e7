"""The bytes of one pack file (docs/FORMAT.md, "Packs"): many small objects and their index.

A pack is ``MJVP``, a version byte, a flags byte, then the objects' framed bytes one after
another, then a trailer that indexes them. Version 2, what mjvault writes in a vault::

    entries   per object, in file order: id (32 bytes) | length (u32); each object starts
              where the one before it ends, the first right after the 6-byte header
    dict      id of the zstd dictionary entries of encoding 2 use, or 32 zero bytes
    count     number of entries (u32)
    checksum  first 16 bytes of BLAKE3 of the trailer up to here
    size      trailer length in bytes, this field and the end magic included (u32)
    ``MJVP``

Version 1 (still read, and what push writes to a remote) lists the entries sorted by id with
an offset each: id (32 bytes) | offset (u64) | length (u32), 44 bytes where version 2 needs
36. All integers are big-endian. The pack's name is the BLAKE3-256 of the whole file, so the
file is checked as a whole by hashing it and each object by its own name, like a loose one.
The trailer is read from the end alone (one ``pread``), so listing a pack's objects never
reads its entries; a reader sorts version 2's rows by id.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import blake3

from mjvault.errors import CorruptObject
from mjvault.store.fsutil import start_writeback

PACK_MAGIC = b"MJVP"
# What new packs are written as; tests set it to 1 to write packs as older mjvault did.
PACK_VERSION = 2
PACK_VERSIONS = (1, 2)
HEADER_SIZE = 6
ENTRY = struct.Struct(">32sQI")  # version 1: id, offset, length
ENTRY_V2 = struct.Struct(">32sI")  # version 2: id, length (offsets follow from the lengths)
TAIL = struct.Struct(">32sI16sI4s")  # dict, count, checksum, size, magic
NO_DICTIONARY = bytes(32)
CHECKSUM_LEN = 16
# An entry larger than this is never packed (media stay loose): bounds what a damaged
# length field can make a reader allocate.
MAX_ENTRY = 64 * 1024 * 1024
# A damaged trailer cannot claim more entries than a pack of the largest size could hold.
MAX_ENTRIES = 4 * 1024 * 1024

Pread = Callable[[int, int], bytes]  # (length, offset) -> bytes, as os.pread without the fd


class PackDamaged(CorruptObject):
    """A pack's header or trailer does not parse or does not match its checksum."""


@dataclass(frozen=True, slots=True)
class PackEntry:
    object_id: bytes  # 32 bytes
    offset: int
    length: int

    @property
    def hex_id(self) -> str:
        return self.object_id.hex()


@dataclass(frozen=True, slots=True)
class Trailer:
    entries: list[PackEntry]
    dictionary_id: str | None
    data_end: int  # where the entries end and the trailer begins


def is_pack_id(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def header(version: int) -> bytes:
    return PACK_MAGIC + bytes((version, 0))


def encode_pack(
    entries: list[tuple[bytes, bytes]], dictionary_id: str | None, version: int | None = None
) -> tuple[bytes, Trailer]:
    """A whole pack from ``(32-byte id, framed object bytes)`` pairs (any order, no repeats),
    and its trailer; of ``version`` (by default :data:`PACK_VERSION`)."""
    version = version or PACK_VERSION
    parts = [header(version)]
    index: list[tuple[bytes, int, int]] = []
    offset = HEADER_SIZE
    for object_id, framed in entries:
        _check_entry(object_id, framed)
        index.append((object_id, offset, len(framed)))
        parts.append(framed)
        offset += len(framed)
    trailer_bytes, trailer = encode_trailer(index, dictionary_id, offset, version)
    parts.append(trailer_bytes)
    return b"".join(parts), trailer


def _check_entry(object_id: bytes, framed: bytes) -> None:
    if len(object_id) != 32 or len(framed) > MAX_ENTRY:
        raise ValueError("a pack entry needs a 32-byte id and at most 64 MiB of bytes")


def encode_trailer(
    index: list[tuple[bytes, int, int]],
    dictionary_id: str | None,
    data_end: int,
    version: int | None = None,
) -> tuple[bytes, Trailer]:
    """The trailer of a pack whose entries are ``index`` (id, offset, length; in file order,
    one after another from the header on; sorted by id here in place) and whose entry bytes
    end at ``data_end``."""
    version = version or PACK_VERSION
    if version == 2:
        # Readers place each entry where the one before it ends: a writer whose index had a
        # gap would publish a pack whose every later object reads as damaged.
        end = HEADER_SIZE
        for _, offset, length in index:
            if offset != end:
                raise ValueError("a version 2 pack's entries must follow one another")
            end += length
        if end != data_end:
            raise ValueError("a version 2 pack's entries must end where its trailer starts")
        body = b"".join(ENTRY_V2.pack(object_id, length) for object_id, _, length in index)
    index.sort()
    if any(a[0] == b[0] for a, b in zip(index, index[1:], strict=False)):
        raise ValueError("a pack cannot hold the same object twice")
    if version == 1:
        body = b"".join(ENTRY.pack(*item) for item in index)
    dictionary = bytes.fromhex(dictionary_id) if dictionary_id else NO_DICTIONARY
    head = body + dictionary + struct.pack(">I", len(index))
    checksum = blake3.blake3(head).digest()[:CHECKSUM_LEN]
    size = len(head) + CHECKSUM_LEN + 4 + 4
    trailer = Trailer([PackEntry(*item) for item in index], dictionary_id, data_end)
    return head + checksum + struct.pack(">I", size) + PACK_MAGIC, trailer


class PackFileWriter:
    """One pack written to a new file entry by entry, hashed on the way: the same bytes
    :func:`encode_pack` makes, with only the entries' index (id, offset, length) in memory.

    The file is created at ``path`` (which must not exist) with mode 0444, and is not synced:
    the caller syncs, then renames it to :attr:`name`, as for any object (FORMAT.md §8).

    A write that fails (a full disk) costs only what was being added: the file is cut back
    to the bytes written before, the entry (or the trailer) is dropped, and the error raised;
    the entries added before stay, and the writer goes on (or finishes once there is room).
    The hash covers only bytes in the file, so it always names what is there. Only a file
    that could not be cut back leaves the writer broken: it cannot be finished, only aborted.
    """

    # Entries are gathered into writes of about this size: one system call per entry would
    # cost more than the entry's encoding.
    WRITE_SIZE = 256 * 1024

    def __init__(
        self, path: str | os.PathLike[str], dictionary_id: str | None, version: int | None = None
    ) -> None:
        self.path = path
        self.dictionary_id = dictionary_id
        self.version = version or PACK_VERSION
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        self._hasher = blake3.blake3()
        self._index: list[tuple[bytes, int, int]] = []
        self._buffer = bytearray()
        self._written = 0  # bytes in the file; the buffer holds the next ones
        self._broken = False
        self._closed = False
        self._trailer: Trailer | None = None  # written
        self._finished: tuple[str, Trailer] | None = None
        self._append(header(self.version))

    @property
    def size(self) -> int:
        return self._written + len(self._buffer)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, object_id: bytes, framed: bytes) -> tuple[int, int]:
        """Append one entry; its (offset, length) in the file."""
        _check_entry(object_id, framed)
        offset = self.size
        self._append(framed)
        self._index.append((object_id, offset, len(framed)))
        return offset, len(framed)

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of an entry already added (from the file, or still in the buffer)."""
        if offset >= self._written:
            start = offset - self._written
            return bytes(self._buffer[start : start + length])
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise PackDamaged(f"pack being written at {self.path} was cut short")
        return data

    def finish(self) -> tuple[str, Trailer]:
        """Write the trailer and close the file; the pack's name and trailer."""
        if self._finished is not None:
            return self._finished  # finished before, or stopped after its trailer was written
        if self._closed and self._trailer is None:
            raise ValueError("this pack file is aborted already")
        if self._trailer is None:
            self._check_whole()
            trailer_bytes, trailer = encode_trailer(
                self._index, self.dictionary_id, self.size, self.version
            )
            self._append(trailer_bytes, flush=True)
            self._trailer = trailer
        if not self._closed:
            # Let the disk start on the bytes now: the batch's sync then mostly waits for
            # writes already under way.
            start_writeback(self.fd)
            self._close()
        self._finished = (self._hasher.hexdigest(), self._trailer)
        return self._finished

    def abort(self) -> None:
        """Close and remove the file (already gone is fine)."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _append(self, data: bytes, *, flush: bool = False) -> None:
        """Add ``data`` after the bytes so far; if writing them out fails, drop ``data`` again
        (the file and the buffer as they were before) and raise."""
        self._check_whole()
        kept = len(self._buffer)
        self._buffer += data
        if flush or len(self._buffer) >= self.WRITE_SIZE:
            try:
                self._write_buffer()
            except BaseException:
                del self._buffer[kept:]
                raise

    def _write_buffer(self) -> None:
        view = memoryview(self._buffer)
        try:
            while view:
                done = os.write(self.fd, view)
                view = view[done:]
        except BaseException:
            # Part of the buffer may be in the file: cut it back, so the file, its hash and the
            # offsets given out still agree.
            view.release()
            self._cut_back()
            raise
        view.release()
        self._hasher.update(self._buffer)
        self._written += len(self._buffer)
        self._buffer.clear()

    def _check_whole(self) -> None:
        if self._broken:
            # An error of the file, as the write that failed was: the caller reports it as one.
            raise OSError(errno.EIO, "pack file was not written whole", os.fspath(self.path))

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.fd, self._written)
            # The next write goes where the cut is, not after a hole the size of the bytes cut.
            os.lseek(self.fd, self._written, os.SEEK_SET)
        except OSError:
            self._broken = True

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)


def pack_name(data: bytes | memoryview) -> str:
    return blake3.blake3(data).hexdigest()


def read_trailer(fd: int, file_size: int, name: str = "pack") -> Trailer:
    """The trailer of the open pack ``fd``, checked; :class:`PackDamaged` if it is not sound."""
    return parse_trailer(lambda length, offset: os.pread(fd, length, offset), file_size, name)


def parse_trailer(
    pread: Pread, file_size: int, name: str = "pack", versions: tuple[int, ...] = PACK_VERSIONS
) -> Trailer:
    """:func:`read_trailer` over any ``pread(length, offset)``: a pack in memory, or on a
    remote read with ranged requests (``versions=(1,)``: a remote's packs are version 1)."""
    rows, dictionary_id, start = parse_trailer_rows(pread, file_size, name, versions)
    return Trailer([PackEntry(*row) for row in rows], dictionary_id, start)


def read_trailer_rows(
    fd: int, file_size: int, name: str = "pack"
) -> tuple[list[tuple[bytes, int, int]], str | None, int]:
    """:func:`read_trailer` as plain ``(id, offset, length)`` tuples, the dictionary id and
    where the data ends: for a pass over every entry of many packs (verify), where building
    an object per entry would cost more than checking it."""
    return parse_trailer_rows(lambda length, offset: os.pread(fd, length, offset), file_size, name)


def parse_trailer_rows(
    pread: Pread, file_size: int, name: str = "pack", versions: tuple[int, ...] = PACK_VERSIONS
) -> tuple[list[tuple[bytes, int, int]], str | None, int]:
    """The trailer's ``(id, offset, length)`` rows sorted by id, the dictionary id and where
    the data ends, checked; of a pack of one of ``versions``."""
    minimum = HEADER_SIZE + TAIL.size
    if file_size < minimum:
        raise PackDamaged(f"{name} is too short to be a pack ({file_size} bytes)")
    head = pread(HEADER_SIZE, 0)
    if len(head) < HEADER_SIZE or head[:4] != PACK_MAGIC or head[4] not in versions:
        raise PackDamaged(f"{name} does not start like a pack of version {versions}")
    version = head[4]
    entry = ENTRY if version == 1 else ENTRY_V2
    tail = pread(TAIL.size, file_size - TAIL.size)
    dictionary, count, checksum, size, magic = TAIL.unpack(tail)
    if magic != PACK_MAGIC:
        raise PackDamaged(f"{name} does not end like a pack")
    if count > MAX_ENTRIES or size != count * entry.size + TAIL.size:
        raise PackDamaged(f"{name} has a damaged trailer (size or count)")
    if size > file_size - HEADER_SIZE:
        raise PackDamaged(f"{name} has a trailer longer than the file")
    start = file_size - size
    raw = pread(size, start)
    if len(raw) != size:
        raise PackDamaged(f"{name} was cut short while being read")
    checked = raw[: size - CHECKSUM_LEN - 8]
    if blake3.blake3(checked).digest()[:CHECKSUM_LEN] != checksum:
        raise PackDamaged(f"{name} has a damaged trailer (checksum)")
    rows: list[tuple[bytes, int, int]]
    if version == 1:
        rows = list(ENTRY.iter_unpack(raw[: count * ENTRY.size]))
    else:
        rows = _placed(ENTRY_V2.iter_unpack(raw[: count * ENTRY_V2.size]), start, name)
        rows.sort()
    previous = b""
    for object_id, offset, length in rows:
        if object_id <= previous:
            raise PackDamaged(f"{name} lists its objects out of order or twice")
        if offset < HEADER_SIZE or offset + length > start or length > MAX_ENTRY:
            raise PackDamaged(f"{name} lists an object outside its data")
        previous = object_id
    return rows, None if dictionary == NO_DICTIONARY else dictionary.hex(), start


def _placed(
    rows: Iterator[tuple[bytes, int]], data_end: int, name: str
) -> list[tuple[bytes, int, int]]:
    """Version 2's (id, length) rows in file order with each entry's offset: the entries fill
    the file from the header to the trailer, one after another."""
    placed = []
    offset = HEADER_SIZE
    for object_id, length in rows:
        placed.append((object_id, offset, length))
        offset += length
    if offset != data_end:
        raise PackDamaged(f"{name} lists entries that do not fill its data")
    return placed


def read_trailer_of(path: str) -> Trailer:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_trailer(fd, os.fstat(fd).st_size, os.path.basename(path))
    finally:
        os.close(fd)


def iter_entry_bytes(fd: int, trailer: Trailer) -> Iterator[tuple[PackEntry, bytes]]:
    """Each entry with its bytes, in file order (sequential reads, whatever the id order)."""
    for entry in sorted(trailer.entries, key=lambda e: e.offset):
        data = os.pread(fd, entry.length, entry.offset)
        if len(data) != entry.length:
            raise PackDamaged("pack was cut short while being read")
        yield entry, data
