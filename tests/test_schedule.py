"""`mjvault schedule`: the files each scheduler gets, checked by the scheduler's own tools
where they run here (systemd-analyze, crontab), parsed where they do not (launchd, Windows)."""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from config_helpers import Result, World, isolate, run_cli

from mjvault import Vault
from mjvault.schedule import cron, windows
from mjvault.schedule.plan import describe_seconds, schedule_name
from mjvault.schedule.runner import Runner, SchedulerError
from tests.conftest import service_missing

TASK_NS = {"t": windows.NS}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    world = isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    # No user manager can be reached from here, whatever runs on this machine: install's
    # systemctl calls meet a real `systemctl --user` that cannot connect, and nothing of the
    # tests' ever reaches a person's own manager.
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime}/bus")
    return world


@pytest.fixture
def vault_dir(world: World, capsys: pytest.CaptureFixture[str]) -> Path:
    # A space and a percent sign: both mean something to systemd, cron and the shell.
    path = world.root / "my 100% vault"
    Vault.init(path).close()
    for remote in ("nas", "offsite"):  # what --push names must exist
        added = run_cli(capsys, "--vault", str(path), "remote", "add", remote,
                        str(world.root / "remotes" / remote))  # fmt: skip
        assert added.code == 0, added.err
    return path


def cli(capsys: pytest.CaptureFixture[str], vault: Path, *args: str) -> Result:
    return run_cli(capsys, "--vault", str(vault), *args)


def one_error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mjvault: error: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def printed(
    capsys: pytest.CaptureFixture[str], vault: Path, scheduler: str, *args: str
) -> dict[str, object]:
    result = cli(capsys, vault, "schedule", "install", "--scheduler", scheduler, "--print",
                 "--json", *args)  # fmt: skip
    assert result.code == 0, result.err
    answer: dict[str, object] = result.json()
    return answer


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        service_missing("systemd-analyze is not installed (Debian package systemd)")
    assert found is not None
    return found


