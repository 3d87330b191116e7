"""``mjvault verify`` and ``mjvault index``: trust, and the cache that can always be rebuilt."""

from __future__ import annotations

import sys
from functools import partial

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import EXIT_INTEGRITY

MAX_PROBLEMS_SHOWN = 50


@click.command(
    "verify",
    epilog="""\b
Examples:
  mjvault verify                          structure only, in seconds
  mjvault verify --read-data              rehash every object
  mjvault verify --read-data-subset 5%    a random 5% (cheap regular audits)
  mjvault verify --read-data-subset 3/7   part 3 of 7: seven runs cover everything
  mjvault verify --remote nas --read-data the copy on remote nas instead
""",
)
@click.option("--read-data", is_flag=True, help="Re-hash (and decrypt) every object.")
@click.option("--read-data-subset", metavar="SPEC", help="Re-hash a subset: 5% or n/m.")
@click.option("--remote", "remote_name", metavar="NAME", help="Check remote NAME, not the vault.")
@pass_app
def verify_command(
    app: AppContext, read_data: bool, read_data_subset: str | None, remote_name: str | None
) -> None:
    """Check that every snapshot is whole and every object is what its name says.

    Exits 3 when a problem is found; each problem names the jobs and snapshots it affects.
    """
    from mjvault.integrity.verify import verify

    vault = app.open_vault()
    with app.progress(None, "reading objects", unit="B") as bar:
        if remote_name:
            from mjvault.cli.passphrase import passphrase_source
            from mjvault.remotes.verify import verify_named_remote

            verify = partial(  # noqa: F811 - same report, read from the remote
                verify_named_remote,
                name=remote_name,
                passphrase=passphrase_source(app.passphrase_file),
            )
        report = verify(
            vault,
            read_data=read_data,
            subset=read_data_subset,
            on_object=lambda size: bar.update(size),
        )

    def human() -> None:
        mb = report.bytes_read / 1e6
        click.echo(
            f"{report.snapshots} snapshots, {report.tree_nodes} tree nodes, "
            f"{report.jobs_checked} job entries, {report.objects_referenced} references checked"
        )
        if report.objects_read:
            rate = mb / report.seconds if report.seconds else 0.0
            click.echo(f"read {report.objects_read} objects, {mb:.1f} MB ({rate:.0f} MB/s)")
        if report.ok:
            click.echo("no problems found")
            return
        click.echo(f"{len(report.problems)} problems:", err=True)
        for p in report.problems[:MAX_PROBLEMS_SHOWN]:
            affects = ""
            if p.jobs:
                affects += f" [jobs: {', '.join(p.jobs[:5])}{'…' if len(p.jobs) > 5 else ''}]"
            if p.snapshots:
                affects += f" [snapshots: {', '.join(s[:12] for s in p.snapshots[:5])}]"
            obj = f"{p.object_id[:16]}… " if p.object_id else ""
            click.echo(f"  {p.kind}: {obj}{p.message}{affects}", err=True)

    app.emit(report.to_json(), human)
    if not report.ok:
        sys.exit(EXIT_INTEGRITY)


@click.group("index")
def index_group() -> None:
    """The LMDB index: a cache of HEAD that can always be rebuilt from the objects."""


@index_group.command("rebuild")
@pass_app
def index_rebuild_command(app: AppContext) -> None:
    """Recreate the index from snapshots and objects alone."""
    vault = app.open_vault()
    head = vault.head()
    total = head.stats.get("jobs") if head else 0
    with app.progress(total, "indexing", unit="job") as bar:
        count = vault.rebuild_index(progress=bar.update)
    app.emit({"jobs_indexed": count}, lambda: click.echo(f"indexed {count} jobs"))


@index_group.command("status")
@pass_app
def index_status_command(app: AppContext) -> None:
    """Which snapshot tree the index reflects, its size and table counts."""
    vault = app.open_vault()
    index = vault.index
    head = vault.head()
    data = index.stats() | {
        "tree": index.indexed_tree(),
        "current": head is not None and index.indexed_tree() == head.tree,
    }
    app.emit(
        data,
        lambda: click.echo(
            f"{data['entries']['jobs']} jobs, {data['bytes'] / 1e6:.1f} MB, "
            f"{'current' if data['current'] else 'behind HEAD'}"
        ),
    )
