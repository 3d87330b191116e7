"""LMDB tables that map jobs, words, dates, types, parameters and images (docs/FORMAT.md, "Index").

The index is a cache of one tree (``meta/tree``): everything in it can be recomputed from the
objects, so a missing, stale or damaged index is rebuilt, never trusted over the snapshots.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import lmdb
import msgpack

from mjvault.errors import IntegrityError, MjvaultError
from mjvault.model import Job
from mjvault.params import param_index_value
from mjvault.text import fold, tokenize
from mjvault.tree import JobEntry

# 2: the words table also holds each word's accent-folded form (mjvault.text.fold), and the
#    counts and times tables exist.
# 3: each job summary holds its images' media kinds ("k"), so a checkout reads no image.
# 4: a job summary's object ids are 32 bytes, not 64 hex characters (~130 bytes a job).
INDEX_FORMAT = b"4"
MAP_SIZE = 1 << 36  # address space only: LMDB files are sparse and grow as needed
SEP = b"\x00"
MAX_KEY_PART = 200  # LMDB keys are at most 511 bytes
NEW_ENV_ROOM = 256 << 10  # free bytes a new environment needs: its lock file and first pages
RELEASE_EVERY = 16  # lookups between two releases of the map's resident pages
WALK_RELEASE_EVERY = 1024  # keys of an in-order walk between two releases (a few MB mapped)
# Keys one write transaction of Index.apply sets or deletes before it commits and the next
# begins: each may dirty a 4 KiB page of its own (and its branch pages) in a large index,
# and LMDB keeps the most pages any transaction dirtied for the rest of the run. At 1,024
# that was ~12 MB of a writer's peak at 60k jobs, and growing with the index; 512 keeps it
# under 4 MB for ~7% more CPU in the index's updates (more commits).
POSTINGS_PER_TXN = 512


@dataclass(frozen=True)
class JobSummary:
    """What the index keeps per job: enough to list and filter without reading objects."""

    job_id: str
    record: str
    images: tuple[str | None, ...]
    time: datetime | None
    type: str
    prompt: str
    params: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    # Per image: its type ("png", "jpg", …) when the object's file is that image itself (a
    # view may link to it), None when it is stored framed or sealed (only decoding shows it)
    # or absent. None for the whole tuple: not looked up yet (filled in by Index.apply).
    kinds: tuple[str | None, ...] | None = None

    def pack(self) -> bytes:
        micros = int(self.time.timestamp() * 1_000_000) if self.time else None
        return msgpack.packb(
            {
                "r": bytes.fromhex(self.record),
                "i": [bytes.fromhex(i) if i is not None else None for i in self.images],
                "ts": micros,
                "ty": self.type,
                "p": self.prompt,
                "pa": self.params,
                "u": self.username,
                "k": list(self.kinds) if self.kinds is not None else None,
            }
        )

    @classmethod
    def unpack(cls, job_id: str, data: bytes) -> JobSummary:
        doc = msgpack.unpackb(data)
        micros = doc.get("ts")
        moment = datetime.fromtimestamp(micros / 1_000_000, UTC) if micros is not None else None
        return cls(
            job_id=job_id,
            record=doc["r"].hex(),
            images=_hex_ids(doc["i"]),
            time=moment,
            type=doc["ty"],
            prompt=doc["p"],
            params=dict(doc.get("pa") or {}),
            username=doc.get("u"),
            kinds=tuple(doc["k"]) if doc.get("k") is not None else None,
        )

    @classmethod
    def of(cls, entry: JobEntry, job: Job) -> JobSummary:
        return cls(
            job_id=entry.job_id,
            record=entry.record,
            images=entry.images,
            time=job.enqueue_time,
            type=job.type,
            prompt=job.prompt,
            params={k: param_index_value(v) for k, v in job.params.items()},
            username=job.username,
        )

    def postings(self) -> Iterator[tuple[bytes, bytes]]:
        """(table, key) pairs this job contributes to the secondary tables."""
        jid = self.job_id.encode("utf-8")
        words = set(tokenize(self.prompt))
        for word in sorted(words | {fold(w) for w in words}):
            yield b"words", _part(word) + SEP + jid
        yield b"dates", _date_key(self.time) + jid
        yield b"types", _part(self.type) + SEP + jid
        for name, value in self.params.items():
            yield b"params", _part(f"{name}={value}") + SEP + jid
        for image in self.images:
            if image is not None:
                yield b"images", bytes.fromhex(image) + jid


def _hex_ids(ids: list[bytes | None]) -> tuple[str | None, ...]:
    return tuple([i.hex() if i is not None else None for i in ids])  # a list: no generator


def _part(text: str) -> bytes:
    raw = text.encode("utf-8")[:MAX_KEY_PART]
    return raw.replace(SEP, b" ")


def _count_key(table: bytes, posting: bytes) -> bytes:
    """``table 00 part``: the counts table's key for the list a posting key belongs to."""
    return table + SEP + posting[: posting.index(SEP)]


