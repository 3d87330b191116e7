"""The import stat cache: an unchanged archive is re-imported without reading its files, and
every way a file can change under an unchanged-looking name is still caught."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.index import statcache
from mjvault.index.statcache import FINE_WINDOW_NS, IMAGE, RECORD, Row, StatCache, racy
from mjvault.integrity import exclusions
from mjvault.integrity.forget import forget_jobs
from mjvault.integrity.gc import gc
from mjvault.integrity.repair import quarantine
from mjvault.integrity.verify import verify
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from tests.conftest import png_bytes, record_json, run_cli

DAY = "2023/2023-05/2023-05-26"
IMAGE_SIZE = 200_000


def _settle() -> None:
    """Let the files written so far leave the racy window, as files of a real archive have."""
    time.sleep(FINE_WINDOW_NS / 1e9 + 0.05)


def _folder(root: Path, jobs: int = 6) -> Path:
    day = root / DAY
    day.mkdir(parents=True)
    for n in range(jobs):
        stem = f"20230526-0000{n:02d}_job-{n}"
        (day / f"{stem}.json").write_bytes(record_json(f"job-{n}", prompt=f"a red fox {n}"))
        for i in (1, 2):
            (day / f"{stem}-{i}.png").write_bytes(png_bytes(n * 10 + i, IMAGE_SIZE))
    return root


def _image(root: Path, n: int, i: int = 1) -> Path:
    return root / DAY / f"20230526-0000{n:02d}_job-{n}-{i}.png"


def _record(root: Path, n: int) -> Path:
    return root / DAY / f"20230526-0000{n:02d}_job-{n}.json"


def _rchar() -> int:
    """Bytes this process has read through read(2) and friends, as the kernel counts them."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """New bytes of the same size in the same inode, the modification time put back."""
    before = path.stat()
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _pretend_same_tick(vault: Vault, path: Path, *, seen_ns: int | None = None) -> None:
    """Make the cached row match the file's present stat except its content, as a file system
    with coarse timestamps would show a second change within one tick. The row claims its file
    was read at ``seen_ns``, by default long after the file's timestamps (not racy)."""
    cache = StatCache(vault.open_index())
    row = cache.get(path)
    assert row is not None
    st = path.stat()
    cache.put_rows(
        [
            (
                cache.key(path),
                row._replace(
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    ctime_ns=st.st_ctime_ns,
                    seen_ns=st.st_ctime_ns + 10 * 10**9 if seen_ns is None else seen_ns,
                ).pack(),
            )
        ]
    )


