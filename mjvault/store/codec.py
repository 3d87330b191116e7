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
# zstd with a trained dictionary: only inside a pack, whose trailer names the dictionary object
# (docs/FORMAT.md, "Packs"). A loose object never uses it, so every loose file stays readable
# alone.
ENCODING_ZSTD_DICT = 2

CIPHER_AES_256_GCM = 1
NONCE_SIZE = 12

ZSTD_LEVEL = 3
# Records (~540 bytes of plaintext) against the vault's dictionary: level 11 makes them 3 bytes
# smaller than level 3 (~106 against ~109) for ~7 µs more each, where the time of a frame this
# small is its set-up; larger objects (tree leaves, ~3.7 KB of ids that barely compress) would
# pay ~22 µs more each for nothing. docs/design.md, "Bytes on disk per job at 100k jobs".
SMALL_DICT_LEVEL = 11
SMALL_DICT_PLAINTEXT = 1024
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


# The first bytes of an object file answer three questions without reading the rest: its framing,
# whether the file is the image itself (and of what kind), and, for a plain frame, the size of
# its plaintext. 6 bytes of frame header and a zstd frame header (at most 18 bytes) fit.
HEAD_SIZE = 32


def is_framed(head: bytes) -> bool:
    """Whether the object file starting with ``head`` is framed (``MJVO`` or ``MJVE``), so
    its bytes are not its plaintext."""
    return head[:4] in (MAGIC_FRAMED, MAGIC_ENCRYPTED)


def stored_media_kind(head: bytes) -> str | None:
    """The media kind of the object file starting with ``head`` when that file is the image
    itself (stored raw), so a link to it shows the image; None when it is framed or not media."""
    if is_framed(head):
        return None
    return media_kind(head)


def plain_size_of(head: bytes, stored: int) -> int:
    """The plaintext size of a plain-vault object file of ``stored`` bytes starting with
    ``head`` (its first :data:`HEAD_SIZE` bytes): a zstd frame carries its content size, an
    identity frame is its payload. ``stored`` for a raw file, and for one whose header cannot
    tell (damaged, sealed, or a zstd frame without a size): `mjvault verify` judges those."""
    if head[:4] != MAGIC_FRAMED or len(head) < 6 or head[4] != FRAME_VERSION:
        return stored
    if head[5] not in (ENCODING_ZSTD, ENCODING_ZSTD_DICT):
        return stored - 6
    try:
        size = zstandard.frame_content_size(head[6:])
    except zstandard.ZstdError:
        return stored
    return size if size >= 0 else stored


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


class Dictionary:
    """A trained zstd dictionary and the id of the object that stores it.

    Its (de)compressors are built once per thread, like the plain ones: building one costs
    more than the small records it is used for.
    """

    def __init__(self, object_id: str, content: bytes) -> None:
        self.object_id = object_id
        self.content = content
        try:
            self._dict = zstandard.ZstdCompressionDict(content)
            self._dict.precompute_compress(level=ZSTD_LEVEL)
            self._small_dict = zstandard.ZstdCompressionDict(content)
            self._small_dict.precompute_compress(level=SMALL_DICT_LEVEL)
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"dictionary {object_id} does not load: {exc}") from None
        self._local = threading.local()

    def compressor(self, size: int = SMALL_DICT_PLAINTEXT + 1) -> zstandard.ZstdCompressor:
        """The compressor for a plaintext of ``size`` bytes (a slower level for small ones)."""
        if size <= SMALL_DICT_PLAINTEXT:
            if not hasattr(self._local, "small"):
                self._local.small = zstandard.ZstdCompressor(
                    level=SMALL_DICT_LEVEL, dict_data=self._small_dict, write_dict_id=False
                )
            return self._local.small
        if not hasattr(self._local, "compressor"):
            self._local.compressor = zstandard.ZstdCompressor(
                level=ZSTD_LEVEL, dict_data=self._dict, write_dict_id=False
            )
        return self._local.compressor

    def decompressor(self) -> zstandard.ZstdDecompressor:
        if not hasattr(self._local, "decompressor"):
            self._local.decompressor = zstandard.ZstdDecompressor(dict_data=self._dict)
        return self._local.decompressor


