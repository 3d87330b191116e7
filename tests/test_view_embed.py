import io

import pytest
from PIL import Image

from mjvault.model import job_from_record
from mjvault.views.embed import embed_metadata

JOB = job_from_record(
    {
        "id": "job-1",
        "full_command": 'a "fox" & <hound> \u732b --ar 3:2 --v 6',
        "enqueue_time": "2024-01-01 00:00:00",
    }
)


def _encode(fmt: str, mode: str = "RGB", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (16, 8), (10, 200, 30, 128)[: len(mode)]).save(buffer, fmt, **options)
    return buffer.getvalue()


def test_png_gets_text_chunks_and_keeps_pixels() -> None:
    original = _encode("PNG")
    embedded = embed_metadata(original, JOB)
    with Image.open(io.BytesIO(embedded)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.text["Description"] == 'a "fox" & <hound> \u732b'
        assert image.text["parameters"] == '{"ar": "3:2", "version": "6"}'
        assert image.tobytes() == before.tobytes()


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("JPEG", "RGB", {}),
        ("WEBP", "RGB", {"lossless": False}),
        ("WEBP", "RGB", {"lossless": True}),
        ("WEBP", "RGBA", {"lossless": True}),
    ],
)
def test_xmp_for_jpeg_and_webp(fmt: str, mode: str, options: dict[str, object]) -> None:
    original = _encode(fmt, mode, **options)
    embedded = embed_metadata(original, JOB)
    with Image.open(io.BytesIO(embedded)) as image, Image.open(io.BytesIO(original)) as before:
        xmp = image.info.get("xmp")
        assert xmp is not None
        text = xmp.decode() if isinstance(xmp, bytes) else xmp
        assert "a &quot;fox&quot; &amp; &lt;hound&gt; \u732b" in text or (
            'a "fox" &amp; &lt;hound&gt; \u732b' in text
        )
        assert "<mjv:jobId>job-1</mjv:jobId>" in text
        assert image.size == before.size and image.tobytes() == before.tobytes()


def test_other_formats_pass_through() -> None:
    assert embed_metadata(b"\x00\x00\x00\x18ftypmp42", JOB) == b"\x00\x00\x00\x18ftypmp42"
    broken_png = b"\x89PNG\r\n\x1a\n\x00\x00"
    assert embed_metadata(broken_png, JOB) == broken_png
