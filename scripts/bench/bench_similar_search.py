#!/usr/bin/env python3
"""Hamming search over perceptual hashes: which method `similar` and `dupes` use.

    python scripts/bench/bench_similar_search.py [--rows 100000,1000000,3000000]
        [--bits 64,256] [--methods scan,mih,bktree,usearch,dupes] [--queries 15]
        [--level 8] [--bktree-max 1000000] [--usearch-max 1000000]

Synthetic hashes: uniform random rows with clusters of near-duplicates planted among them
(1 % of the rows are sources of a cluster of 3 copies, each a few random bits away), written
once per size to ``/tmp/mjvault-simbench-PID/`` (deleted at the end). Each method runs in a
child process of its own, so its peak RSS (``ru_maxrss``) is its own:

- ``scan``: what `similar` does: blocks of 4,096 rows read from the file one after the other
  (as the hash store streams them), XOR + ``np.bitwise_count``, the best rows kept.
- ``mih``: multi-index hashing (the rows in memory, a dense table per 21-22-bit block,
  substrings searched at growing radius until the k nearest are sure).
- ``bktree``: a BK-tree (pure Python), built then queried.
- ``usearch``: usearch's binary HNSW index (``metric="hamming"``, ``dtype="b1"``), built then
  queried (approximate: its recall of the true k nearest is printed).
- ``store``: `similar` and `dupes` through a real vault's hash store (mjvault.similarity.store,
  filled through ``HashStore.put``): a query's scan of ``store.blocks()``, and the pairs and
  union-find of every row read from it (index lookups of the hits are left out: the ids are
  made up). Printed as ``store-q`` (query) and ``store-d`` (dupes) rows.
- ``dupes``: what `dupes` does: every pair within ``--level`` (mjvault.similarity.groups,
  exact pigeonhole over blocks) and the union-find of them; recall of the planted pairs.

Query time is per query (p50 and best of ``--queries``); build time once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# One folder per run (children are told it): two runs at once do not delete each other's data.
DATA = Path(os.environ.get("MJVAULT_SIMBENCH_DIR") or f"/tmp/mjvault-simbench-{os.getpid()}")
BLOCK = 4096
K = 20


def data_path(rows: int, bits: int) -> Path:
    return DATA / f"h{bits}-{rows}.u64"


def make_data(rows: int, bits: int, level: int) -> None:
    """Uniform rows; every 100th row a source followed by 3 copies within ``level // 2``
    flipped bits (so planted pairs are within ``level`` of each other too)."""
    path = data_path(rows, bits)
    if path.exists():
        return
    DATA.mkdir(parents=True, exist_ok=True)
    words = bits // 64
    rng = np.random.default_rng(rows * 7 + bits)
    with path.open("wb") as out:
        for first in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - first)
            chunk = rng.integers(0, 2**64 - 1, size=(n, words), dtype=np.uint64, endpoint=True)
            sources = np.arange(0, n - 3, 100)
            for copy in (1, 2, 3):
                flipped = chunk[sources].copy()
                for _ in range(max(1, level // 2)):
                    bit = rng.integers(0, bits, size=len(sources))
                    flipped[np.arange(len(sources)), bit // 64] ^= np.uint64(1) << (
                        (bit % 64).astype(np.uint64)
                    )
                chunk[sources + copy] = flipped
            out.write(chunk.tobytes())


def load(rows: int, bits: int) -> np.ndarray:
    return np.fromfile(data_path(rows, bits), dtype=np.uint64).reshape(rows, bits // 64)


def queries(rows: int, bits: int, count: int) -> np.ndarray:
    """Planted sources (each has near copies) read from the file."""
    picks = np.linspace(0, rows - 200, count).astype(np.int64) // 100 * 100
    words = bits // 64
    with data_path(rows, bits).open("rb") as f:
        found = []
        for row in picks:
            f.seek(int(row) * words * 8)
            found.append(np.frombuffer(f.read(words * 8), dtype=np.uint64))
    return np.array(found)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- methods (each in its own process) -----------------------------------------------------
class FileBlock:
    def __init__(self, start: int, words: np.ndarray) -> None:
        self.start = start
        self.words = words
        self.parts = np.zeros(len(words), np.uint8)


def file_blocks(rows: int, bits: int):  # type: ignore[no-untyped-def]
    words = bits // 64
    with data_path(rows, bits).open("rb") as f:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            yield FileBlock(start, np.frombuffer(f.read(n * words * 8), np.uint64).reshape(n, -1))


def run_scan(rows: int, bits: int, qs: np.ndarray) -> dict[str, object]:
    from mjvault.similarity.nearest import scan

    times = []
    for q in qs:
        t = time.perf_counter()
        found = scan(file_blocks(rows, bits), q, K)
        times.append(time.perf_counter() - t)
        assert found[0][1] == 0
    return {"build_s": 0.0, "times": times}


def run_mih(rows: int, bits: int, qs: np.ndarray) -> dict[str, object]:
    from mjvault.similarity.groups import flip_masks

    t = time.perf_counter()
    words = load(rows, bits)
    blocks = []  # (word, shift, width, order, starts)
    for w in range(words.shape[1]):
        shift = 64
        for width in (22, 21, 21):
            shift -= width
            keys = ((words[:, w] >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(
                np.int64
            )
            order = np.argsort(keys, kind="stable").astype(np.int32)
            starts = np.zeros((1 << width) + 1, np.int32)
            starts[1:] = np.cumsum(np.bincount(keys, minlength=1 << width))
            del keys
            blocks.append((w, shift, width, order, starts))
    build = time.perf_counter() - t
    times = []
    for q in qs:
        t = time.perf_counter()
        seen: set[int] = set()
        best: list[tuple[int, int]] = []
        radius = 0
        while True:
            for w, shift, width, order, starts in blocks:
                key = (int(q[w]) >> shift) & ((1 << width) - 1)
                for mask in flip_masks(width, radius):
                    if radius and bin(int(mask)).count("1") != radius:
                        continue
                    k = key ^ int(mask)
                    for row in order[starts[k] : starts[k + 1]].tolist():
                        if row not in seen:
                            seen.add(row)
                            best.append((int(np.bitwise_count(words[row] ^ q).sum()), row))
            best.sort()
            # Any row not seen differs in > radius bits of every block.
            sure = len(blocks) * (radius + 1)
            if len(best) >= K and best[K - 1][0] < sure or radius >= 3:
                break
            radius += 1
        times.append(time.perf_counter() - t)
    return {"build_s": build, "times": times}


class BKTree:
    def __init__(self) -> None:
        self.root: list | None = None  # [value, row, {distance: child}]

    def add(self, value: int, row: int) -> None:
        if self.root is None:
            self.root = [value, row, {}]
            return
        node = self.root
        while True:
            d = (node[0] ^ value).bit_count()
            child = node[2].get(d)
            if child is None:
                node[2][d] = [value, row, {}]
                return
            node = child

    def search(self, value: int, radius: int) -> list[tuple[int, int]]:
        found, stack = [], [self.root]
        while stack:
            node = stack.pop()
            if node is None:
                continue
            d = (node[0] ^ value).bit_count()
            if d <= radius:
                found.append((d, node[1]))
            for dist, child in node[2].items():
                if d - radius <= dist <= d + radius:
                    stack.append(child)
        return sorted(found)


def run_bktree(rows: int, bits: int, qs: np.ndarray, level: int) -> dict[str, object]:
    t = time.perf_counter()
    tree = BKTree()
    for start in range(0, rows, 100_000):
        chunk = load_rows(rows, bits, start, min(rows, start + 100_000))
        for n, value in enumerate(chunk, start):
            tree.add(value, n)
    build = time.perf_counter() - t
    times = []
    for q in qs:
        value = int.from_bytes(q.astype(">u8").tobytes(), "big")
        t = time.perf_counter()
        tree.search(value, level)  # k nearest within the level: the cheap case for a BK-tree
        times.append(time.perf_counter() - t)
    return {"build_s": build, "times": times}


def load_rows(rows: int, bits: int, first: int, end: int) -> list[int]:
    words = bits // 64
    with data_path(rows, bits).open("rb") as f:
        f.seek(first * words * 8)
        raw = f.read((end - first) * words * 8)
    step = words * 8
    swapped = np.frombuffer(raw, np.uint64).astype(">u8").tobytes()
    return [int.from_bytes(swapped[i : i + step], "big") for i in range(0, len(swapped), step)]


def run_usearch(rows: int, bits: int, qs: np.ndarray) -> dict[str, object]:
    from usearch.index import Index

    t = time.perf_counter()
    index = Index(ndim=bits, metric="hamming", dtype="b1")
    for start in range(0, rows, 100_000):
        chunk = load(rows, bits)[start : start + 100_000] if rows <= 100_000 else None
        if chunk is None:
            with data_path(rows, bits).open("rb") as f:
                f.seek(start * bits // 8)
                n = min(100_000, rows - start)
                chunk = np.frombuffer(f.read(n * bits // 8), np.uint64).reshape(n, -1)
        packed = chunk.astype(">u8").view(np.uint8).reshape(len(chunk), -1)
        index.add(np.arange(start, start + len(chunk)), packed)
    build = time.perf_counter() - t
    times, recall = [], []
    for q in qs:
        packed = q.astype(">u8").view(np.uint8)
        t = time.perf_counter()
        found = index.search(packed, K)
        times.append(time.perf_counter() - t)
        exact = np.bitwise_count(load(rows, bits) ^ q).sum(axis=1) if rows <= 100_000 else None
        if exact is not None:
            kth = np.sort(exact)[K - 1]
            recall.append(float(np.mean(exact[found.keys.astype(np.int64)] <= kth)))
    return {"build_s": build, "times": times, "recall": recall}


def run_dupes(rows: int, bits: int, level: int) -> dict[str, object]:
    from mjvault.similarity.groups import plan_for, row_components

    words = load(rows, bits)
    parts = np.zeros(rows, np.uint8)
    t = time.perf_counter()
    groups = row_components(words, parts, level)
    took = time.perf_counter() - t
    planted = set(range(0, rows - 3, 100)) if rows < 1_000_000 else None
    found_rows = {int(r) for g in groups for r in g}
    sources = [
        s
        for start in range(0, rows, 1_000_000)
        for s in range(start, min(rows, start + 1_000_000) - 3, 100)
    ]
    hit = sum(1 for s in sources if {s, s + 1, s + 2, s + 3} <= found_rows)
    del planted
    plan = plan_for(words.shape[1], level, rows)
    return {
        "build_s": took,
        "times": [took],
        "groups": len(groups),
        "planted_recall": hit / max(1, len(sources)),
        "plan": f"{plan.cuts} blocks/word, radius {plan.radius}, {plan.masks} masks",
    }


def store_vault(rows: int, bits: int) -> Path:
    return DATA / f"vault-{bits}-{rows}"


def build_store(rows: int, bits: int) -> None:
    """A vault whose hash store holds the data file's rows (ids made from row numbers)."""
    from mjvault import Vault
    from mjvault.similarity.hashing import to_bytes
    from mjvault.similarity.store import HashStore

    path = store_vault(rows, bits)
    if path.exists():
        return
    with (
        Vault.init(path) as vault,
        vault.write_lock(),
        HashStore.open(vault, writable=True) as store,
    ):
        for first in range(0, rows, 100_000):
            end = min(rows, first + 100_000)
            for n, hash_ in enumerate(to_bytes(load(rows, bits)[first:end]), first):
                store.put(n.to_bytes(32, "big").hex(), [hash_])
            store.commit()


