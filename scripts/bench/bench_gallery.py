#!/usr/bin/env python3
"""Gallery benchmark: build a gallery of many jobs and scroll its page to the end in chromium.

    python scripts/bench/bench_gallery.py [--jobs 100000] [--workdir DIR] [--runs 3]
                                          [--page-only] [--timeout 300]

Builds (once, cached in WORKDIR) a vault of ``--jobs`` generated jobs whose images are drawn
from 64 small shared PNGs (``mjvault.testing.gallerypage.build_many``: thumbnails are few, so
the page's size, not image work, is measured). Then runs ``mjvault gallery`` twice in a child
process (thumbnails made, then cached: nothing new, so no chunk file is written again) with
its wall time, CPU time and own peak RSS, and reports the size of the page's data.

Then, when Debian's chromium and Playwright are installed, ``--runs`` times: opens the page
headless (a fresh browser each run) and times the first tiles on screen; jumps to the end
(until the last job's tile shows) and back to the top; scrolls to the very end as a dragged
scrollbar does (100 jumps a frame apart, then until the last job's tile shows
its image and prompt); wheel-scrolls for a few seconds in the middle; and records the longest
long task and frame gap of each phase, the tiles and elements in the DOM, and the JS heap
after a garbage collection. Screenshots of the top, the middle and the end land in WORKDIR.
Then one search as you type and the lightbox.

``--page-only`` copies the page's static files over the built gallery instead of building it
again (to measure a change to the page alone); ``--as-is`` opens the built gallery as it is
(a copy whose static files are an older page's, to measure that page on the same data).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def build(vault_dir: Path, out: Path, workdir: Path, label: str) -> None:
    from mjvault.find.gallery.chunks import read_head
    from mjvault.testing.rusage import launched, read_usage

    usage_file = workdir / "usage.json"
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault_dir), "gallery", str(out)]
    started = time.perf_counter()
    subprocess.run(launched(command, usage_file), check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    usage = read_usage(usage_file)
    head = read_head(out)
    print(
        f"{label}: {elapsed:.1f} s wall, {usage.cpu_seconds:.1f} s CPU,"
        f" peak RSS {usage.peak_rss_kib / 1024:.0f} MiB; {head['jobs']} jobs,"
        f" {head['images']} tiles, {len(head['chunks'])} chunk files",
        flush=True,
    )


def browse(out: Path, workdir: Path, run: int, timeout: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from mjvault.testing.gallerypage import (
        LAUNCH_ARGS,
        MONITOR,
        figures,
        last_tile,
        scroll_to_end,
    )

    k, prompt = last_tile(out)
    result: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(MONITOR)
            started = time.perf_counter()
            page.goto((out / "index.html").as_uri())
            page.wait_for_function(
                "[...document.querySelectorAll('.tile img')].some(i => i.complete)", polling=20
            )
            result["first_tiles_ms"] = (time.perf_counter() - started) * 1000
            page.wait_for_timeout(500)
            result["load"] = figures(page)
            if run == 0:
                page.screenshot(path=str(workdir / "top.png"))
            # A jump: the scrollbar's thumb dropped at the bottom, the last tile awaited.
            page.evaluate("__monitor.reset()")
            try:
                result["jump_s"] = scroll_to_end(page, k, prompt, steps=1, timeout=timeout)
            except TimeoutError:  # a page that grows as it is scrolled has no end to jump to
                result["jump_s"] = None
            result["jump"] = figures(page)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            page.evaluate("__monitor.reset()")
            try:
                result["to_end_s"] = scroll_to_end(page, k, prompt, timeout=timeout)
            except TimeoutError:
                result["to_end_s"] = None
                result["stopped"] = page.evaluate(
                    "Math.max(...[...document.querySelectorAll('.tile')].map(t => +t.dataset.k))"
                )
            result["end"] = figures(page)
            if run == 0:
                page.screenshot(path=str(workdir / "end.png"))
                if result["to_end_s"] is not None:
                    page.click(f'.tile[data-k="{k}"]')  # the last job's prompt, as a user sees it
                    page.wait_for_selector("#lightbox:not([hidden])")
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(workdir / "end-lightbox.png"))
                    page.keyboard.press("Escape")
            if result["to_end_s"] is not None:
                # A user's wheel in the middle of the page: 80 notches, a frame or two apart.
                page.evaluate(
                    "window.scrollTo(0, document.documentElement.scrollHeight / 2)"
                )  # fmt: skip
                page.wait_for_timeout(500)
                page.mouse.move(700, 500)
                page.evaluate("__monitor.reset()")
                for _ in range(80):
                    page.mouse.wheel(0, 400)
                    page.wait_for_timeout(25)
                page.wait_for_timeout(500)
                result["wheel"] = figures(page)
                if run == 0:
                    page.screenshot(path=str(workdir / "middle.png"))
        finally:
            browser.close()
    return result


def search_and_lightbox(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from mjvault.testing.gallerypage import LAUNCH_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.tile img').length > 0", polling=20)
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
        browser.close()


def summary(label: str, values: list[float], unit: str, digits: int = 0) -> str:
    if not values:
        return f"{label}: not reached"
    return (
        f"{label}: best {min(values):.{digits}f}{unit}, median"
        f" {statistics.median(values):.{digits}f}{unit}, worst {max(values):.{digits}f}{unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to reach the end")
    parser.add_argument("--page-only", action="store_true")
    parser.add_argument(
        "--as-is", action="store_true", help="open the gallery in WORKDIR as it is (an older page)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.gallerypage import build_many

    args.workdir.mkdir(parents=True, exist_ok=True)
    vault_dir = args.workdir / f"gallery-{args.jobs}"
    if not (vault_dir / "config").exists():
        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        started, cpu = time.perf_counter(), os.times()
        build_many(vault_dir, args.jobs)
        spent = os.times()
        print(
            f"vault built: {time.perf_counter() - started:.1f} s wall,"
            f" {spent.user + spent.system - cpu.user - cpu.system:.1f} s CPU",
            flush=True,
        )
        # The index is brought up to date by the first command that reads it: here, not in
        # the gallery's timings.
        subprocess.run(
            [sys.executable, "-m", "mjvault", "--vault", str(vault_dir), "search", "--ids", "x"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    out = args.workdir / f"gallery-{args.jobs}-html"
    if args.as_is:
        pass
    elif args.page_only and (out / "data.js").exists():
        for name in ("index.html", "gallery.css", "gallery.js"):
            data = resources.files("mjvault.find.gallery").joinpath("static", name).read_bytes()
            (out / name).write_bytes(data)
    else:
        shutil.rmtree(out, ignore_errors=True)
        build(vault_dir, out, args.workdir, "first build")
        build(vault_dir, out, args.workdir, "second build (cached thumbnails)")
    chunks = sum(p.stat().st_size for p in (out / "chunks").iterdir())
    print(
        f"data.js {(out / 'data.js').stat().st_size / 2**10:.1f} KiB, "
        f"chunks {chunks / 2**20:.1f} MiB in {len(os.listdir(out / 'chunks'))} files"
    )
    chromium = shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        chromium = None
    if chromium is None:
        print("browser timings skipped: chromium or playwright is not installed")
        return
    runs = []
    for run in range(args.runs):
        result = browse(out, args.workdir, run, args.timeout)
        print(f"run {run + 1}: {result}", flush=True)
        runs.append(result)
    mib = 2**20
    print(summary("page load to first tiles", [r["first_tiles_ms"] for r in runs], " ms"))
    reached = [r for r in runs if r["to_end_s"] is not None]
    print(
        summary(
            "jump to the end", [r["jump_s"] for r in runs if r.get("jump_s") is not None], " s", 2
        )
    )
    print(summary("scroll to the end", [r["to_end_s"] for r in reached], " s", 2))
    for phase in ("load", "jump", "end", "wheel"):
        done = [r[phase] for r in runs if phase in r]
        print(f"{phase}:")
        print("  " + summary("longest task", [f["longest"] for f in done], " ms"))
        print("  " + summary("longest frame gap", [f["max_gap"] for f in done], " ms"))
        print("  " + summary("tiles in the DOM", [f["tiles"] for f in done], ""))
        print("  " + summary("elements in the DOM", [f["elements"] for f in done], ""))
        print("  " + summary("JS heap", [f["heap"] / mib for f in done], " MiB", 1))
        print("  " + summary("chunk files loaded", [f["chunks_loaded"] for f in done], ""))
    search_and_lightbox(out)


if __name__ == "__main__":
    main()
