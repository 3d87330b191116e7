"""A thread-safe token bucket: the one place that decides when the next request may go.

Used twice by the client: once for requests per second (``max_rps``) and once for download bytes
per second (``limit_rate``). Every caller reserves its tokens under the lock and then sleeps
outside it, so waiting threads queue up in order instead of spinning on the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up for a burst."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        if self.capacity <= 0:
            raise ValueError("capacity must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._updated = clock()
        self._paused_until = 0.0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    def reserve(self, amount: float = 1.0) -> float:
        """Take ``amount`` tokens now (the balance may go negative); seconds the caller must wait.

        A request larger than the capacity is allowed: it simply waits for the debt to refill,
        which is what a large download chunk under a small ``limit_rate`` needs.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= amount
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            return max(wait, self._paused_until - now)

    def acquire(self, amount: float = 1.0) -> float:
        """Block until ``amount`` tokens are ours; returns how long it slept."""
        wait = self.reserve(amount)
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (a 429's Retry-After applies to all threads)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def wait_for_pause(self) -> float:
        """Sleep out a :meth:`pause` without taking a token (for requests the rate does not cover)."""
        with self._lock:
            wait = self._paused_until - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
