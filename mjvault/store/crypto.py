"""Keys and AEAD for encrypted vaults (docs/FORMAT.md, "Encryption").

A vault has one random 32-byte master secret. Two subkeys are derived from it with HKDF-SHA256:
one encrypts objects (AES-256-GCM), one keys the BLAKE3 that names them, so names say nothing
about content. The master secret is stored only wrapped: each key file under ``keys/`` holds it
encrypted under a key derived from one passphrase with Argon2id. Adding, removing or changing a
passphrase rewrites a key file and never touches an object.

A vault whose keys were rotated (``mjvault key rotate``) holds a pair instead: an *object
secret* (object, text and index keys) and a *naming secret* (ids and tokens), 64 bytes wrapped
in a version 2 key file. Rotation replaces the object secret alone, so ids never change; a
version 1 key file's master secret is both.

`cryptography` is imported by the functions that use it, never with this module: every vault
loads this module, only an encrypted one needs AES or Argon2 (its import costs ~8 ms of each
command's start-up, issue 12).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from mjvault.errors import CorruptObject, MjvaultError, WrongPassphrase
from mjvault.store.codec import (
    CIPHER_AES_256_GCM,
    ENCODING_IDENTITY,
    FRAME_VERSION,
    MAGIC_ENCRYPTED,
    NONCE_SIZE,
    Dictionary,
    decode_payload,
    encode_payload,
)
from mjvault.store.fsutil import atomic_write

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYFILE_VERSION = 1
KEYFILE_VERSION_PAIR = 2
MASTER_SIZE = 32
PAIR_SIZE = 2 * MASTER_SIZE
OBJECT_AD_PREFIX = b"mjvault object v1\x00"
KEYFILE_AD = b"mjvault keyfile v1"
KEYFILE_AD_PAIR = b"mjvault keyfile v2"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The defaults follow RFC 9106's second recommended option (64 MiB)."""

    iterations: int = 3
    lanes: int = 4
    memory_cost_kib: int = 64 * 1024

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        kdf = Argon2id(
            salt=salt,
            length=32,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_cost_kib,
        )
        try:
            secret = passphrase.encode("utf-8")
        except UnicodeEncodeError:
            # Say nothing of where or what: the message must not leak a byte of the secret.
            raise MjvaultError("the passphrase is not valid UTF-8 text") from None
        return kdf.derive(secret)


def split_secret(secret: bytes) -> tuple[bytes, bytes]:
    """(object secret, naming secret) of what a key file wraps: a version 1 master secret is
    both; a version 2 pair is the object secret then the naming secret."""
    if len(secret) == MASTER_SIZE:
        return secret, secret
    if len(secret) == PAIR_SIZE:
        return secret[:MASTER_SIZE], secret[MASTER_SIZE:]
    raise MjvaultError("a key file holds a secret of an unknown size")


