"""Packs on a remote (docs/FORMAT.md §11.3): which objects each holds, and reading them.

A remote keeps records and tree nodes in ``packs/<name>`` files of the vault's pack format, so
a push of a million records is a few dozen PUTs. To know what the remote holds without reading
every pack, the vault keeps a cache, ``remotes/<name>/packs-<remote id>/`` (LMDB: object id →
the remote packs holding it), filled by the pushes that upload packs and brought up to the
remote at each connection: one listing of ``packs/``, the trailer of each pack the cache lacks
read with ranged requests (the end of the file, then the rest of the trailer and the header if
they are not in that first read), and packs gone from the remote forgotten. Deleting the cache
loses nothing.

Pull downloads a pack whole the first time it needs one of its objects (a pack is mostly
metadata the vault lacks) into a spool folder beside the cache, and reads entries from there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lmdb

from mjvault.index.db import _MappedPages, share_environment, unshare_environment
from mjvault.remotes.backend import Backend, RemoteNotFound
from mjvault.store.packfile import ENTRY, PackDamaged, Trailer, is_pack_id, parse_trailer

PACKS_PREFIX = "packs/"
# One ranged read from the end of a pack usually holds its whole trailer (44 bytes an entry).
TAIL_READ = 256 * 1024
# Ids written (or read, walking the cache) per LMDB transaction: a few MB of dirty pages.
WRITE_SLICE = 512
# A remote's packs are of version 1 (FORMAT.md §11.3), whatever a vault's are: what an older
# mjvault reads, and sorted by id, which RemotePackIndex searches in place in the spool.
REMOTE_PACK_VERSION = 1
# A spool folder this old belongs to a pull that was killed.
STALE_SPOOL_SECONDS = 24 * 3600


def pack_key(name: str) -> str:
    return PACKS_PREFIX + name


def read_remote_trailer(backend: Backend, name: str) -> Trailer:
    """A remote pack's checked trailer, read from its end (:class:`PackDamaged` if unsound)."""
    key = pack_key(name)
    tail, size = backend.get_tail(key, TAIL_READ)
    base = size - len(tail)

    def pread(length: int, offset: int) -> bytes:
        if offset >= base:
            return tail[offset - base : offset - base + length]
        return backend.get_range(key, offset, offset + length)

    return parse_trailer(pread, size, key, (REMOTE_PACK_VERSION,))


