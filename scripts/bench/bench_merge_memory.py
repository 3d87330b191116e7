#!/usr/bin/env python3
"""Peak Python heap of a writer's end-of-run merge (mjvault/runpacks.py), traced in-process.

    python scripts/bench/bench_merge_memory.py [--jobs 30000] [--pack-entries N]

Writes JOBS jobs (records only, no images) in one writer run to a fresh vault, with the
merge wrapped in tracemalloc, and prints the merge's peak traced bytes, its time and the
packs in and out. ``--pack-entries`` lowers ``MERGED_PACK_ENTRIES`` so that a small vault
closes as many merged packs as a large one does (a 1M-job sync closes ~16 of 65,536).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import mjvault.runpacks
import mjvault.writer
from mjvault import Vault


def record(n: int) -> bytes:
    doc = {
        "id": f"job-{n:07d}",
        "enqueue_time": "2023-05-26 07:38:42.209596",
        "type": "grid",
        "full_command": f"a red fox number {n} --ar 16:9 --v 6",
        "prompt": f"a red fox number {n}",
        "batch_size": 4,
    }
    return json.dumps(doc).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30000)
    parser.add_argument("--pack-entries", type=int, default=None)
    args = parser.parse_args()
    if args.pack_entries:
        mjvault.runpacks.MERGED_PACK_ENTRIES = args.pack_entries
    measured: dict[str, Any] = {}
    merge = mjvault.runpacks.merge_run_packs

    def traced_merge(*a: Any, **kw: Any) -> Any:
        tracemalloc.start()
        started = time.process_time()
        try:
            report = merge(*a, **kw)
        finally:
            measured["cpu_s"] = round(time.process_time() - started, 2)
            measured["peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 1e6, 2)
            tracemalloc.stop()
        measured.update(packs_before=report.packs_before, packs_after=report.packs_after)
        measured.update(records=report.records_kept, nodes=report.nodes_kept)
        return report

    mjvault.writer.merge_run_packs = traced_merge  # type: ignore[assignment]
    with (
        tempfile.TemporaryDirectory(prefix="mjvault-merge-") as work,
        Vault.init(Path(work) / "vault") as vault,
        vault.writer("bench") as writer,
    ):
        for n in range(args.jobs):
            writer.add_job(record(n), [None])
    print(json.dumps({"jobs": args.jobs, "pack_entries": args.pack_entries} | measured))


if __name__ == "__main__":
    main()
