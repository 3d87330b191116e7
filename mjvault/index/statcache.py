"""The import stat cache: source path -> (size, mtime, ctime, inode, read time, object id).

A re-import trusts a row, and reads nothing of its file, when the file's present stat equals
the row's, the row is not racy (below) and its object is still in the vault. Like git's index
and restic's parent-snapshot check, it trades reading for a ``stat``: a re-import of an
unchanged archive costs a walk, a stat per file and per object, and an LMDB lookup per file.

Racy rows (git's rule). A file changed twice within one tick of its file system's clock keeps
its timestamps; if the import read it between the two changes, its stat would match a row of
the older content. So a row is trusted only if the file's newest timestamp is older than the
moment its file was read by more than the timestamp granularity (:func:`racy`). A racy row is
read again next time, and its new row, read later, is trusted.

The cache lives in the index's LMDB environment (table ``stat``, docs/FORMAT.md §9) and, like
the index, is only a cache: deleting ``index/`` costs one slower re-import.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

import lmdb

from mjvault.errors import MjvaultError
from mjvault.index.db import Index, IndexDamaged, _reason
from mjvault.index.sealed import SEP, IndexSealer

# Window beyond a file's newest timestamp within which a read of it is racy. Nanosecond file
# systems (ext4, XFS, Btrfs, tmpfs) stamp files from the kernel's coarse clock, which lags the
# real clock by up to a jiffy (1-10 ms): 100 ms covers that with room to spare. Timestamps in
# whole seconds mean a file system of 1 s (ext3, HFS+, some NFS) or 2 s (FAT) granularity.
FINE_WINDOW_NS = 100_000_000
COARSE_WINDOW_NS = 2_000_000_000
_SECOND = 1_000_000_000

IMAGE, RECORD = 0, 1
MAX_KEY = 480  # LMDB keys are at most 511 bytes
_HASHED_PREFIX = MAX_KEY - 33  # prefix, a NUL (no path holds one), a 32-byte digest
# Row values (docs/FORMAT.md §9.1): kind, size, mtime, ctime, inode, read time, object id; then
# for records the digest, the image count and the job id's length, the job id, the note.
_HEAD = struct.Struct("<BQqqQq32s")
_RECORD = struct.Struct("<16sIH")


def racy(mtime_ns: int, ctime_ns: int, seen_ns: int) -> bool:
    """True if a file with these timestamps, read at ``seen_ns``, may change unseen."""
    coarse = mtime_ns % _SECOND == 0 or ctime_ns % _SECOND == 0
    window = COARSE_WINDOW_NS if coarse else FINE_WINDOW_NS
    return seen_ns <= max(mtime_ns, ctime_ns) + window


class Row(NamedTuple):
    """One file as an import last read it. Record rows carry what the importer needs to place
    the record without its bytes: the job id, a digest of the bytes (to tell a copy from a
    conflicting record of the same job), why it was malformed, if it was, and how many images
    it lists."""

    kind: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    seen_ns: int
    object_id: str
    job_id: str = ""
    digest: bytes = b""
    malformed: str = ""
    media: int = 0  # how many images the record lists: the job's slots, with the files'

    def pack(self) -> bytes:
        head = _HEAD.pack(
            self.kind,
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.ino,
            self.seen_ns,
            bytes.fromhex(self.object_id),
        )
        if self.kind != RECORD:
            return head
        job_id = self.job_id.encode("utf-8")
        tail = _RECORD.pack(self.digest, self.media, len(job_id))
        return head + tail + job_id + self.malformed.encode("utf-8")

    @classmethod
    def unpack(cls, data: bytes) -> Row | None:
        """None for anything not a row of this layout: a cache is re-read, never trusted."""
        try:
            kind, size, mtime, ctime, ino, seen, oid = _HEAD.unpack_from(data)
            if kind == IMAGE and len(data) == _HEAD.size:
                return cls(kind, size, mtime, ctime, ino, seen, oid.hex())
            if kind != RECORD:
                return None
            digest, media, length = _RECORD.unpack_from(data, _HEAD.size)
            at = _HEAD.size + _RECORD.size
            job_id = data[at : at + length].decode("utf-8")
            malformed = data[at + length :].decode("utf-8")
        except (struct.error, UnicodeDecodeError):
            return None
        if len(job_id.encode("utf-8")) != length:
            return None
        return cls(kind, size, mtime, ctime, ino, seen, oid.hex(), job_id, digest, malformed, media)

    def matches(self, st: os.stat_result) -> bool:
        """The file is, by every stat field we keep, the one read, and was not read racily."""
        return (
            st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
            and st.st_ctime_ns == self.ctime_ns
            and st.st_ino == self.ino
            and not racy(self.mtime_ns, self.ctime_ns, self.seen_ns)
        )

    @classmethod
    def of(
        cls,
        kind: int,
        st: os.stat_result,
        seen_ns: int,
        object_id: str,
        *,
        job_id: str = "",
        digest: bytes = b"",
        malformed: str = "",
        media: int = 0,
    ) -> Row:
        return cls(
            kind,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            seen_ns,
            object_id,
            job_id,
            digest,
            malformed,
            media,
        )


def path_key(path: str | os.PathLike[str]) -> bytes:
    """A file's key: the bytes of its absolute path (see :func:`short_key`)."""
    return short_key(os.fsencode(os.path.abspath(path)))


