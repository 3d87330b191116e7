"""Answers derived from the effective configuration: which vault, which token, client settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mjvault import credentials
from mjvault.config.loader import COOKIE_ENV, Layer, LoadedConfig, Origin
from mjvault.config.schema import SETTINGS
from mjvault.redact import register_secret

if TYPE_CHECKING:
    from mjvault.sources.midjourney.settings import ClientSettings

VaultFinder = Callable[[Path], "Path | None"]


def default_vault_finder() -> VaultFinder:
    """``mjvault.vault.find_vault``, imported only when a command needs a vault."""
    from mjvault.vault import find_vault

    return find_vault


def resolve_vault_dir(
    loaded: LoadedConfig, cwd: Path, finder: VaultFinder | None
) -> tuple[Path | None, str]:
    """The vault to use and why, like git: an explicit choice, else the enclosing vault.

    Explicit means `--vault`, `MJVAULT_VAULT`, or `vault.path` set by the chosen profile (so
    `--profile work` cannot write one account's jobs into another account's vault just because
    of the current directory). Then the vault enclosing ``cwd``; then `vault.path` from a file.
    """
    path = loaded.config.vault.path
    origin = loaded.origin("vault.path")
    if path is not None and (origin.layer in (Layer.CLI, Layer.ENV) or origin.profile):
        return path, str(origin)
    found = finder(cwd) if finder is not None else None
    if found is not None:
        return found, f"enclosing {cwd}"
    if path is not None:
        return path, str(origin)
    return None, "none"


def session_token(loaded: LoadedConfig) -> tuple[str | None, Origin | None]:
    """The session token: environment or a private config file first, then the keyring."""
    token = loaded.config.source.session_token
    if token:
        register_secret(token)
        return token, loaded.origin("source.session_token")
    stored = credentials.load(loaded.profile)
    if stored is not None and stored.token:
        return stored.token, Origin(Layer.USER, "keyring", loaded.profile)
    return None, None


def register_environment_secrets(environ: Mapping[str, str]) -> None:
    """Mask secret values the environment holds, before any configuration is loaded."""
    names = [n for spec in SETTINGS.values() if spec.secret for n in spec.env]
    for name in (*names, *COOKIE_ENV, "MJVAULT_PASSPHRASE"):
        register_secret(environ.get(name))


def register_config_secrets(loaded: LoadedConfig) -> None:
    """Tell the log masker every secret value the configuration holds."""
    register_secret(loaded.config.source.session_token)
    for value in loaded.config.source.extra_cookies.values():
        register_secret(value)
    if loaded.config.notify.urls:
        from mjvault.notify.redaction import register_url_secrets

        register_url_secrets(loaded.config.notify.urls)


def client_settings(loaded: LoadedConfig, **overrides: Any) -> ClientSettings:
    """``ClientSettings`` for the Midjourney client from the effective configuration.

    Credentials follow the client's own precedence: the browser's cookie store
    (``source.cookies_from_browser``), then a session cookie in ``source.cookies_file``, beat
    the token (environment, private config file, keyring); the user ID falls back to the
    one `mjvault auth login` keeps in the keyring for this profile. ``overrides`` (client
    fields) win over all.
    """
    from mjvault.sources.midjourney.auth import SESSION_COOKIES, read_cookies_file
    from mjvault.sources.midjourney.settings import ClientSettings

    source = loaded.config.source
    token, _ = session_token(loaded)
    file_cookies: dict[str, Any] = {}
    if source.cookies_file is not None:
        host = urlsplit(source.web_base).hostname
        file_cookies = read_cookies_file(source.cookies_file, [host] if host else [])
        if any(name in file_cookies for name in SESSION_COOKIES):
            token = None  # the browser's own session cookie is sent as it is
    renewal = None
    if source.cookies_from_browser:
        from mjvault.sources.midjourney.browser_cookies import read_browser_cookies, renewal_hint

        # Read now, not once at setup: the browser renews the short-lived session cookie.
        host = urlsplit(source.web_base).hostname or ""
        browser_cookies = read_browser_cookies(source.cookies_from_browser, host)
        for value in browser_cookies.values():
            register_secret(value.reveal())
        file_cookies = {**file_cookies, **browser_cookies}
        token = None  # read_browser_cookies found a session cookie, or raised
        renewal = renewal_hint(source.cookies_from_browser)
    user_id = source.user_id
    if user_id is None:
        stored = credentials.load(loaded.profile)
        user_id = stored.user_id if stored else None
    values: dict[str, Any] = {
        "web_base": source.web_base,
        "cdn_base": source.cdn_base,
        "cdn_hosts": source.cdn_hosts,
        "api": source.api,
        "user_id": user_id,
        "token": token,
        "extra_cookies": {**file_cookies, **source.extra_cookies},
        "user_agent": source.user_agent,
        "session_renewal": renewal,
        "max_rps": loaded.config.sync.max_rps,
        "limit_rate": loaded.config.sync.limit_rate,
        "concurrency": loaded.config.sync.jobs,
        "max_page_bytes": loaded.config.sync.max_page_bytes,
    }
    values.update(overrides)
    return ClientSettings(**values)
