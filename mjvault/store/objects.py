"""Loose objects under a two-hex-character fan-out, written in durable batches.

Write path, designed around the cost of file-system calls rather than hashing: each object is
read once and hashed from memory, written to ``tmp/`` without an fsync, and only at
:meth:`WriteBatch.flush` is the whole batch synced with one ``syncfs`` and renamed into
``objects/``. An object therefore appears under its name only after its bytes are on disk:
a crash leaves complete objects or none, never a torn one under a valid name.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from mjvault.errors import CorruptObject, ObjectNotFound, VaultWriteError
from mjvault.store.codec import (
    ENCODING_IDENTITY,
    ENCODING_ZSTD_DICT,
    MAGIC_ENCRYPTED,
    MAGIC_FRAMED,
    Dictionary,
    can_store_raw,
    decode_payload,
    frame_plain,
    unframe_plain,
)
from mjvault.store.crypto import VaultKeys
from mjvault.store.fsutil import naming, start_writeback, sync_filesystem, write_all
from mjvault.store.packfile import Trailer
from mjvault.store.packs import (
    MAX_PACKED_OBJECT,
    PackBuilder,
    PackReader,
    PackStream,
    new_dictionary,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from mjvault.index.packmap import Location

OBJECT_ID_LEN = 64
# Larger media are hashed and written in chunks so memory stays flat for long videos.
STREAM_THRESHOLD = 64 * 1024 * 1024
CHUNK = 1024 * 1024
_HEX = frozenset("0123456789abcdef")
# Temp files are written by one background thread so the caller reads and hashes the next
# file while the kernel creates this one (an ext4 create can wait milliseconds on a journal
# commit). At most this many staged bytes wait in memory for that thread.
STAGE_AHEAD_BYTES = 32 * 1024 * 1024
# Media files are read into a few buffers reused from file to file: a fresh ``bytes`` per file
# costs page faults, zeroing and munmap in the kernel for every image. A buffer goes back to
# the pool once the background thread has written it.
READ_BUFFERS = 4
POOLED_READ_MAX = 8 * 1024 * 1024  # larger files are read into memory of their own
# False writes every object loose, as version 1 of the format did: tests and benchmarks use it
# to build the old vaults that `mjvault pack` migrates. Never turned off in normal use.
PACK_SMALL_OBJECTS = True


_thread_buffers = threading.local()
REUSED_BUFFER_MAX = 32 * 1024 * 1024  # larger objects get buffers of their own, freed after


def _buffers(size: int) -> tuple[memoryview, memoryview]:
    """Two writable views of ``size`` bytes (file, plaintext), kept per thread when small."""
    if size > REUSED_BUFFER_MAX:
        return memoryview(bytearray(size)), memoryview(bytearray(size))
    held: tuple[bytearray, bytearray] | None = getattr(_thread_buffers, "held", None)
    if held is None or len(held[0]) < size:
        capacity = max(size, 1024 * 1024)
        held = (bytearray(capacity), bytearray(capacity))
        _thread_buffers.held = held
    return memoryview(held[0])[:size], memoryview(held[1])[:size]


def is_object_id(text: str) -> bool:
    return len(text) == OBJECT_ID_LEN and set(text) <= _HEX


class ObjectStore:
    """Named, immutable objects. In an encrypted vault names are keyed BLAKE3 and files are sealed.

    An object is a loose file under ``objects/`` or an entry of a pack under ``packs/``
    (:mod:`mjvault.store.packs`); readers look in that order. ``before_pack`` is called before
    each pack file is published (the vault marks its format version first, if older).
    """

    def __init__(
        self,
        root: Path,
        keys: VaultKeys | None,
        *,
        before_pack: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.keys = keys
        self.packs = PackReader(root)
        self.before_pack = before_pack

    def close(self) -> None:
        self.packs.close()

    @property
    def encrypted(self) -> bool:
        return self.keys is not None

    def hasher(self) -> blake3.blake3:
        if self.keys is not None:
            return blake3.blake3(key=self.keys.naming_key)
        return blake3.blake3()

    def name_of(self, plaintext: bytes | memoryview) -> str:
        hasher = self.hasher()
        hasher.update(plaintext)
        return hasher.hexdigest()

    def path(self, object_id: str) -> Path:
        return self.objects_dir / object_id[:2] / object_id

    def exists(self, object_id: str) -> bool:
        # A string join: pathlib's costs more than the stat, and a re-import asks per file.
        if os.path.exists(f"{self.objects_dir}/{object_id[:2]}/{object_id}"):
            return True
        return self.packs.contains(object_id)

    def is_loose(self, object_id: str) -> bool:
        return os.path.exists(f"{self.objects_dir}/{object_id[:2]}/{object_id}")

    def read_file(self, object_id: str) -> bytes:
        """The object as a loose file would hold it: its own bytes, or a packed entry's, made
        readable alone when the pack's dictionary encoded it (FORMAT.md: loose files never
        use one)."""
        try:
            with open(self.path(object_id), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            pass
        found = self.packs.read_entry(object_id)
        if found is None:
            raise ObjectNotFound(f"object {object_id} is missing")
        data, location = found
        if location.dictionary is None or not self._uses_dictionary(object_id, data):
            return data
        plaintext = self._open(object_id, data, self._dictionary(location.dictionary))
        if self.keys is not None:
            return self.keys.seal(object_id, plaintext, compress=True)
        return frame_plain(plaintext, compress=True)

    def _uses_dictionary(self, object_id: str, data: bytes) -> bool:
        if data[:4] == MAGIC_ENCRYPTED:
            return True  # the encoding byte is sealed: re-seal to be sure
        return len(data) > 5 and data[5] == ENCODING_ZSTD_DICT

    def stored_size(self, object_id: str) -> int:
        """Bytes the object takes where it is stored (its file, or its pack entry)."""
        try:
            return os.stat(self.path(object_id)).st_size
        except FileNotFoundError:
            pass
        location = self.packs.locate(object_id)
        if location is None:
            raise ObjectNotFound(f"object {object_id} is missing")
        return location.length

    def _dictionary(self, dictionary_id: str) -> Dictionary:
        return self.packs.dictionary(dictionary_id, self.read)

    def _open(self, object_id: str, data: bytes, dictionary: Dictionary | None) -> bytes:
        if self.keys is not None:
            return self.keys.open(object_id, data, dictionary)
        return unframe_plain(data, dictionary)

    def read(self, object_id: str) -> bytes:
        """The object's plaintext, checked against its name (and AEAD tag when encrypted)."""
        # Packs first, when there are any: most objects read by id are records and tree
        # nodes, and a failed open of a loose path costs more than a pack map lookup.
        found = self.packs.read_entry(object_id, fresh=False) if self.packs.present() else None
        if found is not None:
            try:
                return self._checked(object_id, *self._framed_entry(object_id, *found))
            except CorruptObject:
                # A good loose copy may stand beside a damaged entry (a repair puts it there).
                if not self.is_loose(object_id):
                    raise
        try:
            with open(f"{self.objects_dir}/{object_id[:2]}/{object_id}", "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return self._checked(object_id, *self._packed_entry(object_id))
        return self._checked(object_id, data, None)

    def _checked(self, object_id: str, data: bytes, dictionary: Dictionary | None) -> bytes:
        plaintext = self._open(object_id, data, dictionary)
        if self.name_of(plaintext) != object_id:
            raise CorruptObject(f"object {object_id} does not match its name (damaged)")
        return plaintext

    def _packed_entry(self, object_id: str) -> tuple[bytes, Dictionary | None]:
        found = self.packs.read_entry(object_id)
        if found is None:
            raise ObjectNotFound(f"object {object_id} is missing")
        return self._framed_entry(object_id, *found)

    def _framed_entry(
        self, object_id: str, data: bytes, location: Location
    ) -> tuple[bytes, Dictionary | None]:
        if data[:4] not in (b"MJVO", MAGIC_ENCRYPTED):
            raise CorruptObject(f"object {object_id} is not framed in its pack (damaged)")
        return data, self._dictionary(location.dictionary) if location.dictionary else None

    def open_entry(self, object_id: str, data: bytes, dictionary_id: str | None) -> bytes:
        """The plaintext of a packed entry's bytes read by the caller (a pack read in file
        order: verify, repair), checked against its name like :meth:`read`."""
        if data[:4] not in (MAGIC_FRAMED, MAGIC_ENCRYPTED):
            raise CorruptObject(f"object {object_id} is not framed in its pack (damaged)")
        dictionary = self._dictionary(dictionary_id) if dictionary_id else None
        plaintext = self._open(object_id, data, dictionary)
        if self.name_of(plaintext) != object_id:
            raise CorruptObject(f"object {object_id} does not match its name (damaged)")
        return plaintext

    def check_entry(self, object_id: bytes, data: bytes, dictionary: Dictionary | None) -> None:
        """:meth:`open_entry` for a pass over every entry of a pack (verify): the id as the
        trailer holds it, the pack's dictionary already loaded, and no plaintext kept. Raises
        :class:`CorruptObject` with the same messages."""
        head = data[:4]
        if head != MAGIC_FRAMED and head != MAGIC_ENCRYPTED:
            raise CorruptObject(f"object {object_id.hex()} is not framed in its pack (damaged)")
        if self.keys is not None:
            plaintext = self.keys.open(object_id.hex(), data, dictionary)
            hasher = self.hasher()
        else:
            plaintext = unframe_plain(data, dictionary)
            hasher = blake3.blake3()
        hasher.update(plaintext)
        if hasher.digest() != object_id:
            raise CorruptObject(f"object {object_id.hex()} does not match its name (damaged)")

    def missing(self, object_ids: list[str], *, packed_first: bool) -> list[str]:
        """Those of ``object_ids`` stored neither loose nor in a pack. ``packed_first``: most
        are expected in packs (records, tree nodes), so the pack map is asked first, in one
        batch; else loose files are looked for first (media). For a pass over every
        reference of a tree (verify), where an existence check per object would cost a stat
        that fails and a map transaction of its own."""
        loose = self.objects_dir.as_posix()
        access, exists = os.access, os.F_OK

        def not_loose(ids: list[str]) -> list[str]:
            return [oid for oid in ids if not access(f"{loose}/{oid[:2]}/{oid}", exists)]

        if not packed_first:
            object_ids = not_loose(object_ids)
        if object_ids and self.packs.present():
            object_ids = self.packs.not_packed(object_ids)
        if packed_first:
            object_ids = not_loose(object_ids)
        return object_ids

    def missing_in_order(self, object_ids: Iterable[bytes]) -> Iterator[str]:
        """:meth:`missing` with ``packed_first`` for many ids given in ascending order, as
        bytes (:class:`mjvault.integrity.sortedids.SortedIds`), streamed: the pack map is
        walked in key order (:meth:`PackMap.absent`) rather than asked at random."""
        loose = self.objects_dir.as_posix()
        access, exists = os.access, os.F_OK
        for key in self.packs.not_packed_in_order(object_ids):
            oid = key.hex()
            if not access(f"{loose}/{oid[:2]}/{oid}", exists):
                yield oid

    def check(self, object_id: str) -> int:
        """Verify one object without keeping it in memory longer than needed; returns its size."""
        path = self.path(object_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            location = self.packs.locate(object_id)
            if location is None:
                raise ObjectNotFound(f"object {object_id} is missing") from None
            self.read(object_id)
            return location.length
        if self.keys is not None:
            self._check_sealed(object_id, path, size)
            return size
        if size > STREAM_THRESHOLD:
            hasher = self.hasher()
            with open(path, "rb") as handle:
                head = handle.read(8)
                if head[:4] in (b"MJVO", b"MJVE"):
                    self.read(object_id)
                    return size
                hasher.update(head)
                while chunk := handle.read(CHUNK):
                    hasher.update(chunk)
            if hasher.hexdigest() != object_id:
                raise CorruptObject(f"object {object_id} does not match its name (damaged)")
            return size
        self.read(object_id)
        return size

    def _check_sealed(self, object_id: str, path: Path, size: int) -> None:
        """Decrypt and rehash into per-thread buffers reused from object to object."""
        assert self.keys is not None
        raw, out = _buffers(size)
        try:
            with open(path, "rb", buffering=0) as handle:
                got = handle.readinto(raw)
        except FileNotFoundError:
            raise ObjectNotFound(f"object {object_id} is missing") from None
        data = raw[:got]
        inner = self.keys.open_into(object_id, data, out)
        hasher = self.hasher()
        if inner[0] == ENCODING_IDENTITY:
            hasher.update(inner[1:])
        else:
            hasher.update(decode_payload(inner[0], bytes(inner[1:])))
        if got != size or hasher.hexdigest() != object_id:
            raise CorruptObject(f"object {object_id} does not match its name (damaged)")

    def iter_ids(self) -> Iterator[str]:
        """Every object id on disk: loose ones in fan-out order, then packed ones in id order
        (an object stored both ways, as a pack migration leaves it until it removes the loose
        file, comes twice)."""
        yield from self.iter_loose_ids()
        yield from self.packs.iter_ids()

    def iter_loose_ids(self) -> Iterator[str]:
        """Every loose object id, in fan-out order. Skips stray files."""
        if not self.objects_dir.is_dir():
            return
        for fan in sorted(os.listdir(self.objects_dir)):
            if len(fan) != 2:
                continue
            fan_dir = self.objects_dir / fan
            try:
                names = sorted(os.listdir(fan_dir))
            except NotADirectoryError:
                continue
            for name in names:
                if is_object_id(name) and name.startswith(fan):
                    yield name

    def batch(self) -> WriteBatch:
        return WriteBatch(self)


class WriteBatch:
    """Objects written to ``tmp/`` and published together by :meth:`flush`."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._pending: dict[str, Path] = {}
        self.pending_bytes = 0
        self.written_objects = 0
        self.written_bytes = 0
        self._known_fans: set[str] = set()
        self._stager: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[Future[None], int, bytearray | None]] = deque()
        self._free_buffers: list[bytearray] = []
        self._buffer_count = 0
        self._in_flight_bytes = 0
        self._failure: BaseException | None = None
        # The pack being gathered: in memory until the vault has a dictionary (its first large
        # pack trains one), then streamed to its temp file (:meth:`_gather`).
        self._builder: PackBuilder | PackStream = PackBuilder()
        self._ready_packs: list[tuple[str, Path, Trailer, str | None]] = []
        self.written_packs = 0
        # Called for each pack once it is durable and mapped (packing and gc point the map at
        # it before they remove the copies it replaces).
        self.on_pack: Callable[[str, Trailer], None] | None = None
        store.tmp_dir.mkdir(exist_ok=True)

    def __len__(self) -> int:
        return len(self._pending) + len(self._builder)

    def has(self, object_id: str) -> bool:
        return (
            object_id in self._pending or object_id in self._builder or self.store.exists(object_id)
        )

    def read(self, object_id: str) -> bytes:
        """Plaintext of an object, whether already published or still staged in this batch."""
        packing = self._builder.read(object_id)
        if packing is not None:
            return packing
        staged = self._pending.get(object_id)
        if staged is None:
            return self.store.read(object_id)
        self._wait_for_stager()
        data = staged.read_bytes()
        keys = self.store.keys
        return keys.open(object_id, data) if keys else unframe_plain(data)

    # -- writing ---------------------------------------------------------------------------
    def put(
        self, plaintext: bytes, *, compress: bool = True, loose: bool = False, again: bool = False
    ) -> str:
        """Store metadata (or any bytes); returns the object id. Existing objects are untouched.

        Small objects go into the next pack, unless ``loose`` (snapshot manifests, which refs
        name and are read one at a time, stay files of their own). ``again`` packs a new copy
        of an object the vault already holds (a repair moving the good objects of a damaged
        pack out of it: once mapped, the new copy is the one read).
        """
        object_id = self.store.name_of(plaintext)
        if again:
            if object_id in self._builder or object_id in self._pending:
                return object_id
        elif self.has(object_id):
            return object_id
        if loose or not PACK_SMALL_OBJECTS or len(plaintext) > MAX_PACKED_OBJECT:
            self._stage(object_id, self._encode(object_id, plaintext, compress=compress))
            return object_id
        self._gather(object_id, plaintext, compress)
        if self._builder.full:
            self.flush()
        return object_id

    def put_packed(self, object_id: str, plaintext: bytes, *, compress: bool = True) -> None:
        """Add an object that is stored already (loose, or in a pack about to go) to the next
        pack: how `mjvault pack` and gc move objects. Never flushes by itself: the caller
        flushes when :attr:`pack_full`, and removes the old copies only after :meth:`flush`
        returned (the new pack durable and mapped)."""
        if object_id not in self._builder:
            self._gather(object_id, plaintext, compress)

    @property
    def pack_full(self) -> bool:
        return self._builder.full

    def end_pack(self) -> None:
        """Close the pack being gathered: small objects put after this go into another one,
        and both are published at the next :meth:`flush`. A writer keeps its records (which
        stay) apart from its tree nodes (which later checkpoints supersede) this way."""
        if self._builder:
            self._seal_pack()

    def add_pack_file(
        self, name: str, tmp: Path, trailer: Trailer, dictionary_id: str | None
    ) -> None:
        """Publish at the next :meth:`flush`, like a pack of this batch, a pack file the caller
        wrote whole to ``tmp/`` (not synced) under the name its bytes hash to."""
        self._ready_packs.append((name, tmp, trailer, dictionary_id))
        self.pending_bytes += os.stat(tmp).st_size

    def _gather(self, object_id: str, plaintext: bytes, compress: bool) -> None:
        """Add a small object to the pack being gathered. A new pack is streamed to its temp
        file once the vault has a dictionary; before, it stays in memory, to train one."""
        if isinstance(self._builder, PackBuilder) and not self._builder:
            packmap = self.store.packs.map() if self.store.packs.present() else None
            current = packmap.dictionary() if packmap is not None else None
            if current is not None:
                dictionary = self.store._dictionary(current)
                tmp = self._tmp_path("pack")
                with _writing(tmp):
                    self._builder = PackStream(tmp, self.store.keys, dictionary)
        if isinstance(self._builder, PackStream):
            with _writing(self._builder.path):
                self._builder.add(object_id, plaintext, compress=compress)
        else:
            self._builder.add(object_id, plaintext, compress=compress)

    def put_media(self, data: bytes) -> tuple[str, bool]:
        """Store an image or video held in memory; returns (id, newly written)."""
        object_id = self.store.name_of(data)
        if self.has(object_id):
            return object_id, False
        self._stage(object_id, self._encode(object_id, data, compress=False, media=True))
        return object_id, True

    def put_media_file(self, path: Path) -> tuple[str, int, bool]:
        """Store the file at ``path``; returns (id, size, newly written). One read, no second pass."""
        fd = os.open(path, os.O_RDONLY)
        try:
            return self.put_media_fd(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def put_media_fd(self, fd: int, size: int) -> tuple[str, int, bool]:
        """Store the rest of open file ``fd`` (``size`` is its length as fstat saw it, a hint:
        a file that grows or shrinks meanwhile is stored as read). Returns (id, size, new)."""
        if size > STREAM_THRESHOLD:
            return self.put_media_stream(iter(lambda: os.read(fd, CHUNK), b""))
        if self.store.keys is not None or size >= POOLED_READ_MAX:
            data = _read_to_end(fd, size)
            object_id, new = self.put_media(data)
            return object_id, len(data), new
        buffer = self._read_buffer(size + 1)
        staged_in_place = False
        try:
            got = os.readv(fd, [memoryview(buffer)[: size + 1]])
            view = memoryview(buffer)[:got]
            if got > size:  # the file grew while we read it: take it whole, off the pool
                data = bytes(view) + _read_to_end(fd, CHUNK)
                object_id, new = self.put_media(data)
                return object_id, len(data), new
            object_id = self.store.name_of(view)
            if self.has(object_id):
                return object_id, got, False
            if can_store_raw(bytes(view[:16])):
                self._stage(object_id, view, buffer)  # back to the pool once written
                staged_in_place = True
            else:
                self._stage(object_id, frame_plain(bytes(view), compress=False))
            return object_id, got, True
        finally:
            if not staged_in_place:
                self._free_buffers.append(buffer)

    def _read_buffer(self, size: int) -> bytearray:
        """A pooled buffer of at least ``size`` bytes, waiting for the writer thread if needed."""
        while True:
            for i, buffer in enumerate(self._free_buffers):
                if len(buffer) >= size:
                    return self._free_buffers.pop(i)
            if self._free_buffers:
                self._free_buffers.pop(0)  # too small: replaced by a larger one
                return bytearray(max(size, 1024 * 1024))
            if sum(1 for entry in self._in_flight if entry[2] is not None) < READ_BUFFERS:
                return bytearray(max(size, 1024 * 1024))
            self._retire_oldest()
            self._raise_failure()

    def put_media_stream(self, chunks: Iterable[bytes]) -> tuple[str, int, bool]:
        if self.store.keys is not None:
            return self._put_sealed_stream(chunks)
        return self._put_stream(iter(chunks))

    def _put_sealed_stream(self, chunks: Iterable[bytes]) -> tuple[str, int, bool]:
        """Encrypted vault: the name (a keyed hash of the plaintext) binds the seal, so it must
        be known before the first byte is sealed. The plaintext is therefore spooled first,
        never in the clear: under a random key of this call alone (AES-256-GCM), then read
        back, checked, and sealed under its name. Two passes over the disk, memory flat; the
        file is the one :meth:`put_media` writes (identity encoding)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        keys = self.store.keys
        assert keys is not None
        spool_key, spool_nonce = os.urandom(32), os.urandom(12)
        encryptor = Cipher(algorithms.AES(spool_key), modes.GCM(spool_nonce)).encryptor()
        hasher = self.store.hasher()
        size = 0
        spool = self._tmp_path("spool")
        with _writing(spool):
            fd = os.open(spool, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.unlink(spool)  # nameless from here: a crash leaves nothing to sweep
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                with _writing(spool):
                    write_all(fd, encryptor.update(chunk))
            encryptor.finalize()
            object_id = hasher.hexdigest()
            if self.has(object_id):
                return object_id, size, False
            os.lseek(fd, 0, os.SEEK_SET)
            tmp = self._seal_spool(object_id, fd, spool_key, spool_nonce, encryptor.tag)
        finally:
            os.close(fd)
        self._pending[object_id] = tmp
        self.pending_bytes += os.stat(tmp).st_size
        return object_id, size, True

    def _seal_spool(self, object_id: str, spool: int, key: bytes, nonce: bytes, tag: bytes) -> Path:
        """The sealed temp file of the plaintext spooled in ``spool``, checked on the way."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        keys = self.store.keys
        assert keys is not None
        decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
        sealer = keys.sealer(object_id)
        check = self.store.hasher()
        tmp = self._tmp_path(object_id)
        with _writing(tmp):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with _writing(tmp):
                write_all(fd, sealer.header)
                while piece := os.read(spool, CHUNK):
                    plain = decryptor.update(piece)
                    check.update(plain)
                    write_all(fd, sealer.update(plain))
                try:
                    decryptor.finalize()
                except InvalidTag:
                    raise VaultWriteError(f"a spool file changed while in use: {tmp}") from None
                if check.hexdigest() != object_id:
                    raise VaultWriteError(f"a spool file changed while in use: {tmp}")
                write_all(fd, sealer.finish())
                os.fchmod(fd, 0o444)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _put_stream(self, chunks: Iterator[bytes]) -> tuple[str, int, bool]:
        """Plain vault, large media: hash while writing to a temp file, name it afterwards."""
        tmp = self._tmp_path("stream")
        hasher = self.store.hasher()
        size = 0
        framed_head: bytes | None = None
        with _writing(tmp):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            # Errors reading ``chunks`` are the source's; only the writes are the vault's.
            for chunk in chunks:
                if framed_head is None and size == 0 and not can_store_raw(chunk[:16]):
                    framed_head = chunk
                    break
                hasher.update(chunk)
                with _writing(tmp):
                    write_all(fd, chunk)
                size += len(chunk)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        if framed_head is not None:
            os.unlink(tmp)
            rest = b"".join(chunks)
            object_id, new = self.put_media(framed_head + rest)
            return object_id, len(framed_head) + len(rest), new
        object_id = hasher.hexdigest()
        if self.has(object_id):
            os.unlink(tmp)
            return object_id, size, False
        os.chmod(tmp, 0o444)
        self._pending[object_id] = tmp
        self.pending_bytes += size
        return object_id, size, True

    def put_checked_file(self, object_id: str, data: bytes) -> bool:
        """Stage an object file's bytes, already checked against ``object_id`` by the caller
        (a copy fetched from a remote keeps its framing); False when the object is here."""
        if self.has(object_id):
            return False
        self._stage(object_id, data)
        return True

    def put_loose_copy(self, plaintext: bytes, *, media: bool) -> str:
        """Stage ``plaintext`` as a loose file even when a pack holds the object: a good copy
        that stands in for a damaged packed entry (readers fall back to it)."""
        object_id = self.store.name_of(plaintext)
        if object_id not in self._pending and not self.store.is_loose(object_id):
            encoded = self._encode(object_id, plaintext, compress=not media, media=media)
            self._stage(object_id, encoded)
        return object_id

    def _encode(
        self, object_id: str, plaintext: bytes, *, compress: bool, media: bool = False
    ) -> bytes:
        if self.store.keys is not None:
            return self.store.keys.seal(object_id, plaintext, compress=compress)
        if media and can_store_raw(plaintext[:16]):
            return plaintext
        return frame_plain(plaintext, compress=compress)

    def _tmp_path(self, hint: str) -> Path:
        return self.store.tmp_dir / f"{hint[:16]}.{os.urandom(6).hex()}.tmp"

    def _stage(
        self, object_id: str, data: bytes | memoryview, buffer: bytearray | None = None
    ) -> None:
        """Queue ``data`` to be written to a temp file; :meth:`flush` waits for every write.

        ``data`` must not change until then, unless it lies in ``buffer``, a pooled read
        buffer that is reused only once the write is done.
        """
        while self._in_flight and self._in_flight_bytes + len(data) > STAGE_AHEAD_BYTES:
            self._retire_oldest()
        self._raise_failure()
        if self._stager is None:
            # Imported by the first writer that stages, not by every command that reads.
            from concurrent.futures import ThreadPoolExecutor

            self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjvault-stage")
        tmp = self._tmp_path(object_id)
        future = self._stager.submit(_write_new_file, tmp, data)
        self._in_flight.append((future, len(data), buffer))
        self._in_flight_bytes += len(data)
        self._pending[object_id] = tmp
        self.pending_bytes += len(data)

    def _retire_oldest(self) -> None:
        future, size, buffer = self._in_flight[0]
        try:
            future.result()  # an interrupt here leaves the entry in flight, to wait for again
        except OSError as exc:
            # Sticky: a batch with a missing or partial temp file must never be published.
            if self._failure is None:
                self._failure = write_failure(exc)
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
        self._in_flight.popleft()
        self._in_flight_bytes -= size
        if buffer is not None:
            self._free_buffers.append(buffer)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _wait_for_stager(self) -> None:
        """Every queued temp file written (or the first write error raised)."""
        while self._in_flight:
            self._retire_oldest()
        self._raise_failure()

    def _stop_stager(self) -> None:
        if self._stager is not None:
            self._stager.shutdown(wait=True)
            self._stager = None

    def media_sink(self) -> MediaSink:
        """A file-like sink for a download: hashed as it is written, staged by :meth:`adopt`.

        Sinks are independent of each other and of the batch, so downloads may fill them from
        many threads; only :meth:`adopt` (called from the writer's thread) touches the batch.
        """
        return MediaSink(self.store, self._tmp_path("download"))

    def adopt(self, sink: MediaSink) -> tuple[str, int, bool]:
        """Stage a finished sink's content as an object; returns (id, size, newly written)."""
        object_id = sink.hasher.hexdigest()
        size = sink.size
        if self.has(object_id):
            sink.discard()
            return object_id, size, False
        if self.store.keys is not None or not can_store_raw(sink.head):
            data = sink.read_back()
            sink.discard()
            self._stage(object_id, self._encode(object_id, data, compress=False, media=True))
            return object_id, size, True
        sink.close()
        os.chmod(sink.path, 0o444)
        self._pending[object_id] = sink.path
        self.pending_bytes += size
        return object_id, size, True

    def adopt_file(self, object_id: str, path: Path) -> bool:
        """Stage a file in ``tmp/`` that holds the object's file exactly as it is to be stored,
        written and checked against ``object_id`` by the caller (a large object downloaded
        from a remote); False, and the file removed, when the vault has the object."""
        if self.has(object_id):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return False
        os.chmod(path, 0o444)
        self._pending[object_id] = path
        self.pending_bytes += os.stat(path).st_size
        return True

    # -- publishing ------------------------------------------------------------------------
    def flush(self) -> None:
        """Make every staged object durable, then visible under its name."""
        self._wait_for_stager()
        self._stop_stager()
        if self._builder:
            # Kept until published: a flush interrupted past this point publishes it next time.
            self._seal_pack()
        if not self._pending and not self._ready_packs:
            return
        sync_filesystem(self.store.tmp_dir)
        # Loose first: a pack's dictionary is a loose object and must be there before it.
        self._publish_loose()
        for pack in self._ready_packs:
            self._publish_pack(*pack)
        sync_filesystem(self.store.objects_dir)
        while self._ready_packs:
            name, _, trailer, dictionary_id = self._ready_packs[0]
            self.store.packs.map().add(
                name,
                ((e.object_id, e.offset, e.length) for e in trailer.entries),
                dictionary_id,
            )
            if self.on_pack is not None:
                self.on_pack(name, trailer)
            self._ready_packs.pop(0)
        self._pending.clear()
        self.pending_bytes = 0

    def _seal_pack(self) -> None:
        """The pack being gathered encoded and listed for publishing, and only then a new one
        begun: a Ctrl-C on the way (most likely while the disk takes the file) leaves its
        objects in the builder, so the abort's checkpoint seals them again rather than naming
        records that are in no pack (a resumed sync then committed them missing)."""
        ready = self._finish_pack()
        if all(listed[0] != ready[0] for listed in self._ready_packs):
            self._ready_packs.append(ready)
            self.pending_bytes += os.stat(ready[1]).st_size
        self._builder = PackBuilder()

    def _finish_pack(self) -> tuple[str, Path, Trailer, str | None]:
        """Encode the gathered small objects into a pack file in ``tmp/`` (not yet synced);
        called again after an interruption, the same pack (sealed once) or one of the same
        objects."""
        builder = self._builder
        if isinstance(builder, PackStream):
            with _writing(builder.path):
                name, trailer, _ = builder.seal()
            return name, builder.path, trailer, builder.dictionary.object_id
        dictionary = self._pack_dictionary(builder)
        name, data, trailer = builder.finish(self.store.keys, dictionary)
        tmp = self._tmp_path("pack-" + name)
        # A first try stopped while writing it (the same bytes, unencrypted: the same name).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            _write_new_file(tmp, data)
        except OSError as exc:
            raise write_failure(exc, tmp) from None
        return name, tmp, trailer, dictionary.object_id if dictionary else None

    def _pack_dictionary(self, builder: PackBuilder) -> Dictionary | None:
        """The vault's dictionary; trained now from this pack's records if it has none yet and
        this pack has enough of them (staged as a loose object, published before the pack)."""
        packmap = self.store.packs.map() if self.store.packs.present() else None
        current = packmap.dictionary() if packmap is not None else None
        if current is not None:
            return self.store._dictionary(current)
        samples = builder.training_samples()
        if samples is None:
            return None
        content = new_dictionary(samples)
        if content is None:
            return None
        dictionary_id = self.store.name_of(content)
        if not self.has(dictionary_id):
            tmp = self._tmp_path(dictionary_id)
            try:
                _write_new_file(tmp, self._encode(dictionary_id, content, compress=False))
            except OSError as exc:
                raise write_failure(exc, tmp) from None
            self._pending[dictionary_id] = tmp
        return Dictionary(dictionary_id, content)

    def _publish_pack(self, name: str, tmp: Path, trailer: Trailer, _: str | None) -> None:
        packs_dir = self.store.packs.dir
        if self.store.before_pack is not None:
            self.store.before_pack()
        if not packs_dir.is_dir():
            packs_dir.mkdir(exist_ok=True)
        final = packs_dir / name
        if os.path.exists(final):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            return
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            if os.path.exists(final):  # renamed by a flush that was interrupted just after
                return
            raise
        self.written_objects += len(trailer.entries)
        self.written_packs += 1

    def _publish_loose(self) -> None:
        for object_id, tmp in self._pending.items():
            fan = object_id[:2]
            if fan not in self._known_fans:
                (self.store.objects_dir / fan).mkdir(parents=True, exist_ok=True)
                self._known_fans.add(fan)
            final = self.store.path(object_id)
            if os.path.exists(final):
                # Never rewrite an existing object. The temp file may be gone already: a flush
                # interrupted (Ctrl-C) after this rename leaves the entry pending for the next.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                continue
            os.rename(tmp, final)
            self.written_objects += 1
        self.written_bytes += self.pending_bytes

    def discard(self) -> None:
        while self._in_flight:
            self._retire_oldest()
        self._stop_stager()
        self._failure = None
        if isinstance(self._builder, PackStream):
            self._builder.abort()
        self._builder = PackBuilder()
        for _, tmp, _, _ in self._ready_packs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._ready_packs.clear()
        for tmp in self._pending.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()
        self.pending_bytes = 0


def _read_to_end(fd: int, size_hint: int) -> bytes:
    parts = []
    while chunk := os.read(fd, max(size_hint, CHUNK)):
        parts.append(chunk)
    return b"".join(parts)


def write_failure(exc: OSError, path: Path | None = None) -> VaultWriteError:
    """One line naming what failed and where (a full disk must say which)."""
    where = exc.filename or path
    return VaultWriteError(
        f"cannot write to the vault: {exc.strerror or exc}" + (f": {where}" if where else "")
    )


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise write_failure(exc, path) from None


def _write_new_file(path: Path, data: bytes | memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        write_all(fd, data)
        # Let the disk start on these bytes now, while the next files are read and hashed,
        # so the batch's syncfs mostly waits for writes already under way.
        start_writeback(fd)
    except OSError as exc:
        raise naming(exc, path) from None
    finally:
        os.close(fd)


class MediaSink:
    """Bytes of one download, written to a temp file and hashed on the way (no second read).

    In an encrypted vault the name is a keyed hash and the file is sealed whole, so the sink
    keeps the plaintext in memory instead; one image is a few MB at most.
    """

    def __init__(self, store: ObjectStore, path: Path) -> None:
        self.path = path
        self.hasher = store.hasher()
        self.size = 0
        self.head = b""
        self._buffer: bytearray | None = bytearray() if store.keys is not None else None
        self._file = None
        if self._buffer is None:
            with _writing(path):
                self._file = open(path, "wb")  # noqa: SIM115

    def write(self, data: bytes) -> int:
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        self.hasher.update(data)
        self.size += len(data)
        if self._buffer is not None:
            self._buffer += data
        else:
            assert self._file is not None
            with _writing(self.path):
                self._file.write(data)
        return len(data)

    def flush(self) -> None:
        if self._file is not None:
            with _writing(self.path):
                self._file.flush()

    def read_back(self) -> bytes:
        if self._buffer is not None:
            return bytes(self._buffer)
        self.close()
        return self.path.read_bytes()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            with _writing(self.path):
                self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(VaultWriteError):  # the bytes are dropped anyway
            self.close()
        self._buffer = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
