"""Image embeddings kept in the vault's cache, and the run that computes them.

``cache/embeddings.sqlite`` (docs/FORMAT.md §7.4) holds, per model (the BLAKE3 of its file),
the unit vectors of HEAD's images as float16 in *blocks* of up to :data:`BLOCK` rows, each a
row of the table: the images' ids side by side and their vectors side by side, so a search
reads a million vectors as a thousand rows and never a row per image. Table ``images`` says
which block holds each image (``-1``: a video or an image that does not decode), for the
run's resume and for forget. In an encrypted vault a block's vectors are sealed (the text key,
``VaultKeys.seal_bytes`` as the perceptual hashes', bound to the model, the block and its
ids): a vector says what an image shows.

A cache like the thumbnails' table: kept across index rebuilds (a vector costs a model run),
dropped whole when it does not open, and losing it only means computing the vectors again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any

import numpy as np

from mjvault.errors import CorruptObject, ObjectNotFound, UsageError, VaultLocked
from mjvault.lock import WriteLock
from mjvault.reports import Report
from mjvault.similarity.onnx_models import ImageModel, Preprocessing, model_digest
from mjvault.store import cachefile
from mjvault.store.codec import media_kind
from mjvault.vault import Vault

CACHE_FILE = "cache/embeddings.sqlite"
TABLE_VERSION = 1
BLOCK = 1024  # vectors a block holds: a commit's worth, and what a kill -9 can lose
ID_BYTES = 32  # an object id, binary (64 hex digits)
LOOKUP = 256  # images looked up in the table at once
WINDOW = 16  # images being read and prepared per worker: bounds memory at any vault size
CACHE_KIB = 8192
NOT_AN_IMAGE = -1  # the block of an image that has no vector (a video, undecodable)
CHECK_CONTEXT = b"mjvault embeddings\0check"
# meta row "key": which key sealed the store. "text" (seal_bytes, the text key, which a key
# rotation opens under either secret); absent, the index sealing key of an earlier version,
# sealed again under the text key by the next writer (FORMAT §7.4).
SEALING = b"text"
PAUSE = 1.0  # seconds between tries for the lock while a writer (a sync) holds the vault

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY, dims INTEGER NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
    image_size INTEGER, mean TEXT, std TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    model TEXT NOT NULL, block INTEGER NOT NULL, ids BLOB NOT NULL, vectors BLOB NOT NULL,
    PRIMARY KEY (model, block)
);
CREATE TABLE IF NOT EXISTS images (
    model TEXT NOT NULL, image TEXT NOT NULL, block INTEGER NOT NULL,
    PRIMARY KEY (model, image)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS images_of_block ON images (model, block);
PRAGMA user_version = 1;
"""

Progress = Callable[[int, int | None], None]


def _text(values: tuple[float, float, float]) -> str:
    return ",".join(repr(float(v)) for v in values)  # repr: read back to the same float


def _triple(text: str) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in str(text).split(","))
    return (a, b, c)


def _vectors_context(model: str, block: int, ids: bytes) -> bytes:
    return b"mjvault embeddings\0" + model.encode() + b"\0" + str(block).encode() + b"\0" + ids


@dataclass(frozen=True)
class Block:
    """One block of a model's vectors: ``vectors`` (n×dims float16, unit rows) and the ids
    (binary, decoded only for a search's hits)."""

    number: int
    ids: bytes
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids) // ID_BYTES

    def image(self, row: int) -> str:
        return self.ids[row * ID_BYTES : (row + 1) * ID_BYTES].hex()

    def images(self) -> list[str]:
        return [self.image(r) for r in range(len(self))]


