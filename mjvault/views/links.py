"""Putting one image into a view: symlink, hardlink, reflink or copy, each atomic.

No reader ever sees a half-written file, and no call ever overwrites a file it was not told it
may replace:

* a new symlink or hardlink is created directly at its name: ``symlink(2)`` and ``link(2)``
  are atomic and fail rather than clobber, so a temp name and a rename would only double the
  system calls (and the 100k-image checkout time) for nothing;
* a copy or reflink is written under a temp name in the same directory, then *linked* into
  place (atomic and no-clobber) and the temp name removed; on file systems without hard links
  (FAT, some network shares) it is renamed into place after checking the name is free;
* replacing a file the view made earlier (its object changed) renames the new one over it.

Symlinks are **relative**: a vault and its views on one external disk keep working wherever the
disk is mounted, and on whichever machine; an absolute link would break on the first remount.
A refresh from the vault's new place re-targets links if the vault alone moves.

Copies are not fsynced: a view is derived data that ``mjvault checkout`` rebuilds at any time.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mjvault.errors import MjvaultError, UsageError
from mjvault.store.fsutil import blaming_written

# linux/fs.h: _IOW(0x94, 9, int). Python's fcntl only names it from 3.12 on.
FICLONE = 0x40049409
TEMP_PREFIX = ".mjvault-tmp-"
# Exactly the names _temp_name makes: a sweep never takes a file of the user's for one.
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}\Z")
# errno values meaning "this file system (pair) cannot clone"; anything else is a real error.
_NO_CLONE = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
}


class LinkKind(StrEnum):
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    REFLINK = "reflink"
    COPY = "copy"


class NameTaken(MjvaultError):
    """Something already exists where a view file should go; it is never overwritten."""


def parse_link_kind(text: str) -> LinkKind:
    try:
        return LinkKind(text.lower())
    except ValueError:
        choices = ", ".join(k.value for k in LinkKind)
        raise UsageError(f"unknown link type {text!r} (choose from {choices})") from None


def place_file(source: Path, dest: Path, kind: LinkKind, *, replace: bool = False) -> LinkKind:
    """Make ``dest`` show ``source`` by ``kind``; returns the kind really used.

    A reflink falls back to a copy where the file system cannot clone (the caller reports
    it). ``replace`` allows overwriting ``dest`` (only ever a file the view created).
    Raises :class:`NameTaken` if ``dest`` exists and ``replace`` is false.
    """
    if kind is LinkKind.SYMLINK:
        place_symlink(os.path.relpath(source, dest.parent), os.fspath(dest), replace=replace)
        return kind
    if kind is LinkKind.HARDLINK:
        place_hardlink(os.fspath(source), os.fspath(dest), replace=replace)
        return kind
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind is LinkKind.REFLINK:
        used: list[LinkKind] = []
        _create(dest, replace, lambda tmp: used.append(_clone_or_copy(source, tmp)), staged=True)
        return used[0]
    _create(dest, replace, lambda tmp: shutil.copyfile(source, tmp), staged=True)
    return LinkKind.COPY


def place_symlink(target: str, dest: str, *, replace: bool = False) -> None:
    """A symlink at ``dest`` to ``target`` (relative to ``dest``'s directory).

    The hot path of a checkout: one ``symlink(2)``, and a ``mkdir`` only when the directory
    is missing, so 100k links cost about what a bare loop of ``os.symlink`` does.
    """
    _link_with_parent(lambda path: os.symlink(target, path), dest, replace)


def place_hardlink(source: str, dest: str, *, replace: bool = False) -> None:
    try:
        _link_with_parent(lambda path: os.link(source, path), dest, replace)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise UsageError(
                "hard links need the view on the same file system as the vault",
                hint="use --link symlink, reflink or copy",
            ) from None
        raise


def _link_with_parent(make: Callable[[str], object], dest: str, replace: bool) -> None:
    if replace:
        tmp = os.path.join(os.path.dirname(dest), TEMP_PREFIX + secrets.token_hex(8))
        try:
            try:
                make(tmp)
            except FileNotFoundError:  # the directory went away since the file was made
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                make(tmp)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    try:
        make(dest)
    except FileExistsError:
        raise NameTaken(f"{dest} already exists") from None
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            make(dest)
        except FileExistsError:
            raise NameTaken(f"{dest} already exists") from None


def place_bytes(data: bytes, dest: Path, *, replace: bool = False) -> LinkKind:
    """Write ``data`` as a copy at ``dest`` (decrypted images, images with embedded metadata)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _create(dest, replace, lambda tmp: tmp.write_bytes(data), staged=True)
    return LinkKind.COPY


def _temp_name(dest: Path) -> Path:
    # Short and fixed-length: dest's own name may already be 255 bytes long.
    return dest.with_name(TEMP_PREFIX + secrets.token_hex(8))


def _create(
    dest: Path, replace: bool, make: Callable[[Path], object], *, staged: bool = False
) -> None:
    """Run ``make(path)`` so that ``dest`` appears atomically; see the module docstring."""
    if not staged and not replace:
        try:
            make(dest)
        except FileExistsError:
            raise NameTaken(f"{dest} already exists") from None
        return
    tmp = _temp_name(dest)
    try:
        try:
            make(tmp)
        except OSError as exc:  # a full view disk is the view's, not the vault's (the source)
            raise blaming_written(exc, dest) from None
        if replace:
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest, follow_symlinks=False)
        except FileExistsError:
            raise NameTaken(f"{dest} already exists") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            # No hard links here: check, then rename (a tiny window, but never our data lost).
            if os.path.lexists(dest):
                raise NameTaken(f"{dest} already exists") from None
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def temp_files(root: Path) -> Iterator[Path]:
    """Temp files a killed checkout left under ``root`` (never a directory, never followed)."""
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if _TEMP_NAME.match(name):
                yield Path(folder, name)


