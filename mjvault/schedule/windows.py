"""A Windows Task Scheduler task, registered from an XML definition with ``schtasks``."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import tempfile
from pathlib import Path
from xml.etree import ElementTree as ET

from mjvault.schedule.base import Status, last_log_line, log_line_time
from mjvault.schedule.plan import Plan
from mjvault.schedule.runner import Runner, SchedulerError

NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"


def iso_duration(seconds: float) -> str:
    """An interval as Task Scheduler's ISO 8601 duration: ``PT6H``, ``PT1H30M``, ``P1D``."""
    rest = int(seconds)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def render_xml(plan: Plan, *, start: dt.datetime | None = None) -> str:
    """The task definition (schema 1.2, Windows 7 and later)."""
    begin = (start or dt.datetime.now()).replace(microsecond=0, second=0)
    ET.register_namespace("", NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        element = ET.SubElement(parent, f"{{{NS}}}{tag}")
        if text is not None:
            element.text = text
        return element

    task = ET.Element(f"{{{NS}}}Task", {"version": "1.2"})
    info = sub(task, "RegistrationInfo")
    sub(info, "Description", f"mjvault sync of {plan.vault} every {plan.describe_every()}")
    sub(info, "URI", f"\\{plan.name}")
    trigger = sub(sub(task, "Triggers"), "TimeTrigger")
    repetition = sub(trigger, "Repetition")
    sub(repetition, "Interval", iso_duration(plan.every))
    sub(repetition, "StopAtDurationEnd", "false")
    sub(trigger, "StartBoundary", begin.isoformat())
    sub(trigger, "Enabled", "true")
    principal = sub(sub(task, "Principals"), "Principal", None)
    principal.set("id", "Author")
    # The user's own session: the keyring (Credential Locker) and the config are theirs.
    sub(principal, "LogonType", "InteractiveToken")
    sub(principal, "RunLevel", "LeastPrivilege")
    settings = sub(task, "Settings")
    # A run that meets the previous one is not started (and --if-idle covers a sync by hand).
    sub(settings, "MultipleInstancesPolicy", "IgnoreNew")
    sub(settings, "DisallowStartIfOnBatteries", "false")
    sub(settings, "StopIfGoingOnBatteries", "false")
    # A run missed while the machine was off starts when it is back: Persistent= of a timer.
    sub(settings, "StartWhenAvailable", "true")
    sub(settings, "RunOnlyIfNetworkAvailable", "true")
    sub(settings, "ExecutionTimeLimit", "PT72H")
    sub(settings, "Priority", "7")  # below normal
    sub(settings, "Enabled", "true")
    actions = sub(task, "Actions", None)
    actions.set("Context", "Author")
    exec_ = sub(actions, "Exec")
    program, *args = plan.command()
    sub(exec_, "Command", program)
    sub(exec_, "Arguments", subprocess.list2cmdline(args))
    ET.indent(task)
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(task, encoding="unicode")


def definitions_dir() -> Path:
    """Where the registered definition is kept, for status to show and a user to read."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("mjvault", appauthor=False)) / "schedule"


# `schtasks /FO LIST` pads each key to one column: "Next Run Time:       09:00:00". A key may
# hold ": " itself ("Repeat: Every:"), so it ends at the first colon the padding follows.
_LIST_LINE = re.compile(r"(.*?):\s{2,}(.*)")


def list_fields(text: str) -> dict[str, str]:
    """The ``key: value`` lines of ``schtasks /Query /FO LIST`` (empty values left out)."""
    fields = {}
    for line in text.splitlines():
        padded = _LIST_LINE.fullmatch(line.strip())
        key, value = padded.groups() if padded else line.partition(":")[::2]
        if value.strip():
            fields[key.strip()] = value.strip()
    return fields


class Windows:
    kind = "windows"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def path(self, name: str) -> Path:
        return definitions_dir() / f"{name}.xml"

    def available(self) -> bool:
        return self.runner.answers(["schtasks", "/Query", "/FO", "LIST"])

    def render(self, plan: Plan) -> dict[Path, str]:
        return {self.path(plan.name): render_xml(plan)}

    def install(self, plan: Plan) -> list[str]:
        path = self.path(plan.name)
        plan.log_file.parent.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        # schtasks reads the XML as UTF-16, the encoding its own exports use.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".xml")
        os.close(fd)
        Path(tmp).write_text(render_xml(plan), encoding="utf-16")
        os.replace(tmp, path)
        self.runner.run(["schtasks", "/Create", "/TN", plan.name, "/XML", str(path), "/F"])
        return [f"wrote {path}", f"registered the task {plan.name}"]

    def installed(self, name: str) -> bool:
        return self.path(name).exists() or self.runner.answers(["schtasks", "/Query", "/TN", name])

    def status(self, name: str, log_file: Path) -> Status:
        status = Status(self.kind, name, False, log_file=str(log_file))
        status.last_log_line = last_log_line(log_file)
        status.last_run = log_line_time(status.last_log_line)
        if self.path(name).exists():
            status.files = [str(self.path(name))]
        try:
            listed = self.runner.run(["schtasks", "/Query", "/TN", name, "/FO", "LIST", "/V"])
        except SchedulerError as err:
            status.installed = bool(status.files)
            status.notes.append(err.message)
            return status
        status.installed = True
        fields = list_fields(listed.stdout)
        status.enabled = fields.get("Scheduled Task State", "Enabled") == "Enabled"
        status.next_run = fields.get("Next Run Time")
        status.last_run = fields.get("Last Run Time") or status.last_run
        status.schedule = fields.get("Repeat: Every")
        return status

    def remove(self, name: str) -> list[str]:
        done = []
        if self.runner.answers(["schtasks", "/Query", "/TN", name]):
            self.runner.run(["schtasks", "/Delete", "/TN", name, "/F"])
            done.append(f"deleted the task {name}")
        if self.path(name).exists():
            self.path(name).unlink()
            done.append(f"removed {self.path(name)}")
        return done
