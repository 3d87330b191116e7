"""A real keyring for tests: keyrings.alt's plain-text file backend, in the test's directory.

The file backend goes through the same `keyring` calls as GNOME Keyring or the macOS Keychain
(the entry names, a missing entry's PasswordDeleteError), without a desktop session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
from keyrings.alt.file import PlaintextKeyring


@contextmanager
def file_keyring(path: Path) -> Iterator[PlaintextKeyring]:
    """The process's keyring is the file ``path`` while the block runs."""
    backend = PlaintextKeyring()
    backend.file_path = str(path)  # an instance-level override the backend allows
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
