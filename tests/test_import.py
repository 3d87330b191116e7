"""Importing folders of the original archiver scripts: lossless, idempotent, and honest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from tests.conftest import png_bytes, record_json, run_cli


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive") / "mj"
    write_sample_archive(root, jobs=60, seed=3, with_problems=True)
    return root


def test_import_is_lossless_and_idempotent(vault: Vault, archive: Path) -> None:
    report = import_archive(vault, archive)
    records = sorted(archive.rglob("*.json"))
    good = [p for p in records if p.stat().st_size and p.read_bytes().lstrip()[:1] == b"{"]
    readable = []
    for path in good:
        try:
            json.loads(path.read_bytes())
            readable.append(path)
        except ValueError:
            pass
    assert report.stats.jobs_new == len(readable) == 60
    for path in readable:
        job_id = path.stem.split("_", 1)[1]
        entry = vault.entry(job_id)
        assert vault.record_json(entry) == path.read_bytes()  # byte for byte
        images = sorted(path.parent.glob(path.stem + "*.*"))
        image_files = [p for p in images if not p.name.endswith((".json", ".prompt.txt"))]
        held = {vault.object_path(oid).read_bytes() for oid in entry.images if oid}
        assert {p.read_bytes() for p in image_files} == held
    assert verify(vault, read_data=True).ok

    again = import_archive(vault, archive)
    assert again.snapshot is None
    assert again.stats.jobs_new == 0 and again.stats.media_new == 0
    assert len(vault.snapshots()) == 1


def test_every_problem_file_is_reported_and_nothing_else(vault: Vault, archive: Path) -> None:
    report = import_archive(vault, archive)
    reported = {Path(p.path).name for p in report.problems}
    assert any(name.endswith(".docx") for name in reported)
    assert sum(name.endswith(".json") for name in reported) == 3  # cut off, HTML, empty
    assert any(name.endswith(".png") for name in reported)  # the orphan image
    assert len(report.problems) == 5


def test_cli_import_show_raw_and_exit_code(tmp_path: Path, archive: Path) -> None:
    vault_dir = tmp_path / "v"
    assert run_cli("init", str(vault_dir)).returncode == 0
    result = run_cli("--vault", str(vault_dir), "--json", "import", str(archive))
    assert result.returncode == 4, result.stderr  # partial: some files were not imported
    summary = json.loads(result.stdout)
    assert summary["jobs_new"] == 60 and len(summary["problems"]) == 5
    record = next(p for p in sorted(archive.rglob("*.json")) if p.stat().st_size > 500)
    job_id = record.stem.split("_", 1)[1]
    shown = run_cli("--vault", str(vault_dir), "show", "--raw", job_id)
    assert shown.returncode == 0
    assert shown.stdout.rstrip(b"\n") == record.read_bytes().rstrip(b"\n")
    log = run_cli("--vault", str(vault_dir), "--json", "log")
    assert json.loads(log.stdout)[0]["stats"]["jobs"] == 60


def _day(root: Path, name: str = "2023/2023-05/2023-05-26") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_text_file_named_png_is_not_stored_and_reported_with_why(
    tmp_path: Path, vault: Vault
) -> None:
    job_id = "0a0a0a0a-1111-2222-3333-444444444444"
    day = _day(tmp_path / "mj")
    (day / f"20230526-073842_{job_id}.json").write_bytes(record_json(job_id, batch_size=1))
    fake = day / f"20230526-073842_{job_id}.png"
    fake.write_text("not an image at all\n")
    report = import_archive(vault, tmp_path / "mj")
    assert [(p.path, "not a PNG" in p.reason) for p in report.problems] == [(str(fake), True)]
    assert "not imported" in report.problems[0].reason
    entry = vault.entry(job_id)
    assert entry is not None and entry.images == (None,)  # the vault agrees: no image held
    assert report.images_seen == 0 and report.images_missing == 1
    assert report.stats.media_new == 0


def test_the_same_job_twice_with_different_records_is_one_reported_conflict(
    tmp_path: Path, vault: Vault
) -> None:
    job_id = "0b0b0b0b-1111-2222-3333-444444444444"
    root = tmp_path / "mj"
    first = _day(root, "2023/2023-05/2023-05-26") / f"20230526-073842_{job_id}.json"
    second = _day(root, "copy/2023/2023-05/2023-05-26") / f"20230526-073842_{job_id}.json"
    first.write_bytes(record_json(job_id, "a red fox", batch_size=1))
    second.write_bytes(record_json(job_id, "a red fox, edited", batch_size=1))
    report = import_archive(vault, root)
    assert report.jobs_seen == 1 and report.images_missing == 1
    assert report.stats.jobs_new == 1 and report.stats.jobs_updated == 0
    [conflict] = report.problems
    # Sorted path order: "2023/…" comes before "copy/…"; the first one read is kept.
    assert conflict.path == str(second)
    assert str(first) in conflict.reason and "kept" in conflict.reason
    entry = vault.entry(job_id)
    assert entry is not None and vault.record_json(entry) == first.read_bytes()

    again = import_archive(vault, root)
    assert again.stats.jobs_unchanged == 1 and again.stats.jobs_updated == 0
    assert again.jobs_seen == 1 and again.snapshot is None


def test_an_identical_copy_of_a_record_counts_once_and_is_not_a_problem(
    tmp_path: Path, vault: Vault
) -> None:
    job_id = "0c0c0c0c-1111-2222-3333-444444444444"
    root = tmp_path / "mj"
    for where in ("2023/2023-05/2023-05-26", "copy/2023-05-26"):
        path = _day(root, where) / f"20230526-073842_{job_id}.json"
        path.write_bytes(record_json(job_id, batch_size=1))
    report = import_archive(vault, root)
    assert report.jobs_seen == 1 and report.records_repeated == 1
    assert report.images_missing == 1 and report.problems == []


def test_unreadable_records_are_not_counted_as_jobs(vault: Vault, archive: Path) -> None:
    report = import_archive(vault, archive)
    assert report.jobs_seen == 60  # the cut-off, HTML and empty records are problems, not jobs
    assert report.records_found == 63


def test_import_of_a_folder_without_records_says_so_and_fails(tmp_path: Path) -> None:
    vault_dir = tmp_path / "v"
    assert run_cli("init", str(vault_dir)).returncode == 0
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "holiday.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 64)
    result = run_cli("--vault", str(vault_dir), "import", str(empty))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert any(f"no archiver records in {empty}" in line for line in lines), lines
    assert b"Traceback" not in result.stderr


def test_missing_images_alone_exit_0_and_the_summary_says_why(tmp_path: Path) -> None:
    vault_dir = tmp_path / "v"
    assert run_cli("init", str(vault_dir)).returncode == 0
    job_id = "0d0d0d0d-1111-2222-3333-444444444444"
    day = _day(tmp_path / "mj")
    (day / f"20230526-073842_{job_id}.json").write_bytes(record_json(job_id))
    (day / f"20230526-073842_{job_id}-1.png").write_bytes(png_bytes(1))
    result = run_cli("--vault", str(vault_dir), "import", str(tmp_path / "mj"))
    assert result.returncode == 0, result.stderr  # docs/usage.md: exit 4 is for files not imported
    assert b"3 missing" in result.stdout and b"mjvault sync" in result.stdout
