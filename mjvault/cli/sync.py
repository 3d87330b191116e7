"""``mjvault sync``: bring every job of a Midjourney account into the vault."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.source_options import SourceOptions, midjourney_options
from mjvault.errors import (
    EXIT_INTEGRITY,
    EXIT_PARTIAL,
    ExitStatus,
    Interrupted,
    MjvaultError,
    UsageError,
    VaultLocked,
)

if TYPE_CHECKING:
    from mjvault.cli.signals import StopSignals
    from mjvault.followups import FollowupReport, PushOutcome
    from mjvault.integrity.verify import VerifyReport
    from mjvault.sync import SyncOptions, SyncReport

log = logging.getLogger(__name__)

MAX_MISSING_SHOWN = 10


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f}"


def parse_day(value: str | None, *, end: bool = False) -> datetime | None:
    """``2024-05-01`` or a full ISO time; a bare date as --until means the end of that day."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"cannot read the date {value!r}; use YYYY-MM-DD") from None
    if end and len(value) <= 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999_999)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command(
    "sync",
    epilog="""\b
Examples:
  export MIDJOURNEY_SESSION_TOKEN=...  MIDJOURNEY_USER_ID=...
  mjvault sync                       everything new since the last sync
  mjvault sync --dry-run             what would be fetched
  mjvault sync --since 2024-01-01 --type upscale
  mjvault sync --cookies cookies.txt --jobs 4 --max-rps 2
  mjvault --json sync > summary.json
  mjvault sync --watch --every 10m   stay running; sync every 10 minutes
  mjvault sync --push nas --verify-subset 2%
  mjvault -q sync --if-idle          from a timer: skip if a sync still runs
""",
)
@midjourney_options
@click.option(
    "-j",
    "--jobs",
    "concurrency",
    type=click.IntRange(1, 64),
    help="Downloads at once (default: sync.jobs, 8).",
)
@click.option(
    "--type", "job_type", metavar="TYPE", help="Only jobs of this type (grid, upscale, video, …)."
)
@click.option("--since", metavar="DATE", help="Only jobs enqueued on or after DATE.")
@click.option("--until", metavar="DATE", help="Only jobs enqueued on or before DATE.")
@click.option("--limit", type=click.IntRange(1), help="At most N new jobs this run.")
@click.option("--dry-run", is_flag=True, help="List what would be fetched; change nothing.")
@click.option("--full", is_flag=True, help="Read the whole listing, not only what is new.")
@click.option("--retry-missing", is_flag=True, help="Try again images that were missing before.")
@click.option(
    "--checkpoint-jobs",
    type=click.IntRange(1),
    default=2000,
    hidden=True,  # a tuning knob for tests and very slow links, not for everyday use
    help="Make progress durable every N jobs.",
)
@click.option(
    "--no-thumbnails",
    is_flag=True,
    help="Do not make the new images' thumbnails and perceptual hashes now (`mjvault thumbs` makes them later).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Stay running: sync every --every, push, then sleep. SIGTERM or Ctrl-C stops it cleanly.",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="With --watch: how often (30s, 10m, 6h, 1d; default: sync.every, 10m).",
)
@click.option(
    "--push",
    "push_to",
    metavar="NAME",
    multiple=True,
    help="After the sync, push to remote NAME if it lacks the newest snapshot (repeatable; remotes "
    "marked auto-push are pushed to as well).",
)
@click.option(
    "--verify-subset",
    metavar="SPEC",
    help="After the sync, verify a subset of the data: 5% or n/m (as verify --read-data-subset).",
)
@click.option(
    "--if-idle",
    is_flag=True,
    help="If another process is writing to the vault, say so in one line and exit 0.",
)
@pass_app
def sync_command(app: AppContext, source: SourceOptions, **given: Any) -> None:
    """Fetch every job of your Midjourney account — records, full-size images and videos.

    Incremental and resumable: an interrupted or failed sync keeps what it fetched and the
    next run continues from there. Credentials come from MIDJOURNEY_SESSION_TOKEN and
    MIDJOURNEY_USER_ID, --cookies FILE, or `mjvault auth login`.

    Exit codes: 4 when images are missing or a push failed (the synced jobs are kept), 3
    when --verify-subset found problems. A sync stopped by Ctrl-C or SIGTERM keeps what it
    fetched and exits 130; --watch exits 0 on SIGTERM, 130 on Ctrl-C.
    """
    args = SyncArgs(**given)
    args.check(app)
    app.override({"sync.jobs": args.concurrency, "sync.every": args.every})
    options = args.options(app)
    if args.watch:
        from mjvault.cli.watch import run_watch

        run_watch(
            app,
            source,
            options,
            push=args.push_to,
            verify_subset=args.verify_subset,
            if_idle=args.if_idle,
        )
        return
    from mjvault.cli.signals import StopSignals

    # A service manager's SIGTERM (systemctl stop, shutdown, docker stop) stops a one-shot sync
    # the way Ctrl-C does: it checkpoints, releases the lock and exits 130 (interrupted).
    with StopSignals().installed() as signals:
        _sync_once(
            app,
            source,
            options,
            push_to=args.push_to,
            verify_subset=args.verify_subset,
            if_idle=args.if_idle,
            signals=signals,
        )


