#!/usr/bin/env python3
"""``mjvault export --all``: time and peak RSS, first run and a second (resuming) run, beside
the anchor of copying the same object files with ``cp -r``.

    python scripts/bench/bench_export_all.py [--jobs 2000] [--image-kb 200] [--runs 3]
        [--workdir /tmp/mjvault-bench-export-all] [--encrypt]

Builds (once, cached) a vault of JOBS grid jobs with four distinct PNG-looking images of
IMAGE_KB each, then per run, in a child process each: a first export into an empty DIR, a
second into the same DIR (every file is there: hashed, none written), and ``cp -r`` of the
vault's ``objects/`` (the bytes any export must at least move). Prints best and median.
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
PASSPHRASE = "bench passphrase"

PROBE = """
import json, resource, sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.find.export_all import export_all
started = time.perf_counter()
with Vault.open(sys.argv[1], passphrase=sys.argv[3] or None) as vault:
    report = export_all(vault, Path(sys.argv[2]))
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "written": report.images_written + report.records_written,
    "kept": report.images_kept + report.records_kept,
    "mb": report.bytes_written / 1e6,
}))
"""


def build(path: Path, jobs: int, image_kb: int, encrypt: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.store.crypto import KdfParams

    kdf = KdfParams(iterations=1, lanes=1, memory_cost_kib=8 * 1024) if encrypt else None
    options = {"encrypt": True, "passphrase": PASSPHRASE, "kdf": kdf} if encrypt else {}
    with Vault.init(path, **options) as vault, vault.writer("bench") as writer:  # type: ignore[arg-type]
        for n in range(jobs):
            record = json.dumps(
                {
                    "id": f"{n:08d}-bench",
                    "enqueue_time": f"2024-{n % 12 + 1:02d}-01 00:00:00",
                    "type": "grid",
                    "full_command": f"bench prompt {n} --ar 1:1",
                    "prompt": f"bench prompt {n}",
                    "batch_size": 4,
                }
            ).encode()
            images = []
            for _ in range(4):
                body = os.urandom(image_kb * 1024)
                images.append(writer.put_media(b"\x89PNG\r\n\x1a\n" + body))
            writer.add_job(record, images)


def timed(command: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    took = time.perf_counter() - started
    return json.loads(out) if out.strip().startswith("{") else {"seconds": took}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--image-kb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-export-all"))
    parser.add_argument("--encrypt", action="store_true")
    args = parser.parse_args()
    kind = "enc" if args.encrypt else "plain"
    vault = args.workdir / f"vault-{kind}-{args.jobs}-{args.image_kb}"
    if not (vault / "config").exists():
        shutil.rmtree(vault, ignore_errors=True)
        build(vault, args.jobs, args.image_kb, args.encrypt)
    secret = PASSPHRASE if args.encrypt else ""
    results: dict[str, list[dict[str, float]]] = {"first": [], "again": [], "cp -r": []}
    for _ in range(args.runs):
        out = args.workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        probe = [sys.executable, "-c", PROBE, str(vault), str(out), secret]
        results["first"].append(timed(probe))
        results["again"].append(timed(probe))
        shutil.rmtree(out, ignore_errors=True)
        copy = args.workdir / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        results["cp -r"].append(timed(["cp", "-r", str(vault / "objects"), str(copy)]))
        shutil.rmtree(copy, ignore_errors=True)
    print(f"{args.jobs} jobs x 4 images of {args.image_kb} KB, {kind} vault")
    for name, runs in results.items():
        seconds = [r["seconds"] for r in runs]
        rss = max((r.get("peak_rss_mb", 0.0) for r in runs), default=0.0)
        print(
            f"  {name:<6} best {min(seconds):7.2f} s  median {statistics.median(seconds):7.2f} s"
            + (f"  peak RSS {rss:6.1f} MB" if rss else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
