#!/usr/bin/env python3
"""gc marking at scale: time and peak RSS of ``mjvault gc --dry-run`` on a large vault.

    python scripts/bench/bench_gc.py [--jobs 100000] [--workdir /tmp/mjvault-bench-gc] [--remote]

Builds (once, cached) a vault of JOBS jobs with four image slots each. Images are not
written — marking reads only manifests and tree nodes, and the sweep only lists files — so
the vault holds JOBS records and the tree, and every image id is a distinct reference to
mark. Then it times a gc dry run in a child process and prints seconds and peak RSS, with
the size of the marks themselves.

``--remote`` gives the vault a (folder) remote first, so gc also runs the copies guard: a
second listing of the loose objects, reading the small framed unreferenced ones to find the
manifests of forgotten snapshots. Without it the vault has no remote and no guard runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, resource, sys, time
from mjvault import Vault
from mjvault.integrity.gc import gc
started = time.perf_counter()
with Vault.open(sys.argv[1]) as vault:
    report = gc(vault, dry_run=True, grace_seconds=0)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "jobs": report.jobs, "objects_seen": report.objects_seen,
    "tree_nodes": report.tree_nodes, "mark_mb": report.mark_memory_bytes / 1e6,
    "guarded": report.copies is not None,
}))
"""


def build(path: Path, jobs: int, images: bool = False) -> None:
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault

    with Vault.init(path) as vault, vault.writer("bench", checkpoint_jobs=5000) as writer:
        for n in range(jobs):
            record = json.dumps(
                {
                    "id": f"{n:08d}-bench",
                    "enqueue_time": "2024-01-01 00:00:00",
                    "type": "grid",
                    "full_command": f"bench prompt {n} --ar 1:1",
                    "prompt": f"bench prompt {n}",
                }
            ).encode()
            if images:
                # One real (loose) image a job: the files both sweeps and the guard list.
                ids = [writer.put_media(b"\x89PNG\r\n\x1a\n" + os.urandom(1024)), None, None, None]
            else:
                ids = [os.urandom(32).hex() for _ in range(4)]
            writer.add_job(record, ids)
    (path / ".bench-ready").touch()


def _set_remote(vault: Path, folder: Path, wanted: bool) -> None:
    """Give the cached vault a folder remote, or take it away (only its local spec)."""
    sys.path.insert(0, str(ROOT))
    from mjvault.remotes.config import RemoteSpec, delete_spec, remote_names, save_spec

    if "bench" in remote_names(vault):
        delete_spec(vault, "bench")
    if wanted:
        save_spec(vault, RemoteSpec("bench", "file://" + str(folder)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-gc"))
    parser.add_argument("--remote", action="store_true", help="give the vault a remote first")
    parser.add_argument(
        "--images", action="store_true", help="one real 1 KB image file a job (loose files)"
    )
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    vault = args.workdir / f"vault-{args.jobs}{'-images' if args.images else ''}"
    if args.build_only:
        build(vault, args.jobs, args.images)
        return
    if not (vault / ".bench-ready").exists():
        print(f"building a vault of {args.jobs} jobs in {vault} …", flush=True)
        args.workdir.mkdir(parents=True, exist_ok=True)
        # In a child of its own: Linux keeps a process's peak RSS across exec, so building
        # here would inflate the figure of the gc child started next.
        subprocess.run(
            [sys.executable, __file__, "--build-only", "--jobs", str(args.jobs),
             "--workdir", str(args.workdir), *(["--images"] if args.images else [])],
            check=True,
        )  # fmt: skip
    _set_remote(vault, args.workdir / "remote", args.remote)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(vault)], env=env, capture_output=True, check=True
    )
    result = json.loads(out.stdout)
    print(
        f"gc --dry-run over {result['jobs']} jobs ({result['jobs'] * 5} references, "
        f"{result['tree_nodes']} tree nodes, {result['objects_seen']} object files): "
        f"{result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB, "
        f"marks {result['mark_mb']:.1f} MB{', copies guard' if result['guarded'] else ''}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
