"""Stats: counts from the index, storage from the object files, in plain and encrypted vaults."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
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
    with vault.index.reader() as reader:
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


def _gappy() -> dict[str, object]:
    """Three busy months with two empty ones between them, and a record without a date."""
    return {
        "jobs": 7,
        "images": 19,
        "missing_images": 2,
        "first": "2024-01-03T07:38:42.209596+00:00",
        "last": "2024-05-28T21:01:09.5+00:00",
        "per_month": [
            {"month": "2024-01", "jobs": 3, "images": 9},
            {"month": "2024-04", "jobs": 1, "images": 4},
            {"month": "2024-05", "jobs": 2, "images": 6},
            {"month": "unknown", "jobs": 1, "images": 0},
        ],
        "by_type": {"grid": 5, "upscale": 2},
        "by_version": {"v 6.1": 7},
        "top_words": [["fox", 3]],
        "top_params": [["ar 16:9", 2]],
    }


def test_chart_shows_every_month_of_the_span_with_integer_ticks() -> None:
    page = chart_html(_gappy())
    for month, jobs in (("2024-01", 3), ("2024-02", 0), ("2024-03", 0), ("2024-04", 1)):
        assert f"{month}: {jobs} jobs" in page
    ticks = [int(t) for t in re.findall(r'<text class="tick"[^>]*>(\d+)</text>', page)]
    assert ticks == sorted(set(ticks)) and ticks[0] == 0 and ticks[-1] >= 9, ticks
    assert len(ticks) >= 3
    steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1  # evenly spaced whole numbers
    assert "2024-01-03 to 2024-05-28" in page
    assert "T07:38" not in page and ".209596" not in page


def test_chart_of_a_single_job_has_ticks_0_and_1() -> None:
    one = _gappy() | {
        "per_month": [{"month": "2024-01", "jobs": 1, "images": 1}],
        "last": "2024-01-03T07:38:42+00:00",
    }
    ticks = re.findall(r'<text class="tick"[^>]*>(\d+)</text>', chart_html(one))
    assert ticks == ["0", "1"]


def test_human_span_is_dates(vault: Vault) -> None:
    _fill(vault)
    human = run_cli("--vault", str(vault.path), "stats", "--no-storage")
    assert b"span      2024-03-01  to  2024-05-01" in human.stdout, human.stdout


def test_chart_into_a_missing_folder_is_refused(vault: Vault, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "chart.html"
    done = run_cli("--vault", str(vault.path), "stats", "--chart", str(target))
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and f"{target.parent} does not exist" in err
    assert not (tmp_path / "no").exists() and done.stdout == b""


def test_chart_page_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    page_file = tmp_path / "chart.html"
    page_file.write_text(chart_html(_gappy()), encoding="utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_file.as_uri())
            content = page.evaluate("document.documentElement.clientWidth")
            chart = page.evaluate("document.querySelector('svg').getBoundingClientRect()")
            # The chart fills the page's width, and is tall enough to read, not a strip.
            assert chart["width"] >= 0.9 * content and chart["height"] >= 250, (chart, content)
            bars = page.eval_on_selector_all(
                "svg rect.bar", "rs => rs.map(r => r.getBoundingClientRect().width)"
            )
            assert len(bars) == 2 * 5 and min(bars) >= 8  # 5 months, jobs and images each
            # The rest of the page is used: the breakdowns sit side by side under the chart.
            panels = page.eval_on_selector_all(
                "section.panel", "ps => ps.map(p => p.getBoundingClientRect().top)"
            )
            assert len(panels) == 4 and len(set(panels)) < len(panels)
            page.screenshot(path=str(tmp_path / "chart.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    assert (tmp_path / "chart.png").stat().st_size > 1000


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
        data = vault.index.path / "data.mdb"
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
