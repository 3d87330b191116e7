"""Commands whose arguments are a search query: ``-snow`` and ``--ar 16:9`` are query words.

click would read ``-snow`` as the short options ``-s -n -o -w`` (and ``-o`` would swallow
``w`` as a file name). A :class:`QueryCommand` hands click only what is exactly one of its
own options (and the value after it); every other word starting with a dash is marked as a
query word before parsing, and :func:`query_words` removes the mark.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click

from mjvault.index.query import DATE_FIELDS, FIELD_PATTERN, PLAIN_FIELDS
from mjvault.params import ALIASES

KNOWN_FIELDS = frozenset((*DATE_FIELDS, *PLAIN_FIELDS, *ALIASES))

_MARK = "\x1f"  # a control character no query or shell word contains


class QueryCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        marked: list[str] = []
        expect_value = False
        for arg in args:
            if expect_value:
                marked.append(arg)
                expect_value = False
                continue
            name = arg.split("=", 1)[0]
            if name in takes_value:
                marked.append(arg)
                expect_value = takes_value[name] and "=" not in arg
            elif arg.startswith("-") and len(arg) > 1 and arg != "--":
                marked.append(_MARK + arg)
            else:
                marked.append(arg)
        return super().parse_args(ctx, marked)


def query_text(words: Iterable[str], extra: str | None = None) -> str:
    """The query the words spell. A word holding spaces was quoted in the shell, so it is a
    phrase (``"misty forest"``) or a field's value (``user:"Ann Lee"``)."""
    parts = []
    for word in words:
        word = word.removeprefix(_MARK)
        if any(c.isspace() for c in word) and '"' not in word:
            field = FIELD_PATTERN.match(word)
            if field and field.group(1).lower() in KNOWN_FIELDS:
                word = f'{field.group(1)}{field.group(2)}"{field.group(3)}"'
            else:
                word = f'"{word}"'
        parts.append(word)
    if extra:
        parts.append(extra)
    return " ".join(parts).strip()


DAY = click.DateTime(formats=["%Y-%m-%d"])


@dataclass(frozen=True)
class InsightsFilters:
    """What ``stats`` and ``report`` count: the jobs of these days (UTC, both included) that
    match this query; ``anonymize`` drops every prompt term from what is shown."""

    since: dt.date | None = None
    until: dt.date | None = None
    query: str | None = None
    anonymize: bool = False
    tz: str | None = None  # None: the config's `[insights] timezone`


_INSIGHTS_OPTIONS = (
    click.argument("query", nargs=-1),
    click.option(
        "--since", type=DAY, default=None, metavar="YYYY-MM-DD", help="Jobs from this day on (UTC)."
    ),
    click.option(
        "--until",
        type=DAY,
        default=None,
        metavar="YYYY-MM-DD",
        help="Jobs up to this day, itself included (UTC).",
    ),
    click.option(
        "--search",
        "search_text",
        default=None,
        metavar="QUERY",
        help="Only jobs matching QUERY (as `mjvault search`; or give it as arguments).",
    ),
    click.option(
        "--anonymize",
        is_flag=True,
        help="Snapshot sources by kind only (terms never hold a prompt's URLs).",
    ),
    click.option(
        "--tz",
        default=None,
        metavar="ZONE",
        help="Days, hours, streaks and sessions in this IANA time zone (`Europe/Paris`); "
        "default: `[insights] timezone`, else the machine's.",
    ),
)


def insights_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options of ``stats`` and ``report``, written once: the command receives
    them as one ``filters: InsightsFilters`` argument, so an option added here (and a field
    to :class:`InsightsFilters`) reaches both commands without touching their signatures."""

    @functools.wraps(command)
    def with_filters(
        *args: Any,
        query: tuple[str, ...],
        since: dt.datetime | None,
        until: dt.datetime | None,
        search_text: str | None,
        anonymize: bool,
        tz: str | None,
        **kwargs: Any,
    ) -> Any:
        filters = InsightsFilters(
            since=since.date() if since else None,
            until=until.date() if until else None,
            query=query_text(query, search_text) or None,
            anonymize=anonymize,
            tz=tz,
        )
        return command(*args, filters=filters, **kwargs)

    wrapped: Callable[..., Any] = with_filters
    for option in reversed(_INSIGHTS_OPTIONS):
        wrapped = option(wrapped)
    return wrapped
