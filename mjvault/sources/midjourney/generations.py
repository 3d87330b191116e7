"""The listing generations of the Midjourney web API, each behind one small interface.

A generation knows its endpoint, its session cookie, its extra headers and how to walk its
pages; nothing else in the package knows any of that. Adding a fourth generation is a subclass
here and one entry in :data:`GENERATIONS` (and in :data:`AUTO_ORDER` if ``auto`` should try it).
"""

from __future__ import annotations

import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from mjvault.model import parse_time
from mjvault.sources.midjourney import messages
from mjvault.sources.midjourney.rawjson import (
    ListingShapeError,
    RawRecord,
    SplitListing,
    split_listing,
)

log = logging.getLogger("mjvault.sources.midjourney")

NEXT_AUTH_COOKIE = "__Secure-next-auth.session-token"
V3_ID_COOKIE = "__Host-Midjourney.AuthUserTokenV3_i"
V3_REFRESH_COOKIE = "__Host-Midjourney.AuthUserTokenV3_r"


class PageFetcher(Protocol):
    """GET ``path`` with ``params`` on the web API, returning the body (errors raised)."""

    def __call__(self, path: str, params: Mapping[str, str | int]) -> bytes: ...


@dataclass(frozen=True)
class ListingQuery:
    user_id: str
    page_size: int = 0  # 0 = the generation's default
    job_type: str | None = None
    until: datetime | None = None


