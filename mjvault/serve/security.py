"""The server's guards: the access token of a non-loopback bind, the CSRF token of mutations,
read-only mode, the Host header of a loopback bind, and the patterns every id from a request
must match before it is used (an object is found by its id, never by a path)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from mjvault.serve.settings import ServeSettings, ServeState, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OBJECT_ID = re.compile(r"[0-9a-f]{64}\Z")
# Job ids are Midjourney's UUIDs; the vault accepts any id of up to 200 bytes without
# control characters, the API those of plain characters only: no '/', '\\', '%', '..'.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:~+-]{0,199}\Z")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # views, remotes, collections
TOKEN_COOKIE = "mjvault_token"
CSRF_HEADER = "x-csrf-token"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_BYTES = 24


class BadRequest(Exception):
    """Answered as 400 (or ``status``) ``{"error": message, "code": code}``."""

    def __init__(self, message: str, code: str = "bad_request", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_object_id(value: str) -> str:
    if not OBJECT_ID.match(value):
        raise BadRequest("not an object id (64 lowercase hex digits)", "bad_id")
    return value


def check_job_id(value: str) -> str:
    if not JOB_ID.match(value) or ".." in value:
        raise BadRequest("not a job id", "bad_id")
    return value


def check_name(value: str) -> str:
    if not NAME.match(value) or ".." in value:
        raise BadRequest("not a name (letters, digits, '.', '_', '-'; at most 64)", "bad_name")
    return value


def _same(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


async def _answer(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware in front of every route: cheap checks that need no route's help, so a
    route can never forget one."""

    def __init__(self, app: ASGIApp, state: ServeState) -> None:
        self.app = app
        self.state = state
        self.settings: ServeSettings = state.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        settings = self.settings
        if not settings.needs_token:
            # Loopback: a page of another site resolving its own name to 127.0.0.1 (DNS
            # rebinding) sends its own name as Host; only ours are served.
            if not is_loopback(_host_name(headers.get("host", ""))):
                await _answer(send, 403, {"error": "unknown Host", "code": "bad_host"})
                return
        else:
            expected = settings.access_token or ""
            query = scope.get("query_string", b"").decode("latin-1")
            pairs = parse_qsl(query, keep_blank_values=True)
            given = dict(pairs).get("token")
            if given is not None and _same(given, expected):
                # The token once in a link: kept in a cookie, the address cleaned of it.
                rest = urlencode([(k, v) for k, v in pairs if k != "token"])
                location = scope.get("path", "/") + (f"?{rest}" if rest else "")
                cookie = f"{TOKEN_COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [
                            (b"location", location.encode("latin-1")),
                            (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            if not self._authorised(headers, expected):
                await _answer(
                    send,
                    401,
                    {"error": "an access token is needed", "code": "unauthorized"},
                    [(b"www-authenticate", b'Bearer realm="mjvault"')],
                )
                return
        if scope["method"] in MUTATING:
            if settings.read_only:
                await _answer(send, 403, {"error": "the server is read-only", "code": "read_only"})
                return
            if not _same(headers.get(CSRF_HEADER), self.state.csrf_token):
                await _answer(
                    send,
                    403,
                    {"error": "missing or wrong X-CSRF-Token", "code": "csrf"},
                )
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _authorised(headers: dict[str, str], expected: str) -> bool:
        if not expected:
            return False  # never open beyond loopback without a token
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), expected):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            return False
        morsel = cookie.get(TOKEN_COOKIE)
        return morsel is not None and _same(morsel.value, expected)
