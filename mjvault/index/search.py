"""Evaluate a :class:`~mjvault.index.query.Query` against the LMDB index.

Every condition is a set of document numbers (mjvault/index/bitmaps.py): a word's posting
list; a phrase's pairs of neighbouring words (the ``pairs`` lists); the union of the lists a
prefix ``cat*`` expands to, or of the stored values a comparison ``s>100`` accepts; the days
a date range covers. Positive conditions are intersected and negated ones subtracted, in C
(Roaring bitmaps), so a query costs a few bitmap reads whatever the number of jobs it
matches. What the lists cannot tell is then checked per job: the word order of a phrase of
three words or more (its pairs may be apart; from the job's summary), and the exact time of
a job on the first or last day of a range that starts or ends within a day.

Ordering by date walks the day lists from the newest (or oldest) end, intersecting each with
the matches, until the page is full; only the jobs of the days read are looked up and
sorted. Everything streams: the matches are a compressed bitmap (about 130 KB for a million
jobs) and the jobs are looked up a day at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pyroaring import BitMap

from mjvault.errors import UsageError
from mjvault.index import bitmaps
from mjvault.index.keys import MAX_KEY_PART, key_part
from mjvault.index.query import VERSIONED_PARAMS, FieldFilter, Query, Term, compare, param_number
from mjvault.jobtypes import type_matches
from mjvault.text import search_tokens

if TYPE_CHECKING:
    # Only for annotations: the index calls into this module (Index.search), not the reverse.
    from mjvault.index.db import Index, IndexReader

SortOrder = Literal["newest", "oldest", "relevance"]
SORT_ORDERS: tuple[SortOrder, ...] = ("newest", "oldest", "relevance")
BM25_K1 = 1.2
BM25_B = 0.75
# A day list read while walking for the newest matches costs about as much as looking up
# this many jobs' times (a bitmap's read and intersection against one B-tree lookup each).
DAY_COST_IN_LOOKUPS = 4
# Matches whose prompt lengths relevance looks up one by one; past this, it reads the lengths
# lists instead (about a hundred of them, a few ms at a million jobs).
LOOK_UP_LENGTHS_UP_TO = 4096


@dataclass(frozen=True)
class SearchResult:
    total: int
    job_ids: list[str]


@dataclass
class Matches:
    """What the index alone says matches a query, and what is left to check per job.

    ``docs`` are document numbers; every job that matches is in it, and every one in it
    matches once ``phrases`` (phrases of three words or more: their word pairs are side by
    side, but perhaps not in one run) are checked against its prompt.
    """

    docs: BitMap
    phrases: tuple[Term, ...]

    @property
    def exact(self) -> bool:
        return not self.phrases


def _micros(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000) if moment is not None else None


def _union(sets: Iterable[BitMap]) -> BitMap:
    sets = list(sets)
    if not sets:
        return BitMap()
    return BitMap.union(*sets) if len(sets) > 1 else sets[0]


def _term_set(reader: IndexReader, term: Term) -> BitMap:
    """Jobs with every token of ``term`` (the last one as a prefix when it is one)."""
    sets = []
    for position, token in enumerate(term.tokens):
        if term.prefix and position == len(term.tokens) - 1:
            parts = list(reader.parts_with_prefix(b"words", key_part(token)))
            sets.append(_union(reader.posting_list(b"words", part) for part in parts))
        else:
            sets.append(reader.posting_list(b"words", key_part(token)))
    return _intersection(sets)


def _phrase_set(reader: IndexReader, term: Term) -> tuple[BitMap, bool]:
    """Jobs whose prompt has each pair of the phrase's neighbouring words side by side, and
    whether that is the answer itself: for a phrase of two words it is (unless the pair is
    longer than a key holds); a longer phrase's pairs may be apart, so its order is checked."""
    pairs = list(zip(term.tokens, term.tokens[1:], strict=False))
    exact = len(pairs) == 1
    sets = []
    for position, (first, second) in enumerate(pairs):
        text = f"{first} {second}"
        exact = exact and len(text.encode("utf-8")) < MAX_KEY_PART
        if term.prefix and position == len(pairs) - 1:
            parts = list(reader.parts_with_prefix(b"pairs", key_part(text)))
            sets.append(_union(reader.posting_list(b"pairs", part) for part in parts))
        else:
            sets.append(reader.posting_list(b"pairs", key_part(text)))
    return _intersection(sets), exact


