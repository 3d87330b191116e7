"""``max_rps`` limits web API requests only; CDN downloads are bounded by the pool and limit_rate."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest

from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney

RPS = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(11, 12), token="rate-token") as running:
        yield running


def client_for(server: FakeMidjourney) -> MidjourneyClient:
    settings = ClientSettings(
        web_base=server.web_base,
        cdn_base=server.cdn_base,
        api="v3",
        user_id=server.user_id,
        token=server.token,
        max_rps=RPS,
        burst=1,
        page_size=2,
    )
    return MidjourneyClient(settings)


def test_downloads_are_not_held_to_max_rps(server: FakeMidjourney) -> None:
    paths = [path for job in server.account.jobs for path in job.media_paths][:20]
    with client_for(server) as client:
        started = time.monotonic()
        for path in paths:
            sink = io.BytesIO()
            client.download(path, sink)
            assert sink.getvalue() == server.account.media_bytes(path)
        elapsed = time.monotonic() - started
    # At 2 requests/s, 20 downloads would take ~10 s; unthrottled they take a fraction of one.
    assert elapsed < 2.0, elapsed


def test_api_requests_still_are(server: FakeMidjourney) -> None:
    with client_for(server) as client:
        started = time.monotonic()
        listing = client.list_jobs()
        jobs = list(listing)
        elapsed = time.monotonic() - started
    assert len(jobs) == len(server.account.jobs)
    # 7 pages (the last empty), one token up front: at least (pages - 1) / RPS seconds.
    assert listing.pages >= 6
    assert elapsed >= (listing.pages - 1) / RPS * 0.9, elapsed


def test_a_429_pause_holds_back_downloads_too() -> None:
    from mjvault.sources.midjourney.ratelimit import TokenBucket

    slept: list[float] = []
    now = [100.0]
    bucket = TokenBucket(RPS, 1, clock=lambda: now[0], sleep=slept.append)
    bucket.acquire()  # an API request leaves the bucket in debt …
    assert bucket.wait_for_pause() == 0.0  # … which a download does not wait for
    bucket.pause(3.0)
    assert bucket.wait_for_pause() == pytest.approx(3.0)
    assert slept == [pytest.approx(3.0)]
