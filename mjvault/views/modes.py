"""Who may read a view's files: the owner alone, for a plaintext view of an encrypted vault.

A view of an encrypted vault holds decrypted copies, with prompts for names. By default its
directories are 0700 and its files 0600 (``ViewDefinition.private``). New files get those
modes from birth — a umask for the length of the refresh, so no temp file is ever readable
by others, even for an instant — and files made earlier are changed in place when the
setting changes. Only what the view made is touched: its own files and the directories that
hold them; a hard link is the vault's object itself and keeps the object's mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from mjvault.views.links import LinkKind

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_PRIVATE_UMASK = 0o077
_OWN_COPIES = (LinkKind.COPY, LinkKind.REFLINK)


@contextlib.contextmanager
def creating(private: bool) -> Iterator[None]:
    """New files and directories are owner-only while this lasts (when ``private``).

    The umask is the process's: the CLI runs one refresh at a time, and so does the library
    (refreshes hold the views' lock).
    """
    if not private:
        yield
        return
    previous = os.umask(_PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def _usual_modes() -> tuple[int, int]:
    """File and directory modes the user's umask gives (what opting out returns to)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask


def apply(root: Path, files: Iterable[tuple[str, LinkKind]], private: bool) -> None:
    """Give the view's existing files and directories the modes ``private`` asks for."""
    file_mode, dir_mode = (PRIVATE_FILE, PRIVATE_DIR) if private else _usual_modes()
    folders: set[str] = {""}
    for relpath, kind in files:
        parent = os.path.dirname(relpath)
        while parent not in folders:
            folders.add(parent)
            parent = os.path.dirname(parent)
        if kind in _OWN_COPIES:
            _chmod(root / relpath, file_mode)
    for folder in folders:
        _chmod(root / folder if folder else root, dir_mode)


def protect_file(path: Path) -> None:
    _chmod(path, PRIVATE_FILE)


def protect_root(root: Path) -> None:
    """A private view's own directory is 0700 too: its file names are prompts."""
    _chmod(root, PRIVATE_DIR)


def _chmod(path: Path, mode: int) -> None:
    try:
        current = os.lstat(path).st_mode
        # A symlink where the view made a file or folder is the user's: leave what it shows.
        if not stat.S_ISLNK(current) and stat.S_IMODE(current) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass  # gone since it was recorded: the refresh notices and says so
