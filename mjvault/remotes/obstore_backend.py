"""Object stores reached through obstore (S3-compatible, Azure Blob, GCS): one implementation
of :class:`Backend` over any obstore store, so each provider's module only builds its store and
says what its refusals mean.

Why obstore: see :mod:`mjvault.remotes.s3` (measured against boto3). Its Rust core releases
the GIL, retries 5xx and dropped connections with backoff, and does conditional create
(``If-None-Match: *``) natively on every provider it speaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, BinaryIO

from mjvault.remotes.backend import (
    STREAM_CHUNK,
    Backend,
    RemoteAuthError,
    RemoteError,
    RemoteNotFound,
)

# How long one request may keep being retried (5xx, dropped connections) before push gives up.
RETRY_SECONDS_ENV = "MJVAULT_REMOTE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0


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


def one_line(exc: BaseException) -> str:
    """obstore errors carry a multi-line chain; the user gets its most telling line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for needle in ("<Code>", "status", "error sending request", "Connection refused"):
        for line in lines:
            if needle in line:
                return line[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


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
        if isinstance(exc, NotFoundError | FileNotFoundError):
            return self._missing_container(exc) or RemoteNotFound(f"{where} is missing")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or any(
            w in str(exc) for w in self.auth_words
        ):
            return RemoteAuthError(
                f"{self.describe()} refused the credentials ({detail})", hint=self.auth_hint
            )
        return RemoteError(f"cannot {action} {where}: {detail}")

    def list(self, prefix: str) -> Iterator[str]:
        import obstore

        try:
            for batch in obstore.list(self._store, prefix=prefix, chunk_size=1000):
                for meta in batch:
                    yield str(meta["path"])
        except Exception as exc:
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
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=STREAM_CHUNK):
                out.write(chunk)
                size += len(chunk)
        except Exception as exc:
            raise self._fail("read", key, exc) from None
        return size

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        import obstore

        try:
            result = obstore.get(self._store, key, options={"range": {"suffix": length}})
            return bytes(result.bytes()), int(result.meta["size"])
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        import obstore

        if end <= start:
            return b""
        try:
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
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
