#!/usr/bin/env python3
"""Metadata storage shape: loose objects (what mjvault does) against one pack file.

    python scripts/bench/bench_loose_vs_pack.py [--records 100000] [--workdir /tmp/mjv-packs]

Writes N realistic job records (~1.5 KB JSON, msgpack+zstd framed as mjvault frames them)
both ways, durably (one syncfs per 2000 objects for loose files, one fsync per 2000 records
for the pack), then reads 10,000 at random, and reports time and disk use for each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjv-packs"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.records import encode_record
    from mjvault.store.codec import frame_plain, unframe_plain
    from mjvault.store.objects import ObjectStore
    from mjvault.testing.accounts import Account

    account = Account.generate(7, min(args.records, 5000))
    templates = [json.dumps(job.record_v1(), indent=2).encode() for job in account.jobs]
    records = [
        encode_record(
            templates[i % len(templates)].replace(b'"id": "', f'"id": "{i:08d}'.encode(), 1)
        )
        for i in range(args.records)
    ]
    raw_bytes = sum(len(r) for r in records)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    # Loose: mjvault's own write path.
    loose_root = args.workdir / "loose"
    loose_root.mkdir()
    store = ObjectStore(loose_root, None)
    started = time.perf_counter()
    batch = store.batch()
    ids = []
    for n, plaintext in enumerate(records, 1):
        ids.append(batch.put(plaintext))
        if n % 2000 == 0:
            batch.flush()
    batch.flush()
    loose_write = time.perf_counter() - started
    sample = random.Random(1).sample(range(len(ids)), min(10_000, len(ids)))
    os.system("sync")
    started = time.perf_counter()
    for i in sample:
        store.read(ids[i])
    loose_read = time.perf_counter() - started

    # Pack: one append-only file plus an in-memory offset table (what a pack index would hold).
    pack_path = args.workdir / "pack" / "records.pack"
    pack_path.parent.mkdir()
    started = time.perf_counter()
    offsets = []
    with open(pack_path, "wb") as pack:
        for n, plaintext in enumerate(records, 1):
            framed = frame_plain(plaintext, compress=True)
            offsets.append((pack.tell(), len(framed)))
            pack.write(framed)
            if n % 2000 == 0:
                pack.flush()
                os.fsync(pack.fileno())
        pack.flush()
        os.fsync(pack.fileno())
    pack_write = time.perf_counter() - started
    started = time.perf_counter()
    with open(pack_path, "rb") as pack:
        for i in sample:
            offset, size = offsets[i]
            pack.seek(offset)
            unframe_plain(pack.read(size))
    pack_read = time.perf_counter() - started

    n = len(records)
    print(f"{n} records, {raw_bytes / 1e6:.1f} MB of msgpack before compression")
    print(f"{'shape':<8}{'write s':>9}{'records/s':>11}{'10k reads s':>13}{'disk MB':>9}")
    print(
        f"{'loose':<8}{loose_write:>9.2f}{n / loose_write:>11.0f}{loose_read:>13.2f}{du(loose_root / 'objects') / 1e6:>9.1f}"
    )
    print(
        f"{'pack':<8}{pack_write:>9.2f}{n / pack_write:>11.0f}{pack_read:>13.2f}{du(pack_path.parent) / 1e6:>9.1f}"
    )
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
