"""Perceptual hashes: their measured quality on a generated set, their properties, their store
(cache/hashes.sqlite), and where they are made (import, sync, the backfill, after a kill -9),
dropped (forget) and sealed again (key rotate)."""

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

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mjvault import Vault
from mjvault.errors import UsageError
from mjvault.similarity import hashing
from mjvault.similarity.hashing import (
    DEFAULT_LEVEL,
    HASH_BYTES,
    LEVELS,
    WORDS,
    distances,
    hashes_of_bytes,
    hashes_of_image,
    is_grid,
    parse_level,
    to_bytes,
    to_words,
)
from mjvault.similarity.store import BLOCK_ROWS, FILE, HashStore
from mjvault.sources.importer import import_archive
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.store.crypto import VaultKeys
from mjvault.sync import SyncOptions, sync
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.imageset import grid_of, quality, source_image, variants
from mjvault.testing.server import FakeMidjourney
from mjvault.thumbnails import backfill, head_images
from tests.conftest import CHEAP_KDF, PASSPHRASE, run_cli
from tests.test_sync import TOKEN, settings_for

JOBS = 12


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive") / "mj"
    write_sample_archive(root, jobs=JOBS, seed=7)
    return root


def _decodable(vault: Vault) -> set[str]:
    return {i for i in set(head_images(vault)) if hashes_of_bytes(vault.read_object(i))}


# -- quality -----------------------------------------------------------------------------------


def test_the_default_level_finds_the_variants_and_no_stranger() -> None:
    """The issue's goal on a small generated set: recall >= 0.95 at precision >= 0.99."""
    sources: list[int] = []
    originals: list[bool] = []
    hashes: list[bytes] = []
    for variant in variants(24, 192):
        whole = hashes_of_image(variant.image, grid=bool(variant.grid_part))
        hashes.append(whole[variant.grid_part])
        sources.append(variant.source)
        originals.append(variant.name == "original")
    q = quality(sources, originals, to_words(hashes))
    level = LEVELS[DEFAULT_LEVEL]
    assert q.total_positives == 24 * 15
    assert q.recall(level) >= 0.95, q.recall(level)
    assert q.precision(level) >= 0.99, q.precision(level)
    # The control: a level far too loose calls strangers alike, so the check can fail.
    assert q.precision(28) < 0.99


def test_a_grid_quadrant_matches_its_upscaled_tile() -> None:
    tiles = [source_image(n, 256) for n in range(4)]
    parts = hashes_of_image(grid_of(tiles), grid=True)
    assert len(parts) == 5
    for n, tile in enumerate(tiles):
        upscaled = hashes_of_image(tile.resize((512, 512), Image.Resampling.LANCZOS), grid=False)
        d = distances(to_words(parts[1:]), to_words(upscaled)[0])
        assert int(d.argmin()) == n and d[n] <= LEVELS[DEFAULT_LEVEL]


def test_the_hash_is_imagehashs_phash_bit_for_bit() -> None:
    imagehash = pytest.importorskip("imagehash")
    for seed in range(6):
        image = source_image(seed, 200)
        theirs = np.packbits(imagehash.phash(image).hash.ravel()).tobytes()
        assert hashes_of_image(image, grid=False) == [theirs]


def test_levels_parse_and_refuse_in_one_line() -> None:
    assert parse_level("high") == LEVELS["high"] and parse_level(" Exact ") == 0
    assert parse_level("12") == 12
    assert parse_level(str(hashing.MAX_LEVEL)) == hashing.MAX_LEVEL
    for bad in ("loose", "-1", "65", "", "²", "1²", "٣", "64", str(hashing.MAX_LEVEL + 1)):
        with pytest.raises(UsageError) as caught:
            parse_level(bad)
        assert "\n" not in str(caught.value)
    assert DEFAULT_LEVEL in LEVELS and WORDS == hashing.HASH_BITS // 64


def test_what_is_a_grid() -> None:
    assert is_grid(["grid"], 1) and is_grid(["diffusion"], 1) and is_grid(["v6_diffusion"], 1)
    assert not is_grid(["grid"], 4)  # four pictures held apart
    assert not is_grid(["upscale"], 1) and not is_grid(["video_diffusion"], 1)


def test_what_pillow_cannot_read_has_no_hash() -> None:
    assert hashes_of_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64)) is None
    assert hashes_of_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40)) is None


# -- properties --------------------------------------------------------------------------------


