#!/usr/bin/env python3
"""Sync benchmarks against the bundled Midjourney-compatible server, run as its own process.

    python scripts/bench/bench_sync.py [--jobs 650] [--latency 0.05] [--bandwidth 8M]
                                       [--concurrency 16] [--noop-jobs 10000] [--skip-baseline]

(a) ``mjvault sync`` of a generated account with realistic image sizes (650 jobs ≈ 2,000
    files ≈ 1.3 GB) from ``mjvault dev-server --large --latency 0.05 --bandwidth 8M`` into a
    fresh vault, beside a sequential one-at-a-time download of the same files with
    ``httpx.get`` (a new connection per file, what the original archiver scripts did with
    ``requests.get``). Target: sync >= 8x faster.
(b) A no-op sync of an up-to-date 10k-job archive (records + small images). Target: < 1 s of
    local work. The archive is built by a real sync first (its time is printed too).

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


def main() -> None:
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
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_throughput:
        bench_throughput(args, args.workdir)
    if not args.skip_noop:
        bench_noop(args, args.workdir)


if __name__ == "__main__":
    main()