def remove_temp_files(root: Path) -> int:
    """Remove what :func:`temp_files` finds; the caller holds the views' lock."""
    removed = 0
    for path in list(temp_files(root)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _clone_or_copy(source: Path, dest: Path) -> LinkKind:
    """A reflink (shared extents, no data copied) where the file system can, else a copy."""
    if sys.platform.startswith("linux"):
        import fcntl

        with open(source, "rb") as src, open(dest, "xb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
                return LinkKind.REFLINK
            except OSError as exc:
                if exc.errno not in _NO_CLONE:
                    raise
                shutil.copyfileobj(src, dst, 1 << 20)
                return LinkKind.COPY
    shutil.copyfile(source, dest)
    return LinkKind.COPY


def prune_empty_dirs(start: Path, root: Path) -> None:
    """Remove ``start`` and its parents while they are empty, stopping at ``root``."""
    current = start
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def points_to(path: Path, source: Path, kind: LinkKind) -> bool:
    """Does the view file at ``path`` still show ``source`` (for ``kind``)?"""
    try:
        if kind is LinkKind.SYMLINK:
            target = os.readlink(path)
            return os.path.normpath(os.path.join(path.parent, target)) == os.path.normpath(source)
        if kind is LinkKind.HARDLINK:
            return os.path.samefile(path, source)
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


# -- a checkout's new files in bulk ---------------------------------------------------------------
#
# The hot path of a checkout: batches of (object file, view path) pairs, each made by one of
# the makers below, in a worker thread of the checkout (small checkouts) or in the link
# process (mjvault.views.linkproc). Both run the very same code, so a view is the same
# whichever made it.


class ObjectMissing(Exception):
    """The object a link would point at is not in the vault (no dangling link is made)."""


def in_the_way(error: BaseException) -> bool:
    """Does ``error`` mean something else already holds the name (or a folder on its path)?"""
    if isinstance(error, NameTaken | FileExistsError | NotADirectoryError):
        return True
    return isinstance(error, OSError) and error.errno in (errno.ENOTDIR, errno.EEXIST)


def is_fatal(error: BaseException) -> bool:
    """Must the checkout stop (a full disk, no permission), rather than skip or set aside
    this one image? A maker stops its batch at the first such error."""
    return not isinstance(error, ObjectMissing) and not in_the_way(error)


@dataclass(slots=True)
class Made:
    """What became of a batch of pairs.

    ``stats`` holds each pair's new file's (size, mtime_ns), flat, for kinds whose record
    needs them (copies, hard links; zeros where it failed); ``failures`` the pairs that were
    not made, by position, with why (in order; a fatal one ends its run of pairs); pairs in
    ``untried`` were not attempted after it.
    """

    stats: list[int] = field(default_factory=list)
    failures: list[tuple[int, BaseException]] = field(default_factory=list)
    untried: list[range] = field(default_factory=list)

    def extend(self, other: Made, offset: int) -> None:
        """Append ``other``, the outcome of the pairs from ``offset`` on."""
        self.stats.extend(other.stats)
        self.failures.extend((offset + at, error) for at, error in other.failures)
        self.untried.extend(range(offset + r.start, offset + r.stop) for r in other.untried)


class LinkTargets:
    """The relative symlink text from a view file to its object: one ``relpath()`` per
    folder of the view (it costs more than the symlink itself), then a concatenation."""

    def __init__(self, objects_root: str) -> None:
        self.root = objects_root.rstrip(os.sep)
        self.prefixes: dict[str, str] = {}

    def __call__(self, source: str, dest: str) -> str:
        folder = dest.rpartition(os.sep)[0]
        root = self.root
        if not source.startswith(root) or source[len(root) : len(root) + 1] != os.sep:
            return os.path.relpath(source, folder)
        prefix = self.prefixes.get(folder)
        if prefix is None:
            prefix = self.prefixes[folder] = os.path.relpath(root, folder)
        return prefix + source[len(root) :]


def make_symlinks(jobs: Sequence[tuple[str, str]], targets: LinkTargets) -> Made:
    """Make each relative symlink ``dest`` → ``source``, once the object is known to exist.

    The image's kind came from the index, so that check is the one system call that catches
    an object gone since: no dangling link is ever made. ``access(F_OK)`` rather than a stat
    (no stat result to build: a third of a symlink's cost); a stat only to learn why not.
    """
    made = Made()
    failures = made.failures
    access, exists, stat, symlink = os.access, os.F_OK, os.stat, os.symlink
    for position, (source, dest) in enumerate(jobs):
        try:
            if not access(source, exists):
                stat(source)  # missing (skipped), or not allowed (stops the checkout)
            # place_symlink's first attempt inlined (it runs once per image); it is called
            # only when the link's directory is missing, to make it.
            try:
                symlink(targets(source, dest), dest)
            except FileExistsError:
                raise NameTaken(f"{dest} already exists") from None
            except FileNotFoundError:
                place_symlink(targets(source, dest), dest)
        except FileNotFoundError as exc:
            failures.append((position, ObjectMissing(source) if exc.filename == source else exc))
        except (MjvaultError, OSError) as exc:
            failures.append((position, exc))
            if is_fatal(exc):
                made.untried.append(range(position + 1, len(jobs)))
                break
    return made


def make_hardlinks(jobs: Sequence[tuple[str, str]], targets: LinkTargets | None = None) -> Made:
    """Hard-link each object at its view path; the stats are the object's own."""
    return _make_each(jobs, _hardlink_and_stat)


def make_copies(jobs: Sequence[tuple[str, str]], targets: LinkTargets | None = None) -> Made:
    """Copy each object file to its new view path (see :func:`copy_new`)."""
    return _make_each(jobs, copy_new)


def _hardlink_and_stat(source: str, dest: str) -> os.stat_result:
    place_hardlink(source, dest)
    return os.lstat(dest)


def _make_each(jobs: Sequence[tuple[str, str]], make: Callable[[str, str], os.stat_result]) -> Made:
    """``make(source, dest)`` for each job, in order, until a failure that dooms the rest
    (a full disk): a file's size and mtime, or its failure, by position. ``stats`` always
    holds two numbers for every job, zeros for those failed or untried: shares of one batch
    made apart are joined by concatenation (:meth:`Made.extend`)."""
    made = Made()
    stats, failures = made.stats, made.failures
    for position, (source, dest) in enumerate(jobs):
        try:
            result = make(source, dest)
            stats += (result.st_size, result.st_mtime_ns)
            continue
        except FileNotFoundError as exc:
            # The folder was made and the file tried again: it is the object that is gone.
            failures.append((position, ObjectMissing(source) if exc.filename == source else exc))
        except (MjvaultError, OSError) as exc:
            failures.append((position, exc))
            if is_fatal(exc):
                stats.extend([0, 0] * (len(jobs) - position))
                made.untried.append(range(position + 1, len(jobs)))
                break
        stats += (0, 0)
    return made


MAKERS: dict[LinkKind, Callable[[Sequence[tuple[str, str]], LinkTargets], Made]] = {
    LinkKind.SYMLINK: make_symlinks,
    LinkKind.HARDLINK: make_hardlinks,
    LinkKind.COPY: make_copies,
}


# An image larger than this is copied in several calls (copy_file_range moves at most 2 GiB).
_COPY_CHUNK = 1 << 30


def copy_new(source: str, dest: str) -> os.stat_result:
    """Copy ``source`` to a new file ``dest`` (never over anything); returns its stat.

    The hot path of a copy checkout, run by the link process (or a few threads of a small
    checkout): the data moves inside the kernel (``copy_file_range``, which also shares
    extents where the file system can), and the file is written nameless (``O_TMPFILE``) and
    linked into place when complete: atomic and no-clobber like :func:`_create`, three system
    calls fewer, and a killed run leaves no temp file. Where ``O_TMPFILE`` is not supported,
    :func:`_create`'s temp name is used. Raises :class:`NameTaken` when ``dest`` exists.
    """
    global _tmpfile_works
    folder = os.path.dirname(dest)
    src = os.open(source, os.O_RDONLY)
    try:
        try:
            out = _open_nameless(folder)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            out = _open_nameless(folder)
        if out >= 0:
            try:
                try:
                    _copy_fd(src, out)
                except OSError as exc:
                    raise blaming_written(exc, Path(dest)) from None
                stat = os.fstat(out)
                try:
                    _link_fd(out, dest)
                    return stat
                except FileExistsError:
                    raise NameTaken(f"{dest} already exists") from None
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EOPNOTSUPP):
                        raise
                    _tmpfile_works = False  # /proc's links refused here (some overlays)
            finally:
                os.close(out)
    finally:
        os.close(src)
    os.makedirs(folder, exist_ok=True)
    _create(Path(dest), False, lambda tmp: shutil.copyfile(source, tmp), staged=True)
    return os.lstat(dest)


_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_tmpfile_works = _O_TMPFILE != 0 and os.path.isdir("/proc/self/fd")


def _open_nameless(folder: str) -> int:
    """A nameless new file in ``folder``, or -1 where the file system has none."""
    global _tmpfile_works
    if not _tmpfile_works:
        return -1
    try:
        return os.open(folder, _O_TMPFILE | os.O_WRONLY, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP):
            _tmpfile_works = False  # the file system answers alike for every folder
            return -1
        raise


_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


_empty_path_works = sys.platform.startswith("linux")


def _link_fd(fd: int, dest: str) -> None:
    """Give the nameless file ``fd`` the name ``dest`` (fails if it exists)."""
    global _empty_path_works
    if _empty_path_works:
        if _libc().linkat(fd, b"", _AT_FDCWD, os.fsencode(dest), _AT_EMPTY_PATH) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOENT, errno.EPERM, errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), dest)
        # Older kernels want a capability for an empty path: /proc from now on (learnt once
        # per process, so a checkout's link process tries it once).
        _empty_path_works = False
    # linkat(AT_SYMLINK_FOLLOW) on the fd's /proc entry. CPython passes that flag only when
    # it calls linkat(), which it does only with a dir_fd (ignored for an absolute path):
    # the plain form calls link(), which links the /proc entry itself and fails (EXDEV).
    os.link(f"/proc/self/fd/{fd}", dest, src_dir_fd=fd, follow_symlinks=True)


