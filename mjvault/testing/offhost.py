"""A second host for redirect tests: records every request it gets, answers with a real PNG.

The fake Midjourney's ``redirect_images_to`` knob points its CDN at this server (another port
on 127.0.0.1, so another origin). A client that follows the redirect is seen here, with the
cookies it sent; a client that keeps to its allowed CDN hosts leaves ``hits`` empty.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from mjvault.testing.httpd import QuietHTTPServer
from mjvault.testing.images import make_png


@dataclass(frozen=True)
class OffHostHit:
    path: str
    cookie: str | None  # the Cookie header as sent, or None


class OffHostServer:
    """Serves ``make_png(seed)`` at every path and remembers who asked."""

    def __init__(self, *, seed: int = 1) -> None:
        self.body = make_png(seed)
        self.hits: list[OffHostHit] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OffHostServer:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:
                with app._lock:
                    app.hits.append(OffHostHit(self.path, self.headers.get("Cookie")))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(app.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(app.body)

        self._httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="off-host", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    @property
    def base(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> OffHostServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
