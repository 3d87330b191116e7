"""``--if-idle``: the one line a sync gives when another process holds the vault's lock."""

from __future__ import annotations

import logging

from mjvault.cli.context import AppContext

log = logging.getLogger("mjvault.cli.sync")


def say_busy(app: AppContext, holder: str) -> None:
    """Say that the sync was skipped, and who holds the lock."""
    # A warning: the one line reaches stderr and --log-file, and -q keeps stderr quiet.
    log.warning("sync skipped (--if-idle): %s", holder)
    if app.json_output:
        app.emit({"skipped": True, "reason": holder})
