"""Notifications after syncs, failures, verifies and pushes.

A placeholder with the interface the callers use: every call is a no-op until the Apprise
notifier replaces this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mjvault.sync import SyncReport


class Notifier:
    enabled = False

    @classmethod
    def from_config(cls, config: Any) -> Notifier:
        return cls()

    def sync_finished(self, report: SyncReport, *, vault: str) -> None:
        pass

    def failed(self, what: str, error: BaseException, *, vault: str) -> None:
        pass

    def verify_finished(self, problems: int, summary: str, *, vault: str) -> None:
        pass

    def push_failed(self, remote: str, error: BaseException, *, vault: str) -> None:
        pass


def notify_sync_outcome(
    notifier: Notifier, report_or_error: SyncReport | BaseException, *, vault: str
) -> None:
    if isinstance(report_or_error, BaseException):
        notifier.failed("sync", report_or_error, vault=vault)
    else:
        notifier.sync_finished(report_or_error, vault=vault)
