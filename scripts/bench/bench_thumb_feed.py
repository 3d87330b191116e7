#!/usr/bin/env python3
"""The memory a writer's thumbnail feed holds when the writer outruns its thumbnails.

    python scripts/bench/bench_thumb_feed.py [--ids 1000000] [--per-put 4096] [--runs 3]

A feed on an empty vault whose maker is held on its first image (the worst case: no id is
consumed) is handed ``--ids`` image ids (64 hex digits, as object ids are) in lists of
``--per-put`` (a checkpoint's worth); measured with tracemalloc: the memory held once every
id is handed over, and the time the puts took. Bounded (``FEED_BOUND``) beside unbounded (a
bound of ``--ids``: what the feed did before the bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mjvault import Vault, thumbnails  # noqa: E402


def one(vault: Vault, ids: int, per_put: int, bound: int) -> tuple[float, float, int]:
    release = threading.Event()
    real_add = thumbnails.Maker.add

    def held(self: thumbnails.Maker, object_id: str, wanted: list[int] | None = None) -> None:
        release.wait()
        real_add(self, object_id, wanted)

    thumbnails.Maker.add = held  # type: ignore[method-assign]
    try:
        with vault.write_lock():
            feed = thumbnails.Feed(vault, bound=bound)
            feed.put([os.urandom(32).hex()])
            while feed.queued:
                time.sleep(0.001)
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            for start in range(0, ids, per_put):
                feed.put([os.urandom(32).hex() for _ in range(min(per_put, ids - start))])
            took = time.perf_counter() - started
            held_mb = (tracemalloc.get_traced_memory()[0] - base) / 1e6
            tracemalloc.stop()
            left = feed.dropped
            release.set()
            feed.finish(cancel=True)
    finally:
        thumbnails.Maker.add = real_add  # type: ignore[method-assign]
    return held_mb, took, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--per-put", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        vault = Vault.init(Path(folder) / "vault")
        print(f"{'feed':>10} {'held MB best':>12} {'median':>7} {'puts s best':>11} {'dropped':>8}")
        for name, bound in (("unbounded", args.ids), ("bounded", thumbnails.FEED_BOUND)):
            results = [one(vault, args.ids, args.per_put, bound) for _ in range(args.runs)]
            held = [r[0] for r in results]
            print(
                f"{name:>10} {min(held):>12.1f} {statistics.median(held):>7.1f}"
                f" {min(r[1] for r in results):>11.2f} {results[0][2]:>8}"
            )
        vault.close()


if __name__ == "__main__":
    main()
