"""The client against a scripted server on 127.0.0.1: one protocol case per test."""

from __future__ import annotations

import io
import json
import logging
import os
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from mj_scripted_server import Answer, ScriptedServer, Seen

from mjvault.errors import AuthError, ChallengeError, DownloadError, SourceError, SourceUnavailable
from mjvault.sources.midjourney import ClientSettings, MediaDamaged, MediaMissing, MidjourneyClient
from mjvault.sources.midjourney.download import DAMAGED_ATTEMPTS
from mjvault.sources.midjourney.generations import NEXT_AUTH_COOKIE, V3_ID_COOKIE
from mjvault.testing.images import make_mp4, make_png

TOKEN = "tok-SECRET-4f9a1c77e2"
USER = "48d7667d-4177-49e2-adc1-5674bdde9593"
CHALLENGE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b"<body><script src='/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1'></script>"
    b"</body></html>"
)
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in - Midjourney</title></head></html>"


def make_settings(server: ScriptedServer, **changes: object) -> ClientSettings:
    values: dict[str, object] = {
        "web_base": server.base,
        "cdn_base": server.base + "/cdn",
        "api": "v3",
        "user_id": USER,
        "token": TOKEN,
        "max_rps": 1000.0,
        "burst": 1000,
        "backoff_base": 0.001,
        "backoff_cap": 0.01,
        "timeout": 5.0,
        "max_retries": 4,
    }
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


def job(i: int) -> dict[str, object]:
    return {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "enqueue_time": f"2025-08-14T17:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00",
        "job_type": "v7_diffusion" if i % 3 else "v7_upscale",
        "event_type": "diffusion" if i % 3 else "upscale",
        "full_command": f"prompt {i} 猫 🐈 --ar 2:3",
        "batch_size": 4,
    }


def cursor_listing(jobs: list[dict[str, object]], page_size: int = 3):
    """A v2/v3 endpoint: pages of `page_size` with an opaque cursor, pretty-printed."""

    def handler(seen: Seen) -> Answer:
        query = parse_qs(urlsplit(seen.path).query)
        start = int(query.get("cursor", ["c0"])[0][1:])
        size = min(page_size, int(query["page_size"][0]))
        data = jobs[start : start + size]
        body = {"data": data, "cursor": f"c{start + size}", "checkpoint": "k1"}
        return Answer(
            200,
            json.dumps(body, indent=2, ensure_ascii=False).encode(),
            {"Content-Type": "application/json"},
        )

    return handler


# -- listing ---------------------------------------------------------------------------------
def test_v3_listing_pages_headers_and_exact_raw(scripted: ScriptedServer) -> None:
    jobs = [job(i) for i in range(10, 0, -1)]
    scripted.route("/api/imagine", cursor_listing(jobs))
    with MidjourneyClient(make_settings(scripted)) as client:
        listing = client.list_jobs()
        listed = list(listing)
    assert [j.id for j in listed] == [j["id"] for j in jobs]
    assert listing.generation == "v3" and listing.checkpoint == "k1" and listing.pages == 5
    for item, original in zip(listed, jobs, strict=True):
        assert (
            item.raw
            == json.dumps(original, indent=2, ensure_ascii=False).replace("\n", "\n    ").encode()
        )
        assert item.record == original and item.enqueue_time is not None
    first = scripted.hits("/api/imagine")[0].headers
    assert first["x-csrf-protection"] == "1"
    assert first["cookie"] == f"{V3_ID_COOKIE}={TOKEN}"
    assert first["user-agent"].startswith("Mozilla/5.0") and first["sec-fetch-mode"] == "cors"


def test_duplicates_dropped_and_stop_rules(scripted: ScriptedServer) -> None:
    jobs = [job(i) for i in range(9, 0, -1)]
    with_dupes = jobs[:4] + jobs[2:]  # two records repeated across a page boundary
    scripted.route("/api/imagine", cursor_listing(with_dupes))
    with MidjourneyClient(make_settings(scripted)) as client:
        listing = client.list_jobs()
        assert [j.id for j in listing] == [j["id"] for j in jobs]
        assert listing.duplicates == 2
        known = {str(j["id"]) for j in jobs[3:]}
        from mjvault.sources.midjourney import stop_after_known

        early = client.list_jobs(stop=stop_after_known(known.__contains__, run=2))
        assert [j.id for j in early] == [j["id"] for j in jobs[:4]]
        assert early.stopped_early
        upscales = list(client.list_jobs(job_type="upscale"))
        assert upscales and all(j.record["event_type"] == "upscale" for j in upscales)


