"""A view's file list: which file it made for each image, looked up by image or by path.

A refresh asks three things of the list, batch by batch: the files of these jobs, who holds
this (case-folded) path, and which images wanted this plain path and got a suffixed one (a
collision group). Held as Python objects the list costs ~2 KB per image for the whole run,
GBs for a million images; so a plain vault keeps it in an SQLite file beside the view's
header (``views/<name>.files``), read and written through a bounded page cache: a checkout's
memory is the same for 10k images as for 1M.

An encrypted vault's list is the same table with its paths sealed and its path keys keyed
(:class:`SealedSqliteTable`): paths are made of prompts, which must not lie in the clear in
the vault directory. :class:`MemoryTable` holds lists that older versions kept inline in the
view file, until the view is next saved.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import blake3

from mjvault.errors import CorruptObject, IntegrityError
from mjvault.views.files import FileRecord, JobFiles
from mjvault.views.links import LinkKind
from mjvault.views.paths import fold

if TYPE_CHECKING:
    from mjvault.store.crypto import VaultKeys

Key = tuple[str, int]
# A file to record, as put_new takes it: job, image, path, oid, kind, plain, size, mtime_ns.
NewRow = tuple[str, int, str, str, str, str | None, int, int]

FILES_SUFFIX = ".files"
# Pages SQLite may keep in memory (KiB when negative): what bounds a checkout's footprint.
CACHE_KIB = 4096
_IN_CHUNK = 500  # bound parameters per IN (...) query; SQLite allows at least 999
_KEYS_KEPT = 4096  # job keys remembered (a few batches' worth), then forgotten
# Path keys asked for and not yet recorded: a checkout records a batch's rows while the next
# batch's names are asked for, so two batches' worth (plus what was asked and never recorded).
_ASKED_KEPT = 16384
# A list that was empty when opened (a first checkout) keeps the path keys of the rows it
# records as bits, 2**25 of them (4 MB), and asks SQLite only about names whose bit is set:
# at 100k rows one name in 300 (a million: one in 30), and every other question is answered
# without a query.
_RECORDED_BITS = 1 << 25
_BIT_MASK = _RECORDED_BITS - 1
_KINDS = {kind.value: kind for kind in LinkKind}
TABLE_VERSION = 1
SEALED_TABLE_VERSION = 2  # an encrypted vault's list: job ids sealed too
# jk: job_key(job); fh / ph: path_key of the folded path / plain path (None when no plain).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    jk INTEGER NOT NULL, job TEXT NOT NULL, idx INTEGER NOT NULL, path TEXT NOT NULL,
    oid TEXT NOT NULL, kind TEXT NOT NULL, plain TEXT, size INTEGER NOT NULL,
    mtime INTEGER NOT NULL, fh INTEGER NOT NULL, ph INTEGER
);
CREATE INDEX IF NOT EXISTS files_job ON files (jk);
CREATE INDEX IF NOT EXISTS files_path ON files (fh);
CREATE INDEX IF NOT EXISTS files_plain ON files (ph) WHERE ph IS NOT NULL;
"""
_SEEN = "CREATE TEMP TABLE IF NOT EXISTS seen (jk INTEGER, job TEXT, PRIMARY KEY (jk, job))"
_COLUMNS = "job, idx, path, oid, kind, plain, size, mtime"


class FileTable(Protocol):
    """What a refresh needs of a view's file list (both stores behave alike)."""

    def of_jobs(self, job_ids: Iterable[str]) -> JobFiles: ...
    def get(self, key: Key) -> FileRecord | None: ...
    def put(self, key: Key, record: FileRecord) -> None: ...
    def put_many(self, rows: list[tuple[Key, FileRecord]], *, new: bool = False) -> None: ...
    def put_new(self, rows: list[NewRow]) -> None: ...
    def delete(self, key: Key) -> None: ...
    def holder(self, folded: str) -> Key | None: ...
    def wanting(self, folded: str) -> set[Key]: ...
    def taken(self, folded: Iterable[str]) -> set[str]: ...
    def job_ids(self) -> list[str]: ...
    def mark_seen(self, job_ids: Iterable[str]) -> None: ...
    def unseen_jobs(self, extra: Iterable[str] = ()) -> list[str]: ...
    def iter_files(self) -> Iterator[tuple[str, int, FileRecord]]: ...
    def count(self) -> int: ...
    def empty(self) -> bool: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


