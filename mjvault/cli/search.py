"""``mjvault search``: find jobs by prompt words, phrases, parameters, type and date."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import click

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.errors import UsageError
from mjvault.find.results import find, summaries, summary_json, table_lines
from mjvault.find.views import view_paths
from mjvault.index.db import JobSummary
from mjvault.index.facets import Facets, facet_counts
from mjvault.index.query import parse_query
from mjvault.index.search import SORT_ORDERS, SortOrder, count_matches, iter_search

TABLE_LIMIT = 50

EPILOG = """\b
Query language (all conditions must hold):
  fox forest          both words, in any order     "misty forest"   this phrase
  cat*                words starting with cat      -snow            without snow
  type:upscale        job type                     user:NAME        who made it
  ar:16:9 v:6 niji:6 style:raw chaos:50            parameter values (v:6 also finds 6.1)
  s>100 chaos<=20 ar>1                             numeric comparisons
  --ar 16:9 --v 6 --tile                           parameters as typed in Midjourney
  since:2024-01-01 until:2024-06 date:2024-03      dates (YYYY, YYYY-MM, YYYY-MM-DD)
\b
Examples:
  mjvault search fox "misty forest" ar:16:9 v:6 since:2024
  mjvault search --ids type:upscale s>250 | xargs -n1 mjvault show
  mjvault search --paths my-view cat* -dog
  mjvault search --facets fox since:2024     how the matches divide (type, model, ar, month)
  mjvault search --semantic "a lighthouse in a storm"   by meaning (needs `mjvault embed`)
  mjvault search --like 3f2a1b               jobs whose prompts are nearest this job's
"""


@click.command("search", epilog=EPILOG, cls=QueryCommand)
@click.argument("query", nargs=-1)
@click.option(
    "--sort",
    type=click.Choice(SORT_ORDERS),
    default="newest",
    show_default=True,
    help="newest or oldest first, or by relevance (BM25 over prompt words).",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help=f"At most N jobs (default {TABLE_LIMIT} in the table, all with --ids/--paths/--json).",
)
@json_option(help="The matching jobs as JSON.")
@click.option("--ids", "as_ids", is_flag=True, help="Only job ids, one per line (for pipes).")
@click.option(
    "--paths",
    "view",
    metavar="VIEW",
    default=None,
    help="The files of checked-out view VIEW that show the matching jobs, one per line.",
)
@click.option(
    "--facets",
    is_flag=True,
    help="How many matches each type, model version, aspect ratio and month has, not the jobs.",
)
@click.option(
    "--semantic",
    metavar="TEXT",
    default=None,
    help="Jobs whose images are nearest TEXT in meaning, best first (needs `mjvault embed` "
    "with a text model).",
)
@click.option(
    "--like",
    "like",
    metavar="JOB_ID",
    default=None,
    help="Jobs whose prompts are nearest job JOB_ID's (an id or a unique prefix), best first.",
)
@pass_app
def search_command(
    app: AppContext,
    query: tuple[str, ...],
    sort: SortOrder,
    limit: int | None,
    as_ids: bool,
    view: str | None,
    facets: bool,
    semantic: str | None,
    like: str | None,
) -> None:
    """Search the vault's jobs (see the query language below)."""
    as_json = app.json_output
    if sum((as_json, as_ids, view is not None)) > 1:
        raise UsageError("choose one of --json, --ids and --paths")
    if semantic is not None and like is not None:
        raise UsageError("choose one of --semantic and --like")
    if semantic is not None:
        if query or facets or sort != "newest":
            raise UsageError("--semantic ranks by meaning: it takes no query, --sort or --facets")
        _semantic(app, semantic, limit, as_json=as_json, as_ids=as_ids, view=view)
        return
    if like is not None:
        if query or facets or sort != "newest":
            raise UsageError("--like ranks by prompt similarity: no QUERY, --sort or --facets")
        _like(app, like, limit, as_json=as_json, as_ids=as_ids, view=view)
        return
    if facets and (as_ids or view is not None):
        raise UsageError("--facets shows counts: it goes with --json, not --ids or --paths")
    table = not (as_json or as_ids or view is not None)
    vault = app.open_vault()
    paths = view_paths(vault, view) if view is not None else None
    text = query_text(query)
    parsed = parse_query(text)
    if parsed.unsearchable:
        app.info("ignored (no letters or digits to search for): " + " ".join(parsed.unsearchable))
    if facets:
        counted = facet_counts(vault.current_index(), parsed)
        if as_json:
            click.echo(json.dumps({"query": text, **counted.to_json()}, indent=2))
        else:
            for line in facet_lines(counted):
                click.echo(line)
        return
    if not table:
        # Streamed: a search matching most of a large vault holds no list of its jobs.
        index = vault.current_index()
        matches = iter_search(index, parsed, sort=sort, limit=limit)
        if as_ids:
            for job_id in matches:
                click.echo(job_id)
        elif paths is not None:
            for job_id in matches:
                for path in paths.get(job_id, ()):
                    click.echo(path)
        else:
            total = count_matches(index, parsed)
            _echo_json(text, total, summaries(vault, matches))
        return
    result = find(vault, parsed, sort=sort, limit=limit or TABLE_LIMIT)
    rows = list(summaries(vault, result.job_ids))
    for line in table_lines(rows):
        click.echo(line)
    shown = len(rows)
    more = f" (showing {shown}; --limit N for more)" if shown < result.total else ""
    app.info(f"{result.total} job{'s' if result.total != 1 else ''}{more}")


