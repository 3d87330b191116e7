#!/usr/bin/env python3
"""Thumbnails made once: what they cost sync and import, and how fast a backfill makes them.

    python scripts/bench/bench_thumbs.py [--jobs 200] [--runs 3] [--latency 0.05]
                                         [--bandwidth 8M] [--concurrency 16]
                                         [--workdir /tmp/mjvault-bench-thumbs] [--skip-sync]

(a) ``mjvault import`` of a generated archive (real images of realistic size) into a fresh
    vault, with thumbnails (the default) and with ``--no-thumbnails``, in alternating rounds;
(b) ``mjvault sync`` of the same account from ``mjvault dev-server --large --latency
    --bandwidth`` into a fresh vault, with and without thumbnails, alternating;
(c) ``mjvault thumbs`` (the backfill, sizes s and m) over the vault (a) left without
    thumbnails, plain and encrypted: thumbnails per second.

Each (a)/(b) line ends with each run's thumbnails made/left (sync and import wait for them
at most 5 % of their run; `mjvault thumbs` makes the rest). Every contender is a child process: wall seconds (best and median of ``--runs``) and peak RSS
from the kernel's accounting of that child alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEED = 7
PASSPHRASE = "bench thumbnails passphrase"


def mjvault(*args: str) -> list[str]:
    return [sys.executable, "-m", "mjvault", *args]


def fresh_vault(path: Path, *, encrypt: bool = False) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    extra = ["--encrypt"] if encrypt else []
    subprocess.run(mjvault("init", str(path), *extra), check=True, stdout=subprocess.DEVNULL,
                   env=os.environ | {"MJVAULT_PASSPHRASE": PASSPHRASE})  # fmt: skip
    return path


def line(name: str, seconds: list[float], rss: list[int], extra: str = "") -> str:
    return (
        f"{name:<40} best {min(seconds):7.2f} s  median {statistics.median(seconds):7.2f} s  "
        f"peak RSS {max(rss) / 1024:6.1f} MB{extra}"
    )


def _thumbs(out: str) -> str:
    """made/left of a run's thumbnails, from its --json report."""
    doc = json.loads(out)
    return f"{doc.get('thumbnails_made', 0)}/{doc.get('thumbnails_left', 0)}"


