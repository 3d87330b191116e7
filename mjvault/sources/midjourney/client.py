"""The library interface of the Midjourney source: list jobs, download media, check the session.

    with MidjourneyClient(ClientSettings.from_env()) as client:
        for listed in client.list_jobs(stop=stop_after_known(vault.has_job, run=100)):
            store(listed.raw)
            for ref in listed.job().media():
                result = client.download(ref, sink, expected_kind=ref.kind)

Everything here is safe to use from several threads: listing is one thread's iterator, while
``download`` may run ``concurrency`` times at once on the shared connection pool.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from mjvault.errors import AuthError, ChallengeError, SourceError, SourceUnavailable
from mjvault.jobtypes import type_matches
from mjvault.model import Job, MediaRef, job_from_record, parse_time
from mjvault.reports import Report
from mjvault.sources.midjourney import messages
from mjvault.sources.midjourney.download import (
    ByteSink,
    DownloadResult,
    MediaKind,
    MediaMissing,
    UnsafeMediaPath,
    media_url,
)
from mjvault.sources.midjourney.download import download as download_to
from mjvault.sources.midjourney.generations import (
    AUTO_ORDER,
    GENERATIONS,
    ListingGeneration,
    ListingQuery,
    Page,
    PageFetcher,
    V3Imagine,
)
from mjvault.sources.midjourney.rawjson import ListingShapeError
from mjvault.sources.midjourney.readahead import ReadAhead
from mjvault.sources.midjourney.settings import ClientSettings, Secret
from mjvault.sources.midjourney.transport import EndpointMissing, Transport

log = logging.getLogger("mjvault.sources.midjourney")


@dataclass(frozen=True)
class ListedJob:
    """One job of a listing. ``raw`` is the record's exact JSON text as the server sent it."""

    id: str
    record: dict[str, Any]
    raw: bytes
    generation: str
    enqueue_time: datetime | None

    def job(self) -> Job:
        return job_from_record(self.record)


StopRule = Callable[[ListedJob], bool]

# Pages in a row that bring no job both unseen and older than every job before them: a listing
# that keeps answering under new cursors but no longer moves back in time is repeating itself.
STALL_PAGES = 3
MALFORMED_NOTES = 20  # the first few malformed items are described; the rest only counted
SEEN_IDS = 10_000  # ids of earlier pages kept for duplicate detection, beyond the last page


class _RecentIds:
    """The ids of a listing's latest pages: this one, the one before, and older ones while
    they hold fewer than ``keep`` ids together.

    Why a window is enough: a cursor listing repeats a record when jobs are added or removed
    while it is read, which shifts items across the boundary between two pages; v1's
    re-anchored window repeats the oldest job of the page before. Both lie within the window.
    A record repeated from further back is yielded again, and the vault's own index (what a
    sync asks before storing) finds it already held: counted as unchanged, not fetched again,
    and never counted by a stop rule (it lies behind the listing's oldest time).
    A listing that repeats itself at length is ended by the stall rule (STALL_PAGES), which
    compares times, not ids. Bounded: ``keep`` + two pages (a page is at most MAX_PAGE_ITEMS),
    where a set of every id seen would grow with the account.
    """

    def __init__(self, keep: int = SEEN_IDS) -> None:
        self._keep = keep
        self._ids: OrderedDict[str, None] = OrderedDict()  # listing order: oldest out first
        self._pages: deque[int] = deque([0])  # ids per page held, the current page last

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids

    def add(self, job_id: str) -> None:
        self._ids[job_id] = None
        self._pages[-1] += 1

    def next_page(self) -> None:
        self._pages.append(0)
        # Keep the page before the new one whatever its size; older ones within ``keep``.
        while len(self._pages) > 2 and len(self._ids) - self._pages[-2] > self._keep:
            for _ in range(self._pages.popleft()):
                self._ids.popitem(last=False)


def stop_after_known(is_known: Callable[[str], bool], run: int = 50) -> StopRule:
    """A ``stop`` rule for incremental syncs: end the listing after ``run`` known jobs in a row.

    Newest-first order means that once a long run of jobs is already in the vault, everything
    older is too. A run (not the first known job) tolerates a few jobs that were stored out of
    order by an interrupted earlier sync.
    """
    if run < 1:
        raise ValueError("run must be at least 1")
    known_in_a_row = 0

    def stop(job: ListedJob) -> bool:
        nonlocal known_in_a_row
        known_in_a_row = known_in_a_row + 1 if is_known(job.id) else 0
        return known_in_a_row >= run

    return stop


