"""The single-writer lock. Readers never take it: objects are immutable and refs are replaced
atomically, so a reader always sees a consistent vault.

The lock is an ``flock`` on ``<vault>/lock``, which the kernel drops when its process dies, plus
a note of the holder (pid, host, time, command) for error messages. A note left by a process
that died without cleaning up is a stale lock: it is reported, and taken over only when its
process is provably gone (same host, pid not running).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from mjvault.errors import MjvaultError, VaultLocked

log = logging.getLogger(__name__)


MAX_NOTE_BYTES = 4096  # a note is about 120 bytes; anything longer was not written by a lock
# How long a writer waits for a holder whose note says ``"brief": true`` (the server keeping a
# thumbnail it made: milliseconds, two syncfs at worst) before it says "locked".
BRIEF_WAIT = 5.0
# How long a held lock with no note yet is given to show one: a holder writes its note just
# after it takes the flock, so a writer arriving in between sees none for a moment.
NOTE_GRACE = 0.05
_RETRY = 0.005
# The lock file is truncated on acquire, release and unlock: a ``lock`` that is a symlink
# (planted, or copied in with a vault) must fail with ELOOP, not truncate the file it names.
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW
_FIELD_CHARS = 80  # of a host or command shown in a message


def _open_lock(path: Path, flags: int) -> int:
    """Open the lock file; a ``lock`` that is a symlink is refused in one line that says
    what to do (the file it names is left alone), never an OSError naming ELOOP."""
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise MjvaultError(
            f"the vault's lock file {path} is a symbolic link, which mjvault never makes",
            hint="delete the link; what it points at is not touched",
        ) from None


def read_holder(path: Path) -> dict[str, object] | None:
    """The holder a note names, or None when there is no note or it is not one.

    Any content at all may be found here (a hand edit, a damaged disk, a note of another
    tool): only a JSON object of bounded size counts; everything else is no holder.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_NOTE_BYTES + 1)
    except OSError:
        return None
    return parse_note(data)


def parse_note(data: bytes) -> dict[str, object] | None:
    if len(data) > MAX_NOTE_BYTES or not data.strip():
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return None
    return doc if isinstance(doc, dict) else None


def _shown(value: object) -> str:
    """A note's field as one short printable line, whatever its type."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return "?"
    text = "".join(c if c.isprintable() else "?" for c in str(value)[:_FIELD_CHARS])
    return text or "?"


def describe_holder(holder: dict[str, object] | None) -> str:
    if not holder:
        return "another process"
    started = holder.get("time")
    when = "?"
    if isinstance(started, (int, float)):
        with contextlib.suppress(ValueError, OverflowError, OSError):  # nan, 1e300, …
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return (
        f"pid {_shown(holder.get('pid'))} on {_shown(holder.get('host'))} "
        f"({_shown(holder.get('command', '?'))}, since {when})"
    )


# The root options that take a value: the word after one is not the command.
_VALUE_OPTIONS = frozenset({"--vault", "--profile", "--log-file", "--passphrase-file"})


def command_name(argv: list[str]) -> str:
    """``mjvault <command>`` for a note: the command's name and nothing else of argv.

    The note outlives a killed writer, in the vault; the rest of argv may hold a job id, a
    search query or a folder's name, which an encrypted vault must not keep in the clear.
    """
    words = iter(argv[1:])
    for arg in words:
        if arg in _VALUE_OPTIONS:
            next(words, None)
        elif not arg.startswith("-"):
            # A command's name is a short lowercase word; anything else is not named.
            if arg.isascii() and arg.replace("-", "").isalpha() and arg.islower():
                return f"mjvault {arg[:20]}"
            break
    return "mjvault"


def _hostname() -> str:
    # socket is imported by writers only: a command that reads never takes the lock.
    import socket

    return socket.gethostname()


# What a non-blocking flock that finds the lock held raises: EAGAIN (EWOULDBLOCK) here, EACCES
# on some systems and file systems (Python's fcntl documentation says to check for both).
_HELD = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})


def try_flock(fd: int) -> bool:
    """Take the exclusive flock on ``fd`` if it is free; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _HELD:
            return False
        raise
    return True


