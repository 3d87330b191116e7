#!/usr/bin/env python3
"""Throughput of the test infrastructure itself: media generation, listings and CDN serving.

    python scripts/bench/bench_fake_midjourney.py [--jobs 100000] [--downloads 200] [--workers 4]

So a slow sync benchmark can be told apart from a slow fake server.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from mjvault.testing.accounts import Account
from mjvault.testing.images import make_png, make_webp
from mjvault.testing.server import FakeMidjourney


def _rate(label: str, amount: float, unit: str, seconds: float) -> None:
    print(f"{label:<38} {amount / seconds:>10.1f} {unit}/s  ({seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--downloads", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    total = sum(len(make_png(i, 512, 512, size_hint=700_000)) for i in range(100))
    _rate("large PNG generation", total / 1e6, "MB", time.perf_counter() - started)
    started = time.perf_counter()
    total = sum(len(make_webp(i, size_hint=160_000)) for i in range(30))
    _rate("large WebP generation", total / 1e6, "MB", time.perf_counter() - started)

    started = time.perf_counter()
    account = Account.generate(1, args.jobs, image_size="large")
    _rate(
        f"account generation ({args.jobs} jobs)", args.jobs, "jobs", time.perf_counter() - started
    )

    with FakeMidjourney(account) as server:
        with httpx.Client(
            base_url=server.web_base,
            cookies=server.cookies(3),
            timeout=120,
            headers={"x-csrf-protection": "1"},
        ) as client:
            started = time.perf_counter()
            cursor, listed = None, 0
            while True:
                params = {"user_id": server.user_id, "page_size": 10_000}
                if cursor:
                    params["cursor"] = cursor
                body = client.get("/api/imagine", params=params).json()
                if not body["data"]:
                    break
                listed += len(body["data"])
                cursor = body["cursor"]
            _rate("v3 listing (page_size 10000)", listed, "records", time.perf_counter() - started)

        paths = [p for job in account.jobs for p in job.own_media_paths if p.endswith(".png")]
        paths = paths[: args.downloads]

        limits = httpx.Limits(max_connections=args.workers)
        with httpx.Client(base_url=server.cdn_base, timeout=60, limits=limits) as cdn:
            started = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                total = sum(pool.map(lambda path: len(cdn.get(f"/{path}").content), paths))
        _rate(
            f"CDN downloads ({args.workers} connections)",
            total / 1e6,
            "MB",
            time.perf_counter() - started,
        )


if __name__ == "__main__":
    main()
