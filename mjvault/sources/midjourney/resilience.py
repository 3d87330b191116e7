"""Retry timing and the circuit breaker. Pure logic plus one lock: no I/O, easy to test.

Policy (docs/midjourney-client.md):
- 5xx, timeouts and dropped connections are retried up to ``max_retries`` times, waiting a random
  time in ``[0, min(cap, base * 2**attempt)]`` ("full jitter"), so many clients or threads that
  failed together do not come back together.
- 429 waits exactly what ``Retry-After`` asks (seconds or an HTTP date), else the backoff.
- After ``threshold`` failed attempts in a row (over all threads) the breaker opens: every call
  fails at once with one clear line, until ``cooldown`` has passed and one trial may go through.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from mjvault.errors import SourceUnavailable


def backoff_delay(
    attempt: int, base: float, cap: float, *, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0 for the first retry)."""
    ceiling = min(cap, base * (2 ** min(attempt, 62)))
    return rng() * ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
            return None
        return max(0.0, seconds)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (moment - reference).total_seconds())


class CircuitBreaker:
    """Counts failed attempts in a row; opens at ``threshold`` and refuses until ``cooldown``."""

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        what: str = "the service",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._last_problem = ""

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def before_attempt(self) -> None:
        """Raise :class:`SourceUnavailable` if the breaker is open and no trial is due."""
        with self._lock:
            if self._opened_at is None:
                return
            due = self._clock() - self._opened_at >= self.cooldown
            if due and not self._trial_running:
                self._trial_running = True  # half-open: exactly one caller tests the water
                return
            raise SourceUnavailable(self._message())

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self, problem: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_problem = problem
            if self._trial_running or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial_running = False

    def check(self) -> None:
        """Raise at once if this failure opened the breaker (so the caller stops retrying)."""
        with self._lock:
            if self._opened_at is not None:
                raise SourceUnavailable(self._message())

    def _message(self) -> str:
        return (
            f"stopped after {self._failures} failed requests in a row to {self.what} "
            f"(last: {self._last_problem}); it looks down or is refusing us, try again later"
        )
