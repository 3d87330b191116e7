"""The files checked-out views show for a job, when views exist in this build and vault.

Views (``mjvault.views``) are optional here: without them every function answers "none".
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mjvault.errors import UsageError

if TYPE_CHECKING:
    from mjvault.vault import Vault

ViewPaths = dict[str, list[str]]  # job id -> absolute file paths, by image index


def views_available() -> bool:
    try:
        import mjvault.views.registry  # noqa: F401
    except ImportError:
        return False
    return True


def view_paths(vault: Vault, name: str) -> ViewPaths:
    """The files of the view ``name``, per job; a clear error when there is no such view."""
    if not views_available():
        raise UsageError("this mjvault has no checkout views, so --paths cannot be used")
    from mjvault.views.registry import ViewRegistry

    view = ViewRegistry(vault).load(name)
    return _paths_of(view)


def all_view_paths(vault: Vault) -> ViewPaths:
    """The files of every view, per job (empty when views are absent or none exist)."""
    if not views_available():
        return {}
    from mjvault.views.registry import ViewRegistry

    merged: ViewPaths = {}
    for view in ViewRegistry(vault).all():
        for job_id, paths in _paths_of(view).items():
            merged.setdefault(job_id, []).extend(paths)
    return merged


def _paths_of(view: object) -> ViewPaths:
    directory = os.fspath(view.definition.directory)  # type: ignore[attr-defined]
    found: ViewPaths = {}
    for job_id, images in view.files.items():  # type: ignore[attr-defined]
        found[job_id] = [os.path.join(directory, images[index].path) for index in sorted(images)]
    return found
