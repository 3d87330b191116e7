"""A small real file system that a test can fill: a tmpfs mounted for the test's duration.

Mounting needs root (CI runs as root); elsewhere the test is skipped with the reason. Use it
as a context manager, or through a fixture of your own:

    @pytest.fixture
    def disk(tmp_path: Path) -> Iterator[SmallFs]:
        with small_fs(tmp_path / "small", size="8m") as fs:
            yield fs

    def test_x(disk: SmallFs) -> None:
        ...                   # put a vault or a view under disk.path
        disk.fill()           # now every write there fails with ENOSPC
        ...
        disk.free()           # and works again
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

FILLER = ".filler"


@dataclass
class SmallFs:
    path: Path

    @property
    def filler(self) -> Path:
        return self.path / FILLER

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> None:
        """Write one file until the file system refuses another byte."""
        with open(self.filler, "ab", buffering=0) as handle:
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\0" * chunk
                while True:
                    try:
                        handle.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        assert self.free_bytes() == 0

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def is_full(self) -> bool:
        probe = self.path / ".probe"
        try:
            probe.write_bytes(b"x")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return True
            raise
        finally:
            probe.unlink(missing_ok=True)
        return False


@contextmanager
def small_fs(where: Path, *, size: str = "8m") -> Iterator[SmallFs]:
    """Mount a tmpfs of ``size`` on ``where`` (created), yield it, unmount it."""
    if os.geteuid() != 0:
        pytest.skip("a full-disk test mounts a tmpfs, which needs root")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("a full-disk test needs the mount command")
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", os.fspath(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield SmallFs(where)
    finally:
        # Lazy: a child process a failed test left behind must not keep the mount alive.
        subprocess.run(["umount", "-l", os.fspath(where)], capture_output=True)
