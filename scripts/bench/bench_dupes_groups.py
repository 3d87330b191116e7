"""Time ``find_groups`` against the pair search alone on a real hash store.

    python scripts/bench/bench_dupes_groups.py [--rows 100000] [--pairs 20000] [--repeat 3]

A fresh vault gets ``--rows`` random 64-bit hashes of made-up image ids, ``--pairs`` of them
near copies (2 bits) of another: ``--pairs`` components, whose rows are looked up and whose
members' hashes are read (the ids belong to no job, so no member is shown: this measures
the store's side). The anchor is ``row_components`` over the same arrays (the pair search
and union-find only). Best and median of ``--repeat`` runs, and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mjvault import Vault
from mjvault.similarity.groups import _load, find_groups, row_components
from mjvault.similarity.hashing import HASH_BYTES
from mjvault.similarity.store import HashStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--level", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    with (
        tempfile.TemporaryDirectory(prefix="bench-dupes-") as root,
        Vault.init(Path(root) / "vault") as vault,
    ):
        values = rng.integers(0, 2**63, size=args.rows, dtype=np.int64).astype(np.uint64)
        step = args.rows // max(1, args.pairs)
        for k in range(args.pairs):
            values[k * step + 1] = values[k * step] ^ np.uint64(0b101)
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            for value in values.tolist():
                store.put(rng.bytes(32).hex(), [int(value).to_bytes(HASH_BYTES, "big")])
        anchor, groups = [], []
        for _ in range(args.repeat):
            with HashStore.open(vault) as store:
                began = time.perf_counter()
                words, parts, _rows = _load(store, None)
                found = row_components(words, parts, args.level, reorder=True)
                anchor.append(time.perf_counter() - began)
            began = time.perf_counter()
            list(find_groups(vault, level=args.level))
            groups.append(time.perf_counter() - began)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows {args.rows}, components {len(found)}, level {args.level}")
    print(
        f"pairs alone (_load + row_components): best {min(anchor):.2f} s, median "
        f"{statistics.median(anchor):.2f} s"
    )
    print(f"find_groups: best {min(groups):.2f} s, median {statistics.median(groups):.2f} s")
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
