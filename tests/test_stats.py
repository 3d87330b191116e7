"""Stats: counts from the index, storage from the object files, in plain and encrypted vaults."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mjvault import Vault
from mjvault.find.stats import chart_html, vault_stats, version_label
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
    summary = vault.index.get("b")
    assert summary is not None and summary.images[0] is not None
    return summary.images[0]


def test_plain_vault(vault: Vault) -> None:
    _fill(vault)
    _check(vault)


def test_encrypted_vault(encrypted_vault: Vault) -> None:
    _fill(encrypted_vault)
    _check(encrypted_vault)


def test_version_labels() -> None:
    assert version_label({"version": "7"}) == "v 7"
    assert version_label({"niji": "true"}) == "niji"
    assert version_label({}) == "default"


def test_cli_json_and_chart(vault: Vault, tmp_path: Path) -> None:
    _fill(vault)
    chart = tmp_path / "chart.html"
    done = run_cli("--vault", str(vault.path), "stats", "--json", "--chart", str(chart))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["jobs"] == 4
    page = chart.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "2024-03: 2 jobs" in page
    png = tmp_path / "chart.png"
    drawn = run_cli("--vault", str(vault.path), "stats", "--no-storage", "--chart", str(png))
    assert drawn.returncode == 0, drawn.stderr
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size == (1200, 500)
    human = run_cli("--vault", str(vault.path), "stats", "--no-storage")
    assert b"by model version" in human.stdout and b"storage" not in human.stdout


def test_chart_of_an_empty_vault() -> None:
    empty = {"per_month": [], "jobs": 0, "images": 0, "first": None, "last": None}
    assert "<svg" in chart_html(empty)