def _date_key(moment: datetime | None) -> bytes:
    micros = int(moment.timestamp() * 1_000_000) if moment else 0
    return struct.pack(">q", micros)


TABLES = (
    b"meta",
    b"jobs",
    b"words",
    b"dates",
    b"types",
    b"params",
    b"images",
    b"counts",
    b"times",
)
# Tables that are no cache of the tree, so clear() and the tree's format leave them alone: the
# import stat cache and the running import's jobs (mjvault/index/statcache.py). Created by
# their first writer, not before.
OTHER_TABLES = (b"stat", b"import_jobs")
# Posting tables whose lists search wants the length of before reading any of them.
COUNTED = (b"words", b"types", b"params")


REBUILD_HINT = "the index is only a cache of the snapshots: rebuild it with `mjvault index rebuild`"


class IndexNotOfTree(MjvaultError):
    """The index is not (or no longer) the index of the tree a reader asked for."""


class IndexDamaged(IntegrityError):
    """The LMDB files are not a valid environment: safe to discard, it is only a cache."""

    def __init__(self, message: str, *, hint: str | None = REBUILD_HINT) -> None:
        super().__init__(message, hint=hint)


_DAMAGE = (
    lmdb.InvalidError,
    lmdb.CorruptedError,
    lmdb.VersionMismatchError,
    lmdb.PageNotFoundError,
    lmdb.PanicError,
    lmdb.IncompatibleError,
    lmdb.BadChecksumError,
)


# Failures of the surroundings (permissions, a read-only disk, a busy reader table), not of the
# index's files: deleting the index would not help, and may not be ours to do.
_ENVIRONMENT = (lmdb.ReadonlyError, lmdb.LockError, lmdb.ReadersFullError, lmdb.TlsFullError)


def _reason(exc: lmdb.Error) -> str:
    """LMDB's words without the path it repeats ("/x/index: Cannot allocate memory")."""
    return str(exc).rsplit(": ", 1)[-1].strip() or type(exc).__name__


