"""The launchd agent's life on a machine without launchd (mjvault/schedule/launchd.py):
install, status and remove against a stand-in `launchctl` on PATH, a script that records its
arguments and answers as launchctl does (this is Linux: the real one cannot run here); the
plist written, read back and removed are real files."""

from __future__ import annotations

import plistlib
import stat
from pathlib import Path

import pytest

from mjvault.schedule.launchd import Launchd, calendar, label, render_plist
from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner

NAME = "mjvault-sync-vault-0123abcd"

# Exits 113 for `print` of a service it was told is not loaded, as launchctl does.
LAUNCHCTL = """#!/bin/sh
echo "$*" >> "{calls}"
if [ "$1" = print ] && [ -e "{unloaded}" ]; then
  echo "Could not find service \\"$2\\" in domain for user" >&2
  exit 113
fi
exit 0
"""


@pytest.fixture
def launchctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `launchctl` first on PATH; the file of its calls, one line each."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "launchctl"
    script.write_text(LAUNCHCTL.format(calls=calls, unloaded=tmp_path / "unloaded"))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return calls


def plan(tmp_path: Path, every: float = 3600) -> Plan:
    return Plan(
        name=NAME,
        vault=tmp_path / "vault",
        every=every,
        program=("/usr/bin/mjvault",),
        log_file=tmp_path / "home" / "Library" / "Logs" / "mjvault" / f"{NAME}.log",
    )


def test_install_status_and_remove(launchctl: Path, tmp_path: Path) -> None:
    agent = Launchd(Runner(timeout=10))
    assert agent.available()
    the_plan = plan(tmp_path)
    path = agent.path(NAME)
    assert not agent.installed(NAME)
    assert agent.status(NAME, the_plan.log_file).installed is False

    said = agent.install(the_plan)
    assert said == [f"wrote {path}", f"loaded {label(NAME)} into launchd"]
    assert agent.installed(NAME) and the_plan.log_file.parent.is_dir()
    with path.open("rb") as handle:
        assert plistlib.load(handle)["ProgramArguments"] == the_plan.command()
    calls = launchctl.read_text().splitlines()
    domain = agent.domain()
    # an agent already loaded is booted out first, so it does not keep its old definition
    assert calls[-2:] == [f"bootout {domain} {path}", f"bootstrap {domain} {path}"]

    the_plan.log_file.write_text(
        "2026-11-27T20:18:15Z level=info sync done\n2026-11-27T21:18:15Z level=info synced 3\n\n"
    )
    status = agent.status(NAME, the_plan.log_file)
    assert status.installed and status.enabled
    assert status.files == [str(path)]
    assert status.schedule == f"at {calendar(3600, NAME)}"
    assert status.last_run == "2026-11-27T21:18:15Z"
    assert any("does not say when it runs next" in n for n in status.notes)

    assert agent.remove(NAME) == [f"unloaded {label(NAME)}", f"removed {path}"]
    assert not path.exists()
    assert agent.remove(NAME) == []  # nothing left to remove


def test_status_of_an_agent_launchd_has_not_loaded(launchctl: Path, tmp_path: Path) -> None:
    agent = Launchd(Runner(timeout=10))
    the_plan = plan(tmp_path, every=7 * 3600)  # no calendar spells 7 h: StartInterval
    agent.install(the_plan)
    (tmp_path / "unloaded").touch()
    status = agent.status(NAME, the_plan.log_file)
    assert status.installed and status.enabled is False
    assert status.schedule == "every 25200 s"
    assert any("Could not find service" in note for note in status.notes)
    assert status.last_run is None


def test_without_launchctl_it_is_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not Launchd(Runner(timeout=10)).available()


@pytest.mark.parametrize(
    ("every", "keys"),
    [
        (15 * 60, [{"Minute": m} for m in (0, 15, 30, 45)]),
        (90, None),  # not whole minutes
        (7 * 60, None),  # does not divide an hour
        (90 * 60, None),  # an hour and a half
        (5 * 3600, None),  # does not divide a day
        (48 * 3600, None),  # two days
    ],
)
def test_calendar_spells_only_what_divides_an_hour_or_a_day(
    every: float, keys: list[dict[str, int]] | None
) -> None:
    assert calendar(every, NAME) == keys


def test_a_day_and_a_week_at_crons_slot(tmp_path: Path) -> None:
    day = calendar(24 * 3600, NAME)
    week = calendar(7 * 24 * 3600, NAME)
    assert day is not None and week is not None and len(day) == 1
    assert week == [{"Weekday": 1} | day[0]]
    six_hourly = calendar(6 * 3600, NAME)
    assert six_hourly is not None and len(six_hourly) == 4
    assert {slot["Minute"] for slot in six_hourly} == {day[0]["Minute"]}
    agent = plistlib.loads(render_plist(plan(tmp_path, every=24 * 3600)))
    assert agent["StartCalendarInterval"] == day and "StartInterval" not in agent
