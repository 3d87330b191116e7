"""`mjvault similar` and `mjvault dupes`: nearest images by hash distance and near-duplicate
groups, against brute force on random hashes and end to end on a real vault and hash store."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import MjvaultError
from mjvault.similarity.groups import find_groups, near_pairs, plan_for, row_components
from mjvault.similarity.hashing import HASH_BYTES, hashes_of_bytes, to_bytes, to_words
from mjvault.similarity.nearest import TIE_ROOM, job_of_image, nearest, scan, similar_to
from mjvault.similarity.store import HashStore
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive
from mjvault.thumbnails import head_images
from tests.conftest import Result, invoke_cli

# -- on arrays: against brute force --------------------------------------------------------


@dataclass
class ArrayBlock:
    start: int
    words: np.ndarray
    parts: np.ndarray


def blocks_of(words: np.ndarray, size: int) -> Iterator[ArrayBlock]:
    for start in range(0, len(words), size):
        chunk = words[start : start + size]
        yield ArrayBlock(start, chunk, np.zeros(len(chunk), np.uint8))


def brute_distances(words: np.ndarray, one: np.ndarray) -> np.ndarray:
    return np.array(
        [
            sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(row, one, strict=True))
            for row in words
        ]
    )


def planted(seed: int, rows: int, width: int, spread: int) -> np.ndarray:
    """Random hashes, every fifth followed by copies a few bits away (near pairs to find)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64 - 1, size=(rows, width), dtype=np.uint64, endpoint=True)
    for source in range(0, rows - 2, 5):
        for copy in (1, 2):
            words[source + copy] = words[source]
            for _ in range(int(rng.integers(0, spread + 1))):
                bit = int(rng.integers(0, 64 * width))
                words[source + copy, bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return words


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 300),
    width=st.sampled_from([1, 4]),
    keep=st.integers(1, 30),
    block=st.integers(1, 64),
)
def test_nearest_equals_a_brute_force_sort(
    seed: int, rows: int, width: int, keep: int, block: int
) -> None:
    words = planted(seed, rows, width, 6)
    one = words[seed % rows]
    found = scan(blocks_of(words, block), one, keep)
    truth = sorted((int(d), row) for row, d in enumerate(brute_distances(words, one)))
    wanted = min(keep, rows)
    assert [(d, r) for r, d in found[:wanted]] == truth[:wanted]
    # Every row tied with the last kept one is kept too (room allowing), never a farther one.
    cut = truth[wanted - 1][0]
    assert all(d <= cut for _, d in found)
    ties = sum(1 for d, _ in truth if d <= cut)
    assert len(found) >= min(ties, wanted + TIE_ROOM)


def test_nearest_within_a_distance_keeps_nothing_farther() -> None:
    words = planted(3, 500, 1, 4)
    one = words[0]
    found = scan(blocks_of(words, 37), one, 100, max_distance=4)
    truth = sorted((int(d), r) for r, d in enumerate(brute_distances(words, one)) if d <= 4)
    assert [(d, r) for r, d in found] == truth
    assert found[0] == (0, 0)