class VaultKeys:
    """The subkeys of an opened encrypted vault. Never printed, never logged.

    ``master`` is what a key file wraps (:func:`split_secret`). ``retired``: the object secret
    an unfinished rotation is replacing; objects and texts sealed under it still open (the
    AES-GCM tag tells which key sealed them), while everything is sealed under the new one.
    """

    __slots__ = (
        "_aead",
        "_forgotten_check",
        "_forgotten_naming",
        "_index_aead",
        "_index_names",
        "_index_tokens",
        "_object_check",
        "_object_key",
        "_retired_aead",
        "_retired_key",
        "_retired_text_aead",
        "_text_aead",
        "_text_naming",
        "_text_nonce",
        "naming_key",
    )

    def __init__(self, master: bytes, *, retired: bytes | None = None) -> None:
        object_secret, naming_secret = split_secret(master)
        self.naming_key = _hkdf(naming_secret, b"mjvault v1 object naming")
        # Kept besides its AEAD: objects too large to seal in one call are sealed in a stream.
        self._object_key = _hkdf(object_secret, b"mjvault v1 object encryption")
        self._aead = _aesgcm(self._object_key)
        # Names the object secret on a remote (FORMAT.md §11.2) without revealing it.
        self._object_check = _hkdf(object_secret, b"mjvault v1 remote object check")[:16].hex()
        # Small texts kept outside objects (a view's file paths): their own keys, so nothing
        # sealed there can be passed off as an object, or the reverse.
        self._text_aead = _aesgcm(_hkdf(object_secret, b"mjvault v1 text encryption"))
        self._text_naming = _hkdf(naming_secret, b"mjvault v1 text naming")
        # Derives the nonce of a text sealed deterministically (seal_text_fixed); it belongs
        # with the text key, so a rotation changes both and reseals what used them.
        self._text_nonce = _hkdf(object_secret, b"mjvault v1 text nonce")
        # The list of forgotten jobs (state/forgotten): tokens that say nothing of the ids
        # without the key, and a check that a file of tokens was written by this vault. Both
        # from the naming secret: a key rotation leaves the list's tokens as they are.
        self._forgotten_naming = _hkdf(naming_secret, b"mjvault v1 forgotten job naming")
        self._forgotten_check = _hkdf(naming_secret, b"mjvault v1 forgotten list check")
        # The index of an encrypted vault (mjvault/index/sealed.py): lookup keys are keyed
        # tokens of their terms, values are sealed. Keys of their own, so an index token is no
        # text key and an index value opens nowhere else. Tokens name, so they come from the
        # naming secret; what seals, from the object secret (a rotation rebuilds the index).
        self._index_tokens = _hkdf(naming_secret, b"mjvault v1 index tokens")
        self._index_aead = _aesgcm(_hkdf(object_secret, b"mjvault v1 index sealing"))
        self._index_names = _hkdf(object_secret, b"mjvault v1 index names")
        self._retired_key: bytes | None = None
        self._retired_aead: AESGCM | None = None
        self._retired_text_aead: AESGCM | None = None
        if retired is not None and retired != object_secret:
            self._retired_key = _hkdf(retired, b"mjvault v1 object encryption")
            self._retired_aead = _aesgcm(self._retired_key)
            self._retired_text_aead = _aesgcm(_hkdf(retired, b"mjvault v1 text encryption"))

    @property
    def rotating(self) -> bool:
        """Whether objects sealed under a retired object secret may still be met."""
        return self._retired_aead is not None

    def without_retired(self) -> VaultKeys:
        """These keys with no retired secret: what a finished rotation leaves (its check)."""
        keys = object.__new__(VaultKeys)
        for name in self.__slots__:
            setattr(keys, name, getattr(self, name))
        keys._retired_key = keys._retired_aead = keys._retired_text_aead = None
        return keys

    def object_check(self) -> str:
        """32 hex digits naming the object secret (not a retired one): equal checks, equal
        object keys (FORMAT.md §11.2, ``object-key``)."""
        return self._object_check

    def retired_only(self) -> VaultKeys | None:
        """These keys with the retired object secret as the current one (None without one):
        to check a streamed object under it (:class:`mjvault.store.streams.ObjectCheck`)."""
        if (
            self._retired_key is None
            or self._retired_aead is None
            or self._retired_text_aead is None
        ):
            return None
        keys = self.without_retired()
        keys._object_key = self._retired_key
        keys._aead = self._retired_aead
        keys._text_aead = self._retired_text_aead
        return keys

    def _decrypt(self, nonce: bytes, body: bytes | memoryview, ad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, body, ad)
        except InvalidTag:
            if self._retired_aead is None:
                raise
        return self._retired_aead.decrypt(nonce, body, ad)

    def __repr__(self) -> str:
        return "VaultKeys(<secret>)"

    def seal(
        self,
        object_id: str,
        plaintext: bytes,
        *,
        compress: bool,
        dictionary: Dictionary | None = None,
        nonce: bytes | None = None,
    ) -> bytes:
        """The ``MJVE`` file of an object. ``nonce`` is for tests comparing with
        :meth:`sealer`: a nonce must never be used twice with one key."""
        encoding, payload = encode_payload(plaintext, compress=compress, dictionary=dictionary)
        nonce = nonce or os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, bytes((encoding,)) + payload, _object_ad(object_id))
        return MAGIC_ENCRYPTED + bytes((FRAME_VERSION, CIPHER_AES_256_GCM)) + nonce + sealed

    def open(self, object_id: str, data: bytes, dictionary: Dictionary | None = None) -> bytes:
        # Imported with the keys already: here a lookup in sys.modules, not a load.
        from cryptography.exceptions import InvalidTag

        header = 4 + 2 + NONCE_SIZE
        if data[:4] != MAGIC_ENCRYPTED or len(data) < header + 16:
            raise CorruptObject(f"object {object_id} is not an encrypted object")
        if data[4] != FRAME_VERSION or data[5] != CIPHER_AES_256_GCM:
            raise CorruptObject(f"object {object_id} has an unknown frame version or cipher")
        nonce = data[6:header]
        try:
            inner = self._decrypt(nonce, data[header:], _object_ad(object_id))
        except InvalidTag:
            raise CorruptObject(
                f"object {object_id} failed authentication (damaged or swapped)"
            ) from None
        return decode_payload(inner[0], inner[1:], dictionary)

    def sealer(self, object_id: str, *, nonce: bytes | None = None) -> StreamSealer:
        """Seal an object's plaintext piece by piece (identity encoding): the same bytes as
        :meth:`seal` with ``compress=False`` gives for the same nonce, never the whole in memory."""
        return StreamSealer(self._object_key, object_id, nonce or os.urandom(NONCE_SIZE))

    def opener(self, object_id: str, head: bytes) -> StreamOpener:
        """Open an ``MJVE`` file piece by piece; ``head`` is its first :data:`SEALED_HEADER`
        bytes. The plaintext it gives is unchecked until :meth:`StreamOpener.finish`."""
        return StreamOpener(self._object_key, object_id, sealed_nonce(object_id, head))

    def open_into(self, object_id: str, data: memoryview, out: memoryview) -> memoryview:
        """:meth:`open` without copies, for checking: decrypts ``data`` into ``out`` (at least
        ``len(data)`` bytes, reused by the caller) and returns ``encoding || payload`` as a view
        of it. Each copy of a large object costs page faults that make up most of a plain
        ``open``'s time; ``verify --read-data`` of an encrypted vault is ~3x faster this way.
        """
        from cryptography.exceptions import InvalidTag

        header = 4 + 2 + NONCE_SIZE
        if bytes(data[:4]) != MAGIC_ENCRYPTED or len(data) < header + 16:
            raise CorruptObject(f"object {object_id} is not an encrypted object")
        if data[4] != FRAME_VERSION or data[5] != CIPHER_AES_256_GCM:
            raise CorruptObject(f"object {object_id} has an unknown frame version or cipher")
        inner = out[: len(data) - header - 16]
        try:
            try:
                self._aead.decrypt_into(
                    bytes(data[6:header]), data[header:], _object_ad(object_id), inner
                )
            except InvalidTag:
                if self._retired_aead is None:
                    raise
                self._retired_aead.decrypt_into(
                    bytes(data[6:header]), data[header:], _object_ad(object_id), inner
                )
        except InvalidTag:
            raise CorruptObject(
                f"object {object_id} failed authentication (damaged or swapped)"
            ) from None
        if not inner:
            raise CorruptObject(f"object {object_id} has no encoding byte")
        return inner

    def seal_text(self, text: str, context: bytes) -> bytes:
        """``text`` sealed (nonce || AES-256-GCM output), bound to ``context``: a sealed
        value moved to another row or column fails to open."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._text_aead.encrypt(nonce, text.encode("utf-8"), context)

    def open_text(self, sealed: bytes, context: bytes) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            try:
                plain = self._text_aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context)
            except InvalidTag:
                if self._retired_text_aead is None:
                    raise
                plain = self._retired_text_aead.decrypt(
                    sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context
                )
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError, ValueError):
            raise CorruptObject("a sealed text failed authentication (damaged or moved)") from None

    def seal_bytes(self, value: bytes, context: bytes) -> bytes:
        """:meth:`seal_text` of bytes (the text key: a rotation opens them under either secret
        and seals them again, as it does texts): the perceptual hashes' blocks."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._text_aead.encrypt(nonce, value, context)

    def open_bytes(self, sealed: bytes, context: bytes) -> bytes:
        """:meth:`seal_bytes` undone, under the current or the retired secret."""
        from cryptography.exceptions import InvalidTag

        try:
            try:
                return self._text_aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context)
            except InvalidTag:
                if self._retired_text_aead is None:
                    raise
                return self._retired_text_aead.decrypt(
                    sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context
                )
        except (InvalidTag, ValueError):
            raise CorruptObject("sealed bytes failed authentication (damaged or moved)") from None

    def seal_text_fixed(self, text: str, context: bytes) -> bytes:
        """``text`` sealed as :meth:`seal_text` does (and opened by :meth:`open_text`), with a
        nonce derived from ``context`` and ``text`` (a synthetic IV): equal texts seal to
        equal bytes, so a sealed column can still be matched by equality in SQL. It reveals
        which values are equal and nothing else; the nonce repeats only with its plaintext."""
        nonce = blake3.blake3(context + b"\0" + text.encode("utf-8"), key=self._text_nonce)
        fixed = nonce.digest(NONCE_SIZE)
        return fixed + self._text_aead.encrypt(fixed, text.encode("utf-8"), context)

    def text_key(self, text: str) -> int:
        """A 63-bit keyed checksum of ``text``: equal texts, equal keys, and nothing else
        learnt without the key (lookups by a sealed value)."""
        digest = blake3.blake3(text.encode("utf-8"), key=self._text_naming).digest(8)
        return int.from_bytes(digest) >> 1

    # -- rotation ----------------------------------------------------------------------------
    def reseal(self, object_id: str, data: bytes) -> bytes | None:
        """An ``MJVE`` file sealed under the retired secret, sealed again under the current
        one (a fresh nonce; ``encoding || payload`` unchanged, so a pack's dictionary entries
        stay valid); None when it already opens under the current one. Raises
        :class:`CorruptObject` when neither key opens it."""
        from cryptography.exceptions import InvalidTag

        nonce = sealed_nonce(object_id, data)
        ad = _object_ad(object_id)
        if len(data) < SEALED_HEADER + TAG_SIZE:
            raise CorruptObject(f"object {object_id} is not an encrypted object")
        if self._retired_aead is not None:
            try:
                inner = self._retired_aead.decrypt(nonce, data[SEALED_HEADER:], ad)
            except InvalidTag:
                pass
            else:
                fresh = os.urandom(NONCE_SIZE)
                sealed = self._aead.encrypt(fresh, inner, ad)
                return MAGIC_ENCRYPTED + bytes((FRAME_VERSION, CIPHER_AES_256_GCM)) + fresh + sealed
        try:
            self._aead.decrypt(nonce, data[SEALED_HEADER:], ad)
        except InvalidTag:
            raise CorruptObject(
                f"object {object_id} failed authentication (damaged or swapped)"
            ) from None
        return None

    def resealer(self, object_id: str, head: bytes) -> StreamResealer:
        """:meth:`reseal` piece by piece, for objects too large to hold: ``head`` is the file's
        first :data:`SEALED_HEADER` bytes. Needs a retired secret."""
        if self._retired_key is None:
            raise MjvaultError("no key rotation is under way")
        return StreamResealer(
            StreamOpener(self._retired_key, object_id, sealed_nonce(object_id, head)),
            self._object_key,
            object_id,
        )

    def forgotten_token(self, job_id: str) -> bytes:
        """The 16-byte token of a forgotten job's id (FORMAT.md §12.1)."""
        return blake3.blake3(job_id.encode("utf-8"), key=self._forgotten_naming).digest(16)

    def forgotten_checker(self) -> blake3.blake3:
        """The keyed BLAKE3 whose 32-byte digest checks a forgotten-jobs list's bytes (fed
        in pieces: the list is read in flat memory)."""
        return blake3.blake3(key=self._forgotten_check)

    def index_token(self, data: bytes, size: int = 16) -> bytes:
        """Keyed BLAKE3 of ``data`` (a domain and a term): equal in, equal out, and nothing
        about ``data`` learnt without the key."""
        return blake3.blake3(data, key=self._index_tokens).digest(size)

    def seal_index(self, value: bytes, context: bytes) -> bytes:
        """An index value sealed (nonce || AES-256-GCM output), bound to ``context`` (its
        table and key): moved to another key, it fails to open."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._index_aead.encrypt(nonce, value, context)

    def index_keystream(self, counter_blocks: bytes) -> bytes:
        """AES-256 of each 16-byte block of ``counter_blocks`` under the index names key: the
        CTR keystream of many short values in one call (a page's job ids, FORMAT.md §9.2)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        encryptor = Cipher(algorithms.AES(self._index_names), modes.ECB()).encryptor()
        return encryptor.update(counter_blocks) + encryptor.finalize()

    def open_index(self, sealed: bytes, context: bytes) -> bytes:
        # A search opens the ids of every job it shows: no import on this path.
        try:
            return self._index_aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context)
        except Exception as exc:
            from cryptography.exceptions import InvalidTag

            if isinstance(exc, InvalidTag | ValueError):
                raise CorruptObject(
                    "an index value failed authentication (damaged or moved)"
                ) from None
            raise