def is_brief(holder: dict[str, object] | None) -> bool:
    """Does the note say its holder keeps the lock for a moment only (FORMAT §8)?"""
    return holder is not None and holder.get("brief") is True


class WriteLock:
    """The vault's write lock. ``brief``: this holder keeps it for milliseconds (its note says
    so), and a writer that finds it held waits up to ``wait`` seconds for such a holder
    instead of refusing at once."""

    def __init__(
        self,
        vault_root: Path,
        command: str | None = None,
        *,
        brief: bool = False,
        wait: float = BRIEF_WAIT,
    ) -> None:
        self.path = vault_root / "lock"
        self.command = command or command_name(sys.argv)
        self.brief = brief
        self.wait = wait
        self._fd: int | None = None
        self.stale_holder: dict[str, object] | None = None
        self.note_error: str | None = None  # why the note could not be written, if it could not

    def acquire(self) -> WriteLock:
        fd = _open_lock(self.path, _OPEN_FLAGS | os.O_CREAT)
        try:
            self._take(fd)
        except BaseException:  # locked, or flock itself failed: the descriptor is not kept
            os.close(fd)
            raise
        previous = read_holder(self.path)
        if previous and not self._is_ours(previous):
            # We hold the flock, so the note's process no longer does: it died mid-write.
            self.stale_holder = previous
            log.warning("took over a stale lock left by %s", describe_holder(previous))
        note = {
            "pid": os.getpid(),
            "host": _hostname(),
            "time": time.time(),
            "command": self.command,
        }
        if self.brief:
            note["brief"] = True
        self._fd = fd
        self._write_note(fd, note)
        return self

    def _take(self, fd: int) -> None:
        """The flock, at once; or, while the holder is a brief one (or has not written its
        note yet), after waiting for it a bounded moment."""
        start = time.monotonic()
        brief = False  # a brief holder was seen: its note empties an instant before it lets go
        while True:
            if try_flock(fd):
                return
            holder = read_holder(self.path)
            brief = brief or is_brief(holder)
            waited = time.monotonic() - start
            if holder is None:
                limit = self.wait if brief else NOTE_GRACE
            else:
                limit = self.wait if is_brief(holder) else 0.0
            if waited >= limit:
                raise VaultLocked(
                    f"the vault is locked by {describe_holder(holder)}",
                    hint="wait for it to finish; if that process is gone for good, "
                    "run `mjvault unlock`",
                )
            time.sleep(_RETRY)

    def _write_note(self, fd: int, note: dict[str, object]) -> None:
        """Leave a note for error messages; without one the lock holds all the same.

        The flock is what excludes other writers; the note is only information. On a full
        disk the note cannot be written, and refusing to start then would also stop `gc`,
        the command that frees space. Truncating first needs no space and drops the last
        holder's note, so an old note never names the wrong process.
        """
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(note).encode("utf-8"), 0)
        except OSError as exc:
            self.note_error = f"{exc.strerror or exc}: {self.path}"
            log.debug("the lock note was not written (%s); the lock is held", self.note_error)

    def _is_ours(self, holder: dict[str, object]) -> bool:
        return holder.get("pid") == os.getpid() and holder.get("host") == _hostname()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriteLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def break_lock(vault_root: Path) -> dict[str, object] | None:
    """``mjvault unlock``: clear the note of a holder that is gone. Refuses while one holds it.

    Returns the holder the note named, ``{}`` for a note that named none (unreadable), or
    None when there was no note at all.

    The file is never unlinked: a writer that holds the flock on it (or is about to) would keep
    a lock on a deleted inode while the next writer locks a new file, and two would run. The
    note is cleared under the flock instead, which also proves nobody holds it.
    """
    path = vault_root / "lock"
    try:
        fd = _open_lock(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    try:
        if not try_flock(fd):
            raise VaultLocked(
                f"the lock is held by a running process: {describe_holder(read_holder(path))}",
                hint="stop that process first",
            )
        data = os.pread(fd, MAX_NOTE_BYTES + 1, 0)
        if not data:
            return None
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return parse_note(data) or {}
