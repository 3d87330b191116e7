"""The Midjourney cookies as the local browser holds them right now (``--cookies-from-browser``).

Read at every run, so a scheduled sync sends the cookie the browser last renewed instead of the
one copied by hand weeks ago. The reading itself (finding the profile, copying the cookie
database the browser keeps open, decrypting Chromium's v10/v11 values with the OS keyring,
Firefox's plain store) is yt-dlp's cookie module: docs/design.md, "Credentials that renew".

A spec is ``BROWSER[+KEYRING][:PROFILE]``: ``chromium``, ``chrome:Profile 1``,
``firefox:/home/me/.mozilla/firefox/abcd.default``, ``chrome+gnomekeyring``. PROFILE is a
profile name, or a path (anything with a path separator) to a user-data dir or a profile dir.
Every failure is one line that says what to do: a :class:`ConfigError` for a spec, profile or
extractor the user must fix, a :class:`BrowserSignedOut` (an :class:`AuthError`) for a profile
that holds no session any more. No cookie value is ever logged.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjvault.errors import AuthError, ConfigError
from mjvault.sources.midjourney.auth import MIDJOURNEY_DOMAIN, SESSION_COOKIES, domain_matches
from mjvault.sources.midjourney.settings import Secret

log = logging.getLogger("mjvault.sources.midjourney")

BROWSERS = ("chrome", "chromium", "edge", "brave", "firefox")
KEYRINGS = ("basictext", "gnomekeyring", "kwallet", "kwallet5", "kwallet6")
MISSING = "--cookies-from-browser needs the optional yt-dlp package: pip install 'mjvault[browser]'"
# Chromium stores expiry as microseconds since 1601-01-01, Firefox as Unix seconds.
_CHROME_EPOCH_OFFSET = 11_644_473_600


class BrowserSignedOut(AuthError):
    """The profile was read but holds no Midjourney session (signed out, or it expired).

    A refused session like any other (exit 1, the watch's long wait): the profile itself is
    right, only a sign-in there renews it.
    """


@dataclass(frozen=True)
class BrowserSpec:
    browser: str
    profile: str | None = None
    keyring: str | None = None

    @property
    def is_path(self) -> bool:
        return self.profile is not None and (os.sep in self.profile or "/" in self.profile)

    def __str__(self) -> str:
        text = self.browser + (f"+{self.keyring}" if self.keyring else "")
        return text + (f":{self.profile}" if self.profile else "")


def parse_spec(text: str) -> BrowserSpec:
    """``BROWSER[+KEYRING][:PROFILE]``; a wrong name is one line listing the right ones."""
    head, _, profile = text.strip().partition(":")
    browser, _, keyring = head.partition("+")
    browser, keyring = browser.strip().lower(), keyring.strip().lower()
    if browser not in BROWSERS:
        raise ConfigError(
            f"unknown browser {browser!r} for --cookies-from-browser; use one of "
            f"{', '.join(BROWSERS)} (optionally :PROFILE)"
        )
    if keyring and keyring not in KEYRINGS:
        raise ConfigError(f"unknown keyring {keyring!r}; use one of {', '.join(KEYRINGS)}")
    if keyring and browser == "firefox":
        raise ConfigError("firefox keeps its cookies unencrypted: drop the +KEYRING part")
    profile = profile.strip()
    if profile.startswith("~"):
        profile = os.path.expanduser(profile)
    return BrowserSpec(browser, profile or None, keyring.upper() or None)


class _CollectingLogger:
    """yt-dlp's logger interface; keeps its warnings to explain an empty result, prints nothing."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.undecrypted = 0

    def debug(self, message: str, only_once: bool = False) -> None:
        log.debug("browser cookies: %s", message)

    def info(self, message: str) -> None:
        # "Extracted 12 cookies from chrome (3 could not be decrypted)"
        if "could not be decrypted" in message:
            digits = message.rsplit("(", 1)[-1].split()[0]
            self.undecrypted = int(digits) if digits.isdigit() else 1
        log.debug("browser cookies: %s", message)

    def warning(self, message: str, only_once: bool = False) -> None:
        self.warnings.append(message)
        log.debug("browser cookies: %s", message)

    def error(self, message: str) -> None:
        self.warnings.append(message)
        log.debug("browser cookies: %s", message)

    def progress_bar(self) -> None:
        return None


def _extractor() -> Any:
    try:
        from yt_dlp.cookies import extract_cookies_from_browser
    except ImportError:
        raise ConfigError(MISSING) from None
    return extract_cookies_from_browser


def _check_profile(spec: BrowserSpec) -> None:
    """A profile path that does not exist is the user's typo, not "no cookies"."""
    if spec.is_path and spec.profile is not None and not Path(spec.profile).exists():
        raise ConfigError(f"no {spec.browser} profile at {spec.profile}; check the path")


def _unix_expiry(expires: int | None) -> float | None:
    if not expires:
        return None
    if expires > 10**14:  # Chromium's microseconds since 1601
        return expires / 1_000_000 - _CHROME_EPOCH_OFFSET
    return float(expires)


def _hosts(web_host: str) -> list[str]:
    host = web_host.lower()
    if host == MIDJOURNEY_DOMAIN or host.endswith("." + MIDJOURNEY_DOMAIN):
        return [MIDJOURNEY_DOMAIN]
    return [host]


def select_cookies(
    cookies: Iterable[Any], web_host: str, *, now: float | None = None
) -> dict[str, Secret]:
    """The unexpired cookies of the web API's host (``http.cookiejar.Cookie``-like objects)."""
    hosts = _hosts(web_host)
    moment = time.time() if now is None else now
    selected: dict[str, Secret] = {}
    for cookie in cookies:
        expiry = _unix_expiry(cookie.expires)
        if expiry is not None and expiry < moment:
            continue
        if cookie.name and cookie.value is not None and domain_matches(cookie.domain, hosts):
            selected[cookie.name] = Secret(cookie.value)
    return selected


def check_spec(spec_text: str) -> BrowserSpec:
    """What can be checked without reading cookies: the spec, the extractor, a profile path.
    A long-running caller (the watch) checks once: these the user must fix, no retry will."""
    spec = parse_spec(spec_text)
    _extractor()
    _check_profile(spec)
    return spec


def renewal_hint(spec_text: str) -> str:
    """What to do when the cookie read from this browser is refused."""
    spec = parse_spec(spec_text)
    return (
        f"open Midjourney in {spec.browser} (the profile of --cookies-from-browser {spec}) "
        "while signed in, so that it renews the cookie, then rerun; or sign in there again"
    )


def read_browser_cookies(spec_text: str, web_host: str) -> dict[str, Secret]:
    """The browser's cookies for ``web_host`` (e.g. www.midjourney.com); at least a session one."""
    spec = parse_spec(spec_text)
    extract = _extractor()
    _check_profile(spec)
    logger = _CollectingLogger()
    try:
        jar = extract(spec.browser, spec.profile, logger, keyring=spec.keyring)
    except FileNotFoundError:
        where = f"profile {spec.profile!r}" if spec.profile else "its default profile"
        raise ConfigError(
            f"no {spec.browser} cookie database in {where}; is {spec.browser} installed and "
            "used there? Name the profile (BROWSER:PROFILE) or give its directory"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"cannot read {spec.browser}'s cookie database (locked or not yours); close "
            f"{spec.browser} and try again"
        ) from None
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot read {spec.browser}'s cookie database ({exc}); close {spec.browser} "
            "and try again"
        ) from None
    except Exception as exc:  # yt-dlp's own errors (DownloadError, ...) carry no cookie values
        raise ConfigError(
            f"cannot read {spec.browser}'s cookies: {str(exc).splitlines()[0]}"
        ) from None
    selected = select_cookies(jar, web_host)
    if any(name in selected for name in SESSION_COOKIES):
        log.debug("browser cookies: %d cookies of %s from %s", len(selected), web_host, spec)
        return selected
    if logger.undecrypted or any("decrypt" in w or "keyring" in w for w in logger.warnings):
        raise ConfigError(
            f"{logger.undecrypted or 'some'} {spec.browser} cookies could not be decrypted: "
            "unlock the desktop keyring (sign in to the desktop session) or name it, e.g. "
            f"--cookies-from-browser {spec.browser}+gnomekeyring or +kwallet5"
        )
    raise BrowserSignedOut(
        f"{spec} holds no session cookie for {web_host}; sign in to Midjourney in that "
        "browser profile (or run `mjvault auth login --browser`)"
    )
