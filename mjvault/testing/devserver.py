"""Running the fake Midjourney server standalone, for demos and manual testing of a sync."""

from __future__ import annotations

import threading
from collections.abc import Callable

from mjvault.testing.server import FakeMidjourney, ServerStats

# Variable names a client reads; the last two are the ones the original scripts used.
WEB_BASE_VARIABLE = "MJVAULT_WEB_BASE"
CDN_BASE_VARIABLE = "MJVAULT_CDN_BASE"
TOKEN_VARIABLE = "MIDJOURNEY_SESSION_TOKEN"
USER_ID_VARIABLE = "MIDJOURNEY_USER_ID"
# The fake site's token comes from here, never from argv (tokens stay out of process lists).
DEV_TOKEN_VARIABLE = "MJVAULT_DEV_SERVER_TOKEN"
DEFAULT_DEV_TOKEN = "test-token"


def connection_settings(server: FakeMidjourney) -> dict[str, str]:
    """What a client needs to talk to ``server``, keyed by environment variable name."""
    settings = {
        WEB_BASE_VARIABLE: server.web_base,
        CDN_BASE_VARIABLE: server.cdn_base,
        TOKEN_VARIABLE: server.token,
        USER_ID_VARIABLE: server.user_id,
    }
    if server.faults.cf_clearance:
        settings["MJVAULT_CF_CLEARANCE"] = server.faults.cf_clearance
    return settings


def export_lines(settings: dict[str, str]) -> list[str]:
    """``export NAME=value`` lines for a POSIX shell (values quoted if they need it)."""
    import shlex

    return [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]


def stats_summary(stats: ServerStats) -> dict[str, object]:
    return {
        "requests": stats.requests,
        "listing_requests": dict(stats.listing_requests),
        "media_requests": stats.media_requests,
        "bytes_sent": stats.bytes_sent,
        "statuses": {str(code): count for code, count in sorted(stats.statuses.items())},
        "rate_limited": stats.rate_limited,
        "server_errors": stats.server_errors,
        "dropped": stats.dropped,
        "short_bodies": stats.short_bodies,
        "not_found": stats.not_found,
        "auth_failures": stats.auth_failures,
        "challenges": stats.challenges,
        "jobs_added": stats.jobs_added,
    }


def serve_until_interrupted(
    server: FakeMidjourney,
    *,
    ready: Callable[[FakeMidjourney], None],
    stop: threading.Event | None = None,
) -> ServerStats:
    """Start ``server``, call ``ready`` once it listens, block until Ctrl-C or ``stop`` is set,
    then stop it and return its counters."""
    stop = stop or threading.Event()
    server.start()
    try:
        ready(server)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return server.stats
