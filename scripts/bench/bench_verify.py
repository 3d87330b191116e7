#!/usr/bin/env python3
"""Verify benchmark: ``mjvault verify --read-data`` vs ``restic check --read-data``.

    python scripts/bench/bench_verify.py [--jobs 700] [--workdir /tmp/mjvault-bench-verify]

Generates (once, cached in WORKDIR) the large sample archive, imports it into a plain and an
encrypted vault and backs it up with restic (none of that is timed), then times, best of N:

* ``mjvault verify --read-data`` on the plain vault (BLAKE3 of every object),
* the same on the encrypted vault (AES-256-GCM open + keyed BLAKE3: restic's kind of work),
* ``restic check --read-data`` (decrypts and hashes every pack).

Every repository's files are read once before timing, so the page cache is warm for all and
the figures compare the tools, not the disk. Prints MB/s (of archive content), seconds and
peak RSS side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process (run through a fresh shell)."""
    # RUSAGE_CHILDREN keeps the maximum over all children so far; a fresh Python parent per
    # measurement gives each contender its own figure.
    probe = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE);"
        "e = time.perf_counter() - t;"
        "print(json.dumps([p.returncode, e, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " p.stderr.decode(errors='replace')[-400:]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], env=env, capture_output=True, check=True
    )
    code, elapsed, peak, err = json.loads(out.stdout)
    if code != 0:
        sys.exit(f"{cmd[0]} failed ({code}): {err}")
    return float(elapsed), int(peak)


def warm(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += len(p.read_bytes())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=700)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-verify"))
    parser.add_argument("--runs", type=int, default=3, help="take the best of N runs")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.archive import write_sample_archive

    args.workdir.mkdir(parents=True, exist_ok=True)
    archive = args.workdir / f"archive-{args.jobs}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=True)
    total = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())

    env = dict(os.environ, MJVAULT_PASSPHRASE="bench", RESTIC_PASSWORD="bench")
    env.pop("MJVAULT_VAULT", None)
    mj = [sys.executable, "-m", "mjvault"]
    plain, sealed = args.workdir / "vault-plain", args.workdir / "vault-encrypted"
    repo = args.workdir / "restic-repo"
    restic = shutil.which("restic")

    def prepare(target: Path, steps: list[list[str]]) -> None:
        if (target / ".bench-ready").exists():
            return
        shutil.rmtree(target, ignore_errors=True)
        for step in steps:
            subprocess.run(step, env=env, check=True, capture_output=True)
        (target / ".bench-ready").touch()

    prepare(
        plain, [[*mj, "init", str(plain)], [*mj, "--vault", str(plain), "import", str(archive)]]
    )
    prepare(
        sealed,
        [
            [*mj, "init", "--encrypt", str(sealed)],
            [*mj, "--vault", str(sealed), "import", str(archive)],
        ],
    )
    if restic:
        prepare(
            repo,
            [
                [restic, "init", "-r", str(repo)],
                [restic, "-r", str(repo), "backup", "-q", str(archive)],
            ],
        )
    else:
        print("restic is not installed: its column is skipped (apt-get install restic)")

    contenders: list[tuple[str, list[str], Path]] = [
        (
            "mjvault verify --read-data",
            [*mj, "--vault", str(plain), "verify", "--read-data"],
            plain,
        ),
        (
            "mjvault verify --read-data (encr.)",
            [*mj, "--vault", str(sealed), "verify", "--read-data"],
            sealed,
        ),
    ]
    if restic:
        contenders.append(
            ("restic check --read-data", [restic, "-r", str(repo), "check", "--read-data"], repo)
        )
    print(f"corpus: {total / 1e6:.0f} MB of archive content; best of {args.runs} runs")
    results: list[tuple[str, float, int]] = []
    for name, command, target in contenders:
        warm(target)
        best, rss = float("inf"), 0
        for _ in range(args.runs):
            elapsed, peak = run_timed(command, env)
            best, rss = min(best, elapsed), max(rss, peak)
        results.append((name, best, rss))
        print(f"  {name}: {best:.2f} s", flush=True)

    print(f"\n{'tool':<36}{'seconds':>9}{'MB/s':>9}{'peak RSS':>11}")
    for name, seconds, rss in results:
        print(f"{name:<36}{seconds:>9.2f}{total / 1e6 / seconds:>9.0f}{rss / 1024:>9.0f} MB")
    by_name = {name: seconds for name, seconds, _ in results}
    if "restic check --read-data" in by_name:
        for name in ("mjvault verify --read-data", "mjvault verify --read-data (encr.)"):
            ratio = by_name[name] / by_name["restic check --read-data"]
            print(f"{name} / restic check --read-data = {ratio:.2f}x (target <= 1.00x)")
    print(
        json.dumps(
            {
                name: {
                    "seconds": round(s, 3),
                    "mb_per_s": round(total / 1e6 / s),
                    "peak_rss_mb": round(r / 1024),
                }
                for name, s, r in results
            }
        )
    )


if __name__ == "__main__":
    main()
