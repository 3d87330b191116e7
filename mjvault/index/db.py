"""LMDB tables that map jobs, words, dates, types, parameters and images (docs/FORMAT.md, "Index").

The index is a cache of one tree (``meta/tree``): everything in it can be recomputed from the
objects, so a missing, stale or damaged index is rebuilt, never trusted over the snapshots.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import mmap
import os
import shutil
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import lmdb
import msgpack
from pyroaring import BitMap

from mjvault.errors import IntegrityError, MjvaultError
from mjvault.index import bitmaps
from mjvault.index.bitmaps import SEP
from mjvault.index.damage import IndexDamaged
from mjvault.index.keys import MAX_KEY_PART, key_part
from mjvault.index.sealed import GENERATION_SIZE, JOBS, SEALED_FORMAT, IndexSealer, VocabWrites
from mjvault.index.sealed import parts_with_prefix as vocab_parts
from mjvault.insights import aggregates
from mjvault.model import Job
from mjvault.params import param_index_value
from mjvault.store.crypto import VaultKeys
from mjvault.text import fold, tokenize
from mjvault.tree import JobEntry

# 2: the words table also holds each word's accent-folded form (mjvault.text.fold), and the
#    counts and times tables exist.
# 3: each job summary holds its images' media kinds ("k"), so a checkout reads no image.
# 4: a job summary's object ids are 32 bytes, not 64 hex characters (~130 bytes a job).
# 5: posting lists are Roaring bitmaps of document numbers (mjvault/index/bitmaps.py), one
#    value per list shard, instead of one key per posting; users are indexed; `docs`, `days`
#    and `live` replace `dates`, `times` and `counts`.
# 6: the insights table (mjvault/insights/aggregates.py); summaries hold a job's parent,
#    video, like and rank.
# 7: insights counters count prompt words without image-prompt URLs, jobs and images by type,
#    and jobs and images a minute in one counter instead of day and hour counters; the
#    parents lists (lineage) and marks (like, rank).
# 8: the bands lists: each prompt's MinHash bands, for prompt families and "more like this"
#    (mjvault/similarity/minhash.py).
# 9: the shared_bands table: the bands holding two jobs or more, so families walk those alone.
INDEX_FORMAT = b"9"
MAP_SIZE = 1 << 36  # address space only: LMDB files are sparse and grow as needed
NEW_ENV_ROOM = 256 << 10  # free bytes a new environment needs: its lock file and first pages
RELEASE_EVERY = 16  # lookups between two releases of the map's resident pages
WALK_RELEASE_EVERY = 1024  # keys of an in-order walk between two releases (a few MB mapped)
# A search's reads of summaries and lists, which land anywhere in the file: one release
# every 128 of them (8 MB mapped at most).
SUMMARY_WEIGHT = 8
# Keys one write transaction of Index.apply sets or deletes before it commits and the next
# begins: each may dirty a 4 KiB page of its own (and its branch pages) in a large index,
# and LMDB keeps the most pages any transaction dirtied for the rest of the run. At 1,024
# that was ~12 MB of a writer's peak at 60k jobs, and growing with the index; 512 keeps it
# under 4 MB for ~7% more CPU in the index's updates (more commits).
POSTINGS_PER_TXN = 512
# Jobs whose list changes Index.apply gathers before writing them: a list shard touched by
# many of them is rewritten once. Bounded by the numbers gathered too (a few MB at most).
GROUP_JOBS = 8192
GROUP_NUMBERS = 400_000
# Tables of sharded posting lists, keyed ``part 00 shard`` (bitmaps.list_key).
LIST_TABLES = (
    b"words",
    b"pairs",
    b"repeats",
    b"lengths",
    b"types",
    b"params",
    b"users",
    b"parents",
    b"marks",
    b"bands",
)
# The bands whose lists hold two numbers or more (keys: the band's part, values empty), kept
# by every write of a ``bands`` shard: prompt families walk these alone, not the band of one
# job that nearly every band is (mjvault/similarity/prompts.py; FORMAT.md §9.4).
SHARED_BANDS = b"shared_bands"
_MICROS = struct.Struct(">q")
_LENGTH = struct.Struct(">H")
MAX_LENGTH = 65_535  # words a prompt is counted as having, at most (docs' 2 bytes)
_TIME_AND_LENGTH = struct.Struct(">qH")
DOC_ID_AT = _TIME_AND_LENGTH.size
NAMES_AT_ONCE = 1024  # job ids IndexReader.docs opens in one call in a sealed index


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
    # For insights (mjvault/insights): the job this one follows (an upscale's grid), whether
    # its record says it was video, and the account holder's like and rank, where given.
    parent: str | None = None
    video: bool = False
    liked: bool | None = None
    ranking: int | None = None

    @property
    def micros(self) -> int:
        """µs since epoch of the enqueue time; 0 when unknown."""
        return int(self.time.timestamp() * 1_000_000) if self.time else 0

    @cached_property
    def _tokens(self) -> list[str]:
        # Asked by lists() and doc_entry() for every job an update writes: tokenized once.
        return tokenize(self.prompt)

    @property
    def length(self) -> int:
        """The prompt's length in words, as ``docs`` and the ``lengths`` lists keep it."""
        return min(len(self._tokens), MAX_LENGTH)

    def doc_entry(self) -> bytes:
        """The ``docs`` table's value: time, prompt length in words, job id."""
        return _MICROS.pack(self.micros) + _LENGTH.pack(self.length) + self.job_id.encode("utf-8")

    def pack(self, doc: int | None = None, *, with_id: bool = False) -> bytes:
        """``with_id``: the job id in the value too (``j``), for a key that does not show it."""
        micros = int(self.time.timestamp() * 1_000_000) if self.time else None
        extra = {"j": self.job_id} if with_id else {}
        return msgpack.packb(
            {
                **extra,
                "n": doc,
                "r": bytes.fromhex(self.record),
                "i": [bytes.fromhex(i) if i is not None else None for i in self.images],
                "ts": micros,
                "ty": self.type,
                "p": self.prompt,
                "pa": self.params,
                "u": self.username,
                "k": list(self.kinds) if self.kinds is not None else None,
                "pi": self.parent,
                "vi": self.video,
                "lk": self.liked,
                "rk": self.ranking,
            }
        )

    @classmethod
    def unpack(cls, job_id: str | None, data: bytes) -> JobSummary:
        """``job_id`` None: the one the value holds (``j``)."""
        doc = msgpack.unpackb(data)
        if job_id is None:
            job_id = str(doc["j"])
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
            parent=doc.get("pi"),
            video=bool(doc.get("vi", False)),
            liked=doc.get("lk"),
            ranking=doc.get("rk"),
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
            parent=job.parent_id,
            video=job.is_video,
            liked=job.liked,
            ranking=job.ranking,
        )

    def lists(self) -> Iterator[tuple[bytes, bytes]]:
        """(table, part) of every sharded posting list this job is in (LIST_TABLES)."""
        tokens = self._tokens
        folded = [fold(token) for token in tokens]
        for word in sorted(set(tokens) | set(folded)):
            yield b"words", key_part(word)
        # Neighbours, as search compares them (mjvault.text.search_tokens): a phrase of two
        # words is one list, a longer one the intersection of its pairs' lists.
        for pair in sorted({f"{a} {b}" for a, b in zip(folded, folded[1:], strict=False)}):
            yield b"pairs", key_part(pair)
        # A word's count beyond one, for relevance: the jobs with "word 2" hold it at least
        # twice, those with "word 3" three times …
        for word, count in sorted(Counter(folded).items()):
            for times in range(2, count + 1):
                yield b"repeats", key_part(f"{word} {times}")
        yield b"lengths", str(self.length).encode("ascii")
        yield b"types", key_part(self.type)
        for name, value in self.params.items():
            yield b"params", key_part(f"{name}={value}")
        if self.username:
            yield b"users", key_part(self.username.casefold())
        # The jobs that follow this one's parent (its upscales, variations, pans): a job's
        # children are one list read, not a walk of every job.
        if self.parent:
            yield b"parents", key_part(self.parent)
        # The account holder's like and rank, where the record gives them (facets).
        if self.liked is not None:
            yield b"marks", b"liked=true" if self.liked else b"liked=false"
        if self.ranking is not None:
            yield b"marks", key_part(f"rank={self.ranking}")
        # Prompt families (mjvault/similarity/prompts.py): jobs whose prompts share a band are
        # candidates to be near, kept up to date as every other list is.
        for band in _prompt_bands(self.prompt):
            yield b"bands", band

    def image_ids(self) -> Iterator[bytes]:
        """The binary ids of the images shown (the ``images`` table's keys start with them)."""
        for image in self.images:
            if image is not None:
                yield bytes.fromhex(image)


