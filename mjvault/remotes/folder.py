"""A remote that is a directory: an external drive, a NAS mount, ``file://`` URLs.

Writes go to a temp file beside the target, are fsynced, then linked into place with
``link(2)``, which fails if the name exists: that is both the atomic publish and the
create-only test, with no window in which a reader sees a partial file.

Everything the remote creates is owner-only (directories 0700, files 0600), as restic's
local backend does: key files wrap the master secret and invite offline guessing, and a plain
remote's objects are as private as the archive they copy. A root folder that already exists
(a mount point, a folder the user made) keeps its own mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mjvault.remotes.backend import (
    STREAM_CHUNK,
    Backend,
    KeyMeta,
    RemoteError,
    RemoteNotFound,
    source_pieces,
)
from mjvault.store.fsutil import fsync_dir

TMP_DIR = "tmp"
KEYS_DIR = "keys"
CONFIG_FILE = "config"
DIR_MODE = 0o700
FILE_MODE = 0o600
# A temp file this old belongs to a writer that died: no put takes a day between create and link.
STALE_TMP_SECONDS = 24 * 3600
# Uploads larger than this write to a temp file named after their key, which a later upload
# of the same key resumes (FolderBackend.upload_file).
RESUMABLE_BYTES = 64 * 1024 * 1024
PARTIAL_SUFFIX = ".partial"
RESUME_PIECE = 1024 * 1024


class FolderBackend(Backend):
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the directory named by the prefix up to its last "/", then filter.
        base = prefix.rpartition("/")[0]
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            if rel.split("/")[0] == TMP_DIR:
                dirnames[:] = []
                continue
            rel = "" if rel == "." else rel + "/"
            for name in filenames:
                key = rel + name
                if key.startswith(prefix) and not name.startswith("."):
                    yield key

    def list_meta(self, prefix: str) -> Iterator[KeyMeta]:
        for key in self.list(prefix):
            try:
                info = os.stat(self._path(key))
            except FileNotFoundError:  # deleted since it was listed
                continue
            except OSError as exc:
                raise RemoteError(f"cannot stat {key} in {self.root}: {exc.strerror}") from None
            yield KeyMeta(key, info.st_size, info.st_mtime)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # a directory is no key, as on S3
            raise RemoteNotFound(f"{key} is missing from {self.root}") from None
        except OSError as exc:
            raise RemoteError(f"cannot read {key} from {self.root}: {exc.strerror}") from None

    def download(self, key: str, out: BinaryIO) -> int:
        with self._open(key) as handle:
            shutil.copyfileobj(handle, out, STREAM_CHUNK)
            return handle.tell()

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        with self._open(key) as handle:
            size = os.fstat(handle.fileno()).st_size
            return os.pread(handle.fileno(), min(length, size), max(0, size - length)), size

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self._open(key) as handle:
            return os.pread(handle.fileno(), max(0, end - start), start)

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        try:
            with open(self._path(key), "rb") as handle:
                yield handle
        except (FileNotFoundError, IsADirectoryError):
            raise RemoteNotFound(f"{key} is missing from {self.root}") from None
        except OSError as exc:
            raise RemoteError(f"cannot read {key} from {self.root}: {exc.strerror}") from None

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        def write(fd: int) -> None:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(data)

        return self._publish(key, write, create_only=create_only)

    def upload_file(
        self, key: str, source: Path | BinaryIO, size: int, *, create_only: bool = False
    ) -> bool:
        """Streamed into a temp file, then published as :meth:`put` publishes: a source that
        fails halfway (damage found while reading it) leaves nothing under ``key``.

        Above :data:`RESUMABLE_BYTES` the temp file is named after the key, so an upload killed
        halfway is resumed by the next: the bytes already there are compared with the source
        as it is read, and only from the first difference on is anything written.
        """
        if size <= RESUMABLE_BYTES:
            return self._publish(key, lambda fd: _write_pieces(fd, source), create_only=create_only)
        try:
            _make_dirs(self.root / TMP_DIR)
            partial = self.root / TMP_DIR / (key.rpartition("/")[2] + PARTIAL_SUFFIX)
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise RemoteError(f"cannot write {key} to {self.root}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another push is sending this object: send our own copy
                return self._publish(
                    key, lambda out: _write_pieces(out, source), create_only=create_only
                )
            os.utime(fd)  # fresh: sweep leaves alone what a writer is resuming
            try:
                _resume(fd, source)
                os.fsync(fd)
            except OSError as exc:
                raise RemoteError(f"cannot write {key} to {self.root}: {exc.strerror}") from None
            except Exception:
                # The source failed (damage found): its partial copy is worth nothing. An
                # interrupt (Ctrl-C) keeps it, for the next push to resume.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
                raise
            return self._link(partial, key, create_only=create_only)
        finally:
            os.close(fd)

    def _publish(self, key: str, write: Callable[[int], None], *, create_only: bool) -> bool:
        """Fill a new temp file with ``write``, fsync it, and link it into place."""
        tmp_dir = self.root / TMP_DIR
        try:
            _make_dirs(tmp_dir)
            tmp = tmp_dir / f"{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                write(fd)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            os.close(fd)
        except OSError as exc:
            raise RemoteError(f"cannot write {key} to {self.root}: {exc.strerror}") from None
        return self._link(tmp, key, create_only=create_only)

    def _link(self, tmp: Path, key: str, *, create_only: bool) -> bool:
        """Publish the synced temp file ``tmp`` as ``key`` (create-only: link, which fails
        when the name exists), then remove the temp name."""
        target = self._path(key)
        try:
            _make_dirs(target.parent)
            try:
                if create_only:
                    try:
                        os.link(tmp, target)
                    except FileExistsError:
                        return False
                else:
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            fsync_dir(target.parent)
            return True
        except OSError as exc:
            raise RemoteError(f"cannot write {key} to {self.root}: {exc.strerror}") from None

    def sweep(self) -> None:
        self._tighten()
        tmp_dir = self.root / TMP_DIR
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(tmp_dir) if tmp_dir.is_dir() else ():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _tighten(self) -> None:
        """Make an older remote's key files and config owner-only (they were 0644 in 0755)."""
        keys = self.root / KEYS_DIR
        paths = [(keys, DIR_MODE), (self.root / CONFIG_FILE, FILE_MODE)]
        if keys.is_dir():
            paths += [(Path(e.path), FILE_MODE) for e in os.scandir(keys) if e.is_file()]
        for path, mode in paths:
            # Not ours to change (another user's files on a shared drive): leave it be.
            with contextlib.suppress(OSError):
                if path.stat().st_mode & 0o777 != mode:
                    os.chmod(path, mode)

    def exists(self, key: str) -> bool:
        # The directories between keys are not keys: an object store has none to find.
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(self._path(key))


def _write_pieces(fd: int, source: Path | BinaryIO) -> None:
    for piece in source_pieces(source):
        _write_at(fd, piece, None)


def _write_at(fd: int, data: bytes, offset: int | None) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[done:]
        if offset is not None:
            offset += done


def _resume(fd: int, source: Path | BinaryIO) -> None:
    """Make the file ``fd`` hold exactly the bytes of ``source``, keeping (unwritten) the
    prefix it already holds that equals the source's, byte for byte."""
    have = os.fstat(fd).st_size
    offset = 0
    for piece in source_pieces(source, RESUME_PIECE):
        if offset < have:
            if os.pread(fd, len(piece), offset) == piece:
                offset += len(piece)
                continue
            os.ftruncate(fd, offset)  # the first difference: all after it is written anew
            have = offset
        _write_at(fd, piece, offset)
        offset += len(piece)
    if offset < os.fstat(fd).st_size:
        os.ftruncate(fd, offset)


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` with every directory it creates owner-only (``Path.mkdir`` gives parents
    the default mode whatever ``mode`` says)."""
    if path.is_dir():
        return
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it first
            directory.mkdir(mode=DIR_MODE)
