#!/usr/bin/env python3
"""The list of forgotten jobs at scale: what a sync pays to honour it.

    python scripts/bench/bench_forgotten.py [--entries 100000] [--lookups 200000] [--runs 5]

Writes a list of ENTRIES forgotten jobs into a fresh plain and a fresh encrypted vault, then,
each in a child process (for its own peak RSS), times what a sync does — load the tokens,
then ask about LOOKUPS listed ids (half of them forgotten) — beside the anchor, a Python set
of the same ids read from a JSON list (what a naive list would cost), and what `forget
--list` does (the whole list, body opened). Prints best and median of RUNS, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "bench passphrase"

PROBE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from mjvault import Vault
from mjvault.integrity import exclusions
path, mode, lookups = sys.argv[2], sys.argv[3], int(sys.argv[4])
vault = Vault.open(path, passphrase=sys.argv[5] if sys.argv[5] else None)
def rss_kb():
    # Current, not peak: opening the vault (Argon2's 64 MiB) peaks above any list.
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1024
# RSS before and after the load alone: the ids asked about are made afterwards.
base = rss_kb()
started = time.perf_counter()
if mode == "tokens":
    forgotten = exclusions.load(vault)
elif mode == "set":
    forgotten = set(json.loads((vault.path / "ids.json").read_bytes()))
else:
    forgotten = exclusions.read(vault).entries
loaded = time.perf_counter()
grown = rss_kb() - base
ids = [f"{n:08d}-forgotten-job" for n in range(lookups)]
lookup_started = time.perf_counter()
hits = sum(1 for job_id in ids if job_id in forgotten)
done = time.perf_counter()
print(json.dumps({
    "load_s": loaded - started, "lookup_us": (done - lookup_started) / lookups * 1e6,
    "hits": hits, "rss_mb": grown / 1024,
}))
"""


def build(path: Path, entries: int, encrypted: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.integrity import exclusions

    # Every other id of the lookups is forgotten: ids 0, 2, 4, … up to 2 × entries.
    ids = [f"{n:08d}-forgotten-job" for n in range(0, 2 * entries, 2)]
    with Vault.init(path, encrypt=encrypted, passphrase=PASSPHRASE if encrypted else None) as v:
        listed = exclusions.ForgottenList(
            {i: exclusions.Entry(i, exclusions.now(), "job", ["nas"]) for i in ids}
        )
        exclusions.write(v, listed)
        (path / "ids.json").write_text(json.dumps(ids))
    print(
        f"{path.name}: list of {entries} entries, {(path / exclusions.LIST_FILE).stat().st_size / 1e6:.1f} MB"
    )


def measure(path: Path, mode: str, lookups: int, runs: int, encrypted: bool) -> None:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                PROBE,
                str(ROOT),
                str(path),
                mode,
                str(lookups),
                PASSPHRASE if encrypted else "",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
    load = [r["load_s"] for r in results]
    look = [r["lookup_us"] for r in results]
    rss = max(r["rss_mb"] for r in results)
    print(
        f"  {mode:<7} load best {min(load) * 1e3:7.1f} ms median {statistics.median(load) * 1e3:7.1f} ms"
        f" | lookup best {min(look):5.2f} µs median {statistics.median(look):5.2f} µs"
        f" | +RSS after load {rss:6.1f} MB | hits {results[0]['hits']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mjvault-bench-forgotten-") as tmp:
        for encrypted in (False, True):
            path = Path(tmp) / ("encrypted" if encrypted else "plain")
            build(path, args.entries, encrypted)
            for mode in ("tokens", "set", "full"):
                measure(path, mode, args.lookups, args.runs, encrypted)


if __name__ == "__main__":
    main()