def brute_components(words: np.ndarray, parts: np.ndarray, level: int) -> set[frozenset[int]]:
    parent = list(range(len(words)))

    def root(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if parts[i] and parts[j]:
                continue
            if (
                sum(
                    bin(int(a) ^ int(b)).count("1") for a, b in zip(words[i], words[j], strict=True)
                )
                <= level
            ):
                parent[root(j)] = root(i)
    groups: dict[int, set[int]] = {}
    for x in range(len(words)):
        groups.setdefault(root(x), set()).add(x)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 120),
    width=st.sampled_from([1, 4]),
    level=st.integers(0, 20),
    quadrants=st.booleans(),
)
def test_groups_equal_a_brute_force_union_find(
    seed: int, rows: int, width: int, level: int, quadrants: bool
) -> None:
    words = planted(seed, rows, width, level // 2 + 2)
    rng = np.random.default_rng(seed)
    parts = (
        rng.integers(0, 5, size=rows).astype(np.uint8) if quadrants else np.zeros(rows, np.uint8)
    )
    found = {frozenset(c.tolist()) for c in row_components(words, parts, level)}
    assert found == brute_components(words, parts, level)


def test_pairs_are_exact_at_the_default_plan_for_a_million_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan chosen for a large store (few, wide blocks, radius > 0) still finds every
    pair: the same cut applied to a small set, against brute force."""
    plan = plan_for(1, 8, 1_000_000)
    assert plan.radius > 0
    words = planted(11, 400, 1, 6)
    parts = np.zeros(len(words), np.uint8)
    monkeypatch.setattr("mjvault.similarity.groups.plan_for", lambda *_: plan)
    got = {
        (int(a), int(b)) for i, j in near_pairs(words, parts, 8) for a, b in zip(i, j, strict=True)
    }
    truth = {
        (i, j)
        for i in range(len(words))
        for j in range(i + 1, len(words))
        if bin(int(words[i, 0]) ^ int(words[j, 0])).count("1") <= 8
    }
    assert got == truth and truth


# -- a real vault and hash store -------------------------------------------------------------


@pytest.fixture(scope="module")
def hashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A vault of a small archive whose images are all hashed; its image ids, sorted."""
    root = tmp_path_factory.mktemp("similar")
    write_sample_archive(root / "mj", jobs=6, seed=5)
    with Vault.init(root / "vault") as vault:
        import_archive(vault, root / "mj", thumbnails=False)
        images = sorted(set(head_images(vault)))
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            for object_id in images:
                hashes = hashes_of_bytes(vault.read_object(object_id))
                assert hashes is not None
                store.put(object_id, hashes)
    yield root / "vault", images


def flipped(hash_: bytes, bits: int) -> bytes:
    value = int.from_bytes(hash_, "big")
    for bit in range(bits):
        value ^= 1 << (bit * 7 % (8 * HASH_BYTES))
    return value.to_bytes(HASH_BYTES, "big")


def test_an_image_of_the_vault_is_its_own_nearest(hashed: tuple[Path, list[str]]) -> None:
    path, images = hashed
    with Vault.open(path) as vault:
        for entry in list(vault.entries())[:3]:
            target = next(i for i in entry.images if i is not None)
            position = entry.images.index(target)
            hits = similar_to(vault, f"{entry.job_id[:8]}:{position}", limit=5)
            assert hits[0].object_id == target and hits[0].distance == 0
            assert hits[0].job_id == entry.job_id and hits[0].index == position
            assert [h.distance for h in hits] == sorted(h.distance for h in hits)
            assert len({h.object_id for h in hits}) == len(hits)


def test_a_file_finds_its_copy_in_the_vault(hashed: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, images = hashed
    with Vault.open(path) as vault:
        picture = tmp_path / "copy.png"
        picture.write_bytes(vault.read_object(images[2]))
        hits = similar_to(vault, str(picture), limit=3)
        assert hits[0].object_id == images[2] and hits[0].distance == 0
        named = tmp_path / "shot 12:30.png"  # a ':' in a file's name is not JOB:INDEX
        named.write_bytes(vault.read_object(images[3]))
        hits = similar_to(vault, str(named), limit=3)
    assert hits[0].object_id == images[3] and hits[0].distance == 0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)

    def invoke(vault: Path, *args: str) -> tuple[int, str, str]:
        ran = Result.of(invoke_cli(["--vault", str(vault), *args]))
        return ran.code, ran.out, ran.err

    return invoke


def test_similar_on_the_command_line(hashed: tuple[Path, list[str]], cli) -> None:  # type: ignore[no-untyped-def]
    path, images = hashed
    with Vault.open(path) as vault:
        entry = next(iter(vault.entries()))
    code, out, err = cli(path, "similar", entry.job_id, "-n", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["0", entry.job_id, "0"]
    code, out, _ = cli(path, "similar", entry.job_id, "-n", "2", "--json")
    doc = json.loads(out)
    assert doc["images"][0]["object_id"] == entry.images[0] and len(doc["images"]) == 2
    for index in ("²", "x"):
        code, out, err = cli(path, "similar", f"{entry.job_id}:{index}")
        assert code != 0 and len(err.strip().splitlines()) == 1 and "INDEX" in err
    code, out, err = cli(path, "dupes", "--level", "²")
    assert code != 0 and len(err.strip().splitlines()) == 1
    code, out, err = cli(path, "similar", "zzzzzzzz")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "zzzzzzzz" in err
    code, out, err = cli(path, "similar", str(path / "config.toml"))
    assert code != 0 and len(err.strip().splitlines()) == 1


def test_dupes_groups_near_copies_and_a_grid_quadrant(
    tmp_path: Path,
    hashed: tuple[Path, list[str]],
    cli,  # type: ignore[no-untyped-def]
) -> None:
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    a, b, c, d = images[:4]
    with Vault.open(path) as vault:
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            whole = store.hashes_of(a)
            assert whole
            store.put(b, [flipped(whole[0], 3)])  # a near copy of a
            other = flipped(whole[0], 40)  # far from a: c joins only through a quadrant
            apart = bytes(x ^ 0xFF for x in whole[0])  # 64 bits from a, 24 from other
            store.put(c, [other, flipped(whole[0], 2), apart, apart, apart])
            # d's quadrants near c's quadrants alone: not a copy of anything
            store.put(d, [bytes(x ^ 0x0F for x in whole[0]), apart, apart, apart, apart])
        groups = list(find_groups(vault, level=8))
    assert [sorted(m.object_id for m in g.members) for g in groups] == [sorted([a, b, c])]
    group = groups[0]
    assert group.best is group.members[0] and group.best.distance == 0
    ranks = [(-m.pixels, not m.upscaled) for m in group.members]
    assert ranks == sorted(ranks)
    assert group.distance == max(m.distance for m in group.members) <= 8
    # A query keeps the images of the jobs it matches, and only those.
    with Vault.open(path) as vault:
        for word in sorted({w for m in group.members for w in _prompt_words(vault, m.job_id)}):
            matching = set(vault.current_index().search(words=[word]))
            shown = {
                i
                for j in matching
                for i in (vault.current_index().get(j).images or ())
                if i is not None
            }
            wanted = {a, b, c} & shown
            got = [
                sorted(m.object_id for m in g.members)
                for g in find_groups(vault, level=8, query=word)
            ]
            assert got == ([sorted(wanted)] if len(wanted) > 1 else []), word

    code, out, err = cli(path, "dupes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["total"] == 1 and doc["groups"][0]["best"] == group.best.object_id
    # The shape of GET /api/dupes: its keys, and each member's job date and prompt.
    assert {"levels", "default_level", "hashed", "query", "images"} <= set(doc)
    assert doc["hashed"] > 0 and doc["query"] == ""
    assert all("time" in m and "prompt" in m for m in doc["groups"][0]["members"])
    code, out, err = cli(path, "dupes", "--level", "exact", "--json")
    assert json.loads(out)["total"] == 0
    code, out, err = cli(path, "dupes", "--level", "nonsense")
    assert code != 0 and len(err.strip().splitlines()) == 1

    code, out, err = cli(path, "dupes", "--view", "dupes")
    assert code == 0, err
    assert "group 1: 3 images" in out and "view dupes" in err
    code, out, err = cli(path, "--json", "collection", "show", "dupes")
    jobs = set(json.loads(out)["jobs"])
    assert jobs == {m.job_id for m in group.members}
    views = path.parent / "vault-views" / "dupes"
    assert views.is_dir() and any(views.rglob("*.*"))
    # Asked again, the existing view is not replaced silently.
    code, out, err = cli(path, "dupes", "--view", "dupes")
    assert code != 0 and "--replace" in err and len(err.strip().splitlines()) == 1
    # Nothing was deleted: every image is still there.
    with Vault.open(path) as vault:
        assert set(head_images(vault)) == set(images)


def test_upscales_of_two_tiles_are_two_groups_not_one(
    tmp_path: Path, hashed: tuple[Path, list[str]]
) -> None:
    """A grid and the upscales of two of its tiles: each upscale meets the grid's quadrant it
    came from, and the two pictures stay apart (a grid is in one group per matched tile)."""
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    grid, first, second = images[:3]
    rng = np.random.default_rng(17)
    parts = [rng.bytes(HASH_BYTES) for _ in range(5)]
    with Vault.open(path) as vault:
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            store.remove(images[3:])  # only the three images in play
            store.put(grid, parts)
            store.put(first, [parts[1]])
            store.put(second, [parts[2]])
        groups = list(find_groups(vault, level=10))
    found = sorted(sorted(m.object_id for m in g.members) for g in groups)
    assert found == sorted([sorted([grid, first]), sorted([grid, second])])
    assert all(g.distance == 0 for g in groups)
    # The grid is in each group by one tile: marked so, ranked by the tile's pixels (so the
    # upscale is the best original), and never among the copies to clear out.
    for group in groups:
        (in_grid,) = [m for m in group.members if m.object_id == grid]
        assert in_grid.tile == (1 if first in {m.object_id for m in group.members} else 2)
        assert group.best.object_id != grid and group.to_json()["members"][1]["tile"] > 0


def test_a_writer_committing_during_a_search_moves_no_hit(
    tmp_path: Path, hashed: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forget (rows removed, the rest renumbered) committed between the scan and the
    lookup of its rows: every hit is still the image whose hash is at that distance."""
    import mjvault.similarity.nearest as nearest_module

    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    real_scan = nearest_module.scan

    def scan_then_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = real_scan(*args, **kwargs)
        with vault.write_lock(), HashStore.open(vault, writable=True) as writer:
            writer.remove(images[:2])  # the first rows: every later row moves
        return found

    with Vault.open(path) as vault:
        with HashStore.open(vault) as store:
            before = {i: store.hashes_of(i) for i in images}
        target = before[images[-1]]
        assert target
        monkeypatch.setattr(nearest_module, "scan", scan_then_write)
        hits = nearest_module.nearest(vault, to_words(target[:1])[0], limit=len(images))
    assert {h.object_id for h in hits} == set(images)
    for hit in hits:
        stored = before[hit.object_id]
        assert stored
        assert hit.distance == int(brute_distances(to_words(stored), to_words(target)[0]).min())


def test_rows_a_write_removed_are_an_error_not_a_crash(
    tmp_path: Path, hashed: tuple[Path, list[str]]
) -> None:
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    with Vault.open(path) as vault, HashStore.open(vault) as store:
        with store.snapshot():
            blocks = list(store.blocks(rows=3))
            rows = [b.start + i for b in blocks for i in range(len(b.parts))]
            with vault.write_lock(), HashStore.open(vault, writable=True) as writer:
                writer.remove(images[:1] + images[-1:])
            located = [object_id for object_id, _ in store.locate(rows)]
            assert located == [i for b in blocks for i in b.images()]
            assert set(located) == set(images)
        with pytest.raises(MjvaultError, match="search again"):
            store.locate(rows[-1:])  # out of the snapshot: that row is gone
        stream = store.blocks()
        first = next(stream)
        stream.close()
        with vault.write_lock(), HashStore.open(vault, writable=True) as writer:
            writer.remove(images[1:2])
        with pytest.raises(MjvaultError, match="search again"):
            first.images()  # its block was rewritten since it was streamed


def test_similar_of_a_grid_finds_the_upscales_of_its_tiles(
    tmp_path: Path, hashed: tuple[Path, list[str]]
) -> None:
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    grid, tile, other = images[:3]
    rng = np.random.default_rng(3)
    parts = [rng.bytes(HASH_BYTES) for _ in range(5)]
    with Vault.open(path) as vault:
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            store.put(grid, parts)
            store.put(tile, [flipped(parts[3], 2)])  # an upscale of the grid's third tile
            store.put(other, [parts[0], *parts[1:]])  # a copy of the grid, quadrants too
        place = job_of_image(vault, grid)
        assert place is not None
        hits = similar_to(vault, f"{place[0].job_id}:{place[1]}", limit=3)
    assert [h.object_id for h in hits[:3]] == [grid, other, tile]
    assert [h.distance for h in hits[:3]] == [0, 0, 2]


def test_n_hits_even_behind_many_hashes_of_forgotten_images(
    tmp_path: Path, hashed: tuple[Path, list[str]]
) -> None:
    """Hashes no job of HEAD shows (forgotten images not yet pruned), more of them than the
    scan keeps at first, all nearer than any shown image: still ``-n`` hits."""
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    rng = np.random.default_rng(10)
    with Vault.open(path) as vault:
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            target = store.hashes_of(images[0])
            assert target
            for _ in range(TIE_ROOM + 50):
                store.put(rng.bytes(32).hex(), [target[0]])
        hits = nearest(vault, to_words(target[:1])[0], limit=4)
    assert len(hits) == 4 and hits[0].object_id == images[0]
    assert {h.object_id for h in hits} <= set(images)


def test_similar_of_a_video_says_it_has_no_hash_not_to_run_thumbs(
    tmp_path: Path,
    hashed: tuple[Path, list[str]],
    cli,  # type: ignore[no-untyped-def]
) -> None:
    source, _ = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    with Vault.open(path) as vault, vault.writer("test", thumbnails=False) as writer:
        clip = writer.put_media(b"\x00\x00\x00\x18ftypmp42 not a picture")
        writer.add_job(b'{"id": "clip-1", "type": "video", "full_command": "x"}', [clip])
    code, out, err = cli(path, "similar", "clip-1")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "not an image" in err and "thumbs" not in err


def test_groups_read_each_hash_block_once_for_their_rows_and_members(
    tmp_path: Path, hashed: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three groups of two: their rows located and their members' hashes read in one pass
    over the blocks (a block read per group and per member made 20k groups 20 times the
    pair search), and the same groups as a member-by-member reading gives."""
    source, images = hashed
    path = tmp_path / "vault"
    shutil.copytree(source, path, symlinks=True)
    rng = np.random.default_rng(5)
    with Vault.open(path) as vault:
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            for k in range(3):
                value = rng.bytes(HASH_BYTES)
                store.put(images[2 * k], [value])
                store.put(images[2 * k + 1], [flipped(value, 2)])
            store.remove(images[6:])
        reads: list[int] = []
        real = HashStore._read_block

        def counted(self: HashStore, block: int) -> tuple[bytes, bytes, bytes]:
            reads.append(block)
            return real(self, block)

        monkeypatch.setattr(HashStore, "_read_block", counted)
        groups = list(find_groups(vault, level=4))
        read = len(reads)
        with HashStore.open(vault) as store:
            blocks = len(list(store.blocks()))
            assert store.hashes_of_many(images) == {
                i: store.hashes_of(i) for i in images if store.hashes_of(i)
            }
    assert sorted(sorted(m.object_id for m in g.members) for g in groups) == [
        sorted(images[2 * k : 2 * k + 2]) for k in range(3)
    ]
    assert read <= 2 * blocks


def _prompt_words(vault: Vault, job_id: str) -> list[str]:
    summary = vault.current_index().get(job_id)
    assert summary is not None
    return [w for w in summary.prompt.lower().split() if w.isalpha()][:3]


def test_no_hashes_yet_says_how_to_make_them(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path
    write_sample_archive(root / "mj", jobs=2, seed=9)
    with Vault.init(root / "vault") as vault:
        import_archive(vault, root / "mj", thumbnails=False)
        job = next(iter(vault.entries())).job_id
    for args in (["similar", job], ["dupes"]):
        code, _, err = cli(root / "vault", *args)
        assert code != 0 and "mjvault thumbs" in err and len(err.strip().splitlines()) == 1


# -- memory at a million rows -----------------------------------------------------------------

CHILD = """
import sys, numpy as np
from mjvault import Vault
from mjvault.similarity.groups import find_groups
from mjvault.similarity.hashing import DEFAULT_LEVEL, parse_level
from mjvault.similarity.nearest import nearest
from mjvault.similarity.store import HashStore
path, what = sys.argv[1], sys.argv[2]
with Vault.open(path) as vault:
    if what == "similar":
        with HashStore.open(vault) as store:
            one = next(store.blocks()).words[0]
        print(len(nearest(vault, one, 20)))
    else:
        print(sum(1 for _ in find_groups(vault, level=parse_level(DEFAULT_LEVEL))))
"""


@pytest.mark.memory
def test_similar_and_dupes_stay_small_at_a_million_rows(tmp_path: Path) -> None:
    from tests.peak_rss import run_measured

    rows = 1_000_000
    with Vault.init(tmp_path / "vault") as vault:
        rng = np.random.default_rng(1)
        with vault.write_lock(), HashStore.open(vault, writable=True) as store:
            for first in range(0, rows, 100_000):
                words = rng.integers(0, 2**63, size=(100_000, 1), dtype=np.uint64)
                for n, hash_ in enumerate(to_bytes(words)):
                    store.put((first + n).to_bytes(32, "big").hex(), [hash_])
                store.commit()
            assert len(store) == rows
    for what in ("similar", "dupes"):
        measured = run_measured(
            [sys.executable, "-c", CHILD, str(tmp_path / "vault"), what],
            workdir=tmp_path,
            timeout=900,
        )
        assert measured.returncode == 0, measured.stderr.decode()[-500:]
        assert measured.peak_rss_mb < 200, (what, measured.peak_rss_mb)


def test_an_import_hashes_what_similar_searches(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """No store filled by hand: the hashes an import makes beside its thumbnails."""
    write_sample_archive(tmp_path / "mj", jobs=3, seed=13)
    with Vault.init(tmp_path / "vault") as vault:
        import_archive(vault, tmp_path / "mj", thumbnail_wait=None)
        entry = next(iter(vault.entries()))
    code, out, err = cli(tmp_path / "vault", "similar", f"{entry.job_id}:1", "--json")
    assert code == 0, err
    first = json.loads(out)["images"][0]
    assert (first["job_id"], first["index"], first["distance"]) == (entry.job_id, 1, 0)
