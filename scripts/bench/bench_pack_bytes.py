#!/usr/bin/env python3
"""What a vault's packs hold, per job: records, leaves (by version), inner nodes, trailers.

    python scripts/bench/bench_pack_bytes.py VAULT --jobs N [--levels 3 9 11 15] [--sample 10000]

Reads every entry of every pack of the (plain) vault at VAULT and splits the pack files'
bytes by what they hold, divided by N jobs. With ``--levels`` it also compresses a sample of
the records again against the vault's dictionary at each zstd level, and prints their mean
framed size and the CPU time each took (best of 3): what choosing another level would
save and cost. Read-only: the vault is not changed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import msgpack
import zstandard

from mjvault.store.codec import Dictionary, unframe_plain
from mjvault.store.packfile import iter_entry_bytes, read_trailer_of

FRAME_HEAD = 6  # MJVO, version, encoding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("vault", type=Path)
    parser.add_argument("--jobs", type=int, required=True, help="divide by this many jobs")
    parser.add_argument("--levels", type=int, nargs="*", default=[])
    parser.add_argument("--sample", type=int, default=10_000, help="records to compress again")
    args = parser.parse_args()

    parts: dict[str, int] = {}
    counts: dict[str, int] = {}
    records: list[bytes] = []
    dictionaries: dict[str, Dictionary] = {}
    packs = sorted((args.vault / "packs").iterdir())
    for path in packs:
        trailer = read_trailer_of(str(path))
        version = path.read_bytes()[4]
        size = path.stat().st_size
        parts[f"trailers, headers (pack v{version})"] = (
            parts.get(f"trailers, headers (pack v{version})", 0) + size - trailer.data_end + 6
        )
        dictionary = None
        if trailer.dictionary_id:
            found = dictionaries.get(trailer.dictionary_id)
            if found is None:
                oid = trailer.dictionary_id
                raw = (args.vault / "objects" / oid[:2] / oid).read_bytes()
                found = dictionaries[oid] = Dictionary(oid, unframe_plain(raw))
            dictionary = found
        fd = os.open(path, os.O_RDONLY)
        try:
            for _, data in iter_entry_bytes(fd, trailer):
                plaintext = unframe_plain(data, dictionary)
                doc = msgpack.unpackb(plaintext)
                kind = doc.get("t")
                if kind == "leaf":
                    kind = f"leaves (version {doc['v']})"
                elif kind == "node":
                    kind = "inner nodes"
                elif kind == "record":
                    kind = "records"
                    if len(records) < args.sample:
                        records.append(plaintext)
                parts[kind] = parts.get(kind, 0) + len(data)
                counts[kind] = counts.get(kind, 0) + 1
        finally:
            os.close(fd)
    total = sum(parts.values())
    print(f"{len(packs)} packs, {total / 1e6:.2f} MB: {total / args.jobs:.1f} B a job")
    for kind, size in sorted(parts.items()):
        count = counts.get(kind)
        each = f", {size / count:.1f} B each ({count} of them)" if count else ""
        print(f"  {kind:28} {size / args.jobs:8.1f} B a job{each}")

    if args.levels and records and dictionaries:
        content = next(iter(dictionaries.values())).content
        print(f"{len(records)} records compressed again against the vault's dictionary:")
        for level in args.levels:
            digested = zstandard.ZstdCompressionDict(content)
            digested.precompute_compress(level=level)
            compressor = zstandard.ZstdCompressor(
                level=level, dict_data=digested, write_dict_id=False
            )
            times = []
            for _ in range(3):
                started = time.process_time()
                out = [compressor.compress(r) for r in records]
                times.append(time.process_time() - started)
            framed = statistics.mean(len(o) for o in out) + FRAME_HEAD
            print(
                f"  level {level:2}: {framed:6.1f} B framed, {min(times) / len(records) * 1e6:5.1f} µs each"
            )


if __name__ == "__main__":
    main()
