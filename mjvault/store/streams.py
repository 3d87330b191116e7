"""Checking an object file that is too large to hold: its bytes given in pieces, its plaintext
given back in pieces, its name (and AEAD tag) checked at the end (docs/FORMAT.md §3.2).

Push reads a large local object this way while uploading it, pull and ``verify --remote
--read-data`` a large remote object while downloading it. Whoever sends or keeps the bytes
holds the last piece back until :meth:`ObjectCheck.finish` has returned: a damaged object is
never completed on a remote nor published in a vault.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import blake3
import zstandard

from mjvault.errors import CorruptObject
from mjvault.store.codec import (
    ENCODING_IDENTITY,
    ENCODING_ZSTD,
    FRAME_VERSION,
    MAGIC_ENCRYPTED,
    MAGIC_FRAMED,
)
from mjvault.store.crypto import SEALED_HEADER, StreamOpener, VaultKeys

if TYPE_CHECKING:
    from pathlib import Path

# Bytes read from a file at a time.
PIECE = 1024 * 1024


class ObjectCheck:
    """One object file, fed in pieces, checked against ``object_id``.

    ``keys``: the keys the object was sealed and named with (None: a plain object, raw or
    ``MJVO``). ``also``: more hashers given the plaintext (the object's name under other
    keys, when it is renamed on the way).

    While a key rotation is unfinished (``keys.rotating``) the file may be sealed under either
    object key, and only the tag at the end tells which: a second check under the retired key
    runs beside this one (twice the AES, only then). :attr:`retired` says it was that one; the
    file's bytes were good, the plaintext given out along the way was not
    (:attr:`misread`: :func:`checked_pieces` refuses to pass that on). A caller that can read
    the bytes twice learns the key first and settles on it (:meth:`settle`, as
    :func:`checked_file` does).
    """

    def __init__(
        self, object_id: str, keys: VaultKeys | None, *, also: tuple[Any, ...] = ()
    ) -> None:
        self.object_id = object_id
        self.keys = keys
        self.hasher = blake3.blake3(key=keys.naming_key) if keys else blake3.blake3()
        self.also = also
        self.size = 0  # file bytes fed
        self.plain_size = 0
        #: The first 16 bytes of plaintext (enough to tell media from other content).
        self.head = b""
        self._pending = b""  # file bytes before its framing is known
        self._framing: str | None = None
        self._opener: StreamOpener | None = None
        self._encoding: int | None = None
        self._zstd: Any = None
        retired = keys.retired_only() if keys is not None else None
        self._shadow = ObjectCheck(object_id, retired) if retired is not None else None
        self._failed: CorruptObject | None = None  # this lane's damage, while the shadow lives
        self.retired = False
        #: The plaintext given out was decrypted under the wrong key (the retired one won).
        self.misread = False

    @property
    def undecided(self) -> bool:
        """Whether only the tag at the end will tell which object key the file is under."""
        return self._shadow is not None and self.size == 0

    def settle(self, *, retired: bool) -> None:
        """Check under one object key alone, known beforehand (a first pass over the file):
        the retired one, or the current one. The plaintext given out is then the object's.
        Only before the first byte is fed."""
        assert self.undecided and self.keys is not None
        self._shadow = None
        if retired:
            keys = self.keys.retired_only()
            assert keys is not None
            self.keys = keys
            self.retired = True
        else:
            self.keys = self.keys.without_retired()

    def _damaged(self, why: str) -> CorruptObject:
        return CorruptObject(f"object {self.object_id} {why}")

    def feed(self, data: bytes | memoryview) -> bytes:
        """The plaintext these file bytes complete (unchecked until :meth:`finish`)."""
        if self._shadow is None:
            return self._feed(data)
        try:
            self._shadow._feed(data)
        except CorruptObject:
            self._shadow = None
            if self._failed is not None:
                raise self._failed from None
        if self._failed is not None:
            return b""
        try:
            return self._feed(data)
        except CorruptObject as exc:
            if self._shadow is None:
                raise
            self._failed = exc
            return b""

    def _feed(self, data: bytes | memoryview) -> bytes:
        self.size += len(data)
        if self._framing is None:
            self._pending += bytes(data)
            if not self._decide():
                return b""
            data, self._pending = self._pending, b""
        return self._plain(self._body(data))

    def _decide(self) -> bool:
        head = self._pending
        if self.keys is not None:
            if len(head) >= 4 and head[:4] != MAGIC_ENCRYPTED:
                raise self._damaged("is not an encrypted object")
            if len(head) < SEALED_HEADER:
                return False
            self._opener = self.keys.opener(self.object_id, head[:SEALED_HEADER])
            self._pending = head[SEALED_HEADER:]
            self._framing = "sealed"
            return True
        if len(head) < 4:
            return False
        if head[:4] == MAGIC_ENCRYPTED:
            raise self._damaged("is encrypted where a plain object was expected")
        if head[:4] != MAGIC_FRAMED:
            self._framing = "raw"
            return True
        if len(head) < 6:
            return False
        if head[4] != FRAME_VERSION:
            raise self._damaged("has a bad frame header")
        self._start(head[5])
        self._pending = head[6:]
        self._framing = "framed"
        return True

    def _start(self, encoding: int) -> None:
        if encoding == ENCODING_ZSTD:
            self._zstd = zstandard.ZstdDecompressor().decompressobj()
        elif encoding != ENCODING_IDENTITY:
            # Dictionary-coded payloads live only in packs, never in a file of its own.
            raise self._damaged(f"has an encoding a file of its own cannot have ({encoding})")
        self._encoding = encoding

    def _body(self, data: bytes | memoryview) -> bytes | memoryview:
        if self._framing == "raw":
            return data
        if self._opener is not None:
            data = self._opener.update(data)
            if self._encoding is None and data:
                self._start(data[0])
                data = memoryview(data)[1:]
        if self._zstd is not None and data:
            try:
                return bytes(self._zstd.decompress(data))
            except zstandard.ZstdError as exc:
                raise self._damaged(f"has a zstd payload that does not decode: {exc}") from None
        return data

    def _plain(self, plain: bytes | memoryview) -> bytes:
        if not plain:
            return b""
        if len(self.head) < 16:
            self.head += bytes(plain[: 16 - len(self.head)])
        self.plain_size += len(plain)
        self.hasher.update(plain)
        for other in self.also:
            other.update(plain)
        return bytes(plain) if isinstance(plain, memoryview) else plain

    def finish(self) -> bytes:
        """Check the tag and the name; returns the last plaintext (a file under 4 bytes)."""
        if self._shadow is None:
            return self._finish()
        if self._failed is None:
            try:
                return self._finish()
            except CorruptObject as exc:
                self._failed = exc
        shadow = self._shadow
        try:
            last = shadow._finish()
        except CorruptObject:
            raise self._failed from None
        self.retired = self.misread = True
        self.hasher, self.head, self.plain_size = shadow.hasher, shadow.head, shadow.plain_size
        return last

    def _finish(self) -> bytes:
        last = b""
        if self._framing is None:
            if self.keys is not None or self._pending[:4] == MAGIC_FRAMED:
                raise self._damaged("is cut short")
            self._framing = "raw"
            last = self._plain(self._pending)
            self._pending = b""
        if self._opener is not None:
            self._opener.finish()
        if self._framing != "raw" and self._encoding is None:
            raise self._damaged("has no encoding byte")
        if self._zstd is not None and not self._zstd.eof:
            raise self._damaged("has a zstd payload cut short")
        if self.hasher.hexdigest() != self.object_id:
            raise self._damaged("does not match its name (damaged)")
        return last


def file_pieces(fd: int, size: int = PIECE) -> Iterator[bytes]:
    """An open file's bytes from its current offset, ``size`` at a time."""
    while piece := os.read(fd, size):
        yield piece


