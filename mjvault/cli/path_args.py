"""Paths the user gives on the command line.

An empty argument is refused (click would take ``''`` for ``.``, the current directory). A
file a command writes where the user says (--log-file, export -o, stats --chart) is checked
before any work: the folder must exist (as git and restic do, a typo in a path is
refused, not grown into a directory tree), and the file must not lie inside a vault, where it
could replace the vault's own ``config`` or sit among its objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from mjvault.errors import UsageError


class NonEmptyPath(click.Path):
    """``click.Path`` that refuses an empty value instead of taking it for ``.``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("the path is empty", param, ctx)
        return super().convert(value, param, ctx)


def check_output_file(path: Path, what: str) -> None:
    """A one-line UsageError unless ``path`` can be written as ``what`` (e.g. "the log file")."""
    from mjvault.vault import find_vault  # lazy: --log-file is read before any command loads

    folder = path.expanduser().parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"cannot write {what} {path}: the folder {folder} {why}")
    # Resolved whole: a link named anywhere that points into a vault is refused too.
    # os.path.realpath, not Path.resolve: a link loop must reach the open, which names it,
    # not raise RuntimeError here.
    vault = find_vault(Path(os.path.realpath(path.expanduser())).parent)
    if vault is not None:
        raise UsageError(f"cannot write {what} {path}: it is inside the vault {vault}")