def verify_units(paths: list[Path]) -> None:
    """systemd's own reading of the units: errors fail it, and so do warnings (an unknown
    key or a bad value is only a warning to systemd, and would be a timer that never runs)."""
    done = subprocess.run(
        [systemd_analyze(), "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


# -- systemd -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "trigger"),
    [
        ("6h", "OnCalendar=*-*-* 00/6:00:00"),
        ("10m", "OnCalendar=*-*-* *:00/10:00"),
        ("1h", "OnCalendar=*-*-* *:00:00"),
        ("1d", "OnCalendar=*-*-* 00:00:00"),
        ("1w", "OnCalendar=Mon *-*-* 00:00:00"),
        ("7h", "OnUnitActiveSec=25200s"),
    ],
)
def test_systemd_units_pass_systemd_analyze(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path, every: str, trigger: str
) -> None:
    answer = printed(capsys, vault_dir, "systemd", "--every", every, "--verify-subset", "2%",
                     "--push", "nas", "--push", "offsite")  # fmt: skip
    files = {Path(p): text for p, text in answer["files"].items()}  # type: ignore[attr-defined]
    unit_dir = world.root / "xdg-config" / "systemd" / "user"
    name = schedule_name(vault_dir)
    service, timer = unit_dir / f"{name}.service", unit_dir / f"{name}.timer"
    assert set(files) == {service, timer}
    assert not unit_dir.exists()  # --print writes nothing

    out = world.root / "units"
    out.mkdir()
    for path, text in files.items():
        (out / path.name).write_text(text)
    verify_units([out / service.name, out / timer.name])

    timer_text = files[timer]
    assert trigger in timer_text.splitlines()
    assert "Persistent=true" in timer_text and f"Unit={name}.service" in timer_text
    assert "WantedBy=timers.target" in timer_text
    delay = int(timer_text.split("RandomizedDelaySec=")[1].split()[0])
    assert 0 < delay <= 300
    service_text = files[service]
    for line in ("Type=oneshot", "Nice=19", "IOSchedulingClass=idle", "SuccessExitStatus=4"):
        assert line in service_text.splitlines()
    # The contract's command line; % doubled for systemd's specifiers.
    command = answer["command"]
    assert command == [
        *command[:3],  # type: ignore[index]
        "--vault", str(vault_dir),
        "--log-file", str(world.root / "xdg-state" / "mjvault" / "log" / f"{name}.log"),
        "-q", "sync", "--if-idle", "--verify-subset", "2%", "--push", "nas", "--push", "offsite",
    ]  # fmt: skip
    assert f'"{str(vault_dir).replace("%", "%%")}"' in service_text
    assert "--verify-subset 2%% --push nas --push offsite" in service_text


def test_systemd_install_without_a_user_manager_is_one_line(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path
) -> None:
    if shutil.which("systemctl") is None:
        service_missing("systemctl is not installed (Debian package systemd)")
    result = cli(capsys, vault_dir, "schedule", "install", "--scheduler", "systemd")
    assert result.code == 1
    line = one_error_line(result)
    assert re.search(r"`systemctl --user daemon-reload` failed \(exit \d+\)", line)
    assert "the unit files are written, not enabled" in line
    # What was written is whole, and systemd reads it.
    unit_dir = world.root / "xdg-config" / "systemd" / "user"
    units = sorted(unit_dir.iterdir())
    assert [p.suffix for p in units] == [".service", ".timer"]
    verify_units(units)
    assert (world.root / "xdg-state" / "mjvault" / "log").is_dir()  # --log-file needs it

    status = cli(capsys, vault_dir, "schedule", "status", "--json")
    assert status.code == 0, status.err
    [shown] = status.json()
    assert shown["scheduler"] == "systemd" and shown["installed"] is True
    assert shown["enabled"] is None and shown["files"] == [str(p) for p in units]
    assert "Failed to connect" in shown["notes"][0] or "failed" in shown["notes"][0]

    removed = cli(capsys, vault_dir, "schedule", "remove")
    assert removed.code == 0, removed.err
    assert not any(unit_dir.iterdir())
    again = cli(capsys, vault_dir, "schedule", "remove")
    assert (again.code, again.out) == (0, "no schedule installed for this vault\n")


def test_a_missing_systemctl_is_one_line(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    empty = world.root / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli(capsys, vault_dir, "schedule", "install", "--scheduler", "systemd")
    assert result.code == 1
    assert "`systemctl` is not installed" in one_error_line(result)


# -- cron --------------------------------------------------------------------------------

STAND_IN = """#!/bin/sh
# A stand-in for crontab(1): the table in one file, `-l` and `-` as crontab has them.
case "$1" in
  -l) if [ -f "$CRONTAB_FILE" ]; then cat "$CRONTAB_FILE"; else
        echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$CRONTAB_FILE" ;;
  *) echo "usage: crontab [-l | -]" >&2; exit 1 ;;
esac
"""


def crontab_list() -> str:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30)
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture
def crontab(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The real crontab where that touches nobody's table: as root with an empty one (a CI
    machine, a container), restored after. Anywhere else, a stand-in script on PATH that
    keeps the table in a file (it tests mjvault's handling, not cron's)."""
    if shutil.which("crontab") is None:
        service_missing("crontab is not installed (Debian package cron)")
    if os.geteuid() == 0 and crontab_list().strip() == "":
        had_table = subprocess.run(["crontab", "-l"], capture_output=True).returncode == 0
        try:
            yield "real"
        finally:
            if had_table:
                subprocess.run(["crontab", "-"], input=b"", check=True, timeout=30)
            else:
                subprocess.run(["crontab", "-r"], capture_output=True, timeout=30)
        return
    bin_dir = world.root / "bin"
    bin_dir.mkdir()
    script = bin_dir / "crontab"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    monkeypatch.setenv("CRONTAB_FILE", str(world.root / "crontab.txt"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield "stand-in"


def test_cron_install_status_remove(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path, crontab: str
) -> None:
    mine = "0 3 * * * /usr/bin/true  # a line of the user's own\n"
    subprocess.run(["crontab", "-"], input=mine, text=True, check=True, timeout=30)

    args = ["schedule", "install", "--scheduler", "cron", "--every", "6h", "--verify-subset", "2%"]
    first = cli(capsys, vault_dir, *args, "--push", "nas")
    assert first.code == 0, first.err
    again = cli(capsys, vault_dir, *args)  # replaces, never adds a second entry
    assert again.code == 0 and "replaced the crontab entry" in again.out

    table = crontab_list()
    assert table.startswith(mine)
    name = schedule_name(vault_dir)
    entries = [line for line in table.splitlines() if not line.startswith("#") and line][1:]
    assert len(entries) == 1 and cron.MARKER + name in table
    fields = entries[0].split(" ", 5)
    minute, hour = cron.slot(name)
    assert fields[:5] == [str(minute), f"{hour % 6}-23/6", "*", "*", "*"]
    # What cron hands to sh: \% back to %, then the shell's words are the contract's argv.
    argv = shlex.split(fields[5].replace("\\%", "%"))
    log_file = world.root / "xdg-state" / "mjvault" / "log" / f"{name}.log"
    assert argv[3:] == ["--vault", str(vault_dir), "--log-file", str(log_file), "-q", "sync",
                        "--if-idle", "--verify-subset", "2%"]  # fmt: skip
    assert "%" not in fields[5].replace("\\%", "")  # no bare % for cron to cut at

    log_file.write_text(
        "2026-12-05T06:00:01Z level=info logger=mjvault.sync msg=start\n"
        '2026-12-05T06:00:09Z level=info logger=mjvault.sync msg="sync done" new=3\n\n'
    )
    status = cli(capsys, vault_dir, "schedule", "status", "--json")
    assert status.code == 0, status.err
    [shown] = status.json()
    assert shown["scheduler"] == "cron" and shown["installed"] and shown["enabled"]
    assert shown["schedule"] == " ".join(fields[:5])
    assert shown["last_run"] == "2026-12-05T06:00:09Z"
    assert shown["last_log_line"].endswith('msg="sync done" new=3')
    human = cli(capsys, vault_dir, "schedule", "status")
    assert "cron: " + name + " (enabled)" in human.out and "last log line" in human.out

    removed = cli(capsys, vault_dir, "schedule", "remove")
    assert removed.code == 0 and f"removed the crontab entry {name}" in removed.out
    assert crontab_list() == mine
    nothing = cli(capsys, vault_dir, "schedule", "remove")
    assert (nothing.code, nothing.out) == (0, "no schedule installed for this vault\n")
    empty = cli(capsys, vault_dir, "schedule", "status")
    assert empty.out.startswith("no schedule installed for this vault")


def test_cron_refuses_an_interval_it_cannot_keep(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path, crontab: str
) -> None:
    result = cli(capsys, vault_dir, "schedule", "install", "--scheduler", "cron", "--every", "7h")
    assert result.code == 2
    assert "--every must divide an hour" in one_error_line(result)
    assert cron.MARKER not in crontab_list()


def test_cron_spec_for_each_even_interval() -> None:
    name = "mjvault-sync-x-00000000"
    minute, hour = cron.slot(name)
    assert cron.cron_spec(60, name) == "* * * * *"
    assert cron.cron_spec(15 * 60, name) == "*/15 * * * *"
    assert cron.cron_spec(3600, name) == f"{minute} * * * *"
    assert cron.cron_spec(8 * 3600, name) == f"{minute} {hour % 8}-23/8 * * *"
    assert cron.cron_spec(86400, name) == f"{minute} {hour} * * *"
    assert cron.cron_spec(7 * 86400, name) == f"{minute} {hour} * * 1"


# -- launchd and Windows, checked for content --------------------------------------------


def test_launchd_plist(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text("[profile.work.sync]\njobs = 2\n")
    monkeypatch.setenv("MJVAULT_PROFILE", "work")  # the shell's profile becomes the job's
    answer = printed(capsys, vault_dir, "launchd", "--every", "90m", "--push", "nas")
    name = schedule_name(vault_dir)
    home = world.root / "home"
    [(path, text)] = answer["files"].items()  # type: ignore[attr-defined]
    assert path == str(home / "Library" / "LaunchAgents" / f"org.mjvault.{name}.plist")
    agent = plistlib.loads(text.encode("utf-8"))
    logs = home / "Library" / "Logs" / "mjvault"
    assert agent["Label"] == f"org.mjvault.{name}"
    assert agent["ProgramArguments"] == answer["command"]
    assert agent["ProgramArguments"][3:] == [
        "--vault", str(vault_dir), "--profile", "work", "--log-file", str(logs / f"{name}.log"),
        "-q", "sync", "--if-idle", "--push", "nas",
    ]  # fmt: skip
    # 90m is no calendar slot: an interval (a firing due during sleep is skipped).
    assert agent["StartInterval"] == 5400 and agent["RunAtLoad"] is False
    assert "StartCalendarInterval" not in agent
    assert agent["StandardOutPath"] == str(logs / f"{name}.stdout.log")
    assert agent["StandardErrorPath"] == str(logs / f"{name}.stderr.log")
    assert agent["ProcessType"] == "Background"
    assert not (home / "Library").exists()  # printed, neither written nor loaded


def test_launchd_calendar_for_even_intervals(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path
) -> None:
    # A calendar interval missed while the Mac slept runs at wake: Persistent= of a timer.
    minute, hour = cron.slot(schedule_name(vault_dir))
    expected = {
        "15m": [{"Minute": m} for m in (0, 15, 30, 45)],
        "6h": [{"Hour": h, "Minute": minute} for h in range(hour % 6, 24, 6)],
        "1d": [{"Hour": hour, "Minute": minute}],
        "1w": [{"Weekday": 1, "Hour": hour, "Minute": minute}],
    }
    for every, slots in expected.items():
        answer = printed(capsys, vault_dir, "launchd", "--every", every)
        [text] = answer["files"].values()  # type: ignore[attr-defined]
        agent = plistlib.loads(text.encode("utf-8"))
        assert agent["StartCalendarInterval"] == slots and "StartInterval" not in agent


def test_launchd_and_windows_do_not_install_on_linux(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path
) -> None:
    for kind in ("launchd", "windows"):
        result = cli(capsys, vault_dir, "schedule", "install", "--scheduler", kind)
        assert result.code == 2
        assert "does not run on this system" in one_error_line(result)


def test_windows_task_xml(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path
) -> None:
    answer = printed(capsys, vault_dir, "windows", "--every", "1h30m", "--verify-subset", "3/7")
    [text] = answer["files"].values()  # type: ignore[attr-defined]
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>')
    task = ET.fromstring(text.encode("utf-16"))
    assert task.tag == f"{{{windows.NS}}}Task" and task.get("version") == "1.2"

    def value(path: str) -> str | None:
        return task.findtext(path, namespaces=TASK_NS)

    assert value("t:RegistrationInfo/t:URI") == "\\" + schedule_name(vault_dir)
    assert value("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval") == "PT1H30M"
    assert value("t:Triggers/t:TimeTrigger/t:Enabled") == "true"
    assert value("t:Triggers/t:TimeTrigger/t:StartBoundary")
    assert value("t:Settings/t:MultipleInstancesPolicy") == "IgnoreNew"
    assert value("t:Settings/t:StartWhenAvailable") == "true"
    assert value("t:Principals/t:Principal/t:LogonType") == "InteractiveToken"
    command = answer["command"]
    assert value("t:Actions/t:Exec/t:Command") == command[0]  # type: ignore[index]
    arguments = value("t:Actions/t:Exec/t:Arguments")
    assert arguments == subprocess.list2cmdline(command[1:])  # type: ignore[index]
    assert f'--vault "{vault_dir}"' in (arguments or "")
    assert arguments and arguments.endswith("sync --if-idle --verify-subset 3/7")


@pytest.mark.parametrize(
    ("seconds", "iso"),
    [(600, "PT10M"), (3600, "PT1H"), (5400, "PT1H30M"), (86400, "P1D"), (90000, "P1DT1H"),
     (7 * 86400, "P7D")],
)  # fmt: skip
def test_iso_durations(seconds: int, iso: str) -> None:
    assert windows.iso_duration(seconds) == iso
    assert describe_seconds(seconds)  # and back to what --every reads


# -- what install refuses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "30s"], "between every minute and every 31 days"),
        (["--every", "often"], "cannot read the duration"),
        (["--verify-subset", "200%"], "percentage must be in (0, 100]"),
        (["--verify-subset", "lots"], "takes a percentage"),
        (["--push", "nope"], "no remote named nope"),
        (["--push", "../x"], "bad remote name"),
    ],
)
def test_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path, args: list[str],
    message: str,
) -> None:  # fmt: skip
    result = cli(capsys, vault_dir, "schedule", "install", "--scheduler", "systemd", *args)
    assert result.code == 2
    assert message in one_error_line(result)
    assert not (world.root / "xdg-config").exists()


def test_not_a_vault(capsys: pytest.CaptureFixture[str], world: World) -> None:
    result = cli(capsys, world.root, "schedule", "install", "--print")
    assert result.code == 10 and "is not a vault" in one_error_line(result)


def test_passphrase_file_is_passed_by_name_and_must_be_private(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # A session in this shell's environment stays out of the files too.
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", "session-secret-4711")
    secret = world.root / "passphrase"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o644)
    args = ["--passphrase-file", str(secret), "schedule", "install", "--scheduler", "systemd"]
    loose = cli(capsys, vault_dir, *args, "--print")
    assert loose.code == 2
    assert "is readable by others" in one_error_line(loose) and "chmod 600" in loose.err

    secret.chmod(0o600)
    answer = cli(capsys, vault_dir, *args, "--print", "--json")
    assert answer.code == 0, answer.err
    data = answer.json()
    assert ["--passphrase-file", str(secret)] == data["command"][5:7]
    assert all(
        "battery" not in text and "session-secret" not in text for text in data["files"].values()
    )
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_an_encrypted_vault_without_a_passphrase_file_is_warned_about(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    from tests.conftest import CHEAP_KDF, PASSPHRASE

    path = world.root / "sealed"
    Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    result = cli(capsys, path, "schedule", "install", "--scheduler", "systemd", "--print")
    assert result.code == 0
    assert "warning: this vault is encrypted" in result.err


def test_each_vault_has_its_own_name(world: World) -> None:
    a, b = world.root / "a" / "vault", world.root / "b" / "vault"
    assert schedule_name(a) != schedule_name(b)
    assert schedule_name(a) == schedule_name(world.root / "a" / ".." / "a" / "vault")
    assert schedule_name(a).startswith("mjvault-sync-vault-")


# -- the runner --------------------------------------------------------------------------


def test_runner_failures_are_one_line(tmp_path: Path) -> None:
    runner = Runner(timeout=0.5)
    with pytest.raises(SchedulerError, match=r"^`no-such-scheduler` is not installed"):
        runner.run(["no-such-scheduler", "--user"])
    with pytest.raises(SchedulerError, match=r"failed \(exit 3\): refused, first line$"):
        runner.run(["sh", "-c", "echo 'refused, first line' >&2; echo second >&2; exit 3"])
    with pytest.raises(SchedulerError, match=r"did not answer within 0.5 s"):
        runner.run(["sleep", "5"])
    assert runner.run(["sh", "-c", "exit 2"], check=False).returncode == 2
    assert runner.answers(["true"]) and not runner.answers(["no-such-scheduler"])


def test_exec_start_words_are_escaped_for_systemd() -> None:
    from mjvault.schedule.systemd import exec_word

    assert exec_word("/usr/bin/python3") == "/usr/bin/python3"
    assert exec_word("2%") == "2%%"  # a specifier otherwise
    assert exec_word("/home/a b") == '"/home/a b"'
    assert exec_word("$HOME") == '"$$HOME"'  # a variable otherwise
    assert exec_word('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


def test_the_program_is_absolute_and_frozen_executables_run_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from mjvault.schedule.plan import program_argv

    program = program_argv()
    assert Path(program[0]).is_absolute() and program[1:] == ("-m", "mjvault")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/mjvault/mjvault")
    assert program_argv() == ("/opt/mjvault/mjvault",)


def test_one_schedule_per_vault_when_the_scheduler_changes(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path, crontab: str
) -> None:
    if shutil.which("systemctl") is None:
        service_missing("systemctl is not installed (Debian package systemd)")
    # Units written where no user manager answered, then the same vault scheduled by cron:
    # the units go, so that a manager that comes back does not run a second schedule.
    assert cli(capsys, vault_dir, "schedule", "install", "--scheduler", "systemd").code == 1
    unit_dir = world.root / "xdg-config" / "systemd" / "user"
    assert len(list(unit_dir.iterdir())) == 2
    moved = cli(capsys, vault_dir, "schedule", "install", "--scheduler", "cron")
    assert moved.code == 0, moved.err
    assert not list(unit_dir.iterdir())
    [shown] = cli(capsys, vault_dir, "schedule", "status", "--json").json()
    assert shown["scheduler"] == "cron" and shown["installed"]
    assert cli(capsys, vault_dir, "schedule", "remove").code == 0
    assert cron.MARKER not in crontab_list()


def test_the_crontab_entry_runs_the_planned_argv_through_sh(
    capsys: pytest.CaptureFixture[str], world: World, vault_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import json
    import sys

    from mjvault.schedule import manage

    # The program replaced by one that records the words it was given; the rest is the
    # entry as installed, run as cron runs it: `%` unescaped, then `sh -c`.
    record, recorder = world.root / "argv.json", world.root / "record argv"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    recorder.chmod(0o755)
    monkeypatch.setattr(manage, "program_argv", lambda: (str(recorder),))
    answer = printed(capsys, vault_dir, "cron", "--every", "1h", "--verify-subset", "2%",
                     "--push", "nas")  # fmt: skip
    [entry] = answer["files"].values()  # type: ignore[attr-defined]
    command = entry.splitlines()[1].split(" ", 5)[5]
    subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], check=True, timeout=30)
    assert json.loads(record.read_text()) == answer["command"][1:]  # type: ignore[index]
