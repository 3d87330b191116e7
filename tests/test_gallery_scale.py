"""The gallery of many jobs in Debian's chromium, scrolled to its very end.

The 100k-job run is marked ``scale``: left out of the default run, run by ``.ci/run`` as its
own step (``pytest -m scale``). The 1k-job run is the same test at a size the suite affords.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.find.gallery import build_gallery
from mjvault.testing.gallerypage import (
    LAUNCH_ARGS,
    MONITOR,
    build_many,
    figures,
    last_tile,
    scroll_to_end,
)

# What "bounded" and "does not freeze" mean here, generous for a loaded CI machine: the page
# keeps the rows near the viewport (about 150 tiles at 1400x900), not the 3,200 (1k jobs) or
# 320,000 (100k jobs) it has shown; no main-thread task on the way takes a second.
MOST_TILES = 600
LONGEST_TASK_MS = 1000


@pytest.mark.parametrize(
    "jobs", [1_000, pytest.param(100_000, marks=pytest.mark.scale)], ids=["1k", "100k"]
)
def test_the_gallery_scrolls_to_its_last_job_in_chromium(jobs: int, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    started = time.perf_counter()
    build_many(tmp_path / "vault", jobs)  # records through the writer, 64 shared images
    built = time.perf_counter()
    vault = Vault.open(tmp_path / "vault")
    out = tmp_path / "gallery"
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
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(MONITOR)
            page.goto((out / "index.html").as_uri())
            page.wait_for_function(
                "document.querySelectorAll('.tile img').length > 0", polling=50, timeout=30_000
            )
            assert page.inner_text("#count").endswith(f" · {jobs} jobs")
            seconds = scroll_to_end(page, k, prompt, timeout=120)
            found = figures(page)
            print(f"to the end in {seconds:.1f} s: {found}")
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
            page.screenshot(path=str(tmp_path / "end.png"))
            # The lightbox of the very last tile: its job, its last image.
            page.click(f'.tile[data-k="{k}"]')
            page.wait_for_selector("#lightbox:not([hidden])")
            assert page.eval_on_selector("#prompt", "p => p.textContent") == prompt
            assert errors == []
        finally:
            browser.close()
