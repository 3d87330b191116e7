#!/usr/bin/env python3
"""Import benchmark: mjvault import vs restic backup over the same generated archive.

    python scripts/bench/bench_import.py [--jobs 700] [--small] [--runs 5]
                                         [--part both|first|again] [--workdir /tmp/mjvault-bench]

Generates (once, cached in WORKDIR) a sample archive — real PNG/WebP images of realistic size,
~1 GB for the default; ``--small`` writes thumbnail-sized images instead, for many files at
little disk — then measures two things, each contender a child process (wall time, CPU time
and peak RSS from the kernel's accounting of that child alone):

* first: ``mjvault import`` (plain and encrypted) and ``restic backup`` into fresh
  repositories, best of ``--runs``;
* again: the same folder, unchanged, once more into the repositories the first part filled —
  mjvault's re-import (stat cache; and, for reference, without it, as before the cache) and
  restic's incremental backup (it finds its parent snapshot and reads only changed files).
  The contenders take turns, round after round, so load on a shared machine falls on all of
  them alike; best and median of ``--runs`` are printed.

restic always encrypts, so an encrypted mjvault vault is timed as well. Page cache is warm for
every contender (the archive is read once first), so the figures compare the tools, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Re-import as before the stat cache: the same library call with the cache turned off.
NO_CACHE = """
import sys
from mjvault.vault import Vault
from mjvault.sources.importer import import_archive
with Vault.open(sys.argv[1], passphrase=None) as vault:
    import_archive(vault, sys.argv[2], stat_cache=False)
"""


@dataclass
class Runs:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kib: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# The kernel's peak RSS of a child includes what its parent had mapped when it forked (Linux
# keeps the old memory's high-water mark across exec), so each contender is started by a small
# fresh process that reports the contender's own wall time, CPU time and peak RSS.
TIMER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
print(f"{elapsed} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_timed(cmd: list[str], env: dict[str, str], runs: Runs) -> None:
    """Time one child process by its own rusage: wall and CPU seconds, peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-c", TIMER, *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = proc.stderr.decode(errors="replace")
    if proc.returncode not in (0, 4):
        sys.exit(f"{cmd[0]} failed: {err[-500:]}")
    elapsed, cpu, rss = err.strip().splitlines()[-1].split()
    runs.seconds.append(float(elapsed))
    runs.cpu.append(float(cpu))
    runs.rss_kib = max(runs.rss_kib, int(rss))