def checked_pieces(
    pieces: Iterator[bytes], check: ObjectCheck, *, plaintext: bool = False
) -> Iterator[bytes]:
    """``pieces`` passed on (or, with ``plaintext``, what they decode to) with ``check`` fed
    along the way. The last piece is held back until the check passed: a consumer that
    completes only once the iterator is exhausted (an upload) never completes damage."""
    held: bytes | None = None
    for piece in pieces:
        out = check.feed(piece)
        if held:
            yield held
        held = out if plaintext else piece
    last = check.finish()
    if check.misread and (plaintext or check.also):
        raise CorruptObject(
            f"object {check.object_id} is still sealed under the retired secret of an "
            "unfinished key rotation: run `mjvault key rotate` to finish it first"
        )
    if plaintext:
        held = (held or b"") + last
    if held:
        yield held


def checked_file(path: Path, check: ObjectCheck, *, plaintext: bool = False) -> Iterator[bytes]:
    """:func:`checked_pieces` of a file on disk.

    During an unfinished key rotation a file whose plaintext is wanted (given out, or named
    under other keys) is read twice: once checked under both object keys to learn which one
    it is under, then under that one alone, so that what is given out is the object's. The
    second pass reads the same open file, whatever is renamed over its name meanwhile."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if check.undecided and (plaintext or check.also):
            probe = ObjectCheck(check.object_id, check.keys)
            for piece in file_pieces(fd):
                probe.feed(piece)
            probe.finish()  # damaged under both keys: refused here, before anything is given
            check.settle(retired=probe.retired)
            os.lseek(fd, 0, os.SEEK_SET)
        yield from checked_pieces(file_pieces(fd), check, plaintext=plaintext)
    finally:
        os.close(fd)
