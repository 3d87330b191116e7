"""A launchd agent on macOS: ``~/Library/LaunchAgents/org.mjvault.<name>.plist``."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

from mjvault.schedule.base import Status, last_log_line, log_line_time, write_file
from mjvault.schedule.cron import slot
from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner, SchedulerError

LABEL_PREFIX = "org.mjvault."


def agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"


def log_dir() -> Path:
    """Where macOS keeps a user's logs (Console.app shows them); platformdirs' user_log_dir."""
    return Path.home() / "Library" / "Logs" / "mjvault"


def label(name: str) -> str:
    return LABEL_PREFIX + name


def calendar(seconds: float, name: str) -> list[dict[str, int]] | None:
    """StartCalendarInterval entries for an interval that divides an hour or a day (or is a
    day or a week), at the minute and hour cron would use; None for any other interval."""
    minute, hour = slot(name)
    if seconds % 60:
        return None
    minutes = int(seconds // 60)
    if minutes < 60 and 60 % minutes == 0:
        return [{"Minute": m} for m in range(0, 60, minutes)]
    hours, rest = divmod(minutes, 60)
    if rest:
        return None
    if hours < 24 and 24 % hours == 0:
        return [{"Hour": h, "Minute": minute} for h in range(hour % hours, 24, hours)]
    if hours == 24:
        return [{"Hour": hour, "Minute": minute}]
    if hours == 24 * 7:
        return [{"Weekday": 1, "Hour": hour, "Minute": minute}]
    return None


def render_plist(plan: Plan) -> bytes:
    logs = plan.log_file.parent
    # A calendar interval missed while the Mac slept runs at wake (Persistent= of a systemd
    # timer); a StartInterval firing due during sleep is skipped (launchd.plist(5)). So the
    # calendar wherever it can spell the interval, StartInterval for the rest (7h, 90m).
    slots = calendar(plan.every, plan.name)
    timing: dict[str, object] = (
        {"StartCalendarInterval": slots} if slots else {"StartInterval": int(plan.every)}
    )
    agent = {
        "Label": label(plan.name),
        "ProgramArguments": plan.command(),
        **timing,
        "RunAtLoad": False,
        # What escapes the log (a crash before logging starts) lands beside it.
        "StandardOutPath": str(logs / f"{plan.name}.stdout.log"),
        "StandardErrorPath": str(logs / f"{plan.name}.stderr.log"),
        # Throttled CPU and I/O, as Nice/IOSchedulingClass=idle are for systemd.
        "ProcessType": "Background",
        "LowPriorityIO": True,
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


class Launchd:
    kind = "launchd"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def domain(self) -> str:
        return f"gui/{os.getuid()}" if hasattr(os, "getuid") else "gui/0"

    def path(self, name: str) -> Path:
        return agents_dir() / f"{label(name)}.plist"

    def available(self) -> bool:
        return self.runner.answers(["launchctl", "print", self.domain()])

    def render(self, plan: Plan) -> dict[Path, str]:
        return {self.path(plan.name): render_plist(plan).decode("utf-8")}

    def install(self, plan: Plan) -> list[str]:
        path = self.path(plan.name)
        plan.log_file.parent.mkdir(parents=True, exist_ok=True)
        # An agent already loaded keeps its old definition until it is booted out.
        self.runner.run(["launchctl", "bootout", self.domain(), str(path)], check=False)
        write_file(path, render_plist(plan).decode("utf-8"))
        self.runner.run(["launchctl", "bootstrap", self.domain(), str(path)])
        return [f"wrote {path}", f"loaded {label(plan.name)} into launchd"]

    def installed(self, name: str) -> bool:
        return self.path(name).exists()

    def status(self, name: str, log_file: Path) -> Status:
        path = self.path(name)
        status = Status(self.kind, name, path.exists(), log_file=str(log_file))
        status.last_log_line = last_log_line(log_file)
        status.last_run = log_line_time(status.last_log_line)
        if path.exists():
            status.files = [str(path)]
            with path.open("rb") as handle:
                agent = plistlib.load(handle)
            status.schedule = (
                f"every {agent['StartInterval']} s"
                if "StartInterval" in agent
                else f"at {agent.get('StartCalendarInterval')}"
            )
            try:
                self.runner.run(["launchctl", "print", f"{self.domain()}/{label(name)}"])
                status.enabled = True
            except SchedulerError as err:
                status.enabled = False
                status.notes.append(err.message)
            status.notes.append("launchd does not say when it runs next: see the schedule")
        return status

    def remove(self, name: str) -> list[str]:
        path = self.path(name)
        if not path.exists():
            return []
        self.runner.run(["launchctl", "bootout", self.domain(), str(path)], check=False)
        path.unlink()
        return [f"unloaded {label(name)}", f"removed {path}"]