class RemotePackIndex:
    """The cache: object id → remote pack names (32-byte keys), and each pack's ids.

    Opened as the index and the pack map are (one environment per file in a process), and
    like them it lets go of the map's pages that lookups touched (``_MappedPages``). A pack's
    ids are written a slice at a time: ids are random, so one transaction for a 16 MB pack of
    records would dirty, in memory, nearly every leaf of a large cache (LMDB keeps the freed
    buffers for the next transaction), ~170 bytes an object of RSS. The ``packs`` row goes in
    last and is removed last, so a pack the cache names has every one of its ids recorded; a
    process killed in between leaves ids that the next refresh records again or forgets.
    """

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._key, self._env, dbs = share_environment(
            path, "the remote pack cache", 2, _cache_tables
        )
        self._objects, self._packs = dbs[b"objects"], dbs[b"packs"]
        self._pages = _MappedPages(path / "data.mdb")
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pages.close()
            unshare_environment(self._key)

    def packs(self) -> set[str]:
        with self._env.begin(db=self._packs) as txn:
            found = {bytes(k).hex() for k in txn.cursor().iternext(values=False)}
        self._pages.release()
        return found

    def pack_ids(self, name: str) -> bytes | None:
        """The ids ``name`` holds, 32 bytes each, concatenated; None for a pack not known."""
        with self._env.begin(db=self._packs) as txn:
            found = txn.get(bytes.fromhex(name))
            listed = bytes(found) if found is not None else None
        self._pages.release()
        return listed

    def locate(self, object_id: str) -> str | None:
        self._pages.touched()
        with self._env.begin(db=self._objects) as txn:
            found = txn.get(bytes.fromhex(object_id))
        return bytes(found).hex() if found is not None else None

    def add(self, name: str, ids: Iterable[bytes]) -> None:
        pack = bytes.fromhex(name)
        listed = b"".join(ids)
        step = WRITE_SLICE * 32
        for start in range(0, len(listed), step):
            with self._env.begin(write=True, db=self._objects) as txn:
                for i in range(start, min(start + step, len(listed)), 32):
                    txn.put(listed[i : i + 32], pack)
            self._pages.release()
        with self._env.begin(write=True) as txn:
            txn.put(pack, listed, db=self._packs)

    def forget(self, name: str) -> None:
        pack = bytes.fromhex(name)
        with self._env.begin(db=self._packs) as txn:
            found = txn.get(pack)
            listed = bytes(found) if found is not None else None
        if listed is None:
            return
        step = WRITE_SLICE * 32
        for start in range(0, len(listed), step):
            with self._env.begin(write=True, db=self._objects) as txn:
                for i in range(start, min(start + step, len(listed)), 32):
                    txn.delete(listed[i : i + 32], pack)
            self._pages.release()
        with self._env.begin(write=True) as txn:
            txn.delete(pack, db=self._packs)

    def iter_ids(self) -> Iterator[str]:
        """Every object id held by a known pack, once each, in id order, read in slices so
        no snapshot is held long and the pages read are let go."""
        after = b""
        while True:
            with self._env.begin(db=self._objects) as txn:
                cursor = txn.cursor()
                found = cursor.set_range(after) if after else cursor.first()
                chunk: list[bytes] = []
                while found and len(chunk) < WRITE_SLICE:
                    key = bytes(cursor.key())
                    if key != after:
                        chunk.append(key)
                    found = cursor.next_nodup()
            self._pages.release()
            if not chunk:
                return
            yield from (key.hex() for key in chunk)
            after = chunk[-1]


def _cache_tables(env: lmdb.Environment) -> dict[bytes, Any]:
    return {
        b"objects": env.open_db(b"objects", dupsort=True, create=True),
        b"packs": env.open_db(b"packs", create=True),
    }


class _Spooled:
    """A downloaded pack, its trailer checked once: an entry is found by reading the slice of
    the trailer for its id's first byte (a fan-out of 257 offsets, ~1 KB a pack), so nothing
    per entry is held, however many packs a pull reads from at once."""

    def __init__(self, path: Path, trailer: Trailer) -> None:
        self.path = path
        self.index_start = trailer.data_end
        fanout = [0] * 257
        for entry in trailer.entries:
            fanout[entry.object_id[0] + 1] += 1
        for i in range(256):
            fanout[i + 1] += fanout[i]
        self.fanout = array("I", fanout)

    def read(self, object_id: bytes) -> bytes | None:
        first, last = self.fanout[object_id[0]], self.fanout[object_id[0] + 1]
        if first == last:
            return None
        size = ENTRY.size
        with open(self.path, "rb") as handle:
            fd = handle.fileno()
            bucket = os.pread(fd, (last - first) * size, self.index_start + first * size)
            low, high = 0, last - first
            while low < high:
                middle = (low + high) // 2
                if bucket[middle * size : middle * size + 32] < object_id:
                    low = middle + 1
                else:
                    high = middle
            if low == last - first or bucket[low * size : low * size + 32] != object_id:
                return None
            _, offset, length = ENTRY.unpack_from(bucket, low * size)
            return os.pread(fd, length, offset)


