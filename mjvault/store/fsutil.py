"""Durable file-system primitives: atomic replace, directory fsync, batched sync."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
from pathlib import Path
from typing import Any

SYNC_FILE_RANGE_WRITE = 2
# errno values that are always about the file being written, never the one being read.
WRITE_SIDE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def naming(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """``exc`` naming ``path`` if it names no file, for re-raising.

    write(2), fsync(2) and close(2) name no file, so "No space left on device" would reach the
    user without saying which disk is full.
    """
    if exc.filename is None:
        exc.filename = os.fspath(path)
    return exc


def blaming_written(exc: OSError, written: str | os.PathLike[str]) -> OSError:
    """``exc`` of a copy into ``written``, naming it when the error is the destination's.

    A copy's error names its source (shutil.copyfile), which on a full disk blames the file
    that was only read.
    """
    if exc.errno in WRITE_SIDE_ERRNOS:
        exc.filename, exc.filename2 = os.fspath(written), None
        return exc
    return naming(exc, written)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``: ``os.write`` may write less than it is given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable. Not possible on every platform: then skip."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _libc_calls() -> tuple[Any, Any]:
    """The C library's syncfs and sync_file_range (None where it lacks one), loaded by the
    first write: ctypes and the library search cost every command ~5 ms of start-up."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    sync_file_range = getattr(libc, "sync_file_range", None)
    if sync_file_range is not None:
        sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return getattr(libc, "syncfs", None), sync_file_range


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the file system holding ``path``: one call for a whole batch.

    One syncfs costs about what one fsync does, so a batch of N objects pays once, not N times.
    """
    syncfs, _ = _libc_calls()
    if syncfs is not None:
        import ctypes  # loaded with the library

        fd = os.open(path, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
            err = ctypes.get_errno()
        finally:
            os.close(fd)
        # Linux 5.8+ reports writeback errors (EIO, ENOSPC) here: the batch is not durable and
        # must not be published. Only a kernel without syncfs falls back to sync(2).
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), str(path))
    os.sync()


def start_writeback(fd: int) -> None:
    """Ask the kernel to begin writing ``fd``'s dirty pages to disk, without waiting.

    Only a head start for a later :func:`sync_filesystem`, never a durability guarantee (it
    does not flush metadata or the disk's cache), so failure or absence is ignored.
    """
    _, sync_file_range = _libc_calls()
    if sync_file_range is not None:
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def is_temp_name(name: str) -> bool:
    """Is ``name`` one of :func:`atomic_write`'s temp files (``.<name>.<12 hex>.tmp``)?"""
    return _TEMP_NAME.fullmatch(name) is not None


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old file or the new, never a mix."""
    # os.urandom, as the secrets module has it, without that module's import (hmac, OpenSSL).
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise naming(exc, path) from None
        raise
    if durable:
        fsync_dir(path.parent)
