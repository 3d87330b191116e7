"""A crontab entry, where there is no systemd user manager.

The entry is the line after a marker comment naming the schedule, so that status and remove
find it among the user's own lines and leave those alone. cron has no overlap control of its
own (and ``flock`` is not everywhere): the command's ``--if-idle`` is the lock.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from mjvault.errors import UsageError
from mjvault.schedule.base import Status, last_log_line, log_line_time
from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner, SchedulerError, first_line

MARKER = "# mjvault-schedule "
DAY = 86400


def slot(name: str) -> tuple[int, int]:
    """A minute and an hour fixed per schedule: many machines and vaults do not all start on
    the hour, and one schedule keeps its slot from one install to the next."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest()
    return digest[0] % 60, digest[1] % 24


def cron_spec(seconds: float, name: str) -> str:
    """The five time fields for an interval cron can keep evenly."""
    minute, hour = slot(name)
    if seconds % 60 == 0:
        minutes = int(seconds // 60)
        if minutes < 60 and 60 % minutes == 0:
            return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
        hours, rest = divmod(minutes, 60)
        if not rest and hours == 1:
            return f"{minute} * * * *"
        if not rest and hours < 24 and 24 % hours == 0:
            return f"{minute} {hour % hours}-23/{hours} * * *"
        if seconds == DAY:
            return f"{minute} {hour} * * *"
        if seconds == 7 * DAY:
            return f"{minute} {hour} * * 1"
    raise UsageError(
        "cron runs at fixed minutes and hours: --every must divide an hour (5m, 10m, 15m, 30m),"
        " divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h), or be 1d or 1w"
    )


def cron_command(argv: list[str]) -> str:
    # cron reads an unescaped % as a newline (the start of the command's stdin).
    return shlex.join(argv).replace("%", "\\%")


def render_entry(plan: Plan) -> str:
    return (
        f"{MARKER}{plan.name} every {plan.describe_every()}: "
        "`mjvault schedule remove` takes it out\n"
        f"{cron_spec(plan.every, plan.name)} {cron_command(plan.command())}\n"
    )


def without(crontab: str, name: str) -> tuple[str, bool]:
    """``crontab`` minus the marker line of ``name`` and the entry after it."""
    kept: list[str] = []
    found = skip = False
    for line in crontab.splitlines(keepends=True):
        if skip:
            skip = False
            continue
        if is_marker(line, name):
            found = skip = True
            continue
        kept.append(line)
    return "".join(kept), found


def is_marker(line: str, name: str) -> bool:
    return line.startswith(MARKER) and line[len(MARKER) :].split(" ", 1)[0] == name


def entry_of(crontab: str, name: str) -> str | None:
    lines = crontab.splitlines()
    for index, line in enumerate(lines[:-1]):
        if is_marker(line, name):
            return lines[index + 1]
    return None


class Cron:
    kind = "cron"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def available(self) -> bool:
        try:
            self.read()
        except SchedulerError:
            return False
        return True

    def read(self) -> str:
        listed = self.runner.run(["crontab", "-l"], check=False)
        if listed.ok:
            return listed.stdout
        if "no crontab" in listed.stderr.lower():
            return ""
        raise SchedulerError(f"`crontab -l` failed: {first_line(listed.stderr)}")

    def write(self, crontab: str) -> None:
        self.runner.run(["crontab", "-"], input=crontab)

    def render(self, plan: Plan) -> dict[Path, str]:
        return {Path("crontab"): render_entry(plan)}

    def install(self, plan: Plan) -> list[str]:
        entry = render_entry(plan)
        current, replaced = without(self.read(), plan.name)
        if current and not current.endswith("\n"):
            current += "\n"
        self.write(current + entry)
        what = "replaced" if replaced else "added"
        return [f"{what} the crontab entry {plan.name}: {entry.splitlines()[1]}"]

    def installed(self, name: str) -> bool:
        return entry_of(self.read(), name) is not None

    def status(self, name: str, log_file: Path) -> Status:
        entry = entry_of(self.read(), name)
        status = Status(self.kind, name, entry is not None, log_file=str(log_file))
        status.last_log_line = last_log_line(log_file)
        status.last_run = log_line_time(status.last_log_line)
        if entry is not None:
            status.enabled = True
            status.files = ["crontab"]
            status.schedule = " ".join(entry.split()[:5])
            status.notes.append("cron does not say when it runs next: see the schedule")
        return status

    def remove(self, name: str) -> list[str]:
        current, found = without(self.read(), name)
        if not found:
            return []
        self.write(current)
        return [f"removed the crontab entry {name}"]