def _prompt_bands(prompt: str) -> list[bytes]:
    # Imported when the first job is listed: numpy costs a command that never
    # writes the index its start-up time.
    from mjvault.similarity.minhash import bands

    return bands(prompt)


def _hex_ids(ids: list[bytes | None]) -> tuple[str | None, ...]:
    return tuple([i.hex() if i is not None else None for i in ids])  # a list: no generator


class Layout:
    """How an index stores jobs, lists and images: by the terms themselves (a plain vault,
    byte for byte as before), or by keyed tokens with sealed values (an encrypted vault,
    mjvault/index/sealed.py). The one place that knows which."""

    def __init__(self, sealer: IndexSealer | None = None) -> None:
        self.sealer = sealer
        self.format = INDEX_FORMAT if sealer is None else SEALED_FORMAT

    def job_key(self, job_id: str) -> bytes:
        jid = job_id.encode("utf-8")
        return jid if self.sealer is None else self.sealer.token(b"jobs", jid)

    def job_value(self, summary: JobSummary, doc: int, key: bytes) -> bytes:
        if self.sealer is None:
            return summary.pack(doc)
        return self.sealer.seal(summary.pack(doc, with_id=True), b"jobs" + SEP + key)

    def open_job(self, key: bytes, data: bytes | memoryview) -> bytes:
        """A ``jobs`` value as msgpack."""
        if self.sealer is None:
            return bytes(data)
        return self.sealer.open(data, b"jobs" + SEP + key)

    def summary(self, key: bytes, data: bytes | memoryview) -> JobSummary:
        if self.sealer is None:
            return JobSummary.unpack(key.decode("utf-8"), bytes(data))
        return JobSummary.unpack(None, self.open_job(key, data))

    def part(self, table: bytes, part: bytes) -> bytes:
        """What a list's keys start with: its part, or the part's token. Prompt lengths are
        numbers, kept as they are (FORMAT.md §9.2)."""
        if self.sealer is None or table == b"lengths":
            return part
        return self.sealer.token(table, part)

    def doc_entry(self, summary: JobSummary, doc: int, generation: bytes) -> bytes:
        """The ``docs`` value: time, prompt length, then the job id, in a sealed index
        enciphered (IndexSealer.names) under the index's ``generation`` (meta/names)."""
        if self.sealer is None:
            return summary.doc_entry()
        head = _MICROS.pack(summary.micros) + _LENGTH.pack(summary.length)
        return head + self.sealer.names(generation, [(doc, summary.job_id.encode("utf-8"))])[0]

    def image_entries(self, summary: JobSummary) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the ``images`` table, one per image shown: image id ‖ job id and
        nothing, or image id ‖ a token of the job id and the job id sealed."""
        jid = summary.job_id.encode("utf-8")
        if self.sealer is None:
            for image in summary.image_ids():
                yield image + jid, b""
            return
        token = self.sealer.token(b"images", jid)
        for image in summary.image_ids():
            key = image + token
            yield key, self.sealer.seal(jid, b"images" + SEP + key)

    def image_keys(self, summary: JobSummary) -> Iterator[bytes]:
        """The keys of :meth:`image_entries`, for deleting them."""
        jid = summary.job_id.encode("utf-8")
        suffix = jid if self.sealer is None else self.sealer.token(b"images", jid)
        for image in summary.image_ids():
            yield image + suffix

    def image_job(self, key: bytes, value: bytes | memoryview) -> str:
        if self.sealer is None:
            return key[32:].decode("utf-8")
        return self.sealer.open(value, b"images" + SEP + key).decode("utf-8")

    def list_changes(
        self,
        change: Callable[[bytes, bytes, int], None],
        summary: JobSummary,
        doc: int,
        parts: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Call ``change(table, key, doc)`` for every list shard and day the job is in
        (``parts``: its ``summary.lists()``, when the caller has them already)."""
        shard = bitmaps.shard_of(doc)
        for table, part in summary.lists() if parts is None else parts:
            change(table, bitmaps.list_key(self.part(table, part), shard), doc)
        change(b"days", bitmaps.day_key(bitmaps.day_of(summary.micros)), doc)


