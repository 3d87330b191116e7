"""The profile a schedule's job runs under is the one every other command uses
(``AppContext.profile_name``: ``--profile``, else ``MJVAULT_PROFILE``), read in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from mjvault import Vault
from tests.config_helpers import World, isolate, run_cli


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    world = isolate(monkeypatch, tmp_path)
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text("[profile.work.sync]\njobs = 2\n[profile.home.sync]\njobs = 3\n")
    return world


def job_command(capsys: pytest.CaptureFixture[str], world: World, *front: str) -> list[str]:
    """The command line a cron schedule would run (printed, nothing installed)."""
    vault = world.root / "v"
    if not vault.exists():
        Vault.init(vault).close()
    result = run_cli(
        capsys, "--vault", str(vault), *front,
        "schedule", "install", "--scheduler", "cron", "--print", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    command: list[str] = result.json()["command"]
    return command


def profile_of(command: list[str]) -> str | None:
    if "--profile" not in command:
        return None
    return command[command.index("--profile") + 1]


def test_the_profile_option_is_the_jobs(
    capsys: pytest.CaptureFixture[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MJVAULT_PROFILE", raising=False)
    assert profile_of(job_command(capsys, world, "--profile", "work")) == "work"


def test_the_environments_profile_is_the_jobs(
    capsys: pytest.CaptureFixture[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_PROFILE", "home")
    assert profile_of(job_command(capsys, world)) == "home"
    # The option wins over the environment, as for every other command.
    assert profile_of(job_command(capsys, world, "--profile", "work")) == "work"


def test_no_profile_and_an_empty_one_name_none(
    capsys: pytest.CaptureFixture[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MJVAULT_PROFILE", raising=False)
    assert profile_of(job_command(capsys, world)) is None
    monkeypatch.setenv("MJVAULT_PROFILE", "")
    assert profile_of(job_command(capsys, world)) is None


def test_schedule_asks_the_context_for_the_profile() -> None:
    # One owner for "which profile": the schedule command reads no environment of its own.
    source = (Path(__file__).parents[1] / "mjvault" / "cli" / "schedule.py").read_text()
    assert "os.environ" not in source and "profile=app.profile_name()" in source
