#!/usr/bin/env python3
"""What taking a sealed index's vocabulary entries away costs when jobs leave the index.

    python scripts/bench/bench_index_removals.py [--jobs 20000] [--remove 2000] [--runs 5]
        [--workdir DIR]

Builds a plain and a sealed index of bench_sealed_index.py's ``--jobs`` summaries (untimed),
copies each, then times ``Index.apply`` removing ``--remove`` of the jobs (every tenth, as
``forget --job`` of many does; each removal leaves every list the job was in, so every one of
its words, types and parameter values is checked): a plain index, a sealed one with the
vocabulary's removals (what the index does), and a sealed one with them turned off (what it
did before: entries stayed until a rebuild). ``--runs`` rounds, alternating; best and median
of each, their ratios, and the peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sealed_index import build, open_index, summaries  # noqa: E402
from bench_search import peak_rss_mb  # noqa: E402

import mjvault.index.db as db  # noqa: E402
from mjvault.index.db import JobSummary  # noqa: E402
from mjvault.store.crypto import VaultKeys  # noqa: E402

VARIANTS = ("plain", "sealed", "sealed, no removals")


def removal(workdir: Path, variant: str, keys: VaultKeys, gone: list[str]) -> float:
    kind = "plain" if variant == "plain" else "sealed"
    work = workdir / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(workdir / kind, work / kind)
    keep = db._vocab_removers
    if variant == "sealed, no removals":
        db._vocab_removers = lambda *args: []  # type: ignore[assignment]
    try:
        index = open_index(work, kind, keys)
        changes: list[tuple[str, JobSummary | None]] = [(job_id, None) for job_id in gone]
        started = time.perf_counter()
        index.apply(changes, "1" * 64)
        took = time.perf_counter() - started
        index.close()
    finally:
        db._vocab_removers = keep
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--remove", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-removals"))
    args = parser.parse_args()
    keys = VaultKeys(b"\x07" * 32)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for kind in ("plain", "sealed"):
        build(args.workdir, kind, keys, args.jobs)
    ids = [job_id for job_id, _ in summaries(args.jobs)]
    step = max(1, len(ids) // args.remove)
    gone = ids[::step][: args.remove]
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):
        for variant in VARIANTS:
            times[variant].append(removal(args.workdir, variant, keys, gone))
    print(f"{args.jobs} jobs, {len(gone)} removed, {args.runs} runs")
    for variant in VARIANTS:
        values = times[variant]
        print(
            f"  {variant:<20} best {min(values):7.3f} s  median {statistics.median(values):7.3f} s"
        )
    for name in VARIANTS[1:]:
        best = min(times[name]) / min(times["plain"])
        median = statistics.median(times[name]) / statistics.median(times["plain"])
        print(f"  {name} / plain: best {best:.2f}x  median {median:.2f}x")
    print(f"  peak RSS {peak_rss_mb():.0f} MB")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