def train_dictionary(samples: list[bytes], size: int) -> bytes | None:
    """A zstd dictionary of at most ``size`` bytes trained on ``samples``; None when zstd finds
    too little in common (few or tiny samples)."""
    try:
        chosen: list[bytes | bytearray | memoryview] = list(samples)
        return zstandard.train_dictionary(size, chosen, level=ZSTD_LEVEL).as_bytes()
    except zstandard.ZstdError:
        return None


def encode_payload(
    plaintext: bytes, *, compress: bool, dictionary: Dictionary | None = None
) -> tuple[int, bytes]:
    """Pick the encoding for ``plaintext``: zstd when asked and when it actually shrinks it,
    with ``dictionary`` when one is given (inside a pack only)."""
    if compress and len(plaintext) >= MIN_COMPRESS_SIZE:
        if dictionary is not None:
            packed = dictionary.compressor(len(plaintext)).compress(plaintext)
            if len(packed) < len(plaintext):
                return ENCODING_ZSTD_DICT, packed
        packed = _compressor().compress(plaintext)
        if len(packed) < len(plaintext):
            return ENCODING_ZSTD, packed
    return ENCODING_IDENTITY, plaintext


def decode_payload(encoding: int, payload: bytes, dictionary: Dictionary | None = None) -> bytes:
    if encoding == ENCODING_IDENTITY:
        return payload
    if encoding in (ENCODING_ZSTD, ENCODING_ZSTD_DICT):
        if encoding == ENCODING_ZSTD_DICT and dictionary is None:
            raise CorruptObject("payload needs a dictionary and its pack names none")
        try:
            # Frames written by encode_payload always carry their content size; a damaged
            # header could claim terabytes, so the claim is checked before any allocation.
            size = zstandard.frame_content_size(payload)
            if size < 0 or size > MAX_DECOMPRESSED:  # -1: no size in the header
                raise CorruptObject(f"zstd payload claims an impossible size ({size})")
            if encoding == ENCODING_ZSTD_DICT:
                assert dictionary is not None
                return dictionary.decompressor().decompress(payload)
            return _decompressor().decompress(payload)
        except (zstandard.ZstdError, MemoryError) as exc:
            raise CorruptObject(f"zstd payload does not decode: {exc}") from None
    raise CorruptObject(f"unknown encoding {encoding}")


def frame_head(encoding: int = ENCODING_IDENTITY) -> bytes:
    """The header of a plain frame whose payload has ``encoding`` (a streamed write puts it
    before the payload it has not read yet)."""
    return MAGIC_FRAMED + bytes((FRAME_VERSION, encoding))


def frame_plain(plaintext: bytes, *, compress: bool, dictionary: Dictionary | None = None) -> bytes:
    encoding, payload = encode_payload(plaintext, compress=compress, dictionary=dictionary)
    return frame_head(encoding) + payload


def unframe_plain(data: bytes, dictionary: Dictionary | None = None) -> bytes:
    """Plaintext of a plain-vault object file (raw or ``MJVO``)."""
    if data[:4] == MAGIC_FRAMED:
        if len(data) < 6 or data[4] != FRAME_VERSION:
            raise CorruptObject("bad object frame header")
        return decode_payload(data[5], data[6:], dictionary)
    if data[:4] == MAGIC_ENCRYPTED:
        raise CorruptObject("encrypted object in a plain vault")
    return data


def open_unsealed(data: bytes, dictionary: Dictionary | None = None) -> bytes | None:
    """Plaintext of an object file read without keys: raw or ``MJVO``; None when it is sealed
    (``MJVE``: another vault's keys). Unchecked: the caller compares the name."""
    if data[:4] == MAGIC_ENCRYPTED:
        return None
    return unframe_plain(data, dictionary)
