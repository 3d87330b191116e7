"""`mjvault demo` on a fresh directory, as the README's first command runs it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.demo import DEMO_JOBS, run_demo
from mjvault.integrity.verify import verify
from tests.conftest import run_cli


def test_demo_creates_syncs_and_reuses(tmp_path: Path) -> None:
    first = run_cli("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert f"Synced: {DEMO_JOBS} new jobs" in out
    # The hint names the program as it was run: here as `python -m mjvault` is.
    program = f"{shlex.quote(sys.executable)} -m mjvault"
    assert "Try next:" in out and f"{program} --vault ./mjvault-demo log" in out
    assert "(8 videos)" in out
    # The newest jobs are shown by their words, as search shows them: an image prompt's URL
    # says nothing (the generated account's newest video job is prompted by an image alone).
    newest = out.split("The newest:", 1)[1].split("Images and videos", 1)[0]
    assert "://" not in newest and "image URL]" in newest
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


ROOT = Path(__file__).resolve().parent.parent


def _sandbox(tmp_path: Path) -> dict[str, str]:
    """A directory laid out like a checkout after the README's set-up (``.venv/bin/mjvault``,
    ``scripts/``) and a PATH without that venv, as in a new user's shell."""
    script = Path(sys.prefix) / "bin" / "mjvault"
    if not script.is_file():
        pytest.skip("mjvault's console script is not installed in this environment")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MJVAULT_", "MIDJOURNEY_"))}
    env["PATH"] = "/usr/bin:/bin"
    env["TMPDIR"] = str(tmp_path)
    return env


def _sh(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_try_next_commands_run_as_printed(tmp_path: Path) -> None:
    env = _sandbox(tmp_path)
    done = _sh(".venv/bin/mjvault demo --jobs 12", tmp_path, env)
    assert done.returncode == 0, done.stderr
    after = done.stdout.split("Try next:", 1)[1].splitlines()
    steps = [line for line in after if line.startswith("  ")]
    commands = [re.split(r"\s{2,}", step.strip())[0] for step in steps]
    assert commands and all(c.startswith(".venv/bin/mjvault --vault ") for c in commands), steps
    assert "source .venv/bin/activate" in done.stdout  # or activate, and type plain `mjvault`
    for command in commands:  # pasted into the same shell, each one works
        ran = _sh(command, tmp_path, env)
        assert ran.returncode == 0, (command, ran.stderr)


def test_try_next_says_plain_mjvault_when_it_is_on_path(tmp_path: Path) -> None:
    env = _sandbox(tmp_path)
    env["PATH"] = f"{tmp_path / '.venv' / 'bin'}:/usr/bin:/bin"
    done = _sh("mjvault demo --jobs 12", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "\n  mjvault --vault ./mjvault-demo log " in done.stdout
    assert "activate" not in done.stdout


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def test_readme_import_block_can_be_run_twice(tmp_path: Path) -> None:
    env = _sandbox(tmp_path)
    block = next(b for b in _readme_blocks() if "make_sample_archive" in b)
    for attempt in (1, 2):
        ran = _sh(block, tmp_path, env)
        assert ran.returncode == 0, (attempt, ran.stderr)
        assert "import:" in ran.stdout  # the log shows the import's snapshot
