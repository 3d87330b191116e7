"""The batch's write path: pooled read buffers and background temp-file writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import blake3
import pytest

from mjvault.errors import VaultWriteError
from mjvault.store import objects
from mjvault.vault import Vault
from tests.conftest import png_bytes


def test_media_read_through_reused_buffers_is_stored_byte_for_byte(
    vault: Vault, tmp_path: Path
) -> None:
    # More files than pooled buffers, in growing and shrinking sizes, so every buffer is
    # reused and replaced while earlier writes may still be queued.
    sizes = [300, 5000, 200_000, 1200, 900_000, 40, 70_000, 2_500_000, 10, 333_333] * 3
    sources = []
    for n, size in enumerate(sizes):
        path = tmp_path / f"{n}.png"
        path.write_bytes(png_bytes(n, size))
        sources.append(path)
    batch = vault.store.batch()
    ids = [batch.put_media_file(path)[0] for path in sources]
    batch.flush()
    for path, object_id in zip(sources, ids, strict=True):
        assert object_id == blake3.blake3(path.read_bytes()).hexdigest()
        assert vault.store.path(object_id).read_bytes() == path.read_bytes()
    assert not os.listdir(vault.store.tmp_dir)


def test_non_media_file_is_framed_and_a_repeat_is_not_written_again(
    vault: Vault, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not an image at all")
    batch = vault.store.batch()
    object_id, size, new = batch.put_media_file(text)
    assert (size, new) == (len(b"not an image at all"), True)
    assert batch.put_media_file(text)[2] is False
    batch.flush()
    assert vault.store.read(object_id) == b"not an image at all"
    assert vault.store.path(object_id).read_bytes().startswith(b"MJVO")


def test_a_failed_temp_write_publishes_nothing_and_stays_an_error(
    vault: Vault, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(1, 4000))
    batch = vault.store.batch()
    shutil.rmtree(vault.store.tmp_dir)  # every background create now fails
    object_id = batch.put_media_file(image)[0]
    with pytest.raises(VaultWriteError, match="cannot write to the vault"):
        batch.flush()
    with pytest.raises(VaultWriteError):
        batch.flush()  # a batch with a missing temp file is never published later either
    assert not vault.store.exists(object_id)
    batch.discard()


def test_staged_bytes_waiting_in_memory_are_bounded(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "STAGE_AHEAD_BYTES", 10_000)
    batch = vault.store.batch()
    for n in range(20):
        batch.put(png_bytes(n, 4000), compress=False)
        assert batch._in_flight_bytes <= 10_000 or len(batch._in_flight) == 1
    batch.flush()
    assert len(list(vault.store.iter_ids())) == 20


@pytest.mark.parametrize("stop_in", ["write", "writeback"])
def test_a_ctrl_c_while_a_checkpoint_seals_its_pack_loses_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_in: str
) -> None:
    """A Ctrl-C landing while a checkpoint writes its records' pack (most likely while the
    disk takes the file): the abort's checkpoint names only records that are kept."""
    from mjvault.integrity.reachability import checkpoint_tree
    from tests.conftest import record_json

    vault = Vault.init(tmp_path / "vault")
    writer = vault.writer("sync")
    writer.start()
    for n in range(6):
        writer.add_job(record_json(f"job-{n}", f"a red fox number {n}"), [])
    real_write = objects._write_new_file
    real_writeback = objects.start_writeback
    stopped = []

    def write_then_stop(path: Path, data: bytes | memoryview) -> None:
        real_write(path, data)
        if os.path.basename(path).startswith("pack-") and not stopped and stop_in == "write":
            stopped.append(path)
            raise KeyboardInterrupt

    def writeback_then_stop(fd: int) -> None:
        real_writeback(fd)
        if not stopped and stop_in == "writeback":
            stopped.append(fd)
            raise KeyboardInterrupt

    monkeypatch.setattr(objects, "_write_new_file", write_then_stop)
    monkeypatch.setattr(objects, "start_writeback", writeback_then_stop)
    with pytest.raises(KeyboardInterrupt):
        writer.checkpoint()
    assert stopped
    writer.abort()
    vault.close()
    with Vault.open(tmp_path / "vault") as vault:
        tree = checkpoint_tree(vault)
        assert tree is not None
        entries = list(vault.tree.walk(tree))
        assert len(entries) == 6
        for entry in entries:
            assert vault.store.read(entry.record)  # every record the checkpoint names is kept
