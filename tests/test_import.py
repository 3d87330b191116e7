"""Importing folders of the original archiver scripts: lossless, idempotent, and honest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from tests.conftest import run_cli


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
