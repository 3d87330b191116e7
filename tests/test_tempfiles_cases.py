"""Dead writers' temp files (mjvault/store/tempfiles.py) in a real vault's folders: what is
removed in each, what a dry run only counts, and the views left alone while a checkout holds
their lock."""

from __future__ import annotations

from pathlib import Path

from mjvault import Vault
from mjvault.lock import WriteLock
from mjvault.store.tempfiles import TempFiles, remove_stale_temp_files

TEMP = ".state.json.0123456789ab.tmp"  # atomic_write's temp name


def vault_with_temp_files(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    Vault.init(root).close()
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp" / "upload-1").write_bytes(b"x" * 10)  # everything in tmp/ is a temp file
    (root / "refs" / TEMP).write_bytes(b"y" * 20)
    (root / "views").mkdir(exist_ok=True)
    (root / "views" / TEMP).write_bytes(b"z" * 30)
    (root / "views" / "mine.json").write_bytes(b"{}")  # not a temp name: kept
    return root


def test_a_dry_run_counts_and_removes_nothing(tmp_path: Path) -> None:
    root = vault_with_temp_files(tmp_path)
    assert remove_stale_temp_files(root, dry_run=True) == TempFiles(files=3, bytes=60)
    assert (root / "tmp" / "upload-1").exists() and (root / "views" / TEMP).exists()


def test_the_temp_files_of_each_folder_are_removed(tmp_path: Path) -> None:
    root = vault_with_temp_files(tmp_path)
    assert remove_stale_temp_files(root) == TempFiles(files=3, bytes=60)
    assert not (root / "tmp" / "upload-1").exists()
    assert not (root / "refs" / TEMP).exists()
    assert not (root / "views" / TEMP).exists()
    assert (root / "views" / "mine.json").exists()
    assert remove_stale_temp_files(root) == TempFiles()  # nothing left


def test_the_views_are_skipped_while_a_checkout_holds_their_lock(tmp_path: Path) -> None:
    root = vault_with_temp_files(tmp_path)
    with WriteLock(root / "views", command="mjvault checkout"):
        assert remove_stale_temp_files(root) == TempFiles(files=2, bytes=30)
    assert (root / "views" / TEMP).exists()  # a live checkout's, perhaps


def test_a_vault_without_the_folders(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "views").write_text("a file where a folder was")
    assert remove_stale_temp_files(tmp_path / "bare") == TempFiles()
