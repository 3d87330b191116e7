#!/usr/bin/env python3
"""Search benchmark: query latency over a generated index of many jobs.

    python scripts/bench/bench_search.py [--jobs 100000] [--queries 1000] [--workdir DIR]

Builds (once, cached in WORKDIR) a vault of ``--jobs`` generated jobs — records only, no
images — through the ordinary writer, so the index is the one `mjvault` keeps. Then runs
``--queries`` random queries of two prompt words and one filter (type, aspect, version, niji,
style, a stylize comparison or a month range) through the library search, in-process, as the
CLI does after start-up, and prints p50/p90/p99/max latency, match counts and the index size.
Targets (issue 7): p50 < 20 ms and p99 < 100 ms at 100k jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FILTERS = (
    "type:upscale",
    "type:diffusion",
    "ar:16:9",
    "ar:2:3",
    "v:6",
    "v:5.2",
    "niji:6",
    "style:raw",
    "s>100",
    "s<=50",
    "since:2025-01",
    "date:2024-06",
)


def build(vault_dir: Path, jobs: int) -> float:
    from mjvault import Vault
    from mjvault.testing.accounts import Account

    started = time.perf_counter()
    account = Account.generate(1, jobs)
    vault = Vault.init(vault_dir)
    with vault.writer("bench", checkpoint_jobs=20_000) as writer:
        for i, job in enumerate(account.jobs):
            writer.add_job(json.dumps(job.record(1 + i % 3)).encode(), [])
    vault.close()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=50, help="results per query (the table's)")
    parser.add_argument("--sort", default="newest", choices=("newest", "oldest", "relevance"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.index.query import parse_query
    from mjvault.index.search import search
    from mjvault.text import search_tokens

    vault_dir = args.workdir / f"search-{args.jobs}"
    if not (vault_dir / "config").exists():
        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        print(f"  built in {build(vault_dir, args.jobs):.1f} s", flush=True)
    vault = Vault.open(vault_dir)
    index = vault.index
    stats = index.stats()
    # Words as they occur: a random query word is as common as words in prompts are.
    frequency: Counter[str] = Counter()
    for n, summary in enumerate(index.iter_summaries()):
        if n >= 5000:
            break
        frequency.update(set(search_tokens(summary.prompt)))
    words = [w for w, c in frequency.items() if c >= 5 and len(w) > 1]
    rng = random.Random(42)
    queries = [
        f"{rng.choice(words)} {rng.choice(words)} {rng.choice(FILTERS)}"
        for _ in range(args.queries)
    ]
    for text in queries[:20]:  # warm the page cache and the interpreter's paths
        search(index, parse_query(text), limit=args.limit)
    latencies, cpu, matches = [], [], []
    for text in queries:
        started, started_cpu = time.perf_counter(), time.process_time()
        result = search(index, parse_query(text), sort=args.sort, limit=args.limit)
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        matches.append(result.total)
    slowest = max(range(len(queries)), key=lambda i: latencies[i])
    jobs = max(1, index.job_count())
    print(
        f"jobs {index.job_count()}, index file {stats['bytes'] / 2**20:.1f} MiB "
        f"({stats['bytes'] / jobs:.0f} B/job), in use {stats['used_bytes'] / 2**20:.1f} MiB "
        f"({stats['used_bytes'] / jobs:.0f} B/job)"
    )
    print(f"entries {stats['entries']}")
    print(f"{len(queries)} queries (two words + one filter, sort {args.sort}, limit {args.limit})")
    print(
        f"latency ms: p50 {percentile(latencies, 0.5):.2f}  p90 {percentile(latencies, 0.9):.2f}  "
        f"p99 {percentile(latencies, 0.99):.2f}  max {max(latencies):.2f}  "
        f"mean {statistics.mean(latencies):.2f}"
    )
    # CPU time is what the query costs without other processes competing for the cores.
    print(
        f"cpu ms:     p50 {percentile(cpu, 0.5):.2f}  p90 {percentile(cpu, 0.9):.2f}  "
        f"p99 {percentile(cpu, 0.99):.2f}  max {max(cpu):.2f}  (load {os.getloadavg()[0]:.1f})"
    )
    print(
        f"matches: median {statistics.median(matches):.0f}, max {max(matches)}, "
        f"empty {sum(1 for m in matches if m == 0)}"
    )
    print(f"slowest: {queries[slowest]!r} {latencies[slowest]:.1f} ms, {matches[slowest]} matches")
    vault.close()


if __name__ == "__main__":
    main()
