#!/usr/bin/env python3
"""Gallery benchmark: build a gallery of many jobs and open it in a real browser.

    python scripts/bench/bench_gallery.py [--jobs 100000] [--workdir DIR]

Builds (once, cached in WORKDIR) a vault of ``--jobs`` generated jobs whose images are drawn
from 64 small shared PNGs (so thumbnails are few and the page's size, not image work, is
measured). Then times ``build_gallery`` twice (thumbnails made, then cached: nothing new, so
no chunk file is written again), reports the size of the page's data (data.js and the chunk
files it names), and — when Debian's chromium and Playwright are installed — opens the page
headless and times: first tiles on screen, one search as you type, and opening the lightbox.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_vault(vault_dir: Path, jobs: int) -> None:
    from mjvault import Vault
    from mjvault.testing.accounts import Account
    from mjvault.testing.images import make_png

    account = Account.generate(2, jobs)
    rng = random.Random(2)
    vault = Vault.init(vault_dir)
    with vault.writer("bench", checkpoint_jobs=20_000) as writer:
        pool = [writer.put_media(make_png(i, 256, 256)) for i in range(64)]
        for i, job in enumerate(account.jobs):
            images = [rng.choice(pool) for _ in range(min(4, job.batch_size))]
            writer.add_job(json.dumps(job.record(1 + i % 3)).encode(), images)
    vault.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.find.gallery import build_gallery

    vault_dir = args.workdir / f"gallery-{args.jobs}"
    if not (vault_dir / "config").exists():
        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        build_vault(vault_dir, args.jobs)
    vault = Vault.open(vault_dir)
    vault.index  # noqa: B018  (bring the index up to date outside the timings)
    out = args.workdir / f"gallery-{args.jobs}-html"
    shutil.rmtree(out, ignore_errors=True)
    for label in ("first build", "second build (cached thumbnails)"):
        started = time.perf_counter()
        report = build_gallery(vault, out)
        elapsed = time.perf_counter() - started
        print(
            f"{label}: {elapsed:.1f} s, {report.jobs} jobs, {report.images} images, "
            f"thumbnails made {report.thumbs_made}, cached {report.thumbs_cached}, "
            f"chunk files {report.chunks} ({report.chunks_written} written)"
        )
    chunks = sum(p.stat().st_size for p in (out / "chunks").iterdir())
    print(
        f"data.js {(out / 'data.js').stat().st_size / 2**10:.1f} KiB, "
        f"chunks {chunks / 2**20:.1f} MiB in {report.chunks} files"
    )
    vault.close()
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("browser timings skipped: chromium or playwright is not installed")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        started = time.perf_counter()
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.tile img').length > 0", polling=20)
        print(f"page load to first tiles: {(time.perf_counter() - started) * 1000:.0f} ms")
        before = page.inner_text("#count")
        started = time.perf_counter()
        page.fill("#search", "golden hour")
        page.wait_for_function(
            f"document.getElementById('count').textContent !== {before!r}"
            " && document.querySelectorAll('.tile img').length > 0",
            polling=10,
        )
        print(
            f"search as you type, first matches on screen (incl. 120 ms debounce): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        # The page reads every chunk for a search (a chunk at a time): the count is final
        # when it no longer says "searching".
        page.wait_for_function(
            "!document.getElementById('count').textContent.includes('searching')",
            polling=10,
            timeout=300_000,
        )
        print(
            f"search as you type, every chunk read: {(time.perf_counter() - started) * 1000:.0f} ms"
            f" -> {page.inner_text('#count')}"
        )
        started = time.perf_counter()
        page.click(".tile >> nth=0")
        page.wait_for_selector("#lightbox:not([hidden])")
        page.wait_for_function(
            "document.getElementById('full').complete"
            " && document.getElementById('full').naturalWidth > 0",
            polling=10,
        )
        print(f"lightbox with full image: {(time.perf_counter() - started) * 1000:.0f} ms")
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        if heap:
            print(f"JS heap in use: {heap / 2**20:.0f} MiB")
        browser.close()


if __name__ == "__main__":
    main()
