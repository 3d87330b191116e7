"""``mjvault export``: every job (or a search's) as CSV, JSON, JSON Lines or Parquet."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.errors import EXIT_PARTIAL, UsageError
from mjvault.find.export import EXPORT_FORMATS, count_jobs, export
from mjvault.find.export_all import ARCHIVER_STEM, DEFAULT_STEM

if TYPE_CHECKING:
    from mjvault.vault import Vault


@click.command("export", cls=QueryCommand)
@click.argument("query", nargs=-1)
@click.option(
    "-f", "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True
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
    "--template",
    default=None,
    metavar="TEMPLATE",
    help=f"With --all: where a job's files go under DIR/jobs (default {DEFAULT_STEM!r}; "
    f"the archiver's layout: {ARCHIVER_STEM!r}).",
)
@pass_app
def export_command(
    app: AppContext,
    query: tuple[str, ...],
    fmt: str,
    search_text: str | None,
    output: Path | None,
    anonymize: bool,
    all_dir: Path | None,
    template: str | None,
) -> None:
    """Export one row per job: id, time, type, prompt, full command, parameters, image
    object ids and view paths. QUERY selects jobs as `mjvault search` does (default: all).

    \b
    Examples:
      mjvault export --format csv -o jobs.csv
      mjvault export --format parquet -o foxes.parquet fox v:6
      mjvault export type:upscale | jq -r .prompt
      mjvault export --all ~/mj-takeout
    """
    text = query_text(query, search_text) or None
    if all_dir is not None:
        if text or output is not None or fmt != "jsonl":
            raise UsageError("--all exports everything: no QUERY, --search, -o or --format")
        _export_all(app, all_dir, template or DEFAULT_STEM, anonymize)
        return
    if template is not None:
        raise UsageError("--template goes with --all")
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
    with app.progress(vault.index.job_count(), "export", unit="job") as bar:
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
        sys.exit(EXIT_PARTIAL)
