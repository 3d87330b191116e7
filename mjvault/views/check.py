"""Do a vault's views still show what they claim to? (``verify --views``; gc's mark phase.)

Each file a view made is checked against the object it was made from:

* a symlink must still point at that object, and the object must exist;
* a hard link must still be the object's own inode;
* a copy must hold the object's bytes (its hash is the object's name) — unless it was made
  with embedded metadata, which changes the bytes by design: then it must be unchanged since
  it was made (same size and modification time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mjvault.views.links import LinkKind
from mjvault.views.registry import FileRecord, View, ViewRegistry

if TYPE_CHECKING:
    from mjvault.vault import Vault


@dataclass(frozen=True)
class ViewProblem:
    view: str
    path: str  # absolute
    job_id: str
    index: int
    object_id: str
    problem: str  # "missing" | "dangling" | "points elsewhere" | "differs" | "changed"

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def referenced_objects(vault: Vault) -> set[str]:
    """Every object some view shows: gc must keep these (a pinned view's snapshot may go)."""
    found: set[str] = set()
    for view in ViewRegistry(vault).all():
        found |= view.object_ids()
    return found


def check_views(vault: Vault, *, read_data: bool = True) -> Iterator[ViewProblem]:
    """Problems in the files of every view; ``read_data=False`` skips hashing copies."""
    for view in ViewRegistry(vault).all():
        yield from check_view(vault, view, read_data=read_data)


def check_view(vault: Vault, view: View, *, read_data: bool = True) -> Iterator[ViewProblem]:
    root = view.definition.directory
    for job_id, index, record in view.iter_files():
        path = root / record.path
        problem = _check_file(vault, view, path, record, read_data)
        if problem is not None:
            yield ViewProblem(view.name, str(path), job_id, index, record.oid, problem)


def _check_file(
    vault: Vault, view: View, path: os.PathLike[str], record: FileRecord, read_data: bool
) -> str | None:
    if not os.path.lexists(path):
        return "missing"
    source = vault.object_path(record.oid)
    if record.kind is LinkKind.SYMLINK:
        if not os.path.islink(path) or os.path.basename(os.readlink(path)) != record.oid:
            return "points elsewhere"
        return None if os.path.exists(path) and os.path.exists(source) else "dangling"
    if record.kind is LinkKind.HARDLINK:
        try:
            return None if os.path.samefile(path, source) else "points elsewhere"
        except OSError:
            return "dangling"
    if os.path.islink(path):
        return "points elsewhere"
    if view.definition.embed_metadata or not read_data:
        stat = os.stat(path)
        unchanged = stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns
        return None if unchanged else "changed"
    hasher = vault.store.hasher()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return None if hasher.hexdigest() == record.oid else "differs"
