"""What the index keeps per job on disk (docs/design.md, "Packs for small objects")."""

from __future__ import annotations

from pathlib import Path

from mjvault import Vault
from mjvault.index.db import JobSummary
from tests.conftest import png_bytes, record_json

IDS = 5  # a record and four images


def summary() -> JobSummary:
    return JobSummary(
        job_id="0f3c1a2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        record="ab" * 32,
        images=("cd" * 32, None, "ef" * 32, "01" * 32, "23" * 32),
        time=None,
        type="grid",
        prompt="a red fox",
        params={"version": "6"},
        kinds=("png", None, "png", "jpg", "png"),
    )


def test_a_job_summary_holds_its_object_ids_as_bytes_and_round_trips() -> None:
    job = summary()
    packed = job.pack()
    assert JobSummary.unpack(job.job_id, packed) == job
    # Hex text would be 64 bytes an id: 320 bytes for these five, more than the whole.
    assert len(packed) < IDS * 34 + 90, len(packed)


def test_the_index_reads_back_ids_from_its_summaries(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "v") as vault:
        with vault.writer("test") as writer:
            images = [writer.put_media(png_bytes(n, 300)) for n in range(2)]
            writer.add_job(record_json("job-1"), [images[0], None, images[1]])
        entry = vault.entry("job-1")
        index = vault.open_index()
        assert index.entry("job-1") == entry
        found = index.get("job-1")
        assert found is not None and (found.record, found.images) == (entry.record, entry.images)
        assert set(index.jobs_with_image(images[1])) == {"job-1"}
