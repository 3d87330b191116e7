"""``mjvault export``: every job (or a search's) as CSV, JSON, JSON Lines or Parquet; with
``--images DIR``, converted copies of their images."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.errors import EXIT_PARTIAL, ExitStatus, UsageError
from mjvault.find.export import EXPORT_FORMATS, count_jobs, export
from mjvault.find.export_all import ARCHIVER_STEM, DEFAULT_STEM
from mjvault.find.export_images import DEFAULT_QUALITY, IMAGE_FORMATS
from mjvault.views.template import DEFAULT_TEMPLATE

if TYPE_CHECKING:
    from mjvault.vault import Vault


@click.command("export", cls=QueryCommand)
@click.argument("query", nargs=-1)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS + IMAGE_FORMATS),
    default=None,
    help="The records' format (csv, json, jsonl, parquet; default jsonl) or, with --images, "
    "the images' (webp, avif, jpeg, png; default webp).",
)
@click.option(
    "--search",
    "search_text",
    default=None,
    metavar="QUERY",
    help="Only jobs matching QUERY (as `mjvault search`).",
)
@click.option(
    "-o",
    "--output",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (default stdout; required for parquet).",
)
@click.option(
    "--anonymize",
    is_flag=True,
    help="Without usernames, image-prompt URLs (in prompts, commands, parameters) or view paths.",
)
@click.option(
    "--all",
    "all_dir",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Everything instead, into DIR: every record and image as stored, the snapshots, the "
    "settings and a manifest with checksums. Run again, it writes only what is missing.",
)
@click.option(
    "--images",
    "images_dir",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Converted copies of the matching jobs' images into DIR (the vault is only read). "
    "Run again, it skips files already written with the same settings (DIR/"
    ".mjvault-images.sqlite remembers each file's image, settings, size and time).",
)
@click.option(
    "--quality",
    default=None,
    metavar="Q",
    help=f"With --images: encoder quality, 1-100 (default {DEFAULT_QUALITY}; PNG is lossless).",
)
@click.option(
    "--max-size",
    default=None,
    metavar="PX",
    help="With --images: at most PX pixels on the long side (never enlarged).",
)
@click.option(
    "--embed-metadata",
    is_flag=True,
    help="With --images: prompt and parameters inside each file (PNG text, XMP, EXIF).",
)
@click.option(
    "--optimize",
    is_flag=True,
    help="With --images: smaller files for more time (JPEG optimize+progressive, WebP "
    "method 6, AVIF speed 4, PNG level 9).",
)
@click.option(
    "--template",
    default=None,
    metavar="TEMPLATE",
    help=f"With --all: where a job's files go under DIR/jobs (default {DEFAULT_STEM!r}; "
    f"the archiver's layout: {ARCHIVER_STEM!r}). With --images: each image's name, a view "
    f"template holding {{job_id}} and {{index}} (default {DEFAULT_TEMPLATE!r}).",
)
@json_option
@pass_app
def export_command(
    app: AppContext,
    query: tuple[str, ...],
    fmt: str,
    search_text: str | None,
    output: Path | None,
    anonymize: bool,
    all_dir: Path | None,
    images_dir: Path | None,
    quality: str | None,
    max_size: str | None,
    embed_metadata: bool,
    optimize: bool,
    template: str | None,
) -> None:
    """Export one row per job: id, time, type, prompt, full command, parameters, image
    object ids and view paths. QUERY selects jobs as `mjvault search` does (default: all).
    With --images DIR: a converted, resized copy of each of their images instead (an image
    the format cannot hold, such as a WebP over 16383 px, is named and the exit code is 4).

    \b
    Examples:
      mjvault export --format csv -o jobs.csv
      mjvault export --format parquet -o foxes.parquet fox v:6
      mjvault export type:upscale | jq -r .prompt
      mjvault export --all ~/mj-takeout
      mjvault export --images ~/mj-webp --format webp --max-size 2048 --embed-metadata
      mjvault export --images ~/mj-jpeg fox v:6 --format jpeg --quality 90 \\
          --template '{date:%Y-%m}/{job_id}_{index}.{ext}'
    """
    text = query_text(query, search_text) or None
    image_options = quality is not None or max_size is not None or embed_metadata or optimize
    if images_dir is not None:
        if all_dir is not None or output is not None or anonymize:
            raise UsageError("--images writes image files: no --all, -o or --anonymize")
        _export_images(
            app, images_dir, text, fmt, quality, max_size, embed_metadata, optimize, template
        )
        return
    if image_options:
        raise UsageError("--quality, --max-size, --embed-metadata and --optimize go with --images")
    if fmt in IMAGE_FORMATS:
        raise UsageError(f"--format {fmt} is an image format: give --images DIR")
    fmt = fmt or "jsonl"
    if all_dir is not None:
        if text or output is not None or fmt != "jsonl":
            raise UsageError("--all exports everything: no QUERY, --search, -o or --format")
        _export_all(app, all_dir, template or DEFAULT_STEM, anonymize)
        return
    if template is not None:
        raise UsageError("--template goes with --all or --images")
    if fmt == "parquet" and output is None:
        raise UsageError("Parquet is a binary file format: give -o FILE")
    if output is not None:
        check_output_file(output, "the export")
    vault = app.open_vault()
    total = count_jobs(vault, text)
    with app.progress(total, "export", unit="job") as bar:
        if output is None:
            rows = export(
                vault,
                sys.stdout.buffer,
                fmt,
                text,
                on_row=lambda: bar.update(1),
                anonymize=anonymize,
            )
            sys.stdout.buffer.flush()
        else:
            # A link is written through, not replaced by a file of its own.
            target = Path(os.path.realpath(output)) if output.is_symlink() else output
            if target.exists() and not target.is_file():
                # A pipe or device (/dev/stdout, a FIFO): written in place; renaming a file
                # over it would replace the device itself.
                with open(target, "wb") as out:
                    rows = export(
                        vault, out, fmt, text, on_row=lambda: bar.update(1), anonymize=anonymize
                    )
            else:
                rows = _export_to_file(
                    vault, target, fmt, text, on_row=lambda: bar.update(1), anonymize=anonymize
                )
    app.info(f"exported {rows} job{'s' if rows != 1 else ''}" + (f" to {output}" if output else ""))


def _export_to_file(vault: Vault, target: Path, fmt: str, text: str | None, **kw: Any) -> int:
    # Written beside the target and renamed into place: a failed export leaves no
    # half-written file under the name the user asked for.
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as out:
            rows = export(vault, out, fmt, text, **kw)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _export_all(app: AppContext, directory: Path, template: str, anonymize: bool) -> None:
    from mjvault.find.export_all import export_all, stem_template

    stem_template(template)  # a bad template is one line before the vault is opened
    vault = app.open_vault()
    with app.progress(vault.current_index().job_count(), "export", unit="job") as bar:
        report = export_all(
            vault,
            directory,
            config=app.config,
            template=template,
            anonymize=anonymize,
            on_job=lambda: bar.update(1),
        )

    def human() -> None:
        click.echo(f"exported {report.jobs} jobs to {report.directory}")
        click.echo(
            f"  records: {report.records_written} written, {report.records_kept} already there"
        )
        click.echo(
            f"  images: {report.images_written} written, {report.images_kept} already there, "
            f"{report.images_missing} missing in the vault ({report.bytes_written / 1e6:.1f} MB "
            "written)"
        )
        where = shlex.quote(str(report.directory))
        click.echo(f"  check with: cd {where} && sha256sum -c --quiet SHA256SUMS")
        if vault.encrypted:
            click.echo(
                "  this vault is encrypted: the export is plaintext (files readable by you alone)"
            )
        for problem in report.problems:
            click.echo(f"  {problem}", err=True)

    app.emit(report.to_json(), human)
    if report.problem_count:
        raise ExitStatus(EXIT_PARTIAL)


def _whole_number(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: give a whole number") from None


def _export_images(
    app: AppContext,
    directory: Path,
    text: str | None,
    fmt: str | None,
    quality_text: str | None,
    max_size_text: str | None,
    embed: bool,
    optimize: bool,
    template: str | None,
) -> None:
    from mjvault.find.export_images import (
        DEFAULT_IMAGE_TEMPLATE,
        ImageSettings,
        export_images,
        image_template,
    )

    if fmt is not None and fmt not in IMAGE_FORMATS:
        raise UsageError(
            f"--format {fmt} is a records' format; with --images: {', '.join(IMAGE_FORMATS)}"
        )
    quality = _whole_number("--quality", quality_text)
    settings = ImageSettings(
        fmt=fmt or "webp",
        quality=DEFAULT_QUALITY if quality is None else quality,
        max_size=_whole_number("--max-size", max_size_text),
        embed=embed,
        optimize=optimize,
    )
    template = template or DEFAULT_IMAGE_TEMPLATE
    image_template(template)  # a bad template is one line before the vault is opened
    vault = app.open_vault()
    with app.progress(None, "export", unit="image") as bar:
        report = export_images(
            vault,
            directory,
            settings,
            query=text,
            template=template,
            on_image=lambda: bar.update(1),
        )

    def human() -> None:
        click.echo(
            f"exported the images of {report.jobs} jobs to {report.directory} "
            f"({settings.fmt}, {report.bytes_written / 1e6:.1f} MB written)"
        )
        click.echo(
            f"  images: {report.images_written} written, {report.images_kept} already there, "
            f"{report.images_missing} missing in the vault, {report.not_images} not images"
        )
        if vault.encrypted:
            click.echo(
                "  this vault is encrypted: the copies are plaintext (files readable by you alone)"
            )
        for problem in report.problems:
            click.echo(f"  {problem}", err=True)

    app.emit(report.to_json(), human)
    if report.problem_count:
        raise ExitStatus(EXIT_PARTIAL)