class RemotePacks:
    """One connection's view of a remote's packs. Thread-safe for reading."""

    def __init__(self, backend: Backend, cache_dir: Path) -> None:
        self.backend = backend
        self.cache_dir = cache_dir
        self._index: RemotePackIndex | None = None
        self._refreshed = False
        #: Remote packs whose trailer could not be read: their objects count as absent.
        self.damaged: list[str] = []
        self._lock = threading.Lock()
        self._pack_locks: dict[str, threading.Lock] = {}
        self._spool: Path | None = None
        self._parsing = threading.Lock()
        self._open: dict[str, _Spooled] = {}
        self._damaged_spooled: dict[str, PackDamaged] = {}
        self.bytes_downloaded = 0

    @property
    def index(self) -> RemotePackIndex:
        if self._index is None:
            self._index = RemotePackIndex(self.cache_dir)
        return self._index

    def refresh(self, *, reread: bool = False) -> None:
        """Bring the cache up to the remote: list ``packs/``, read the trailers it lacks
        (every trailer with ``reread``), forget packs that are gone."""
        listed = set()
        for key in self.backend.list(PACKS_PREFIX):
            name = key[len(PACKS_PREFIX) :]
            if is_pack_id(name):
                listed.add(name)
        index = self.index
        known = index.packs()
        for name in known - listed if not reread else known:
            index.forget(name)
        if reread:
            known = set()
        self.damaged = []
        for name in sorted(listed - known):
            try:
                trailer = read_remote_trailer(self.backend, name)
            except (PackDamaged, RemoteNotFound):
                self.damaged.append(name)
                continue
            index.add(name, (e.object_id for e in trailer.entries))
        self._refreshed = True

    def _ready(self) -> RemotePackIndex:
        if not self._refreshed:
            with self._lock:
                if not self._refreshed:
                    self.refresh()
        return self.index

    def has(self, object_id: str) -> bool:
        return self._ready().locate(object_id) is not None

    def __contains__(self, object_id: object) -> bool:
        return isinstance(object_id, str) and self.has(object_id)

    def iter_ids(self) -> Iterator[str]:
        return self._ready().iter_ids()

    def count(self) -> int:
        return len(self._ready().packs())

    def uploaded(self, name: str, ids: Iterable[bytes]) -> None:
        """Record a pack this process just uploaded."""
        self.index.add(name, ids)

    # -- reading ---------------------------------------------------------------------------
    def read_entry(self, object_id: str) -> bytes | None:
        """The packed object's bytes (unchecked: the caller opens them), or None if no known
        pack holds it. Downloads its pack whole the first time."""
        name = self._ready().locate(object_id)
        if name is None:
            return None
        return self._spooled_pack(name).read(bytes.fromhex(object_id))

    def _spooled_pack(self, name: str) -> _Spooled:
        with self._lock:
            found = self._open.get(name)
            if found is not None:
                return found
            lock = self._pack_locks.setdefault(name, threading.Lock())
        with lock:
            found = self._open.get(name)
            if found is not None:
                return found
            if name in self._damaged_spooled:
                raise self._damaged_spooled[name]
            path = self._spool_dir() / name
            # A scratch copy, not part of the vault: no sync; a crash loses only the spool.
            # Streamed: the threads of a pull want every pack at once.
            with open(path, "wb") as out:
                self.bytes_downloaded += self.backend.download(pack_key(name), out)
            # One trailer's entries as objects at a time (a 16 MB pack's are ~5 MB).
            with self._parsing, open(path, "rb") as handle:
                fd = handle.fileno()
                try:
                    trailer = parse_trailer(
                        lambda n, offset: os.pread(fd, n, offset),
                        os.fstat(fd).st_size,
                        name,
                        (REMOTE_PACK_VERSION,),
                    )
                except PackDamaged as exc:
                    self._damaged_spooled[name] = exc  # its other objects: no new download
                    raise
                spooled = _Spooled(path, trailer)
            # Published before the pack's lock is let go: a thread waiting on that lock must
            # find it, or it downloads the pack again into the same path, cutting the file
            # short under the threads reading from it.
            with self._lock:
                self._open[name] = spooled
        return spooled

    def _spool_dir(self) -> Path:
        with self._lock:
            if self._spool is None:
                parent = self.cache_dir.parent
                _remove_stale_spools(parent)
                self._spool = parent / f"spool-{secrets.token_hex(6)}"
                self._spool.mkdir(mode=0o700, parents=True)
            return self._spool

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def _remove_stale_spools(parent: Path) -> None:
    cutoff = time.time() - STALE_SPOOL_SECONDS
    for entry in os.scandir(parent) if parent.is_dir() else ():
        if entry.name.startswith("spool-"):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
