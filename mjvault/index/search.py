"""Evaluate a :class:`~mjvault.index.query.Query` against the LMDB index.

Every positive condition becomes a *source*: a union of exact posting lists (a word; each word
a prefix ``cat*`` expands to; each stored value a comparison ``s>100`` accepts), or a date
range. The index keeps each list's length (the ``counts`` table), so the shortest source is
read whole and every other one is *probed* per candidate (one B-tree lookup each), shortest
first, instead of read: a query costs about the size of its most selective condition, not of
its broadest one.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mjvault.errors import UsageError
from mjvault.index.db import SEP, Index, IndexReader, _part
from mjvault.index.query import VERSIONED_PARAMS, FieldFilter, Query, Term, compare, param_number
from mjvault.jobtypes import type_matches
from mjvault.text import search_tokens

SortOrder = Literal["newest", "oldest", "relevance"]
SORT_ORDERS: tuple[SortOrder, ...] = ("newest", "oldest", "relevance")
_MICROS = struct.Struct(">q")
BM25_K1 = 1.2
BM25_B = 0.75
STREAM_ABOVE = 50_000  # matches a search may hold as a set (a few MB); more are streamed
WALK_CHUNK = 256  # jobs of the dates table tested together when streaming


@dataclass(frozen=True)
class SearchResult:
    total: int
    job_ids: list[str]


class _Source:
    """A set of jobs the index can list (``scan``) and test candidates against (``restrict``)."""

    def scan(self, reader: IndexReader) -> Iterator[bytes]:
        raise NotImplementedError

    def size(self, reader: IndexReader) -> int:
        """How many jobs ``scan`` yields (exact for postings, estimated for a date range)."""
        raise NotImplementedError

    def restrict(self, reader: IndexReader, candidates: set[bytes], keep: bool) -> set[bytes]:
        """The candidates in this set (keep=True) or not in it (keep=False)."""
        raise NotImplementedError


class _Postings(_Source):
    """A union of exact posting lists (``parts``) in one table."""

    def __init__(self, table: bytes, parts: tuple[bytes, ...]) -> None:
        self.table = table
        self.parts = parts

    def scan(self, reader: IndexReader) -> Iterator[bytes]:
        for part in self.parts:
            yield from reader.postings(self.table, part)

    def size(self, reader: IndexReader) -> int:
        return sum(reader.count(self.table, part) for part in self.parts)

    def restrict(self, reader: IndexReader, candidates: set[bytes], keep: bool) -> set[bytes]:
        if not candidates or not self.parts:
            return candidates if not keep else set()
        # A probe (one B-tree descent) costs about two steps of a scan.
        if len(candidates) * len(self.parts) > 2 * self.size(reader):
            members = set(self.scan(reader))
            return candidates & members if keep else candidates - members
        has = reader.prober(self.table)
        if len(self.parts) == 1:
            head = self.parts[0] + SEP
            if keep:
                return {j for j in candidates if has(head + j)}
            return {j for j in candidates if not has(head + j)}
        heads = [part + SEP for part in self.parts]
        return {j for j in candidates if any(has(h + j) for h in heads) == keep}


class _DateRange(_Source):
    """Jobs enqueued within [low, high]; remembers every time it learns in ``times``."""

    def __init__(self, low: int | None, high: int | None, times: dict[bytes, int]) -> None:
        self.low = low
        self.high = high
        self.times = times

    def scan(self, reader: IndexReader) -> Iterator[bytes]:
        for micros, job_id in reader.dates(self.low, self.high):
            if micros:  # an unknown time is outside every range
                self.times[job_id] = micros
                yield job_id

    def size(self, reader: IndexReader) -> int:
        # Jobs are spread over time unevenly, but a linear guess orders sources well enough.
        span = reader.time_span()
        if span is None:
            return 0
        oldest, newest = span
        low = max(oldest, self.low if self.low is not None else oldest)
        high = min(newest, self.high if self.high is not None else newest)
        if high < low:
            return 0
        return int(reader.job_count() * (high - low + 1) / max(1, newest - oldest + 1)) + 1

    def restrict(self, reader: IndexReader, candidates: set[bytes], keep: bool) -> set[bytes]:
        _learn_times(reader, candidates, self.times)
        times = self.times
        return {j for j in candidates if _in_range(times[j], self.low, self.high) == keep}


def _learn_times(reader: IndexReader, job_ids: Iterable[bytes], times: dict[bytes, int]) -> None:
    get = reader.timer()
    for job_id in job_ids:
        if job_id not in times:
            value = get(job_id)
            times[job_id] = _MICROS.unpack(value)[0] if value is not None else 0


def _word_sources(reader: IndexReader, term: Term) -> list[_Source]:
    sources: list[_Source] = []
    for position, token in enumerate(term.tokens):
        if term.prefix and position == len(term.tokens) - 1:
            parts = tuple(reader.parts_with_prefix(b"words", _part(token)))
        else:
            parts = (_part(token),)
        sources.append(_Postings(b"words", parts))
    return sources


def _filter_source(reader: IndexReader, f: FieldFilter) -> _Source | None:
    """The postings of a type or parameter filter; None for ``user:`` (not indexed)."""
    if f.field == "user":
        return None
    if f.field == "type":
        # The same words as `sync --type`: type:video is video_diffusion and video_start_end.
        types = reader.parts_with_prefix(b"types", b"")  # a few dozen distinct types at most
        return _Postings(
            b"types",
            tuple(t for t in types if type_matches(t.decode("utf-8", "replace"), f.value)),
        )
    head = _part(f"{f.field}=")
    if f.op == "=" and f.field not in VERSIONED_PARAMS:
        return _Postings(b"params", (_part(f"{f.field}={f.value}"),))
    wanted = param_number(f.field, f.value)
    parts = []
    for part in reader.parts_with_prefix(b"params", head):
        value = part[len(head) :].decode("utf-8", "replace")
        if f.op == "=":
            # v:6 is 6, 6.0, 6.1 …: the version family, not only the literal "6"
            if value == f.value or value.startswith(f.value + "."):
                parts.append(part)
            continue
        number = param_number(f.field, value)
        if number is not None and wanted is not None and compare(f.op, number, wanted):
            parts.append(part)
    return _Postings(b"params", tuple(parts))


def _contains_sequence(tokens: list[str], wanted: tuple[str, ...], prefix: bool) -> bool:
    size = len(wanted)
    for start in range(len(tokens) - size + 1):
        window = tokens[start : start + size]
        if window[:-1] == list(wanted[:-1]) and (
            window[-1].startswith(wanted[-1]) if prefix else window[-1] == wanted[-1]
        ):
            return True
    return False


def _micros(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000) if moment is not None else None


def search(
    index: Index, query: Query, *, sort: SortOrder = "newest", limit: int | None = None
) -> SearchResult:
    """The jobs matching ``query``, in ``sort`` order, at most ``limit`` of them."""
    if sort not in SORT_ORDERS:
        raise UsageError(f"unknown sort order {sort!r}", hint="newest, oldest or relevance")
    with index.reader() as reader:
        return _search(reader, query, sort, limit)


def _search(reader: IndexReader, query: Query, sort: SortOrder, limit: int | None) -> SearchResult:
    if query.empty and query.unsearchable:
        return SearchResult(0, [])  # "🦊" alone must not list every job
    times: dict[bytes, int] = {}
    positive = _positive_sources(reader, query, times)

    if positive:
        # Read the shortest list whole; test its jobs against the others, shortest first,
        # so the candidates shrink as early as they can.
        ordered_sources = sorted(positive, key=lambda source: source.size(reader))
        candidates = set(ordered_sources[0].scan(reader))
        for source in ordered_sources[1:]:
            if not candidates:
                break
            candidates = source.restrict(reader, candidates, keep=True)
    else:
        # Nothing narrows: the date table lists every job, with its time.
        for micros, job_id in reader.dates():
            times[job_id] = micros
        candidates = set(times)
    prompts: dict[bytes, list[str]] = {}
    candidates = _refine(reader, query, candidates, times, prompts, sort == "relevance")

    total = len(candidates)
    if sort == "relevance":
        scores = _bm25(reader, query, candidates, prompts)
        ordered = sorted(candidates, key=lambda j: (scores[j], times.get(j, 0), j), reverse=True)
    elif limit is not None and _walk_is_cheaper(reader, candidates, times, limit):
        ordered = _first_by_date(reader, candidates, limit, newest=(sort == "newest"))
    else:
        _learn_times(reader, candidates, times)
        ordered = sorted(candidates, key=lambda j: (times[j], j), reverse=(sort == "newest"))
    chosen = ordered[:limit] if limit is not None else ordered
    return SearchResult(total=total, job_ids=[j.decode("utf-8") for j in chosen])


def _positive_sources(reader: IndexReader, query: Query, times: dict[bytes, int]) -> list[_Source]:
    """What the query's positive conditions select; a date range learns times into ``times``."""
    low, high = _micros(query.since), _micros(query.until)
    positive: list[_Source] = []
    for term in query.terms:
        if not term.negated:
            positive.extend(_word_sources(reader, term))
    for f in query.filters:
        if not f.negated:
            source = _filter_source(reader, f)
            if source is not None:
                positive.append(source)
    if low is not None or high is not None:
        positive.append(_DateRange(low, high, times))
    return positive


