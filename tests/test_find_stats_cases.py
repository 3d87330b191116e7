"""The counts of `stats` (mjvault/find/stats.py) on real vaults: packed objects counted as
loose ones are, in plain and encrypted vaults, a damaged pack or object not stopping the
count, shared images as dedup, progress as it goes, and the anonymised history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mjvault import Vault
from mjvault.find import stats
from mjvault.find.stats import history_stats, job_stats, storage_stats, vault_stats, version_label
from mjvault.integrity.pack import pack
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

JOBS = 6


def make_vault(path: Path, *, encrypted: bool = False) -> Vault:
    """Six jobs of one image each, two of them sharing an image; and a second snapshot."""
    vault = (
        Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
        if encrypted
        else Vault.init(path)
    )
    with vault.writer("midjourney:v3:user-1") as writer:
        for n in range(JOBS - 1):
            image = writer.put_media(png_bytes(n, 64))
            writer.add_job(
                record_json(
                    f"job-{n}", f"a red fox number {n}", full_command=f"a red fox {n} --v 6.1"
                ),
                [image],
            )
    with vault.writer("import:/home/me/archive.zip") as writer:
        shared = writer.put_media(png_bytes(0, 64))  # the same bytes as job-0's image
        writer.add_job(
            record_json(f"job-{JOBS - 1}", "a red fox again", full_command="a red fox again"),
            [shared],
        )
    return vault


def storage_without_disk(doc: dict[str, Any]) -> dict[str, Any]:
    # What packing changes by design: the files and blocks on disk.
    return {k: v for k, v in doc.items() if k not in ("disk_bytes", "packs", "index_bytes")}


@pytest.mark.parametrize("encrypted", [False, True])
def test_packed_objects_are_counted_as_loose_ones_are(tmp_path: Path, encrypted: bool) -> None:
    with make_vault(tmp_path / "v", encrypted=encrypted) as vault:
        # a writer packs small objects as it goes: what is left loose is packed below
        loose = storage_stats(vault)
        assert loose["media"]["objects"] == JOBS - 1  # the shared image is stored once
        assert loose["metadata"]["plain_bytes"] > 0
        report = pack(vault)
        assert report.objects_packed > 0
        packed = storage_stats(vault)
    assert packed["packs"]["files"] >= 1 and packed["packs"]["bytes"] > 0
    if encrypted:
        # sealed entries are read back whole: their plaintext is what was counted loose
        assert packed["metadata"]["plain_bytes"] == loose["metadata"]["plain_bytes"]
    assert packed["objects"] == loose["objects"]
    assert packed["media"] == loose["media"]
    assert packed["dedup"] == loose["dedup"]


def test_a_shared_image_is_counted_as_saved(tmp_path: Path) -> None:
    with make_vault(tmp_path / "v") as vault:
        doc = storage_stats(vault)
    assert doc["dedup"]["image_references"] == JOBS
    assert doc["dedup"]["unique_images"] == JOBS - 1
    assert doc["dedup"]["saved_bytes"] > 0
    assert doc["metadata"]["compression_ratio"] is not None


def test_a_damaged_pack_is_left_out_of_the_count(tmp_path: Path) -> None:
    with make_vault(tmp_path / "v") as vault:
        pack(vault)
        before = storage_stats(vault)
        name = vault.store.packs.names()[0]
        path = vault.store.packs.path(name)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 7])  # its trailer cut short
        after = storage_stats(vault)
    # the pack's file still takes space; its objects are `verify`'s business, not counted
    assert after["packs"]["files"] == before["packs"]["files"]
    assert after["objects"] < before["objects"]


def test_a_damaged_encrypted_metadata_object_is_counted_as_stored(tmp_path: Path) -> None:
    with make_vault(tmp_path / "v", encrypted=True) as vault:
        before = storage_stats(vault)
        head = vault.head()
        assert head is not None
        with vault.current_index().reader() as reader:
            # any metadata object but HEAD's manifest, which opening the index reads
            meta = [
                oid
                for oid in vault.store.iter_loose_ids()
                if not reader.is_image(oid) and oid != head.id
            ]
        path = vault.store.path(meta[0])
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF  # its tag no longer authenticates it
        path.chmod(0o644)
        path.write_bytes(bytes(data))
        after = storage_stats(vault)
    assert after["objects"] == before["objects"]
    assert after["metadata"]["plain_bytes"] != before["metadata"]["plain_bytes"]


def test_progress_is_reported_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "PROGRESS_EVERY", 2)
    jobs: list[int] = []
    objects: list[int] = []
    with make_vault(tmp_path / "v") as vault:
        doc = vault_stats(vault, on_job=jobs.append, on_object=objects.append)
    assert jobs == [2] * (JOBS // 2)
    assert objects and set(objects) == {2}
    assert sum(objects) <= doc["storage"]["objects"] < sum(objects) + 2


def test_job_counts_and_the_top_words(tmp_path: Path) -> None:
    with make_vault(tmp_path / "v") as vault:
        doc = job_stats(vault, top=2)
    assert doc["jobs"] == JOBS and doc["images"] == JOBS and doc["missing_images"] == 0
    assert doc["top_words"] == [["fox", JOBS], ["red", JOBS]]  # "a" is a stopword
    assert doc["by_version"] == {"v 6.1": JOBS - 1, "default": 1}


def test_without_storage_and_anonymised(tmp_path: Path) -> None:
    with make_vault(tmp_path / "v") as vault:
        doc = vault_stats(vault, storage=False, anonymize=True)
        plain = history_stats(vault, recent=1)
    assert doc["storage"] is None
    history = doc["history"]
    assert history["snapshots"] == 2
    assert history["by_source"] == {"midjourney": 1, "import": 1}
    assert "user-1" not in str(history) and "/home/me" not in str(history)
    assert plain["by_source"] == {"midjourney:v3:user-1": 1, "import:/home/me/archive.zip": 1}
    assert (
        len(plain["recent"]) == 1 and plain["recent"][0]["source"] == "import:/home/me/archive.zip"
    )


def test_an_empty_vault(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "v") as vault:
        doc = vault_stats(vault)
    assert doc["jobs"] == 0 and doc["first"] is None and doc["per_month"] == []
    assert doc["storage"]["metadata"]["compression_ratio"] is None
    assert doc["history"] == {
        "snapshots": 0,
        "first": None,
        "last": None,
        "by_source": {},
        "recent": [],
    }


@pytest.mark.parametrize(
    ("params", "label"),
    [
        ({}, "default"),
        ({"version": "6.1"}, "v 6.1"),
        ({"niji": "true"}, "niji"),
        ({"niji": "6", "version": "6"}, "niji 6"),
    ],
)
def test_version_label(params: dict[str, str], label: str) -> None:
    assert version_label(params) == label
