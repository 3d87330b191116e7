#!/usr/bin/env python3
"""Pack map lookups against how often the map's resident pages are released.

    python scripts/bench/bench_packmap_release.py [--objects 1000000] [--lookups 200000]
                                                   [--every 256 64 32] [--rounds 3]

A pack map of ``--objects`` random ids (as a vault of that many packed objects has), then
``--lookups`` lookups of random ids, half of them mapped (a writer asks the map about every
new object, and most are not packed yet), for each value of ``MAP_RELEASE_EVERY``. Prints
CPU seconds per lookup and the map's resident KiB sampled every 1,000 lookups (highest seen),
best and median of ``--rounds`` alternating rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mjvault.index import packmap as packmap_module  # noqa: E402
from mjvault.index.packmap import PackMap  # noqa: E402
from mjvault.testing.rusage import resident_kib  # noqa: E402


def one_round(packmap: PackMap, data: Path, keys: list[bytes], every: int) -> tuple[float, int]:
    packmap_module.MAP_RELEASE_EVERY = every
    packmap.pages.release()
    highest = 0
    started = time.process_time()
    for n, key in enumerate(keys, 1):
        packmap.locate(key)
        if n % 1000 == 0:
            paused = time.process_time()
            highest = max(highest, resident_kib(data))
            started += time.process_time() - paused  # sampling is not the lookups' cost
    return (time.process_time() - started) / len(keys), highest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--every", type=int, nargs="+", default=[256, 64, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(5)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "map"
        packmap = PackMap(path)
        mapped: list[bytes] = []
        per_pack = 20_000  # a pack of a checkpoint's objects, a few times over
        for start in range(0, args.objects, per_pack):
            ids = [rng.randbytes(32) for _ in range(min(per_pack, args.objects - start))]
            places = ((key, 6 + 100 * i, 100) for i, key in enumerate(ids))
            packmap.add(rng.randbytes(32).hex(), places, None)
            mapped.extend(ids)
        half = args.lookups // 2
        keys = rng.sample(mapped, half) + [rng.randbytes(32) for _ in range(half)]
        del mapped
        rng.shuffle(keys)
        data = path / "data.mdb"
        print(
            f"{args.objects} objects, map {os.path.getsize(data) / 2**20:.0f} MB, {len(keys)} lookups"
        )
        results: dict[int, list[tuple[float, int]]] = {every: [] for every in args.every}
        for _ in range(args.rounds):
            for every in args.every:
                results[every].append(one_round(packmap, data, keys, every))
        packmap.close()
    print("release every   µs/lookup best / median   resident KiB best / median")
    for every, runs in results.items():
        cpu = sorted(r[0] * 1e6 for r in runs)
        kib = sorted(r[1] for r in runs)
        print(f"{every:>13}   {cpu[0]:>8.2f} / {statistics.median(cpu):<8.2f}   "
              f"{kib[0]:>8} / {statistics.median(kib):<8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