@dataclass(frozen=True)
class SyncArgs:
    """The sync command's own options as given, by click's parameter names: built once from
    what click parsed, so that the options are listed only here and in the decorators."""

    concurrency: int | None = None
    job_type: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None
    dry_run: bool = False
    full: bool = False
    retry_missing: bool = False
    checkpoint_jobs: int = 2000
    no_thumbnails: bool = False
    watch: bool = False
    every: str | None = None
    push_to: tuple[str, ...] = ()
    verify_subset: str | None = None
    if_idle: bool = False

    def check(self, app: AppContext) -> None:
        """Refuse bad combinations and names before any work."""
        from mjvault.integrity.verify import parse_subset

        if self.verify_subset is not None:
            parse_subset(self.verify_subset)  # a bad spec is refused before any work
        if self.dry_run and (self.watch or self.push_to or self.verify_subset):
            raise UsageError(
                "--dry-run changes nothing: it goes without --watch, --push and --verify-subset"
            )
        if self.every is not None and not self.watch:
            raise UsageError("--every goes with --watch")
        if self.push_to:
            from mjvault.remotes.config import load_spec

            for name in self.push_to:  # a mistyped name is refused now, not after the sync
                load_spec(app.vault_path(), name)

    def options(self, app: AppContext) -> SyncOptions:
        """What the library's sync is given: these options over the configuration."""
        from mjvault.sync import SyncOptions

        configured_since = app.config.sync.since
        since = self.since or (configured_since.isoformat() if configured_since else None)
        return SyncOptions(
            concurrency=app.config.sync.jobs,
            job_type=self.job_type,
            since=parse_day(since),
            until=parse_day(self.until, end=True),
            limit=self.limit,
            dry_run=self.dry_run,
            full=self.full,
            retry_missing=self.retry_missing,
            checkpoint_jobs=self.checkpoint_jobs,
            checkpoint_seconds=app.config.sync.checkpoint_seconds,
            thumbnails=not self.no_thumbnails,
        )


