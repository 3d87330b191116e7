"""How a query's matches divide by type, model version, aspect ratio and month.

Each count is the size of an intersection of two bitmaps (the matches and one value's
posting list, or one day's list), computed in C without listing a job: a query's facets cost
about a bitmap read per distinct value, whatever the number of jobs. Every value comes with
the query term that selects it (``type:upscale``, ``v:6.1``, ``ar:16:9``, ``date:2024-06``),
so a caller can narrow the search by appending it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyroaring import BitMap

from mjvault.index import bitmaps
from mjvault.index.db import Index, IndexReader
from mjvault.index.query import Query
from mjvault.index.search import exact_matches
from mjvault.reports import Report, json_meta

FACETS = ("type", "model", "ar", "month", "liked", "rating")
RANKS = range(1, 11)  # ranks a record may give, looked up exactly (a sealed index lists none)
# Parameters whose values name the model: (name, the query term that selects a value, what
# its label starts with).
MODEL_PARAMS = (("version", "v", ""), ("niji", "niji", "niji "))
ASPECT_PARAMS = (("ar", "ar", ""),)


@dataclass(frozen=True)
class FacetValue(Report):
    value: str | None  # None: the jobs without one (no parameter, an unknown time)
    count: int
    term: str | None  # what to add to the query to keep only these jobs (None: no such term)


@dataclass(frozen=True)
class Facets(Report):
    total: int
    values: dict[str, list[FacetValue]] = field(metadata=json_meta(name="facets"))


def facet_counts(index: Index, query: Query) -> Facets:
    """The matches of ``query`` counted per value of each facet (FACETS)."""
    with index.reader() as reader:
        docs = exact_matches(reader, query)
        values = {
            "type": _by_count(_type_counts(reader, docs)),
            "model": _by_count(_param_counts(reader, docs, MODEL_PARAMS)),
            "ar": _by_count(_param_counts(reader, docs, ASPECT_PARAMS)),
            "month": list(_month_counts(reader, docs)),
            "liked": _mark_counts(reader, docs, [("true", "liked=true"), ("false", "liked=false")]),
            "rating": _mark_counts(reader, docs, [(str(r), f"rank={r}") for r in RANKS]),
        }
        return Facets(total=len(docs), values=values)


def _by_count(values: list[FacetValue]) -> list[FacetValue]:
    """Largest first; the jobs without a value last."""
    return sorted(values, key=lambda v: (v.value is None, -v.count, v.value or ""))


def _list_counts(
    reader: IndexReader, docs: BitMap, table: bytes, prefix: bytes
) -> Iterator[tuple[str, int, BitMap]]:
    """(value after ``prefix``, matches with it, its list) of every part starting so."""
    for part in reader.parts_with_prefix(table, prefix):
        jobs = reader.posting_list(table, part)
        count = docs.intersection_cardinality(jobs)
        if count:
            yield part[len(prefix) :].decode("utf-8", "replace"), count, jobs


def _type_counts(reader: IndexReader, docs: BitMap) -> list[FacetValue]:
    return [
        FacetValue(value, count, f"type:{value}")
        for value, count, _ in _list_counts(reader, docs, b"types", b"")
    ]


def _param_counts(
    reader: IndexReader, docs: BitMap, params: tuple[tuple[str, str, str], ...]
) -> list[FacetValue]:
    """Counts of each value of ``params`` ((name, query term, label prefix) each), then of
    the jobs with none of them."""
    found: list[FacetValue] = []
    covered = BitMap()
    for name, term, label in params:
        for value, count, jobs in _list_counts(reader, docs, b"params", f"{name}=".encode()):
            found.append(FacetValue(label + value, count, f"{term}:{_quoted(value)}"))
            covered |= jobs
    missing = len(docs) - docs.intersection_cardinality(covered)
    if missing:
        found.append(FacetValue(None, missing, None))
    return found


def _mark_counts(
    reader: IndexReader, docs: BitMap, values: list[tuple[str, str]]
) -> list[FacetValue]:
    """Counts of the account holder's marks (``marks`` lists), where records carry them; no
    query term selects them yet."""
    found = []
    for value, part in values:
        count = docs.intersection_cardinality(reader.posting_list(b"marks", part.encode()))
        if count:
            found.append(FacetValue(value, count, None))
    return found


def _month_counts(reader: IndexReader, docs: BitMap) -> Iterator[FacetValue]:
    """Months in order, oldest first; the jobs of unknown time last."""
    unknown = 0
    month, count = "", 0
    for day, jobs in reader.days():
        hits = docs.intersection_cardinality(jobs)
        if not hits:
            continue
        if day == bitmaps.UNKNOWN_DAY:
            unknown += hits
            continue
        low, _ = bitmaps.day_bounds(day)
        this = datetime.fromtimestamp(low / 1_000_000, UTC).strftime("%Y-%m")
        if this != month:
            if count:
                yield FacetValue(month, count, f"date:{month}")
            month, count = this, 0
        count += hits
    if count:
        yield FacetValue(month, count, f"date:{month}")
    if unknown:
        yield FacetValue(None, unknown, None)


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() or c == '"' for c in value) else value
