"""Large objects (videos, big PNGs) between a vault and a remote without holding them.

Above :data:`BIG_OBJECT_BYTES` an object is never whole in memory: push streams the vault's
file to :meth:`Backend.upload_file` (sealing it on the way for an encrypting remote), pull and
``verify --remote --read-data`` stream the download into a temp file beside the vault's
objects (or nowhere, for verify). Either way the object is checked against its name — and its
AEAD tag — while it streams (:class:`~mjvault.store.streams.ObjectCheck`), and the last bytes
are held back until the check passed, so a damaged object is never completed on a remote nor
published in a vault.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import blake3

from mjvault.errors import CorruptObject
from mjvault.remotes.backend import PieceReader
from mjvault.remotes.remote import RemoteObjects, object_key
from mjvault.store.codec import can_store_raw, frame_head
from mjvault.store.crypto import SEALED_HEADER, TAG_SIZE, VaultKeys
from mjvault.store.fsutil import write_all
from mjvault.store.streams import PIECE, ObjectCheck, checked_file

# Objects larger than this stream; smaller ones are read whole (most images: a few MB, and
# one request or one read is cheaper than a stream's bookkeeping).
BIG_OBJECT_BYTES = 8 * 1024 * 1024


def big_local_file(store_path: Path) -> int | None:
    """The size of a vault's loose object file when it is big enough to stream, else None."""
    try:
        size = os.stat(store_path).st_size
    except FileNotFoundError:
        return None
    return size if size > BIG_OBJECT_BYTES else None


def remote_name_of_file(
    path: Path, local_id: str, local_keys: VaultKeys | None, remote: RemoteObjects
) -> str:
    """The remote's name for a large local object, its file read once and checked."""
    assert remote.keys is not None
    named = blake3.blake3(key=remote.keys.naming_key)
    for _ in checked_file(path, ObjectCheck(local_id, local_keys, also=(named,))):
        pass
    return named.hexdigest()


def upload_big(
    path: Path,
    size: int,
    local_id: str,
    remote_id: str,
    local_keys: VaultKeys | None,
    remote: RemoteObjects,
    *,
    translate: bool,
) -> int:
    """Send a large local object file to the remote, checked on the way; returns the bytes
    sent. ``translate``: an encrypting remote (the object is sealed under ``remote_id``)."""
    check = ObjectCheck(local_id, local_keys)
    if not translate:
        remote.backend.upload_file(object_key(remote_id), _reader(checked_file(path, check)), size)
        return size
    keys = remote.keys
    assert keys is not None
    named = blake3.blake3(key=keys.naming_key)
    check.also = (named,)
    sealer = keys.sealer(remote_id)
    sent = [0]

    def sealed() -> Iterator[bytes]:
        yield sealer.header
        for plain in checked_file(path, check, plaintext=True):
            out = sealer.update(plain)
            sent[0] += len(out)
            yield out
        # The local name is checked by now; the remote one before the tag completes the upload.
        if named.hexdigest() != remote_id:
            raise CorruptObject(f"object {local_id} no longer matches its remote id")
        yield sealer.finish()

    sealed_size = SEALED_HEADER + 1 + size + TAG_SIZE
    remote.backend.upload_file(object_key(remote_id), _reader(sealed()), sealed_size)
    return sealed_size


@dataclass
class Spooled:
    """A large object downloaded, checked, and written to ``path`` as the vault stores it."""

    local_id: str
    path: Path
    size: int  # bytes downloaded


class Spool:
    """The sink of one download: in memory while small, spilled to a temp file in ``folder``
    (None: checked and dropped, for verify) once larger than :data:`BIG_OBJECT_BYTES`.

    What the temp file holds is the object's file as the vault keeps it: the remote's file as
    it is (``plain`` False: the remote's objects are the vault's), or its plaintext framed as
    a plain vault frames media (``plain``: an encrypting remote, translated back).
    """

    def __init__(
        self, remote_id: str, keys: VaultKeys | None, folder: Path | None, *, plain: bool
    ) -> None:
        self.remote_id = remote_id
        self.keys = keys
        self.folder = folder
        self.plain = plain
        self.size = 0
        self._memory: bytearray | None = bytearray()
        self._local = blake3.blake3()
        self._check = ObjectCheck(remote_id, keys, also=(self._local,) if plain else ())
        self._fd: int | None = None
        self.path: Path | None = None
        self._head_out = b""  # plaintext held until the framing is chosen
        self._framed: bool | None = None

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self._memory is not None:
            self._memory += data
            if len(self._memory) <= BIG_OBJECT_BYTES:
                return len(data)
            held, self._memory = self._memory, None
            if self.folder is not None:
                self.path = self.folder / f"download.{os.urandom(6).hex()}.tmp"
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            # A piece at a time: each step of the check copies what it is given.
            for start in range(0, len(held), PIECE):
                piece = bytes(held[start : start + PIECE])
                self._keep(piece, self._check.feed(piece))
            return len(data)
        self._keep(data, self._check.feed(data))
        return len(data)

    def _keep(self, data: bytes, plain: bytes) -> None:
        if self._fd is None:
            return
        if not self.plain:
            write_all(self._fd, data)
            return
        if self._framed is None:
            self._head_out += plain
            if len(self._head_out) < 16:
                return
            plain, self._head_out = self._head_out, b""
            self._choose_framing(plain[:16])
        write_all(self._fd, plain)

    def _choose_framing(self, head: bytes) -> None:
        assert self._fd is not None
        self._framed = not can_store_raw(head)
        if self._framed:  # as WriteBatch.put_media frames media it cannot store raw
            write_all(self._fd, frame_head())

    @property
    def spilled(self) -> bool:
        return self._memory is None

    def held(self) -> bytes:
        """The whole download, when it stayed in memory."""
        assert self._memory is not None
        return bytes(self._memory)

    def finish(self) -> Spooled:
        """Check the spilled download (tag, name) and close its temp file."""
        try:
            last = self._check.finish()
            if self._fd is not None:
                if self.plain and self._framed is None:
                    plain, self._head_out = self._head_out + last, b""
                    self._choose_framing(plain[:16])
                    write_all(self._fd, plain)
                os.close(self._fd)
                self._fd = None
        except BaseException:
            self.discard()
            raise
        local = self._local.hexdigest() if self.plain else self.remote_id
        return Spooled(local, self.path or Path(os.devnull), self.size)

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def download(remote: RemoteObjects, remote_id: str, folder: Path | None, *, plain: bool) -> Spool:
    """Fetch a loose remote object into a :class:`Spool` (finished by the caller when spilled)."""
    spool = Spool(remote_id, remote.keys, folder, plain=plain)
    try:
        remote.backend.download(object_key(remote_id), spool)  # type: ignore[arg-type]
    except BaseException:
        spool.discard()
        raise
    return spool


def _reader(pieces: Iterator[bytes]) -> BinaryIO:
    return cast(BinaryIO, PieceReader(pieces))
