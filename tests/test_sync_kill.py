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


def start_sync(
    vault_path: Path,
    server: FakeMidjourney,
    *extra: str,
    checkpoint_jobs: int | None = 6,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    environ.update(cli_env(server), **(env or {}))
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault_path), "sync", "--jobs", "4"]
    if checkpoint_jobs is not None:
        command += ["--checkpoint-jobs", str(checkpoint_jobs)]
    return subprocess.Popen(
        [*command, *extra],
        env=environ,
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
    # Slow enough that the sync is still going after the longest delay, even when a busy
    # machine wakes this process late.
    server.faults = Faults(latency=0.05)
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


CHECKPOINT_SECONDS = 0.5  # the test's sync.checkpoint_seconds: a 10 s interval, scaled down
WINDOW_FILES = 2 * 4 * 4  # jobs in flight (2 x --jobs 4), four files each at most


@pytest.mark.slow
def test_a_killed_sync_loses_seconds_of_downloads_not_the_run(tmp_path: Path) -> None:
    """Far fewer jobs than a count checkpoint (2,000): only the time checkpoint saves work."""
    account = Account.generate(61, 360)
    unique_files = len({path for job in account.jobs for path in job.media_paths})
    vault_path = tmp_path / "vault"
    Vault.init(vault_path).close()
    rng = random.Random(20261210)
    extra_env = {"MJVAULT_SYNC_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS)}
    # ~30 ms a file and four at once: a whole sync takes ~10 s, so each kill lands mid-run.
    faults = Faults(latency=0.03, targets=frozenset({"cdn"}))
    bound = 0.0
    kills = 0
    with FakeMidjourney(account, faults, token=TOKEN) as server:
        for _round in range(4):
            before = server.stats.media_requests
            process = start_sync(vault_path, server, checkpoint_jobs=None, env=extra_env)
            wait_for_media_requests(server, process, before + 1)
            downloading = time.monotonic()
            time.sleep(rng.uniform(1.5, 2.5))
            if process.poll() is not None:
                continue  # the rest of the work fitted in this run
            process.send_signal(signal.SIGKILL)
            seconds = time.monotonic() - downloading
            process.communicate(timeout=60)
            kills += 1
            rate = (server.stats.media_requests - before) / seconds
            # A kill loses the jobs stored since the last checkpoint (one interval, and the
            # time to reach the next stored job) and those in flight; never the whole run.
            bound += rate * (CHECKPOINT_SECONDS + 0.25) + WINDOW_FILES
            assert_verifies(vault_path)
        final = start_sync(vault_path, server, checkpoint_jobs=None, env=extra_env)
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        assert kills >= 3
        refetched = server.stats.media_requests - unique_files
        assert refetched <= bound, (
            f"{refetched} files fetched again after {kills} kills (bound {bound:.0f})"
        )
    assert_verifies(vault_path)
    assert_complete(vault_path, account)