def matches_job_type(record: Mapping[str, Any], wanted: str) -> bool:
    """Client-side ``job_type`` filter for generations whose endpoint has none.

    ``upscale`` matches v1's ``type`` as well as ``v6_upscale`` (job_type) and ``upscale``
    (event_type), so one word works across generations; see mjvault.jobtypes for the others.
    """
    for key in ("type", "job_type", "_job_type", "event_type"):
        value = record.get(key)
        if isinstance(value, str) and type_matches(value, wanted):
            return True
    return False


class Listing(Iterator[ListedJob]):
    """An iterator of :class:`ListedJob` that also tells how the listing went."""

    def __init__(self, generation: str) -> None:
        self.generation = generation
        self.pages = 0
        self.duplicates = 0  # records dropped because their id came earlier in this listing
        self.skipped = 0  # malformed items: not a JSON object, or no job id
        self.malformed: list[str] = []  # the first MALFORMED_NOTES of them, described
        self.checkpoint: str | None = None  # v3: the first page's checkpoint, for updates()
        self.stopped_early = False
        self.cut_short: str | None = None  # why the listing was ended before its end
        self._jobs: Iterator[ListedJob] = iter(())

    def __next__(self) -> ListedJob:
        return next(self._jobs)


@dataclass(frozen=True)
class AuthStatus(Report):
    """The answer of :meth:`MidjourneyClient.check_auth`. Never holds the token."""

    ok: bool
    generation: str | None
    user_id: str | None
    # None when ok; else "missing-credentials", "refused", "login-page", "challenge",
    # "unavailable" or "error".
    reason: str | None
    message: str
    cookie_name: str | None


def _reason(err: SourceError) -> str:
    if isinstance(err, messages.MissingCredentials):
        return "missing-credentials"
    if isinstance(err, messages.LoginPage):
        return "login-page"
    if isinstance(err, AuthError):
        return "refused"
    if isinstance(err, ChallengeError):
        return "challenge"
    if isinstance(err, SourceUnavailable):
        return "unavailable"
    return "error"


def _not_a_job(value: Any) -> str:
    """What a listed item that is not a job record is, in a few words."""
    if not isinstance(value, dict):
        shown = json.dumps(value)[:40] if not isinstance(value, list) else "[…]"
        return f"not a JSON object: {shown}"
    return "an object without a job id"


def _first_then(first: Page | None, rest: Iterator[Page]) -> Iterator[Page]:
    """``first``, then ``rest``, holding no page once it is handed on (``itertools.chain``
    would keep the first page for the whole listing)."""
    if first is not None:
        page, first = first, None
        yield page
        del page
    yield from rest


def _closing(jobs: Iterator[ListedJob], pages: ReadAhead[Page]) -> Iterator[ListedJob]:
    """``jobs``, then the page reader stopped: a walk that ends early (a stop rule, a
    stalled listing) leaves no thread reading a page nobody will walk."""
    try:
        yield from jobs
    finally:
        pages.close()