@dataclass
class Page:
    """One answer of the listing: its records (exact bytes kept) and its other fields."""

    records: list[RawRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint(self) -> str | None:
        value = self.meta.get("checkpoint")
        return value if isinstance(value, str) and value else None


class ListingGeneration(ABC):
    """What differs between the generations of the listing API."""

    name: ClassVar[str]
    path: ClassVar[str]
    session_cookie: ClassVar[str]
    default_page_size: ClassVar[int]
    headers: ClassVar[Mapping[str, str]] = {}
    # Whether the endpoint filters by job type itself; if not, the client filters.
    filters_job_type: ClassVar[bool] = False
    filters_until: ClassVar[bool] = False

    def page_size(self, query: ListingQuery) -> int:
        return query.page_size or self.default_page_size

    @abstractmethod
    def pages(self, fetch: PageFetcher, query: ListingQuery) -> Iterator[Page]:
        """Every page of the listing, newest first, until its end."""

    @abstractmethod
    def probe(self, fetch: PageFetcher, query: ListingQuery) -> Page:
        """One small request; raises :class:`ListingShapeError` if the answer has the wrong shape.

        Used by ``auto`` detection and by ``check_auth``.
        """

    def describe(self) -> str:
        return f"{self.name} {self.path}"

    def _page(
        self,
        fetch: PageFetcher,
        params: Mapping[str, str | int],
        number: int,
        array_key: str | None,
    ) -> SplitListing:
        """Page ``number`` of the walk; one that cannot be used ends it, naming the page."""
        try:
            return split_listing(fetch(self.path, params), array_key)
        except (ListingShapeError, messages.PageTooLarge) as exc:
            raise messages.bad_page(self.path, number, str(exc)) from None


def _is_job(record: RawRecord) -> bool:
    value = record.value
    return isinstance(value, dict) and isinstance(value.get("id"), str) and bool(value["id"])


def _is_end_marker(record: RawRecord) -> bool:
    """v1's ``{"msg": "No jobs found."}``: an object with a message and no job id."""
    value = record.value
    return isinstance(value, dict) and "msg" in value and "id" not in value


class CursorGeneration(ListingGeneration):
    """v2 and v3: ``{"data": [...], "cursor": ..., "checkpoint": ...}``, cursor passed back."""

    default_page_size = 1000

    def _params(self, query: ListingQuery, page_size: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"user_id": query.user_id, "page_size": page_size}
        if cursor:
            params["cursor"] = cursor
        return params

    def probe(self, fetch: PageFetcher, query: ListingQuery) -> Page:
        split = split_listing(fetch(self.path, self._params(query, 1, None)), "data")
        return Page(split.records, split.meta)

    def pages(self, fetch: PageFetcher, query: ListingQuery) -> Iterator[Page]:
        size = self.page_size(query)
        cursor: str | None = None
        used: set[str] = set()
        for number in itertools.count(1):
            split = self._page(fetch, self._params(query, size, cursor), number, "data")
            yield Page(split.records, split.meta)
            if not split.records:
                return
            following = split.meta.get("cursor")
            del split  # one page in memory at a time: not this one while the next is read
            if not isinstance(following, str) or not following:
                return
            if following in used:
                # A cursor seen before would repeat pages forever: the listing is done for us.
                log.warning("%s: the server repeated a cursor; ending the listing there", self.name)
                return
            used.add(following)
            cursor = following


class V3Imagine(CursorGeneration):
    """2024 on: the API the site uses today. Needs ``x-csrf-protection: 1`` (else 401)."""

    name = "v3"
    path = "/api/imagine"
    session_cookie = V3_ID_COOKIE
    headers = {"x-csrf-protection": "1"}
    update_path = "/api/imagine-update"

    def updates(self, fetch: PageFetcher, query: ListingQuery, checkpoint: str) -> Page | None:
        """What changed since ``checkpoint`` (new jobs, newest first), or None if unusable.

        The endpoint is not documented; any answer that is not the listing's own shape (or a
        404) gives None, and the caller falls back to an incremental listing.
        """
        size = self.page_size(query)
        params: dict[str, str | int] = {
            "user_id": query.user_id,
            "checkpoint": checkpoint,
            "page_size": size,
        }
        try:
            split = split_listing(fetch(self.update_path, params), "data")
        except ListingShapeError:
            return None
        if len(split.records) >= size:
            # Possibly cut short, and its checkpoint would skip what was cut: list instead.
            return None
        return Page(split.records, split.meta)


class V2ThomasJobs(CursorGeneration):
    """Late 2023: same shape as v3, the next-auth session cookie."""

    name = "v2"
    path = "/api/pg/thomas-jobs"
    session_cookie = NEXT_AUTH_COOKIE


def format_from_date(moment: datetime) -> str:
    """v1's ``fromDate``: ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# The ids of one v1 window kept to recognise its repeats in the next: more than a window holds
# (``V1RecentJobs.window_cap``), so a real window is kept whole; a server whose windows never end
# costs no more than this (the latest ids, those the next window starts from).
WINDOW_IDS_KEPT = 10_000


class V1RecentJobs(ListingGeneration):
    """2022-23: pages of a bare array; a listing window stops after 2,500 jobs.

    Pages stay stable while new jobs arrive because every page after the first asks only for
    jobs enqueued at or before the first job (``fromDate``). To get past the window's cap the
    listing starts again at page 1 with ``fromDate`` at the oldest job seen; the jobs seen twice
    there are dropped by the caller's de-duplication.
    """

    name = "v1"
    path = "/api/app/recent-jobs/"
    session_cookie = NEXT_AUTH_COOKIE
    default_page_size = 50
    # The most it was seen to return per page. A larger `amount` would come back as short pages,
    # which this walk takes for the end of the listing, so it is never asked for.
    max_page_size = 50
    window_cap = 2500
    filters_job_type = True
    filters_until = True

    def _params(
        self, query: ListingQuery, amount: int, page: int, from_date: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "amount": amount,
            "page": page,
            "orderBy": "new",
            "jobStatus": "completed",
            "userId": query.user_id,
            "dedupe": "true",
            "refreshApi": 0,
        }
        if query.job_type:
            params["jobType"] = query.job_type
        if from_date:
            params["fromDate"] = from_date
        return params

    def probe(self, fetch: PageFetcher, query: ListingQuery) -> Page:
        split = split_listing(fetch(self.path, self._params(query, 1, 1, None)), None)
        return Page(split.records)

    def pages(self, fetch: PageFetcher, query: ListingQuery) -> Iterator[Page]:
        amount = min(self.page_size(query), self.max_page_size)
        anchor = format_from_date(query.until) if query.until else None
        # Whether a window brought a job the one before did not: a window starts again at the
        # previous one's oldest job, so only that window can repeat into it. Keeping its ids
        # (not every id of the listing) keeps a million-job walk in flat memory.
        before: dict[str, None] = {}
        oldest: datetime | None = None
        while True:  # one listing window per round
            page_number, window_total, window_new, last_full = 1, 0, 0, False
            window: dict[str, None] = {}  # insertion order: listing order, oldest job last
            while True:
                params = self._params(query, amount, page_number, anchor)
                split = self._page(fetch, params, page_number, None)
                # `[{"msg": "No jobs found."}]` is the end too: it holds no job.
                jobs = [record for record in split.records if _is_job(record)]
                if not jobs:
                    junk = [record for record in split.records if not _is_end_marker(record)]
                    if junk:
                        yield Page(junk)  # for the walk to count: `[1, 2, 3]` is no end marker
                    break
                if anchor is None:
                    first_time = parse_time(jobs[0].value.get("enqueue_time"))
                    anchor = format_from_date(first_time) if first_time else None
                for record in jobs:
                    job_id = record.value["id"]
                    if job_id not in before and job_id not in window:
                        window_new += 1
                    window[job_id] = None
                    if len(window) > WINDOW_IDS_KEPT:  # a window past any real cap: its tail
                        del window[next(iter(window))]
                    moment = parse_time(record.value.get("enqueue_time"))
                    if moment is not None and (oldest is None or moment < oldest):
                        oldest = moment
                window_total += len(split.records)
                # Every item, not only the jobs: the walk counts those that are not jobs.
                yield Page(split.records)
                last_full = len(split.records) >= amount
                if not last_full:
                    break  # a short page is the end of the window
                page_number += 1
            capped = last_full or window_total >= self.window_cap
            if not capped or window_new == 0 or oldest is None:
                return
            before = window
            next_anchor = format_from_date(oldest)
            if next_anchor == anchor:
                # The next window would be asked exactly as this one was: a server that
                # answers it with jobs not seen in this window is going round in circles.
                return
            log.info(
                "%s: listing window ended after %d jobs; continuing from %s",
                self.name,
                window_total,
                next_anchor,
            )
            anchor = next_anchor


GENERATIONS: dict[str, type[ListingGeneration]] = {
    "v3": V3Imagine,
    "v2": V2ThomasJobs,
    "v1": V1RecentJobs,
}
# `auto` tries the newest first: it is the one the site serves today.
AUTO_ORDER: tuple[str, ...] = ("v3", "v2", "v1")
