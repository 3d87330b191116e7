"""What a reader gets from an index that lags HEAD or is of an older format: `index status`
says so, `verify` does not call it damage, a writer's catch-up, and lmdb's refusals of the
surroundings (a read-only disk, permissions) reported as such."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from mjvault import Vault
from mjvault.lock import is_brief, read_holder
from tests.conftest import png_bytes, record_json, run_cli


def _add_jobs(vault: Vault, count: int, start: int = 0) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n}", f"prompt number {n} fox"), [image])


def _older_format(vault: Vault) -> Path:
    """The vault with 3 jobs and an index of format 8 (a vault upgraded from it), closed."""
    _add_jobs(vault, 3)
    index = vault.current_index()
    with index.env.begin(write=True) as txn:
        txn.put(b"format", b"8", db=index.db[b"meta"])
    vault.close()
    return vault.path


def _lagging(vault: Vault) -> Path:
    """The vault with 3 jobs and its index thrown away, closed."""
    _add_jobs(vault, 3)
    vault.close()
    shutil.rmtree(vault.path / "index")
    return vault.path


def test_index_status_reports_an_index_behind_head_as_it_is(vault: Vault) -> None:
    path = _lagging(vault)
    result = run_cli("--vault", str(path), "--json", "index", "status")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["current"] is False and data["tree"] is None
    text = run_cli("--vault", str(path), "index", "status")
    assert "behind HEAD" in text.stdout.decode()


def test_index_status_reports_an_older_format_as_behind(vault: Vault) -> None:
    path = _older_format(vault)
    data = json.loads(run_cli("--vault", str(path), "--json", "index", "status").stdout)
    assert data["current"] is False


def test_verify_brings_an_index_of_an_older_format_current(vault: Vault) -> None:
    path = _older_format(vault)
    result = run_cli("--vault", str(path), "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"index" not in result.stdout + result.stderr
    reopened = Vault.open(path)
    try:
        head = reopened.head()
        assert head is not None and reopened.open_index().indexed_tree() == head.tree
    finally:
        reopened.close()


def test_verify_does_not_call_an_index_behind_head_damage(vault: Vault) -> None:
    path = _lagging(vault)
    result = run_cli("--vault", str(path), "verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_families_on_an_older_format_beside_a_writer_say_to_come_back(vault: Vault) -> None:
    """A writer holds the lock, so the format-8 index (no shared_bands) is not rebuilt yet:
    walked as it is it would show no family, so the command says why it cannot answer."""
    path = _older_format(vault)
    writer = Vault.open(path)
    try:
        with writer.write_lock():
            result = run_cli("--vault", str(path), "stats", "--families")
    finally:
        writer.close()
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "being brought up to date by pid" in lines[0], lines
    assert b"No prompt families" not in result.stdout


def _mount(*args: str) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True).returncode == 0
    except OSError:  # no mount command here
        return False


@pytest.fixture
def read_only_index(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The vault (3 jobs, closed) with its index on a read-only file system: a read-only bind
    mount of the index folder where this machine allows one (root ignores chmod), else
    LMDB's own EROFS error raised where it opens the environment."""
    _add_jobs(vault, 3)
    vault.close()
    index = vault.path / "index"
    mounted = _mount("--bind", str(index), str(index))
    if mounted and not _mount("-o", "remount,bind,ro", str(index)):
        subprocess.run(["umount", str(index)], check=True)
        mounted = False
    if not mounted:
        real_open = lmdb.open

        def refusing(path: str, **options: object) -> lmdb.Environment:
            if Path(path) == index:
                raise lmdb.Error(f"{path}: {os.strerror(errno.EROFS)}")
            return real_open(path, **options)

        monkeypatch.setattr(lmdb, "open", refusing)
    try:
        yield vault.path
    finally:
        if mounted:
            subprocess.run(["umount", str(index)], check=True)


def test_a_read_only_index_is_the_machines_refusal_not_damage(read_only_index: Path) -> None:
    files = sorted(p.name for p in (read_only_index / "index").iterdir())
    result = run_cli("--vault", str(read_only_index), "search", "fox")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Read-only file system" in lines[0], lines
    assert "damaged" not in lines[0] and "discarding" not in lines[0]
    assert sorted(p.name for p in (read_only_index / "index").iterdir()) == files


def test_a_reader_catches_up_as_a_brief_holder_and_rebuilds_under_the_full_lock(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up by diff lets a sync starting meanwhile wait for it; a rebuild from the
    objects (an older format) keeps the full lock."""
    _add_jobs(vault, 2)
    before = vault.head()
    assert before is not None
    _add_jobs(vault, 2, start=2)
    reader = Vault.open(vault.path)
    try:
        index = reader.open_index()
        with index.env.begin(write=True) as txn:  # one diff behind HEAD
            txn.put(b"tree", before.tree.encode(), db=index.db[b"meta"])
        notes: list[dict[str, object] | None] = []
        real = reader.sync_index

        def noting(target: str | None, progress: object = None) -> int:
            notes.append(read_holder(vault.path / "lock"))
            return real(target)

        monkeypatch.setattr(reader, "sync_index", noting)
        head = reader.head()
        assert head is not None and reader.current_index().indexed_tree() == head.tree
        with index.env.begin(write=True) as txn:
            txn.put(b"format", b"8", db=index.db[b"meta"])
        assert reader.current_index().indexed_tree() == head.tree
    finally:
        reader.close()
    assert [is_brief(note) for note in notes] == [True, False]
