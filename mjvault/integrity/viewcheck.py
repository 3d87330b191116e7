"""``mjvault verify --views``: does every file of every checkout view still show its object?

The file checks themselves belong to the views (:func:`mjvault.views.check.check_view`: a
symlink must point at its object and the object exist, a hard link must be the object's own
inode, a copy must hash to the object's name, or be unchanged since it was made when it
carries embedded metadata; and the view's state must agree with its directory, which a
checkout killed midway can leave otherwise). This module runs them view by view — a view file that cannot be
read is one problem, not the end of the check — and reports what they find as verify
problems of kind ``view``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.integrity.problems import Problem
from mjvault.reports import Report
from mjvault.vault import Vault
from mjvault.views.check import check_view
from mjvault.views.registry import ViewRegistry

# What each problem the views report means, in a sentence a user can act on.
EXPLAINED = {
    "missing": "is missing",
    "dangling": "is a dangling link (its object is gone, or the vault moved)",
    "points elsewhere": "points at another file than its object (replaced by hand?)",
    "differs": "differs from its object (damaged or edited)",
    "changed": "was changed since it was made (size or time differ)",
    # The view's state and its files disagree (a checkout was killed midway):
    "unfinished": "is a view whose last checkout was interrupted: its state may not list "
    "all its files",
    "temp file": "is a temporary file left by an interrupted checkout",
    "unrecorded": "is a link into the vault that the view does not list (an interrupted "
    "checkout? if the view does not want it, remove it)",
    "not blocked": "is exactly the view's image, yet the view counts it as a file in the way",
}


@dataclass
class ViewCheckReport(Report):
    views: int = 0
    files: int = 0
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the problems go into the verify report's list, not here; and
        # "available" is kept for scripts that read it: views are always part of mjvault.
        return {"available": True, "views": self.views, "files": self.files}


def verify_views(
    vault: Vault, *, read_data: bool = True, on_view: Callable[[str], None] | None = None
) -> ViewCheckReport:
    """Check every file of every view; ``read_data=False`` skips hashing copies."""
    report = ViewCheckReport()
    registry = ViewRegistry(vault)
    for name in registry.names():
        if on_view:
            on_view(name)
        try:
            view = registry.load(name)
        except MjvaultError as exc:
            report.problems.append(Problem("view", f"view {name}: {exc}"))
            continue
        report.views += 1
        report.files += view.file_count()
        try:
            found = list(check_view(vault, view, read_data=read_data))
        except OSError as exc:  # an unmounted disk, a directory without permission
            report.problems.append(Problem("view", f"view {name}: cannot be read: {exc}"))
            continue
        except MjvaultError as exc:  # its file list turned out damaged while it was read
            report.problems.append(Problem("view", f"view {name}: {exc}"))
            continue
        finally:
            view.release()
        for item in found:
            image = f" (image {item.index})" if item.index >= 0 else ""
            report.problems.append(
                Problem(
                    "view",
                    f"view {item.view}: {item.path}{image} "
                    f"{EXPLAINED.get(item.problem, item.problem)}",
                    item.object_id or None,
                    jobs=[item.job_id] if item.job_id else [],
                )
            )
    return report