def _folded(record: FileRecord) -> str:
    path = record.path
    return path.lower() if path.isascii() else fold(path)


class MemoryTable:
    """The list as dictionaries (an encrypted vault's views, and views of older versions)."""

    def __init__(self, files: JobFiles | None = None) -> None:
        self.files: JobFiles = files if files is not None else {}
        self.used: dict[str, Key] = {}
        self.suffixed: dict[str, set[Key]] = defaultdict(set)
        self.seen: set[str] = set()
        for job_id, images in self.files.items():
            for index, record in images.items():
                self._claim((job_id, index), record)

    def _claim(self, key: Key, record: FileRecord) -> None:
        self.used[_folded(record)] = key
        if record.plain is not None:
            self.suffixed[fold(record.plain)].add(key)

    def _release(self, key: Key, record: FileRecord) -> None:
        folded = _folded(record)
        if self.used.get(folded) == key:
            del self.used[folded]
        if record.plain is not None:
            group = fold(record.plain)
            members = self.suffixed.get(group)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.suffixed[group]

    def of_jobs(self, job_ids: Iterable[str]) -> JobFiles:
        files = self.files
        return {j: dict(files[j]) for j in job_ids if j in files}

    def get(self, key: Key) -> FileRecord | None:
        return self.files.get(key[0], {}).get(key[1])

    def put(self, key: Key, record: FileRecord) -> None:
        old = self.get(key)
        if old is not None:
            self._release(key, old)
        self.files.setdefault(key[0], {})[key[1]] = record
        self._claim(key, record)

    def put_many(self, rows: list[tuple[Key, FileRecord]], *, new: bool = False) -> None:
        for key, record in rows:
            self.put(key, record)

    def put_new(self, rows: list[NewRow]) -> None:
        for job, idx, path, oid, kind, plain, size, mtime in rows:
            self.put((job, idx), FileRecord(path, oid, _KINDS[kind], plain, size, mtime))

    def delete(self, key: Key) -> None:
        images = self.files.get(key[0])
        if images is None or key[1] not in images:
            return
        self._release(key, images.pop(key[1]))
        if not images:
            del self.files[key[0]]

    def holder(self, folded: str) -> Key | None:
        return self.used.get(folded)

    def wanting(self, folded: str) -> set[Key]:
        return set(self.suffixed.get(folded, ()))

    def taken(self, folded: Iterable[str]) -> set[str]:
        used, suffixed = self.used, self.suffixed
        return {f for f in folded if f in used or f in suffixed}

    def job_ids(self) -> list[str]:
        return list(self.files)

    def mark_seen(self, job_ids: Iterable[str]) -> None:
        self.seen.update(job_ids)

    def unseen_jobs(self, extra: Iterable[str] = ()) -> list[str]:
        """Jobs with files (or in ``extra``) that :meth:`mark_seen` did not name."""
        found = dict.fromkeys(j for j in [*self.files, *extra] if j not in self.seen)
        self.seen.clear()
        return list(found)

    def iter_files(self) -> Iterator[tuple[str, int, FileRecord]]:
        for job_id, images in list(self.files.items()):
            for index, record in list(images.items()):
                yield job_id, index, record

    def count(self) -> int:
        return sum(len(images) for images in self.files.values())

    def empty(self) -> bool:
        return not self.files

    def commit(self) -> None:
        pass  # saved with the view's header

    def close(self) -> None:
        pass


def _record(row: tuple[Any, ...]) -> tuple[str, int, FileRecord]:
    job, idx, path, oid, kind, plain, size, mtime = row
    try:
        link = _KINDS[kind]
    except KeyError:
        raise IntegrityError(f"unknown link kind {kind!r} in a view's file list") from None
    return job, idx, FileRecord(path, oid, link, plain, size, mtime)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def job_key(job_id: str) -> int:
    """A job's place in tree order (the tree's own key, 63 bits): a full pass, which walks
    the tree, then appends to the table's job index instead of inserting all over it."""
    return int.from_bytes(blake3.blake3(job_id.encode("utf-8")).digest(8)) >> 1