def _sync_once(
    app: AppContext,
    source: SourceOptions,
    options: SyncOptions,
    *,
    push_to: tuple[str, ...],
    verify_subset: str | None,
    if_idle: bool,
    signals: StopSignals,
) -> None:
    from mjvault.cli.if_idle import running_holder, say_busy
    from mjvault.followups import FollowupSettings, run_followups
    from mjvault.notify import Notifier, failures_notified, notify_sync_outcome
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.sync import sync

    # The notifier first: reading the credentials (a browser profile) and opening the vault
    # (a disk not mounted) are the sync's first steps that can fail, notified like any other.
    notifier = Notifier.from_config(app.config)
    with failures_notified(notifier, vault=str(app.vault_path())):
        try:
            settings = source.settings_for(app, concurrency=app.config.sync.jobs)
        except MjvaultError:
            # --if-idle skips while another writer is at work: credentials read before the
            # sync takes the lock must not turn that skip into a failure. The next run, with
            # the vault idle, reports them if they still cannot be read.
            busy = running_holder(app.vault_path()) if if_idle else None
            if busy is None:
                raise
            say_busy(app, busy)
            return
        vault = app.open_vault()
    try:
        with (
            failures_notified(notifier, vault=str(vault.path)),
            MidjourneyClient(settings) as client,
            app.progress(None, "jobs", unit="job") as jobs_bar,
            app.progress(None, "download", unit="B") as bytes_bar,
        ):
            bytes_bar.unit_scale = True
            report = sync(
                vault,
                client,
                options,
                on_job=lambda _job_id: jobs_bar.update(1),
                on_bytes=bytes_bar.update,
            )
    except VaultLocked as exc:
        if not if_idle:
            raise
        # --if-idle takes the lock as any sync does and skips on finding it held: a look
        # first would hold the lock an instant itself and fail a writer starting then.
        say_busy(app, exc.message)
        return
    if signals.received is not None:
        # The signal's interrupt was swallowed by the sync's last step (the pack merge, after
        # the snapshot): the stop still holds, before the pushes and verify that follow.
        stopped = Interrupted("interrupted after the snapshot; the vault is consistent")
        stopped.report = report
        raise stopped
    notify_sync_outcome(notifier, report, vault=str(vault.path))
    if not report.dry_run:
        log_summary(report)

    def say(line: str, err: bool = False) -> None:
        # -q: only errors (a timer's mail); the summary is in the log file regardless.
        if err or app.verbosity >= 0:
            click.echo(line, err=err)

    def human() -> None:
        if report.dry_run:
            say(f"{len(report.would_fetch)} jobs would be fetched ({report.jobs_listed} listed):")
            for job in report.would_fetch[:50]:
                say(
                    f"  {job['id']}  {job['time'] or '?'}  {len(job['media'])} files  {job['prompt'][:60]}"
                )
            return
        say(
            f"jobs: {report.jobs_new} new, {report.jobs_updated} updated, "
            f"{report.jobs_unchanged} unchanged ({report.jobs_listed} listed, "
            f"{report.listing_pages} listing pages, API {report.generation})"
        )
        if report.jobs_forgotten:
            say(f"{report.jobs_forgotten} forgotten jobs skipped")
        videos = f" ({report.videos_downloaded} videos)" if report.videos_downloaded else ""
        say(
            f"images: {report.images_downloaded} downloaded{videos}, "
            f"{report.images_deduplicated} deduplicated, {report.images_reused} reused from "
            f"parent jobs, {report.images_missing} missing"
        )
        say(f"bytes: {_megabytes(report.bytes_downloaded)} MB in {report.seconds:.1f} s")
        if report.thumbnails_made or report.thumbnails_left:
            later = (
                f"; {report.thumbnails_left} images left for `mjvault thumbs`"
                if report.thumbnails_left
                else ""
            )
            say(f"thumbnails: {report.thumbnails_made} made{later}")
        say(f"snapshot {report.snapshot[:12]}" if report.snapshot else "vault already up to date")
        if report.views and report.views["views"]:
            totals = report.views["totals"]
            say(
                f"views: {len(report.views['views'])} refreshed, {totals['added']} files added, "
                f"{totals['removed']} removed"
            )
        for name, problem in (report.views or {}).get("errors", {}).items():
            say(f"  view {name} not refreshed: {problem}", err=True)
        for gone in report.missing[:MAX_MISSING_SHOWN]:
            say(f"  missing: job {gone.job_id} image {gone.index}: {gone.reason}", err=True)
        if len(report.missing) > MAX_MISSING_SHOWN:
            say(
                f"  … and {len(report.missing) - MAX_MISSING_SHOWN} more (--json lists all)",
                err=True,
            )
        if any(gone.gone for gone in report.missing):
            say(
                "  files gone from the CDN (404) or damaged there: their jobs are kept without "
                "them; `mjvault sync --retry-missing --full` asks for them again",
                err=True,
            )
        if any(not gone.gone for gone in report.missing):
            say(
                "  files that could not be fetched this time: the next `mjvault sync` tries "
                "them again",
                err=True,
            )
        if report.records_malformed:
            say(
                f"  {report.records_malformed} malformed records from the listing: "
                f"{report.jobs_skipped} skipped (not job records), "
                f"{report.records_malformed - report.jobs_skipped} kept with their claims "
                "bounded (--json lists the first ones)",
                err=True,
            )
        if report.listing_cut_short:
            say(f"  {report.listing_cut_short}", err=True)

    from mjvault.cli.passphrase import passphrase_source

    data = report.to_json()
    try:
        # A follow-up's own failure (a full disk in a pack merge, a broken remote record) is
        # notified as a sync's is; the jobs the sync stored are still shown before it.
        with failures_notified(notifier, vault=str(vault.path), what="sync follow-up"):
            done = _followups_failing_as_one_line(
                lambda: run_followups(
                    vault,
                    report,
                    FollowupSettings(
                        retention=app.config.retention,
                        pack_after=app.config.pack.auto_after,
                        push=push_to,
                        verify_subset=verify_subset,
                        passphrase=passphrase_source(app.passphrase_file),
                    ),
                    notifier=notifier,
                )
            )
    except MjvaultError:
        app.emit(data, human)
        raise
    data |= done.to_json()

    def human_and_followups() -> None:
        human()
        if done.retention is not None:
            for line in done.retention.lines():
                say(line, err=done.retention_failed)
        packed = done.pack_line()
        if packed:
            say(packed)
        _print_followups(done.pushes, done.verify, say)

    app.emit(data, human_and_followups)
    if done.verify is not None and not done.verify.ok:
        raise ExitStatus(EXIT_INTEGRITY)
    if (
        report.missing
        or report.records_malformed
        or report.listing_cut_short
        or done.retention_failed
        or done.push_failed
    ):
        raise ExitStatus(EXIT_PARTIAL)


