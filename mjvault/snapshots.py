"""Snapshot manifests and refs (docs/FORMAT.md, "Snapshots" and "Refs").

A snapshot is an object: who wrote it, when, from where, and the root of its tree. Which
snapshots exist is told by empty marker files ``refs/snapshots/<id>`` (so forgetting one is
removing one file, and two writers never fight over a list); ``refs/HEAD`` names the newest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack

from mjvault.errors import IntegrityError, MjvaultError
from mjvault.reports import Report
from mjvault.store.fsutil import atomic_write, fsync_dir
from mjvault.store.objects import is_object_id

MANIFEST_VERSION = 1
HEAD_MAX_BYTES = 256  # an id and a newline; anything longer is damage, and never read whole
REPAIR_HEAD_HINT = "run `mjvault verify --repair` to restore it from refs/snapshots/"


class HeadDamaged(IntegrityError):
    """``refs/HEAD`` does not name a readable snapshot; the markers still tell which exist."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"refs/HEAD {problem}", hint=REPAIR_HEAD_HINT)


@dataclass(frozen=True)
class Snapshot(Report):
    id: str
    time: datetime
    tree: str
    parent: str | None
    source: str
    host: str
    tool: str
    stats: dict[str, int] = field(default_factory=dict)
    # The collection list object (mjvault/collections.py); None: the snapshot has none.
    collections: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]


def encode_manifest(
    *,
    time: datetime,
    tree: str,
    parent: str | None,
    source: str,
    host: str,
    tool: str,
    stats: dict[str, int],
    collections: str | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "t": "snapshot",
        "v": MANIFEST_VERSION,
        "time": time.astimezone(UTC).isoformat(timespec="microseconds"),
        "tree": bytes.fromhex(tree),
        "parent": bytes.fromhex(parent) if parent else None,
        "source": source,
        "host": host,
        "tool": tool,
        "stats": stats,
    }
    if collections is not None:
        # Optional and last: a manifest without collections keeps the bytes (and id) it had,
        # and a reader that predates the field ignores it.
        doc["collections"] = bytes.fromhex(collections)
    return msgpack.packb(doc)


def decode_manifest(snapshot_id: str, data: bytes) -> Snapshot:
    try:
        doc = msgpack.unpackb(data)
        if doc.get("t") != "snapshot":
            raise IntegrityError(f"object {snapshot_id} is not a snapshot manifest")
        if doc.get("v") != MANIFEST_VERSION:
            raise IntegrityError(
                f"snapshot {snapshot_id[:12]} has unsupported version {doc.get('v')}"
            )
        return Snapshot(
            id=snapshot_id,
            time=datetime.fromisoformat(doc["time"]),
            tree=bytes(doc["tree"]).hex(),
            parent=bytes(doc["parent"]).hex() if doc.get("parent") else None,
            source=str(doc.get("source", "")),
            host=str(doc.get("host", "")),
            tool=str(doc.get("tool", "")),
            stats={str(k): int(v) for k, v in dict(doc.get("stats") or {}).items()},
            collections=_collections_field(doc.get("collections")),
        )
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError(f"snapshot {snapshot_id[:12]} manifest is malformed: {exc}") from None


def _collections_field(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError("collections is not an object id")
    return value.hex()


class Refs:
    """``refs/HEAD``, ``refs/snapshots/<id>`` and the writer's ``refs/checkpoint``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "refs"
        self.snapshots_dir = self.dir / "snapshots"

    def head(self) -> str | None:
        """HEAD's snapshot id; None only in a vault without snapshots. Raises HeadDamaged."""
        try:
            with open(self.dir / "HEAD", "rb") as handle:
                data = handle.read(HEAD_MAX_BYTES + 1)
        except FileNotFoundError:
            # Before the first snapshot; or a writer was killed between publishing its first
            # marker and HEAD, and its checkpoint lets the next one finish (verify --repair
            # also restores it).
            return None
        except OSError as exc:
            raise HeadDamaged(f"is unreadable: {exc.strerror or exc}") from None
        if not data.strip():
            # No writer leaves an empty HEAD (it is replaced atomically). Read as "no snapshot",
            # the vault would look empty and the next sync would drop every job from HEAD.
            if self.snapshot_ids():
                raise HeadDamaged("is empty, though refs/snapshots/ lists snapshots")
            return None
        text = data.decode("ascii", errors="replace").strip()
        if len(data) > HEAD_MAX_BYTES or not is_object_id(text):
            raise HeadDamaged("does not hold a snapshot id")
        return text

    def set_head(self, snapshot_id: str) -> None:
        atomic_write(self.dir / "HEAD", (snapshot_id + "\n").encode("ascii"))

    def add_snapshot(self, snapshot_id: str) -> None:
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        marker = self.snapshots_dir / snapshot_id
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
        os.fsync(fd)
        os.close(fd)
        fsync_dir(self.snapshots_dir)

    def remove_snapshot(self, snapshot_id: str) -> None:
        try:
            os.unlink(self.snapshots_dir / snapshot_id)
        except FileNotFoundError:
            return
        fsync_dir(self.snapshots_dir)

    def snapshot_ids(self) -> list[str]:
        if not self.snapshots_dir.is_dir():
            return []
        return sorted(n for n in os.listdir(self.snapshots_dir) if is_object_id(n))

    def resolve(self, prefix: str) -> str:
        """A snapshot id from ``HEAD`` or a unique prefix of at least 4 hex digits."""
        if prefix in ("HEAD", "latest"):
            head = self.head()
            if head is None:
                raise MjvaultError("the vault has no snapshot yet")
            return head
        prefix = prefix.lower()
        if len(prefix) < 4:
            raise MjvaultError("a snapshot id needs at least 4 hex digits")
        matches = [s for s in self.snapshot_ids() if s.startswith(prefix)]
        if not matches:
            raise MjvaultError(f"no snapshot {prefix}")
        if len(matches) > 1:
            raise MjvaultError(f"snapshot prefix {prefix} is ambiguous ({len(matches)} match)")
        return matches[0]
