"""The static gallery: its files, its thumbnail cache, encrypted vaults, and a real browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mjvault import Vault
from mjvault.find.gallery import build_gallery, image_paths
from mjvault.find.gallery.chunks import gallery_rows
from mjvault.find.gallery.thumbs import CACHE_FILE, OLD_CACHE_FILE, ThumbCache, make_thumbnail
from mjvault.testing.images import make_png
from tests.conftest import CHEAP_KDF, PASSPHRASE, run_cli, system_chromium

PROMPTS = ["a red fox in the misty forest", "a bowl of ramen", "café at night, neon"]


def _fill(vault: Vault) -> list[str]:
    with vault.writer("test") as writer:
        images = [writer.put_media(make_png(i, 240, 160)) for i in range(5)]
        for i, prompt in enumerate(PROMPTS):
            record = {
                "id": f"job-{i}",
                "full_command": f'{prompt} "quoted" --ar 3:2 --v 6.1',
                "enqueue_time": f"2024-0{i + 1}-15 12:00:00",
                "type": "grid",
            }
            writer.add_job(json.dumps(record).encode(), images[2 * i : 2 * i + 2])
    return images


def _data(directory: Path) -> dict[str, Any]:
    """data.js's head, with every job of its chunk files under "jobs"."""
    text = (directory / "data.js").read_text(encoding="utf-8")
    prefix = "window.MJVAULT_GALLERY = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    head: dict[str, Any] = json.loads(text[len(prefix) :].rstrip().rstrip(";"))
    return head | {"jobs": list(gallery_rows(directory))}


def test_plain_gallery_points_at_objects_and_caches_thumbnails(
    vault: Vault, tmp_path: Path
) -> None:
    images = _fill(vault)
    out = tmp_path / "gallery"
    report = build_gallery(vault, out)
    assert (report.jobs, report.images, report.thumbs_made) == (3, 5, 5)
    assert {p.name for p in out.iterdir()} == {
        "index.html",
        "gallery.css",
        "gallery.js",
        "data.js",
        "chunks",
    }
    data = _data(out)
    assert [job[0] for job in data["jobs"]] == ["job-2", "job-1", "job-0"]
    newest = data["jobs"][0]
    assert newest[3] == 'café at night, neon "quoted"'
    assert newest[4] == "--ar 3:2 --version 6.1"
    thumb, full = image_paths(data, newest[5][0])
    assert newest[5][0][2] == "png"
    assert (out / full).resolve() == vault.object_path(images[4]).resolve()
    with Image.open(out / thumb) as picture:
        assert picture.format == "WEBP" and max(picture.size) <= 320
    again = build_gallery(vault, tmp_path / "second", "fox")
    assert (again.jobs, again.thumbs_made, again.thumbs_cached) == (1, 0, 2)
    with ThumbCache(vault.path) as cache:
        assert cache.get(images[0], 320) is not None
        thumbs = set(cache.object_ids())
    assert len(thumbs) == 5 and all(vault.store.exists(t) for t in thumbs)


def test_encrypted_gallery_writes_decrypted_copies(encrypted_vault: Vault, tmp_path: Path) -> None:
    _fill(encrypted_vault)
    out = tmp_path / "gallery"
    report = build_gallery(encrypted_vault, out)
    assert report.decrypted_dir == out / "media"
    assert report.decrypted_copies == 10  # 5 images and their 5 thumbnails
    for job in _data(out)["jobs"]:
        for image in job[5]:
            thumb, full = image_paths(_data(out), image)
            assert full.startswith("media/")  # never into the vault: its objects are ciphertext
            with Image.open(out / full) as picture:
                assert picture.size == (240, 160)
            with Image.open(out / thumb) as picture:
                assert picture.format == "WEBP"
    assert build_gallery(encrypted_vault, out).decrypted_copies == 0


