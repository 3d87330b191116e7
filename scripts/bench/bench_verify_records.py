#!/usr/bin/env python3
"""``verify --read-data`` of existing vaults, two versions of mjvault alternated.

    python scripts/bench/bench_verify_records.py --before 1f26995 --rounds 3 VAULT [VAULT ...]

Each round runs ``python -m mjvault --vault VAULT verify --read-data`` once with the code of
commit ``--before`` (``git archive`` of its ``mjvault`` package into a temporary folder, put
first on ``PYTHONPATH``) and once with the working tree's, alternating, so both see the same
load. A run is a child process of this small one: wall seconds, user and system CPU seconds,
minor page faults and peak RSS are its own (``wait4``). Prints each run, then the best and
median of each version per vault, with records a second of wall (the records are the jobs
the report says it checked).

The vaults are only read: a vault verify would have to change (a pack map to rebuild) should
be copied first. Built by ``bench_scale.py --jobs N --images-pool 1000 --only build``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(source: Path, vault: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(source))
    out_fd, out_path = tempfile.mkstemp(prefix="bench-verify-")
    started = time.perf_counter()
    pid = os.posix_spawn(
        sys.executable,
        # -P: the current directory (a checkout) must not come before PYTHONPATH.
        [sys.executable, "-P", "-m", "mjvault", "--vault", str(vault), "verify", "--read-data"],
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, out_fd, 1), (os.POSIX_SPAWN_DUP2, out_fd, 2)],
    )
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    os.close(out_fd)
    output = Path(out_path).read_text()
    os.unlink(out_path)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"verify failed on {vault}:\n{output}")
    jobs = re.search(r"(\d+) job entries", output)
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "minflt": usage.ru_minflt,
        "rss_mb": usage.ru_maxrss / 1024,
        "records": int(jobs.group(1)) if jobs else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("vaults", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-before-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "mjvault"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        sources = {f"before ({args.before})": Path(folder), "after": ROOT}
        for label, source in sources.items():
            found = subprocess.run(
                [sys.executable, "-P", "-c", "import mjvault; print(mjvault.__file__)"],
                env=dict(os.environ, PYTHONPATH=str(source)), check=True, capture_output=True,
                text=True,
            ).stdout.strip()  # fmt: skip
            print(f"{label}: {found}")
            assert found.startswith(str(source)), f"{label} imports {found}"
        results: dict[tuple[str, Path], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for vault in args.vaults:
                # Alternate which version goes first from round to round.
                order = list(sources.items())
                if round_ % 2:
                    order.reverse()
                for label, source in order:
                    got = run(source, vault)
                    results.setdefault((label, vault), []).append(got)
                    print(
                        f"{vault.name:>12} {label:<22} wall {got['wall']:6.1f} s  user "
                        f"{got['user']:5.1f} s  sys {got['sys']:5.1f} s  minflt "
                        f"{got['minflt']:>9,.0f}  peak {got['rss_mb']:5.0f} MB  "
                        f"{got['records'] / got['wall']:>8,.0f} records/s  (load "
                        f"{os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
    print()
    for (label, vault), runs in results.items():
        walls = [r["wall"] for r in runs]
        cpus = [r["user"] + r["sys"] for r in runs]
        records = runs[0]["records"]
        print(
            f"{vault}  {label}: wall best {min(walls):.1f} s / median "
            f"{statistics.median(walls):.1f} s ({records / min(walls):,.0f} / "
            f"{records / statistics.median(walls):,.0f} records/s); CPU best {min(cpus):.1f} s"
            f" / median {statistics.median(cpus):.1f} s; peak RSS "
            f"{min(r['rss_mb'] for r in runs):.0f}–{max(r['rss_mb'] for r in runs):.0f} MB"
        )


if __name__ == "__main__":
    main()
