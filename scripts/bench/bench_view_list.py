#!/usr/bin/env python3
"""A view's file list in an encrypted vault: what sealing its job ids costs a full checkout.

    python scripts/bench/bench_view_list.py [--jobs 25000] [--runs 5] [--workdir DIR]

Records JOBS jobs of 4 images each (100k rows by default) into a fresh ``<name>.files`` the
way a full checkout does: jobs in tree order, a batch of 1000 rows at a time, each batch's
names asked for first (``taken``) and then recorded (``put_new``), committed at the end; then
reads every job's files back (``of_jobs``, as a refresh does) and walks the list
(``iter_files``, as a check does). Each variant runs in a child process of its own (its wall
time and peak RSS), alternating, ``--runs`` times:

* ``plain``: a plain vault's list (the anchor);
* ``sealed-v1``: an encrypted vault's list as version 1 kept it (paths sealed, job ids and
  unkeyed job keys in the clear);
* ``sealed-v2``: this version's (job ids sealed deterministically, job keys keyed).

Prints best and median of each and the paired ratio v2 / v1. Figures: docs/design.md,
"Nothing readable at rest".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BATCH = 1000
IMAGES = 4
VARIANTS = ("plain", "sealed-v1", "sealed-v2")


def _table(variant: str, path: Path) -> Any:
    from mjvault.store.crypto import VaultKeys
    from mjvault.views.state import SealedSqliteTable, SqliteTable, job_key

    if variant == "plain":
        return SqliteTable(path)
    keys = VaultKeys(b"\x07" * 32)
    if variant == "sealed-v2":
        return SealedSqliteTable(path, keys)

    class SealedV1(SealedSqliteTable):
        table_version = 1

        def _job_cell(self, job: str) -> Any:
            return job

        def _job_of(self, cell: Any) -> str:
            return str(cell)

        def _new_job_key(self, job_id: str) -> int:
            return job_key(job_id)

    return SealedV1(path, keys)


def child(variant: str, jobs: int, workdir: Path) -> dict[str, float]:
    from mjvault.views.state import job_key

    ids = sorted(
        (
            str(uuid.UUID(int=(n * 0x9E3779B97F4A7C15 + 1) % (1 << 128), version=4))
            for n in range(jobs)
        ),
        key=job_key,
    )
    path = workdir / f"{variant}-{os.getpid()}.files"
    started = time.perf_counter()
    table = _table(variant, path)
    rows: list[tuple[str, int, str, str, str, None, int, int]] = []
    for n, job in enumerate(ids):
        for i in range(IMAGES):
            name = f"2024/2024-{1 + n % 12:02d}/portrait of a fox number {n} {job[:8]}-{i}.png"
            rows.append((job, i, name, f"{n:060x}{i:04x}", "copy", None, 1000 + n, n))
        if len(rows) >= BATCH or n == len(ids) - 1:
            table.taken([r[2].lower() for r in rows])
            table.put_new(rows)
            rows = []
    table.commit()
    recorded = time.perf_counter()
    found = 0
    for start in range(0, len(ids), BATCH // IMAGES):
        found += sum(len(v) for v in table.of_jobs(ids[start : start + BATCH // IMAGES]).values())
    looked_up = time.perf_counter()
    walked = sum(1 for _ in table.iter_files())
    done = time.perf_counter()
    table.close()
    assert found == walked == jobs * IMAGES
    size = path.stat().st_size
    path.unlink()
    return {
        "record": recorded - started,
        "of_jobs": looked_up - recorded,
        "iter": done - looked_up,
        "total": done - started,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "size_mib": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=25_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.gettempdir())
    if args.child:
        print(json.dumps(child(args.child, args.jobs, workdir)))
        return
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--jobs", str(args.jobs),
                 "--workdir", str(workdir)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[variant].append(json.loads(out.stdout))
    print(f"{args.jobs} jobs x {IMAGES} images, {args.runs} runs (best / median, seconds)")
    for variant, runs in results.items():
        cells = []
        for key in ("record", "of_jobs", "iter", "total"):
            values = [r[key] for r in runs]
            cells.append(f"{key} {min(values):.2f}/{statistics.median(values):.2f}")
        rss = max(r["rss_mib"] for r in runs)
        size = runs[0]["size_mib"]
        print(
            f"  {variant:10} " + "  ".join(cells) + f"  peak RSS {rss:.0f} MiB  file {size:.1f} MiB"
        )
    ratios = [
        new["total"] / old["total"]
        for new, old in zip(results["sealed-v2"], results["sealed-v1"], strict=True)
    ]
    print(
        f"  sealed-v2 / sealed-v1 total, paired: best {min(ratios):.2f}, median {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
