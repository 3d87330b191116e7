"""Packs written to their temp file as objects arrive, and the pack map added to in batches
(docs/FORMAT.md §10): the same bytes as a pack built in memory, and a writer killed in the
middle of either leaves a vault that verifies and a next run that completes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index.packmap import ADD_BATCH, PackMap
from mjvault.integrity.verify import verify
from mjvault.store.packfile import PackFileWriter, encode_pack, pack_name, read_trailer_of
from mjvault.store.packs import PackStream
from tests.conftest import png_bytes, record_json

ROOT = Path(__file__).resolve().parents[1]
ids = st.binary(min_size=32, max_size=32)
entries = st.dictionaries(ids, st.binary(min_size=1, max_size=3000), max_size=60)


@settings(max_examples=60, deadline=None)
@given(entries, st.one_of(st.none(), ids.filter(any).map(bytes.hex)), st.integers(1, 8192))
def test_a_streamed_pack_is_the_pack_encode_pack_makes(
    tmp_path_factory: pytest.TempPathFactory,
    objects: dict[bytes, bytes],
    dictionary: str | None,
    write_size: int,
) -> None:
    path = tmp_path_factory.mktemp("stream") / "pack.tmp"
    writer = PackFileWriter(path, dictionary)
    writer.WRITE_SIZE = write_size  # entries in the file, in the buffer, and across both
    places = {}
    for object_id, framed in objects.items():
        places[object_id] = writer.add(object_id, framed)
        # Every entry added so far reads back, wherever its bytes are now.
        for earlier, (offset, length) in places.items():
            assert writer.read(offset, length) == objects[earlier]
    name, trailer = writer.finish()
    expected, expected_trailer = encode_pack(list(objects.items()), dictionary)
    assert path.read_bytes() == expected
    assert trailer == expected_trailer == read_trailer_of(os.fspath(path))
    assert name == pack_name(expected)
    assert os.stat(path).st_mode & 0o777 == 0o444


def test_a_pack_that_cannot_be_cut_back_cannot_be_sealed(tmp_path: Path) -> None:
    writer = PackFileWriter(tmp_path / "pack.tmp", None)
    writer.WRITE_SIZE = 1
    os.close(writer.fd)
    writer.fd = os.open(os.devnull, os.O_RDONLY)  # every write, and the truncate, now fail
    with pytest.raises(OSError):
        writer.add(bytes(32), b"MJVO....")
    # An error of the file (the caller's one-line disk error), never a bare ValueError.
    with pytest.raises(OSError, match="not written whole"):
        writer.finish()
    writer.abort()
    assert not (tmp_path / "pack.tmp").exists()


class FillingDisk:
    """``os.write`` on a disk that fills on demand: ``room`` bytes more, then ENOSPC."""

    def __init__(self) -> None:
        self.real = os.write
        self.full = False
        self.room = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if not self.full:
            return self.real(fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done = self.real(fd, memoryview(data)[: self.room])
        self.room -= done
        return done


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=3000), st.booleans()), max_size=40),
    st.integers(1, 512),
    st.integers(0, 64),  # less than most writes: they fail part way, as on a real disk
)
def test_a_write_that_fails_drops_only_its_entry(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[bytes, bool]],
    write_size: int,
    room: int,
) -> None:
    path = tmp_path_factory.mktemp("stream") / "pack.tmp"
    disk = FillingDisk()
    kept: dict[bytes, bytes] = {}
    places = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", disk.write)
        writer = PackFileWriter(path, None)
        writer.WRITE_SIZE = write_size
        for n, (framed, fails) in enumerate(items):
            object_id = n.to_bytes(32, "big")
            disk.full, disk.room = fails, room
            try:
                places[object_id] = writer.add(object_id, framed)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC and fails
                continue
            finally:
                disk.full = False
            kept[object_id] = framed
            # The file holds what was added, whatever failed in between.
            for earlier, (offset, length) in places.items():
                assert writer.read(offset, length) == kept[earlier]
        # No room for the trailer: nothing sealed, and it seals once there is room.
        disk.full, disk.room = True, 0
        with pytest.raises(OSError):
            writer.finish()
        disk.full = False
        name, trailer = writer.finish()
    expected, expected_trailer = encode_pack(list(kept.items()), None)
    assert path.read_bytes() == expected
    assert trailer == expected_trailer
    assert name == pack_name(expected)


def add_jobs(vault: Vault, count: int, start: int = 0, **options: object) -> None:
    with vault.writer("test", **options) as writer:
        for n in range(start, start + count):
            slots = [writer.put_media(png_bytes(n, 300))]
            writer.add_job(
                record_json(f"job-{n:05d}", f"a red fox number {n} in the snow --ar 3:2"), slots
            )


def pack_temp_files(vault_path: Path) -> list[Path]:
    return [p for p in (vault_path / "tmp").iterdir() if p.name.startswith("pack.")]


@pytest.mark.parametrize("encrypted", [False, True])
def test_once_the_vault_has_a_dictionary_packs_are_streamed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, encrypted: bool
) -> None:
    monkeypatch.setattr(PackFileWriter, "WRITE_SIZE", 1024)
    chosen: Vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    add_jobs(chosen, 600)  # the first large pack trains the dictionary, in memory
    dictionary = chosen.store.packs.map().dictionary()
    assert dictionary is not None
    with chosen.writer("test") as writer:
        for n in range(600, 700):
            writer.add_job(record_json(f"job-{n:05d}", f"a grey owl number {n}"), [])
        batch = writer._batch
        assert isinstance(batch._builder, PackStream)
        (temp,) = pack_temp_files(chosen.path)
        assert temp.stat().st_size > 100 * 30  # the records are in the file, not in memory
        record = chosen.store.name_of(b"")  # any id the stream does not hold reads as before
        assert batch._builder.read(record) is None
        staged = writer.record_id(record_json("job-00650", "a grey owl number 650"))
        assert staged in batch._builder and b"owl number 650" in batch.read(staged)
    assert pack_temp_files(chosen.path) == []
    newest = chosen.store.packs.locate(staged)
    assert newest is not None and newest.dictionary == dictionary
    assert chosen.job(chosen.entry("job-00650")).prompt == "a grey owl number 650"
    assert verify(chosen, read_data=True).ok


def test_a_discarded_batch_removes_its_streamed_pack(vault: Vault) -> None:
    """What gc and `mjvault pack` do when a repack fails: nothing of the pack stays."""
    add_jobs(vault, 600)
    packs = set(vault.store.packs.names())
    batch = vault.store.batch()
    batch.put(b"an object of a repack that is given up" * 4)
    assert isinstance(batch._builder, PackStream)
    assert pack_temp_files(vault.path)
    batch.discard()
    batch.flush()
    assert pack_temp_files(vault.path) == []
    assert set(vault.store.packs.names()) == packs


STREAM_CHILD = """
import sys, time
from mjvault import Vault
from mjvault.store.packfile import PackFileWriter
from mjvault.writer import ArchiveWriter
from tests.test_pack_stream import add_jobs

