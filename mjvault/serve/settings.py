"""What `mjvault serve` runs with (ServeSettings) and what its routes share (ServeState)."""

from __future__ import annotations

import ipaddress
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mjvault.vault import Vault

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
THUMB_SIZES = {"s": 256, "m": 768}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback: ``localhost`` or a loopback address
    written as one. A name that merely starts with ``127.`` (``127.0.0.1.example``) is a
    name some DNS resolves, and a page of that site would pass as ours (DNS rebinding)."""
    name = host.strip().lower().rstrip(".")
    if name in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    read_only: bool = False
    # Needed by every request when the server listens beyond this machine (app.py). Never
    # taken from the command line: argv is readable by every user of the machine.
    access_token: str | None = field(default=None, repr=False)
    # An encrypted vault's passphrase, as Vault.open takes it (a callable, a string).
    passphrase: Any = field(default=None, repr=False)

    @property
    def needs_token(self) -> bool:
        return not is_loopback(self.host)


@dataclass
class ServeState:
    """What every route module gets: the vault (opened once, shared by the worker threads:
    its index is LMDB, whose readers may run side by side), the settings and the CSRF token
    the page sends back on every mutation."""

    vault_root: Path
    settings: ServeSettings
    vault: Vault
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Set by mjvault/serve/live.py: the tasks (sync, push) running in the background.
    tasks: Any = None
    # Caches a route module keeps per (query, sort, index generation): see browse.py.
    caches: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called when the app shuts down (route modules add their own: a task runner's stop).
    on_close: list[Callable[[], None]] = field(default_factory=list)
    # Set the moment the server is asked to stop (app.py: uvicorn's should_exit, or the
    # lifespan's end), before it waits for open responses: event streams end on it at once.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Called (once, from the thread that stops the server) when ``stopping`` is set.
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
