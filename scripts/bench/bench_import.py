#!/usr/bin/env python3
"""Import benchmark: mjvault import vs restic backup over the same generated archive.

    python scripts/bench/bench_import.py [--jobs 700] [--workdir /tmp/mjvault-bench]

Generates (once, cached in WORKDIR) a large sample archive — real PNG/WebP images of realistic
size, ~1 GB for the default — then times, each into a fresh repository:

* ``mjvault import`` (a child process; peak RSS from the kernel's accounting),
* ``restic backup`` of the same folder when restic is installed (no encryption cost is
  avoided: restic always encrypts, so an encrypted mjvault import is timed as well).

Page cache is warm for every contender (the archive is read once first), so the figures
compare the tools, not the disk. Prints MB/s, images/s and peak RSS side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 4):
        sys.exit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=700, help="image jobs (about 3.2 images each)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    parser.add_argument("--runs", type=int, default=3, help="take the best of N runs")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.archive import write_sample_archive

    archive = args.workdir / f"archive-{args.jobs}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=True)
    files = [p for p in archive.rglob("*") if p.is_file()]
    images = sum(1 for p in files if p.suffix in (".png", ".webp", ".jpg"))
    total = sum(p.stat().st_size for p in files)
    for path in files:  # warm the page cache for every contender alike
        path.read_bytes()
    print(f"corpus: {len(files)} files, {images} images, {total / 1e6:.0f} MB")

    env = dict(os.environ, MJVAULT_PASSPHRASE="bench", RESTIC_PASSWORD="bench")
    mj = [sys.executable, "-m", "mjvault"]
    results: list[tuple[str, float, int]] = []

    def contender(name: str, setup: list[list[str]], command: list[str], repo: Path) -> None:
        best, rss = float("inf"), 0
        for _ in range(args.runs):
            shutil.rmtree(repo, ignore_errors=True)
            for step in setup:
                subprocess.run(step, env=env, check=True, capture_output=True)
            elapsed, peak = run_timed(command, env)
            best, rss = min(best, elapsed), max(rss, peak)
        results.append((name, best, rss))

    plain, sealed = args.workdir / "vault-plain", args.workdir / "vault-encrypted"
    contender(
        "mjvault import",
        [[*mj, "init", str(plain)]],
        [*mj, "--vault", str(plain), "import", str(archive)],
        plain,
    )
    contender(
        "mjvault import (encrypted)",
        [[*mj, "init", "--encrypt", str(sealed)]],
        [*mj, "--vault", str(sealed), "import", str(archive)],
        sealed,
    )
    restic = shutil.which("restic")
    if restic:
        repo = args.workdir / "restic-repo"
        contender(
            "restic backup",
            [[restic, "init", "-r", str(repo)]],
            [restic, "-r", str(repo), "backup", "-q", str(archive)],
            repo,
        )
    else:
        print("restic is not installed: its column is skipped (apt-get install restic)")

    print(f"\n{'tool':<28}{'seconds':>9}{'MB/s':>9}{'images/s':>10}{'peak RSS':>11}")
    for name, seconds, rss in results:
        print(
            f"{name:<28}{seconds:>9.2f}{total / 1e6 / seconds:>9.0f}{images / seconds:>10.0f}{rss / 1024:>9.0f} MB"
        )
    by_name = {name: seconds for name, seconds, _ in results}
    if "restic backup" in by_name:
        ratio = by_name["mjvault import"] / by_name["restic backup"]
        print(f"\nmjvault import / restic backup = {ratio:.2f}x (target <= 0.40x)")
    print(
        json.dumps(
            {
                name: {"seconds": round(s, 3), "peak_rss_mb": round(r / 1024)}
                for name, s, r in results
            }
        )
    )


if __name__ == "__main__":
    main()
