"""``mjvault import``: bring in folders written by earlier archivers."""

from __future__ import annotations

from pathlib import Path

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import EXIT_PARTIAL, ExitStatus, MjvaultError

MAX_PROBLEMS_SHOWN = 20


@click.command(
    "import",
    epilog="""\b
Examples:
  mjvault import ~/midjourney-archive
  mjvault --json import ~/midjourney-archive > report.json
""",
)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--no-thumbnails",
    is_flag=True,
    help="Do not make the images' thumbnails and perceptual hashes now (`mjvault thumbs` makes them later).",
)
@pass_app
def import_command(app: AppContext, directory: Path, no_thumbnails: bool) -> None:
    """Import an archive written by the original midjourney-archiver scripts.

    Reads YYYY/YYYY-MM/YYYY-MM-DD/<stamp>_<job_id>.json records with their images and
    .prompt.txt files. Lossless and idempotent: importing twice adds nothing, and files
    unchanged since the last import (same size, times and inode) are not read again. Files that
    cannot be imported are listed at the end (exit code 4) and never stop the rest; images
    the folder never had are counted as missing (exit code 0: `mjvault sync` can fetch them).
    A folder without a single record is an error (exit code 1).
    """
    from mjvault.sources.importer import count_records, import_archive

    vault = app.open_vault()
    total = count_records(directory) if app.progress_enabled and not app.json_output else None
    with app.progress(total, "importing", unit="job") as bar:
        report = import_archive(
            vault, directory, on_job=lambda: bar.update(1), thumbnails=not no_thumbnails
        )
    if report.records_found == 0:
        # Most likely the wrong folder: succeeding quietly would hide that nothing was imported.
        raise MjvaultError(
            f"no archiver records in {directory}",
            hint="expected YYYY/YYYY-MM/YYYY-MM-DD/<stamp>_<job_id>.json files",
        )

    def human() -> None:
        s = report.stats
        click.echo(
            f"{report.jobs_seen} jobs: {s.jobs_new} new, {s.jobs_updated} updated, "
            f"{s.jobs_unchanged} unchanged; {report.images_seen} images: {s.media_new} stored, "
            f"{s.media_deduplicated} already held; {report.images_missing} missing"
        )
        if report.images_missing:
            click.echo(
                f"{report.images_missing} images missing: the folder has no image file for them "
                "(`mjvault sync` can fetch them from Midjourney)"
            )
        if report.records_unchanged or report.images_unchanged:
            click.echo(
                f"{report.records_unchanged} records and {report.images_unchanged} images "
                "unchanged since the last import: not read again"
            )
        if report.records_repeated:
            click.echo(f"{report.records_repeated} records were copies of one already read")
        if report.jobs_forgotten:
            click.echo(f"{report.jobs_forgotten} forgotten jobs skipped")
        left = report.stats.extra.get("thumbnails_left", 0)
        if left:
            click.echo(f"{left} images' thumbnails left for later: `mjvault thumbs` makes them")
        click.echo(
            f"snapshot {report.snapshot[:12]}"
            if report.snapshot
            else "nothing changed: no snapshot"
        )
        if report.jobs_malformed:
            click.echo(
                f"{report.jobs_malformed} malformed records: imported as they are, with their "
                "claims bounded",
                err=True,
            )
        if report.problems:
            click.echo(f"{len(report.problems)} files were not imported:", err=True)
            for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
                click.echo(f"  {problem.path}: {problem.reason}", err=True)
            if len(report.problems) > MAX_PROBLEMS_SHOWN:
                click.echo(
                    f"  … and {len(report.problems) - MAX_PROBLEMS_SHOWN} more (--json lists all)",
                    err=True,
                )

    from mjvault.cli.pack import pack_after_write

    data = report.to_json()
    packed = pack_after_write(app, vault, data)

    def human_and_packing() -> None:
        human()
        if packed:
            click.echo(packed)

    app.emit(data, human_and_packing)
    if report.problems or report.jobs_malformed:
        raise ExitStatus(EXIT_PARTIAL)
