"""``mjvault remote info``: what a remote holds, counted from one listing of it.

The listing is streamed and only counted (a few integers per kind of key), so a remote of
millions of objects is surveyed in flat memory; no object is read and no passphrase is asked
for. What the vault's own pushes recorded (:mod:`.record`) is shown beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjvault.integrity.exclusions import pending_on
from mjvault.remotes.backend import Backend
from mjvault.remotes.config import RemoteSpec
from mjvault.remotes.packs import PACKS_PREFIX
from mjvault.remotes.record import load_record
from mjvault.remotes.remote import (
    KEYS_PREFIX,
    OBJECTS_PREFIX,
    SNAPSHOTS_PREFIX,
    read_info,
)
from mjvault.reports import Report

# Keys listed between two calls of the progress callback.
PROGRESS_EVERY = 1000
KINDS = {
    OBJECTS_PREFIX: "objects",
    PACKS_PREFIX: "packs",
    SNAPSHOTS_PREFIX: "snapshots",
    KEYS_PREFIX: "keys",
}


@dataclass
class Tally(Report):
    count: int = 0
    bytes: int = 0


@dataclass
class Survey(Report):
    name: str
    url: str
    remote_id: str | None = None
    version: int | None = None
    #: None: plain; else the remote's ``config`` encryption object.
    encryption: dict[str, Any] | None = None
    clone_as: str | None = None
    #: objects (loose), packs, snapshots (markers), keys, other (config and unknown keys).
    kinds: dict[str, Tally] = field(default_factory=dict)
    #: From the local push record: the last push, when the markers were last seen, and how
    #: many of this vault's snapshots the remote holds.
    last_push: dict[str, Any] | None = None
    seen: str | None = None
    local_snapshots: int = 0
    local_snapshots_held: int | None = None
    #: Jobs on the vault's list of forgotten jobs the remote may still hold (None: no list);
    #: they go at its next ``gc --remote``.
    forgotten_pending: int | None = None

    @property
    def total(self) -> Tally:
        return Tally(
            sum(t.count for t in self.kinds.values()), sum(t.bytes for t in self.kinds.values())
        )

    def to_json(self) -> dict[str, Any]:
        # Its own shape: one key per kind of key on the remote, and their total.
        return {
            "name": self.name,
            "url": self.url,
            "remote_id": self.remote_id,
            "format_version": self.version,
            "encryption": self.encryption,
            "clone_as": self.clone_as,
            **{kind: tally.to_json() for kind, tally in self.kinds.items()},
            "total": self.total.to_json(),
            "last_push": self.last_push,
            "markers_seen": self.seen,
            "local_snapshots": self.local_snapshots,
            "local_snapshots_held": self.local_snapshots_held,
            "forgotten_pending": self.forgotten_pending,
        }


def survey(
    spec: RemoteSpec,
    backend: Backend,
    vault_path: Path,
    local_snapshots: set[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> Survey:
    """Count what ``backend`` holds; ``progress(n)`` is told every :data:`PROGRESS_EVERY`
    keys listed."""
    result = Survey(spec.name, spec.url)
    info = read_info(backend)
    if info is not None:
        result.remote_id, result.version = info.id, info.version
        result.encryption, result.clone_as = info.encryption, info.clone_as
    result.kinds = {kind: Tally() for kind in (*KINDS.values(), "other")}
    listed = 0
    for meta in backend.list_meta(""):
        prefix = meta.key.split("/", 1)[0] + "/"
        tally = result.kinds[KINDS.get(prefix, "other")]
        tally.count += 1
        tally.bytes += meta.size
        listed += 1
        if progress is not None and listed % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None:
        progress(listed % PROGRESS_EVERY)
    record = load_record(vault_path, spec.name, result.remote_id) if result.remote_id else None
    result.local_snapshots = len(local_snapshots)
    if record is not None:
        result.last_push, result.seen = record.last_push, record.seen
        result.local_snapshots_held = len(local_snapshots & record.snapshots)
    result.forgotten_pending = pending_on(vault_path, spec.name)
    return result