def test_unreadable_images_are_left_out(vault: Vault, tmp_path: Path) -> None:
    with vault.writer("test") as writer:
        broken = writer.put_media(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
        writer.add_job(json.dumps({"id": "x", "full_command": "broken"}).encode(), [broken])
    report = build_gallery(vault, tmp_path / "g")
    assert report.unreadable == [broken] and report.jobs == 0
    assert make_thumbnail(b"nothing", 64) is None


def test_cli_reports_and_refuses_the_vault_itself(vault: Vault, tmp_path: Path) -> None:
    _fill(vault)
    done = run_cli("--vault", str(vault.path), "gallery", str(tmp_path / "g"), "ramen")
    assert done.returncode == 0, done.stderr
    assert b"1 jobs, 2 images" in done.stdout
    assert b"1 chunk files, 1 written (0 unchanged)" in done.stdout
    inside = run_cli("--vault", str(vault.path), "gallery", str(vault.path / "g"))
    assert inside.returncode == 2 and b"outside the vault" in inside.stderr


# -- a real browser ------------------------------------------------------------------------
def _browser() -> tuple[str, Any]:
    """Debian's chromium and Playwright's sync API, or a skip saying which is missing."""
    return system_chromium()


@pytest.mark.parametrize("kind", ["plain", "encrypted"])
def test_gallery_in_chromium(kind: str, tmp_path: Path) -> None:
    chromium, sync_api = _browser()
    if kind == "plain":
        vault = Vault.init(tmp_path / "vault")
    else:
        vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    _fill(vault)
    out = tmp_path / "gallery"
    build_gallery(vault, out)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((out / "index.html").as_uri())

            def wait_until(expression: str) -> None:
                # Poll on a timer: requestAnimationFrame polling stalls in a headless page.
                page.wait_for_function(expression, polling=50, timeout=15_000)

            wait_until("document.querySelectorAll('.tile').length === 5")
            assert "5 images · 3 jobs" in page.inner_text("#count")
            # Every thumbnail decoded.
            wait_until(
                "[...document.querySelectorAll('.tile img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.fill("#search", "CAFE")  # case- and accent-insensitive
            wait_until("document.querySelectorAll('.tile').length === 1")
            page.click(".tile")
            page.wait_for_selector("#lightbox:not([hidden])")
            wait_until("document.getElementById('full').complete && full.naturalWidth > 0")
            assert page.eval_on_selector("#full", "i => i.naturalWidth") == 240
            assert page.inner_text("#prompt") == 'café at night, neon "quoted"'
            assert page.inner_text("#params") == "--ar 3:2 --version 6.1"
            assert page.inner_text("#which") == "1 of 1"
            assert "2024-03-15" in page.inner_text("#date")
            page.screenshot(path=str(tmp_path / "lightbox.png"))
            page.keyboard.press("Escape")
            assert page.is_hidden("#lightbox")
            # Field filters as in `mjvault search`: v:6 is the 6 family, s:25 is not 250.
            for query, tiles in (("v:6 ar:3:2 type:grid", 5), ("v:7", 0), ("-v:6.1", 0)):
                page.fill("#search", query)
                wait_until(f"document.querySelectorAll('.tile').length === {tiles}")
            page.fill("#search", "-fox")
            wait_until("document.querySelectorAll('.tile').length === 3")
            page.click(".tile >> nth=2")  # ramen's second image, then back to its first
            wait_until("document.getElementById('which').textContent === '2 of 2'")
            page.keyboard.press("ArrowLeft")
            wait_until("document.getElementById('which').textContent === '1 of 2'")
            assert errors == []
        finally:
            browser.close()
    vault.close()
    assert (tmp_path / "lightbox.png").stat().st_size > 1000


def test_a_shared_image_gets_one_thumbnail(vault: Vault, tmp_path: Path) -> None:
    with vault.writer("test") as writer:
        image = writer.put_media(make_png(9, 100, 100))
        for i in range(12):
            writer.add_job(json.dumps({"id": f"s{i}", "full_command": "same"}).encode(), [image])
    report = build_gallery(vault, tmp_path / "g", workers=4)
    assert (report.images, report.thumbs_made, report.thumbs_cached) == (12, 1, 11)
    assert len({job[5][0][0] for job in _data(tmp_path / "g")["jobs"]}) == 1
    assert all(job[5][0][0] for job in _data(tmp_path / "g")["jobs"])


def test_the_count_names_jobs_without_images(vault: Vault, tmp_path: Path) -> None:
    _fill(vault)
    with vault.writer("test") as writer:
        record = {"id": "job-bare", "full_command": "a fox with no images", "type": "grid"}
        writer.add_job(json.dumps(record).encode(), [None, None])
    report = build_gallery(vault, tmp_path / "g")
    assert (report.jobs, report.jobs_without_images) == (3, 1)
    done = run_cli("--vault", str(vault.path), "gallery", str(tmp_path / "g2"))
    assert done.returncode == 0, done.stderr
    assert b"3 jobs (1 more without images, not shown), 5 images" in done.stdout


def test_gallery_type_filter_takes_the_words_search_takes(tmp_path: Path) -> None:
    chromium, sync_api = _browser()
    vault = Vault.init(tmp_path / "vault")
    with vault.writer("test") as writer:
        for i, (key, kind) in enumerate(
            [("event_type", "video_diffusion"), ("event_type", "diffusion"), ("type", "grid")]
        ):
            image = writer.put_media(make_png(i, 64, 64))
            record = {"id": f"job-{i}", "full_command": f"fox {i}", key: kind}
            writer.add_job(json.dumps(record).encode(), [image])
    out = tmp_path / "gallery"
    build_gallery(vault, out)
    vault.close()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto((out / "index.html").as_uri())
            for query, tiles in (("type:video", 1), ("type:grid", 2), ("-type:grid", 1)):
                page.fill("#search", query)
                page.wait_for_function(
                    f"document.querySelectorAll('.tile').length === {tiles}",
                    polling=50,
                    timeout=5_000,
                )
        finally:
            browser.close()


# -- at scale: chunks written as they change, a cache that is never loaded whole ----------
WORDS = ["fox", "ramen", "lighthouse", "orchid", "tram"]


def _fill_many(vault: Vault, jobs: int, first: int = 0) -> None:
    """``jobs`` one-image jobs, each newer than the one before; the oldest is the zebra."""
    with vault.writer("test") as writer:
        for i in range(first, first + jobs):
            image = writer.put_media(make_png(i, 32, 32))
            prompt = "a lonely zebra" if i == 0 else f"picture {i} of a {WORDS[i % 5]}"
            record = {
                "id": f"many-{i:04d}",
                "full_command": f"{prompt} --ar 1:1",
                "enqueue_time": f"2024-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
                "type": "upscale",
            }
            writer.add_job(json.dumps(record).encode(), [image])


def _chunk_files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (directory / "chunks").iterdir()}


def test_a_rerun_makes_no_thumbnail_and_rewrites_only_changed_chunks(
    vault: Vault, tmp_path: Path
) -> None:
    _fill_many(vault, 200)
    out = tmp_path / "g"
    first = build_gallery(vault, out, chunk_jobs=8)
    before = _chunk_files(out)
    assert first.chunks_written == len(before) > 10 and first.thumbs_made == 200
    again = build_gallery(vault, out, chunk_jobs=8)
    assert (again.thumbs_made, again.thumbs_cached, again.chunks_written) == (0, 200, 0)
    assert _chunk_files(out) == before  # not one file rewritten
    # A new job (the newest) lands in the first chunk: that chunk alone is written, and the
    # one it replaces is removed.
    _fill_many(vault, 1, first=200)
    third = build_gallery(vault, out, chunk_jobs=8)
    assert (third.thumbs_made, third.thumbs_cached, third.chunks_written) == (1, 200, 1)
    after = _chunk_files(out)
    assert len(set(after) - set(before)) == 1 and len(after) - len(before) in (0, 1)
    assert {f"{c[0]}.js" for c in _data(out)["chunks"]} == set(after)
    assert [row[0] for row in gallery_rows(out)] == [f"many-{i:04d}" for i in range(200, -1, -1)]


def test_an_old_thumbs_json_is_migrated_once(vault: Vault, tmp_path: Path) -> None:
    images = _fill(vault)
    build_gallery(vault, tmp_path / "g")
    with ThumbCache(vault.path) as cache:
        entries = {f"{s}:320": list(cache.get(s, 320) or ()) for s in images}
    (vault.path / CACHE_FILE).unlink()
    old = vault.path / OLD_CACHE_FILE
    old.write_text(json.dumps({"v": 1, "thumbs": entries}, separators=(",", ":")))
    report = build_gallery(vault, tmp_path / "g2")
    assert (report.thumbs_made, report.thumbs_cached) == (0, 5)
    assert not old.exists() and (vault.path / CACHE_FILE).exists()
    # A damaged cache is a cache: it is made again, and the gallery is whole.
    (vault.path / CACHE_FILE).write_bytes(b"not a database" * 100)
    report = build_gallery(vault, tmp_path / "g3")
    assert (report.jobs, report.thumbs_made) == (3, 5)
    assert build_gallery(vault, tmp_path / "g3").thumbs_made == 0


def test_chunked_gallery_in_chromium(tmp_path: Path) -> None:
    chromium, sync_api = _browser()
    vault = Vault.init(tmp_path / "vault")
    _fill_many(vault, 150)
    out = tmp_path / "gallery"
    report = build_gallery(vault, out, chunk_jobs=8)
    vault.close()
    chunks = len(_data(out)["chunks"])
    assert report.chunks_written == chunks > 10
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def wait_until(expression: str) -> None:
                page.wait_for_function(expression, polling=50, timeout=15_000)

            # Chunk files the page asked for (resource timing leaves out file:// URLs).
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url) if "/chunks/" in r.url else None)

            def chunks_loaded() -> int:
                return len(set(asked))

            page.goto((out / "index.html").as_uri())
            wait_until("document.querySelectorAll('.tile img').length > 20")
            page.wait_for_timeout(300)
            assert "150 images · 150 jobs" in page.inner_text("#count")
            assert page.locator(".tile").count() < 150 and 0 < chunks_loaded() < chunks
            page.screenshot(path=str(tmp_path / "grid.png"))
            # The page is as tall as every tile from the start: one jump reaches the end,
            # whose chunk is loaded, and only the rows near the viewport exist.
            page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
            wait_until(
                "document.querySelector('.tile[data-k=\"149\"]')?.title === 'a lonely zebra'"
            )
            assert page.locator(".tile").count() < 150 and chunks_loaded() < chunks
            # A narrower window: two columns instead of four, every tile within the grid,
            # and the tile that was at the top of the screen still there.
            top_tile = (
                "Math.min(...[...document.querySelectorAll('.tile')]"
                ".filter(t => t.getBoundingClientRect().bottom > 0).map(t => +t.dataset.k))"
            )
            before = page.evaluate(top_tile)
            page.set_viewport_size({"width": 420, "height": 600})
            wait_until(
                "(() => { const g = document.getElementById('grid').getBoundingClientRect(),"
                " tiles = [...document.querySelectorAll('.tile')].map(t => t.getBoundingClientRect());"
                " return tiles.length > 0 && tiles.every(r => r.right <= g.right + 0.5)"
                " && new Set(tiles.map(r => Math.round(r.left))).size === 2; })()"
            )
            assert 0 <= before - page.evaluate(top_tile) < 2
            # A fresh page: the zebra's chunk is the last, not loaded, and search finds it.
            page.goto("about:blank")
            page.set_viewport_size({"width": 800, "height": 600})
            asked.clear()
            page.goto((out / "index.html").as_uri())
            wait_until("document.querySelectorAll('.tile img').length > 20")
            assert 0 < chunks_loaded() < chunks
            page.fill("#search", "ZEBRA")
            wait_until("document.querySelectorAll('.tile').length === 1")
            wait_until("document.getElementById('count').textContent === '1 image · 1 job'")
            page.click(".tile")
            page.wait_for_selector("#lightbox:not([hidden])")
            wait_until("document.getElementById('full').complete && full.naturalWidth === 32")
            assert page.inner_text("#prompt") == "a lonely zebra"
            assert page.inner_text("#job") == "many-0000"
            page.click("#copy")
            wait_until("document.getElementById('copy').textContent === 'Copied'")
            page.screenshot(path=str(tmp_path / "zebra.png"))
            page.keyboard.press("Escape")
            # Words in chunks across the whole gallery: every fox, one in five.
            page.fill("#search", "fox -zebra")
            wait_until("document.getElementById('count').textContent === '29 images · 29 jobs'")
            assert errors == []
        finally:
            browser.close()