def _intersection(sets: list[BitMap]) -> BitMap:
    if not sets:
        return BitMap()
    sets.sort(key=len)
    result = sets[0].copy() if len(sets) > 1 else sets[0]
    for other in sets[1:]:
        if not result:
            break
        result &= other
    return result


def _filter_set(reader: IndexReader, f: FieldFilter) -> BitMap:
    """The jobs a type, user or parameter filter accepts."""
    if f.field == "user":
        return reader.posting_list(b"users", key_part(f.value.casefold()))
    if f.field == "type":
        # The same words as `sync --type`: type:video is video_diffusion and video_start_end.
        types = reader.parts_with_prefix(b"types", b"")  # a few dozen distinct types at most
        return _union(
            reader.posting_list(b"types", t)
            for t in types
            if type_matches(t.decode("utf-8", "replace"), f.value)
        )
    if f.op == "=" and f.field not in VERSIONED_PARAMS:
        return reader.posting_list(b"params", key_part(f"{f.field}={f.value}"))
    head = key_part(f"{f.field}=")
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
    return _union(reader.posting_list(b"params", part) for part in parts)


def _date_set(reader: IndexReader, low: int | None, high: int | None) -> tuple[BitMap, BitMap]:
    """(jobs of the days the range touches, those of them on a day it covers only partly)."""
    first = bitmaps.day_of(low) if low is not None else 1  # never day 0: unknown times
    last = bitmaps.day_of(high) if high is not None else 1 << 31
    whole: list[BitMap] = []
    partial: list[BitMap] = []
    for day, jobs in reader.day_lists(max(first, 1), last):
        day_low, day_high = bitmaps.day_bounds(day)
        cut = (low is not None and low > day_low) or (high is not None and high < day_high)
        (partial if cut else whole).append(jobs)
    partial_jobs = _union(partial)
    return _union([*whole, partial_jobs]), partial_jobs


def matches(reader: IndexReader, query: Query) -> Matches:
    """The jobs the index shows match ``query`` (see :class:`Matches`)."""
    if query.empty and query.unsearchable:
        return Matches(BitMap(), ())  # "🦊" alone must not list every job
    low, high = _micros(query.since), _micros(query.until)
    positive: list[BitMap] = []
    phrases: list[Term] = []
    for term in query.terms:
        if term.negated:
            continue
        if term.is_phrase:
            jobs, exact = _phrase_set(reader, term)
            if not exact:
                phrases.append(term)
            positive.append(jobs)
        else:
            positive.append(_term_set(reader, term))
    positive += [_filter_set(reader, f) for f in query.filters if not f.negated]
    partial = BitMap()
    if low is not None or high is not None:
        in_days, partial = _date_set(reader, low, high)
        positive.append(in_days)
    docs = _intersection([*positive, reader.live()])
    if docs is reader.live():
        docs = docs.copy()
    negated_phrases: list[Term] = []
    maybe = BitMap()  # jobs that may hold a negated phrase
    for term in query.terms:
        if not term.negated or not docs:
            continue
        if not term.is_phrase:
            docs -= _term_set(reader, term)
            continue
        jobs, exact = _phrase_set(reader, term)
        if exact:
            docs -= jobs
        else:
            negated_phrases.append(term)
            maybe |= jobs
    for f in query.filters:
        if f.negated and docs:
            docs -= _filter_set(reader, f)
    if partial and docs:
        # Jobs on a day the range cuts: their exact time decides.
        for micros, doc, _ in reader.times(docs & partial):
            if not _in_range(micros, low, high):
                docs.discard(doc)
    if negated_phrases and docs:
        # Only jobs with every pair of the phrase can contain it: the rest need no check.
        for _, doc, job_id in reader.docs(maybe & docs):
            if any(_has_phrase(reader, job_id, t) for t in negated_phrases):
                docs.discard(doc)
    return Matches(docs, tuple(phrases))


def _has_phrase(reader: IndexReader, job_id: bytes, term: Term) -> bool:
    doc = reader.summary(job_id)
    return doc is not None and _contains_sequence(search_tokens(doc.get("p") or ""), term)


def _contains_sequence(tokens: list[str], term: Term) -> bool:
    wanted, size = list(term.tokens), len(term.tokens)
    for start in range(len(tokens) - size + 1):
        window = tokens[start : start + size]
        if window[:-1] == wanted[:-1] and (
            window[-1].startswith(wanted[-1]) if term.prefix else window[-1] == wanted[-1]
        ):
            return True
    return False


def _in_range(micros: int, low: int | None, high: int | None) -> bool:
    if micros == 0:  # unknown time: outside every range
        return False
    return (low is None or micros >= low) and (high is None or micros <= high)