def short_key(raw: bytes) -> bytes:
    """``raw``, or if too long for an LMDB key its prefix, a NUL (no path holds one) and its
    BLAKE2b-256."""
    if len(raw) <= MAX_KEY:
        return raw
    return raw[:_HASHED_PREFIX] + b"\x00" + hashlib.blake2b(raw, digest_size=32).digest()


class _Rows:
    """How the two tables hold their rows: as they are (a plain vault), or keyed by tokens
    with sealed values (an encrypted vault's index, FORMAT.md §9.2): paths, job ids and
    file dates are then nowhere in the clear."""

    def __init__(self, sealer: IndexSealer | None) -> None:
        self.sealer = sealer

    def key(self, table: bytes, key: bytes) -> bytes:
        return key if self.sealer is None else self.sealer.token(table, key)

    def seal(self, table: bytes, key: bytes, value: bytes) -> bytes:
        """``key``: the stored key (the token)."""
        if self.sealer is None:
            return value
        return self.sealer.seal(value, table + SEP + key)

    def open(self, table: bytes, key: bytes, value: bytes | memoryview) -> bytes | None:
        """None for a value that does not open: a cache is re-read, never trusted."""
        if self.sealer is None:
            return bytes(value)
        try:
            return self.sealer.open(value, table + SEP + key)
        except MjvaultError:
            return None


class StatCache:
    def __init__(self, index: Index) -> None:
        self.index = index
        self._rows = _Rows(index.layout.sealer)

    key = staticmethod(path_key)

    def get(self, path: str | os.PathLike[str]) -> Row | None:
        with self.reader() as lookup:
            return lookup(path_key(path))

    @contextmanager
    def reader(self) -> Iterator[Callable[[bytes], Row | None]]:
        """Lookups by key inside one read transaction (keep it short: an open reader holds
        pages a writer would otherwise reuse)."""
        db = self.index.other_table(b"stat")
        if db is None:  # nothing cached yet
            yield lambda key: None
            return
        with self.index._reading(), self.index.env.begin(db=db) as txn:
            get = txn.get
            rows = self._rows

            def lookup(key: bytes) -> Row | None:
                stored = rows.key(b"stat", key)
                data = get(stored)
                if data is not None:
                    data = rows.open(b"stat", stored, data)
                return Row.unpack(data) if data is not None else None

            yield lookup

    def put_rows(self, rows: Iterable[tuple[bytes, bytes]]) -> None:
        """Write (key, packed row) pairs in one transaction."""
        db = self.index.other_table(b"stat", create=True)
        sealed = []
        for key, value in rows:
            stored = self._rows.key(b"stat", key)
            sealed.append((stored, self._rows.seal(b"stat", stored, value)))
        with self.index.writing(db) as txn:
            for key, value in sorted(sealed):
                txn.put(key, value)

    def session(self, *, rows: bool = True) -> ImportSession:
        return ImportSession(self.index, rows=rows)

    def __len__(self) -> int:
        db = self.index.other_table(b"stat")
        if db is None:
            return 0
        with self.index._reading(), self.index.env.begin() as txn:
            return int(txn.stat(db)["entries"])


