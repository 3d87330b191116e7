#!/usr/bin/env python3
"""`mjvault serve`'s JSON API at scale: what the page asks while it scrolls and searches.

    python scripts/bench/bench_serve.py [--jobs 100000] [--runs 5] [--requests 200]
        [--kind plain|sealed] [--workdir DIR] [--framework starlette|fastapi|both]

Builds (once per --workdir and --jobs) an index of bench_sealed_index.py's ``--jobs`` jobs,
then runs the server in its own process (uvicorn, as `mjvault serve` does) over that index
and asks it, over HTTP on 127.0.0.1 with one keep-alive client, ``--requests`` times each:

- the first page of the timeline (``/api/jobs?limit=200``, newest first);
- a page at a random scroll position (a random segment's cursor from ``/api/timeline``);
- a search with its facets (``/api/jobs?q=WORD`` then ``/api/facets?q=WORD``, a random
  word of the prompts each time);
- the timeline itself (first ask, then cached).

Each of ``--runs`` rounds is a fresh server process; best and median of the rounds' p50
and p95, and the server's peak RSS (VmHWM). ``--framework both`` serves the same handler
from FastAPI too: requests/s and p50 of the jobs endpoint side by side.

Also printed: what the same screen costs in requests and bytes here and as Immich's timeline
asks it (``GET /timeline/buckets`` then ``GET /timeline/bucket?timeBucket=…`` per month in
view, columnar JSON of every asset of the month; server/src/services/timeline.service.ts).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORDS = ["fox", "forest", "portrait", "city", "neon", "snow", "cat", "sunset", "robot", "ocean"]


def build(workdir: Path, kind: str, jobs: int) -> Path:
    from bench_sealed_index import summaries

    from mjvault.index.db import Index
    from mjvault.store.crypto import VaultKeys

    path = workdir / f"{kind}-{jobs}"
    done = path / "built"
    if done.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    index = Index(path, VaultKeys(b"\x07" * 32) if kind == "sealed" else None)
    started = time.perf_counter()
    index.apply(summaries(jobs), "0" * 64)
    index.close()
    done.write_text(f"{time.perf_counter() - started:.1f} s\n")
    return path


def serve(path: Path, kind: str, port: int, framework: str) -> None:
    """The server process: the API's browse routes over an index alone (no objects)."""
    import uvicorn

    from mjvault.index.db import Index
    from mjvault.serve.app import build as build_app
    from mjvault.serve.browse import jobs as jobs_handler
    from mjvault.serve.settings import ServeSettings, ServeState
    from mjvault.store.crypto import VaultKeys

    index = Index(path, VaultKeys(b"\x07" * 32) if kind == "sealed" else None)
    vault: Any = SimpleNamespace(
        index=index, id="bench", encrypted=kind == "sealed", path=path, close=index.close
    )
    state = ServeState(vault_root=path, settings=ServeSettings(port=port), vault=vault)
    if framework == "fastapi":
        from fastapi import FastAPI, Request

        api = FastAPI()
        endpoint = jobs_handler(state)

        def fastapi_jobs(request: Request) -> Any:
            return endpoint(request)

        # Resolved here: this module's annotations are strings, FastAPI reads them.
        fastapi_jobs.__annotations__ = {"request": Request, "return": Any}
        api.get("/api/jobs")(fastapi_jobs)

        app: Any = api
    else:
        app = build_app(state)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def one_round(path: Path, kind: str, requests: int, framework: str) -> dict[str, Any]:
    import httpx

    port = _port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(path),
            "--kind",
            kind,
            "--port",
            str(port),
            "--framework",
            framework,
        ],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, timeout=120, headers={"Host": "127.0.0.1"})
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/api/jobs", params={"limit": "1"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        rng = random.Random(7)
        out: dict[str, Any] = {}

        def timed(name: str, ask: Any) -> None:
            took = []
            size = 0
            for _ in range(requests):
                started = time.perf_counter()
                size = ask()
                took.append((time.perf_counter() - started) * 1000)
            out[name] = {
                "p50": _percentile(took, 0.5),
                "p95": _percentile(took, 0.95),
                "rps": 1000 * len(took) / sum(took),
                "bytes": size,
            }

        def first_page() -> int:
            answer = client.get("/api/jobs", params={"limit": "200"})
            assert answer.status_code == 200
            return len(answer.content)

        timed("first_page", first_page)
        if framework == "fastapi":
            out["rss_mb"] = _peak_rss_mb(server.pid)
            return out
        started = time.perf_counter()
        line = client.get("/api/timeline").json()
        out["timeline_first_ms"] = (time.perf_counter() - started) * 1000
        out["timeline_bytes"] = len(json.dumps(line))
        cursors = [s["cursor"] for s in line["segments"] if s["cursor"]]

        def scroll() -> int:
            answer = client.get("/api/jobs", params={"limit": "200", "after": rng.choice(cursors)})
            assert answer.status_code == 200
            return len(answer.content)

        timed("random_position", scroll)

        def search_with_facets() -> int:
            word = rng.choice(WORDS)
            a = client.get("/api/jobs", params={"q": word, "limit": "200"})
            b = client.get("/api/facets", params={"q": word})
            assert a.status_code == 200 and b.status_code == 200
            return len(a.content) + len(b.content)

        timed("search_facets", search_with_facets)
        timed("timeline_cached", lambda: len(client.get("/api/timeline").content))
        out["rss_mb"] = _peak_rss_mb(server.pid)
        out["segments"] = len(line["segments"])
        return out
    finally:
        server.terminate()
        server.wait()


