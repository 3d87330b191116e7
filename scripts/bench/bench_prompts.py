#!/usr/bin/env python3
"""Prompt families: what the bands cost the index, and what they buy the queries.

    python scripts/bench/bench_prompts.py [--jobs 100000] [--runs 5] [--queries 50]
        [--kind plain|sealed] [--workdir DIR] [--reuse]

The jobs are bench_sealed_index.py's generated summaries with their prompts replaced by
planted ones (mjvault/testing/families.py): families of 8 variants of one idea covering 40 % of
the jobs, the rest ideas tried once, boilerplate tags on both. Each measurement runs in a
fresh process (its peak RSS is its own):

* the index built with the bands (what the index does) and without them (the build before),
  and their sizes;
* ``similar_prompts`` (a family's base prompt, its last words dropped) and ``like_job``
  (a family member): best and median per query, against the anchor, rapidfuzz's
  ``process.extract`` over every prompt held in memory (the loop the index saves; its
  loading of the prompts is not counted);
* ``largest_families``: time and peak RSS, walking the bands of two jobs or more
  (``shared_bands``, what the index does) and, on the same index, every band (the walk
  before that table), each run alternating;
* the families' pair precision and recall against the planted truth.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sealed_index import summaries  # noqa: E402
from bench_search import peak_rss_mb  # noqa: E402

from mjvault.index.db import Index, JobSummary  # noqa: E402
from mjvault.store.crypto import VaultKeys  # noqa: E402
from mjvault.testing.families import PlantedPrompt, pair_scores, planted_prompts  # noqa: E402

KEYS = VaultKeys(b"\x07" * 32)
FAMILY_SIZE = 8


def planted(jobs: int) -> list[PlantedPrompt]:
    families = max(1, int(jobs * 0.4) // FAMILY_SIZE)
    return planted_prompts(11, families, FAMILY_SIZE, jobs - families * FAMILY_SIZE)


def planted_summaries(jobs: int) -> Iterator[tuple[str, JobSummary | None]]:
    prompts = planted(jobs)
    for n, (job_id, summary) in enumerate(summaries(jobs)):
        assert summary is not None
        yield job_id, replace(summary, prompt=prompts[n].prompt)


def job_ids(jobs: int) -> list[str]:
    return [job_id for job_id, _ in summaries(jobs)]


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6


def _open(workdir: Path, kind: str, name: str | None = None) -> Index:
    return Index(workdir / (name or kind), KEYS if kind == "sealed" else None)


def _vault(index: Index) -> Any:
    return SimpleNamespace(
        current_index=lambda: index, find_job=lambda job_id: SimpleNamespace(job_id=job_id)
    )


def measure(workdir: Path, kind: str, what: str, jobs: int, queries: int) -> dict[str, Any]:
    from mjvault.similarity import prompts as families

    if what in ("build", "build-bare", "build-walk"):
        name = kind if what != "build-bare" else f"{kind}-bare"
        shutil.rmtree(workdir / name, ignore_errors=True)
        if what == "build-walk":
            import mjvault.index.db as db
            from mjvault.similarity.minhash import bands

            db.JobSummary.lists = lambda self: (  # type: ignore[method-assign]
                (b"bands", band) for band in bands(self.prompt)
            )
        if what == "build-bare":
            import mjvault.index.db as db

            db._prompt_bands = lambda prompt: []  # type: ignore[attr-defined]
        index = _open(workdir, kind, name)
        started = time.perf_counter()
        index.apply(planted_summaries(jobs), "0" * 64)
        took = time.perf_counter() - started
        index.close()
        return {"seconds": took, "rss_mb": peak_rss_mb(), "size_mb": size_mb(workdir / name)}
    truth = planted(jobs)
    ids = job_ids(jobs)
    rng = random.Random(5)
    members = [n for n, p in enumerate(truth) if p.family != -1]
    picks = rng.sample(members, min(queries, len(members)))
    if what == "anchor":
        from rapidfuzz import fuzz, process

        from mjvault.similarity.minhash import normalized

        everything = [normalized(p.prompt) for p in truth]
        times = []
        for n in picks:
            query = " ".join(normalized(truth[n].prompt).split()[:-1])
            started = time.perf_counter()
            process.extract(query, everything, scorer=fuzz.token_set_ratio, limit=20)
            times.append(time.perf_counter() - started)
        return {"times": times, "rss_mb": peak_rss_mb()}
    index = _open(workdir, kind)
    vault = _vault(index)
    if what in ("similar", "like"):
        times, found = [], 0
        for n in picks:
            started = time.perf_counter()
            if what == "similar":
                query = " ".join(truth[n].prompt.split(",")[0].split()[:-1])
                hits = families.similar_prompts(vault, query, 20)
            else:
                hits = families.like_job(vault, ids[n], 20)
            times.append(time.perf_counter() - started)
            # How many of the family's other members the 20 hits hold (recall at 20).
            mine = {ids[m] for m, p in enumerate(truth) if p.family == truth[n].family} - {ids[n]}
            found += len(mine & {h.job_id for h in hits}) / len(mine)
        result = {"times": times, "recall_at_20": found / len(picks)}
    elif what in ("families", "families-every"):
        walk = families.every_band if what == "families-every" else None
        started = time.perf_counter()
        largest = families.largest_families(vault, 10, walk)
        result = {"seconds": time.perf_counter() - started, "largest": largest[0].size}
        stats = index.stats()["entries"]
        result |= {"bands": stats["bands"], "shared_bands": stats["shared_bands"]}
    else:  # quality
        by_job = families.families_by_job(vault)
        precision, recall = pair_scores(
            [p.family for p in truth], [by_job.get(job_id, -1) for job_id in ids]
        )
        result = {"precision": precision, "recall": recall}
    index.close()
    return result | {"rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--kind", default="plain", choices=("plain", "sealed"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-prompts"))
    parser.add_argument("--reuse", action="store_true", help="no builds: the indexes of a run")
    parser.add_argument(
        "--walk-only",
        action="store_true",
        help="an index of the bands alone (no other lists: quick to build at a million jobs), "
        "then largest_families only",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir, args.kind, args.measure, args.jobs, args.queries)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    child = [sys.executable, __file__, *sys.argv[1:]]

    def run(what: str) -> dict[str, Any]:
        out = subprocess.run(
            [*child, "--measure", what], check=True, capture_output=True, text=True
        ).stdout
        return dict(json.loads(out))

    print(f"{args.jobs} jobs, {args.kind} index, {args.runs} runs, {args.queries} queries")
    if args.walk_only:
        if not args.reuse:
            built = run("build-walk")
            print(
                f"  build, bands only {built['seconds']:8.1f} s  index {built['size_mb']:8.1f} MB"
            )
    elif not args.reuse:
        built, bare = run("build"), run("build-bare")
        for name, r in (("with bands", built), ("without", bare)):
            print(
                f"  build {name:<10} {r['seconds']:8.1f} s  peak RSS {r['rss_mb']:7.1f} MB"
                f"  index {r['size_mb']:8.1f} MB"
            )
        print(f"  build ratio {built['seconds'] / bare['seconds']:.2f}")
        shutil.rmtree(args.workdir / f"{args.kind}-bare", ignore_errors=True)
    whats: tuple[str, ...] = () if args.walk_only else ("similar", "like", "anchor")
    if not args.walk_only:
        quality = run("quality")
        print(f"  families: precision {quality['precision']:.3f}  recall {quality['recall']:.3f}")
    for what in whats:
        per_query: list[float] = []
        rss, recall = 0.0, []
        for _ in range(args.runs):
            r = run(what)
            per_query += r["times"]
            rss = max(rss, r["rss_mb"])
            recall.append(r.get("recall_at_20", 0.0))
        tail = f"  recall@20 {statistics.mean(recall):.3f}" if what != "anchor" else ""
        print(
            f"  {what:<8} best {min(per_query) * 1000:9.2f} ms  median "
            f"{statistics.median(per_query) * 1000:9.2f} ms  peak RSS {rss:7.1f} MB{tail}"
        )
    # Each walk on the same index, alternating: every band (the walk before shared_bands)
    # and the bands of two jobs or more.
    runs: dict[str, list[dict[str, Any]]] = {"families-every": [], "families": []}
    for n in range(args.runs):
        for what in runs:
            runs[what].append(run(what))
            print(f"    run {n + 1} {what}: {runs[what][-1]['seconds']:.2f} s", flush=True)
    for what, done in runs.items():
        seconds = [r["seconds"] for r in done]
        name = "every band" if what == "families-every" else "shared bands"
        print(
            f"  largest_families, {name:<12} best {min(seconds):.2f} s  median "
            f"{statistics.median(seconds):.2f} s  peak RSS {max(r['rss_mb'] for r in done):7.1f}"
            f" MB  largest {done[0]['largest']}"
        )
    last = runs["families"][0]
    print(f"  band keys {last['bands']}  shared bands {last['shared_bands']}")


if __name__ == "__main__":
    main()
