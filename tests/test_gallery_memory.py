"""Flat memory: `mjvault gallery` holds nothing per job or per image for the whole run.

The real `mjvault gallery` runs in a child process against vaults of two sizes, first to make
every thumbnail and then again with nothing new; its own peak RSS (tests/peak_rss.py) at the
larger size must stay within a constant of its peak at the smaller one. A thumbnail kept in
memory until the end, the thumbnail cache loaded whole, or the page's data built in memory
shows as a few KB per image, which the size gap turns into tens of MB.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.testing.images import make_png
from tests.peak_rss import Measured, run_measured

# Child processes at two archive sizes: their own step (`pytest -m memory`, .ci/run).
pytestmark = pytest.mark.memory

SMALL, LARGE = 600, 3_000
SIDE = 72  # px: noisy enough that a thumbnail is a few KB, small enough to make quickly
# What a run may grow by between the two sizes: allocator and SQLite slack. Holding each
# thumbnail (~5 KB of WebP) or its cache entry (~0.3 KB) until the end costs 1-12 MB here.
SLACK_MB = 4.0


def _make_vault(path: Path, jobs: int) -> None:
    vault = Vault.init(path)
    with vault.writer("test", checkpoint_jobs=10_000) as writer:
        for i in range(jobs):
            image = writer.put_media(make_png(i, SIDE, SIDE, size_hint=SIDE * SIDE * 2))
            record = {
                "id": f"job-{i:06d}",
                "full_command": f"a fox number {i} in a misty forest --ar 1:1 --v 6",
                "enqueue_time": f"2024-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}",
                "type": "upscale",
            }
            writer.add_job(json.dumps(record).encode(), [image])
    vault.close()


def _gallery(vault: Path, out: Path, workdir: Path) -> Measured:
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    args = ["--vault", str(vault), "--json", "gallery", str(out)]
    done = run_measured(
        [sys.executable, "-m", "mjvault", *args], workdir=workdir, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, list[Measured]]]:
    results = {}
    for jobs in (SMALL, LARGE):
        work = tmp_path_factory.mktemp(f"gallery{jobs}")
        _make_vault(work / "vault", jobs)
        first = _gallery(work / "vault", work / "html", work / "first")
        again = _gallery(work / "vault", work / "html", work / "again")
        report = json.loads(again.stdout)
        assert (report["jobs"], report["thumbs_made"], report["thumbs_cached"]) == (jobs, 0, jobs)
        assert json.loads(first.stdout)["thumbs_made"] == jobs
        results[jobs] = [first, again]
    yield results


@pytest.mark.parametrize("run", [0, 1], ids=["first", "nothing new"])
def test_gallery_peak_memory_does_not_grow_with_the_archive(
    measured: dict[int, list[Measured]], run: int
) -> None:
    small, large = measured[SMALL][run], measured[LARGE][run]
    grown = large.peak_rss_mb - small.peak_rss_mb
    assert grown <= SLACK_MB, (
        f"gallery peak RSS {small.peak_rss_mb:.1f} MB at {SMALL} jobs, "
        f"{large.peak_rss_mb:.1f} MB at {LARGE} jobs: +{grown:.1f} MB "
        f"({grown * 1024 / (LARGE - SMALL):.2f} KB per job)"
    )
