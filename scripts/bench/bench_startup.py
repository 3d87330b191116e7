#!/usr/bin/env python3
"""Start-up benchmark: whole-command wall time of small commands (issue 12).

    python scripts/bench/bench_startup.py [--jobs 100000] [--runs 15] [--workdir DIR]
                                          [--against DIR] [--imports N]

Runs, as a user would, the installed ``mjvault`` script next to this interpreter:
``mjvault --version``, ``mjvault --help``, ``mjvault log -n 20`` and ``mjvault search fox snow``
on a vault of ``--jobs`` generated jobs (built once by bench_search.py's builder and cached
in WORKDIR/search-JOBS, the same vault bench_search.py queries), side by side with two
anchors: ``python -c pass`` (the interpreter's own start-up) and ``python -S -c 'import
sqlite3'`` (the smallest script a user could write instead). Commands alternate run by run
(the order rotates), so a noisy neighbour slows them all alike. Prints best and median wall
time in ms, the median's ratio to ``python -c pass``, best and median CPU time (user +
system, steadier than wall time on a loaded machine) and each command's peak RSS.
Targets (issue 12): ``--version`` <= 50 ms, ``log`` and ``search`` <= 100 ms at 100k jobs.

The mjvault packages the commands import are first compiled to bytecode, as pip does when
it installs a wheel: with PYTHONDONTWRITEBYTECODE set and no ``__pycache__`` in a checkout,
each command would compile every mjvault module it imports from source, which an installed
copy never does.

``--against DIR`` runs the same commands on another copy of the package too (e.g. the
previous release), in the same rotation, so that both see the same noisy machine.
``--imports N`` then runs each mjvault command under ``python -X importtime`` (least of 5
runs per module) and lists its N costliest top-level imports (cumulative), the N modules with
the most time of their own, and whether ``cryptography`` was loaded.
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


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds and peak RSS (KiB) of one run; a failing command stops the
    benchmark."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({process.returncode}): {err.decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def import_times(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> dict[str, tuple]:
    """``-X importtime`` of ``python ARGV``, ``runs`` times: for each module imported, the
    least self and cumulative µs seen and whether it was imported at the top level."""
    best: dict[str, tuple[int, int, bool]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=True,
        )
        for line in out.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if match:
                own, total, top = int(match.group(1)), int(match.group(2)), not match.group(3)
                was = best.get(match.group(4), (own, total, top))
                best[match.group(4)] = (min(own, was[0]), min(total, was[1]), top)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    parser.add_argument("--imports", type=int, default=0, metavar="N")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="also run the commands on the mjvault package in DIR (e.g. `git archive main "
        "mjvault | tar -x -C DIR`), alternating with this checkout's",
    )
    args = parser.parse_args()

    import mjvault  # this checkout's package, as the installed `mjvault` script finds it

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    versions = {"": (Path(mjvault.__file__).parent, env)}
    if args.against:
        # On PYTHONPATH, the other copy comes before the editable install's finder.
        other = args.against.resolve()
        versions[" (against)"] = (other / "mjvault", env | {"PYTHONPATH": str(other)})
    for package, _ in versions.values():
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
    # Every run starts in the work folder, so no checkout in the current directory is found.
    cwd = args.workdir
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([py, "-c", "pass"], env),
        "python -S -c 'import sqlite3'": ([py, "-S", "-c", "import sqlite3"], env),
    }
    for label, (_, version_env) in versions.items():
        commands |= {
            f"mjvault --version{label}": ([mj, "--version"], version_env),
            f"mjvault --help{label}": ([mj, "--help"], version_env),
            f"mjvault log -n 20{label}": ([mj, "--vault", vault, "log", "-n", "20"], version_env),
            f"mjvault search fox snow{label}": (
                [mj, "--vault", vault, "search", "fox", "snow"],
                version_env,
            ),
        }
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, int] = dict.fromkeys(names, 0)
    for name in names:  # warm the page cache
        run_once(*commands[name], cwd)
    for n in range(args.runs):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            elapsed, cpu_seconds, peak = run_once(*commands[name], cwd)
            times[name].append(elapsed * 1000)
            cpu[name].append(cpu_seconds * 1000)
            rss[name] = max(rss[name], peak)

    anchor = statistics.median(times[names[0]])
    print(
        f"{args.runs} runs each, alternating; vault {vault_dir} ({args.jobs} jobs); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for label, (package, _) in versions.items():
        print(f"  mjvault{label or ''} from {package}")
    # CPU time (user + system) is the steadier figure when other work shares the cores.
    print(
        f"{'command':42} {'wall ms: best':>13} {'median':>7} {'x pass':>7} "
        f"{'CPU ms: best':>13} {'median':>7} {'peak RSS':>9}"
    )
    for name in names:
        best, median = min(times[name]), statistics.median(times[name])
        print(
            f"{name:42} {best:13.1f} {median:7.1f} {median / anchor:7.2f} "
            f"{min(cpu[name]):13.1f} {statistics.median(cpu[name]):7.1f} "
            f"{rss[name] / 1024:6.1f} MB"
        )

    if args.imports:
        for name in names[2:]:
            argv, command_env = commands[name]
            found = import_times(["-m", "mjvault", *argv[1:]], command_env, cwd, runs=5)
            top = sorted(((v[1], k) for k, v in found.items() if v[2]), reverse=True)
            own = sorted(((v[0], k) for k, v in found.items()), reverse=True)
            print(f"\n{name}: -X importtime, least of 5 runs")
            print(
                f"  all imports {sum(t for t, _ in top) / 1000:.1f} ms; cryptography "
                f"{'imported' if 'cryptography' in found else 'not imported'}"
            )
            print(
                "  top level, cumulative: "
                + ", ".join(f"{module} {us / 1000:.1f}" for us, module in top[: args.imports])
            )
            print(
                "  own time: "
                + ", ".join(f"{module} {us / 1000:.1f}" for us, module in own[: args.imports])
            )


if __name__ == "__main__":
    main()
