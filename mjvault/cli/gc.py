"""``mjvault gc`` and ``mjvault forget``: drop snapshots or jobs, then reclaim their space."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import EXIT_PARTIAL, ExitStatus

MAX_IDS_SHOWN = 20


def _show_ids(shown: list[str], count: int) -> None:
    """What a dry run would remove: the first ids, then how many more."""
    for object_id in shown[:MAX_IDS_SHOWN]:
        click.echo(object_id)
    if count > MAX_IDS_SHOWN:
        click.echo(f"… and {count - MAX_IDS_SHOWN} more (--json lists 1000)")


def _wait_seconds(wait: bool) -> float | None:
    return math.inf if wait else None


force_option = click.option(
    "--force",
    is_flag=True,
    help="Drop snapshots even when no remote holds them (see `mjvault remote info`).",
)
# On by default: only forgotten jobs' files are overwritten, a few per job, and whoever forgot
# them asked for them to be gone. Where overwriting reaches nothing (SSDs, copy-on-write file
# systems) it costs a write and is harmless.
overwrite_option = click.option(
    "--overwrite/--no-overwrite",
    default=True,
    show_default=True,
    help="Overwrite forgotten jobs' files before unlinking them (see `mjvault forget`).",
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
  mjvault gc --remote nas --dry-run  what would go from remote nas, and how many bytes
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
@click.option(
    "--remote",
    "remote_name",
    metavar="NAME",
    help="Collect remote NAME's garbage instead of the vault's (its own snapshots decide).",
)
@force_option
@overwrite_option
@pass_app
def gc_command(
    app: AppContext,
    dry_run: bool,
    grace: str,
    wait: bool,
    remote_name: str | None,
    force: bool,
    overwrite: bool,
) -> None:
    """Remove objects no snapshot, unfinished sync or view refers to.

    Objects younger than the grace period are always kept, so the work of a sync that is
    still running is never removed. Objects already copied to remotes are not affected,
    unless `--remote NAME` is given: then the remote's objects that none of the remote's
    snapshots reach are removed instead, and the vault is not touched.
    """
    from mjvault.durations import parse_duration
    from mjvault.integrity.gc import gc

    grace_seconds = parse_duration(grace)
    vault = app.open_vault()
    if remote_name is not None:
        if wait or force:
            raise click.UsageError(f"{'--wait' if wait else '--force'} is for the vault's own gc")
        _gc_remote(app, vault, remote_name, grace_seconds, dry_run)
        return
    with app.progress(None, "sweeping", unit="obj") as bar, _refusal_as_json(app):
        report = gc(
            vault,
            grace_seconds=grace_seconds,
            dry_run=dry_run,
            wait=_wait_seconds(wait),
            on_object=lambda: bar.update(1),
            auto_pack_after=app.config.pack.auto_after,
            force=force,
            overwrite=overwrite,
        )

    def human() -> None:
        verb = "would remove" if dry_run else "removed"
        if dry_run:
            _show_ids(report.removed_ids, report.removed)
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


def _remote_progress(app: AppContext) -> Any:
    """A bar per phase on stderr (marking, planning, removing, rewriting)."""
    bars: dict[str, Any] = {}
    stack = contextlib.ExitStack()

    def update(phase: str, done: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = stack.enter_context(app.progress(None, phase, unit="obj"))
        bars[phase].update(done)

    return stack, update


def _gc_remote(app: AppContext, vault: Any, name: str, grace_seconds: float, dry_run: bool) -> None:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.prune import gc_named_remote

    stack, update = _remote_progress(app)
    with stack:
        report = gc_named_remote(
            vault,
            name,
            passphrase=passphrase_source(app.passphrase_file),
            grace_seconds=grace_seconds,
            dry_run=dry_run,
            progress=update,
        )

    def human() -> None:
        verb = "would remove" if dry_run else "removed"
        if dry_run:
            _show_ids(report.removed_ids, report.removed)
        click.echo(
            f"remote {name}: {report.snapshots} snapshots, {report.objects_seen} objects, "
            f"{report.unreferenced} unreferenced"
        )
        click.echo(
            f"{verb} {report.removed} objects: {report.removed_bytes / 1e6:.1f} MB loose"
            + (
                f", {report.packs_rewritten} packs of "
                f"{report.pack_bytes_removed / 1e6:.1f} MB "
                + (
                    "to rewrite"
                    if dry_run
                    else f"rewritten into {report.packs_written} of "
                    f"{report.pack_bytes_written / 1e6:.1f} MB"
                )
                if report.packs_rewritten
                else ""
            )
        )
        for note in report.notes:
            click.echo(f"note: {note}")
        if report.kept_young:
            click.echo(
                f"kept {report.kept_young} unreferenced objects younger than the grace period "
                f"({report.kept_young_bytes / 1e6:.1f} MB)"
            )

    app.emit(report.to_json() | {"remote": name}, human)


@click.command(
    "forget",
    epilog="""\b
