#!/usr/bin/env python3
"""Remote benchmark: push and clone of the benchmark corpus to a local S3 server (moto),
beside ``restic copy`` (and ``restic restore`` from S3) of the same corpus.

    python scripts/bench/bench_remote.py [--jobs 700] [--workdir /tmp/mjvault-bench-remote]

Generates the sample archive (``write_sample_archive(dir, jobs, seed=1, large=True)``, ~1 GB
for the default; reused from --archive when given), imports it into a plain vault, starts
moto_server on 127.0.0.1 and times, each as a child process with its own peak RSS:

* ``mjvault push`` to an S3 remote, then ``mjvault clone`` of it into a new vault;
* the same with an encrypting remote (``remote add --encrypt``: every object sealed and
  renamed, trees translated);
* ``restic copy`` of a restic repository holding the same folder to an S3 repository on
  the same server, then ``restic restore`` from it (restic always encrypts).

moto keeps everything in one Python process and is the bottleneck for everyone; the figures
compare the clients against the same server, not against real S3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS (KiB) of this child alone, and its stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err.decode()[-800:]}")
    return elapsed, usage.ru_maxrss, out


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=700)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-remote"))
    parser.add_argument("--archive", type=Path, help="an existing sample archive to reuse")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.archive import write_sample_archive
    from mjvault.testing.objectstore import MotoServer

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    archive = args.archive or work / f"archive-{args.jobs}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=True)
    env = dict(
        os.environ,
        MJVAULT_PASSPHRASE="bench",
        RESTIC_PASSWORD="bench",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    mj = [sys.executable, "-m", "mjvault"]
    vault = work / "vault"
    if not (vault / "config").exists():
        shutil.rmtree(vault, ignore_errors=True)
        subprocess.run([*mj, "init", str(vault)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*mj, "--vault", str(vault), "import", str(archive)],
            env=env,
            check=True,
            capture_output=True,
        )
    size = tree_size(vault / "objects")
    print(f"vault: {size / 1e6:.0f} MB of objects; {args.threads} requests in flight")
    rows: list[tuple[str, float, int, int]] = []

    with MotoServer() as s3:
        for label, extra in (("", []), ("encrypting ", ["--encrypt"])):
            bucket = f"mj{len(rows)}"
            s3.create_bucket(bucket)
            name = f"r{len(rows)}"
            subprocess.run(
                [*mj, "--vault", str(vault), "remote", "remove", name], env=env, capture_output=True
            )
            subprocess.run(
                [*mj, "--vault", str(vault), "remote", "add", name, f"s3://{bucket}/mj",
                 "--endpoint-url", s3.endpoint, *extra],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            seconds, rss, out = run_child(
                [
                    *mj,
                    "--vault",
                    str(vault),
                    "--json",
                    "push",
                    name,
                    "--threads",
                    str(args.threads),
                ],
                env,
            )
            sent = json.loads(out)["bytes_sent"]
            rows.append((f"mjvault push ({label}s3)", seconds, rss, sent))
            target = work / f"clone{len(rows)}"
            shutil.rmtree(target, ignore_errors=True)
            seconds, rss, out = run_child(
                [*mj, "--json", "clone", f"s3://{bucket}/mj", str(target),
                 "--endpoint-url", s3.endpoint, "--threads", str(args.threads)],
                env,
            )  # fmt: skip
            rows.append(
                (f"mjvault clone ({label}s3)", seconds, rss, json.loads(out)["bytes_received"])
            )
            shutil.rmtree(target, ignore_errors=True)

        if shutil.which("restic"):
            local = work / "restic-local"
            if not (local / "config").exists():
                shutil.rmtree(local, ignore_errors=True)
                subprocess.run(
                    ["restic", "-r", str(local), "init"], env=env, check=True, capture_output=True
                )
                subprocess.run(
                    ["restic", "-r", str(local), "backup", str(archive)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            s3.create_bucket("restic")
            remote = f"s3:{s3.endpoint}/restic/repo"
            restic_env = env | {"RESTIC_FROM_PASSWORD": "bench"}
            subprocess.run(
                ["restic", "-r", remote, "init", "--from-repo", str(local), "--copy-chunker-params"],
                env=restic_env, check=True, capture_output=True,
            )  # fmt: skip
            seconds, rss, _ = run_child(
                ["restic", "-r", remote, "copy", "--from-repo", str(local)], restic_env
            )
            rows.append(("restic copy (s3)", seconds, rss, tree_size(local / "data")))
            target = work / "restic-restore"
            shutil.rmtree(target, ignore_errors=True)
            seconds, rss, _ = run_child(
                ["restic", "-r", remote, "restore", "latest", "--target", str(target)], env
            )
            rows.append(("restic restore (s3)", seconds, rss, tree_size(target)))
            shutil.rmtree(target, ignore_errors=True)

    print(f"{'':28s} {'seconds':>8s} {'MB':>8s} {'MB/s':>7s} {'peak RSS':>9s}")
    for name, seconds, rss, moved in rows:
        print(
            f"{name:28s} {seconds:8.1f} {moved / 1e6:8.0f} {moved / 1e6 / seconds:7.1f} {rss / 1024:7.0f} MB"
        )


if __name__ == "__main__":
    main()
