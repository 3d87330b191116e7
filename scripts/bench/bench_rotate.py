#!/usr/bin/env python3
"""Key rotation benchmark: `mjvault key rotate` of an encrypted vault beside ``cp -r`` of the
same vault (the anchor: every byte read and written once), each a child process with its own
peak RSS.

    python scripts/bench/bench_rotate.py [--jobs 2000] [--image-kb 100] [--big-mb 256]
        [--runs 3] [--code DIR] [--workdir /tmp/mjvault-bench-rotate]

An encrypted vault is built once: ``--jobs`` jobs, each a record (packed) and an image of
random bytes (loose), and one ``--big-mb`` video (streamed: memory must not grow with it).
Each run, alternating so drift on a shared machine hits both alike: ``cp -r`` of the vault to
a new folder then ``sync`` (the copy removed after), and ``mjvault key rotate`` of the vault
(every run rotates again: the same work each time). MB/s of the vault's size and peak RSS,
best and median. The rotation's figure includes opening the vault and wrapping the new key
(Argon2id at its real cost, 64 MiB), the check under the new secret, and the index rebuild.
``--code`` runs the mjvault of another checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "bench passphrase"

BUILD = """
import json, os, sys
from pathlib import Path
from mjvault import Vault

root, jobs, image_kb, big = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
with Vault.init(root, encrypt=True, passphrase=sys.argv[5]) as vault:
    with vault.writer("bench") as writer:
        for n in range(jobs):
            record = {"id": f"job-{n:06d}", "prompt": f"a red fox number {n} in the snow",
                      "full_command": f"a red fox number {n} --ar 3:2", "type": "grid"}
            image = b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(image_kb * 1024)
            writer.add_job(json.dumps(record).encode(), [writer.put_media(image)])
        video = writer.put_media_file(big)
        writer.add_job(b'{"id": "job-video", "prompt": "a long video"}', [video])
"""


def run_child(cmd: list[str], env: dict[str, str], work: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of this child alone."""
    from mjvault.testing.rusage import launched, read_usage

    result = work / "rusage.json"
    started = time.perf_counter()
    done = subprocess.run(launched(cmd, result), env=env, capture_output=True, cwd=env["CODE"])
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:5])} failed ({done.returncode}): {done.stderr.decode()[-800:]}")
    return elapsed, read_usage(result).peak_rss_kib / 1024


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--image-kb", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", type=Path, default=ROOT, help="run the mjvault of this checkout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-rotate"))
    args = parser.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    env |= {"CODE": str(args.code), "MJVAULT_PASSPHRASE": PASSPHRASE}
    big = work / "video.mp4"
    with open(big, "wb") as out:
        out.write(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
        for _ in range(args.big_mb):
            out.write(os.urandom(1024 * 1024))
    vault = work / "vault"
    subprocess.run(
        [sys.executable, "-c", BUILD, str(vault), str(args.jobs), str(args.image_kb), str(big),
         PASSPHRASE],
        check=True, cwd=args.code, env=env,
    )  # fmt: skip
    big.unlink()
    size_mb = tree_bytes(vault) / 1e6
    print(f"vault: {size_mb:.0f} MB, {args.jobs} jobs of {args.image_kb} KB + {args.big_mb} MB")

    copy_cmd = ["sh", "-c", f"cp -r {vault} {work / 'copy'} && sync"]
    rotate_cmd = [sys.executable, "-m", "mjvault", "--vault", str(vault), "key", "rotate"]
    results: dict[str, list[tuple[float, float]]] = {"cp -r": [], "key rotate": []}
    for _ in range(args.runs):
        subprocess.run(["sync"], check=True)
        results["cp -r"].append(run_child(copy_cmd, env, work))
        shutil.rmtree(work / "copy")
        subprocess.run(["sync"], check=True)
        results["key rotate"].append(run_child(rotate_cmd, env, work))
    for name, runs in results.items():
        rates = [size_mb / seconds for seconds, _ in runs]
        rss = [peak for _, peak in runs]
        print(
            f"{name:>10}: MB/s best {max(rates):6.1f} median {statistics.median(rates):6.1f}"
            f"   seconds best {min(s for s, _ in runs):6.2f}"
            f"   peak RSS MB best {min(rss):6.1f} median {statistics.median(rss):6.1f}"
        )


if __name__ == "__main__":
    main()
