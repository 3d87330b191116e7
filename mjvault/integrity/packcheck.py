"""verify's pass over packs (docs/FORMAT.md §10): a pack is checked as a whole, then entry by entry.

Each pack is opened once and read front to back in windows of a few MB: with ``read_data``
each window is hashed as it comes (the whole file against the pack's name) and every entry
in it (in file order) is opened with the pack's dictionary and rehashed against its id, like
a loose object. One read per window, instead of one per entry and a second pass to hash the
file, is what lets ``verify --read-data`` check small objects at tens of thousands per
second; the trailer is taken as plain tuples for the same reason.

A damaged trailer makes the pack damaged as a whole: which objects it holds is then unknown
(the structural pass reports those a snapshot needs as missing unless the pack map still
places them). A pack whose name does not match its bytes while every entry checks out is
damaged too (its header or trailer changed); when an entry is damaged, that entry explains
the mismatch and is what is reported.

Memory: one pack's trailer and one window (plus an entry that straddles its end) per reading
thread; what is kept across packs is only the damage found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import blake3

from mjvault.errors import CorruptObject, ObjectNotFound
from mjvault.store.codec import Dictionary
from mjvault.store.objects import ObjectStore
from mjvault.store.packfile import PackDamaged, read_trailer_rows

# Bytes read (and hashed) at once; an entry that straddles a window's end is kept whole.
READ_WINDOW = 1024 * 1024

Row = tuple[bytes, int, int]  # a trailer entry: id, offset, length


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
        rows, dictionary_id, _ = read_trailer_rows(fd, size, f"pack {name}")
        if not read_data:
            return result
        dictionary: Dictionary | None = None
        if dictionary_id is not None:
            try:
                dictionary = store.packs.dictionary(dictionary_id, store.read)
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
        rows.sort(key=_offset)
        hasher = blake3.blake3() if chooser is None or chooser(name) else None
        if hasher is not None:
            entries = _in_windows(fd, size, rows, hasher)
        else:
            entries = _one_by_one(fd, [r for r in rows if chooser is None or chooser(r[0].hex())])
        check_entry = store.check_entry
        bad = result.bad_entries
        checked = stored = 0
        for object_id, data in entries:
            if chooser is not None and not chooser(object_id.hex()):
                continue
            checked += 1
            stored += len(data)
            try:
                check_entry(object_id, data, dictionary)
            except CorruptObject as exc:
                bad.append((object_id.hex(), str(exc)))
        result.objects, result.bytes = checked, stored
        if hasher is not None and hasher.hexdigest() != name and not bad:
            result.damaged = f"pack {name} does not match its name (damaged)"
    except PackDamaged as exc:
        result.damaged = str(exc)
    finally:
        os.close(fd)
    return result


def _offset(row: Row) -> int:
    return row[1]


def _in_windows(
    fd: int, size: int, rows: list[Row], hasher: blake3.blake3
) -> Iterator[tuple[bytes, bytes]]:
    """Each entry's bytes, in file order, from reads of :data:`READ_WINDOW` bytes that also
    feed ``hasher`` every byte of the file once, to its end (gaps and trailer included).

    The reads go into one buffer, reused from window to window: fresh ``bytes`` of a MB each
    would be a large allocation per window for every reading thread."""
    buffer = bytearray(2 * READ_WINDOW)
    view = memoryview(buffer)
    start = 0  # file offset of buffer[0]
    filled = 0  # bytes of the buffer that hold file data
    for object_id, offset, length in rows:
        end = offset + length
        if end > start + filled:
            # Keep what is read of this entry (and what follows it), read on past its end.
            keep_from = min(offset, start + filled) - start
            kept = filled - keep_from
            view[:kept] = view[keep_from:filled]
            start += keep_from
            filled = kept
            wanted = min(max(READ_WINDOW, end - start - filled), size - start - filled)
            if filled + wanted > len(buffer):
                view.release()
                buffer.extend(bytes(filled + wanted - len(buffer)))
                view = memoryview(buffer)
            _read_into(fd, view[filled : filled + wanted], start + filled)
            hasher.update(view[filled : filled + wanted])
            filled += wanted
        yield object_id, bytes(view[offset - start : end - start])
    read_to = start + filled
    while read_to < size:
        wanted = min(READ_WINDOW, size - read_to)
        _read_into(fd, view[:wanted], read_to)
        hasher.update(view[:wanted])
        read_to += wanted
    view.release()


def _read_into(fd: int, target: memoryview, offset: int) -> None:
    """Fill ``target`` from ``offset``: a pack is never shorter than its trailer says."""
    done = 0
    while done < len(target):
        got = os.preadv(fd, [target[done:]], offset + done)
        if not got:
            raise PackDamaged("pack was cut short while being read")
        done += got


def _one_by_one(fd: int, rows: list[Row]) -> Iterator[tuple[bytes, bytes]]:
    """The bytes of the entries ``rows`` names (a subset), one read each."""
    for object_id, offset, length in rows:
        yield object_id, _read(fd, offset, length, offset + length)


def _read(fd: int, offset: int, length: int, size: int) -> bytes:
    """``length`` bytes at ``offset``, or up to ``size`` (the file's end) if that comes first."""
    wanted = min(length, size - offset)
    data = os.pread(fd, wanted, offset)
    while len(data) < wanted:
        more = os.pread(fd, wanted - len(data), offset + len(data))
        if not more:
            raise PackDamaged("pack was cut short while being read")
        data += more
    return data
