"""``mjvault sync``: bring every job of a Midjourney account into the vault."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.source_options import SourceOptions, midjourney_options
from mjvault.errors import EXIT_PARTIAL, UsageError

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
@pass_app
def sync_command(
    app: AppContext,
    source: SourceOptions,
    concurrency: int | None,
    job_type: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    dry_run: bool,
    full: bool,
    retry_missing: bool,
    checkpoint_jobs: int,
    no_thumbnails: bool,
) -> None:
    """Fetch every job of your Midjourney account — records, full-size images and videos.

    Incremental and resumable: an interrupted or failed sync keeps what it fetched and the
    next run continues from there. Credentials come from MIDJOURNEY_SESSION_TOKEN and
    MIDJOURNEY_USER_ID, --cookies FILE, or `mjvault auth login`.
    """
    from mjvault.notify import Notifier, failures_notified, notify_sync_outcome
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.sync import SyncOptions, sync

    app.override({"sync.jobs": concurrency})
    settings = source.settings_for(app, concurrency=app.config.sync.jobs)
    configured_since = app.config.sync.since
    options = SyncOptions(
        concurrency=app.config.sync.jobs,
        job_type=job_type,
        since=parse_day(since or (configured_since.isoformat() if configured_since else None)),
        until=parse_day(until, end=True),
        limit=limit,
        dry_run=dry_run,
        full=full,
        retry_missing=retry_missing,
        checkpoint_jobs=checkpoint_jobs,
        checkpoint_seconds=app.config.sync.checkpoint_seconds,
        thumbnails=not no_thumbnails,
    )
    vault = app.open_vault()
    notifier = Notifier.from_config(app.config)
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
    notify_sync_outcome(notifier, report, vault=str(vault.path))

    def human() -> None:
        if report.dry_run:
            click.echo(
                f"{len(report.would_fetch)} jobs would be fetched ({report.jobs_listed} listed):"
            )
            for job in report.would_fetch[:50]:
                click.echo(
                    f"  {job['id']}  {job['time'] or '?'}  {len(job['media'])} files  {job['prompt'][:60]}"
                )
            return
        click.echo(
            f"jobs: {report.jobs_new} new, {report.jobs_updated} updated, "
            f"{report.jobs_unchanged} unchanged ({report.jobs_listed} listed, "
            f"{report.listing_pages} listing pages, API {report.generation})"
        )
        if report.jobs_forgotten:
            click.echo(f"{report.jobs_forgotten} forgotten jobs skipped")
        videos = f" ({report.videos_downloaded} videos)" if report.videos_downloaded else ""
        click.echo(
            f"images: {report.images_downloaded} downloaded{videos}, "
            f"{report.images_deduplicated} deduplicated, {report.images_reused} reused from "
            f"parent jobs, {report.images_missing} missing"
        )
        click.echo(f"bytes: {_megabytes(report.bytes_downloaded)} MB in {report.seconds:.1f} s")
        if report.thumbnails_made or report.thumbnails_left:
            later = (
                f"; {report.thumbnails_left} images left for `mjvault thumbs`"
                if report.thumbnails_left
                else ""
            )
            click.echo(f"thumbnails: {report.thumbnails_made} made{later}")
        click.echo(
            f"snapshot {report.snapshot[:12]}" if report.snapshot else "vault already up to date"
        )
        if report.views and report.views["views"]:
            totals = report.views["totals"]
            click.echo(
                f"views: {len(report.views['views'])} refreshed, {totals['added']} files added, "
                f"{totals['removed']} removed"
            )
        for name, problem in (report.views or {}).get("errors", {}).items():
            click.echo(f"  view {name} not refreshed: {problem}", err=True)
        for gone in report.missing[:MAX_MISSING_SHOWN]:
            click.echo(f"  missing: job {gone.job_id} image {gone.index}: {gone.reason}", err=True)
        if len(report.missing) > MAX_MISSING_SHOWN:
            click.echo(
                f"  … and {len(report.missing) - MAX_MISSING_SHOWN} more (--json lists all)",
                err=True,
            )
        if any(gone.gone for gone in report.missing):
            click.echo(
                "  files gone from the CDN (404) or damaged there: their jobs are kept without "
                "them; `mjvault sync --retry-missing --full` asks for them again",
                err=True,
            )
        if any(not gone.gone for gone in report.missing):
            click.echo(
                "  files that could not be fetched this time: the next `mjvault sync` tries "
                "them again",
                err=True,
            )
        if report.records_malformed:
            click.echo(
                f"  {report.records_malformed} malformed records from the listing: "
                f"{report.jobs_skipped} skipped (not job records), "
                f"{report.records_malformed - report.jobs_skipped} kept with their claims "
                "bounded (--json lists the first ones)",
                err=True,
            )
        if report.listing_cut_short:
            click.echo(f"  {report.listing_cut_short}", err=True)

    from mjvault.cli.pack import pack_after_write
    from mjvault.integrity.retention import after_sync

    data = report.to_json()
    retention = None if report.dry_run else after_sync(vault, app.config.retention)
    data["retention"] = retention.to_json() if retention else None
    packed = None if report.dry_run else pack_after_write(app, vault, data)

    def human_and_packing() -> None:
        human()
        if retention is not None:
            for line in retention.lines():
                click.echo(line, err=retention.error is not None)
        if packed:
            click.echo(packed)

    app.emit(data, human_and_packing)
    retention_failed = retention is not None and retention.error is not None
    if report.missing or report.records_malformed or report.listing_cut_short or retention_failed:
        sys.exit(EXIT_PARTIAL)
