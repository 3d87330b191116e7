"""Packs for small objects: the file format, the store that reads them, the writer that makes
them, and vaults written before packs existed (docs/FORMAT.md §10)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import CorruptObject, UnsupportedFormat
from mjvault.store import packfile
from mjvault.store.codec import ENCODING_ZSTD_DICT, unframe_plain
from mjvault.store.packfile import PackDamaged, encode_pack, pack_name, read_trailer
from mjvault.testing.rusage import resident_kib
from tests.conftest import PASSPHRASE, png_bytes, record_json

ids = st.binary(min_size=32, max_size=32)
entries = st.dictionaries(ids, st.binary(min_size=1, max_size=300), max_size=40)


def _trailer_of(data: bytes, tmp_path: Path) -> object:
    path = tmp_path / pack_name(data)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_trailer(fd, len(data))
    finally:
        os.close(fd)
        path.unlink()


versions = st.sampled_from(packfile.PACK_VERSIONS)


@settings(max_examples=80, deadline=None)
@given(entries, st.one_of(st.none(), ids.filter(any).map(bytes.hex)), versions)
def test_a_pack_round_trips(
    tmp_path_factory: pytest.TempPathFactory,
    objects: dict[bytes, bytes],
    dictionary: str | None,
    version: int,
) -> None:
    tmp_path = tmp_path_factory.mktemp("pack")
    data, built = encode_pack(list(objects.items()), dictionary, version)
    assert data[4] == version
    read = _trailer_of(data, tmp_path)
    assert read == built
    assert read.dictionary_id == dictionary
    assert [e.object_id for e in read.entries] == sorted(objects)
    assert {e.object_id: data[e.offset : e.offset + e.length] for e in read.entries} == objects
    # Version 2's trailer: 36 bytes an entry (no offsets), version 1's 44.
    per_entry = {1: 44, 2: 36}[version]
    assert len(data) - read.data_end == per_entry * len(objects) + 60


@settings(max_examples=40, deadline=None)
@given(entries.filter(bool), versions)
def test_a_streamed_pack_is_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory, objects: dict[bytes, bytes], version: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("pack")
    data, built = encode_pack(list(objects.items()), None, version)
    writer = packfile.PackFileWriter(tmp_path / "stream", None, version)
    for object_id, framed in objects.items():
        writer.add(object_id, framed)
    name, trailer = writer.finish()
    assert (tmp_path / "stream").read_bytes() == data
    assert name == pack_name(data) and trailer == built


def _v2_pack(rows: list[tuple[bytes, int]], data: bytes) -> bytes:
    """A version 2 pack of entry bytes ``data`` whose trailer lists ``rows`` (id, length),
    with a good checksum whatever the rows say."""
    import blake3

    head = b"".join(packfile.ENTRY_V2.pack(*row) for row in rows)
    head += bytes(32) + len(rows).to_bytes(4, "big")
    tail = head + blake3.blake3(head).digest()[:16]
    return packfile.header(2) + data + tail + (len(tail) + 8).to_bytes(4, "big") + b"MJVP"


@pytest.mark.parametrize(
    "rows",
    [
        [(b"a" * 32, 10), (b"b" * 32, 9)],  # the lengths stop short of the trailer
        [(b"a" * 32, 10), (b"b" * 32, 11)],  # or run into it
        [(b"a" * 32, 10), (b"a" * 32, 10)],  # the same object twice
    ],
)
def test_a_version_2_trailer_that_does_not_add_up_is_damage(
    rows: list[tuple[bytes, int]], tmp_path: Path
) -> None:
    good = _v2_pack([(b"a" * 32, 10), (b"b" * 32, 10)], bytes(20))
    assert [(e.object_id, e.offset) for e in _trailer_of(good, tmp_path).entries] == [
        (b"a" * 32, 6),
        (b"b" * 32, 16),
    ]
    with pytest.raises(PackDamaged):
        _trailer_of(_v2_pack(rows, bytes(20)), tmp_path)


@pytest.mark.parametrize("version", [0, 3])
def test_a_pack_of_an_unknown_version_is_refused(version: int, tmp_path: Path) -> None:
    data, _ = encode_pack([(b"a" * 32, b"MJVO\x01\x00x")], None)
    with pytest.raises(PackDamaged, match="version"):
        _trailer_of(data[:4] + bytes((version,)) + data[5:], tmp_path)


@settings(max_examples=80, deadline=None)
@given(entries.filter(bool), st.data(), versions)
def test_any_cut_or_flipped_trailer_byte_is_detected(
    tmp_path_factory: pytest.TempPathFactory,
    objects: dict[bytes, bytes],
    data: st.DataObject,
    version: int,
) -> None:
    tmp_path = tmp_path_factory.mktemp("pack")
    pack, built = encode_pack(list(objects.items()), None, version)
    cut = data.draw(st.integers(0, len(pack) - 1))
    with pytest.raises(PackDamaged):
        _trailer_of(pack[:cut], tmp_path)
    # The trailer, or the magic and version of the header (entry bytes are checked by their
    # ids when read, the whole file by its name).
    where = data.draw(st.one_of(st.integers(0, 4), st.integers(built.data_end, len(pack) - 1)))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(pack)
    flipped[where] ^= 1 << bit
    with pytest.raises(PackDamaged):
        _trailer_of(bytes(flipped), tmp_path)


def add_jobs(vault: Vault, count: int, start: int = 0) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            slots = [writer.put_media(png_bytes(n, 300))]
            writer.add_job(
                record_json(f"job-{n:05d}", f"a red fox number {n} in the snow --ar 3:2"), slots
            )


def loose_files(vault: Vault) -> int:
    return sum(len(files) for _, _, files in os.walk(vault.path / "objects"))


@pytest.mark.parametrize("encrypted", [False, True])
def test_records_and_nodes_go_to_packs_with_a_trained_dictionary(
    request: pytest.FixtureRequest, encrypted: bool
) -> None:
    chosen: Vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    add_jobs(chosen, 800)
    packs = chosen.store.packs.names()
    # One pack for the run: its records, its nodes and the empty tree it began from (a node
    # no snapshot names) were merged into one at its end, without that empty tree.
    assert len(packs) == 1
    # 800 images, one manifest and one dictionary are loose; 800 records and the nodes packed.
    assert loose_files(chosen) == 802
    dictionary = chosen.store.packs.map().dictionary()
    assert dictionary is not None and chosen.store.is_loose(dictionary)
    for entry in chosen.entries():
        assert chosen.job(entry).prompt.startswith("a red fox number")
    # A second vault object (a fresh reader) finds everything through the same map.
    reopened = Vault.open(chosen.path, passphrase=PASSPHRASE)
    assert sum(1 for _ in reopened.entries()) == 800
    reopened.close()
    # Records are small on disk: the point of packs.
    size = sum((chosen.store.packs.dir / name).stat().st_size for name in packs)
    assert size / 800 < 400


def test_a_dictionary_entry_stands_alone_once_read_out(vault: Vault) -> None:
    add_jobs(vault, 600)
    record = vault.entry("job-00007").record
    location = vault.store.packs.locate(record)
    assert location is not None and location.dictionary is not None
    entry, _ = vault.store.packs.read_entry(record)  # type: ignore[misc]
    assert entry[5] == ENCODING_ZSTD_DICT
    alone = vault.store.read_file(record)
    assert unframe_plain(alone) == vault.store.read(record)


def test_a_flipped_byte_in_a_packed_record_is_damage(vault: Vault) -> None:
    add_jobs(vault, 50)
    record = vault.entry("job-00003").record
    location = vault.store.packs.locate(record)
    assert location is not None
    path = vault.store.packs.path(location.pack)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(location.offset + location.length - 3)
        byte = handle.read(1)[0]
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes((byte ^ 0x10,)))
    with pytest.raises(CorruptObject):
        vault.store.read(record)


def test_the_pack_map_is_a_cache_rebuilt_from_the_trailers(vault: Vault) -> None:
    add_jobs(vault, 40)
    add_jobs(vault, 40, start=40)
    assert len(vault.store.packs.names()) == 2  # one per run, its records and nodes merged
    vault.close()
    shutil.rmtree(vault.path / "index")
    again = Vault.open(vault.path)
    assert sorted(e.job_id for e in again.entries())[-1] == "job-00079"
    assert again.store.packs.map().packs() == set(again.store.packs.names())
    again.close()


def test_opening_the_pack_map_to_read_commits_nothing(vault: Vault) -> None:
    """A command that only reads writes no transaction to the map: a commit syncs its file,
    milliseconds of every `log` or `search`. A new map is still marked with its format."""

    def last_transaction() -> int:
        env = lmdb.open(str(vault.path / "index" / "packs"), max_dbs=8, readonly=True)
        try:
            return int(env.info()["last_txnid"])
        finally:
            env.close()

    add_jobs(vault, 40)
    vault.close()
    before = last_transaction()
    for _ in range(2):
        with Vault.open(vault.path) as again:
            assert b"number 7" in again.record_json(again.entry("job-00007"))
    assert last_transaction() == before
    shutil.rmtree(vault.path / "index" / "packs")
    with Vault.open(vault.path) as again:
        assert b"number 7" in again.record_json(again.entry("job-00007"))
    env = lmdb.open(str(vault.path / "index" / "packs"), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert txn.get(b"format", db=env.open_db(b"meta", txn=txn)) == b"1"
    env.close()


def test_a_pack_published_but_not_mapped_is_found(vault: Vault, tmp_path: Path) -> None:
    """A writer killed between renaming a pack in and recording it in the map."""
    add_jobs(vault, 30)
    before = set(vault.store.packs.names())
    add_jobs(vault, 30, start=30)
    (new,) = set(vault.store.packs.names()) - before
    record = vault.entry("job-00045").record
    vault.store.packs.map().forget_number(new)
    assert vault.store.packs.map().locate(bytes.fromhex(record)) is None
    assert b"number 45" in vault.store.read(record)
    assert vault.store.packs.map().locate(bytes.fromhex(record)) is not None


def test_objects_of_a_pack_not_yet_mapped_are_not_missing_in_order(tmp_path: Path) -> None:
    """Asked in key order, the map answers a chunk of ids at a time. When the first seems
    missing the packs on disk are looked at and the map brought up to date: every other id
    of that chunk must be asked again, not reported missing from the stale answer."""
    ids = []
    for name in ("a", "b"):
        with Vault.init(tmp_path / name) as other:
            batch = other.store.batch()
            ids += [batch.put(f"{name}-object-{i}".encode() * 3) for i in range(30)]
            batch.flush()
    for pack in (tmp_path / "b" / "packs").iterdir():  # published in a, not yet in a's map
        shutil.copy(pack, tmp_path / "a" / "packs" / pack.name)
    with Vault.open(tmp_path / "a") as vault:
        assert list(vault.store.missing_in_order(sorted(bytes.fromhex(i) for i in ids))) == []


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_vault_is_read_and_marked_3_before_a_new_pack(
    tmp_path: Path, version: int
) -> None:
    vault = Vault.init(tmp_path / "v")
    config_path = vault.path / "config"
    config = json.loads(config_path.read_bytes())
    assert config["version"] == 3
    config["version"] = version
    os.chmod(config_path, 0o644)
    config_path.write_text(json.dumps(config))
    vault.close()
    old = Vault.open(tmp_path / "v")
    assert not (old.path / "packs").exists()
    assert json.loads(config_path.read_bytes())["version"] == version  # reading changes nothing
    add_jobs(old, 5)
    assert json.loads(config_path.read_bytes()) == config | {"version": 3}
    assert old.store.packs.names()
    old.close()
    config["version"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedFormat):
        Vault.open(tmp_path / "v")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's smaps")
def test_adding_packs_to_the_map_leaves_its_pages_unmapped(tmp_path: Path) -> None:
    """A pack's ids land all over the map's objects table, so adding one reads most of the
    table through LMDB's map; a writer adds a pack at every checkpoint, and those pages must
    not pile up in its resident set (tens of MB at 100k jobs, hundreds at a million)."""
    from mjvault.index.packmap import PackMap

    packmap = PackMap(tmp_path / "map")
    try:
        for _ in range(8):
            entries = [(os.urandom(32), offset * 64, 64) for offset in range(20_000)]
            packmap.add(os.urandom(32).hex(), entries, None)
        size_kib = os.path.getsize(tmp_path / "map" / "data.mdb") // 1024
        assert size_kib > 8 * 1024  # large enough for the pages to show
        assert resident_kib(tmp_path / "map" / "data.mdb") < 1024

        # And while one is added: the transaction itself must not gather the table either.
        during: list[int] = []

        def sampled() -> Iterator[tuple[bytes, int, int]]:
            for offset in range(20_000):
                if offset % 1_000 == 999:
                    during.append(resident_kib(tmp_path / "map" / "data.mdb"))
                yield os.urandom(32), offset * 64, 64

        packmap.add(os.urandom(32).hex(), sampled(), None)
        assert max(during) < 4 * 1024
    finally:
        packmap.close()
