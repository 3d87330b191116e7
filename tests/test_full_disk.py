"""A full file system: every command says which path is full in one line, exits non-zero, and
leaves the vault intact; once space is freed, `verify --read-data` is clean and a rerun
completes. gc starts on a full disk and frees what dead writers left first.

Runs on a small tmpfs (tests/fullfs.py); skipped where the test run may not mount one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import VaultLocked, VaultWriteError
from mjvault.lock import WriteLock
from mjvault.store.packfile import PackFileWriter
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.server import FakeMidjourney
from mjvault.writer import ArchiveWriter
from tests.conftest import record_json, run_cli, run_cli_process
from tests.fullfs import SmallFs, small_fs

TOKEN = "sess-full-disk-0123456789"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallFs]:
    with small_fs(tmp_path / "small", size="4m") as fs:
        yield fs


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive") / "a"
    write_sample_archive(root, jobs=40, seed=7)
    return root


def mjvault(
    vault: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_cli("--vault", str(vault), *args, env=env)


def one_line_naming(result: subprocess.CompletedProcess[bytes], path: Path) -> str:
    """The error is one line, with the system's words and a path on the full file system."""
    err = result.stderr.decode()
    assert result.returncode not in (0, 4), (result.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("mjvault: error: ") and "No space left on device" in line, line
    assert str(path) in line, line
    return line


def assert_intact(vault: Path) -> None:
    result = mjvault(vault, "verify", "--read-data")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def init(vault: Path) -> None:
    assert run_cli("init", str(vault)).returncode == 0


def test_import_into_a_full_disk(disk: SmallFs, archive: Path) -> None:
    vault = disk.path / "v"
    init(vault)
    disk.fill()
    one_line_naming(mjvault(vault, "import", str(archive)), vault)
    disk.free()
    assert_intact(vault)
    result = mjvault(vault, "import", str(archive))
    assert result.returncode == 0, result.stderr
    assert_intact(vault)
    assert list((vault / "tmp").iterdir()) == []


def test_import_that_fills_the_disk_half_way(disk: SmallFs, tmp_path: Path) -> None:
    big = tmp_path / "big"
    write_sample_archive(big, jobs=60, seed=8, large=True)
    vault = disk.path / "v"
    init(vault)
    one_line_naming(mjvault(vault, "import", str(big)), vault)
    # Whatever was committed or checkpointed before the disk filled is intact.
    assert_intact(vault)


def sync_env(server: FakeMidjourney) -> dict[str, str]:
    return {
        "MJVAULT_WEB_BASE": server.web_base,
        "MJVAULT_CDN_BASE": server.cdn_base,
        "MJVAULT_MIDJOURNEY_API": "v3",
        "MIDJOURNEY_SESSION_TOKEN": server.token,
        "MIDJOURNEY_USER_ID": server.user_id,
        "HOME": os.environ.get("HOME", "/tmp"),
    }


def test_sync_into_a_full_disk(disk: SmallFs) -> None:
    vault = disk.path / "v"
    init(vault)
    with FakeMidjourney(Account.generate(11, 30), token=TOKEN) as server:
        env = sync_env(server)
        disk.fill()
        one_line_naming(mjvault(vault, "sync", env=env), vault)
        disk.free()
        assert_intact(vault)
        result = mjvault(vault, "sync", env=env)
        assert result.returncode == 0, result.stderr
    assert_intact(vault)
    with Vault.open(vault) as opened:
        assert len(list(opened.entries())) == 30


def test_checkout_onto_a_full_disk_names_the_view(
    disk: SmallFs, archive: Path, tmp_path: Path
) -> None:
    vault = tmp_path / "v"
    init(vault)
    assert mjvault(vault, "import", str(archive)).returncode == 0
    view = disk.path / "view"
    disk.fill()
    line = one_line_naming(mjvault(vault, "checkout", str(view), "--link", "copy"), view)
    assert str(vault / "objects") not in line
    disk.free()
    assert_intact(vault)
    result = mjvault(vault, "checkout", str(view), "--link", "copy")
    assert result.returncode == 0, result.stderr
    assert "in the way" not in result.stdout.decode() + result.stderr.decode()
    verified = mjvault(vault, "verify", "--views")
    assert verified.returncode == 0, verified.stdout


def test_gc_starts_on_a_full_disk_and_frees_stale_temp_files(disk: SmallFs, archive: Path) -> None:
    vault = disk.path / "v"
    init(vault)
    assert mjvault(vault, "import", str(archive)).returncode == 0
    # What a writer killed a moment ago leaves: young temp files its lock no longer covers.
    stale = [
        vault / "tmp" / "download.0123456789ab.tmp",
        vault / "tmp" / "0a1b2c3d4e5f6a7b.0123456789ab.tmp",
        vault / "refs" / ".HEAD.0123456789ab.tmp",
        vault / "refs" / ".checkpoint.0123456789ab.tmp",
    ]
    for path in stale:
        path.write_bytes(os.urandom(256 * 1024))
    disk.fill()
    result = mjvault(vault, "--json", "gc")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["temp_files_removed"] == len(stale)
    assert not any(path.exists() for path in stale)
    assert any(str(vault / "lock") in note for note in report["notes"]), report
    assert not disk.is_full()
    human = mjvault(vault, "gc")
    assert human.returncode == 0, human.stderr
    disk.free()
    assert_intact(vault)


def test_gc_on_a_full_disk_with_nothing_to_free_still_runs(disk: SmallFs, archive: Path) -> None:
    vault = disk.path / "v"
    init(vault)
    assert mjvault(vault, "import", str(archive)).returncode == 0
    disk.fill()
    result = mjvault(vault, "gc")
    assert result.returncode == 0, result.stderr
    assert f"No space left on device: {vault / 'lock'}" in result.stdout.decode()
    disk.free()
    assert_intact(vault)


def test_index_rebuild_on_a_full_disk(disk: SmallFs, archive: Path) -> None:
    vault = disk.path / "v"
    init(vault)
    assert mjvault(vault, "import", str(archive)).returncode == 0
    (vault / "tmp" / "download.0123456789ab.tmp").write_bytes(os.urandom(1024 * 1024))
    disk.fill()
    # The dead writer's temp file is the room the new index needs.
    result = mjvault(vault, "index", "rebuild")
    assert result.returncode == 0, result.stderr
    assert not (vault / "tmp" / "download.0123456789ab.tmp").exists()
    disk.free()
    assert_intact(vault)


def test_no_room_for_a_new_index_is_one_line_not_a_crash(disk: SmallFs, archive: Path) -> None:
    vault = disk.path / "v"
    init(vault)
    assert mjvault(vault, "import", str(archive)).returncode == 0
    shutil.rmtree(vault / "index")
    disk.fill()
    # LMDB maps its new lock file: touching it on a full disk would kill the process (SIGBUS),
    # so these run in a child, where a wrong implementation kills the child, not the suite.
    for args in (("index", "rebuild"), ("search", "fox")):
        one_line_naming(run_cli_process("--vault", str(vault), *args), vault / "index")
    disk.free()
    assert mjvault(vault, "search", "fox").returncode == 0
    assert_intact(vault)


def test_the_lock_is_taken_without_a_note_on_a_full_disk(disk: SmallFs) -> None:
    with Vault.init(disk.path / "v") as vault:
        (vault.path / "lock").write_bytes(b"")  # as every writer leaves it
        disk.fill()
        with WriteLock(vault.path, command="mjvault gc") as lock:
            assert lock.note_error == f"No space left on device: {vault.path / 'lock'}"
            with pytest.raises(VaultLocked, match="another process"):
                WriteLock(vault.path).acquire()
        disk.free()
        # An old holder's note is dropped even when the new one cannot be written.
        (vault.path / "lock").write_text('{"pid": 1, "host": "elsewhere"}')
        disk.fill()
        with WriteLock(vault.path) as lock:
            assert b"elsewhere" not in (vault.path / "lock").read_bytes()


def add_records(writer: ArchiveWriter, numbers: range, *, fill: SmallFs | None = None) -> None:
    for n in numbers:
        if fill is not None and n == numbers.start + 60:
            fill.fill()  # the records after the run's first checkpoint meet a full disk
        writer.add_job(record_json(f"job-{n:05d}", f"a grey owl number {n} on a branch"), [])


@pytest.fixture
def streaming_vault(disk: SmallFs, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A vault on the small disk with a dictionary: its packs are streamed to their temp file
    (in writes of 1 KiB, so a few records make one)."""
    monkeypatch.setattr(PackFileWriter, "WRITE_SIZE", 1024)
    with Vault.init(disk.path / "v") as vault:
        with vault.writer("test") as writer:
            add_records(writer, range(600))  # the first large pack trains the dictionary
        assert vault.store.packs.map().dictionary() is not None
        return vault.path


def test_a_streamed_pack_on_a_full_disk_is_one_line_and_keeps_the_checkpoint(
    disk: SmallFs, streaming_vault: Path
) -> None:
    with Vault.open(streaming_vault) as vault:
        writer = vault.writer("test", checkpoint_jobs=50)
        with pytest.raises(VaultWriteError) as failure, writer:
            add_records(writer, range(600, 900), fill=disk)
        assert writer.stats.jobs_new < 300
        message = str(failure.value)
        assert "\n" not in message and "No space left on device" in message, message
        assert str(streaming_vault) in message
        # The stopping writer left no temp file behind: the next run has that room.
        assert [p for p in (streaming_vault / "tmp").iterdir() if p.name.startswith("pack.")] == []
    disk.free()
    assert_intact(streaming_vault)
    with Vault.open(streaming_vault) as vault:
        with vault.writer("test") as writer:
            assert writer.stats.resumed_from_checkpoint  # the first 50 of the run are kept
            add_records(writer, range(600, 900))
        assert len(list(vault.entries())) == 900
    assert_intact(streaming_vault)


def test_a_streamed_pack_goes_on_once_space_is_freed(disk: SmallFs, streaming_vault: Path) -> None:
    """The record whose write failed is not in the pack; those before it and after are."""
    with Vault.open(streaming_vault) as vault:
        with vault.writer("test") as writer:
            add_records(writer, range(600, 660))
            disk.fill()
            failed = None
            for n in range(660, 900):
                try:
                    add_records(writer, range(n, n + 1))
                except VaultWriteError as exc:
                    assert "No space left on device" in str(exc)
                    failed = n
                    break
            assert failed is not None
            disk.free()
            add_records(writer, range(failed, 900))
        assert len(list(vault.entries())) == 900
        assert vault.job(vault.entry(f"job-{failed:05d}")).prompt.startswith("a grey owl")
    assert_intact(streaming_vault)
