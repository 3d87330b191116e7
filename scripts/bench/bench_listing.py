"""A full listing with and without reading the next page ahead (``sync --full``'s listing).

    python scripts/bench/bench_listing.py --jobs 100000 [--runs 5]

The bundled server with a scaled account runs in its own process (as in bench_scale.py); the
real client lists every job, walking each page as ``sync`` does (each job's id looked at),
alternating read-ahead off and on, run by run. Prints wall time, the client's CPU and the
server's CPU per run, then best and median of each. Read-ahead can at best bring the wall
time down to the longer of the two CPU times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from bench_scale import Server  # noqa: E402

from mjvault.sources.midjourney import ClientSettings, MidjourneyClient  # noqa: E402


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def list_all(settings: ClientSettings, read_ahead: bool) -> int:
    with MidjourneyClient(settings) as client:
        return sum(1 for job in client.list_jobs(read_ahead=read_ahead) if job.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    port_file = Path(f"/tmp/bench-listing-{args.jobs}.port")
    port_file.unlink(missing_ok=True)
    server = Server(args.jobs, 1000, port_file)
    try:
        env = server.settings
        settings = ClientSettings(
            web_base=env["MJVAULT_WEB_BASE"],
            cdn_base=env["MJVAULT_CDN_BASE"],
            token=env["MIDJOURNEY_SESSION_TOKEN"],
            user_id=env["MIDJOURNEY_USER_ID"],
            api="v3",
            max_rps=5000.0,
        )
        rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        print(f"{args.jobs:,} jobs; wall / client CPU / server CPU, seconds")
        for run in range(args.runs):
            for read_ahead in (False, True):
                server_before = process_cpu(server.process.pid)
                cpu_before, started = time.process_time(), time.perf_counter()
                listed = list_all(settings, read_ahead)
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu_before
                server_cpu = process_cpu(server.process.pid) - server_before
                rows[read_ahead].append((wall, cpu, server_cpu))
                label = "read-ahead" if read_ahead else "one by one"
                print(f"run {run + 1} {label:10}  {wall:7.2f} {cpu:7.2f} {server_cpu:7.2f}"
                      f"  ({listed:,} jobs)", flush=True)  # fmt: skip
        for read_ahead, figures in rows.items():
            walls = [w for w, _, _ in figures]
            label = "read-ahead" if read_ahead else "one by one"
            print(f"{label:10}  wall best {min(walls):.2f} s, median {statistics.median(walls):.2f} s;"
                  f" client CPU median {statistics.median(c for _, c, _ in figures):.2f} s;"
                  f" server CPU median {statistics.median(s for _, _, s in figures):.2f} s")  # fmt: skip
    finally:
        server.stop()
        port_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