def run_store_query(rows: int, bits: int, qs: np.ndarray) -> dict[str, object]:
    from mjvault import Vault
    from mjvault.similarity.nearest import scan
    from mjvault.similarity.store import HashStore

    times = []
    with Vault.open(store_vault(rows, bits)) as vault, HashStore.open(vault) as store:
        for q in qs:
            t = time.perf_counter()
            found = scan(store.blocks(), q, K)
            store.locate(r for r, _ in found)
            times.append(time.perf_counter() - t)
    return {"build_s": 0.0, "times": times}


def run_store_dupes(rows: int, bits: int, level: int) -> dict[str, object]:
    from mjvault import Vault
    from mjvault.similarity.groups import _load, row_components
    from mjvault.similarity.store import HashStore

    with Vault.open(store_vault(rows, bits)) as vault, HashStore.open(vault) as store:
        t = time.perf_counter()
        words, parts, numbers = _load(store, None)
        groups = row_components(words, parts, level)
        del words
        for group in groups[:1000]:
            store.locate(numbers[group].tolist())
        took = time.perf_counter() - t
    return {
        "build_s": took,
        "times": [took],
        "groups": len(groups),
        "planted_recall": 1.0,
        "plan": "through the store",
    }


def child(args: argparse.Namespace) -> None:
    rows, bits, method = args.rows_one, args.bits_one, args.one
    qs = queries(rows, bits, args.queries)
    base = peak_mb()
    if method == "store-build":
        build_store(rows, bits)
        result = {"build_s": 0.0, "times": [0.0]}
    elif method == "store-q":
        result = run_store_query(rows, bits, qs)
    elif method == "store-d":
        result = run_store_dupes(rows, bits, args.level)
    elif method == "scan":
        result = run_scan(rows, bits, qs)
    elif method == "mih":
        result = run_mih(rows, bits, qs)
    elif method == "bktree":
        result = run_bktree(rows, bits, qs, args.level)
    elif method == "usearch":
        result = run_usearch(rows, bits, qs)
    else:
        result = run_dupes(rows, bits, args.level)
    result["peak_mb"] = peak_mb()
    result["base_mb"] = base
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000,3000000")
    parser.add_argument("--bits", default="64,256")
    parser.add_argument("--methods", default="scan,mih,bktree,usearch,dupes")
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--level", type=int, default=8)
    parser.add_argument("--bktree-max", type=int, default=1_000_000)
    parser.add_argument("--usearch-max", type=int, default=1_000_000)
    parser.add_argument("--dupes-256-max", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="Keep the data files.")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--rows-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bits-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(args)
        return
    print(
        f"{'method':8} {'bits':>4} {'rows':>9} {'build s':>8} {'p50 ms':>8} {'best ms':>8} "
        f"{'peak MB':>8}  notes"
    )
    try:
        for bits in (int(b) for b in args.bits.split(",")):
            for rows in (int(r) for r in args.rows.split(",")):
                make_data(rows, bits, args.level)
                methods = args.methods.split(",")
                if "store" in methods:
                    at = methods.index("store")
                    methods[at : at + 1] = ["store-build", "store-q", "store-d"]
                for method in methods:
                    if method == "bktree" and (rows > args.bktree_max or bits != 64):
                        continue
                    if method == "usearch" and rows > args.usearch_max:
                        continue
                    if method == "dupes" and bits == 256 and rows > args.dupes_256_max:
                        continue
                    cmd = [sys.executable, __file__, "--one", method, "--rows-one", str(rows)]
                    cmd += ["--bits-one", str(bits), "--queries", str(args.queries)]
                    cmd += ["--level", str(args.level)]
                    env = os.environ | {"MJVAULT_SIMBENCH_DIR": str(DATA)}
                    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                    if done.returncode:
                        print(f"{method:8} {bits:>4} {rows:>9} failed: {done.stderr[-300:]}")
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    if method == "store-build":
                        continue
                    ms = [x * 1000 for x in r["times"]]
                    notes = []
                    if r.get("recall"):
                        notes.append(f"recall@{K} {statistics.mean(r['recall']):.3f}")
                    if "groups" in r:
                        notes.append(
                            f"{r['groups']} groups, planted recall {r['planted_recall']:.3f}"
                        )
                        notes.append(r["plan"])
                    print(
                        f"{method:8} {bits:>4} {rows:>9} {r['build_s']:8.1f} "
                        f"{statistics.median(ms):8.1f} {min(ms):8.1f} {r['peak_mb']:8.0f}  "
                        + "; ".join(notes),
                        flush=True,
                    )
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