def test_429_retry_after_is_obeyed(scripted: ScriptedServer) -> None:
    body = json.dumps({"data": [], "cursor": None}).encode()
    scripted.route(
        "/api/imagine",
        [Answer(429, b"slow down", {"Retry-After": "0.3"}), Answer(200, body)],
    )
    with MidjourneyClient(make_settings(scripted)) as client:
        start = time.monotonic()
        assert list(client.list_jobs()) == []
        assert time.monotonic() - start >= 0.28
    assert len(scripted.hits("/api/imagine")) == 2


def test_429_asking_too_long_fails_clearly(scripted: ScriptedServer) -> None:
    scripted.route("/api/imagine", Answer(429, b"", {"Retry-After": "3600"}))
    with MidjourneyClient(make_settings(scripted)) as client, pytest.raises(SourceError) as err:
        client.list_jobs()
    assert "wait 3600 s" in str(err.value) and "429" in str(err.value)


def test_5xx_retried_then_success(scripted: ScriptedServer) -> None:
    jobs = [job(2), job(1)]
    ok = cursor_listing(jobs, page_size=10)
    answers = iter([Answer(502), Answer(503)])
    scripted.route("/api/imagine", lambda seen: next(answers, None) or ok(seen))
    with MidjourneyClient(make_settings(scripted)) as client:
        assert len(list(client.list_jobs())) == 2


def test_persistent_5xx_gives_up_in_one_line(scripted: ScriptedServer) -> None:
    scripted.route("/api/imagine", Answer(500, b"oops"))
    with (
        MidjourneyClient(make_settings(scripted, max_retries=2)) as client,
        pytest.raises(SourceError) as err,
    ):
        client.list_jobs()
    assert "gave up after 3 attempts (last: HTTP 500)" in str(err.value)
    assert "\n" not in str(err.value)


def test_breaker_stops_hammering(scripted: ScriptedServer) -> None:
    scripted.route("/api/imagine", Answer(503))
    settings = make_settings(scripted, max_retries=50, breaker_threshold=4)
    with MidjourneyClient(settings) as client, pytest.raises(SourceUnavailable) as err:
        client.list_jobs()
        assert "4 failed requests in a row" in str(err.value)
        with pytest.raises(SourceUnavailable):
            client.download("x/0_0.png", io.BytesIO())  # refused at once, nothing sent
    assert len(scripted.requests) == 4


def test_a_single_html_page_is_a_glitch_not_a_logout(scripted: ScriptedServer) -> None:
    good = json.dumps({"data": [job(1)], "cursor": None}).encode()
    scripted.route(
        "/api/imagine", [Answer(200, LOGIN_PAGE, {"Content-Type": "text/html"}), Answer(200, good)]
    )
    with MidjourneyClient(make_settings(scripted)) as client:
        assert [j.id for j in client.list_jobs()] == [job(1)["id"]]


def test_dropped_connection_on_listing_is_retried(scripted: ScriptedServer) -> None:
    full = json.dumps({"data": [job(1)], "cursor": None}).encode()
    scripted.route("/api/imagine", [Answer(200, full, cut_at=10), Answer(200, full)])
    with MidjourneyClient(make_settings(scripted)) as client:
        assert [j.id for j in client.list_jobs()] == [job(1)["id"]]


