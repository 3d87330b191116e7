"""``mjvault pack``: loose records and tree nodes into packs, small packs merged."""

from __future__ import annotations

import math

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import EXIT_INTEGRITY, ExitStatus
from mjvault.vault import Vault


def pack_after_write(app: AppContext, vault: Vault, data: dict[str, object]) -> str | None:
    """Merge small packs once `pack.auto_after` of them pile up (after sync and import); adds
    the report to ``data`` and returns a line for humans when it did something."""
    from mjvault.integrity.pack import pack_after_write as merge

    report = merge(vault, app.config.pack.auto_after)
    if report is None:
        return None
    data["packing"] = report.to_json()
    return f"merged {report.packs_merged} small packs into {report.packs_written}"


@click.command(
    "pack",
    epilog="""\b
Examples:
  mjvault pack --dry-run       what would be packed and merged
  mjvault pack                 pack a vault written before packs existed
  mjvault pack --wait          after a running sync has finished
""",
)
@click.option("--dry-run", is_flag=True, help="Count what would be packed; change nothing.")
@click.option("--wait", is_flag=True, help="Wait for a running sync to finish instead of failing.")
@pass_app
def pack_command(app: AppContext, dry_run: bool, wait: bool) -> None:
    """Move loose records and tree nodes into packs, and merge small packs.

    Vaults written before packs existed keep every object in a file of its own; this packs
    them. Images, videos and snapshot manifests stay loose. Each old copy is removed only
    once its new pack is safely on disk, so an interrupted run loses nothing: run it again.
    Merging small packs also happens by itself after sync, import and gc once more than
    `pack.auto_after` pile up.
    """
    from mjvault.integrity.pack import pack

    vault = app.open_vault()
    with app.progress(None, "packing", unit="obj") as bar:
        report = pack(
            vault,
            dry_run=dry_run,
            wait=math.inf if wait else None,
            on_object=lambda: bar.update(1),
        )

    def human() -> None:
        verb = "would pack" if dry_run else "packed"
        click.echo(
            f"{verb} {report.loose_packed} loose objects "
            f"({report.loose_packed_bytes / 1e6:.1f} MB); "
            f"{report.loose_kept} stay loose (images, videos, snapshots)"
        )
        merge = "would merge" if dry_run else "merged"
        click.echo(
            f"{merge} {report.packs_merged} of {report.small_packs} small packs "
            f"({report.small_pack_bytes / 1e6:.1f} MB)"
        )
        if not dry_run:
            click.echo(
                f"wrote {report.packs_written} packs ({report.pack_bytes_written / 1e6:.1f} MB), "
                f"removed {report.loose_removed} loose files and {report.packs_removed} packs "
                f"({report.bytes_removed / 1e6:.1f} MB)"
            )
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        if report.damaged:
            click.echo(
                f"{report.damaged} damaged objects or packs left as they are: "
                "run `mjvault verify --repair`",
                err=True,
            )

    app.emit(report.to_json(), human)
    if report.damaged:
        raise ExitStatus(EXIT_INTEGRITY)
