"""The HTTP server class of the bundled test servers."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading server that takes a client hanging up as the normal event it is here.

    Clients in the tests drop connections on purpose (a refused redirect, a cut download, a
    killed sync); the standard server prints a traceback for each, which reads like a failure
    in the test log. Anything else is still printed.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)
