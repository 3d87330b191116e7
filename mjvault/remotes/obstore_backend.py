"""Object stores reached through obstore (S3-compatible, Azure Blob, GCS): one implementation
of :class:`Backend` over any obstore store, so each provider's module only builds its store and
says what its refusals mean.

Why obstore: see :mod:`mjvault.remotes.s3` (measured against boto3). Its Rust core releases
the GIL, retries 5xx and dropped connections with backoff, and does conditional create
(``If-None-Match: *``) natively on every provider it speaks.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from mjvault.remotes.backend import (
    STREAM_CHUNK,
    Backend,
    KeyMeta,
    RemoteAuthError,
    RemoteError,
    RemoteNotFound,
    source_pieces,
)

# How long one request may keep being retried (5xx, dropped connections) before push gives up.
RETRY_SECONDS_ENV = "MJVAULT_REMOTE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
# Listing pages in a row that may break off mid-body before the listing fails.
BODY_RETRIES = 5


# Uploads above this go up in parts (multipart upload); below it, one PUT.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
# A part: large enough that a 2 GB video is ~256 requests, small enough that the parts in
# flight (:data:`PARTS_IN_FLIGHT` of them) keep an upload's memory to a few tens of MB.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4
# S3 (and Ceph RGW, MinIO, R2) take at most 10,000 parts; a margin for rounding.
MAX_PARTS = 9_000


def part_size(size: int) -> int:
    """Bytes per part for an upload of ``size``: :data:`PART_SIZE`, or more (whole MiB) when
    the object would otherwise need more than :data:`MAX_PARTS` parts (above ~70 GB)."""
    mib = 1024 * 1024
    needed = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-needed // mib) * mib)


def client_options(*, allow_http: bool) -> dict[str, Any]:
    return {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=10),
        "timeout": timedelta(seconds=120),
    }


def retry_config(retry_seconds: float) -> dict[str, Any]:
    return {
        "max_retries": 10,
        "retry_timeout": timedelta(seconds=retry_seconds),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=5),
            "base": 2,
        },
    }


# A refusal's HTTP status and the provider's error code, wherever obstore's text holds them.
_STATUS = re.compile(r"status code: (\d{3}(?: [A-Z][A-Za-z]*)*)")
_CODE = re.compile(r"<Code>(\w+)</Code>")


def one_line(exc: BaseException) -> str:
    """obstore errors carry a multi-line chain; the user gets its most telling line.

    A refusal says its status and the provider's code (``HTTP 403 Forbidden:
    SignatureDoesNotMatch``) rather than the request's URL, timing and a cut-off XML body,
    which is what Ceph's gateway answers fill the line with."""
    text = str(exc)
    status, code = _STATUS.search(text), _CODE.search(text)
    if status or code:
        parts = [f"HTTP {status.group(1)}" if status else "", code.group(1) if code else ""]
        return ": ".join(part for part in parts if part)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for needle in ("<Code>", "status", "error sending request", "Connection refused"):
        for line in lines:
            if needle in line:
                return line[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _body_cut(exc: BaseException) -> bool:
    """Whether ``exc`` is an answer whose body broke off (the request itself went through)."""
    return "response body" in str(exc)


class _Backoff:
    """Waits between attempts to go on with a listing: at most :data:`BODY_RETRIES` in a row
    without a new key, within the remote's retry budget since the first of them."""

    def __init__(self) -> None:
        self.tries = 0
        self.since = 0.0

    def progress(self) -> None:
        self.tries = 0

    def wait(self) -> bool:
        now = time.monotonic()
        if self.tries == 0:
            self.since = now
        budget = float(os.environ.get(RETRY_SECONDS_ENV, DEFAULT_RETRY_SECONDS))
        if self.tries >= BODY_RETRIES or now - self.since > budget:
            return False
        time.sleep(min(0.1 * 2**self.tries, 2.0))
        self.tries += 1
        return True


def _unsatisfiable(exc: BaseException) -> bool:
    """Whether ``exc`` is a server refusing a byte range (416), not a failed request."""
    text = str(exc)
    return any(w in text for w in ("416 Range Not Satisfiable", "InvalidRange", "NotPartial"))


class ObstoreBackend(Backend):
    """Blobs in an obstore store. Subclasses set ``_store`` and may refine :meth:`_fail`."""

    #: Words in a refusal that mean the credentials were wrong, and the hint to give then.
    auth_words: tuple[str, ...] = ("403",)
    auth_hint: str = "check the credentials in the environment"

    _store: Any

    def _missing_container(self, exc: BaseException) -> RemoteError | None:
        """A one-line error when ``exc`` says the bucket or container itself is absent."""
        return None

    def _fail(self, action: str, key: str, exc: BaseException) -> RemoteError:
        from obstore.exceptions import (
            NotFoundError,
            PermissionDeniedError,
            UnauthenticatedError,
        )

        where = f"{self.describe()}/{key}" if key else self.describe()
        detail = one_line(exc)
        # Asked first: a missing bucket comes as a not-found for a read but as a generic error
        # for a listing (Ceph's gateway, moto), and either way the key is not the problem.
        missing = self._missing_container(exc)
        if missing is not None:
            return missing
        if isinstance(exc, NotFoundError | FileNotFoundError):
            return RemoteNotFound(f"{where} is missing")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or self._names_auth(
            str(exc).replace(key, "") if key else str(exc)
        ):
            return RemoteAuthError(
                f"{self.describe()} refused the credentials ({detail})", hint=self.auth_hint
            )
        return RemoteError(f"cannot {action} {where}: {detail}")

    def _names_auth(self, message: str) -> bool:
        """Whether ``message`` carries one of :attr:`auth_words` as a word of its own: a bare
        ``403`` inside an object's hex name (in the URL of a request that never got an
        answer) is not a refusal."""
        return any(
            re.search(rf"(?<![0-9A-Za-z]){re.escape(word)}(?![0-9A-Za-z])", message)
            for word in self.auth_words
        )

    def list(self, prefix: str) -> Iterator[str]:
        for meta in self._listing(prefix):
            yield str(meta["path"])

    def list_meta(self, prefix: str) -> Iterator[KeyMeta]:
        for meta in self._listing(prefix):
            yield KeyMeta(str(meta["path"]), int(meta["size"]), meta["last_modified"].timestamp())

    def _listing(self, prefix: str) -> Iterator[Any]:
        import obstore

        # obstore's prefix is a directory ("objects/ab" lists objects/ab/*, never objects/abc):
        # list the directory the prefix ends in and keep the keys that start with it.
        directory = prefix.rpartition("/")[0] or None
        last: str | None = None  # the last key received, while they come in ascending order
        ascending = True
        cut = _Backoff()
        while True:
            try:
                for batch in obstore.list(
                    self._store, prefix=directory, offset=last, chunk_size=1000
                ):
                    for meta in batch:
                        key = str(meta["path"])
                        ascending = ascending and (last is None or key > last)
                        last = key
                        cut.progress()
                        if key.startswith(prefix):
                            yield meta
                return
            except Exception as exc:
                # The client retries a failed request, but not a listing page whose body broke
                # off mid-way. Stores list in key order: carry on after the last key received
                # (the same ``start-after`` a next page uses), unless the order was not kept.
                if not (_body_cut(exc) and ascending and cut.wait()):
                    raise self._fail("list", prefix, exc) from None

    def get(self, key: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def download(self, key: str, out: BinaryIO) -> int:
        import obstore

        size = 0
        try:
            chunks = iter(obstore.get(self._store, key).stream(min_chunk_size=STREAM_CHUNK))
        except Exception as exc:
            raise self._fail("read", key, exc) from None
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as exc:
                raise self._fail("read", key, exc) from None
            if chunk is None:
                return size
            # Outside the try: an error of ``out`` (damage found while it checks) is its own.
            out.write(chunk)
            size += len(chunk)

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        import obstore

        if length <= 0:
            return b"", self._size(key)
        try:
            result = obstore.get(self._store, key, options={"range": {"suffix": length}})
            return bytes(result.bytes()), int(result.meta["size"])
        except Exception as exc:
            if not _unsatisfiable(exc):
                raise self._fail("read", key, exc) from None
        # An empty blob has no last bytes to ask for: servers answer 416, or the whole (empty)
        # body, which obstore refuses as not partial. Ask for its size, then a plain range.
        size = self._size(key)
        return self.get_range(key, max(0, size - length), size), size

    def get_range(self, key: str, start: int, end: int) -> bytes:
        import obstore

        if end <= start:
            return b""
        try:
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except Exception as exc:
            if not _unsatisfiable(exc):
                raise self._fail("read", key, exc) from None
        # A range that starts at or past the end is refused (416); as a slice it is empty.
        if start >= self._size(key):
            return b""
        return self.get(key)[start:end]  # a server that ignored the range: slice it here

    def _size(self, key: str) -> int:
        import obstore

        try:
            return int(obstore.head(self._store, key)["size"])
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, key, data, mode="create" if create_only else "overwrite")
            return True
        except (AlreadyExistsError, PreconditionError, FileExistsError):
            if create_only:
                return False
            raise
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def upload_file(
        self, key: str, source: Path | BinaryIO, size: int, *, create_only: bool = False
    ) -> bool:
        """One PUT up to :data:`MULTIPART_THRESHOLD`, else a multipart upload streamed from
        ``source`` (the store publishes the object only when its last part is in).

        obstore makes a conditional (create-only) write one PUT of the whole body, so a large
        ``create_only`` upload asks first whether the key exists: not atomic, which for
        content-addressed objects (the same key, the same bytes) costs at most a second copy
        sent, never a different one kept.
        """
        import obstore

        if size <= MULTIPART_THRESHOLD:
            return super().upload_file(key, source, size, create_only=create_only)
        if create_only and self.exists(key):
            return False
        chunk = part_size(size)
        failure: list[BaseException] = []

        def pieces() -> Iterator[bytes]:
            # An error of the source (damage found while reading) is the caller's to see,
            # not obstore's wrapping of it.
            try:
                yield from source_pieces(source, chunk)
            except BaseException as exc:
                failure.append(exc)
                raise

        try:
            obstore.put(
                self._store,
                key,
                pieces(),
                use_multipart=True,
                chunk_size=chunk,
                max_concurrency=PARTS_IN_FLIGHT,
            )
            return True
        except Exception as exc:
            if failure:
                raise failure[0] from None
            raise self._fail("write", key, exc) from None

    def exists(self, key: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(self._store, key)
            return True
        except (NotFoundError, FileNotFoundError):
            return False
        except Exception as exc:
            raise self._fail("check", key, exc) from None

    def delete(self, key: str) -> None:
        import obstore

        try:
            obstore.delete(self._store, key)
        except Exception as exc:
            error = self._fail("delete", key, exc)
            # Azure and GCS answer 404 for an absent key (S3 does not); absent is not an error,
            # but a missing bucket or container still is (a RemoteError of its own).
            if type(error) is RemoteNotFound:
                return
            raise error from None

    def delete_many(self, keys: Sequence[str]) -> None:
        import obstore

        if not keys:
            return
        try:
            # S3's DeleteObjects (1,000 keys a request) and Azure's blob batch, where offered.
            obstore.delete(self._store, list(keys))
        except Exception as exc:
            raise self._fail("delete", keys[0], exc) from None
