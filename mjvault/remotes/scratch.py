"""Scratch tables on disk for one push or pull, so nothing is held per object in memory.

A million-job remote lists some three million media ids, and a push or pull walks as many
objects; as Python sets and dicts that is hundreds of MB. They live instead in a SQLite file
beside the remote's other local state (``remotes/<name>/scratch-<random>.sqlite``), with a
small page cache, written without a journal or syncs (a crash loses only the scratch file),
and removed when the operation ends. A file left by a process that was killed is removed by
a later one once it is a day old.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

# A day: no push or pull keeps its scratch file untouched that long.
STALE_SECONDS = 24 * 3600
# Negative: KiB. SQLite's page cache, the only memory the tables use.
CACHE_KIB = 2 * 1024
# Rows read or written per statement batch.
CHUNK = 4096


class Scratch:
    """One SQLite scratch file; tables are made by their users."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale(folder)
        self.path = folder / f"scratch-{secrets.token_hex(6)}.sqlite"
        # Python's default isolation: writes open a transaction, committed by their users in
        # batches (a statement each would be a commit each).
        self.db = sqlite3.connect(self.path)
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "temp_store = FILE",
            f"cache_size = -{CACHE_KIB}",
        ):
            self.db.execute(f"PRAGMA {pragma}")

    def ids(self, table: str) -> DiskIds:
        return DiskIds(self.db, table)

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DiskIds:
    """A set of object ids (hex strings outside, 32 bytes inside) in a scratch table."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self.db = db
        self.table = table
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id BLOB PRIMARY KEY) WITHOUT ROWID")

    def update(self, ids: Iterable[str]) -> None:
        chunk: list[tuple[bytes]] = []
        for object_id in ids:
            chunk.append((bytes.fromhex(object_id),))
            if len(chunk) >= CHUNK:
                self._insert(chunk)
                chunk = []
        if chunk:
            self._insert(chunk)

    def _insert(self, rows: list[tuple[bytes]]) -> None:
        with self.db:
            self.db.executemany(f"INSERT OR IGNORE INTO {self.table} VALUES (?)", rows)

    def __contains__(self, object_id: object) -> bool:
        if not isinstance(object_id, str):
            return False
        try:
            key = bytes.fromhex(object_id)
        except ValueError:
            return False
        query = f"SELECT 1 FROM {self.table} WHERE id = ?"
        return self.db.execute(query, (key,)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        """In id order, read a chunk at a time (the table may change between chunks)."""
        last = b""
        query = f"SELECT id FROM {self.table} WHERE id > ? ORDER BY id LIMIT {CHUNK}"
        while True:
            rows = self.db.execute(query, (last,)).fetchall()
            if not rows:
                return
            for (key,) in rows:
                yield key.hex()
            last = rows[-1][0]

    def __len__(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])


def _remove_stale(folder: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for entry in os.scandir(folder):
        if entry.name.startswith("scratch-") and entry.name.endswith(".sqlite"):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)


@contextlib.contextmanager
def scratch_in(folder: Path | None, *, prefix: str) -> Iterator[Scratch]:
    """A :class:`Scratch` in ``folder`` (a remote's local state), or, for a caller with no
    vault, in a temporary folder named ``prefix…`` removed with it."""
    if folder is not None:
        with Scratch(folder) as scratch:
            yield scratch
        return
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as temporary,
        Scratch(Path(temporary)) as scratch,
    ):
        yield scratch