PackFileWriter.WRITE_SIZE = 512  # the file, not its buffer, holds what was added
real = ArchiveWriter.add_job
added = 0

def add_job(self, *args, **kwargs):
    global added
    added += 1
    if added == 150:
        print("mid-pack", flush=True)
        time.sleep(60)
    return real(self, *args, **kwargs)

ArchiveWriter.add_job = add_job
add_jobs(Vault.open(sys.argv[1]), 300, start=600)
"""


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_streamed_pack(vault: Vault) -> None:
    add_jobs(vault, 600)
    head = vault.head()
    child = subprocess.Popen(
        [sys.executable, "-c", STREAM_CHILD, str(vault.path)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"mid-pack\n"
        (temp,) = pack_temp_files(vault.path)
        assert temp.stat().st_size > 149 * 30  # 149 records written to it, no trailer yet
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    with Vault.open(vault.path) as after:
        assert after.head() == head
        assert verify(after, read_data=True).ok
        add_jobs(after, 300, start=600)  # the next writer removes the dead one's temp files
        assert pack_temp_files(after.path) == []
        assert sum(1 for _ in after.entries()) == 900
        assert verify(after, read_data=True).ok


MAP_CHILD = """
import os, signal, sys
from mjvault import Vault
from mjvault.index.packmap import PackMap
from tests.test_pack_stream import add_jobs

