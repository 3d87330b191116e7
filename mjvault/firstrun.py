"""First run: what `mjvault setup` does once it has its answers, usable without a terminal.

The wizard in ``mjvault.cli.setup`` only asks; everything that changes something — creating the
vault, storing the token, testing the connection, writing the user config — is here.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjvault.config import (
    Layer,
    LoadedConfig,
    client_settings,
    keyring_store,
    load_config,
    user_config_path,
)
from mjvault.config.writer import set_value
from mjvault.errors import MjvaultError
from mjvault.redact import redact, register_secret

DEFAULT_VAULT = Path("~/mj-vault")

BROWSER_STEPS = """\
How to find your session cookie and user ID (Chrome, Edge, Brave; Firefox alike):
  1. Open https://www.midjourney.com in your browser and log in.
  2. Open the developer tools: F12, or Ctrl+Shift+I (macOS: Cmd+Option+I).
  3. Tab "Application" (Firefox: "Storage") -> Cookies -> https://www.midjourney.com
  4. Copy the Value of  __Host-Midjourney.AuthUserTokenV3_i
     (an older login has  __Secure-next-auth.session-token  instead: copy that one).
  5. User ID: tab "Console", type this line and press Enter, copy the result without quotes:
       __NEXT_DATA__.props.initialAuthUser.midjourney_id
The V3 cookie lasts about an hour: when a sync says it expired, copy it again and rerun
`mjvault setup` (or set MIDJOURNEY_SESSION_TOKEN)."""


class TokenStorage(enum.StrEnum):
    KEYRING = "keyring"  # the system keyring, one entry per profile
    CONFIG = "config"  # the user config file, owner-only; asked for explicitly
    ENV = "env"  # nowhere: the person exports MIDJOURNEY_SESSION_TOKEN themselves


class VaultState(enum.StrEnum):
    EXISTING = "existing"
    NEW = "new"  # missing or an empty directory
    OCCUPIED = "occupied"  # a non-empty directory that is not a vault


@dataclass(frozen=True)
class Current:
    """What is configured now: the defaults a rerun of the wizard offers."""

    loaded: LoadedConfig
    vault_path: Path
    user_id: str | None
    token: str | None
    token_origin: str | None


def current_settings(profile: str | None, environ: Mapping[str, str] | None = None) -> Current:
    from mjvault.config import session_token

    loaded = load_config(profile=profile, environ=environ, strict_profile=False)
    token, origin = session_token(loaded)
    return Current(
        loaded=loaded,
        vault_path=loaded.config.vault.path or DEFAULT_VAULT.expanduser(),
        user_id=loaded.config.source.user_id,
        token=token,
        token_origin=str(origin) if origin else None,
    )


def vault_state(path: Path) -> VaultState:
    from mjvault.vault import is_vault

    if is_vault(path):
        return VaultState.EXISTING
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return VaultState.NEW
    return VaultState.OCCUPIED


def create_vault(path: Path, *, encrypt: bool, passphrase: str | None) -> None:
    from mjvault.vault import Vault

    Vault.init(path, encrypt=encrypt, passphrase=passphrase).close()


def keyring_available() -> bool:
    return keyring_store.available()


def store_token(token: str, storage: TokenStorage, *, profile: str | None) -> None:
    """Keep the token where the person chose; for ENV nothing is written anywhere."""
    register_secret(token)
    if storage is TokenStorage.KEYRING:
        keyring_store.set_token(profile, token)
    elif storage is TokenStorage.CONFIG:
        set_value(
            user_config_path(os.environ),
            "source.session_token",
            token,
            layer=Layer.USER,
            profile=profile,
        )


def write_user_settings(values: Mapping[str, Any], *, profile: str | None) -> Path:
    path = user_config_path(os.environ)
    for key, value in values.items():
        if value is not None:
            set_value(path, key, value, layer=Layer.USER, profile=profile)
    return path


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool | None  # None: not tested (--skip-test)
    message: str


def check_connection(
    loaded: LoadedConfig, *, token: str | None, user_id: str | None
) -> ConnectionResult:
    """Ask the Midjourney API whether the cookie works (``MidjourneyClient.check_auth``)."""
    from mjvault.sources.midjourney import MidjourneyClient

    if not token:
        return ConnectionResult(False, "no session cookie to test")
    # A person is waiting: one retry and a short timeout, not a sync's patience.
    settings = client_settings(loaded, token=token, user_id=user_id, max_retries=1, timeout=15.0)
    client = MidjourneyClient(settings)
    try:
        # An AuthStatus (ok, message, …): the client reports refusals rather than raising.
        status = client.check_auth()
    except MjvaultError as err:
        return ConnectionResult(False, redact(str(err)))
    except Exception as exc:  # a network failure is an answer here, not a crash
        return ConnectionResult(False, redact(f"{type(exc).__name__}: {exc}"))
    finally:
        client.close()
    ok = bool(getattr(status, "ok", False))
    message = str(getattr(status, "message", "") or "")
    if ok:
        generation = getattr(status, "generation", None)
        message = "the session cookie works" + (f" (API {generation})" if generation else "")
    return ConnectionResult(ok, redact(message or "the API refused the session cookie"))