def _upgrade(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(models)")}
    # A store written before the preprocessing was remembered: its rows read NULL.
    for column, kind in (("image_size", "INTEGER"), ("mean", "TEXT"), ("std", "TEXT")):
        if column not in columns:
            db.execute(f"ALTER TABLE models ADD COLUMN {column} {kind}")
    db.execute("SELECT count(*) FROM (SELECT 1 FROM blocks LIMIT 1)").fetchone()


class EmbeddingStore:
    """The vault's vectors. One connection; writes held in one transaction until
    :meth:`commit` (each :meth:`add_block` commits: a block is the unit a kill loses)."""

    def __init__(self, vault: Vault, *, writable: bool = False) -> None:
        self.path = vault.path / CACHE_FILE
        self.keys = vault.store.keys
        self.writable = writable
        self.legacy = False  # sealed under the index key by an earlier version
        self.lock = threading.Lock()
        if writable:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            # Damaged: a cache, so start again rather than refuse.
            self.db = cachefile.open_or_start_again(self.path, self._open)
            self._check_keys()
        else:
            if not self.path.is_file():
                raise UsageError("no embeddings yet", hint="run `mjvault embed --model PATH`")
            try:
                self.db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
                self.db.execute("SELECT count(*) FROM (SELECT 1 FROM blocks LIMIT 1)").fetchone()
            except sqlite3.DatabaseError:
                raise UsageError(
                    f"{CACHE_FILE} is damaged", hint="run `mjvault embed` again"
                ) from None
            if not self._keys_match():
                raise UsageError(
                    "the embeddings were sealed under keys this vault no longer uses",
                    hint="run `mjvault embed` again",
                )

    @classmethod
    def open(cls, vault: Vault, *, writable: bool = False) -> EmbeddingStore:
        return cls(vault, writable=writable)

    def _open(self) -> sqlite3.Connection:
        return cachefile.connect(
            self.path, _SCHEMA, TABLE_VERSION, cache_kib=CACHE_KIB, prepare=_upgrade
        )

    # -- keys -------------------------------------------------------------------------------
    def _keys_match(self) -> bool:
        if self.keys is None:
            return True
        try:
            meta = dict(self.db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            return False
        check = meta.get("check")
        if check is None:
            return not self.db.execute("SELECT 1 FROM blocks LIMIT 1").fetchone()
        self.legacy = meta.get("key") is None
        try:
            if self.legacy:
                self.keys.open_index(bytes(check), CHECK_CONTEXT)
            else:
                # During a key rotation it opens under the retired secret too (open_bytes):
                # the rotation's end seals it again (reseal_embeddings).
                self.keys.open_bytes(bytes(check), CHECK_CONTEXT)
        except CorruptObject:
            return False
        return True

    def _check_keys(self) -> None:
        """Vectors sealed under keys this vault does not hold open under none: drop them all
        (a cache) and note the current keys' check. A store an earlier version sealed under
        the index key is sealed again under the text key. The caller holds the write lock."""
        if self.keys is None:
            return
        if not self._keys_match():
            with self.lock:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("DELETE FROM blocks")
                self.db.execute("DELETE FROM images")
                self.db.execute("DELETE FROM meta WHERE name IN ('check', 'key')")
                self.db.execute("COMMIT")
                self.db.execute("VACUUM")
            self.legacy = False
        if self.legacy:
            self.reseal()
        elif self.db.execute("SELECT 1 FROM meta WHERE name = 'check'").fetchone() is None:
            self._write_check()

    def _write_check(self) -> None:
        assert self.keys is not None
        check = self.keys.seal_bytes(b"", CHECK_CONTEXT)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('check', ?)", (check,))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('key', ?)", (SEALING,))

    # -- models -----------------------------------------------------------------------------
    def known_digest(self, path: str, size: int, mtime: int) -> str | None:
        """The digest of the model file last seen at ``path`` with this size and mtime (a
        search need not hash a 300 MB file again)."""
        row = self.db.execute(
            "SELECT model FROM models WHERE path = ? AND size = ? AND mtime = ?",
            (path, size, mtime),
        ).fetchone()
        return str(row[0]) if row else None

    def dims(self, model: str) -> int | None:
        row = self.db.execute("SELECT dims FROM models WHERE model = ?", (model,)).fetchone()
        return int(row[0]) if row else None

    def preprocessing(self, model: str) -> Preprocessing | None:
        """The input size, mean and std ``model``'s vectors were computed with; None when it
        has no vectors yet (or they were stored before these were noted)."""
        try:
            row = self.db.execute(
                "SELECT image_size, mean, std FROM models WHERE model = ?", (model,)
            ).fetchone()
        except sqlite3.OperationalError:  # an older store opened read-only: no such columns
            return None
        if row is None or None in row:
            return None
        return Preprocessing(int(row[0]), _triple(row[1]), _triple(row[2]))

    def note_model(
        self, model: str, dims: int, path: str, size: int, mtime: int, prep: Preprocessing
    ) -> None:
        with self.lock:
            self._begin()
            self.db.execute(
                "INSERT OR REPLACE INTO models "
                "(model, dims, path, size, mtime, image_size, mean, std) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (model, dims, path, size, mtime, prep.size, _text(prep.mean), _text(prep.std)),
            )

    # -- images -----------------------------------------------------------------------------
    def known(self, model: str, images: list[str]) -> set[str]:
        """Which of ``images`` have a row (a vector, or none for a non-image)."""
        found: set[str] = set()
        for start in range(0, len(images), 500):
            part = images[start : start + 500]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows = self.db.execute(
                    f"SELECT image FROM images WHERE model = ? AND image IN ({marks})",
                    (model, *part),
                ).fetchall()
            found.update(r[0] for r in rows)
        return found

    def count(self, model: str) -> int:
        """Images with a vector under ``model``."""
        row = self.db.execute(
            "SELECT count(*) FROM images WHERE model = ? AND block >= 0", (model,)
        ).fetchone()
        return int(row[0])

    def vector_of(self, model: str, image: str) -> np.ndarray | None:
        """The stored vector (float32) of one image, None when it has none."""
        row = self.db.execute(
            "SELECT block FROM images WHERE model = ? AND image = ?", (model, image)
        ).fetchone()
        if row is None or row[0] < 0:
            return None
        block = self._block(model, int(row[0]))
        if block is None:
            return None
        key = bytes.fromhex(image)
        for index in range(len(block)):
            if block.ids[index * ID_BYTES : (index + 1) * ID_BYTES] == key:
                return block.vectors[index].astype(np.float32)
        return None

    # -- blocks -----------------------------------------------------------------------------
    def _unseal(self, model: str, number: int, ids: bytes, data: bytes) -> bytes:
        assert self.keys is not None
        context = _vectors_context(model, number, ids)
        if self.legacy:
            return self.keys.open_index(data, context)
        return self.keys.open_bytes(data, context)  # the retired secret's too, in a rotation

    def _decode(self, model: str, number: int, ids: bytes, data: bytes) -> Block:
        if self.keys is not None:
            data = self._unseal(model, number, ids, data)
        rows = len(ids) // ID_BYTES
        vectors = np.frombuffer(data, dtype="<f2")
        if rows == 0 or vectors.size % rows:
            raise CorruptObject(f"embedding block {number} is damaged")
        return Block(number, ids, vectors.reshape(rows, vectors.size // rows))

    def _block(self, model: str, number: int) -> Block | None:
        row = self.db.execute(
            "SELECT ids, vectors FROM blocks WHERE model = ? AND block = ?", (model, number)
        ).fetchone()
        return self._decode(model, number, bytes(row[0]), bytes(row[1])) if row else None

    def blocks(self, model: str) -> Iterator[Block]:
        """Every block of ``model``'s vectors, in block order, one at a time (memory: a block,
        whatever the store's size). A block that does not open raises CorruptObject."""
        last = -1
        while True:
            # A query per block, not one cursor over all: no read transaction is held open
            # across the caller's work between blocks.
            row = self.db.execute(
                "SELECT block, ids, vectors FROM blocks WHERE model = ? AND block > ? "
                "ORDER BY block LIMIT 1",
                (model, last),
            ).fetchone()
            if row is None:
                return
            last = int(row[0])
            yield self._decode(model, last, bytes(row[1]), bytes(row[2]))

    def add_block(self, model: str, images: list[str], vectors: np.ndarray | None) -> None:
        """Store ``vectors`` (unit rows, in ``images``' order), first filling the model's
        last block up to :data:`BLOCK` rows (a run's last block is short, and without this
        every run would leave one more short block to read), the rest as new blocks; or
        with None note ``images`` as having no vector. Committed."""
        with self.lock:
            self._begin()
            if vectors is None or not images:
                self.db.executemany(
                    "INSERT OR REPLACE INTO images VALUES (?, ?, ?)",
                    [(model, image, NOT_AN_IMAGE) for image in images],
                )
            else:
                row = self.db.execute(
                    "SELECT max(block) FROM blocks WHERE model = ?", (model,)
                ).fetchone()
                number = 0 if row[0] is None else int(row[0]) + 1
                start = 0
                if row[0] is not None:
                    try:
                        last = self._block(model, number - 1)
                    except CorruptObject:
                        last = None  # left as it is; the new rows take a block of their own
                    if last is not None and len(last) < BLOCK:
                        start = BLOCK - len(last)
                        self._write_block(
                            model,
                            last.number,
                            last.images() + images[:start],
                            np.concatenate([last.vectors.astype(np.float32), vectors[:start]]),
                        )
                for offset in range(start, len(images), BLOCK):
                    end = offset + BLOCK
                    self._write_block(model, number, images[offset:end], vectors[offset:end])
                    number += 1
            self.db.execute("COMMIT")

    def _write_block(self, model: str, number: int, images: list[str], vectors: np.ndarray) -> None:
        ids = b"".join(bytes.fromhex(image) for image in images)
        if len(ids) != len(images) * ID_BYTES:
            raise ValueError("object ids of 32 bytes expected")
        data = np.ascontiguousarray(vectors, dtype="<f2").tobytes()
        if self.keys is not None:
            data = self.keys.seal_bytes(data, _vectors_context(model, number, ids))
        self.db.execute(
            "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?)", (model, number, ids, data)
        )
        self.db.executemany(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?)",
            [(model, image, number) for image in images],
        )

    def remove(self, images: Iterable[str]) -> int:
        """Drop these images' vectors under every model (forget): each block holding one is
        written again without it. Returns the vectors removed; committed."""
        wanted = sorted(set(images))
        removed = 0
        with self.lock:
            self._begin()
            affected: dict[tuple[str, int], set[str]] = {}
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                for model, image, block in self.db.execute(
                    f"SELECT model, image, block FROM images WHERE image IN ({marks})", part
                ).fetchall():
                    if block >= 0:
                        affected.setdefault((model, int(block)), set()).add(image)
                self.db.execute(f"DELETE FROM images WHERE image IN ({marks})", part)
            for (model, number), gone in sorted(affected.items()):
                block = self._block(model, number)
                if block is None:
                    continue
                keep = [r for r in range(len(block)) if block.image(r) not in gone]
                removed += len(block) - len(keep)
                self.db.execute("DELETE FROM blocks WHERE model = ? AND block = ?", (model, number))
                if keep:
                    self._write_block(
                        model, number, [block.image(r) for r in keep], block.vectors[keep]
                    )
            if self.db.in_transaction:
                self.db.execute("COMMIT")
        return removed

    def _begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        with self.lock:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def close(self) -> None:
        if self.writable:
            self.commit()
        self.db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def reseal(self) -> int:
        """Every block and the check sealed again under the current text key (the end of a
        key rotation, or a store an earlier version sealed under the index key; the caller
        holds the write lock); blocks that open under no key are dropped. Returns the blocks
        sealed again."""
        if self.keys is None:
            return 0
        done = 0
        with self.lock:
            self._begin()
            rows = self.db.execute("SELECT model, block FROM blocks ORDER BY model, block")
            for model, number in rows.fetchall():
                row = self.db.execute(
                    "SELECT ids, vectors FROM blocks WHERE model = ? AND block = ?",
                    (model, number),
                ).fetchone()
                ids, data = bytes(row[0]), bytes(row[1])
                try:
                    plain = self._unseal(model, number, ids, data)
                except CorruptObject:
                    self.db.execute(
                        "DELETE FROM blocks WHERE model = ? AND block = ?", (model, number)
                    )
                    self.db.execute(
                        "DELETE FROM images WHERE model = ? AND block = ?", (model, number)
                    )
                    continue
                sealed = self.keys.seal_bytes(plain, _vectors_context(model, number, ids))
                self.db.execute(
                    "UPDATE blocks SET vectors = ? WHERE model = ? AND block = ?",
                    (sealed, model, number),
                )
                done += 1
            self._write_check()
            self.db.execute("COMMIT")
            self.legacy = False
        self.db.execute("VACUUM")  # no freed page keeps a block sealed under the old secret
        return done


def reseal_embeddings(vault: Vault) -> int:
    """:meth:`EmbeddingStore.reseal` of the vault's store, when it has one."""
    if vault.store.keys is None or not (vault.path / CACHE_FILE).exists():
        return 0
    with EmbeddingStore.open(vault, writable=True) as store:
        return store.reseal()


def forget_embeddings(vault: Vault, images: Iterable[str]) -> int:
    """Drop forgotten images' vectors (forget calls this beside the thumbnails')."""
    ids = list(images)
    if not ids or not (vault.path / CACHE_FILE).exists():
        return 0
    with EmbeddingStore.open(vault, writable=True) as store:
        return store.remove(ids)


# -- the run --------------------------------------------------------------------------------
@dataclass
class EmbedReport(Report):
    model: str
    dims: int = 0
    images: int = 0  # distinct images seen
    embedded: int = 0
    cached: int = 0
    not_images: int = 0  # videos and images that do not decode
    unreadable: int = 0


def head_images(vault: Vault) -> Iterator[str]:
    for entry in vault.entries():
        for image in entry.images:
            if image is not None:
                yield image


class _Run:
    """Images read and prepared on worker threads (a window of them at a time), run through
    the model in batches on this thread (onnxruntime uses the cores itself), and stored a
    block at a time: a kill loses at most the block being filled."""

    def __init__(
        self, vault: Vault, store: EmbeddingStore, model: ImageModel, workers: int
    ) -> None:
        self.vault = vault
        self.store = store
        self.model = model
        self.report = EmbedReport(model.digest, store.dims(model.digest) or 0)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="embed")
        self.window = WINDOW * workers
        self.pending: deque[tuple[str, Future[Any]]] = deque()
        self.queued: set[str] = set()  # submitted and not stored yet
        self.batch_ids: list[str] = []
        self.batch_pixels: list[np.ndarray] = []
        self.ready_ids: list[str] = []
        self.ready: list[np.ndarray] = []
        self.none: list[str] = []
        self.noted = False

    def _prepare(self, image: str) -> np.ndarray | str:
        try:
            data = self.vault.read_object(image)
        except (ObjectNotFound, CorruptObject, OSError):
            return "unreadable"
        kind = media_kind(data[:16])
        if kind is None or kind == "mp4":
            return "none"
        pixels = self.model.pixels(data)
        return "none" if pixels is None else pixels

    def run(self, images: Iterable[str], progress: Progress | None) -> EmbedReport:
        seen = 0
        stream = iter(images)
        try:
            while group := list(islice(stream, LOOKUP)):
                fresh = [i for i in dict.fromkeys(group) if i not in self.queued]
                known = self.store.known(self.model.digest, fresh)
                for image in fresh:
                    if image in known:
                        self.report.cached += 1
                        continue
                    self.queued.add(image)
                    self.pending.append((image, self.pool.submit(self._prepare, image)))
                    while len(self.pending) >= self.window:
                        self._take_one()
                self.report.images += len(fresh)
                seen += len(group)
                if progress is not None:
                    progress(seen, None)
            while self.pending:
                self._take_one()
            self._run_batch()
            self._store(final=True)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return self.report

    def _take_one(self) -> None:
        image, future = self.pending.popleft()
        result = future.result()
        if isinstance(result, str):
            if result == "unreadable":
                self.report.unreadable += 1
                self.queued.discard(image)  # not noted: a repair may bring it back
            else:
                self.report.not_images += 1
                self.none.append(image)
                if len(self.none) >= BLOCK:  # a vault of videos holds no list of them
                    self._store_none()
            return
        self.batch_ids.append(image)
        self.batch_pixels.append(result)
        if len(self.batch_pixels) >= self.model.batch:
            self._run_batch()

    def _run_batch(self) -> None:
        if not self.batch_pixels:
            return
        vectors = self.model.embed(self.batch_pixels)
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():  # stored, a NaN would score NaN against every query
            raise UsageError(
                f"{self.model.path.name} gave {int((~finite).sum())} of "
                f"{len(finite)} vectors with NaN or infinite numbers: check its preprocessing"
            )
        if self.report.dims and vectors.shape[1] != self.report.dims:
            raise UsageError(
                f"the model gives {vectors.shape[1]} dims, its stored vectors {self.report.dims}"
            )
        if not self.report.dims:
            self.report.dims = int(vectors.shape[1])  # the model's row is noted with a block
        self.ready_ids.extend(self.batch_ids)
        self.ready.extend(vectors)
        self.batch_ids, self.batch_pixels = [], []
        if len(self.ready_ids) >= BLOCK:
            self._store()

    def _note_model(self) -> None:
        stat = self.model.path.stat()
        self.store.note_model(
            self.model.digest,
            self.report.dims,
            os.fspath(self.model.path.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            self.model.preprocessing,
        )

    def _store_none(self) -> None:
        if self.none:
            self._commit(self.none, None)
            self.queued.difference_update(self.none)
            self.none = []

    def _store(self, *, final: bool = False) -> None:
        """Full blocks only, until the end: the last block alone may be short."""
        self._store_none()
        while len(self.ready_ids) >= BLOCK or (final and self.ready_ids):
            ids, self.ready_ids = self.ready_ids[:BLOCK], self.ready_ids[BLOCK:]
            vectors, self.ready = self.ready[:BLOCK], self.ready[BLOCK:]
            self.report.embedded += self._commit(ids, np.stack(vectors))
            self.queued.difference_update(ids)

    def _commit(self, images: list[str], vectors: np.ndarray | None) -> int:
        """Store a block under the write lock, held for the commit alone (a *brief* holder: a
        sync starting now waits these milliseconds out; one running pauses this run until it
        ends). Images no job of HEAD names any more (a forget since they were read) are left
        out: their vectors would outlive them; so are images another run stored meanwhile.
        Returns the vectors stored."""
        lock = _brief_lock(self.vault)
        try:
            self.vault.check_keys()  # rotated meanwhile: sealed under retired keys, refuse
            # Not current_index(): it would wait for the lock this run holds, give up and
            # answer from a lagging index. embed_images() brought it current before the
            # run; a writer since then kept it current itself.
            index = self.vault.open_index()
            # Another run may have stored some of these since they were looked up: under the
            # lock, look again, so an image keeps one row and one vector (FORMAT §7.4).
            stored = self.store.known(self.model.digest, images)
            self.report.cached += sum(1 for image in images if image in stored)
            named = [
                i
                for i, image in enumerate(images)
                if image not in stored and index.jobs_with_image(image)
            ]
            if not named:
                return 0
            kept = [images[i] for i in named]
            if vectors is None:
                self.store.add_block(self.model.digest, kept, None)
                return 0
            if not self.noted:  # the model's dims and where its file is, with its first block
                self._note_model()
                self.noted = True
            self.store.add_block(self.model.digest, kept, vectors[named])
            return len(kept)
        finally:
            lock.release()


def _brief_lock(vault: Vault) -> WriteLock:
    """The write lock as a *brief* holder, waited for while a writer (a sync) holds it."""
    while True:
        try:
            return WriteLock(vault.path, brief=True).acquire()
        except VaultLocked:
            time.sleep(PAUSE)


def embed_images(
    vault: Vault,
    model: ImageModel,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
    images: Iterable[str] | None = None,
) -> EmbedReport:
    """Compute the vectors HEAD's images lack under ``model``. The write lock is held only to
    store each block (a run takes hours on a large vault, and a scheduled sync must not be
    refused for it). Resumable: what was stored stays, so a run after a kill looks each image
    up and goes on."""
    # A worker per core: the decode (~50 ms for a 1024 px PNG) is as costly as the model,
    # and with one worker fewer it set the pace (docs/design.md, "Embeddings (optional)").
    workers = workers or max(1, min(4, os.cpu_count() or 2))
    # Brought to HEAD (or rebuilt from an older format) now, before any lock of this run is
    # held: each block's commit reads it under a lock current_index() would wait for.
    vault.current_index()
    # Opening for writing may empty a store sealed under retired keys (or delete a damaged
    # one): a write like any other, so under the lock (FORMAT §7.4). Forget, gc and a key
    # rotation open it holding the lock already.
    lock = _brief_lock(vault)
    try:
        opened = EmbeddingStore.open(vault, writable=True)
    finally:
        lock.release()
    with opened as store:
        check_preprocessing(store, model)
        return _Run(vault, store, model, workers).run(
            head_images(vault) if images is None else images, progress
        )


def check_preprocessing(store: EmbeddingStore, model: ImageModel) -> None:
    """Refuse a run whose input size, mean or std differ from those the model's stored
    vectors were computed with: the two kinds of vector would be compared as one."""
    stored = store.preprocessing(model.digest)
    if stored is not None and stored != model.preprocessing:
        raise UsageError(
            f"{model.path.name}'s vectors were computed with {stored.describe()}, "
            f"not {model.preprocessing.describe()}: drop the options to go on with those"
        )


def stored_preprocessing(vault: Vault, digest: str) -> Preprocessing | None:
    """The preprocessing the model ``digest``'s stored vectors were computed with, if any."""
    if not (vault.path / CACHE_FILE).exists():
        return None
    try:
        with EmbeddingStore.open(vault) as store:
            return store.preprocessing(digest)
    except UsageError:  # damaged or sealed under retired keys: the run starts it again
        return None


def digest_of(store: EmbeddingStore, path: os.PathLike[str] | str) -> str:
    """A model file's digest, from the store when the file is as it was last seen."""
    from pathlib import Path

    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise UsageError(f"cannot read model {file}: {exc.strerror or exc}") from None
    known = store.known_digest(os.fspath(file.resolve()), stat.st_size, stat.st_mtime_ns)
    return known or model_digest(file)
