"""The "Duplicates" page and ``GET /api/dupes`` against a real `mjvault serve` (Debian's
chromium through Playwright, as tests/test_serve_page.py): groups as rows of thumbnails, the
best marked, a thumbnail opening its job's lightbox, a group's others selected."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mjvault import Vault
from mjvault.similarity.hashing import HASH_BYTES, hashes_of_bytes
from mjvault.similarity.store import HashStore
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.gallerypage import LAUNCH_ARGS
from mjvault.thumbnails import head_images
from tests.test_serve_page import SCREENSHOTS, Page, Server, _chromium


def _flipped(hash_: bytes, bits: int) -> bytes:
    value = int.from_bytes(hash_, "big")
    for bit in range(bits):
        value ^= 1 << (bit * 7 % (8 * HASH_BYTES))
    return value.to_bytes(HASH_BYTES, "big")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A small vault whose images are hashed, three of them made near copies of the first."""
    root = tmp_path_factory.mktemp("dupes-page")
    write_sample_archive(root / "mj", jobs=6, seed=21)
    with Vault.init(root / "vault") as vault:
        import_archive(vault, root / "mj", thumbnail_wait=None)
        images = sorted(set(head_images(vault)))
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            for object_id in images:
                hashes = hashes_of_bytes(vault.read_object(object_id))
                assert hashes is not None
                store.put(object_id, hashes)
            whole = hashes_of_bytes(vault.read_object(images[0]))
            assert whole
            for n, object_id in enumerate(images[1:3], 1):
                store.put(object_id, [_flipped(whole[0], n)])
    return root / "vault", images[:3]


@pytest.fixture(scope="module")
def server(planted: tuple[Path, list[str]]) -> Iterator[Server]:
    running = Server(planted[0])
    yield running
    running.stop()


def test_the_api_answers_the_groups(server: Server, planted: tuple[Path, list[str]]) -> None:
    answer = server.get("/api/dupes")
    assert answer["total"] == 1 and answer["hashed"] > 0
    group = answer["groups"][0]
    assert sorted(m["object_id"] for m in group["members"]) == sorted(planted[1])
    assert group["best"] == group["members"][0]["object_id"]
    assert all("prompt" in m and "time" in m for m in group["members"])
    assert server.get("/api/dupes", level="exact")["total"] == 0
    bad = httpx.get(server.url + "/api/dupes", params={"level": "nonsense"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "bad_level"
    # A distance whose pair search could never finish is refused, not started.
    bad = httpx.get(server.url + "/api/dupes", params={"level": "64"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "bad_level"
    for name in ("level", "limit"):  # a Unicode digit int() refuses: a 400, never a 500
        bad = httpx.get(server.url + "/api/dupes", params={name: "²"}, timeout=10)
        assert bad.status_code == 400, (name, bad.text)
    # A query no job matches has no group.
    assert server.get("/api/dupes", q="zzzqqqxxx")["total"] == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, sync_api = _chromium()
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        yield launched
        launched.close()


def test_the_duplicates_page_shows_and_selects_a_group(
    browser: Any, server: Server, planted: tuple[Path, list[str]]
) -> None:
    tab = Page(browser, server)
    try:
        page = tab.open("#/dupes")
        tab.until("document.querySelectorAll('.dupe-group').length === 1")
        tab.until(
            "[...document.querySelectorAll('.dupe img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator(".dupe").count() == 3
        assert page.locator(".dupe.best").count() == 1
        assert "★ best" in page.inner_text(".dupe.best")
        assert "1 group, 3 images" in page.inner_text("#dupes-status")
        if os.environ.get("MJVAULT_SCREENSHOTS") == "1":
            page.screenshot(path=str(SCREENSHOTS / "dupes.png"))
        else:
            page.screenshot(path=str(server.vault.parent / "dupes.png"))
        # A thumbnail opens its job in the lightbox.
        first = page.locator(".dupe").nth(1)
        job = first.get_attribute("data-job")
        first.click()
        tab.until("!document.getElementById('lightbox').hidden")
        assert page.inner_text("#job") == job
        page.keyboard.press("Escape")
        tab.until("document.getElementById('lightbox').hidden")
        # The others go into the timeline's selection.
        page.click(".dupe-head button")
        others = {
            m
            for m in page.eval_on_selector_all(
                ".dupe:not(.best)", "els => els.map(e => e.dataset.job)"
            )
        }
        best = page.get_attribute(".dupe.best", "data-job")
        chosen = set(page.evaluate("[...mjvault.selection.ids]"))
        assert chosen == others - {best} and chosen
    finally:
        tab.close()
    assert tab.errors == []
