#!/usr/bin/env python3
"""Pack map adds by a pack's writer against adds by anyone else (a reader mapping the packs
it finds on disk unmapped, as a deleted map is rebuilt).

    python scripts/bench/bench_packmap_add.py [--packs 200] [--per-pack 1000] [--rounds 3]

A fresh map gets ``--packs`` packs of ``--per-pack`` random ids each, added as their writer
(``owner=True``: objects mapped elsewhere are repointed without a look) or not
(``owner=False``: each id is looked up first, and left where another listed pack holds it),
alternating. Prints wall seconds per round, best and median, and the peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mjvault.index.packmap import PackMap  # noqa: E402


def one_round(workdir: Path, packs: list[list[tuple[bytes, int, int]]], owner: bool) -> float:
    path = Path(tempfile.mkdtemp(dir=workdir)) / "map"
    packmap = PackMap(path)
    try:
        started = time.perf_counter()
        for n, entries in enumerate(packs):
            packmap.add(n.to_bytes(32, "big").hex(), entries, None, owner=owner)
        return time.perf_counter() - started
    finally:
        packmap.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packs", type=int, default=200)
    parser.add_argument("--per-pack", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(1)
    packs = [
        sorted((rng.randbytes(32), 6 + i * 300, 300) for i in range(args.per_pack))
        for _ in range(args.packs)
    ]
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        for _ in range(args.rounds):
            for owner in (True, False):
                times[owner].append(one_round(Path(work), packs, owner))
    for owner in (True, False):
        found = times[owner]
        print(
            f"owner={owner!s:5}  best {min(found):.3f} s  median {statistics.median(found):.3f} s"
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
