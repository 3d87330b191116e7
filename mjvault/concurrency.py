"""A thread-pool map that keeps a bounded number of tasks in flight.

``Executor.map`` submits the whole input at once; over half a million objects that is half a
million futures in memory. This keeps ``window`` in flight and yields results in input order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], *, window: int = 64
) -> Iterator[R]:
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
