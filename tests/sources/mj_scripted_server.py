"""A tiny real HTTP server on 127.0.0.1 whose answers each test scripts, fault by fault.

The full Midjourney test server covers whole accounts; this one pins down single protocol
cases (a body cut at byte N, a server that ignores Range, a challenge page) in a few lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Send Content-Length for the whole body but only this many bytes, then close.
    cut_at: int | None = None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Seen], Answer]


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY the body waits for
            # the client's delayed ACK of the headers, 40 ms a request.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                seen = Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                with server._lock:
                    server.requests.append(seen)
                route = self.path.split("?", 1)[0]
                handler = server.routes.get(route)
                answer = handler(seen) if handler else Answer(404, b"not found")
                self.send_response(answer.status)
                headers = {"Content-Length": str(len(answer.body)), **answer.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                if answer.cut_at is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                body = answer.body if answer.cut_at is None else answer.body[: answer.cut_at]
                self.wfile.write(body)
                self.wfile.flush()
                if answer.cut_at is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, path: str, handler: Handler | Answer | list[Answer]) -> None:
        """Answer ``path`` with a handler, a fixed answer, or a list of answers in turn
        (the last one repeats)."""
        if isinstance(handler, Answer):
            fixed = handler
            self.routes[path] = lambda seen: fixed
        elif isinstance(handler, list):
            queue = list(handler)

            def next_answer(seen: Seen) -> Answer:
                with self._lock:
                    return queue.pop(0) if len(queue) > 1 else queue[0]

            self.routes[path] = next_answer
        else:
            self.routes[path] = handler

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == path]
