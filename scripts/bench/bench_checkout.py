#!/usr/bin/env python3
"""Checkout benchmark: ``mjvault checkout`` against the floors it cannot beat.

    python scripts/bench/bench_checkout.py [--jobs 25000] [--runs 5] [--workdir DIR]

Builds (once, cached in WORKDIR) a plain vault of JOBS grid jobs with 4 small images each
(100k images for the default). WORKDIR defaults to a tmpfs (mounted at /mnt/mjvault-bench
when run as root, else /dev/shm), where a file costs only its system calls, so the figures
compare the code. Then, alternating, ``--runs`` times:

* the floor for links: a bare loop of ``os.makedirs`` (once per directory) and
  ``os.symlink`` over the very same (target, path) pairs, which reads nothing from the vault;
* a full symlink checkout into an empty directory (default template), in a child process
  (its wall and CPU time around ``checkout()`` and its peak RSS, VmHWM; the CPU time and
  peak RSS of its link process, which makes the files of a big checkout, counted apart and
  in the total);
* the floor for copies: ``cp -rL`` of the symlink view;
* a full copy checkout, likewise in a child process.

It prints best and median of each, the paired ratios (each checkout against the floor timed
just before it: on a shared machine whose load swings, these say more than two minima taken
minutes apart) and peak RSS; then a refresh after 1% new jobs (the tree diff, not a walk)
and one with nothing new. Targets: symlinks <= 2x the bare loop, copies <= 1.5x cp -rL,
peak RSS < 100 MB. Figures: docs/design.md.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES_PER_JOB = 4


def record(n: int) -> bytes:
    words = ["fox", "harbour", "neon", "forest", "castle", "portrait", "ocean", "robot"]
    prompt = f"{words[n % 8]} {words[(n // 8) % 8]} study number {n}, cinematic light"
    return json.dumps(
        {
            "id": f"{n:08x}-0000-4000-8000-{n:012x}",
            "enqueue_time": f"20{22 + n % 4}-{1 + n % 12:02d}-{1 + n % 28:02d} 10:00:00",
            "type": "grid",
            "full_command": f"{prompt} --ar 16:9 --v 6.1 --s {n % 1000}",
            "batch_size": IMAGES_PER_JOB,
        }
    ).encode()


def image(n: int, i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + (n * IMAGES_PER_JOB + i).to_bytes(8, "big") * 8


def add_jobs(vault: object, start: int, count: int) -> None:
    with vault.writer("bench") as writer:  # type: ignore[attr-defined]
        for n in range(start, start + count):
            oids = [writer.put_media(image(n, i)) for i in range(IMAGES_PER_JOB)]
            writer.add_job(record(n), oids)


CHILD = """
import json, os, resource, sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import checkout
from mjvault.views.registry import ViewDefinition
from mjvault.views.template import DEFAULT_TEMPLATE

vault = Vault.open(Path(sys.argv[1]))
vault.current_index()  # current before timing: the index is not the checkout
definition = ViewDefinition(sys.argv[3], Path(sys.argv[2]), DEFAULT_TEMPLATE, LinkKind(sys.argv[4]))
def hwm_mb(pid="self"):
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
    with open(f"/proc/{pid}/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM:")).split()[1]) / 1024

helper_rss = [0.0]
try:
    from mjvault.views import linkproc
except ImportError:  # a version before the link process: the same figures, all in process
    linkproc = None
if linkproc is not None:
    real_close = linkproc.ProcessLinker.close
    def close(self):  # the link process's own peak, read while it still runs
        helper_rss[0] = max(helper_rss[0], hwm_mb(self.process.pid))
        real_close(self)
    linkproc.ProcessLinker.close = close

def children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the link process, once waited for
    return usage.ru_utime + usage.ru_stime