def _refine(
    reader: IndexReader,
    query: Query,
    candidates: set[bytes],
    times: dict[bytes, int],
    prompts: dict[bytes, list[str]],
    relevance: bool,
) -> set[bytes]:
    """The candidates that pass the negated conditions, phrases and ``user:``."""
    for term in query.terms:
        if term.negated:
            candidates -= _negated_term_jobs(reader, candidates, term)
    for f in query.filters:
        if f.negated:
            source = _filter_source(reader, f)
            if source is not None:
                candidates = source.restrict(reader, candidates, keep=False)

    # Phrases, users and relevance need the job's summary: read it once, keep what it tells.
    phrases = [t for t in query.terms if not t.negated and t.is_phrase]
    users = [f for f in query.filters if f.field == "user"]
    if phrases or users or relevance:
        kept = set()
        for job_id in candidates:
            doc = reader.summary(job_id)
            if doc is None:
                continue
            tokens = search_tokens(doc.get("p") or "")
            if any(not _contains_sequence(tokens, t.tokens, t.prefix) for t in phrases):
                continue
            if any(_user_matches(doc.get("u"), f.value) == f.negated for f in users):
                continue
            times[job_id] = doc.get("ts") or 0
            if relevance:
                prompts[job_id] = tokens
            kept.add(job_id)
        candidates = kept
    return candidates


