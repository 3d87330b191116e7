"""A Midjourney account of any size whose jobs are derived from ``(seed, index)`` on demand.

:class:`~mjvault.testing.accounts.Account` draws its jobs in sequence and keeps them all (a
few hundred bytes each: fine at 10k, gigabytes at a million). :class:`ScaledAccount` keeps
nothing per job: job ``i`` (0 is the oldest) is rebuilt from a hash of ``(seed, i)`` whenever a
page or a file asks for it, so a listing page costs its own jobs and the account costs the
same at 1k or 1M jobs. The records are built by the same :class:`GeneratedJob` methods, so
pages have exactly the existing accounts' shapes.

What is derived from the index alone, cheaply:

* the time: ``start + i * gap + jitter(i)``, strictly increasing, so "at or before fromDate" is
  a binary search over indexes;
* the id: a UUIDv4 whose low 48 bits are an invertible scramble of ``i``, so a CDN path names
  its job without any lookup table (the rest of the UUID is a keyed hash, checked on decode);
* the kind: every 50th job is a video; the others are a fresh grid (about 55%) or a child of
  the nearest fresh grid a few jobs older (so a job needs at most one other job to be built).
  That gives about 3.2 images per job, as heavy accounts have.

PNGs (the files sync downloads) come from a small cache of tiny pictures, each served with a
``tEXt`` chunk naming its job and image, so no two files are the same bytes.

``images_pool=N`` serves every media path from ``N`` distinct files per file type instead (the
path's hash picks one): a million-job vault then holds a million records and tree entries but
only ``N`` image files. Everything a job costs in metadata is unchanged; what the pool makes
cheaper than reality is everything counted in media files (downloads, bytes on disk, objects
to push, thumbnails): see docs/design.md, "A million jobs".
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import overload

from mjvault.testing import images
from mjvault.testing.accounts import (
    ACCOUNT_SPAN,
    DEFAULT_START,
    GeneratedJob,
    ImageSize,
    MediaServing,
    _CommonFields,
    _new_id,
    child_job,
    root_job,
)

VIDEO_EVERY = 50  # job i is a video when i % VIDEO_EVERY == VIDEO_EVERY - 1
ROOT_SHARE = 0.55  # share of non-video jobs that are fresh grids (parents of the rest)
PICTURES = 8  # distinct pictures per image size in the PNG cache
_BITS = 48
_MASK = (1 << _BITS) - 1
_SCRAMBLE = 0x9E3779B97F4B  # odd, so multiplication modulo 2**48 is invertible
_UNSCRAMBLE = pow(_SCRAMBLE, -1, 1 << _BITS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PNG_TAG = b"mjvault-job"


@lru_cache(maxsize=256)
def _picture(variant: int, width: int, height: int) -> bytes:
    return images.make_png(variant, width, height)


class ScaledAccount(MediaServing):
    """``ScaledAccount(seed, n_jobs)``: the same jobs for the same arguments, at any size."""

    def __init__(
        self,
        seed: int,
        n_jobs: int,
        *,
        user_id: str | None = None,
        username: str | None = "testartist",
        start: datetime = DEFAULT_START,
        image_size: ImageSize = "small",
        images_pool: int | None = None,
    ) -> None:
        if n_jobs < 0:
            raise ValueError("n_jobs must not be negative")
        if n_jobs > _MASK:
            raise ValueError(f"at most {_MASK} jobs")
        if images_pool is not None and images_pool < 1:
            raise ValueError("images_pool must be at least 1")
        self.images_pool = images_pool
        self._pooled: dict[tuple[str, int], bytes] = {}  # at most images_pool per file type
        self.seed = seed
        self.image_size: ImageSize = image_size
        self.user_id = user_id or _new_id(random.Random(f"user:{seed}"))
        self.username = username
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._start_us = (start - _EPOCH) // timedelta(microseconds=1)
        # Fixed at creation: jobs added later must not change the ones already served.
        self._planned = max(1, n_jobs)
        self._gap_us = max(2000, (ACCOUNT_SPAN // timedelta(microseconds=1)) // self._planned)
        self._key = hashlib.blake2b(f"scaled:{seed}".encode(), digest_size=16).digest()
        self._xor = int.from_bytes(self._key[:6], "big")
        self._size = n_jobs
        self._lock = threading.Lock()

    @classmethod
    def generate(cls, seed: int, n_jobs: int, **options: object) -> ScaledAccount:
        return cls(seed, n_jobs, **options)  # type: ignore[arg-type]

    # -- what the index alone gives ------------------------------------------------------------
    def _hash(self, index: int) -> int:
        digest = hashlib.blake2b(index.to_bytes(8, "big"), key=self._key, digest_size=16)
        return int.from_bytes(digest.digest(), "big")

    def micros(self, index: int) -> int:
        """Job ``index``'s enqueue time in microseconds since the epoch."""
        jitter = self._hash(index) % (self._gap_us // 2)
        return self._start_us + index * self._gap_us + jitter

    def job_id(self, index: int) -> str:
        scrambled = ((index ^ self._xor) * _SCRAMBLE) & _MASK
        high = self._hash(index) >> _BITS
        return str(uuid.UUID(int=(high << _BITS) | scrambled, version=4))

    def index_of(self, job_id: str) -> int | None:
        """The index of ``job_id``, or None when this account has no such job."""
        try:
            value = uuid.UUID(job_id).int
        except ValueError:
            return None
        index = ((value & _MASK) * _UNSCRAMBLE & _MASK) ^ self._xor
        if index >= self._size or self.job_id(index) != job_id:
            return None
        return index

    @staticmethod
    def is_video(index: int) -> bool:
        return index % VIDEO_EVERY == VIDEO_EVERY - 1

    def is_root(self, index: int) -> bool:
        if index == 0:
            return True
        if self.is_video(index):
            return False
        return (self._hash(index) & 0xFFFF) / 0x10000 < ROOT_SHARE

    def parent_index(self, index: int) -> int:
        """The fresh grid a child job comes from: the nearest one a few jobs older."""
        candidate = max(0, index - 1 - (self._hash(index) >> 16) % 6)
        while not self.is_root(candidate):
            candidate -= 1
        return candidate

    # -- jobs ----------------------------------------------------------------------------------
    def job_at(self, index: int) -> GeneratedJob:
        """Job ``index`` (0 is the oldest), built afresh."""
        rng = random.Random(f"scaled:{self.seed}:{index}")
        fraction = min(1.0, index / self._planned)
        moment = _EPOCH + timedelta(microseconds=self.micros(index))
        common = _CommonFields(
            id=self.job_id(index),
            enqueue_time=moment,
            user_id=self.user_id,
            username=self.username if rng.random() > 0.02 else None,
            legacy=fraction < 0.1,
            detail_seed=rng.getrandbits(32),
        )
        if self.is_root(index):
            return root_job(rng, fraction, common)
        parent = self.job_at(self.parent_index(index))
        video = self.is_video(index)
        return child_job(rng, parent, rng.randrange(4), fraction, common, video=video)

    def __len__(self) -> int:
        return self._size

    @property
    def jobs(self) -> JobView:
        """Every job, newest first, built as read."""
        return JobView(self, images_only=False)

    def image_jobs(self) -> JobView:
        """Jobs the v1 and v2 listings show (no videos), newest first."""
        return JobView(self, images_only=True)

    def job(self, job_id: str) -> GeneratedJob | None:
        index = self.index_of(job_id)
        return None if index is None else self.job_at(index)

    def add_jobs(self, count: int) -> list[GeneratedJob]:
        """``count`` jobs newer than every existing one, newest first."""
        with self._lock:
            first = self._size
            self._size += count
        return [self.job_at(index) for index in range(first + count - 1, first - 1, -1)]

    def listing(self) -> ScaledListing:
        return ScaledListing(self)

    # -- media ---------------------------------------------------------------------------------
    def image_bytes(self, job: GeneratedJob, index: int, ext: str) -> bytes:
        if ext.lower() != "png" or self.image_size != "small":
            return super().image_bytes(job, index, ext)
        width, height = self.image_dimensions(job)
        picture = _picture(self.content_seed(job.id, 0) % PICTURES, width, height)
        return images.with_text_chunk(picture, PNG_TAG, f"{job.id}/{index}".encode())

    def media_bytes(self, cdn_relative_path: str) -> bytes | None:
        own = super().media_bytes(cdn_relative_path)
        if own is None or self.images_pool is None:
            return own
        return self.pooled_media(cdn_relative_path)

    def pool_slot(self, cdn_relative_path: str) -> tuple[str, int]:
        """``(file type, slot)``: which pooled file a media path is served from."""
        path = cdn_relative_path.lstrip("/").split("?", 1)[0]
        assert self.images_pool is not None
        digest = hashlib.blake2b(path.encode(), key=self._key, digest_size=8).digest()
        return path.rsplit(".", 1)[-1].lower(), int.from_bytes(digest, "big") % self.images_pool

    def pooled_media(self, cdn_relative_path: str) -> bytes:
        """The pooled file served at a path (with ``images_pool``), whether or not the path
        names a job of this account: :meth:`media_bytes` is the CDN's answer."""
        slot = self.pool_slot(cdn_relative_path)
        data = self._pooled.get(slot)
        if data is None:
            ext, number = slot
            seed = self.content_seed("pool", number, ext)
            if ext == "png":
                picture = _picture(number % PICTURES, 32, 32)
                data = images.with_text_chunk(picture, PNG_TAG, f"pool/{number}".encode())
            else:
                data = images.media_for_extension(ext, seed, 32, 32)
            self._pooled[slot] = data
        return data


class JobView:
    """A newest-first sequence of an account's jobs (all, or images only), built as read.

    Indexing and slicing return jobs (a slice, a list) as a list of jobs would.
    """

    def __init__(self, account: ScaledAccount, *, images_only: bool) -> None:
        self._account = account
        self._images_only = images_only
        size = len(account)  # fixed: jobs added later do not shift a view already taken
        self._size = size
        self._length = size - size // VIDEO_EVERY if images_only else size

    def __len__(self) -> int:
        return self._length

    def index_at(self, position: int) -> int:
        """The account index of the job at ``position`` (0 is the newest)."""
        ordinal = self._length - 1 - position
        if not self._images_only:
            return ordinal
        per_block = VIDEO_EVERY - 1
        return ordinal // per_block * VIDEO_EVERY + ordinal % per_block

    @overload
    def __getitem__(self, key: int) -> GeneratedJob: ...
    @overload
    def __getitem__(self, key: slice) -> list[GeneratedJob]: ...
    def __getitem__(self, key: int | slice) -> GeneratedJob | list[GeneratedJob]:
        if isinstance(key, slice):
            return [self._account.job_at(self.index_at(p)) for p in range(self._length)[key]]
        if key < 0:
            key += self._length
        if not 0 <= key < self._length:
            raise IndexError("job position out of range")
        return self._account.job_at(self.index_at(key))

    def __iter__(self) -> Iterator[GeneratedJob]:
        for position in range(self._length):
            yield self._account.job_at(self.index_at(position))

    def micros_at(self, position: int) -> int:
        return self._account.micros(self.index_at(position))


class _NegatedTimes:
    """Newest-first times, negated so they ascend (what ``bisect`` wants), read on demand."""

    def __init__(self, view: JobView) -> None:
        self._view = view

    def __len__(self) -> int:
        return len(self._view)

    def __getitem__(self, position: int) -> int:
        return -self._view.micros_at(position)


class ScaledListing:
    """What the server's listing index answers, for a :class:`ScaledAccount`: no job kept."""

    def __init__(self, account: ScaledAccount) -> None:
        self._views = {
            "all": JobView(account, images_only=False),
            "images": JobView(account, images_only=True),
        }

    def jobs(self, scope: str) -> JobView:
        if scope not in self._views:
            # A v1 jobType filter would need a pass over every job: not offered at this scale.
            raise LookupError(f"the scaled account does not filter by job type ({scope!r})")
        return self._views[scope]

    def start_at_or_before(self, scope: str, micros: int) -> int:
        """Index of the first job (newest first) enqueued at or before ``micros``."""
        return bisect.bisect_left(_NegatedTimes(self.jobs(scope)), -micros)

    def count_newer_than(self, scope: str, micros: int) -> int:
        return self.start_at_or_before(scope, micros)
