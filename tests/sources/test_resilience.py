"""Token bucket, backoff with full jitter, Retry-After, circuit breaker: the timing policy."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault.errors import SourceUnavailable
from mjvault.sources.midjourney.ratelimit import TokenBucket
from mjvault.sources.midjourney.resilience import (
    CircuitBreaker,
    backoff_delay,
    parse_retry_after,
)


class FakeClock:
    """Virtual time: sleeping advances it, so timing tests are exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire() == 0
    waits = [bucket.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert clock.now == pytest.approx(1002.0)


def test_bucket_refills_only_to_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, 2, clock=clock, sleep=clock.sleep)
    clock.now += 100
    assert bucket.acquire() == 0 and bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(1.0)


def test_bucket_large_request_waits_for_its_debt() -> None:
    clock = FakeClock()
    bytes_bucket = TokenBucket(1000.0, 1000, clock=clock, sleep=clock.sleep)
    assert bytes_bucket.acquire(5000) == pytest.approx(4.0)


def test_bucket_pause_holds_everyone() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 100, clock=clock, sleep=clock.sleep)
    bucket.pause(7)
    assert bucket.acquire() == pytest.approx(7.0)
    assert bucket.acquire() == 0


def test_bucket_rate_holds_across_threads() -> None:
    """Real threads and real time: 8 threads x 5 requests at 100/s take about 0.4 s."""
    bucket = TokenBucket(100.0, 1)
    start = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(5)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert 0.36 <= elapsed < 2.0


@given(st.integers(min_value=0, max_value=200), st.floats(0.001, 10), st.floats(0.01, 100))
def test_backoff_stays_within_full_jitter_bounds(attempt: int, base: float, cap: float) -> None:
    assert backoff_delay(attempt, base, cap, rng=lambda: 0.0) == 0.0
    top = backoff_delay(attempt, base, cap, rng=lambda: 1.0)
    assert top == pytest.approx(min(cap, base * 2**attempt))
    assert 0 <= backoff_delay(attempt, base, cap) <= top


def test_backoff_grows_exponentially_until_cap() -> None:
    tops = [backoff_delay(n, 0.5, 10, rng=lambda: 1.0) for n in range(7)]
    assert tops == [0.5, 1, 2, 4, 8, 10, 10]


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    )
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0  # in the past
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


def test_breaker_opens_after_threshold_and_names_the_cause() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(3, 30, what="www.midjourney.com", clock=clock)
    for _ in range(2):
        breaker.before_attempt()
        breaker.record_failure("HTTP 503")
        breaker.check()
    breaker.before_attempt()
    breaker.record_failure("HTTP 503")
    with pytest.raises(SourceUnavailable) as err:
        breaker.check()
    message = str(err.value)
    assert "3 failed requests in a row" in message and "HTTP 503" in message
    assert "\n" not in message
    with pytest.raises(SourceUnavailable):
        breaker.before_attempt()


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker(2, 30)
    breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    breaker.check()  # still closed: the failures were not in a row
    assert not breaker.is_open


def test_breaker_half_open_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 30, clock=clock)
    breaker.record_failure("down")
    clock.now += 31
    breaker.before_attempt()  # the trial
    with pytest.raises(SourceUnavailable):
        breaker.before_attempt()  # a second caller during the trial is refused
    breaker.record_failure("still down")
    with pytest.raises(SourceUnavailable):
        breaker.before_attempt()  # reopened: the cooldown starts again
    clock.now += 31
    breaker.before_attempt()
    breaker.record_success()
    breaker.before_attempt()
    assert not breaker.is_open
