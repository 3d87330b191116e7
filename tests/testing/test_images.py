import io

import pytest
from PIL import Image

from mjvault.testing.images import make_jpeg, make_mp4, make_png, make_webp, media_for_extension


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a broken stream raises here
    return image


@pytest.mark.parametrize("maker,fmt", [(make_png, "PNG"), (make_webp, "WEBP"), (make_jpeg, "JPEG")])
def test_images_decode_and_are_deterministic(maker, fmt) -> None:
    data = maker(7, 48, 32)
    image = _decode(data)
    assert image.format == fmt
    assert image.size == (48, 32)
    assert maker(7, 48, 32) == data
    assert maker(8, 48, 32) != data


def test_png_size_hint_gives_a_large_incompressible_decodable_file() -> None:
    data = make_png(1, 512, 512, size_hint=700_000)
    assert 650_000 < len(data) < 720_000
    assert _decode(data).size == (512, 512)
    import zlib

    assert len(zlib.compress(data, 1)) > 0.95 * len(data)


def test_png_grows_to_hold_a_size_hint_larger_than_its_pixels() -> None:
    data = make_png(1, 16, 16, size_hint=20_000)
    image = _decode(data)
    assert image.width == 16 and image.height > 16
    assert len(data) > 18_000


@pytest.mark.parametrize("maker", [make_webp, make_jpeg])
def test_lossy_size_hint_is_roughly_met(maker) -> None:
    data = maker(2, size_hint=160_000)
    assert 100_000 < len(data) < 220_000
    _decode(data)


def test_mp4_has_iso_bmff_boxes() -> None:
    data = make_mp4(3)
    assert data[4:8] == b"ftyp" and data[8:12] == b"isom"
    position, kinds = 0, []
    while position < len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        kinds.append(data[position + 4 : position + 8])
        assert size >= 8
        position += size
    assert position == len(data)
    assert kinds == [b"ftyp", b"moov", b"mdat"]
    assert make_mp4(3) == data and make_mp4(4) != data


def test_media_for_extension_dispatches_and_refuses_unknown() -> None:
    assert media_for_extension("PNG", 1, 8, 8)[:8] == b"\x89PNG\r\n\x1a\n"
    assert media_for_extension("jpg", 1, 8, 8)[:3] == b"\xff\xd8\xff"
    assert media_for_extension("webp", 1, 8, 8)[8:12] == b"WEBP"
    with pytest.raises(ValueError):
        media_for_extension("gif", 1, 8, 8)