PLAIN = Layout()


TABLES = (
    b"meta",
    b"jobs",
    b"docs",
    b"live",
    b"days",
    b"words",
    b"pairs",
    b"repeats",
    b"lengths",
    b"types",
    b"params",
    b"users",
    b"images",
    aggregates.TABLE,
    b"parents",
    b"marks",
    b"bands",
    SHARED_BANDS,
)
# Tables that are no cache of the tree, so clear() and the tree's format leave them alone: the
# import stat cache and the running import's jobs (mjvault/index/statcache.py). Created by
# their first writer, not before.
OTHER_TABLES = (b"stat", b"import_jobs")
# The sealed vocabulary of an encrypted vault's index (mjvault/index/sealed.py): a table of
# the tree like TABLES, but only in such an index, so a plain index stays as it was.
VOCAB = b"vocab"
SEALED_TABLES = (VOCAB,)


class IndexNotOfTree(MjvaultError):
    """The index is not (or no longer) the index of the tree a reader asked for."""


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


# LMDB passes the system's errors on as its own, the errno's words only ("x: Read-only file
# system"): these say the machine refuses (a read-only mount, permissions), not that the file
# is damaged, so deleting the cache would not help and may not be ours to do.
_REFUSALS = {os.strerror(code): code for code in (errno.EROFS, errno.EACCES, errno.EPERM)}


def _refused(exc: lmdb.Error, path: Path) -> OSError | None:
    """The OSError an LMDB error stands for when the system refused access, else None."""
    code = _REFUSALS.get(_reason(exc))
    return None if code is None else OSError(code, os.strerror(code), os.fspath(path))


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
                if refused := _refused(exc, path):
                    raise refused from None
                # A damaged header makes LMDB map far past the file ("Cannot allocate
                # memory"), resize, or refuse a format; discarding it shows whether a new,
                # empty one opens (the cause was the file) or fails alike (the machine).
                raise IndexDamaged(
                    f"{what} at {path} is damaged: LMDB cannot open it ({_reason(exc)})"
                ) from None
        env, dbs, users = shared
        _OPEN_ENVS[key] = (env, dbs, users + 1)
    return key, env, dbs


def _sole_user(key: str) -> bool:
    with _ENVS_LOCK:
        return _OPEN_ENVS[key][2] <= 1


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
    for name in (*OTHER_TABLES, *SEALED_TABLES):
        with contextlib.suppress(lmdb.NotFoundError):
            dbs[name] = env.open_db(name, create=False)
    return dbs