def test_a_video_is_remembered_so_the_next_gallery_need_not_open_it(
    vault: Vault, tmp_path: Path
) -> None:
    from mjvault.testing.images import make_mp4

    with vault.writer("test") as writer:
        clip, still = writer.put_media(make_mp4(1)), writer.put_media(make_png(1, 40, 40))
        writer.add_job(json.dumps({"id": "v", "full_command": "a clip"}).encode(), [clip, still])
    first = build_gallery(vault, tmp_path / "g")
    assert (first.videos, first.images, first.thumbs_made) == (1, 1, 1)
    with ThumbCache(vault.path) as cache:
        assert cache.get(clip, 320) == ("", "mp4")
    again = build_gallery(vault, tmp_path / "g")
    assert (again.videos, again.images, again.thumbs_made, again.chunks_written) == (1, 1, 0, 0)
    assert [image[2] for image in _data(tmp_path / "g")["jobs"][0][5]] == ["mp4", "png"]


def test_a_file_where_the_chunks_go_is_a_clear_error(vault: Vault, tmp_path: Path) -> None:
    _fill(vault)
    out = tmp_path / "g"
    out.mkdir()
    (out / "chunks").write_text("not a directory")
    done = run_cli("--vault", str(vault.path), "gallery", str(out))
    assert done.returncode == 2 and b"chunks exists and is not a directory" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_large_thumbs_json_is_read_a_block_at_a_time(tmp_path: Path) -> None:
    # More than one read block: entries cut by a block's end must still be read whole.
    entries = {
        f"{i:064x}:{320 + i % 2}": [f"{i * 7:064x}", ("png", "jpg", "webp")[i % 3]]
        for i in range(9_000)
    }
    old = tmp_path / OLD_CACHE_FILE
    old.parent.mkdir()
    old.write_text(json.dumps({"v": 1, "thumbs": entries}, separators=(",", ":")))
    assert old.stat().st_size > 1 << 20  # two read blocks
    with ThumbCache(tmp_path) as cache:
        assert sum(1 for _ in cache.object_ids()) == 9_000
        assert cache.get(f"{4_321:064x}", 321) == (f"{4_321 * 7:064x}", "jpg")
        assert cache.get(f"{8_999:064x}", 321) == (f"{8_999 * 7:064x}", "webp")
    assert not old.exists()


