"""The read side of the JSON API: the vault, its jobs page by page, a timeline for the
scrubber, facets, one job with its lineage, stats, snapshots, remotes and views.

Handlers are plain functions (Starlette runs them in its thread pool): the index is LMDB,
whose readers run side by side without a lock, and a page costs milliseconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mjvault import __version__
from mjvault.errors import JobNotFound, MjvaultError
from mjvault.index.db import Index, JobSummary
from mjvault.index.facets import facet_counts
from mjvault.index.pages import Page, PageKey, children, page, timeline
from mjvault.index.query import QueryError, parse_query
from mjvault.index.search import SORT_ORDERS, SortOrder
from mjvault.insights import aggregates
from mjvault.serve.security import BadRequest, check_job_id, check_object_id
from mjvault.serve.settings import THUMB_SIZES, ServeState

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
SEGMENT_SIZE = 500
PROMPT_CHARS = 300
CHILDREN_SHOWN = 200
TIMELINE_CACHE = 32  # (query, sort, index generation) kept


def error(message: str, code: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status)


def handler(fn: Callable[[ServeState, Request], Any]) -> Callable[[ServeState], Any]:
    """A route's function with the vault's and the request's errors answered as JSON."""

    def bind(state: ServeState) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                result = fn(state, request)
            except BadRequest as exc:
                return error(exc.message, exc.code, exc.status)
            except QueryError as exc:
                return error(exc.message, "bad_query")
            except JobNotFound as exc:
                return error(exc.message, "not_found", 404)
            except MjvaultError as exc:
                return error(exc.message, "vault_error", 500)
            return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint

    return bind


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def model_of(params: dict[str, str]) -> str | None:
    if "niji" in params:
        return f"niji {params['niji']}"
    return params.get("version")


def tile(summary: JobSummary) -> dict[str, Any]:
    """A job as the grid shows it."""
    kinds = summary.kinds or (None,) * len(summary.images)
    return {
        "id": summary.job_id,
        "time": iso(summary.time),
        "type": summary.type,
        "prompt": summary.prompt[:PROMPT_CHARS],
        "ar": summary.params.get("ar"),
        "model": model_of(summary.params),
        "images": [
            {"object": image, "kind": kind}
            for image, kind in zip(summary.images, kinds, strict=False)
        ],
        "parent": summary.parent,
        "liked": summary.liked,
        "ranking": summary.ranking,
    }


def tiles(index: Index, job_ids: list[str]) -> list[dict[str, Any]]:
    found = index.get_many(job_ids)
    return [tile(found[j]) for j in job_ids if j in found]


# -- parameters ----------------------------------------------------------------------------
def _query(request: Request) -> tuple[str, Any]:
    text = request.query_params.get("q", "")
    if len(text) > 2000:
        raise BadRequest("query too long", "bad_query")
    return text, parse_query(text)


def _sort(request: Request, allowed: tuple[str, ...] = SORT_ORDERS) -> SortOrder:
    sort = request.query_params.get("sort", "newest")
    if sort not in allowed:
        raise BadRequest(f"sort must be one of {', '.join(allowed)}", "bad_sort")
    return sort  # type: ignore[return-value]


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", "bad_parameter") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}", "bad_parameter")
    return value


def _date(request: Request, name: str) -> dt.date | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD", "bad_parameter") from None


def generation(index: Index) -> str | None:
    """What the index reflects: a new one after every sync, so caches key on it."""
    return index.indexed_tree()


# -- endpoints -----------------------------------------------------------------------------
@handler
def info(state: ServeState, request: Request) -> dict[str, Any]:
    vault = state.vault
    index = vault.current_index()
    with index.reader() as reader:
        jobs = reader.job_count()
    images = _image_count(index)
    return {
        "vault": vault.id,
        "encrypted": vault.encrypted,
        "read_only": state.settings.read_only,
        "version": __version__,
        "csrf": state.csrf_token,
        "jobs": jobs,
        "images": images,
        "thumb_sizes": dict(THUMB_SIZES),
    }


def _image_count(index: Index) -> int:
    """Images shown by the jobs: the insights counter the index keeps, looked up."""
    with index.reader() as reader:
        return aggregates.count(reader.txn, index.db[aggregates.TABLE], index.layout, "images")


@handler
def jobs(state: ServeState, request: Request) -> dict[str, Any]:
    _, query = _query(request)
    sort = _sort(request)
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after_text = request.query_params.get("after")
    after = None
    if after_text:
        try:
            after = PageKey.decode(after_text, sort)
        except ValueError as exc:
            raise BadRequest(str(exc), "bad_cursor") from None
    index = state.vault.current_index()
    found: Page = page(index, query, sort=sort, after=after, limit=limit)
    return {
        "jobs": tiles(index, found.job_ids),
        "next": found.next.encode() if found.next is not None else None,
        "total": found.total,
    }


@handler
def timeline_route(state: ServeState, request: Request) -> dict[str, Any]:
    text, query = _query(request)
    sort = _sort(request, ("newest", "oldest"))
    index = state.vault.current_index()
    key = (text, sort, generation(index))
    cache: dict[Any, Any] = state.caches.setdefault("timeline", {})
    answer = cache.get(key)
    if answer is None:
        total, segments = timeline(index, query, sort=sort, size=SEGMENT_SIZE)
        answer = {
            "total": total,
            "segment_size": SEGMENT_SIZE,
            "segments": [s.to_json() for s in segments],
        }
        _remember(state, cache, key, answer)
    return answer


