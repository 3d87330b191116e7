"""The index of an encrypted vault: keyed tokens for lookup keys, sealed values (FORMAT.md §9.2).

A plain vault's index keys its tables by the words, ids and values themselves. An encrypted
vault's index keys them by a *token*: keyed BLAKE3 (a subkey of the master secret) of the
table's name and the term, so equal terms give equal tokens, one table's token says nothing
of another's, and nothing is learnt of a term without the key. Values that hold text (job
summaries, the job ids of ``images``, the import caches' rows) are sealed with AES-256-GCM,
bound to their table and key; the job ids of ``docs``, a page of which every search reads,
are AES-256-CTR under the index's generation and the document number (:meth:`names`), so a
page's are deciphered in one call. Lookups of an exact term cost one token more than
a plain index's; every list keeps its shard suffix, so shards are found as before.

What tokens hide is the vocabulary that prefix queries (``cat*``), comparisons (``s>100``),
version families (``v:6``), facets and job-id prefixes enumerate. It is kept sealed in the
``vocab`` table, each term once in a *bucket* per length of prefix it can be asked by (its
first 1, 2 and 3 characters; for types and parameter values also all of them, length 0): a
query opens the one bucket its prefix names, filters the terms, and looks up their tokens.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import lmdb

from mjvault.errors import CorruptObject
from mjvault.index.damage import IndexDamaged
from mjvault.store.crypto import VaultKeys

SEP = b"\x00"
TOKEN_SIZE = 16
# meta/format of an index of this layout; a plain index's is "9" (mjvault/index/db.py).
SEALED_FORMAT = b"9s"
BUCKET_DEPTH = 3  # characters of a term's prefix that name its deepest bucket
# Kinds of vocabulary and the shortest prefix each is asked by: words and job ids only by a
# prefix a user typed (at least one character), types and parameter values whole (facets,
# comparisons).
WORDS, JOBS, TYPES = b"words", b"jobs", b"types"
PARAMS = b"params:"
GENERATION_SIZE = 8
# Tokens remembered (about 170 bytes each: ~11 MB), then forgotten all at once: a rebuild's
# common words stay cached, its pairs (mostly seen once) do not pile up.
TOKENS_KEPT = 1 << 16
_DOC = struct.Struct(">I")
_COUNTERS = [i.to_bytes(4, "big") for i in range(64)]


def _blocks(prefix: bytes, size: int) -> bytes:
    """The counter blocks ``prefix ‖ i`` of a value of ``size`` bytes, in one join."""
    count = -(-size // 16)
    counters = _COUNTERS[:count] if count <= 64 else [i.to_bytes(4, "big") for i in range(count)]
    return prefix + prefix.join(counters) if counters else b""


def _shallowest(kind: bytes) -> int:
    # Job ids are asked by six characters at least (`show 3f2a1b`): one bucket each is
    # enough, and a third of the entries of the largest vocabulary.
    if kind == JOBS:
        return BUCKET_DEPTH
    return 1 if kind == WORDS else 0


def _chars(part: bytes) -> str:
    # A part cut at 200 bytes may end inside a character: the bucket goes by whole ones.
    return part.decode("utf-8", "ignore")


# Enciphered for meta/key: no job id's block is all ones (they begin with meta/names' random
# bytes and end with a small block counter).
KEY_CHECK_BLOCK = b"\xff" * 16


class IndexSealer:
    """Tokens, sealing and the vocabulary of one encrypted vault's index."""

    def __init__(self, keys: VaultKeys) -> None:
        self._keys = keys
        # Tokens of one index session: a rebuild asks the same words over and over.
        self._tokens: dict[tuple[bytes, bytes], bytes] = {}
        # Buckets opened, while the index is at the transaction they were read in: repeated
        # queries in one process (a server, a gallery) open each once. Any commit, by any
        # process, moves the transaction id on and empties it.
        self._opened: dict[bytes, list[bytes]] = {}
        self._opened_in = -1

    # -- tokens and seals ------------------------------------------------------------------
    def token(self, domain: bytes, term: bytes) -> bytes:
        """The 16-byte token of ``term`` in ``domain`` (a table's name). Never holds a 00
        byte, so ``token 00 shard`` keys parse as a plain index's ``part 00 shard``."""
        key = (domain, term)
        found = self._tokens.get(key)
        if found is None:
            digest = self._keys.index_token(domain + SEP + term, TOKEN_SIZE)
            found = digest.replace(SEP, b"\x01")
            if len(self._tokens) >= TOKENS_KEPT:
                self._tokens.clear()
            self._tokens[key] = found
        return found

    def check(self) -> bytes:
        """meta/key: which keys the index was built under. The token names the naming secret,
        the keystream block the object secret, which a key rotation replaces: an index sealed
        before a rotation is rebuilt, whoever opens it first."""
        return self.token(b"meta", b"key check") + self._keys.index_keystream(KEY_CHECK_BLOCK)

    def forget_opened(self) -> None:
        """Drop the opened buckets (a benchmark's cold queries)."""
        self._opened.clear()

    def seal(self, value: bytes, context: bytes) -> bytes:
        return self._keys.seal_index(value, context)

    def open(self, sealed: bytes | memoryview, context: bytes) -> bytes:
        try:
            return self._keys.open_index(bytes(sealed), context)
        except CorruptObject:
            table = context.partition(SEP)[0].decode("ascii", "replace")
            raise IndexDamaged(
                f"a value of the index's {table} table does not open (damaged or moved)"
            ) from None

    # -- names: the job ids of ``docs`` ---------------------------------------------------------
    def names(self, generation: bytes, entries: list[tuple[int, bytes]]) -> list[bytes]:
        """Each (doc, text) as text XOR its AES-256-CTR keystream, blocks ``generation ‖ doc ‖
        i``: sealing and opening alike, all entries in one AES call. A number names one job
        for the index's generation (a rebuild draws a new one), so no keystream is reused."""
        blocks = b"".join(_blocks(generation + _DOC.pack(doc), len(text)) for doc, text in entries)
        stream = self._keys.index_keystream(blocks) if blocks else b""
        out = []
        at = 0
        for _, text in entries:
            size = len(text)
            out.append(
                (int.from_bytes(text) ^ int.from_bytes(stream[at : at + size])).to_bytes(size)
            )
            at += -(-size // 16) * 16
        return out

    # -- vocabulary ------------------------------------------------------------------------
    def _bucket(self, kind: bytes, depth: int, prefix: str) -> bytes:
        return self.token(b"vocab", kind + SEP + bytes((depth,)) + prefix.encode("utf-8"))

    def vocab_keys(self, kind: bytes, term: bytes) -> Iterator[bytes]:
        """The keys of ``term``'s entries, one in each bucket it belongs to."""
        chars = _chars(term)
        for depth in range(_shallowest(kind), min(BUCKET_DEPTH, len(chars)) + 1):
            # The entry's own token differs per bucket: one term's entries are not linkable.
            entry = self.token(b"vocab entry", kind + SEP + bytes((depth,)) + term)
            yield self._bucket(kind, depth, chars[:depth]) + entry

    def seal_term(self, key: bytes, term: bytes) -> bytes:
        return self.seal(term, b"vocab" + SEP + key)

    def terms(
        self, txn: lmdb.Transaction, vocab: lmdb.Cursor, kind: bytes, prefix: bytes
    ) -> list[bytes] | None:
        """Every term of ``kind`` in the vocabulary (``vocab``, a cursor of ``txn``) that
        starts with ``prefix``, sorted; None for a prefix too short to name a bucket."""
        chars = _chars(prefix)
        if len(chars) < _shallowest(kind):
            return None
        bucket = self._bucket(kind, min(BUCKET_DEPTH, len(chars)), chars[:BUCKET_DEPTH])
        if txn.id() != self._opened_in:
            self._opened.clear()
            self._opened_in = txn.id()
        terms = self._opened.get(bucket)
        if terms is None:
            terms = []
            if vocab.set_range(bucket):
                for key, value in vocab.iternext():
                    if key[:TOKEN_SIZE] != bucket:
                        break
                    terms.append(self.open(value, b"vocab" + SEP + key))
            terms.sort()
            if len(self._opened) >= 4096:
                self._opened.clear()
            self._opened[bucket] = terms
        return [term for term in terms if term.startswith(prefix)]


def vocab_terms(
    lists: Iterable[tuple[bytes, bytes]],
) -> Iterator[tuple[tuple[bytes, bytes], tuple[bytes, bytes]]]:
    """((kind, term), (table, part)) of a job's lists that queries enumerate: the vocabulary
    entry each list's part has."""
    for table, part in lists:
        if table == b"words" or table == b"types":
            yield (table, part), (table, part)
        elif table == b"params":
            name, _, value = part.partition(b"=")
            yield (PARAMS + name, value), (table, part)


class VocabWrites:
    """The vocabulary a group of index changes adds: each term once, written only if absent
    (a term's entries never change, and sealing again would only rewrite them); and the
    terms it may take away: those whose list a job left (gone when no shard of the list is
    left) and the ids of jobs that left the index, as a plain index's keys go with them."""

    def __init__(self) -> None:
        self.terms: set[tuple[bytes, bytes]] = set()
        # (kind, term) -> the (table, part) whose list must be empty for the term to go, and
        # the shard a job left (still there: the list is not empty, known by one lookup).
        self.left: dict[tuple[bytes, bytes], tuple[bytes, bytes, int]] = {}
        self.jobs_gone: set[bytes] = set()

    def add(self, kind: bytes, term: bytes) -> None:
        self.terms.add((kind, term))

    def add_lists(self, lists: Iterable[tuple[bytes, bytes]]) -> None:
        """The terms of a job's (table, part) lists that queries enumerate."""
        for term, _ in vocab_terms(lists):
            self.add(*term)

    def leave_lists(self, lists: Iterable[tuple[bytes, bytes]], shard: int) -> None:
        """Lists a job (in ``shard``) left: their terms go if the lists are empty after the
        change."""
        for term, (table, part) in vocab_terms(lists):
            self.left[term] = (table, part, shard)


def parts_with_prefix(
    sealer: IndexSealer,
    txn: lmdb.Transaction,
    vocab: lmdb.Cursor,
    table: bytes,
    prefix: bytes,
    max_part: int,
) -> list[bytes]:
    """The parts of ``table`` starting with ``prefix`` the vocabulary knows (sorted, as a
    plain index's walk gives them); a part whose list emptied may still be among them."""
    if table == b"words" or table == b"types":
        return sealer.terms(txn, vocab, table, prefix) or []
    if table == b"params":
        name, _, value = prefix.partition(b"=")
        head = name + b"="
        return [head + v for v in sealer.terms(txn, vocab, PARAMS + name, value) or []]
    if table == b"pairs":
        # The pairs with a word first and a prefix second: the words with that prefix, each
        # after the first word (pairs that do not exist have empty lists).
        first, space, second = prefix.partition(b" ")
        if not space:
            return []
        words = sealer.terms(txn, vocab, WORDS, second) or []
        pairs = {(first + b" " + w)[:max_part] for w in words}
        return sorted(p for p in pairs if p.startswith(prefix))
    raise ValueError(f"the {table.decode()} table has no vocabulary")
