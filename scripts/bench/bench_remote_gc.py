#!/usr/bin/env python3
"""``gc --remote`` against local ``gc`` (the anchor): time, requests and peak RSS.

    python scripts/bench/bench_remote_gc.py [--jobs 2000 10000] [--runs 3] [--s3]
        [--workdir /tmp/mjvault-bench-remote-gc]

For each size, builds (once, cached) a vault of JOBS jobs (a 2 KB image and a record each),
pushes it to a folder remote (or, with ``--s3``, to moto's S3 server on 127.0.0.1 behind a
counting proxy), forgets a third of the jobs, pushes the rewritten snapshot, and forgets the
old one on the remote: the remote then holds a third of its media and records as garbage,
in packs that must be rewritten. Each run starts from a copy of that state and times, in a
child process of its own, ``gc --grace 0`` on the vault (the anchor: the same garbage,
locally) and ``gc --remote --grace 0``. Prints best and median seconds, requests (backend
calls for a folder, HTTP requests for S3) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BUILD = """
import os, sys
from pathlib import Path
from mjvault import Vault
from mjvault.integrity.forget import KeepPolicy, forget_jobs
from mjvault.remotes.config import RemoteSpec
from mjvault.remotes.prune import forget_remote
from mjvault.remotes.push import push
from mjvault.remotes.session import connect

path, jobs = Path(sys.argv[1]), int(sys.argv[2])
spec = RemoteSpec(**__import__("json").loads(sys.argv[3]))
with Vault.init(path) as vault:
    with vault.writer("bench", checkpoint_jobs=5000) as writer:
        for n in range(jobs):
            record = ('{"id": "%08d-bench", "enqueue_time": "2024-01-01 00:00:00", '
                      '"type": "grid", "prompt": "bench prompt %d"}' % (n, n)).encode()
            writer.add_job(record, [writer.put_media(os.urandom(2048)), None])
    with connect(vault, spec, create=True) as link:
        assert push(vault, link).ok
    forget_jobs(vault, [f"{n:08d}-bench" for n in range(0, jobs, 3)])
    with connect(vault, spec) as link:
        assert push(vault, link).ok
        assert len(forget_remote(None, link, policy=KeepPolicy(last=1)).forgotten) == 1
print("{}")
"""

PROBE = """
import json, resource, sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import folder
from mjvault.remotes.config import RemoteSpec

calls = 0
for name in ("get", "put", "delete", "exists", "list", "list_meta", "get_tail",
             "get_range", "download"):
    real = getattr(folder.FolderBackend, name)
    def counted(self, *a, real=real, **k):
        global calls
        calls += 1
        return real(self, *a, **k)
    setattr(folder.FolderBackend, name, counted)

vault_dir, which = Path(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
with Vault.open(vault_dir) as vault:
    if which == "local":
        from mjvault.integrity.gc import gc
        report = gc(vault, grace_seconds=0)
        removed, freed = report.removed, report.removed_bytes + report.pack_bytes_removed
        freed -= report.pack_bytes_written
    else:
        from mjvault.remotes.prune import gc_remote
        from mjvault.remotes.session import connect
        spec = RemoteSpec(**json.loads(sys.argv[3]))
        with connect(vault, spec) as link:
            report = gc_remote(link, grace_seconds=0)
        removed, freed = report.removed, report.bytes_freed
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "removed": removed, "freed_mb": freed / 1e6, "calls": calls,
}))
"""


def child(script: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, check=False
    )
    if done.returncode != 0:
        sys.exit(done.stderr.decode()[-3000:])
    return json.loads(done.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="moto's S3 server, not a folder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-remote-gc"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mjvault.remotes.config import RemoteSpec, normalise_url
    from mjvault.testing.objectstore import FaultProxy, MotoServer

    if args.s3:  # what moto accepts, for this process and its children
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": "us-east-1",
            }
        )
    moto = MotoServer() if args.s3 else None
    proxy = FaultProxy(moto.port) if moto else None
    try:
        for jobs in args.jobs:
            base = args.workdir / f"{'s3' if moto else 'folder'}-{jobs}"
            if moto is not None:
                assert proxy is not None
                spec = moto.spec("bench", endpoint_url=proxy.endpoint)
                shutil.rmtree(base, ignore_errors=True)  # moto forgets its buckets
            else:
                spec = RemoteSpec("bench", normalise_url(str(base / "remote")))
            if not (base / "ready").exists():
                shutil.rmtree(base, ignore_errors=True)
                base.mkdir(parents=True)
                print(f"building {jobs} jobs in {base} …", file=sys.stderr, flush=True)
                child(BUILD, str(base / "vault"), str(jobs), json.dumps(spec.to_json()))
                (base / "ready").touch()
            rows: dict[str, list[dict[str, float]]] = {"local gc": [], "gc --remote": []}
            for run in range(args.runs):
                work = args.workdir / "run"
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(base, work, symlinks=True)
                local = child(PROBE, str(work / "vault"), "local")
                rows["local gc"].append(local)
                if moto is not None and run > 0:
                    break  # the bucket is swept once; S3 runs are one each
                remote_spec = spec
                if moto is None:
                    remote_spec = RemoteSpec("bench", normalise_url(str(work / "remote")))
                # The remote's local state (its pack cache) was copied with the vault.
                before = proxy.requests if proxy else 0
                measured = child(
                    PROBE, str(work / "vault"), "remote", json.dumps(remote_spec.to_json())
                )
                if proxy is not None:
                    measured["calls"] = proxy.requests - before
                rows["gc --remote"].append(measured)
            for name, runs in rows.items():
                times = [r["seconds"] for r in runs]
                print(
                    f"{jobs:>7} jobs  {name:<12} best {min(times):6.2f} s  "
                    f"median {statistics.median(times):6.2f} s  "
                    f"requests {int(runs[0]['calls']):>6}  "
                    f"removed {int(runs[0]['removed']):>6}  freed {runs[0]['freed_mb']:6.1f} MB  "
                    f"peak RSS {max(r['peak_rss_mb'] for r in runs):6.1f} MB"
                )
    finally:
        if proxy is not None:
            proxy.stop()
        if moto is not None:
            moto.stop()


if __name__ == "__main__":
    main()
