"""Version 2 tree leaves (docs/FORMAT.md §6): one encoding per job list, read back exactly,
damage refused, and translated through an encrypting remote byte for byte."""

from __future__ import annotations

import uuid

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import leaves, tree
from mjvault.errors import IntegrityError
from mjvault.remotes.crypto import rewrite_ids
from mjvault.tree import JobEntry, Leaf, decode_node, encode_node

# Never 32 zero bytes (no object has that id), nor what the test translation makes zero.
object_ids = (
    st.binary(min_size=32, max_size=32)
    .filter(lambda b: any(b) and b != bytes((0x5A,)) * 32)
    .map(bytes.hex)
)
job_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),  # not canonical: kept as text
    st.uuids().map(lambda u: u.hex),
    st.text(min_size=1, max_size=40),
)
entries = st.builds(
    JobEntry,
    job_ids,
    object_ids,
    st.lists(st.one_of(st.none(), object_ids), max_size=6).map(tuple),
)
leaf_entries = st.lists(entries, max_size=30, unique_by=lambda e: e.job_id)


def leaf_of(items: list[JobEntry]) -> Leaf:
    return Leaf(tuple(sorted(items, key=lambda e: e.job_id)))


def encode_as(leaf: Leaf, version: int) -> bytes:
    """The leaf as a writer of ``version`` leaves makes it (1: as older mjvault did)."""
    previous, tree.LEAF_VERSION = tree.LEAF_VERSION, version
    try:
        return encode_node(leaf)
    finally:
        tree.LEAF_VERSION = previous


def version_of(data: bytes) -> int:
    return int(msgpack.unpackb(data)["v"])


@settings(max_examples=200, deadline=None)
@given(leaf_entries)
def test_a_leaf_round_trips_in_either_version(items: list[JobEntry]) -> None:
    leaf = leaf_of(items)
    data = encode_node(leaf)
    assert version_of(data) == 2
    assert decode_node(data) == leaf
    old = encode_as(leaf, 1)
    assert version_of(old) == 1
    assert decode_node(old) == leaf


@settings(max_examples=200, deadline=None)
@given(leaf_entries)
def test_a_job_list_has_one_encoding(items: list[JobEntry]) -> None:
    jobs = sorted((e.job_id, e.record, e.images) for e in items)
    data = leaves.encode(jobs)
    assert data is not None
    assert leaves.decode(data) == jobs
    assert leaves.encode(leaves.decode(data)) == data


def test_a_uuid_job_id_takes_16_bytes_and_a_job_of_three_images_146() -> None:
    job = str(uuid.UUID(int=12345))
    entry = JobEntry(job, "ab" * 32, ("cd" * 32, None, "ef" * 32))
    body = msgpack.unpackb(encode_node(Leaf((entry,))))["e"]
    assert len(body) == 2 + 16 + 32 * 4
    assert body[:2] == bytes((3, 0)) and body[2:18] == uuid.UUID(job).bytes
    assert decode_node(encode_node(Leaf((entry,)))) == Leaf((entry,))


@pytest.mark.parametrize(
    "odd",
    [
        JobEntry("x" * 256, "ab" * 32, ()),  # an id of 256 bytes
        JobEntry("", "ab" * 32, ()),  # an empty id: length 0 means a UUID
        JobEntry("job", "ab" * 32, ("cd" * 32,) * 256),  # 256 images
        JobEntry("job", "00" * 32, ()),  # a zero record id
        JobEntry("job", "ab" * 32, ("00" * 32,)),  # a zero image id would read back as none
    ],
)
def test_a_job_version_2_cannot_hold_makes_its_leaf_version_1(odd: JobEntry) -> None:
    leaf = leaf_of([odd, JobEntry(str(uuid.UUID(int=1)), "ab" * 32, ())])
    data = encode_node(leaf)
    assert version_of(data) == 1
    assert decode_node(data) == leaf


@settings(max_examples=200, deadline=None)
@given(leaf_entries.filter(bool), st.data())
def test_a_cut_leaf_is_refused_and_a_flipped_byte_never_reads_as_the_same_leaf(
    items: list[JobEntry], data: st.DataObject
) -> None:
    leaf = leaf_of(items)
    encoded = encode_node(leaf)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(IntegrityError):
        decode_node(encoded[:cut])
    where = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[where] ^= 1 << data.draw(st.integers(0, 7))
    try:
        other = decode_node(bytes(flipped))
    except IntegrityError:
        return
    # It parsed (a flip inside an id, say): the object's id check catches it, and the
    # encoding being one to one means it can never pass for the same leaf.
    assert other != leaf


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_any_job_list_that_decodes_encodes_to_the_same_bytes(data: bytes) -> None:
    try:
        jobs = leaves.decode(data)
    except IntegrityError:
        return
    assert leaves.encode(jobs) == data


@pytest.mark.parametrize(
    "body",
    [
        bytes((0, 4)) + b"abc",  # cut in the job id
        bytes((0, 0)) + bytes(16) + bytes(31),  # cut in the record id
        bytes((0, 3)) + b"\xff\xfe\xfd" + b"\x01" * 32,  # not UTF-8
        bytes((0, 36)) + str(uuid.UUID(int=7)).encode() + b"\x01" * 32,  # a UUID as text
        bytes((0, 1)) + b"a" + bytes(32),  # no record id
        (bytes((0, 1)) + b"b" + b"\x01" * 32) + (bytes((0, 1)) + b"a" + b"\x01" * 32),  # order
        (bytes((0, 1)) + b"a" + b"\x01" * 32) * 2,  # twice
    ],
)
def test_a_malformed_job_list_is_refused(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_node(msgpack.packb({"t": "leaf", "v": 2, "e": body}))


@pytest.mark.parametrize("version", [0, 3, "2", True, None])
def test_a_leaf_of_an_unknown_version_is_refused(version: object) -> None:
    with pytest.raises(IntegrityError, match="version"):
        decode_node(msgpack.packb({"t": "leaf", "v": version, "e": []}))


@settings(max_examples=100, deadline=None)
@given(leaf_entries)
def test_translating_a_leaf_and_back_gives_the_same_bytes(items: list[JobEntry]) -> None:
    """An encrypting remote rewrites every id of a leaf and clone rewrites them back: the
    plain leaf, hence its id, must come back byte for byte, in either version."""

    def there(object_id: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in object_id)

    for version in (1, 2):
        plain = encode_as(leaf_of(items), version)
        remote = rewrite_ids(plain, there)
        assert version_of(remote) == version_of(plain)
        moved = decode_node(remote)
        assert isinstance(moved, Leaf)
        for before, after in zip(leaf_of(items).entries, moved.entries, strict=True):
            assert after.record == there(bytes.fromhex(before.record)).hex()
            assert [i is None for i in after.images] == [i is None for i in before.images]
        assert rewrite_ids(remote, there) == plain
