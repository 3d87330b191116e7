"""Keys and AEAD for encrypted vaults (docs/FORMAT.md, "Encryption").

A vault has one random 32-byte master secret. Two subkeys are derived from it with HKDF-SHA256:
one encrypts objects (AES-256-GCM), one keys the BLAKE3 that names them, so names say nothing
about content. The master secret is stored only wrapped: each key file under ``keys/`` holds it
encrypted under a key derived from one passphrase with Argon2id. Adding, removing or changing a
passphrase rewrites a key file and never touches an object.

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
MASTER_SIZE = 32
OBJECT_AD_PREFIX = b"mjvault object v1\x00"
KEYFILE_AD = b"mjvault keyfile v1"


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


class VaultKeys:
    """The subkeys of an opened encrypted vault. Never printed, never logged."""

    __slots__ = (
        "_aead",
        "_index_aead",
        "_index_names",
        "_index_tokens",
        "_object_key",
        "_text_aead",
        "_text_naming",
        "naming_key",
    )

    def __init__(self, master: bytes) -> None:
        self.naming_key = _hkdf(master, b"mjvault v1 object naming")
        # Kept besides its AEAD: objects too large to seal in one call are sealed in a stream.
        self._object_key = _hkdf(master, b"mjvault v1 object encryption")
        self._aead = _aesgcm(self._object_key)
        # Small texts kept outside objects (a view's file paths): their own keys, so nothing
        # sealed there can be passed off as an object, or the reverse.
        self._text_aead = _aesgcm(_hkdf(master, b"mjvault v1 text encryption"))
        self._text_naming = _hkdf(master, b"mjvault v1 text naming")
        # The index of an encrypted vault (mjvault/index/sealed.py): lookup keys are keyed
        # tokens of their terms, values are sealed. Keys of their own, so an index token is no
        # text key and an index value opens nowhere else.
        self._index_tokens = _hkdf(master, b"mjvault v1 index tokens")
        self._index_aead = _aesgcm(_hkdf(master, b"mjvault v1 index sealing"))
        self._index_names = _hkdf(master, b"mjvault v1 index names")

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
            inner = self._aead.decrypt(nonce, data[header:], _object_ad(object_id))
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
            self._aead.decrypt_into(
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
            plain = self._text_aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context)
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError, ValueError):
            raise CorruptObject("a sealed text failed authentication (damaged or moved)") from None

    def text_key(self, text: str) -> int:
        """A 63-bit keyed checksum of ``text``: equal texts, equal keys, and nothing else
        learnt without the key (lookups by a sealed value)."""
        digest = blake3.blake3(text.encode("utf-8"), key=self._text_naming).digest(8)
        return int.from_bytes(digest) >> 1

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


def write_keyfile(
    keys_dir: Path, master: bytes, passphrase: str, *, label: str = "", kdf: KdfParams | None = None
) -> str:
    """Wrap ``master`` under ``passphrase`` into a new key file (mode 0600); returns its id."""
    if not passphrase:
        raise MjvaultError("the passphrase must not be empty")
    params = kdf or KdfParams()
    salt = os.urandom(16)
    nonce = os.urandom(NONCE_SIZE)
    wrapping_key = params.derive(passphrase, salt)
    key_id = os.urandom(8).hex()
    wrapped = _aesgcm(wrapping_key).encrypt(nonce, master, KEYFILE_AD + key_id.encode("ascii"))
    document = {
        "version": KEYFILE_VERSION,
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
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(keys_dir / key_id, json.dumps(document, indent=2).encode("utf-8"), mode=0o600)
    return key_id


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


def unwrap_master(keys_dir: Path, passphrase: str) -> tuple[bytes, str]:
    """Try every key file; the first that opens with ``passphrase`` gives the master secret."""
    from cryptography.exceptions import InvalidTag

    tried = 0
    for info in list_keyfiles(keys_dir):
        try:
            doc = json.loads(info.path.read_bytes())
            kdf_doc = doc["kdf"]
            if kdf_doc["name"] != "argon2id" or doc["cipher"] != "aes-256-gcm":
                continue
            params = KdfParams(
                iterations=int(kdf_doc["iterations"]),
                lanes=int(kdf_doc["lanes"]),
                memory_cost_kib=int(kdf_doc["memory_cost_kib"]),
            )
            wrapping_key = params.derive(passphrase, _unb64(kdf_doc["salt"]))
            ad = KEYFILE_AD + str(doc["id"]).encode("ascii")
            master = _aesgcm(wrapping_key).decrypt(_unb64(doc["nonce"]), _unb64(doc["wrapped"]), ad)
        except InvalidTag:
            tried += 1
            continue
        except (KeyError, TypeError, ValueError):
            continue
        return master, info.id
    if tried == 0:
        raise MjvaultError(f"no readable key file in {keys_dir}: the vault cannot be opened")
    raise WrongPassphrase("wrong passphrase: no key of this vault opens with it")
