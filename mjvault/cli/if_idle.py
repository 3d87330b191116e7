"""``--if-idle``: the one line a sync gives when another process holds the vault's lock."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from mjvault.cli.context import AppContext
from mjvault.lock import describe_holder, read_holder

log = logging.getLogger("mjvault.cli.sync")


def say_busy(app: AppContext, holder: str) -> None:
    """Say that the sync was skipped, and who holds the lock."""
    # A warning: the one line reaches stderr and --log-file, and -q keeps stderr quiet.
    log.warning("sync skipped (--if-idle): %s", holder)
    if app.json_output:
        app.emit({"skipped": True, "reason": holder})


def running_holder(vault_path: Path) -> str | None:
    """Who holds the vault's lock, from its note alone (read-only: taking the lock to look
    would hold it an instant and fail a writer starting then); None when no note names a
    process that may still run.

    For a step that fails before the sync takes the lock (reading the credentials): under
    --if-idle a run that finds another writer at work is skipped, whatever failed first.
    """
    holder = read_holder(vault_path / "lock")
    if holder is None:
        return None  # released notes are emptied: no note, no holder
    pid = holder.get("pid")
    same_host = holder.get("host") == socket.gethostname()
    if same_host and isinstance(pid, int) and not isinstance(pid, bool) and os.name == "posix":
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return None  # a note left by a writer that died: nobody is at work
        except (PermissionError, OverflowError):
            pass  # another user's process (or a pid out of range: counted as running)
    return f"the vault is locked by {describe_holder(holder)}"
