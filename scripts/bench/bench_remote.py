#!/usr/bin/env python3
"""Remote benchmark: push and clone of the benchmark corpus to a local S3 server, beside
``restic copy`` and ``restic restore`` of the same corpus to the same server.

    python scripts/bench/bench_remote.py [--engine moto|ceph] [--jobs 700] [--rounds 3]
                                         [--workdir /tmp/mjvault-bench-remote]

Generates the sample archive (``write_sample_archive(dir, jobs, seed=1, large=True)``, ~1 GB
for the default; reused from --archive when given), imports it into a plain vault, starts the
server on 127.0.0.1 and times, each as a child process with its own peak RSS:

* ``mjvault push`` to an S3 remote, then ``mjvault clone`` of it into a new vault;
* the same with an encrypting remote (``remote add --encrypt``: every object sealed and
  renamed, trees translated);
* ``restic copy`` of a restic repository holding the same folder to an S3 repository on
  the same server, then ``restic restore`` from it (restic always encrypts).

Each contender of each round gets a server of its own, started afresh (Ceph's memstore OSD
keeps what it was sent in RAM and does not give it back when objects are deleted: a cluster
shared by the rounds grew past 9 GB); the contenders alternate which goes first. Every
measurement is printed as it is taken, then the best and median of the rounds.

Engines: ``moto`` (one Python process holding every object in memory: the bottleneck for
every contender) and ``ceph`` (a one-node Ceph cluster, mjvault/testing/ceph.py: a memstore
OSD and radosgw, whose request counter gives each command's requests). restic is not installed
by the project; on Debian: ``apt-get install --no-install-recommends restic``. Without it the
restic rows are left out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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


class Bench:
    """One engine's server, the contenders' commands, and what each measurement gave."""

    def __init__(self, args: argparse.Namespace, vault: Path, archive: Path) -> None:
        self.args = args
        self.server: Any = None
        self.vault = vault
        self.archive = archive
        self.work: Path = args.workdir
        self.mj = [sys.executable, "-m", "mjvault"]
        # The keys of Ceph's test user (moto takes any); this process empties buckets too.
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1"
        )
        self.env = dict(
            os.environ,
            MJVAULT_PASSPHRASE="bench",
            RESTIC_PASSWORD="bench",
            RESTIC_FROM_PASSWORD="bench",
        )
        #: label -> one (seconds, peak RSS KiB, bytes moved, requests or None) a round
        self.rows: dict[str, list[tuple[float, int, int, int | None]]] = {}

    def requests(self) -> int | None:
        counter = getattr(self.server, "gateway_requests", None)
        return counter() if counter else None

    def timed(self, label: str, cmd: list[str], moved: Any) -> bytes:
        before = self.requests()
        seconds, rss, out = run_child(cmd, self.env)
        after = self.requests()
        count = after - before if after is not None and before is not None else None
        row = (seconds, rss, moved(out), count)
        self.rows.setdefault(label, []).append(row)
        print(f"  {label}: {seconds:.1f} s, {row[2] / 1e6:.0f} MB, {count} requests, "
              f"peak RSS {rss / 1024:.0f} MB", flush=True)  # fmt: skip
        return out

    def bucket(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        self.server.create_bucket(name)
        return name

    def mjvault(self, encrypting: bool) -> None:
        import json

        label = "encrypting" if encrypting else "plain"
        bucket = self.bucket()
        name = f"r-{bucket}"
        v = ["--vault", str(self.vault)]
        subprocess.run(
            [*self.mj, *v, "remote", "add", name, f"s3://{bucket}/mj",
             "--endpoint-url", self.server.endpoint, *(["--encrypt"] if encrypting else [])],
            env=self.env, check=True, capture_output=True,
        )  # fmt: skip
        threads = ["--threads", str(self.args.threads)]
        self.timed(
            f"mjvault push ({label})",
            [*self.mj, *v, "--json", "push", name, *threads],
            lambda out: json.loads(out)["bytes_sent"],
        )
        target = self.work / "clone"
        shutil.rmtree(target, ignore_errors=True)
        self.timed(
            f"mjvault clone ({label})",
            [*self.mj, "--json", "clone", f"s3://{bucket}/mj", str(target),
             "--endpoint-url", self.server.endpoint, *threads],
            lambda out: json.loads(out)["bytes_received"],
        )  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([*self.mj, *v, "remote", "remove", name], env=self.env, capture_output=True)

    def restic(self) -> None:
        local = self.work / "restic-local"
        if not (local / "config").exists():
            shutil.rmtree(local, ignore_errors=True)
            for cmd in (["init"], ["backup", str(self.archive)]):
                subprocess.run(
                    ["restic", "-r", str(local), *cmd],
                    env=self.env,
                    check=True,
                    capture_output=True,
                )
        bucket = self.bucket()
        remote = f"s3:{self.server.endpoint}/{bucket}/repo"
        subprocess.run(
            ["restic", "-r", remote, "init", "--from-repo", str(local), "--copy-chunker-params"],
            env=self.env, check=True, capture_output=True,
        )  # fmt: skip
        self.timed(
            "restic copy",
            ["restic", "-r", remote, "copy", "--from-repo", str(local)],
            lambda out: tree_size(local / "data"),
        )
        target = self.work / "restic-restore"
        shutil.rmtree(target, ignore_errors=True)
        self.timed(
            "restic restore",
            ["restic", "-r", remote, "restore", "latest", "--target", str(target)],
            lambda out: tree_size(target),
        )
        shutil.rmtree(target, ignore_errors=True)

    def report(self) -> None:
        print(
            f"{'':28s} {'best s':>7s} {'median s':>8s} {'MB':>6s} {'MB/s':>6s} "
            f"{'requests':>9s} {'peak RSS':>9s}"
        )
        for label, runs in self.rows.items():
            seconds = [r[0] for r in runs]
            best = min(seconds)
            moved = statistics.median(r[2] for r in runs)
            counts = [r[3] for r in runs if r[3] is not None]
            requests = f"{statistics.median(counts):9.0f}" if counts else f"{'-':>9s}"
            print(
                f"{label:28s} {best:7.1f} {statistics.median(seconds):8.1f} "
                f"{moved / 1e6:6.0f} {moved / 1e6 / best:6.1f} {requests} "
                f"{max(r[1] for r in runs) / 1024:6.0f} MB"
            )

        def ratio(a: str, b: str) -> None:
            if a in self.rows and b in self.rows:
                best = min(r[0] for r in self.rows[a]) / min(r[0] for r in self.rows[b])
                med = statistics.median(r[0] for r in self.rows[a]) / statistics.median(
                    r[0] for r in self.rows[b]
                )
                print(f"{a} / {b}: {best:.2f}x best, {med:.2f}x median")

        for mode in ("plain", "encrypting"):
            ratio(f"mjvault push ({mode})", "restic copy")
            ratio(f"mjvault clone ({mode})", "restic restore")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=("moto", "ceph"), default="moto")
    parser.add_argument("--jobs", type=int, default=700)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-remote"))
    parser.add_argument("--archive", type=Path, help="an existing sample archive to reuse")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.archive import write_sample_archive

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    archive = args.archive or work / f"archive-{args.jobs}"
    if not archive.exists():
        print(f"generating {args.jobs} jobs into {archive} …", flush=True)
        write_sample_archive(archive, jobs=args.jobs, seed=1, large=True)
    mj = [sys.executable, "-m", "mjvault"]
    vault = work / "vault"
    if not (vault / "config").exists():
        shutil.rmtree(vault, ignore_errors=True)
        env = dict(os.environ, MJVAULT_PASSPHRASE="bench")
        subprocess.run([*mj, "init", str(vault)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*mj, "--vault", str(vault), "import", str(archive)],
            env=env,
            check=True,
            capture_output=True,
        )
    size = tree_size(vault / "objects")
    print(f"vault: {size / 1e6:.0f} MB of objects; {args.threads} requests in flight")

    # Killed (SIGTERM): leave through the with-blocks, so the server's daemons stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args, vault, archive)
    restic = shutil.which("restic") is not None
    if not restic:
        print("restic is not installed: its rows are left out")
    for round_ in range(args.rounds):
        contenders = [lambda: bench.mjvault(False), lambda: bench.mjvault(True)]
        if restic:
            contenders.append(bench.restic)
        if round_ % 2:
            contenders.reverse()
        for run in contenders:
            with start_engine(args.engine, work, size) as bench.server:
                run()
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    print(f"engine: {args.engine}; {args.rounds} rounds")
    bench.report()


def start_engine(engine: str, work: Path, vault_bytes: int) -> Any:
    if engine == "ceph":
        from mjvault.testing.ceph import CephCluster

        folder = work / "ceph"
        shutil.rmtree(folder, ignore_errors=True)
        # The OSD keeps objects in RAM: room for one contender's copy, with slack.
        return CephCluster(folder, memstore_bytes=vault_bytes + (1 << 30), timeout=120)
    from mjvault.testing.objectstore import MotoServer

    return MotoServer()


if __name__ == "__main__":
    main()