# Jobs an import remembers in memory (~0.4 KB each) before it moves them to ``import_jobs``:
# an archive of fewer jobs is re-imported without writing to the index at all.
JOBS_IN_MEMORY = 20_000


class ImportSession:
    """One import's use of the stat cache and of the jobs it has read so far (job id -> digest
    of the record kept and its path), so that neither is held in memory whole.

    New rows wait in memory for one batch, then :meth:`flush` writes them. The jobs stay in a
    dict up to ``JOBS_IN_MEMORY``; past that they move to the ``import_jobs`` table (emptied
    first: a killed run's leftovers), and each later batch's follow them there.

    Reads go through one read transaction, renewed by each flush so that it sees what was
    written; an open reader only keeps the pages of one batch from being reused meanwhile.
    ``rows=False`` neither reads nor writes stat rows (the cache turned off).
    """

    def __init__(self, index: Index, *, rows: bool = True) -> None:
        self.index = index
        self.rows_enabled = rows
        self._rows = _Rows(index.layout.sealer)
        self._stat = index.other_table(b"stat")
        self._jobs: Any = None  # the import_jobs table, once the jobs have moved there
        self._txn: lmdb.Transaction | None = None
        self._new_rows: list[tuple[bytes, bytes]] = []
        self._new_jobs: dict[bytes, bytes] = {}

    def _reader(self) -> lmdb.Transaction:
        if self._txn is None:
            self._txn = self.index.env.begin()
        return self._txn

    def _get(self, db: Any, key: bytes) -> bytes | None:
        try:
            return cast(bytes | None, self._reader().get(key, db=db))
        except lmdb.Error as exc:
            raise IndexDamaged(
                f"the index at {self.index.path} is damaged: {_reason(exc)}"
            ) from None

    def row(self, key: bytes) -> Row | None:
        if not self.rows_enabled or self._stat is None:
            return None
        stored = self._rows.key(b"stat", key)
        data = self._get(self._stat, stored)
        if data is not None:
            data = self._rows.open(b"stat", stored, data)
        return Row.unpack(data) if data is not None else None

    def add_row(self, key: bytes, row: Row) -> None:
        if self.rows_enabled:
            stored = self._rows.key(b"stat", key)
            self._new_rows.append((stored, self._rows.seal(b"stat", stored, row.pack())))

    def first(self, job_id: str) -> tuple[str, bytes] | None:
        """(path, digest) of the record this import kept for ``job_id``, if any yet."""
        jid = self._rows.key(b"import_jobs", job_id.encode("utf-8"))
        data = self._new_jobs.get(jid)
        if data is None and self._jobs is not None:
            data = self._get(self._jobs, jid)
            if data is not None:
                data = self._rows.open(b"import_jobs", jid, data)
        if data is None:
            return None
        return os.fsdecode(data[16:]), data[:16]

    def add_first(self, job_id: str, path: str, digest: bytes) -> None:
        # Sealed (if at all) when moved to the table: in memory it is only this run's.
        jid = self._rows.key(b"import_jobs", job_id.encode("utf-8"))
        self._new_jobs[jid] = digest + os.fsencode(path)

    def flush(self) -> None:
        self.close()
        self.index.release_pages()  # rows read stay in the page cache, out of our RSS
        move_jobs = self._jobs is not None or len(self._new_jobs) >= JOBS_IN_MEMORY
        if not self._new_rows and not move_jobs:
            return
        if self._new_rows and self._stat is None:
            self._stat = self.index.other_table(b"stat", create=True)
        first_move = move_jobs and self._jobs is None
        if first_move:
            self._jobs = self.index.other_table(b"import_jobs", create=True)

        def write(txn: lmdb.Transaction) -> None:
            for key, value in sorted(self._new_rows):
                txn.put(key, value, db=self._stat)
            if first_move:
                txn.drop(self._jobs, delete=False)
            if move_jobs:
                for key, value in sorted(self._new_jobs.items()):
                    txn.put(key, self._rows.seal(b"import_jobs", key, value), db=self._jobs)

        self._write(write)
        self._new_rows.clear()
        if move_jobs:
            self._new_jobs.clear()

    def close(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    def _write(self, work: Callable[[lmdb.Transaction], None]) -> None:
        with self.index.writing() as txn:
            work(txn)