def iter_search(
    index: Index, query: Query, *, sort: SortOrder = "newest", limit: int | None = None
) -> Iterator[str]:
    """The ids :func:`search` returns, in the same order, without holding them all.

    A search holds its matches as a set to sort them; past STREAM_ABOVE matches (or with no
    positive condition, which matches every job) it walks the dates table in the order asked
    instead and tests each chunk of WALK_CHUNK jobs against the conditions, so memory stays
    flat however many jobs match. Relevance needs every score before the first answer: it is
    not streamed.
    """
    if sort not in SORT_ORDERS:
        raise UsageError(f"unknown sort order {sort!r}", hint="newest, oldest or relevance")
    if sort == "relevance" or (limit is not None and limit <= STREAM_ABOVE):
        yield from search(index, query, sort=sort, limit=limit).job_ids
        return
    with index.reader() as reader:
        if query.empty and query.unsearchable:
            return
        times: dict[bytes, int] = {}
        positive = _positive_sources(reader, query, times)
        sizes = [source.size(reader) for source in positive]
        if positive and min(sizes) <= STREAM_ABOVE:
            yield from _search(reader, query, sort, limit).job_ids
            return
        ordered = [source for _, source in sorted(zip(sizes, positive, strict=True), key=_first)]
        walk = reader.dates_newest_first() if sort == "newest" else reader.dates()
        left = limit
        for chunk in _chunks(walk, WALK_CHUNK):
            times.clear()
            times.update((job_id, micros) for micros, job_id in chunk)
            candidates = set(times)
            for source in ordered:
                if not candidates:
                    break
                candidates = source.restrict(reader, candidates, keep=True)
            candidates = _refine(reader, query, candidates, times, {}, False)
            index.pages.touched(len(chunk))
            for _, job_id in chunk:
                if job_id in candidates:
                    yield job_id.decode("utf-8")
                    if left is not None:
                        left -= 1
                        if left <= 0:
                            return


