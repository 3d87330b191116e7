#!/usr/bin/env python3
"""How long `mjvault serve` takes to stop on Ctrl-C with pages open (event streams).

    python scripts/bench/bench_serve_stop.py [--runs 5] [--streams 0 1 3]
        [--workdir /tmp/mjvault-bench-serve-stop]

Per run and per number of open `/api/events` streams: a server in a child process (the app
of `mjvault serve` on an empty vault, its grace period of 5 s), the streams opened and their
first event read, then SIGINT; the time from the signal to the child's exit. Two servers:
``uvicorn`` is `uvicorn.Server` as `uvicorn.run` runs it (what `mjvault serve` ran before),
``mjvault`` is `mjvault.serve.app.Server` (which tells the app at once that it is stopping).
Prints best and median per case, and the child's peak RSS (VmHWM, read just before the signal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

CHILD = """
import contextlib, socket, sys, uvicorn
from pathlib import Path
from mjvault.serve import ServeSettings, create_app
from mjvault.serve.app import Server
app = create_app(Path(sys.argv[1]), ServeSettings())
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error",
                        timeout_graceful_shutdown=5)
server = Server(config, app.state.serve) if sys.argv[3] == "mjvault" else uvicorn.Server(config)
with contextlib.suppress(KeyboardInterrupt):
    server.run()
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hwm(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _read(base: str, ready: threading.Event) -> None:
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=60)) as client,
        client.stream("GET", "/api/events") as response,
    ):
        for line in response.iter_lines():
            if line.startswith("event: "):
                ready.set()


def one(vault: Path, kind: str, streams: int) -> tuple[float, float]:
    port = _port()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(vault), str(port), kind],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/api/info", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        readers = []
        for _ in range(streams):
            ready = threading.Event()
            thread = threading.Thread(target=_read, args=(base, ready), daemon=True)
            thread.start()
            readers.append((thread, ready))
        for _, ready in readers:
            if not ready.wait(10):
                raise RuntimeError("a stream sent nothing")
        rss = _hwm(child.pid)
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(60)
        took = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"exit {child.returncode}: {child.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    return took, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-serve-stop"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    vault = args.workdir / "vault"
    subprocess.run(
        [sys.executable, "-m", "mjvault", "--vault", str(vault), "init"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ | {"MJVAULT_CONFIG": "/dev/null"},
    )
    print(f"{'server':8} {'streams':>7} {'best s':>7} {'median s':>8} {'peak RSS MB':>11}")
    for streams in args.streams:
        for kind in ("uvicorn", "mjvault"):
            results = [one(vault, kind, streams) for _ in range(args.runs)]
            times = [t for t, _ in results]
            rss = max(r for _, r in results)
            print(
                f"{kind:8} {streams:>7} {min(times):>7.2f} {statistics.median(times):>8.2f}"
                f" {rss:>11.1f}"
            )
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