@st.composite
def _encoded(draw: st.DrawFn) -> bytes:
    side = draw(st.integers(8, 160)), draw(st.integers(8, 160))
    seed = draw(st.integers(0, 2**32 - 1))
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "P"]))
    fmt = draw(st.sampled_from(["PNG", "WEBP", "JPEG"]))
    pixels = np.random.default_rng(seed).integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if fmt != "JPEG" or mode in ("RGB", "L"):
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_encoded(), st.booleans())
def test_an_exact_copy_hashes_the_same(data: bytes, grid: bool) -> None:
    first = hashes_of_bytes(data, grid=grid)
    assert first is not None and len(first) == (5 if grid else 1)
    assert all(len(h) == HASH_BYTES for h in first)
    assert hashes_of_bytes(bytes(bytearray(data)), grid=grid) == first


_hash = st.binary(min_size=HASH_BYTES, max_size=HASH_BYTES)


@given(st.lists(_hash, min_size=1, max_size=20), _hash)
def test_distance_is_symmetric_and_counts_bits(hashes: list[bytes], other: bytes) -> None:
    words = to_words(hashes)
    assert words.shape == (len(hashes), WORDS) and words.dtype == np.uint64
    assert to_bytes(words) == hashes
    one = to_words([other])[0]
    forth = distances(words, one)
    for n, h in enumerate(hashes):
        assert distances(to_words([other]), words[n])[0] == forth[n]
        expected = bin(int.from_bytes(h, "big") ^ int.from_bytes(other, "big")).count("1")
        assert forth[n] == expected
    assert (distances(words, words[0])[0]) == 0


# -- the store ---------------------------------------------------------------------------------


def _oid(n: int) -> str:
    return f"{n:064x}"


_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "remove", "commit"]),
        st.integers(0, 40),
        st.lists(_hash, min_size=1, max_size=5),
    ),
    max_size=30,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops, st.booleans(), st.integers(1, 7))
def test_put_remove_and_blocks_round_trip(
    tmp_path_factory: pytest.TempPathFactory, ops: list, sealed: bool, rows: int
) -> None:
    path = tmp_path_factory.mktemp("hs") / "hashes.sqlite"
    keys = VaultKeys(b"\x07" * 64) if sealed else None
    model: dict[str, list[bytes]] = {}
    with HashStore(path, keys, True) as store:
        for op, n, hashes in ops:
            if op == "put":
                store.put(_oid(n), hashes)
                model[_oid(n)] = hashes
            elif op == "remove":
                assert store.remove([_oid(n)]) == (1 if _oid(n) in model else 0)
                model.pop(_oid(n), None)
            else:
                store.commit()
    with HashStore(path, keys, False) as store:
        assert len(store) == sum(len(h) for h in model.values())
        seen: dict[str, dict[int, bytes]] = {}
        expected_start = 0
        for block in store.blocks(rows):
            assert block.start == expected_start and len(block.parts) <= rows
            expected_start += len(block.parts)
            ids = block.images()
            located = store.locate(range(block.start, block.start + len(ids)))
            assert located == list(zip(ids, block.parts.tolist(), strict=True))
            for oid, part, value in zip(ids, block.parts, to_bytes(block.words), strict=True):
                seen.setdefault(oid, {})[int(part)] = value
        assert {k: [v[p] for p in sorted(v)] for k, v in seen.items()} == model
        for oid, hashes in model.items():
            assert store.hashes_of(oid) == hashes
        assert store.hashes_of(_oid(99)) is None


def test_many_rows_fill_blocks_and_a_wrong_key_shows_none(tmp_path: Path) -> None:
    keys = VaultKeys(b"\x01" * 64)
    path = tmp_path / "hashes.sqlite"
    with HashStore(path, keys, True) as store:
        for n in range(BLOCK_ROWS + 10):
            store.put(_oid(n), [n.to_bytes(HASH_BYTES, "big")])
    with HashStore(path, keys, False) as store:
        sizes = [len(b.parts) for b in store.blocks()]
        assert sizes == [BLOCK_ROWS, 10]
        assert store.hashes_of(_oid(5)) == [(5).to_bytes(HASH_BYTES, "big")]
    # Under another key (a plain vault's reader too) the hashes are stale: none shown, and a
    # writer starts again rather than mixing keys.
    for other in (VaultKeys(b"\x02" * 64), None):
        with HashStore(path, other, False) as store:
            assert len(store) == 0 and store.hashes_of(_oid(5)) is None
            assert list(store.blocks()) == []
    with HashStore(path, None, True) as store:
        assert len(store) == 0


