"""``mjvault report``: the insights as one self-contained HTML page, or a PDF, PNG or SVG."""

from __future__ import annotations

from pathlib import Path

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.cli.query_args import InsightsFilters, QueryCommand, insights_filters
from mjvault.cli.stats import insights_document


@click.command("report", cls=QueryCommand)
@click.argument("file", type=NonEmptyPath(dir_okay=False, path_type=Path))
@insights_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "pdf", "png", "svg"]),
    default=None,
    help="What to write; by default what FILE's name ends in, else html.",
)
@click.option("--title", default=None, help="The report's title (default: mjvault: insights).")
@pass_app
def report_command(
    app: AppContext,
    file: Path,
    filters: InsightsFilters,
    fmt: str | None,
    title: str | None,
) -> None:
    """Write the vault's insights to FILE: an HTML page that needs nothing else (charts inline,
    no network; it reads on a phone), or with --format pdf|png|svg the charts alone. QUERY,
    --since and --until report on the jobs they select.

    \b
    Examples:
      mjvault report insights.html
      mjvault report 2024.pdf --since 2024-01-01 --until 2024-12-31
    """
    from mjvault.insights.render.report import format_of, render

    check_output_file(file, "the report")  # before the counting: a typo costs nothing
    doc = insights_document(app, filters)
    kind = format_of(file, fmt)
    data = render(doc, kind, title=title or "mjvault: insights")
    file.write_bytes(data)
    app.emit(
        {"report": str(file), "format": kind, "bytes": len(data), "jobs": doc["totals"]["jobs"]},
        lambda: click.echo(f"report: {file} ({kind}, {doc['totals']['jobs']} jobs)"),
    )
