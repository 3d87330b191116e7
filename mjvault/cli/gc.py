"""``mjvault gc`` and ``mjvault forget``: drop snapshots or jobs, then reclaim their space."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import click

from mjvault.cli.context import AppContext, pass_app

MAX_IDS_SHOWN = 20


def _wait_seconds(wait: bool) -> float | None:
    return math.inf if wait else None


force_option = click.option(
    "--force",
    is_flag=True,
    help="Drop snapshots even when no remote holds them (see `mjvault remote info`).",
)


@contextlib.contextmanager
def _refusal_as_json(app: AppContext) -> Iterator[None]:
    """Under --json a refusal of the copies guard is a document naming the snapshots."""
    from mjvault.integrity.copies import NotOffsite

    try:
        yield
    except NotOffsite as exc:
        if app.json_output:
            app.emit({"ok": False, "refused": str(exc), "copies": exc.check.to_json()})
        raise


def _echo_copies(found: dict[str, Any] | None, command: str, dry_run: bool) -> None:
    """One line when snapshots no remote holds would be (or were, forced) dropped."""
    if not found or found["ok"]:
        return
    ids = found["snapshots"]
    shown = ", ".join(i[:12] for i in ids[:3]) + (
        f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    )
    if dry_run:
        click.echo(
            f"would refuse: no remote holds {shown}; run `mjvault push {found['push_to']}` "
            f"first, or {command} --force",
            err=True,
        )
    elif found["forced"]:
        click.echo(f"forced: dropped {shown}, which no remote holds", err=True)


@click.command(
    "gc",
    epilog="""\b
Examples:
  mjvault gc --dry-run             what would go, and how many bytes
  mjvault gc                       remove unreferenced objects older than 1 hour
  mjvault gc --grace 0 --wait      everything unreferenced, after a running sync ends
""",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Keep unreferenced objects younger than this (90s, 30m, 1h, 2d).",
)
@click.option("--wait", is_flag=True, help="Wait for a running sync to finish instead of failing.")
@force_option
@pass_app
def gc_command(app: AppContext, dry_run: bool, grace: str, wait: bool, force: bool) -> None:
    """Remove objects no snapshot, unfinished sync or view refers to.

    Objects younger than the grace period are always kept, so the work of a sync that is
    still running is never removed. Objects already copied to remotes are not affected.
    """
    from mjvault.integrity.gc import gc, parse_duration

    grace_seconds = parse_duration(grace)
    vault = app.open_vault()
    with app.progress(None, "sweeping", unit="obj") as bar, _refusal_as_json(app):
        report = gc(
            vault,
            grace_seconds=grace_seconds,
            dry_run=dry_run,
            wait=_wait_seconds(wait),
            on_object=lambda: bar.update(1),
            auto_pack_after=app.config.pack.auto_after,
            force=force,
        )

    def human() -> None:
        verb = "would remove" if dry_run else "removed"
        if dry_run:
            for object_id in report.removed_ids[:MAX_IDS_SHOWN]:
                click.echo(object_id)
            if report.removed > MAX_IDS_SHOWN:
                click.echo(f"… and {report.removed - MAX_IDS_SHOWN} more (--json lists 1000)")
        click.echo(
            f"{report.snapshots} snapshots, {report.objects_seen} objects, "
            f"{report.unreferenced} unreferenced"
            + (", unfinished sync protected" if report.checkpoint_protected else "")
        )
        click.echo(f"{verb} {report.removed} objects, {report.removed_bytes / 1e6:.1f} MB")
        if report.packs_rewritten:
            click.echo(
                f"{'would rewrite' if dry_run else 'rewrote'} {report.packs_rewritten} packs"
                + (
                    ""
                    if dry_run
                    else f" into {report.packs_written} "
                    f"({report.pack_bytes_written / 1e6:.1f} MB written, "
                    f"{report.pack_bytes_removed / 1e6:.1f} MB freed)"
                )
            )
        if report.temp_files_removed:
            click.echo(
                f"{verb} {report.temp_files_removed} temp files of writers that died, "
                f"{report.temp_bytes_removed / 1e6:.1f} MB"
            )
        for note in report.notes:
            click.echo(f"note: {note}")
        _echo_copies(report.copies, "gc", dry_run)
        if report.kept_young:
            click.echo(
                f"kept {report.kept_young} unreferenced objects younger than the grace period "
                f"({report.kept_young_bytes / 1e6:.1f} MB)"
            )

    app.emit(report.to_json(), human)


@click.command(
    "forget",
    epilog="""\b
