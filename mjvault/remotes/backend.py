"""The small interface every remote storage speaks: named immutable blobs under one root.

Keys are ``/``-separated paths relative to the remote's root (``objects/ab/<id>``,
``snapshots/<id>``, ``config``, ``keys/<key-id>``). Implementations: :mod:`.folder` (a local
or mounted directory) and :mod:`.s3` (S3-compatible object stores through obstore).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

from mjvault.errors import CorruptObject, IntegrityError, MjvaultError

# Bytes held at a time while a large blob is streamed to a file.
STREAM_CHUNK = 256 * 1024


class RemoteError(MjvaultError):
    """The remote could not be reached or refused a request (after retries)."""


class RemoteAuthError(RemoteError):
    """The remote refused our credentials."""


class RemoteNotFound(RemoteError):
    """A key the remote should hold is absent."""


# What a fetch raises when the remote's copy is absent or damaged, as opposed to a remote
# that cannot be reached: the caller notes the object and goes on with the others.
REMOTE_DAMAGE = (RemoteNotFound, CorruptObject, IntegrityError)


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

    def upload_file(
        self, key: str, source: Path | BinaryIO, size: int, *, create_only: bool = False
    ) -> bool:
        """:meth:`put` of the ``size`` bytes of ``source`` (a path, or a file read to its end)
        without holding them: storage that can stream overrides this (a 2 GB video). An
        error raised while reading ``source`` (damage found on the way) leaves ``key`` as it
        was. The fallback reads the whole file."""
        if isinstance(source, Path):
            return self.put(key, source.read_bytes(), create_only=create_only)
        return self.put(key, source.read(), create_only=create_only)

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every one of ``keys`` (absent ones are not an error). Storage with a bulk
        delete overrides this: S3 takes 1,000 keys a request."""
        for key in keys:
            self.delete(key)

    def sweep(self) -> None:  # noqa: B027 - optional hook
        """Remove leftovers of writers killed long ago (a folder's old temp files)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class PieceReader(io.RawIOBase):
    """A readable file over an iterator of byte strings: how a stream made on the fly (an
    object checked, or sealed, while it is read) is handed to :meth:`Backend.upload_file`."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._left = memoryview(piece)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def source_pieces(source: Path | BinaryIO, size: int = STREAM_CHUNK) -> Iterator[bytes]:
    """The bytes of an upload's source, ``size`` at a time."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            yield from iter(lambda: handle.read(size), b"")
        return
    yield from iter(lambda: source.read(size), b"")
