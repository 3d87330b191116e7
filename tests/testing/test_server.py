"""The fake Midjourney server, exercised with httpx over real sockets on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mjvault.model import job_from_record
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import (
    V1_SESSION_COOKIE,
    V3_SESSION_COOKIE,
    FakeMidjourney,
)

NO_JOBS = [{"msg": "No jobs found."}]
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture(scope="module")
def account() -> Account:
    return Account.generate(21, 400)


@pytest.fixture()
def server(account: Account) -> Iterator[FakeMidjourney]:
    with FakeMidjourney(account) as running:
        yield running


def v1_client(server: FakeMidjourney) -> httpx.Client:
    return httpx.Client(base_url=server.web_base, cookies=server.cookies(1), timeout=10)


def v3_client(server: FakeMidjourney) -> httpx.Client:
    return httpx.Client(
        base_url=server.web_base,
        cookies=server.cookies(3),
        headers={"x-csrf-protection": "1"},
        timeout=10,
    )


def recent_jobs(
    client: httpx.Client, server: FakeMidjourney, page: int, **extra: Any
) -> httpx.Response:
    params = {
        "amount": 50,
        "page": page,
        "orderBy": "new",
        "jobStatus": "completed",
        "userId": server.user_id,
        "dedupe": "true",
        "refreshApi": 0,
        **extra,
    }
    return client.get("/api/app/recent-jobs/", params=params)


def v1_listing(client: httpx.Client, server: FakeMidjourney, **extra: Any) -> list[dict]:
    """Pages until the end marker; returns every record in order."""
    records: list[dict] = []
    for page in range(1, 1000):
        body = recent_jobs(client, server, page, **extra).json()
        if body == NO_JOBS or body == []:
            return records
        records.extend(body)
    raise AssertionError("listing never ended")


def cursor_listing(
    client: httpx.Client, path: str, server: FakeMidjourney, page_size: int
) -> tuple[list[dict], int, str | None]:
    records: list[dict] = []
    cursor: str | None = None
    checkpoint = None
    for pages in range(1, 1000):
        params: dict[str, Any] = {"user_id": server.user_id, "page_size": page_size}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["data"]:
            return records, pages, checkpoint
        records.extend(body["data"])
        cursor, checkpoint = body["cursor"], body["checkpoint"] or checkpoint
    raise AssertionError("listing never ended")


# -- v1 -----------------------------------------------------------------------------------------


def test_v1_pages_newest_first_then_the_end_marker(
    server: FakeMidjourney, account: Account
) -> None:
    with v1_client(server) as client:
        first = recent_jobs(client, server, 1)
        assert first.status_code == 200 and first.headers["content-type"].startswith(
            "application/json"
        )
        assert len(first.json()) == 50
        records = v1_listing(client, server)
        big = recent_jobs(client, server, 1, amount=500).json()
    expected = [job.id for job in account.image_jobs()]
    assert [r["id"] for r in records] == expected
    assert len(big) == 50  # the site serves at most 50 per page
    assert all(not job_from_record(r).is_video for r in records)
    assert server.stats.listing_requests["v1"] == len(expected) // 50 + 3


def test_v1_listing_stops_at_2500_and_fromdate_reaches_older_jobs() -> None:
    account = Account.generate(8, 2700)
    with FakeMidjourney(account) as server, v1_client(server) as client:
        first_pass = v1_listing(client, server)
        assert len(first_pass) == 2500
        assert recent_jobs(client, server, 51).json() == NO_JOBS
        seen = {r["id"]: r for r in first_pass}
        oldest = min(r["enqueue_time"] for r in first_pass)
        second_pass = v1_listing(client, server, fromDate=oldest)
    assert second_pass[0]["enqueue_time"] == oldest  # "at or before" includes the anchor itself
    seen.update({r["id"]: r for r in second_pass})
    assert set(seen) == {job.id for job in account.image_jobs()}


def test_v1_fromdate_keeps_pages_stable_while_jobs_arrive() -> None:
    local = Account.generate(21, 400)
    before = [job.id for job in local.image_jobs()]
    with FakeMidjourney(local) as server, v1_client(server) as client:
        page1 = recent_jobs(client, server, 1).json()
        anchor = page1[0]["enqueue_time"]
        server.add_jobs(7)
        anchored = recent_jobs(client, server, 2, fromDate=anchor).json()
        drifting = recent_jobs(client, server, 2).json()
    assert [r["id"] for r in anchored] == before[50:100]
    page1_ids = {r["id"] for r in page1}
    assert not page1_ids & {r["id"] for r in anchored}
    assert page1_ids & {r["id"] for r in drifting}  # without fromDate, the page slid down


def test_v1_jobtype_filter(server: FakeMidjourney) -> None:
    with v1_client(server) as client:
        upscales = v1_listing(client, server, jobType="upscale")
        grids = v1_listing(client, server, jobType="grid")
    assert upscales and all(r["type"] == "upscale" for r in upscales)
    assert grids and all(r["type"] == "grid" for r in grids)


def test_v1_bad_parameters_are_400(server: FakeMidjourney) -> None:
    with v1_client(server) as client:
        assert recent_jobs(client, server, 1, fromDate="yesterday").status_code == 400
        assert recent_jobs(client, server, 0).status_code == 400
        response = client.get("/api/app/recent-jobs/", params={"page": 1})
        assert response.status_code == 400
        assert recent_jobs(client, server, 1, userId="someone-else").status_code == 403


# -- v2 and v3 ------------------------------------------------------------------------------------


def test_v2_cursor_paging_lists_image_jobs_only(server: FakeMidjourney, account: Account) -> None:
    with v1_client(server) as client:
        records, pages, _ = cursor_listing(client, "/api/pg/thomas-jobs", server, 64)
    assert [r["id"] for r in records] == [job.id for job in account.image_jobs()]
    assert pages == -(-len(records) // 64) + 1
    assert all("image_paths" not in r and r["enqueue_time"].endswith("Z") for r in records)


def test_v3_needs_the_csrf_header_and_lists_videos() -> None:
    account = Account.generate(3, 2500)
    with FakeMidjourney(account) as server:
        bare = httpx.get(
            f"{server.web_base}/api/imagine",
            params={"user_id": server.user_id, "page_size": 10},
            cookies=server.cookies(3),
        )
        assert bare.status_code == 401
        with v3_client(server) as client:
            records, _, checkpoint = cursor_listing(client, "/api/imagine", server, 1000)
    assert [r["id"] for r in records] == [job.id for job in account.jobs]
    assert any(r["job_type"].startswith("vid_") for r in records)
    assert all("prompt" not in r for r in records)
    assert checkpoint


def test_cursor_is_anchored_so_new_jobs_do_not_shift_pages() -> None:
    account = Account.generate(4, 300)
    with FakeMidjourney(account) as server, v3_client(server) as client:
        params = {"user_id": server.user_id, "page_size": 100}
        first = client.get("/api/imagine", params=params).json()
        server.add_jobs(5)
        second = client.get("/api/imagine", params={**params, "cursor": first["cursor"]}).json()
        assert client.get("/api/imagine", params={**params, "cursor": "!!"}).status_code == 400
    assert second["data"][0]["id"] == account.jobs[5 + 100].id


def test_imagine_update_returns_only_jobs_after_the_checkpoint() -> None:
    account = Account.generate(5, 120)
    with FakeMidjourney(account) as server, v3_client(server) as client:
        _, _, checkpoint = cursor_listing(client, "/api/imagine", server, 50)
        params = {"user_id": server.user_id, "checkpoint": checkpoint}
        assert client.get("/api/imagine-update", params=params).json()["data"] == []
        added = server.add_jobs(4)
        update = client.get("/api/imagine-update", params=params).json()
        assert [r["id"] for r in update["data"]] == [job.id for job in added]  # newest first
        later = client.get(
            "/api/imagine-update", params={**params, "checkpoint": update["checkpoint"]}
        ).json()
    assert later["data"] == []


# -- authentication -----------------------------------------------------------------------------


def test_missing_wrong_and_other_generation_cookies_are_refused(server: FakeMidjourney) -> None:
    params = {"userId": server.user_id, "page": 1, "amount": 50}
    url = f"{server.web_base}/api/app/recent-jobs/"
    assert httpx.get(url, params=params).status_code == 401
    wrong = httpx.get(url, params=params, cookies={V1_SESSION_COOKIE: "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "Unauthorized"
    v3_cookie_on_v1 = httpx.get(url, params=params, cookies={V3_SESSION_COOKIE: server.token})
    assert v3_cookie_on_v1.status_code == 401
    v1_cookie_on_v3 = httpx.get(
        f"{server.web_base}/api/imagine",
        params={"user_id": server.user_id},
        cookies={V1_SESSION_COOKIE: server.token},
        headers={"x-csrf-protection": "1"},
    )
    assert v1_cookie_on_v3.status_code == 401
    assert server.stats.auth_failures == 4


@pytest.mark.parametrize(
    "style,status,content_type",
    [
        ("json401", 401, "application/json"),
        ("html403", 403, "text/html"),
        ("html200", 200, "text/html"),
        ("redirect", 307, "text/plain"),
    ],
)
def test_auth_failure_styles(account: Account, style: str, status: int, content_type: str) -> None:
    faults = Faults(expired=True, auth_failure_style=style)  # type: ignore[arg-type]
    with FakeMidjourney(account, faults) as server, v1_client(server) as client:
        response = recent_jobs(client, server, 1)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    if style == "redirect":
        assert response.headers["location"] == "/api/auth/signin"


def test_cookie_expires_after_n_api_requests_and_at_a_moment(account: Account) -> None:
    with FakeMidjourney(account, Faults(expire_after_api_requests=3)) as server:
        with v1_client(server) as client:
            statuses = [recent_jobs(client, server, 1).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 401, 401]
        server.faults = Faults(expire_at=time.time() + 0.3)
        with v1_client(server) as client:
            assert recent_jobs(client, server, 1).status_code == 200
            time.sleep(0.35)
            assert recent_jobs(client, server, 1).status_code == 401
        server.faults.expire_at = None
        server.faults.expired = True  # changed at runtime, read by the next request
        with v1_client(server) as client:
            assert recent_jobs(client, server, 1).status_code == 401


def test_cloudflare_challenge_unless_clearance_cookie(account: Account) -> None:
    with FakeMidjourney(account, Faults(cf_clearance="clear-123")) as server:
        url = f"{server.web_base}/api/app/recent-jobs/"
        params = {"userId": server.user_id, "page": 1}
        blocked = httpx.get(url, params=params, cookies={V1_SESSION_COOKIE: server.token})
        assert blocked.status_code == 403
        assert blocked.headers["cf-mitigated"] == "challenge"
        assert "<title>Just a moment...</title>" in blocked.text
        passed = httpx.get(url, params=params, cookies=server.cookies(1))
        assert passed.status_code == 200 and len(passed.json()) == 50
        assert server.stats.challenges == 1


def test_html_login_page_instead_of_json(account: Account) -> None:
    with FakeMidjourney(account, Faults(html_every=2)) as server, v1_client(server) as client:
        responses = [recent_jobs(client, server, 1) for _ in range(4)]
    kinds = [r.headers["content-type"].split(";")[0] for r in responses]
    assert kinds == ["application/json", "text/html", "application/json", "text/html"]
    assert all(r.status_code == 200 for r in responses)
    assert "<html" in responses[1].text


# -- CDN ----------------------------------------------------------------------------------------


def test_cdn_serves_images_videos_with_length_and_ranges() -> None:
    account = Account.generate(3, 2500)
    grid = next(j for j in account.jobs if j.kind == "grid")
    video = next(j for j in account.jobs if j.is_video)
    with FakeMidjourney(account) as server, httpx.Client(base_url=server.cdn_base) as cdn:
        full = cdn.get(f"/{grid.id}/0_2.png")
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        assert int(full.headers["content-length"]) == len(full.content)
        assert full.content == account.media_bytes(f"{grid.id}/0_2.png")
        assert cdn.get(f"/{grid.id}/0_2.webp").headers["content-type"] == "image/webp"
        tail = cdn.get(f"/{grid.id}/0_2.png", headers={"Range": "bytes=100-"})
        assert tail.status_code == 206 and tail.content == full.content[100:]
        assert (
            tail.headers["content-range"]
            == f"bytes 100-{len(full.content) - 1}/{len(full.content)}"
        )
        middle = cdn.get(f"/{grid.id}/0_2.png", headers={"Range": "bytes=10-19"})
        assert middle.content == full.content[10:20]
        beyond = cdn.get(f"/{grid.id}/0_2.png", headers={"Range": f"bytes={len(full.content)}-"})
        assert beyond.status_code == 416
        head = cdn.head(f"/{grid.id}/0_2.png")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(full.content)
        mp4 = cdn.get(f"/video/{video.id}/1.mp4")
        assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
        assert cdn.get(f"/{grid.id}/0_7.png").status_code == 404
        assert cdn.get(f"/{video.id}/0_0.png").status_code == 404
    assert server.stats.media_requests == 9
    assert server.stats.not_found == 2


def test_missing_images_by_path_and_by_fraction(account: Account) -> None:
    grids = [j for j in account.jobs if j.kind == "grid"]
    gone = f"{grids[0].id}/0_1.png"
    faults = Faults(missing_images=frozenset({gone}))
    with FakeMidjourney(account, faults) as server, httpx.Client(base_url=server.cdn_base) as cdn:
        assert cdn.get(f"/{gone}").status_code == 404
        assert cdn.get(f"/{grids[0].id}/0_1.webp").status_code == 404
        assert cdn.get(f"/{grids[0].id}/0_0.png").status_code == 200
        server.faults = Faults(missing_fraction=0.25)
        paths = [p for job in grids[:40] for p in job.own_media_paths]
        statuses = [cdn.get(f"/{p}").status_code for p in paths]
        again = [cdn.get(f"/{p}").status_code for p in paths]
    assert statuses == again
    share = statuses.count(404) / len(statuses)
    assert 0.1 < share < 0.4


def test_cdn_can_require_browser_headers(account: Account) -> None:
    path = account.jobs[0].media_paths[0]
    faults = Faults(cdn_requires_browser_ua=True, cdn_requires_sec_fetch=True)
    with FakeMidjourney(account, faults) as server:
        url = f"{server.cdn_base}/{path}"
        assert httpx.get(url).status_code == 403  # httpx's own User-Agent
        assert httpx.get(url, headers={"User-Agent": BROWSER_UA}).status_code == 403
        browser = {"User-Agent": BROWSER_UA, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
        assert httpx.get(url, headers=browser).status_code == 200


# -- transient faults -----------------------------------------------------------------------------


def test_429_every_nth_request_in_bursts_with_retry_after(account: Account) -> None:
    faults = Faults(
        rate_limit_every=4, rate_limit_burst=2, retry_after=7, targets=frozenset({"cdn"})
    )
    path = account.jobs[0].media_paths[0]
    with FakeMidjourney(account, faults) as server, httpx.Client() as client:
        statuses = [client.get(f"{server.cdn_base}/{path}").status_code for _ in range(8)]
        limited = client.get(f"{server.cdn_base}/{path}")  # the 9th: a fresh cycle, so 200
        with v1_client(server) as api:
            assert recent_jobs(api, server, 1).status_code == 200  # the API is not targeted
    assert statuses == [200, 200, 429, 429, 200, 200, 429, 429]
    assert limited.status_code == 200
    assert server.stats.rate_limited == 4
    with FakeMidjourney(account, faults) as server, httpx.Client() as client:
        for _ in range(2):
            client.get(f"{server.cdn_base}/{path}")
        third = client.get(f"{server.cdn_base}/{path}")
        assert third.status_code == 429 and third.headers["retry-after"] == "7"


def test_5xx_rate_is_seeded_and_deterministic(account: Account) -> None:
    def run() -> list[int]:
        faults = Faults(error_rate=0.3, error_seed=42, error_status=502)
        with FakeMidjourney(account, faults) as server, httpx.Client() as client:
            url = f"{server.cdn_base}/{account.jobs[0].media_paths[0]}"
            return [client.get(url).status_code for _ in range(60)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 502}
    assert 5 < first.count(502) < 35


def test_dropped_connection_mid_body(account: Account) -> None:
    path = next(j for j in account.jobs if j.kind == "grid").media_paths[0]
    with FakeMidjourney(account, Faults(drop_every=2)) as server, httpx.Client() as client:
        url = f"{server.cdn_base}/{path}"
        assert client.get(url).status_code == 200
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(url)
        assert client.get(url).status_code == 200  # a new connection works again
    assert server.stats.dropped == 1


def test_short_body_then_close(account: Account) -> None:
    path = next(j for j in account.jobs if j.kind == "grid").media_paths[0]
    with FakeMidjourney(account, Faults(short_body_every=1)) as server:
        url = f"{server.cdn_base}/{path}"
        with httpx.stream("GET", url) as response:
            declared = int(response.headers["content-length"])
            received = bytearray()
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in response.iter_raw():
                    received += chunk
    assert len(received) == len(account.media_bytes(path) or b"") < declared
    assert server.stats.short_bodies == 1


def test_latency_and_bandwidth(account: Account) -> None:
    path = next(j for j in account.jobs if j.kind == "grid").media_paths[0]
    size = len(account.media_bytes(path) or b"")
    with FakeMidjourney(account, Faults(latency=0.2)) as server:
        started = time.perf_counter()
        assert httpx.get(f"{server.cdn_base}/{path}").status_code == 200
        assert time.perf_counter() - started >= 0.2
        server.faults = Faults(bandwidth=size * 4)  # the body takes ~0.25 s
        started = time.perf_counter()
        assert httpx.get(f"{server.cdn_base}/{path}").content == account.media_bytes(path)
        assert time.perf_counter() - started >= 0.2


def test_duplicate_records_across_pages(account: Account) -> None:
    with FakeMidjourney(account, Faults(duplicate_records=3)) as server:
        with v1_client(server) as client:
            page1 = recent_jobs(client, server, 1).json()
            page2 = recent_jobs(client, server, 2).json()
        with v3_client(server) as client:
            params = {"user_id": server.user_id, "page_size": 20}
            first = client.get("/api/imagine", params=params).json()
            second = client.get("/api/imagine", params={**params, "cursor": first["cursor"]}).json()
    assert [r["id"] for r in page2[:3]] == [r["id"] for r in page1[-3:]]
    assert len(page2) == 53
    assert [r["id"] for r in second["data"][:3]] == [r["id"] for r in first["data"][-3:]]


def test_jobs_appear_after_the_kth_listing_request() -> None:
    account = Account.generate(6, 100)
    newest = account.image_jobs()[0].id
    time_before = account.jobs[0].enqueue_time
    faults = Faults(add_jobs_after_listing_request=2, add_jobs_count=5)
    with FakeMidjourney(account, faults) as server, v1_client(server) as client:
        before = [job.id for job in account.image_jobs()]
        assert recent_jobs(client, server, 1).json()[0]["id"] == newest
        assert [r["id"] for r in recent_jobs(client, server, 2).json()] == before[50:100]
        assert server.stats.jobs_added == 0
        top = recent_jobs(client, server, 1).json()
    assert server.stats.jobs_added == 5
    assert len(account) == 105
    new_images = [job.id for job in account.image_jobs()[:5] if job.enqueue_time > time_before]
    assert [r["id"] for r in top[: len(new_images)]] == new_images
    assert top[len(new_images)]["id"] == newest


# -- determinism and shape ------------------------------------------------------------------------


def test_same_seed_serves_identical_bytes() -> None:
    bodies = []
    for _ in range(2):
        account = Account.generate(77, 150)
        with FakeMidjourney(account) as server, v1_client(server) as client:
            listing = recent_jobs(client, server, 2).content
            media = client.get(f"{server.cdn_base}/{account.jobs[9].media_paths[0]}").content
            bodies.append((listing, media))
    assert bodies[0] == bodies[1]


def test_keep_alive_and_rewritten_image_urls(account: Account) -> None:
    with FakeMidjourney(account, rewrite_image_urls=True) as server, v1_client(server) as client:
        response = recent_jobs(client, server, 1)
        record = response.json()[0]
        image = client.get(record["image_paths"][0])
        cdn_base = server.cdn_base
    assert response.http_version == "HTTP/1.1"
    assert "close" not in response.headers.get("connection", "")
    assert record["image_paths"][0].startswith(cdn_base + "/")
    assert image.status_code == 200


def test_stop_closes_the_listener_and_open_keep_alive_connections(account: Account) -> None:
    server = FakeMidjourney(account).start()
    base = server.web_base
    with httpx.Client(base_url=server.cdn_base, timeout=2) as client:
        path = account.jobs[0].media_paths[0]
        assert client.get(f"/{path}").status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"/{path}")
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/api/app/recent-jobs/", timeout=2)


def test_transient_faults_hit_listings_too_when_targeted(account: Account) -> None:
    faults = Faults(targets=frozenset({"api"}), drop_every=3, rate_limit_every=4)
    path = account.jobs[0].media_paths[0]
    with FakeMidjourney(account, faults) as server, v1_client(server) as client:
        assert recent_jobs(client, server, 1).status_code == 200
        assert recent_jobs(client, server, 1).status_code == 200
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            recent_jobs(client, server, 1)
        assert recent_jobs(client, server, 1).status_code == 429
        assert client.get(f"{server.cdn_base}/{path}").status_code == 200  # CDN untouched
    assert server.stats.dropped == 1 and server.stats.rate_limited == 1