Examples:
  mjvault forget --keep-last 10 --keep-daily 7 --keep-monthly 12 --dry-run
  mjvault forget --keep-last 5 --prune          forget, then gc
  mjvault forget 3f2a9c01                        forget one snapshot by id
  mjvault forget --job 012e8f80-7e9b-48fe-8839-37a5b61a14aa --prune
""",
)
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N newest snapshots.")
@click.option("--keep-hourly", type=click.IntRange(min=0), help="Keep the newest of N hours.")
@click.option("--keep-daily", type=click.IntRange(min=0), help="Keep the newest of N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="Keep the newest of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="Keep the newest of N months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), help="Keep the newest of N years.")
@click.option("--job", "job_ids", multiple=True, metavar="JOB_ID", help="Remove a job everywhere.")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten; change nothing.")
@click.option("--prune", is_flag=True, help="Run gc afterwards to reclaim the space.")
@click.option("--grace", default="1h", show_default=True, metavar="DURATION", help="gc grace.")
@click.option("--wait", is_flag=True, help="Wait for a running sync to finish instead of failing.")
@force_option
@pass_app
def forget_command(
    app: AppContext,
    snapshot_ids: tuple[str, ...],
    keep_last: int | None,
    keep_hourly: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
    job_ids: tuple[str, ...],
    dry_run: bool,
    prune: bool,
    grace: str,
    wait: bool,
    force: bool,
) -> None:
    """Forget snapshots by a keep policy or by id, or remove jobs from every snapshot.

    HEAD's snapshot is never forgotten. `--job` rewrites every snapshot holding the job
    without it and refreshes views; `--prune` then removes its objects. Copies already
    pushed to remotes, and files in quarantine/, are not affected.
    """
    from mjvault.errors import UsageError
    from mjvault.integrity.forget import (
        KeepPolicy,
        forget_jobs,
        forget_snapshots,
    )
    from mjvault.integrity.gc import gc, parse_duration

    policy = KeepPolicy(
        last=keep_last,
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
    )
    modes = sum((bool(job_ids), bool(snapshot_ids), not policy.empty))
    if modes != 1:
        raise UsageError("give exactly one of: --keep-* options, snapshot ids, or --job JOB_ID")
    grace_seconds = parse_duration(grace)
    vault = app.open_vault()
    job_report = snap_report = swept = None
    if job_ids:
        job_report = forget_jobs(vault, list(job_ids), dry_run=dry_run, wait=_wait_seconds(wait))
        data = job_report.to_json()
    else:
        with _refusal_as_json(app):
            snap_report = forget_snapshots(
                vault,
                policy=None if snapshot_ids else policy,
                snapshot_ids=list(snapshot_ids),
                dry_run=dry_run,
                wait=_wait_seconds(wait),
                force=force,
            )
        data = snap_report.to_json()
    if prune and not dry_run:
        with _refusal_as_json(app):
            swept = gc(
                vault,
                grace_seconds=grace_seconds,
                wait=_wait_seconds(wait),
                auto_pack_after=app.config.pack.auto_after,
                force=force,
            )
        data["gc"] = swept.to_json()

    def human() -> None:
        verb = "would" if dry_run else "did"
        if job_report is not None:
            click.echo(
                f"{verb} rewrite {len(job_report.rewritten)} snapshots without "
                f"{', '.join(job_ids)}"
                + (
                    " and the unfinished sync's checkpoint"
                    if job_report.checkpoint_rewritten
                    else ""
                )
            )
            for note in job_report.notes:
                click.echo(f"  {note}")
            if job_report.views_refreshed:
                click.echo(f"refreshed views: {', '.join(job_report.views_refreshed)}")
        if snap_report is not None:
            for decision in snap_report.decisions:
                mark = "keep  " if decision.keep else "forget"
                click.echo(
                    f"{mark} {decision.snapshot.short_id}  "
                    f"{decision.snapshot.time.astimezone():%Y-%m-%d %H:%M}  "
                    f"{', '.join(decision.reasons)}"
                )
            listed = {d.snapshot.id for d in snap_report.decisions}
            for snapshot_id in snap_report.forgotten:
                if snapshot_id not in listed:
                    click.echo(f"forget {snapshot_id[:12]}  (its manifest cannot be read)")
            click.echo(f"{verb} forget {len(snap_report.forgotten)} snapshots")
            guard = snap_report.guard
            _echo_copies(guard.to_json() if guard else None, "forget", dry_run)
        if swept is not None:
            click.echo(f"gc removed {swept.removed} objects, {swept.removed_bytes / 1e6:.1f} MB")
        elif not dry_run:
            click.echo("run `mjvault gc` to reclaim the space")

    app.emit(data, human)