def _followups_failing_as_one_line(run: Callable[[], FollowupReport]) -> FollowupReport:
    """``run()``, its unexpected errors (an OSError, a sqlite3 error) as the one-line
    MjvaultError a watch cycle makes of them, so they are notified like any failure."""
    from mjvault.watch import cycle_failure

    try:
        return run()
    except MjvaultError:
        raise
    except Exception as exc:
        log.debug("sync follow-up failed", exc_info=True)
        raise cycle_failure(exc) from exc


def log_summary(report: SyncReport) -> None:
    """The sync's outcome as one INFO line: what --log-file keeps of a scheduled run."""
    log.info(
        "sync finished",
        extra={
            "jobs_new": report.jobs_new,
            "jobs_updated": report.jobs_updated,
            "jobs_listed": report.jobs_listed,
            "images_downloaded": report.images_downloaded,
            "images_missing": report.images_missing,
            "bytes_downloaded": report.bytes_downloaded,
            "seconds": round(report.seconds, 3),
            "snapshot": report.snapshot[:12] if report.snapshot else None,
        },
    )


def _print_followups(
    pushes: list[PushOutcome], checked: VerifyReport | None, say: Callable[..., None]
) -> None:
    for outcome in pushes:
        if outcome.ok and outcome.report is not None:
            say(
                f"pushed to {outcome.remote}: {outcome.report.objects_sent} objects, "
                f"{outcome.report.snapshots_sent} snapshots published"
            )
        else:
            say(
                f"  push to {outcome.remote} failed: {outcome.error} (the synced jobs are kept; "
                f"`mjvault push {outcome.remote}` tries again)",
                err=True,
            )
    if checked is not None:
        if checked.ok:
            say(f"verified a {checked.subset} subset: no problems")
        else:
            say(
                f"  verify of a {checked.subset} subset found {len(checked.problems)} problems: "
                "run `mjvault verify --read-data`",
                err=True,
            )
