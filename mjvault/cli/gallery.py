"""``mjvault gallery``: a static HTML gallery of the vault or of a search, opened from disk."""

from __future__ import annotations

from pathlib import Path

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.find.gallery import DEFAULT_THUMB_SIZE, build_gallery


@click.command("gallery", cls=QueryCommand)
@click.argument("directory", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.argument("query", nargs=-1)
@click.option(
    "--search",
    "search_text",
    default=None,
    metavar="QUERY",
    help="Only jobs matching QUERY (as `mjvault search`).",
)
@click.option(
    "--thumb-size",
    type=click.IntRange(16, 2048),
    default=DEFAULT_THUMB_SIZE,
    show_default=True,
    help="Long side of thumbnails, in pixels.",
)
@click.option("--title", default=None, help="Title shown on the page.")
@click.option(
    "--anonymize",
    is_flag=True,
    help="Leave out image-prompt URLs (from prompts and parameters) and the vault's name.",
)
@pass_app
def gallery_command(
    app: AppContext,
    directory: Path,
    query: tuple[str, ...],
    search_text: str | None,
    thumb_size: int,
    title: str | None,
    anonymize: bool,
) -> None:
    """Write a static HTML gallery into DIRECTORY: thumbnails, search as you type, and a
    lightbox with each image's prompt, parameters and date. Open DIRECTORY/index.html in a
    browser; no server is needed. QUERY selects jobs as `mjvault search` does.

    \b
    Examples:
      mjvault gallery ~/mj-gallery
      mjvault gallery ~/foxes fox v:6 since:2024
    """
    text = query_text(query, search_text) or None
    vault = app.open_vault()
    total = vault.current_index().job_count()
    with app.progress(total if text is None else None, "gallery", unit="job") as bar:
        report = build_gallery(
            vault,
            directory,
            text,
            thumb_size=thumb_size,
            title=title,
            on_job=lambda: bar.update(1),
            anonymize=anonymize,
        )

    def human() -> None:
        click.echo(f"gallery: {report.directory / 'index.html'}")
        bare = report.jobs_without_images
        without = f" ({bare} more without images, not shown)" if bare else ""
        click.echo(
            f"  {report.jobs} jobs{without}, {report.images} images, {report.videos} videos; "
            f"thumbnails {report.thumbs_made} made, {report.thumbs_cached} cached"
        )
        click.echo(
            f"  {report.chunks} chunk files, {report.chunks_written} written"
            f" ({report.chunks - report.chunks_written} unchanged)"
        )
        if report.unreadable_count:
            click.echo(
                f"  {report.unreadable_count} images could not be read or decoded (left out)"
            )
        if report.decrypted_dir is not None:
            click.echo(
                f"  this vault is encrypted: the gallery holds DECRYPTED copies of the images it "
                f"shows ({report.decrypted_copies} written now) in {report.decrypted_dir} and "
                f"{report.directory / 'thumbs'}; delete the directory when you are done with it"
            )

    app.emit(report.to_json(), human)
