"""A gallery of many jobs, built cheaply, and a real browser scrolling its page to the end.

Shared by the gallery's scale test and ``scripts/bench/bench_gallery.py``, so both measure
the same thing: the page opened in Debian's chromium through Playwright (never a downloaded
browser), scrolled from top to bottom the way a dragged scrollbar does, until the last job's
tile shows its image and prompt; meanwhile the page records its long main-thread tasks
(``PerformanceObserver('longtask')``) and the longest gap between animation frames.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from mjvault.find.gallery.chunks import CALL, CHUNK_DIR, read_head

# Installed before the page's own scripts: what a user would feel as a frozen page.
MONITOR = """
(() => {
  const m = window.__monitor = { longest: 0, longTasks: 0, maxGap: 0, frames: 0, last: 0 };
  // Chunk files asked for, counted as their script elements are added (resource timing
  // leaves out file:// URLs).
  m.chunks = 0;
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.tagName === "SCRIPT" && node.src.includes("/chunks/")) m.chunks++;
      }
    }
  }).observe(document, { childList: true, subtree: true });
  m.reset = () => { m.longest = 0; m.longTasks = 0; m.maxGap = 0; m.frames = 0; m.last = 0; };
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        m.longTasks++;
        m.longest = Math.max(m.longest, entry.duration);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (e) { m.longest = -1; }
  function frame(t) {
    if (m.last) { m.maxGap = Math.max(m.maxGap, t - m.last); m.frames++; }
    m.last = t;
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
})();
"""

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def build_many(vault_dir: Path, jobs: int, *, seed: int = 2, pool_size: int = 64) -> None:
    """A vault of ``jobs`` generated jobs (every listing generation) whose images are drawn
    from ``pool_size`` small shared PNGs: the records, tree and index cost what they would,
    the images almost nothing (and the gallery makes ``pool_size`` thumbnails)."""
    from mjvault import Vault
    from mjvault.testing.accounts import Account
    from mjvault.testing.images import make_png

    account = Account.generate(seed, jobs)
    rng = random.Random(seed)
    vault = Vault.init(vault_dir)
    try:
        with vault.writer("bench", checkpoint_jobs=20_000) as writer:
            pool = [writer.put_media(make_png(i, 256, 256)) for i in range(pool_size)]
            for i, job in enumerate(account.jobs):
                images = [rng.choice(pool) for _ in range(min(4, job.batch_size))]
                writer.add_job(json.dumps(job.record(1 + i % 3)).encode(), images)
    finally:
        vault.close()


def last_tile(directory: Path) -> tuple[int, str]:
    """(place, prompt) of the gallery's last tile: the last image of its last chunk's last job."""
    head = read_head(directory)
    name = head["chunks"][-1][0]
    text = (directory / CHUNK_DIR / f"{name}.js").read_text(encoding="utf-8").rstrip()
    rows = json.loads(text[len(f'{CALL}("{name}", ') : -2])
    return int(head["images"]) - 1, str(rows[-1][3])


def tile_shown(k: int, prompt: str) -> str:
    """A JS expression: tile ``k`` is in the page with ``prompt`` and its image decoded."""
    return (
        f"(() => {{ const t = document.querySelector('.tile[data-k=\"{k}\"]');"
        f" if (!t || t.title !== {json.dumps(prompt)}) return false;"
        " const i = t.querySelector('img'); return !i || (i.complete && i.naturalWidth > 0); })()"
    )


def scroll_to_end(
    page: Any, k: int, prompt: str, *, steps: int = 100, timeout: float = 120
) -> float:
    """Scroll from top to bottom in ``steps`` even jumps, a frame apart (a dragged scrollbar),
    then stay at the bottom until tile ``k`` shows ``prompt``. Seconds taken; TimeoutError
    after ``timeout`` seconds."""
    started = time.perf_counter()
    for step in range(1, steps + 1):
        page.evaluate(
            "s => window.scrollTo(0, s * (document.documentElement.scrollHeight - innerHeight))",
            step / steps,
        )
        page.wait_for_timeout(16)
    shown = tile_shown(k, prompt)
    while not page.evaluate(shown):
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"tile {k} not shown after {timeout:.0f} s")
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.wait_for_timeout(10)
    return time.perf_counter() - started


def figures(page: Any) -> dict[str, Any]:
    """What the page holds and how long it froze: tiles and elements in the DOM, the
    longest long task and the longest frame gap (ms) since the monitor was last reset, the
    chunk files loaded since the page opened, and the JS heap in use after a garbage
    collection."""
    found: dict[str, Any] = page.evaluate(
        "({ tiles: document.querySelectorAll('.tile').length,"
        " elements: document.getElementsByTagName('*').length,"
        " longest: __monitor.longest, long_tasks: __monitor.longTasks,"
        " max_gap: __monitor.maxGap, frames: __monitor.frames,"
        " chunks_loaded: __monitor.chunks })"
    )
    session = page.context.new_cdp_session(page)
    try:
        session.send("HeapProfiler.collectGarbage")
        found["heap"] = session.send("Runtime.getHeapUsage")["usedSize"]
    finally:
        session.detach()
    return found


# The tiles on screen below the header: [k, top, bottom, left, waiting], and the screen's bounds.
_ON_SCREEN = """
(() => {
  const header = document.querySelector("header").getBoundingClientRect().bottom;
  const tiles = [...document.querySelectorAll(".tile")].map((t) => {
    const r = t.getBoundingClientRect();
    return [+t.dataset.k, r.top, r.bottom, r.left, t.classList.contains("waiting")];
  }).filter((t) => t[2] > header && t[1] < innerHeight);
  return { header, height: innerHeight, tiles };
})()
"""


def screen_faults(page: Any, total: int) -> list[str]:
    """What is wrong with the screen as a user sees it, once its chunks have loaded: tiles
    still waiting for their chunk, tiles out of order, a hole (a missing tile, or a band of
    the screen with no row). Empty when the screen is whole."""
    seen = page.evaluate(_ON_SCREEN)
    tiles = sorted(seen["tiles"], key=lambda t: (round(t[1]), t[3]))
    if not tiles:
        return ["no tile on screen"]
    faults = []
    ks = [t[0] for t in tiles]
    if any(t[4] for t in tiles):
        faults.append(f"{sum(t[4] for t in tiles)} tiles waiting for their chunk")
    if ks != sorted(ks):
        faults.append("tiles out of order")
    if ks != list(range(ks[0], ks[0] + len(ks))):
        faults.append(f"tiles missing between {ks[0]} and {ks[-1]}")
    tops = sorted({round(t[1]) for t in tiles})
    side = tiles[0][2] - tiles[0][1]
    bands = (
        [seen["header"], *tops, seen["height"]] if ks[-1] < total - 1 else [seen["header"], *tops]
    )
    if any(b - a > side + 10 for a, b in zip(bands, bands[1:], strict=False)):
        faults.append(f"a band with no row: rows at {tops}")
    return faults


def faults_after_loading(page: Any, total: int, timeout: float = 30) -> list[str]:
    """:func:`screen_faults` once they are gone, or as they still are after ``timeout``
    seconds: a scroll is seen and its chunks load a moment after the scroll itself."""
    deadline = time.perf_counter() + timeout
    while (faults := screen_faults(page, total)) and time.perf_counter() < deadline:
        page.wait_for_timeout(50)
    return faults
