"""A Midjourney-compatible HTTP server on 127.0.0.1, serving a generated :class:`Account`.

One port serves both hosts: the web API at ``web_base`` (``http://127.0.0.1:PORT``) and the
CDN under the prefix ``/cdn`` (``cdn_base`` = ``http://127.0.0.1:PORT/cdn``). Endpoints, cookies
and record shapes follow docs/testing-server.md and the API notes; fault knobs are in
:mod:`mjvault.testing.faults`.

Records carry the real hosts in ``image_paths`` (as the site does), so a client must map them
onto its configured CDN base; ``rewrite_image_urls=True`` points them at this server instead.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mjvault.testing.accounts import CDN_BASE, LEGACY_BUCKET_BASE, Account, GeneratedJob
from mjvault.testing.faults import Faults
from mjvault.testing.httpd import QuietHTTPServer
from mjvault.testing.scaled import ScaledAccount, ScaledListing

V1_SESSION_COOKIE = "__Secure-next-auth.session-token"
V3_SESSION_COOKIE = "__Host-Midjourney.AuthUserTokenV3_i"
CDN_PREFIX = "/cdn"
V1_MAX_AMOUNT = 50
V1_LISTING_CAP = 2500  # one recent-jobs listing ends here, whatever the account holds
V2_MAX_PAGE_SIZE = 10_000
NO_JOBS = [{"msg": "No jobs found."}]

LOGIN_PAGE = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Midjourney</title></head><body><div id="__next"><main>
<h1>Sign in</h1><a href="/api/auth/signin">Log in with Discord</a> <a href="/api/auth/signin">
Continue with Google</a></main></div></body></html>
"""

# The sign-in page: its form (a click, as after Discord or Google sign-in) sets the session
# cookies for this host and redirects to /imagine. `?autosubmit=MS` submits it by itself after
# MS milliseconds, so a test can sign in a browser it does not drive.
SIGNIN_PATHS = ("/api/auth/signin", "/login")
SIGNIN_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Sign in - Midjourney</title></head><body><div id="__next"><main><h1>Sign in</h1>
<form id="signin" method="post" action="/api/auth/signin">
<button type="submit">Continue with Discord</button></form>{script}</main></div></body></html>
"""
AUTOSUBMIT_SCRIPT = (
    "<script>setTimeout(() => document.getElementById('signin').submit(), {delay});</script>"
)
IMAGINE_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Midjourney</title></head><body><div id="__next"><main>Imagine</main></div>
<script id="__NEXT_DATA__" type="application/json">{data}</script></body></html>
"""

CHALLENGE_PAGE = b"""<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body>
<div class="main-wrapper" role="main"><div class="main-content"><h1>www.midjourney.com</h1>
<h2>Verifying you are human. This may take a few seconds.</h2>
<noscript>Enable JavaScript and cookies to continue</noscript></div></div></body></html>
"""

_CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "mp4": "video/mp4"}


@dataclass
class ServerStats:
    """Counters for tests. Read them after the requests of interest have completed."""

    requests: int = 0
    api_requests: int = 0
    listing_requests: Counter[str] = field(default_factory=Counter)  # v1, v2, v3, v3-update
    media_requests: int = 0
    media_bytes_sent: int = 0
    bytes_sent: int = 0  # body bytes of every answer
    statuses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0  # 429s
    server_errors: int = 0  # injected 5xx
    dropped: int = 0
    short_bodies: int = 0
    not_found: int = 0
    auth_failures: int = 0
    challenges: int = 0
    html_pages: int = 0  # 200 login pages instead of JSON
    jobs_added: int = 0
    cut_images: int = 0  # answers cut short with an agreeing Content-Length
    redirects: int = 0  # CDN answers redirected elsewhere (redirect_images_to)
    stray_requests: int = 0  # paths neither the API nor the CDN serves (e.g. /etc/passwd)
    cdn_cookies: int = 0  # CDN requests that carried a Cookie header (the CDN needs none)

    def total_listing_requests(self) -> int:
        return sum(self.listing_requests.values())


class _Answer(Exception):
    """Raised inside a handler to answer immediately with this response."""

    def __init__(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}
        # A body generated while it is sent, without Content-Length (``oversized_page``).
        self.stream: Iterator[bytes] | None = None


