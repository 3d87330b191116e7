"""What each remote holds, known without going online: ``remotes/<name>/pushed.json``.

A push (and a pull, which lists the same markers) writes here, atomically, the snapshots the
remote holds markers for — in the vault's id space, so an encrypting remote's translated ids
never have to be looked up to answer "is this snapshot offsite?" — and the figures of the
last push. The guard of :mod:`mjvault.integrity.copies` reads it before local forget and gc
drop a snapshot; ``remote info`` shows it.

It is a cache of the remote's listing: lost or damaged, it reads as "nothing known" (the
guard then asks for a push, which writes it again), and it belongs to one remote ``config``
id, so a remote set up again at the same URL is not taken for the old one.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault.remotes.config import state_dir
from mjvault.store.fsutil import atomic_write
from mjvault.store.objects import is_object_id

if TYPE_CHECKING:
    from mjvault.remotes.session import Link

RECORD_FILE = "pushed.json"
RECORD_VERSION = 1


@dataclass
class PushRecord:
    """One remote as last seen by this vault."""

    remote_id: str
    #: Vault ids of the snapshots whose markers the remote holds.
    snapshots: set[str] = field(default_factory=set)
    #: Markers on the remote with no id in this vault (another vault's pushes).
    foreign_snapshots: int = 0
    #: When the remote's markers were last listed (push or pull), ISO 8601 UTC.
    seen: str | None = None
    #: The last push: time, objects_sent, bytes_sent, packs_sent, snapshots_sent.
    last_push: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # Not a report but a stored document: its version first, the snapshots sorted.
        return {
            "version": RECORD_VERSION,
            "remote_id": self.remote_id,
            "seen": self.seen,
            "last_push": self.last_push,
            "foreign_snapshots": self.foreign_snapshots,
            "snapshots": sorted(self.snapshots),
        }


def record_path(vault_path: Path, name: str) -> Path:
    return state_dir(vault_path, name) / RECORD_FILE


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_record(vault_path: Path, name: str, remote_id: str | None = None) -> PushRecord | None:
    """The record of remote ``name``; None when absent, unreadable, or (given ``remote_id``)
    made for another remote at that place. Never raises for a bad file: it is a cache."""
    try:
        doc = json.loads(record_path(vault_path, name).read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
            return None
        ids = doc["snapshots"]
        if not isinstance(ids, list) or not all(
            isinstance(i, str) and is_object_id(i) for i in ids
        ):
            return None
        last = doc.get("last_push")
        record = PushRecord(
            remote_id=str(doc["remote_id"]),
            snapshots=set(ids),
            foreign_snapshots=int(doc.get("foreign_snapshots") or 0),
            seen=doc.get("seen") if isinstance(doc.get("seen"), str) else None,
            last_push=last if isinstance(last, dict) else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if remote_id is not None and record.remote_id != remote_id:
        return None
    return record


def save_record(vault_path: Path, name: str, record: PushRecord) -> None:
    folder = state_dir(vault_path, name)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(
        record_path(vault_path, name),
        json.dumps(record.to_json(), indent=1).encode("utf-8"),
        mode=0o600,
    )


def note_markers(
    vault_path: Path,
    name: str,
    remote_id: str,
    local_ids: Iterable[str | None],
    *,
    last_push: dict[str, Any] | None = None,
) -> PushRecord:
    """Replace what is known of remote ``name``'s markers by a complete listing of them,
    each given as its vault id (None: a marker this vault cannot name), and save it.

    A push passes the markers it listed plus those it published, and its figures; the figures
    of an earlier push are kept when ``last_push`` is None (a pull).
    """
    old = load_record(vault_path, name, remote_id)
    record = PushRecord(remote_id=remote_id, seen=now_iso())
    for local_id in local_ids:
        if local_id is None:
            record.foreign_snapshots += 1
        else:
            record.snapshots.add(local_id)
    record.last_push = last_push if last_push is not None else (old.last_push if old else None)
    save_record(vault_path, name, record)
    return record


def drop_markers(vault_path: Path, name: str, local_ids: Iterable[str]) -> None:
    """Forget snapshots the remote no longer holds (a prune on the remote removed their
    markers), so the guard never trusts a copy that is gone."""
    record = load_record(vault_path, name)
    if record is None:
        return
    record.snapshots.difference_update(local_ids)
    save_record(vault_path, name, record)


def vault_ids_of(link: Link, remote_ids: Iterable[str]) -> Iterator[str | None]:
    """Remote snapshot ids in the vault's id space (None: not known to this vault)."""
    for remote_id in remote_ids:
        yield remote_id if link.idmap is None else link.idmap.plain_of(remote_id)


def note_push(
    vault_path: Path,
    link: Link,
    listed: Iterable[str],
    published: Iterable[str],
    figures: dict[str, Any],
) -> PushRecord:
    """After a push: the markers it listed (remote ids) and those it published (vault ids)."""
    ids = itertools.chain(vault_ids_of(link, listed), published)
    last = {"time": now_iso()} | figures
    return note_markers(vault_path, link.spec.name, link.info.id, ids, last_push=last)
