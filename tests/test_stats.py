"""Stats: counts from the index, storage from the object files, in plain and encrypted vaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from mjvault import Vault
from mjvault.find.stats import storage_stats, vault_stats, version_label
from tests.conftest import png_bytes, run_cli


def _fill(vault: Vault) -> tuple[str, str]:
    with vault.writer("import") as writer:
        shared = writer.put_media(png_bytes(1, size=5000))
        own = writer.put_media(png_bytes(2, size=3000))
        rows = [
            ("a", "2024-03-01", "grid", "a red fox --v 6.1 --ar 16:9", [shared, own]),
            ("b", "2024-03-09", "upscale", "red fox in snow --v 6.1", [shared]),
            ("c", "2024-05-01", "grid", "blue cat --niji 6", [shared, None]),
        ]
        for job_id, day, kind, command, images in rows:
            record = {"id": job_id, "enqueue_time": day, "type": kind, "full_command": command}
            writer.add_job(json.dumps(record).encode(), images)
    with vault.writer("sync") as writer:
        writer.add_job(json.dumps({"id": "d", "full_command": "🦊"}).encode(), [])
    return shared, own


def _check(vault: Vault) -> None:
    doc = vault_stats(vault, top=3)
    assert (doc["jobs"], doc["images"], doc["missing_images"]) == (4, 4, 1)
    assert doc["per_month"] == [
        {"month": "2024-03", "jobs": 2, "images": 3},
        {"month": "2024-05", "jobs": 1, "images": 1},
        {"month": "unknown", "jobs": 1, "images": 0},
    ]
    assert doc["by_type"] == {"grid": 2, "upscale": 1, "unknown": 1}
    assert doc["by_version"] == {"v 6.1": 2, "niji 6": 1, "default": 1}
    assert doc["top_words"] == [["fox", 2], ["red", 2], ["blue", 1]]
    assert doc["top_params"][0] == ["version 6.1", 2]
    storage = doc["storage"]
    assert storage["media"]["objects"] == 2
    dedup = storage["dedup"]
    assert (dedup["image_references"], dedup["unique_images"]) == (4, 2)
    shared_size = (vault.object_path(_shared(vault))).stat().st_size
    assert dedup["saved_bytes"] == 2 * shared_size
    meta = storage["metadata"]
    # 4 records, 2 trees at least, 2 snapshots
    assert meta["objects"] >= 8 and meta["plain_bytes"] > 0 and meta["compression_ratio"] > 0
    assert storage["objects"] == sum(1 for _ in vault.store.iter_ids())
    history = doc["history"]
    assert history["snapshots"] == 2 and history["by_source"] == {"import": 1, "sync": 1}
    assert history["recent"][0]["source"] == "sync"


def _shared(vault: Vault) -> str:
    summary = vault.current_index().get("b")
    assert summary is not None and summary.images[0] is not None
    return summary.images[0]


def test_plain_vault(vault: Vault) -> None:
    _fill(vault)
    _check(vault)


def test_encrypted_vault(encrypted_vault: Vault) -> None:
    _fill(encrypted_vault)
    _check(encrypted_vault)


def test_packed_objects_are_counted_with_their_packs(vault: Vault) -> None:
    """Records and tree nodes live in packs: counted by kind, their bytes and the packs'."""
    _fill(vault)
    storage = vault_stats(vault)["storage"]
    store = vault.store
    packed = list(store.packs.iter_ids())
    assert packed and not any(store.is_loose(oid) for oid in packed)
    loose = list(store.iter_loose_ids())
    assert storage["objects"] == len(packed) + len(loose)
    # Every packed object is metadata here (media stay loose), at its entry's size.
    with vault.current_index().reader() as reader:
        manifests_and_dictionaries = [oid for oid in loose if not reader.is_image(oid)]
    assert storage["metadata"]["objects"] == len(packed) + len(manifests_and_dictionaries)
    assert storage["metadata"]["bytes"] == sum(store.stored_size(oid) for oid in packed) + sum(
        store.path(oid).stat().st_size for oid in manifests_and_dictionaries
    )
    sizes = [store.packs.path(name).stat() for name in store.packs.names()]
    assert storage["packs"] == {"files": len(sizes), "bytes": sum(s.st_size for s in sizes)}
    loose_disk = sum(store.path(oid).stat().st_blocks * 512 for oid in loose)
    assert storage["disk_bytes"] == loose_disk + sum(s.st_blocks * 512 for s in sizes)


def test_version_labels() -> None:
    assert version_label({"version": "7"}) == "v 7"
    assert version_label({"niji": "true"}) == "niji"
    assert version_label({}) == "default"


