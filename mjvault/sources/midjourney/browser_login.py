"""Sign in with the system's own Chromium or Chrome and take the session cookie it receives.

Playwright drives the browser already installed (``executable_path``), never one it would
download: the user signs in to Midjourney (Discord, Google) in a window of a browser they know,
in a fresh user-data dir that is removed afterwards, while this module waits for the session
cookie to appear. The user id comes from the page's ``__NEXT_DATA__`` when it has one.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjvault.errors import ConfigError, SourceError
from mjvault.interrupts import signals_interrupt
from mjvault.sources.midjourney.auth import SESSION_COOKIES
from mjvault.sources.midjourney.settings import Secret

log = logging.getLogger("mjvault.sources.midjourney")

# next-auth's sign-in page, where the site sends a browser whose session is gone.
SIGNIN_PATH = "/api/auth/signin"
# The quiet flags of the project's other browser runs: no update checks, no sync, no GPU.
LAUNCH_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
]
MISSING = "--browser needs the optional playwright package: pip install 'mjvault[browser]'"
POLL_SECONDS = 0.25

_UNIX_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "microsoft-edge",
    "brave-browser",
)
_MAC_PATHS = (
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
    "/Applications/Brave Browser.app/Contents/MacOS/Brave Browser",
)
_WINDOWS_PATHS = (
    r"%ProgramFiles%\Google\Chrome\Application\chrome.exe",
    r"%ProgramFiles(x86)%\Google\Chrome\Application\chrome.exe",
    r"%LocalAppData%\Google\Chrome\Application\chrome.exe",
    r"%ProgramFiles(x86)%\Microsoft\Edge\Application\msedge.exe",
    r"%ProgramFiles%\Microsoft\Edge\Application\msedge.exe",
)


@dataclass(frozen=True)
class BrowserSession:
    token: Secret
    cookie_name: str
    user_id: str | None


def find_browser(explicit: str | None = None) -> str:
    """The system browser to open: ``explicit``, else the first Chromium-family one found."""
    if explicit:
        found = shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
        if found is None:
            raise ConfigError(f"no browser at {explicit}; give the path of chromium or chrome")
        return found
    for name in _UNIX_NAMES:
        found = shutil.which(name)
        if found:
            return found
    candidates = _MAC_PATHS if sys.platform == "darwin" else ()
    if sys.platform == "win32":
        candidates = tuple(os.path.expandvars(p) for p in _WINDOWS_PATHS)
    for path in candidates:
        if Path(path).is_file():
            return path
    raise ConfigError(
        "found no Chromium, Chrome, Edge or Brave; install one or give --browser-path PATH"
    )


def check_installed() -> None:
    """Raise the one-line ConfigError when Playwright is missing (before telling the user
    to sign in in a window that will never open)."""
    _sync_playwright()


class _DriverGone(logging.Filter):
    """Drops asyncio's "Future exception was never retrieved" about the Playwright driver:
    Ctrl-C in a terminal reaches the driver too, and a future it left is reported when
    collected. The sign-in was stopped on purpose; that line would only alarm."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = f"{record.getMessage()} {error or ''}"
        return "Connection closed while reading from the driver" not in text


@contextmanager
def _driver_exit_quiet() -> Iterator[None]:
    # The filter stays for the rest of the process: a dead driver's future may be collected
    # only at interpreter exit, after any block this could wrap has ended.
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _DriverGone) for f in asyncio_log.filters):
        asyncio_log.addFilter(_DriverGone())
    try:
        yield
    finally:
        gc.collect()  # report the dead driver's futures now, where it is certain to be quiet


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ConfigError(MISSING) from None
    return sync_playwright


def _session_cookie(cookies: list[dict[str, Any]]) -> tuple[str, str] | None:
    by_name = {c.get("name"): c.get("value") for c in cookies}
    for name in SESSION_COOKIES:  # the newest generation's first
        value = by_name.get(name)
        if value:
            return name, str(value)
    return None


_NEXT_DATA_SCRIPT = (
    "() => { const e = document.getElementById('__NEXT_DATA__'); return e ? e.textContent : null; }"
)


def _user_id_from_pages(context: Any) -> str | None:
    """``props.initialAuthUser.midjourney_id`` of an open page's ``__NEXT_DATA__``, if any."""
    for page in context.pages:
        try:
            page.wait_for_load_state("load", timeout=5000)
            text = page.evaluate(_NEXT_DATA_SCRIPT)
        except Exception:  # the page navigated or closed meanwhile: no id from it
            continue
        if not text:
            continue
        try:
            user = json.loads(text).get("props", {}).get("initialAuthUser") or {}
        except (ValueError, AttributeError):
            continue
        user_id = user.get("midjourney_id") if isinstance(user, dict) else None
        if isinstance(user_id, str) and user_id:
            return user_id
    return None


def login_in_browser(
    web_base: str,
    *,
    executable: str,
    timeout: float = 300.0,
    headless: bool = False,
    signin_query: str = "",
) -> BrowserSession:
    """Open the sign-in page, wait for the session cookie of ``web_base``, return it.

    Raises SourceError on timeout or when the user closes the browser first; Ctrl-C, SIGTERM
    and SIGHUP raise KeyboardInterrupt. The temporary profile is removed in every case.
    """
    sync_playwright = _sync_playwright()
    url = web_base.rstrip("/") + SIGNIN_PATH + (f"?{signin_query}" if signin_query else "")
    profile = tempfile.mkdtemp(prefix="mjvault-signin-")
    # SIGTERM and SIGHUP (a closed terminal) stop it like Ctrl-C: the profile, whose cookie
    # store holds the new session, is removed by the ``finally`` below instead of left behind.
    try:
        with _driver_exit_quiet(), signals_interrupt(), sync_playwright() as playwright:
            try:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=executable, headless=headless, args=LAUNCH_ARGS
                )
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise SourceError(f"could not start {executable}: {first}") from None
            try:
                return _wait_for_session(context, url, web_base, timeout)
            finally:
                try:
                    context.close()
                except Exception:  # already closed by the user
                    log.debug("browser context already closed")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_session(context: Any, url: str, web_base: str, timeout: float) -> BrowserSession:
    closed: list[bool] = []
    context.on("close", lambda _context: closed.append(True))
    page = context.pages[0] if context.pages else context.new_page()
    try:
        # "commit": the page is the user's from here on; a slow sign-in page is no error.
        page.goto(url, wait_until="commit")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"could not open the sign-in page {url}: {first}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if closed:
            raise SourceError("the browser was closed before the sign-in finished")
        try:
            found = _session_cookie(context.cookies(web_base))
        except Exception:  # the user closed the last window between two polls
            raise SourceError("the browser was closed before the sign-in finished") from None
        if found is not None:
            name, value = found
            return BrowserSession(Secret(value), name, _user_id_from_pages(context))
        _pause(context)
    raise SourceError(
        f"no Midjourney session cookie after {timeout:.0f} s; sign in within the time, "
        "or raise it with --timeout"
    )


def _pause(context: Any) -> None:
    """Wait one poll interval; through Playwright when a page is open, so that its events
    (navigation, the window closing) are handled meanwhile."""
    if context.pages:
        try:
            context.pages[0].wait_for_timeout(POLL_SECONDS * 1000)
            return
        except Exception:  # the page went away during the wait
            log.debug("page closed while waiting for the sign-in")
    time.sleep(POLL_SECONDS)
