"""The structure checks on real generated images and videos, cut at random points."""

from __future__ import annotations

import functools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault.mediacheck import MAX_MP4_BOXES, StructureCheck, structure_problem
from mjvault.testing.images import make_jpeg, make_mp4, make_png, make_webp

KINDS = ("png", "jpg", "webp", "mp4")


@functools.cache
def media(kind: str, seed: int, large: bool) -> bytes:
    hint = 40_000 if large else None
    if kind == "png":
        return make_png(seed, 40, 24, size_hint=hint)
    if kind == "jpg":
        return make_jpeg(seed, 40, 24, size_hint=hint)
    if kind == "webp":
        return make_webp(seed, 40, 24, size_hint=hint)
    return make_mp4(seed, payload_size=40_000 if large else 512)


def fed(kind: str, data: bytes, cuts: list[int]) -> StructureCheck:
    """The check fed ``data`` in pieces split at ``cuts``, as a network would deliver it."""
    check = StructureCheck(kind)
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, end in zip(edges, edges[1:], strict=False):
        check.update(data[start:end])
    return check


files = st.tuples(st.sampled_from(KINDS), st.integers(0, 15), st.booleans())
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(files, st.lists(st.integers(0, 10**6), max_size=6))
def test_a_whole_file_passes_however_it_arrives(
    file: tuple[str, int, bool], cuts: list[int]
) -> None:
    data = media(*file)
    assert fed(file[0], data, cuts).problem() is None


@PROPERTY
@given(files, st.data())
def test_a_file_cut_anywhere_is_caught(file: tuple[str, int, bool], data: st.DataObject) -> None:
    whole = media(*file)
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=4), label="chunks")
    problem = fed(file[0], whole[:cut], cuts).problem()
    assert problem is not None
    assert structure_problem(file[0], whole[:cut]) == problem


@PROPERTY
@given(files, st.integers(0, 20))
def test_cuts_near_the_end_are_caught(file: tuple[str, int, bool], short: int) -> None:
    whole = media(*file)
    assert structure_problem(file[0], whole[: len(whole) - 1 - short]) is not None


@pytest.mark.parametrize("kind", ["gif", "webm", None])
def test_formats_without_a_cheap_check_pass(kind: str | None) -> None:
    assert structure_problem(kind, b"GIF89a cut") is None


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def test_mp4_boxes_with_64_bit_sizes_and_one_that_runs_to_the_end() -> None:
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00")
    moov = box(b"moov", bytes(100))
    large = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + 300) + bytes(300)
    assert structure_problem("mp4", ftyp + moov + large) is None
    assert structure_problem("mp4", ftyp + moov + large[:-1]) is not None
    # A 64-bit header split across chunks.
    check = fed("mp4", ftyp + moov + large, [len(ftyp + moov) + 5, len(ftyp + moov) + 11])
    assert check.problem() is None
    open_ended = struct.pack(">I", 0) + b"mdat" + bytes(50)
    assert structure_problem("mp4", ftyp + moov + open_ended) is None
    assert "no moov" in (structure_problem("mp4", ftyp + box(b"mdat", bytes(9))) or "")
    assert "claims 3 bytes" in (
        structure_problem("mp4", ftyp + struct.pack(">I", 3) + b"junk") or ""
    )


def test_an_mp4_of_endless_tiny_boxes_is_refused() -> None:
    tiny = box(b"free", b"") * (MAX_MP4_BOXES + 1)
    problem = structure_problem("mp4", box(b"ftyp", b"isom") + tiny)
    assert problem is not None and "top-level boxes" in problem


def test_jpeg_zero_padding_after_the_end_marker_is_fine() -> None:
    data = make_jpeg(3)
    assert structure_problem("jpg", data + bytes(20)) is None
    assert structure_problem("jpg", data[:-2] + bytes(20)) is not None


def test_webp_longer_than_its_riff_size_is_caught() -> None:
    data = make_webp(3)
    assert "says it has" in (structure_problem("webp", data + b"x") or "")
