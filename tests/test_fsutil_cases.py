"""The durable file primitives (mjvault/store/fsutil.py) on real files: errors that name the
file they are about, short writes finished, the atomic replace cleaning up after itself, and
the batched sync on a real file system."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mjvault.store import fsutil
from mjvault.store.fsutil import (
    atomic_write,
    blaming_written,
    fsync_dir,
    is_temp_name,
    naming,
    start_writeback,
    sync_filesystem,
    write_all,
)


def test_naming_adds_the_path_only_where_none_is_named() -> None:
    bare = OSError(errno.ENOSPC, "No space left on device")
    assert naming(bare, Path("/v/objects/ab")) is bare
    assert bare.filename == "/v/objects/ab"
    assert "/v/objects/ab" in str(bare)
    named = OSError(errno.EIO, "I/O error", "/elsewhere")
    assert naming(named, "/v/objects/ab").filename == "/elsewhere"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS])
def test_a_write_side_error_of_a_copy_blames_the_destination(code: int) -> None:
    exc = OSError(code, os.strerror(code), "/source/read.png", "/dest/written.png")
    assert blaming_written(exc, "/dest/written.png") is exc
    assert (exc.filename, exc.filename2) == ("/dest/written.png", None)


def test_a_read_side_error_of_a_copy_keeps_its_source() -> None:
    exc = OSError(errno.EIO, "I/O error", "/source/read.png")
    assert blaming_written(exc, "/dest/written.png").filename == "/source/read.png"
    bare = OSError(errno.EACCES, "Permission denied")
    assert blaming_written(bare, "/dest/written.png").filename == "/dest/written.png"


def test_write_all_finishes_a_pipe_that_takes_less_than_it_is_given() -> None:
    # A pipe's buffer (64 KiB on Linux) takes a write of more in parts: every byte must arrive.
    data = os.urandom(1 << 20)
    read_end, write_end = os.pipe()
    received = bytearray()
    try:
        os.set_blocking(write_end, False)
        view = memoryview(data)
        # Drain as we go: write_all on a non-blocking pipe would raise BlockingIOError, so feed
        # it chunks the pipe can take, reading each back, and the last chunk whole.
        while len(view) > 4096:
            write_all(write_end, view[:4096])
            received += os.read(read_end, 8192)
            view = view[4096:]
        write_all(write_end, view)
        received += os.read(read_end, 8192)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert bytes(received) == data


def test_write_all_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, b"abc" * 100_000)
        write_all(fd, memoryview(b""))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" * 100_000


def test_fsync_dir_syncs_the_folder_itself_and_skips_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What reaches the disk cannot be seen short of a crash; which descriptor is synced can.
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        meta = os.fstat(fd)
        synced.append((meta.st_dev, meta.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fsync_dir(tmp_path / "missing")  # nothing to make durable: no error, nothing synced
    assert synced == []
    fsync_dir(tmp_path)
    folder = tmp_path.stat()
    assert synced == [(folder.st_dev, folder.st_ino)]


def test_atomic_write_replaces_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    atomic_write(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    atomic_write(path, b"newer", durable=False)
    assert path.read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_into_a_missing_folder_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "state.json"
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write(target, b"x")
    assert "missing" in str(caught.value.filename)


def test_a_replace_over_a_folder_fails_and_cleans_up(tmp_path: Path) -> None:
    # A rename of a file over a non-empty folder fails for root too (EISDIR/ENOTEMPTY).
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises(OSError) as caught:
        atomic_write(target, b"data")
    assert caught.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_bytes() == b"keep"


def test_a_write_that_raises_removes_its_temp_file(tmp_path: Path) -> None:
    # Not bytes: the write raises (TypeError, not an OSError) once the temp file is open; the
    # error goes up as it is and the temp file goes with it.
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "f", "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_is_temp_name_knows_atomic_writes_temp_files() -> None:
    assert is_temp_name(".state.json.0123456789ab.tmp")
    assert not is_temp_name("state.json")
    assert not is_temp_name(".state.json.0123456789AB.tmp")  # hex is lower case
    assert not is_temp_name(".state.json.0123.tmp")
    assert not is_temp_name("..0123456789ab.tmp")


def test_sync_filesystem_syncs_the_file_system_of_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_syncfs, sync_file_range = fsutil._libc_calls()
    if real_syncfs is None:
        pytest.skip("no syncfs in this C library: sync(2) takes no path")
    synced: list[int] = []

    def syncfs(fd: int) -> int:
        synced.append(os.fstat(fd).st_dev)
        return int(real_syncfs(fd))

    monkeypatch.setattr(fsutil, "_libc_calls", lambda: (syncfs, sync_file_range))
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100_000)
    sync_filesystem(tmp_path)
    sync_filesystem(path)
    assert synced == [tmp_path.stat().st_dev] * 2
    assert path.read_bytes() == b"x" * 100_000


def test_writeback_is_asked_of_the_kernel_and_its_failure_ignored(tmp_path: Path) -> None:
    _, sync_file_range = fsutil._libc_calls()
    if sync_file_range is None:
        pytest.skip("no sync_file_range in this C library")
    fd = os.open(tmp_path / "data", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, b"x" * 100_000)
        # The call start_writeback makes, as it makes it, is accepted on a real file...
        assert sync_file_range(fd, 0, 0, fsutil.SYNC_FILE_RANGE_WRITE) == 0
        start_writeback(fd)
    finally:
        os.close(fd)
    # ...and refused on a closed descriptor, which start_writeback does not raise for: a head
    # start only, never a reason to fail a write.
    assert sync_file_range(fd, 0, 0, fsutil.SYNC_FILE_RANGE_WRITE) == -1
    start_writeback(fd)


def test_sync_filesystem_of_a_missing_path_fails_naming_it(tmp_path: Path) -> None:
    syncfs, _ = fsutil._libc_calls()
    if syncfs is None:
        pytest.skip("no syncfs in this C library: sync(2) needs no path")
    with pytest.raises(FileNotFoundError):
        sync_filesystem(tmp_path / "missing")