def _confirmed(
    reader: IndexReader, found: Iterable[tuple[int, int, bytes]], phrases: tuple[Term, ...]
) -> Iterator[tuple[int, int, bytes]]:
    """The (µs, doc, job id) whose prompts hold every phrase (all of them when none)."""
    for entry in found:
        if all(_has_phrase(reader, entry[2], t) for t in phrases):
            yield entry


def exact_matches(reader: IndexReader, query: Query) -> BitMap:
    """Every job that matches ``query``, phrases checked."""
    found = matches(reader, query)
    if found.exact:
        return found.docs
    kept = BitMap()
    for _, doc, _ in _confirmed(reader, reader.docs(found.docs), found.phrases):
        kept.add(doc)
    return kept


# -- ordering ------------------------------------------------------------------------------
def search(
    index: Index, query: Query, *, sort: SortOrder = "newest", limit: int | None = None
) -> SearchResult:
    """The jobs matching ``query``, in ``sort`` order, at most ``limit`` of them."""
    _check_sort(sort)
    with index.reader() as reader:
        docs = exact_matches(reader, query)
        if sort == "relevance":
            ordered = _by_relevance(reader, query, docs, limit)
        elif limit is not None:
            ordered = _first_by_date(reader, docs, limit, newest=(sort == "newest"))
        else:
            ordered = list(_all_by_date(reader, docs, (), newest=(sort == "newest")))
        chosen = ordered[:limit] if limit is not None else ordered
        return SearchResult(total=len(docs), job_ids=[j.decode("utf-8") for j in chosen])


def iter_search(
    index: Index, query: Query, *, sort: SortOrder = "newest", limit: int | None = None
) -> Iterator[str]:
    """The ids :func:`search` returns, in the same order, without holding them all: the
    matches are a bitmap and the jobs are looked up a day at a time. Relevance needs every
    score before the first answer: it is not streamed."""
    _check_sort(sort)
    if sort == "relevance":
        yield from search(index, query, sort=sort, limit=limit).job_ids
        return
    with index.reader() as reader:
        found = matches(reader, query)
        walk = _all_by_date(reader, found.docs, found.phrases, newest=(sort == "newest"))
        for n, job_id in enumerate(walk, 1):
            yield job_id.decode("utf-8")
            if limit is not None and n >= limit:
                return


def count_matches(index: Index, query: Query) -> int:
    """How many jobs match ``query``, in flat memory."""
    with index.reader() as reader:
        return len(exact_matches(reader, query))


def _check_sort(sort: str) -> None:
    if sort not in SORT_ORDERS:
        raise UsageError(f"unknown sort order {sort!r}", hint="newest, oldest or relevance")


def _sort_key(entry: tuple[int, int, bytes]) -> tuple[int, bytes]:
    return entry[0], entry[2]


def _first_by_date(reader: IndexReader, docs: BitMap, limit: int, *, newest: bool) -> list[bytes]:
    """The first ``limit`` jobs of ``docs`` by time (then id), newest or oldest first.

    Looking up every match's time costs a lookup each; walking the day lists from the wanted
    end costs a bitmap read and intersection per day, and takes about limit × days / matches
    days to fill the page. The cheaper is taken."""
    if not docs or limit <= 0:
        return []
    days = reader.day_count()
    if limit * days * DAY_COST_IN_LOOKUPS < len(docs) * len(docs):
        found: list[tuple[int, int, bytes]] = []
        for _, jobs in reader.days(newest_first=newest):
            hit = jobs & docs
            if hit:
                found.extend(reader.times(hit))
                if len(found) >= limit:
                    break  # a whole day is read: nothing later in it is missed
    else:
        found = list(reader.times(docs))
    return _first_by_time(reader, found, limit, newest=newest)


def _first_by_time(
    reader: IndexReader, found: list[tuple[int, int, bytes]], limit: int, *, newest: bool
) -> list[bytes]:
    """The job ids of the first ``limit`` of ``found`` ((µs, doc, id's entry) each) by time,
    then id. Only the ids that can make the page are read: those up to the ``limit``-th time,
    ties at it included (a sealed index's ids each cost a decryption)."""
    found.sort(key=_time_of, reverse=newest)
    if len(found) > limit:
        edge = found[limit - 1][0]
        end = limit
        while end < len(found) and found[end][0] == edge:
            end += 1
        del found[end:]
    ids = reader.job_ids([(doc, tail) for _, doc, tail in found])
    named = [(micros, job_id) for (micros, _, _), job_id in zip(found, ids, strict=True)]
    named.sort(reverse=newest)
    return [job_id for _, job_id in named[:limit]]