real = PackMap._put_objects
batches = 0

def put_objects(self, batch, *args, **kwargs):
    global batches
    done = real(self, batch, *args, **kwargs)
    batches += 1
    if batches == 2 and len(batch) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # between two transactions of one pack's add
    return done

PackMap._put_objects = put_objects
add_jobs(Vault.open(sys.argv[1]), 1500, start=600)
"""


def _map_state(vault: Vault) -> tuple[set[str], list[str]]:
    packmap = vault.store.packs.map()
    return packmap.packs(), packmap.unfinished()


@pytest.mark.slow
def test_sigkill_between_two_transactions_of_a_pack_map_add(vault: Vault) -> None:
    add_jobs(vault, 600)
    vault.close()
    child = subprocess.Popen(
        [sys.executable, "-c", MAP_CHILD, str(vault.path), str(ADD_BATCH)], cwd=ROOT
    )
    child.wait()
    assert child.returncode == -signal.SIGKILL
    # The pack is published, its add marked and done in part.
    raw = PackMap(vault.path / "index" / "packs")
    try:
        (unfinished,) = raw.unfinished()
        assert unfinished not in raw.packs()
        assert (vault.path / "packs" / unfinished).exists()
    finally:
        raw.close()
    with Vault.open(vault.path) as after:
        packs, pending = _map_state(after)  # opening the map finishes the add
        assert pending == [] and unfinished in packs
        trailer = read_trailer_of(os.fspath(after.store.packs.path(unfinished)))
        for entry in trailer.entries:
            location = after.store.packs.map().locate(entry.object_id)
            assert location is not None and location.pack == unfinished
        assert verify(after, read_data=True).ok
        add_jobs(after, 1500, start=600)
        assert sum(1 for _ in after.entries()) == 2100
        assert verify(after, read_data=True).ok


def _entries(count: int, stop_after: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    for n in range(count):
        if n == stop_after:
            raise KeyboardInterrupt
        yield n.to_bytes(32, "big"), 6 + n * 10, 10


def test_an_add_stopped_part_way_is_taken_up_with_its_number(tmp_path: Path) -> None:
    packmap = PackMap(tmp_path / "map")
    try:
        first, second = "aa" * 32, "bb" * 32
        packmap.add(first, _entries(10), None)
        with pytest.raises(KeyboardInterrupt):
            packmap.add(second, _entries(3 * ADD_BATCH, stop_after=2 * ADD_BATCH + 5), "cc" * 32)
        assert packmap.unfinished() == [second]
        assert second not in packmap.packs()
        # What was committed is already mapped, to the pack (which is published first).
        found = packmap.locate((5).to_bytes(32, "big"))
        assert found is not None and found.pack == second and found.dictionary == "cc" * 32
        packmap.add(second, _entries(3 * ADD_BATCH), "cc" * 32)
        assert packmap.unfinished() == []
        assert packmap.packs() == {first, second}
        assert packmap.object_count() == 3 * ADD_BATCH  # the first pack's ids moved over
        last = packmap.locate((3 * ADD_BATCH - 1).to_bytes(32, "big"))
        assert last is not None and last.pack == second
        packmap.add(second, _entries(1), None)  # added whole: nothing to do
        assert packmap.object_count() == 3 * ADD_BATCH
    finally:
        packmap.close()


def test_an_add_stopped_part_way_whose_pack_is_gone_is_rolled_back(vault: Vault) -> None:
    add_jobs(vault, 40)
    packmap = vault.store.packs.map()
    before = packmap.object_count()
    gone = "dd" * 32
    with pytest.raises(KeyboardInterrupt):
        packmap.add(gone, _entries(2 * ADD_BATCH, stop_after=ADD_BATCH + 1), None)
    assert packmap.object_count() == before + ADD_BATCH
    vault.close()
    with Vault.open(vault.path) as again:
        again.store.packs.map()  # no file for it: the add is undone
        packs, pending = _map_state(again)
        assert pending == [] and gone not in packs
        assert again.store.packs.map().object_count() == before
        assert again.store.packs.map().locate((3).to_bytes(32, "big")) is None
        assert verify(again, read_data=True).ok


FINISH_CHILD = """
import sys
from mjvault.index.packmap import PackMap
from tests.test_pack_stream import _entries

