#!/usr/bin/env python3
"""Write a sample archive in the folder layout of the original midjourney-archiver scripts.

    python scripts/make_sample_archive.py OUT_DIR --jobs 500 --seed 1 [--large] [--with-problems]
    python scripts/make_sample_archive.py OUT_DIR --jobs 1000000 --scaled [--workers 2]

Deterministic: the same arguments give a byte-identical tree. ``--large`` makes realistic
image sizes (PNG ~700 KB, WebP ~160 KB): 2,000 images are about 1 GB, for benchmarks.
``--scaled`` writes jobs of the scaled account (derived one at a time, streamed to disk:
flat memory at a million jobs; tiny images, each distinct), for the million-job benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mjvault.errors import MjvaultError
from mjvault.testing.archive import write_sample_archive, write_scaled_archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="absent or empty directory")
    parser.add_argument("--jobs", type=int, default=200, help="image jobs to write (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="account seed (default 1)")
    parser.add_argument("--large", action="store_true", help="realistic image sizes")
    parser.add_argument(
        "--with-problems",
        action="store_true",
        help="add an orphan image, broken/HTML/empty JSON files and an unknown file",
    )
    parser.add_argument(
        "--scaled", action="store_true", help="jobs derived on demand, streamed: for 100k-1M jobs"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes writing a --scaled archive"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.jobs < 0:
        parser.error("--jobs must not be negative")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.scaled and (args.large or args.with_problems):
        parser.error("--scaled takes neither --large nor --with-problems")
    started = time.perf_counter()
    try:
        if args.scaled:
            summary = write_scaled_archive(
                args.out_dir, jobs=args.jobs, seed=args.seed, workers=args.workers
            )
        else:
            summary = write_sample_archive(
                args.out_dir,
                jobs=args.jobs,
                seed=args.seed,
                large=args.large,
                with_problems=args.with_problems,
            )
    except MjvaultError as err:
        print(f"make_sample_archive: error: {err}", file=sys.stderr)
        return err.exit_code
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({**summary.as_dict(), "seconds": round(elapsed, 3)}, indent=2))
    else:
        print(
            f"{summary.root}: {summary.jobs} jobs, {summary.images} images, "
            f"{summary.files} files, {summary.bytes / 1e6:.1f} MB in {elapsed:.1f} s"
        )
        for path, problem in summary.problems.items():
            print(f"  problem: {path}: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
