"""``mjvault thumbs``: make the thumbnails an existing vault's images lack."""

from __future__ import annotations

import click

from mjvault.cli.context import AppContext, pass_app


@click.command(
    "thumbs",
    epilog="""\b
Examples:
  mjvault thumbs
  mjvault thumbs --size s --json
""",
)
@click.option(
    "--size",
    "sizes",
    default="s,m",
    show_default=True,
    metavar="SIZES",
    help="Which thumbnails: s (256 px), m (768 px), comma-separated.",
)
@pass_app
def thumbs_command(app: AppContext, sizes: str) -> None:
    """Make the missing thumbnails of HEAD's images, for `mjvault serve`.

    Sync and import make them as they store images; this makes those of images stored
    before, or by a run told not to. Each is made once and kept in the vault (sealed in an
    encrypted one). Interrupted, it keeps what it made: run it again to go on.
    """
    from mjvault.thumbnails import SIZES, backfill, parse_sizes

    chosen = parse_sizes(sizes)
    vault = app.open_vault()
    head = vault.head()
    total = head.stats.get("images") if head else 0
    with app.progress(total, "thumbnails", unit="image") as bar:
        seen = 0

        def progress(done: int, _total: int | None) -> None:
            nonlocal seen
            bar.update(done - seen)
            seen = done

        report = backfill(vault, chosen, progress)

    def human() -> None:
        names = ", ".join(f"{s} ({SIZES[s]} px)" for s in report.sizes)
        click.echo(
            f"thumbnails {names}: {report.made} made, {report.cached} already there"
            + (f", {report.not_images} videos or undecodable" if report.not_images else "")
            + (f", {report.unreadable} images unreadable" if report.unreadable else "")
        )

    app.emit(report.to_json(), human)
