"""Durable file-system primitives: atomic replace, directory fsync, batched sync."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


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


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the file system holding ``path``: one call for a whole batch.

    One syncfs costs about what one fsync does, so a batch of N objects pays once, not N times.
    """
    if _syncfs is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
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
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old file or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
