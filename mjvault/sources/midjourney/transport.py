"""The one HTTP connection pool of the client, with its manners and its fault handling.

Every request to Midjourney goes through :class:`Transport`: API requests wait for the request
bucket (``max_rps``; CDN downloads are bounded by the pool and ``limit_rate`` instead), sends browser-like headers, turns answers into either data, a retry, or one of
the errors in messages.py, and feeds the circuit breaker. Listing and downloading differ only in
what they do with a good answer.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from mjvault.errors import ConfigError, DownloadError, MjvaultError, SourceError
from mjvault.sources.midjourney import messages
from mjvault.sources.midjourney.ratelimit import TokenBucket
from mjvault.sources.midjourney.resilience import (
    CircuitBreaker,
    backoff_delay,
    parse_retry_after,
)
from mjvault.sources.midjourney.settings import ClientSettings, Secret

log = logging.getLogger("mjvault.sources.midjourney")

T = TypeVar("T")

# Answers worth another try: the server or something in front of it failed, not our request.
# 520-524 and 530 are Cloudflare's "origin unreachable" family.
RETRY_STATUSES = frozenset({408, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524, 530})
CHALLENGE_MARKERS = (b"Just a moment...", b"challenge-platform", b"cf-chl", b"cf_chl_opt")
MAX_CDN_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Retryable(Exception):
    """One attempt failed in a way the next attempt may not (internal to the retry loop)."""

    def __init__(self, problem: str, *, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class HtmlInsteadOfJson(Retryable):
    """A 200 page of HTML: a login page if it happens twice in a row, else a passing glitch."""


class EndpointMissing(SourceError):
    """The API path answered 404: this listing generation is not served there."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    content_type: str
    body: bytes
    url: str


def h2_available() -> bool:
    return importlib.util.find_spec("h2") is not None


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        kind = "could not connect"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        kind = "connection dropped"
    else:
        kind = "network error"
    detail = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{kind} ({type(exc).__name__}{': ' + detail if detail else ''})"


def is_challenge(headers: Mapping[str, str], body_start: bytes) -> bool:
    """Cloudflare's interstitial: said by a header, or recognisable in the page itself."""
    if headers.get("cf-mitigated", "").strip().lower() == "challenge":
        return True
    return any(marker in body_start for marker in CHALLENGE_MARKERS)


