"""``mjvault export``: every job (or a search's) as CSV, JSON, JSON Lines or Parquet."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.errors import UsageError
from mjvault.find.export import EXPORT_FORMATS, count_jobs, export

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
@pass_app
def export_command(
    app: AppContext,
    query: tuple[str, ...],
    fmt: str,
    search_text: str | None,
    output: Path | None,
    anonymize: bool,
) -> None:
    """Export one row per job: id, time, type, prompt, full command, parameters, image
    object ids and view paths. QUERY selects jobs as `mjvault search` does (default: all).

    \b
    Examples:
      mjvault export --format csv -o jobs.csv
      mjvault export --format parquet -o foxes.parquet fox v:6
      mjvault export type:upscale | jq -r .prompt
    """
    text = query_text(query, search_text) or None
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
