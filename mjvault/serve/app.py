"""The app assembled: the vault opened once, each route module's routes mounted, the guard
(security.py) in front of them all, the page's static files.

A route module exposes ``routes(state) -> list[BaseRoute]``; optional modules (built beside
this one) are mounted when present.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from mjvault.serve.security import Guard
from mjvault.serve.settings import ServeSettings, ServeState
from mjvault.vault import Vault

# Mounted in this order; a module that is not there (yet) is left out.
ROUTE_MODULES = (
    "mjvault.serve.browse",
    "mjvault.serve.media",
    "mjvault.serve.live",
    "mjvault.serve.batch",
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


def create_app(vault_root: Path, settings: ServeSettings) -> Starlette:
    """The ASGI app of the vault at ``vault_root``."""
    vault = Vault.open(vault_root, passphrase=settings.passphrase)
    # Opened (and brought up to HEAD) here, once: the worker threads then share one index
    # rather than racing to open it on the first requests.
    vault.index  # noqa: B018
    return build(ServeState(vault_root=vault_root, settings=settings, vault=vault))
