"""The files checked-out views show for a job: ``search --paths`` and the exports' column."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mjvault.vault import Vault
    from mjvault.views.registry import View

ViewPaths = dict[str, list[str]]  # job id -> absolute file paths, by image index


def view_paths(vault: Vault, name: str) -> ViewPaths:
    """The files of the view ``name``, per job; a clear error when there is no such view."""
    # Imported here, not above: every search imports this module, and the views' writers
    # bring what a reader never needs (tests/test_startup.py keeps it so).
    from mjvault.views.registry import ViewRegistry

    return _paths_of(ViewRegistry(vault).load(name))


def all_view_paths(vault: Vault) -> ViewPaths:
    """The files of every view, per job (empty when none exist)."""
    from mjvault.views.registry import ViewRegistry

    merged: ViewPaths = {}
    for view in ViewRegistry(vault).all():
        for job_id, paths in _paths_of(view).items():
            merged.setdefault(job_id, []).extend(paths)
    return merged


def _paths_of(view: View) -> ViewPaths:
    directory = os.fspath(view.definition.directory)
    by_job: dict[str, list[tuple[int, str]]] = {}
    for job_id, index, record in view.iter_files():
        by_job.setdefault(job_id, []).append((index, os.path.join(directory, record.path)))
    return {job_id: [path for _, path in sorted(files)] for job_id, files in by_job.items()}
