"""``mjvault verify`` and ``mjvault index``: trust, and the cache that can always be rebuilt."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import EXIT_INTEGRITY, ExitStatus, MjvaultError, UsageError

if TYPE_CHECKING:
    from mjvault.integrity.problems import Problem
    from mjvault.integrity.verify import VerifyReport
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.vault import Vault

MAX_PROBLEMS_SHOWN = 50


@click.command(
    "verify",
    epilog="""\b
Examples:
  mjvault verify                          structure only, in seconds
  mjvault verify --read-data              rehash every object
  mjvault verify --read-data-subset 5%    a random 5% (cheap regular audits)
  mjvault verify --read-data-subset 3/7   part 3 of 7: seven runs cover everything
  mjvault verify --views                  every checkout view file still shows its object
  mjvault verify --repair --from /mnt/backup-vault --from ~/old-archive
  mjvault verify --remote nas --read-data the copy on remote nas instead
""",
)
@click.option("--read-data", is_flag=True, help="Re-hash (and decrypt) every object.")
@click.option("--read-data-subset", metavar="SPEC", help="Re-hash a subset: 5% or n/m.")
@click.option("--views", "check_views", is_flag=True, help="Also check checkout view files.")
@click.option(
    "--repair",
    is_flag=True,
    help="Quarantine damaged objects, refetch them, rebuild the index (implies --read-data).",
)
@click.option(
    "--from",
    "sources",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="With --repair: another vault, folder remote or imported archive to refetch from.",
)
@click.option(
    "--from-remote",
    "remotes",
    multiple=True,
    metavar="NAME",
    help="With --repair: a configured remote to refetch from (`mjvault remote add`).",
)
@click.option(
    "--from-midjourney",
    is_flag=True,
    help="With --repair: download damaged images again (needs `mjvault auth login`).",
)
@click.option("--wait", is_flag=True, help="With --repair: wait for a running sync to finish.")
@click.option("--remote", "remote_name", metavar="NAME", help="Check remote NAME, not the vault.")
@pass_app
def verify_command(
    app: AppContext,
    read_data: bool,
    read_data_subset: str | None,
    check_views: bool,
    repair: bool,
    sources: tuple[Path, ...],
    remotes: tuple[str, ...],
    from_midjourney: bool,
    wait: bool,
    remote_name: str | None,
) -> None:
    """Check that every snapshot is whole and every object is what its name says.

    Exits 3 when a problem is found (with --repair: when one remains); each problem names
    the jobs and snapshots it affects. --repair never deletes: damaged files go to
    quarantine/ in the vault.
    """
    from mjvault.integrity.verify import verify

    if (sources or remotes or from_midjourney or wait) and not repair:
        raise UsageError("--from, --from-remote, --from-midjourney and --wait go with --repair")
    if remote_name is not None and (repair or check_views):
        raise UsageError(
            "--remote checks the remote's copy alone",
            hint="to repair the vault from a remote, use `mjvault pull --repair`",
        )
    from mjvault.notify import Notifier, failures_notified

    vault = app.open_vault()
    # A remote that cannot be read or a repair that cannot run is notified ("verify failed"):
    # a scheduled check that fails must not do so in silence.
    notified = failures_notified(
        Notifier.from_config(app.config), vault=str(vault.path), what="verify"
    )
    if remote_name is not None:  # `--remote ''` is a bad name, not "check the vault"
        with notified:
            _verify_remote(app, vault, remote_name, read_data, read_data_subset)
        return
    if repair:
        with notified:
            _repair(
                app, vault, read_data_subset, check_views, sources, remotes, from_midjourney, wait
            )
        return
    with app.progress(None, "reading objects", unit="B") as bar:
        report = verify(
            vault,
            read_data=read_data,
            subset=read_data_subset,
            views=check_views,
            on_object=lambda size: bar.update(size),
        )

    def human() -> None:
        _print_report(report)

    app.emit(report.to_json(), human)
    _notify_problems(app, vault, report.problems)
    if not report.ok:
        raise ExitStatus(EXIT_INTEGRITY)


def _verify_remote(
    app: AppContext, vault: Vault, name: str, read_data: bool, subset: str | None
) -> None:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.verify import verify_named_remote

    with app.progress(None, "reading objects", unit="B") as bar:
        report = verify_named_remote(
            vault,
            name=name,
            passphrase=passphrase_source(app.passphrase_file),
            read_data=read_data,
            subset=subset,
            on_object=lambda size: bar.update(size),
        )
    app.emit(report.to_json(), lambda: _print_report(report))
    _notify_problems(app, vault, report.problems, where=f"in the copy on remote {name}")
    if not report.ok:
        raise ExitStatus(EXIT_INTEGRITY)


def _notify_problems(
    app: AppContext, vault: Vault, problems: list[Problem], *, where: str | None = None
) -> None:
    """A notification when verify found (or repair left) problems; nothing when none."""
    if not problems:
        return
    from mjvault.notify import Notifier

    kinds: dict[str, int] = {}
    for problem in problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    summary = "problems: " + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    if where:
        summary = f"{where}, {summary}"
    first = problems[0]
    summary += f"\nfirst: {first.kind}: {first.message}"
    Notifier.from_config(app.config).verify_finished(len(problems), summary, vault=str(vault.path))


def _print_report(report: VerifyReport) -> None:
    mb = report.bytes_read / 1e6
    click.echo(
        f"{report.snapshots} snapshots, {report.tree_nodes} tree nodes, "
        f"{report.jobs_checked} job entries, {report.objects_referenced} references checked"
    )
    if report.objects_read:
        rate = mb / report.seconds if report.seconds else 0.0
        click.echo(f"read {report.objects_read} objects, {mb:.1f} MB ({rate:.0f} MB/s)")
    if report.views is not None:
        click.echo(f"{report.views['views']} views, {report.views['files']} view files")
    if report.ok:
        click.echo("no problems found")
        return
    _print_problems(report.problems)


def _print_problems(problems: list[Problem]) -> None:
    click.echo(f"{len(problems)} problems:", err=True)
    for p in problems[:MAX_PROBLEMS_SHOWN]:
        affects = ""
        if p.jobs:
            affects += f" [jobs: {', '.join(p.jobs[:5])}{'…' if len(p.jobs) > 5 else ''}]"
        if p.snapshots:
            affects += f" [snapshots: {', '.join(s[:12] for s in p.snapshots[:5])}]"
        obj = f"{p.object_id[:16]}… " if p.object_id else ""
        if p.pack and p.object_id:
            affects += f" [in pack {p.pack[:12]}]"
        click.echo(f"  {p.kind}: {obj}{p.message}{affects}", err=True)


def _repair(
    app: AppContext,
    vault: Vault,
    subset: str | None,
    check_views: bool,
    sources: tuple[Path, ...],
    remotes: tuple[str, ...],
    from_midjourney: bool,
    wait: bool,
) -> None:
    from mjvault.integrity.repair import repair
    from mjvault.remotes.repair import remote_source

    client = _midjourney_client(app) if from_midjourney else None
    with contextlib.ExitStack() as stack:
        if client is not None:
            stack.callback(client.close)
        links = [stack.enter_context(_connect_remote(app, vault, name)) for name in remotes]
        with app.progress(None, "reading objects", unit="B") as bar:
            report = repair(
                vault,
                sources=list(sources),
                fetchers=[remote_source(link) for link in links],
                midjourney=client,
                read_data=True,
                subset=subset,
                wait=math.inf if wait else None,
                on_object=lambda size: bar.update(size),
            )
    views_report = None
    if check_views:
        from mjvault.integrity.viewcheck import verify_views

        views_report = verify_views(vault)
    data = report.to_json()
    if views_report is not None:
        data["views"] = views_report.to_json() | {
            "problems": [p.to_json() for p in views_report.problems]
        }

    def human() -> None:
        before = report.before
        click.echo(
            f"checked {before.snapshots} snapshots, {before.objects_read} objects; "
            f"{len(before.problems)} problems found"
        )
        for action in report.repaired:
            moved = " (damaged file quarantined)" if action.quarantined else ""
            click.echo(f"  repaired {action.object_id[:16]}… from {action.source}{moved}")
        for action in report.unrepaired:
            where = f"; damaged file in {action.quarantined}" if action.quarantined else ""
            jobs = f" [jobs: {', '.join(action.jobs[:5])}]" if action.jobs else ""
            click.echo(
                f"  NOT repaired {action.problem} {action.object_id[:16]}…: "
                f"{action.reason}{where}{jobs}",
                err=True,
            )
        for pack in report.packs:
            click.echo(
                f"  damaged pack {pack.pack[:16]}… quarantined to {pack.quarantined} "
                f"({pack.restored} good objects stored anew, {pack.damaged} damaged)"
            )
        if report.index_rebuilt:
            click.echo("index rebuilt")
        for note in report.notes:
            click.echo(f"  note: {note}", err=True)
        if report.ok:
            click.echo("the vault is whole")
        else:
            _print_problems(report.remaining)
        if views_report is not None and views_report.problems:
            click.echo("view files (run `mjvault checkout` to refresh views):", err=True)
            _print_problems(views_report.problems)

    app.emit(data, human)
    left = list(report.remaining) + (views_report.problems if views_report is not None else [])
    _notify_problems(app, vault, left, where="left after --repair")
    if not report.ok or (views_report is not None and views_report.problems):
        raise ExitStatus(EXIT_INTEGRITY)


def _connect_remote(app: AppContext, vault: Vault, name: str) -> Any:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.config import load_spec
    from mjvault.remotes.session import connect

    return connect(
        vault, load_spec(vault.path, name), passphrase=passphrase_source(app.passphrase_file)
    )


def _midjourney_client(app: AppContext) -> MidjourneyClient | None:
    """A client from the configuration as a sync builds it (config files, environment,
    ``source.cookies_from_browser``, the saved login), or None (with a note) if none works."""
    from mjvault.cli.source_options import SourceOptions
    from mjvault.sources.midjourney import MidjourneyClient

    try:
        return MidjourneyClient(SourceOptions().settings_for(app))
    except MjvaultError as exc:
        click.echo(f"mjvault: Midjourney refetch is off: {exc}", err=True)
        return None


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
    # As it is: current_index() would catch it up first and the answer would always be
    # "current". An index of an older format has no tree (it is rebuilt when next read).
    index = vault.open_index()
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
