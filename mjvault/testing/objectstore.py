"""A real S3-compatible server for tests and benchmarks, and a fault-injecting proxy before it.

``MotoServer`` runs moto's standalone server (``moto_server`` from ``moto[server]``) as a child
process on a free 127.0.0.1 port. ``FaultProxy`` forwards HTTP to it (or to any HTTP object
store: Ceph RGW, Azurite) unchanged and can answer 503s, delay requests, or refuse connections
altogether (a server that went away), which the servers themselves cannot do: moto's state
lives in memory, so stopping moto would also wipe the bucket.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mjvault.remotes.config import RemoteSpec
from mjvault.testing.httpd import QuietHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def moto_executable() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


class MotoServer:
    """``with MotoServer() as s3: s3.endpoint`` -> ``http://127.0.0.1:PORT``."""

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        exe = moto_executable()
        if exe is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        import os

        self._proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        try:
            _wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise

    def create_bucket(self, name: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("PUT", f"/{name}")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"creating bucket {name}: HTTP {response.status}")
        finally:
            conn.close()

    def spec(self, name: str = "offsite", **options: object) -> RemoteSpec:
        """A remote named ``name`` on a fresh, empty bucket of this server (prefix ``mj``).
        ``options`` are :class:`RemoteSpec` fields (``endpoint_url`` may point at a proxy)."""
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        self.create_bucket(bucket)
        fields: dict[str, Any] = {"endpoint_url": self.endpoint, **options}
        return RemoteSpec(name, f"s3://{bucket}/mj", **fields)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Headers about one hop that a forwarder answers itself rather than passing on.
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "expect", "te", "trailer", "upgrade"}
)


class FaultProxy:
    """HTTP forwarder on 127.0.0.1 with switchable faults, in front of any HTTP object store.

    ``upstream``: the server's port on 127.0.0.1, or its endpoint URL (``http://host:port``).
    Requests go through byte for byte, ``Host`` included, so signed requests (S3's SigV4,
    Azure's shared key) still verify: the client signs for the proxy's address and the server
    checks what it receives.

    ``fail_every``: every Nth request is answered 503 without reaching the server;
    ``cut_every``: every Nth answer with a body sends its full Content-Length but only half
    the body, then drops the connection (a transfer broken mid-way);
    ``delay``: seconds to wait before forwarding each request; ``stop()``/``start()``: the
    listening socket goes away and comes back on the same port, and a request waiting out its
    ``delay`` when the proxy stops is dropped unanswered; ``dead_after``: once that many
    requests were forwarded, every further one is dropped unanswered, as by a server that died
    mid-way (deterministic, unlike stopping it from another thread at the right moment).
    """

    def __init__(self, upstream: int | str) -> None:
        if isinstance(upstream, int):
            self.upstream_host, self.upstream_port = "127.0.0.1", upstream
        else:
            parts = urlsplit(upstream)
            if parts.scheme != "http" or parts.hostname is None:
                raise ValueError(f"FaultProxy forwards plain http, not {upstream!r}")
            self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.fail_every = 0
        self.cut_every = 0
        self.delay = 0.0
        self.dead_after: int | None = None
        self.requests = 0
        #: Requests by what they touched: "objects", "packs", "snapshots" or "other".
        self.by_area: Counter[str] = Counter()
        self.failures = 0
        #: Answers whose body was cut short.
        self.cuts = 0
        self._answers = 0
        #: Requests dropped unanswered (stopped, or past ``dead_after``).
        self.dropped = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    def endpoint_for(self, upstream: str) -> str:
        """The endpoint URL ``upstream`` with the proxy's address in place of the server's:
        any path is kept (Azurite's endpoint ends in its account name)."""
        parts = urlsplit(upstream)
        return parts._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    def _gone(self) -> bool:
        with self._lock:
            gone = self._server is None or (
                self.dead_after is not None and self.requests >= self.dead_after
            )
            if gone:
                self.dropped += 1
            return gone

    def _decide(self, path: str = "") -> bool:
        with self._lock:
            self.requests += 1
            area = next((a for a in ("objects", "packs", "snapshots") if f"/{a}/" in path), None)
            self.by_area[area or "other"] += 1
            fail = self.fail_every > 0 and self.requests % self.fail_every == 0
            if fail:
                self.failures += 1
            return fail

    def _cut(self, data: bytes) -> bool:
        if not data or self.cut_every <= 0:
            return False
        with self._lock:
            self._answers += 1
            cut = self._answers % self.cut_every == 0
            self.cuts += cut
            return cut

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(parts)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self) -> None:
                if proxy._gone():
                    # Stopped: drop kept-alive connections too, as a dead server would.
                    self.close_connection = True
                    return
                body = self._body()
                if proxy.delay:
                    time.sleep(proxy.delay)
                    if proxy._gone():  # stopped while this request waited: it dies unanswered
                        self.close_connection = True
                        return
                if proxy._decide(self.path):
                    message = b"<Error><Code>ServiceUnavailable</Code></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS
                    }
                    if body or self.command in ("PUT", "POST", "PATCH"):
                        headers = {
                            k: v for k, v in headers.items() if k.lower() != "content-length"
                        }
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                # A HEAD answer has no body, but its Content-Length is the object's size.
                size = response.getheader("Content-Length") if self.command == "HEAD" else None
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", size or str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if proxy._cut(data):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward
            do_PATCH = do_OPTIONS = _forward

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