def _json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> _Answer:
    body = json.dumps(data, ensure_ascii=False).encode()
    return _Answer(status, body, "application/json; charset=utf-8", headers)


def _encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _json_answer(400, {"error": "invalid cursor"}) from None
    if not isinstance(value, dict):
        raise _json_answer(400, {"error": "invalid cursor"})
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding at the boundaries)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _parse_from_date(text: str) -> int:
    """``fromDate`` as microseconds since the epoch; v1 form or ISO 8601, UTC if unzoned."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _json_answer(400, {"error": f"invalid fromDate {text!r}"}) from None
    return _micros(moment)


class _ListingIndex:
    """The account's jobs in listing order with their times, rebuilt when jobs are added."""

    def __init__(self, jobs: list[GeneratedJob]) -> None:
        self.all_jobs = jobs
        self.image_jobs = [job for job in jobs if not job.is_video]
        self._ascending_keys: dict[str, list[int]] = {}
        self._by_type: dict[str, list[GeneratedJob]] = {}

    def jobs(self, scope: str) -> list[GeneratedJob]:
        if scope == "all":
            return self.all_jobs
        if scope == "images":
            return self.image_jobs
        if scope not in self._by_type:  # a v1 jobType filter
            self._by_type[scope] = [
                job
                for job in self.image_jobs
                if job.record_v1()["type"] == scope or job.record_v1().get("_job_type") == scope
            ]
        return self._by_type[scope]

    def _keys(self, scope: str) -> list[int]:
        # Newest first means descending times: negated, they ascend, as bisect wants.
        if scope not in self._ascending_keys:
            self._ascending_keys[scope] = [-_micros(job.enqueue_time) for job in self.jobs(scope)]
        return self._ascending_keys[scope]

    def start_at_or_before(self, scope: str, micros: int) -> int:
        """Index of the first job (newest first) enqueued at or before ``micros``."""
        return bisect.bisect_left(self._keys(scope), -micros)

    def count_newer_than(self, scope: str, micros: int) -> int:
        """How many jobs were enqueued after ``micros`` (they lead the list)."""
        return bisect.bisect_left(self._keys(scope), -micros)


def _listing_index(account: Account | ScaledAccount) -> _ListingIndex | ScaledListing:
    # A scaled account answers listings from its indexes alone: no list of its jobs is built.
    if isinstance(account, ScaledAccount):
        return account.listing()
    return _ListingIndex(account.jobs)


