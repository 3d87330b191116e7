"""Keyset pages of a query's matches: the page after a job, whatever its position.

A page is asked with the sort key of the last job of the page before (a cursor), never an
offset: by date the key is (µs, job id), the order :func:`mjvault.index.search.search` gives
(newest: both descending; oldest: both ascending; unknown times are µs 0, last by newest);
by relevance it is (score, µs, job id), score descending then newest first.

The page after a key starts at the key's day list: only the days from there on are read
(their bitmaps intersected with the matches) until the page is full, and only the jobs of
those days are looked up, so a page costs the same at the top and at the millionth job.
Matches few enough are looked up at once instead of walking days (as search does).

:func:`timeline` cuts the matches into runs of ``size`` jobs in sort order for a scrubber:
per-day counts first (an intersection's cardinality, nothing listed), then the jobs of the
days a run boundary falls in, sorted, for the boundary's key and time.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pyroaring import BitMap

from mjvault.index import bitmaps
from mjvault.index.db import _MICROS, DOC_ID_AT, SUMMARY_WEIGHT, Index, IndexReader
from mjvault.index.keys import key_part
from mjvault.index.query import Query
from mjvault.index.search import SortOrder, _check_sort, exact_matches, score_classes
from mjvault.reports import Report

# Matches looked up at once rather than by walking the day lists (a lookup each).
LOOK_UP_ALL_UP_TO = 2048
MAX_ID_BYTES = 255

DateKey = tuple[int, bytes]  # (µs, job id)


@dataclass(frozen=True)
class PageKey:
    """Where a page ends: the sort key of its last job."""

    sort: SortOrder
    micros: int
    job_id: bytes
    score: float = 0.0

    def encode(self) -> str:
        """Opaque to clients: url-safe base64 of the sort's letter, score, µs and id."""
        raw = self.sort[0].encode() + struct.pack(">dq", self.score, self.micros) + self.job_id
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str, sort: SortOrder) -> PageKey:
        """ValueError unless ``text`` is a cursor of ``sort``."""
        if len(text) > 400:
            raise ValueError("cursor too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError):
            raise ValueError("not a cursor") from None
        if len(raw) < 17 or len(raw) > 17 + MAX_ID_BYTES or raw[:1] != sort[0].encode():
            raise ValueError(f"not a cursor of sort {sort}")
        score, micros = struct.unpack(">dq", raw[1:17])
        if score != score:  # NaN
            raise ValueError("not a cursor")
        return cls(sort, micros, raw[17:], score)


@dataclass(frozen=True)
class Page:
    job_ids: list[str]
    next: PageKey | None  # None: nothing after this page
    total: int


def page(
    index: Index,
    query: Query,
    *,
    sort: SortOrder = "newest",
    after: PageKey | None = None,
    limit: int = 200,
) -> Page:
    """The ``limit`` matches of ``query`` after ``after`` (from the first when None)."""
    _check_sort(sort)
    with index.reader() as reader:
        docs = exact_matches(reader, query)
        if sort == "relevance":
            found = _relevance_page(reader, query, docs, after, limit + 1)
        else:
            start = (after.micros, after.job_id) if after is not None else None
            newest = sort == "newest"
            found = [
                PageKey(sort, m, j) for m, j in _date_page(reader, docs, start, limit + 1, newest)
            ]
    more = len(found) > limit
    found = found[:limit]
    return Page(
        job_ids=[k.job_id.decode("utf-8") for k in found],
        next=found[-1] if more and found else None,
        total=len(docs),
    )


def _beyond(key: DateKey, start: DateKey, newest: bool) -> bool:
    return key < start if newest else key > start


def _date_page(
    reader: IndexReader, docs: BitMap, start: DateKey | None, limit: int, newest: bool
) -> list[DateKey]:
    """The first ``limit`` (µs, id) of ``docs`` after ``start`` in date order."""
    if not docs or limit <= 0:
        return []
    if len(docs) <= LOOK_UP_ALL_UP_TO:
        entries = list(reader.times(docs))
        if start is not None:
            entries = [e for e in entries if (e[0] <= start[0] if newest else e[0] >= start[0])]
        return _first_named(reader, entries, start, limit, newest)
    found: list[DateKey] = []
    first_day = bitmaps.day_of(start[0]) if start is not None else None
    for day, jobs in reader.days_from(first_day, newest_first=newest):
        hit = jobs & docs
        if not hit:
            continue
        entries = list(reader.times(hit))
        if start is not None and day == first_day:
            entries = [e for e in entries if (e[0] <= start[0] if newest else e[0] >= start[0])]
            found += _first_named(reader, entries, start, limit - len(found), newest)
        else:
            found += _first_named(reader, entries, None, limit - len(found), newest)
        if len(found) >= limit:
            break
    return found[:limit]


def _first_named(
    reader: IndexReader,
    entries: list[tuple[int, int, bytes]],
    start: DateKey | None,
    limit: int,
    newest: bool,
) -> list[DateKey]:
    """The first ``limit`` of ``entries`` ((µs, doc, id's entry)) after ``start`` by (µs,
    id). Only ids that can make the page are opened: those up to the ``limit``-th time past
    the start's, ties included (a sealed index's ids each cost a decryption)."""
    if limit <= 0 or not entries:
        return []
    entries.sort(key=lambda e: e[0], reverse=newest)
    # Entries at the start's own time may fall on either side of it: kept to be compared.
    tied = sum(1 for e in entries if start is not None and e[0] == start[0])
    want = limit + tied
    if len(entries) > want:
        edge = entries[want - 1][0]
        end = want
        while end < len(entries) and entries[end][0] == edge:
            end += 1
        del entries[end:]
    ids = reader.job_ids([(doc, tail) for _, doc, tail in entries])
    named = [(micros, job_id) for (micros, _, _), job_id in zip(entries, ids, strict=True)]
    if start is not None:
        named = [k for k in named if _beyond(k, start, newest)]
    named.sort(reverse=newest)
    return named[:limit]


def _relevance_page(
    reader: IndexReader, query: Query, docs: BitMap, after: PageKey | None, limit: int
) -> list[PageKey]:
    """By score, best first, each score's jobs newest first (search's order): the scores
    above the cursor's are skipped as whole bitmaps, its own score's jobs walked from its
    key."""
    found: list[PageKey] = []
    for score, jobs in score_classes(reader, query, docs):
        if after is not None and score > after.score:
            continue
        start = (after.micros, after.job_id) if after is not None and score == after.score else None
        for micros, job_id in _date_page(reader, jobs, start, limit - len(found), True):
            found.append(PageKey("relevance", micros, job_id, score))
        if len(found) >= limit:
            break
    return found


def children(index: Index, job_id: str, limit: int) -> list[str]:
    """The jobs whose parent is ``job_id`` (its upscales, variations, pans …), oldest
    first: one list of the index (``parents``), whatever the number of jobs."""
    with index.reader() as reader:
        docs = reader.posting_list(b"parents", key_part(job_id)) & reader.live()
        return [j.decode("utf-8") for _, j in _date_page(reader, docs, None, limit, False)]


# -- timeline ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment(Report):
    cursor: PageKey | None  # the key of the last job before the segment (None: the first)
    count: int
    first: datetime | None  # the time of its first and last jobs (None: unknown)
    last: datetime | None

    def to_json(self) -> dict[str, object]:
        # Its own shape: the cursor encoded for clients, times with a Z (the web page's).
        return {
            "cursor": self.cursor.encode() if self.cursor is not None else None,
            "count": self.count,
            "first": _iso(self.first),
            "last": _iso(self.last),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _moment(micros: int) -> datetime | None:
    return datetime.fromtimestamp(micros / 1_000_000, UTC) if micros else None


def timeline(
    index: Index, query: Query, *, sort: SortOrder = "newest", size: int = 500
) -> tuple[int, list[Segment]]:
    """(matches, their runs of ``size`` jobs in ``sort`` order, newest or oldest)."""
    if sort not in ("newest", "oldest"):
        raise ValueError("a timeline is by date: newest or oldest")
    newest = sort == "newest"
    with index.reader() as reader:
        docs = exact_matches(reader, query)
        total = len(docs)
        if not total:
            return 0, []
        # Positions whose (µs, id) the segments need: each segment's first and last job.
        starts = list(range(0, total, size))
        wanted: dict[int, tuple[int, bytes] | None] = {}
        for s in starts:
            wanted[s] = None
            wanted[min(s + size, total) - 1] = None
        for position, key in _keys_at(reader, docs, sorted(wanted), newest):
            wanted[position] = key
    segments = []
    for s in starts:
        end = min(s + size, total) - 1
        before = wanted.get(s - 1) if s else None
        first, last = wanted[s], wanted[end]
        segments.append(
            Segment(
                PageKey(sort, before[0], before[1]) if before is not None else None,
                end - s + 1,
                _moment(first[0]) if first is not None else None,
                _moment(last[0]) if last is not None else None,
            )
        )
    return total, segments


def _keys_at(
    reader: IndexReader, docs: BitMap, positions: list[int], newest: bool
) -> Iterator[tuple[int, tuple[int, bytes]]]:
    """(position, (µs, id)) of each of ``positions`` (ascending) in date order: the days
    counted, and only the days holding a wanted position sorted (named only at it)."""
    pending = iter(positions)
    wanted = next(pending, None)
    seen = 0
    for _, jobs in reader.days_from(None, newest_first=newest):
        if wanted is None:
            return
        count = docs.intersection_cardinality(jobs)
        if seen + count <= wanted:
            seen += count
            continue
        found = _day(reader, jobs & docs)
        times = [micros for micros, _, _ in found]
        ranked = sorted(times, reverse=newest)
        inside = []
        while wanted is not None and wanted < seen + count:
            inside.append(wanted)
            wanted = next(pending, None)
        for position in inside:
            micros = ranked[position - seen]
            # The job at a position among others of the same µs is decided by id: only the
            # tied are named (a sealed index's names each cost a decryption).
            tied = [(doc, bytes(value[DOC_ID_AT:])) for m, doc, value in found if m == micros]
            ids = sorted(reader.job_ids(tied), reverse=newest)
            first_tied = ranked.index(micros)
            yield position, (micros, ids[position - seen - first_tied])
        seen += count


def _day(reader: IndexReader, docs: BitMap) -> list[tuple[int, int, bytes | memoryview]]:
    """(µs, document number, ``docs`` value) of ``docs`` (one day's), asked of LMDB
    in one call: at a million jobs nearly every day holds a segment boundary, so this is a
    lookup a job, and one call for the day's jobs costs less than one call each; the id's
    bytes are cut from the value only for the tied few."""
    numbers = list(docs)
    found = reader._cursor(b"docs").getmulti([bitmaps.doc_key(doc) for doc in numbers])
    # Counted as the lookups they are, so a walk's mapped pages are released as for times().
    reader._looked_up_one(SUMMARY_WEIGHT * len(numbers))
    unpack = _MICROS.unpack_from
    if len(found) == len(numbers):  # every number has a job: keys come back in their order
        return [
            (unpack(value)[0], doc, value) for doc, (_, value) in zip(numbers, found, strict=True)
        ]
    return [(unpack(value)[0], bitmaps.doc_of(bytes(key)), value) for key, value in found]
