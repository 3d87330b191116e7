"""``mjvault thumbs``: make the thumbnails and perceptual hashes an existing vault's images
lack (one decode makes both: a command of its own for the hashes would decode every image a
second time)."""

from __future__ import annotations

import click

from mjvault.cli.context import AppContext, pass_app


@click.command(
    "thumbs",
    epilog="""\b
Examples:
  mjvault thumbs
  mjvault thumbs --size s --json
  mjvault thumbs --hashes-only
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
@click.option(
    "--hashes-only",
    is_flag=True,
    help="Make only the perceptual hashes (for `similar` and `dupes`), no thumbnails.",
)
@click.option(
    "--no-hashes", is_flag=True, help="Make only the thumbnails, not the perceptual hashes."
)
@pass_app
def thumbs_command(app: AppContext, sizes: str, hashes_only: bool, no_hashes: bool) -> None:
    """Make the missing thumbnails and perceptual hashes of HEAD's images, for `mjvault
    serve`, `similar` and `dupes`.

    Sync and import make them as they store images; this makes those of images stored
    before, or by a run told not to. Each is made once and kept in the vault (sealed in an
    encrypted one). Interrupted, it keeps what it made: run it again to go on.
    """
    from mjvault.errors import UsageError
    from mjvault.thumbnails import SIZES, backfill, parse_sizes

    if hashes_only and no_hashes:
        raise UsageError("--hashes-only and --no-hashes exclude each other")
    chosen = [] if hashes_only else parse_sizes(sizes)
    vault = app.open_vault()
    head = vault.head()
    total = head.stats.get("images") if head else 0
    label = "hashes" if hashes_only else "thumbnails"
    with app.progress(total, label, unit="image") as bar:
        seen = 0

        def progress(done: int, _total: int | None) -> None:
            nonlocal seen
            bar.update(done - seen)
            seen = done

        report = backfill(vault, chosen, progress, hashes=not no_hashes)

    def human() -> None:
        names = ", ".join(f"{s} ({SIZES[s]} px)" for s in report.sizes)
        if report.sizes:
            click.echo(
                f"thumbnails {names}: {report.made} made, {report.cached} already there"
                + (f", {report.not_images} videos or undecodable" if report.not_images else "")
                + (f", {report.unreadable} images unreadable" if report.unreadable else "")
            )
        if report.hashes:
            click.echo(
                f"perceptual hashes: {report.hashed} images hashed, "
                f"{report.hashes_cached} already there"
            )

    app.emit(report.to_json(), human)
