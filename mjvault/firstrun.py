"""First run: what `mjvault setup` does once it has its answers, usable without a terminal.

The wizard in ``mjvault.cli.setup`` only asks; everything that changes something — creating the
vault, storing the token, testing the connection, writing the user config — is here.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault import credentials
from mjvault.config import (
    Layer,
    LoadedConfig,
    client_settings,
    load_config,
    session_token,
    user_config_path,
)
from mjvault.config.writer import set_value
from mjvault.errors import IntegrityError, MjvaultError, UsageError
from mjvault.redact import redact, register_secret

if TYPE_CHECKING:
    from mjvault.sync import SyncReport
    from mjvault.vault import Vault
    from mjvault.views.reconcile import RefreshReport
    from mjvault.views.registry import View

DEFAULT_VAULT = Path("~/mj-vault")
DEFAULT_VIEW_DIR = Path("~/Pictures/Midjourney")

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


def create_vault(path: Path, *, encrypt: bool, passphrase: str | None) -> Vault:
    """The new vault, open: the caller closes it (opening again would rerun the slow KDF)."""
    from mjvault.vault import Vault

    return Vault.init(path, encrypt=encrypt, passphrase=passphrase)


def keyring_available() -> bool:
    return credentials.available()


def store_token(token: str, storage: TokenStorage, *, profile: str | None) -> None:
    """Keep the token where the person chose; for ENV nothing is written anywhere."""
    register_secret(token)
    if storage is TokenStorage.KEYRING:
        credentials.store(profile, token)
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
    url: str | None = None  # the API base URL asked, so a person sees which server answered


def check_connection(
    loaded: LoadedConfig, *, token: str | None, user_id: str | None
) -> ConnectionResult:
    """Ask the Midjourney API whether the cookie works (``MidjourneyClient.check_auth``)."""
    from mjvault.sources.midjourney import MidjourneyClient

    if not token:
        return ConnectionResult(False, "no session cookie to test")
    # A person is waiting: one retry and a short timeout, not a sync's patience.
    settings = client_settings(loaded, token=token, user_id=user_id, max_retries=1, timeout=15.0)
    url = settings.web_base
    client = MidjourneyClient(settings)
    try:
        # An AuthStatus (ok, message, …): the client reports refusals rather than raising.
        status = client.check_auth()
    except MjvaultError as err:
        return ConnectionResult(False, redact(str(err)), url)
    except Exception as exc:  # a network failure is an answer here, not a crash
        return ConnectionResult(False, redact(f"{type(exc).__name__}: {exc}"), url)
    finally:
        client.close()
    ok = bool(getattr(status, "ok", False))
    message = str(getattr(status, "message", "") or "")
    if ok:
        generation = getattr(status, "generation", None)
        message = "the session cookie works" + (f" (API {generation})" if generation else "")
    return ConnectionResult(ok, redact(message or "the API refused the session cookie"), url)


def has_synced(vault_path: Path) -> bool:
    """Whether the vault holds a snapshot (a sync or an import ran): a sync is then no "first
    sync" that takes hours but one of what is new. The markers are plain names in every vault,
    so no passphrase is needed (docs/FORMAT.md §7)."""
    try:
        return any((vault_path / "refs" / "snapshots").iterdir())
    except OSError:
        return False


# -- the first view ------------------------------------------------------------------------------


def existing_views(vault: Vault) -> list[View]:
    """The views the vault has now, damaged view files left out (verify reports those)."""
    from mjvault.views.registry import ViewRegistry

    registry = ViewRegistry(vault)
    views = []
    for name in registry.names():
        try:
            views.append(registry.load(name))
        except IntegrityError:
            continue
    return views


def view_directory_problem(vault_path: Path, directory: Path) -> str | None:
    """Why ``directory`` cannot hold a view of the vault (inside it, around it, a file), or None.

    Needs only the vault's path, so a script's ``--view`` is refused before a vault is created.
    """
    from mjvault.views.reconcile import check_view_directory

    try:
        check_view_directory(vault_path, directory.expanduser().resolve())
    except UsageError as err:
        return str(err)
    return None


def first_view(vault: Vault, directory: Path, *, template: str | None = None) -> RefreshReport:
    """Create the view in ``directory`` (or refresh the one already there) and render it.

    The view follows every sync (auto-refresh), so one made before the first sync is filled by
    it. Symlinks in a plain vault; an encrypted vault's objects are ciphertext, so copies there.
    A view already showing ``directory`` is kept, with only its template changed if one is given:
    rerunning the wizard never makes a second view of the same directory.
    """
    from mjvault.views.links import LinkKind
    from mjvault.views.reconcile import checkout
    from mjvault.views.registry import ViewDefinition, ViewRegistry
    from mjvault.views.template import DEFAULT_TEMPLATE

    registry = ViewRegistry(vault)
    resolved = directory.expanduser().resolve()
    existing = registry.find_by_directory(resolved)
    if existing is not None:
        definition = existing.definition
        if template is not None:
            definition.template = template
    else:
        definition = ViewDefinition(
            name=registry.free_name(resolved),
            directory=resolved,
            template=template or DEFAULT_TEMPLATE,
            link=LinkKind.COPY if vault.encrypted else LinkKind.SYMLINK,
            auto_refresh=True,
        )
    return checkout(vault, definition)


def first_sync(
    vault: Vault,
    loaded: LoadedConfig,
    *,
    token: str | None,
    user_id: str | None,
    on_job: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> SyncReport:
    """A complete sync with the wizard's answers; it refreshes the auto-refresh views at its end."""
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.sync import SyncOptions, sync

    settings = client_settings(loaded, token=token, user_id=user_id)
    options = SyncOptions(concurrency=loaded.config.sync.jobs)
    with MidjourneyClient(settings) as client:
        return sync(vault, client, options, on_job=on_job, on_bytes=on_bytes)
