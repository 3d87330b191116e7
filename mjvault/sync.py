"""``mjvault sync``: listing → diff against the vault → concurrent downloads → objects → snapshot.

The listing is read newest first and streamed: jobs are diffed against what the vault holds
as they arrive, the media they lack are downloaded by a pool of threads (each into its own
hashed temp file), and the writer's thread stages the results and adds the jobs in listing
order. The writer checkpoints every few thousand jobs and every ``checkpoint_seconds`` (10 s by
default, ``sync.checkpoint_seconds``), so a run that is killed, interrupted or stopped by an
expired session resumes from its last checkpoint on the next run, having lost seconds of
downloads at most.

Incremental: once the account's whole history has been read to its end (recorded per account
in ``state/sync.json``), a sync stops the listing after a run of jobs the vault already holds;
an up-to-date vault costs one listing page. Until then each sync reads the whole listing,
skipping known jobs without downloading them, so an interrupted first sync never leaves older
jobs behind.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mjvault.concurrency import bounded_map
from mjvault.errors import CdnRefused, DownloadError, Interrupted, MjvaultError, SourceError
from mjvault.integrity import exclusions
from mjvault.model import Job, MediaRef, RecordError
from mjvault.reports import Report
from mjvault.sources.midjourney import (
    ListedJob,
    Listing,
    MediaMissing,
    MidjourneyClient,
    stop_after_known,
)
from mjvault.sources.midjourney.messages import MissingCredentials
from mjvault.store import sealeddoc
from mjvault.store.objects import MediaSink
from mjvault.vault import Vault
from mjvault.writer import ArchiveWriter

log = logging.getLogger(__name__)

STATE_FILE = Path("state") / "sync.json"
KNOWN_RUN = 50  # known jobs in a row that end an incremental listing
MALFORMED_SHOWN = 20  # malformed records described in a report; the rest are counted


@dataclass(frozen=True)
class SyncOptions:
    concurrency: int = 8
    job_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    dry_run: bool = False
    full: bool = False
    retry_missing: bool = False
    checkpoint_jobs: int = 2000
    checkpoint_seconds: float | None = 10.0  # None: only the job and byte counts checkpoint
    refresh_views: bool = (
        True  # views defined with auto-refresh follow a sync that changed something
    )
    thumbnails: bool = True  # the new images' thumbnails made beside the run (thumbnails.py)
    # At the end, wait for the thumbnails not made yet at most this share of the run's time
    # (None: all); `mjvault thumbs` makes the rest.
    thumbnail_wait: float | None = 0.05

    @property
    def filtered(self) -> bool:
        """A filtered run never proves the whole history was read."""
        return bool(self.job_type or self.since or self.until or self.limit)


@dataclass
class MissingMedia:
    job_id: str
    index: int
    path: str
    reason: str
    # True: the CDN says the file does not exist (404). False: it could not be fetched intact
    # this time (retries exhausted, bad content); the next sync asks for it again by itself.
    gone: bool = True


@dataclass
class SyncReport(Report):
    source: str = ""
    generation: str | None = None
    jobs_listed: int = 0
    jobs_new: int = 0
    jobs_updated: int = 0
    jobs_unchanged: int = 0
    jobs_skipped: int = 0  # records that are not usable jobs
    jobs_forgotten: int = 0  # listed jobs on the list of forgotten jobs: never stored
    # Records the source got wrong: the skipped ones above, and jobs kept whose claims were
    # bounded (a batch_size no job can have). ``malformed`` describes the first few.
    records_malformed: int = 0
    malformed: list[str] = field(default_factory=list)
    listing_cut_short: str | None = None  # the listing was ended early, and why
    images_downloaded: int = 0
    images_deduplicated: int = 0
    images_reused: int = 0  # virtual upsamples served from the parent already held
    images_missing: int = 0
    videos_downloaded: int = 0  # of images_downloaded: MP4s of video jobs
    bytes_downloaded: int = 0
    listing_pages: int = 0
    stopped_early: bool = False
    history_complete: bool = False
    resumed: bool = False
    seconds: float = 0.0
    snapshot: str | None = None
    dry_run: bool = False
    would_fetch: list[dict[str, Any]] = field(default_factory=list)
    missing: list[MissingMedia] = field(default_factory=list)
    views: dict[str, Any] | None = None  # what refreshing the auto-refresh views did
    thumbnails_made: int = 0  # of the images stored (mjvault/thumbnails.py)
    thumbnails_left: int = 0  # images whose thumbnails are left to `mjvault thumbs`

    def note_malformed(self, note: str, count: int = 1) -> None:
        """Count malformed records; the first is warned about, the rest only counted."""
        if count <= 0:
            return
        if self.records_malformed == 0:
            log.warning("%s (further malformed records are counted in the summary)", note)
        self.records_malformed += count
        if len(self.malformed) < MALFORMED_SHOWN:
            self.malformed.append(note)


@dataclass
class _Fetched:
    """One job after its downloads: what to hand to the writer."""

    listed: ListedJob
    job: Job
    slots: list[str | MediaSink | None]
    missing: list[MissingMedia]
    downloaded_bytes: int = 0
    shares: str | None = None  # see _Planned
    borrowed: dict[int, str] = field(default_factory=dict)


_CLAIMED = object()  # a shared file whose download has not been stored yet


@dataclass(frozen=True)
class _Gone:
    """A shared file the CDN has no usable copy of (404, damaged there), and why."""

    reason: str


class _SharedFiles:
    """One download for a file several jobs show.

    A virtual upsample's image is its parent grid's ``0_{grid}.png``. Newest first, the
    upsample is listed before its parent: the first job to need the file claims (downloads)
    it, and every later one in this run borrows the object it stored instead of fetching the
    same bytes again. Results reach the writer in listing order, so the claimer's is stored
    before a borrower asks for it. Bounded: the oldest claims nobody borrowed are forgotten
    (that file is then downloaded twice and deduplicated).
    """

    LIMIT = 20_000

    def __init__(self) -> None:
        self._entries: OrderedDict[str, object] = OrderedDict()
        self._borrowers: dict[str, int] = {}

    def claim(self, path: str) -> bool:
        """True if this job should download ``path``; False if another one already does."""
        if path in self._entries:
            return False
        self._entries[path] = _CLAIMED
        while len(self._entries) > self.LIMIT:
            oldest = next(iter(self._entries))
            if oldest in self._borrowers:
                break  # still owed to a borrower
            del self._entries[oldest]
        return True

    def borrow(self, path: str) -> bool:
        """True if another job of this run downloads ``path``: do not fetch it again."""
        if path not in self._entries:
            return False
        self._borrowers[path] = self._borrowers.get(path, 0) + 1
        return True

    def stored(self, path: str, object_id: str | None, *, gone: str | None = None) -> None:
        """``gone``: why the CDN has no usable copy of the file, if it has none."""
        if path in self._entries:
            self._entries[path] = _Gone(gone) if gone is not None else object_id

    def take(self, path: str) -> str | _Gone | None:
        """The object the claiming job stored; _Gone if the CDN has no usable copy, None if
        the download failed otherwise."""
        value = self._entries.get(path)
        left = self._borrowers.get(path, 1) - 1
        if left > 0:
            self._borrowers[path] = left
        else:
            self._borrowers.pop(path, None)
            self._entries.pop(path, None)
        return value if isinstance(value, str | _Gone) else None


class SyncState:
    """Per-account facts a sync needs next time (``<vault>/state/sync.json``)."""

    def __init__(self, vault: Vault) -> None:
        self.path = vault.path / STATE_FILE
        self._root = vault.path
        # An encrypted vault's state is sealed: its keys name the user (store/sealeddoc.py).
        self._keys = vault.store.keys

    def load(self) -> dict[str, Any]:
        data = sealeddoc.read(self._root, STATE_FILE.as_posix(), self._keys)
        return data if isinstance(data, dict) else {}

    def account(self, key: str) -> dict[str, Any]:
        value = self.load().get(key)
        return value if isinstance(value, dict) else {}

    def update(self, key: str, **values: Any) -> None:
        data = self.load()
        current = data.get(key)
        entry: dict[str, Any] = current if isinstance(current, dict) else {}
        entry.update(values)
        data[key] = entry
        sealeddoc.write(self._root, STATE_FILE.as_posix(), data, self._keys)


def account_key(client: MidjourneyClient) -> str:
    settings = client.settings
    return f"{settings.web_base.rstrip('/')}|{settings.user_id or ''}"


def sync(
    vault: Vault,
    client: MidjourneyClient,
    options: SyncOptions | None = None,
    *,
    on_job: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SyncReport:
    """Bring the account's jobs into ``vault``. Raises SourceError (after checkpointing) when
    the service stops answering usefully; what was fetched until then stays in the vault."""
    options = options or SyncOptions()
    started = time.monotonic()
    report = SyncReport(dry_run=options.dry_run)
    state = SyncState(vault)
    key = account_key(client)
    account = state.account(key)
    history_complete = bool(account.get("history_complete"))
    # Stopping at known jobs is safe only while the vault holds every job older than the
    # newest it knows: a run that was interrupted or filtered may have stored newer jobs and
    # left a gap below them, so it marks a gap that only a complete, unfiltered run closes.
    incremental = history_complete and not account.get("gap") and not options.full
    if options.dry_run:
        _dry_run(vault, client, options, report, incremental)
        report.seconds = time.monotonic() - started
        return report

    retry = _load_retry(state.account(key))
    handled: set[str] = set()
    writer = vault.writer(
        "midjourney",
        checkpoint_jobs=options.checkpoint_jobs,
        checkpoint_seconds=options.checkpoint_seconds,
        thumbnails=options.thumbnails,
        thumbnail_wait=options.thumbnail_wait,
    )
    writer.start()
    state.update(key, gap=True)
    report.resumed = writer.stats.resumed_from_checkpoint

    def remember_failures() -> None:
        """Files that failed this time (not 404s) are asked for again by the next sync."""
        pending = {job_id: idx for job_id, idx in retry.items() if job_id not in handled}
        for gone in report.missing:
            if not gone.gone:
                pending.setdefault(gone.job_id, [])
                if gone.index not in pending[gone.job_id]:
                    pending[gone.job_id].append(gone.index)
        state.update(key, retry=pending)

    try:
        # Read under the lock: a forget that ran before this sync took it is honoured.
        forgotten = exclusions.load(vault)
        stop = None
        if incremental:
            stop = stop_after_known(
                lambda job_id: writer.current(job_id) is not None or job_id in forgotten, KNOWN_RUN
            )
        listing = client.list_jobs(
            stop=stop,
            job_type=options.job_type,
            since=options.since,
            until=options.until,
            # The whole listing will be read: overlap the service's page building with our diff.
            read_ahead=stop is None and options.since is None and options.limit is None,
        )
        report.generation = listing.generation
        writer.source = report.source = f"midjourney:{listing.generation}:{client.settings.user_id}"
        listed_ids: set[str] = set()
        shared = _SharedFiles()
        unforgotten = forgotten.skip(listing, exclusions.counted(report))
        planned = _plan(unforgotten, writer, options, report, retry, listed_ids, shared, on_job)
        if not options.filtered:
            planned = itertools.chain(planned, _plan_retries(vault, writer, retry, listed_ids))
        listing_failed: list[SourceError] = []
        candidates = _until_listing_fails(_limited(planned, options.limit, report), listing_failed)
        stopping = threading.Event()
        with ThreadPoolExecutor(max(1, options.concurrency)) as pool:
            try:
                fetched = bounded_map(
                    pool,
                    lambda item: _download(client, writer.media_sink, item, on_bytes, stopping),
                    candidates,
                    window=max(2, options.concurrency * 2),
                )
                for result in fetched:
                    _store(writer, result, report, shared)
                    if result.job.id in retry:  # only these matter, and the set stays small
                        handled.add(result.job.id)
                    if on_job:
                        on_job(result.job.id)
                    if should_stop and should_stop():
                        raise Interrupted("interrupted; rerun `mjvault sync` to resume")
                if listing_failed:
                    raise listing_failed[0]  # after storing every job fetched before it
            except BaseException:
                stopping.set()  # downloads in flight give up at their next chunk
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        report.listing_pages = listing.pages
        report.stopped_early = listing.stopped_early
        report.listing_cut_short = listing.cut_short
        _count_listing_malformed(report, listing)
        # A listing ended because the server repeated itself may have missed older jobs.
        gap_closed = not options.filtered and listing.cut_short is None
        if gap_closed and not listing.stopped_early:
            history_complete = True
        report.history_complete = history_complete
    except (SourceError, Interrupted, KeyboardInterrupt) as exc:
        writer.abort()
        remember_failures()
        report.seconds = time.monotonic() - started
        log.info("sync stopped after %d new jobs: checkpoint kept", report.jobs_new)
        if isinstance(exc, KeyboardInterrupt):
            stopped = Interrupted(
                f"interrupted after {report.jobs_new} new jobs; they are kept: "
                "rerun `mjvault sync` to resume"
            )
            stopped.report = report  # a watch logs what the cut-short cycle stored
            raise stopped from None
        if isinstance(exc, Interrupted):
            exc.report = report
        if isinstance(exc, SourceError) and not isinstance(exc, MissingCredentials):
            # Missing credentials stop the sync before its first request: nothing to keep.
            exc.message = f"{exc.message} — {report.jobs_new} new jobs fetched before that are kept; rerun `mjvault sync` to resume"
        raise
    except BaseException:
        writer.abort()
        raise
    snapshot = writer.commit()
    if writer.thumbnail_report is not None:
        report.thumbnails_made = writer.thumbnail_report.made
        report.thumbnails_left = writer.thumbnails_left
    remember_failures()
    state.update(
        key,
        history_complete=history_complete,
        gap=not gap_closed,
        last_sync=datetime.now(UTC).isoformat(timespec="seconds"),
        generation=report.generation,
    )
    report.snapshot = snapshot.id if snapshot else None
    if snapshot is not None and options.refresh_views:
        from mjvault.views import refresh_views

        # One broken view (an unmounted disk) is reported there, never fails the sync.
        report.views = refresh_views(vault, auto_only=True).to_json()
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Planned:
    listed: ListedJob
    job: Job
    slots: list[str | None]
    needed: list[MediaRef]
    is_new: bool
    shares: str | None = None  # a virtual upsample: the parent's file it downloads for both
    borrowed: dict[int, str] = field(default_factory=dict)  # index -> path another job fetches


def _load_retry(account_state: dict[str, Any]) -> dict[str, list[int]]:
    value = account_state.get("retry")
    if not isinstance(value, dict):
        return {}
    return {
        str(job_id): [i for i in indexes if isinstance(i, int)]
        for job_id, indexes in value.items()
        if isinstance(indexes, list)
    }


def _plan(
    listing: Iterator[ListedJob],
    writer: ArchiveWriter,
    options: SyncOptions,
    report: SyncReport,
    retry: dict[str, list[int]] | None = None,
    listed_ids: set[str] | None = None,
    shared: _SharedFiles | None = None,
    on_job: Callable[[str], None] | None = None,
) -> Iterator[_Planned]:
    """Diff each listed job against the vault: which of its media must be downloaded."""
    retry = retry or {}
    shared = shared or _SharedFiles()
    for listed in listing:
        if listed_ids is not None and listed.id in retry:
            listed_ids.add(listed.id)  # only these: the set stays small on a 500k-job listing
        report.jobs_listed += 1
        if _held_as_listed(listed, writer, options, retry):
            # Nothing to fetch or store: not parsed, and never through the download pool
            # or the writer (a `--full` of a large account is mostly such jobs).
            report.jobs_unchanged += 1
            if on_job:
                on_job(listed.id)
            continue
        try:
            job = listed.job()
        except RecordError as exc:
            report.jobs_skipped += 1
            report.note_malformed(f"a listed record was skipped: {exc}")
            continue
        if job.malformed:
            report.note_malformed(job.malformed)
        media = job.media()
        existing = writer.current(job.id)
        slots: list[str | None] = [None] * len(media)
        if existing is not None:
            for i, held in enumerate(existing.images[: len(media)]):
                slots[i] = held
        if job.is_virtual_upsample and slots and slots[0] is None and job.parent_id:
            parent = writer.current(job.parent_id)
            grid = job.parent_grid or 0
            if parent is not None and grid < len(parent.images) and parent.images[grid]:
                slots[0] = parent.images[grid]
                report.images_reused += 1
        if existing is not None and not options.retry_missing:
            again = set(retry.get(job.id, ()))
            needed = [
                m
                for m in media
                if slots[m.index] is None and (m.index >= len(existing.images) or m.index in again)
            ]
        else:
            needed = [m for m in media if slots[m.index] is None]
        item = _Planned(listed, job, slots, needed, is_new=existing is None)
        if job.is_virtual_upsample and len(needed) == 1 and shared.claim(needed[0].path):
            item.shares = needed[0].path
        else:
            for ref in needed:
                if shared.borrow(ref.path):
                    item.borrowed[ref.index] = ref.path
            if item.borrowed:
                item.needed = [ref for ref in needed if ref.index not in item.borrowed]
        yield item


def _held_as_listed(
    listed: ListedJob, writer: ArchiveWriter, options: SyncOptions, retry: dict[str, list[int]]
) -> bool:
    """The vault holds this job with these exact record bytes and every one of its files, and
    no file of it is to be asked for again: storing it again would change nothing."""
    if options.retry_missing or listed.id in retry:
        return False
    existing = writer.current(listed.id)
    return (
        existing is not None
        and None not in existing.images
        and existing.record == writer.record_id(listed.raw)
    )


def _plan_retries(
    vault: Vault, writer: ArchiveWriter, retry: dict[str, list[int]], listed_ids: set[str]
) -> Iterator[_Planned]:
    """Files that failed in an earlier sync, for jobs this run's listing did not reach.

    Runs after the listing is exhausted; their records come from the vault, where the jobs
    were stored back then.
    """
    for job_id, indexes in list(retry.items()):
        if job_id in listed_ids:
            continue  # planned with its retries from the listing
        entry = writer.current(job_id)
        if entry is None:
            continue
        try:
            raw = vault.record_json(entry)
            record = json.loads(raw)
            listed = ListedJob(job_id, record, raw, "vault", None)
            job = listed.job()
        except (MjvaultError, RecordError, ValueError) as exc:
            log.warning("cannot retry the files of job %s: %s", job_id, exc)
            continue
        media = job.media()
        slots: list[str | None] = [None] * len(media)
        for i, held in enumerate(entry.images[: len(media)]):
            slots[i] = held
        needed = [m for m in media if slots[m.index] is None and m.index in set(indexes)]
        if needed:
            yield _Planned(listed, job, slots, needed, is_new=False)


def _until_listing_fails(
    items: Iterator[_Planned], failed: list[SourceError]
) -> Iterator[_Planned]:
    """``items`` until the listing fails; the failure is kept for after the downloads in
    flight are stored, so a bad page loses nothing fetched before it."""
    try:
        yield from items
    except SourceError as exc:
        failed.append(exc)


def _count_listing_malformed(report: SyncReport, listing: Listing) -> None:
    """Items of the listing that were not job records (counted by the client as it walked)."""
    report.jobs_skipped += listing.skipped
    for note in listing.malformed:
        report.note_malformed(note)
    report.note_malformed(
        "further listed items were not job records", listing.skipped - len(listing.malformed)
    )


def _limited(
    items: Iterator[_Planned], limit: int | None, report: SyncReport
) -> Iterator[_Planned]:
    """``--limit N``: at most N jobs not yet in the vault."""
    new = 0
    for item in items:
        if limit is not None and item.is_new:
            if new >= limit:
                report.stopped_early = True
                return
            new += 1
        yield item


def _download(
    client: MidjourneyClient,
    new_sink: Callable[[], MediaSink],
    item: _Planned,
    on_bytes: Callable[[int], None] | None,
    stopping: threading.Event | None = None,
) -> _Fetched:
    """Runs in a pool thread: fetch the media a job lacks into fresh sinks."""
    slots: list[str | MediaSink | None] = list(item.slots)
    fetched = _Fetched(item.listed, item.job, slots, [], shares=item.shares, borrowed=item.borrowed)
    for ref in item.needed:
        sink = new_sink()
        try:
            result = client.download(ref, sink, on_chunk=_stop_check(stopping))
        except CdnRefused:
            # Not this file's problem: every download would be turned away the same way.
            sink.discard()
            raise
        except DownloadError as exc:
            sink.discard()
            fetched.missing.append(
                MissingMedia(item.job.id, ref.index, ref.path, str(exc), gone=False)
            )
            continue
        except BaseException:
            sink.discard()
            raise
        if isinstance(result, MediaMissing):  # 404, or damaged at the source
            sink.discard()
            fetched.missing.append(MissingMedia(item.job.id, ref.index, ref.path, result.reason))
            continue
        sink.close()
        slots[ref.index] = sink
        fetched.downloaded_bytes += result.bytes
        if on_bytes:
            on_bytes(result.bytes)
    return fetched


class _Stopped(Exception):
    """Raised inside a download when the run is stopping (Ctrl-C, an error elsewhere)."""


def _stop_check(stopping: threading.Event | None) -> Callable[[bytes], None] | None:
    if stopping is None:
        return None

    def check(_chunk: bytes) -> None:
        if stopping.is_set():
            raise _Stopped

    return check


def _store(
    writer: ArchiveWriter,
    fetched: _Fetched,
    report: SyncReport,
    shared: _SharedFiles | None = None,
) -> None:
    """In the writer's thread: stage downloaded media and record the job."""
    if shared is not None:
        for index, path in fetched.borrowed.items():
            object_id = shared.take(path)
            if isinstance(object_id, str):
                fetched.slots[index] = object_id
                report.images_reused += 1
            elif isinstance(object_id, _Gone):
                fetched.missing.append(MissingMedia(fetched.job.id, index, path, object_id.reason))
            else:
                reason = "not fetched: the download shared with another job failed"
                fetched.missing.append(
                    MissingMedia(fetched.job.id, index, path, reason, gone=False)
                )
    images: list[str | None] = []
    for slot in fetched.slots:
        if isinstance(slot, MediaSink):
            before = writer.stats.media_new
            images.append(writer.adopt_media(slot))
            if writer.stats.media_new > before:
                report.images_downloaded += 1
                if fetched.job.is_video:
                    report.videos_downloaded += 1
            else:
                report.images_deduplicated += 1
        else:
            images.append(slot)
    if shared is not None and fetched.shares is not None:
        index = next(i for i, ref in enumerate(fetched.job.media()) if ref.path == fetched.shares)
        gone = next((m.reason for m in fetched.missing if m.index == index and m.gone), None)
        shared.stored(fetched.shares, images[index], gone=gone)
    report.bytes_downloaded += fetched.downloaded_bytes
    report.missing.extend(fetched.missing)
    report.images_missing += len(fetched.missing)
    status = writer.add_job(fetched.listed.raw, images, fetched.job)
    if status == "new":
        report.jobs_new += 1
    elif status == "updated":
        report.jobs_updated += 1
    else:
        report.jobs_unchanged += 1


