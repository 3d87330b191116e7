#!/usr/bin/env python3
"""Insights from the counters the index keeps, against `mjvault stats`' pass over every job.

    python scripts/bench/bench_insights.py [--jobs 100000] [--runs 5] [--update 50]
        [--kind plain|sealed] [--workdir DIR] [--only job_stats,insights]

Builds an index of bench_sealed_index.py's ``--jobs`` summaries twice, timed: with the insights
counters (what the index does) and without them (what it did before), which is the counters'
cost to a rebuild. Then, ``--runs`` rounds, each in a fresh process (so each peak RSS is its
own): the anchor, ``job_stats`` (one pass over every summary); ``insights`` from the kept
counters; and an update of ``--update`` jobs (their prompts changed) applied with and without
the counters. Best and median of each, and the peak RSS of each process. ``--only`` times
those measurements alone (without ``update-bare`` the build without counters is skipped; with ``build-nodefer`` a
build that writes every counter in the transaction of its jobs is timed too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sealed_index import summaries  # noqa: E402
from bench_search import peak_rss_mb  # noqa: E402

from mjvault.index.db import Index  # noqa: E402
from mjvault.insights import aggregates  # noqa: E402
from mjvault.store.crypto import VaultKeys  # noqa: E402

KEYS = VaultKeys(b"\x07" * 32)


def _no_counters() -> None:
    aggregates.difference = lambda old, new: Counter()  # type: ignore[assignment]


def _no_deferring() -> None:
    # Every counter written by the transaction of its jobs, as before a build from nothing
    # kept its bucket counters in memory.
    aggregates.split = lambda delta: (Counter(delta), Counter())  # type: ignore[assignment]


def build(workdir: Path, kind: str, jobs: int, counters: bool, defer: bool = True) -> float:
    name = kind if counters and defer else f"{kind}-bare" if not counters else f"{kind}-nodefer"
    shutil.rmtree(workdir / name, ignore_errors=True)
    if not counters:
        _no_counters()
    if not defer:
        _no_deferring()
    index = Index(workdir / name, KEYS if kind == "sealed" else None)
    started = time.perf_counter()
    index.apply(summaries(jobs), "0" * 64)
    took = time.perf_counter() - started
    index.close()
    return took


def measure(workdir: Path, kind: str, what: str, jobs: int, update: int) -> dict[str, float]:
    """One timed run (in its own process)."""
    from mjvault.find.stats import job_stats
    from mjvault.insights.compute import build as build_document
    from mjvault.insights.compute import kept

    keys = KEYS if kind == "sealed" else None
    if what in ("build", "build-bare", "build-nodefer"):
        took = build(workdir, kind, jobs, what != "build-bare", what != "build-nodefer")
        if what == "build-nodefer":
            shutil.rmtree(workdir / f"{kind}-nodefer", ignore_errors=True)
        return {"seconds": took, "rss_mb": peak_rss_mb()}
    if what == "job_stats":
        index = Index(workdir / kind, keys)
        started = time.perf_counter()
        job_stats(SimpleNamespace(current_index=lambda: index))  # type: ignore[arg-type]
    elif what == "insights":
        index = Index(workdir / kind, keys)
        started = time.perf_counter()
        build_document(kept(index))
    else:
        name = kind if what == "update" else f"{kind}-bare"
        if what != "update":
            _no_counters()
        work = workdir / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(workdir / name, work)
        index = Index(work, keys)
        step = max(1, jobs // update)
        changes = [
            (job_id, replace(s, prompt=s.prompt + " glowing neon"))
            for n, (job_id, s) in enumerate(summaries(jobs))
            if n % step == 0 and s is not None
        ][:update]
        started = time.perf_counter()
        index.apply(changes, "1" * 64)
    took = time.perf_counter() - started
    index.close()
    return {"seconds": took, "rss_mb": peak_rss_mb()}


WHATS = ("job_stats", "insights", "update", "update-bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--update", type=int, default=50)
    parser.add_argument("--kind", default="plain", choices=("plain", "sealed"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-insights"))
    parser.add_argument(
        "--reuse", action="store_true", help="time no builds: use the indexes of a run before"
    )
    parser.add_argument(
        "--only", default=",".join(WHATS), help="comma-separated measurements to time"
    )
    parser.add_argument(
        "--measure",
        choices=(*WHATS, "build", "build-bare", "build-nodefer"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir, args.kind, args.measure, args.jobs, args.update)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    child = [sys.executable, __file__, *sys.argv[1:]]

    def run(what: str) -> dict[str, float]:
        out = subprocess.run(
            [*child, "--measure", what], check=True, capture_output=True, text=True
        ).stdout
        return dict(json.loads(out))

    # Each build in its own process: the one without counters turns them off in it alone.
    whats = [w for w in WHATS if w in args.only.split(",")]
    print(f"{args.jobs} jobs, {args.kind} index, {args.runs} runs")
    if not args.reuse:
        built = run("build")
        print(
            f"  build with counters {built['seconds']:8.2f} s   peak RSS {built['rss_mb']:7.1f} MB"
        )
        if "build-nodefer" in args.only.split(","):
            every = run("build-nodefer")
            print(
                f"  build, counters written every transaction {every['seconds']:8.2f} s   "
                f"peak RSS {every['rss_mb']:7.1f} MB"
            )
        if "update-bare" in whats:
            bare = run("build-bare")["seconds"]
            print(f"  build without {bare:8.2f} s   ratio {built['seconds'] / bare:.2f}")
    results: dict[str, list[dict[str, float]]] = {w: [] for w in whats}
    for _ in range(args.runs):
        for what in whats:
            results[what].append(run(what))
    for what in whats:
        seconds = [r["seconds"] for r in results[what]]
        rss = max(r["rss_mb"] for r in results[what])
        print(
            f"  {what:<12} best {min(seconds) * 1000:10.1f} ms  median "
            f"{statistics.median(seconds) * 1000:10.1f} ms  peak RSS {rss:7.1f} MB"
        )
    if "job_stats" in results and "insights" in results:
        anchor = min(r["seconds"] for r in results["job_stats"])
        best = min(r["seconds"] for r in results["insights"])
        print(f"  job_stats / insights (best): {anchor / best:.1f}x")


if __name__ == "__main__":
    main()
