#!/usr/bin/env python3
"""The web app's page in chromium: first paint, a scroll to the end of the timeline, jumps.

    python scripts/bench/bench_serve_page.py [--jobs 100000] [--workdir DIR] [--runs 3]
                                             [--max-height PX]

Builds (once, cached in WORKDIR) a vault of ``--jobs`` generated jobs whose images are drawn
from 64 small shared PNGs (``mjvault.testing.gallerypage.build_many``), starts ``mjvault
serve`` on it in a child process, then ``--runs`` times in a fresh headless chromium: the
first contentful paint, the time until the first screen of tiles shows decoded images and
until the scrubber's dates show (the timeline, asked alongside, filled in when it comes);
a scroll from top to bottom as a dragged scrollbar does (100 jumps a frame apart, then until
the last job's tile shows); ten scrubber jumps to random dates; and, for each phase, the
longest long task, the longest gap between frames, the tiles in the DOM, and the requests
and bytes the page asked for per screen of tiles. ``--max-height`` clamps the scroll height
lower than the page's 15M px (to measure the scaled scroll a million jobs would take at the
size of a smaller vault). Prints best and median of the runs, and each run (the first asks a
fresh server, whose timeline is not cached yet); the server's peak RSS at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from mjvault.testing.gallerypage import LAUNCH_ARGS, MONITOR, build_many

TRAFFIC = """
(() => {
  const entries = performance.getEntriesByType("resource");
  const pick = (p) => entries.filter((e) => e.name.includes(p));
  const bytes = (list) => list.reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0);
  return { api: pick("/api/jobs").length, api_bytes: bytes(pick("/api/jobs")),
           thumbs: pick("/thumb/").length, thumb_bytes: bytes(pick("/thumb/")) };
})()
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shown(k: int, job_id: str) -> str:
    return (
        f"(() => {{ const t = document.querySelector(`.tile[data-k='{k}']`);"
        f" if (!t || t.dataset.id !== {json.dumps(job_id)}) return false;"
        " const i = t.querySelector('img'); return !i || (i.complete && i.naturalWidth > 0); })()"
    )


def run(url: str, chromium: str, sync_api: Any, max_height: int | None) -> dict[str, float]:
    newest = httpx.get(url + "/api/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
    answer = httpx.get(url + "/api/jobs", params={"limit": 1, "sort": "oldest"}).json()
    oldest, total = answer["jobs"][0]["id"], answer["total"]
    out: dict[str, float] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            if max_height:
                page.add_init_script(f"window.MJVAULT_MAX_HEIGHT = {max_height};")
            page.add_init_script(MONITOR)
            started = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_function(shown(0, newest), polling=10, timeout=60_000)
            out["first_tiles_ms"] = (time.perf_counter() - started) * 1000
            # The timeline (cursors and dates) arrives after the first screen: the scrubber's
            # marks show when it has.
            page.wait_for_function(
                "document.querySelectorAll('#scrubber .mark').length > 0",
                polling=10,
                timeout=60_000,
            )
            out["scrubber_marked_ms"] = (time.perf_counter() - started) * 1000
            out["fcp_ms"] = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
            )
            screen = page.evaluate("document.querySelectorAll('.tile[data-id]').length")
            first = page.evaluate(TRAFFIC)
            out["api_requests_first_screen"] = first["api"]
            out["bytes_first_screen_kb"] = (first["api_bytes"] + first["thumb_bytes"]) / 1024
            out["tiles_first_screen"] = screen
            page.evaluate("__monitor.reset()")
            started = time.perf_counter()
            scroller = page.query_selector("#scroller")
            for step in range(1, 101):
                page.evaluate(
                    "([s, f]) => s.scrollTop = f * (s.scrollHeight - s.clientHeight)",
                    [scroller, step / 100],
                )
                page.wait_for_timeout(16)
            page.wait_for_function(shown(total - 1, oldest), polling=10, timeout=120_000)
            out["scroll_to_end_s"] = time.perf_counter() - started
            m = page.evaluate("({ l: __monitor.longest, g: __monitor.maxGap })")
            out["scroll_longest_task_ms"], out["scroll_max_frame_gap_ms"] = m["l"], m["g"]
            out["tiles_in_dom"] = page.evaluate("document.querySelectorAll('.tile').length")
            page.evaluate("__monitor.reset()")
            rng = random.Random(1)
            jumps = []
            box = page.locator("#scrubber").bounding_box()
            for _ in range(10):
                f = rng.random()
                started = time.perf_counter()
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + f * box["height"])
                page.wait_for_function(
                    "!document.querySelector('.tile.waiting') &&"
                    " [...document.querySelectorAll('.tile img')].every(i => i.complete)",
                    polling=10,
                    timeout=60_000,
                )
                jumps.append((time.perf_counter() - started) * 1000)
            out["jump_median_ms"] = statistics.median(jumps)
            m = page.evaluate("({ l: __monitor.longest, g: __monitor.maxGap })")
            out["jumps_longest_task_ms"], out["jumps_max_frame_gap_ms"] = m["l"], m["g"]
            after = page.evaluate(TRAFFIC)
            out["api_requests_total"] = after["api"]
        finally:
            browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-serve-page"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-height", type=int, default=None)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    from playwright import sync_api

    vault = args.workdir / f"vault-{args.jobs}"
    if not (vault / "refs").exists():
        started = time.perf_counter()
        shutil.rmtree(vault, ignore_errors=True)
        args.workdir.mkdir(parents=True, exist_ok=True)
        build_many(vault, args.jobs, pool_size=64)
        print(f"built {args.jobs} jobs in {time.perf_counter() - started:.0f} s", flush=True)
    from mjvault.testing.rusage import launched, read_usage

    port = _port()
    usage_file = args.workdir / "usage.json"
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault), "serve", "--port", str(port)]
    server = subprocess.Popen(
        launched(command, usage_file), stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/api/info", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        runs = [run(url, chromium, sync_api, args.max_height) for _ in range(args.runs)]
    finally:
        os.killpg(server.pid, signal.SIGINT)  # the server stops as on Ctrl-C; usage is written
        server.wait(30)
    print(f"{args.jobs} jobs, {args.runs} runs (best / median):")
    for key in runs[0]:
        values = [r[key] for r in runs]
        best = max(values) if key.startswith("tiles") else min(values)
        each = "  ".join(f"{v:.1f}" for v in values)  # the first run asked a cold server
        print(f"  {key:28} {best:10.1f} {statistics.median(values):10.1f}   runs: {each}")
    usage = read_usage(usage_file)
    print(f"  server peak RSS {usage.peak_rss_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
