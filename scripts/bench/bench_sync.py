#!/usr/bin/env python3
"""Sync benchmarks against the bundled Midjourney-compatible server, run as its own process.

    python scripts/bench/bench_sync.py [--jobs 650] [--latency 0.05] [--bandwidth 8M]
                                       [--concurrency 16] [--noop-jobs 10000] [--skip-baseline]
                                       [--checkpoint-jobs 100000] [--checkpoint-seconds 10 1]

(a) ``mjvault sync`` of a generated account with realistic image sizes (650 jobs ≈ 2,000
    files ≈ 1.3 GB) from ``mjvault dev-server --large --latency 0.05 --bandwidth 8M`` into a
    fresh vault, beside a sequential one-at-a-time download of the same files with
    ``httpx.get`` (a new connection per file, what the original archiver scripts did with
    ``requests.get``). Target: sync >= 8x faster.
(b) A no-op sync of an up-to-date 10k-job archive (records + small images). Target: < 1 s of
    local work. The archive is built by a real sync first (its time is printed too).
(c) What one checkpoint costs in an archive of 100k jobs (and of 1k, for comparison: what
    grows with the archive): a writer adds N new jobs with three 16 KB images each, then its
    checkpoint is timed part by part (tree nodes, the batch's syncfs + renames, refs/checkpoint,
    the index transaction). The archive (records and tree; image ids without bytes) is built
    once and cached in the workdir.
(d) Sync throughput of (a)'s account with the time checkpoint off (only the 2,000-job and
    256 MB checkpoints) and at each ``--checkpoint-seconds`` interval, in alternating rounds
    (``--checkpoint-runs``, best of each printed last).

Each contender runs as a child process: wall seconds, files/s, MB/s and peak RSS (from the
kernel's accounting of that child) are printed side by side. The server gets its own process
so that its image generation does not share a GIL with the client.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


@dataclass
class Run:
    name: str
    seconds: float
    files: int
    bytes: int
    peak_rss_kib: int

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.seconds:8.2f} s  {self.files / self.seconds:8.1f} files/s  "
            f"{self.bytes / 1e6 / self.seconds:7.1f} MB/s  peak RSS {self.peak_rss_kib / 1024:6.1f} MB"
        )


def parse_rate(text: str) -> int:
    factor = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1].lower(), 1)
    return int(float(text.rstrip("kKmMgG")) * factor)


class DevServer:
    """``mjvault dev-server`` in a child process; its connection settings as environment."""

    def __init__(self, *args: str) -> None:
        self.token = secrets.token_urlsafe(16)
        env = os.environ | {"MJVAULT_DEV_SERVER_TOKEN": self.token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mjvault", "--json", "dev-server", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        text = ""
        for line in self.process.stdout:
            text += line
            if line.rstrip() == "}":
                break
        self.settings: dict[str, str] = json.loads(text)["settings"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def run_child(name: str, command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{name} failed ({code}): {err.decode(errors='replace')[-800:]}")
    return elapsed, usage.ru_maxrss, out.decode()


def sync_command(vault: Path, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "mjvault", "--vault", str(vault), "--json", "sync",
        "--api", "v3", "--jobs", str(concurrency),
    ]  # fmt: skip


def fresh_vault(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "mjvault", "init", str(path)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return path


def sequential_download(url_file: Path, out_dir: Path) -> None:
    """The baseline, in its own process: one ``httpx.get`` after another, each to a file."""
    import httpx

    out_dir.mkdir(parents=True, exist_ok=True)
    headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/142.0.0.0 Safari/537.36"}
    total = 0
    for number, url in enumerate(url_file.read_text().split()):
        response = httpx.get(url, headers=headers, timeout=60)
        response.raise_for_status()
        (out_dir / f"{number}.{url.rsplit('.', 1)[-1]}").write_bytes(response.content)
        total += len(response.content)
    print(json.dumps({"bytes": total}))


def bench_throughput(args: argparse.Namespace, workdir: Path) -> None:
    from mjvault.testing.accounts import Account

    bandwidth = parse_rate(args.bandwidth)
    print(
        f"(a) {args.jobs} jobs, large images, latency {args.latency * 1000:.0f} ms per request, "
        f"{bandwidth / 1e6:.1f} MB/s per connection",
        flush=True,
    )
    account = Account.generate(SEED, args.jobs, image_size="large")
    paths = [path for job in account.jobs for path in job.media_paths]
    server = DevServer(
        "--jobs", str(args.jobs), "--seed", str(SEED), "--large",
        "--latency", str(args.latency), "--bandwidth", str(bandwidth),
    )  # fmt: skip
    try:
        env = os.environ | server.settings
        vault = fresh_vault(workdir / "vault-a")
        seconds, rss, out = run_child("sync", sync_command(vault, args.concurrency), env)
        summary = json.loads(out)
        files = summary["images_downloaded"] + summary["images_deduplicated"]
        sync_run = Run(
            f"mjvault sync --jobs {args.concurrency}", seconds, files,
            summary["bytes_downloaded"], rss,
        )  # fmt: skip
        print(sync_run.line(), flush=True)
        if args.skip_baseline:
            return
        cdn = server.settings["MJVAULT_CDN_BASE"]
        url_file = workdir / "urls.txt"
        url_file.write_text("\n".join(f"{cdn}/{path}" for path in paths))
        out_dir = workdir / "sequential"
        shutil.rmtree(out_dir, ignore_errors=True)
        seconds, rss, out = run_child(
            "sequential",
            [sys.executable, __file__, "_sequential", str(url_file), str(out_dir)],
            env,
        )
        base_run = Run("sequential httpx.get", seconds, len(paths), json.loads(out)["bytes"], rss)
        print(base_run.line())
        print(f"sync is {base_run.seconds / sync_run.seconds:.1f}x faster (target >= 8x)")
        shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        server.stop()


def bench_noop(args: argparse.Namespace, workdir: Path) -> None:
    print(f"\n(b) no-op sync of an up-to-date {args.noop_jobs}-job archive", flush=True)
    server = DevServer("--jobs", str(args.noop_jobs), "--seed", str(SEED))
    try:
        env = os.environ | server.settings
        vault = fresh_vault(workdir / "vault-b")
        seconds, rss, out = run_child("first sync", sync_command(vault, args.concurrency), env)
        summary = json.loads(out)
        first = Run(
            "first sync (setup)", seconds,
            summary["images_downloaded"] + summary["images_deduplicated"],
            summary["bytes_downloaded"], rss,
        )  # fmt: skip
        print(first.line(), flush=True)
        timings = []
        for _ in range(3):
            seconds, rss, out = run_child("no-op sync", sync_command(vault, args.concurrency), env)
            summary = json.loads(out)
            assert summary["jobs_new"] == summary["images_downloaded"] == 0, summary
            timings.append((seconds, summary["seconds"], rss, summary["listing_pages"]))
        wall, inside, rss, pages = min(timings)
        print(
            f"no-op sync: {wall:.2f} s wall for the whole command (Python start-up included), "
            f"{inside:.3f} s inside sync() with {pages} listing page; peak RSS {rss / 1024:.1f} MB "
            "(best of 3; target < 1 s)"
        )
    finally:
        server.stop()


CHECKPOINT_PROBE = """
import json, os, statistics, sys, time
from mjvault import Vault

