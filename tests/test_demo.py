"""`mjvault demo` on a fresh directory, as the README's first command runs it."""

from __future__ import annotations

import json
from pathlib import Path

from mjvault import Vault
from mjvault.demo import DEMO_JOBS, run_demo
from mjvault.integrity.verify import verify
from tests.conftest import run_cli


def test_demo_creates_syncs_and_reuses(tmp_path: Path) -> None:
    first = run_cli("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert f"Synced: {DEMO_JOBS} new jobs" in out
    assert "Try next:" in out and "mjvault --vault ./mjvault-demo log" in out
    assert "(8 videos)" in out
    vault = Vault.open(tmp_path / "mjvault-demo")
    try:
        assert sum(1 for _ in vault.entries()) == DEMO_JOBS
        assert verify(vault, read_data=True).ok
    finally:
        vault.close()
    again = run_cli("--json", "demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    data = json.loads(again.stdout)
    assert data["created"] is False and data["jobs_in_vault"] == DEMO_JOBS
    assert data["sync"]["jobs_new"] == data["sync"]["images_downloaded"] == 0


def test_demo_refuses_a_directory_that_is_not_a_vault(tmp_path: Path) -> None:
    (tmp_path / "mjvault-demo").mkdir()
    (tmp_path / "mjvault-demo" / "notes.txt").write_text("mine")
    result = run_cli("demo", cwd=tmp_path)
    assert result.returncode != 0
    text = result.stderr.decode()
    errors = [line for line in text.splitlines() if line.startswith("mjvault: error:")]
    assert len(errors) == 1 and "not a vault" in errors[0] and "Traceback" not in text
    assert (tmp_path / "mjvault-demo" / "notes.txt").read_text() == "mine"


def test_run_demo_as_a_library(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "v", jobs=12, seed=3)
    assert result.created and result.jobs_in_vault == 12
    assert all(Path(f).is_file() for sample in result.samples for f in sample.files)