def _copy_fd(src: int, out: int) -> None:
    size = os.fstat(src).st_size
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        # Up to the size, counted: a small image is one call, with no second call to be
        # told it is done and no fstat to check (objects never change).
        copied = 0
        try:
            while copied < size:
                moved = copy_range(src, out, min(_COPY_CHUNK, size - copied))
                if not moved:
                    break
                copied += moved
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        # Some file systems (overlay, NFS, CIFS on older kernels) answer 0 before the end:
        # both offsets have moved by what was copied, so sendfile goes on from there.
        if copied == size:
            return
    while os.sendfile(out, src, None, _COPY_CHUNK):  # between file systems, where
        pass  # copy_file_range may refuse
    if os.fstat(out).st_size != size:
        raise OSError(errno.EIO, f"the copy ended at {os.fstat(out).st_size} of {size} bytes")


def copy_workers(root: Path) -> int:
    """Threads to copy with into ``root``: several on SSDs and memory, two on a spinning disk
    (more would make it seek between files)."""
    try:
        device = os.stat(root).st_dev
        rotational = Path(
            f"/sys/dev/block/{os.major(device)}:{os.minor(device)}/../queue/rotational"
        )
        if not rotational.exists():
            rotational = Path(
                f"/sys/dev/block/{os.major(device)}:{os.minor(device)}/queue/rotational"
            )
        if rotational.read_text().strip() == "1":
            return 2
    except (OSError, ValueError):
        pass
    return max(2, min(8, os.cpu_count() or 2))