def test_another_algorithm_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite"
    with HashStore(path, None, True) as store:
        store.put(_oid(1), [bytes(HASH_BYTES)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'algorithm'", (b"dhash64/1",))
    with HashStore(path, None, False) as store:
        assert len(store) == 0
    with HashStore(path, None, True) as store:
        assert len(store) == 0 and store.hashes_of(_oid(1)) is None


# -- where they are made -----------------------------------------------------------------------


def test_import_hashes_every_image(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnail_wait=None)
    images = _decodable(vault)
    assert images
    with HashStore.open(vault) as store:
        for image in images:
            assert store.hashes_of(image) == hashes_of_bytes(vault.read_object(image))
    again = backfill(vault, [])
    assert again.hashed == 0 and again.hashes_cached > 0
    vault.close()


def test_sync_hashes_the_new_images_and_a_grid_gets_its_quadrants(tmp_path: Path) -> None:
    account = Account.generate(11, 10)
    Vault.init(tmp_path / "vault").close()
    vault = Vault.open(tmp_path / "vault")
    with (
        FakeMidjourney(account, token=TOKEN) as server,
        MidjourneyClient(settings_for(server)) as client,
    ):
        sync(vault, client, SyncOptions(concurrency=4, thumbnail_wait=None))
    images = _decodable(vault)
    with HashStore.open(vault) as store:
        assert {i for i in images if store.hashes_of(i)} == images
    # A job whose one image is a grid: its quadrants hashed too, by the writer's feed.
    grid = grid_of([source_image(n, 128) for n in range(4)])
    out = io.BytesIO()
    grid.save(out, "PNG")
    with vault.writer("test", thumbnails=True, thumbnail_wait=None) as writer:
        image = writer.put_media(out.getvalue())
        writer.add_job(b'{"id": "grid-1", "type": "grid", "full_command": "x"}', [image])
    # A variation whose job_type names a diffusion: its type says it is not a grid (FORMAT
    # §7.3, and the index the backfill reads keeps the type alone).
    other = grid_of([source_image(n, 128) for n in range(4, 8)])
    out = io.BytesIO()
    other.save(out, "PNG")
    with vault.writer("test", thumbnails=True, thumbnail_wait=None) as writer:
        varied = writer.put_media(out.getvalue())
        writer.add_job(
            b'{"id": "var-1", "type": "variation", "job_type": "v6_diffusion", "full_command": "x"}',
            [varied],
        )
    with HashStore.open(vault) as store:
        assert store.hashes_of(image) == hashes_of_image(grid, grid=True)
        synced = {i: store.hashes_of(i) for i in _decodable(vault)}
    assert len(synced[varied] or []) == 1
    # The backfill of the same vault makes the same hashes, grid or not.
    for suffix in ("", "-wal", "-shm"):
        (vault.path / f"{FILE}{suffix}").unlink(missing_ok=True)
    backfill(vault, [])
    with HashStore.open(vault) as store:
        assert {i: store.hashes_of(i) for i in synced} == synced
    vault.close()


def test_hashes_only_backfill_after_an_import_without_them(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    vault.close()
    done = run_cli("--vault", str(tmp_path / "vault"), "--json", "thumbs", "--hashes-only")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hashes"]["made"] > 0 and report["made"] == 0 and report["sizes"] == {}
    vault = Vault.open(tmp_path / "vault")
    assert not (vault.path / "cache" / "thumbs.sqlite").exists() or not any(
        sqlite3.connect(vault.path / "cache" / "thumbs.sqlite").execute(
            "SELECT 1 FROM thumbs WHERE thumb != ''"
        )
    )
    with HashStore.open(vault) as store:
        assert {i for i in _decodable(vault) if store.hashes_of(i)} == _decodable(vault)
    vault.close()


def test_hashes_only_reads_a_video_once_not_every_run(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without thumbnail rows, a video (or an image Pillow cannot read) gets the "not an
    image" mark from the first hashes-only backfill: the next one does not read it again."""
    from mjvault.thumbnails import Maker

    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    with vault.writer("test", thumbnails=False) as writer:
        clip = writer.put_media(b"\x00\x00\x00\x18ftypmp42 not a picture")
        writer.add_job(b'{"id": "clip-1", "type": "video", "full_command": "x"}', [clip])
    made: list[str] = []
    real = Maker._make

    def counted(self: Maker, object_id: str, *args: object) -> object:
        made.append(object_id)
        return real(self, object_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Maker, "_make", counted)
    first = backfill(vault, [])
    assert clip in made
    made.clear()
    again = backfill(vault, [])
    assert made == [] and again.hashed == 0
    assert first.not_images >= 1
    vault.close()


def _hashed(path: Path) -> int:
    if not (path / FILE).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path / FILE}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_backfill_resumes_after_kill_9(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnails=False)
    total = len(_decodable(vault))
    vault.close()
    script = (
        "import sys, time, mjvault.thumbnails as t\n"
        "from mjvault import Vault\n"
        "t.FLUSH_EVERY = 1\n"
        "made = t.thumbnails_and_hashes\n"
        "t.thumbnails_and_hashes = lambda *a, **k: (time.sleep(0.05), made(*a, **k))[1]\n"
        "v = Vault.open(sys.argv[1])\n"
        "t.backfill(v, [], workers=1)\n"
        "print('finished', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "vault")], stdout=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _hashed(tmp_path / "vault") < 3:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = _hashed(tmp_path / "vault")
    assert 0 < kept < total, "the kill came too late to test a resume"
    vault = Vault.open(tmp_path / "vault")
    report = backfill(vault, [])
    assert report.hashed == total - kept
    with HashStore.open(vault) as store:
        assert len(store) == total
    vault.close()


# -- sealed, forgotten, rotated ----------------------------------------------------------------


def test_an_encrypted_vault_keeps_no_hash_readable(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    import_archive(vault, archive, thumbnail_wait=None)
    needles = set()
    with HashStore.open(vault) as store:
        for image in _decodable(vault):
            found = store.hashes_of(image)
            assert found == hashes_of_bytes(vault.read_object(image))
            needles.update(found)
    assert needles
    cache = (vault.path / "cache").iterdir()
    for path in cache:
        data = path.read_bytes()
        assert not [n for n in needles if n in data], path
    vault.close()


def test_forget_drops_the_images_hashes(tmp_path: Path, archive: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnail_wait=None)
    # A job whose hashed images no other job shows: forgetting it must drop their hashes.
    entry = next(
        e
        for e in vault.entries()
        if any(i and _decodable_one(vault, i) for i in e.images)
        and all(i is None or len(vault.current_index().jobs_with_image(i)) == 1 for i in e.images)
    )
    gone = [i for i in entry.images if i is not None and _decodable_one(vault, i)]
    with HashStore.open(vault) as store:
        assert all(store.hashes_of(i) for i in gone)
    vault.close()
    done = run_cli("--vault", str(tmp_path / "vault"), "forget", "--job", entry.job_id)
    assert done.returncode == 0, done.stderr
    vault = Vault.open(tmp_path / "vault")
    still = set(head_images(vault))
    assert gone and not set(gone) & still
    with HashStore.open(vault) as store:
        for image in gone:
            assert store.hashes_of(image) is None
        assert all(store.hashes_of(i) for i in _decodable(vault) - set(gone))
    vault.close()


def _decodable_one(vault: Vault, image: str) -> bool:
    return hashes_of_bytes(vault.read_object(image)) is not None


def test_key_rotate_seals_the_hashes_again(tmp_path: Path, archive: Path) -> None:
    from mjvault.integrity.rotate import rotate

    root = tmp_path / "vault"
    vault = Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    import_archive(vault, archive, thumbnail_wait=None)
    before = {i: HashStore.open(vault).hashes_of(i) for i in _decodable(vault)}
    with sqlite3.connect(root / FILE) as db:
        old_bodies = {bytes(b) for (b,) in db.execute("SELECT body FROM blocks")}
    vault.close()
    rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    vault = Vault.open(root, passphrase=PASSPHRASE)
    with HashStore.open(vault) as store:
        assert {i: store.hashes_of(i) for i in before} == before
    with sqlite3.connect(root / FILE) as db:
        assert not old_bodies & {bytes(b) for (b,) in db.execute("SELECT body FROM blocks")}
    vault.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_encoded(), st.booleans())
def test_one_decode_makes_the_thumbnails_and_hashes_each_would_alone(
    data: bytes, grid: bool
) -> None:
    from mjvault.find.gallery.thumbs import make_thumbnails
    from mjvault.thumbnails import METHOD, thumbnails_and_hashes

    sizes = [256, 768]
    thumbs, hashes = thumbnails_and_hashes(data, sizes, grid=grid)
    assert thumbs == make_thumbnails(data, sizes, METHOD)
    assert hashes == hashes_of_bytes(data, grid=grid)


def test_gc_drops_the_hashes_of_the_images_it_removes(tmp_path: Path, archive: Path) -> None:
    from mjvault.integrity.gc import gc

    vault = Vault.init(tmp_path / "vault")
    import_archive(vault, archive, thumbnail_wait=None)
    kept = sorted(_decodable(vault))
    stray = io.BytesIO()
    source_image(99, 96).save(stray, "PNG")
    with vault.writer("test", thumbnails=False) as writer:
        orphan = writer.put_media(stray.getvalue())  # stored, named by no job
    with HashStore.open(vault, writable=True) as store:
        store.put(orphan, hashes_of_bytes(stray.getvalue()) or [])
    report = gc(vault, grace_seconds=0)
    assert orphan in report.removed_ids
    with HashStore.open(vault) as store:
        assert store.hashes_of(orphan) is None
        assert all(store.hashes_of(i) for i in kept)
    vault.close()
