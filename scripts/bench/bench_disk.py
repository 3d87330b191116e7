#!/usr/bin/env python3
"""Where a vault's metadata bytes go: bytes on disk by part, per job.

    python scripts/bench/bench_disk.py VAULT [--compact]

Prints, for the vault at VAULT: ``du`` (allocated blocks) of packs/, loose objects/ (media,
manifests, dictionaries), index/ and each LMDB environment in it, and for every LMDB table
its pages (branch, leaf, overflow) times the page size — the bytes that table holds — and
its entries; then the environment's file size against the sum of its tables (the rest is
free pages: the B-trees' churn from random inserts, and LMDB's free list). With
``--compact`` it also copies each environment with compaction (``mdb_copy -c``) into a
temporary folder and prints the copy's size: the live data, what a rebuild would leave.
Read-only: the vault is not changed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lmdb


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def tables(env_path: Path) -> tuple[int, list[tuple[str, int, int, int]]]:
    """(page size, [(table, entries, bytes of its pages, overflow pages)]) of an environment."""
    env = lmdb.open(str(env_path), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        rows = []
        with env.begin() as txn:
            main = txn.stat()
            page = main["psize"]
            rows.append(("(main)", main["entries"], _pages(main) * page, main["overflow_pages"]))
            names = [bytes(k) for k, _ in txn.cursor()]
        for name in names:
            try:
                db = env.open_db(name, create=False)
            except lmdb.Error:
                continue
            with env.begin() as txn:
                stat = txn.stat(db)
            rows.append(
                (name.decode(errors="replace"), stat["entries"], _pages(stat) * page,
                 stat["overflow_pages"])
            )  # fmt: skip
        return page, rows
    finally:
        env.close()


def _pages(stat: dict[str, int]) -> int:
    return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]


def compacted(env_path: Path) -> int:
    env = lmdb.open(str(env_path), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        with tempfile.TemporaryDirectory(dir=env_path.parent) as tmp:
            env.copy(tmp, compact=True)
            return os.path.getsize(Path(tmp) / "data.mdb")
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("vault", type=Path)
    parser.add_argument("--jobs", type=int, default=0, help="divide by this many jobs")
    parser.add_argument("--compact", action="store_true")
    args = parser.parse_args()
    root: Path = args.vault
    jobs = args.jobs

    def line(what: str, size: int, extra: str = "") -> None:
        per = f"{size / jobs:10.1f} B/job" if jobs else ""
        print(f"{what:<34} {size / 1e6:10.2f} MB {per}  {extra}")

    total = du(root)
    line("vault (du)", total)
    for part in ("packs", "objects", "index", "tmp", "refs", "state"):
        line(f"  {part}/", du(root / part))
    packs = sorted((root / "packs").glob("*")) if (root / "packs").is_dir() else []
    if packs:
        sizes = [p.stat().st_size for p in packs]
        line("  packs: file bytes", sum(sizes), f"{len(packs)} packs, largest "
             f"{max(sizes) / 1e6:.1f} MB")  # fmt: skip
    envs = [p.parent for p in sorted((root / "index").rglob("data.mdb"))]
    for env_path in envs:
        rel = env_path.relative_to(root)
        size = os.path.getsize(env_path / "data.mdb")
        line(f"  {rel}/data.mdb (file size)", size, f"du {du(env_path / 'data.mdb') / 1e6:.2f} MB")
        page, rows = tables(env_path)
        used = 0
        for name, entries, nbytes, overflow in rows:
            used += nbytes
            line(f"    {name}", nbytes, f"{entries} entries, {overflow} overflow pages")
        line("    free or unused pages", size - used, f"page {page} B")
        if args.compact:
            line("    compacted copy", compacted(env_path))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
