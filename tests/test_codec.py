"""Object framing and encryption round-trips, and that damage is always detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault.errors import CorruptObject
from mjvault.store.codec import (
    HEAD_SIZE,
    can_store_raw,
    frame_head,
    frame_plain,
    is_framed,
    media_kind,
    open_unsealed,
    plain_size_of,
    stored_media_kind,
    unframe_plain,
)
from mjvault.store.crypto import VaultKeys

KEYS = VaultKeys(b"k" * 32)


@given(st.binary(max_size=4096), st.booleans())
def test_plain_frame_round_trip(data: bytes, compress: bool) -> None:
    assert unframe_plain(frame_plain(data, compress=compress)) == data


@given(st.binary(max_size=4096), st.booleans())
def test_sealed_round_trip(data: bytes, compress: bool) -> None:
    oid = "ab" * 32
    assert KEYS.open(oid, KEYS.seal(oid, data, compress=compress)) == data


@given(st.binary(min_size=1, max_size=512), st.data())
def test_any_flipped_bit_in_a_sealed_object_is_detected(data: bytes, pick: st.DataObject) -> None:
    oid = "cd" * 32
    sealed = bytearray(KEYS.seal(oid, data, compress=False))
    position = pick.draw(st.integers(0, len(sealed) - 1))
    bit = pick.draw(st.integers(0, 7))
    sealed[position] ^= 1 << bit
    with pytest.raises(CorruptObject):
        KEYS.open(oid, bytes(sealed))


def test_sealed_object_under_another_name_is_refused() -> None:
    sealed = KEYS.seal("aa" * 32, b"record", compress=True)
    with pytest.raises(CorruptObject, match="swapped"):
        KEYS.open("bb" * 32, sealed)


def test_other_vault_key_cannot_open() -> None:
    sealed = KEYS.seal("aa" * 32, b"record", compress=True)
    with pytest.raises(CorruptObject):
        VaultKeys(b"x" * 32).open("aa" * 32, sealed)


def test_media_is_stored_raw_but_a_frame_lookalike_is_not() -> None:
    assert media_kind(b"\x89PNG\r\n\x1a\n....") == "png"
    assert media_kind(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert media_kind(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert can_store_raw(b"\xff\xd8\xff\xe0")
    assert not can_store_raw(b"MJVO\x01\x00")
    assert not can_store_raw(b"plain text")


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def test_heads_answer_framing_and_linkable_kind() -> None:
    """A raw image's file is the image (linkable, of its kind); a framed or sealed one is not."""
    sealed = KEYS.seal("ab" * 32, PNG, compress=False)
    framed = frame_plain(b"{}" * 100, compress=True)
    assert (is_framed(PNG), stored_media_kind(PNG[:16])) == (False, "png")
    assert is_framed(framed) and stored_media_kind(framed[:16]) is None
    assert is_framed(sealed) and stored_media_kind(sealed[:16]) is None
    assert stored_media_kind(b"plain text") is None


@given(st.binary(max_size=4096), st.booleans())
def test_plain_size_from_the_head(data: bytes, compress: bool) -> None:
    framed = frame_plain(data, compress=compress)
    assert plain_size_of(framed[:HEAD_SIZE], len(framed)) == len(data)


def test_plain_size_of_what_the_head_cannot_tell_is_the_stored_size() -> None:
    assert plain_size_of(PNG[:HEAD_SIZE], len(PNG)) == len(PNG)  # raw: the file is the plaintext
    damaged = b"MJVO\x01\x01" + b"not a zstd frame"
    assert plain_size_of(damaged, 999) == 999
    sealed = KEYS.seal("ab" * 32, b"{}" * 100, compress=True)
    assert plain_size_of(sealed[:HEAD_SIZE], len(sealed)) == len(sealed)


def test_open_unsealed() -> None:
    assert open_unsealed(PNG) == PNG
    assert open_unsealed(frame_plain(b"{}" * 100, compress=True)) == b"{}" * 100
    assert open_unsealed(KEYS.seal("ab" * 32, b"{}", compress=False)) is None


def test_a_streamed_frame_is_its_head_then_the_payload() -> None:
    data = b"x" * 100
    assert unframe_plain(frame_head() + data) == data
    assert frame_plain(data, compress=False) == frame_head() + data
