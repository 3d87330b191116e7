"""The small interface every remote storage speaks: named immutable blobs under one root.

Keys are ``/``-separated paths relative to the remote's root (``objects/ab/<id>``,
``snapshots/<id>``, ``config``, ``keys/<key-id>``). Implementations: :mod:`.folder` (a local
or mounted directory) and :mod:`.s3` (S3-compatible object stores through obstore).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from mjvault.errors import MjvaultError

# Bytes held at a time while a large blob is streamed to a file.
STREAM_CHUNK = 256 * 1024


class RemoteError(MjvaultError):
    """The remote could not be reached or refused a request (after retries)."""


class RemoteAuthError(RemoteError):
    """The remote refused our credentials."""


class RemoteNotFound(RemoteError):
    """A key the remote should hold is absent."""


class KeyMeta(NamedTuple):
    """One listed key with what the listing says of it."""

    key: str
    #: Bytes stored.
    size: int
    #: When the blob was written, seconds since the epoch (a folder's mtime, the store's
    #: Last-Modified): the age a grace period is measured by.
    mtime: float


class Backend(ABC):
    """Blobs by key. Thread-safe: push and pull call it from a pool."""

    #: Whether :meth:`put` with ``create_only`` is enforced by the storage (not check-then-put).
    atomic_create: bool = True

    @abstractmethod
    def describe(self) -> str:
        """A human name for messages: a path or ``s3://bucket/prefix`` (never a credential)."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key starting with ``prefix`` (unordered)."""

    def list_meta(self, prefix: str) -> Iterator[KeyMeta]:
        """Every key starting with ``prefix`` with its size and modification time (unordered),
        from the listing itself: no request per key. Needed by ``gc --remote`` alone."""
        raise RemoteError(f"{self.describe()} cannot list the sizes and ages of its keys")

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The blob; :class:`RemoteNotFound` when absent."""

    def download(self, key: str, out: BinaryIO) -> int:
        """Write the blob to ``out`` and return its size. Storage that can stream overrides
        this so a large blob (a remote pack) is never whole in memory."""
        data = self.get(key)
        out.write(data)
        return len(data)

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes of the blob (all of it when shorter) and its full size.

        Storage that can read a range overrides this; the fallback fetches the whole blob.
        """
        data = self.get(key)
        return data[-length:], len(data)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to ``end`` (exclusive) of the blob."""
        return self.get(key)[start:end]

    @abstractmethod
    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        """Store ``data`` at ``key`` atomically (readers see all of it or nothing).

        With ``create_only`` an existing key is left as it is and False is returned.
        """

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""

    def sweep(self) -> None:  # noqa: B027 - optional hook
        """Remove leftovers of writers killed long ago (a folder's old temp files)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
