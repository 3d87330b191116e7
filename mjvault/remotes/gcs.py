"""Google Cloud Storage buckets through obstore.

Credentials come only from the environment, read by obstore itself each time a remote is
opened: a service-account JSON file named by ``GOOGLE_APPLICATION_CREDENTIALS`` or
``GOOGLE_SERVICE_ACCOUNT``, the key itself in ``GOOGLE_SERVICE_ACCOUNT_KEY``, else the
machine's own (application-default) credentials. They are never stored or printed.
``--endpoint-url`` (saved with the remote) sets the base URL of the storage API, for a
gateway or an emulator; a service-account file may also carry ``gcs_base_url`` with
``disable_oauth`` for an emulator that checks no tokens.

Create-only writes are Google's own precondition (``x-goog-if-generation-match: 0``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from mjvault.errors import ConfigError
from mjvault.remotes.backend import RemoteError
from mjvault.remotes.obstore_backend import (
    DEFAULT_RETRY_SECONDS,
    RETRY_SECONDS_ENV,
    ObstoreBackend,
    client_options,
    one_line,
    retry_config,
)

CREDENTIALS_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service-account JSON file"
)


@dataclass(frozen=True)
class GCSLocation:
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    allow_http: bool = False

    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")


class GCSBackend(ObstoreBackend):
    auth_words = ("401 Unauthorized", "403 Forbidden", "AccessDenied", "invalid_grant")
    auth_hint = "check " + CREDENTIALS_HINT.removeprefix("set ")

    def __init__(self, location: GCSLocation, *, retry_seconds: float | None = None) -> None:
        from obstore.store import GCSStore

        self.location = location
        env = os.environ
        config: dict[str, Any] = {}
        if location.endpoint_url:
            config["base_url"] = location.endpoint_url.rstrip("/")
        if retry_seconds is None:
            retry_seconds = float(env.get(RETRY_SECONDS_ENV, DEFAULT_RETRY_SECONDS))
        endpoint = location.endpoint_url or ""
        allow_http = location.allow_http or endpoint.startswith("http://")
        try:
            self._store = GCSStore(
                location.bucket,
                prefix=location.prefix or None,
                config=cast(Any, config),
                client_options=cast(Any, client_options(allow_http=allow_http)),
                retry_config=cast(Any, retry_config(retry_seconds)),
            )
        except Exception as exc:  # an unreadable or malformed service-account file
            raise ConfigError(
                f"{location.url()}: cannot set up the GCS client ({one_line(exc)})",
                hint=CREDENTIALS_HINT,
            ) from None

    def describe(self) -> str:
        return self.location.url()

    def _fail(self, action: str, key: str, exc: BaseException) -> RemoteError:
        if "NoSuchBucket" in str(exc) or "bucket does not exist" in str(exc):
            return RemoteError(
                f"{self.describe()}: the bucket {self.location.bucket} does not exist"
            )
        return super()._fail(action, key, exc)