def memory(workdir: Path, jobs: int, env: dict[str, str], run_child: Any) -> None:
    """(d) `mjvault thumbs` over a vault of ``jobs`` jobs whose images come from 64 shared
    PNGs: every image slot is looked up (the walk and the table at full size), 128
    thumbnails made. Its peak RSS against the vault's size says whether memory is flat."""
    from mjvault.testing.gallerypage import build_many

    vault = workdir / f"vault-memory-{jobs}"
    if not vault.exists():
        build_many(vault, jobs)
    (vault / "cache" / "thumbs.sqlite").unlink(missing_ok=True)
    for _ in range(2):  # the second run finds every thumbnail made: the lookups alone
        seconds, rss, out = run_child(
            "thumbs", mjvault("--vault", str(vault), "--json", "thumbs"), env
        )
        doc = json.loads(out)
        print(
            f"(d) mjvault thumbs, {jobs} jobs ({doc['images']} image slots x sizes): "
            f"{seconds:6.2f} s, {doc['made']} made, peak RSS {rss / 1024:6.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--bandwidth", default="8M")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-thumbs"))
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--skip-import", action="store_true", help="skip (a) and (c)")
    parser.add_argument(
        "--memory-jobs", type=int, nargs="*", default=[], help="(d): vault sizes, e.g. 20000 100000"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from bench_sync import DevServer, parse_rate, run_child  # the sync bench's tools

    from mjvault.testing.archive import write_sample_archive

    args.workdir.mkdir(parents=True, exist_ok=True)
    archive = args.workdir / f"archive-{args.jobs}"
    if not archive.exists():
        write_sample_archive(archive, jobs=args.jobs, seed=SEED, large=True)
    env = os.environ | {"MJVAULT_PASSPHRASE": PASSPHRASE}
    for jobs in args.memory_jobs:
        memory(args.workdir, jobs, env, run_child)
    if args.skip_import:
        return
    print(f"(a) import of {args.jobs} jobs (large images), {args.runs} alternating rounds")
    results: dict[str, tuple[list[float], list[int]]] = {}
    thumbs: dict[str, list[str]] = {}
    made: dict[str, int] = {}
    for _ in range(args.runs):
        for name, flags in (("with thumbnails", []), ("--no-thumbnails", ["--no-thumbnails"])):
            vault = fresh_vault(args.workdir / "vault-import")
            seconds, rss, out = run_child(
                name, mjvault("--vault", str(vault), "--json", "import", str(archive), *flags), env
            )
            thumbs.setdefault(name, []).append(_thumbs(out))
            results.setdefault(name, ([], []))[0].append(seconds)
            results[name][1].append(rss)
    for name, (seconds, rss) in results.items():
        print(line(f"mjvault import {name}", seconds, rss, f"  {', '.join(thumbs[name])}"))
    base = min(results["--no-thumbnails"][0])
    print(f"import overhead: {min(results['with thumbnails'][0]) / base - 1:+.1%} (best vs best)")

    if not args.skip_sync:
        bandwidth = parse_rate(args.bandwidth)
        print(f"(b) sync of {args.jobs} jobs, latency {args.latency * 1000:.0f} ms, "
              f"{bandwidth / 1e6:.1f} MB/s per connection")  # fmt: skip
        server = DevServer(
            "--jobs", str(args.jobs), "--seed", str(SEED), "--large",
            "--latency", str(args.latency), "--bandwidth", str(bandwidth),
        )  # fmt: skip
        try:
            sync_env = env | server.settings
            results = {}
            for _ in range(args.runs):
                for name, flags in (
                    ("with thumbnails", []),
                    ("--no-thumbnails", ["--no-thumbnails"]),
                ):
                    vault = fresh_vault(args.workdir / "vault-sync")
                    command = mjvault("--vault", str(vault), "--json", "sync", "--api", "v3",
                                      "--jobs", str(args.concurrency), *flags)  # fmt: skip
                    seconds, rss, out = run_child(name, command, sync_env)
                    thumbs.setdefault("sync " + name, []).append(_thumbs(out))
                    results.setdefault(name, ([], []))[0].append(seconds)
                    results[name][1].append(rss)
        finally:
            server.stop()
        for name, (seconds, rss) in results.items():
            extra = f"  {', '.join(thumbs['sync ' + name])}"
            print(line(f"mjvault sync {name}", seconds, rss, extra))
        base = min(results["--no-thumbnails"][0])
        print(f"sync overhead: {min(results['with thumbnails'][0]) / base - 1:+.1%} (best vs best)")

    print("(c) mjvault thumbs (sizes s, m) over a vault imported with --no-thumbnails")
    for encrypt in (False, True):
        name = "encrypted" if encrypt else "plain"
        seconds_list: list[float] = []
        rss_list: list[int] = []
        for _ in range(args.runs):
            vault = fresh_vault(args.workdir / f"vault-thumbs-{name}", encrypt=encrypt)
            run_child("import", mjvault("--vault", str(vault), "import", str(archive),
                                        "--no-thumbnails"), env)  # fmt: skip
            seconds, rss, out = run_child(
                "thumbs", mjvault("--vault", str(vault), "--json", "thumbs"), env
            )
            made[name] = json.loads(out)["made"]
            seconds_list.append(seconds)
            rss_list.append(rss)
        rate = made[name] / min(seconds_list)
        print(line(f"mjvault thumbs, {name}", seconds_list, rss_list,
                   f"  {made[name]} thumbnails, {rate:.1f}/s (best)"))  # fmt: skip


if __name__ == "__main__":
    main()
