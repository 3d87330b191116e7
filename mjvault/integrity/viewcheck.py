"""``mjvault verify --views``: does every file of every checkout view still show its object?

A view remembers each file it made and the object it shows (``mjvault/views/registry.py``).
This check walks those records:

* a symlink must resolve to the object's file, and that file must exist (a dangling link
  is what a moved vault, a deleted object or a hand-edited link leaves);
* a hardlink sharing the object file's inode is the object; otherwise it is checked as a copy;
* a copy or reflink must have the object's size and hash (keyed in an encrypted vault, whose
  views hold decrypted copies). A copy with embedded metadata differs from its object by
  design, so it is checked against the size and modification time recorded when it was made.

Views live in ``mjvault.views``; without that package there is nothing to check, and
:func:`check_views` says so (``available`` is False).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.integrity.verify import Problem
from mjvault.vault import Vault

READ_CHUNK = 1024 * 1024


@dataclass
class ViewCheckReport:
    available: bool = True
    views: int = 0
    files: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "views": self.views,
            "files": self.files,
            "bytes_hashed": self.bytes_hashed,
        }


def check_views(vault: Vault, *, on_file: Callable[[], None] | None = None) -> ViewCheckReport:
    """Check every file of every view; problems are of kind ``view``."""
    try:
        from mjvault.views.links import LinkKind
        from mjvault.views.registry import ViewRegistry
    except ImportError:  # views are an optional part of the package
        return ViewCheckReport(available=False)
    report = ViewCheckReport()
    registry = ViewRegistry(vault)
    for name in registry.names():
        try:
            view = registry.load(name)
        except MjvaultError as exc:
            report.problems.append(Problem("view", f"view {name}: {exc}"))
            continue
        report.views += 1
        root = view.definition.directory
        embedded = bool(getattr(view.definition, "embed_metadata", False))
        for job_id, index, record in view.iter_files():
            report.files += 1
            if on_file:
                on_file()
            path = os.path.join(root, record.path)
            trouble = _check_file(vault, path, record, embedded, LinkKind, report)
            if trouble:
                report.problems.append(
                    Problem(
                        "view",
                        f"view {name}: {path} (image {index}) {trouble}",
                        record.oid,
                        jobs=[job_id],
                    )
                )
    return report


def _check_file(
    vault: Vault,
    path: str,
    record: Any,
    embedded: bool,
    kinds: Any,
    report: ViewCheckReport,
) -> str | None:
    """What is wrong with one view file, or None."""
    object_path = os.fspath(vault.object_path(record.oid))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if record.kind is kinds.SYMLINK:
        if not os.path.islink(path):
            return "should be a symlink but is a file (replaced by hand?)"
        if not os.path.exists(path):
            return "is a dangling symlink (its object is gone or the vault moved)"
        if os.path.realpath(path) != os.path.realpath(object_path):
            return "points at another file than its object"
        return None
    if os.path.islink(path):
        return "should be a file but is a symlink"
    if record.kind is kinds.HARDLINK:
        try:
            target = os.stat(object_path)
        except FileNotFoundError:
            target = None
        if target is not None and (target.st_dev, target.st_ino) == (info.st_dev, info.st_ino):
            return None
    if embedded:
        # Carries the prompt in its own metadata: equal to what was written, not to the object.
        if record.size and (info.st_size, info.st_mtime_ns) != (record.size, record.mtime_ns):
            return "was changed since it was made (size or time differ)"
        return None
    if record.size and info.st_size != record.size:
        return f"has {info.st_size} bytes, its object {record.size}"
    hasher = vault.store.hasher()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                hasher.update(chunk)
                report.bytes_hashed += len(chunk)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if hasher.hexdigest() != record.oid:
        return "differs from its object (damaged or edited)"
    return None
