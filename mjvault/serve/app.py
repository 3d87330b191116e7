"""The app assembled: the vault opened once, each route module's routes mounted, the guard
(security.py) in front of them all, the page's static files.

A route module exposes ``routes(state) -> list[BaseRoute]``; optional modules (built beside
this one) are mounted when present.

Stopping: uvicorn, asked to stop (Ctrl-C), first waits up to its graceful-shutdown timeout for
open responses, and only then runs the app's shutdown. An event stream ends only when its
page goes, so :class:`Server` tells the app the moment it is asked (``should_exit``): the
state's ``stopping`` event is set and the streams end at once; the lifespan's end sets it too
(a server run another way).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from mjvault.serve.security import Guard
from mjvault.serve.settings import ServeSettings, ServeState
from mjvault.vault import Vault

log = logging.getLogger(__name__)

# Mounted in this order; a module that is not there (yet) is left out.
ROUTE_MODULES = (
    "mjvault.serve.browse",
    "mjvault.serve.media",
    "mjvault.serve.live",
    "mjvault.serve.batch",
    "mjvault.serve.dupes",
)


def _static_dir() -> Path | None:
    try:
        folder = resources.files("mjvault.serve").joinpath("static")
    except ModuleNotFoundError:
        return None
    path = Path(str(folder))
    return path if path.is_dir() else None


async def _not_found(request: object, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "not found", "code": "not_found"}, status_code=404)


async def _method(request: object, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "method not allowed", "code": "method"}, status_code=405)


async def _internal(request: object, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "internal error", "code": "internal"}, status_code=500)


def build(state: ServeState) -> Starlette:
    routes: list[BaseRoute] = []
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        routes += module.routes(state)
    static = _static_dir()
    if static is not None:
        routes.append(Mount("/", StaticFiles(directory=static, html=True), name="static"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            begin_shutdown(state)
            for close in reversed(state.on_close):
                with contextlib.suppress(Exception):
                    close()
            state.vault.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, state=state)],
        exception_handlers={404: _not_found, 405: _method, 500: _internal},
        lifespan=lifespan,
    )
    app.state.serve = state
    return app


def begin_shutdown(state: ServeState) -> None:
    """Say the server is stopping: ``state.stopping`` set, its callbacks run once."""
    with state.lock:
        if state.stopping.is_set():
            return
        state.stopping.set()
        callbacks = list(state.on_stopping)
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one part's failure must not keep the others running
            log.debug("a stopping callback failed", exc_info=True)


class Server(uvicorn.Server):
    """uvicorn's server, telling the app the moment it is asked to stop (a signal handler,
    or code setting ``should_exit``), not after the grace period."""

    def __init__(self, config: uvicorn.Config, state: ServeState) -> None:
        self._serve_state = state
        self._should_exit = False
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value:
            begin_shutdown(self._serve_state)


def run(asgi: Starlette, **options: Any) -> None:
    """``uvicorn.run(asgi, **options)`` with :class:`Server`."""
    server = Server(uvicorn.Config(asgi, **options), asgi.state.serve)
    # uvicorn raises the signal it stopped on again once it has stopped: the Ctrl-C that
    # asked for the stop, answered (as uvicorn.run does).
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the server could not start (a port in use, say)


def create_app(vault_root: Path, settings: ServeSettings) -> Starlette:
    """The ASGI app of the vault at ``vault_root``."""
    vault = Vault.open(vault_root, passphrase=settings.passphrase)
    # Opened (and brought up to HEAD) here, once: the worker threads then share one index
    # rather than racing to open it on the first requests.
    vault.current_index()
    return build(ServeState(vault_root=vault_root, settings=settings, vault=vault))
