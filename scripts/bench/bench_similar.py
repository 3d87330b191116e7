#!/usr/bin/env python3
"""Which perceptual hash finds near-duplicates: recall and precision per distance, and cost.

    python scripts/bench/bench_similar.py [--sources 200] [--side 512] [--timing 40] [--runs 3]
                                          [--gradients 50] [--store 3000000]
                                          [--backfill 50]

On the generated set of ``mjvault/testing/imageset.py`` (each source with its resizes,
re-encodings, crops, brightness changes and grid quadrant; distinct sources as negatives),
for imagehash's pHash and dHash (64 bits), PDQ (``pdqhash``, 256 bits, when installed) and
mjvault's own pHash (``mjvault/similarity/hashing.py``: imagehash's bits without SciPy, on
a box-reduced image): a table of recall and precision at each distance, the smallest
distance reaching recall >= 0.95 with precision >= 0.99, and the time to hash one image
(``--timing`` PNGs of 1024 px, from bytes: decode included) beside a bare decode.

``--store N``: a HashStore (``cache/hashes.sqlite``) of N rows, plain and sealed, built in a
temp folder (removed after); a child process streams every hash (``blocks()``, words and
parts) five times: seconds per pass, best and median, and the child's peak RSS beside its
RSS before the first pass.

``--backfill JOBS``: a generated archive of JOBS jobs (large images) imported without
thumbnails, then ``mjvault thumbs`` three ways in alternating rounds, each from empty tables
(``--no-hashes``: the thumbnails alone, as before hashes; the default: thumbnails and hashes
from one decode; ``--hashes-only``): wall seconds best and median, peak RSS (each a child).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mjvault.similarity import hashing  # noqa: E402
from mjvault.testing.imageset import quality, source_image, variants  # noqa: E402

Hasher = Callable[[Image.Image], bytes]


def _imagehash(kind: str) -> Hasher | None:
    try:
        import imagehash
    except ImportError:
        return None
    fn = imagehash.phash if kind == "phash" else imagehash.dhash
    return lambda image: np.packbits(fn(image).hash.ravel()).tobytes()


def _pdq() -> Hasher | None:
    try:
        import pdqhash
    except ImportError:
        return None

    def pdq(image: Image.Image) -> bytes:
        bits, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
        return np.packbits(bits.astype(np.uint8)).tobytes()

    return pdq


def _ours(image: Image.Image) -> bytes:
    return hashing.hashes_of_image(image, grid=False)[0]


def hashers() -> dict[str, Hasher]:
    found: dict[str, Hasher | None] = {
        "phash64 (imagehash)": _imagehash("phash"),
        "dhash64 (imagehash)": _imagehash("dhash"),
        "pdq256 (pdqhash)": _pdq(),
        "phash64 (mjvault)": _ours,
    }
    for name, fn in found.items():
        if fn is None:
            print(f"{name}: not installed, left out")
    return {name: fn for name, fn in found.items() if fn is not None}


def _by_transform(
    names: list[str], sources: list[int], originals: list[bool], words: np.ndarray
) -> dict[str, list[int]]:
    first = {
        s: i for i, (s, o) in reversed(list(enumerate(zip(sources, originals, strict=True)))) if o
    }
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if not originals[i]:
            d = np.bitwise_count(np.bitwise_xor(words[i], words[first[sources[i]]])).sum()
            out.setdefault(name, []).append(int(d))
    return out


def measure_quality(
    count: int, side: int, algos: dict[str, Hasher], family: int | None = None
) -> None:
    sources: list[int] = []
    originals: list[bool] = []
    names: list[str] = []
    hashes: dict[str, list[bytes]] = {name: [] for name in algos}
    for variant in variants(count, side, family=family):
        image = variant.image
        if variant.grid_part:
            image = hashing.quadrants(image)[variant.grid_part - 1]
        sources.append(variant.source)
        originals.append(variant.name == "original")
        names.append(variant.name)
        for name, fn in algos.items():
            hashes[name].append(fn(image))
    kind = "bare gradients" if family == 5 else "mixed families"
    print(f"\n{count} sources ({kind}) at {side} px, {len(sources)} images")
    for name, values in hashes.items():
        words = np.frombuffer(b"".join(values), dtype=">u8").astype(np.uint64)
        words = words.reshape(len(values), -1)
        q = quality(sources, originals, words)
        bits = words.shape[1] * 64
        print(f"\n{name}: {q.total_positives} positive pairs, {q.total_negatives} negative")
        print(f"  {'dist':>4}  {'recall':>7}  {'precision':>9}  {'false pairs':>11}")
        step = 1 if bits == 64 else 4
        chosen = None
        for d in range(0, bits // 2 + 1, step):
            recall, precision = q.recall(d), q.precision(d)
            if recall >= 0.95 and precision >= 0.99 and chosen is None:
                chosen = d
            if d <= (24 if bits == 64 else 96):
                print(f"  {d:>4}  {recall:>7.4f}  {precision:>9.4f}  {int(q.negatives[d]):>11}")
        ok = [d for d in range(bits + 1) if q.recall(d) >= 0.95 and q.precision(d) >= 0.99]
        by_name = _by_transform(names, sources, originals, words)
        print("  distance to the source, per transformation: median / max")
        print("   " + ", ".join(f"{k} {int(np.median(v))}/{max(v)}" for k, v in by_name.items()))
        span = f"{ok[0]}..{ok[-1]}" if ok else "none"
        print(f"  distances with recall >= 0.95 and precision >= 0.99: {span}")


def measure_time(count: int, runs: int, algos: dict[str, Hasher]) -> None:
    blobs = []
    for n in range(count):
        out = io.BytesIO()
        source_image(10_000 + n, 256).resize((1024, 1024), Image.Resampling.BICUBIC).save(
            out, "PNG"
        )
        blobs.append(out.getvalue())

    def decode(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def timed(fn: Callable[[bytes], object]) -> list[float]:
        results = []
        for _ in range(runs):
            start = time.perf_counter()
            for blob in blobs:
                fn(blob)
            results.append((time.perf_counter() - start) / len(blobs) * 1000)
        return results

    print(f"\nms per 1024 px PNG, from bytes ({count} images, {runs} runs): best / median")
    rows: dict[str, list[float]] = {"decode only": timed(decode)}
    for name, fn in algos.items():
        rows[name] = timed(lambda data, fn=fn: fn(decode(data)))  # type: ignore[misc]
    rows["phash64 (mjvault) hashes_of_bytes"] = timed(hashing.hashes_of_bytes)
    rows["  same, as a grid (5 hashes)"] = timed(
        lambda data: hashing.hashes_of_bytes(data, grid=True)
    )
    for name, values in rows.items():
        print(f"  {name:<36} {min(values):7.2f} / {statistics.median(values):7.2f}")


def _high_water_kib() -> int:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which a child
    inherits from the bench that forked it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _stream(path: str, sealed_key: str, runs: int) -> None:
    """The child: every hash streamed ``runs`` times."""
    from mjvault.similarity.store import HashStore
    from mjvault.store.crypto import VaultKeys

    keys = VaultKeys(bytes.fromhex(sealed_key)) if sealed_key else None
    before = _high_water_kib()
    times = []
    with HashStore(path, keys, False) as store:
        for _ in range(runs):
            started = time.perf_counter()
            count = 0
            for block in store.blocks():
                count += len(block.parts)
            times.append(time.perf_counter() - started)
    peak = _high_water_kib()
    print(f"{count} {min(times)} {statistics.median(times)} {before} {peak}")


def measure_store(rows: int, runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mjvault-bench-hashes-"))
    try:
        print(f"\nHashStore of {rows} rows: one pass over every hash (blocks())")
        for sealed in (False, True):
            key = os.urandom(64)
            path = folder / f"hashes-{sealed}.sqlite"
            from mjvault.similarity.store import HashStore
            from mjvault.store.crypto import VaultKeys

            started = time.perf_counter()
            keys = VaultKeys(key) if sealed else None
            rng = np.random.default_rng(1)
            with HashStore(path, keys, True) as store:
                done = 0
                while done < rows:
                    n = min(100_000, rows - done)
                    values = rng.integers(0, 2**63, n, dtype=np.int64).astype(">u8").tobytes()
                    for i in range(n):
                        store.put(f"{done + i:064x}", [values[i * 8 : i * 8 + 8]])
                    store.commit()
                    done += n
            built = time.perf_counter() - started
            size = path.stat().st_size
            child = subprocess.run(
                [sys.executable, __file__, "--stream", str(path), "--key",
                 key.hex() if sealed else "", "--runs", str(max(runs, 5))],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            count, best, median, before, peak = child.stdout.split()
            name = "sealed" if sealed else "plain"
            print(
                f"  {name:<7} {int(count)} rows: best {float(best) * 1000:6.1f} ms, median "
                f"{float(median) * 1000:6.1f} ms; RSS {int(before) / 1024:.0f} MB before, peak "
                f"{int(peak) / 1024:.0f} MB; file {size / 2**20:.0f} MB, built in {built:.0f} s"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_backfill(jobs: int, runs: int) -> None:
    from mjvault.testing.archive import write_sample_archive

    folder = Path(tempfile.mkdtemp(prefix="mjvault-bench-backfill-"))
    try:
        archive, vault = folder / "archive", folder / "vault"
        write_sample_archive(archive, jobs=jobs, seed=7, large=True)
        cli = [sys.executable, "-m", "mjvault"]
        subprocess.run([*cli, "init", str(vault)], check=True, capture_output=True)
        subprocess.run(
            [*cli, "--vault", str(vault), "import", "--no-thumbnails", str(archive)],
            check=True,
            capture_output=True,
        )
        ways = {"--no-hashes": ["--no-hashes"], "(default)": [], "--hashes-only": ["--hashes-only"]}
        seconds: dict[str, list[float]] = {k: [] for k in ways}
        rss: dict[str, list[int]] = {k: [] for k in ways}
        out: dict[str, str] = {}
        for _ in range(runs):
            for name, extra in ways.items():
                for table in ("thumbs.sqlite", "hashes.sqlite"):
                    for suffix in ("", "-wal", "-shm"):
                        (vault / "cache" / f"{table}{suffix}").unlink(missing_ok=True)
                started = time.perf_counter()
                # Through /usr/bin/time: a child forked from this bench would inherit its
                # peak RSS (Linux keeps ru_maxrss across exec); time's own is tiny.
                child = subprocess.run(
                    ["/usr/bin/time", "-f", "%M", *cli, "--vault", str(vault), "--json",
                     "thumbs", *extra],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                seconds[name].append(time.perf_counter() - started)
                out[name] = child.stdout
                rss[name].append(int(child.stderr.strip().splitlines()[-1]))
        print(f"\nmjvault thumbs over {jobs} jobs' images ({runs} alternating rounds)")
        for name in ways:
            print(
                f"  {name:<14} best {min(seconds[name]):6.2f} s  median "
                f"{statistics.median(seconds[name]):6.2f} s  peak RSS "
                f"{max(rss[name]) / 1024:6.1f} MB  {out[name].strip()[:160]}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--timing", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--gradients", type=int, default=0, help="also this many bare gradients, apart"
    )
    parser.add_argument("--store", type=int, default=0, help="also a store of this many rows")
    parser.add_argument("--backfill", type=int, default=0, help="also `thumbs` over N jobs")
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream:
        _stream(args.stream, args.key, args.runs)
        return
    algos = hashers()
    if args.sources:
        measure_quality(args.sources, args.side, algos)
    if args.gradients:
        measure_quality(args.gradients, args.side, algos, family=5)
    if args.timing:
        measure_time(args.timing, args.runs, algos)
    if args.store:
        measure_store(args.store, args.runs)
    if args.backfill:
        measure_backfill(args.backfill, args.runs)


if __name__ == "__main__":
    main()