def path_key(folded: str) -> int:
    """A folded path as 63 bits: an index of small integers stays in the page cache where one
    of paths would not. Two checksums, not a hash function: this runs twice per image, and
    equal keys are always confirmed against the path itself."""
    data = folded.encode("utf-8")
    return (zlib.crc32(data) << 31) ^ zlib.adler32(data)


class SqliteTable:
    """The list in an SQLite file: one row per file, indexed by job and by folded path.

    The first change opens a transaction and :meth:`commit` ends it (a refresh commits
    whenever it saves its header, so a killed run loses at most what it did since); reads
    outside one hold no lock, so an idle connection never blocks another process's writes.
    """

    sealed = False  # paths stored as they are (SealedSqliteTable seals them)
    table_version = TABLE_VERSION  # what this class writes (PRAGMA user_version)

    def __init__(self, path: Path, *, fresh: bool = False, create: bool = True) -> None:
        """``create=False``: the list of a saved view, which must be there as it was written.

        SQLite takes a missing or empty file for a new database; a loaded view's list read
        that way would seem to show nothing, and gc would delete the objects its links point
        at. So it is opened without creating, and a file of no known format is damage, left
        exactly as it was found.
        """
        self.path = path
        self._job_keys: dict[str, int] = {}
        self._asked: dict[str, int] = {}
        if fresh:
            remove_table(path)
        try:
            if create:
                self.db = sqlite3.connect(
                    os.fspath(path), isolation_level=None, check_same_thread=False
                )
            else:
                self.db = sqlite3.connect(
                    f"{path.absolute().as_uri()}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            # A view is derived data a checkout rebuilds: a rollback journal survives a killed
            # process whatever this says; only a power cut could cost the list (then rebuilt).
            self.db.execute("PRAGMA synchronous = OFF")
            self.db.execute("PRAGMA temp_store = FILE")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, TABLE_VERSION, self.table_version):
                raise sqlite3.DatabaseError(f"format {version} is not supported")
            if not create:
                if version == 0:
                    raise sqlite3.DatabaseError("it is empty or was never written whole")
                if not self.db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
                ).fetchone():
                    raise sqlite3.DatabaseError("it has no table of files")
            self.db.executescript(_SCHEMA)
            if version != self.table_version:
                self._upgrade(version)
                self.db.execute(f"PRAGMA user_version = {int(self.table_version)}")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(AttributeError):
                self.db.close()
            raise IntegrityError(f"view file list {path} is damaged: {exc}") from None
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        self._recorded: bytearray | None = None  # made at the first row, when still valid
        self._all_recorded_here = self.empty()

    # -- what a sealed table changes ------------------------------------------------------------
    def _upgrade(self, found: int) -> None:
        """Bring a list of format ``found`` (0: new) to :attr:`table_version`."""

    def _path_key(self, folded: str) -> int:
        return path_key(folded)

    def _job_cell(self, job: str) -> Any:
        """What the ``job`` column holds for ``job`` (equal jobs, equal cells)."""
        return job

    def _job_of(self, cell: Any) -> str:
        return str(cell)

    def _new_job_key(self, job_id: str) -> int:
        return job_key(job_id)

    def _stored(self, text: str, column: bytes, job: str, idx: int) -> Any:
        return text

    def _text(self, value: Any, column: bytes, job: str, idx: int) -> str:
        return str(value)

    def _record(self, row: tuple[Any, ...]) -> tuple[str, int, FileRecord]:
        job, idx, path, oid, kind, plain, size, mtime = row
        job = self._job_of(job)
        path = self._text(path, b"path", job, idx)
        if plain is not None:
            plain = self._text(plain, b"plain", job, idx)
        return _record((job, idx, path, oid, kind, plain, size, mtime))

    def _rows(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"view file list {self.path} is damaged: {exc}") from None

    def _begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")

    def of_jobs(self, job_ids: Iterable[str]) -> JobFiles:
        wanted = set(job_ids)
        out: JobFiles = {}
        for chunk in _chunks([self._job_key(j) for j in wanted]):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(f"SELECT {_COLUMNS} FROM files WHERE jk IN ({marks})", chunk):
                job, idx, record = self._record(row)
                if job in wanted:
                    out.setdefault(job, {})[idx] = record
        return out

    def get(self, key: Key) -> FileRecord | None:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM files WHERE jk = ? AND job = ? AND idx = ?",
            (self._job_key(key[0]), self._job_cell(key[0]), key[1]),
        )
        return self._record(rows[0])[2] if rows else None

    def put(self, key: Key, record: FileRecord) -> None:
        self.put_many([(key, record)])

    def put_many(self, rows: list[tuple[Key, FileRecord]], *, new: bool = False) -> None:
        """Record files; ``new``: the caller knows none of these images has a row yet."""
        self._begin()
        if not new:
            job_key_of, cell_of = self._job_key, self._job_cell
            self.db.executemany(
                "DELETE FROM files WHERE jk = ? AND job = ? AND idx = ?",
                [(job_key_of(job), cell_of(job), idx) for (job, idx), _ in rows],
            )
        self._insert([(*key, *record) for key, record in rows])

    def put_new(self, rows: list[NewRow]) -> None:
        """Record files of images the list does not hold yet (a checkout's new files, a batch
        at a time): rows in :data:`NewRow`'s shape, no record object per file."""
        self._begin()
        self._insert(rows)

    def _insert(self, rows: Iterable[NewRow]) -> None:
        # One row tuple per file, built inline: this runs once per image of a checkout.
        job_key_of = self._job_key
        asked = self._asked
        key_of = self._path_key
        cells: list[tuple[Any, ...]] = []
        append = cells.append
        sealed = self.sealed
        bits = self._recorded
        if bits is None and self._all_recorded_here:
            bits = self._recorded = bytearray(_RECORDED_BITS // 8)
        last_job: str | None = None
        jk = 0
        # A symlink with the name it wanted (no plain, no size): most rows of a checkout.
        # A batch of only those binds the six columns that differ, the rest are constants.
        rows = rows if isinstance(rows, list) else list(rows)
        narrow: str | None = None
        if rows and not sealed:
            first = str.__str__(rows[0][4])
            if first in _KINDS:
                narrow = first
        if narrow is not None:
            for job, idx, path, oid, kind, plain, size, mtime in rows:
                if plain is not None or size or mtime or kind != narrow:
                    narrow = None  # a row of its own: the batch binds every column
                    cells.clear()
                    last_job = None
                    break
                if job != last_job:  # rows come job by job
                    last_job, jk = job, job_key_of(job)
                folded = path.lower() if path.isascii() else fold(path)
                fh = asked.pop(folded, None)
                if fh is None:
                    fh = key_of(folded)
                if bits is not None:
                    at = (fh ^ (fh >> 29)) & _BIT_MASK  # _bit(fh), inline
                    bits[at >> 3] |= 1 << (at & 7)
                append((jk, job, idx, path, oid, fh))
        if narrow is not None:
            # The kind is one of LinkKind's values (checked above): safe as SQL text.
            self.db.executemany(
                f"INSERT INTO files VALUES (?, ?, ?, ?, ?, '{narrow}', NULL, 0, 0, ?, NULL)",
                cells,
            )
            return
        cell: Any = None
        for job, idx, path, oid, kind, plain, size, mtime in rows:
            if job != last_job:  # rows come job by job
                last_job, jk = job, job_key_of(job)
                cell = self._job_cell(job)
            folded = path.lower() if path.isascii() else fold(path)
            fh = asked.pop(folded, None)
            if fh is None:
                fh = key_of(folded)
            if bits is not None:
                at = (fh ^ (fh >> 29)) & _BIT_MASK  # _bit(fh), inline
                bits[at >> 3] |= 1 << (at & 7)
            if plain is None:
                ph = None
            else:
                ph = key_of(fold(plain))
                if bits is not None:
                    at = _bit(ph)
                    bits[at >> 3] |= 1 << (at & 7)
                if sealed:
                    plain = self._stored(plain, b"plain", job, idx)
            if sealed:
                path = self._stored(path, b"path", job, idx)
            append((jk, cell, idx, path, oid, str.__str__(kind), plain, size, mtime, fh, ph))
        self.db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cells)

    def _maybe_recorded(self, key: int) -> bool:
        """False when no row holds ``key`` (exact); True when one may (ask SQLite)."""
        if not self._all_recorded_here:
            return True
        bits = self._recorded
        if bits is None:
            return False
        at = _bit(key)
        return bool(bits[at >> 3] & (1 << (at & 7)))

    def _job_key(self, job_id: str) -> int:
        """:func:`job_key`, remembered for the jobs of the last few batches (a batch asks for
        each job's key three times: seen, its files, its new rows)."""
        known = self._job_keys.get(job_id)
        if known is None:
            if len(self._job_keys) >= _KEYS_KEPT:
                self._job_keys.clear()
            known = self._job_keys[job_id] = self._new_job_key(job_id)
        return known

    def delete(self, key: Key) -> None:
        self._begin()
        self.db.execute(
            "DELETE FROM files WHERE jk = ? AND job = ? AND idx = ?",
            (self._job_key(key[0]), self._job_cell(key[0]), key[1]),
        )

    def holder(self, folded: str) -> Key | None:
        key = self._path_key(folded)
        if not self._maybe_recorded(key):
            return None
        for cell, idx, path in self._rows("SELECT job, idx, path FROM files WHERE fh = ?", (key,)):
            job = self._job_of(cell)
            if fold(self._text(path, b"path", job, idx)) == folded:
                return job, int(idx)
        return None

    def wanting(self, folded: str) -> set[Key]:
        key = self._path_key(folded)
        if not self._maybe_recorded(key):
            return set()
        rows = self._rows("SELECT job, idx, plain FROM files WHERE ph = ?", (key,))
        found = set()
        for cell, idx, plain in rows:
            job = self._job_of(cell)
            if fold(self._text(plain, b"plain", job, idx)) == folded:
                found.add((job, int(idx)))
        return found

    def taken(self, folded: Iterable[str]) -> set[str]:
        """Those of ``folded`` some file holds or wanted (a rare false positive is possible:
        callers confirm with :meth:`holder` and :meth:`wanting`)."""
        key_of = self._path_key
        # Kept for the put_many that records these paths: a checkout asks for each image's
        # path key once.
        asked = self._asked
        if len(asked) > _ASKED_KEPT:
            asked.clear()
        by_key: dict[int, str] = {}
        if self._all_recorded_here:
            # Only the names whose bit is set can be held: the others need no query (nor a
            # place in by_key).
            bits = self._recorded
            for f in folded:
                key = asked.get(f)
                if key is None:
                    key = asked[f] = key_of(f)
                if bits is not None:
                    at = (key ^ (key >> 29)) & _BIT_MASK  # _bit(key), inline
                    if bits[at >> 3] & (1 << (at & 7)):
                        by_key[key] = f
        else:
            for f in folded:
                key = asked.get(f)
                if key is None:
                    key = asked[f] = key_of(f)
                by_key[key] = f
        found: set[str] = set()
        for chunk in _chunks(list(by_key)):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT fh FROM files WHERE fh IN ({marks}) "
                f"UNION SELECT ph FROM files WHERE ph IN ({marks})"
            )
            found.update(by_key[row[0]] for row in self._rows(sql, chunk + chunk))
        return found

    def job_ids(self) -> list[str]:
        return [self._job_of(row[0]) for row in self._rows("SELECT DISTINCT job FROM files")]

    def mark_seen(self, job_ids: Iterable[str]) -> None:
        # A temporary table (on disk, not in memory): a full pass's jobs, for unseen_jobs.
        self._begin()
        self.db.execute(_SEEN)
        self.db.executemany(
            "INSERT OR IGNORE INTO seen VALUES (?, ?)",
            ((self._job_key(j), self._job_cell(j)) for j in job_ids),
        )

    def unseen_jobs(self, extra: Iterable[str] = ()) -> list[str]:
        self.db.execute(_SEEN)
        rows = self._rows(
            "SELECT DISTINCT job FROM files f WHERE NOT EXISTS "
            "(SELECT 1 FROM seen s WHERE s.jk = f.jk AND s.job = f.job)"
        )
        found = dict.fromkeys(self._job_of(row[0]) for row in rows)
        for job_id in extra:
            if not self._rows(
                "SELECT 1 FROM seen WHERE jk = ? AND job = ?",
                (self._job_key(job_id), self._job_cell(job_id)),
            ):
                found[job_id] = None
        self.db.execute("DELETE FROM seen")
        return list(found)

    def iter_files(self) -> Iterator[tuple[str, int, FileRecord]]:
        # A cursor of its own, read in pages: the list is never held whole.
        cursor = self.db.execute(f"SELECT {_COLUMNS} FROM files")
        while True:
            try:
                rows = cursor.fetchmany(1000)
            except sqlite3.DatabaseError as exc:
                raise IntegrityError(f"view file list {self.path} is damaged: {exc}") from None
            if not rows:
                return
            for row in rows:
                yield self._record(row)

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM files")[0][0])

    def empty(self) -> bool:
        return not self._rows("SELECT 1 FROM files LIMIT 1")

    def commit(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise OSError(f"cannot save {self.path}: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")  # what was not committed was not saved
        self.db.close()


class SealedSqliteTable(SqliteTable):
    """An encrypted vault's list: the same rows, with ``path`` and ``plain`` sealed (AES-GCM,
    bound to their job, image and column), ``job`` sealed deterministically (equal jobs, equal
    cells, so SQL still matches a job by equality) and ``jk``/``fh``/``ph`` keyed checksums, so
    the file shows no prompt and no job id, and lookups still use the indexes.

    Version 2; a version 1 list (job ids and job keys in the clear) is rewritten when opened.
    """

    sealed = True
    table_version = SEALED_TABLE_VERSION

    def __init__(
        self, path: Path, keys: VaultKeys, *, fresh: bool = False, create: bool = True
    ) -> None:
        self.keys = keys
        # A job's cell and a cell's job, for the last few batches' jobs: rows come job by
        # job, several images each, and each seal or open is an AES-GCM call.
        self._cells: dict[str, bytes] = {}
        self._opened: dict[bytes, str] = {}
        super().__init__(path, fresh=fresh, create=create)
        self._match_cells()

    def _path_key(self, folded: str) -> int:
        return self.keys.text_key(folded)

    def _job_cell(self, job: str) -> Any:
        cell = self._cells.get(job)
        if cell is None:
            if len(self._cells) >= _KEYS_KEPT:
                self._cells.clear()
            cell = self._cells[job] = self.keys.seal_text_fixed(job, _JOB_CONTEXT)
        return cell

    def _job_of(self, cell: Any) -> str:
        job = self._opened.get(cell)
        if job is not None:
            return job
        if not isinstance(cell, bytes):
            raise IntegrityError(f"view file list {self.path} holds an unsealed job id")
        try:
            job = self.keys.open_text(cell, _JOB_CONTEXT)
        except CorruptObject:
            raise IntegrityError(
                f"view file list {self.path} is damaged: a job id does not open"
            ) from None
        if len(self._opened) >= _KEYS_KEPT:
            self._opened.clear()
        self._opened[cell] = job
        return job

    def _new_job_key(self, job_id: str) -> int:
        return self.keys.text_key(JOB_KEY_PREFIX + job_id)

    def _match_cells(self) -> None:
        """Every ``job`` cell sealed under the current text key, before any lookup.

        A key rotation replaces the text key, and rows are matched by cell: a cell sealed
        under the retired key would never equal its job's new cell, so a delete or a get
        would silently miss it (and a checkout would add a second row beside it). The list
        keeps a check of the key its cells are under; opened during a rotation with another
        (or none: written before the check was kept), every cell is sealed again first, in
        one transaction, and rows that then repeat an image (left by versions that missed
        them) are dropped but the newest. Outside a rotation a list without the check is
        taken as it is: its cells are under the only key there is.
        """
        check = self.keys.seal_text_fixed("", _CELLS_CONTEXT)
        try:
            self.db.execute(_META)
            if self._cells_check() == check:
                return
            if self._cells_check() is None and not self.keys.rotating:
                return
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            # Busy (another process is writing it): reads open under either key; the
            # process that writes next seals the cells again.
            return
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"view file list {self.path} is damaged: {exc}") from None
        try:
            if self._cells_check() != check:  # asked again under the write lock
                self._reseal_cells()
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('job cells', ?)", (check,))
            self.db.execute("COMMIT")
        except BaseException as exc:
            self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise IntegrityError(f"view file list {self.path} is damaged: {exc}") from None
            raise

    def _cells_check(self) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = 'job cells'").fetchone()
        return None if row is None else bytes(row[0])

    def _reseal_cells(self) -> None:
        last = 0
        while rows := self.db.execute(
            "SELECT rowid, job FROM files WHERE rowid > ? ORDER BY rowid LIMIT 4096", (last,)
        ).fetchall():
            last = rows[-1][0]
            changed = []
            for rowid, cell in rows:
                fresh = self._job_cell(self._job_of(cell))
                if fresh != cell:
                    changed.append((fresh, rowid))
            self.db.executemany("UPDATE files SET job = ? WHERE rowid = ?", changed)
        self.db.execute(
            "DELETE FROM files WHERE rowid NOT IN "
            "(SELECT max(rowid) FROM files GROUP BY jk, job, idx)"
        )

    def _upgrade(self, found: int) -> None:
        if found != TABLE_VERSION:
            return  # a new list
        # Version 1 kept job ids and their unkeyed keys in the clear: seal them, then rebuild
        # the file, so no freed page keeps an old id. The paths' seals stay valid (bound to
        # the job id itself, not to its cell).
        self.db.execute("BEGIN IMMEDIATE")
        # Asked again under the write lock: another process may have upgraded it meanwhile.
        if self.db.execute("PRAGMA user_version").fetchone()[0] != TABLE_VERSION:
            self.db.execute("ROLLBACK")
            return
        rows = self.db.execute("SELECT rowid, job FROM files WHERE typeof(job) = 'text'")
        self.db.executemany(
            "UPDATE files SET jk = ?, job = ? WHERE rowid = ?",
            [
                (self._new_job_key(job), self._job_cell(job), rowid)
                for rowid, job in rows.fetchall()
            ],
        )
        self.db.execute(f"PRAGMA user_version = {int(self.table_version)}")
        self.db.execute("COMMIT")
        # A reader in another process can make it busy: the ids are sealed already, and only
        # freed pages keep old ones until the file is next rebuilt.
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.execute("VACUUM")

    def _stored(self, text: str, column: bytes, job: str, idx: int) -> Any:
        return self.keys.seal_text(text, _context(column, job, idx))

    def _text(self, value: Any, column: bytes, job: str, idx: int) -> str:
        if not isinstance(value, bytes):
            raise IntegrityError(f"view file list {self.path} holds an unsealed path")
        try:
            return self.keys.open_text(value, _context(column, job, idx))
        except CorruptObject:
            raise IntegrityError(
                f"view file list {self.path} is damaged: a path does not open"
            ) from None


def _bit(key: int) -> int:
    """A path key's bit: its high half folded onto its low (a plain key's low bits are an
    Adler-32's, which similar names share)."""
    return (key ^ (key >> 29)) & _BIT_MASK


_JOB_CONTEXT = b"mjvault view file\0job"
# The check of the key a sealed list's job cells are under: the empty text sealed
# deterministically with this context (equal keys, equal checks; nothing else learnt).
_CELLS_CONTEXT = b"mjvault view file\0cells"
_META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
JOB_KEY_PREFIX = "job\0"  # a job's key in a sealed list: text_key of this and the job id


def _context(column: bytes, job: str, idx: int) -> bytes:
    return b"mjvault view file\0%s\0%s\0%d" % (column, job.encode("utf-8"), idx)


def remove_table(path: Path) -> None:
    for name in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
