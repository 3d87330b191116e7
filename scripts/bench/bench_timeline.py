#!/usr/bin/env python3
"""The scrubber's timeline (`mjvault.index.pages.timeline`) on bench_serve.py's index, against
the same function of another revision.

    python scripts/bench/bench_timeline.py INDEX [--size 500] [--runs 7] [--against REV]
        [--sealed]

INDEX: an index bench_serve.py built (``--workdir``/plain-N or sealed-N). ``--size``: jobs a
segment (50 at 100k jobs puts a boundary on as many days as 500 does at a million).
``--against``: a git revision whose ``mjvault/index/pages.py`` runs alternately with this
tree's, on the same index in the same process, checked to give the same segments. Prints
best and median milliseconds of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def pages_of(revision: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:mjvault/index/pages.py"],
        check=True,
        capture_output=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "pages_then.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("pages_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pages_then"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", default=None)
    parser.add_argument("--sealed", action="store_true")
    args = parser.parse_args()

    from mjvault.index import pages
    from mjvault.index.db import Index
    from mjvault.index.query import parse_query
    from mjvault.store.crypto import VaultKeys

    index = Index(args.index, VaultKeys(b"\x07" * 32) if args.sealed else None)
    variants: dict[str, Any] = {"this tree": pages}
    if args.against:
        variants = {args.against: pages_of(args.against), **variants}
    everything = parse_query("")

    def segments(module: Any) -> tuple[int, list[dict[str, object]]]:
        total, found = module.timeline(index, everything, sort="newest", size=args.size)
        return total, [(s.to_json() if hasattr(s, "to_json") else s.as_json()) for s in found]

    expected = segments(pages)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, module in variants.items():
            started = time.perf_counter()
            answer = segments(module)
            times[name].append((time.perf_counter() - started) * 1000)
            assert answer == expected, f"{name}: other segments"
    print(f"{expected[0]} jobs, {len(expected[1])} segments of {args.size}, {args.runs} runs:")
    for name, values in times.items():
        print(f"  {name:12} best {min(values):8.1f} ms  median {statistics.median(values):8.1f} ms")
    index.close()


if __name__ == "__main__":
    main()
