"""SIGTERM as Ctrl-C for commands that write: the writer checkpoints and releases the lock.

A service manager stops a process with SIGTERM (``systemctl stop``, a shutdown, ``docker
stop``); Python's default for it is to die at once, without the checkpoint an interrupted sync
makes on Ctrl-C. Inside :meth:`StopSignals.installed` the first SIGTERM or SIGINT raises
KeyboardInterrupt, and later ones are ignored so a second signal cannot cut the checkpoint
short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopSignals:
    """Turn the first SIGTERM or SIGINT into a KeyboardInterrupt; remember which it was."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            return  # already stopping: let the checkpoint finish
        self.received = signum
        # Raised, not flagged: it wakes the interval's wait and stops a sync mid-listing the
        # way Ctrl-C always has (the writer's abort path). Setting an Event from a handler
        # could deadlock on the lock the interrupted wait holds.
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # handlers can only be set from the main thread (an embedding caller)
            return
        for signum in (int(signal.SIGTERM), int(signal.SIGINT)):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)  # type: ignore[arg-type]