def _time_of(entry: tuple[int, int, bytes]) -> int:
    return entry[0]


def _all_by_date(
    reader: IndexReader, docs: BitMap, phrases: tuple[Term, ...], *, newest: bool
) -> Iterator[bytes]:
    """Every job of ``docs`` holding ``phrases``, by time then id, a day at a time."""
    if not docs:
        return
    for _, jobs in reader.days(newest_first=newest):
        hit = jobs & docs
        if hit:
            found = list(_confirmed(reader, reader.docs(hit), phrases))
            found.sort(key=_sort_key, reverse=newest)
            for _, _, job_id in found:
                yield job_id


def _by_relevance(
    reader: IndexReader, query: Query, docs: BitMap, limit: int | None
) -> list[bytes]:
    """Okapi BM25 over prompt words, ties newest first, then by id; the average length is
    the matches' (close enough).

    A match's score depends only on its prompt's length and how often it holds each query
    word, and every match holds each positive word once at least (they are conditions). So
    the matches are split, as bitmaps, by those counts (the ``repeats`` lists) and by length
    (the ``lengths`` lists, or ``docs`` for a few matches); each part has one score, and the
    parts are taken best first, each in date order, until the page is full. No prompt is
    read and no job is looked at one by one except those returned."""
    if not docs:
        return []
    ordered: list[bytes] = []
    for _, jobs in score_classes(reader, query, docs):
        if limit is None:
            ordered += _all_by_date(reader, jobs, (), newest=True)
            continue
        ordered += _first_by_date(reader, jobs, limit - len(ordered), newest=True)
        if len(ordered) >= limit:
            break
    return ordered


def score_classes(reader: IndexReader, query: Query, docs: BitMap) -> list[tuple[float, BitMap]]:
    """``docs`` split by BM25 score (see :func:`_by_relevance`), best first."""
    if not docs:
        return []
    words = query.positive_words()
    total = max(1, len(reader.live()))
    idf = []
    for word in words:
        df = reader.count(b"words", key_part(word))
        idf.append(math.log(1 + (total - df + 0.5) / (df + 0.5)))
    classes = _by_frequencies(reader, words, docs)
    lengths = _by_length(reader, docs)
    average = max(sum(length * len(jobs) for length, jobs in lengths.items()) / len(docs), 1.0)
    scored: dict[float, BitMap] = {}
    for frequencies, members in classes.items():
        for length, same_length in lengths.items():
            jobs = members & same_length
            if not jobs:
                continue
            norm = BM25_K1 * (1 - BM25_B + BM25_B * length / average)
            score = 0.0
            for weight, tf in zip(idf, frequencies, strict=True):
                score += weight * tf * (BM25_K1 + 1) / (tf + norm)
            scored.setdefault(score, BitMap()).update(jobs)
    return sorted(scored.items(), key=lambda item: item[0], reverse=True)


def _by_frequencies(
    reader: IndexReader, words: list[str], docs: BitMap
) -> dict[tuple[int, ...], BitMap]:
    """``docs`` split by how often they hold each word (one at least): the repeat lists
    "word 2", "word 3" … each add one to the count of the jobs in them."""
    classes = {(1,) * len(words): docs}
    for position, word in enumerate(words):
        for part in reader.parts_with_prefix(b"repeats", key_part(f"{word} ")):
            repeated = reader.posting_list(b"repeats", part)
            split: dict[tuple[int, ...], BitMap] = {}
            for counts, members in classes.items():
                more = members & repeated
                if more:
                    bumped = counts[:position] + (counts[position] + 1,) + counts[position + 1 :]
                    split.setdefault(bumped, BitMap()).update(more)
                    members = members - more
                if members:
                    split.setdefault(counts, BitMap()).update(members)
            classes = split
    return classes


def _by_length(reader: IndexReader, docs: BitMap) -> dict[int, BitMap]:
    """``docs`` split by prompt length: looked up one by one when few, else from the
    lengths lists (a hundred or so lists, whatever the number of matches)."""
    groups: dict[int, BitMap] = {}
    if len(docs) <= LOOK_UP_LENGTHS_UP_TO:
        for _, doc, length in reader.lengths(docs):
            groups.setdefault(length, BitMap()).add(doc)
        return groups
    for part in reader.parts_with_prefix(b"lengths", b""):
        jobs = reader.posting_list(b"lengths", part) & docs
        if jobs:
            groups[int(part)] = jobs
    return groups
