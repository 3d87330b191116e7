"""Search from the library's point of view: a query string in, job summaries out."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mjvault.index.db import JobSummary
from mjvault.index.query import Query, parse_query
from mjvault.index.search import SearchResult, SortOrder, search

if TYPE_CHECKING:
    from mjvault.vault import Vault

# Parameters worth a column, in the order people read them; the rest follow.
HEADLINE_PARAMS = ("ar", "version", "niji", "style", "stylize", "chaos", "weird")
SHORT_NAMES = {"version": "v", "stylize": "s", "chaos": "c", "weird": "w", "quality": "q"}


def find(
    vault: Vault,
    query: str | Sequence[str] | Query,
    *,
    sort: SortOrder = "newest",
    limit: int | None = None,
) -> SearchResult:
    """``vault``'s jobs matching ``query`` (text, words to join, or a parsed Query)."""
    if isinstance(query, Query):
        parsed = query
    else:
        parsed = parse_query(query if isinstance(query, str) else " ".join(query))
    return search(vault.current_index(), parsed, sort=sort, limit=limit)


def summaries(vault: Vault, job_ids: Iterable[str]) -> Iterator[JobSummary]:
    index = vault.current_index()
    for job_id in job_ids:
        summary = index.get(job_id)
        if summary is not None:
            yield summary


def summary_json(summary: JobSummary) -> dict[str, Any]:
    return {
        "id": summary.job_id,
        "time": summary.time.isoformat() if summary.time else None,
        "type": summary.type,
        "prompt": summary.prompt,
        "params": summary.params,
        "username": summary.username,
        "record": summary.record,
        "images": list(summary.images),
    }


def params_text(params: dict[str, str]) -> str:
    """``--ar 16:9 --v 6.1`` compacted to ``ar 16:9 v 6.1``, headline parameters first."""
    names = [n for n in HEADLINE_PARAMS if n in params]
    names += sorted(n for n in params if n not in HEADLINE_PARAMS)
    parts = []
    for name in names:
        value = params[name]
        short = SHORT_NAMES.get(name, name)
        parts.append(short if value == "true" else f"{short} {value}")
    return " ".join(parts)


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table_prompt(prompt: str) -> str:
    """The prompt's text for a table column: image-prompt URLs (``https://s.mj.run/…``) say
    nothing at a glance and would push the words out of the column, so they are counted."""
    words = prompt.split()
    text = [w for w in words if "://" not in w]
    urls = len(words) - len(text)
    if not urls:
        return " ".join(words)
    note = f"[{'+' if text else ''}{urls} image URL{'s' if urls != 1 else ''}]"
    return " ".join([*text, note])


def table_lines(rows: Sequence[JobSummary], width: int | None = None) -> list[str]:
    """One line per job: short id, date, type, parameters, the prompt cut to ``width``."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    type_width = min(12, max((len(r.type) for r in rows), default=4))
    params = [params_text(r.params) for r in rows]
    param_width = min(28, max((len(p) for p in params), default=0))
    lines = []
    for row, param in zip(rows, params, strict=True):
        date = row.time.strftime("%Y-%m-%d") if row.time else "????-??-??"
        head = f"{row.job_id[:8]}  {date}  {cut(row.type, type_width):<{type_width}}  "
        head += f"{cut(param, param_width):<{param_width}}  "
        lines.append(head + cut(table_prompt(row.prompt), width - len(head)))
    return lines
