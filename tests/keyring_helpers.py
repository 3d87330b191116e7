"""Keyrings for tests: keyrings.alt's plain-text file backend, in the test's directory, and a
backend in memory whose entries a test reads as a dict.

Both go through the same `keyring` calls as GNOME Keyring or the macOS Keychain (the entry
names, a missing entry's PasswordDeleteError), without a desktop session. Each is the
process's keyring for one block and gives the previous one back after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import keyring
import keyring.core
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError
from keyrings.alt.file import PlaintextKeyring

KeyringBackendT = TypeVar("KeyringBackendT", bound=KeyringBackend)


@contextmanager
def file_keyring(path: Path) -> Iterator[PlaintextKeyring]:
    """The process's keyring is the file ``path`` while the block runs."""
    backend = PlaintextKeyring()
    backend.file_path = str(path)  # an instance-level override the backend allows
    with installed(backend):
        yield backend


class MemoryKeyring(KeyringBackend):
    """A keyring whose entries are ``entries``, keyed by (service, username)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@contextmanager
def memory_keyring() -> Iterator[MemoryKeyring]:
    """The process's keyring is a fresh :class:`MemoryKeyring` while the block runs."""
    with installed(MemoryKeyring()) as backend:
        yield backend


@contextmanager
def installed(backend: KeyringBackendT) -> Iterator[KeyringBackendT]:
    """``backend`` is the process's keyring while the block runs. What was there before is
    put back as it was, none included: asking `keyring` for it would detect one on its own
    (a desktop's, or keyrings.alt's file in the home folder) and leave it for later tests."""
    previous = keyring.core._keyring_backend  # type: ignore[attr-defined]
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = previous  # type: ignore[attr-defined]