def _remember(state: ServeState, cache: dict[Any, Any], key: Any, answer: Any) -> None:
    """Keep ``answer`` under ``key``, the oldest answers dropped past TIMELINE_CACHE."""
    with state.lock:
        while len(cache) >= TIMELINE_CACHE:
            cache.pop(next(iter(cache)))
        cache[key] = answer


@handler
def facets(state: ServeState, request: Request) -> dict[str, Any]:
    _, query = _query(request)
    return facet_counts(state.vault.current_index(), query).to_json()


@handler
def job(state: ServeState, request: Request) -> dict[str, Any]:
    job_id = check_job_id(request.path_params["job_id"])
    vault = state.vault
    index = vault.current_index()
    summary = index.get(job_id)
    if summary is None:
        raise JobNotFound(f"no job {job_id} in the vault")
    entry = vault.entry(job_id)
    raw = vault.record_json(entry)
    record = json.loads(raw)
    parsed = vault.job(entry)
    images = []
    kinds = summary.kinds or (None,) * len(summary.images)
    for image, kind in zip(summary.images, kinds, strict=False):
        size = None
        if image is not None:
            with contextlib.suppress(MjvaultError, OSError):
                size = vault.store.stored_size(image)
        images.append({"object": image, "kind": kind, "bytes": size})
    parent = index.get(summary.parent) if summary.parent else None
    kids = children(index, job_id, CHILDREN_SHOWN)
    return {
        "tile": tile(summary),
        "record": record,
        "params": json.loads(json.dumps(parsed.params, default=str)),
        "images": images,
        "lineage": {
            "parent": tile(parent) if parent is not None else None,
            "parent_id": summary.parent,
            "children": tiles(index, kids),
        },
    }


def _insights_config(state: ServeState) -> tuple[dict[str, float] | None, str]:
    """The ``[insights]`` cost table and time zone, as `mjvault stats` reads them (config is
    read per request: a file edited while the server runs counts at the next ask)."""
    from mjvault.config import load_config

    try:
        section = load_config(vault_dir=state.vault_root).config.insights
    except MjvaultError:
        return None, ""  # a broken config file is `mjvault config`'s to report
    return dict(section.cost), section.timezone


@handler
def stats(state: ServeState, request: Request) -> dict[str, Any]:
    from mjvault.insights.compute import insights, zone

    text = request.query_params.get("q", "")
    if text:
        parse_query(text)  # a bad query is the caller's error, said before any work
    since, until = _date(request, "since"), _date(request, "until")
    cost, default_tz = _insights_config(state)
    tz = request.query_params.get("tz")
    tz = default_tz if tz is None else tz  # "" asks for the machine's zone, as in config
    try:
        zone(tz)
    except ValueError as exc:
        raise BadRequest(str(exc), "bad_parameter") from None
    vault = state.vault
    table = tuple(sorted(cost.items())) if cost else None
    key = (text, since, until, tz, table, generation(vault.current_index()))
    cache: dict[Any, Any] = state.caches.setdefault("stats", {})
    answer = cache.get(key)
    if answer is None:
        answer = insights(vault, since, until, text or None, cost=cost, tz=tz)
        _remember(state, cache, key, answer)
    return answer


@handler
def snapshots(state: ServeState, request: Request) -> dict[str, Any]:
    limit = _int(request, "limit", 100, 1, 1000)
    before = request.query_params.get("before")
    if before is not None:
        check_object_id(before)
    vault = state.vault
    found = vault.snapshots()  # newest first; a vault has hundreds, not millions
    if before is not None:
        ids = [s.id for s in found]
        found = found[ids.index(before) + 1 :] if before in ids else []
    head = vault.refs.head()
    shown = found[:limit]
    return {
        "snapshots": [s.to_json() for s in shown],
        "head": head,
        "next": shown[-1].id if len(found) > limit else None,
    }


def _public_url(url: str) -> str:
    """A remote's address without user, password or query (where credentials hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@handler
def remotes(state: ServeState, request: Request) -> dict[str, Any]:
    from mjvault.remotes.config import list_specs
    from mjvault.remotes.record import load_record

    root = state.vault.path
    found = []
    for spec in list_specs(root):
        record = load_record(root, spec.name)
        last = record.last_push if record is not None else None
        found.append(
            {
                "name": spec.name,
                "url": _public_url(spec.url),
                "encrypt": spec.encrypt,
                "last_push": (last or {}).get("time"),
                "auto_push": False,
            }
        )
    return {"remotes": found}


@handler
def views(state: ServeState, request: Request) -> dict[str, Any]:
    from mjvault.views.registry import ViewRegistry

    registry = ViewRegistry(state.vault)
    found: list[dict[str, Any]] = []
    for name in registry.names():
        try:
            view = registry.load(name)
        except MjvaultError:
            found.append({"name": name, "jobs": None, "error": "unreadable"})
            continue
        definition = view.definition
        found.append(
            {
                "name": name,
                "jobs": None,
                "files": view.file_count(),
                "directory": str(definition.directory),
                "template": definition.template,
                "refreshed": view.refreshed,
                "snapshot": definition.snapshot,
            }
        )
    return {"views": found}


def routes(state: ServeState) -> list[BaseRoute]:
    return [
        Route("/api/info", info(state)),
        Route("/api/jobs", jobs(state)),
        Route("/api/timeline", timeline_route(state)),
        Route("/api/facets", facets(state)),
        Route("/api/job/{job_id:path}", job(state)),
        Route("/api/stats", stats(state)),
        Route("/api/snapshots", snapshots(state)),
        Route("/api/remotes", remotes(state)),
        Route("/api/views", views(state)),
    ]
