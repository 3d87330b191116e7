"""Which S3 client for remotes: PUT/GET throughput of 1 MB objects, 8 in flight, against moto.

    python scripts/bench/bench_s3_clients.py [--objects 96]

Starts moto_server on a free 127.0.0.1 port, measures obstore and boto3 doing the same work
(PUT then GET of N distinct 1 MB objects through a pool of 8 threads), prints MB/s and stops it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def run(name: str, put, get, payloads: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    mb = sum(len(p) for p in payloads) / 1e6
    with ThreadPoolExecutor(8) as pool:
        t0 = time.perf_counter()
        list(pool.map(put, range(len(payloads)), payloads))
        t1 = time.perf_counter()
        sizes = list(pool.map(get, range(len(payloads))))
        t2 = time.perf_counter()
    assert sum(sizes) == int(mb * 1e6)
    print(f"{name:8s} PUT {mb / (t1 - t0):6.1f} MB/s   GET {mb / (t2 - t1):6.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=96)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    proc, endpoint = start_moto()
    try:
        import boto3
        import obstore
        from obstore.store import S3Store

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        payloads = [os.urandom(1 << 20) for _ in range(args.objects)]
        store = S3Store(
            "bench", endpoint=endpoint, region="us-east-1", client_options={"allow_http": True}
        )
        for round_ in range(2):
            run(
                "obstore",
                lambda i, p, r=round_: obstore.put(store, f"o/{r}/{i}", p),
                lambda i, r=round_: len(obstore.get(store, f"o/{r}/{i}").bytes()),
                payloads,
            )
            run(
                "boto3",
                lambda i, p, r=round_: s3.put_object(Bucket="bench", Key=f"b/{r}/{i}", Body=p),
                lambda i, r=round_: len(
                    s3.get_object(Bucket="bench", Key=f"b/{r}/{i}")["Body"].read()
                ),
                payloads,
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
