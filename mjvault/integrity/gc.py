"""``mjvault gc``: remove objects nothing refers to any more.

Clear, mark, then sweep, all under the vault's write lock:

* **clear** the temp files dead writers left (:mod:`mjvault.store.tempfiles`) before anything
  else, so that gc runs on a disk that is full;
* **mark** every object reachable from a snapshot marker, from ``refs/checkpoint`` (an
  unfinished sync's work, which its next run resumes from) and from checkout views
  (:mod:`mjvault.integrity.reachability`);
* **sweep** every object file in ``objects/`` that is not marked *and* whose modification time
  is older than the grace period (default one hour).

Two guards keep a running sync's objects safe. The lock: a sync holds it from start to
commit, so gc either waits for it (``wait``) or stops with the lock message, as restic's
prune does. The grace period: an object younger than it is never swept, which also covers
writers the lock cannot see (another machine writing to a shared folder whose file system
does not carry ``flock`` across hosts). A gc killed at any moment leaves a consistent vault:
it deletes only unreferenced files and changes no ref.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mjvault.errors import UsageError, VaultLocked
from mjvault.integrity.reachability import mark_reachable
from mjvault.lock import WriteLock
from mjvault.store.tempfiles import remove_stale_temp_files
from mjvault.vault import Vault

DEFAULT_GRACE_SECONDS = 3600.0
LOCK_POLL_SECONDS = 0.25
MAX_LISTED = 1000  # ids listed in a report; counts and bytes are always complete

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w``, ``1h30m`` or a bare number of seconds."""
    spec = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        return float(spec)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise UsageError(f"cannot read the duration {text!r} (examples: 90s, 30m, 1h, 2d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class GcReport:
    dry_run: bool
    grace_seconds: float
    snapshots: int = 0
    tree_nodes: int = 0
    jobs: int = 0
    checkpoint_protected: bool = False
    views: int = 0
    objects_seen: int = 0
    objects_kept: int = 0
    unreferenced: int = 0
    kept_young: int = 0
    kept_young_bytes: int = 0
    removed: int = 0
    removed_bytes: int = 0
    temp_files_removed: int = 0
    temp_bytes_removed: int = 0
    mark_memory_bytes: int = 0
    seconds: float = 0.0
    removed_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__) | {"seconds": round(self.seconds, 3)}


@contextlib.contextmanager
def acquire_lock(vault: Vault, wait: float | None, command: str) -> Iterator[WriteLock]:
    """Hold the write lock; with ``wait`` (seconds, may be ``inf``) poll until it is free."""
    lock = WriteLock(vault.path, command=command)
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            break
        except VaultLocked:
            if deadline is None or time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_POLL_SECONDS)
    try:
        yield lock
    finally:
        lock.release()


def gc(
    vault: Vault,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    wait: float | None = None,
    on_object: Callable[[], None] | None = None,
    now: float | None = None,
) -> GcReport:
    """Remove unreferenced objects older than ``grace_seconds``; see the module docstring."""
    if grace_seconds < 0:
        raise UsageError("the grace period cannot be negative")
    started = time.monotonic()
    report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds)
    with acquire_lock(vault, wait, "mjvault gc") as lock:
        if lock.note_error:
            report.notes.append(f"the lock note was not written ({lock.note_error}); gc went on")
        # First, and whatever their age: on a full disk they may be the space gc needs, and
        # holding the lock proves no live writer owns them.
        temp = remove_stale_temp_files(vault.path, dry_run=dry_run)
        report.temp_files_removed, report.temp_bytes_removed = temp.files, temp.bytes
        marks, marked = mark_reachable(vault)
        report.snapshots = marked.snapshots
        report.tree_nodes = marked.tree_nodes
        report.jobs = marked.jobs
        report.checkpoint_protected = marked.checkpoint is not None
        report.views = marked.views
        report.mark_memory_bytes = marks.memory_bytes()
        # Taken after marking: anything written after this instant is younger than the cutoff.
        cutoff = (time.time() if now is None else now) - grace_seconds
        for object_id, path in _object_files(vault):
            report.objects_seen += 1
            if on_object:
                on_object()
            if object_id in marks:
                report.objects_kept += 1
                continue
            report.unreferenced += 1
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if info.st_mtime > cutoff:
                report.kept_young += 1
                report.kept_young_bytes += info.st_size
                continue
            if not dry_run:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
            report.removed += 1
            report.removed_bytes += info.st_size
            if len(report.removed_ids) < MAX_LISTED:
                report.removed_ids.append(object_id)
    report.seconds = time.monotonic() - started
    return report


def _object_files(vault: Vault) -> Iterator[tuple[str, str]]:
    root = os.fspath(vault.store.objects_dir)
    for object_id in vault.store.iter_ids():
        yield object_id, os.path.join(root, object_id[:2], object_id)