def test_a_missing_chunk_file_shows_its_tiles_as_unreadable(tmp_path: Path) -> None:
    chromium, sync_api = _browser()
    vault = Vault.init(tmp_path / "vault")
    _fill_many(vault, 150)
    out = tmp_path / "gallery"
    build_gallery(vault, out, chunk_jobs=8)
    vault.close()
    chunks = _data(out)["chunks"]
    (out / "chunks" / f"{chunks[1][0]}.js").unlink()  # a gallery made again meanwhile, say
    lost = range(chunks[0][2], chunks[0][2] + chunks[1][2])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto((out / "index.html").as_uri())
            page.wait_for_function(
                "document.getElementById('count').textContent.endsWith(' · 1 part missing')",
                polling=50,
                timeout=15_000,
            )
            # Its tiles say so, and wait for nothing; the tiles around them are whole.
            page.wait_for_function(
                "!document.querySelector('.tile.waiting')", polling=50, timeout=15_000
            )
            for k in (lost[0] - 1, *lost, lost[-1] + 1):
                text = page.inner_text(f'.tile[data-k="{k}"]')
                assert (text == "?") == (k in lost), k
            page.click(f'.tile[data-k="{lost[0]}"]')  # nothing to show: no lightbox
            page.wait_for_timeout(200)
            assert page.is_hidden("#lightbox")
            after = lost[-1] + 1  # newest job first: tile k is job 149 - k
            page.click(f'.tile[data-k="{after}"]')
            page.wait_for_selector("#lightbox:not([hidden])")
            assert page.inner_text("#job") == f"many-{149 - after:04d}"
        finally:
            browser.close()
