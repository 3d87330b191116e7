"""``GET /api/dupes?level=&q=&limit=``: the near-duplicate groups for the "Duplicates" page.

The groups of :func:`mjvault.similarity.groups.find_groups` (largest first), each member with
its job's date and prompt for the page; the answer is kept per (level, query, index
generation, hash rows) so the page's reloads do not repeat a pass over every hash. Only what
is shown is kept (the counts and the first ``limit`` groups, with their prompts), and one
pass runs at a time: a request for another level waits for the running one instead of
starting a second pass over every hash beside it (the level is capped, MAX_LEVEL).
Nothing is changed: the page selects a group's others into the timeline's selection, and
the batch routes (mjvault/serve/batch.py) do what the user then asks.
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from mjvault.errors import UsageError
from mjvault.serve.browse import generation, handler
from mjvault.serve.security import BadRequest
from mjvault.serve.settings import ServeState

DEFAULT_GROUPS = 200
MAX_GROUPS = 5000
CACHED = 8  # answers kept
_PASS = threading.Lock()  # one pass over the hashes at a time, whatever the level


@handler
def dupes(state: ServeState, request: Request) -> dict[str, Any]:
    from mjvault.similarity.hashing import DEFAULT_LEVEL, LEVELS, parse_level
    from mjvault.similarity.store import HashStore

    params = request.query_params
    try:
        level = parse_level(params.get("level") or DEFAULT_LEVEL)
    except UsageError as exc:
        raise BadRequest(exc.message, "bad_level") from None
    text = params.get("q", "")
    if len(text) > 2000:
        raise BadRequest("query too long", "bad_query")
    limit = _limit(params.get("limit"))
    vault = state.vault
    with HashStore.open(vault) as store:
        rows = len(store)
    key = (level, text, generation(vault.current_index()), rows)
    cache: dict[Any, dict[str, Any]] = state.caches.setdefault("dupes", {})
    found = _cached(state, cache, key, limit)
    if found is None:
        with _PASS:
            found = _cached(state, cache, key, limit)  # made while this one waited
            if found is None:
                found = _answer(vault, level, text, limit)
                with state.lock:
                    while key not in cache and len(cache) >= CACHED:
                        cache.pop(next(iter(cache)))
                    cache[key] = found
    return {
        "level": level,
        "levels": LEVELS,
        "default_level": DEFAULT_LEVEL,
        "query": text,
        "hashed": rows,
        "total": found["total"],
        "images": found["images"],
        "groups": found["groups"][:limit],
    }


def _cached(
    state: ServeState, cache: dict[Any, dict[str, Any]], key: Any, limit: int
) -> dict[str, Any] | None:
    """The kept answer for ``key`` when it holds at least ``limit`` groups (or all)."""
    with state.lock:
        found = cache.get(key)
    if found is None or (len(found["groups"]) < limit and len(found["groups"]) < found["total"]):
        return None
    return found


def _answer(vault: Any, level: int, text: str, limit: int) -> dict[str, Any]:
    """The counts of every group, and the first ``limit`` groups with their jobs' dates and
    prompts (the rest are counted, never turned into JSON nor kept)."""
    from mjvault.similarity.groups import find_groups, group_json_with_jobs
    from mjvault.similarity.nearest import NoHashes

    total = images = 0
    shown: list[dict[str, Any]] = []
    try:
        for group in find_groups(vault, level=level, query=text or None):
            total += 1
            images += len(group.members)
            if len(shown) < limit:
                shown.append(group_json_with_jobs(vault, group))
    except NoHashes:
        pass
    return {"total": total, "images": images, "groups": shown}


def _limit(text: str | None) -> int:
    if not text:
        return DEFAULT_GROUPS
    # ASCII digits only: isdigit() takes "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_GROUPS:
        raise BadRequest(f"limit must be from 1 to {MAX_GROUPS}", "bad_parameter")
    return int(text)


def routes(state: ServeState) -> list[BaseRoute]:
    return [Route("/api/dupes", dupes(state))]