def test_reimport_of_an_unchanged_archive_reads_no_file(vault: Vault, tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    first = import_archive(vault, root)
    assert first.stats.jobs_new == 6 and first.bytes_read >= 12 * IMAGE_SIZE
    before = _rchar()
    again = import_archive(vault, root)
    read = _rchar() - before
    # The kernel's own count: a re-read of 12 images would be 2.4 MB.
    assert read < IMAGE_SIZE, read
    assert again.bytes_read == 0
    assert again.records_unchanged == 6 and again.images_unchanged == 12
    assert again.jobs_seen == 6 and again.images_seen == 12
    assert again.stats.jobs_unchanged == 6 and again.stats.media_new == 0
    assert again.snapshot is None and again.problems == []


def test_reimport_reports_what_the_first_import_reported(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "mj"
    write_sample_archive(root, jobs=20, seed=4, with_problems=True)
    day = next(p.parent for p in sorted(root.rglob("*.json")))
    text = day / "20230101-000000_fake.json"
    text.write_bytes(record_json("fake"))
    (day / "20230101-000000_fake-1.png").write_bytes(b"<html>not an image</html>")
    dup = day.parent / "copy"
    dup.mkdir()
    (dup / "20230101-000000_fake.json").write_bytes(record_json("fake"))  # identical copy
    (dup / "20230101-000000_bad.json").write_bytes(record_json("fake", prompt="other"))
    _settle()
    first = import_archive(vault, root)
    again = import_archive(vault, root)
    assert again.records_unchanged > 0
    for field in ("records_found", "jobs_seen", "records_repeated", "images_seen"):
        assert getattr(again, field) == getattr(first, field), field
    assert again.jobs_malformed == first.jobs_malformed
    assert sorted(again.problems, key=repr) == sorted(first.problems, key=repr)
    assert any("not a PNG" in p.reason for p in again.problems)
    assert any("different record" in p.reason for p in again.problems)
    result = run_cli("--vault", str(vault.path), "--json", "import", str(root))
    assert result.returncode == 4, result.stderr
    # Only the two later copies of a job are read again: a copy names no object to trust.
    copies = sum(p.stat().st_size for p in dup.iterdir())
    assert json.loads(result.stdout)["bytes_read"] == again.bytes_read == copies


def test_a_change_in_place_with_the_same_size_is_caught(vault: Vault, tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    new_image = png_bytes(999, IMAGE_SIZE)
    _rewrite_in_place(_image(root, 2), new_image)
    record = _record(root, 3)
    new_record = record.read_bytes().replace(b"a red fox 3", b"a red cat 3")
    _rewrite_in_place(record, new_record)
    again = import_archive(vault, root)
    assert again.stats.media_new == 1 and again.stats.jobs_updated == 2
    assert vault.object_path(vault.entry("job-2").images[0]).read_bytes() == new_image
    assert vault.record_json(vault.entry("job-3")) == new_record
    assert again.images_unchanged == 11 and again.records_unchanged == 5


def test_a_change_within_the_same_tick_is_caught_by_the_racy_rule(
    vault: Vault, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    image = _image(root, 1)
    new_image = png_bytes(777, IMAGE_SIZE)
    _rewrite_in_place(image, new_image)
    _settle()
    # Every stat field now equals the cached row's; only the row's read time tells that the
    # file was read within its modification time's tick, so a later change may hide in it.
    _pretend_same_tick(vault, image, seen_ns=image.stat().st_mtime_ns + 1_000_000)
    again = import_archive(vault, root)
    assert again.stats.media_new == 1
    assert vault.object_path(vault.entry("job-1").images[0]).read_bytes() == new_image
    # Read again, the row is trusted from now on.
    assert import_archive(vault, root).bytes_read == 0


def test_outside_the_racy_window_identical_stat_is_trusted(vault: Vault, tmp_path: Path) -> None:
    """The counterpart of the test above: what makes the difference there is the racy rule."""
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    image = _image(root, 1)
    _rewrite_in_place(image, png_bytes(777, IMAGE_SIZE))
    _pretend_same_tick(vault, image)
    assert import_archive(vault, root).bytes_read == 0


def test_racy_window_follows_the_timestamp_granularity() -> None:
    second = 1_700_000_000 * 10**9
    fine = second + 123_456_789
    assert racy(fine, fine, fine + FINE_WINDOW_NS // 2)
    assert not racy(fine, fine, fine + FINE_WINDOW_NS + 1)
    # Whole-second stamps: a file system of 1 or 2 s granularity; a second later is racy.
    assert racy(second, second, second + 1_500_000_000)
    assert not racy(second, second, second + 2_100_000_000)
    assert racy(fine, fine + 5 * 10**9, fine + 5 * 10**9)  # a recent ctime is enough
    assert racy(fine + 10**12, fine, fine)  # a modification time in the future


def test_a_replaced_file_is_read_again(vault: Vault, tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    image = _image(root, 4)
    before = image.stat()
    new_image = png_bytes(555, IMAGE_SIZE)
    spare = image.with_name("spare.tmp")
    spare.write_bytes(new_image)
    os.utime(spare, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(spare, image)
    assert image.stat().st_ino != before.st_ino
    # Only the inode tells them apart: the row claims the new ctime, read long after.
    _pretend_same_tick(vault, image)
    again = import_archive(vault, root)
    assert again.stats.media_new == 1
    assert vault.object_path(vault.entry("job-4").images[0]).read_bytes() == new_image


def test_objects_removed_by_gc_or_repair_are_not_trusted(vault: Vault, tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    gone = vault.entry("job-0")
    forget_jobs(vault, ["job-0"])
    exclusions.remove(vault, ["job-0"])  # `forget --undo`: the import may bring it back
    gc(vault, grace_seconds=0)
    assert not vault.store.exists(gone.record) and not vault.store.exists(gone.images[0] or "")
    damaged = vault.entry("job-5").images[1]
    assert damaged is not None
    quarantine(vault, damaged)  # what `verify --repair` does with a damaged object
    again = import_archive(vault, root)
    assert again.stats.jobs_new == 1 and again.stats.jobs_unchanged == 5
    assert again.stats.media_new == 3
    assert vault.entry("job-0") == gone
    assert vault.store.exists(damaged)
    assert verify(vault, read_data=True).ok


def test_a_deleted_cache_is_rebuilt_by_the_next_import(tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    path = tmp_path / "v"
    Vault.init(path).close()
    with Vault.open(path) as vault:
        import_archive(vault, root)
    shutil.rmtree(path / "index")
    with Vault.open(path) as vault:
        rebuilt = import_archive(vault, root)
        assert rebuilt.bytes_read >= 12 * IMAGE_SIZE and rebuilt.stats.jobs_unchanged == 6
        assert import_archive(vault, root).bytes_read == 0


def test_an_interrupted_import_keeps_the_rows_of_its_finished_batches(
    vault: Vault, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    done: list[int] = []

    def stop() -> bool:
        return len(done) >= 4

    with pytest.raises(KeyboardInterrupt):
        import_archive(
            vault, root, on_job=lambda: done.append(1), should_stop=stop, checkpoint_jobs=2
        )
    again = import_archive(vault, root)
    assert again.records_unchanged == 4 and again.images_unchanged == 8
    assert again.stats.jobs_new == 2


def test_the_cache_can_be_turned_off(vault: Vault, tmp_path: Path) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(vault, root)
    assert import_archive(vault, root, stat_cache=False).bytes_read >= 12 * IMAGE_SIZE


def test_an_encrypted_vault_reimports_without_reading(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "mj")
    _settle()
    import_archive(encrypted_vault, root)
    again = import_archive(encrypted_vault, root)
    assert again.bytes_read == 0 and again.stats.jobs_unchanged == 6
    # Like the rest of the index, the cache sits in the owner-only index directory.
    assert (encrypted_vault.path / "index").stat().st_mode & 0o077 == 0


def test_a_job_found_again_batches_later_is_still_a_copy_or_a_conflict(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past a few jobs, those an import has read move to LMDB: a later batch still sees them."""
    monkeypatch.setattr(statcache, "JOBS_IN_MEMORY", 3)
    root = _folder(tmp_path / "mj")
    later = root / "2024/2024-01/2024-01-01"
    later.mkdir(parents=True)
    shutil.copy(_record(root, 0), later / "20240101-000000_job-0.json")
    (later / "20240101-000001_job-1.json").write_bytes(record_json("job-1", prompt="other"))
    (later / "20240101-000001_job-1-1.png").write_bytes(png_bytes(4242))
    report = import_archive(vault, root, checkpoint_jobs=2)
    assert report.records_repeated == 1 and report.jobs_seen == 6
    reasons = {Path(p.path).name: p.reason for p in report.problems}
    assert "also in" in reasons["20240101-000001_job-1.json"]
    assert str(_record(root, 1)) in reasons["20240101-000001_job-1.json"]
    assert "not kept" in reasons["20240101-000001_job-1-1.png"]
    assert statcache_jobs(vault) == 6
    # A new run starts afresh: its own first records, not the last run's.
    assert import_archive(vault, root, checkpoint_jobs=2).records_repeated == 1
    monkeypatch.setattr(statcache, "JOBS_IN_MEMORY", 20_000)
    assert import_archive(vault, root).records_repeated == 1


def statcache_jobs(vault: Vault) -> int:
    index = vault.open_index()
    db = index.other_table(b"import_jobs")
    with index.env.begin() as txn:
        return int(txn.stat(db)["entries"]) if db is not None else 0


def test_rows_round_trip_and_garbage_is_not_a_row() -> None:
    st = os.stat(__file__)
    record = Row.of(RECORD, st, 5, "ab" * 32, job_id="jöb-1", digest=b"d" * 16, media=4)
    assert Row.unpack(record.pack()) == record._replace(malformed="")
    image = Row.of(IMAGE, st, 5, "cd" * 32)
    assert Row.unpack(image.pack()) == image
    for bad in (b"", b"\x07" + image.pack()[1:], image.pack()[:-1], record.pack()[:80]):
        assert Row.unpack(bad) is None
