"""``mjvault checkout``: directory views of the vault's images, laid out by templates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath
from mjvault.errors import EXIT_PARTIAL, ExitStatus, UsageError

if TYPE_CHECKING:
    from mjvault.views.reconcile import RefreshReport, ViewsReport
    from mjvault.views.registry import ViewDefinition, ViewRegistry

MAX_PATHS_SHOWN = 10
LINK_CHOICES = ["symlink", "hardlink", "reflink", "copy"]
_ASPECT_RATIO = re.compile(r"0*[1-9][0-9]{0,4}:0*[1-9][0-9]{0,4}")


@click.command(
    "checkout",
    epilog="""\b
Examples:
  mjvault checkout ~/Pictures/mj
  mjvault checkout ~/Pictures/mj-v6 --version 6 --ar 16:9 --template '{ar}/{prompt:80}_{index}.{ext}'
  mjvault checkout ~/Pictures/foxes --search fox --since 2024-01-01 --link copy --embed-metadata
  mjvault checkout ~/Pictures/last-year --snapshot 3fa9c2
  mjvault checkout                        refresh every view
  mjvault checkout --list
  mjvault checkout --remove foxes         remove a view's files (never yours) and forget it

\b
Template fields: {job_id} {index} {ext} {type} {job_type} {date:%Y/%m} {prompt:60}
  {username} {width} {height} {ar} {version} {niji} {style} {stylize} {chaos} {quality}
  {weird} {seed} … and {param:NAME}; a missing value renders "none" ({style:default}
  renders "default"). See docs/usage.md, "Checkout views".
""",
)
@click.argument("directory", required=False, type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option("--template", "-t", help="Path template (default: the view's, else a dated tree).")
@click.option(
    "--link",
    type=click.Choice(LINK_CHOICES, case_sensitive=False),
    help="How files show images (default symlink; always copy in an encrypted vault).",
)
@click.option("--name", help="The view's name (default: DIR's name).")
@click.option("--type", "types", multiple=True, help="Only jobs of this type (repeatable).")
@click.option("--since", metavar="DATE", help="Only jobs enqueued on or after DATE.")
@click.option("--until", metavar="DATE", help="Only jobs enqueued on or before DATE.")
@click.option("--search", metavar="WORDS", help="Only jobs whose prompt has all WORDS.")
@click.option("--ar", metavar="W:H", help="Only jobs with this aspect ratio.")
@click.option("--version", "version", metavar="V", help="Only this model version (6 takes 6.x).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Only jobs with this parameter."
)
@click.option(
    "--snapshot",
    metavar="ID",
    help="Show this snapshot, not the newest, for good ('latest' follows the newest again).",
)
@click.option(
    "--no-auto-refresh", is_flag=True, help="A sync does not refresh this view when it ends."
)
@click.option(
    "--embed-metadata", is_flag=True, help="Copies carry prompt and parameters in the image."
)
@click.option(
    "--private/--no-private",
    default=None,
    help="Files 0600 and folders 0700 (default in an encrypted vault: its views are plaintext).",
)
@click.option("--list", "list_views_flag", is_flag=True, help="List the views of this vault.")
@click.option("--remove", "remove_name", metavar="NAME", help="Remove a view and its files.")
@pass_app
def checkout_command(
    app: AppContext,
    directory: Path | None,
    template: str | None,
    link: str | None,
    name: str | None,
    types: tuple[str, ...],
    since: str | None,
    until: str | None,
    search: str | None,
    ar: str | None,
    version: str | None,
    params: tuple[str, ...],
    snapshot: str | None,
    no_auto_refresh: bool,
    embed_metadata: bool,
    private: bool | None,
    list_views_flag: bool,
    remove_name: str | None,
) -> None:
    """Materialise a view of the vault's images in DIR, or refresh every view.

    Each image becomes one file under DIR, named by the template. A view is remembered in the
    vault: running `mjvault checkout` again (or a sync) adds new images and removes the files
    of jobs that left, touching nothing else. Files you put in DIR are never changed or
    removed; one in the way of an image is reported and skipped.
    """
    from mjvault.views import reconcile
    from mjvault.views.registry import ViewRegistry

    # An empty value is a typo to refuse, not an option left out (`--remove ''` once
    # refreshed every view).
    texts = {
        "--template": template,
        "--name": name,
        "--since": since,
        "--until": until,
        "--search": search,
        "--ar": ar,
        "--version": version,
        "--snapshot": snapshot,
        "--remove": remove_name,
    }
    for option, value in texts.items():
        if value is not None and not value.strip():
            raise UsageError(f"{option} was given an empty value")
    defining = any(
        [template, link, name, types, since, until, search, ar, version, params, snapshot]
    ) or (no_auto_refresh or embed_metadata or private is not None)
    if ar is not None and not _ASPECT_RATIO.fullmatch(ar):
        raise UsageError(f"--ar {ar!r} is not an aspect ratio like 16:9")
    if list_views_flag or remove_name:
        if directory is not None or defining or (list_views_flag and remove_name):
            raise UsageError("--list and --remove take no other arguments")
    elif defining and directory is None:
        raise UsageError("view options need a DIR", hint="mjvault checkout DIR --template …")

    vault = app.open_vault()
    if list_views_flag:
        views = ViewRegistry(vault).summaries()
        app.emit(views, lambda: _print_views(views))
        return
    if remove_name:
        report = reconcile.remove_view(vault, remove_name)
        app.emit(report.to_json(), lambda: _print_report(report))
        return

    with app.progress(None, "checkout", unit="job") as bar:
        if directory is None:
            result = reconcile.refresh_views(
                vault, progress=bar.update, on_total=lambda total: _restart(bar, total)
            )
            app.emit(result.to_json(), lambda: _print_all(result))
            if result.errors:
                raise ExitStatus(EXIT_PARTIAL)
            return
        registry = ViewRegistry(vault)
        definition = _definition(
            registry,
            vault.encrypted,
            directory,
            template=template,
            link=link,
            name=name,
            filter_options={
                "types": types,
                "since": since,
                "until": until,
                "search": search,
                "ar": ar,
                "version": version,
                "params": params,
            },
            snapshot=snapshot,
            no_auto_refresh=no_auto_refresh,
            embed_metadata=embed_metadata,
            private=private,
        )
        report = reconcile.checkout(
            vault, definition, progress=bar.update, on_total=lambda total: _restart(bar, total)
        )
    app.emit(report.to_json(), lambda: _print_report(report))


def _restart(bar: Any, total: int) -> None:
    """A full pass knows how many jobs it will visit: show a bar with an end."""
    bar.reset(total=total)


def _definition(
    registry: ViewRegistry,
    encrypted: bool,
    directory: Path,
    *,
    template: str | None,
    link: str | None,
    name: str | None,
    filter_options: dict[str, Any],
    snapshot: str | None,
    no_auto_refresh: bool,
    embed_metadata: bool,
    private: bool | None = None,
) -> ViewDefinition:
    """The new definition: the existing view's for DIR, with only the given options changed."""
    from mjvault.views.filters import ViewFilter
    from mjvault.views.links import LinkKind, parse_link_kind
    from mjvault.views.registry import ViewDefinition, check_name
    from mjvault.views.template import DEFAULT_TEMPLATE

    resolved = directory.expanduser().resolve()
    existing = registry.find_by_directory(resolved)
    if existing is not None and name is not None and name != existing.name:
        raise UsageError(f"{resolved} is already the view {existing.name!r}")
    base = existing.definition if existing is not None else None
    view_filter = base.filter if base is not None else ViewFilter()
    if _any_filter(filter_options):
        view_filter = ViewFilter.build(
            types=tuple(filter_options["types"]),
            since=filter_options["since"],
            until=filter_options["until"],
            search=filter_options["search"],
            params=_param_filters(filter_options),
        )
    default_link = LinkKind.COPY if encrypted else LinkKind.SYMLINK
    if snapshot in ("latest", "HEAD"):
        pinned = None  # follow the newest snapshot again
    else:
        pinned = snapshot or (base.snapshot if base else None)
    return ViewDefinition(
        name=check_name(name or (base.name if base else registry.free_name(resolved))),
        directory=resolved,
        template=template or (base.template if base else DEFAULT_TEMPLATE),
        link=parse_link_kind(link) if link else (base.link if base else default_link),
        filter=view_filter,
        snapshot=pinned,
        auto_refresh=not no_auto_refresh and (base.auto_refresh if base else True),
        embed_metadata=embed_metadata or (base.embed_metadata if base else False),
        private=private if private is not None else (base.private if base else None),
    )