class Index:
    def __init__(self, path: Path, keys: VaultKeys | None = None) -> None:
        """``keys``: an encrypted vault's, whose index holds tokens and sealed values only
        (Layout); an index found otherwise (plaintext, or under another key) is emptied
        first, its files deleted when no one else has it open."""
        self.path = path
        path.mkdir(mode=0o700, exist_ok=True)
        self._open()
        self.layout = PLAIN
        if keys is not None:
            self.layout = Layout(IndexSealer(keys))
            self._seal()
        # Insights' changes of the jobs the current write transaction of apply() has written.
        self._insights: Counter[str] = Counter()
        # An index built from nothing: the changes of its bucket counters (months, terms,
        # cost keys), summed in memory until the apply that names its tree writes them once.
        self._deferred: Counter[str] = Counter()
        # Set by the vault: an image object's media kind (MediaKinds), filled into summaries.
        self.media_kinds: Callable[[tuple[str | None, ...]], tuple[str | None, ...]] | None = None

    def _open(self) -> None:
        self._key, env, dbs = share_environment(
            self.path,
            "the index",
            len(TABLES) + len(OTHER_TABLES) + len(SEALED_TABLES),
            _index_tables,
        )
        self.env = env
        self.db = dbs
        self._closed = False
        self.pages = _MappedPages(self.path / "data.mdb")

    def _seal(self) -> None:
        """Make this an index of the layout's key: kept if it is one, else emptied."""
        sealer = self.layout.sealer
        assert sealer is not None
        check = sealer.check()
        with self._reading(), self.env.begin() as txn:
            meta = self.db[b"meta"]
            if txn.get(b"key", db=meta) == check and txn.get(b"names", db=meta) is not None:
                return
            used = any(
                txn.stat(self.db[name])["entries"]
                for name in (*TABLES, *OTHER_TABLES, *SEALED_TABLES)
                if name in self.db
            )
        if used and _sole_user(self._key):
            # A plaintext index: its files go, free pages and all (dropping tables would
            # leave their old pages, prompts included, in the file until reused).
            self.close()
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(mode=0o700, exist_ok=True)
            self._open()
        with self.writing() as txn:
            if used:
                for name in (*TABLES, *OTHER_TABLES, *SEALED_TABLES):
                    if name in self.db:
                        txn.drop(self.db[name], delete=False)
            txn.put(b"key", check, db=self.db[b"meta"])
            txn.put(b"names", os.urandom(GENERATION_SIZE), db=self.db[b"meta"])
        for name in SEALED_TABLES:
            self.other_table(name, create=True)

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
            if refused := _refused(exc, self.path):
                raise refused from None
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
            if refused := _refused(exc, self.path):
                raise refused from None
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
            for name in TABLES + tuple(n for n in (*OTHER_TABLES, *SEALED_TABLES) if n in self.db):
                db = self.db[name]
                txn.stat(db)
                cursor = txn.cursor(db=db)
                cursor.first()
                cursor.last()

    def other_table(self, name: bytes, *, create: bool = False) -> Any | None:
        """One of OTHER_TABLES (or SEALED_TABLES); None if it does not exist yet and ``create`` is
        false."""
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
        if txn.get(b"format", db=meta) not in (None, self.layout.format):
            return None
        value = txn.get(b"tree", db=meta)
        return bytes(value).decode("ascii") if value else None

    def of_older_format(self) -> bool:
        """Whether the index was written by an older format (it lacks tables or holds them
        in an older shape) and waits for the rebuild that brings it current."""
        with self._reading(), self.env.begin() as txn:
            return txn.get(b"format", db=self.db[b"meta"]) not in (None, self.layout.format)

    def job_count(self) -> int:
        with self._reading(), self.env.begin() as txn:
            return int(txn.stat(self.db[b"jobs"])["entries"])

    # -- writing ---------------------------------------------------------------------------
    def apply(self, changes: Iterable[tuple[str, JobSummary | None]], tree: str | None) -> None:
        """Set or remove jobs and record which tree the index now reflects.

        Jobs are taken in groups (GROUP_JOBS): a group's list changes are gathered first, so a
        shard touched by many of its jobs is rewritten once. LMDB keeps every page a write
        transaction dirties in memory until it commits (and keeps that memory for later ones),
        and a group's writes land all over a large index, so a group is written in several
        transactions of at most POSTINGS_PER_TXN keys: the posting lists and images first,
        then the jobs, their numbers and the ``live`` list. Until the jobs table changes,
        applying the group again computes the same list changes, and applying list changes
        twice is harmless; a list may keep a number no job has (a new job's, when stopped
        before its entry was written), which readers never see: every answer is within
        ``live``.

        One transaction when everything fits in one; otherwise the first records where the
        update started and where it goes (``meta/applying``) instead of ``meta/tree``, so an
        index left between two of them is finished by :meth:`interrupted` and the vault,
        never taken as current.
        """
        meta = self.db[b"meta"]
        kept = self.db[aggregates.TABLE]
        items = _Lookahead(iter(changes))
        first = True
        next_doc: int | None = None
        defer = False
        while True:
            with self._reading(), self.env.begin() as txn:
                if next_doc is None:
                    next_doc = _next_doc(txn, meta)
                    # Built from nothing (no tree, no update to finish): an index stopped
                    # before its tree is written is emptied and built again (Vault.sync_index),
                    # so its bucket counters can wait in memory and be written once, at the
                    # end, instead of read, changed and written by every transaction.
                    defer = (
                        txn.get(b"tree", db=meta) is None and txn.get(b"applying", db=meta) is None
                    )
                writes, next_doc = self._plan(txn, items, next_doc)
            last_group = items.exhausted()
            pending = iter(writes)
            while True:
                more = False
                later: Counter[str] | None = None
                flushed = False
                with self.writing() as txn:
                    self._insights.clear()  # a failed transaction's, if any
                    for written, write in enumerate(pending, 1):
                        write(txn)
                        # Each write reads its B-tree path (and a shard) through the map.
                        self.pages.touched()
                        if written >= POSTINGS_PER_TXN:
                            more = True
                            break
                    finished = last_group and not more
                    # The jobs this transaction wrote, their insights with them (never apart:
                    # a stop between the two would count a job twice, or never), but for the
                    # bucket counters of an index built from nothing, written with its tree.
                    now: Counter[str] = self._insights
                    if defer:
                        now, later = aggregates.split(self._insights)
                        if finished and tree is not None:
                            now.update(self._deferred)  # update, not +: changes may be < 0
                            now.update(later)
                            flushed = True
                    aggregates.write(txn, kept, self.layout, now)
                    self._insights.clear()
                    if finished:
                        txn.put(b"format", self.layout.format, db=meta)
                        if tree is None:
                            txn.delete(b"tree", db=meta)
                        else:
                            txn.put(b"tree", tree.encode("ascii"), db=meta)
                            txn.delete(b"applying", db=meta)
                    elif first:
                        start = txn.get(b"tree", db=meta)
                        current = txn.get(b"format", db=meta) == self.layout.format
                        if tree is not None and start is not None and current:
                            txn.put(
                                b"applying", bytes(start) + b" " + tree.encode("ascii"), db=meta
                            )
                        txn.delete(b"tree", db=meta)
                # Committed: the jobs are in the index, their bucket counters wait (or went).
                if flushed:
                    self._deferred = Counter()
                elif later:
                    self._deferred.update(later)
                first = False
                self.pages.release()
                if finished:
                    return
                if not more:
                    break

    def _plan(
        self, txn: lmdb.Transaction, items: _Lookahead, next_doc: int
    ) -> tuple[Iterator[Callable[[lmdb.Transaction], Any]], int]:
        """The writes of the next group of changes, in the order they must be made, and the
        next free document number after it."""
        db = self.db
        lists = bitmaps.Changes()
        live = bitmaps.Changes()
        image_writes: list[Callable[[lmdb.Transaction], Any]] = []
        job_writes: dict[bytes, list[Callable[[lmdb.Transaction], Any]]] = {}
        seen: dict[bytes, tuple[int, JobSummary | None]] = {}  # a job changed twice in a group
        stored: dict[bytes, JobSummary | None] = {}  # each job as the index held it
        first_doc = next_doc
        layout = self.layout
        vocab = VocabWrites() if layout.sealer is not None else None
        generation = _generation(txn, db[b"meta"]) if layout.sealer is not None else b""
        for jobs, (job_id, summary) in enumerate(items, 1):
            jid = layout.job_key(job_id)
            if jid in seen:
                old_doc, old = seen[jid]
            else:
                old_doc, old = _stored(txn, db[b"jobs"], layout, job_id)
                stored[jid] = old
                # Jobs come in the tree's order, all over the table: without releases a
                # group's lookups would leave up to 64 KiB mapped each.
                self.pages.touched()
            if old is not None:
                old_parts = list(old.lists())
                layout.list_changes(lists.remove, old, old_doc, old_parts)
                if vocab is not None:
                    new_parts = set(summary.lists()) if summary is not None else set()
                    vocab.leave_lists(
                        (p for p in old_parts if p not in new_parts), bitmaps.shard_of(old_doc)
                    )
                for key in layout.image_keys(old):
                    image_writes.append(_deleter(db[b"images"], key))
            if summary is None:
                seen[jid] = (old_doc, None)
                if old is not None:
                    if vocab is not None:
                        vocab.jobs_gone.add(job_id.encode("utf-8"))
                    live.remove(b"live", bitmaps.shard_key(old_doc), old_doc)
                    job_writes[jid] = [
                        _deleter(db[b"jobs"], jid),
                        _deleter(db[b"docs"], bitmaps.doc_key(old_doc)),
                    ]

            else:
                if summary.kinds is None and self.media_kinds is not None:
                    summary = replace(summary, kinds=self.media_kinds(summary.images))
                doc = old_doc if old is not None else next_doc
                if old is None:
                    next_doc += 1
                seen[jid] = (doc, summary)
                # Listed once: a sealed index's vocabulary takes the same parts.
                parts = list(summary.lists())
                layout.list_changes(lists.add, summary, doc, parts)
                for key, value in layout.image_entries(summary):
                    image_writes.append(_putter(db[b"images"], key, value))
                live.add(b"live", bitmaps.shard_key(doc), doc)
                job_writes[jid] = [
                    _putter(db[b"jobs"], jid, layout.job_value(summary, doc, jid)),
                    _putter(
                        db[b"docs"],
                        bitmaps.doc_key(doc),
                        layout.doc_entry(summary, doc, generation),
                    ),
                ]

                if vocab is not None:
                    vocab.add_lists(parts)
                    vocab.add(JOBS, summary.job_id.encode("utf-8"))
                    vocab.jobs_gone.discard(summary.job_id.encode("utf-8"))
            if jobs >= GROUP_JOBS or lists.numbers >= GROUP_NUMBERS:
                break
        head: list[Callable[[lmdb.Transaction], Any]] = []
        if next_doc != first_doc:
            # Reserved before any list names them: a number is never given twice.
            head.append(_putter(db[b"meta"], b"next_doc", bitmaps.doc_key(next_doc)))
        if vocab is not None and layout.sealer is not None:
            head += _vocab_writers(db[VOCAB], layout.sealer, vocab)
        # The lists' writes are made as they are taken, not all held first: a group touches
        # some 150,000 list shards (16 prompt bands a job, nearly all of one job), whose
        # writes held at once were tens of MB of a build's peak.
        list_writes = (
            _band_writer(db[t], db[SHARED_BANDS], k, change)
            if t == b"bands"
            else _list_writer(db[t], k, change)
            for t, k, change in lists.writes()
        )
        tail: list[Callable[[lmdb.Transaction], Any]] = []
        if vocab is not None and layout.sealer is not None:
            # After the lists they check, before the jobs: a group applied again after a stop
            # finds the same terms to take away (a stop after the jobs leaves, at worst, a
            # term with an empty list, which readers skip, as every index did before).
            tail += _vocab_removers(db, layout, vocab)
        tail += image_writes
        for jid in sorted(job_writes):
            delta = aggregates.difference(stored[jid], seen[jid][1])
            tail.append(_job_writer(job_writes[jid], delta, self._insights))
        live_writes = (_list_writer(db[t], k, change) for t, k, change in live.writes())
        return itertools.chain(head, list_writes, tail, live_writes), next_doc

    def interrupted(self) -> tuple[str, str] | None:
        """(the tree it started from, the tree it was going to) of an :meth:`apply` that was
        stopped between two of its transactions; None if none was."""
        with self._reading(), self.env.begin(db=self.db[b"meta"]) as txn:
            if txn.get(b"tree") is not None or txn.get(b"format") != self.layout.format:
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
        self._deferred = Counter()
        try:
            with self.env.begin(write=True) as txn:
                for name in TABLES:
                    txn.drop(self.db[name], delete=False)
                if self.layout.sealer is not None:
                    for name in SEALED_TABLES:
                        txn.drop(self.db[name], delete=False)
                    # Still an index of this key: emptied, not to be emptied again.
                    txn.put(b"key", self.layout.sealer.check(), db=self.db[b"meta"])
                    # Numbers start again from 0: a new keystream for the ids (§9.2).
                    txn.put(b"names", os.urandom(GENERATION_SIZE), db=self.db[b"meta"])
        except lmdb.DiskError:
            raise _disk_full(self.path) from None

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> JobSummary | None:
        key = self.layout.job_key(job_id)
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            data = txn.get(key)
        self.pages.touched()
        return self.layout.summary(key, data) if data is not None else None

    def get_many(
        self, job_ids: Iterable[str], *, release_every: int = RELEASE_EVERY
    ) -> dict[str, JobSummary]:
        """Summaries of many jobs in one read transaction, looked up in key order (neighbours
        share pages), the map's pages released every ``release_every`` lookups (each release
        costs the next lookups their page faults; each lookup between maps up to 64 KiB)."""
        found: dict[str, JobSummary] = {}
        keys = sorted({self.layout.job_key(job_id) for job_id in job_ids})
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            for n, key in enumerate(keys, 1):
                data = txn.get(key)
                if data is not None:
                    summary = self.layout.summary(key, data)
                    found[summary.job_id] = summary
                if n % release_every == 0:
                    self.pages.release()
        self.pages.touched(len(keys) % release_every)
        return found

    def entry(self, job_id: str) -> JobEntry | None:
        # Only the ids: writers ask per job (a re-import for every job it holds), and a whole
        # summary's time and parameters cost more than the lookup.
        key = self.layout.job_key(job_id)
        with self._reading(), self.env.begin(db=self.db[b"jobs"]) as txn:
            data = txn.get(key)
            if data is not None:
                data = self.layout.open_job(key, data)
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
                yield self.layout.summary(bytes(key), value)

    def jobs_with_image(self, image_id: str) -> set[str]:
        prefix = bytes.fromhex(image_id)
        found: set[str] = set()
        with self._reading(), self.env.begin(db=self.db[b"images"]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return found
            for key, value in cursor.iternext():
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                found.add(self.layout.image_job(key, value))
        return found

    def job_ids_with_prefix(self, prefix: str) -> list[str]:
        """The ids of the jobs starting with ``prefix``, sorted (``show 3f2a1b``). A sealed
        index asks its vocabulary, which loses an id with its job; one an update stopped
        half-way left (or an index written before) is dropped by looking it up."""
        with self._reading(), self.env.begin() as txn:
            if self.layout.sealer is None:
                cursor = txn.cursor(db=self.db[b"jobs"])
                raw = prefix.encode("utf-8")
                found = []
                if cursor.set_range(raw):
                    for key in cursor.iternext(keys=True, values=False):
                        if not bytes(key).startswith(raw):
                            break
                        found.append(bytes(key).decode("utf-8"))
                return found
            known = self.layout.sealer.terms(
                txn, txn.cursor(db=self.db[VOCAB]), JOBS, prefix.encode("utf-8")
            )
            if known is not None:
                jobs = self.db[b"jobs"]
                return [
                    j.decode("utf-8")
                    for j in known
                    if txn.get(self.layout.job_key(j.decode("utf-8")), db=jobs) is not None
                ]
        # Too short for a bucket: every id, opened.
        return sorted(s.job_id for s in self.iter_summaries() if s.job_id.startswith(prefix))

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
        # Loaded here, not with this module: the query engine (~10 ms: its regexes and tables)
        # is no part of what `log`, `show` or `stats` need from the index (docs/design.md,
        # "Start-up (issue 12)"). There is no cycle to hide: search imports nothing of this module.
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
            yield IndexReader(txn, self.db, self.pages, self.layout)

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


class _Lookahead:
    """An iterator that can tell whether it has anything left without losing it."""

    def __init__(self, items: Iterator[tuple[str, JobSummary | None]]) -> None:
        self._items = items
        self._next: list[tuple[str, JobSummary | None]] = []

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> tuple[str, JobSummary | None]:
        if self._next:
            return self._next.pop()
        return next(self._items)

    def exhausted(self) -> bool:
        if not self._next:
            try:
                self._next.append(next(self._items))
            except StopIteration:
                return True
        return False


def _next_doc(txn: lmdb.Transaction, meta: Any) -> int:
    value = txn.get(b"next_doc", db=meta)
    return bitmaps.doc_of(bytes(value)) if value is not None else 0


def _stored(
    txn: lmdb.Transaction, jobs: Any, layout: Layout, job_id: str
) -> tuple[int, JobSummary | None]:
    """A job's document number and summary as the index holds them; (0, None) if absent."""
    key = layout.job_key(job_id)
    data = txn.get(key, db=jobs)
    if data is None:
        return 0, None
    data = layout.open_job(key, data)
    doc = msgpack.unpackb(data).get("n")
    if not isinstance(doc, int):
        raise IndexDamaged(f"the index's entry of job {job_id} has no document number")
    return doc, JobSummary.unpack(job_id, data)


def _generation(txn: lmdb.Transaction, meta: Any) -> bytes:
    """A sealed index's ``meta/names``: what its job ids' keystream is drawn under."""
    value = txn.get(b"names", db=meta)
    if value is None:
        raise IndexDamaged("the index has no meta/names")
    return bytes(value)


def _vocab_writers(
    db: Any, sealer: IndexSealer, vocab: VocabWrites
) -> list[Callable[[lmdb.Transaction], Any]]:
    """Writes of the terms' vocabulary entries that are not there yet, in key order."""
    entries = sorted(
        (key, term) for kind, term in vocab.terms for key in sealer.vocab_keys(kind, term)
    )

    def writer(key: bytes, term: bytes) -> Callable[[lmdb.Transaction], Any]:
        def write(txn: lmdb.Transaction) -> None:
            if txn.get(key, db=db) is None:
                txn.put(key, sealer.seal_term(key, term), db=db)

        return write

    return [writer(key, term) for key, term in entries]


def _vocab_removers(
    db: Any, layout: Layout, vocab: VocabWrites
) -> list[Callable[[lmdb.Transaction], Any]]:
    """Removals of the vocabulary entries of terms whose lists are empty once the group's list
    writes are made (checked in the transaction that removes them), and of the ids of jobs
    that left the index."""
    sealer = layout.sealer
    assert sealer is not None
    table = db[VOCAB]

    def remove(kind: bytes, term: bytes, txn: lmdb.Transaction) -> None:
        for key in sealer.vocab_keys(kind, term):
            txn.delete(key, db=table)

    def unless_listed(
        kind: bytes, term: bytes, listed: tuple[bytes, bytes, int]
    ) -> Callable[[lmdb.Transaction], Any]:
        table, part, shard = listed
        token = layout.part(table, part)
        prefix = token + bitmaps.SEP

        def write(txn: lmdb.Transaction) -> None:
            # The shard the job left is mostly still there (a common word): one lookup.
            if txn.get(bitmaps.list_key(token, shard), db=db[table]) is not None:
                return
            cursor = txn.cursor(db=db[table])
            if cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
                return  # another job is still in the list
            remove(kind, term, txn)

        return write

    writes: list[Callable[[lmdb.Transaction], Any]] = [
        unless_listed(kind, term, listed) for (kind, term), listed in sorted(vocab.left.items())
    ]

    def gone(job_id: bytes) -> Callable[[lmdb.Transaction], Any]:
        return lambda txn: remove(JOBS, job_id, txn)

    writes += [gone(job_id) for job_id in sorted(vocab.jobs_gone)]
    return writes


def _job_writer(
    writes: list[Callable[[lmdb.Transaction], Any]],
    delta: Counter[str],
    insights: Counter[str],
) -> Callable[[lmdb.Transaction], Any]:
    """A job's writes as one, which hands its insights' change to the transaction they are in
    (Index.apply writes it before that transaction commits)."""

    def write(txn: lmdb.Transaction) -> None:
        for each in writes:
            each(txn)
        insights.update(delta)

    return write


def _putter(db: Any, key: bytes, value: bytes) -> Callable[[lmdb.Transaction], Any]:
    return lambda txn: txn.put(key, value, db=db)


def _deleter(db: Any, key: bytes) -> Callable[[lmdb.Transaction], Any]:
    return lambda txn: txn.delete(key, db=db)


def _list_writer(db: Any, key: bytes, change: bitmaps.Change) -> Callable[[lmdb.Transaction], Any]:
    return lambda txn: bitmaps.write_change(txn, db, key, change)


def _band_writer(
    db: Any, shared: Any, key: bytes, change: bitmaps.Change
) -> Callable[[lmdb.Transaction], Any]:
    """A ``bands`` shard's write, and in the same transaction its band's entry in
    SHARED_BANDS: there when the band's shards hold two numbers or more between them, gone
    otherwise. Written from what the band holds after the change, so writing it twice (an
    update applied again after a stop) leaves the same table."""
    part = key[: -(len(bitmaps.SEP) + bitmaps.SHARD_SIZE)]

    def write(txn: lmdb.Transaction) -> None:
        held = bitmaps.write_change(txn, db, key, change)
        # A shard of two is enough; one of one or none needs the band's other shards (a
        # band of one job, nearly every band, has no other: one seek that finds nothing).
        if held >= 2 or bitmaps.holds_two(txn.cursor(db=db), part):
            txn.put(part, b"", db=shared, overwrite=False)
        else:
            txn.delete(part, db=shared)

    return write


class IndexReader:
    """Raw reads inside one transaction, for the search engine: posting lists as bitmaps of
    document numbers (mjvault/index/bitmaps.py), and what a number stands for."""

    def __init__(
        self,
        txn: lmdb.Transaction,
        dbs: dict[bytes, Any],
        pages: _MappedPages | None = None,
        layout: Layout = PLAIN,
    ) -> None:
        self.txn = txn
        self.dbs = dbs
        # Callers name lists by their parts (a word, ``name=value``): the layout maps them to
        # the keys this index holds, so search and facets read either kind of index alike.
        self.layout = layout
        self._cursors: dict[bytes, lmdb.Cursor] = {}
        # The pages a long walk or many lookups map in are let go as it goes (_MappedPages).
        self._pages = pages
        self._live: BitMap | None = None
        self._generation: bytes | None = None
        self._looked_up = 0

    def _cursor(self, table: bytes) -> lmdb.Cursor:
        cursor = self._cursors.get(table)
        if cursor is None:
            cursor = self._cursors[table] = self.txn.cursor(db=self.dbs[table])
        return cursor

    def job_count(self) -> int:
        return int(self.txn.stat(self.dbs[b"jobs"])["entries"])

    def live(self) -> BitMap:
        """Every job's number: lists may hold numbers of no job (see Index.apply)."""
        if self._live is None:
            cursor = self.txn.cursor(db=self.dbs[b"live"])
            shards = [bitmaps.load(value) for _, value in cursor] if cursor.first() else []
            self._live = BitMap.union(*shards) if shards else BitMap()
        return self._live

    def posting_list(self, table: bytes, part: bytes) -> BitMap:
        """The jobs under one exact ``part`` (a word, a type, a ``name=value``, a user)."""
        jobs = bitmaps.read_list(self._cursor(table), self.layout.part(table, part))
        self._looked_up_one(SUMMARY_WEIGHT)  # facets read hundreds of lists
        return jobs

    def count(self, table: bytes, part: bytes) -> int:
        """How many jobs a posting list holds."""
        return self.posting_list(table, part).intersection_cardinality(self.live())

    def parts_with_prefix(self, table: bytes, prefix: bytes) -> Iterator[bytes]:
        """Distinct parts starting with ``prefix``, jumping over each part's shards (in a
        sealed index: from its vocabulary, or for repeats by trying the next count)."""
        sealer = self.layout.sealer
        if sealer is None or table == b"lengths":
            return bitmaps.parts_with_prefix(self.txn.cursor(db=self.dbs[table]), prefix)
        if table == b"repeats":
            return self._repeats(prefix)
        vocab = self._cursor(VOCAB)
        return iter(vocab_parts(sealer, self.txn, vocab, table, prefix, MAX_KEY_PART))

    def _repeats(self, prefix: bytes) -> Iterator[bytes]:
        """A word's repeat lists (``prefix`` is the word and a space): "word 2", "word 3" …
        up to the first absent one; a job in "word n" is in every lower count's list too."""
        cursor = self._cursor(b"repeats")
        times = 2
        while True:
            part = key_part(f"{prefix.decode('utf-8', 'replace')}{times}")
            key = self.layout.part(b"repeats", part) + SEP
            if not cursor.set_range(key) or not bytes(cursor.key()).startswith(key):
                return
            yield part
            times += 1

    def days(self, *, newest_first: bool = False) -> Iterator[tuple[int, BitMap]]:
        """(day number, its jobs) of every day list, in order (bitmaps.day_of)."""
        cursor = self.txn.cursor(db=self.dbs[b"days"])
        if newest_first:
            if not cursor.last():
                return
            walk = cursor.iterprev()
        else:
            if not cursor.first():
                return
            walk = cursor.iternext()
        for key, value in walk:
            day = bitmaps.day_from_key(bytes(key)), bitmaps.load(value)
            self._looked_up_one(SUMMARY_WEIGHT)  # a walk of every day maps its neighbours too
            yield day

    def days_from(
        self, day: int | None, *, newest_first: bool = False
    ) -> Iterator[tuple[int, BitMap]]:
        """:meth:`days` starting at ``day`` (None: at the end it walks from): the day lists
        of a keyset page after a job, without reading the days before it."""
        if day is None:
            yield from self.days(newest_first=newest_first)
            return
        cursor = self.txn.cursor(db=self.dbs[b"days"])
        if newest_first:
            # The last key at or before ``day``: one past it, then back.
            if cursor.set_range(bitmaps.day_key(day + 1)):
                if not cursor.prev():
                    return
            elif not cursor.last():
                return
            walk = cursor.iterprev()
        else:
            if not cursor.set_range(bitmaps.day_key(day)):
                return
            walk = cursor.iternext()
        for key, value in walk:
            found = bitmaps.day_from_key(bytes(key)), bitmaps.load(value)
            self._looked_up_one(SUMMARY_WEIGHT)
            yield found

    def day_count(self) -> int:
        return int(self.txn.stat(self.dbs[b"days"])["entries"])

    def day_lists(self, low: int, high: int) -> Iterator[tuple[int, BitMap]]:
        """(day number, its jobs) of the days from ``low`` to ``high``, oldest first."""
        cursor = self.txn.cursor(db=self.dbs[b"days"])
        if not cursor.set_range(bitmaps.day_key(low)):
            return
        for key, value in cursor.iternext():
            day = bitmaps.day_from_key(bytes(key))
            if day > high:
                return
            jobs = bitmaps.load(value)
            self._looked_up_one(SUMMARY_WEIGHT)
            yield day, jobs

    def docs(self, docs: Iterable[int]) -> Iterator[tuple[int, int, bytes]]:
        """(µs, document number, job id) of each number that has a job, in the order given."""
        times = self.times(docs)
        while True:
            # A sealed index deciphers its ids many at a time (IndexSealer.names).
            batch = list(itertools.islice(times, NAMES_AT_ONCE))
            if not batch:
                return
            names = self.job_ids([(doc, tail) for _, doc, tail in batch])
            for (micros, doc, _), name in zip(batch, names, strict=True):
                yield micros, doc, name

    def times(self, docs: Iterable[int]) -> Iterator[tuple[int, int, bytes]]:
        """(µs, document number, what :meth:`job_id` takes) of each number that has a job:
        :meth:`docs` without opening the job ids, for the many a page does not show."""
        unpack = _MICROS.unpack_from
        for doc, value in self._entries(docs):
            yield unpack(value)[0], doc, bytes(value[DOC_ID_AT:])

    def job_ids(self, entries: list[tuple[int, bytes]]) -> list[bytes]:
        """The job ids (UTF-8) of :meth:`times` entries ((doc, tail) each); a sealed index's
        deciphered together (one AES call)."""
        sealer = self.layout.sealer
        if sealer is None:
            return [tail for _, tail in entries]
        if self._generation is None:
            self._generation = _generation(self.txn, self.dbs[b"meta"])
        return sealer.names(self._generation, entries)

    def lengths(self, docs: Iterable[int]) -> Iterator[tuple[int, int, int]]:
        """(µs, document number, prompt length in words) of each number that has a job."""
        unpack = _TIME_AND_LENGTH.unpack_from
        for doc, value in self._entries(docs):
            micros, length = unpack(value)
            yield micros, doc, length

    def _entries(self, docs: Iterable[int]) -> Iterator[tuple[int, memoryview | bytes]]:
        """(document number, its ``docs`` value) of each number that has a job."""
        get = self._cursor(b"docs").get
        pack = bitmaps.doc_key
        for doc in docs:
            value = get(pack(doc))
            if value is not None:
                yield doc, value
            self._looked_up_one(SUMMARY_WEIGHT)  # numbers are in no order of the file's

    def _looked_up_one(self, weight: int = 1) -> None:
        """Count a lookup over every call: a walk asks a day's jobs at a time, and the
        pages of all of them would stay mapped (see _MappedPages). ``weight``: a summary
        lookup lands anywhere in the largest table and maps its neighbours (64 KiB), so it
        counts as SUMMARY_WEIGHT lookups."""
        before = self._looked_up
        self._looked_up += weight
        if self._pages is not None and before // WALK_RELEASE_EVERY != (
            self._looked_up // WALK_RELEASE_EVERY
        ):
            self._pages.release()

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

    def summary(self, job_id: bytes) -> dict[str, Any] | None:
        key = self.layout.job_key(job_id.decode("utf-8"))
        data = self.txn.get(key, db=self.dbs[b"jobs"])
        self._looked_up_one(SUMMARY_WEIGHT)
        return msgpack.unpackb(self.layout.open_job(key, data)) if data is not None else None