def thumbnails(workdir: Path, requests: int, runs: int) -> None:
    """A kept thumbnail served: a small real vault whose thumbnails the gallery made (the
    cost is a table lookup and an object read, whatever the number of jobs)."""
    import httpx

    from mjvault import Vault
    from mjvault.find.gallery import build_gallery
    from mjvault.testing.gallerypage import build_many

    root = workdir / "thumbs-vault"
    if not (root / "built").exists():
        shutil.rmtree(root, ignore_errors=True)
        build_many(root, 2000, pool_size=64)
        vault = Vault.open(root)
        try:
            build_gallery(vault, workdir / "thumbs-gallery", thumb_size=256)
            ids = sorted({i for s in vault.current_index().iter_summaries() for i in s.images if i})
        finally:
            vault.close()
        (root / "built").write_text("\n".join(ids))
    ids = (root / "built").read_text().split()
    results = []
    for _ in range(runs):
        port = _port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mjvault", "--vault", str(root), "serve", "--port", str(port)],
            stderr=subprocess.DEVNULL,
        )
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/api/info")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None
                    time.sleep(0.1)
            rng = random.Random(3)
            took = []
            for _ in range(requests):
                object_id = rng.choice(ids)
                started = time.perf_counter()
                answer = client.get(f"/thumb/{object_id}", params={"size": "s"})
                took.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            results.append((_percentile(took, 0.5), _percentile(took, 0.95)))
        finally:
            server.terminate()
            server.wait()
    p50 = [r[0] for r in results]
    print(
        f"\nkept thumbnail (/thumb/ID?size=s, {len(ids)} images): p50 best {min(p50):.2f} "
        f"median {statistics.median(p50):.2f} ms, p95 best {min(r[1] for r in results):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--kind", choices=["plain", "sealed"], default="plain")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-serve"))
    parser.add_argument(
        "--framework", choices=["starlette", "fastapi", "both"], default="starlette"
    )
    parser.add_argument("--thumbs", action="store_true", help="Also a kept thumbnail's p50.")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.kind, args.port, args.framework)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = build(args.workdir, args.kind, args.jobs)
    print(
        f"index of {args.jobs} jobs ({args.kind}) at {path}: built in {(path / 'built').read_text().strip()}"
    )
    frameworks = ["starlette", "fastapi"] if args.framework == "both" else [args.framework]
    for framework in frameworks:
        rounds = [one_round(path, args.kind, args.requests, framework) for _ in range(args.runs)]
        print(f"\n{framework}, {args.runs} rounds of {args.requests} requests each (ms):")
        for name in ("first_page", "random_position", "search_facets", "timeline_cached"):
            if name not in rounds[0]:
                continue
            p50 = [r[name]["p50"] for r in rounds]
            p95 = [r[name]["p95"] for r in rounds]
            rps = [r[name]["rps"] for r in rounds]
            print(
                f"  {name:<16} p50 best {min(p50):7.2f} median {statistics.median(p50):7.2f}"
                f" | p95 best {min(p95):7.2f} median {statistics.median(p95):7.2f}"
                f" | req/s best {max(rps):6.0f} median {statistics.median(rps):6.0f}"
                f" | {rounds[0][name]['bytes']} bytes"
            )
        if "timeline_first_ms" in rounds[0]:
            first = [r["timeline_first_ms"] for r in rounds]
            print(
                f"  timeline, first ask: best {min(first):.0f} median {statistics.median(first):.0f}"
                f" ms, {rounds[0]['segments']} segments, {rounds[0]['timeline_bytes']} bytes"
            )
        rss = [r["rss_mb"] for r in rounds]
        print(f"  server peak RSS: best {min(rss):.0f} MB, median {statistics.median(rss):.0f} MB")
    if "first_page" in rounds[0] and args.framework != "fastapi":
        screen(rounds[0], args.jobs)
    if args.thumbs:
        thumbnails(args.workdir, args.requests, args.runs)
    sys.stdout.flush()


# Immich's /timeline/bucket answer per asset, as columnar JSON (TimeBucketAssetResponseDto,
# server/src/dtos/time-bucket.dto.ts): id and ownerId (UUIDs, 39 bytes each with quotes and
# comma), ratio (~10), isFavorite (6), visibility (11), isTrashed (6), isImage (5), thumbhash
# (~39), fileCreatedAt (27), localOffsetHours (2), duration, stack, projectionType,
# livePhotoVideoId (null: 5 each), city and country (~18 together).
IMMICH_BYTES_PER_ASSET = 39 + 39 + 10 + 6 + 11 + 6 + 5 + 39 + 27 + 2 + 4 * 5 + 18
ARCHIVE_MONTHS = 36  # the generated archive's span (Account.stream)
IMAGES_PER_JOB = 3.1  # the generated archive's images per job (grids of 4, upscales of 1)


def screen(measured: dict[str, Any], jobs: int) -> None:
    """A scrubber jump to one screen of tiles, here and as Immich's timeline asks it."""
    page_bytes = measured["random_position"]["bytes"]
    assets_per_month = jobs * IMAGES_PER_JOB / ARCHIVE_MONTHS
    bucket = int(assets_per_month * IMMICH_BYTES_PER_ASSET)
    print("\nA scrubber jump to one screen of tiles (requests, bytes):")
    print(f"  mjvault: 1 request  /api/jobs?after=CURSOR&limit=200: {page_bytes} bytes")
    print(
        f"  Immich : 1 request  /timeline/bucket?timeBucket=MONTH (every asset of the month, "
        f"{assets_per_month:.0f}): about {bucket} bytes; 2 when the screen spans two months"
    )


if __name__ == "__main__":
    main()