real = PackMap._put_objects
calls = []

def put_objects(self, batch, *args, **kwargs):
    done = real(self, batch, *args, **kwargs)
    calls.append(done)
    if len(calls) == 1:  # between the finisher's first batch and its next transaction
        print("paused", flush=True)
        sys.stdin.readline()
    return done

PackMap._put_objects = put_objects
packmap = PackMap(__import__("pathlib").Path(sys.argv[1]))
(name,) = packmap.unfinished()
packmap.finish(name, _entries(int(sys.argv[2])), None)
print(*calls, flush=True)
packmap.close()
"""


def test_a_finisher_stops_once_the_add_it_took_up_is_done_and_merged_away(
    tmp_path: Path,
) -> None:
    """The owner finishes its add while another process is taking it up; a merge then moves
    the objects to a new pack and removes the first: the late finisher must not put the
    rest of the objects back at the removed pack's number, nor its `packs` row."""
    count = 2 * ADD_BATCH
    old, merged = "aa" * 32, "bb" * 32
    packmap = PackMap(tmp_path / "map")
    try:
        with pytest.raises(KeyboardInterrupt):
            packmap.add(old, _entries(count, stop_after=ADD_BATCH + 1), None)
        child = subprocess.Popen(
            [sys.executable, "-c", FINISH_CHILD, str(tmp_path / "map"), str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == b"paused\n"
            packmap.add(old, _entries(count), None)  # the owner finishes
            moved = [(n.to_bytes(32, "big"), 6 + n * 7, 7) for n in range(count)]
            packmap.add(merged, moved, None)  # a merge: new pack, moved, old removed
            packmap.move(merged, moved)
            packmap.remove(old, (object_id for object_id, _, _ in moved))
            child.stdin.write(b"go\n")
            child.stdin.flush()
            # It committed its first batch, and its second transaction put nothing.
            assert child.stdout.readline() == b"True False\n"
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert packmap.packs() == {merged}
        assert packmap.unfinished() == []
        for n in range(count):
            found = packmap.locate(n.to_bytes(32, "big"))
            assert found is not None and found.pack == merged and found.offset == 6 + n * 7
    finally:
        packmap.close()


def test_a_finisher_leaves_objects_placed_in_another_listed_pack(tmp_path: Path) -> None:
    listed, taken_up, gone = "aa" * 32, "bb" * 32, "cc" * 32
    packmap = PackMap(tmp_path / "map")
    try:
        packmap.add(listed, _entries(10), None)
        with pytest.raises(KeyboardInterrupt):
            packmap.add(taken_up, _entries(2 * ADD_BATCH, stop_after=ADD_BATCH + 1), None)
        packmap.add(listed, _entries(10), None)  # listed already: nothing to do
        # Ids 0..9 are the taken-up pack's now (its owner's first batch); put them back in
        # the listed pack as a merge that came meanwhile would.
        packmap.move(listed, _entries(10))
        packmap.finish(taken_up, _entries(2 * ADD_BATCH), None)
        assert packmap.packs() == {listed, taken_up} and packmap.unfinished() == []
        first = packmap.locate((3).to_bytes(32, "big"))
        assert first is not None and first.pack == listed
        rest = packmap.locate((ADD_BATCH + 3).to_bytes(32, "big"))
        assert rest is not None and rest.pack == taken_up
        # Taking up an add nobody marked (finished or rolled back since) does nothing.
        packmap.finish(gone, _entries(5), None)
        assert gone not in packmap.packs() and packmap.unfinished() == []
    finally:
        packmap.close()


def test_a_stale_marker_beside_a_listed_pack_is_removed(tmp_path: Path) -> None:
    pack = "aa" * 32
    packmap = PackMap(tmp_path / "map")
    try:
        packmap.add(pack, _entries(10), None)
        with packmap.env.begin(write=True) as txn:  # what an older finisher could leave
            txn.put(b"adding" + bytes.fromhex(pack), (1).to_bytes(4, "big"), db=packmap.db[b"meta"])
        assert packmap.unfinished() == [pack]
        packmap.add(pack, _entries(10), None)
        assert packmap.unfinished() == [] and packmap.packs() == {pack}
        assert packmap.object_count() == 10
    finally:
        packmap.close()


def test_a_rolled_back_add_maps_its_objects_back_to_an_older_pack(vault: Vault) -> None:
    add_jobs(vault, 40)
    packmap = vault.store.packs.map()
    (older,) = packmap.packs()
    trailer = read_trailer_of(os.fspath(vault.store.packs.path(older)))
    shared = [(e.object_id, e.offset, e.length) for e in trailer.entries]
    before = packmap.object_count()
    filler = ((n.to_bytes(32, "big"), 6, 10) for n in range(2 * ADD_BATCH))

    def entries() -> Iterator[tuple[bytes, int, int]]:
        # The older pack's objects first: the first committed batch points them away.
        for n, entry in enumerate([*shared, *filler]):
            if n == ADD_BATCH + 1:
                raise KeyboardInterrupt
            yield entry

    gone = "dd" * 32
    with pytest.raises(KeyboardInterrupt):
        packmap.add(gone, entries(), None)
    assert packmap.locate(shared[0][0]).pack == gone  # type: ignore[union-attr]
    vault.close()
    with Vault.open(vault.path) as again:
        again.store.packs.map()  # no file for it: the add is undone
        packs, pending = _map_state(again)
        assert pending == [] and packs == {older}
        for object_id, offset, _ in shared:
            found = again.store.packs.map().locate(object_id)
            assert found is not None and (found.pack, found.offset) == (older, offset)
        assert again.store.packs.map().object_count() == before
        assert verify(again, read_data=True).ok


def test_only_a_packs_writer_repoints_objects_another_listed_pack_holds(tmp_path: Path) -> None:
    """A reader adding a pack it found on disk unmapped (one a merge may have just unmapped,
    about to unlink it) leaves rows at listed packs; the pack's writer takes them over."""
    listed, found, written = "aa" * 32, "bb" * 32, "cc" * 32
    packmap = PackMap(tmp_path / "map")
    try:
        packmap.add(listed, _entries(10), None)
        packmap.add(found, _entries(20), None, owner=False)
        assert packmap.packs() == {listed, found}
        assert [packmap.locate(n.to_bytes(32, "big")).pack for n in (3, 15)] == [listed, found]  # type: ignore[union-attr]
        packmap.remove(found, (n.to_bytes(32, "big") for n in range(20)))
        assert packmap.object_count() == 10  # the listed pack's objects stay mapped
        packmap.add(written, _entries(10), None)
        assert packmap.locate((3).to_bytes(32, "big")).pack == written  # type: ignore[union-attr]
    finally:
        packmap.close()
