"""``mjvault collection``: named sets of jobs kept in the vault (mjvault/collections.py)."""

from __future__ import annotations

from collections.abc import Iterator

import click

from mjvault.cli.context import AppContext, pass_app


@click.group("collection")
def collection_group() -> None:
    """Named sets of jobs kept in the vault: list, show, add, remove, delete.

    A collection is part of the vault's snapshots: every change writes a new snapshot,
    a push carries it, a pull or clone brings it, and forgetting a job takes it out.
    """


@collection_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """List the collections and how many jobs each holds."""
    from mjvault.collections import list_collections

    found = list_collections(app.open_vault())

    def human() -> None:
        if not found:
            click.echo("no collections (`mjvault collection add NAME JOB_ID…` makes one)")
        for collection in found:
            click.echo(f"{collection.name}\t{collection.jobs} jobs")

    app.emit({"collections": [c.to_json() for c in found]}, human)


@collection_group.command("show")
@click.argument("name")
@pass_app
def show_command(app: AppContext, name: str) -> None:
    """List the job ids of collection NAME (sorted)."""
    from mjvault.collections import members

    vault = app.open_vault()
    if app.json_output:
        app.emit({"name": name, "jobs": list(members(vault, name))})
        return
    for job_id in members(vault, name):
        click.echo(job_id)


@collection_group.command("add")
@click.argument("name")
@click.argument("job_ids", nargs=-1)
@click.option("--search", "query", default=None, metavar="QUERY", help="Add every job QUERY finds.")
@pass_app
def add_command(app: AppContext, name: str, job_ids: tuple[str, ...], query: str | None) -> None:
    """Add jobs (ids or unique prefixes, or those a --search finds) to collection NAME,
    which is made if new."""
    from mjvault.collections import change, check_name
    from mjvault.errors import UsageError

    check_name(name)
    if not job_ids and query is None:
        raise UsageError("name the jobs to add, or give --search QUERY")
    vault = app.open_vault()
    ids = [vault.find_job(j).job_id for j in job_ids]
    collection = change(vault, name, add=_chain(ids, _found(vault, query)))
    _done(app, collection.name, collection.jobs)


@collection_group.command("remove")
@click.argument("name")
@click.argument("job_ids", nargs=-1)
@click.option(
    "--search", "query", default=None, metavar="QUERY", help="Remove every job QUERY finds."
)
@pass_app
def remove_command(app: AppContext, name: str, job_ids: tuple[str, ...], query: str | None) -> None:
    """Take jobs out of collection NAME (it stays, even empty, until deleted)."""
    from mjvault.collections import change, get

    vault = app.open_vault()
    get(vault, name)  # an unknown name is refused, not made empty
    collection = change(vault, name, remove=_chain(list(job_ids), _found(vault, query)))
    _done(app, collection.name, collection.jobs)


@collection_group.command("delete")
@click.argument("name")
@pass_app
def delete_command(app: AppContext, name: str) -> None:
    """Delete collection NAME (its jobs stay in the vault)."""
    from mjvault.collections import delete
    from mjvault.errors import MjvaultError

    if not delete(app.open_vault(), name):
        raise MjvaultError(f"no collection {name!r}")
    app.emit({"name": name, "deleted": True}, lambda: click.echo(f"collection {name} deleted"))


def _found(vault: object, query: str | None) -> Iterator[str]:
    if query is None:
        return iter(())
    from mjvault.index.query import parse_query
    from mjvault.index.search import iter_search
    from mjvault.vault import Vault

    assert isinstance(vault, Vault)
    return iter_search(vault.current_index(), parse_query(query))


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _done(app: AppContext, name: str, jobs: int) -> None:
    app.emit({"name": name, "jobs": jobs}, lambda: click.echo(f"collection {name}: {jobs} jobs"))
