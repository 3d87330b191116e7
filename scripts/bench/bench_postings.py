#!/usr/bin/env python3
"""Posting layouts side by side: mjvault's bitmaps in LMDB against an embedded engine.

    pip install tantivy   # not a dependency of mjvault: only this comparison needs it
    python scripts/bench/bench_postings.py [--jobs 100000] [--queries 300] [--rounds 3]

The vault is bench_search.py's (built once through the writer, cached in WORKDIR/search-JOBS).
Beside it, once, a tantivy index (WORKDIR/tantivy-JOBS) of the same jobs: each prompt as
mjvault's search tokens joined by spaces (so both engines see the same words), the enqueue
time as a fast field, the job id stored. Then ``--queries`` queries of two prompt words run
on both, alternating query by query in this process for ``--rounds`` rounds: the total and
the newest 50 (mjvault's ``search``; tantivy's ``search(count=True, order_by_field="time")``).
The answers of the first round are compared. Prints p50/p95 per engine and their ratio, the
build time and the size of each index.

It measures the choice docs/design.md ("Search at a million jobs") made: posting lists as
Roaring bitmaps in the LMDB cache, against an engine of its own beside it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search  # noqa: E402  (beside this script: the vault and the query words)

from mjvault import Vault  # noqa: E402
from mjvault.index.query import parse_query  # noqa: E402
from mjvault.index.search import search  # noqa: E402
from mjvault.text import search_tokens  # noqa: E402

LIMIT = 50


def build_tantivy(tantivy: Any, vault: Vault, where: Path) -> tuple[Any, float]:
    """The tantivy index of the vault's jobs, built once (a directory that has ``done``)."""
    schema_builder = tantivy.SchemaBuilder()
    schema_builder.add_text_field("prompt", stored=False)
    schema_builder.add_integer_field("time", fast=True, indexed=True, stored=False)
    schema_builder.add_text_field("id", stored=True, tokenizer_name="raw")
    schema = schema_builder.build()
    if (where / "done").exists():
        return tantivy.Index(schema, path=str(where)), 0.0
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    started = time.perf_counter()
    index = tantivy.Index(schema, path=str(where))
    writer = index.writer(heap_size=100_000_000)
    for summary in vault.current_index().iter_summaries(release_every=1024):
        micros = int(summary.time.timestamp() * 1_000_000) if summary.time else 0
        writer.add_document(
            tantivy.Document(
                prompt=" ".join(search_tokens(summary.prompt)), time=micros, id=summary.job_id
            )
        )
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    (where / "done").touch()
    return index, time.perf_counter() - started


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    args = parser.parse_args()
    try:
        import tantivy
    except ImportError:
        sys.exit("this comparison needs tantivy: pip install tantivy")

    vault_dir = args.workdir / f"search-{args.jobs}"
    if not (vault_dir / "config").exists():
        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        bench_search.build(vault_dir, args.jobs)
    vault = Vault.open(vault_dir)
    ours = vault.current_index()
    index, built = build_tantivy(tantivy, vault, args.workdir / f"tantivy-{args.jobs}")
    if built:
        print(f"tantivy index built in {built:.1f} s")
    searcher = index.searcher()
    words, _ = bench_search.vocabulary(ours)
    queries = [
        q.rsplit(" ", 1)[0] for q in bench_search.make_queries(args.queries, "words", words, [])
    ]

    def with_mjvault(text: str) -> tuple[int, list[str]]:
        result = search(ours, parse_query(text), limit=LIMIT)
        return result.total, result.job_ids

    def with_tantivy(text: str) -> tuple[int, list[str]]:
        query = index.parse_query(" AND ".join(text.split()), ["prompt"])
        found = searcher.search(
            query, LIMIT, count=True, order_by_field="time", order=tantivy.Order.Desc
        )
        return found.count, [searcher.doc(address)["id"][0] for _, address in found.hits]

    for text in queries[:20]:  # warm both: page cache, interpreter paths
        with_mjvault(text)
        with_tantivy(text)
    rounds: dict[str, list[list[float]]] = {"mjvault": [], "tantivy": []}
    agree_totals = agree_ids = 0
    for round_number in range(args.rounds):
        times: dict[str, list[float]] = {"mjvault": [], "tantivy": []}
        for text in queries:
            started = time.perf_counter()
            mine = with_mjvault(text)
            times["mjvault"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            theirs = with_tantivy(text)
            times["tantivy"].append((time.perf_counter() - started) * 1000)
            if round_number == 0:
                agree_totals += mine[0] == theirs[0]
                agree_ids += mine == theirs
        for name, values in times.items():
            rounds[name].append(values)

    jobs = max(1, ours.job_count())
    ours_bytes = ours.stats()["bytes"]
    theirs_bytes = directory_bytes(args.workdir / f"tantivy-{args.jobs}")
    print(
        f"jobs {jobs}: mjvault index {ours_bytes / 2**20:.1f} MiB ({ours_bytes / jobs:.0f} B/job,"
        f" every table), tantivy {theirs_bytes / 2**20:.1f} MiB ({theirs_bytes / jobs:.0f} B/job,"
        " prompts and times only)"
    )
    print(
        f"{len(queries)} queries of two words, total and newest {LIMIT}, {args.rounds} rounds;"
        f" answers: totals agree on {agree_totals}, totals and ids on {agree_ids}"
    )
    for fraction, label in ((0.5, "p50"), (0.95, "p95")):
        per_round = {
            name: [bench_search.percentile(values, fraction) for values in rounds[name]]
            for name in rounds
        }
        ratios = [m / t for m, t in zip(per_round["mjvault"], per_round["tantivy"], strict=True)]
        print(
            f"{label}: mjvault best {min(per_round['mjvault']):.2f} median "
            f"{statistics.median(per_round['mjvault']):.2f} ms; tantivy best "
            f"{min(per_round['tantivy']):.2f} median {statistics.median(per_round['tantivy']):.2f}"
            f" ms; ratio best {min(ratios):.2f}× median {statistics.median(ratios):.2f}×"
        )
    vault.close()


if __name__ == "__main__":
    main()
