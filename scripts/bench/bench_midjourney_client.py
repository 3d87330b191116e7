"""Throughput of the Midjourney client against the test server on 127.0.0.1.

    .venv/bin/python scripts/bench/bench_midjourney_client.py --jobs 5000 --downloads 400

Listing: jobs per second for each generation, clean and with faults (429s, 5xx, drops).
Downloads: files and MB per second with a thread pool, clean and with drops/short bodies.
Numbers are for the client's own overhead (the server is local); real runs are bound by
max_rps and the network.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney

FAULTY = Faults(
    rate_limit_every=20, retry_after=0, error_rate=0.05, drop_every=13, short_body_every=17
)


def settings_for(server: FakeMidjourney, api: str, concurrency: int) -> ClientSettings:
    return ClientSettings(
        web_base=server.web_base,
        cdn_base=server.cdn_base,
        api=api,
        user_id=server.user_id,
        token=server.token,
        max_rps=100_000,
        burst=1000,
        backoff_base=0.001,
        backoff_cap=0.01,
        max_retries=10,
        breaker_threshold=1000,
        concurrency=concurrency,
    )


def bench_listing(account: Account, faults: Faults, label: str) -> None:
    for api in ("v1", "v2", "v3"):
        with FakeMidjourney(account, faults) as server:
            with MidjourneyClient(settings_for(server, api, 1)) as client:
                start = time.perf_counter()
                count = sum(1 for _ in client.list_jobs())
                elapsed = time.perf_counter() - start
            requests = server.stats.total_listing_requests()
        print(
            f"list {api:2} {label:6}: {count:6d} jobs in {elapsed:6.2f} s "
            f"({count / elapsed:8.0f} jobs/s, {requests} listing requests)"
        )


def bench_downloads(account: Account, faults: Faults, label: str, n: int, threads: int) -> None:
    paths = [p for job in account.image_jobs() for p in job.media_paths][:n]
    with (
        FakeMidjourney(
            account,
            Faults(
                targets=frozenset({"cdn"}),
                **{
                    k: getattr(faults, k)
                    for k in (
                        "drop_every",
                        "short_body_every",
                        "error_rate",
                        "rate_limit_every",
                        "retry_after",
                    )
                },
            ),
        ) as server,
        MidjourneyClient(settings_for(server, "v3", threads)) as client,
    ):

        def fetch(path: str) -> int:
            sink = io.BytesIO()
            return client.download(path, sink).bytes

        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(fetch, paths))
        elapsed = time.perf_counter() - start
    print(
        f"download {label:6} x{threads}: {len(paths)} files, {total / 1e6:.1f} MB in "
        f"{elapsed:.2f} s ({len(paths) / elapsed:.0f} files/s, {total / 1e6 / elapsed:.1f} MB/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--downloads", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--large", action="store_true", help="large (700 kB) images")
    args = parser.parse_args()
    account = Account.generate(1, args.jobs, image_size="large" if args.large else "small")
    bench_listing(account, Faults(), "clean")
    bench_listing(account, FAULTY, "faulty")
    bench_downloads(account, Faults(), "clean", args.downloads, args.threads)
    bench_downloads(account, FAULTY, "faulty", args.downloads, args.threads)


if __name__ == "__main__":
    main()
