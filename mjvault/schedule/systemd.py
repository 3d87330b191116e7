"""A systemd user service and timer: ``~/.config/systemd/user/<name>.service`` + ``.timer``."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from mjvault.schedule.base import Status, last_log_line, log_line_time, write_file
from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner, SchedulerError

HEADER = "# Written by `mjvault schedule install`; `mjvault schedule remove` removes it.\n"
# Characters an ExecStart word may hold without quotes.
_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# A spread of start times so that many machines (and vaults) do not all sync on the hour;
# small, so that a run stays close to its slot.
MAX_RANDOM_DELAY = 300


def unit_dir() -> Path:
    """$XDG_CONFIG_HOME/systemd/user (default ~/.config): where a user manager looks first."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def escape_specifiers(text: str) -> str:
    """systemd expands ``%x`` specifiers in unit values; ``%%`` is a literal percent."""
    return text.replace("%", "%%")


def exec_word(arg: str) -> str:
    """One ExecStart word: specifiers and ``$`` variables escaped, quoted when it must be."""
    text = escape_specifiers(arg).replace("$", "$$")
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def on_calendar(seconds: float) -> str | None:
    """A calendar spelling of an interval that divides an hour, a day or is a week: such a
    timer keeps its slots across reboots and, with Persistent=true, catches up a missed one."""
    if seconds % 60:
        return None
    minutes = int(seconds // 60)
    if minutes < 60 and 60 % minutes == 0:
        return f"*-*-* *:00/{minutes}:00"
    if minutes % 60:
        return None
    hours = minutes // 60
    if hours == 1:
        return "*-*-* *:00:00"
    if hours < 24 and 24 % hours == 0:
        return f"*-*-* 00/{hours}:00:00"
    if hours == 24:
        return "*-*-* 00:00:00"
    if hours == 24 * 7:
        return "Mon *-*-* 00:00:00"
    return None


def timer_lines(seconds: float) -> list[str]:
    calendar = on_calendar(seconds)
    if calendar is not None:
        return [f"OnCalendar={calendar}"]
    # An interval no calendar spells (7h, 90m): counted from the last run, and from boot for
    # the first run after one, which is what Persistent= does for a calendar.
    return ["OnBootSec=5min", f"OnUnitActiveSec={int(seconds)}s"]


def render_service(plan: Plan) -> str:
    command = " ".join(exec_word(arg) for arg in plan.command())
    return (
        HEADER
        + "[Unit]\n"
        + f"Description=mjvault sync of {escape_specifiers(str(plan.vault))}\n"
        + "\n[Service]\n"
        + "Type=oneshot\n"
        + f"ExecStart={command}\n"
        + "# 4 = partial success (files gone from the CDN, a push that failed): the sync's\n"
        + "# work is kept and the log says what is missing; not a failed unit.\n"
        + "SuccessExitStatus=4\n"
        + "Nice=19\n"
        + "IOSchedulingClass=idle\n"
    )


def render_timer(plan: Plan) -> str:
    delay = int(min(MAX_RANDOM_DELAY, plan.every / 10))
    return (
        HEADER
        + "[Unit]\n"
        + f"Description=mjvault sync of {escape_specifiers(str(plan.vault))} every "
        + f"{plan.describe_every()}\n"
        + "\n[Timer]\n"
        + "".join(line + "\n" for line in timer_lines(plan.every))
        + f"RandomizedDelaySec={delay}\n"
        + "# A run missed while the machine was off or asleep starts when it is back.\n"
        + "Persistent=true\n"
        + f"Unit={plan.name}.service\n"
        + "\n[Install]\n"
        + "WantedBy=timers.target\n"
    )


class Systemd:
    kind = "systemd"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.runner.run(["systemctl", "--user", *args], check=check).stdout

    def available(self) -> bool:
        # A user manager answers on its bus; without one (a container, ssh without a login
        # session) systemctl --user fails and cron is the fallback.
        return self.runner.answers(["systemctl", "--user", "show-environment"])

    def paths(self, name: str) -> tuple[Path, Path]:
        return unit_dir() / f"{name}.service", unit_dir() / f"{name}.timer"

    def render(self, plan: Plan) -> dict[Path, str]:
        service, timer = self.paths(plan.name)
        return {service: render_service(plan), timer: render_timer(plan)}

    def install(self, plan: Plan) -> list[str]:
        done = []
        for path, text in self.render(plan).items():
            write_file(path, text)
            done.append(f"wrote {path}")
        try:
            self.systemctl("daemon-reload")
            self.systemctl("enable", "--now", f"{plan.name}.timer")
        except SchedulerError as err:
            raise SchedulerError(
                f"{err.message}; the unit files are written, not enabled",
                hint="fix the user manager and run `mjvault schedule install` again, "
                "or `mjvault schedule remove`",
            ) from None
        done.append(f"enabled and started {plan.name}.timer")
        return done

    def installed(self, name: str) -> bool:
        return any(path.exists() for path in self.paths(name))

    def status(self, name: str, log_file: Path) -> Status:
        service, timer = self.paths(name)
        status = Status(self.kind, name, self.installed(name), log_file=str(log_file))
        status.files = [str(path) for path in (service, timer) if path.exists()]
        if timer.exists():
            status.schedule = "; ".join(
                line
                for line in timer.read_text(encoding="utf-8").splitlines()
                if line.startswith(("OnCalendar=", "OnUnitActiveSec="))
            )
        status.last_log_line = last_log_line(log_file)
        if status.installed:
            self._ask_manager(status, name)
        return status

    def _ask_manager(self, status: Status, name: str) -> None:
        try:
            shown = self.systemctl(
                "show",
                "-p",
                "NextElapseUSecRealtime,LastTriggerUSec,UnitFileState",
                f"{name}.timer",
            )
        except SchedulerError as err:
            status.notes.append(err.message)
            status.last_run = log_line_time(status.last_log_line)
            return
        values = parse_show(shown.splitlines())
        status.enabled = values.get("UnitFileState") == "enabled"
        status.next_run = values.get("NextElapseUSecRealtime") or None
        status.last_run = values.get("LastTriggerUSec") or None
        if status.last_run == "n/a":
            status.last_run = None

    def remove(self, name: str) -> list[str]:
        if not self.installed(name):
            return []
        done = []
        try:
            self.systemctl("disable", "--now", f"{name}.timer")
            done.append(f"disabled and stopped {name}.timer")
        except SchedulerError as err:
            # The files go anyway: without them a manager that comes back cannot start it.
            done.append(f"could not disable {name}.timer ({err.message})")
        for path in self.paths(name):
            if path.exists():
                path.unlink()
                done.append(f"removed {path}")
        # An unreachable manager was named by the disable line above already.
        with contextlib.suppress(SchedulerError):
            self.systemctl("daemon-reload")
        return done


def parse_show(lines: Sequence[str]) -> dict[str, str]:
    """``systemctl show``'s ``Key=value`` lines."""
    return dict(line.split("=", 1) for line in lines if "=" in line)
