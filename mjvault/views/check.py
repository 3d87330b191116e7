"""Do a vault's views still show what they claim to? (``verify --views``; gc's mark phase.)

Each file a view made is checked against the object it was made from:

* a symlink must still point at that object, and the object must exist;
* a hard link must still be the object's own inode;
* a copy must hold the object's bytes (its hash is the object's name) — unless it was made
  with embedded metadata, which changes the bytes by design: then it must be unchanged since
  it was made (same size and modification time).

And the view's state must agree with its directory: no refresh left unfinished, no temp
file left behind, no link into the vault the state does not list, no image recorded as
blocked by a file that is in fact exactly the view's. A checkout killed midway leaves such
disagreements; the next ``mjvault checkout`` settles them (:func:`is_exactly` is how it
recognises its own files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mjvault.errors import MjvaultError
from mjvault.reports import Report
from mjvault.views.files import FileRecord
from mjvault.views.links import LinkKind, temp_files
from mjvault.views.registry import View, ViewRegistry

if TYPE_CHECKING:
    from mjvault.vault import Vault


@dataclass(frozen=True)
class ViewProblem(Report):
    view: str
    path: str  # absolute
    job_id: str
    index: int
    object_id: str
    # "missing" | "dangling" | "points elsewhere" | "differs" | "changed" for a file of the
    # view; "unfinished" | "temp file" | "unrecorded" | "not blocked" where state and files
    # disagree ("unfinished" is about the whole view: index -1, no object).
    problem: str


def referenced_objects(
    vault: Vault, *, on_view: Callable[[str], None] | None = None
) -> Iterator[str]:
    """The object of every file some view shows, view by view (an id may come again): what
    gc keeps for the views, as a pinned view's snapshot may go. Streamed: a big view shows
    millions. ``on_view`` is told each view's name before its file is read; a view file that
    cannot be read raises (:class:`MjvaultError`), since what it shows is then unknown."""
    registry = ViewRegistry(vault)
    for name in registry.names():
        if on_view is not None:
            on_view(name)
        yield from registry.load(name).iter_object_ids()


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
    yield from check_state(vault, view)


def check_state(vault: Vault, view: View) -> Iterator[ViewProblem]:
    """Where the view's state and its directory disagree (one walk of the directory)."""
    root = view.definition.directory
    if view.unfinished:
        yield ViewProblem(view.name, str(root), "", -1, "", "unfinished")
    if not root.is_dir():
        return
    for temp in temp_files(root):
        yield ViewProblem(view.name, str(temp), "", -1, "", "temp file")
    for job_id, images in view.blocked.items():
        if view.definition.embed_metadata:
            break  # such copies differ from their objects by design: only a refresh can tell
        for index, record in images.items():
            where = os.fspath(root / record.path)
            source = os.path.realpath(vault.object_path(record.oid))
            oid = record.oid
            copy = record.kind in (LinkKind.COPY, LinkKind.REFLINK)
            expected = _reader(vault, oid) if copy else None
            if is_exactly(vault, where, record.kind, source, oid, expected):
                yield ViewProblem(view.name, where, job_id, index, oid, "not blocked")
    listed = {record.path for _, _, record in view.iter_files()}
    listed.update(record.path for images in view.blocked.values() for record in images.values())
    objects = os.path.join(os.path.realpath(vault.path), "objects") + os.sep
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.relpath(path, root) in listed or not os.path.islink(path):
                continue
            target = os.path.normpath(os.path.join(folder, os.readlink(path)))
            if target.startswith(objects):
                yield ViewProblem(view.name, path, "", -1, os.path.basename(target), "unrecorded")


def is_exactly(
    vault: Vault,
    path: str,
    kind: LinkKind,
    source: str,
    oid: str,
    expected: Callable[[], bytes] | None = None,
) -> bool:
    """Is the file at ``path`` exactly what a view makes to show object ``oid`` by ``kind``?

    ``source`` is the object's file. A symlink must resolve to it; a hard link must be its
    inode; a copy (or reflink) must hold its bytes: size first, then the hash, which is the
    object's name. ``expected`` gives the bytes a copy should hold when they are not the
    object file's own (a decrypted or decoded object, embedded metadata); they are made only
    when the sizes could match.
    """
    try:
        if kind is LinkKind.SYMLINK:
            target = os.readlink(path)
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
            return resolved == os.path.normpath(source) and os.path.exists(source)
        stat = os.lstat(path)
        if not os.path.isfile(path) or os.path.islink(path):
            return False
        if kind is LinkKind.HARDLINK:
            other = os.stat(source)
            return (stat.st_dev, stat.st_ino) == (other.st_dev, other.st_ino)
        if expected is None:
            if stat.st_size != os.stat(source).st_size:
                return False
            return _hash_file(vault, path) == oid
        data = expected()
        if stat.st_size != len(data):
            return False
        with open(path, "rb") as handle:
            return handle.read(len(data) + 1) == data
    except (OSError, MjvaultError):  # unreadable, or the object itself is: not the view's
        return False


def _reader(vault: Vault, oid: str) -> Callable[[], bytes]:
    return lambda: vault.read_object(oid)


def _hash_file(vault: Vault, path: os.PathLike[str] | str) -> str:
    hasher = vault.store.hasher()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


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
    return None if _hash_file(vault, path) == record.oid else "differs"