def unlock_seconds(runs: int) -> float:
    """Best time of the Argon2id derivation an encrypted vault pays on every command."""
    from mjvault.store.crypto import KdfParams

    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        KdfParams().derive("bench", b"0" * 16)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=700, help="image jobs (about 3.2 images each)")
    parser.add_argument("--small", action="store_true", help="thumbnail-sized images")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    parser.add_argument("--runs", type=int, default=5, help="runs of each contender")
    parser.add_argument("--part", choices=("both", "first", "again"), default="both")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.archive import write_sample_archive

    label = f"{args.jobs}{'-small' if args.small else ''}"
    archive = args.workdir / f"archive-{label}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=not args.small)
    files = [p for p in archive.rglob("*") if p.is_file()]
    images = sum(1 for p in files if p.suffix in (".png", ".webp", ".jpg"))
    total = sum(p.stat().st_size for p in files)
    for path in files:  # warm the page cache for every contender alike
        path.read_bytes()
    load = os.getloadavg()[0]
    print(
        f"corpus: {len(files)} files, {images} images, {total / 1e6:.0f} MB; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start"
    )

    env = dict(os.environ, MJVAULT_PASSPHRASE="bench", RESTIC_PASSWORD="bench")
    env.pop("MJVAULT_VAULT", None)
    mj = [sys.executable, "-m", "mjvault"]
    restic = shutil.which("restic")
    if not restic:
        print("restic is not installed: its column is skipped (apt-get install restic)")
    plain = args.workdir / f"vault-plain-{label}"
    sealed = args.workdir / f"vault-encrypted-{label}"
    repo = args.workdir / f"restic-repo-{label}"
    contenders = [
        ("mjvault import", [[*mj, "init", str(plain)]], [*mj, "--vault", str(plain)], plain),
        (
            "mjvault import (encrypted)",
            [[*mj, "init", "--encrypt", str(sealed)]],
            [*mj, "--vault", str(sealed)],
            sealed,
        ),
    ]

    def fresh(setup: list[list[str]], target: Path) -> None:
        shutil.rmtree(target, ignore_errors=True)
        for step in setup:
            subprocess.run(step, env=env, check=True, capture_output=True)

    if args.part in ("both", "first"):
        first: list[Runs] = []
        for name, setup, base, target in contenders:
            runs = Runs(name)
            for _ in range(args.runs):
                fresh(setup, target)
                run_timed([*base, "import", str(archive)], env, runs)
            first.append(runs)
        if restic:
            runs = Runs("restic backup")
            for _ in range(args.runs):
                fresh([[restic, "init", "-r", str(repo)]], repo)
                run_timed([restic, "-r", str(repo), "backup", "-q", str(archive)], env, runs)
            first.append(runs)
        print("\nfirst import into an empty repository")
        table(first, total, images)
        ratio(first, "mjvault import", "restic backup", "<= 0.40x")

    if args.part in ("both", "again"):
        # Repositories that already hold the archive: the state a user re-imports into.
        for _, setup, base, target in contenders:
            if not (target / "config").exists():
                fresh(setup, target)
                subprocess.run([*base, "import", str(archive)], env=env, capture_output=True)
        if restic and not (repo / "config").exists():
            fresh([[restic, "init", "-r", str(repo)]], repo)
            subprocess.run([restic, "-r", str(repo), "backup", "-q", str(archive)], env=env)
        rounds: list[tuple[Runs, list[str]]] = [
            (Runs("mjvault re-import"), [*mj, "--vault", str(plain), "import", str(archive)]),
            (
                Runs("mjvault re-import (encrypted)"),
                [*mj, "--vault", str(sealed), "import", str(archive)],
            ),
            (
                Runs("mjvault re-import, no stat cache"),
                [sys.executable, "-c", NO_CACHE, str(plain), str(archive)],
            ),
        ]
        if restic:
            backup = [restic, "-r", str(repo), "backup", "-q", str(archive)]
            rounds.append((Runs("restic incremental backup"), backup))
        for _, cmd in rounds:  # one untimed round: caches and repositories settle alike
            run_timed(cmd, env, Runs("warm-up"))
        for _ in range(args.runs):
            for runs, cmd in rounds:
                run_timed(cmd, env, runs)
        print(f"\nunchanged archive, again ({args.runs} rounds, contenders alternating)")
        again = [runs for runs, _ in rounds]
        table(again, total, images)
        ratio(again, "mjvault re-import", "restic incremental backup", "<= 0.50x")
        ratio(again, "mjvault re-import (encrypted)", "restic incremental backup", "<= 0.50x")
        print(
            f"of which an encrypted vault's Argon2id unlock: best {unlock_seconds(3):.2f} s "
            "(paid by every command on an encrypted vault)"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def table(results: list[Runs], total: int, images: int) -> None:
    print(
        f"{'tool':<34}{'best s':>8}{'median s':>10}{'CPU s':>8}{'images/s':>10}"
        f"{'MB/s':>8}{'peak RSS':>10}"
    )
    for runs in results:
        print(
            f"{runs.name:<34}{runs.best:>8.2f}{runs.median:>10.2f}{min(runs.cpu):>8.2f}"
            f"{images / runs.best:>10.0f}{total / 1e6 / runs.best:>8.0f}"
            f"{runs.rss_kib / 1024:>7.0f} MB"
        )
    print(
        json.dumps(
            {
                r.name: {
                    "seconds": [round(s, 3) for s in r.seconds],
                    "cpu_seconds": [round(s, 3) for s in r.cpu],
                    "peak_rss_mb": round(r.rss_kib / 1024),
                }
                for r in results
            }
        )
    )


def ratio(results: list[Runs], ours: str, theirs: str, target: str) -> None:
    by_name = {r.name: r for r in results}
    if ours in by_name and theirs in by_name:
        a, b = by_name[ours], by_name[theirs]
        print(
            f"{ours} / {theirs}: best {a.best / b.best:.2f}x, "
            f"median {a.median / b.median:.2f}x, CPU {min(a.cpu) / min(b.cpu):.2f}x "
            f"(target {target})"
        )


if __name__ == "__main__":
    main()