class FakeMidjourney:
    """The fake site. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        account: Account | ScaledAccount,
        faults: Faults | None = None,
        *,
        token: str = "test-token",
        user_id: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rewrite_image_urls: bool = False,
        v1_listing_cap: int = V1_LISTING_CAP,
        cdn_prefix: str = CDN_PREFIX,
        max_page_size: int = V2_MAX_PAGE_SIZE,
    ) -> None:
        self.account = account
        self.token = token
        self.user_id = user_id or account.user_id
        self.rewrite_image_urls = rewrite_image_urls
        # Tests lower it to reach v1's re-anchoring without generating thousands of jobs.
        self.v1_listing_cap = v1_listing_cap
        # Where the CDN lives on this port: a mirror or proxy may put it under any path.
        self.cdn_prefix = "/" + cdn_prefix.strip("/")
        self._media_hits: Counter[str] = Counter()
        # v2/v3 clamp `page_size` to this: tests get several pages from a client asking 1,000.
        self.max_page_size = max_page_size
        self.stats = ServerStats()
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._error_rng = random.Random(self._faults.error_seed)
        self._fault_counter = 0
        self._jobs_scheduled_done = False
        self._index = _listing_index(account)
        self._index_size = len(account)
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeMidjourney:
        if self._httpd is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"app": self})
        httpd = QuietHTTPServer((self._host, self._requested_port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        # A short poll interval makes stop() quick: tests start and stop many servers.
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.02,), name="fake-midjourney", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        # Keep-alive connections would outlive the listener; a stopped site answers nothing.
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeMidjourney:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def web_base(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def cdn_base(self) -> str:
        return f"{self.web_base}{self.cdn_prefix}"

    # -- runtime control ---------------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        with self._lock:
            self._faults = value
            self._error_rng = random.Random(value.error_seed)

    def add_jobs(self, count: int) -> list[GeneratedJob]:
        """New jobs appear at the top of every listing, as if made during a sync."""
        added = self.account.add_jobs(count)
        with self._lock:
            self.stats.jobs_added += len(added)
        return added

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = ServerStats()

    def cookies(self, generation: int = 1) -> dict[str, str]:
        """The cookies a client sends for listing ``generation`` (1, 2 or 3)."""
        name = V3_SESSION_COOKIE if generation == 3 else V1_SESSION_COOKIE
        cookies = {name: self.token}
        if self._faults.cf_clearance:
            cookies["cf_clearance"] = self._faults.cf_clearance
        return cookies

    # -- internals used by the handler -------------------------------------------------------
    def index(self) -> _ListingIndex | ScaledListing:
        with self._lock:
            if len(self.account) != self._index_size:
                self._index = _listing_index(self.account)
                self._index_size = len(self.account)
            return self._index

    def next_fault_count(self) -> tuple[int, float]:
        """The 1-based number of this fault-targeted request and its 5xx draw."""
        with self._lock:
            self._fault_counter += 1
            return self._fault_counter, self._error_rng.random()

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)

    def count_status(self, status: int, body_bytes: int) -> None:
        with self._lock:
            self.stats.statuses[status] += 1
            self.stats.bytes_sent += body_bytes

    def count_listing(self, endpoint: str) -> None:
        add = 0
        with self._lock:
            self.stats.listing_requests[endpoint] += 1
            faults = self._faults
            if (
                faults.add_jobs_count
                and not self._jobs_scheduled_done
                # The Kth listing is answered as it was; the next one sees the new jobs.
                and self.stats.total_listing_requests() > faults.add_jobs_after_listing_request
            ):
                self._jobs_scheduled_done = True
                add = faults.add_jobs_count
        if add:
            self.add_jobs(add)

    def track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def count_api_request(self) -> int:
        with self._lock:
            self.stats.api_requests += 1
            return self.stats.api_requests

    def is_missing(self, relative: str) -> bool:
        faults = self._faults
        stem = relative.rsplit(".", 1)[0]
        if any(path.rsplit(".", 1)[0] == stem for path in faults.missing_images):
            return True
        if faults.missing_fraction > 0:
            digest = hashlib.blake2b(f"missing:{stem}".encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") / 2**64 < faults.missing_fraction
        return False

    def is_cut(self, relative: str) -> bool:
        """Serve this file cut short (``cut_images`` / ``cut_fraction``) this time?"""
        faults = self._faults
        stem = relative.rsplit(".", 1)[0]
        chosen = any(path.rsplit(".", 1)[0] == stem for path in faults.cut_images)
        if not chosen and faults.cut_fraction > 0:
            digest = hashlib.blake2b(f"cut:{stem}".encode(), digest_size=8).digest()
            chosen = int.from_bytes(digest, "big") / 2**64 < faults.cut_fraction
        if not chosen:
            return False
        with self._lock:
            self._media_hits[relative] += 1
            hits = self._media_hits[relative]
        return not faults.cut_first_requests or hits <= faults.cut_first_requests

    def image_url(self, url: str) -> str:
        if not self.rewrite_image_urls:
            return url
        for base in (CDN_BASE, LEGACY_BUCKET_BASE):
            if url.startswith(base + "/"):
                return self.cdn_base + url[len(base) :]
        return url


class _Handler(BaseHTTPRequestHandler):
    app: FakeMidjourney
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "cloudflare"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.app.track_connection(self.connection, open_=True)

    def finish(self) -> None:
        self.app.track_connection(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # quiet: tests read stats, and URLs must not reach logs

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_POST(self) -> None:
        """The sign-in form: set the session cookies, as the real site does, then /imagine."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        app = self.app
        app.count(requests=1)
        if urlsplit(self.path).path not in SIGNIN_PATHS:
            self._send(
                _json_answer(404, {"error": "Not found"}),
                head=False,
                fault_mode=None,
                bandwidth=None,
            )
            return
        self.send_response(303)
        self.send_header("Location", "/imagine")
        self.send_header("Content-Length", "0")
        # Secure and __Host-/__Secure- names as on the real site: browsers accept them from
        # 127.0.0.1 (a potentially trustworthy origin) over plain HTTP.
        for name in (V3_SESSION_COOKIE, V1_SESSION_COOKIE):
            self.send_header(
                "Set-Cookie", f"{name}={app.token}; Path=/; Secure; HttpOnly; SameSite=Lax"
            )
        self.end_headers()

    # -- dispatch ----------------------------------------------------------------------------
    def _serve(self, *, head: bool) -> None:
        app = self.app
        app.count(requests=1)
        split = urlsplit(self.path)
        kind = "cdn" if split.path.startswith(app.cdn_prefix + "/") else "api"
        faults = app.faults
        if faults.latency > 0 and kind in faults.targets:
            time.sleep(faults.latency)
        try:
            fault_mode = self._transient_faults(kind, faults)
            if kind == "cdn":
                answer = self._cdn(split.path[len(app.cdn_prefix) + 1 :], faults)
            else:
                answer = self._api(split.path, parse_qs(split.query), faults)
        except _Answer as raised:
            answer, fault_mode = raised, None
        except Exception as error:  # a bug here must still answer, not hang the client
            answer, fault_mode = _json_answer(500, {"error": type(error).__name__}), None
        if kind == "api" and faults.api_sets_session_cookie and answer.status == 200:
            name = V3_SESSION_COOKIE if split.path.startswith("/api/imagine") else V1_SESSION_COOKIE
            answer.headers["Set-Cookie"] = f"{name}={app.token}; Path=/; HttpOnly"
        bandwidth = faults.bandwidth if kind in faults.targets else None
        self._send(answer, head=head, fault_mode=fault_mode, bandwidth=bandwidth)

    def _transient_faults(self, kind: str, faults: Faults) -> str | None:
        """429 and 5xx raise an answer; a drop or short body is returned to apply on send."""
        if kind not in faults.targets:
            return None
        number, draw = self.app.next_fault_count()
        every, burst = faults.rate_limit_every, max(1, faults.rate_limit_burst)
        if every > 0 and (number - 1) % every >= every - burst:
            self.app.count(rate_limited=1)
            headers = {"Retry-After": str(faults.retry_after)}
            raise _json_answer(429, {"error": "Too many requests"}, headers)
        if faults.error_rate > 0 and draw < faults.error_rate:
            self.app.count(server_errors=1)
            status = faults.error_status
            raise _Answer(status, b"<html><body>upstream error</body></html>", "text/html")
        if faults.drop_every > 0 and number % faults.drop_every == 0:
            return "drop"
        if faults.short_body_every > 0 and number % faults.short_body_every == 0:
            return "short"
        return None

    # -- sending -----------------------------------------------------------------------------
    def _send(
        self, answer: _Answer, *, head: bool, fault_mode: str | None, bandwidth: int | None
    ) -> None:
        if answer.stream is not None:
            self._send_stream(answer, head=head)
            return
        body = answer.body
        declared = len(body)
        if fault_mode == "short":
            declared = len(body) + max(1024, len(body) // 2)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(declared))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        if not head:
            payload = body
            if fault_mode == "drop":
                payload = body[: len(body) // 2]
            sent = self._write_body(payload, bandwidth)
            if fault_mode == "drop":
                self.app.count(dropped=1)
                self._reset_connection()
            elif fault_mode == "short":
                self.app.count(short_bodies=1)
                self.close_connection = True  # the client waits for bytes that never come
        self.app.count_status(answer.status, sent)
        if answer.content_type in _CONTENT_TYPES.values() and answer.status in (200, 206):
            self.app.count(media_bytes_sent=sent)

    def _send_stream(self, answer: _Answer, *, head: bool) -> None:
        """A body of unknown length: it ends when the connection closes (HTTP/1.1 allows it)."""
        assert answer.stream is not None
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        if not head:
            try:
                for chunk in answer.stream:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what a refusal looks like from here
        self.app.count_status(answer.status, sent)

    def _write_body(self, payload: bytes, bandwidth: int | None) -> int:
        try:
            if not bandwidth:
                self.wfile.write(payload)
                return len(payload)
            # Small slices with sleeps between them cap this connection's rate.
            step = max(1, bandwidth // 20)
            sent = 0
            for start in range(0, len(payload), step):
                chunk = payload[start : start + step]
                self.wfile.write(chunk)
                sent += len(chunk)
                time.sleep(len(chunk) / bandwidth)
            return sent
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return 0

    def _reset_connection(self) -> None:
        """Close with RST rather than FIN: what a dropped connection looks like to the peer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    # -- helpers -----------------------------------------------------------------------------
    def _cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.get_all("Cookie") or []:
            try:
                jar.load(header)
            except CookieError:
                continue
        return {name: morsel.value for name, morsel in jar.items()}

    # -- API ---------------------------------------------------------------------------------
    def _api(self, path: str, query: dict[str, list[str]], faults: Faults) -> _Answer:
        app = self.app
        if path in SIGNIN_PATHS:
            delay = _int_param(query, "autosubmit", -1, minimum=-1)
            script = AUTOSUBMIT_SCRIPT.format(delay=delay) if delay >= 0 else ""
            page = SIGNIN_PAGE.format(script=script).encode()
            return _Answer(200, page, "text/html; charset=utf-8")
        if path == "/imagine":
            return self._imagine_page()
        routes = {
            "/api/app/recent-jobs": (1, "v1"),
            "/api/app/recent-jobs/": (1, "v1"),
            "/api/pg/thomas-jobs": (2, "v2"),
            "/api/imagine": (3, "v3"),
            "/api/imagine-update": (3, "v3-update"),
        }
        if path not in routes:
            app.count(stray_requests=1)
            return _json_answer(404, {"error": "Not found"})
        generation, endpoint = routes[path]
        cookies = self._cookies()
        if faults.cf_clearance and cookies.get("cf_clearance") != faults.cf_clearance:
            app.count(challenges=1)
            headers = {"cf-mitigated": "challenge", "Cache-Control": "no-cache"}
            raise _Answer(403, CHALLENGE_PAGE, "text/html; charset=UTF-8", headers)
        number = app.count_api_request()
        self._check_auth(generation, cookies, number, faults)
        if generation == 3 and self.headers.get("x-csrf-protection") != "1":
            app.count(auth_failures=1)
            return _json_answer(401, {"error": "Missing CSRF protection header"})
        if faults.html_every > 0 and number % faults.html_every == 0:
            app.count(html_pages=1)
            return _Answer(200, LOGIN_PAGE, "text/html; charset=utf-8")
        app.count_listing(endpoint)
        user = _one(query, "userId" if generation == 1 else "user_id")
        if not user:
            return _json_answer(400, {"error": "missing user id"})
        if user != app.user_id:
            return _json_answer(403, {"error": "Forbidden"})
        if endpoint == "v1":
            return self._recent_jobs(query, faults)
        if endpoint == "v3-update":
            return self._imagine_update(query)
        return self._cursor_listing(generation, query, faults)

    def _imagine_page(self) -> _Answer:
        """The app's page; signed in, its ``__NEXT_DATA__`` names the user, as the real one does."""
        cookies = self._cookies()
        signed_in = self.app.token in (
            cookies.get(V3_SESSION_COOKIE),
            cookies.get(V1_SESSION_COOKIE),
        )
        user = {"midjourney_id": self.app.user_id} if signed_in else None
        data = json.dumps({"props": {"initialAuthUser": user}, "page": "/imagine"})
        return _Answer(200, IMAGINE_PAGE.format(data=data).encode(), "text/html; charset=utf-8")

    def _check_auth(
        self, generation: int, cookies: dict[str, str], number: int, faults: Faults
    ) -> None:
        name = V3_SESSION_COOKIE if generation == 3 else V1_SESSION_COOKIE
        expired = (
            faults.expired
            or (
                faults.expire_after_api_requests is not None
                and number > faults.expire_after_api_requests
            )
            or (faults.expire_at is not None and time.time() >= faults.expire_at)
        )
        if not expired and cookies.get(name) == self.app.token:
            return
        self.app.count(auth_failures=1)
        style = faults.auth_failure_style
        if style == "html403":
            raise _Answer(403, LOGIN_PAGE, "text/html; charset=utf-8")
        if style == "html200":
            raise _Answer(200, LOGIN_PAGE, "text/html; charset=utf-8")
        if style == "redirect":
            raise _Answer(307, b"", "text/plain", {"Location": "/api/auth/signin"})
        raise _json_answer(401, {"error": "Unauthorized", "message": "Not authenticated"})

    def _recent_jobs(self, query: dict[str, list[str]], faults: Faults) -> _Answer:
        amount = _int_param(query, "amount", 50, minimum=1)
        amount = min(amount, V1_MAX_AMOUNT)
        page = _int_param(query, "page", 1, minimum=1)
        job_type = _one(query, "jobType")
        scope = job_type if job_type else "images"
        index = self.app.index()
        jobs = index.jobs(scope)
        start = 0
        from_date = _one(query, "fromDate")
        if from_date:
            start = index.start_at_or_before(scope, _parse_from_date(from_date))
        offset = (page - 1) * amount
        cap = self.app.v1_listing_cap
        if offset >= cap:
            return _lie(_json_answer(200, NO_JOBS), page, 1, faults)
        stop = min(offset + amount, cap)
        selected = jobs[start + offset : start + stop]
        if not selected:
            return _lie(_json_answer(200, NO_JOBS), page, 1, faults)
        if page > 1 and faults.duplicate_records > 0:
            lead = start + offset
            selected = jobs[max(start, lead - faults.duplicate_records) : lead] + selected
        records: list[Any] = []
        for job in selected:
            record = job.record_v1()
            if job.id in faults.escaping_image_paths:
                base = record["image_paths"][0].rsplit("/", 2)[0]
                record["image_paths"].append(f"{base}/{job.id}/../../../etc/passwd")
            record["image_paths"] = [self.app.image_url(url) for url in record["image_paths"]]
            records.append(record)
        records.extend(range(1, faults.non_object_items + 1))
        return _lie(_json_answer(200, records), page, 1, faults)

    def _cursor_listing(
        self, generation: int, query: dict[str, list[str]], faults: Faults
    ) -> _Answer:
        page_size = min(_int_param(query, "page_size", 1000, minimum=1), self.app.max_page_size)
        scope = "all" if generation == 3 else "images"
        index = self.app.index()
        jobs = index.jobs(scope)
        cursor = _one(query, "cursor")
        if cursor:
            state = _decode_token(cursor)
            if state.get("g") != generation or not isinstance(state.get("o"), int):
                return _json_answer(400, {"error": "invalid cursor"})
            anchor, offset = int(state.get("a", 0)), int(state["o"])
        else:
            # The first page fixes the anchor: later pages skip jobs made since.
            anchor = _micros(jobs[0].enqueue_time) if jobs else 0
            offset = 0
        start = index.start_at_or_before(scope, anchor) if jobs else 0
        page = offset // page_size + 1
        listed, asked = len(jobs) - start, offset
        if faults.endless_cursors and listed > 0:
            # Starts over from the newest job instead of ending, under a cursor never seen.
            offset %= listed
        selected = jobs[start + offset : start + offset + page_size]
        if not selected:
            empty: dict[str, Any] = {"data": [], "cursor": None, "checkpoint": None}
            return _lie(_json_answer(200, empty), page, generation, faults)
        if offset > 0 and faults.duplicate_records > 0:
            lead = start + offset
            selected = jobs[max(start, lead - faults.duplicate_records) : lead] + selected
        data: list[Any] = [job.record(generation) for job in selected]
        if faults.lying_batch_size:
            for record in data:
                if record.get("batch_size") == 4 and not record.get("image_paths"):
                    record["batch_size"] = faults.lying_batch_size
        data.extend(range(1, faults.non_object_items + 1))
        next_cursor = _encode_token({"g": generation, "a": anchor, "o": asked + page_size})
        checkpoint = _encode_token({"t": anchor}) if generation == 3 else None
        answer = _json_answer(200, {"data": data, "cursor": next_cursor, "checkpoint": checkpoint})
        return _lie(answer, page, generation, faults)

    def _imagine_update(self, query: dict[str, list[str]]) -> _Answer:
        token = _one(query, "checkpoint")
        if not token:
            return _json_answer(400, {"error": "missing checkpoint"})
        state = _decode_token(token)
        if not isinstance(state.get("t"), int):
            return _json_answer(400, {"error": "invalid checkpoint"})
        page_size = min(_int_param(query, "page_size", 1000, minimum=1), V2_MAX_PAGE_SIZE)
        index = self.app.index()
        jobs = index.jobs("all")
        newer = index.count_newer_than("all", state["t"])
        selected = jobs[: min(newer, page_size)]
        newest = _micros(jobs[0].enqueue_time) if jobs else state["t"]
        data = [job.record_v3() for job in selected]
        return _json_answer(200, {"data": data, "checkpoint": _encode_token({"t": newest})})

    # -- CDN ---------------------------------------------------------------------------------
    def _cdn(self, relative: str, faults: Faults) -> _Answer:
        app = self.app
        app.count(media_requests=1)
        if self.headers.get("Cookie"):
            app.count(cdn_cookies=1)
        agent = self.headers.get("User-Agent") or ""
        if faults.cdn_requires_browser_ua and not agent.startswith("Mozilla/"):
            return _Answer(403, b"<html><body>Forbidden</body></html>", "text/html")
        if faults.cdn_requires_sec_fetch and not (
            self.headers.get("Sec-Fetch-Mode") and self.headers.get("Sec-Fetch-Dest")
        ):
            return _Answer(403, b"<html><body>Forbidden</body></html>", "text/html")
        if faults.redirect_images_to:
            app.count(redirects=1)
            location = f"{faults.redirect_images_to.rstrip('/')}/{relative}"
            return _Answer(302, b"", "text/plain", {"Location": location})
        data = None if app.is_missing(relative) else app.account.media_bytes(relative)
        if data is None:
            app.count(not_found=1)
            return _Answer(404, b"<?xml version='1.0'?><Error>NoSuchKey</Error>", "application/xml")
        if app.is_cut(relative):
            # The lie is consistent: length, ranges and 416s all describe the cut file.
            app.count(cut_images=1)
            data = data[: len(data) * 2 // 3]
        content_type = _CONTENT_TYPES[relative.rsplit(".", 1)[-1]]
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=31536000"}
        requested = self.headers.get("Range")
        if requested:
            span = _parse_range(requested, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return _Answer(416, b"", content_type, headers)
            first, last = span
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return _Answer(206, data[first : last + 1], content_type, headers)
        return _Answer(200, data, content_type, headers)


def _lie(answer: _Answer, page: int, generation: int, faults: Faults) -> _Answer:
    """Listing page ``page`` as a lying server sends it (the listing lies of :class:`Faults`)."""
    if faults.oversized_page:
        answer.stream = _oversized_listing(faults.oversized_page, bare=generation == 1)
    elif faults.truncated_page == page:
        answer.body = answer.body[: len(answer.body) // 2]
    elif faults.non_object_page == page:
        answer.body = b"{}" if generation == 1 else b"[]"
    return answer


def _oversized_listing(size: int, *, bare: bool) -> Iterator[bytes]:
    """About ``size`` bytes of valid listing JSON, generated as it is sent (never held whole)."""
    item = b'{"pad": "' + b"x" * 4000 + b'"},'
    chunk = item * 16
    yield b"[" if bare else b'{"data": ['
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)
    yield b'{"pad": ""}]' if bare else b'{"pad": ""}], "cursor": null}'


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0].strip() if values else None


def _int_param(query: dict[str, list[str]], name: str, default: int, *, minimum: int) -> int:
    text = _one(query, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _json_answer(400, {"error": f"invalid {name}"}) from None
    if value < minimum:
        raise _json_answer(400, {"error": f"invalid {name}"})
    return value


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=N-`` / ``bytes=N-M`` / ``bytes=-K`` -> inclusive span; None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, _, last_text = spec.strip().partition("-")
    try:
        if first_text == "":
            suffix = int(last_text)
            if suffix <= 0:
                return None
            return max(0, size - suffix), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)
