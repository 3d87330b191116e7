"""`mjvault schedule install|status|remove`: a vault's sync run by the system's scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mjvault.cli.context import AppContext, json_option, pass_app

if TYPE_CHECKING:
    from mjvault.schedule.base import Status

SCHEDULERS = click.Choice(["systemd", "cron", "launchd", "windows"])

EPILOG = """\b
Examples:
  mjvault schedule install                      every 6h with this platform's scheduler
  mjvault schedule install --every 1h --push nas --verify-subset 2%
  mjvault schedule install --scheduler launchd --print   show a macOS agent, load nothing
  mjvault schedule status
  mjvault schedule remove
"""


@click.group("schedule", epilog=EPILOG)
def schedule_group() -> None:
    """Run `mjvault sync` of this vault on a schedule: systemd, cron, launchd or Windows."""


@schedule_group.command("install")
@click.option(
    "--every",
    default="6h",
    show_default=True,
    metavar="DURATION",
    help="Interval between runs: 10m, 1h, 6h, 1d, 1w…",
)
@click.option(
    "--verify-subset",
    metavar="SPEC",
    help="After each sync, re-hash a subset of the objects: 2% or n/m.",
)
@click.option(
    "--push", "push", multiple=True, metavar="NAME", help="After a sync, push to remote NAME."
)
@click.option(
    "--scheduler", type=SCHEDULERS, help="Which scheduler (default: this platform's, detected)."
)
@click.option(
    "--print",
    "--dry-run",
    "dry_run",
    is_flag=True,
    help="Print the files install would write; write and load nothing.",
)
@json_option
@pass_app
def install_command(
    app: AppContext,
    every: str,
    verify_subset: str | None,
    push: tuple[str, ...],
    scheduler: str | None,
    dry_run: bool,
) -> None:
    """Write and load a schedule that syncs this vault every DURATION, quietly, at idle
    priority, logging to the platform's log folder. Installing again replaces it.

    A run that finds the previous one still going exits at once (`sync --if-idle`). The
    session comes from the keyring or the configuration you already set up; an encrypted
    vault's passphrase from the global --passphrase-file (a file only you can read), never
    the passphrase itself.
    """
    from mjvault.schedule import manage

    request = manage.Request(
        vault=app.vault_path(),
        every=every,
        # The profile of this shell (--profile or MJVAULT_PROFILE) is the job's: a scheduler
        # starts it with none of this shell's environment.
        profile=app.profile_name(),
        verify_subset=verify_subset,
        push=push,
        passphrase_file=Path(app.passphrase_file) if app.passphrase_file else None,
    )
    if manage.needs_passphrase(request):
        app.info(
            "warning: this vault is encrypted: give the schedule its passphrase with "
            "`mjvault --passphrase-file FILE schedule install` (a file only you can read)"
        )
    if dry_run:
        plan, kind, files = manage.preview(request, scheduler)
        app.emit(
            {
                "scheduler": kind,
                "name": plan.name,
                "command": plan.command(),
                "files": {str(path): text for path, text in files.items()},
            },
            lambda: _print_files(files),
        )
        return
    plan, kind, done = manage.install(request, scheduler)
    app.emit(
        {
            "scheduler": kind,
            "name": plan.name,
            "command": plan.command(),
            "done": done,
            "log_file": str(plan.log_file),
        },
        lambda: _print_done(done, plan.log_file),
    )


def _print_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        click.echo(f"# {path}")
        click.echo(text, nl=not text.endswith("\n"))


def _print_done(done: list[str], log_file: Path) -> None:
    for line in done:
        click.echo(line)
    click.echo(f"logs: {log_file}")


@schedule_group.command("status")
@json_option
@pass_app
def status_command(app: AppContext) -> None:
    """Which scheduler runs this vault's sync, its files, whether it is enabled, the next and
    last run, and the last log line."""
    from mjvault.schedule import manage

    statuses = manage.status(app.vault_path())
    app.emit([s.to_json() for s in statuses], lambda: _print_statuses(statuses))


def _print_statuses(statuses: list[Status]) -> None:
    for status in statuses:
        if not status.installed:
            click.echo(f"no schedule installed for this vault ({status.scheduler} would run it)")
            continue
        enabled = {True: "enabled", False: "not enabled", None: "unknown"}[status.enabled]
        click.echo(f"{status.scheduler}: {status.name} ({enabled})")
        for path in status.files:
            click.echo(f"  file: {path}")
        for label, value in (
            ("schedule", status.schedule),
            ("next run", status.next_run),
            ("last run", status.last_run),
            ("log", status.log_file),
            ("last log line", status.last_log_line),
        ):
            if value:
                click.echo(f"  {label}: {value}")
        for note in status.notes:
            click.echo(f"  note: {note}")


@schedule_group.command("remove")
@json_option
@pass_app
def remove_command(app: AppContext) -> None:
    """Disable and delete this vault's schedule (nothing installed is not an error)."""
    from mjvault.schedule import manage

    done = manage.remove(app.vault_path())
    app.emit(
        {"removed": done},
        lambda: click.echo("\n".join(done) if done else "no schedule installed for this vault"),
    )
