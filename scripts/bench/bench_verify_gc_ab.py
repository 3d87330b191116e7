#!/usr/bin/env python3
"""verify and gc, one mjvault against another: ``verify``, ``verify --read-data`` and
``gc --dry-run`` timed on the same vault with two source trees, interleaved, best of N.

    python scripts/bench/bench_verify_gc_ab.py BEFORE AFTER [--jobs 20000] [--runs 5]

BEFORE and AFTER are directories holding an ``mjvault`` package (``git archive REV mjvault |
tar -x -C DIR``, or a worktree). The vault is built once (cached in ``--workdir``) by
``bench_gc.py --images``: JOBS jobs, one real 1 KB image each. Prints wall and CPU seconds;
on a busy machine the CPU figure is the one to compare.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, time
from mjvault import Vault
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
with Vault.open(sys.argv[1]) as vault:
    wall, cpu = time.perf_counter(), time.process_time()
    if sys.argv[2] == "verify":
        assert verify(vault).ok
    elif sys.argv[2] == "verify --read-data":
        assert verify(vault, read_data=True).ok
    else:
        gc(vault, dry_run=True, grace_seconds=0)
    print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="take the best of N runs")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-ab"))
    args = parser.parse_args()
    vault = args.workdir / f"vault-{args.jobs}-images"
    if not (vault / ".bench-ready").exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "bench" / "bench_gc.py"), "--build-only",
             "--images", "--jobs", str(args.jobs), "--workdir", str(args.workdir)],
            check=True,
        )  # fmt: skip
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for what in ("verify", "verify --read-data", "gc --dry-run"):
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.runs):
            for name, tree in trees.items():  # interleaved: load drifts hit both alike
                out = subprocess.run(
                    [sys.executable, "-c", PROBE, str(vault), what],
                    cwd=args.workdir,
                    env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                wall, cpu = map(float, out.stdout.split())
                old = best.get(name, (wall, cpu))
                best[name] = (min(old[0], wall), min(old[1], cpu))
        print(
            f"{what:20}"
            + "  ".join(f"{n}: {w:.3f} s wall, {c:.3f} s CPU" for n, (w, c) in best.items())
        )


if __name__ == "__main__":
    main()
