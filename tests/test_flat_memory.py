"""Flat memory: sync, search and export hold nothing per job for the whole run.

The real `mjvault` runs in child processes against vaults of two sizes synced from the bundled
server; each command's own peak RSS (tests/peak_rss.py) at the larger size must stay within a constant of
its peak at the smaller one. A Python object kept per job or per image (a set of seen ids,
a cache of tree leaves, a result list, LMDB pages left mapped) shows as a few KB per job,
which the size gap turns into tens of MB.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.peak_rss import run_measured
from tests.test_sync import TOKEN, cli_env

# Child processes at two archive sizes: their own step (`pytest -m memory`, .ci/run).
pytestmark = pytest.mark.memory

SMALL, LARGE = 1_000, 5_000
PAGE_SIZE = 250
# What a command may grow by between the two sizes: dict and allocator slack, LMDB's own
# bookkeeping. Holding 1 KB per job would be 4.5 MB; the seen ids, tree leaves and result
# lists this test was written against held 2-12 KB per job.
SLACK_MB = 4.0


@dataclass
class Measured:
    command: str
    returncode: int
    peak_rss_mb: float
    seconds: float
    stdout: bytes
    stderr: bytes


def _measure(name: str, args: list[str], env: dict[str, str], out: Path) -> Measured:
    """One `mjvault` child process and its own peak RSS (tests/peak_rss.py)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")} | env
    workdir = out / name
    workdir.mkdir()
    started = time.monotonic()
    done = run_measured(
        [sys.executable, "-m", "mjvault", *args], workdir=workdir, env=full_env, timeout=300
    )
    return Measured(
        name,
        done.returncode,
        done.peak_rss_mb,
        time.monotonic() - started,
        done.stdout,
        done.stderr,
    )


def _run_all(jobs: int, workdir: Path) -> dict[str, Measured]:
    account = Account.generate(11, jobs)
    vault = workdir / "vault"
    Vault.init(vault).close()
    # Pages of 250 jobs: both sizes list several pages, so both read one page ahead (a page
    # is a bounded cost; at 1,000 a page the small account would be one page, and nothing
    # read ahead, and the comparison would count the page read ahead as growth).
    with FakeMidjourney(account, token=TOKEN, max_page_size=PAGE_SIZE) as server:
        env = cli_env(server, "v3")
        base = ["--vault", str(vault)]
        commands = {
            "first sync": [*base, "sync"],
            "sync --full": [*base, "sync", "--full"],
            "sync": [*base, "sync"],
            "search --ids": [*base, "search", "--ids"],
            "search --json": [*base, "search", "--json"],
            "export jsonl": [*base, "export", "--format", "jsonl", "-o", str(workdir / "e.jsonl")],
        }
        results = {}
        for name, args in commands.items():
            run = _measure(name.replace(" ", "_"), args, env, workdir)
            assert run.returncode == 0, (name, run.stderr.decode()[-2000:])
            results[name] = run
    assert results["search --ids"].stdout.count(b"\n") == jobs
    assert sum(1 for _ in (workdir / "e.jsonl").open("rb")) == jobs
    return results


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, dict[str, Measured]]]:
    yield {size: _run_all(size, tmp_path_factory.mktemp(f"flat{size}")) for size in (SMALL, LARGE)}


# Still growing: a first sync, about 2 KB per job between 1k and 5k jobs (3 KB before the
# writer's LMDB fixes), outside the Python heap. What differs between the two runs is bounded,
# not per job: a checkpoint holds 2,000 jobs at 5k against 1,000 at 1k, and training the
# vault's zstd dictionary left the main heap 8 MB larger in the 5k run only (docs/design.md).
# Strict: fixing it fails here.
STILL_GROWING = pytest.mark.xfail(
    strict=True, reason="peak RSS still grows with the archive (docs/design.md, flat memory)"
)
COMMANDS = [
    pytest.param("first sync", marks=STILL_GROWING),
    "sync --full",
    "sync",
    "search --ids",
    "search --json",
    "export jsonl",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_peak_memory_does_not_grow_with_the_archive(
    measured: dict[int, dict[str, Measured]], command: str
) -> None:
    small, large = measured[SMALL][command], measured[LARGE][command]
    grown = large.peak_rss_mb - small.peak_rss_mb
    assert grown <= SLACK_MB, (
        f"`{command}` peak RSS {small.peak_rss_mb:.1f} MB at {SMALL} jobs, "
        f"{large.peak_rss_mb:.1f} MB at {LARGE} jobs: +{grown:.1f} MB "
        f"({grown * 1024 / (LARGE - SMALL):.2f} KB per job; {small.seconds:.1f} s and "
        f"{large.seconds:.1f} s)"
    )
