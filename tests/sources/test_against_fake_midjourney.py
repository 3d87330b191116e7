"""The client against the Midjourney test server on 127.0.0.1: every generation, every fault.

"Correct" always means: the ids the server holds, in its order, each once, each record's raw
bytes exactly the server's JSON text for it, and media bytes equal to what the server serves.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mjvault.errors import AuthError, ChallengeError, DownloadError, SourceUnavailable
from mjvault.sources.midjourney import (
    ClientSettings,
    MediaMissing,
    MidjourneyClient,
    stop_after_known,
)
from mjvault.sources.midjourney.generations import NEXT_AUTH_COOKIE, V3_ID_COOKIE
from mjvault.testing.accounts import Account, GeneratedJob
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney

TOKEN = "fake-session-9b1e7c0d5a3f"
GENERATION_NUMBER = {"v1": 1, "v2": 2, "v3": 3}


@pytest.fixture
def account() -> Account:
    # A fresh account per test: tests add jobs to it, and generating one takes milliseconds.
    return Account.generate(5, 260)


@pytest.fixture
def server(account: Account) -> Iterator[FakeMidjourney]:
    with FakeMidjourney(account, token=TOKEN) as running:
        yield running


def settings_for(server: FakeMidjourney, api: str = "auto", **changes: object) -> ClientSettings:
    values: dict[str, object] = {
        "web_base": server.web_base,
        "cdn_base": server.cdn_base,
        "api": api,
        "user_id": server.user_id,
        "token": server.token,
        "max_rps": 2000.0,
        "burst": 100,
        "backoff_base": 0.002,
        "backoff_cap": 0.02,
        "timeout": 5.0,
        "max_retries": 6,
        "page_size": 40,
    }
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


def listed_jobs(server: FakeMidjourney, generation: str) -> list[GeneratedJob]:
    """What a full listing of `generation` must yield: v3 lists videos, v1/v2 do not."""
    return server.account.jobs if generation == "v3" else server.account.image_jobs()


def assert_exact_listing(server: FakeMidjourney, generation: str, listed: list, expected) -> None:
    assert [item.id for item in listed] == [job.id for job in expected]
    for item, job in zip(listed, expected, strict=True):
        record = job.record(GENERATION_NUMBER[generation])
        assert item.record == record
        # The server writes json.dumps(..., ensure_ascii=False): that exact text is kept.
        assert item.raw == json.dumps(record, ensure_ascii=False).encode()
        assert item.generation == generation


# -- listing: each generation, clean and under faults ----------------------------------------
@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
def test_full_listing_is_exact(server: FakeMidjourney, generation: str) -> None:
    with MidjourneyClient(settings_for(server, generation)) as client:
        listing = client.list_jobs()
        listed = list(listing)
    assert_exact_listing(server, generation, listed, listed_jobs(server, generation))
    assert listing.duplicates == 0 and not listing.stopped_early


def test_auto_picks_the_current_generation(server: FakeMidjourney) -> None:
    with MidjourneyClient(settings_for(server)) as client:
        status = client.check_auth()
        assert status.ok and status.generation == "v3" and status.cookie_name == V3_ID_COOKIE
        assert client.list_jobs().generation == "v3"


FAULTS = {
    "429": Faults(rate_limit_every=3, retry_after=0),
    "5xx": Faults(error_rate=0.3, error_status=502, error_seed=3),
    "drops": Faults(drop_every=3),
    "short-bodies": Faults(short_body_every=4),
    "duplicates": Faults(duplicate_records=5),
    "html-glitch": Faults(html_every=3),
    "latency+bandwidth": Faults(latency=0.005, bandwidth=2_000_000),
    "jobs-mid-listing": Faults(add_jobs_after_listing_request=2, add_jobs_count=7),
    "everything": Faults(
        rate_limit_every=5,
        retry_after=0,
        error_rate=0.15,
        error_seed=9,
        drop_every=7,
        short_body_every=11,
        duplicate_records=3,
        add_jobs_after_listing_request=3,
        add_jobs_count=4,
    ),
}


@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_listing_survives_faults(server: FakeMidjourney, generation: str, fault: str) -> None:
    expected = listed_jobs(server, generation)  # before any job is added mid-listing
    server.faults = FAULTS[fault]
    settings = settings_for(server, generation, max_retries=10, breaker_threshold=50)
    with MidjourneyClient(settings) as client:
        listing = client.list_jobs()
        listed = list(listing)
    assert_exact_listing(server, generation, listed, expected)
    if FAULTS[fault].duplicate_records:
        assert listing.duplicates > 0
    if FAULTS[fault].add_jobs_count:
        assert server.stats.jobs_added == FAULTS[fault].add_jobs_count


def test_v1_page_size_beyond_the_server_maximum(server: FakeMidjourney) -> None:
    with MidjourneyClient(settings_for(server, "v1", page_size=500)) as client:
        listed = list(client.list_jobs())
    assert_exact_listing(server, "v1", listed, listed_jobs(server, "v1"))


def test_v1_goes_past_the_2500_job_window() -> None:
    account = Account.generate(11, 2620)
    expected = account.image_jobs()
    assert len(expected) > 2500
    with FakeMidjourney(account, token=TOKEN) as server:
        settings = settings_for(server, "v1", page_size=50)
        with MidjourneyClient(settings) as client:
            listing = client.list_jobs()
            listed = list(listing)
        assert [j.id for j in listed] == [j.id for j in expected]
        assert listing.duplicates >= 1  # the re-anchored window repeats the oldest job seen
        assert server.stats.listing_requests["v1"] <= 2 + (len(expected) + 49) // 50 + 1


def test_job_type_filter_on_every_generation(server: FakeMidjourney) -> None:
    for generation in ("v1", "v2", "v3"):
        with MidjourneyClient(settings_for(server, generation)) as client:
            upscales = list(client.list_jobs(job_type="upscale"))
        assert upscales, generation
        for item in upscales:
            job = item.job()
            assert "upscale" in (job.type, job.event_type, job.job_type) or (
                job.job_type or ""
            ).endswith("_upscale")


# -- incremental syncs -----------------------------------------------------------------------
@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
def test_incremental_listing_stops_at_known_jobs(server: FakeMidjourney, generation: str) -> None:
    known = {job.id for job in listed_jobs(server, generation)}
    new = server.add_jobs(5)
    new_ids = [job.id for job in new if generation == "v3" or not job.is_video]
    with MidjourneyClient(settings_for(server, generation)) as client:
        listing = client.list_jobs(stop=stop_after_known(known.__contains__, run=10))
        listed = [item.id for item in listing]
    assert listed[: len(new_ids)] == new_ids
    assert len(listed) == len(new_ids) + 9 and listing.stopped_early
    assert server.stats.total_listing_requests() == 1  # one page was enough


def test_since_stops_the_listing(server: FakeMidjourney) -> None:
    jobs = server.account.jobs
    cutoff = jobs[30].enqueue_time
    with MidjourneyClient(settings_for(server, "v3", page_size=10)) as client:
        listing = client.list_jobs(since=cutoff)
        listed = [item.id for item in listing]
    assert listed == [job.id for job in jobs if job.enqueue_time >= cutoff]
    assert listing.stopped_early and server.stats.total_listing_requests() == 4


def test_v3_checkpoint_updates(server: FakeMidjourney) -> None:
    with MidjourneyClient(settings_for(server, "v3")) as client:
        listing = client.list_jobs()
        list(listing)
        assert listing.checkpoint
        new = server.add_jobs(3)
        updates = client.updates(listing.checkpoint)
        assert updates is not None
        assert [item.id for item in updates] == [job.id for job in new]
        assert updates.checkpoint and updates.checkpoint != listing.checkpoint
        again = client.updates(updates.checkpoint)
        assert again is not None and list(again) == []
    with MidjourneyClient(settings_for(server, "v2")) as client:
        assert client.updates("anything") is None  # only v3 has it: fall back to listing


# -- auth: the promised messages, and the token nowhere --------------------------------------
@pytest.mark.parametrize("style", ["json401", "html403", "html200", "redirect"])
@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
def test_expired_session_messages(
    server: FakeMidjourney, generation: str, style: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.faults = Faults(expired=True, auth_failure_style=style)  # type: ignore[arg-type]
    with MidjourneyClient(settings_for(server, generation)) as client:
        with pytest.raises(AuthError) as err:  # noqa: SIM117 - the client is used after
            client.list_jobs()
        status = client.check_auth()
    message = str(err.value)
    cookie = V3_ID_COOKIE if generation == "v3" else NEXT_AUTH_COOKIE
    assert f"copy a fresh `{cookie}` from your browser" in message
    assert "Developer tools -> Application -> Cookies -> midjourney.com" in message
    assert "MIDJOURNEY_SESSION_TOKEN" in message and "\n" not in message
    if style in ("html200", "redirect"):
        assert "login page" in message
    else:
        assert message.startswith("the session cookie was refused or has expired")
    assert not status.ok and status.reason in ("refused", "login-page")
    for text in (message, repr(err.value), repr(status), caplog.text):
        assert TOKEN not in text


def test_session_expiring_mid_sync(server: FakeMidjourney) -> None:
    server.faults = Faults(expire_after_api_requests=2)
    with MidjourneyClient(settings_for(server, "v3", page_size=20)) as client:
        listing = client.list_jobs()
        with pytest.raises(AuthError, match="refused or has expired"):
            list(listing)


def test_auto_with_expired_session_names_the_v3_cookie(server: FakeMidjourney) -> None:
    server.faults = Faults(expired=True)
    with MidjourneyClient(settings_for(server)) as client, pytest.raises(AuthError) as err:
        client.list_jobs()
    assert V3_ID_COOKIE in str(err.value)


def test_cloudflare_challenge_and_clearance(server: FakeMidjourney) -> None:
    server.faults = Faults(cf_clearance="cf-ok-123")
    with (
        MidjourneyClient(settings_for(server, "v3")) as client,
        pytest.raises(ChallengeError) as err,
    ):
        client.list_jobs()
    message = str(err.value)
    assert 'browser check ("Just a moment...")' in message
    assert "`cf_clearance`" in message and "exact User-Agent" in message
    assert "--cookies FILE" in message and "--user-agent" in message
    settings = settings_for(server, "v3", extra_cookies={"cf_clearance": "cf-ok-123"})
    with MidjourneyClient(settings) as client:
        assert len(list(client.list_jobs())) == len(server.account.jobs)


def test_wrong_user_id_is_reported(server: FakeMidjourney) -> None:
    settings = settings_for(server, "v2", user_id="00000000-0000-0000-0000-000000000000")
    with MidjourneyClient(settings) as client:
        status = client.check_auth()
    assert not status.ok and status.reason == "refused"


# -- downloads -------------------------------------------------------------------------------
def download_all(
    client: MidjourneyClient, server: FakeMidjourney, jobs: list[GeneratedJob], threads: int = 4
) -> dict[str, tuple[object, bytes]]:
    paths = [path for job in jobs for path in job.media_paths]

    def fetch(path: str) -> tuple[str, tuple[object, bytes]]:
        sink = io.BytesIO()
        kind = "video" if path.endswith(".mp4") else "image"
        result = client.download(path, sink, expected_kind=kind)  # type: ignore[arg-type]
        return path, (result, sink.getvalue())

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(fetch, paths))


@pytest.mark.parametrize(
    "fault",
    [
        Faults(),
        Faults(targets=frozenset({"cdn"}), drop_every=2),
        Faults(targets=frozenset({"cdn"}), short_body_every=2),
        Faults(targets=frozenset({"cdn"}), rate_limit_every=4, retry_after=0, error_rate=0.2),
        Faults(cdn_requires_browser_ua=True, cdn_requires_sec_fetch=True),
    ],
    ids=["clean", "drops", "short-bodies", "429+5xx", "browser-checks"],
)
def test_downloads_are_byte_exact(server: FakeMidjourney, fault: Faults) -> None:
    server.faults = fault
    jobs = server.account.jobs[:25]
    # 429 on every 4th request plus 20 % errors fail ~40 % of attempts: with 8 retries one of
    # ~75 files gave up about once in fifty runs; 14 make that one in tens of thousands.
    settings = settings_for(server, "v3", max_retries=14, breaker_threshold=100, concurrency=4)
    with MidjourneyClient(settings) as client:
        results = download_all(client, server, jobs)
    assert results
    for path, (result, data) in results.items():
        expected = server.account.media_bytes(path)
        assert expected is not None
        assert data == expected, path
        assert result.bytes == len(expected)  # type: ignore[attr-defined]
        assert result.detected_ext == path.rsplit(".", 1)[-1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
def test_model_media_paths_download(server: FakeMidjourney, generation: str) -> None:
    """What a sync does: list, derive media from each record, download them."""
    kinds: set[str] = set()
    with MidjourneyClient(settings_for(server, generation)) as client:
        for item in list(client.list_jobs())[:60]:
            for ref in item.job().media():
                sink = io.BytesIO()
                result = client.download(ref, sink)
                assert not result.missing, ref.path
                assert sink.getvalue() == server.account.media_bytes(ref.path)
                kinds.add(ref.kind)
    assert kinds == ({"image", "video"} if generation == "v3" else {"image"})


def test_missing_media_is_reported_not_raised(server: FakeMidjourney) -> None:
    job = server.account.image_jobs()[0]
    server.faults = Faults(missing_images=frozenset({job.media_paths[0]}))
    with MidjourneyClient(settings_for(server)) as client:
        sink = io.BytesIO()
        result = client.download(job.media_paths[0], sink)
        assert isinstance(result, MediaMissing) and result.status == 404
        assert sink.getvalue() == b""
        other = job.media_paths[-1] if len(job.media_paths) > 1 else None
        if other:
            assert not client.download(other, io.BytesIO()).missing


def test_a_share_of_missing_media_is_reported_exactly(server: FakeMidjourney) -> None:
    server.faults = Faults(missing_fraction=0.3)
    jobs = server.account.image_jobs()[:20]
    with MidjourneyClient(settings_for(server)) as client:
        results = download_all(client, server, jobs)
    missing = {path for path, (result, _) in results.items() if result.missing}  # type: ignore[attr-defined]
    assert missing == {path for path in results if server.is_missing(path)}
    assert 0 < len(missing) < len(results)


def test_session_expiring_at_a_time(server: FakeMidjourney) -> None:
    server.faults = Faults(expire_at=time.time() - 1)
    with MidjourneyClient(settings_for(server, "v2")) as client:
        status = client.check_auth()
    assert (
        not status.ok
        and status.reason == "refused"
        and "MIDJOURNEY_SESSION_TOKEN" in status.message
    )


def test_cdn_refusing_a_non_browser_agent(server: FakeMidjourney) -> None:
    server.faults = Faults(cdn_requires_browser_ua=True)
    path = server.account.image_jobs()[0].media_paths[0]
    settings = settings_for(server, user_agent="python-httpx/0.28")
    with MidjourneyClient(settings) as client, pytest.raises(DownloadError, match="User-Agent"):
        client.download(path, io.BytesIO())


def test_breaker_stops_a_dead_service(server: FakeMidjourney) -> None:
    server.faults = Faults(error_rate=1.0)
    settings = settings_for(server, "v3", max_retries=100, breaker_threshold=6)
    with MidjourneyClient(settings) as client, pytest.raises(SourceUnavailable) as err:
        client.list_jobs()
    assert "6 failed requests in a row" in str(err.value)
    assert server.stats.server_errors == 6


def test_limit_rate_against_the_server(server: FakeMidjourney) -> None:
    jobs = server.account.image_jobs()[:10]
    total = sum(len(server.account.media_bytes(p) or b"") for j in jobs for p in j.media_paths)
    rate = total / 0.5  # one set of files per half second
    with MidjourneyClient(settings_for(server, limit_rate=rate)) as client:
        start = time.monotonic()
        download_all(client, server, jobs)
        download_all(client, server, jobs)
        elapsed = time.monotonic() - start
    # Two sets are one second of transfer at `rate`, less the quarter second of burst.
    assert 0.7 <= elapsed < 5


def test_more_threads_than_connections_wait_for_the_pool(server: FakeMidjourney) -> None:
    """A caller's pool larger than `concurrency` queues for connections instead of failing."""
    server.faults = Faults(latency=0.2)
    jobs = server.account.image_jobs()[:5]
    settings = settings_for(server, concurrency=1, timeout=0.35, max_retries=0)
    with MidjourneyClient(settings) as client:
        results = download_all(client, server, jobs, threads=8)
    assert len(results) >= 8
    assert all(data == server.account.media_bytes(path) for path, (_, data) in results.items())