vault_path, batches, per_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
parts = {"tree": [], "flush": [], "ref": [], "index": [], "total": [], "nodes": []}
with Vault.open(vault_path) as vault:
    writer = vault.writer("bench-checkpoint", checkpoint_jobs=10**9, checkpoint_bytes=2**62)
    writer.start()
    tree, batch, index = writer._tree, writer._batch, vault.open_index()
    archive_jobs = vault.tree.count(writer._root)

    def timed(name, fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name][-1] += time.perf_counter() - started
        return run

    tree.apply = timed("tree", tree.apply)
    batch.flush = timed("flush", batch.flush)
    index.apply = timed("index", index.apply)
    run_tag = os.urandom(4).hex()
    for number in range(batches):
        for job in range(per_batch):
            record = json.dumps({
                "id": f"ckpt-{run_tag}-{number}-{job}", "enqueue_time": "2024-06-01 00:00:00",
                "type": "grid", "full_command": f"checkpoint bench {job} --ar 1:1",
                "prompt": f"checkpoint bench {job}",
            }).encode()
            writer.add_job(record, [writer.put_media(os.urandom(16384)) for _ in range(3)])
        for values in parts.values():
            values.append(0.0)
        objects_before = len(batch)
        nodes_before = batch.written_objects
        started = time.perf_counter()
        writer.checkpoint()
        parts["total"][-1] = time.perf_counter() - started
        # Objects published by this checkpoint beyond the jobs' records and images: tree nodes.
        parts["nodes"][-1] = batch.written_objects - nodes_before - objects_before
        parts["ref"][-1] = parts["total"][-1] - parts["tree"][-1] - parts["flush"][-1] - parts["index"][-1]
    # Leave the archive as built: drop the checkpoint, and a writer that starts brings the
    # index back to HEAD (the jobs' objects stay behind as garbage for gc).
    writer.abort()
    os.unlink(os.path.join(vault_path, "refs", "checkpoint"))
    with vault.writer("bench-reset"):
        pass
