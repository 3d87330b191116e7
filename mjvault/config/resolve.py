"""Answers derived from the effective configuration: which vault, which token, client settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mjvault.config import keyring_store
from mjvault.config.loader import COOKIE_ENV, Layer, LoadedConfig, Origin
from mjvault.config.schema import SETTINGS
from mjvault.redact import register_secret

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
    token = keyring_store.get_token(loaded.profile)
    if token:
        register_secret(token)
        return token, Origin(Layer.USER, "keyring", loaded.profile)
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


def client_settings(loaded: LoadedConfig, **overrides: Any) -> Any:
    """``ClientSettings`` for the Midjourney client from the effective configuration.

    Only the fields the client declares are passed, so either side can grow a setting without
    breaking the other. Raises ImportError when the client is not installed.
    """
    import dataclasses

    from mjvault.sources.midjourney.settings import ClientSettings

    config = loaded.config
    token, _ = session_token(loaded)
    candidates: dict[str, Any] = {
        "web_base": config.source.web_base,
        "cdn_base": config.source.cdn_base,
        "api": config.source.api,
        "user_id": config.source.user_id,
        "token": token,
        "extra_cookies": dict(config.source.extra_cookies),
        "user_agent": config.source.user_agent,
        "max_rps": config.sync.max_rps,
        "limit_rate": config.sync.limit_rate,
        "concurrency": config.sync.jobs,
        **overrides,
    }
    accepted = {f.name for f in dataclasses.fields(ClientSettings)}
    return ClientSettings(**{k: v for k, v in candidates.items() if k in accepted})
