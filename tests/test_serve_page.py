"""The web app's page in Debian's chromium (through Playwright) against a real `mjvault serve`.

One server and one browser per module, on a small generated vault: the timeline scrolled to
its end and back (with the scroll height clamped low, so the scaled mapping is what reaches
the end), the scrubber, search and facets, the lightbox and its keys, a range selected and
exported. With MJVAULT_SCREENSHOTS=1 each page is photographed into docs/screenshots/ (light,
dark, phone); otherwise the tree is left as it was. The 100k-job scroll is marked ``scale``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mjvault.testing.gallerypage import LAUNCH_ARGS, MONITOR, build_many
from tests.conftest import system_chromium

JOBS = 300
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, vault: Path, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.vault = vault
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mjvault",
                "--vault",
                str(vault),
                "serve",
                "--port",
                str(self.port),
            ],
            cwd=vault.parent,
            env=None if env is None else os.environ | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/api/info", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("mjvault serve did not start") from None
                time.sleep(0.1)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _chromium() -> tuple[str, Any]:
    return system_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    vault = tmp_path_factory.mktemp("serve-page") / "vault"
    build_many(vault, JOBS, pool_size=12)
    running = Server(vault)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, sync_api = _chromium()
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        yield launched
        launched.close()


class Page:
    """A tab on the server's page, with every console error and page error kept."""

    def __init__(self, browser: Any, server: Server, **options: Any) -> None:
        self.context = browser.new_context(
            viewport=options.pop("viewport", {"width": 1280, "height": 800}),
            accept_downloads=True,
            **options,
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        # Which request failed (the console names none).
        self.page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        self.server = server

    def open(self, hash_: str = "", max_height: int | None = None) -> Any:
        if max_height is not None:
            self.page.add_init_script(f"window.MJVAULT_MAX_HEIGHT = {max_height};")
        self.page.add_init_script(MONITOR)
        self.page.goto(self.server.url + "/" + hash_)
        self.until("document.body.dataset.ready === '1'")
        return self.page

    def until(self, expression: str, arg: Any = None, timeout: float = 15_000) -> None:
        # Poll on a timer: requestAnimationFrame polling stalls in a headless page.
        self.page.wait_for_function(expression, arg=arg, polling=50, timeout=timeout)

    def tile_is(self, k: int, job_id: str) -> None:
        """Tile k is in the page, showing job_id with its thumbnail decoded."""
        self.until(
            "([k, id]) => { const t = document.querySelector(`.tile[data-k='${k}']`);"
            " if (!t || t.dataset.id !== id) return false;"
            " const i = t.querySelector('img'); return !i || (i.complete && i.naturalWidth > 0); }",
            [k, job_id],
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Page]:
    opened = Page(browser, server)
    yield opened
    opened.close()
    assert opened.errors == []


def _ids(server: Server, q: str = "", sort: str = "newest") -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        params = {"q": q, "sort": sort, "limit": 1000} | ({"after": after} if after else {})
        answer = server.get("/api/jobs", **params)
        ids += [job["id"] for job in answer["jobs"]]
        after = answer["next"]
        if after is None:
            return ids


# -- the timeline --------------------------------------------------------------------------
def test_the_timeline_scrolls_to_its_end_and_back_through_a_clamped_height(
    tab: Page, server: Server
) -> None:
    ids = _ids(server)
    assert len(ids) == JOBS
    # 300 jobs in rows of six are ~15,000 px; clamped at 4,000 the scroll is scaled, and the
    # last job must still be reached (what Immich#16788 lost past 2^24 px).
    page = tab.open(max_height=4000)
    assert page.inner_text("#count") == f"{JOBS} jobs"
    tab.tile_is(0, ids[0])
    height = page.evaluate("document.getElementById('scroller').scrollHeight")
    assert height <= 4000
    assert page.evaluate("mjvault.timeline.natural") > 4000
    # Only the rows near the viewport exist.
    assert page.locator(".tile").count() < 100
    page.evaluate("s => s.scrollTop = s.scrollHeight", page.query_selector("#scroller"))
    tab.tile_is(JOBS - 1, ids[-1])
    assert page.locator(".tile").count() < 100
    page.keyboard.press("Home")
    tab.tile_is(0, ids[0])
    page.keyboard.press("End")
    tab.tile_is(JOBS - 1, ids[-1])


def test_the_first_screen_does_not_wait_for_the_timeline(browser: Any, server: Server) -> None:
    # The timeline's first ask takes seconds at a million jobs: held here until the first
    # screen shows, then let through, its dates marked on the scrubber when it comes.
    tab = Page(browser, server)
    held: list[Any] = []
    tab.page.route("**/api/timeline*", lambda route: held.append(route))
    try:
        page = tab.open()
        tab.tile_is(0, _ids(server)[0])
        assert len(held) == 1
        assert page.evaluate("document.querySelectorAll('#scrubber .mark').length") == 0
        held.pop().continue_()
        tab.until("document.querySelectorAll('#scrubber .mark').length > 0")
    finally:
        tab.close()
    assert tab.errors == []


def test_the_scrubber_jumps_to_a_date(tab: Page, server: Server) -> None:
    ids = _ids(server)
    page = tab.open()
    tab.tile_is(0, ids[0])
    box = page.locator("#scrubber").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # The hover names the date there: the first date of the segment holding the middle job.
    label = page.inner_text("#scrub-label")
    assert len(label) == 10 and label[:2] == "20"
    page.mouse.down()
    page.mouse.up()
    tab.until("mjvault.timeline.topIndex() > 0")
    top = page.evaluate("mjvault.timeline.topIndex()")
    assert abs(top - JOBS / 2) <= 12  # two rows of six
    tab.tile_is(top, ids[top])
    # The year marks come from the segments' dates.
    years = page.locator("#scrubber .mark").all_inner_texts()
    assert years and all(y[:2] == "20" or len(y) == 3 for y in years)


def test_search_and_facets_narrow_the_timeline(tab: Page, server: Server) -> None:
    page = tab.open()
    word = server.get("/api/jobs", limit=1)["jobs"][0]["prompt"].split()[-1].strip(",")
    expected = _ids(server, q=word)
    assert 0 < len(expected) < JOBS
    page.fill("#search", word)
    tab.until("t => document.getElementById('count').textContent === t", f"{len(expected)} jobs")
    tab.tile_is(0, expected[0])
    # A facet chip adds its term; its count is what the timeline then holds.
    chip = page.locator("#facets .chip").first
    tab.until("document.querySelectorAll('#facets .chip').length > 0")
    term = chip.get_attribute("data-term")
    count = int(chip.locator("small").inner_text().replace(",", ""))
    chip.click()
    assert page.input_value("#search") == f"{word} {term}"
    tab.until("t => document.getElementById('count').textContent === t", f"{count} jobs")
    tab.until("t => document.querySelector(`#facets .chip.on[data-term='${t}']`)", term)
    # Clicked again, it comes out.
    page.locator(f"#facets .chip[data-term='{term}']").click()
    assert page.input_value("#search") == word
    # By relevance: the server's order, segments learnt one after the other.
    ranked = _ids(server, q=word, sort="relevance")
    page.select_option("#sort", "relevance")
    tab.until("t => document.getElementById('count').textContent === t", f"{len(ranked)} jobs")
    tab.tile_is(0, ranked[0])
    if len(ranked) < 30:  # the last one on the same screen
        tab.tile_is(len(ranked) - 1, ranked[-1])
    page.select_option("#sort", "newest")
    page.fill("#search", "")
    tab.until("t => document.getElementById('count').textContent === t", f"{JOBS} jobs")
    # Grouped by parent: a run of jobs of one grid (the grid or its children, one after the
    # other) is drawn as one: its first tile counts them, the others are marked as its own;
    # the order and the count are unchanged.
    jobs = server.get("/api/jobs", limit=JOBS)["jobs"]
    key = [job["parent"] or job["id"] for job in jobs]
    k = next(i for i in range(1, JOBS) if key[i] == key[i - 1] and key[i - 2] != key[i - 1]) - 1
    n = next(i for i in range(k, JOBS) if key[i] != key[k]) - k
    page.select_option("#group", "parent")
    page.evaluate("k => mjvault.timeline.scrollToIndex(k)", k)
    tab.until(
        "([k, n]) => document.querySelector(`.tile[data-k='${k}'] .group`)?.textContent === `${n} jobs`",
        [k, n],
    )
    same = page.evaluate(
        "([k, n]) => [...Array(n + 1).keys()].map(i =>"
        " document.querySelector(`.tile[data-k='${k + i}']`).classList.contains('same'))",
        [k, n],
    )
    assert same == [False] + [True] * (n - 1) + [False]
    assert page.inner_text("#count") == f"{JOBS} jobs"
    page.select_option("#group", "")
    tab.until("!document.querySelector('.tile.same')")


def test_the_lightbox_shows_a_job_its_lineage_and_answers_keys(tab: Page, server: Server) -> None:
    ids = _ids(server)
    page = tab.open()
    tab.tile_is(0, ids[0])
    page.click(".tile[data-k='0']")
    page.wait_for_selector("#lightbox:not([hidden])")
    detail = server.get(f"/api/job/{ids[0]}")
    tab.until("t => document.getElementById('job').textContent === t", ids[0])
    assert page.inner_text("#prompt") == detail["tile"]["prompt"]
    tab.until("document.getElementById('full').complete && full.naturalWidth > 0")
    assert page.get_attribute("#download", "href").endswith("?download=1")
    page.keyboard.press("ArrowRight")
    tab.until("t => document.getElementById('job').textContent === t", ids[1])
    page.keyboard.press("ArrowLeft")
    tab.until("t => document.getElementById('job').textContent === t", ids[0])
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help") and page.is_visible("#lightbox")
    # A job with a parent: its parent link opens the parent, whose children list it.
    child = next(
        job["id"]
        for job in server.get("/api/jobs", limit=JOBS)["jobs"]
        if job["parent"] and job["parent"] in ids
    )
    parent = server.get(f"/api/job/{child}")["lineage"]["parent"]["id"]
    k = ids.index(child)
    page.keyboard.press("Escape")
    assert page.is_hidden("#lightbox")
    page.evaluate("k => mjvault.lightbox.show(k)", k)
    tab.until("t => document.getElementById('job').textContent === t", child)
    page.click(f"#parent a[data-job='{parent}']")
    tab.until("t => document.getElementById('job').textContent === t", parent)
    assert page.locator(f"#children a[data-job='{child}']").count() == 1
    page.keyboard.press("Escape")
    assert page.is_hidden("#lightbox")


def test_a_range_selected_and_exported_as_a_zip(tab: Page, server: Server) -> None:
    ids = _ids(server)
    page = tab.open()
    tab.tile_is(4, ids[4])
    page.click(".tile[data-k='1']", modifiers=["Control"])
    page.click(".tile[data-k='4']", modifiers=["Shift"])
    assert page.inner_text("#selected") == "4 jobs selected"
    assert page.locator(".tile.selected").count() == 4
    page.click(".tile[data-k='3']")  # with a selection, a click toggles
    assert page.inner_text("#selected") == "3 jobs selected"
    with page.expect_download() as caught:
        page.click("#export-zip")
    assert "/api/export/" in caught.value.url  # saved by the browser, not held in the tab
    data = Path(caught.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        text = " ".join(names) + " ".join(
            archive.read(n).decode("utf-8", "replace")
            for n in names
            if n.endswith((".json", ".csv", ".txt"))
        )
    chosen = {ids[1], ids[2], ids[4]}
    assert all(job in text for job in chosen)
    assert not any(job in text for job in set(ids) - chosen)
    page.keyboard.press("Escape")
    assert page.is_hidden("#selection")


def test_a_range_over_more_segments_than_are_kept_has_every_job(tab: Page, server: Server) -> None:
    """Shift-click's range: 30 segments of 10 jobs with 2 kept, each read as it arrives."""
    ids = _ids(server)
    page = tab.open()
    got = page.evaluate(
        """async () => {
          const { Timeline } = await import("/timeline.js");
          const t = Object.create(Timeline.prototype);
          Object.assign(t, { q: "", sort: "newest", size: 10, total: 300, keep: 2,
            generation: 0, cache: new Map(), pending: new Map(),
            segments: Array.from({ length: 30 }, (_, n) => ({ cursor: n ? undefined : null })) });
          return (await t.jobs(3, 296)).map((job) => job.id);
        }"""
    )
    assert got == ids[3:297]


@pytest.mark.parametrize("ours", [True, False])
def test_the_lock_banner_shows_only_holders_elsewhere(
    tab: Page, server: Server, ours: bool
) -> None:
    """A lock event naming this server's own hold (a push it runs) shows no banner."""
    held = json.dumps({"held": True, "holder": "mjvault push (pid 1)", "ours": ours})
    tab.page.route(
        "**/api/events",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"retry: 60000\n\nevent: lock\ndata: {held}\n\n",
        ),
    )
    page = tab.open()
    tab.until("document.body.dataset.ready === '1'")
    page.wait_for_timeout(300)
    assert page.is_hidden("#banner") is ours
    assert page.is_disabled("#push") is not ours


def test_select_all_sends_the_query_not_the_ids(tab: Page, server: Server) -> None:
    page = tab.open()
    tab.until("document.querySelectorAll('.tile[data-id]').length > 3")
    page.click(".tile[data-k='0']", modifiers=["Control"])
    page.click("#select-all")
    assert page.inner_text("#selected") == f"{JOBS} jobs selected"
    page.click(".tile[data-k='2']")  # one left out
    assert page.inner_text("#selected") == f"{JOBS - 1} jobs selected"
    selection = page.evaluate("({...mjvault.selection, exclude: [...mjvault.selection.exclude]})")
    assert selection["all"] is True and len(selection["exclude"]) == 1


def test_make_a_view_of_the_selection_and_replace_it_when_asked(tab: Page, server: Server) -> None:
    ids = _ids(server)
    page = tab.open()
    tab.tile_is(3, ids[3])
    page.click(".tile[data-k='0']", modifiers=["Control"])
    page.click(".tile[data-k='2']", modifiers=["Control"])
    assert page.inner_text("#selected") == "2 jobs selected"
    page.click("#make-view")
    page.fill("#ask-input", "page-picks")
    page.click("#ask-ok")
    tab.until("document.getElementById('task').textContent.startsWith('View page-picks: ')")
    (view,) = [v for v in server.get("/api/views")["views"] if v["name"] == "page-picks"]
    directory = Path(view["directory"])
    assert directory.name == "page-picks" and directory.parent.name == "vault-views"
    shown = {p.name.split("_")[-2] for p in directory.rglob("*") if p.is_symlink()}
    assert shown == {ids[0], ids[2]}
    assert server.get("/api/collections/page-picks")["ids"] == sorted([ids[0], ids[2]])

    # The same name again: the page asks, and only then replaces.
    page.click(".tile[data-k='3']")
    assert page.inner_text("#selected") == "3 jobs selected"
    page.click("#make-view")
    page.fill("#ask-input", "page-picks")
    page.click("#ask-ok")
    tab.until(
        "document.getElementById('ask').open && !document.getElementById('ask-input').offsetParent"
    )
    assert "replace" in page.inner_text("#ask-text")
    page.click("#ask-ok")
    tab.until("document.getElementById('task').textContent.startsWith('View page-picks: ')")
    shown = {p.name.split("_")[-2] for p in directory.rglob("*") if p.is_symlink()}
    assert shown == {ids[0], ids[2], ids[3]}
    # The refused first try is the only failed request (and the console's note of it).
    tab.errors[:] = [e for e in tab.errors if "409" not in e and "/api/views" not in e]


# -- live: a sync from the page, a collection, a forget ------------------------------------
TOKEN = "sess-5e1b0c7d9a2f4e6b8c3d"


def test_a_sync_from_the_page_shows_progress_then_new_tiles_and_a_forget_asks_the_count(
    browser: Any, tmp_path: Path
) -> None:
    from mjvault import Vault
    from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
    from mjvault.sync import SyncOptions, sync
    from mjvault.testing.accounts import Account
    from mjvault.testing.server import FakeMidjourney

    root = tmp_path / "vault"
    Vault.init(root).close()
    with FakeMidjourney(Account.generate(5, 12), token=TOKEN) as midjourney:
        env = {
            "MJVAULT_CONFIG": str(tmp_path / "no-user-config.toml"),
            "MJVAULT_SYSTEM_CONFIG": str(tmp_path / "no-system-config.toml"),
            "MJVAULT_WEB_BASE": midjourney.web_base,
            "MJVAULT_CDN_BASE": midjourney.cdn_base,
            "MJVAULT_MIDJOURNEY_API": "v3",
            "MIDJOURNEY_USER_ID": midjourney.user_id,
            "MIDJOURNEY_SESSION_TOKEN": TOKEN,
            "MJVAULT_SYNC_MAX_RPS": "5000",
        }
        settings = ClientSettings(
            web_base=midjourney.web_base,
            cdn_base=midjourney.cdn_base,
            api="v3",
            user_id=midjourney.user_id,
            token=TOKEN,
            max_rps=5000.0,
            burst=100,
            concurrency=4,
        )
        vault = Vault.open(root)
        try:
            with MidjourneyClient(settings) as client:
                sync(vault, client, SyncOptions(concurrency=4, thumbnails=False))
        finally:
            vault.close()
        server = Server(root, env)
        tab = Page(browser, server)
        try:
            page = tab.open()
            tab.until("document.getElementById('count').textContent === '12 jobs'")
            added = midjourney.add_jobs(3)
            page.click("#sync")
            # Progress, then done; the new jobs arrive at the top without a reload.
            try:
                tab.until(
                    "document.getElementById('task').textContent.startsWith('sync done')",
                    timeout=60_000,
                )
            except Exception:
                raise AssertionError(page.inner_text("#task") + " " + str(tab.errors)) from None
            tab.until("document.getElementById('count').textContent === '15 jobs'")
            newest = server.get("/api/jobs", limit=3)["jobs"]
            assert {job["id"] for job in newest} == {job.id for job in added}
            tab.tile_is(0, newest[0]["id"])
            assert page.evaluate("document.body.dataset.ready") == "1"  # the same page
            # A collection of two jobs, made from a selection.
            page.click(".tile[data-k='0']", modifiers=["Control"])
            page.click(".tile[data-k='1']")
            page.click("#add-collection")
            page.fill("#ask-input", "picks")
            page.click("#ask-ok")
            tab.until("document.getElementById('task').textContent === 'Added to picks'")
            picks = server.get("/api/collections")
            assert any(c["name"] == "picks" and c["jobs"] == 2 for c in picks["collections"])
            # Forget them: the confirmation names the count; cancelled first, then confirmed.
            page.click("#forget")
            assert page.inner_text("#ask-text").startswith("Forget 2 jobs?")
            page.click("#ask menu button[value='cancel']")
            assert page.inner_text("#count") == "15 jobs"
            page.click("#forget")
            page.click("#ask-ok")
            tab.until("document.getElementById('count').textContent === '13 jobs'")
            # The bar goes once the page has the answer; the count may be drawn first.
            page.wait_for_selector("#selection", state="hidden", timeout=10_000)
            left = {job["id"] for job in server.get("/api/jobs", limit=100)["jobs"]}
            assert newest[0]["id"] not in left and newest[1]["id"] not in left
        finally:
            tab.close()
            server.stop()
    assert tab.errors == []


# -- the dashboard -------------------------------------------------------------------------
SECTIONS = [
    "The archive",
    "Streaks and sessions",
    "Jobs a month",
    "Jobs a week",
    "Days",
    "Hour and weekday",
    "Model versions",
    "Job types",
    "Parameters",
    "Prompt length",
    "Grids and follow-ups",
    "Top terms",
    "Rising and falling terms",
    "Signature terms",
    "Cost (an estimate)",
]
MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
AXIS_TEXT = """title => [...document.querySelectorAll('#dashboard .card')]
  .find(c => c.querySelector('h3').textContent.startsWith(title))
  .querySelectorAll('svg text')"""


def _axis(page: Any, title: str, anchor: str) -> list[str]:
    return list(
        page.evaluate(
            f"title => [...({AXIS_TEXT})(title)]"
            f".filter(t => (t.getAttribute('text-anchor') || 'start') === '{anchor}')"
            ".map(t => t.textContent)",
            title,
        )
    )


def test_the_dashboard_shows_every_section_of_the_insights_document(
    tab: Page, server: Server
) -> None:
    doc = server.get("/api/stats")
    page = tab.open("#/dashboard")
    tab.until("document.querySelectorAll('#dashboard .card svg').length >= 8")
    titles = page.eval_on_selector_all("#dashboard .card h3", "hs => hs.map(h => h.textContent)")
    for section in SECTIONS:
        assert any(t.startswith(section) for t in titles), (section, titles)
    if doc["ratings"]["jobs_with_record_fields"]:
        assert any(t.startswith("Likes and ranks") for t in titles)
    # The zone the activity is told in is named with it.
    zone = doc["activity"]["timezone"]
    assert f"Jobs a month ({zone})" in titles
    assert page.text_content("#dashboard .totals b") == f"{doc['totals']['jobs']:,}"
    # A bar a month, a square a day of the calendar, a cell an hour and weekday.
    bars = "t => [...({})(t)].length".format(AXIS_TEXT.replace("svg text", "svg rect.bar"))
    assert page.evaluate(bars, "Jobs a month") == len(doc["activity"]["per_month"])
    assert page.evaluate("document.querySelectorAll('#dashboard rect.day').length") == len(
        doc["activity"]["heatmap"]
    )
    # Counts are marked in whole numbers, time in month names and years.
    for title in ("Jobs a month", "Jobs a week", "Job types"):
        ticks = _axis(page, title, "end")
        assert ticks and all(t.replace(",", "").isdigit() for t in ticks), (title, ticks)
        dates = [t for t in _axis(page, title, "start") if t]
        assert dates and all(t in MONTHS or (t.isdigit() and len(t) == 4) for t in dates), dates
    # The cost is an estimate, in its currency, with the table it used.
    cost = page.text_content("#dashboard .card:has(details)")
    assert "estimate" in cost and doc["cost"]["currency"] in cost
    for entry in doc["cost"]["table"]:
        assert entry in cost
    # The top term of the archive is listed first.
    top = page.evaluate(
        "[...document.querySelectorAll('#dashboard .card')]"
        ".find(c => c.querySelector('h3').textContent.startsWith('Top terms'))"
        ".querySelector('tbody td').textContent"
    )
    assert top in {t for m in doc["terms"]["top"] for t, _ in m["terms"]}


def test_the_dashboard_filters_by_the_search_query_dates_and_time_zone(
    tab: Page, server: Server
) -> None:
    word = server.get("/api/stats")["terms"]["top"][-1]["terms"][0][0]
    narrowed = server.get("/api/stats", q=word)["totals"]["jobs"]
    everything = server.get("/api/stats")["totals"]["jobs"]
    assert 0 < narrowed < everything
    page = tab.open()
    page.fill("#search", word)
    page.click("#pages a[data-page='dashboard']")
    tab.until(
        "n => document.getElementById('dash-status').textContent === n",
        f"{narrowed:,} matching jobs",
    )
    assert page.input_value("#dash-q") == word
    assert page.text_content("#dashboard .totals b") == f"{narrowed:,}"
    # A time zone: the hours move with it (a half-hour zone, to be sure).
    page.fill("#dash-tz", "Asia/Kolkata")
    page.dispatch_event("#dash-tz", "change")
    tab.until(
        "[...document.querySelectorAll('#dashboard h3')]"
        ".some(h => h.textContent === 'Hour and weekday (Asia/Kolkata)')"
    )
    # Dates: a day range the API counts the same.
    first = server.get("/api/stats", q=word)["totals"]["first"]
    page.fill("#dash-since", first)
    page.fill("#dash-until", first)
    page.click("#dash-filters button[type=submit]")
    on_day = server.get("/api/stats", q=word, since=first, until=first, tz="Asia/Kolkata")
    tab.until(
        "n => document.getElementById('dash-status').textContent === n",
        f"{on_day['totals']['jobs']:,} matching jobs",
    )


def test_stats_take_a_time_zone_and_refuse_an_unknown_one(server: Server) -> None:
    utc = server.get("/api/stats", tz="UTC")
    kolkata = server.get("/api/stats", tz="Asia/Kolkata")
    assert utc["activity"]["timezone"] == "UTC"
    assert kolkata["activity"]["timezone"] == "Asia/Kolkata"
    assert utc["totals"]["jobs"] == kolkata["totals"]["jobs"]
    # Hours shifted by 5:30: the same jobs, other cells (months of evolution stay UTC's).
    assert utc["activity"]["hour_weekday"] != kolkata["activity"]["hour_weekday"]
    assert sum(map(sum, utc["activity"]["hour_weekday"])) == sum(
        map(sum, kolkata["activity"]["hour_weekday"])
    )
    assert utc["evolution"] == kolkata["evolution"]
    answer = httpx.get(server.url + "/api/stats", params={"tz": "Mars/Olympus"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_parameter"
    # Without tz, the configured zone (read at each ask, as `mjvault stats` reads it).
    from mjvault.config.loader import vault_config_path

    config = vault_config_path(server.vault)
    before = config.read_text() if config.exists() else None
    config.write_text((before or "") + '\n[insights]\ntimezone = "Asia/Kolkata"\n')
    try:
        configured = server.get("/api/stats")
    finally:
        if before is None:
            config.unlink()
        else:
            config.write_text(before)
    assert configured["activity"]["timezone"] == "Asia/Kolkata"
    assert configured["activity"]["hour_weekday"] == kolkata["activity"]["hour_weekday"]


# -- the other pages, and photographs of each ----------------------------------------------
def _pages(tab: Page) -> Iterator[tuple[str, Any]]:
    page = tab.open()
    tab.until("document.querySelectorAll('.tile img').length > 0")
    tab.until("[...document.querySelectorAll('.tile img')].every(i => i.complete)")
    yield "timeline", page
    page.click(".tile[data-k='1']", modifiers=["Control"])
    page.click(".tile[data-k='3']", modifiers=["Shift"])
    page.wait_for_selector("#selection:not([hidden])")
    yield "selection", page
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    yield "keys", page
    page.keyboard.press("Escape")
    page.click(".tile[data-k='0']")
    tab.until("document.getElementById('full').complete && full.naturalWidth > 0")
    yield "lightbox", page
    page.keyboard.press("Escape")
    page.click("#pages a[data-page='dashboard']")
    tab.until("document.querySelectorAll('#dashboard svg').length >= 2")
    yield "dashboard", page
    page.click("#pages a[data-page='snapshots']")
    tab.until("document.querySelectorAll('#snapshots tbody tr').length > 0")
    yield "snapshots", page
    page.click("#pages a[data-page='remotes']")
    tab.until(
        "!document.getElementById('no-remotes').hidden || document.querySelector('#remotes tbody tr')"
    )
    yield "remotes", page


@pytest.mark.parametrize(
    "look",
    [
        {"name": "light", "color_scheme": "light"},
        {"name": "dark", "color_scheme": "dark"},
        {"name": "phone", "color_scheme": "dark", "viewport": {"width": 390, "height": 844}},
    ],
    ids=lambda look: look["name"],
)
def test_every_page_in_light_dark_and_on_a_phone(
    browser: Any, server: Server, look: dict[str, Any]
) -> None:
    options = {k: v for k, v in look.items() if k != "name"}
    tab = Page(browser, server, **options)
    keep = os.environ.get("MJVAULT_SCREENSHOTS") == "1"
    try:
        for name, page in _pages(tab):
            # The theme the system asks for is the one drawn.
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(17, 17, 17)") == (look["color_scheme"] == "dark"), name
            if keep:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / f"serve-{name}-{look['name']}.png"))
        if look["name"] == "phone":
            # Nothing wider than the phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # The toggle overrides the system's choice, and is remembered.
        page.click("#theme")
        flipped = page.evaluate("document.documentElement.dataset.theme")
        assert flipped == ("light" if look["color_scheme"] == "dark" else "dark")
        page.reload()
        tab.until("document.body.dataset.ready === '1'")
        assert page.evaluate("document.documentElement.dataset.theme") == flipped
    finally:
        tab.close()
    assert tab.errors == []


# -- at scale ------------------------------------------------------------------------------
@pytest.mark.scale
def test_a_100k_timeline_scrolls_to_its_end_without_a_long_task(
    browser: Any, tmp_path: Path
) -> None:
    jobs = 100_000
    build_many(tmp_path / "vault", jobs, pool_size=64)
    big = Server(tmp_path / "vault")
    tab = Page(browser, big, viewport={"width": 1280, "height": 800})
    try:
        oldest = big.get("/api/jobs", sort="oldest", limit=1)["jobs"][0]["id"]
        newest = big.get("/api/jobs", limit=1)["jobs"][0]["id"]
        page = tab.open()
        tab.tile_is(0, newest)
        # 100k jobs in rows of six are ~3.4M px: under the clamp, so clamp it lower to
        # exercise the scaling at the size a million jobs would need.
        page.evaluate("mjvault.timeline.maxHeight = 1_000_000; mjvault.timeline.relayout()")
        page.evaluate("__monitor.reset()")
        scroller = page.query_selector("#scroller")
        for step in range(1, 101):  # a dragged scrollbar, a frame apart
            page.evaluate(
                "([s, f]) => s.scrollTop = f * (s.scrollHeight - s.clientHeight)",
                [scroller, step / 100],
            )
            page.wait_for_timeout(16)
        tab.tile_is(
            jobs - 1,
            oldest,
        )
        page.keyboard.press("Home")
        tab.tile_is(0, newest)
        monitor = page.evaluate(
            "({longest: __monitor.longest, longTasks: __monitor.longTasks, maxGap: __monitor.maxGap,"
            " tiles: document.querySelectorAll('.tile').length})"
        )
        print(f"100k timeline, scrolled to the end and back: {monitor}")
        assert monitor["longest"] < 200, monitor
        assert monitor["tiles"] < 150
    finally:
        tab.close()
        big.stop()
    assert tab.errors == []
