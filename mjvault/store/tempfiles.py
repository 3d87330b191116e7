"""Temp files that writers killed mid-write leave in a vault: ``tmp/``, ``refs/``, ``views/``.

Each of these folders is written only by the holder of a lock: ``tmp/`` and ``refs/`` by the
holder of the vault's write lock, ``views/`` by the holder of the views lock (checkouts). A
process holding the lock therefore knows that no live writer owns any temp file there, however
young. Callers hold the vault's write lock; the views lock is tried here, and the views are
skipped while a checkout holds it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mjvault.errors import VaultLocked
from mjvault.lock import WriteLock
from mjvault.store.fsutil import is_temp_name


@dataclass
class TempFiles:
    files: int = 0
    bytes: int = 0


def remove_stale_temp_files(vault_root: Path, *, dry_run: bool = False) -> TempFiles:
    """Remove (or with ``dry_run`` only count) dead writers' temp files; needs no free space."""
    found = TempFiles()
    _sweep(vault_root / "tmp", lambda _name: True, found, dry_run)
    _sweep(vault_root / "refs", is_temp_name, found, dry_run)
    views = vault_root / "views"
    # The views lock is tried only when there is something to remove: holding it even briefly
    # would make a checkout starting at that moment fail with "locked".
    if _listing(views, is_temp_name):
        try:
            with WriteLock(views, command="mjvault: removing stale temp files"):
                _sweep(views, is_temp_name, found, dry_run)
        except VaultLocked:
            pass
    return found


def _listing(folder: Path, wanted: Callable[[str], bool]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if wanted(e.name) and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _sweep(folder: Path, wanted: Callable[[str], bool], found: TempFiles, dry_run: bool) -> None:
    for entry in _listing(folder, wanted):
        with contextlib.suppress(FileNotFoundError):
            size = entry.stat(follow_symlinks=False).st_size
            if not dry_run:
                os.unlink(entry.path)
            found.files += 1
            found.bytes += size
