"""Real, decodable media bytes generated deterministically from a seed.

PNGs are written chunk by chunk here rather than through Pillow: a benchmark archive needs
about a gigabyte of incompressible images, and storing random rows in deflate "stored" blocks
costs little more than a memory copy, where Pillow would run zlib over every byte. WebP and
JPEG go through Pillow (their encoders are the point). The MP4 is a minimal ISO-BMFF file
(``ftyp`` + ``moov``/``mvhd`` + ``mdat``): right magic and box structure, no real video track.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Deflate stored blocks carry at most 65535 bytes each.
_STORED_BLOCK_MAX = 0xFFFF
# Lossy WebP of noise at quality 80 costs about this many bytes per pixel (measured, libwebp 1.x).
_WEBP_NOISE_BYTES_PER_PIXEL = 0.69
_JPEG_NOISE_BYTES_PER_PIXEL = 0.92


def _rng(seed: int, salt: str) -> random.Random:
    # A string seed hashes stably across runs (unlike hash()), and the salt keeps the PNG,
    # WebP and MP4 streams of one seed independent of each other.
    return random.Random(f"{salt}:{seed}")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _blob_picture(seed: int, width: int, height: int) -> Image.Image:
    """A soft, colourful picture: a tiny random tile scaled up. Unique per seed, compresses well."""
    rng = _rng(seed, "picture")
    tile = Image.frombytes("RGB", (4, 4), rng.randbytes(4 * 4 * 3))
    return tile.resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR)


def _deflate_stored(data: bytes) -> bytes:
    """``data`` as non-final deflate stored blocks (no compression, byte aligned)."""
    out = bytearray()
    view = memoryview(data)
    for start in range(0, len(data), _STORED_BLOCK_MAX):
        block = view[start : start + _STORED_BLOCK_MAX]
        size = len(block)
        out += struct.pack("<BHH", 0, size, size ^ 0xFFFF)
        out += block
    return bytes(out)


def _png_from_rows(width: int, height: int, noise_rows: bytes, picture_rows: bytes) -> bytes:
    """A truecolour PNG whose scanlines are ``noise_rows`` (stored) then ``picture_rows``
    (deflated). Both already carry the per-row filter byte."""
    # One zlib stream: header, stored blocks (not final), then a raw deflate stream of the
    # compressible rows whose last block is final, then the Adler-32 of everything.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    tail = compressor.compress(picture_rows) + compressor.flush()
    adler = zlib.adler32(picture_rows, zlib.adler32(noise_rows))
    idat = b"\x78\x01" + _deflate_stored(noise_rows) + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def make_png(
    seed: int, width: int = 64, height: int = 64, *, size_hint: int | None = None
) -> bytes:
    """A valid RGB PNG, the same bytes for the same arguments.

    Without ``size_hint`` the picture is a smooth blend of colours. With it, enough rows are
    random noise (incompressible) that the file is about ``size_hint`` bytes and the rest is
    one flat colour; the height grows if ``width x height`` is too small to hold that much.
    """
    if width < 1 or height < 1:
        raise ValueError("PNG dimensions must be positive")
    row_bytes = 1 + width * 3
    noise_row_count = 0
    if size_hint is not None and size_hint > 0:
        noise_row_count = max(0, (size_hint - 200) // row_bytes)
        height = max(height, noise_row_count)
    picture_row_count = height - noise_row_count
    noise = b""
    if noise_row_count:
        rows = bytearray(_rng(seed, "png-noise").randbytes(noise_row_count * row_bytes))
        rows[0::row_bytes] = bytes(noise_row_count)  # filter type 0 (None) on every row
        noise = bytes(rows)
    if noise_row_count:
        # Below the noise, one flat colour: deflates to almost nothing, so the size holds.
        colour = _rng(seed, "png-fill").randbytes(3)
        picture = (b"\x00" + colour * width) * picture_row_count
    else:
        image = _blob_picture(seed, width, picture_row_count)
        picture = _with_filter_bytes(image.tobytes(), width * 3)
    return _png_from_rows(width, height, noise, picture)


def _with_filter_bytes(pixels: bytes, stride: int) -> bytes:
    """Prefix every scanline with filter type 0 (None)."""
    out = bytearray(len(pixels) + len(pixels) // stride)
    view = memoryview(pixels)
    position = 0
    for start in range(0, len(pixels), stride):
        position += 1  # the zero filter byte is already there
        out[position : position + stride] = view[start : start + stride]
        position += stride
    return bytes(out)


def _noise_side(size_hint: int, bytes_per_pixel: float) -> int:
    return max(16, int((size_hint / bytes_per_pixel) ** 0.5))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_webp(
    seed: int, width: int = 64, height: int = 64, *, size_hint: int | None = None
) -> bytes:
    """A lossy WebP of the same picture ``make_png`` draws, or of noise sized to ``size_hint``."""
    if size_hint:
        side = _noise_side(size_hint, _WEBP_NOISE_BYTES_PER_PIXEL)
        rng = _rng(seed, "webp-noise")
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        return _encode(image, "WEBP", quality=80, method=0)
    return _encode(_blob_picture(seed, width, height), "WEBP", quality=80, method=4)


def make_jpeg(
    seed: int, width: int = 64, height: int = 64, *, size_hint: int | None = None
) -> bytes:
    """A baseline JPEG of ``make_png``'s picture, or of noise sized to ``size_hint``."""
    if size_hint:
        side = _noise_side(size_hint, _JPEG_NOISE_BYTES_PER_PIXEL)
        rng = _rng(seed, "jpeg-noise")
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        return _encode(image, "JPEG", quality=90)
    return _encode(_blob_picture(seed, width, height), "JPEG", quality=90)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def make_mp4(seed: int, *, payload_size: int = 4096) -> bytes:
    """A tiny ISO-BMFF (MP4) file: ``ftyp``, a ``moov`` with a movie header, and ``mdat``."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    timescale, duration = 1000, 5000
    mvhd = _box(
        b"mvhd",
        struct.pack(">B3xIIII", 0, 0, 0, timescale, duration)
        + struct.pack(">IH10x", 0x00010000, 0x0100)  # rate 1.0, volume 1.0, reserved
        + struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)  # matrix
        + bytes(24)  # pre_defined
        + struct.pack(">I", 2),  # next_track_ID
    )
    moov = _box(b"moov", mvhd)
    mdat = _box(b"mdat", _rng(seed, "mp4").randbytes(payload_size))
    return ftyp + moov + mdat


def media_for_extension(
    ext: str, seed: int, width: int, height: int, *, size_hint: int | None = None
) -> bytes:
    """The generator for a file extension (``png``, ``webp``, ``jpg``/``jpeg``, ``mp4``)."""
    ext = ext.lower().lstrip(".")
    if ext == "png":
        return make_png(seed, width, height, size_hint=size_hint)
    if ext == "webp":
        return make_webp(seed, width, height, size_hint=size_hint)
    if ext in ("jpg", "jpeg"):
        return make_jpeg(seed, width, height, size_hint=size_hint)
    if ext == "mp4":
        return make_mp4(seed)
    raise ValueError(f"no generator for .{ext}")


def with_text_chunk(png: bytes, keyword: bytes, text: bytes) -> bytes:
    """``png`` with a ``tEXt`` chunk (valid CRC) before ``IEND``: the same picture, other bytes.

    A million-job account serves a handful of cached pictures; the tag (a job id and image
    number) keeps every file distinct, so content addressing stores each one.
    """
    iend = _chunk(b"IEND", b"")
    if not png.endswith(iend):
        raise ValueError("not a PNG ending in IEND")
    return png[: -len(iend)] + _chunk(b"tEXt", keyword + b"\x00" + text) + iend