def looks_like_html(content_type: str, body_start: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    # JSON never starts with "<"; every HTML page (login, error, challenge) does.
    return body_start.lstrip().startswith(b"<")


def site_relation(page_url: str, resource_url: str) -> str:
    """The ``Sec-Fetch-Site`` a browser on ``page_url`` sends for ``resource_url``."""
    page, res = urlsplit(page_url), urlsplit(resource_url)
    if (page.scheme, page.netloc) == (res.scheme, res.netloc):
        return "same-origin"
    page_site = ".".join((page.hostname or "").split(".")[-2:])
    res_site = ".".join((res.hostname or "").split(".")[-2:])
    return "same-site" if page_site == res_site and page.scheme == res.scheme else "cross-site"


class CdnHosts:
    """The hosts image requests may go to: the CDN base's own, and ``cdn_hosts``.

    An entry without a port allows the default ports (80, 443) only, so the CDN base
    ``http://127.0.0.1:8080`` does not let a redirect reach another service on 127.0.0.1.
    """

    def __init__(self, cdn_base: str, extra: Iterable[str]) -> None:
        self._allowed: set[tuple[str, int | None]] = set()
        base = _host_and_port(cdn_base)
        if base is not None:
            self._allowed.add(base)
        for entry in extra:
            parts = urlsplit(f"//{entry}")
            if parts.hostname:
                self._allowed.add((parts.hostname, parts.port))

    def allows(self, url: str) -> bool:
        found = _host_and_port(url)
        if found is None:
            return False
        host, port = found
        default = port in _DEFAULT_PORTS.values()
        return (host, port) in self._allowed or (default and (host, None) in self._allowed)


def _host_and_port(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of an http(s) URL, the scheme's port if none is written; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS[parts.scheme]


class Redactor:
    """Replaces every known secret value in a text by ``***``: the last line of defence."""

    def __init__(self, secrets: Iterable[Secret | None]) -> None:
        self._values = sorted(
            {s.reveal() for s in secrets if s is not None and len(s.reveal()) >= 4},
            key=len,
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return text


class Transport:
    """A pooled, polite, fault-tolerant HTTP client for the Midjourney web API and CDN."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._rng = rng
        use_http2 = settings.http2 if settings.http2 is not None else h2_available()
        if use_http2 and not h2_available():
            raise ConfigError("HTTP/2 needs the `h2` package: pip install 'mjvault[http2]'")
        self.client = httpx.Client(
            http2=use_http2,
            # Waiting for a free connection of our own pool is not a network fault: no limit.
            timeout=httpx.Timeout(settings.timeout, pool=None),
            limits=httpx.Limits(
                max_connections=settings.concurrency + 2,
                max_keepalive_connections=settings.concurrency + 2,
            ),
            headers={
                "User-Agent": settings.user_agent,
                "Accept-Language": "en-US,en;q=0.9",
            },
            follow_redirects=False,
        )
        self.requests = TokenBucket(settings.max_rps, max(1.0, float(settings.burst)), sleep=sleep)
        # A quarter second of saved-up bytes: a limit that holds over any second of transfer.
        self.bytes: TokenBucket | None = (
            TokenBucket(settings.limit_rate, settings.limit_rate / 4, sleep=sleep)
            if settings.limit_rate
            else None
        )
        self.breaker = CircuitBreaker(
            settings.breaker_threshold,
            settings.breaker_cooldown,
            what=urlsplit(settings.web_base).netloc or settings.web_base,
        )
        self.redact = Redactor([settings.token, *settings.extra_cookies.values()])
        self.cdn_hosts = CdnHosts(settings.cdn_base, settings.cdn_hosts)

    def close(self) -> None:
        self.client.close()

    # -- headers ---------------------------------------------------------------------------
    def api_headers(
        self, cookies: Mapping[str, Secret], extra: Mapping[str, str]
    ) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/plain, */*",
            "Referer": f"{self.settings.web_base}/imagine",
            "Sec-Fetch-Dest": "empty",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "same-origin",
        }
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v.reveal()}" for k, v in cookies.items())
        headers.update(extra)
        return headers

    def cdn_headers(self, url: str, kind: str) -> dict[str, str]:
        if kind == "video":
            accept, dest = "*/*", "video"
        else:
            accept, dest = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "image"
        return {
            "Accept": accept,
            "Referer": f"{self.settings.web_base}/",
            "Sec-Fetch-Dest": dest,
            "Sec-Fetch-Mode": "no-cors",
            "Sec-Fetch-Site": site_relation(self.settings.web_base, url),
        }

    # -- the retry loop --------------------------------------------------------------------
    def with_retries(
        self,
        attempt_fn: Callable[[], T],
        *,
        what: str,
        give_up: type[SourceError] = SourceError,
        progress: Callable[[], int] | None = None,
    ) -> T:
        """Run ``attempt_fn`` until it returns, retrying what it signals as :class:`Retryable`.

        ``progress`` (bytes received so far, for downloads) resets the retry count whenever an
        attempt got further than the one before: a slow line that drops now and then still
        finishes, while a server that never gets anywhere exhausts ``max_retries``.
        """
        retries = 0
        seen_progress = progress() if progress else 0
        while True:
            self.breaker.before_attempt()
            try:
                result = attempt_fn()
            except Retryable as failure:
                problem = self.redact(failure.problem)
                self.breaker.record_failure(problem)
                self.breaker.check()
                if progress is not None and progress() > seen_progress:
                    seen_progress, retries = progress(), 0
                if retries >= self.settings.max_retries:
                    raise give_up(messages.gave_up(what, retries + 1, problem).message) from None
                delay = self._delay(failure, retries, what)
                log.info("%s: %s; retrying in %.2f s", what, problem, delay)
                self._sleep(delay)
                retries += 1
                continue
            except MjvaultError:
                self.breaker.record_success()  # a definite answer: the service is there
                raise
            self.breaker.record_success()
            return result

    def _delay(self, failure: Retryable, retries: int, what: str) -> float:
        if failure.retry_after is None:
            return backoff_delay(
                retries, self.settings.backoff_base, self.settings.backoff_cap, rng=self._rng
            )
        if failure.retry_after > self.settings.max_retry_after:
            where = urlsplit(what).netloc if "://" in what else "Midjourney"
            raise messages.rate_limited_too_long(failure.retry_after, where or "Midjourney")
        # Every thread waits, not only the one that was told to.
        self.requests.pause(failure.retry_after)
        return failure.retry_after

    # -- API -------------------------------------------------------------------------------
    def get_api(
        self,
        path: str,
        params: Mapping[str, str | int],
        *,
        cookies: Mapping[str, Secret],
        cookie_name: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ApiAnswer:
        """GET a JSON endpoint of the web API; the body, or one of the errors in messages.py.

        ``cookie_name`` is the session cookie of the generation in use: auth errors name it.
        """
        url = f"{self.settings.web_base}{path}"
        headers = self.api_headers(cookies, extra_headers or {})
        html_answers = 0

        def attempt() -> ApiAnswer:
            nonlocal html_answers
            self.requests.acquire()
            try:
                request = self.client.build_request(
                    "GET", url, params=dict(params), headers=headers
                )
                response = self.client.send(request, stream=True)
                try:
                    body = self._read_capped(response)
                finally:
                    response.close()
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ConfigError(f"bad web base URL {self.settings.web_base!r}: {exc}") from None
            except httpx.LocalProtocolError:
                raise messages.bad_header() from None
            except httpx.TransportError as exc:
                raise Retryable(describe_exception(exc)) from None
            log.debug("GET %s -> %s (%d bytes)", path, response.status_code, len(body))
            try:
                return self._classify_api(response, body, cookie_name, path)
            except HtmlInsteadOfJson:
                # One HTML page can be a hiccup of the site's front end; two in a row for the
                # same request is the login page of a session that is no longer accepted.
                html_answers += 1
                if html_answers > 1:
                    raise messages.login_page(cookie_name, self.settings.session_renewal) from None
                raise

        return self.with_retries(attempt, what=f"listing {path}")

    def _read_capped(self, response: httpx.Response) -> bytes:
        """The body, read as it arrives and refused beyond ``max_page_bytes`` (decoded size, so
        a small compressed answer cannot unpack into gigabytes either)."""
        limit = self.settings.max_page_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise messages.page_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise messages.page_too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _classify_api(
        self, response: httpx.Response, body: bytes, cookie_name: str, path: str
    ) -> ApiAnswer:
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if is_challenge(response.headers, body[:8192]):
            raise messages.challenge(f"the listing request {path}")
        if status == 429:
            raise Retryable(
                "HTTP 429 (rate limited)",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in RETRY_STATUSES:
            # A 503 may say when to come back; otherwise the backoff decides.
            raise Retryable(
                f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after"))
            )
        if status in (401, 403):
            raise messages.refused(cookie_name, self.settings.session_renewal)
        if 300 <= status < 400:
            # The API redirects a request without a valid session to the sign-in page.
            raise messages.login_page(cookie_name, self.settings.session_renewal)
        if status == 404:
            raise EndpointMissing(f"HTTP 404 from {path}")
        if status != 200:
            raise messages.unexpected_status(status, path)
        if looks_like_html(content_type, body[:512]):
            raise HtmlInsteadOfJson("an HTML page instead of JSON")
        return ApiAnswer(status, content_type, body, str(response.url))

    # -- CDN -------------------------------------------------------------------------------
    def open_cdn(self, url: str, headers: Mapping[str, str]) -> httpx.Response:
        """Send one streamed GET to the CDN; the caller closes the answer.

        Redirects are followed only to the allowed CDN hosts (:class:`CdnHosts`), and no
        request to the CDN carries a cookie: the session stays with the web host.
        Network failures become :class:`Retryable`; status handling is the caller's.
        ``max_rps`` is a politeness limit of the web API and does not apply here: the CDN is
        bounded by the pool size (``concurrency``) and ``limit_rate``. A pause asked for by a
        429 (``Retry-After``) still holds back CDN requests too.
        """
        self.requests.wait_for_pause()
        target = url
        for _ in range(MAX_CDN_REDIRECTS + 1):
            if not self.cdn_hosts.allows(target):
                raise self._off_host(url, target)
            response = self._send_cdn(target, headers)
            if not response.has_redirect_location:
                return response
            location = response.headers["location"]
            response.close()
            try:
                target = str(response.url.join(location))
            except httpx.InvalidURL:
                raise DownloadError(
                    f"the CDN redirected {_path_of(url)} to an unusable address"
                ) from None
        raise DownloadError(
            f"the CDN redirected {_path_of(url)} more than {MAX_CDN_REDIRECTS} times"
        )

    def _send_cdn(self, url: str, headers: Mapping[str, str]) -> httpx.Response:
        try:
            request = self.client.build_request("GET", url, headers=dict(headers))
            # The client's cookie jar keeps what the web API set (a refreshed session):
            # it must not travel to the CDN, nor to wherever the CDN redirects.
            request.headers.pop("Cookie", None)
            return self.client.send(request, stream=True, follow_redirects=False)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"bad CDN URL {url!r}: {exc}") from None
        except httpx.LocalProtocolError:
            raise messages.bad_header() from None
        except httpx.TransportError as exc:
            raise Retryable(describe_exception(exc)) from None

    @staticmethod
    def _off_host(url: str, target: str) -> DownloadError:
        where = urlsplit(target).netloc or target
        if target == url:
            return DownloadError(
                f"{url} is not on an allowed CDN host (source.cdn_base, source.cdn_hosts)"
            )
        return DownloadError(
            f"the CDN redirected {_path_of(url)} to {where}, which is not an allowed CDN host "
            "(add it to source.cdn_hosts only if you trust it)"
        )

    def throttle_bytes(self, amount: int) -> None:
        if self.bytes is not None and amount > 0:
            self.bytes.acquire(amount)


def _path_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or url
