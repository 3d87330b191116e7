"""Prompt families: jobs whose prompts say nearly the same thing (docs/FORMAT.md §9.4).

The index keeps each prompt's MinHash bands as posting lists (``bands``, kept up to date with
every other list, so this module only reads). Jobs that share a band are *candidates*; a
query re-ranks its candidates with rapidfuzz's ``token_set_ratio`` over the normalised
prompts, which scores word order and repeats as a person would (the same idea, reworded).

A *family* is a connected group of jobs linked by shared bands whose prompts are near
(FAMILY_SCORE): one walk of the bands of two jobs or more (the ``shared_bands`` table names
them, kept by the index's writes as ``bands`` is), a union-find over document numbers (4 bytes
a job, whatever the number of bands).
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyroaring import BitMap

from mjvault.errors import VaultLocked
from mjvault.index import bitmaps
from mjvault.index.db import SHARED_BANDS, Index, IndexReader
from mjvault.lock import describe_holder, read_holder
from mjvault.reports import Report, json_meta
from mjvault.similarity.minhash import bands, normalized, normalized_words

if TYPE_CHECKING:
    from mjvault.vault import Vault

# Candidates a query re-ranks at most, those sharing the most bands first: a prompt shared by
# a hundred thousand jobs would otherwise read them all.
MAX_CANDIDATES = 2_000
FAMILY_IDS = 5  # job ids a family lists (its first)
RELEASE_KEYS = 4_096  # bands walked between two releases of the mapped pages
BANDS = b"bands"
# Two prompts of one band are in one family when rapidfuzz's token_set_ratio of their
# normalised words is at least this (docs/design.md, "Prompt families": with every near pair
# of a band linked, 78 let boilerplate chain unrelated prompts, 86 lost variants; the
# precision and recall of each are there).
FAMILY_SCORE = 82.0
PROMPTS_KEPT = 65_536
# A band member is compared with every earlier one, a band of n jobs n²/2 scores at worst (a
# prompt repeated ten thousand times): past this many, later members are compared with the
# band's first BAND_COMPARED only, and only in such a band can the numbering order matter.
BAND_COMPARED = 256
# Earlier members from which a band member is scored against them in one rapidfuzz call (C's
# loop, not Python's): ten bands of more than 256 jobs were two thirds of the pairs scored at
# 100,000 jobs; a call costs more than a few single scores.
BATCH = 16


# What a family walk reads: (band part, its shards' values in order) of the bands it links by.
BandWalk = Callable[[IndexReader], Iterable[tuple[bytes, list[bytes]]]]


@dataclass(frozen=True)
class PromptHit(Report):
    job_id: str
    # 0-100: rapidfuzz's token_set_ratio of the normalised prompts
    score: float = field(metadata=json_meta(digits=2))
    prompt: str


@dataclass(frozen=True)
class Family(Report):
    size: int
    example: str  # the prompt of the family's first job
    job_ids: tuple[str, ...]  # its first FAMILY_IDS jobs, oldest first
    first: datetime | None
    last: datetime | None


def similar_prompts(vault: Vault, text: str, limit: int = 20) -> list[PromptHit]:
    """The jobs whose prompts are nearest ``text``, best first. A few typed words share no
    band with the long prompts that hold them (their shingle sets are too unequal), so the
    jobs whose prompts hold every word are candidates too."""
    return _ranked(vault, text, limit, exclude=None, with_words=True)


def like_job(vault: Vault, job_id: str, limit: int = 20) -> list[PromptHit]:
    """The jobs whose prompts are nearest job ``job_id``'s (an id or a unique prefix), best
    first, the job itself left out."""
    entry = vault.find_job(job_id)
    summary = vault.current_index().get(entry.job_id)
    if summary is None:
        return []
    return _ranked(vault, summary.prompt, limit, exclude=entry.job_id)


def _ranked(
    vault: Vault, text: str, limit: int, *, exclude: str | None, with_words: bool = False
) -> list[PromptHit]:
    from rapidfuzz import fuzz

    parts = bands(text)
    if not parts:
        return []
    query = normalized(text)
    hits: list[tuple[float, float, int, str, str]] = []
    with vault.current_index().reader() as reader:
        docs = _candidates(reader, parts, normalized_words(text) if with_words else [])
        for micros, _doc, raw_id in reader.docs(docs):
            job_id = raw_id.decode("utf-8")
            if job_id == exclude:
                continue
            summary = reader.summary(raw_id)
            if summary is None:
                continue
            prompt = str(summary.get("p") or "")
            other = normalized(prompt)
            # token_set_ratio says "the same words"; the plain ratio, among equals, prefers
            # the prompt worded the same way.
            score = fuzz.token_set_ratio(query, other)
            hits.append((-score, -fuzz.ratio(query, other), -micros, job_id, prompt))
    best = heapq.nsmallest(limit, hits)
    return [PromptHit(job_id=j, score=-s, prompt=p) for s, _, _, j, p in best]


def _candidates(reader: IndexReader, parts: Iterable[bytes], words: list[str]) -> list[int]:
    """Document numbers of the jobs sharing a band with ``parts``, those sharing most first,
    then of those whose prompts hold every one of ``words``: at most MAX_CANDIDATES.

    Among equals the highest numbers, the jobs added last, are kept: the ranking prefers the
    newest among equal scores, and a prompt shared by more jobs than MAX_CANDIDATES (a grid
    and its upscales, re-rolled) must give its newest, not the newest of its oldest."""
    live = reader.live()
    shared: Counter[int] = Counter()
    for part in parts:
        shared.update(reader.posting_list(BANDS, part) & live)
    best = heapq.nsmallest(MAX_CANDIDATES, shared.items(), key=lambda kv: (-kv[1], -kv[0]))
    chosen = [doc for doc, _ in best]
    if words and len(chosen) < MAX_CANDIDATES:
        holding = live.copy()
        for word in sorted(set(words)):
            holding &= reader.posting_list(b"words", word.encode("utf-8"))
            if not holding:
                break
        holding -= BitMap(chosen)
        if holding:
            chosen += list(holding[-(MAX_CANDIDATES - len(chosen)) :])
    return sorted(chosen)


def largest_families(
    vault: Vault, limit: int = 10, bands_of: BandWalk | None = None
) -> list[Family]:
    """The ``limit`` largest families of two jobs or more, largest first (ties: the one whose
    first job is older first, then the one numbered first). Chosen with the key they are
    sorted by, so the first ``n`` of a longer list are the list of ``n``. ``bands_of``: the
    bands walked (``every_band`` measures the walk the shared ones replaced)."""
    import numpy as np

    index = _current_format(vault)
    with index.reader() as reader:
        members, of_member = _roots(reader, index.release_pages, bands_of)
        if not len(members):
            return []
        sizes = np.bincount(of_member)
        roots = np.flatnonzero(sizes >= 2)
        if not len(roots):
            return []
        wanted = min(limit, len(roots))
        cut = np.sort(sizes[roots])[::-1][wanted - 1]  # the size of the last one shown
        # Larger than the cut: all shown; of the cut's size only some, by their first time,
        # which is read for those alone.
        chosen = roots[sizes[roots] > cut].tolist()
        tied = roots[sizes[roots] == cut]
        if len(chosen) + len(tied) > wanted:
            first = _first_times(reader, members, of_member, tied)
            tied = sorted(tied.tolist(), key=lambda root: (first[root], root))
        chosen += list(tied)[: wanted - len(chosen)]
        # Members grouped by family with one sort (stable: each family's in number order),
        # not one pass over every job per family shown.
        order = np.argsort(of_member, kind="stable")
        grouped = of_member[order]
        found = []
        for root in chosen:
            start, end = np.searchsorted(grouped, [root, root + 1])
            docs = members[order[start:end]].tolist()
            found.append((_family(reader, docs), root))
    never = datetime.max.replace(tzinfo=UTC)
    found.sort(key=lambda fr: (-fr[0].size, fr[0].first or never, fr[1]))
    return [family for family, _ in found]


def _current_format(vault: Vault) -> Index:
    """The index brought current. One of an older format that a writer holding the lock has
    not rebuilt yet lacks the bands' tables (``shared_bands`` came with format 9): walked as it
    is, it would show no family at all, so the caller is told to come back instead."""
    index = vault.current_index()
    if index.of_older_format():
        holder = describe_holder(read_holder(vault.path / "lock"))
        raise VaultLocked(
            f"the index is being brought up to date by {holder}: try again when it is done"
        )
    return index


def _first_times(reader: IndexReader, members: Any, of_member: Any, roots: Any) -> dict[int, int]:
    """The time (µs) of each family's oldest job with a known time, by root; a family with
    none comes after every other (as an unknown ``first`` does)."""
    import numpy as np

    inside = np.isin(of_member, roots)
    root_of = dict(zip(members[inside].tolist(), of_member[inside].tolist(), strict=True))
    never = 1 << 63
    first = dict.fromkeys(root_of.values(), never)
    for micros, doc, _ in reader.times(sorted(root_of)):
        if micros and micros < first[root_of[doc]]:
            first[root_of[doc]] = micros
    return first


def families_by_job(vault: Vault, bands_of: BandWalk | None = None) -> dict[str, int]:
    """Every job in a family of two or more, and its family's number (its first job's
    document number): for measuring families against a known truth, not for a large vault.
    ``bands_of``: the bands walked (``every_band`` to check the shared ones give the same)."""
    import numpy as np

    index = _current_format(vault)
    with index.reader() as reader:
        members, of_member = _roots(reader, index.release_pages, bands_of or shared_bands)
        if not len(members):
            return {}
        sizes = np.bincount(of_member)
        kept = sizes[of_member] >= 2
        pairs = zip(members[kept].tolist(), of_member[kept].tolist(), strict=True)
        family = dict(pairs)
        return {raw.decode("utf-8"): family[doc] for _, doc, raw in reader.docs(sorted(family))}


def _roots(reader: IndexReader, release: Any, bands_of: BandWalk | None = None) -> tuple[Any, Any]:
    """(every job's number, its family's root number), numpy arrays in number order."""
    import numpy as np

    live = reader.live()
    if not live:
        empty = np.zeros(0, dtype=np.uint32)
        return empty, empty
    parent = _linked(reader, live, release, bands_of or shared_bands)
    roots = np.frombuffer(parent, dtype=np.uint32)
    while True:  # every number to its root, a level at a time, in C
        up = roots[roots]
        if np.array_equal(up, roots):
            break
        roots = up
    members = np.frombuffer(array("I", live), dtype=np.uint32)  # roaring: in order
    return members, roots[members]


def shared_bands(reader: IndexReader) -> Iterator[tuple[bytes, list[bytes]]]:
    """(part, its shards' values in order) of every band holding two jobs or more, in key
    order: the SHARED_BANDS table names them, so the bands of one job (nearly all of them,
    1.45 million keys at 100,000 jobs) are never read."""
    bands_db = reader.dbs[BANDS]
    cursor = reader.txn.cursor(db=bands_db)
    for part in reader.txn.cursor(db=reader.dbs[SHARED_BANDS]).iternext(values=False):
        prefix = bytes(part) + bitmaps.SEP
        shards: list[bytes] = []
        if cursor.set_range(prefix):
            for key, value in cursor.iternext():
                if not bytes(key).startswith(prefix):
                    break
                shards.append(bytes(value))
        yield bytes(part), shards


def every_band(reader: IndexReader) -> Iterator[tuple[bytes, list[bytes]]]:
    """(part, its shards' values) of every band, in key order: the walk before SHARED_BANDS,
    which families must equal (the tests compare them)."""
    cursor = reader.txn.cursor(db=reader.dbs[BANDS])
    current, shards = b"", list[bytes]()
    for key, value in cursor.iternext():
        part = bytes(key[: -(len(bitmaps.SEP) + bitmaps.SHARD_SIZE)])
        if part != current:
            if shards:
                yield current, shards
            current, shards = part, []
        shards.append(bytes(value))
    if shards:
        yield current, shards


def _linked(
    reader: IndexReader, live: Any, release: Any, bands_of: BandWalk = shared_bands
) -> array[int]:
    """A union-find forest over document numbers: jobs that share a band and whose prompts
    are near (FAMILY_SCORE) in one tree.

    A band says two prompts may be near; boilerplate ("highly detailed, cinematic lighting")
    puts unrelated short prompts in one band now and then, and one such link would chain two
    families into one. Each member of a band is therefore compared with every earlier member
    not yet in its tree (the first BAND_COMPARED of a larger band), so which jobs are linked
    depends only on which pairs are near, not on the order they were numbered in: an
    incremental index and a rebuild give the same families."""
    import numpy as np
    from rapidfuzz import fuzz, process

    size = live.max() + 1
    parent = array("I", range(size))
    prompts = _Prompts(reader)
    # With a cutoff rapidfuzz stops early and gives 0 below it: most pairs a band offers are
    # far (boilerplate), and this loop was nearly all the walk's time.
    near = fuzz.token_set_ratio

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving: trees stay shallow
            x = parent[x]
        return x

    for n, (_part, shards) in enumerate(bands_of(reader), 1):
        if n % RELEASE_KEYS == 0:
            release()
        earlier: list[int] = []  # the band's members so far (its shards come in order)
        said: list[str] = []  # their prompts, once the band is scored in one call (BATCH)
        for value in shards:
            # A shard of one number is read from its bytes, not made a bitmap (in a walk of
            # every band that was a third of the time).
            only = bitmaps.only_number(value)
            if only is not None:
                jobs: Iterable[int] = (only,) if only in live else ()
            else:
                jobs = bitmaps.load(value) & live  # a stopped update's numbers link no one
            for doc in jobs:
                if earlier:  # the first member of a band is read only if a second comes
                    mine, root = prompts[doc], find(doc)
                if len(earlier) >= BATCH:
                    if not said:
                        said = [prompts[other] for other in earlier]
                    # A large band (boilerplate): its scores in one call, then the near ones
                    # linked in the band's order, as the loop below would.
                    scores = process.cdist([mine], said, scorer=near, score_cutoff=FAMILY_SCORE)
                    for i in np.flatnonzero(scores[0]).tolist():
                        a = find(earlier[i])
                        if a != root:
                            parent[max(a, root)] = root = min(a, root)
                else:
                    for other in earlier:
                        a = find(other)
                        if a == root or not near(prompts[other], mine, score_cutoff=FAMILY_SCORE):
                            continue
                        # The lower number is the root: a family's root is its first job.
                        parent[max(a, root)] = root = min(a, root)
                if len(earlier) < BAND_COMPARED:
                    if said:
                        said.append(mine)
                    earlier.append(doc)
    return parent


class _Prompts(dict[int, str]):
    """Normalised prompts by document number, the last PROMPTS_KEPT of them remembered: a band
    walk asks the same few again and again (a family's first member), and memory stays flat.
    A dict whose misses read the index: a hit is a lookup in C."""

    def __init__(self, reader: IndexReader) -> None:
        super().__init__()
        self._reader = reader

    def __missing__(self, doc: int) -> str:
        if len(self) >= PROMPTS_KEPT:
            self.clear()
        found = ""
        for _, _, raw in self._reader.docs([doc]):
            summary = self._reader.summary(raw)
            found = normalized(str(summary.get("p") or "")) if summary else ""
        self[doc] = found
        return found


def _family(reader: IndexReader, docs: list[int]) -> Family:
    entries = sorted(reader.times(docs))  # (µs, doc, id): oldest first
    first_ids = reader.job_ids([(doc, tail) for _, doc, tail in entries[:FAMILY_IDS]])
    job_ids = tuple(raw.decode("utf-8") for raw in first_ids)
    summary = reader.summary(first_ids[0]) if first_ids else None
    known = [micros for micros, _, _ in entries if micros]
    return Family(
        size=len(entries),
        example=str(summary.get("p") or "") if summary else "",
        job_ids=job_ids,
        first=_moment(min(known)) if known else None,
        last=_moment(max(known)) if known else None,
    )


def _moment(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)
