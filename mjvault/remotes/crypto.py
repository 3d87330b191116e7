"""An encrypting remote for a plain vault: every object sealed and renamed on the way out.

A plain vault names objects by unkeyed BLAKE3, so its names alone would tell a storage
provider whether it holds a known public image. The remote therefore names every object by
BLAKE3 keyed with the *remote's* naming key and seals it with the remote's object key. Tree
nodes and snapshot manifests hold the ids of other objects, so they are rewritten with the
translated ids before being named and sealed: the remote is exactly the encrypted vault that
the same jobs would make under the remote's master secret, and cloning it translates back.

The translation of every object ever pushed or pulled is kept locally in an LMDB map
(``<vault>/remotes/<name>/idmap``), so a later push does not re-read and re-hash old media.
The map is a cache: lose it and the next push rebuilds it from the objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import lmdb
import msgpack

from mjvault import leaves
from mjvault.errors import IntegrityError

MAP_SIZE = 1 << 34  # sparse on Linux; 64 bytes a pair, far beyond any archive

IdFn = Callable[[bytes], bytes | None]


class IdMap:
    """plain id <-> remote id, 32-byte binary keys both ways."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=2, subdir=True, lock=True)
        self._p2r = self._env.open_db(b"p2r")
        self._r2p = self._env.open_db(b"r2p")

    def close(self) -> None:
        self._env.close()

    def remote_of(self, plain_id: str) -> str | None:
        with self._env.begin(db=self._p2r) as txn:
            found = txn.get(bytes.fromhex(plain_id))
        return bytes(found).hex() if found is not None else None

    def plain_of(self, remote_id: str) -> str | None:
        with self._env.begin(db=self._r2p) as txn:
            found = txn.get(bytes.fromhex(remote_id))
        return bytes(found).hex() if found is not None else None

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record (plain id, remote id) pairs in one transaction."""
        with self._env.begin(write=True) as txn:
            for plain_id, remote_id in pairs:
                p, r = bytes.fromhex(plain_id), bytes.fromhex(remote_id)
                txn.put(p, r, db=self._p2r)
                txn.put(r, p, db=self._r2p)


def rewrite_ids(plaintext: bytes, translate: IdFn) -> bytes:
    """The same node, manifest or collection object with every object id passed through
    ``translate`` (a collection's members chunk holds none: returned as it is).

    Works on the msgpack document itself, so the other fields — and hence, for a round trip
    through a remote, the bytes and the id — come back exactly as they were.
    """
    try:
        doc = msgpack.unpackb(plaintext)
        kind = doc.get("t")
        if kind == "leaf" and doc.get("v") == 2:
            jobs = leaves.encode(
                (
                    job,
                    _must_hex(translate, record),
                    tuple(None if i is None else _must_hex(translate, i) for i in images),
                )
                for job, record, images in leaves.decode(doc["e"])
            )
            if jobs is None:  # a translated id of 32 zero bytes: no key makes one
                raise IntegrityError("a translated tree leaf cannot be encoded")
            doc["e"] = jobs
        elif kind == "leaf":
            doc["e"] = [
                [
                    job,
                    _must(translate, rec),
                    [None if i is None else _must(translate, i) for i in imgs],
                ]
                for job, rec, imgs in doc["e"]
            ]
        elif kind == "node":
            doc["c"] = [[digit, _must(translate, child), n] for digit, child, n in doc["c"]]
        elif kind == "collections":
            doc["c"] = [
                [name, jobs, [_must(translate, chunk) for chunk in chunks]]
                for name, jobs, chunks in doc["c"]
            ]
        elif kind == "members":
            # A collection's chunk names jobs, not objects: the same bytes on either side,
            # so a forget that reads a remote-only collection through here gets it as it is.
            return plaintext
        elif kind == "snapshot":
            doc["tree"] = _must(translate, doc["tree"])
            if doc.get("collections") is not None:
                doc["collections"] = _must(translate, doc["collections"])
            if doc.get("parent") is not None:
                # A parent that was never pushed (forgotten locally) is dropped, not invented.
                doc["parent"] = translate(doc["parent"])
        else:
            raise IntegrityError(f"object of kind {kind!r} holds no ids to translate")
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError(f"malformed tree node or manifest: {exc}") from None
    return msgpack.packb(doc)


def _must_hex(translate: IdFn, object_id: str) -> str:
    return _must(translate, bytes.fromhex(object_id)).hex()


def _must(translate: IdFn, object_id: bytes) -> bytes:
    out = translate(bytes(object_id))
    if out is None:
        raise IntegrityError(f"no translation for object {bytes(object_id).hex()}")
    return out
