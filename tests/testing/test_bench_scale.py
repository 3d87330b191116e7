"""scripts/bench/bench_scale.py at a toy size: it runs, records, resumes and stops at budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "bench_scale.py"


def _bench(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--jobs", "60", "--workdir", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)


def test_sync_steps_are_measured_recorded_and_not_rerun(tmp_path: Path) -> None:
    first = _bench(tmp_path, "--only", "sync-first", "sync-noop")
    assert first.returncode == 0, first.stderr
    results = json.loads((tmp_path / "jobs-60" / "results.json").read_text())
    assert results["sync-first"]["status"] == "ok"
    assert results["sync-first"]["peak_rss_kib"] > 10_000
    assert results["sync-first"]["disk_bytes"] > 0
    assert results["sync-noop"]["status"] == "ok"
    assert results["server-peak-rss-kib"]["value"] > 0
    again = _bench(tmp_path, "--only", "sync-first", "sync-noop")
    assert again.returncode == 0, again.stderr
    log = (tmp_path / "jobs-60" / "bench.log").read_text()
    assert log.count("== sync-first") == 1  # resumable: recorded steps are not run again


def test_a_command_past_its_budget_is_stopped_and_reported(tmp_path: Path) -> None:
    done = _bench(tmp_path, "--only", "sync-first", "--budget-for", "sync-first=0.2")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "jobs-60" / "results.json").read_text())["sync-first"]
    assert result["status"] == "stopped"
    assert result["wall"] < 60
    assert "budget" in result["note"]


def test_a_pooled_run_builds_the_vault_and_a_sync_after_it_finds_nothing_new(
    tmp_path: Path,
) -> None:
    done = _bench(tmp_path, "--images-pool", "3", "--only", "build", "sync-noop", "sync-full-noop")
    assert done.returncode == 0, done.stderr
    work = tmp_path / "jobs-60-pool3"
    results = json.loads((work / "results.json").read_text())
    assert results["build"]["status"] == "ok"
    assert results["build"]["note"].startswith("60 jobs, ")
    assert results["sync-noop"]["note"].startswith("0 new, 0 updated")
    assert results["sync-full-noop"]["note"].startswith("0 new, 0 updated, 60 listed")
    # One step again, alone: the others are recorded and not run.
    again = _bench(tmp_path, "--images-pool", "3", "--rerun", "sync-noop")
    assert again.returncode == 0, again.stderr
    log = (work / "bench.log").read_text()
    assert (log.count("== build"), log.count("== sync-noop"), log.count("== sync-full")) == (
        1,
        2,
        1,
    )
    assert "sync-first" not in results  # the build stands in for it
    # Another run, another server process, the same site address: the sync stays incremental
    # (its state is kept per address), reading one page, not the whole listing.
    rerun = json.loads((work / "results.json").read_text())["sync-noop"]
    assert rerun["note"].startswith("0 new, 0 updated, 49 listed, 1 pages"), rerun
