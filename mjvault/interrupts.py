"""Signals that stop a command the way Ctrl-C does, so its ``finally`` blocks run.

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM and SIGHUP (a service manager, a
closed terminal) end the process at once: no ``finally``, no clean-up. Inside
:func:`signals_interrupt` those raise KeyboardInterrupt too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(
    int(s) for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s
)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def signals_interrupt(signums: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """While inside, each of ``signums`` raises KeyboardInterrupt in the main thread; the
    previous handlers come back after. Outside the main thread (where Python allows no
    handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