summary = {k: statistics.median(v) for k, v in parts.items()}
summary |= {"jobs": archive_jobs, "min": min(parts["total"]), "max": max(parts["total"])}
print(json.dumps(summary))
"""


def bench_checkpoint(args: argparse.Namespace, workdir: Path) -> None:
    per_batch = args.checkpoint_batch
    print(
        f"\n(c) one checkpoint after {per_batch} new jobs (3 x 16 KB images each), median of 7",
        flush=True,
    )
    for size in sorted({1_000, args.checkpoint_jobs}):
        vault = workdir / f"vault-ckpt-{size}"
        if not (vault / ".bench-ready").exists():
            print(f"building an archive of {size} jobs in {vault} …", flush=True)
            shutil.rmtree(vault, ignore_errors=True)
            subprocess.run([sys.executable, __file__, "_build", str(vault), str(size)], check=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", CHECKPOINT_PROBE, str(vault), "7", str(per_batch)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(out.stdout)
        print(
            f"archive of {r['jobs']:>7} jobs: checkpoint {r['total'] * 1000:7.1f} ms "
            f"(min {r['min'] * 1000:.1f}, max {r['max'] * 1000:.1f}) = tree "
            f"{r['tree'] * 1000:.1f} ms ({r['nodes']:.0f} nodes) + objects syncfs/rename "
            f"{r['flush'] * 1000:.1f} ms + refs/checkpoint {r['ref'] * 1000:.1f} ms + index "
            f"{r['index'] * 1000:.1f} ms",
            flush=True,
        )


def build_archive(path: Path, jobs: int) -> None:
    """Records and tree of ``jobs`` jobs, four image ids each: the vault bench_gc.py builds."""
    from bench_gc import build  # this script's folder is on sys.path when it runs

    build(path, jobs)


def bench_checkpoint_throughput(args: argparse.Namespace, workdir: Path) -> None:
    bandwidth = parse_rate(args.bandwidth)
    print(
        f"\n(d) sync of (a)'s {args.jobs} jobs with the time checkpoint off and on, "
        f"{args.checkpoint_runs} alternating rounds",
        flush=True,
    )
    server = DevServer(
        "--jobs", str(args.jobs), "--seed", str(SEED), "--large",
        "--latency", str(args.latency), "--bandwidth", str(bandwidth),
    )  # fmt: skip
    # 1e9 s: never due, so only the 2,000-job and 256 MB checkpoints remain ("off").
    settings = ["1e9", *args.checkpoint_seconds]
    best: dict[str, Run] = {}
    try:
        # Alternating, so a busy spell of a shared machine hurts every setting alike.
        for _ in range(args.checkpoint_runs):
            for seconds in settings:
                env = os.environ | server.settings | {"MJVAULT_SYNC_CHECKPOINT_SECONDS": seconds}
                vault = fresh_vault(workdir / "vault-d")
                wall, rss, out = run_child("sync", sync_command(vault, args.concurrency), env)
                summary = json.loads(out)
                name = (
                    "time checkpoint off" if seconds == "1e9" else f"checkpoint every {seconds} s"
                )
                run = Run(
                    name, wall, summary["images_downloaded"] + summary["images_deduplicated"],
                    summary["bytes_downloaded"], rss,
                )  # fmt: skip
                print("  " + run.line(), flush=True)
                if seconds not in best or run.seconds < best[seconds].seconds:
                    best[seconds] = run
    finally:
        server.stop()
    print("best of each:")
    for seconds in settings:
        print(best[seconds].line())


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_build":
        build_archive(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "_sequential":
        sequential_download(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=650, help="jobs for (a); ~3.2 files each")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--bandwidth", default="8M", help="bytes/s per connection, e.g. 8M")
    parser.add_argument("--concurrency", type=int, default=16, help="mjvault sync --jobs N")
    parser.add_argument("--noop-jobs", type=int, default=10_000, help="archive size for (b)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-sync"))
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-noop", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--checkpoint-jobs", type=int, default=100_000, help="archive for (c)")
    parser.add_argument("--checkpoint-batch", type=int, default=100, help="new jobs per (c)")
    parser.add_argument(
        "--checkpoint-seconds", nargs="*", default=["10", "1"], help="intervals for (d)"
    )
    parser.add_argument("--skip-checkpoint", action="store_true")
    parser.add_argument("--skip-checkpoint-sync", action="store_true")
    parser.add_argument("--checkpoint-runs", type=int, default=3, help="rounds of (d)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_throughput:
        bench_throughput(args, args.workdir)
    if not args.skip_noop:
        bench_noop(args, args.workdir)
    if not args.skip_checkpoint:
        bench_checkpoint(args, args.workdir)
    if not args.skip_checkpoint_sync:
        bench_checkpoint_throughput(args, args.workdir)


if __name__ == "__main__":
    main()
