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

from mjvault.errors import MjvaultError
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


class ServerNotStarted(MjvaultError):
    """The web server could not start: its address is in use or not this machine's, or the
    app's start-up failed. Exit 1, an error like any other (docs/usage.md, "Exit codes")."""


class _StartFailures(logging.Filter):
    """Holds back what uvicorn logs as an error before the server has started, so that the
    reason (``[Errno 98] … address already in use``) is said once, in the error's own line,
    rather than as a log line followed by that error."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.server.started or record.levelno < logging.ERROR:
            return True
        self.messages.append(record.getMessage())
        return False


def run(asgi: Starlette, **options: Any) -> None:
    """``uvicorn.run(asgi, **options)`` with :class:`Server`; :class:`ServerNotStarted` when
    it cannot start (uvicorn itself would exit 3, which is mjvault's integrity code)."""
    config = uvicorn.Config(asgi, **options)  # configures uvicorn's loggers: filter after
    server = Server(config, asgi.state.serve)
    failures = _StartFailures(server)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(failures)
    interrupted = False
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn raises the signal it stopped on again once it has stopped: the Ctrl-C
        # that asked for the stop, answered (as uvicorn.run does).
        interrupted = True
    except SystemExit:
        # uvicorn's start-up exits (3) when it cannot listen or the lifespan fails.
        if server.started:
            raise
    finally:
        uvicorn_log.removeFilter(failures)
    if server.started:
        return
    if interrupted:
        raise KeyboardInterrupt  # stopped before it listened: an interrupt, exit 130
    host, port = config.host, config.port
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = "; ".join(failures.messages) or "its start-up failed"
    raise ServerNotStarted(f"the web app could not start on {where}: {reason}")


def create_app(vault_root: Path, settings: ServeSettings) -> Starlette:
    """The ASGI app of the vault at ``vault_root``."""
    vault = Vault.open(vault_root, passphrase=settings.passphrase)
    # Opened (and brought up to HEAD) here, once: the worker threads then share one index
    # rather than racing to open it on the first requests.
    vault.current_index()
    return build(ServeState(vault_root=vault_root, settings=settings, vault=vault))
