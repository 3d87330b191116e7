"""``mjvault stats``: the archive counted, for people and for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.cli.query_args import InsightsFilters, QueryCommand, insights_filters
from mjvault.errors import UsageError


def insights_document(app: AppContext, filters: InsightsFilters) -> dict[str, Any]:
    """The insights document of the vault (or of the jobs the filters select), with the
    configured cost table."""
    from mjvault.insights.compute import insights, zone

    tz = filters.tz if filters.tz is not None else app.config.insights.timezone
    try:
        zone(tz)
    except ValueError as e:
        raise UsageError(str(e)) from None
    vault = app.open_vault()
    doc = insights(
        vault,
        filters.since,
        filters.until,
        filters.query,
        cost=app.config.insights.cost,
        tz=tz,
    )
    if filters.anonymize:
        from mjvault.insights.render.anonymize import anonymize_terms

        doc = anonymize_terms(doc)
    return doc


@click.command("stats", cls=QueryCommand)
@insights_filters
@json_option(help="Everything as one JSON document.")
@click.option(
    "--chart",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the report (`mjvault report`): .png, .pdf or .svg as that, else HTML.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="How many top terms and parameters (not with --families).",
)
@click.option("--no-storage", is_flag=True, help="Skip the walk over object files (faster).")
@click.option(
    "--families",
    is_flag=True,
    help="Only the largest prompt families: the ideas iterated on most (-n how many); no"
    " QUERY, dates, --chart, --top, --no-storage, --tz or --anonymize.",
)
@click.option(
    "-n",
    "families_limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="How many prompt families --families lists (only with --families).",
)
@pass_app
def stats_command(
    app: AppContext,
    filters: InsightsFilters,
    chart: Path | None,
    top: int,
    no_storage: bool,
    families: bool,
    families_limit: int,
) -> None:
    """Activity (per month, week, hour and weekday, streaks, sessions), model versions and
    parameters over time, top, rising and falling prompt terms, follow-ups, ratings and a cost
    estimate; storage (objects, bytes, dedup savings, metadata compression) and snapshot
    history. QUERY, --since and --until count only the jobs they select.

    \b
    Examples:
      mjvault stats
      mjvault stats --since 2024-01-01 v:7 --json
      mjvault stats --families -n 20
    """
    from mjvault.find.stats import history_stats, storage_stats
    from mjvault.insights.render.report import format_of, render
    from mjvault.insights.render.terminal import history_lines, insights_lines, storage_lines

    given = _given(("top", "families_limit"))
    if families:
        if given["top"] or no_storage or filters.tz is not None:
            raise UsageError("--families lists families only: no --top, --no-storage or --tz")
        if chart is not None or filters.query or filters.since or filters.until:
            raise UsageError("--families counts the whole vault: no QUERY, dates or --chart")
        if filters.anonymize:
            raise UsageError("--families shows prompts: it does not go with --anonymize")
        _families(app, families_limit, as_json=app.json_output)
        return
    if given["families_limit"]:
        raise UsageError("-n is how many families --families lists: give --families too")
    if chart is not None:
        # Before the counting, which takes a while on a large vault; never made up silently.
        check_output_file(chart, "the chart")
    doc = insights_document(app, filters)
    vault = app.open_vault()
    if not no_storage:
        with app.progress(None, "objects", unit="obj") as bar:
            doc["storage"] = storage_stats(vault, on_object=bar.update)
    else:
        doc["storage"] = None
    doc["history"] = history_stats(vault, anonymize=filters.anonymize)
    if chart is not None:
        chart.write_bytes(render(doc, format_of(chart)))
        app.info(f"chart written to {chart}")
    if app.json_output:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    lines = insights_lines(doc, top=top)
    if doc["storage"]:
        lines += storage_lines(doc["storage"])
    lines += history_lines(doc["history"])
    click.echo("\n".join(lines))


def _given(names: tuple[str, ...]) -> dict[str, bool]:
    """Whether each option was given on the command line (not left at its default), for the
    options a mode has no use for: refused, never silently ignored."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name: ctx.get_parameter_source(name) in typed for name in names}


def _families(app: AppContext, limit: int, *, as_json: bool) -> None:
    """``--families``: the largest groups of jobs with near prompts, each with its span."""
    from mjvault.find.results import cut
    from mjvault.similarity.prompts import largest_families

    found = largest_families(app.open_vault(), limit)
    if as_json:
        click.echo(json.dumps({"families": [f.to_json() for f in found]}, indent=2))
        return
    if not found:
        click.echo("No prompt families: no two prompts are near enough.")
        return
    click.echo("Prompt families (the ideas iterated on most):")
    for family in found:
        first = family.first.strftime("%Y-%m-%d") if family.first else "????-??-??"
        last = family.last.strftime("%Y-%m-%d") if family.last else "????-??-??"
        span = first if first == last else f"{first} → {last}"
        click.echo(f"  {family.size:>6,}×  {span:<23}  {cut(family.example, 70)}")
