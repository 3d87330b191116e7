"""What a schedule runs and how often: one plan, rendered by each scheduler's module.

The plan is the same whatever runs it (systemd, cron, launchd, Task Scheduler): the absolute
command line of a quiet, idle-aware sync of one vault, its interval and its log file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from mjvault.durations import parse_bounded
from mjvault.errors import UsageError

# Every scheduler here counts in whole minutes at best (cron's finest step is a minute), and
# a sync more often than that would only meet its own lock.
MIN_INTERVAL = 60.0
# Task Scheduler's repetition interval stops at 31 days; a vault synced less often than
# monthly is not "current" in any sense a schedule helps with.
MAX_INTERVAL = 31 * 86400.0
DEFAULT_EVERY = "6h"
LOG_SUFFIX = ".log"


@dataclass(frozen=True)
class Plan:
    """One vault's scheduled sync, independent of the scheduler that runs it."""

    name: str  # mjvault-sync-<slug>-<hash>: a file name, a unit name, a task name
    vault: Path
    every: float  # seconds between runs
    program: tuple[str, ...]  # the absolute command that runs mjvault
    log_file: Path
    profile: str | None = None
    verify_subset: str | None = None
    push: tuple[str, ...] = ()
    passphrase_file: Path | None = None

    def command(self) -> list[str]:
        """The argv every scheduler runs. `--if-idle` is the overlap lock: a run that finds the
        previous one still writing logs a line and exits 0 instead of failing or waiting."""
        argv = [*self.program, "--vault", str(self.vault)]
        if self.profile:
            argv += ["--profile", self.profile]
        if self.passphrase_file is not None:
            argv += ["--passphrase-file", str(self.passphrase_file)]
        argv += ["--log-file", str(self.log_file), "-q", "sync", "--if-idle"]
        if self.verify_subset:
            argv += ["--verify-subset", self.verify_subset]
        for remote in self.push:
            argv += ["--push", remote]
        return argv

    def describe_every(self) -> str:
        return describe_seconds(self.every)


def schedule_name(vault: Path) -> str:
    """``mjvault-sync-<folder>-<8 hex>``: readable, and unique per vault path, so that two
    vaults both called ``vault`` each get their own unit, crontab entry or task."""
    resolved = str(vault.resolve())
    slug = re.sub(r"[^a-z0-9]+", "-", vault.resolve().name.lower()).strip("-")[:32] or "vault"
    digest = hashlib.blake2b(resolved.encode("utf-8"), digest_size=4).hexdigest()
    return f"mjvault-sync-{slug}-{digest}"


def program_argv() -> tuple[str, ...]:
    """The absolute command that runs this mjvault.

    A frozen executable (PyInstaller) is itself the program. Otherwise the interpreter that
    runs now with ``-m mjvault``: it is absolute, it is the environment mjvault is installed
    in (a venv, pipx), and it does not depend on the short PATH cron and launchd give a job,
    as a bare ``mjvault`` or even ``shutil.which("mjvault")``'s wrapper script in a venv
    that is later moved would.
    """
    if getattr(sys, "frozen", False):
        return (os.path.abspath(sys.executable),)
    return (os.path.abspath(sys.executable), "-m", "mjvault")


def parse_every(text: str) -> float:
    return parse_bounded(
        text,
        minimum=MIN_INTERVAL,
        maximum=MAX_INTERVAL,
        refusal=f"--every {text}: a schedule runs between every minute and every 31 days",
    )


def check_subset(spec: str) -> str:
    """``2%`` or ``n/m``, read as `verify --read-data-subset` reads it, so that a typo fails
    now rather than at every scheduled run."""
    from mjvault.integrity.verify import parse_subset

    return parse_subset(spec)[0]


def check_private_file(path: Path) -> Path:
    """A passphrase file the schedule will read: it must exist and be readable by its owner
    alone, since the schedule makes a standing use of it."""
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"--passphrase-file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"--passphrase-file {path}: not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise UsageError(
            f"--passphrase-file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o})",
            hint=f"chmod 600 {path}",
        )
    return path.resolve()


def describe_seconds(seconds: float) -> str:
    """6h, 1h30m, 10m: the shortest spelling :func:`parse_duration` reads back."""
    rest = int(seconds)
    parts = []
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
