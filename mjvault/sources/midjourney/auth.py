"""Where the Midjourney session comes from: the environment, a cookies.txt file, the keyring.

Order of precedence (most explicit first): a cookies.txt file given with ``--cookies``
that holds a session cookie; else ``MIDJOURNEY_SESSION_TOKEN``; else the system keyring
(``mjvault auth login``, :mod:`mjvault.credentials`). The user id comes from
``MIDJOURNEY_USER_ID`` or the keyring. The browser's own cookie store
(``--cookies-from-browser``, read at every run) comes before all of these; the configuration
reads it (:func:`mjvault.config.resolve.client_settings`), which is the one place that knows
the setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mjvault import credentials
from mjvault.errors import ConfigError
from mjvault.sources.midjourney.generations import NEXT_AUTH_COOKIE, V3_ID_COOKIE
from mjvault.sources.midjourney.settings import (
    ENV_TOKEN,
    ENV_USER_ID,
    ClientSettings,
    Secret,
)

log = logging.getLogger("mjvault.sources.midjourney")

SESSION_COOKIES = (V3_ID_COOKIE, NEXT_AUTH_COOKIE)
MIDJOURNEY_DOMAIN = "midjourney.com"


# -- cookies.txt -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NetscapeCookie:
    """One line of a Netscape cookies.txt file (curl, wget, yt-dlp, gallery-dl, browser add-ons)."""

    domain: str
    include_subdomains: bool
    path: str
    secure: bool
    expires: int  # Unix time; 0 for a session cookie
    name: str
    value: Secret
    http_only: bool = False


HTTP_ONLY_PREFIX = "#HttpOnly_"


def _flag(text: str, line_number: int) -> bool:
    upper = text.strip().upper()
    if upper not in ("TRUE", "FALSE"):
        raise ValueError(f"line {line_number}: expected TRUE or FALSE, found {text!r}")
    return upper == "TRUE"


def parse_cookies_txt(text: str) -> list[NetscapeCookie]:
    """Cookies of a Netscape cookies.txt text. Malformed lines are skipped with a warning.

    Seven tab-separated fields: domain, include-subdomains flag, path, secure flag, expiry,
    name, value. ``#HttpOnly_`` before the domain marks an HttpOnly cookie; other lines that
    start with ``#`` are comments. The value is everything after the sixth tab.
    """
    cookies: list[NetscapeCookie] = []
    for number, line in enumerate(text.splitlines(), start=1):
        http_only = line.startswith(HTTP_ONLY_PREFIX)
        if http_only:
            line = line[len(HTTP_ONLY_PREFIX) :]
        elif line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t", 6)
        if len(fields) == 6:  # some exporters drop the tab before an empty value
            fields.append("")
        if len(fields) != 7:
            log.warning("cookies file line %d: not 7 tab-separated fields; skipped", number)
            continue
        domain, subdomains, path, secure, expires, name, value = fields
        try:
            cookie = NetscapeCookie(
                domain=domain.strip(),
                include_subdomains=_flag(subdomains, number),
                path=path,
                secure=_flag(secure, number),
                expires=int(expires.strip() or 0),
                name=name,
                value=Secret(value.rstrip("\r")),
                http_only=http_only,
            )
        except ValueError:
            log.warning("cookies file line %d: bad flag or expiry; skipped", number)
            continue
        cookies.append(cookie)
    return cookies


def format_cookies_txt(cookies: Iterable[NetscapeCookie]) -> str:
    """The cookies.txt text of ``cookies`` (the inverse of :func:`parse_cookies_txt`)."""
    lines = ["# Netscape HTTP Cookie File"]
    for c in cookies:
        prefix = HTTP_ONLY_PREFIX if c.http_only else ""
        lines.append(
            "\t".join(
                [
                    prefix + c.domain,
                    "TRUE" if c.include_subdomains else "FALSE",
                    c.path,
                    "TRUE" if c.secure else "FALSE",
                    str(c.expires),
                    c.name,
                    c.value.reveal(),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def domain_matches(cookie_domain: str, hosts: Iterable[str]) -> bool:
    """Whether a cookie of ``cookie_domain`` belongs to one of ``hosts`` (either way round)."""
    domain = cookie_domain.lstrip(".").lower()
    return any(domain == h or domain.endswith("." + h) or h.endswith("." + domain) for h in hosts)


def select_midjourney_cookies(
    cookies: Iterable[NetscapeCookie], extra_hosts: Iterable[str] = ()
) -> dict[str, Secret]:
    """The cookies of midjourney.com (and ``extra_hosts``, e.g. a self-hosted web base).

    Cookies of other sites in the same export are never sent anywhere.
    """
    hosts = [MIDJOURNEY_DOMAIN, *(h.lower() for h in extra_hosts if h)]
    selected: dict[str, Secret] = {}
    for cookie in cookies:
        if domain_matches(cookie.domain, hosts) and cookie.name:
            selected[cookie.name] = cookie.value
    return selected


def read_cookies_file(path: str | Path, extra_hosts: Iterable[str] = ()) -> dict[str, Secret]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read cookies file {path}: {exc.strerror}") from None
    cookies = parse_cookies_txt(text)
    if not cookies and text.strip():
        raise ConfigError(f"{path} is not a Netscape cookies.txt file (no cookie lines found)")
    selected = select_midjourney_cookies(cookies, extra_hosts)
    if not selected:
        raise ConfigError(f"{path} holds no midjourney.com cookies; export them while signed in")
    return selected


# -- credentials -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    token: Secret | None = None
    user_id: str | None = None
    cookies: Mapping[str, Secret] = field(default_factory=dict)
    source: str = "none"  # where the session came from: env, keyring, cookies file, none

    def apply(self, settings: ClientSettings) -> ClientSettings:
        """``settings`` with these credentials filled in where the settings have none."""
        cookies = {**self.cookies, **settings.extra_cookies}
        return settings.with_changes(
            token=settings.token or self.token,
            user_id=settings.user_id or self.user_id,
            extra_cookies=cookies,
        )


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN, "").strip()
    user_id = env.get(ENV_USER_ID, "").strip()
    return Credentials(
        token=Secret(token) if token else None,
        user_id=user_id or None,
        source="env" if token else "none",
    )


def resolve_credentials(
    *,
    environ: Mapping[str, str] | None = None,
    cookies_file: str | Path | None = None,
    extra_hosts: Iterable[str] = (),
    use_keyring: bool = True,
    profile: str | None = None,
) -> Credentials:
    """The session to use, by the precedence in the module doc; ``profile``'s keyring entries.
    The browser's cookie store is read by the configuration's ``client_settings`` alone
    (mjvault.config.resolve)."""
    env = credentials_from_env(environ)
    cookies = read_cookies_file(cookies_file, extra_hosts) if cookies_file else {}
    wanted = use_keyring and (env.token is None or env.user_id is None)
    stored = credentials.load(profile) if wanted else None
    user_id = env.user_id or (stored.user_id if stored else None)
    if any(name in cookies for name in SESSION_COOKIES):
        return Credentials(None, user_id, cookies, f"cookies file {cookies_file}")
    if env.token is not None:
        return Credentials(env.token, user_id, cookies, "env")
    if stored is not None and stored.token is not None:
        return Credentials(Secret(stored.token), user_id, cookies, "keyring")
    return Credentials(None, user_id, cookies, "none")