def _semantic(
    app: AppContext, text: str, limit: int | None, *, as_json: bool, as_ids: bool, view: str | None
) -> None:
    """``search --semantic``: the jobs of the nearest images, each once, best first, in the
    table, --ids, --paths or --json of any search (with each job's score and image)."""
    from mjvault.similarity.semantic import semantic_search

    vault = app.open_vault()
    paths = view_paths(vault, view) if view is not None else None
    wanted = limit or TABLE_LIMIT
    best: dict[str, tuple[float, int]] = {}
    # A job shows up to four images: enough image hits for ``wanted`` distinct jobs.
    for hit in semantic_search(vault, text, limit=wanted * 4, settings=app.config.embed):
        if hit.job_id not in best and len(best) < wanted:
            best[hit.job_id] = (hit.score, hit.index)
    rows = list(summaries(vault, best))
    if as_ids:
        for row in rows:
            click.echo(row.job_id)
    elif paths is not None:
        for row in rows:
            for path in paths.get(row.job_id, ()):
                click.echo(path)
    elif as_json:
        jobs = [
            {**summary_json(r), "score": round(best[r.job_id][0], 4), "image": best[r.job_id][1]}
            for r in rows
        ]
        click.echo(
            json.dumps(
                {"query": text, "semantic": True, "total": len(jobs), "jobs": jobs},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for line in table_lines(rows):
            click.echo(line)
        app.info(f"{len(rows)} job{'s' if len(rows) != 1 else ''} nearest in meaning")


def _like(
    app: AppContext,
    job_id: str,
    limit: int | None,
    *,
    as_json: bool,
    as_ids: bool,
    view: str | None,
) -> None:
    """``--like``: the jobs of the nearest prompts, shown as a search shows its matches."""
    from mjvault.similarity.prompts import like_job

    vault = app.open_vault()
    paths = view_paths(vault, view) if view is not None else None
    hits = like_job(vault, job_id, limit or TABLE_LIMIT)
    if as_ids:
        for hit in hits:
            click.echo(hit.job_id)
        return
    if paths is not None:
        for hit in hits:
            for path in paths.get(hit.job_id, ()):
                click.echo(path)
        return
    rows = {row.job_id: row for row in summaries(vault, [hit.job_id for hit in hits])}
    if as_json:
        jobs = [
            summary_json(rows[hit.job_id]) | {"score": round(hit.score, 2)}
            for hit in hits
            if hit.job_id in rows
        ]
        document = {"like": job_id, "total": len(jobs), "jobs": jobs}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    for line in table_lines([rows[hit.job_id] for hit in hits if hit.job_id in rows]):
        click.echo(line)
    app.info(f"{len(hits)} job{'s' if len(hits) != 1 else ''} with a similar prompt")


FACET_TITLES = {"type": "type", "model": "model", "ar": "aspect", "month": "month"}
FACET_SHOWN = 12  # values per facet in the table; --json has them all


def facet_lines(counted: Facets) -> Iterator[str]:
    """Each facet's values, the largest (months: the newest) first, with their counts."""
    yield f"{counted.total:,} job{'s' if counted.total != 1 else ''}"
    for name, values in counted.values.items():
        if not values:
            continue
        shown = values[-FACET_SHOWN:][::-1] if name == "month" else values[:FACET_SHOWN]
        more = f"  (+{len(values) - len(shown)} more)" if len(values) > len(shown) else ""
        yield f"{FACET_TITLES[name]}:{more}"
        width = max(len(v.value or "(none)") for v in shown)
        for value in shown:
            yield f"  {(value.value or '(none)').ljust(width)}  {value.count:>9,}"


def _echo_json(query: str, total: int, rows: Iterable[JobSummary]) -> None:
    """``{"query", "total", "jobs"}`` as ``json.dumps(indent=2)`` writes it, a job at a time."""
    from textwrap import indent  # --json only: not in every search's start-up

    head = json.dumps({"query": query, "total": total}, indent=2, ensure_ascii=False)
    click.echo(head[: -len("\n}")] + ',\n  "jobs": [', nl=False)
    first = True
    for row in rows:
        job = json.dumps(summary_json(row), indent=2, ensure_ascii=False)
        click.echo(("\n" if first else ",\n") + indent(job, "    "), nl=False)
        first = False
    click.echo("]\n}" if first else "\n  ]\n}")