before = children()
wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
report = checkout(vault, definition)
wall, cpu, main = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - main
helper_cpu = children() - before
print(json.dumps({
    "wall": wall, "cpu": cpu + helper_cpu, "main_cpu": main, "helper_cpu": helper_cpu,
    "rss_mb": hwm_mb(), "helper_rss_mb": helper_rss[0], "added": report.added,
}))
"""


def tmpfs_workdir() -> Path:
    """A tmpfs, where a file costs only its system calls: the code is what is measured."""
    mount = Path("/mnt/mjvault-bench")
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        mount.mkdir(exist_ok=True)
        if not os.path.ismount(mount):
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8g", "tmpfs", str(mount)], check=True
            )
        return mount
    return Path("/dev/shm/mjvault-bench")


def fresh(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_checkout(vault_dir: Path, view_dir: Path, name: str, link: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(vault_dir), str(view_dir), name, link],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def stats(values: list[float]) -> str:
    return f"best {min(values):6.2f} s  median {statistics.median(values):6.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=25_000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a tmpfs")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.views.reconcile import refresh_views
    from mjvault.views.registry import ViewRegistry

    workdir = args.workdir or tmpfs_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    vault_dir = workdir / f"vault-{args.jobs}"
    if not vault_dir.exists():
        print(f"building a vault of {args.jobs} jobs in {vault_dir} …", flush=True)
        started = time.perf_counter()
        with Vault.init(vault_dir) as vault:
            add_jobs(vault, 0, args.jobs)
        print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
    vault = Vault.open(vault_dir)
    vault.current_index()  # brought up to date (and rebuilt if its format is old) once
    registry = ViewRegistry(vault)
    for name in registry.names():
        registry.delete(name)
    head = vault.head()
    assert head is not None
    images = head.stats.get("images", 0)
    view_dir, floor_dir, copy_dir = workdir / "view", workdir / "floor", workdir / "copy"

    # Warm-up: reads every record once and gives the paths the floor loop will use.
    fresh(view_dir)
    run_checkout(vault_dir, view_dir, "links", "symlink")
    pairs = [
        (os.readlink(view_dir / record.path), record.path)
        for _, _, record in registry.load("links").iter_files()
    ]
    print(f"{images} images in {head.stats.get('jobs')} jobs; {len(pairs)} paths; {workdir}")

    def bare_loop() -> None:
        made: set[str] = set()
        for target, relpath in pairs:
            path = os.path.join(floor_dir, relpath)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            os.symlink(target, path)

    def cp_rl() -> None:
        subprocess.run(["cp", "-rL", str(view_dir), str(floor_dir)], check=True)

    results: dict[str, list[dict[str, float]]] = {k: [] for k in ("floor", "links", "cp", "copy")}
    for run in range(args.runs):
        # Alternating, each contender right after its floor: on a shared machine whose load
        # swings, paired ratios say more than minima taken minutes apart.
        fresh(floor_dir)
        wall, cpu = time.perf_counter(), time.process_time()
        bare_loop()
        results["floor"].append(
            {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
        )
        registry.delete("links")
        fresh(view_dir)
        results["links"].append(run_checkout(vault_dir, view_dir, "links", "symlink"))
        fresh(floor_dir)
        wall = time.perf_counter()
        cp_rl()
        results["cp"].append({"wall": time.perf_counter() - wall})
        fresh(floor_dir)
        fresh(copy_dir)
        results["copy"].append(run_checkout(vault_dir, copy_dir, "copies", "copy"))
        registry.delete("copies")
        line = "  ".join(f"{k} {v[-1]['wall']:.2f}s" for k, v in results.items())
        print(f"run {run + 1}/{args.runs}: {line}", flush=True)
    fresh(floor_dir)
    fresh(copy_dir)

    def walls(key: str) -> list[float]:
        return [r["wall"] for r in results[key]]

    def costs(key: str) -> None:
        runs = results[key]
        print(f"  CPU, all processes          {stats([r['cpu'] for r in runs])}")
        print(f"    main thread               {stats([r['main_cpu'] for r in runs])}")
        print(f"    link process              {stats([r['helper_cpu'] for r in runs])}")
        rss, helper = max(r["rss_mb"] for r in runs), max(r["helper_rss_mb"] for r in runs)
        print(f"  peak RSS                    {rss:.0f} MB (link process {helper:.0f} MB)")

    def paired(num: str, den: str) -> list[float]:
        return sorted(n / d for n, d in zip(walls(num), walls(den), strict=True))

    print()
    print(f"images                        {images}")
    print(f"bare os.symlink loop          {stats(walls('floor'))}")
    print(f"checkout, symlinks            {stats(walls('links'))}")
    costs("links")
    ratios = paired("links", "floor")
    print(
        f"  / bare loop (paired)        best {ratios[0]:.2f}x  median {statistics.median(ratios):.2f}x  (target <= 2x)"
    )
    print(f"cp -rL                        {stats(walls('cp'))}")
    print(f"checkout, copies              {stats(walls('copy'))}")
    costs("copy")
    ratios = paired("copy", "cp")
    print(
        f"  / cp -rL (paired)           best {ratios[0]:.2f}x  median {statistics.median(ratios):.2f}x  (target <= 1.5x)"
    )

    new_jobs = max(1, args.jobs // 100)
    add_jobs(vault, args.jobs, new_jobs)
    result: list[object] = []
    started = time.perf_counter()
    result.append(refresh_views(vault))
    refresh = time.perf_counter() - started
    report = result[0].views[0]  # type: ignore[attr-defined]
    started = time.perf_counter()
    refresh_views(vault)
    unchanged = time.perf_counter() - started
    print(
        f"refresh after 1% new jobs     {refresh:.2f} s  "
        f"(+{report.added} files, {report.jobs_examined} jobs examined, mode {report.mode})"
    )
    print(f"refresh, nothing new          {unchanged:.3f} s")
    # The vault is kept for the next run; the 1% jobs are removed again so it stays comparable.
    with vault.writer("bench") as writer:
        for n in range(args.jobs, args.jobs + new_jobs):
            writer.remove_job(json.loads(record(n))["id"])
    fresh(view_dir)
    for name in registry.names():
        registry.delete(name)
    vault.close()


if __name__ == "__main__":
    main()
