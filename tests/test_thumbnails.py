"""Thumbnails made once per image: at import and sync, by a resumable backfill, kept by gc,
sealed in an encrypted vault, and the same bytes whenever made again."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mjvault import Vault
from mjvault.find.gallery.thumbs import CACHE_FILE, make_thumbnail, make_thumbnails
from mjvault.integrity.gc import gc
from mjvault.sources.importer import import_archive
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import SyncOptions, sync
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.images import make_png
from mjvault.testing.server import FakeMidjourney
from mjvault.thumbnails import METHOD, SIZES, backfill, head_images, lookup, parse_sizes, thumbnail
from tests.conftest import CHEAP_KDF, PASSPHRASE, run_cli
from tests.test_sync import TOKEN, settings_for

JOBS = 12


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive") / "mj"
    write_sample_archive(root, jobs=JOBS, seed=7)
    return root


def _rows(vault: Vault) -> list[tuple[str, int, str, str]]:
    with sqlite3.connect(vault.path / CACHE_FILE) as db:
        return sorted(db.execute("SELECT source, size, thumb, kind FROM thumbs"))


def _assert_every_image_has_both(vault: Vault) -> None:
    images = set(head_images(vault))
    assert images
    rows = _rows(vault)
    for pixels in SIZES.values():
        assert {s for s, size, _, _ in rows if size == pixels} >= images
    for source, size, thumb, _ in rows:
        data = vault.read_object(thumb)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "WEBP"
            assert max(image.size) <= size
        assert data == make_thumbnail(vault.read_object(source), size, METHOD)


def test_import_makes_both_sizes_of_every_image(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    report = import_archive(vault, archive, thumbnail_wait=None)
    assert report.stats.media_new > 0
    assert report.to_json()["thumbnails_made"] == 2 * len(set(head_images(vault)))
    _assert_every_image_has_both(vault)
    # A backfill afterwards finds nothing to make.
    again = backfill(vault, ["s", "m"])
    assert again.made == 0 and again.cached == again.images > 0
    vault.close()


def test_a_run_waits_little_and_the_backfill_makes_what_it_left(
    tmp_path: Path, archive: Path
) -> None:
    vault = Vault.init(tmp_path / "vault")
    report = import_archive(vault, archive, thumbnail_wait=0.0)  # no wait at the end
    images = set(head_images(vault))
    made, left = report.to_json()["thumbnails_made"], report.to_json()["thumbnails_left"]
    assert isinstance(made, int) and isinstance(left, int)
    assert made == 2 * (len(images) - left)
    rest = backfill(vault, ["s", "m"])
    assert rest.made == 2 * left
    _assert_every_image_has_both(vault)
    vault.close()


def test_import_without_thumbnails_then_backfill(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    assert not (vault.path / CACHE_FILE).exists() or not _rows(vault)
    report = backfill(vault, ["s"])
    assert report.made == len(set(head_images(vault)))
    assert {size for _, size, _, _ in _rows(vault)} == {SIZES["s"]}
    vault.close()


@pytest.fixture
def account() -> Account:
    return Account.generate(11, 10)


def test_sync_makes_thumbnails_of_the_new_images(tmp_path: Path, account: Account) -> None:
    Vault.init(tmp_path / "vault").close()
    vault = Vault.open(tmp_path / "vault")
    with (
        FakeMidjourney(account, token=TOKEN) as server,
        MidjourneyClient(settings_for(server)) as client,
    ):
        report = sync(vault, client, SyncOptions(concurrency=4, thumbnail_wait=None))
    assert report.jobs_new == len(account.jobs)
    # Videos get a row naming no thumbnail (never opened again); every image gets both.
    rows = _rows(vault)
    videos = {s for s, _, thumb, kind in rows if kind == "mp4"}
    assert all(thumb == "" for s, _, thumb, _ in rows if s in videos)
    images = set(head_images(vault)) - videos
    for pixels in SIZES.values():
        assert {s for s, size, t, _ in rows if size == pixels and t} == images
    assert report.thumbnails_made == 2 * len(images)
    vault.close()


def test_thumbnail_is_made_on_a_miss_and_kept(vault: Vault) -> None:
    with vault.writer("test", thumbnails=False) as writer:
        image = writer.put_media(make_png(3, 640, 480))
        writer.add_job(json.dumps({"id": "job-1", "full_command": "x"}).encode(), [image])
    assert lookup(vault, image, "m") is None
    made = thumbnail(vault, image, "m")
    assert made is not None and made == make_thumbnail(vault.read_object(image), 768, METHOD)
    assert lookup(vault, image, "m") == made  # kept: the next request reads it
    assert thumbnail(vault, "0" * 64, "s") is None  # no such object
    with pytest.raises(Exception, match="size"):
        thumbnail(vault, image, "xl")


def test_gc_keeps_the_thumbnails_of_kept_images(vault: Vault) -> None:
    with vault.writer("test", thumbnails=True) as writer:
        image = writer.put_media(make_png(5, 300, 200))
        writer.add_job(json.dumps({"id": "job-1", "full_command": "x"}).encode(), [image])
    thumbs = {t for _, _, t, _ in _rows(vault)}
    assert len(thumbs) == 2
    report = gc(vault, grace_seconds=0)
    assert report.snapshots == 1
    for thumb in thumbs:
        assert vault.store.exists(thumb)
    # Forgotten, the job's thumbnails leave the table, and the next gc removes them.
    from mjvault.integrity.forget import forget_jobs

    forget_jobs(vault, ["job-1"])
    assert _rows(vault) == []
    gc(vault, grace_seconds=0)
    assert not any(vault.store.exists(t) for t in thumbs)


def test_gc_over_a_damaged_table_drops_the_thumbnails_and_they_are_made_again(
    vault: Vault,
) -> None:
    with vault.writer("test", thumbnails=True) as writer:
        image = writer.put_media(make_png(6, 300, 200))
        writer.add_job(json.dumps({"id": "job-1", "full_command": "x"}).encode(), [image])
    thumbs = {t for _, _, t, _ in _rows(vault)}
    table = vault.path / "cache" / "thumbs.sqlite"
    table.write_bytes(b"not a table" * 100)
    gc(vault, grace_seconds=0)  # no traceback: a lost cache
    assert not any(vault.store.exists(t) for t in thumbs)
    assert vault.store.exists(image)
    assert thumbnail(vault, image, "s") is not None


def test_encrypted_thumbnails_are_sealed_objects(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    import_archive(vault, archive, thumbnail_wait=None)
    _assert_every_image_has_both(vault)
    for _, _, thumb, _ in _rows(vault):
        with open(vault.object_path(thumb), "rb") as handle:
            assert handle.read(4) == b"MJVE"
    # No WebP (nor any image) lies in the clear anywhere under the vault.
    for folder, _, files in os.walk(vault.path):
        for name in files:
            data = Path(folder, name).read_bytes()
            assert b"WEBPVP8" not in data, Path(folder, name)
    vault.close()


def test_backfill_resumes_after_kill_9(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    total = len(set(head_images(vault))) * 2
    vault.close()
    # The child makes thumbnails one at a time and publishes each: killed partway, what it
    # published is kept and the rest is made by the next run, none twice.
    script = (
        "import sys, time, mjvault.thumbnails as t\n"
        "from mjvault import Vault\n"
        "t.FLUSH_EVERY = 1\n"
        "made = t.make_thumbnails\n"
        "t.make_thumbnails = lambda *a: (time.sleep(0.05), made(*a))[1]  # a kill finds it busy\n"
        "v = Vault.open(sys.argv[1])\n"
        "t.backfill(v, ['s', 'm'], lambda done, _: print(done, flush=True), workers=1)\n"
        "print('finished', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "vault")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        vault = Vault.open(tmp_path / "vault")
        done = len(_rows(vault)) if (vault.path / CACHE_FILE).exists() else 0
        vault.close()
        if done >= 4:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    vault = Vault.open(tmp_path / "vault")
    kept = len(_rows(vault))
    assert 0 < kept < total, "the kill came too late to test a resume"
    report = backfill(vault, ["s", "m"])
    assert report.made == total - kept
    _assert_every_image_has_both(vault)
    vault.close()


def test_cli_thumbs_json(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    vault.close()
    done = run_cli("--vault", str(tmp_path / "vault"), "--json", "thumbs", "--size", "s")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["made"] > 0 and report["sizes"] == {"s": 256}
    bad = run_cli("--vault", str(tmp_path / "vault"), "thumbs", "--size", "xl")
    assert bad.returncode != 0 and len(bad.stderr.decode().strip().splitlines()) == 1
    assert parse_sizes("m, s") == ["m", "s"]


@st.composite
def _images(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 900))
    height = draw(st.integers(1, 900))
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "P"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "WEBP"]))
    if fmt == "JPEG" and mode in ("RGBA", "P"):
        mode = "RGB"
    seed = draw(st.integers(0, 255))
    image = Image.new(mode, (width, height), seed)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_images(), st.sampled_from(sorted(SIZES.values())))
def test_a_thumbnail_made_again_is_the_same(data: bytes, size: int) -> None:
    first = make_thumbnail(data, size, METHOD)
    assert first is not None
    assert make_thumbnail(data, size, METHOD) == first
    with Image.open(io.BytesIO(first)) as image:
        assert max(image.size) <= size


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_images())
def test_both_sizes_from_one_decode_equal_each_made_alone(data: bytes) -> None:
    sizes = sorted(SIZES.values())
    assert make_thumbnails(data, sizes, METHOD) == {
        size: make_thumbnail(data, size, METHOD) for size in sizes
    }


def test_a_full_feed_never_blocks_the_writer_and_counts_what_it_drops(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mjvault import thumbnails

    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    images = list(dict.fromkeys(head_images(vault)))
    assert len(images) > 8
    # The feed's maker held on its first image: every id handed over after it waits.
    release = threading.Event()
    real_add = thumbnails.Maker.add

    def held_add(self: thumbnails.Maker, object_id: str, wanted: list[int] | None = None) -> None:
        release.wait(30)
        real_add(self, object_id, wanted)

    monkeypatch.setattr(thumbnails.Maker, "add", held_add)
    with vault.write_lock():
        feed = thumbnails.Feed(vault, bound=5)
        feed.put(images[:1])
        deadline = time.monotonic() + 10
        while feed.queued:  # the thread took the first list and waits in add
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        for image in images[1:]:
            feed.put([image])
        assert time.monotonic() - started < 1.0  # never waited for the maker
        assert feed.queued == 5  # the bound
        assert feed.dropped == len(images) - 1 - 5
        release.set()
        feed.finish()
    made = feed.report.made
    assert made == 2 * 6  # the first image and the five the queue held
    assert feed.left == len(images) - 6  # the dropped ones: `mjvault thumbs` makes them
    rest = backfill(vault, ["s", "m"])
    assert rest.made == 2 * feed.left
    _assert_every_image_has_both(vault)
    vault.close()


def test_a_writer_waits_for_a_brief_holder_and_refuses_any_other(vault: Vault) -> None:
    import threading

    from mjvault.errors import VaultLocked
    from mjvault.lock import WriteLock, read_holder

    taken = threading.Event()

    def hold(seconds: float, brief: bool) -> None:
        with WriteLock(vault.path, brief=brief):
            taken.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold, args=(0.4, True))
    holder.start()
    assert taken.wait(10)
    assert read_holder(vault.path / "lock") is not None
    started = time.monotonic()
    with vault.writer("test", thumbnails=False) as writer:  # waits rather than refusing
        writer.add_job(json.dumps({"id": "job-1", "full_command": "x"}).encode(), [])
    assert time.monotonic() - started >= 0.2
    holder.join()
    # Any other holder is refused at once, as before; a brief one only for a bounded moment.
    for brief, wait in ((False, 5.0), (True, 0.2)):
        taken.clear()
        holder = threading.Thread(target=hold, args=(1.5, brief))
        holder.start()
        assert taken.wait(10)
        started = time.monotonic()
        with pytest.raises(VaultLocked):
            WriteLock(vault.path, wait=wait).acquire()
        assert time.monotonic() - started < (0.1 if not brief else 1.0)
        holder.join()


def test_a_sync_started_while_the_server_keeps_thumbnails_succeeds(
    tmp_path: Path, archive: Path, account: Account
) -> None:
    import threading

    root = tmp_path / "vault"
    first = Vault.init(root)
    import_archive(first, archive, thumbnails=False)
    first.close()
    server_vault = Vault.open(root)  # the web server's shared handle
    images = list(dict.fromkeys(head_images(server_vault)))
    stop = threading.Event()
    kept = []

    def serve_thumbnails() -> None:
        # Every request a miss (the rows dropped each round): each one takes the lock.
        while not stop.is_set():
            for image in images:
                if stop.is_set():
                    break
                if thumbnail(server_vault, image, "s") is not None:
                    kept.append(image)
            with sqlite3.connect(root / CACHE_FILE) as db:
                db.execute("DELETE FROM thumbs")

    thread = threading.Thread(target=serve_thumbnails)
    thread.start()
    try:
        with (
            FakeMidjourney(account, token=TOKEN) as server,
            MidjourneyClient(settings_for(server)) as client,
        ):
            for _ in range(6):
                vault = Vault.open(root)
                try:
                    sync(vault, client, SyncOptions(concurrency=2, thumbnails=False))
                finally:
                    vault.close()
    finally:
        stop.set()
        thread.join(30)
        server_vault.close()
    assert kept  # thumbnails were being made and kept all along


def test_a_thumbnail_made_while_its_job_is_forgotten_is_not_kept(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mjvault.thumbnails as thumbnails
    from mjvault.integrity.forget import forget_jobs

    with vault.writer("test", thumbnails=False) as writer:
        image = writer.put_media(make_png(7, 300, 200))
        writer.add_job(json.dumps({"id": "job-1", "full_command": "x"}).encode(), [image])
        other = writer.put_media(make_png(8, 300, 200))
        writer.add_job(json.dumps({"id": "job-2", "full_command": "y"}).encode(), [other])
    real = thumbnails.make_thumbnail

    def forgotten_while_made(data: bytes, pixels: int, method: int) -> bytes | None:
        forget_jobs(vault, ["job-1"])  # another request's forget, between lookup and keeping
        return real(data, pixels, method)

    def named(object_id: str) -> bool:
        with vault.current_index().reader() as reader:
            return bool(reader.is_image(object_id))

    monkeypatch.setattr(thumbnails, "make_thumbnail", forgotten_while_made)
    made = thumbnail(vault, image, "s", still_named=lambda: named(image))
    assert made is not None  # the request is answered
    assert lookup(vault, image, "s") is None and _rows(vault) == []  # but nothing is kept
    monkeypatch.setattr(thumbnails, "make_thumbnail", real)
    assert thumbnail(vault, other, "s", still_named=lambda: named(other)) is not None
    assert lookup(vault, other, "s") is not None  # a job still names it: kept


@pytest.mark.parametrize("how", ["cancel", "wait"])
def test_a_stopped_feed_abandons_the_image_in_flight(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A Ctrl-C (cancel) or the end of a run's wait share never waits for the image the feed's
    low-priority worker is making: on a busy machine that took over a minute."""
    import threading

    from mjvault import thumbnails

    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    images = list(dict.fromkeys(head_images(vault)))
    making = threading.Event()
    release = threading.Event()
    real_make = thumbnails.Maker._make

    def held_make(
        self: thumbnails.Maker, object_id: str, sizes: list[int], grid: bool, hash_it: bool
    ) -> thumbnails.Made:
        making.set()
        release.wait(60)  # an image that takes "forever" at the worker's priority
        return real_make(self, object_id, sizes, grid, hash_it)

    monkeypatch.setattr(thumbnails.Maker, "_make", held_make)
    try:
        with vault.write_lock():
            feed = thumbnails.Feed(vault)
            feed.put(images[:3])
            assert making.wait(10)
            kwargs = {"cancel": True} if how == "cancel" else {"wait": 0.1}
            finisher = threading.Thread(target=feed.finish, kwargs=kwargs)
            finisher.start()
            finisher.join(20)
            # Returned while the image is still being made: it was abandoned.
            assert not finisher.is_alive(), "the stop waited for the image in flight"
            assert not release.is_set()
        assert feed.report.made == 0
        assert feed.left == 3  # left to `mjvault thumbs`
        assert _rows(vault) == []
    finally:
        release.set()
    assert backfill(vault, ["s", "m"]).made == 2 * len(images)
    _assert_every_image_has_both(vault)
    vault.close()


