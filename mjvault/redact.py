"""Masking secrets out of text that leaves the process: log lines, tracebacks, error messages.

Two nets. Known values (the session token and cookie values the configuration holds) are
registered and replaced wherever they appear. Things that merely look like credentials — a
session cookie in a ``name=value`` pair, a bearer header, a JWT — are masked by pattern, which
catches tokens the configuration never saw (say, in a server's answer quoted by an exception).
"""

from __future__ import annotations

import re
import threading

MASK = "***"

# Cookie and header names whose value is a credential. Kept broad on purpose.
_SECRET_NAMES = (
    r"__Secure-next-auth\.session-token",
    r"__Host-Midjourney\.AuthUserTokenV3_[ir]",
    r"cf_clearance",
    r"[\w.-]*session[-_]?token",
    r"[\w.-]*auth[\w.-]*token[\w.-]*",
    r"MIDJOURNEY_SESSION_TOKEN",
    r"MJVAULT_PASSPHRASE",
)
_NAME_VALUE = re.compile(
    r"(?P<name>" + "|".join(_SECRET_NAMES) + r")(?P<sep>\s*[=:]\s*['\"]?)(?P<value>[^;,\s'\"&]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<name>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
# A JSON Web Token: three base64url parts, the first an encoded '{"'.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")

# Values shorter than this are not registered: masking "1" or "abc" everywhere would mangle logs
# and shows nothing a short value could leak.
_MIN_SECRET = 6

_lock = threading.Lock()
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in text passed through :func:`redact` from now on."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _known.add(value)


def forget_secrets() -> None:
    with _lock:
        _known.clear()


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-looking values replaced by ``***``."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # longest first: no partial leftovers
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _NAME_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['name']}{MASK}", text)
    return _JWT.sub(MASK, text)
