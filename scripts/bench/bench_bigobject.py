#!/usr/bin/env python3
"""Big-object benchmark: push and clone of one 2 GB video to a folder remote and to moto,
beside ``cp`` of the same file (the anchor), each a child process with its own peak RSS.

    python scripts/bench/bench_bigobject.py [--size-mb 2048] [--runs 3] [--targets folder,moto]
        [--encrypting] [--code DIR] [--workdir /tmp/mjvault-bench-bigobject]

A plain vault holding one MP4-headed file of random bytes (it does not compress) is built
once. Each run, alternating so drift on a shared machine hits all alike: ``cp`` of the file
to a new folder (then ``sync``), ``mjvault push`` to a fresh remote, ``mjvault clone`` of it
into a new vault. MB/s and peak RSS, best and median of the runs. ``--encrypting`` adds a
remote added with ``--encrypt`` (sealed on the way up, opened on the way down). ``--code``
runs the mjvault of another checkout (the code before a change) for a before/after pair.

moto keeps every object in its own process's memory (a 2 GB object costs it several GB) and
is slower than a real store: its figures compare clients against the same server.
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
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"

BUILD = """
import sys
from pathlib import Path
from mjvault import Vault

with Vault.init(Path(sys.argv[1])) as vault, vault.writer("bench") as writer:
    image = writer.put_media_file(Path(sys.argv[2]))
    writer.add_job(b'{"id": "job-1", "prompt": "a long video"}', [image])
"""


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MB) of this child alone, and its stdout."""
    from mjvault.testing.rusage import launched, read_usage

    result = Path(env["BENCH_WORK"]) / "rusage.json"
    started = time.perf_counter()
    # From the checkout under test: ``python -m`` puts the working directory first on the path.
    done = subprocess.run(
        launched(cmd, result), env=env, capture_output=True, cwd=env["BENCH_CODE"]
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:5])} failed ({done.returncode}): {done.stderr.decode()[-800:]}")
    return elapsed, read_usage(result).peak_rss_kib / 1024, done.stdout


def make_file(path: Path, size_mb: int) -> None:
    if path.exists() and path.stat().st_size == size_mb * 1024 * 1024:
        return
    with open(path, "wb") as out:
        out.write(MP4_HEAD + os.urandom(1024 * 1024 - len(MP4_HEAD)))
        for _ in range(size_mb - 1):
            out.write(os.urandom(1024 * 1024))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--targets", default="folder,moto")
    parser.add_argument("--encrypting", action="store_true")
    parser.add_argument("--code", type=Path, help="run the mjvault of this checkout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-bigobject"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.objectstore import MotoServer

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        BENCH_WORK=str(work),
        MJVAULT_PASSPHRASE="bench",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    env["BENCH_CODE"] = str((args.code or ROOT).resolve())
    if args.code:
        env["PYTHONPATH"] = env["BENCH_CODE"]
    mj = [sys.executable, "-m", "mjvault"]
    video = work / "video.mp4"
    make_file(video, args.size_mb)
    size = video.stat().st_size
    vault = work / "vault"
    if not (vault / "config").exists():
        shutil.rmtree(vault, ignore_errors=True)
        subprocess.run([sys.executable, "-c", BUILD, str(vault), str(video)], env=env, check=True)
    remotes = [(t, []) for t in args.targets.split(",")]
    if args.encrypting:
        remotes += [(f"{t} encrypting", ["--encrypt"]) for t in args.targets.split(",")]
    results: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, seconds: float, rss: float) -> None:
        results.setdefault(name, []).append((seconds, rss))

    s3 = MotoServer() if any(t.startswith("moto") for t, _ in remotes) else None
    try:
        for run in range(args.runs):
            for target, extra in remotes:
                copied = work / "cp"
                shutil.rmtree(copied, ignore_errors=True)
                copied.mkdir()
                seconds, rss, _ = run_child(
                    ["sh", "-c", f"cp {video} {copied}/ && sync -f {copied}"], env
                )
                record("cp (anchor)", seconds, rss)
                shutil.rmtree(copied, ignore_errors=True)
                name = f"r{run}{target.replace(' ', '')}"
                subprocess.run(
                    [*mj, "--vault", str(vault), "remote", "remove", name],
                    env=env, capture_output=True, cwd=env["BENCH_CODE"],
                )  # fmt: skip
                if target.startswith("moto"):
                    assert s3 is not None
                    bucket = f"bench-{name.lower()}"
                    s3.create_bucket(bucket)
                    url, options = f"s3://{bucket}/mj", ["--endpoint-url", s3.endpoint]
                else:
                    remote = work / "remote"
                    shutil.rmtree(remote, ignore_errors=True)
                    url, options = str(remote), []
                subprocess.run(
                    [*mj, "--vault", str(vault), "remote", "add", name, url, *options, *extra],
                    env=env, check=True, capture_output=True, cwd=env["BENCH_CODE"],
                )  # fmt: skip
                seconds, rss, out = run_child(
                    [*mj, "--vault", str(vault), "--json", "push", name], env
                )
                assert json.loads(out)["bytes_sent"] >= size
                record(f"mjvault push ({target})", seconds, rss)
                clone = work / "clone"
                shutil.rmtree(clone, ignore_errors=True)
                seconds, rss, out = run_child(
                    [*mj, "--json", "clone", url, str(clone), *options], env
                )
                assert json.loads(out)["bytes_received"] >= size
                record(f"mjvault clone ({target})", seconds, rss)
                shutil.rmtree(clone, ignore_errors=True)
                if s3 is not None and target.startswith("moto"):
                    # moto keeps the object in memory: a new server per run, not a heap of GBs.
                    s3.stop()
                    s3 = MotoServer()
            print(f"run {run + 1}/{args.runs} done", flush=True)
    finally:
        if s3 is not None:
            s3.stop()

    print(f"{size / 1e6:.0f} MB object, {args.runs} runs (best / median)")
    print(f"{'':34s} {'MB/s best':>9s} {'median':>7s} {'RSS MB best':>12s} {'median':>7s}")
    for name, rows in results.items():
        speeds = [size / 1e6 / s for s, _ in rows]
        peaks = [r for _, r in rows]
        print(
            f"{name:34s} {max(speeds):9.0f} {statistics.median(speeds):7.0f}"
            f" {min(peaks):12.0f} {statistics.median(peaks):7.0f}"
        )


if __name__ == "__main__":
    main()
