"""A sync killed at any moment (SIGKILL) or interrupted (Ctrl-C) leaves a vault that verifies,
and the next run completes it: every job present with its exact images, nothing left in tmp/."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.reachability import checkpoint_tree
from mjvault.integrity.verify import verify
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from tests.test_sync import TOKEN, assert_complete, cli_env

TRIALS = 12


@pytest.fixture
def server() -> Iterator[FakeMidjourney]:
    # Enough work, spread out by a little latency, that kills land at every stage of a run.
    account = Account.generate(53, 100)
    with FakeMidjourney(account, Faults(latency=0.004), token=TOKEN) as running:
        yield running


def start_sync(vault_path: Path, server: FakeMidjourney, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    env.update(cli_env(server))
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault_path), "sync"]
    return subprocess.Popen(
        [*command, "--jobs", "4", "--checkpoint-jobs", "6", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_media_requests(
    server: FakeMidjourney, process: subprocess.Popen[bytes], count: int, timeout: float = 30
) -> None:
    """Until the server has answered ``count`` media requests (or the sync ended)."""
    deadline = time.monotonic() + timeout
    while server.stats.media_requests < count and process.poll() is None:
        assert time.monotonic() < deadline, "the sync made no progress"
        time.sleep(0.002)


def assert_verifies(vault_path: Path) -> None:
    vault = Vault.open(vault_path)
    try:
        report = verify(vault, read_data=True)
        assert report.ok, report.problems
    finally:
        vault.close()


def test_sigkill_at_random_moments_then_resume(server: FakeMidjourney, tmp_path: Path) -> None:
    vault_path = tmp_path / "vault"
    Vault.init(vault_path).close()
    rng = random.Random(20261127)
    killed = 0
    total_media = sum(len(job.media_paths) for job in server.account.jobs)
    for trial in range(TRIALS):
        process = start_sync(vault_path, server)
        if trial % 4 == 0:
            time.sleep(rng.uniform(0.05, 1.0))  # anywhere, start-up and vault opening included
        else:
            # Somewhere in the downloads of this run (each run fetches only what is missing).
            wait_for_media_requests(
                server, process, server.stats.media_requests + rng.randint(0, total_media // 4)
            )
            time.sleep(rng.uniform(0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.communicate(timeout=60)
        assert_verifies(vault_path)
    assert killed >= TRIALS // 2
    media_before = server.stats.media_requests
    final = start_sync(vault_path, server)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert b"Traceback" not in err
    # Resuming never starts over: all runs together asked for far less than a sync per run.
    assert server.stats.media_requests < total_media * 3
    assert server.stats.media_requests - media_before <= total_media
    assert_complete(vault_path, server.account)


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6])
def test_ctrl_c_keeps_what_was_fetched_and_says_how_to_resume(
    server: FakeMidjourney, tmp_path: Path, delay: float
) -> None:
    vault_path = tmp_path / "vault"
    Vault.init(vault_path).close()
    server.faults = Faults(latency=0.02)
    process = start_sync(vault_path, server)
    wait_for_media_requests(server, process, 1)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "rerun" in lines[0] and "mjvault sync" in lines[0]
    assert_verifies(vault_path)
    vault = Vault.open(vault_path)
    try:
        partial = checkpoint_tree(vault)
        kept = sum(1 for _ in vault.tree.walk(partial)) if partial else 0
    finally:
        vault.close()
    if delay:
        assert kept > 0  # jobs finished before the interrupt are in the vault
    server.faults = Faults()
    final = start_sync(vault_path, server)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert_complete(vault_path, server.account)


def test_ctrl_c_does_not_wait_for_slow_downloads(server: FakeMidjourney, tmp_path: Path) -> None:
    vault_path = tmp_path / "vault"
    Vault.init(vault_path).close()
    # ~2 KB images at 1 KB/s per connection: each download takes about two seconds.
    server.faults = Faults(bandwidth=1000, targets=frozenset({"cdn"}))
    process = start_sync(vault_path, server)
    wait_for_media_requests(server, process, 4)
    time.sleep(0.3)
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    assert time.monotonic() - interrupted < 1.5
    assert_verifies(vault_path)