FEED_IMPORTS = """
import sys, threading
from pathlib import Path

loaded = []


class Spy:  # asked only for modules not imported yet
    def find_spec(self, name, path=None, target=None):
        loaded.append((threading.current_thread().name, name))


sys.meta_path.insert(0, Spy())
from mjvault import Vault
from mjvault.sources.importer import import_archive

vault = Vault.init(Path(sys.argv[1]))
import_archive(vault, Path(sys.argv[2]), thumbnails=True)
vault.close()
print(sorted({name for thread, name in loaded if thread == "mjvault-thumbs"}))
"""


def test_the_feeds_thread_imports_nothing(tmp_path: Path, archive: Path) -> None:
    """The writer imports what its feed needs before starting it: a Ctrl-C in an import the
    two threads share can leave the module's import lock held, and the writer's stop joins
    the feed's thread (a fresh interpreter: here, everything is imported already)."""
    done = subprocess.run(
        [sys.executable, "-c", FEED_IMPORTS, str(tmp_path / "vault"), str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("cancel", [False, True])
def test_a_feed_that_cannot_hash_says_so_once_and_not_over_a_stopping_writer(
    tmp_path: Path, archive: Path, caplog: pytest.LogCaptureFixture, cancel: bool
) -> None:
    """A writer that stops (a full disk, say) prints its own one line; the feed's note that
    it could not hash is then for --verbose only, or the error would be two lines."""
    import logging

    from mjvault import thumbnails
    from mjvault.similarity.store import FILE as HASHES_FILE

    init_path = tmp_path / "v"
    run_cli("init", str(init_path))
    vault = Vault.open(init_path)
    import_archive(vault, archive, thumbnails=False)
    (init_path / HASHES_FILE).mkdir(parents=True)  # the store cannot be opened
    caplog.set_level(logging.DEBUG, logger="mjvault")
    with vault.write_lock():
        feed = thumbnails.Feed(vault)
        feed.put(list(dict.fromkeys(head_images(vault)))[:2])
        feed.finish(cancel=cancel)
    vault.close()
    notes = [r for r in caplog.records if "perceptual hashes not made" in r.getMessage()]
    assert len(notes) == 1, notes
    assert notes[0].levelno == (logging.DEBUG if cancel else logging.WARNING)
