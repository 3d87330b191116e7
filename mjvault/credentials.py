"""The Midjourney session kept in the system keyring, per profile (optional ``mjvault[keyring]``).

Config files are the wrong place for a token that grants access to someone's account, so
`mjvault setup` and `mjvault auth login` keep it here, and `mjvault auth logout` removes it.
Every command that stores, reads or forgets the session goes through this module, so a
profile's entries are the same whoever wrote them.

Entries of the service ``mjvault``, one pair per profile: ``midjourney-session-token`` and
``midjourney-user-id`` for the default profile, ``midjourney-session-token:NAME`` and
``midjourney-user-id:NAME`` for the profile NAME.

These are the names earlier versions wrote (setup: the token, per profile; auth login: token
and user id, always the default profile's), so entries already stored read as they are. A
named profile never falls back to the default profile's entries: they belong to another account.

Reading never fails (no package, no backend, a locked wallet, no D-Bus on a server: nothing is
stored, as far as a sync is concerned); storing and removing say in one line what went wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mjvault.errors import ConfigError
from mjvault.redact import register_secret

log = logging.getLogger(__name__)

SERVICE = "mjvault"
TOKEN_ACCOUNT = "midjourney-session-token"
USER_ID_ACCOUNT = "midjourney-user-id"

# The environment names of sources.midjourney.settings (ENV_TOKEN, ENV_USER_ID), spelled out
# here so that a keyring lookup does not import the HTTP client.
_INSTEAD = "set MIDJOURNEY_SESSION_TOKEN and MIDJOURNEY_USER_ID instead"
KEYRING_MISSING = (
    "the system keyring needs the optional `keyring` package: "
    f"pip install 'mjvault[keyring]' (or {_INSTEAD})"
)


@dataclass(frozen=True)
class StoredSession:
    """What the keyring holds for one profile; at least one of the two is set."""

    token: str | None
    user_id: str | None


def account(name: str, profile: str | None) -> str:
    """The keyring account of entry ``name`` (TOKEN_ACCOUNT, USER_ID_ACCOUNT) for ``profile``."""
    return f"{name}:{profile}" if profile else name


def _find_keyring() -> tuple[Any, None] | tuple[None, ConfigError]:
    """The keyring module when a backend that keeps what it is given is configured, else why not."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return None, ConfigError(KEYRING_MISSING)
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a broken backend configuration is a missing keyring to us
        return None, _failure(exc)
    # `fail` raises on every call and `null` silently forgets: neither keeps a token.
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None, ConfigError(
            "no system keyring is available",
            hint="use a desktop session with a keyring, or " + _INSTEAD,
        )
    return keyring, None


def _required_keyring() -> Any:
    keyring, problem = _find_keyring()
    if problem is not None:
        raise problem
    return keyring


def _failure(exc: Exception) -> ConfigError:
    # The type only: a backend's message may quote what it was asked to store.
    return ConfigError(f"the system keyring did not work ({type(exc).__name__}); {_INSTEAD}")


def available() -> bool:
    """Whether a keyring that keeps what it is given is there (setup offers it then)."""
    return _find_keyring()[0] is not None


def load(profile: str | None) -> StoredSession | None:
    """The profile's stored session, or None: nothing stored, or no usable keyring."""
    keyring, _ = _find_keyring()
    if keyring is None:
        return None
    try:
        token: Any = keyring.get_password(SERVICE, account(TOKEN_ACCOUNT, profile))
        user_id: Any = keyring.get_password(SERVICE, account(USER_ID_ACCOUNT, profile))
    except Exception as exc:
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None
    token = token if isinstance(token, str) and token else None
    user_id = user_id if isinstance(user_id, str) and user_id else None
    if token is None and user_id is None:
        return None
    register_secret(token)
    return StoredSession(token, user_id)


def store(profile: str | None, token: str, user_id: str | None = None) -> None:
    """Keep the profile's token, and its user id when given (else the stored one stays)."""
    register_secret(token)
    keyring = _required_keyring()
    try:
        keyring.set_password(SERVICE, account(TOKEN_ACCOUNT, profile), token)
        if user_id:
            keyring.set_password(SERVICE, account(USER_ID_ACCOUNT, profile), user_id)
    except Exception as exc:  # keyring backends raise their own types
        raise _failure(exc) from None


def delete(profile: str | None) -> bool:
    """Forget the profile's token and user id; whether anything was stored."""
    keyring = _required_keyring()
    removed = False
    for name in (TOKEN_ACCOUNT, USER_ID_ACCOUNT):
        try:
            keyring.delete_password(SERVICE, account(name, profile))
        except keyring.errors.PasswordDeleteError:
            continue  # this one was not stored
        except Exception as exc:
            raise _failure(exc) from None
        removed = True
    return removed