def count_matches(index: Index, query: Query) -> int:
    """How many jobs match ``query``, in flat memory (see :func:`iter_search`)."""
    if query.empty and not query.unsearchable:
        return index.job_count()
    return sum(1 for _ in iter_search(index, query, sort="oldest"))


def _first(pair: tuple[int, _Source]) -> int:
    return pair[0]


def _chunks(walk: Iterator[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for item in walk:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _walk_is_cheaper(
    reader: IndexReader, candidates: set[bytes], times: dict[bytes, int], limit: int
) -> bool:
    """Walking the date table until ``limit`` candidates turn up takes about
    ``limit * jobs / candidates`` steps; looking each candidate's time up takes one read
    (about two steps' worth) per candidate whose time is not known yet."""
    unknown = sum(1 for j in candidates if j not in times)
    if unknown == 0 or not candidates:
        return False
    walk_steps = limit * reader.job_count() / len(candidates)
    return walk_steps < 2 * unknown


def _first_by_date(
    reader: IndexReader, candidates: set[bytes], limit: int, *, newest: bool
) -> list[bytes]:
    found: list[bytes] = []
    walk = reader.dates_newest_first() if newest else reader.dates()
    for _, job_id in walk:
        if job_id in candidates:
            found.append(job_id)
            if len(found) >= limit:
                break
    return found


def _in_range(micros: int, low: int | None, high: int | None) -> bool:
    if micros == 0:  # unknown time: outside every range
        return False
    return (low is None or micros >= low) and (high is None or micros <= high)


def _user_matches(username: str | None, wanted: str) -> bool:
    return username is not None and username.casefold() == wanted.casefold()


def _negated_term_jobs(reader: IndexReader, candidates: set[bytes], term: Term) -> set[bytes]:
    """The candidates that contain ``term`` (a word, prefix or phrase)."""
    inside = set(candidates)
    for source in _word_sources(reader, term):
        inside = source.restrict(reader, inside, keep=True)
    if not term.is_phrase:
        return inside
    confirmed = set()
    for job_id in inside:
        doc = reader.summary(job_id)
        if doc and _contains_sequence(search_tokens(doc.get("p") or ""), term.tokens, term.prefix):
            confirmed.add(job_id)
    return confirmed


def _bm25(
    reader: IndexReader, query: Query, candidates: set[bytes], prompts: dict[bytes, list[str]]
) -> dict[bytes, float]:
    """Okapi BM25 over prompt words; the average length is the candidates' (close enough)."""
    words = query.positive_words()
    total = max(1, reader.job_count())
    idf = {}
    for word in words:
        df = reader.count(b"words", _part(word))
        idf[word] = math.log(1 + (total - df + 0.5) / (df + 0.5))
    lengths = [len(prompts.get(j, ())) for j in candidates]
    average = (sum(lengths) / len(lengths)) if lengths else 1.0
    scores: dict[bytes, float] = {}
    for job_id in candidates:
        tokens = prompts.get(job_id, [])
        counts = Counter(tokens)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / max(average, 1.0))
        score = 0.0
        for word in words:
            tf = counts.get(word, 0)
            if tf:
                score += idf[word] * tf * (BM25_K1 + 1) / (tf + norm)
        scores[job_id] = score
    return scores
