"""Which notifications go out when: kinds, "only on failure" and quiet hours.

Every message has one of Apprise's four kinds. ``success`` and ``info`` are news; ``warning``
(a sync that kept its jobs but missed images) and ``failure`` (a sync that failed, `verify`
problems, a push that failed) are problems. "Only on failure" drops the news; quiet hours
drop news and warnings alike. A failure always goes out: a cookie that expired at night is
what the next morning's user must hear about.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from mjvault.config.types import parse_clock_range


class Kind(StrEnum):
    """Apprise's notify types, by the same names."""

    SUCCESS = "success"
    INFO = "info"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class QuietHours:
    """A daily range of local time, ``22:00-07:00``; it may pass midnight."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        start, end = parse_clock_range(text)
        return cls(start, end)

    def __contains__(self, moment: dt.time) -> bool:
        moment = moment.replace(second=0, microsecond=0, tzinfo=None)
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def local_now() -> dt.datetime:
    """The machine's local time: quiet hours are the user's night, not UTC's."""
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class Policy:
    only_on_failure: bool = False
    quiet_hours: QuietHours | None = None
    clock: Callable[[], dt.datetime] = local_now

    def held_back(self, kind: Kind) -> str | None:
        """Why a message of ``kind`` is not sent now, or None to send it."""
        if kind is Kind.FAILURE:
            return None
        if self.only_on_failure and kind in (Kind.SUCCESS, Kind.INFO):
            return "notify.only_on_failure is set"
        if self.quiet_hours is not None and self.clock().time() in self.quiet_hours:
            return f"quiet hours ({self.quiet_hours})"
        return None
