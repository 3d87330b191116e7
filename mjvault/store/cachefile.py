"""The SQLite files under ``cache/`` (thumbnails, perceptual hashes, image vectors): opened
one way, and a damaged one started again, for each is a cache whose loss costs only the
work of making it again (docs/FORMAT.md §7.2–§7.4)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
# The files SQLite keeps beside a database while it is open or was left open.
SIDE_SUFFIXES = ("-journal", "-wal", "-shm")


def connect(
    path: str | Path,
    schema: str,
    version: int,
    *,
    cache_kib: int,
    wal: bool = False,
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A connection to the cache file ``path`` (made when missing, owner-only), its tables
    made by ``schema``: autocommit (the caller begins its transactions), shared by threads.
    ``wal``: readers (a server) go on beside the writer. ``prepare`` runs last (an upgrade
    of an earlier version's tables). A file of a later format, or not a database, raises
    :class:`sqlite3.DatabaseError`."""
    db = sqlite3.connect(os.fspath(path), isolation_level=None, check_same_thread=False)
    try:
        if wal:
            db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA cache_size = -{cache_kib}")
        db.execute("PRAGMA synchronous = NORMAL")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found not in (0, version):
            raise sqlite3.DatabaseError(f"format {found} is not supported")
        db.executescript(schema)
        if prepare is not None:
            prepare(db)
    except sqlite3.DatabaseError:
        db.close()
        raise
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return db


def open_or_start_again(path: str | Path, opening: Callable[[], T]) -> T:
    """``opening()``; when the file is damaged (or of a later format), the file and its side
    files removed and ``opening()`` again, on an empty cache."""
    try:
        return opening()
    except sqlite3.DatabaseError:
        remove(path)
        return opening()


def remove(path: str | Path) -> None:
    for suffix in ("", *SIDE_SUFFIXES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{os.fspath(path)}{suffix}")
