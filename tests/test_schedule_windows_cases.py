"""The Windows task's life on a machine without Windows (mjvault/schedule/windows.py):
install, status and remove against a stand-in `schtasks` on PATH, a script that keeps the
registered task as a file and answers /Query as schtasks does (the real one cannot run
here); the XML definition written and removed is a real UTF-16 file."""

from __future__ import annotations

import stat
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner
from mjvault.schedule.windows import NS, Windows, iso_duration, list_fields

NAME = "mjvault-sync-vault-0123abcd"

# /Create keeps a copy of the task's definition, /Delete drops it, /Query answers only for a
# registered task, with the verbose list when asked /V.
SCHTASKS = """#!/bin/sh
echo "$*" >> "{calls}"
task="{state}/$3"
case "$1" in
  /Create) mkdir -p "{state}" && cp "$5" "$task" ;;
  /Delete) rm -f "$task" ;;
  /Query)
    if [ "$#" -eq 3 ]; then exit 0; fi
    [ -e "$task" ] || {{ echo "ERROR: The system cannot find the file specified." >&2; exit 1; }}
    if [ "$#" -gt 3 ]; then
      echo "TaskName:                             \\\\$3"
      echo "Next Run Time:                        28/11/2026 09:00:00"
      echo "Last Run Time:                        28/11/2026 08:00:00"
      echo "Scheduled Task State:                 {state_word}"
      echo "Repeat: Every:                        1 Hour(s), 0 Minute(s)"
    fi ;;
esac
exit 0
"""


def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_word: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    script = bin_dir / "schtasks"
    script.write_text(
        SCHTASKS.format(calls=calls, state=tmp_path / "registered", state_word=state_word)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return calls


def plan(tmp_path: Path) -> Plan:
    return Plan(
        name=NAME,
        vault=tmp_path / "my vault",
        every=3600,
        program=("C:\\Program Files\\mjvault\\mjvault.exe",),
        log_file=tmp_path / "logs" / f"{NAME}.log",
    )


def test_install_status_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = stand_in(tmp_path, monkeypatch, "Ready")
    task = Windows(Runner(timeout=10))
    assert task.available()
    the_plan = plan(tmp_path)
    path = task.path(NAME)
    assert path.is_relative_to(tmp_path / "config")

    assert task.install(the_plan) == [f"wrote {path}", f"registered the task {NAME}"]
    assert calls.read_text().splitlines()[-1] == f"/Create /TN {NAME} /XML {path} /F"
    xml = path.read_text(encoding="utf-16")
    root = ET.fromstring(xml.split("\n", 1)[1])
    arguments = root.find(f".//{{{NS}}}Arguments")
    assert arguments is not None and arguments.text is not None
    assert '"' + str(tmp_path / "my vault") + '"' in arguments.text  # quoted for Windows
    assert task.installed(NAME)

    status = task.status(NAME, the_plan.log_file)
    assert status.installed and status.files == [str(path)]
    assert status.enabled is False  # "Ready" is not "Enabled"
    assert status.next_run == "28/11/2026 09:00:00"
    assert status.last_run == "28/11/2026 08:00:00"
    assert status.schedule == "1 Hour(s), 0 Minute(s)"

    assert task.remove(NAME) == [f"deleted the task {NAME}", f"removed {path}"]
    assert not path.exists()


def test_an_enabled_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(tmp_path, monkeypatch, "Enabled")
    task = Windows(Runner(timeout=10))
    task.install(plan(tmp_path))
    assert task.status(NAME, plan(tmp_path).log_file).enabled is True


def test_a_definition_that_schtasks_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in(tmp_path, monkeypatch, "Ready")
    task = Windows(Runner(timeout=10))
    the_plan = plan(tmp_path)
    task.install(the_plan)
    (tmp_path / "registered" / NAME).unlink()  # deleted by hand in Task Scheduler
    the_plan.log_file.write_text("2026-11-27T21:18:15Z level=info synced 3\n")
    status = task.status(NAME, the_plan.log_file)
    assert status.installed  # its definition file is still there
    assert status.last_run == "2026-11-27T21:18:15Z"  # from the log, schtasks having none
    assert any("cannot find the file" in note for note in status.notes)


def test_nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(tmp_path, monkeypatch, "Ready")
    status = Windows(Runner(timeout=10)).status(NAME, tmp_path / "none.log")
    assert not status.installed and status.files == []


def test_without_schtasks_it_is_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not Windows(Runner(timeout=10)).available()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3600, "PT1H"),
        (5400, "PT1H30M"),
        (86400, "P1D"),
        (90061, "P1DT1H1M1S"),
        (45, "PT45S"),
        (7 * 86400, "P7D"),
    ],
)
def test_iso_duration(seconds: float, text: str) -> None:
    assert iso_duration(seconds) == text


def test_list_fields_keep_keys_that_hold_a_colon() -> None:
    # "Repeat: Every" was read as the key "Repeat", so status never showed the schedule.
    listed = (
        "\nFolder: \\\n"
        "TaskName:                             \\mjvault-sync\n"
        "Next Run Time:                        28/11/2026 09:00:00\n"
        "Repeat: Every:                        1 Hour(s), 0 Minute(s)\n"
        "Repeat: Until: Time:                  None\n"
        "Comment:                              N/A\n"
        "Empty:                                \n"
        "Short: value\n"
    )
    assert list_fields(listed) == {
        "Folder": "\\",
        "TaskName": "\\mjvault-sync",
        "Next Run Time": "28/11/2026 09:00:00",
        "Repeat: Every": "1 Hour(s), 0 Minute(s)",
        "Repeat: Until: Time": "None",
        "Comment": "N/A",
        "Short": "value",
    }
