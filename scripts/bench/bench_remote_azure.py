#!/usr/bin/env python3
"""Push and clone of the benchmark corpus to Azurite (az://) beside moto (s3://), same client.

    python scripts/bench/bench_remote_azure.py [--jobs 200] [--runs 3] [--workdir DIR]

Generates the sample archive (``write_sample_archive(dir, jobs, seed=1, large=True)``),
imports it into a plain vault, and for each service times ``mjvault push`` to a fresh
container/bucket and ``mjvault clone`` of it, each as a child process with its own peak RSS,
``--runs`` times. Both emulators run on 127.0.0.1 and hold everything in memory (moto in one
Python process, Azurite in one Node process): the figures compare mjvault's two backends on
equal footing, not Azure against S3.
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


def timed(command: list[str], env: dict[str, str], usage_file: Path) -> tuple[float, int, bytes]:
    """Wall seconds, the command's own peak RSS (KiB) and its stdout."""
    from mjvault.testing.rusage import launched, read_usage

    started = time.perf_counter()
    proc = subprocess.run(launched(command, usage_file), env=env, capture_output=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[3:7])} failed: {proc.stderr.decode()[-800:]}")
    return seconds, read_usage(usage_file).peak_rss_kib, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-azure"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing import azurite
    from mjvault.testing.archive import write_sample_archive
    from mjvault.testing.objectstore import MotoServer

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    archive = work / f"archive-{args.jobs}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=True)
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        **azurite.ENV,
    )
    mj = [sys.executable, "-m", "mjvault"]
    vault = work / f"vault-{args.jobs}"
    if not (vault / "config").exists():
        shutil.rmtree(vault, ignore_errors=True)
        subprocess.run([*mj, "init", str(vault)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*mj, "--vault", str(vault), "import", str(archive)],
            env=env,
            check=True,
            capture_output=True,
        )
    size = sum(p.stat().st_size for p in (vault / "objects").rglob("*") if p.is_file())
    size += sum(p.stat().st_size for p in (vault / "packs").rglob("*") if p.is_file())
    print(f"vault: {size / 1e6:.0f} MB of objects and packs; {args.threads} requests in flight")

    results: dict[str, list[tuple[float, int]]] = {}
    with MotoServer() as s3, azurite.Azurite() as az:
        for run in range(args.runs):
            for service in ("s3", "az"):
                spec = (
                    s3.spec(f"r{run}{service}") if service == "s3" else az.spec(f"r{run}{service}")
                )
                assert spec.endpoint_url is not None
                where = ["--endpoint-url", spec.endpoint_url]
                subprocess.run(
                    [*mj, "--vault", str(vault), "remote", "add", spec.name, spec.url, *where],
                    env=env, check=True, capture_output=True,
                )  # fmt: skip
                usage = work / "usage.json"
                push = [*mj, "--vault", str(vault), "--json", "push", spec.name]
                seconds, rss, out = timed([*push, "--threads", str(args.threads)], env, usage)
                results.setdefault(f"push {service}", []).append((seconds, rss))
                sent = json.loads(out)["bytes_sent"]
                target = work / "clone"
                shutil.rmtree(target, ignore_errors=True)
                seconds, rss, out = timed(
                    [*mj, "--json", "clone", spec.url, str(target), *where,
                     "--threads", str(args.threads)],
                    env, usage,
                )  # fmt: skip
                results.setdefault(f"clone {service}", []).append((seconds, rss))
                shutil.rmtree(target, ignore_errors=True)
                subprocess.run(
                    [*mj, "--vault", str(vault), "remote", "remove", spec.name],
                    env=env, capture_output=True,
                )  # fmt: skip
                print(f"run {run} {service}: {sent / 1e6:.0f} MB sent", flush=True)

    print("| step | best s | median s | MB/s (best) | peak RSS (max) |")
    print("| --- | --- | --- | --- | --- |")
    for label, rows in results.items():
        times = [t for t, _ in rows]
        best = min(times)
        print(
            f"| {label} | {best:.2f} | {statistics.median(times):.2f} | "
            f"{size / 1e6 / best:.0f} | {max(r for _, r in rows) / 1024:.0f} MB |"
        )


if __name__ == "__main__":
    main()
