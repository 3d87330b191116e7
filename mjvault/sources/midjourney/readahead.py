"""Fetch the next listing page while this one is being walked.

A full listing of a large account is a thousand pages read one after the other: the service
builds a page while the client waits, then the client diffs it against the vault while the
service waits. Asking for page N+1 on a thread while page N is walked overlaps the two, so the
listing takes about the longer of the two instead of their sum.

Only one page is read ahead (two in memory at most), and only when the whole listing will be
read anyway (``sync --full``, a first sync): an incremental sync usually stops within its
first page, and reading one more would be a wasted request to the service.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

# How often the reading thread looks up from a full queue to see whether the walk ended.
_POLL_SECONDS = 0.1


class _End:
    """The source ran out (or raised ``error``); nothing follows it in the queue."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ReadAhead(Iterator[T]):
    """``source``'s items, each read on a thread while the one before it is being used.

    The thread starts at once, so the first item is read while the caller still works on
    whatever came before. Errors raised by ``source`` are raised here, at the item where they
    happened, after every item before it. Closing this iterator (or dropping it) stops the
    thread before its next item; a request already under way runs to its end under the
    transport's own timeouts.
    """

    def __init__(self, source: Iterator[T], name: str = "listing read-ahead") -> None:
        # The thread holds these three, never `self`: dropping the iterator stops it.
        self._ahead: queue.Queue[T | _End] = queue.Queue(maxsize=1)
        self._taken = threading.Event()
        self._done = threading.Event()
        self._finished = False
        thread = threading.Thread(
            target=_read,
            args=(source, self._ahead, self._taken, self._done),
            name=name,
            daemon=True,
        )
        thread.start()

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._ahead.get()
        self._taken.set()  # the thread may read the next one now
        if isinstance(item, _End):
            self.close()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        self._finished = True
        self._done.set()

    def __del__(self) -> None:
        self._done.set()


def _read(
    source: Iterator[T],
    ahead: queue.Queue[T | _End],
    taken: threading.Event,
    done: threading.Event,
) -> None:
    """The thread: one item at a time, each read only once the one before it was taken, so
    at most two are in memory (the caller's and the next)."""

    def hand_over(item: T | _End) -> bool:
        taken.clear()
        while not done.is_set():
            try:
                ahead.put(item, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        while not done.is_set():
            if taken.wait(_POLL_SECONDS):
                return True
        return False

    try:
        for item in source:
            if not hand_over(item):
                return
            del item  # taken: the caller holds it, not this thread
        hand_over(_End())
    except BaseException as error:  # raised again in the caller's thread, at this point
        hand_over(_End(error))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
