"""Property tests for the pure pieces: Range parsing, cursor tokens, generated PNGs."""

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mjvault.testing.images import make_png
from mjvault.testing.server import _Answer, _decode_token, _encode_token, _parse_range


@given(size=st.integers(1, 10_000), first=st.integers(0, 12_000), length=st.integers(0, 12_000))
def test_closed_ranges_select_what_slicing_would(size: int, first: int, length: int) -> None:
    last = first + length
    span = _parse_range(f"bytes={first}-{last}", size)
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    if first >= size:
        assert span is None
    else:
        assert span is not None
        start, stop = span
        assert data[start : stop + 1] == data[first : last + 1]


@given(size=st.integers(1, 10_000), first=st.integers(0, 12_000))
def test_open_ranges_run_to_the_end(size: int, first: int) -> None:
    span = _parse_range(f"bytes={first}-", size)
    assert span == ((first, size - 1) if first < size else None)


@given(size=st.integers(1, 10_000), suffix=st.integers(1, 12_000))
def test_suffix_ranges_take_the_last_bytes(size: int, suffix: int) -> None:
    assert _parse_range(f"bytes=-{suffix}", size) == (max(0, size - suffix), size - 1)


@given(st.text(max_size=30))
def test_garbage_ranges_never_raise(header: str) -> None:
    span = _parse_range(header, 100)
    assert span is None or 0 <= span[0] <= span[1] < 100


@given(st.dictionaries(st.sampled_from(["g", "a", "o", "t"]), st.integers(-(2**62), 2**62)))
def test_tokens_round_trip(state: dict[str, int]) -> None:
    assert _decode_token(_encode_token(state)) == state


@given(st.text(max_size=40))
def test_bad_tokens_are_400_answers(token: str) -> None:
    try:
        value = _decode_token(token)
    except _Answer as answer:
        assert answer.status == 400
    else:
        assert isinstance(value, dict)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**64),
    width=st.integers(1, 80),
    height=st.integers(1, 80),
    hint=st.none() | st.integers(0, 60_000),
)
def test_generated_pngs_always_decode(seed: int, width: int, height: int, hint: int | None) -> None:
    image = Image.open(io.BytesIO(make_png(seed, width, height, size_hint=hint)))
    image.load()
    assert image.width == width and image.height >= height
