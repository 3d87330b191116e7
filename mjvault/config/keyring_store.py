"""The session token in the system keyring (optional extra ``mjvault[keyring]``).

Config files are the wrong place for a token that grants access to someone's account, so the
setup wizard stores it here when a keyring is usable. One entry per profile, so several
Midjourney accounts can live side by side. Every failure of the keyring (no backend, a locked
desktop wallet, no D-Bus on a server) reads as "not available", never as a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from mjvault.errors import ConfigError

log = logging.getLogger(__name__)

SERVICE = "mjvault"


# The entry `mjvault auth login` uses for the default profile; a named profile adds its name.
TOKEN_ACCOUNT = "midjourney-session-token"


def account(profile: str | None) -> str:
    return f"{TOKEN_ACCOUNT}:{profile}" if profile else TOKEN_ACCOUNT


def _keyring() -> Any | None:
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration is a missing keyring to us
        return None
    # `fail` raises on every call and `null` silently forgets: neither keeps a token.
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    return keyring


def available() -> bool:
    return _keyring() is not None


def get_token(profile: str | None) -> str | None:
    keyring = _keyring()
    if keyring is None:
        return None
    try:
        value: str | None = keyring.get_password(SERVICE, account(profile))
    except Exception as exc:
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None
    return value or None


def set_token(profile: str | None, token: str) -> None:
    keyring = _keyring()
    if keyring is None:
        raise ConfigError(
            "no system keyring is available",
            hint="install mjvault[keyring] with a desktop keyring, or set MIDJOURNEY_SESSION_TOKEN",
        )
    try:
        keyring.set_password(SERVICE, account(profile), token)
    except Exception as exc:
        reason = type(exc).__name__
        raise ConfigError(f"the keyring refused to store the token ({reason})") from None


def delete_token(profile: str | None) -> bool:
    keyring = _keyring()
    if keyring is None:
        return False
    try:
        keyring.delete_password(SERVICE, account(profile))
    except Exception:
        return False
    return True