def test_cli_json_and_chart(vault: Vault, tmp_path: Path) -> None:
    _fill(vault)
    chart = tmp_path / "chart.html"
    done = run_cli("--vault", str(vault.path), "stats", "--json", "--chart", str(chart))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["totals"]["jobs"] == 4 and doc["storage"]["media"]["objects"] == 2
    assert doc["history"]["snapshots"] == 2
    page = chart.read_text(encoding="utf-8")
    # One chart each, the breakdown by type only when the document has one.
    from mjvault.insights.render.charts import charts_for

    assert page.startswith("<!doctype html>") and page.count("<svg") == len(charts_for(doc))
    png = tmp_path / "chart.png"
    drawn = run_cli("--vault", str(vault.path), "stats", "--no-storage", "--chart", str(png))
    assert drawn.returncode == 0, drawn.stderr
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[1] > picture.size[0]
    human = run_cli("--vault", str(vault.path), "stats", "--no-storage")
    assert b"by model version" in human.stdout and b"storage" not in human.stdout
    assert b"cost, an ESTIMATE" in human.stdout


def test_cli_filters_by_dates_and_query(vault: Vault) -> None:
    _fill(vault)
    at = ("--vault", str(vault.path), "stats", "--json", "--no-storage")
    march = json.loads(run_cli(*at, "--since", "2024-03-01", "--until", "2024-03-31").stdout)
    assert march["totals"]["jobs"] == 2 and march["filter"]["until"] == "2024-03-31"
    cats = json.loads(run_cli(*at, "cat").stdout)
    assert cats["totals"]["jobs"] == 1 and cats["filter"]["query"] == "cat"
    refused = run_cli(*at, "--since", "March")
    assert refused.returncode == 2 and b"YYYY" not in refused.stdout


def test_human_span_is_dates(vault: Vault) -> None:
    _fill(vault)
    human = run_cli("--vault", str(vault.path), "stats", "--no-storage")
    assert b"span      2024-03-01  to  2024-05-01" in human.stdout, human.stdout
    assert b"T00:00" not in human.stdout


def test_chart_into_a_missing_folder_is_refused(vault: Vault, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "chart.html"
    done = run_cli("--vault", str(vault.path), "stats", "--chart", str(target))
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and f"{target.parent} does not exist" in err
    assert not (tmp_path / "no").exists() and done.stdout == b""


@pytest.mark.memory
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's smaps")
def test_storage_stats_lets_go_of_the_index_pages_it_reads(tmp_path: Path) -> None:
    """Storage asks the index's images table about every object and walks it whole: without
    letting go of the pages it maps, a million-job vault's stats held ~1 GB of the index. The
    kernel maps 16 neighbouring pages at each fault, so what a walk keeps between two releases
    is a few MB, whatever the index's size (here 12 MB)."""
    from mjvault.find import stats
    from mjvault.testing.rusage import resident_kib
    from tests.test_checkout_memory import build

    with Vault.open(build(tmp_path / "vault", 12_000)) as vault:
        data = vault.current_index().path / "data.mdb"
        resident: list[int] = []
        original = stats.PROGRESS_EVERY
        stats.PROGRESS_EVERY = 1000
        try:
            doc = stats.storage_stats(
                vault, on_object=lambda _: resident.append(resident_kib(data))
            )
        finally:
            stats.PROGRESS_EVERY = original
        resident.append(resident_kib(data))
        assert doc["dedup"]["image_references"] == 48_000 and len(resident) > 40
        assert max(resident) < 4096  # measured 1.7 MB; 7.2 MB, all it read, before


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_damaged_metadata_object_is_counted_at_its_stored_size(
    request: pytest.FixtureRequest, encrypted: bool
) -> None:
    """A loose metadata object whose header is damaged (a frame claiming zstd over bytes that
    are not) is counted as stored, for `mjvault verify` to report, not a traceback."""
    target: Vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    _fill(target)
    store = target.store
    head = target.head()
    assert head is not None
    with target.current_index().reader() as reader:
        loose = [oid for oid in store.iter_loose_ids() if not reader.is_image(oid)]
    # Not HEAD's manifest: opening the index reads that one.
    damaged = store.path(next(oid for oid in loose if oid != head.id))
    before = storage_stats(target)["metadata"]
    damaged.chmod(0o644)
    damaged.write_bytes(b"MJVO\x01\x01" + b"not a zstd frame" * 4)
    meta = storage_stats(target)["metadata"]
    assert meta["objects"] == before["objects"] and meta["plain_bytes"] > 0