class MidjourneyClient:
    """Lists a Midjourney account's jobs and downloads their media (see the module doc)."""

    def __init__(self, settings: ClientSettings, *, transport: Transport | None = None) -> None:
        self.settings = settings
        self.transport = transport or Transport(settings)
        self._generation: ListingGeneration | None = None
        self._detect_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> MidjourneyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MidjourneyClient(web_base={self.settings.web_base!r}, api={self.settings.api!r})"

    # -- generations -----------------------------------------------------------------------
    def _cookies(self, generation: ListingGeneration) -> dict[str, Secret]:
        cookies = dict(self.settings.extra_cookies)
        if self.settings.token:
            cookies[generation.session_cookie] = self.settings.token
        return cookies

    def _fetcher(self, generation: ListingGeneration) -> PageFetcher:
        cookies = self._cookies(generation)
        if not cookies.get(generation.session_cookie):
            raise messages.missing_token(generation.session_cookie)

        def fetch(path: str, params: Mapping[str, str | int]) -> bytes:
            return self.transport.get_api(
                path,
                params,
                cookies=cookies,
                cookie_name=generation.session_cookie,
                extra_headers=generation.headers,
            ).body

        return fetch

    def _user_id(self) -> str:
        if not self.settings.user_id:
            raise messages.missing_user_id()
        return self.settings.user_id

    def generation(self) -> ListingGeneration:
        """The listing generation in use; with ``api="auto"`` the first that answers properly."""
        with self._detect_lock:
            if self._generation is None:
                if self.settings.api == "auto":
                    self._generation = self._detect()
                else:
                    self._generation = GENERATIONS[self.settings.api]()
            return self._generation

    def _detect(self) -> ListingGeneration:
        """Try each generation newest first with one small request; keep the first that fits.

        A 404, a redirect/HTML/401 (a cookie this generation does not accept) or JSON of
        another shape moves on to the next; a Cloudflare challenge or an unreachable service
        stops at once, since every generation sits behind the same front.
        """
        sessions = {GENERATIONS[name].session_cookie for name in AUTO_ORDER}
        if not self.settings.token and not sessions & set(self.settings.extra_cookies):
            raise messages.missing_token(GENERATIONS[AUTO_ORDER[0]].session_cookie)
        query = ListingQuery(user_id=self._user_id())
        refusals: list[AuthError] = []
        shapes: list[str] = []  # JSON of the wrong shape: said in the error if none answers
        for name in AUTO_ORDER:
            candidate = GENERATIONS[name]()
            try:
                candidate.probe(self._fetcher(candidate), query)
            except messages.PageTooLarge as exc:
                raise messages.bad_page(candidate.path, 1, str(exc)) from None
            except (EndpointMissing, ListingShapeError) as exc:
                log.info("%s does not answer here (%s)", candidate.describe(), exc)
                if isinstance(exc, ListingShapeError):
                    shapes.append(f"{candidate.describe()} page 1: {exc}")
                continue
            except ChallengeError:
                raise
            except AuthError as exc:
                log.info("%s refused the session (%s)", candidate.describe(), type(exc).__name__)
                refusals.append(exc)
                continue
            log.info("using listing API %s", candidate.describe())
            return candidate
        if refusals:
            raise refusals[0]  # the newest generation's cookie: the one the site wants today
        tried = ", ".join(GENERATIONS[name]().describe() for name in AUTO_ORDER)
        answers = f" (answers not usable: {'; '.join(shapes)})" if shapes else ""
        raise SourceError(
            f"none of the known Midjourney listing APIs ({tried}) answered at "
            f"{self.settings.web_base}{answers}; the site may have changed: pass --api to force "
            "one, or update mjvault"
        )

    # -- listing ---------------------------------------------------------------------------
    def list_jobs(
        self,
        *,
        stop: StopRule | None = None,
        job_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int | None = None,
        read_ahead: bool = False,
    ) -> Listing:
        """Every job of the account, newest first, each once.

        ``stop(job)`` is asked before each job is yielded; True ends the listing there (that
        job is not yielded). ``since`` ends the listing after the page in which a job older than
        it appears (older jobs are not yielded); ``until`` skips jobs newer than it.
        ``job_type`` filters on the server where the generation can (v1), else here.
        ``read_ahead`` reads each next page on a thread while this one is walked: for callers
        that will read the whole listing (a page more is asked for than a stop rule needs).
        The generation is resolved and the first page fetched (so auth errors are raised)
        here, not at the first ``next``.
        """
        generation = self.generation()
        fetch = self._fetcher(generation)
        query = ListingQuery(
            user_id=self._user_id(),
            page_size=page_size or self.settings.page_size,
            job_type=job_type if generation.filters_job_type else None,
            until=until if generation.filters_until else None,
        )
        pages = generation.pages(fetch, query)
        # The first page is fetched now, so a refused session or an unreachable service is
        # raised by this call rather than by the caller's first `next`.
        first = next(pages, None)
        if read_ahead and first is not None:
            pages = ReadAhead(pages)
        listing = Listing(generation.name)
        walk = self._walk(
            listing,
            _first_then(first, pages),
            stop,
            job_type,
            since,
            until,
            filter_type=not generation.filters_job_type,
        )
        listing._jobs = _closing(walk, pages) if isinstance(pages, ReadAhead) else walk
        return listing

    def _walk(
        self,
        listing: Listing,
        pages: Iterator[Page],
        stop: StopRule | None,
        job_type: str | None,
        since: datetime | None,
        until: datetime | None,
        *,
        filter_type: bool,
    ) -> Iterator[ListedJob]:
        seen = _RecentIds()
        oldest: datetime | None = None
        stalled = 0
        for page in pages:
            seen.next_page()
            listing.pages += 1
            if listing.checkpoint is None:
                listing.checkpoint = page.checkpoint
            reached_since = False
            progress = False
            page_oldest = oldest
            for number, record in enumerate(page.records, 1):
                value = record.value
                job_id = value.get("id") if isinstance(value, dict) else None
                if not isinstance(job_id, str) or not job_id:
                    listing.skipped += 1
                    if len(listing.malformed) < MALFORMED_NOTES:
                        listing.malformed.append(
                            f"listing page {listing.pages}, item {number} is {_not_a_job(value)}"
                        )
                    continue
                if job_id in seen:
                    listing.duplicates += 1
                    continue
                seen.add(job_id)
                moment = parse_time(value.get("enqueue_time"))
                if moment is None or oldest is None or moment < oldest:
                    progress = True
                if moment is not None and (page_oldest is None or moment < page_oldest):
                    page_oldest = moment
                if until is not None and moment is not None and moment > until:
                    continue
                if since is not None and moment is not None and moment < since:
                    reached_since = True
                    continue
                if job_type and filter_type and not matches_job_type(value, job_type):
                    continue
                listed = ListedJob(job_id, value, record.raw, listing.generation, moment)
                # A job newer than an earlier page's oldest is a repeat from beyond the seen
                # window (or out of order): held already, it is no sign of having caught up,
                # and counted by the stop rule it could end the listing before older jobs.
                behind = oldest is not None and moment is not None and moment > oldest
                if stop is not None and not behind and stop(listed):
                    listing.stopped_early = True
                    return
                yield listed
            empty = not page.records
            del page  # not held while the next page is fetched
            if reached_since:
                listing.stopped_early = True
                return
            oldest = page_oldest
            stalled = 0 if progress or empty else stalled + 1
            if stalled >= STALL_PAGES:
                listing.stopped_early = True
                listing.cut_short = (
                    f"listing pages {listing.pages - stalled + 1}-{listing.pages} brought nothing "
                    "new (no job unseen and older than those before): the server repeats itself "
                    "under new cursors, so the listing was ended there"
                )
                log.info("%s", listing.cut_short)
                return

    def updates(self, checkpoint: str) -> Listing | None:
        """Jobs new since a v3 ``checkpoint`` (from an earlier :class:`Listing`), or None.

        None means "cannot tell cheaply" (not v3, or the endpoint did not answer in the
        expected shape): the caller then runs an incremental ``list_jobs``.
        """
        generation = self.generation()
        if not isinstance(generation, V3Imagine):
            return None
        try:
            page = generation.updates(
                self._fetcher(generation), ListingQuery(user_id=self._user_id()), checkpoint
            )
        except EndpointMissing:
            return None
        if page is None:
            return None
        listing = Listing(generation.name)
        listing._jobs = self._walk(listing, iter([page]), None, None, None, None, filter_type=False)
        return listing

    # -- media -----------------------------------------------------------------------------
    def media_url(self, ref: MediaRef | str) -> str:
        return media_url(self.settings.cdn_base, ref)

    def download(
        self,
        path_or_url: MediaRef | str,
        sink: ByteSink,
        *,
        expected_kind: MediaKind | None = None,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> DownloadResult:
        """Stream one file into ``sink``; see :mod:`mjvault.sources.midjourney.download`.

        Returns :class:`MediaMissing` for a 404 or a path that would leave the CDN base, and
        :class:`MediaDamaged` for a file that stays cut short. Raises DownloadError when this one file could
        not be fetched intact, AuthError/ChallengeError/SourceUnavailable when nothing can.
        """
        kind: MediaKind
        if expected_kind is not None:
            kind = expected_kind
        elif isinstance(path_or_url, MediaRef) and path_or_url.kind == "video":
            kind = "video"
        else:
            kind = "image"
        try:
            url = self.media_url(path_or_url)
        except UnsafeMediaPath as refused:
            # The record itself is at fault: asking again cannot help, like a 404.
            path = path_or_url.path if isinstance(path_or_url, MediaRef) else path_or_url
            return MediaMissing(path, 0, None, None, 0, 0, str(refused))
        return download_to(
            self.transport,
            url,
            sink,
            expected_kind=kind,
            on_chunk=on_chunk,
        )

    # -- auth ------------------------------------------------------------------------------
    def check_auth(self) -> AuthStatus:
        """One cheap listing request: does the session work? Never raises for auth problems."""
        cookie_name: str | None = None
        try:
            if self.settings.api == "auto":
                generation = self.generation()
                user_id = self._user_id()
            else:
                generation = GENERATIONS[self.settings.api]()
                cookie_name = generation.session_cookie
                fetch = self._fetcher(generation)
                user_id = self._user_id()
                generation.probe(fetch, ListingQuery(user_id=user_id))
        except ListingShapeError as exc:
            return AuthStatus(
                False,
                None,
                self.settings.user_id,
                "error",
                f"the listing answered with JSON of an unexpected shape ({exc})",
                cookie_name,
            )
        except EndpointMissing as exc:
            return AuthStatus(False, None, self.settings.user_id, "error", str(exc), cookie_name)
        except SourceError as exc:
            return AuthStatus(
                False,
                None,
                self.settings.user_id,
                _reason(exc),
                self.transport.redact(str(exc)),
                cookie_name,
            )
        return AuthStatus(
            True,
            generation.name,
            user_id,
            None,
            f"the session works with listing API {generation.describe()}",
            generation.session_cookie,
        )
