"""Azure Blob Storage containers (and Azurite, its emulator) through obstore.

Credentials come only from the environment, read by obstore itself each time a remote is
opened: ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY``, or a SAS token in
``AZURE_STORAGE_SAS_TOKEN``, or a bearer token in ``AZURE_STORAGE_TOKEN``, or Azure's
service-principal / managed-identity variables. They are never stored or printed. The
account's endpoint defaults to ``https://<account>.blob.core.windows.net``; ``--endpoint-url``
(saved with the remote) points elsewhere, such as Azurite's ``http://127.0.0.1:10000/<account>``.

Create-only writes are Azure's own ``If-None-Match: *`` on Put Blob: of several writers of a
key exactly one wins, which push relies on for snapshots and pack names.
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

ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT_NAME"
CREDENTIALS_HINT = (
    "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_SAS_TOKEN"
)


@dataclass(frozen=True)
class AzureLocation:
    container: str
    prefix: str
    endpoint_url: str | None = None
    allow_http: bool = False

    def url(self) -> str:
        return f"az://{self.container}/{self.prefix}".rstrip("/")


class AzureBackend(ObstoreBackend):
    auth_words = (
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "403 Forbidden",
    )
    auth_hint = "check " + CREDENTIALS_HINT.removeprefix("set ")

    def __init__(self, location: AzureLocation, *, retry_seconds: float | None = None) -> None:
        from obstore.store import AzureStore

        self.location = location
        env = os.environ
        if not env.get(ACCOUNT_ENV) and env.get("AZURE_STORAGE_USE_EMULATOR") != "true":
            # Without an account obstore cannot even name the endpoint; say what to set.
            raise ConfigError(f"{location.url()}: no storage account", hint=CREDENTIALS_HINT)
        config: dict[str, Any] = {}
        if location.endpoint_url:
            config["endpoint"] = location.endpoint_url
        endpoint = location.endpoint_url or env.get("AZURE_STORAGE_ENDPOINT") or ""
        if retry_seconds is None:
            retry_seconds = float(env.get(RETRY_SECONDS_ENV, DEFAULT_RETRY_SECONDS))
        allow_http = location.allow_http or endpoint.startswith("http://")
        try:
            self._store = AzureStore(
                location.container,
                prefix=location.prefix or None,
                config=cast(Any, config),
                client_options=cast(Any, client_options(allow_http=allow_http)),
                retry_config=cast(Any, retry_config(retry_seconds)),
            )
        except Exception as exc:  # obstore refuses a malformed key or endpoint here
            raise ConfigError(
                f"{location.url()}: cannot set up the Azure client ({one_line(exc)})",
                hint=CREDENTIALS_HINT,
            ) from None

    def describe(self) -> str:
        return self.location.url()

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        # Azure has no suffix range ("the last N bytes"): ask the size, then read a range.
        import obstore

        try:
            size = int(obstore.head(self._store, key)["size"])
        except Exception as exc:
            raise self._fail("read", key, exc) from None
        return self.get_range(key, max(0, size - length), size), size

    def _fail(self, action: str, key: str, exc: BaseException) -> RemoteError:
        # Azure answers a missing container on every call (a list as well as a read), so it is
        # named here rather than only for not-found errors.
        if "ContainerNotFound" in str(exc):
            return RemoteError(
                f"{self.describe()}: the container {self.location.container} does not exist"
            )
        return super()._fail(action, key, exc)