def _disk_full(path: Path) -> OSError:
    """LMDB's ENOSPC names no file; the CLI shows an OSError as "<reason>: <path>"."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def _check_room_for_new_environment(path: Path) -> None:
    """Refuse to create an environment on a (nearly) full disk, with the usual message.

    LMDB creates ``lock.mdb`` sparse and writes to it through a shared mapping: on a disk
    with no room for those pages the kernel kills the process (SIGBUS) instead of failing
    the write. An existing environment's lock pages are already allocated.
    """
    if (path / "lock.mdb").exists():
        return
    stat = os.statvfs(path)
    if stat.f_bavail * stat.f_frsize < NEW_ENV_ROOM:
        raise _disk_full(path)


class _MappedPages:
    """Lets go of the pages of an index file that this process has mapped in.

    LMDB reads through a shared, read-only map of ``data.mdb``. Every page a lookup touches
    stays in this process's resident set (with the kernel's fault-around, its neighbours too)
    until the map is closed: a sync that looks up each job, or a search that walks the dates
    table, ends up with the whole file resident, so its peak RSS grows with the archive (about
    4 KB per job). The pages are the kernel's page cache, not ours: MADV_DONTNEED drops them
    from this process's page tables and the next access maps the cached page in again, with
    the same bytes. It is safe at any moment, even inside a read transaction on another thread,
    because the map is shared and file-backed (nothing is discarded). Linux only: elsewhere
    this does nothing.
    """

    def __init__(self, data_file: Path) -> None:
        self._file = os.path.realpath(data_file)
        self._lookups = 0
        self._range: tuple[int, int] | None = None
        self._madvise: Any = None
        if sys.platform.startswith("linux") and hasattr(mmap, "MADV_DONTNEED"):
            with _suppress_os():
                libc = ctypes.CDLL(None, use_errno=True)
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                self._madvise = libc.madvise

    def close(self) -> None:
        """The environment may be closed and its address reused: never advise it again."""
        self._madvise = None

    def touched(self, count: int = 1) -> None:
        """Count lookups; every RELEASE_EVERY of them, release the map's pages."""
        self._lookups += count
        if self._lookups >= RELEASE_EVERY:
            self.release()

    def release(self) -> None:
        self._lookups = 0
        if self._madvise is None:
            return
        if self._range is None:
            self._range = self._find_range()
        if self._range is not None:
            # Only as far as the file goes: the map reserves 64 GiB of address space, and
            # walking its empty page tables made each release cost ~0.5 ms.
            try:
                used = -(-os.path.getsize(self._file) // mmap.PAGESIZE) * mmap.PAGESIZE
            except OSError:
                used = self._range[1]
            self._madvise(self._range[0], min(self._range[1], used), mmap.MADV_DONTNEED)

    def _find_range(self) -> tuple[int, int] | None:
        """Where LMDB mapped the file. It stays there while the environment is open (the map
        size never changes), and an Index keeps its environment open until it is closed."""
        with _suppress_os(), open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(None, 5)
                # Read-only and shared (LMDB's map without MDB_WRITEMAP), never a writable one.
                if (
                    len(fields) == 6
                    and fields[1] == "r--s"
                    and fields[5].rstrip("\n") == self._file
                ):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    return start, end - start
        return None


def _suppress_os() -> contextlib.suppress:
    # Releasing pages is an economy: whatever stops it (no /proc, no libc) leaves the index
    # working as before.
    return contextlib.suppress(OSError, AttributeError, ValueError)


# LMDB allows one environment per file per process; vaults opened twice share it.
_OPEN_ENVS: dict[str, tuple[lmdb.Environment, dict[bytes, Any], int]] = {}
_ENVS_LOCK = threading.Lock()


def share_environment(
    path: Path,
    what: str,
    max_dbs: int,
    open_tables: Callable[[lmdb.Environment], dict[bytes, Any]],
) -> tuple[str, lmdb.Environment, dict[bytes, Any]]:
    """The process's one environment at ``path`` (opened, with ``open_tables``, by its first
    user), and the key that :func:`unshare_environment` takes. ``what`` names it in errors
    ("the index", "the pack map"): LMDB's failures become one line that says whether
    deleting the cache would help."""
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        shared = _OPEN_ENVS.get(key)
        if shared is None:
            _check_room_for_new_environment(path)
            try:
                env = lmdb.open(
                    str(path),
                    map_size=MAP_SIZE,
                    max_dbs=max_dbs,
                    subdir=True,
                    create=True,
                    lock=True,
                    readahead=False,
                    mode=0o600,
                )
                shared = (env, open_tables(env), 0)
            except _DAMAGE as exc:
                raise IndexDamaged(f"{what} at {path} is damaged: {_reason(exc)}") from None
            except lmdb.DiskError:
                raise _disk_full(path) from None
            except _ENVIRONMENT as exc:  # busy, read-only, permissions: not ours to delete
                raise IntegrityError(f"{what} at {path} cannot be opened: {exc}") from None
            except lmdb.Error as exc:
                # A damaged header makes LMDB map far past the file ("Cannot allocate
                # memory"), resize, or refuse a format; discarding it shows whether a new,
                # empty one opens (the cause was the file) or fails alike (the machine).
                raise IndexDamaged(
                    f"{what} at {path} is damaged: LMDB cannot open it ({_reason(exc)})"
                ) from None
        env, dbs, users = shared
        _OPEN_ENVS[key] = (env, dbs, users + 1)
    return key, env, dbs


def unshare_environment(key: str) -> None:
    """One user fewer; the last one closes the environment."""
    with _ENVS_LOCK:
        env, dbs, users = _OPEN_ENVS[key]
        if users <= 1:
            del _OPEN_ENVS[key]
            env.close()
        else:
            _OPEN_ENVS[key] = (env, dbs, users - 1)


def _index_tables(env: lmdb.Environment) -> dict[bytes, Any]:
    dbs = {name: env.open_db(name, create=True) for name in TABLES}
    for name in OTHER_TABLES:
        with contextlib.suppress(lmdb.NotFoundError):
            dbs[name] = env.open_db(name, create=False)
    return dbs


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(mode=0o700, exist_ok=True)
        self._key, env, dbs = share_environment(
            path, "the index", len(TABLES) + len(OTHER_TABLES), _index_tables
        )
        self.env = env
        self.db = dbs
        self._closed = False
        self.pages = _MappedPages(path / "data.mdb")
        # Set by the vault: an image object's media kind (MediaKinds), filled into summaries.
        self.media_kinds: Callable[[tuple[str | None, ...]], tuple[str | None, ...]] | None = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pages.close()
        unshare_environment(self._key)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """LMDB's errors in one line that says what they mean here: a damaged cache."""
        try:
            yield
        except lmdb.DiskError:
            raise _disk_full(self.path) from None
        except _ENVIRONMENT:
            raise
        except lmdb.Error as exc:
            raise IndexDamaged(f"the index at {self.path} is damaged: {_reason(exc)}") from None

    @contextmanager
    def writing(self, db: Any = None) -> Iterator[lmdb.Transaction]:
        """One write transaction, LMDB's errors in one line. A failed transaction is aborted,
        so the index stays as it was."""
        try:
            with self.env.begin(write=True, db=db) as txn:
                yield txn
        except lmdb.DiskError:
            raise _disk_full(self.path) from None
        except _ENVIRONMENT as exc:
            raise IntegrityError(f"the index at {self.path} refused an update: {exc}") from None
        except lmdb.Error as exc:
            raise IndexDamaged(
                f"the index at {self.path} refused an update: {_reason(exc)}"
            ) from None

    def release_pages(self) -> None:
        """Unmap the pages of the index a long read has touched (they stay in the page cache):
        see _MappedPages. For readers that walk summaries in their own batches (checkout)."""
        if not self._closed:
            self.pages.release()

    def probe(self) -> None:
        """Open every table and read its ends: most damage shows here, before a command
        relies on the index, so the command can discard and rebuild it instead of failing."""
        with self._reading(), self.env.begin() as txn:
            for name in TABLES + tuple(n for n in OTHER_TABLES if n in self.db):
                db = self.db[name]
                txn.stat(db)
                cursor = txn.cursor(db=db)
                cursor.first()
                cursor.last()

    def other_table(self, name: bytes, *, create: bool = False) -> Any | None:
        """One of OTHER_TABLES; None if it does not exist yet and ``create`` is false."""
        db = self.db.get(name)
        if db is None and create:
            with _ENVS_LOCK:
                db = self.db.get(name)
                if db is None:
                    try:
                        db = self.db[name] = self.env.open_db(name, create=True)
                    except lmdb.DiskError:
                        raise _disk_full(self.path) from None
                    except lmdb.Error as exc:
                        raise IndexDamaged(
                            f"the index at {self.path} is damaged: {_reason(exc)}"
                        ) from None
        return db

    # -- state -----------------------------------------------------------------------------
    def indexed_tree(self) -> str | None:
        with self._reading(), self.env.begin() as txn:
            return self._tree_in(txn)

    def _tree_in(self, txn: lmdb.Transaction) -> str | None:
        meta = self.db[b"meta"]
        if txn.get(b"format", db=meta) not in (None, INDEX_FORMAT):
            return None
        value = txn.get(b"tree", db=meta)
        return bytes(value).decode("ascii") if value else None

    def job_count(self) -> int:
        with self._reading(), self.env.begin() as txn:
            return int(txn.stat(self.db[b"jobs"])["entries"])

    # -- writing ---------------------------------------------------------------------------
    def apply(self, changes: Iterable[tuple[str, JobSummary | None]], tree: str | None) -> None:
        """Set or remove jobs and record which tree the index now reflects.

        Small batches are one transaction. LMDB keeps every page a write transaction dirties
        in memory until it commits (and keeps that memory for later ones), and a batch's
        postings land on pages all over a large index: a checkpoint of 2,000 jobs into a
        million-job index would dirty hundreds of MB. So a batch whose postings pass
        POSTINGS_PER_TXN is committed in several transactions; the first records where it
        started and where it goes (``meta/applying``) instead of ``meta/tree``, so an index
        left between two of them is finished by :meth:`interrupted` and the vault, never
        taken as current.
        """
        meta = self.db[b"meta"]
        items = iter(changes)
        first = True
        while True:
            deltas: Counter[bytes] = Counter()
            finished = True
            with self.writing() as txn:
                written = 0
                for job_id, summary in items:
                    keys = self._remove(txn, job_id, deltas)
                    if summary is not None:
                        keys += self._add(txn, summary, deltas)
                    # Each key's B-tree path is read through the map: as many lookups.
                    self.pages.touched(keys)
                    written += keys
                    if written >= POSTINGS_PER_TXN:
                        finished = False
                        break
                self._apply_counts(txn, deltas)
                if finished:
                    txn.put(b"format", INDEX_FORMAT, db=meta)
                    if tree is None:
                        txn.delete(b"tree", db=meta)
                    else:
                        txn.put(b"tree", tree.encode("ascii"), db=meta)
                        txn.delete(b"applying", db=meta)
                elif first:
                    start = txn.get(b"tree", db=meta)
                    current = txn.get(b"format", db=meta) == INDEX_FORMAT
                    if tree is not None and start is not None and current:
                        txn.put(b"applying", bytes(start) + b" " + tree.encode("ascii"), db=meta)
                    txn.delete(b"tree", db=meta)
            self.pages.release()  # a transaction's worth of pages at most stays resident
            if finished:
                return
            first = False

    def interrupted(self) -> tuple[str, str] | None:
        """(the tree it started from, the tree it was going to) of an :meth:`apply` that was
        stopped between two of its transactions; None if none was."""
        with self._reading(), self.env.begin(db=self.db[b"meta"]) as txn:
            if txn.get(b"tree") is not None or txn.get(b"format") != INDEX_FORMAT:
                return None
            value = txn.get(b"applying")
        if value is None:
            return None
        start, _, target = bytes(value).decode("ascii").partition(" ")
        return start, target

    def mark_dirty(self) -> None:
        """Forget which tree is indexed, so an interrupted rebuild is never taken as complete."""
        self.apply((), None)

    def clear(self) -> None:
        try:
            with self.env.begin(write=True) as txn:
                for name in TABLES:
                    txn.drop(self.db[name], delete=False)
        except lmdb.DiskError:
            raise _disk_full(self.path) from None

    def _remove(self, txn: lmdb.Transaction, job_id: str, deltas: Counter[bytes]) -> int:
        """Returns the keys it wrote (deleted), as :meth:`_add` does."""
        jid = job_id.encode("utf-8")
        old = txn.get(jid, db=self.db[b"jobs"])
        if old is None:
            return 1
        written = 2
        for table, key in JobSummary.unpack(job_id, bytes(old)).postings():
            written += 1
            if txn.delete(key, db=self.db[table]) and table in COUNTED:
                deltas[_count_key(table, key)] -= 1
        txn.delete(jid, db=self.db[b"jobs"])
        txn.delete(jid, db=self.db[b"times"])
        return written

    def _add(self, txn: lmdb.Transaction, summary: JobSummary, deltas: Counter[bytes]) -> int:
        jid = summary.job_id.encode("utf-8")
        if summary.kinds is None and self.media_kinds is not None:
            summary = replace(summary, kinds=self.media_kinds(summary.images))
        txn.put(jid, summary.pack(), db=self.db[b"jobs"])
        txn.put(jid, _date_key(summary.time), db=self.db[b"times"])
        written = 2
        for table, key in summary.postings():
            written += 1
            if txn.put(key, b"", db=self.db[table], overwrite=False) and table in COUNTED:
                deltas[_count_key(table, key)] += 1
        return written

    def _apply_counts(self, txn: lmdb.Transaction, deltas: Counter[bytes]) -> None:
        """Add a batch's changes to the list lengths: one read and write per list touched."""
        counts = self.db[b"counts"]
        for key, delta in deltas.items():
            if delta == 0:
                continue
            old = txn.get(key, db=counts)
            value = (struct.unpack(">Q", old)[0] if old is not None else 0) + delta
            if value > 0:
                txn.put(key, struct.pack(">Q", value), db=counts)
            else:
                txn.delete(key, db=counts)

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> JobSummary | None:
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            data = txn.get(job_id.encode("utf-8"))
        self.pages.touched()
        return JobSummary.unpack(job_id, data) if data is not None else None

    def get_many(
        self, job_ids: Iterable[str], *, release_every: int = RELEASE_EVERY
    ) -> dict[str, JobSummary]:
        """Summaries of many jobs in one read transaction, looked up in key order (neighbours
        share pages), the map's pages released every ``release_every`` lookups (each release
        costs the next lookups their page faults; each lookup between maps up to 64 KiB)."""
        found: dict[str, JobSummary] = {}
        keys = sorted({job_id.encode("utf-8") for job_id in job_ids})
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            for n, key in enumerate(keys, 1):
                data = txn.get(key)
                if data is not None:
                    job_id = key.decode("utf-8")
                    found[job_id] = JobSummary.unpack(job_id, data)
                if n % release_every == 0:
                    self.pages.release()
        self.pages.touched(len(keys) % release_every)
        return found

    def entry(self, job_id: str) -> JobEntry | None:
        # Only the ids: writers ask per job (a re-import for every job it holds), and a whole
        # summary's time and parameters cost more than the lookup.
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            data = txn.get(job_id.encode("utf-8"))
        self.pages.touched()
        if data is None:
            return None
        doc = msgpack.unpackb(data)
        return JobEntry(job_id, doc["r"].hex(), _hex_ids(doc["i"]))

    def iter_summaries(
        self, *, release_every: int | None = None, of_tree: str | None = None
    ) -> Iterator[JobSummary]:
        """Every summary, in key order. The map's pages are released every RELEASE_EVERY
        summaries, or every ``release_every``: read in order, a page holds a dozen summaries
        and faults in its neighbours, so a reader of all of them can release far less often
        for the same few MB mapped.

        ``of_tree``: raise IndexNotOfTree, before any summary, unless the index is exactly
        that tree's. Checked in the transaction the summaries are read in: a writer keeps
        the index current beside its readers, and a checkpoint applied between a check and a
        walk would give the walk another tree's jobs."""
        every = release_every or RELEASE_EVERY
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            if of_tree is not None and self._tree_in(txn) != of_tree:
                raise IndexNotOfTree(of_tree)
            for n, (key, value) in enumerate(txn.cursor(), 1):
                if release_every is None:
                    self.pages.touched()
                elif n % every == 0:
                    self.pages.release()
                yield JobSummary.unpack(bytes(key).decode("utf-8"), bytes(value))

    def _prefix_ids(self, table: bytes, prefix: bytes) -> set[str]:
        found: set[str] = set()
        with self._reading(), self.env.begin(db=self.db[table]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return found
            for key in cursor.iternext(keys=True, values=False):
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                found.add(key[len(prefix) :].decode("utf-8"))
        return found

    def jobs_with_word(self, word: str) -> set[str]:
        return self._prefix_ids(b"words", _part(word) + SEP)

    def jobs_with_type(self, job_type: str) -> set[str]:
        return self._prefix_ids(b"types", _part(job_type) + SEP)

    def jobs_with_param(self, name: str, value: str) -> set[str]:
        return self._prefix_ids(b"params", _part(f"{name}={value}") + SEP)

    def jobs_with_image(self, image_id: str) -> set[str]:
        return self._prefix_ids(b"images", bytes.fromhex(image_id))

    def jobs_between(self, since: datetime | None, until: datetime | None) -> Iterator[str]:
        """Job ids by enqueue time, oldest first, within [since, until]."""
        low = _date_key(since) if since else b""
        high = _date_key(until) if until else None
        with self._reading(), self.env.begin(db=self.db[b"dates"]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(low):
                return
            for key in cursor.iternext(keys=True, values=False):
                key = bytes(key)
                if high is not None and key[:8] > high:
                    break
                yield key[8:].decode("utf-8")

    def search(
        self,
        *,
        words: Iterable[str] = (),
        job_type: str | None = None,
        params: dict[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        """Job ids matching every condition, newest first.

        A keyword face over the query engine (:mod:`mjvault.index.search`), for library callers
        that have values rather than query text; there is one evaluator, not two.
        """
        from mjvault.index.query import parse_query
        from mjvault.index.search import search

        parts = [w for q in words for w in tokenize(q)]
        if job_type:
            parts.append(f"type:{job_type}")
        parts += [f"{name}:{value}" for name, value in (params or {}).items()]
        if since:
            parts.append(f"since:{since.isoformat()}")
        if until:
            parts.append(f"until:{until.isoformat()}")
        return list(search(self, parse_query(" ".join(parts))).job_ids)

    @contextmanager
    def reader(self) -> Iterator[IndexReader]:
        """One read transaction for a whole query: a consistent view, and no per-call setup."""
        with self._reading(), self.env.begin() as txn:
            yield IndexReader(txn, self.db, self.pages)

    def stats(self) -> dict[str, Any]:
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        used = 0
        counts = {}
        with self.env.begin() as txn:
            for name in TABLES:
                st = txn.stat(self.db[name])
                counts[name.decode()] = int(st["entries"])
                pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                used += int(pages * st["psize"])
        # The file also holds pages freed by earlier transactions, reused by later ones.
        return {"path": os.fspath(self.path), "bytes": size, "used_bytes": used, "entries": counts}


class IndexReader:
    """Raw reads inside one transaction, in job ids as bytes, for the search engine.

    Posting keys are ``part SEP job id`` (words, types, params): everything here works on the
    ``part`` before the first separator, which never contains one (``_part`` replaces it).
    """

    def __init__(
        self, txn: lmdb.Transaction, dbs: dict[bytes, Any], pages: _MappedPages | None = None
    ) -> None:
        self.txn = txn
        self.dbs = dbs
        self._cursors: dict[bytes, lmdb.Cursor] = {}
        # The pages a long walk or many lookups map in are let go as it goes (_MappedPages).
        self._pages = pages

    def _cursor(self, table: bytes) -> lmdb.Cursor:
        cursor = self._cursors.get(table)
        if cursor is None:
            cursor = self._cursors[table] = self.txn.cursor(db=self.dbs[table])
        return cursor

    def job_count(self) -> int:
        return int(self.txn.stat(self.dbs[b"jobs"])["entries"])

    def postings(self, table: bytes, part: bytes) -> Iterator[bytes]:
        """Job ids under one exact ``part`` (a word, a type, a ``name=value``)."""
        prefix = part + SEP
        cursor = self.txn.cursor(db=self.dbs[table])
        if not cursor.set_range(prefix):
            return
        size = len(prefix)
        keys = cast(Iterator[bytes], cursor.iternext(keys=True, values=False))
        for key in keys:
            if not key.startswith(prefix):
                break
            yield key[size:]

    def has(self, table: bytes, part: bytes, job_id: bytes) -> bool:
        return bool(self._cursor(table).set_key(part + SEP + job_id))

    def prober(self, table: bytes) -> Callable[[bytes], bool]:
        """``has`` for full keys, as one bound C method: search probes thousands per query."""
        return cast(Callable[[bytes], bool], self._cursor(table).set_key)

    def time_of(self, job_id: bytes) -> int:
        """µs since epoch of a job's enqueue time; 0 when unknown or no such job."""
        value = self.txn.get(job_id, db=self.dbs[b"times"])
        return int(struct.unpack(">q", value)[0]) if value is not None else 0

    def timer(self) -> Callable[[bytes], bytes | None]:
        """The raw ``times`` lookup as one bound C method, for loops over many candidates."""
        cursor = self.txn.cursor(db=self.dbs[b"times"])
        return cast(Callable[[bytes], bytes | None], cursor.get)

    def count(self, table: bytes, part: bytes) -> int:
        """How many jobs a posting list holds, without reading it."""
        value = self.txn.get(table + SEP + part, db=self.dbs[b"counts"])
        return int(struct.unpack(">Q", value)[0]) if value is not None else 0

    def time_span(self) -> tuple[int, int] | None:
        """The oldest and newest known enqueue times (µs), for estimating a range's size."""
        cursor = self.txn.cursor(db=self.dbs[b"dates"])
        if not cursor.set_range(struct.pack(">q", 1)) or not cursor.key():
            return None
        oldest = struct.unpack(">q", bytes(cursor.key())[:8])[0]
        cursor.last()
        newest = struct.unpack(">q", bytes(cursor.key())[:8])[0]
        return oldest, newest

    def image_references(self) -> Iterator[tuple[str, int]]:
        """(image object id, number of jobs showing it), by id: runs of the images table."""
        cursor = self.txn.cursor(db=self.dbs[b"images"])
        current, count = b"", 0
        keys = cast(Iterator[bytes], cursor.iternext(keys=True, values=False))
        for n, key in enumerate(keys, 1):
            if self._pages is not None and n % WALK_RELEASE_EVERY == 0:
                self._pages.release()  # the whole table (~400 MB at 1M jobs) would stay mapped
            image = key[:32]
            if image != current:
                if count:
                    yield current.hex(), count
                current, count = image, 0
            count += 1
        if count:
            yield current.hex(), count

    def is_image(self, object_id: str) -> bool:
        if self._pages is not None:
            self._pages.touched()  # asked of every object by `stats`: pages all over the table
        cursor = self._cursor(b"images")
        raw = bytes.fromhex(object_id)
        return bool(cursor.set_range(raw)) and bytes(cursor.key()).startswith(raw)

    def dates_newest_first(self) -> Iterator[tuple[int, bytes]]:
        cursor = self.txn.cursor(db=self.dbs[b"dates"])
        if not cursor.last():
            return
        keys = cast(Iterator[bytes], cursor.iterprev(keys=True, values=False))
        for key in keys:
            yield struct.unpack(">q", key[:8])[0], key[8:]

    def parts_with_prefix(self, table: bytes, prefix: bytes) -> Iterator[bytes]:
        """Distinct parts starting with ``prefix``, jumping over each part's postings."""
        cursor = self.txn.cursor(db=self.dbs[table])
        position = prefix
        while cursor.set_range(position):
            key = bytes(cursor.key())
            if not key.startswith(prefix):
                return
            part = key[: key.index(SEP)]
            yield part
            position = part + b"\x01"  # the first key after every "part SEP …"

    def summary(self, job_id: bytes) -> dict[str, Any] | None:
        data = self.txn.get(job_id, db=self.dbs[b"jobs"])
        return msgpack.unpackb(data) if data is not None else None

    def dates(self, low: int | None = None, high: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(µs since epoch, job id) within [low, high], oldest first; 0 stands for unknown."""
        cursor = self.txn.cursor(db=self.dbs[b"dates"])
        if not cursor.set_range(struct.pack(">q", low) if low is not None else b""):
            return
        keys = cast(Iterator[bytes], cursor.iternext(keys=True, values=False))
        for key in keys:
            micros = struct.unpack(">q", key[:8])[0]
            if high is not None and micros > high:
                return
            yield micros, key[8:]