# -- auth and its messages -------------------------------------------------------------------
AUTH_CASES = {
    "401": Answer(401, b'{"error":"unauthorized"}', {"Content-Type": "application/json"}),
    "403": Answer(403, b"forbidden"),
    "html": Answer(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"}),
    "redirect": Answer(307, b"", {"Location": "/login?callbackUrl=%2Fimagine"}),
    "challenge": Answer(
        403, CHALLENGE_PAGE, {"cf-mitigated": "challenge", "Content-Type": "text/html"}
    ),
    "challenge-503-no-header": Answer(503, CHALLENGE_PAGE, {"Content-Type": "text/html"}),
}


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_auth_failures_give_the_promised_line(scripted: ScriptedServer, case: str) -> None:
    scripted.route("/api/imagine", AUTH_CASES[case])
    with MidjourneyClient(make_settings(scripted)) as client, pytest.raises(SourceError) as err:
        client.list_jobs()
    message = str(err.value)
    assert "\n" not in message
    if case.startswith("challenge"):
        assert isinstance(err.value, ChallengeError)
        assert "Just a moment..." in message and "cf_clearance" in message
        assert "MJVAULT_CF_CLEARANCE" in message and "MJVAULT_USER_AGENT" in message
        assert "--user-agent" in message
    else:
        assert isinstance(err.value, AuthError)
        assert f"`{V3_ID_COOKIE}`" in message and "MIDJOURNEY_SESSION_TOKEN" in message
        assert "Developer tools -> Application -> Cookies -> midjourney.com" in message
        if case in ("html", "redirect"):
            assert "login page" in message
    # Never retried, except a 200 HTML page: once may be a glitch, twice is the login page.
    assert len(scripted.hits("/api/imagine")) == (2 if case == "html" else 1)


def test_missing_credentials(scripted: ScriptedServer) -> None:
    with (
        MidjourneyClient(make_settings(scripted, token=None)) as client,
        pytest.raises(AuthError, match="no Midjourney session token"),
    ):
        client.list_jobs()
        status = client.check_auth()
        assert not status.ok and status.reason == "missing-credentials"
    with (
        MidjourneyClient(make_settings(scripted, user_id=None)) as client,
        pytest.raises(AuthError, match="MIDJOURNEY_USER_ID"),
    ):
        client.list_jobs()
    assert scripted.requests == []


def test_token_never_leaks_into_logs_errors_or_reprs(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    texts: list[str] = []
    settings = make_settings(
        scripted, api="auto", max_retries=1, extra_cookies={"cf_clearance": TOKEN + "-cf"}
    )
    texts += [repr(settings), str(settings), f"{settings}", f"{settings.token}"]
    for name, answer in AUTH_CASES.items():
        scripted.routes.clear()
        for path in ("/api/imagine", "/api/pg/thomas-jobs", "/api/app/recent-jobs/"):
            scripted.route(path, answer)
        scripted.route("/cdn/a/0_0.png", answer)
        with MidjourneyClient(settings) as client:
            texts.append(repr(client))
            for action in (
                client.list_jobs,
                lambda c=client: c.download("a/0_0.png", io.BytesIO()),
            ):
                try:
                    action()
                except Exception as exc:
                    texts += [str(exc), repr(exc), repr(exc.args), name]
            status = client.check_auth()
            texts += [repr(status), json.dumps(status.to_json())]
    scripted.routes.clear()
    scripted.route("/api/imagine", Answer(500))
    with MidjourneyClient(settings) as client:
        try:
            client.list_jobs()
        except SourceError as exc:
            texts.append(str(exc))
    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    assert any("Cookie" in t or "cookie" in t for t in texts)  # the messages were gathered
    assert scripted.requests and all(
        TOKEN in r.headers.get("cookie", "") for r in scripted.requests if r.path.startswith("/api")
    )
    for text in texts:
        assert TOKEN not in text


# -- generations and detection ---------------------------------------------------------------
def test_auto_detection_skips_what_does_not_fit(scripted: ScriptedServer) -> None:
    scripted.route("/api/pg/thomas-jobs", Answer(200, LOGIN_PAGE, {"Content-Type": "text/html"}))
    scripted.route("/api/app/recent-jobs/", Answer(200, json.dumps([job(1)]).encode()))
    with MidjourneyClient(make_settings(scripted, api="auto")) as client:
        status = client.check_auth()
        assert status.ok and status.generation == "v1" and status.cookie_name == NEXT_AUTH_COOKIE
        assert [j.generation for j in client.list_jobs()] == ["v1"]
    v1 = scripted.hits("/api/app/recent-jobs/")[0].headers
    assert v1["cookie"] == f"{NEXT_AUTH_COOKIE}={TOKEN}" and "x-csrf-protection" not in v1


def test_auto_with_every_generation_refusing_names_the_current_cookie(
    scripted: ScriptedServer,
) -> None:
    for path in ("/api/imagine", "/api/pg/thomas-jobs", "/api/app/recent-jobs/"):
        scripted.route(path, Answer(401))
    with MidjourneyClient(make_settings(scripted, api="auto")) as client:
        with pytest.raises(AuthError) as err:  # noqa: SIM117 - the client outlives the raise
            client.list_jobs()
        assert V3_ID_COOKIE in str(err.value)
        status = client.check_auth()
    assert not status.ok and status.reason == "refused"


def test_auto_with_nothing_answering(scripted: ScriptedServer) -> None:
    with (
        MidjourneyClient(make_settings(scripted, api="auto")) as client,
        pytest.raises(SourceError, match="none of the known Midjourney listing APIs"),
    ):
        client.list_jobs()


def v1_server(jobs: list[dict[str, object]], window_cap: int):
    """recent-jobs as observed: fromDate filter, page/amount, a listing window cap."""

    def handler(seen: Seen) -> Answer:
        query = {k: v[0] for k, v in parse_qs(urlsplit(seen.path).query).items()}
        amount, page = int(query["amount"]), int(query["page"])
        visible = jobs
        if "fromDate" in query:
            visible = [j for j in jobs if str(j["enqueue_time"]) <= query["fromDate"]]
        window = visible[:window_cap]
        data = window[(page - 1) * amount : page * amount]
        return Answer(200, json.dumps(data or [{"msg": "No jobs found."}]).encode())

    return handler


@pytest.mark.parametrize("total", [0, 7, 20, 23, 61])
def test_v1_reanchors_past_the_window_cap(scripted: ScriptedServer, total: int) -> None:
    jobs = [
        {
            "id": f"job-{i:04d}",
            "enqueue_time": f"2023-05-26 07:{i // 60:02d}:{i % 60:02d}.209596",
            "type": "grid",
        }
        for i in range(total, 0, -1)
    ]
    scripted.route("/api/app/recent-jobs/", v1_server(jobs, window_cap=10))
    with MidjourneyClient(make_settings(scripted, api="v1", page_size=5)) as client:
        listing = client.list_jobs()
        ids = [j.id for j in listing]
    assert ids == [j["id"] for j in jobs]
    first = parse_qs(urlsplit(scripted.hits("/api/app/recent-jobs/")[0].path).query)
    assert first["userId"] == [USER] and first["orderBy"] == ["new"] and "fromDate" not in first
    if total > 5:
        later = parse_qs(urlsplit(scripted.hits("/api/app/recent-jobs/")[1].path).query)
        assert later["fromDate"] == [jobs[0]["enqueue_time"]]


def test_v1_windows_that_go_round_in_circles_end(scripted: ScriptedServer) -> None:
    """Only the window before is remembered, so a server that answers every re-anchored
    window with the other of two full windows (whatever fromDate says) is stopped by time:
    a window that does not move the anchor back ends the listing."""
    newer = [
        {"id": f"a-{i}", "enqueue_time": f"2023-05-26 07:00:{50 - i:02d}.0"} for i in range(10)
    ]
    older = [
        {"id": f"b-{i}", "enqueue_time": f"2023-05-26 06:00:{50 - i:02d}.0"} for i in range(10)
    ]
    windows = 0

    def handler(seen: Seen) -> Answer:
        nonlocal windows
        query = {k: v[0] for k, v in parse_qs(urlsplit(seen.path).query).items()}
        page = int(query["page"])
        if page == 1:
            windows += 1
        window = newer if windows % 2 else older
        data = window[(page - 1) * 5 : page * 5]
        return Answer(200, json.dumps(data or [{"msg": "No jobs found."}]).encode())

    scripted.route("/api/app/recent-jobs/", handler)
    with MidjourneyClient(make_settings(scripted, api="v1", page_size=5)) as client:
        ids = [job.id for job in client.list_jobs()]
    assert windows <= 3
    assert ids == [job["id"] for job in newer + older]


def _v1_listing_peak(scripted: ScriptedServer, total: int) -> int:
    """tracemalloc's peak in bytes while a v1 listing of ``total`` jobs is walked to its end
    (windows of 2,500 jobs, as the service caps them); the server's own data is made first."""
    start = datetime(2023, 5, 26, tzinfo=UTC)
    times = [(start - timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f") for i in range(total)]
    index_of = {moment: i for i, moment in enumerate(times)}  # newest first, one second apart
    cap = 2500

    def handler(seen: Seen) -> Answer:
        scripted.requests.clear()  # what the server keeps of each request is not the walk's
        query = {k: v[0] for k, v in parse_qs(urlsplit(seen.path).query).items()}
        amount, page = int(query["amount"]), int(query["page"])
        first_of_window = index_of[query["fromDate"]] if "fromDate" in query else 0
        first = first_of_window + (page - 1) * amount
        last = min(total, first_of_window + cap, first + amount)
        data = [{"id": f"job-{i:07d}", "enqueue_time": times[i]} for i in range(first, last)]
        return Answer(200, json.dumps(data or [{"msg": "No jobs found."}]).encode())

    scripted.route("/api/app/recent-jobs/", handler)
    with MidjourneyClient(make_settings(scripted, api="v1", page_size=50)) as client:
        tracemalloc.start()
        try:
            listed = sum(1 for _ in client.list_jobs())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert listed == total
    return peak


def test_v1_listing_holds_no_id_per_job(scripted: ScriptedServer) -> None:
    """Windows re-anchored again and again hold what two windows hold, not every id seen: both
    sizes are past what the walk keeps (SEEN_IDS), so a set of every id (~120 B each) would be
    ~1.7 MB more at the larger (measured: +3.2 MB from 12k to 36k with such a set, +0.25 MB
    without)."""
    small = _v1_listing_peak(scripted, 11_000)
    large = _v1_listing_peak(scripted, 25_000)
    assert large - small < 1_000_000, (small, large)


def test_v1_new_jobs_mid_listing_do_not_shift_pages(scripted: ScriptedServer) -> None:
    jobs = [
        {"id": f"job-{i:03d}", "enqueue_time": f"2023-05-26 07:00:{i:02d}.000000"}
        for i in range(12, 0, -1)
    ]
    inner = v1_server(jobs, window_cap=2500)
    calls = 0

    def growing(seen: Seen) -> Answer:
        nonlocal calls
        calls += 1
        if calls == 2:  # two new jobs arrive after the first page
            jobs.insert(0, {"id": "new-1", "enqueue_time": "2023-05-26 07:00:50.000000"})
            jobs.insert(0, {"id": "new-2", "enqueue_time": "2023-05-26 07:00:51.000000"})
        return inner(seen)

    scripted.route("/api/app/recent-jobs/", growing)
    with MidjourneyClient(make_settings(scripted, api="v1", page_size=5)) as client:
        ids = [j.id for j in client.list_jobs()]
    assert ids == [f"job-{i:03d}" for i in range(12, 0, -1)]


# -- downloads -------------------------------------------------------------------------------
# Real files: a download checks that a file ends where its own structure says it does.
PNG = make_png(int.from_bytes(os.urandom(4), "big"), 64, 64, size_hint=300_000)
MP4 = make_mp4(int.from_bytes(os.urandom(4), "big"), payload_size=50_000)


def ranged(body: bytes, *, honour_range: bool = True, cut_first: int | None = None):
    """A CDN file: the first answer is cut at `cut_first`; later ones honour Range (or not)."""
    state = {"calls": 0}

    def handler(seen: Seen) -> Answer:
        state["calls"] += 1
        cut = cut_first if state["calls"] == 1 else None
        headers = {"Content-Type": "image/png", "ETag": '"v1"', "Accept-Ranges": "bytes"}
        wanted = seen.headers.get("range")
        if wanted and honour_range:
            start = int(wanted.split("=")[1].rstrip("-"))
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return Answer(206, body[start:], headers, cut)
        return Answer(200, body, headers, cut)

    return handler


def test_download_plain(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/j1/0_0.png", ranged(PNG))
    sink, chunks = io.BytesIO(), []
    with MidjourneyClient(make_settings(scripted)) as client:
        result = client.download("j1/0_0.png", sink, on_chunk=chunks.append)
    assert sink.getvalue() == PNG and b"".join(chunks) == PNG
    assert (result.bytes, result.detected_ext, result.status, result.missing) == (
        len(PNG),
        "png",
        200,
        False,
    )
    headers = scripted.hits("/cdn/j1/0_0.png")[0].headers
    assert headers["sec-fetch-dest"] == "image" and headers["sec-fetch-mode"] == "no-cors"
    assert "cookie" not in headers  # the CDN never gets the session


@pytest.mark.parametrize("cut", [5, 100, 150_000, len(PNG) - 1])
def test_download_resumes_after_a_drop(scripted: ScriptedServer, cut: int) -> None:
    scripted.route("/cdn/j2/0_1.png", ranged(PNG, cut_first=cut))
    sink = io.BytesIO()
    with MidjourneyClient(make_settings(scripted)) as client:
        result = client.download("j2/0_1.png", sink)
    assert sink.getvalue() == PNG and result.resumed == 1
    second = scripted.hits("/cdn/j2/0_1.png")[1].headers
    if cut < 16:  # under the magic-byte window nothing had been written: a plain retry
        assert "range" not in second
    if cut >= 150_000:  # whatever arrived before the drop is kept, not fetched again
        start = int(second["range"].removeprefix("bytes=").rstrip("-"))
        assert 0 < start <= cut and second["if-range"] == '"v1"'


def test_download_restarts_cleanly_when_range_is_ignored(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/j3/0_0.png", ranged(PNG, honour_range=False, cut_first=120_000))
    sink = io.BytesIO()
    with MidjourneyClient(make_settings(scripted)) as client:
        result = client.download("j3/0_0.png", sink)
    assert sink.getvalue() == PNG  # each byte reached the sink once
    assert result.status == 200 and result.resumed == 1


def test_download_detects_a_file_changed_midway(scripted: ScriptedServer) -> None:
    other = PNG[:50] + b"X" + PNG[51:]
    scripted.route("/cdn/j4/0_0.png", [Answer(200, PNG, cut_at=100_000), Answer(200, other)])
    with (
        MidjourneyClient(make_settings(scripted)) as client,
        pytest.raises(DownloadError, match="changed"),
    ):
        client.download("j4/0_0.png", io.BytesIO())


def test_download_missing_is_a_result(scripted: ScriptedServer) -> None:
    with MidjourneyClient(make_settings(scripted)) as client:
        sink = io.BytesIO()
        result = client.download("gone/0_0.png", sink)
    assert isinstance(result, MediaMissing) and result.missing and result.status == 404
    assert sink.getvalue() == b""


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (Answer(200, LOGIN_PAGE, {"Content-Type": "text/html"}), DownloadError, "HTML page"),
        (Answer(200, b"<html>oops</html>", {"Content-Type": "image/png"}), DownloadError, "HTML"),
        (Answer(200, MP4, {"Content-Type": "image/png"}), DownloadError, "not an image"),
        (
            Answer(403, CHALLENGE_PAGE, {"cf-mitigated": "challenge"}),
            ChallengeError,
            "cf_clearance",
        ),
        (Answer(403, b"denied"), DownloadError, "User-Agent"),
        (Answer(200, b""), DownloadError, "empty"),
    ],
)
def test_download_refuses_what_is_not_the_file(
    scripted: ScriptedServer, answer: Answer, error: type[Exception], text: str
) -> None:
    scripted.route("/cdn/j5/0_0.png", answer)
    sink = io.BytesIO()
    with MidjourneyClient(make_settings(scripted)) as client, pytest.raises(error, match=text):
        client.download("j5/0_0.png", sink)
    assert sink.getvalue() == b""


def test_download_cut_short_with_an_agreeing_length_is_damaged(scripted: ScriptedServer) -> None:
    # Content-Length says 200,000 and 200,000 bytes come: only the PNG itself shows the cut.
    scripted.route("/cdn/j7/0_0.png", Answer(200, PNG[:200_000], {"Content-Type": "image/png"}))
    sink = io.BytesIO()
    settings = make_settings(scripted, breaker_threshold=1)  # a damaged file is no outage
    with MidjourneyClient(settings) as client:
        result = client.download("j7/0_0.png", sink)
    assert isinstance(result, MediaDamaged) and result.missing
    assert result.reason.startswith("damaged at the source: the PNG ends without its IEND")
    assert len(scripted.hits("/cdn/j7/0_0.png")) == DAMAGED_ATTEMPTS
    assert all("range" not in hit.headers for hit in scripted.hits("/cdn/j7/0_0.png"))
    assert sink.getvalue() == PNG[:200_000]  # each byte once; the caller discards the sink


def test_download_cut_once_continues_with_the_whole_file(scripted: ScriptedServer) -> None:
    scripted.route(
        "/cdn/j8/0_0.png",
        [Answer(200, PNG[:120_000], {"ETag": '"a"'}), Answer(200, PNG, {"ETag": '"a"'})],
    )
    sink = io.BytesIO()
    with MidjourneyClient(make_settings(scripted)) as client:
        result = client.download("j8/0_0.png", sink)
    assert not result.missing and sink.getvalue() == PNG and result.bytes == len(PNG)


def test_download_cut_video_is_damaged(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/video/v9/0.mp4", Answer(200, MP4[:-7], {"Content-Type": "video/mp4"}))
    with MidjourneyClient(make_settings(scripted)) as client:
        result = client.download("video/v9/0.mp4", io.BytesIO(), expected_kind="video")
    assert isinstance(result, MediaDamaged) and "MP4" in result.reason


def test_download_short_body_every_time_gives_up(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/j6/0_0.png", Answer(200, PNG, {"Content-Type": "image/png"}, cut_at=10))
    with (
        MidjourneyClient(make_settings(scripted, max_retries=2)) as client,
        pytest.raises(DownloadError, match="gave up after 3 attempts"),
    ):
        client.download("j6/0_0.png", io.BytesIO())


def test_video_and_limit_rate(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/video/v1/0.mp4", Answer(200, MP4, {"Content-Type": "video/mp4"}))
    with MidjourneyClient(make_settings(scripted, limit_rate=200_000.0)) as client:
        start = time.monotonic()
        sink = io.BytesIO()
        result = client.download("video/v1/0.mp4", sink, expected_kind="video")
        # 50 kB of burst allowance... at 200 kB/s the rest is paced, never faster than the rate.
        elapsed = time.monotonic() - start
    assert sink.getvalue() == MP4 and result.detected_ext == "mp4"
    assert scripted.hits("/cdn/video/v1/0.mp4")[0].headers["sec-fetch-dest"] == "video"
    assert elapsed < 2.0


def test_limit_rate_paces_concurrent_downloads(scripted: ScriptedServer) -> None:
    for i in range(6):
        scripted.route(f"/cdn/c{i}/0_0.png", ranged(PNG))
    settings = make_settings(scripted, limit_rate=1_000_000.0, concurrency=3)
    with MidjourneyClient(settings) as client:
        start = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            sinks = [io.BytesIO() for _ in range(6)]
            results = list(pool.map(lambda i: client.download(f"c{i}/0_0.png", sinks[i]), range(6)))
        elapsed = time.monotonic() - start
    assert all(s.getvalue() == PNG for s in sinks) and all(r.bytes == len(PNG) for r in results)
    # 1.8 MB at 1 MB/s with a quarter-second burst: at least 1.55 s.
    assert elapsed >= 1.5


def test_a_repeat_from_beyond_the_seen_window_never_ends_an_incremental_listing(
    scripted: ScriptedServer,
) -> None:
    # Newest first, one second apart: more jobs than the listing keeps ids of, then the server
    # serves the first 60 again (a cursor gone back) before the older jobs. The repeats are
    # held already, but they are no sign of having caught up: the older jobs must be listed.
    from datetime import UTC, datetime, timedelta

    from mjvault.sources.midjourney import stop_after_known
    from mjvault.sources.midjourney.client import SEEN_IDS

    start = datetime(2025, 8, 14, tzinfo=UTC)
    count = SEEN_IDS + 2_100
    jobs = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "enqueue_time": (start - timedelta(seconds=i)).isoformat(),
            "job_type": "v7_diffusion",
            "full_command": f"prompt {i}",
            "batch_size": 4,
        }
        for i in range(count)
    ]
    served = jobs[: SEEN_IDS + 2_000] + jobs[:60] + jobs[SEEN_IDS + 2_000 :]
    scripted.route("/api/imagine", cursor_listing(served, page_size=1_000))
    listed: set[str] = set()  # what a sync holds by then: every job listed so far
    with MidjourneyClient(make_settings(scripted)) as client:
        listing = client.list_jobs(stop=stop_after_known(listed.__contains__, run=50))
        for item in listing:
            listed.add(item.id)
    assert listed == {str(j["id"]) for j in jobs}
    assert not listing.stopped_early and listing.cut_short is None
