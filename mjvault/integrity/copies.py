"""Copies: local forget and gc never drop the last copy of a snapshot no remote holds.

git-annex's numcopies idea, for whole snapshots: before ``forget`` removes the marker of a
snapshot, or ``gc`` deletes the manifest of one already forgotten, the snapshot must be held
by some remote as last seen by this vault (the push record, :mod:`mjvault.remotes.record`).
Otherwise the command refuses, naming the snapshots and the remote to push to, unless
``--force``. Nothing is asked of the network: the record is what the vault's own pushes and
pulls saw.

A vault with no remote is not guarded: its owner keeps no offsite copy, so every forget would
be refused and ``--force`` would become a habit that means nothing.

Snapshots let go on purpose — by ``forget --force``, or replaced by ``forget --job``'s rewrite
(the job is meant to go; every other job is in the new snapshot) — are written to
``remotes/_released`` so a later gc does not ask again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound
from mjvault.integrity.reachability import Marks
from mjvault.remotes.config import remote_names, remotes_dir
from mjvault.remotes.record import load_record
from mjvault.reports import Report, json_meta
from mjvault.snapshots import decode_manifest
from mjvault.store.codec import is_framed
from mjvault.store.fsutil import atomic_write
from mjvault.store.objects import is_object_id
from mjvault.vault import Vault

RELEASED_FILE = "_released"  # "_" cannot begin a remote's name, so no remote's state clashes
# A manifest is a few hundred bytes; larger unreferenced objects are media and never read.
MANIFEST_MAX_BYTES = 64 * 1024
SHOWN = 3  # snapshot ids named in the one-line message


class NotOffsite(MjvaultError):
    """A forget or gc would drop the last copy of snapshots that no remote holds."""

    def __init__(self, check: CopiesCheck, command: str) -> None:
        super().__init__(check.message(command), hint=check.hint(command))
        self.check = check


@dataclass
class CopiesCheck(Report):
    """The snapshots a command would drop that no remote holds, and where to push them."""

    json_before = ("ok",)

    #: Vault ids, sorted.
    unsafe: list[str] = field(default_factory=list, metadata=json_meta(name="snapshots"))
    #: The remote a push should go to: the one that holds the most of the vault's snapshots.
    remote: str | None = field(default=None, metadata=json_meta(name="push_to"))
    remotes: list[str] = field(default_factory=list)
    #: Whether ``--force`` let the drop go ahead anyway.
    forced: bool = False

    @property
    def ok(self) -> bool:
        return not self.unsafe

    def message(self, command: str) -> str:
        shown = ", ".join(i[:12] for i in self.unsafe[:SHOWN])
        more = f" and {len(self.unsafe) - SHOWN} more" if len(self.unsafe) > SHOWN else ""
        what = "snapshot" if len(self.unsafe) == 1 else "snapshots"
        return f"{command} would drop the last copy of {what} {shown}{more}: no remote holds it"

    def hint(self, command: str) -> str:
        if command == "gc":
            # Forgotten already, so a push cannot send it; a lost push record can be rebuilt.
            return (
                f"`mjvault push {self.remote}` first if it was pushed before it was forgotten "
                "(a push refreshes what this vault knows of the remote), or gc --force"
            )
        return f"run `mjvault push {self.remote}` first, or {command} --force"


def offsite(vault_path: Path) -> tuple[set[str], list[str], str | None]:
    """(snapshots some remote holds, every remote's name, the remote holding the most)."""
    names = remote_names(vault_path)
    held: set[str] = set()
    best: tuple[int, str] | None = None
    for name in names:
        record = load_record(vault_path, name)
        count = len(record.snapshots) if record else 0
        if record:
            held |= record.snapshots
        if best is None or count > best[0]:
            best = (count, name)
    return held, names, best[1] if best else None


def check(vault: Vault, dropping: Iterable[str]) -> CopiesCheck | None:
    """Which of ``dropping`` (snapshot ids) no remote holds; None when the vault has none."""
    held, names, best = offsite(vault.path)
    if not names:
        return None
    released = read_released(vault.path)
    unsafe = sorted({i for i in dropping if i not in held and i not in released})
    return CopiesCheck(unsafe=unsafe, remote=best, remotes=names)


def enforce(
    vault: Vault, found: CopiesCheck | None, command: str, *, force: bool, dry_run: bool
) -> None:
    """Refuse (raise :class:`NotOffsite`) unless forced or only planning; a forced drop is
    remembered as released so the next gc does not ask again."""
    if found is None or found.ok:
        return
    if dry_run:
        return
    if not force:
        raise NotOffsite(found, command)
    found.forced = True
    release(vault.path, found.unsafe)


def forgotten_manifests(vault: Vault, marks: Marks, cutoff: float) -> Iterator[str]:
    """Ids of the snapshot manifests gc would delete: loose, unmarked, older than ``cutoff``.

    Only small framed objects are read (media is raw or large), so the cost is one listing
    of the loose objects and a read of the few candidates.
    """
    root = os.fspath(vault.store.objects_dir)
    for object_id in vault.store.iter_loose_ids():
        if object_id in marks:
            continue
        path = os.path.join(root, object_id[:2], object_id)
        try:
            info = os.lstat(path)
            if info.st_mtime > cutoff or info.st_size > MANIFEST_MAX_BYTES:
                continue
            with open(path, "rb") as f:
                if not is_framed(f.read(4)):
                    continue
            decode_manifest(object_id, vault.store.read(object_id))
        except (OSError, ObjectNotFound, CorruptObject, IntegrityError):
            continue  # not a manifest (or unreadable: then it is no copy to protect)
        yield object_id


def check_gc(vault: Vault, marks: Marks, cutoff: float) -> CopiesCheck | None:
    if not remote_names(vault.path):
        return None  # no listing of the objects for a vault that keeps no offsite copy
    return check(vault, forgotten_manifests(vault, marks, cutoff))


# -- snapshots let go on purpose -----------------------------------------------------------


def released_path(vault_path: Path) -> Path:
    return remotes_dir(vault_path) / RELEASED_FILE


def read_released(vault_path: Path) -> set[str]:
    try:
        text = released_path(vault_path).read_text("ascii", errors="replace")
    except OSError:
        return set()
    return {line for line in text.split() if is_object_id(line)}


def release(vault_path: Path, snapshot_ids: Iterable[str]) -> None:
    """Append ids (one a line, synced): a torn last line is skipped by the reader."""
    lines = "".join(f"{i}\n" for i in snapshot_ids)
    if not lines or not remote_names(vault_path):
        return  # no guard to tell
    remotes_dir(vault_path).mkdir(mode=0o700, exist_ok=True)
    fd = os.open(released_path(vault_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, lines.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def tidy_released(vault: Vault) -> None:
    """After a gc: keep only ids whose manifest is still in the vault."""
    ids = read_released(vault.path)
    if not ids:
        return
    kept = sorted(i for i in ids if vault.store.exists(i))
    if len(kept) != len(ids):
        atomic_write(
            released_path(vault.path), "".join(f"{i}\n" for i in kept).encode(), mode=0o600
        )
