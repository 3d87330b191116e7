"""Notifications through Apprise: after a sync, on a failure, on `verify` problems and on a
failed push (docs/usage.md, "Notifications"; docs/design.md, "Notifications").

Importing this package is cheap: Apprise itself is imported on the first send.
"""

from __future__ import annotations

from mjvault.notify.notifier import Notifier
from mjvault.notify.outcome import (
    PushIncomplete,
    failures_notified,
    notify_sync_outcome,
    push_failures_notified,
)
from mjvault.notify.policy import Kind, QuietHours
from mjvault.notify.redaction import redact_url
from mjvault.notify.sender import NotifyResult

__all__ = [
    "Kind",
    "Notifier",
    "NotifyResult",
    "PushIncomplete",
    "QuietHours",
    "failures_notified",
    "notify_sync_outcome",
    "push_failures_notified",
    "redact_url",
]
