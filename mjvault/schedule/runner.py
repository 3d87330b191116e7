"""The one way the schedule modules run systemctl, crontab, launchctl and schtasks.

Each call has a timeout (a hung user manager must not hang `mjvault schedule`), and each
failure becomes one :class:`SchedulerError` line naming the command and what it said.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from mjvault.errors import MjvaultError

# systemctl and launchctl answer in milliseconds; 30 s is far beyond a healthy answer and
# short enough that a stuck D-Bus is reported instead of waited on.
DEFAULT_TIMEOUT = 30.0


class SchedulerError(MjvaultError):
    """A scheduler's command is missing, failed or did not answer."""


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def shown(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


@dataclass(frozen=True)
class Runner:
    timeout: float = DEFAULT_TIMEOUT

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True) -> Outcome:
        """Run ``argv``; with ``check`` a non-zero exit raises, else the caller reads it."""
        try:
            done = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                errors="replace",  # a localised message in another encoding is still shown
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SchedulerError(
                f"`{argv[0]}` is not installed (needed for `{shown(argv)}`)"
            ) from None
        except PermissionError:
            raise SchedulerError(f"`{argv[0]}` cannot be run (permission denied)") from None
        except subprocess.TimeoutExpired:
            raise SchedulerError(
                f"`{shown(argv)}` did not answer within {self.timeout:g} s"
            ) from None
        outcome = Outcome(tuple(argv), done.returncode, done.stdout, done.stderr)
        if check and not outcome.ok:
            raise SchedulerError(
                f"`{shown(argv)}` failed (exit {done.returncode}): "
                f"{first_line(done.stderr or done.stdout)}"
            )
        return outcome

    def answers(self, argv: Sequence[str]) -> bool:
        """Whether ``argv`` runs and exits 0: a probe that never raises."""
        try:
            return self.run(argv, check=False).ok
        except SchedulerError:
            return False
