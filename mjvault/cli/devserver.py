"""`mjvault dev-server`: a fake Midjourney site on 127.0.0.1 for demos and manual tests."""

from __future__ import annotations

import os

import click

from mjvault.cli.context import AppContext
from mjvault.errors import UsageError

FAULT_TARGETS = ("api", "cdn")


@click.command("dev-server")
@click.option(
    "--jobs",
    "n_jobs",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Jobs in the generated account.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Account seed.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port to listen on (default: a free one).",
)
@click.option("--user-id", help="The account's user id (default: derived from the seed).")
@click.option("--large", is_flag=True, help="Realistic image sizes (PNG ~700 KB).")
@click.option(
    "--rewrite-image-urls",
    is_flag=True,
    help="Point v1 image_paths at this server instead of the real CDN hosts.",
)
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, help="Seconds per answer.")
@click.option("--bandwidth", type=click.IntRange(min=1), help="Bytes/s per connection.")
@click.option(
    "--rate-limit-every",
    type=click.IntRange(min=0),
    default=0,
    help="Of every N requests, the last --rate-limit-burst answer 429.",
)
@click.option("--rate-limit-burst", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--retry-after", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Probability of a 5xx answer (seeded).",
)
@click.option("--error-seed", type=int, default=0)
@click.option(
    "--drop-every",
    type=click.IntRange(min=0),
    default=0,
    help="Every Nth answer: half the body, then a reset connection.",
)
@click.option(
    "--short-body-every",
    type=click.IntRange(min=0),
    default=0,
    help="Every Nth answer: Content-Length larger than the body.",
)
@click.option(
    "--fault-targets",
    default="api,cdn",
    show_default=True,
    help="Where the transient faults above apply: api, cdn or both.",
)
@click.option(
    "--missing-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of images that answer 404.",
)
@click.option(
    "--expire-after", type=click.IntRange(min=0), help="The cookie expires after N API requests."
)
@click.option(
    "--auth-failure-style",
    default="json401",
    show_default=True,
    type=click.Choice(["json401", "html403", "html200", "redirect"]),
)
@click.option(
    "--html-every",
    type=click.IntRange(min=0),
    default=0,
    help="Every Nth API request answers a login page (200, text/html).",
)
@click.option("--cf-clearance", help="Challenge API requests without this cf_clearance cookie.")
@click.option(
    "--cdn-browser-only",
    is_flag=True,
    help="The CDN answers 403 without a browser User-Agent and Sec-Fetch headers.",
)
@click.option(
    "--duplicate-records",
    type=click.IntRange(min=0),
    default=0,
    help="Pages after the first repeat the previous page's last N records.",
)
@click.option(
    "--add-jobs",
    type=click.IntRange(min=0),
    default=0,
    help="New jobs that appear after --add-jobs-after listing requests.",
)
@click.option("--add-jobs-after", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--cut-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of files served cut short with a Content-Length that agrees.",
)
@click.option(
    "--cut-first-requests",
    type=click.IntRange(min=0),
    default=0,
    help="Cut only a file's first N requests (default: every one).",
)
@click.option("--redirect-images-to", metavar="URL", help="Redirect every CDN request there.")
@click.option(
    "--escaping-image-paths",
    type=click.IntRange(min=0),
    default=0,
    help="The N newest image jobs' v1 records list a path with ../ out of the CDN.",
)
@click.option("--api-sets-cookie", is_flag=True, help="API answers refresh the session cookie.")
@click.option("--cdn-prefix", default="/cdn", show_default=True, help="Path of the CDN.")
@click.option(
    "--lying-batch-size",
    type=click.IntRange(min=0),
    default=0,
    help="v2/v3 grids claim this batch_size (e.g. 100000000).",
)
@click.option(
    "--truncated-page", type=click.IntRange(min=0), default=0, help="Listing page N is cut in half."
)
@click.option(
    "--non-object-page",
    type=click.IntRange(min=0),
    default=0,
    help="Listing page N answers JSON of the wrong shape ([], v1 {}).",
)
@click.option(
    "--non-object-items",
    type=click.IntRange(min=0),
    default=0,
    help="Every listing page carries N more items that are not objects (1, 2, …).",
)
@click.option(
    "--endless-cursors",
    is_flag=True,
    help="v2/v3 listings start over at their end, under new cursors, forever.",
)
@click.option(
    "--oversized-page",
    type=click.IntRange(min=0),
    default=0,
    help="Every listing page streams this many bytes of JSON, without Content-Length.",
)
@click.pass_context
def dev_server(
    ctx: click.Context,
    n_jobs: int,
    seed: int,
    port: int,
    user_id: str | None,
    large: bool,
    rewrite_image_urls: bool,
    latency: float,
    bandwidth: int | None,
    rate_limit_every: int,
    rate_limit_burst: int,
    retry_after: int,
    error_rate: float,
    error_seed: int,
    drop_every: int,
    short_body_every: int,
    fault_targets: str,
    missing_fraction: float,
    expire_after: int | None,
    auth_failure_style: str,
    html_every: int,
    cf_clearance: str | None,
    cdn_browser_only: bool,
    duplicate_records: int,
    add_jobs: int,
    add_jobs_after: int,
    cut_fraction: float,
    cut_first_requests: int,
    redirect_images_to: str | None,
    escaping_image_paths: int,
    api_sets_cookie: bool,
    cdn_prefix: str,
    lying_batch_size: int,
    truncated_page: int,
    non_object_page: int,
    non_object_items: int,
    endless_cursors: bool,
    oversized_page: int,
) -> None:
    """Serve a generated Midjourney account on 127.0.0.1 until Ctrl-C.

    Prints the settings a client needs as `export` lines (web base, CDN base, token, user id).
    The token is $MJVAULT_DEV_SERVER_TOKEN, else "test-token".

    \b
    Example:
      mjvault dev-server --jobs 3000 --seed 7 --rate-limit-every 20 --error-rate 0.02
    """
    from mjvault.testing.accounts import Account
    from mjvault.testing.devserver import (
        DEFAULT_DEV_TOKEN,
        DEV_TOKEN_VARIABLE,
        connection_settings,
        export_lines,
        serve_until_interrupted,
        stats_summary,
    )
    from mjvault.testing.faults import Faults
    from mjvault.testing.server import FakeMidjourney

    targets = frozenset(part.strip() for part in fault_targets.split(",") if part.strip())
    if not targets <= set(FAULT_TARGETS):
        raise UsageError(f"--fault-targets takes api and/or cdn, not {fault_targets!r}")
    faults = Faults(
        targets=targets,
        latency=latency,
        bandwidth=bandwidth,
        rate_limit_every=rate_limit_every,
        rate_limit_burst=rate_limit_burst,
        retry_after=retry_after,
        error_rate=error_rate,
        error_seed=error_seed,
        drop_every=drop_every,
        short_body_every=short_body_every,
        missing_fraction=missing_fraction,
        expire_after_api_requests=expire_after,
        auth_failure_style=auth_failure_style,  # type: ignore[arg-type]
        html_every=html_every,
        cf_clearance=cf_clearance,
        cdn_requires_browser_ua=cdn_browser_only,
        cdn_requires_sec_fetch=cdn_browser_only,
        duplicate_records=duplicate_records,
        add_jobs_after_listing_request=add_jobs_after,
        add_jobs_count=add_jobs,
        cut_fraction=cut_fraction,
        cut_first_requests=cut_first_requests,
        redirect_images_to=redirect_images_to,
        api_sets_session_cookie=api_sets_cookie,
        lying_batch_size=lying_batch_size,
        truncated_page=truncated_page,
        non_object_page=non_object_page,
        non_object_items=non_object_items,
        endless_cursors=endless_cursors,
        oversized_page=oversized_page,
    )
    app = ctx.find_object(AppContext) or AppContext()
    account = Account.generate(
        seed, n_jobs, user_id=user_id, image_size="large" if large else "small"
    )
    escaping = [job.id for job in account.image_jobs()[:escaping_image_paths]]
    faults.escaping_image_paths = frozenset(escaping)
    server = FakeMidjourney(
        account,
        faults,
        token=os.environ.get(DEV_TOKEN_VARIABLE) or DEFAULT_DEV_TOKEN,
        port=port,
        rewrite_image_urls=rewrite_image_urls,
        cdn_prefix=cdn_prefix,
    )

    def ready(running: FakeMidjourney) -> None:
        settings = connection_settings(running)
        app.emit(
            {"settings": settings, "jobs": len(account), "seed": seed},
            lambda: click.echo("\n".join(export_lines(settings))),
        )
        app.info(f"fake Midjourney with {len(account)} jobs (seed {seed}); Ctrl-C stops it")

    try:
        stats = serve_until_interrupted(server, ready=ready)
    except OSError as error:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from None
    summary = stats_summary(stats)
    app.info(
        f"stopped after {summary['requests']} requests "
        f"({summary['media_requests']} media, {summary['bytes_sent']} bytes)"
    )
