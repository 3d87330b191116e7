"""How an object's plaintext becomes the bytes of its file, and back (docs/FORMAT.md, "Objects").

Three framings, told apart by the first four bytes so any object can be checked alone:

* raw        — the file is the plaintext itself. Plain vaults use it for media that is
               already compressed, so a symlink to the object opens in any viewer and
               ``b3sum FILE`` prints the object's name.
* ``MJVO``   — plain framed: magic, version, encoding byte, payload.
* ``MJVE``   — encrypted: magic, version, cipher byte, 12-byte nonce, AEAD ciphertext+tag.

A plaintext that itself starts with a magic is never stored raw, so the rule is unambiguous.
"""

from __future__ import annotations

import threading

import zstandard

from mjvault.errors import CorruptObject

MAGIC_FRAMED = b"MJVO"
MAGIC_ENCRYPTED = b"MJVE"
FRAME_VERSION = 1

ENCODING_IDENTITY = 0
ENCODING_ZSTD = 1

CIPHER_AES_256_GCM = 1
NONCE_SIZE = 12

ZSTD_LEVEL = 3
# Only metadata is compressed (records, tree nodes, manifests, view state): far below this.
MAX_DECOMPRESSED = 1 << 30
# Below this a zstd frame rarely pays for its own header.
MIN_COMPRESS_SIZE = 64


def media_kind(head: bytes) -> str | None:
    """``png``, ``jpg``, ``webp``, ``gif``, ``mp4`` or ``webm`` from the first bytes, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def can_store_raw(head: bytes) -> bool:
    """Raw storage is for already-compressed media whose bytes cannot be mistaken for a frame."""
    return media_kind(head) is not None and head[:4] not in (MAGIC_FRAMED, MAGIC_ENCRYPTED)


# zstandard's (de)compressor objects are not safe to share between threads (verify and sync
# use pools), and building one per call costs more than the small records they handle.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "compressor"):
        _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return _local.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor


def encode_payload(plaintext: bytes, *, compress: bool) -> tuple[int, bytes]:
    """Pick the encoding for ``plaintext``: zstd when asked and when it actually shrinks it."""
    if compress and len(plaintext) >= MIN_COMPRESS_SIZE:
        packed = _compressor().compress(plaintext)
        if len(packed) < len(plaintext):
            return ENCODING_ZSTD, packed
    return ENCODING_IDENTITY, plaintext


def decode_payload(encoding: int, payload: bytes) -> bytes:
    if encoding == ENCODING_IDENTITY:
        return payload
    if encoding == ENCODING_ZSTD:
        try:
            # Frames written by encode_payload always carry their content size; a damaged
            # header could claim terabytes, so the claim is checked before any allocation.
            size = zstandard.frame_content_size(payload)
            if size < 0 or size > MAX_DECOMPRESSED:  # -1: no size in the header
                raise CorruptObject(f"zstd payload claims an impossible size ({size})")
            return _decompressor().decompress(payload)
        except (zstandard.ZstdError, MemoryError) as exc:
            raise CorruptObject(f"zstd payload does not decode: {exc}") from None
    raise CorruptObject(f"unknown encoding {encoding}")


def frame_plain(plaintext: bytes, *, compress: bool) -> bytes:
    encoding, payload = encode_payload(plaintext, compress=compress)
    return MAGIC_FRAMED + bytes((FRAME_VERSION, encoding)) + payload


def unframe_plain(data: bytes) -> bytes:
    """Plaintext of a plain-vault object file (raw or ``MJVO``)."""
    if data[:4] == MAGIC_FRAMED:
        if len(data) < 6 or data[4] != FRAME_VERSION:
            raise CorruptObject("bad object frame header")
        return decode_payload(data[5], data[6:])
    if data[:4] == MAGIC_ENCRYPTED:
        raise CorruptObject("encrypted object in a plain vault")
    return data