def _any_filter(options: dict[str, Any]) -> bool:
    return any(bool(v) for v in options.values())


def _param_filters(options: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in options["params"]:
        param_name, equals, value = str(item).partition("=")
        if not equals or not param_name.strip():
            raise UsageError(f"--param {item!r} is not NAME=VALUE")
        result[param_name.strip().lstrip("-")] = value
    if options["ar"]:
        result["ar"] = str(options["ar"])
    if options["version"]:
        result["version"] = str(options["version"])
    return result


# -- human output ------------------------------------------------------------------------------


def _print_report(report: RefreshReport) -> None:
    if report.mode == "removed":
        click.echo(f"view {report.view}: removed {report.removed} files from {report.directory}")
    elif report.mode == "up-to-date":
        click.echo(f"view {report.view}: up to date ({report.unchanged} files)")
    else:
        click.echo(
            f"view {report.view} ({report.link}, {report.mode}) in {report.directory}: "
            f"{report.added} added, {report.removed} removed, {report.updated} updated, "
            f"{report.unchanged} unchanged"
            + (f", {report.skipped} images not in the vault" if report.skipped else "")
            + (f", {report.adopted} adopted from an interrupted run" if report.adopted else "")
        )
    for note in report.notes[:MAX_PATHS_SHOWN]:
        click.echo(f"  note: {note}", err=True)
    if report.conflicts:
        click.echo(
            f"  {report.conflicts} images skipped: a file that is not the view's is in the way",
            err=True,
        )
        for path in report.conflict_paths[:MAX_PATHS_SHOWN]:
            click.echo(f"    {path}", err=True)
    if report.kept:
        click.echo(f"  {report.kept} files changed by you were left in place:", err=True)
        for path in report.kept_paths[:MAX_PATHS_SHOWN]:
            click.echo(f"    {path}", err=True)


def _print_all(result: ViewsReport) -> None:
    if not result.views and not result.errors:
        click.echo("no views yet: create one with `mjvault checkout DIR`")
    for report in result.views:
        _print_report(report)
    for view_name, error in result.errors.items():
        click.echo(f"view {view_name}: error: {error}", err=True)


def _print_views(views: list[dict[str, object]]) -> None:
    if not views:
        click.echo("no views yet: create one with `mjvault checkout DIR`")
    for view in views:
        if "error" in view:
            click.echo(f"{view['name']}: error: {view['error']}")
            continue
        pinned = f" snapshot {str(view['snapshot'])[:12]}" if view.get("snapshot") else ""
        auto = "" if view.get("auto_refresh") else " (no auto-refresh)"
        click.echo(
            f"{view['name']}: {view['directory']} [{view['link']}] {view['files']} files"
            f"{pinned}{auto}\n  {view['template']}"
        )
