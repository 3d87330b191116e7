"""Sending one message to each URL through Apprise, every URL in its own thread, all within
one deadline.

Apprise's own socket timeouts bound each request, but a service may make several (one per
recipient, a retry on 429), so the caller never waits on Apprise itself: it waits for the
threads until the deadline, and a URL still sending then counts as failed. Such a thread is
a daemon and ends with its socket timeout, or with the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.notify.messages import Message
from mjvault.notify.redaction import mask_url_parts, redact_url
from mjvault.redact import redact
from mjvault.reports import Report

log = logging.getLogger(__name__)

#: Seconds a notification may hold up its caller, all URLs together.
DEFAULT_TIMEOUT = 10.0

MISSING_APPRISE = "notifications need Apprise: pip install 'mjvault[notify]'"


@dataclass(frozen=True)
class NotifyResult(Report):
    """How sending to one URL went; ``url`` is redacted, ``error`` None when delivered."""

    url: str
    ok: bool
    error: str | None = None


def load_apprise() -> Any:
    """The apprise module, imported on first send (it takes ~0.2 s and most runs send none)."""
    try:
        import apprise
    except ImportError:
        raise MjvaultError(MISSING_APPRISE) from None
    # Apprise logs each failure its own way, at WARNING; mjvault writes one line a URL
    # instead (with Apprise's reason, which it keeps on its result). Its own lines reach
    # mjvault's (masking) handlers under -vv only.
    logging.getLogger("apprise").propagate = logging.getLogger().getEffectiveLevel() <= (
        logging.DEBUG
    )
    return apprise


def _send_one(apprise: Any, url: str, message: Message, socket_timeout: float) -> str | None:
    """Send to one URL; None when delivered, else why not (no secret in it)."""
    target = apprise.Apprise()
    if not target.add(url):
        return "not a notification URL Apprise knows (check the scheme and its parts)"
    for service in target:
        # Within the caller's deadline, whatever the service's own defaults (SMTP's 15 s).
        for name in ("socket_connect_timeout", "socket_read_timeout"):
            if getattr(service, name, 0) > socket_timeout:
                setattr(service, name, socket_timeout)
    delivered = target.notify(
        body=message.body, title=message.title, notify_type=message.kind.value
    )
    if delivered:
        return None
    reason = _apprise_reason(delivered)
    # The reason may quote the URL's topic or token, however short: masked part by part.
    return mask_url_parts(reason, url) if reason else _NOT_ACCEPTED


_NOT_ACCEPTED = "the service did not accept it or could not be reached"


def _apprise_reason(result: Any) -> str | None:
    """The last warning Apprise logged for this send, when it keeps them on its result (2.x
    does; 1.x answers a plain bool). Masked: such a line may name a host or quote a token."""
    lines = [
        entry.message
        for service in (result if hasattr(result, "__iter__") else ())
        for attempt in getattr(service, "attempts", ())
        for entry in getattr(attempt, "logs", ())
        if getattr(entry, "level", "") in ("WARNING", "ERROR") and getattr(entry, "message", None)
    ]
    return redact(str(lines[-1])) if lines else None


def send(urls: Sequence[str], message: Message, *, timeout: float) -> list[NotifyResult]:
    """Send ``message`` to every URL at once; each URL's result, in order, within ``timeout``
    seconds (a URL that has not answered by then is reported as failed)."""
    apprise = load_apprise()
    answers: dict[int, str | None] = {}

    def run(index: int, url: str) -> None:
        try:
            answers[index] = _send_one(apprise, url, message, max(0.5, timeout / 2))
        except Exception as exc:  # a plugin's bug must not reach the sync that called us
            answers[index] = mask_url_parts(redact(f"{type(exc).__name__}: {exc}"), url)

    threads = [
        threading.Thread(target=run, args=(i, url), name="mjvault-notify", daemon=True)
        for i, url in enumerate(urls)
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    results = []
    for index, url in enumerate(urls):
        if index not in answers:
            results.append(NotifyResult(redact_url(url), False, f"no answer within {timeout:g} s"))
        else:
            error = answers[index]
            results.append(NotifyResult(redact_url(url), error is None, error))
    return results
