"""How the Midjourney client behaves: where it connects, who it claims to be, how polite it is.

Everything a user or a test may need to change is one field here, so the rest of the package
never reads the environment itself. Secrets are wrapped in :class:`Secret`, whose text form is
``***``: a settings object can be logged or shown in a traceback without leaking the token.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mjvault.config.types import parse_host
from mjvault.errors import ConfigError

ApiGeneration = Literal["v1", "v2", "v3", "auto"]
API_CHOICES: tuple[str, ...] = ("auto", "v3", "v2", "v1")

DEFAULT_WEB_BASE = "https://www.midjourney.com"
DEFAULT_CDN_BASE = "https://cdn.midjourney.com"
# Hosts an image download may be redirected to, besides the CDN base's own host (always
# allowed): Midjourney's real CDN, so a mirror or proxy in cdn_base may hand over to it.
DEFAULT_CDN_HOSTS: tuple[str, ...] = ("cdn.midjourney.com",)

# A current desktop Chrome on Windows. Cloudflare and the CDN turn away clients that do not look
# like a browser; when a `cf_clearance` cookie is used, the User-Agent must be the exact one of
# the browser it came from (--user-agent / MJVAULT_USER_AGENT), since Cloudflare binds the two.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)

ENV_TOKEN = "MIDJOURNEY_SESSION_TOKEN"
ENV_USER_ID = "MIDJOURNEY_USER_ID"
ENV_WEB_BASE = "MJVAULT_WEB_BASE"
ENV_CDN_BASE = "MJVAULT_CDN_BASE"
ENV_API = "MJVAULT_MIDJOURNEY_API"
ENV_USER_AGENT = "MJVAULT_USER_AGENT"
ENV_CF_CLEARANCE = "MJVAULT_CF_CLEARANCE"

CF_CLEARANCE_COOKIE = "cf_clearance"


class Secret:
    """A string that never shows itself: ``repr``, ``str`` and ``format`` all give ``***``.

    Only :meth:`reveal` gives the value, so every place that sends it is easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        # Pickling would write the value into whatever file or pipe receives the pickle.
        raise TypeError("a Secret cannot be pickled")


def as_secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def _check_cookie_value(name: str, value: Secret | None) -> None:
    """Refuse a value HTTP cannot carry, before an HTTP library quotes it in an error."""
    if value is None:
        return
    text = value.reveal()
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == ";" for ch in text):
        raise ConfigError(
            f"the {name} holds spaces, line breaks or other characters a cookie cannot carry; "
            "copy the cookie's value again, without quotes or surrounding text"
        )


def check_host(entry: str) -> str:
    """``host`` or ``host:port``, lower case; ConfigError for anything else."""
    try:
        return parse_host(entry)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class ClientSettings:
    """Every knob of :class:`~mjvault.sources.midjourney.client.MidjourneyClient`."""

    web_base: str = DEFAULT_WEB_BASE
    cdn_base: str = DEFAULT_CDN_BASE
    # `host` or `host:port` an image request may be redirected to (cdn_base's host always is).
    cdn_hosts: tuple[str, ...] = DEFAULT_CDN_HOSTS
    api: ApiGeneration = "auto"
    user_id: str | None = None
    # Sent as the session cookie of the listing generation in use (see generations.py).
    token: Secret | None = None
    # Cookies sent with every API request as they are: `cf_clearance`, a refresh cookie, or a
    # generation's own session cookie read from a cookies.txt file.
    extra_cookies: Mapping[str, Secret] = field(default_factory=dict)
    # What a refused session tells the user to do, when the cookie has a known source that
    # renews it (a browser profile); None: copy a fresh cookie by hand.
    session_renewal: str | None = None
    user_agent: str = DEFAULT_USER_AGENT
    max_rps: float = 2.0  # requests per second over all threads (token bucket)
    burst: int = 4  # requests allowed back to back before max_rps applies
    limit_rate: float | None = None  # download bytes per second over all threads; None = no limit
    concurrency: int = 4  # downloads at once; sizes the connection pool
    timeout: float = 30.0  # seconds for connect and for each read
    max_retries: int = 5  # further attempts of one request after the first
    backoff_base: float = 1.0  # first retry waits up to this many seconds (full jitter)
    backoff_cap: float = 60.0  # no single retry waits longer than this
    max_retry_after: float = 300.0  # a 429 asking to wait longer than this fails instead
    breaker_threshold: int = 10  # failures in a row (all threads) that stop the client
    breaker_cooldown: float = 60.0  # seconds the stopped client refuses before one trial request
    page_size: int = 0  # 0 = each generation's own default (v1: 50, v2/v3: 1000)
    # The largest API answer read (a 1,000-job page is 1-5 MB): memory stays bounded whatever
    # a server sends. Config: sync.max_page_bytes.
    max_page_bytes: int = 16 * 1024 * 1024
    http2: bool | None = None  # None = use HTTP/2 when the `h2` package is installed

    def __post_init__(self) -> None:
        # Accept plain strings for convenience; store them wrapped so repr never shows them.
        object.__setattr__(self, "token", as_secret(self.token))
        cookies = {name: as_secret(value) for name, value in dict(self.extra_cookies).items()}
        object.__setattr__(self, "extra_cookies", cookies)
        _check_cookie_value("session token", self.token)
        for name, value in cookies.items():
            _check_cookie_value(f"cookie {name}", value)
        object.__setattr__(self, "web_base", self.web_base.rstrip("/"))
        object.__setattr__(self, "cdn_base", self.cdn_base.rstrip("/"))
        object.__setattr__(self, "cdn_hosts", tuple(check_host(h) for h in self.cdn_hosts))
        if self.api not in API_CHOICES:
            raise ConfigError(
                f"unknown Midjourney API generation {self.api!r}; use one of "
                + ", ".join(API_CHOICES)
            )
        for name in ("max_rps", "timeout", "concurrency"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.limit_rate is not None and self.limit_rate <= 0:
            raise ConfigError(f"limit_rate must be positive or None, not {self.limit_rate!r}")
        if self.max_page_bytes <= 0:
            raise ConfigError(f"max_page_bytes must be positive, not {self.max_page_bytes!r}")
        if self.max_retries < 0 or self.breaker_threshold < 1 or self.page_size < 0:
            raise ConfigError("max_retries, breaker_threshold and page_size must not be negative")

    def with_changes(self, **changes: Any) -> ClientSettings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
        """Settings from the documented environment variables; ``overrides`` win over them."""
        values = settings_values_from_env(os.environ if environ is None else environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def settings_values_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ClientSettings fields the environment sets (only those it sets)."""
    values: dict[str, Any] = {}
    if environ.get(ENV_TOKEN, "").strip():
        values["token"] = Secret(environ[ENV_TOKEN].strip())
    if environ.get(ENV_USER_ID, "").strip():
        values["user_id"] = environ[ENV_USER_ID].strip()
    if environ.get(ENV_WEB_BASE, "").strip():
        values["web_base"] = environ[ENV_WEB_BASE].strip()
    if environ.get(ENV_CDN_BASE, "").strip():
        values["cdn_base"] = environ[ENV_CDN_BASE].strip()
    if environ.get(ENV_API, "").strip():
        values["api"] = environ[ENV_API].strip().lower()
    if environ.get(ENV_USER_AGENT, "").strip():
        values["user_agent"] = environ[ENV_USER_AGENT].strip()
    if environ.get(ENV_CF_CLEARANCE, "").strip():
        values["extra_cookies"] = {CF_CLEARANCE_COOKIE: Secret(environ[ENV_CF_CLEARANCE].strip())}
    return values
