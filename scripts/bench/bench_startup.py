#!/usr/bin/env python3
"""Start-up benchmark: whole-command wall time of small commands (issue 12).

    python scripts/bench/bench_startup.py [--jobs 100000] [--runs 15] [--workdir DIR] [--imports 12]

Runs, as a user would, the installed ``mjvault`` script next to this interpreter:
``mjvault --version``, ``mjvault --help``, ``mjvault log -n 20`` and ``mjvault search fox snow``
on a vault of ``--jobs`` generated jobs (built once by bench_search.py's builder and cached
in WORKDIR/search-JOBS, the same vault bench_search.py queries), side by side with two
anchors: ``python -c pass`` (the interpreter's own start-up) and ``python -S -c 'import
sqlite3'`` (the smallest script a user could write instead). Commands alternate run by run
(the order rotates), so a noisy neighbour slows them all alike. Prints best and median wall
time in ms, the median's ratio to ``python -c pass``, and each command's peak RSS.
Targets (issue 12): ``--version`` <= 50 ms, ``log`` and ``search`` <= 100 ms at 100k jobs.

The mjvault package the commands import (the checkout, or PYTHONPATH's) is first compiled to
bytecode, as pip does when it installs a wheel: with PYTHONDONTWRITEBYTECODE set and no
``__pycache__``, each command would compile every module it imports from source, which is
not what a user's installed copy does. ``--source`` measures that case instead.

``--imports N`` then runs each mjvault command once under ``python -X importtime`` and lists
its N costliest imports (cumulative, top-level only) and whether ``cryptography`` was loaded.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))


def run_once(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run; a failing command stops the benchmark."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({process.returncode}): {err.decode(errors='replace')}")
    return elapsed, usage.ru_maxrss


def costliest_imports(argv: list[str], count: int) -> tuple[list[tuple[int, str]], bool]:
    """The ``count`` top-level imports with the largest cumulative time (µs), and whether
    ``cryptography`` was imported at all."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True
    )
    rows, crypto = [], False
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if not match:
            continue
        crypto = crypto or match.group(3).split(".")[0] == "cryptography"
        if not match.group(2):
            rows.append((int(match.group(1)), match.group(3)))
    return sorted(rows, reverse=True)[:count], crypto


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    parser.add_argument("--imports", type=int, default=0, metavar="N")
    parser.add_argument(
        "--source", action="store_true", help="do not compile the package to bytecode first"
    )
    args = parser.parse_args()

    import mjvault  # the copy the commands will import (PYTHONPATH may name another)

    package = Path(mjvault.__file__).parent
    if not args.source:
        compileall.compile_dir(package, quiet=1)

    vault_dir = args.workdir / f"search-{args.jobs}"
    if not (vault_dir / "config").exists():
        from bench_search import build

        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        print(f"  built in {build(vault_dir, args.jobs):.1f} s", flush=True)

    script = Path(sys.executable).parent / "mjvault"
    if not script.exists():
        sys.exit(f"no mjvault script next to {sys.executable}: pip install -e . first")
    py, mj, vault = sys.executable, str(script), str(vault_dir)
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "python -S -c 'import sqlite3'": [py, "-S", "-c", "import sqlite3"],
        "mjvault --version": [mj, "--version"],
        "mjvault --help": [mj, "--help"],
        "mjvault log -n 20": [mj, "--vault", vault, "log", "-n", "20"],
        "mjvault search fox snow": [mj, "--vault", vault, "search", "fox", "snow"],
    }
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, int] = dict.fromkeys(names, 0)
    for name in names:  # warm the page cache and the bytecode caches
        run_once(commands[name])
    for n in range(args.runs):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            elapsed, peak = run_once(commands[name])
            times[name].append(elapsed * 1000)
            rss[name] = max(rss[name], peak)

    anchor = statistics.median(times[names[0]])
    print(
        f"{args.runs} runs each, alternating; vault {vault_dir} ({args.jobs} jobs); "
        f"load {os.getloadavg()[0]:.1f}; mjvault from {package}"
        f"{' (source, no bytecode)' if args.source else ''}"
    )
    print(f"{'command':32} {'best ms':>8} {'median ms':>10} {'x pass':>7} {'peak RSS':>9}")
    for name in names:
        best, median = min(times[name]), statistics.median(times[name])
        print(
            f"{name:32} {best:8.1f} {median:10.1f} {median / anchor:7.2f} "
            f"{rss[name] / 1024:6.1f} MB"
        )

    if args.imports:
        for name in names[2:]:
            argv = ["-m", "mjvault", *commands[name][1:]]
            rows, crypto = costliest_imports(argv, args.imports)
            print(f"\n{name}: costliest top-level imports (cumulative, -X importtime)")
            print("  " + ", ".join(f"{module} {us / 1000:.1f} ms" for us, module in rows))
            print(f"  cryptography imported: {'yes' if crypto else 'no'}")


if __name__ == "__main__":
    main()
