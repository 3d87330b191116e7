"""What every scheduler module offers, and the pieces they share (files, the log's tail)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mjvault.reports import Report
from mjvault.schedule.plan import Plan

# The log's tail is read backwards in blocks: a log of years of runs is never read whole.
_TAIL_BLOCK = 8192


@dataclass
class Status(Report):
    """What `mjvault schedule status` shows for one scheduler."""

    scheduler: str
    name: str
    installed: bool
    enabled: bool | None = None  # None: the scheduler could not be asked
    files: list[str] = field(default_factory=list)
    schedule: str | None = None  # the interval or calendar spelling the scheduler holds
    next_run: str | None = None
    last_run: str | None = None
    log_file: str | None = None
    last_log_line: str | None = None
    notes: list[str] = field(default_factory=list)  # why a field is unknown


class Scheduler(Protocol):
    kind: str

    def available(self) -> bool:
        """Whether this scheduler can run jobs here (probing never raises)."""
        ...

    def render(self, plan: Plan) -> dict[Path, str]:
        """The files (or crontab lines) install would write, by path, without writing them."""
        ...

    def install(self, plan: Plan) -> list[str]:
        """Write and load the schedule; replaces one already there. Returns what it did."""
        ...

    def installed(self, name: str) -> bool: ...

    def status(self, name: str, log_file: Path) -> Status: ...

    def remove(self, name: str) -> list[str]:
        """Unload and delete what install made; idempotent. Returns what it removed."""
        ...


def write_file(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` whole (a unit half written would be loaded half written); 0644: these
    files hold a command line and paths, never a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def last_log_line(log_file: Path) -> str | None:
    """The last non-empty line of the log: how the last run ended."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            data = b""
            while end > 0:
                start = max(0, end - _TAIL_BLOCK)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
                lines = [line for line in data.splitlines() if line.strip()]
                if len(lines) > 1 or (lines and start == 0):
                    return lines[-1].decode("utf-8", "replace").strip()
    except OSError:
        return None
    return None


def log_line_time(line: str | None) -> str | None:
    """The timestamp a log line starts with (``2026-11-27T20:18:15Z level=…``), if any."""
    if not line:
        return None
    head = line.split(" ", 1)[0]
    return head if len(head) >= 19 and head[4] == "-" and head[10] == "T" else None
