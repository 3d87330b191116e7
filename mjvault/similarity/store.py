"""The perceptual hashes of a vault's images: ``cache/hashes.sqlite`` (docs/FORMAT.md §7.3).

A hash costs a decode, so the hashes are kept apart from the index (which a rebuild drops):
a cache beside the thumbnails' table, made by sync, import and ``mjvault thumbs``, and
dropped or made again at will. A search reads every hash: they are kept in blocks of up to
:data:`BLOCK_ROWS` rows (one SQLite row per block: the block's hashes and parts, sealed
together in an encrypted vault), so streaming three million of them reads ~750 rows of ~36
KB, not three million rows. The object ids of a block are a column apart, read only for the
rows a search shows, and a table names each image's block for lookups and removals.

An entry ("row") is one hash: (image object id, part, hash); part 0 is the whole image, 1-4
the quadrants of a 2x2 grid. Row numbers count rows in block order; a write may move them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import blake3
import numpy as np

from mjvault.errors import CorruptObject, MjvaultError
from mjvault.similarity.hashing import ALGORITHM, HASH_BYTES, WORDS
from mjvault.store import cachefile

if TYPE_CHECKING:
    from mjvault.store.crypto import VaultKeys
    from mjvault.vault import Vault

FILE = "cache/hashes.sqlite"
TABLE_VERSION = 1
BLOCK_ROWS = 4096
ID_BYTES = 32  # an object id: 64 hex digits
DIGEST_BYTES = 16  # of a block's ids, bound into its seal
CACHE_KIB = 4096
_QUERY_MAX = 500
CHECK_VALUE = b"mjvault hashes"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    block INTEGER PRIMARY KEY, count INTEGER NOT NULL, digest BLOB NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS block_ids (block INTEGER PRIMARY KEY, ids BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS images (id BLOB PRIMARY KEY, block INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def block_context(block: int, digest: bytes) -> bytes:
    """What a block's seal is bound to: its number and its ids' digest (FORMAT §7.3)."""
    return b"mjvault v1 hashes block\0" + block.to_bytes(8, "big") + digest


CHECK_CONTEXT = b"mjvault v1 hashes check"


@dataclass(frozen=True)
class Block:
    """Rows ``start`` .. ``start + len(parts) - 1`` in :meth:`HashStore.blocks` order."""

    start: int
    words: np.ndarray  # (n, WORDS) uint64
    parts: np.ndarray  # (n,) uint8
    _ids: bytes | Iterator[bytes] = field(repr=False, compare=False, default=b"")
    _store: HashStore | None = field(repr=False, compare=False, default=None)
    _block: int = field(repr=False, compare=False, default=-1)
    _offset: int = field(repr=False, compare=False, default=0)
    _digest: bytes = field(repr=False, compare=False, default=b"")

    def images(self) -> list[str]:
        """The object id of each row (read from the store on the first call). Read outside
        a :meth:`HashStore.snapshot`, a block a writer changed since it was streamed is an
        error, never another block's ids."""
        raw = self._ids
        if not raw and self._store is not None and len(self.parts):
            raw = self._store._ids_of(self._block, self._digest or None)
            object.__setattr__(self, "_ids", raw)
        assert isinstance(raw, bytes)
        n = len(self.parts)
        base = self._offset * ID_BYTES
        return [raw[base + i * ID_BYTES : base + (i + 1) * ID_BYTES].hex() for i in range(n)]