Examples:
  mjvault forget --keep-last 10 --keep-daily 7 --keep-monthly 12 --dry-run
  mjvault forget --keep-last 5 --prune          forget, then gc
  mjvault forget 3f2a9c01                        forget one snapshot by id
  mjvault forget --job 012e8f80-7e9b-48fe-8839-37a5b61a14aa --prune
  mjvault forget --search 'user:someone since:2024' --dry-run   how many would go
  mjvault forget --list                          the forgotten jobs, kept out of every sync
  mjvault forget --undo 012e8f80-7e9b-48fe-8839-37a5b61a14aa    let the next sync bring it back
  mjvault forget --remote nas --keep-last 30 --prune   on remote nas, then gc there
""",
)
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N newest snapshots.")
@click.option("--keep-hourly", type=click.IntRange(min=0), help="Keep the newest of N hours.")
@click.option("--keep-daily", type=click.IntRange(min=0), help="Keep the newest of N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="Keep the newest of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="Keep the newest of N months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), help="Keep the newest of N years.")
@click.option(
    "--job", "job_ids", multiple=True, metavar="JOB_ID", help="Remove a job everywhere, for good."
)
@click.option(
    "--search",
    "search_query",
    metavar="QUERY",
    help="Remove, for good, every job a search (`mjvault search QUERY`) finds.",
)
@click.option(
    "--undo", "undo_ids", multiple=True, metavar="JOB_ID", help="Take a job off the forgotten list."
)
@click.option("--list", "list_forgotten", is_flag=True, help="Show the forgotten jobs.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten; change nothing.")
@click.option("--prune", is_flag=True, help="Run gc afterwards to reclaim the space.")
@click.option("--grace", default="1h", show_default=True, metavar="DURATION", help="gc grace.")
@click.option("--wait", is_flag=True, help="Wait for a running sync to finish instead of failing.")
@click.option(
    "--remote",
    "remote_name",
    metavar="NAME",
    help="Forget remote NAME's snapshots instead of the vault's (never its newest).",
)
@force_option
@overwrite_option
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
    search_query: str | None,
    undo_ids: tuple[str, ...],
    list_forgotten: bool,
    yes: bool,
    dry_run: bool,
    prune: bool,
    grace: str,
    wait: bool,
    remote_name: str | None,
    force: bool,
    overwrite: bool,
) -> None:
    """Forget snapshots by a keep policy or by id, or remove jobs from every snapshot.

    HEAD's snapshot is never forgotten. `--job` (or `--search`) puts the jobs on the
    vault's list of forgotten jobs, which no later sync, import or pull stores again, and
    rewrites every snapshot holding them without them; views, the index and the gallery's
    thumbnails follow, and `--prune` then removes (and overwrites) their files. Every
    configured remote gets the rewritten snapshots and loses the old ones (its next
    `gc --remote` removes the jobs); a remote that cannot be reached is named (exit 4).
    On a terminal the jobs are counted and confirmation asked (`--yes` skips it); elsewhere
    `--search` needs `--yes`. `--undo` takes a job off the list, `--list` shows it.
    Files in quarantine/ are not affected. `--remote NAME` forgets a remote's snapshots.
    """
    from mjvault.durations import parse_duration
    from mjvault.errors import UsageError
    from mjvault.integrity.forget import (
        KeepPolicy,
        forget_jobs,
        forget_snapshots,
    )
    from mjvault.integrity.gc import gc

    policy = KeepPolicy(
        last=keep_last,
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
    )
    modes = sum(
        (
            bool(job_ids),
            bool(snapshot_ids),
            not policy.empty,
            search_query is not None,
            bool(undo_ids),
            list_forgotten,
        )
    )
    if modes != 1:
        raise UsageError(
            "give exactly one of: --keep-* options, snapshot ids, --job, --search, --undo or --list"
        )
    grace_seconds = parse_duration(grace)
    vault = app.open_vault()
    if list_forgotten or undo_ids:
        if remote_name is not None:
            raise UsageError("--list and --undo are for the vault's own list, not --remote")
        _forgotten_list(app, vault, undo_ids, dry_run, wait)
        return
    if remote_name is not None:
        if job_ids or search_query is not None:
            raise UsageError(
                "--job and --search are not for --remote",
                hint="`mjvault forget --job ID` without --remote forgets it in the vault and "
                "on every remote",
            )
        _forget_remote(
            app,
            vault,
            remote_name,
            None if snapshot_ids else policy,
            snapshot_ids,
            dry_run,
            grace_seconds if prune else None,
        )
        return
    job_report = snap_report = swept = None
    remotes: list[Any] = []
    if search_query is not None or job_ids:
        reason = "job" if job_ids else f"search: {search_query}"
        chosen = list(job_ids) if job_ids else _search_ids(vault, search_query or "")
        if not chosen:
            app.emit(
                {"jobs": [], "dry_run": dry_run, "matched": 0},
                lambda: click.echo("no job matches: nothing forgotten"),
            )
            return
        if not dry_run:
            _confirm(app, chosen, yes, searched=search_query is not None)
        job_report = forget_jobs(
            vault, chosen, dry_run=dry_run, wait=_wait_seconds(wait), reason=reason
        )
        data = job_report.to_json() | {"matched": len(chosen)}
        if not dry_run and job_report.rewritten:
            from mjvault.cli.passphrase import passphrase_source
            from mjvault.remotes.prune import forget_rewritten_on_remotes

            remotes = forget_rewritten_on_remotes(
                vault, job_report.rewritten, passphrase=passphrase_source(app.passphrase_file)
            )
            data["remotes"] = [r.to_json() for r in remotes]
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
                overwrite=overwrite,
            )
        data["gc"] = swept.to_json()

    def human() -> None:
        verb = "would" if dry_run else "did"
        if job_report is not None:
            count = len(job_report.jobs)
            named = ", ".join(job_report.jobs[:3]) + (f" and {count - 3} more" if count > 3 else "")
            click.echo(
                f"{'would forget' if dry_run else 'forgot'} {count} jobs for good"
                + (
                    f" ({len(job_report.already_forgotten)} already forgotten)"
                    if job_report.already_forgotten
                    else ""
                )
                + "; no later sync, import or pull stores them again"
            )
            if dry_run:
                for job_id in job_report.jobs[:MAX_IDS_SHOWN]:
                    click.echo(f"  {job_id}")
                if count > MAX_IDS_SHOWN:
                    click.echo(f"  … and {count - MAX_IDS_SHOWN} more (--json lists all)")
            click.echo(
                f"{verb} rewrite {len(job_report.rewritten)} snapshots without {named}"
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
            for remote in remotes:
                if remote.error is not None:
                    click.echo(f"remote {remote.name}: not reached: {remote.error}", err=True)
                else:
                    click.echo(
                        f"remote {remote.name}: pushed, {len(remote.forgotten)} old snapshots "
                        f"forgotten; `mjvault gc --remote {remote.name}` removes the job there"
                    )
        if snap_report is not None:
            _print_decisions(snap_report, verb)
            guard = snap_report.guard
            _echo_copies(guard.to_json() if guard else None, "forget", dry_run)
        if swept is not None:
            click.echo(f"gc removed {swept.removed} objects, {swept.removed_bytes / 1e6:.1f} MB")
            for note in swept.notes:
                click.echo(f"note: {note}")
        elif not dry_run:
            click.echo("run `mjvault gc` to reclaim the space")

    app.emit(data, human)
    unreached = [r.name for r in remotes if r.error is not None]
    if unreached:
        click.echo(f"the job is still on: {', '.join(unreached)}", err=True)
        raise ExitStatus(EXIT_PARTIAL)


def _search_ids(vault: Any, query: str) -> list[str]:
    from mjvault.index.query import parse_query
    from mjvault.index.search import iter_search

    if not query.strip():
        from mjvault.errors import UsageError

        raise UsageError("--search needs a query", hint="as `mjvault search` takes it")
    return list(iter_search(vault.current_index(), parse_query(query)))


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirm(app: AppContext, job_ids: list[str], yes: bool, *, searched: bool) -> None:
    """Forgetting is for good: on a terminal, say how many and ask; a search off a terminal
    needs --yes (a script's query is not to take jobs nobody counted)."""
    from mjvault.errors import UsageError

    if yes:
        return
    if not _on_terminal():
        if searched:
            raise UsageError(
                f"--search matched {len(job_ids)} jobs: add --yes to forget them for good",
                hint="--dry-run lists them",
            )
        return
    for job_id in job_ids[:MAX_IDS_SHOWN]:
        click.echo(f"  {job_id}", err=True)
    if len(job_ids) > MAX_IDS_SHOWN:
        click.echo(f"  … and {len(job_ids) - MAX_IDS_SHOWN} more", err=True)
    if not click.confirm(
        f"Forget {len(job_ids)} jobs for good (no sync, import or pull brings them back)?",
        default=False,
        err=True,
    ):
        raise UsageError("nothing forgotten")


def _forgotten_list(
    app: AppContext, vault: Any, undo_ids: tuple[str, ...], dry_run: bool, wait: bool
) -> None:
    from mjvault.errors import JobNotFound
    from mjvault.integrity import exclusions
    from mjvault.integrity.gc import acquire_lock

    if not undo_ids:
        listed = exclusions.read(vault)
        entries = sorted(listed.entries.values(), key=lambda e: (e.added, e.id))

        def human() -> None:
            for entry in entries:
                pending = f"  still on: {', '.join(entry.pending)}" if entry.pending else ""
                click.echo(f"{entry.id}  {entry.added}  {entry.reason}{pending}")
            click.echo(f"{len(entries)} forgotten jobs")

        app.emit({"count": len(entries), "jobs": [e.to_json() for e in entries]}, human)
        return
    with acquire_lock(vault, _wait_seconds(wait), "mjvault forget --undo"):
        listed = exclusions.read(vault)
        missing = [j for j in undo_ids if j not in listed.entries]
        if missing:
            raise JobNotFound(f"not on the list of forgotten jobs: {', '.join(missing)}")
        removed = list(undo_ids) if dry_run else exclusions.remove(vault, undo_ids)

    def said() -> None:
        verb = "would take" if dry_run else "took"
        click.echo(
            f"{verb} {len(removed)} jobs off the list of forgotten jobs; the next "
            "`mjvault sync --full` (or import, or pull) may store them again"
        )

    app.emit({"undone": removed, "dry_run": dry_run}, said)


def _print_decisions(report: Any, verb: str) -> None:
    for decision in report.decisions:
        mark = "keep  " if decision.keep else "forget"
        click.echo(
            f"{mark} {decision.snapshot.short_id}  "
            f"{decision.snapshot.time.astimezone():%Y-%m-%d %H:%M}  "
            f"{', '.join(decision.reasons)}"
        )
    listed = {d.snapshot.id for d in report.decisions}
    for snapshot_id in report.forgotten:
        if snapshot_id not in listed:
            click.echo(f"forget {snapshot_id[:12]}  (its manifest cannot be read)")
    click.echo(f"{verb} forget {len(report.forgotten)} snapshots")


def _forget_remote(
    app: AppContext,
    vault: Any,
    name: str,
    policy: Any,
    snapshot_ids: tuple[str, ...],
    dry_run: bool,
    prune_grace: float | None,
) -> None:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.prune import forget_named_remote

    report = forget_named_remote(
        vault,
        name,
        passphrase=passphrase_source(app.passphrase_file),
        policy=policy,
        snapshot_ids=list(snapshot_ids),
        dry_run=dry_run,
    )
    data = report.to_json() | {"remote": name}
    swept = None
    if prune_grace is not None and not dry_run:
        from mjvault.remotes.prune import gc_named_remote

        stack, update = _remote_progress(app)
        with stack:
            swept = gc_named_remote(
                vault,
                name,
                passphrase=passphrase_source(app.passphrase_file),
                grace_seconds=prune_grace,
                progress=update,
            )
        data["gc"] = swept.to_json()

    def human() -> None:
        _print_decisions(report, "would" if dry_run else "did")
        if swept is not None:
            click.echo(
                f"gc removed {swept.removed} objects from remote {name}, "
                f"{swept.bytes_freed / 1e6:.1f} MB freed"
            )
        elif not dry_run:
            click.echo(f"run `mjvault gc --remote {name}` to reclaim the space")

    app.emit(data, human)
