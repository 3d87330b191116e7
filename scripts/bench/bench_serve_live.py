#!/usr/bin/env python3
"""`mjvault serve`'s batch export: a streamed zip and CSV over HTTP, beside the same work
without the server, and the server's peak RSS.

    python scripts/bench/bench_serve_live.py [--jobs 500] [--image-kb 100] [--runs 3]
        [--workdir /tmp/mjvault-bench-serve-live]

Builds (once, cached) a vault of JOBS grid jobs with four distinct images of IMAGE_KB each,
starts `mjvault serve` in a child process, then per run: ``POST /api/export`` of every job as
a zip (time to the first byte and to the last), the anchor of writing the same zip with the
same function in a child process to /dev/null (what the export costs without HTTP and the
pipe between the writer thread and the response), and the CSV export over HTTP beside
`mjvault export --format csv` to /dev/null. Prints best and median, and the server's resident
memory at start and at its peak (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from bench_export_all import build  # noqa: E402  (the same vault shape)

ANCHOR = """
import json, sys, time
from mjvault import Vault
from mjvault.serve.batch import Selection, write_zip
class Null:
    def __init__(self): self.n = 0
    def write(self, b): self.n += len(b); return len(b)
    def flush(self): pass
started = time.perf_counter()
out = Null()
with Vault.open(sys.argv[1]) as vault:
    write_zip(vault, Selection(query="").job_ids(vault), out)
print(json.dumps({"seconds": time.perf_counter() - started, "mb": out.n / 1e6}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def download(client: httpx.Client, csrf: str, fmt: str) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    size = 0
    body = {"selection": {"query": ""}, "format": fmt}
    with client.stream("POST", "/api/export", json=body, headers={"X-CSRF-Token": csrf}) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    return {"seconds": time.perf_counter() - started, "first": first or 0.0, "mb": size / 1e6}


def child(args: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    took = time.perf_counter() - started
    return json.loads(out) if out.strip().startswith("{") else {"seconds": took}


def summary(name: str, runs: list[dict[str, float]], key: str = "seconds") -> str:
    values = [r[key] for r in runs]
    mb = runs[0].get("mb", 0.0)
    rate = f", {mb / min(values):.0f} MB/s best" if mb > 1 and key == "seconds" else ""
    return f"{name:<34} best {min(values):7.3f} s  median {statistics.median(values):7.3f} s{rate}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--image-kb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-serve-live"))
    args = parser.parse_args()
    vault = args.workdir / f"vault-{args.jobs}-{args.image_kb}"
    if not (vault / "config").exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        build(vault, args.jobs, args.image_kb, False)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mjvault", "--vault", str(vault), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        deadline = time.monotonic() + 60
        while True:
            try:
                csrf = client.get("/api/info").json()["csrf"]
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        started_rss = memory_mb(server.pid, "VmRSS")
        zips, anchors, csvs, clis = [], [], [], []
        for _ in range(args.runs):
            zips.append(download(client, csrf, "zip"))
            anchors.append(child([sys.executable, "-c", ANCHOR, str(vault)]))
            csvs.append(download(client, csrf, "csv"))
            cli = [sys.executable, "-m", "mjvault", "--vault", str(vault), "export"]
            clis.append(child([*cli, "--format", "csv", "-o", "/dev/null"]))
        peak = memory_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"vault: {args.jobs} jobs, {args.jobs * 4} images of {args.image_kb} KB; {args.runs} runs"
    )
    print(summary("zip over HTTP (POST /api/export)", zips))
    print(summary("  first byte", zips, "first"))
    print(summary("zip, same function, no server", anchors))
    print(summary("CSV over HTTP", csvs))
    print(summary("CSV, mjvault export (CLI)", clis))
    print(f"server RSS: {started_rss:.0f} MB after start, {peak:.0f} MB peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