class HashStore:
    """The vault's hash table. Readers may share one store between threads; one writer at
    a time (it holds the vault's write lock), committing with :meth:`commit` or on close."""

    def __init__(self, path: os.PathLike[str] | str, keys: VaultKeys | None, writable: bool):
        self.path = os.fspath(path)
        self.keys = keys
        self.writable = writable
        self.lock = threading.RLock()
        self._puts: dict[bytes, list[bytes]] = {}
        self._removes: set[bytes] = set()
        self._stale = False  # hashes of another algorithm or key: none are shown
        self.db: sqlite3.Connection | None = None
        # A read transaction of this thread's (see snapshot): reads go through it meanwhile.
        self._local = threading.local()
        self._open()

    @classmethod
    def open(cls, vault: Vault, *, writable: bool = False) -> HashStore:
        return cls(vault.path / FILE, vault.store.keys, writable)

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> None:
        if not self.writable:
            if not os.path.exists(self.path):
                return  # nothing hashed yet: an empty store, no file made
            uri = f"file:{self.path}?mode=ro"
            try:
                self.db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
                self._check()
            except sqlite3.DatabaseError:
                self.db = None  # damaged or of a later format: nothing to show, nothing made
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        # Damaged: a cache, so start again (the backfill makes the hashes again).
        cachefile.open_or_start_again(self.path, self._connect)
        assert self.db is not None
        if self._stale or not self.db.execute("SELECT 1 FROM meta LIMIT 1").fetchone():
            self._clear()  # another algorithm or key: made again; or new: its meta first

    def _connect(self) -> None:
        db = cachefile.connect(self.path, _SCHEMA, TABLE_VERSION, cache_kib=CACHE_KIB, wal=True)
        self.db = db
        try:
            self._check()
        except sqlite3.DatabaseError:
            db.close()
            self.db = None
            raise

    def _check(self) -> None:
        """Stale when the hashes are of another algorithm, or sealed under another key (a
        rotation that could not seal them again, a plain vault's file copied in)."""
        assert self.db is not None
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self._stale = self.db.execute("SELECT 1 FROM blocks LIMIT 1").fetchone() is not None
            return
        algorithm = bytes(meta.get("algorithm", b"")).decode("utf-8", "replace")
        check = meta.get("check")
        if algorithm != ALGORITHM or (check is None) != (self.keys is None):
            self._stale = True
        elif self.keys is not None and check is not None:
            try:
                self._stale = self.keys.open_bytes(bytes(check), CHECK_CONTEXT) != CHECK_VALUE
            except CorruptObject:
                self._stale = True

    def _clear(self) -> None:
        assert self.db is not None
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            for table in ("blocks", "block_ids", "images", "meta"):
                self.db.execute(f"DELETE FROM {table}")
            self._write_meta()
            self.db.execute("COMMIT")
            self._stale = False

    def _write_meta(self) -> None:
        assert self.db is not None
        rows: list[tuple[str, bytes]] = [("algorithm", ALGORITHM.encode("utf-8"))]
        if self.keys is not None:
            rows.append(("check", self.keys.seal_bytes(CHECK_VALUE, CHECK_CONTEXT)))
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)

    # -- reading ------------------------------------------------------------------------------
    @property
    def _readable(self) -> bool:
        return self.db is not None and not self._stale

    def __len__(self) -> int:
        if not self._readable:
            return 0
        with self.lock:
            row = self._reader().execute("SELECT coalesce(sum(count), 0) FROM blocks").fetchone()
        return int(row[0]) + sum(len(h) for h in self._puts.values())

    def _body(self, block: int, count: int, digest: bytes, body: bytes) -> tuple[bytes, bytes]:
        """(hashes, parts) of a stored block, opened in an encrypted vault."""
        if self.keys is not None:
            body = self.keys.open_bytes(body, block_context(block, digest))
        if len(body) != count * (HASH_BYTES + 1):
            raise CorruptObject(f"hash block {block} has {len(body)} bytes for {count} rows")
        return body[: count * HASH_BYTES], body[count * HASH_BYTES :]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads of this thread (:meth:`blocks`, :meth:`locate`, ``Block.images``) all see one
        committed state meanwhile: a writer committing during a search (a sync, forget or gc
        moving rows) cannot make the row numbers a scan found name other images."""
        if not self._readable or getattr(self._local, "db", None) is not None:
            yield
            return
        uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute("BEGIN")
            db.execute("SELECT count(*) FROM meta").fetchone()  # the snapshot starts here
            self._local.db = db
            yield
        finally:
            self._local.db = None
            with contextlib.suppress(sqlite3.Error):
                db.execute("COMMIT")
            db.close()

    def _reader(self) -> sqlite3.Connection:
        """The connection reads go through: the thread's snapshot, else the shared one."""
        snap = getattr(self._local, "db", None)
        if snap is not None:
            return snap
        assert self.db is not None
        return self.db

    def _ids_of(self, block: int, expected: bytes | None = None) -> bytes:
        """A block's ids, checked against their digest (and against ``expected``, the digest
        the block had when it was streamed)."""
        db = self._reader()
        with self.lock:
            ids = db.execute("SELECT ids FROM block_ids WHERE block = ?", (block,)).fetchone()
            digest = db.execute("SELECT digest FROM blocks WHERE block = ?", (block,)).fetchone()
        if ids is None or digest is None or (expected is not None and bytes(digest[0]) != expected):
            raise MjvaultError("the hashes changed while they were searched: search again")
        raw = bytes(ids[0])
        if blake3.blake3(raw).digest(DIGEST_BYTES) != bytes(digest[0]):
            raise CorruptObject(f"hash block {block}: its ids do not match their digest")
        return raw

    def _read_block(self, block: int) -> tuple[bytes, bytes, bytes]:
        """(ids, hashes, parts) of a stored block."""
        db = self._reader()
        with self.lock:
            row = db.execute(
                "SELECT count, digest, body FROM blocks WHERE block = ?", (block,)
            ).fetchone()
        if row is None:
            return b"", b"", b""
        hashes, parts = self._body(block, int(row[0]), bytes(row[1]), bytes(row[2]))
        return self._ids_of(block), hashes, parts

    def hashes_of(self, object_id: str) -> list[bytes] | None:
        """The image's hashes by part (``[whole]`` or ``[whole, q1, q2, q3, q4]``); None when
        it is not hashed yet."""
        key = bytes.fromhex(object_id)
        if key in self._puts:
            return list(self._puts[key])
        if not self._readable or key in self._removes:
            return None
        with self.lock:
            row = self._reader().execute("SELECT block FROM images WHERE id = ?", (key,)).fetchone()
        if row is None:
            return None
        ids, hashes, parts = self._read_block(int(row[0]))
        found: list[tuple[int, bytes]] = []
        for i in range(len(parts)):
            if ids[i * ID_BYTES : (i + 1) * ID_BYTES] == key:
                found.append((parts[i], hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES]))
        return [h for _, h in sorted(found)] or None

    def hashes_of_many(self, object_ids: Iterable[str]) -> dict[str, list[bytes]]:
        """:meth:`hashes_of` of many images, each block read (and opened) once: the hashed
        ones only, by id."""
        keys = list(dict.fromkeys(bytes.fromhex(i) for i in object_ids))
        out: dict[str, list[bytes]] = {}
        wanted: list[bytes] = []
        for key in keys:
            if key in self._puts:
                out[key.hex()] = list(self._puts[key])
            elif key not in self._removes:
                wanted.append(key)
        if not self._readable or not wanted:
            return out
        by_block: dict[int, set[bytes]] = {}
        for start in range(0, len(wanted), _QUERY_MAX):
            part = wanted[start : start + _QUERY_MAX]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows = (
                    self._reader()
                    .execute(f"SELECT id, block FROM images WHERE id IN ({marks})", part)
                    .fetchall()
                )
            for key, block in rows:
                by_block.setdefault(int(block), set()).add(bytes(key))
        for block in sorted(by_block):
            ids, hashes, parts = self._read_block(block)
            found: dict[bytes, list[tuple[int, bytes]]] = {}
            for i in range(len(parts)):
                key = ids[i * ID_BYTES : (i + 1) * ID_BYTES]
                if key in by_block[block]:
                    value = hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES]
                    found.setdefault(key, []).append((parts[i], value))
            for key, values in found.items():
                out[key.hex()] = [h for _, h in sorted(values)]
        return out

    def has_many(self, object_ids: list[str]) -> set[str]:
        """Which of these images are hashed (a backfill's lookup, a few queries per group)."""
        if not self._readable:
            return {i for i in object_ids if bytes.fromhex(i) in self._puts}
        assert self.db is not None
        found: set[str] = set()
        for start in range(0, len(object_ids), _QUERY_MAX):
            part = [bytes.fromhex(i) for i in object_ids[start : start + _QUERY_MAX]]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows = self.db.execute(
                    f"SELECT id FROM images WHERE id IN ({marks})", part
                ).fetchall()
            found.update(bytes(r[0]).hex() for r in rows)
        found.update(i for i in object_ids if bytes.fromhex(i) in self._puts)
        return {i for i in found if bytes.fromhex(i) not in self._removes}

    def _stored_blocks(self) -> Iterator[tuple[int, int, bytes, bytes]]:
        """(block, count, digest, body) of every stored block, in one read transaction (a
        writer committing meanwhile does not tear the stream)."""
        if not self._readable:
            return
        snap = getattr(self._local, "db", None)
        if snap is not None:  # inside snapshot(): its transaction already holds the state
            cursor = snap.execute("SELECT block, count, digest, body FROM blocks ORDER BY block")
            for block, count, digest, body in cursor:
                yield int(block), int(count), bytes(digest), bytes(body)
            return
        # A connection of its own: the read transaction lasts as long as the caller
        # iterates, and must not hold the shared connection (or its lock) meanwhile.
        uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute("BEGIN")
            cursor = db.execute("SELECT block, count, digest, body FROM blocks ORDER BY block")
            for block, count, digest, body in cursor:
                yield int(block), int(count), bytes(digest), bytes(body)
            db.execute("COMMIT")
        finally:
            db.close()

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Block]:
        """Every committed row, in a stable order, a block at a time (stored blocks split to at
        most ``rows``): memory bounded by one block whatever the store's size."""
        start = 0
        for block, count, digest, body in self._stored_blocks():
            hashes, parts = self._body(block, count, digest, body)
            # Big-endian words straight from the bytes (to_words' layout, without a list).
            words = np.frombuffer(hashes, dtype=">u8").astype(np.uint64).reshape(count, WORDS)
            part_array = np.frombuffer(parts, dtype=np.uint8)
            for offset in range(0, count, max(1, rows)):
                end = min(count, offset + rows)
                yield Block(
                    start + offset,
                    words[offset:end],
                    part_array[offset:end],
                    _store=self,
                    _block=block,
                    _offset=offset,
                    _digest=digest,
                )
            start += count

    def locate(self, rows: Iterable[int]) -> list[tuple[str, int]]:
        """(object id, part) of each row number of :meth:`blocks`: read in the same
        :meth:`snapshot` as the scan that found them (outside one, valid until the next
        write; a row a write removed is an error, not a crash)."""
        wanted = list(rows)
        if not wanted:
            return []
        if not self._readable:
            raise MjvaultError("the hashes changed while they were searched: search again")
        db = self._reader()
        with self.lock:
            counts = db.execute("SELECT block, count FROM blocks ORDER BY block").fetchall()
        blocks = np.array([b for b, _ in counts], dtype=np.int64)
        ends = np.cumsum([c for _, c in counts])
        out: list[tuple[str, int]] = []
        cache: dict[int, tuple[bytes, bytes]] = {}
        for row in wanted:
            at = int(np.searchsorted(ends, row, side="right"))
            if row < 0 or at >= len(blocks):
                raise MjvaultError("the hashes changed while they were searched: search again")
            block = int(blocks[at])
            first = int(ends[at - 1]) if at else 0
            if block not in cache:
                ids, _hashes, parts = self._read_block(block)
                cache[block] = (ids, parts)
            ids, parts = cache[block]
            i = row - first
            out.append((ids[i * ID_BYTES : (i + 1) * ID_BYTES].hex(), parts[i]))
        return out

    # -- writing ------------------------------------------------------------------------------
    def _writing(self) -> sqlite3.Connection:
        if not self.writable or self.db is None:
            raise MjvaultError("the hash store was opened read-only")
        return self.db

    def put(self, object_id: str, hashes: list[bytes]) -> None:
        """The image's hashes by part (replacing any it had); written by :meth:`commit`."""
        self._writing()
        if not 1 <= len(hashes) <= 255 or any(len(h) != HASH_BYTES for h in hashes):
            raise ValueError(f"1 to 255 hashes of {HASH_BYTES} bytes each")
        key = bytes.fromhex(object_id)
        if len(key) != ID_BYTES:
            raise ValueError(f"an object id is {ID_BYTES * 2} hex digits")
        with self.lock:
            self._puts[key] = list(hashes)

    def remove(self, object_ids: Iterable[str]) -> int:
        """Drop these images' rows (at :meth:`commit`); returns how many images had rows."""
        db = self._writing()
        keys = [bytes.fromhex(i) for i in object_ids]
        dropped = 0
        with self.lock:
            for key in keys:
                if self._puts.pop(key, None) is not None:
                    dropped += 1
                    self._removes.add(key)
                    continue
                if (
                    key not in self._removes
                    and db.execute("SELECT 1 FROM images WHERE id = ?", (key,)).fetchone()
                ):
                    self._removes.add(key)
                    dropped += 1
        return dropped

    @property
    def pending(self) -> int:
        """Images put or removed since the last commit."""
        return len(self._puts) + len(self._removes)

    def commit(self) -> None:
        """Write what was put and removed in one transaction: removed rows leave their
        blocks (rewritten without them), new rows fill the last block, then new ones."""
        if not self._puts and not self._removes:
            return
        db = self._writing()
        with self.lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                gone = self._removes | set(self._puts)
                touched: dict[int, None] = {}
                keys = list(gone)
                for start in range(0, len(keys), _QUERY_MAX):
                    part = keys[start : start + _QUERY_MAX]
                    marks = ",".join("?" * len(part))
                    for (block,) in db.execute(
                        f"SELECT DISTINCT block FROM images WHERE id IN ({marks})", part
                    ):
                        touched[int(block)] = None
                for block in touched:
                    self._rewrite(db, block, gone)
                self._append(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._puts.clear()
            self._removes.clear()

    def _rewrite(self, db: sqlite3.Connection, block: int, gone: set[bytes]) -> None:
        ids, hashes, parts = self._read_block(block)
        kept = [i for i in range(len(parts)) if ids[i * ID_BYTES : (i + 1) * ID_BYTES] not in gone]
        db.executemany(
            "DELETE FROM images WHERE id = ? AND block = ?",
            [(ids[i * ID_BYTES : (i + 1) * ID_BYTES], block) for i in range(len(parts))],
        )
        if not kept:
            db.execute("DELETE FROM blocks WHERE block = ?", (block,))
            db.execute("DELETE FROM block_ids WHERE block = ?", (block,))
            return
        rows = [
            (
                ids[i * ID_BYTES : (i + 1) * ID_BYTES],
                parts[i],
                hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES],
            )
            for i in kept
        ]
        self._write_block(db, block, rows)

    def _write_block(
        self, db: sqlite3.Connection, block: int, rows: list[tuple[bytes, int, bytes]]
    ) -> None:
        ids = b"".join(r[0] for r in rows)
        digest = blake3.blake3(ids).digest(DIGEST_BYTES)
        body = b"".join(r[2] for r in rows) + bytes(r[1] for r in rows)
        if self.keys is not None:
            body = self.keys.seal_bytes(body, block_context(block, digest))
        db.execute(
            "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?)", (block, len(rows), digest, body)
        )
        db.execute("INSERT OR REPLACE INTO block_ids VALUES (?, ?)", (block, ids))
        db.executemany(
            "INSERT OR REPLACE INTO images VALUES (?, ?)",
            [(key, block) for key in dict.fromkeys(r[0] for r in rows)],
        )

    def _append(self, db: sqlite3.Connection) -> None:
        new = [
            (key, part, value)
            for key, hashes in self._puts.items()
            for part, value in enumerate(hashes)
        ]
        if not new:
            return
        last = db.execute("SELECT block, count FROM blocks ORDER BY block DESC LIMIT 1").fetchone()
        block = 0
        rows: list[tuple[bytes, int, bytes]] = []
        if last is not None:
            block = int(last[0])
            if int(last[1]) < BLOCK_ROWS:
                ids, hashes, parts = self._read_block(block)
                rows = [
                    (
                        ids[i * ID_BYTES : (i + 1) * ID_BYTES],
                        parts[i],
                        hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES],
                    )
                    for i in range(len(parts))
                ]
            else:
                block += 1
        for row in new:
            if len(rows) >= BLOCK_ROWS and rows[-1][0] != row[0]:
                self._write_block(db, block, rows)
                block, rows = block + 1, []
            rows.append(row)
        self._write_block(db, block, rows)

    def reseal(self) -> int:
        """Every block (and the check) sealed again under the current key: what a key
        rotation does before the retired secret goes. Returns the blocks written."""
        db = self._writing()
        if self.keys is None or self._stale:
            return 0
        done = 0
        with self.lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                for (block,) in db.execute("SELECT block FROM blocks").fetchall():
                    ids, hashes, parts = self._read_block(int(block))
                    digest = blake3.blake3(ids).digest(DIGEST_BYTES)
                    body = self.keys.seal_bytes(hashes + parts, block_context(int(block), digest))
                    db.execute("UPDATE blocks SET body = ? WHERE block = ?", (body, block))
                    done += 1
                self._write_meta()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return done

    def rollback(self) -> None:
        """Drop what was put or removed since the last commit."""
        with self.lock:
            self._puts.clear()
            self._removes.clear()

    def close(self) -> None:
        if self.db is None:
            return
        try:
            if self.writable and not self._stale:
                self.commit()
        finally:
            self.db.close()
            self.db = None

    def __enter__(self) -> HashStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.rollback()
        self.close()
