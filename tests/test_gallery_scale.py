"""The gallery of many jobs in Debian's chromium, scrolled to its very end.

The 100k-job run is marked ``scale``: left out of the default run, run by ``.ci/run`` as its
own step (``pytest -m scale``). The 1k-job run is the same test at a size the suite affords.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mjvault import Vault
from mjvault.find.gallery import build_gallery
from mjvault.testing.gallerypage import (
    LAUNCH_ARGS,
    MONITOR,
    build_many,
    faults_after_loading,
    figures,
    last_tile,
    screen_faults,
    scroll_to_end,
)
from tests.conftest import system_chromium

# What "bounded" and "does not freeze" mean here, generous for a loaded CI machine: the page
# keeps the rows near the viewport (about 150 tiles at 1400x900), not the 3,200 (1k jobs) or
# 320,000 (100k jobs) it has shown; no main-thread task on the way takes a second.
MOST_TILES = 600
LONGEST_TASK_MS = 1000


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """Where the vault and the gallery go: tmpfs when it has room (about 330 MB at 100k
    jobs), where the index's many LMDB commits cost less than on a disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
        with tempfile.TemporaryDirectory(dir=shm, prefix="mjvault-test-") as where:
            yield Path(where)
    else:
        yield tmp_path


def _scroll(page: Any, out: Path, shots: Path, tiles: int, k: int, prompt: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(MONITOR)
    page.goto((out / "index.html").as_uri())
    page.wait_for_function(
        "document.querySelectorAll('.tile img').length > 0", polling=50, timeout=30_000
    )
    assert page.inner_text("#count").startswith(f"{tiles} images · ")
    # Top, middle and three quarters: whole screens of tiles in order, no holes.
    for part in (0, 0.5, 0.75):
        page.evaluate(
            "p => window.scrollTo(0, p * (document.documentElement.scrollHeight - innerHeight))",
            part,
        )
        assert faults_after_loading(page, tiles) == [], part
        page.screenshot(path=str(shots / f"at-{part}.png"))
    page.evaluate("window.scrollTo(0, 0)")
    page.evaluate("__monitor.reset()")
    seconds = scroll_to_end(page, k, prompt, timeout=120)
    found = figures(page)
    print(f"to the end in {seconds:.1f} s: {found}")
    assert screen_faults(page, tiles) == []
    # The last tile is on screen, below the header, with its job's prompt.
    place = page.eval_on_selector(
        f'.tile[data-k="{k}"]',
        "t => { const r = t.getBoundingClientRect(),"
        " h = document.querySelector('header').getBoundingClientRect();"
        " return [r.top >= h.bottom, r.bottom <= innerHeight + 1]; }",
    )
    assert place == [True, True]
    assert page.get_attribute(f'.tile[data-k="{k}"] img', "alt") == prompt
    assert found["tiles"] < MOST_TILES
    assert found["longest"] < LONGEST_TASK_MS
    page.screenshot(path=str(shots / "end.png"))
    # A wheel turned up from the end: the rows move, and the screen is whole again.
    page.mouse.move(700, 500)
    bottom = page.evaluate("scrollY")
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"scrollY < {bottom}", polling=50)
    assert faults_after_loading(page, tiles) == []
    # The lightbox of the very last tile: its job, its last image.
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_selector(f'.tile[data-k="{k}"] img')
    page.click(f'.tile[data-k="{k}"]')
    page.wait_for_selector("#lightbox:not([hidden])")
    assert page.eval_on_selector("#prompt", "p => p.textContent") == prompt
    assert errors == []


@pytest.mark.parametrize(
    "jobs", [1_000, pytest.param(100_000, marks=pytest.mark.scale)], ids=["1k", "100k"]
)
def test_the_gallery_scrolls_to_its_last_job_in_chromium(
    jobs: int, work: Path, tmp_path: Path
) -> None:
    chromium, sync_api = system_chromium()
    started = time.perf_counter()
    build_many(work / "vault", jobs)  # records through the writer, 64 shared images
    built = time.perf_counter()
    vault = Vault.open(work / "vault")
    out = work / "gallery"
    try:
        report = build_gallery(vault, out)
    finally:
        vault.close()
    print(
        f"\n{jobs} jobs: vault {built - started:.1f} s,"
        f" gallery {time.perf_counter() - built:.1f} s, {report.images} tiles"
    )
    assert report.jobs == jobs
    k, prompt = last_tile(out)
    browsing = time.perf_counter()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            # At 1400 px, 100k jobs' rows are taller than the grid may be (9.1M px, over the
            # 8M px cap); at 1k jobs a lower cap makes the same mapping of the scrollbar.
            for cap in (None, 20_000) if jobs < 10_000 else (None,):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                if cap:
                    page.add_init_script(f"window.MJVAULT_MAX_HEIGHT = {cap};")
                shots = tmp_path / f"cap-{cap}"
                shots.mkdir()
                _scroll(page, out, shots, k + 1, k, prompt)
                grid = page.eval_on_selector("#grid", "g => g.getBoundingClientRect().height")
                assert grid <= (cap or 8_000_000)
                page.close()
        finally:
            browser.close()
    print(f"browser {time.perf_counter() - browsing:.1f} s")
