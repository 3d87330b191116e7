#!/usr/bin/env python3
"""A plain vault's index and an encrypted vault's (tokens, sealed values) side by side.

    python scripts/bench/bench_sealed_index.py [--jobs 100000] [--queries 300] [--rounds 5]
        [--mix words|phrases|prefixes|exclusions|all] [--sort newest|oldest|relevance]
        [--builds 1] [--cold-vocab] [--workdir DIR]

Both indexes are built, in this process, from the same summaries of ``--jobs`` generated jobs
(bench_search.py's jobs: ``Account.stream(1, JOBS)``, records only) by ``Index.apply`` as a
rebuild does, in the same order, so their document numbers and answers are the same; the
objects a real rebuild reads are left out (the same cost for either index). Each build is
timed (alternating plain and sealed, ``--builds`` times each), then the files' sizes.

Then bench_search.py's random queries (two prompt words and a filter; or a phrase, a prefix
or an exclusion with ``--mix``) run against both, alternating query by query, for
``--rounds`` rounds: every answer of the first round must be the same in both, and each
round's p50 and p95 per index and their ratio (sealed / plain) are printed, then the best
and median over the rounds, and the peak RSS. Target (issue 14): sealed within 1.3× of plain.
A sealed index keeps the vocabulary buckets it opened until the index changes;
``--cold-vocab`` forgets them before each query, as a process that runs one query pays.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import FORMS, make_queries, peak_rss_mb, percentile  # noqa: E402

from mjvault.index.db import Index, JobSummary  # noqa: E402
from mjvault.store.crypto import VaultKeys  # noqa: E402

KINDS = ("plain", "sealed")


def summaries(jobs: int) -> Iterator[tuple[str, JobSummary | None]]:
    """The jobs of bench_search.py's vault as an index holds them (no images)."""
    import json

    from mjvault.model import job_from_record
    from mjvault.testing.accounts import Account
    from mjvault.tree import JobEntry

    for oldest_first, generated in enumerate(Account.stream(1, jobs)):
        raw = json.dumps(generated.record(1 + (jobs - 1 - oldest_first) % 3)).encode()
        job = job_from_record(json.loads(raw))
        record = blake3.blake3(raw).hexdigest()
        yield job.id, JobSummary.of(JobEntry(job.id, record, ()), job)


def open_index(workdir: Path, kind: str, keys: VaultKeys) -> Index:
    return Index(workdir / kind, keys=keys if kind == "sealed" else None)


def build(workdir: Path, kind: str, keys: VaultKeys, jobs: int) -> float:
    shutil.rmtree(workdir / kind, ignore_errors=True)
    index = open_index(workdir, kind, keys)
    started = time.perf_counter()
    index.apply(summaries(jobs), "0" * 64)
    took = time.perf_counter() - started
    index.close()
    return took


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def line(name: str, values: list[float], unit: str) -> str:
    return (
        f"  {name:<13} best {min(values):8.3f} {unit}  median {statistics.median(values):8.3f} "
        f"{unit}  rounds " + " / ".join(f"{v:.3f}" for v in values)
    )


def vocabulary(index: Index) -> tuple[list[str], list[str]]:
    """bench_search's word and phrase choice, from the plain index."""
    from bench_search import vocabulary as words_of

    return words_of(index)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--sort", default="newest", choices=("newest", "oldest", "relevance"))
    parser.add_argument("--mix", default="all", choices=(*FORMS, "all"))
    parser.add_argument("--builds", type=int, default=1, help="timed builds of each index")
    parser.add_argument(
        "--cold-vocab",
        action="store_true",
        help="forget the opened vocabulary before each sealed query (a one-query process)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-sealed"))
    args = parser.parse_args()
    from mjvault.index.query import parse_query
    from mjvault.index.search import search

    workdir = args.workdir / f"index-{args.jobs}"
    workdir.mkdir(parents=True, exist_ok=True)
    master = workdir / "master"
    if not master.exists():
        master.write_bytes(os.urandom(32))
    keys = VaultKeys(master.read_bytes())
    built = {kind: (workdir / kind / "data.mdb").exists() for kind in KINDS}
    if args.builds or not all(built.values()):
        took: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(max(1, args.builds)):
            for kind in KINDS:
                took[kind].append(build(workdir, kind, keys, args.jobs))
                print(f"  built {kind} in {took[kind][-1]:.1f} s", flush=True)
        print(f"build (Index.apply of {args.jobs} summaries), {len(took['plain'])} each:")
        for kind in KINDS:
            print(line(kind, took[kind], "s"))
        ratio = min(took["sealed"]) / min(took["plain"])
        print(f"  ratio         best {ratio:.2f}×")
    indexes = {kind: open_index(workdir, kind, keys) for kind in KINDS}
    sizes = {kind: size(workdir / kind) for kind in KINDS}
    print(
        "index files: "
        + ", ".join(
            f"{k} {v / 2**20:.1f} MiB ({v / args.jobs:.0f} B/job)" for k, v in sizes.items()
        )
        + f"; sealed / plain {sizes['sealed'] / sizes['plain']:.2f}×"
    )
    words, phrases = vocabulary(indexes["plain"])
    queries = make_queries(args.queries, args.mix, words, phrases)
    parsed = [parse_query(q) for q in queries]
    for query in parsed[:20]:  # warm the page cache and the interpreter's paths
        for kind in KINDS:
            search(indexes[kind], query, sort=args.sort, limit=args.limit)
    print(
        f"{len(queries)} queries ({args.mix}, sort {args.sort}, limit {args.limit}), "
        f"{args.rounds} rounds, alternating query by query"
    )
    figures: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        differ = []
        for text, query in zip(queries, parsed, strict=True):
            answers = {}
            # Which goes first alternates too: neither always finds the other's pages.
            for kind in KINDS if len(times["plain"]) % 2 == 0 else KINDS[::-1]:
                sealer = indexes[kind].layout.sealer
                if args.cold_vocab and sealer is not None:
                    sealer.forget_opened()
                started = time.perf_counter()
                answers[kind] = search(indexes[kind], query, sort=args.sort, limit=args.limit)
                times[kind].append((time.perf_counter() - started) * 1000)
            if number == 1 and answers["plain"] != answers["sealed"]:
                differ.append(text)
        if number == 1:
            print(f"answers: the same for {len(queries) - len(differ)} of {len(queries)}")
            for text in differ[:5]:
                print(f"  DIFFER: {text!r}")
        this = {}
        for kind in KINDS:
            this[f"{kind} p50"] = percentile(times[kind], 0.5)
            this[f"{kind} p95"] = percentile(times[kind], 0.95)
            this[f"{kind} total"] = sum(times[kind])
        for what in ("p50", "p95", "total"):
            this[f"ratio {what}"] = this[f"sealed {what}"] / this[f"plain {what}"]
        for name, value in this.items():
            figures.setdefault(name, []).append(value)
        print(
            f"round {number}: "
            + ", ".join(
                f"{n} {v:.2f}" + ("×" if n.startswith("ratio") else " ms") for n, v in this.items()
            ),
            flush=True,
        )
    print("over rounds (ratio: sealed / plain):")
    for name, values in figures.items():
        print(line(name, values, "×" if name.startswith("ratio") else "ms"))
    print(f"peak RSS (both indexes, this process) {peak_rss_mb():.0f} MB")
    for index in indexes.values():
        index.close()


if __name__ == "__main__":
    main()
