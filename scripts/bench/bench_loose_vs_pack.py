#!/usr/bin/env python3
"""Small objects loose (one file each, as mjvault stored them before packs) against packs.

    python scripts/bench/bench_loose_vs_pack.py [--records 100000] [--rounds 3]
                                                [--workdir /tmp/mjv-packs]

Both shapes go through mjvault's own write path (``WriteBatch``: ``put(loose=True)`` and
``put()``), durably (a flush every 2,000 records, as a writer's checkpoint does), with N
distinct job records of the scaled account (``mjvault.testing.scaled``, v1 shape, as an
import stores them). Then, for each: 10,000 reads at random by id, a full pass reading and
checking every record by id (what ``verify --read-data`` does per object), and the bytes on
disk (``du``: allocated blocks). Rounds alternate loose and packed; best and median.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjv-packs"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.records import encode_record
    from mjvault.store.objects import ObjectStore
    from mjvault.testing.scaled import ScaledAccount

    account = ScaledAccount.generate(7, args.records)
    records = [encode_record(json.dumps(job.record_v1()).encode()) for job in account.jobs]
    raw = sum(len(r) for r in records)
    figures: dict[str, dict[str, list[float]]] = {
        shape: {"write": [], "reads": [], "check": [], "disk": []} for shape in ("loose", "packed")
    }
    for _ in range(args.rounds):
        for shape in ("loose", "packed"):
            root = args.workdir / shape
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            store = ObjectStore(root, None)
            started = time.perf_counter()
            batch = store.batch()
            ids = []
            for n, plaintext in enumerate(records, 1):
                ids.append(batch.put(plaintext, loose=shape == "loose"))
                if n % 2000 == 0:
                    batch.flush()
            batch.flush()
            store.close()
            figures[shape]["write"].append(time.perf_counter() - started)
            sample = random.Random(1).sample(ids, min(10_000, len(ids)))
            store = ObjectStore(root, None)  # a fresh reader, as a new command would be
            started = time.perf_counter()
            for object_id in sample:
                store.read(object_id)
            figures[shape]["reads"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for object_id in ids:
                store.check(object_id)
            figures[shape]["check"].append(time.perf_counter() - started)
            store.close()
            kept = root / ("objects" if shape == "loose" else "packs")
            figures[shape]["disk"].append(du(kept) + du(root / "objects") * (shape == "packed"))
            shutil.rmtree(root, ignore_errors=True)

    n = len(records)
    print(
        f"{n} records, {raw / n:.0f} bytes each before compression; best / median of {args.rounds}"
    )
    print(
        f"{'shape':<8}{'write s':>16}{'records/s':>11}{'10k reads s':>16}{'check /s':>10}{'disk B/rec':>12}"
    )
    for shape, got in figures.items():
        write, reads, check = got["write"], got["reads"], got["check"]
        print(
            f"{shape:<8}{min(write):>7.2f} /{statistics.median(write):>6.2f}"
            f"{n / min(write):>11.0f}{min(reads):>7.2f} /{statistics.median(reads):>6.2f}"
            f"{n / min(check):>10.0f}{min(got['disk']) / n:>12.0f}"
        )


if __name__ == "__main__":
    main()