SEALED_HEADER = 4 + 2 + NONCE_SIZE
TAG_SIZE = 16


def sealed_nonce(object_id: str, head: bytes) -> bytes:
    """The nonce of an ``MJVE`` file from its header, or :class:`CorruptObject`."""
    if head[:4] != MAGIC_ENCRYPTED or len(head) < SEALED_HEADER:
        raise CorruptObject(f"object {object_id} is not an encrypted object")
    if head[4] != FRAME_VERSION or head[5] != CIPHER_AES_256_GCM:
        raise CorruptObject(f"object {object_id} has an unknown frame version or cipher")
    return bytes(head[6:SEALED_HEADER])


class StreamSealer:
    """AES-256-GCM over ``encoding byte || plaintext`` given in pieces (FORMAT.md §3.1).

    ``header`` first, then what :meth:`update` returns for each piece, then :meth:`finish`'s
    tag: together, byte for byte, what :meth:`VaultKeys.seal` writes for the same nonce.
    """

    def __init__(self, key: bytes, object_id: str, nonce: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.header = MAGIC_ENCRYPTED + bytes((FRAME_VERSION, CIPHER_AES_256_GCM)) + nonce
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._encryptor.authenticate_additional_data(_object_ad(object_id))
        self._first = self._encryptor.update(bytes((ENCODING_IDENTITY,)))

    def update(self, plaintext: bytes | memoryview) -> bytes:
        out = self._encryptor.update(plaintext)
        if self._first:
            out, self._first = self._first + out, b""
        return out

    def finish(self) -> bytes:
        """The last ciphertext bytes (none for GCM) and the 16-byte tag."""
        return self._first + self._encryptor.finalize() + self._encryptor.tag


class StreamOpener:
    """AES-256-GCM decryption of an ``MJVE`` file's body given in pieces (after its header).

    The last 16 bytes of the body are the tag: each piece's final 16 bytes are held back until
    more arrive, and :meth:`finish` checks the tag. Nothing :meth:`update` returned may be
    trusted, or published, before :meth:`finish` returned.
    """

    def __init__(self, key: bytes, object_id: str, nonce: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.object_id = object_id
        self._decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).decryptor()
        self._decryptor.authenticate_additional_data(_object_ad(object_id))
        self._held = b""

    def update(self, body: bytes | memoryview) -> bytes:
        data = self._held + bytes(body) if self._held else bytes(body)
        if len(data) <= TAG_SIZE:
            self._held = data
            return b""
        self._held = data[-TAG_SIZE:]
        return self._decryptor.update(memoryview(data)[:-TAG_SIZE])

    def finish(self) -> None:
        from cryptography.exceptions import InvalidTag

        try:
            if len(self._held) != TAG_SIZE:
                raise InvalidTag
            self._decryptor.finalize_with_tag(self._held)
        except InvalidTag:
            raise CorruptObject(
                f"object {self.object_id} failed authentication (damaged or swapped)"
            ) from None


class StreamResealer:
    """An ``MJVE`` file's body decrypted under the retired object key and encrypted under the
    current one as it streams: :attr:`header`, then what :meth:`update` returns, then
    :meth:`finish`'s tag, make the new file. Nothing written may be published before
    :meth:`finish` returned (it checks the old tag)."""

    def __init__(self, opener: StreamOpener, key: bytes, object_id: str) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        nonce = os.urandom(NONCE_SIZE)
        self.header = MAGIC_ENCRYPTED + bytes((FRAME_VERSION, CIPHER_AES_256_GCM)) + nonce
        self._opener = opener
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._encryptor.authenticate_additional_data(_object_ad(object_id))

    def update(self, body: bytes | memoryview) -> bytes:
        return self._encryptor.update(self._opener.update(body))

    def finish(self) -> bytes:
        """The last bytes and the new tag; :class:`CorruptObject` if the old tag fails."""
        self._opener.finish()
        return self._encryptor.finalize() + self._encryptor.tag


def _object_ad(object_id: str) -> bytes:
    # Binding the name means a valid object copied under another name fails to open.
    return OBJECT_AD_PREFIX + object_id.encode("ascii")


def _aesgcm(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _hkdf(master: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def new_master_secret() -> bytes:
    # What the secrets module would read, without its import (hmac, OpenSSL) in every command.
    return os.urandom(MASTER_SIZE)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def wrap_secret(
    secret: bytes, passphrase: str, *, label: str = "", kdf: KdfParams | None = None
) -> dict[str, object]:
    """A key file's document wrapping ``secret`` under ``passphrase``: version 1 for a
    32-byte master secret, version 2 for a 64-byte (object secret, naming secret) pair."""
    if not passphrase:
        raise MjvaultError("the passphrase must not be empty")
    split_secret(secret)  # refuses a size no reader would take
    pair = len(secret) == PAIR_SIZE
    params = kdf or KdfParams()
    salt = os.urandom(16)
    nonce = os.urandom(NONCE_SIZE)
    wrapping_key = params.derive(passphrase, salt)
    key_id = os.urandom(8).hex()
    ad = (KEYFILE_AD_PAIR if pair else KEYFILE_AD) + key_id.encode("ascii")
    wrapped = _aesgcm(wrapping_key).encrypt(nonce, secret, ad)
    return {
        "version": KEYFILE_VERSION_PAIR if pair else KEYFILE_VERSION,
        "id": key_id,
        "label": label,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kdf": {
            "name": "argon2id",
            "salt": _b64(salt),
            "iterations": params.iterations,
            "lanes": params.lanes,
            "memory_cost_kib": params.memory_cost_kib,
        },
        "cipher": "aes-256-gcm",
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
    }


def store_keyfile(keys_dir: Path, document: dict[str, object]) -> str:
    """Write a key file document under its id (mode 0600, atomically); returns the id."""
    key_id = str(document["id"])
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(keys_dir / key_id, json.dumps(document, indent=2).encode("utf-8"), mode=0o600)
    return key_id


def write_keyfile(
    keys_dir: Path, master: bytes, passphrase: str, *, label: str = "", kdf: KdfParams | None = None
) -> str:
    """Wrap ``master`` (a master secret or a pair) under ``passphrase`` into a new key file
    (mode 0600); returns its id."""
    return store_keyfile(keys_dir, wrap_secret(master, passphrase, label=label, kdf=kdf))


@dataclass(frozen=True)
class KeyFileInfo:
    id: str
    label: str
    created: str
    path: Path


def list_keyfiles(keys_dir: Path) -> list[KeyFileInfo]:
    infos = []
    for path in sorted(keys_dir.iterdir()) if keys_dir.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        infos.append(
            KeyFileInfo(
                str(doc.get("id", path.name)), doc.get("label", ""), doc.get("created", ""), path
            )
        )
    return infos


def unwrap_document(document: object, passphrase: str) -> bytes:
    """The secret a key file document wraps. Raises ``InvalidTag`` for a wrong passphrase and
    ``KeyError``/``TypeError``/``ValueError`` for a document this version cannot read."""
    if not isinstance(document, dict):
        raise ValueError("a key file is a JSON object")
    kdf_doc = document["kdf"]
    if kdf_doc["name"] != "argon2id" or document["cipher"] != "aes-256-gcm":
        raise ValueError("unknown key derivation or cipher")
    version = document.get("version", KEYFILE_VERSION)
    if version not in (KEYFILE_VERSION, KEYFILE_VERSION_PAIR):
        raise ValueError(f"key file version {version} is not supported")
    params = KdfParams(
        iterations=int(kdf_doc["iterations"]),
        lanes=int(kdf_doc["lanes"]),
        memory_cost_kib=int(kdf_doc["memory_cost_kib"]),
    )
    wrapping_key = params.derive(passphrase, _unb64(kdf_doc["salt"]))
    pair = version == KEYFILE_VERSION_PAIR
    ad = (KEYFILE_AD_PAIR if pair else KEYFILE_AD) + str(document["id"]).encode("ascii")
    secret = _aesgcm(wrapping_key).decrypt(
        _unb64(document["nonce"]), _unb64(document["wrapped"]), ad
    )
    if len(secret) != (PAIR_SIZE if pair else MASTER_SIZE):
        raise ValueError("a key file holds a secret of the wrong size")
    return secret


def unwrap_all(keys_dir: Path, passphrase: str) -> tuple[list[tuple[bytes, str]], int]:
    """Every (secret, key id) that ``passphrase`` opens, and how many key files it failed to
    open: after a rotation stopped half-way one passphrase may open two."""
    from cryptography.exceptions import InvalidTag

    opened: list[tuple[bytes, str]] = []
    tried = 0
    for info in list_keyfiles(keys_dir):
        try:
            opened.append(
                (unwrap_document(json.loads(info.path.read_bytes()), passphrase), info.id)
            )
        except InvalidTag:
            tried += 1
        except (KeyError, TypeError, ValueError):
            continue
    return opened, tried


def unwrap_master(keys_dir: Path, passphrase: str) -> tuple[bytes, str]:
    """Try every key file; the first that opens with ``passphrase`` gives the master secret
    (a version 1 key file) or the pair (version 2)."""
    from cryptography.exceptions import InvalidTag

    tried = 0
    for info in list_keyfiles(keys_dir):
        try:
            master = unwrap_document(json.loads(info.path.read_bytes()), passphrase)
        except InvalidTag:
            tried += 1
            continue
        except (KeyError, TypeError, ValueError):
            continue
        return master, info.id
    if tried == 0:
        raise MjvaultError(f"no readable key file in {keys_dir}: the vault cannot be opened")
    raise WrongPassphrase("wrong passphrase: no key of this vault opens with it")