def _dry_run(
    vault: Vault,
    client: MidjourneyClient,
    options: SyncOptions,
    report: SyncReport,
    incremental: bool,
) -> None:
    """List what a sync would fetch, touching nothing."""
    index = vault.current_index()

    def known(job_id: str) -> bool:
        return index.get(job_id) is not None

    stop = stop_after_known(known, KNOWN_RUN) if incremental else None
    listing = client.list_jobs(
        stop=stop, job_type=options.job_type, since=options.since, until=options.until
    )
    report.generation = listing.generation
    for listed in exclusions.load(vault).skip(listing, exclusions.counted(report)):
        report.jobs_listed += 1
        if known(listed.id):
            report.jobs_unchanged += 1
            continue
        try:
            job = listed.job()
        except (RecordError, MjvaultError) as exc:
            report.jobs_skipped += 1
            report.note_malformed(f"a listed record was skipped: {exc}")
            continue
        if job.malformed:
            report.note_malformed(job.malformed)
        if options.limit is not None and len(report.would_fetch) >= options.limit:
            report.stopped_early = True
            break
        report.would_fetch.append(
            {
                "id": job.id,
                "time": job.enqueue_time.isoformat() if job.enqueue_time else None,
                "type": job.type,
                "media": [m.path for m in job.media()],
                "prompt": job.prompt,
            }
        )
    report.listing_pages = listing.pages
    report.listing_cut_short = listing.cut_short
    _count_listing_malformed(report, listing)
