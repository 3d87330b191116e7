"""Batch routes: what the page does to a selection of jobs.

A selection is ``{"ids": [job ids]}`` (what was clicked) or ``{"query": q, "exclude": [ids]}``
("select all results" minus a few): the query is run again here and its ids streamed, so a
selection of a million jobs never reaches the server as a million ids, and is never held as
one beyond what the request itself carried. Every id is checked against the job id pattern.

- ``POST /api/export``: a zip of the originals (``ZIP_STORED``: images and videos are
  compressed already) or the records as CSV/JSON through :mod:`mjvault.find.export`. Written by
  a thread into a small bounded pipe that the response reads: memory is a few chunks, the
  first bytes leave at once, and a client that goes away stops the writer at its next chunk.
- ``GET/POST/DELETE /api/collections``: :mod:`mjvault.collections`; the views that follow a
  changed collection are refreshed after it.
- ``POST /api/views``: a collection of the selection, named after the view, and a checkout
  view over it (a filter naming the collection) in ``[serve] views_dir``; an existing one is
  replaced only when the request says ``replace`` (the page asks first).
- ``POST /api/forget``: :func:`mjvault.integrity.forget.forget_jobs`, the code `mjvault forget
  --job` runs, then the rewritten snapshots on the remotes as the command does. ``count`` must
  equal the selection's size: it is the number the page showed and the user confirmed.

Each mutation works on a handle of its own (:meth:`Vault.reopen`) and takes the write lock; a
lock held elsewhere answers 409 ``locked`` with its holder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import re
import secrets
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from mjvault.errors import JobNotFound, KeysChanged, MjvaultError, UsageError, VaultLocked
from mjvault.serve.live import read_json
from mjvault.serve.security import BadRequest, check_job_id

if TYPE_CHECKING:
    from mjvault.serve.settings import ServeState
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

MAX_SELECTION_BODY = 48 * 1024 * 1024  # a million job ids as JSON is ~40 MB
MAX_QUERY = 2000
PIPE_CHUNK = 256 * 1024  # bytes gathered before the response gets them
PIPE_DEPTH = 8  # chunks the writer may run ahead of the client
EXPORT_FORMATS = ("zip", "csv", "json")
EXPORT_LINK_SECONDS = 60.0  # a one-time export address is used at once by the page
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


# -- selections -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    ids: tuple[str, ...] | None = None
    query: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)

    def job_ids(self, vault: Vault) -> Iterator[str]:
        """The selected jobs the index holds, each once: the given ids in their order, or the
        query's matches newest first, streamed."""
        index = vault.current_index()
        if self.ids is not None:
            seen: set[str] = set()
            for job_id in self.ids:
                if job_id not in seen and index.get(job_id) is not None:
                    seen.add(job_id)
                    yield job_id
            return
        from mjvault.index.query import parse_query
        from mjvault.index.search import iter_search

        for job_id in iter_search(index, parse_query(self.query or "")):
            if job_id not in self.exclude:
                yield job_id

    def count(self, vault: Vault) -> int:
        return sum(1 for _ in self.job_ids(vault))


def parse_selection(doc: object) -> Selection:
    if not isinstance(doc, dict):
        raise BadRequest("selection must be an object: {ids} or {query, exclude}", "bad_selection")
    ids, query = doc.get("ids"), doc.get("query")
    if (ids is None) == (query is None):
        raise BadRequest("a selection has either ids or a query", "bad_selection")
    if ids is not None:
        return Selection(ids=_id_list(ids, "ids"))
    if not isinstance(query, str) or len(query) > MAX_QUERY:
        raise BadRequest(f"query must be text of at most {MAX_QUERY} characters", "bad_query")
    return Selection(query=query, exclude=frozenset(_id_list(doc.get("exclude") or [], "exclude")))


def _id_list(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a list of job ids", "bad_selection")
    return tuple(check_job_id(v) for v in value)


# -- a response written by a thread ---------------------------------------------------------
class _Gone(Exception):
    """The client went away: the writer stops."""


class _Pipe(io.RawIOBase):
    """A write-only, unseekable file for a writer thread; the response reads its chunks.

    Bounded: a writer more than ``PIPE_DEPTH`` chunks ahead of the client waits. zipfile sees
    an unseekable file and writes each entry's sizes after its data (a data descriptor).
    """

    _END = b""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(PIPE_DEPTH)
        self._buffer = bytearray()
        self.gone = threading.Event()

    # the writer's side (a file object as zipfile and the export writers use it)
    def write(self, data: Any) -> int:
        self._buffer += data
        if len(self._buffer) >= PIPE_CHUNK:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def finish(self, error: BaseException | None = None) -> None:
        if self._buffer and error is None:
            self._put(bytes(self._buffer))
        self._buffer.clear()
        self._put(error if error is not None else self._END)

    def _put(self, item: bytes | BaseException) -> None:
        while True:
            if self.gone.is_set():
                raise _Gone
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    # the response's side
    def take(self) -> bytes | BaseException:
        """The next chunk; ``b""`` at the end, or once the response has gone away (so the
        worker thread waiting here is never kept by an abandoned download)."""
        while True:
            try:
                return self._chunks.get(timeout=0.5)
            except queue.Empty:
                if self.gone.is_set():
                    return self._END


def _streamed(write: Callable[[IO[bytes]], None]) -> AsyncIterator[bytes]:
    """Run ``write(file)`` on its own thread and yield what it writes, as it is written."""
    pipe = _Pipe()

    def run() -> None:
        try:
            write(pipe)  # type: ignore[arg-type]  # a raw binary file: what the writers use
        except _Gone:
            return
        except BaseException as exc:
            log.exception("an export stopped short")
            with contextlib.suppress(_Gone):
                pipe.finish(exc)
            return
        with contextlib.suppress(_Gone):
            pipe.finish()

    async def chunks() -> AsyncIterator[bytes]:
        thread = threading.Thread(target=run, name="mjvault-export", daemon=True)
        thread.start()
        try:
            while True:
                item = await run_in_threadpool(pipe.take)
                if isinstance(item, BaseException):
                    # Headers are sent: the only way left to say "incomplete" is to stop
                    # short, which a zip reader and a JSON parser both notice.
                    return
                if not item:
                    return
                yield item
        finally:
            pipe.gone.set()

    return chunks()


# -- export ---------------------------------------------------------------------------------
def write_zip(vault: Vault, job_ids: Iterator[str], out: IO[bytes]) -> int:
    """The originals of ``job_ids`` as ``<job id>_<n>.<ext>``, stored; returns files written."""
    from mjvault.serve.media import sniff

    written = 0
    index = vault.current_index()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for job_id in job_ids:
            summary = index.get(job_id)
            if summary is None:
                continue
            for n, object_id in enumerate(summary.images):
                if object_id is None:
                    continue
                data = vault.read_object(object_id)
                _, ext = sniff(data)
                info = zipfile.ZipInfo(f"{_SAFE_NAME.sub('_', job_id)}_{n}.{ext}")
                info.date_time = _zip_time(summary.time)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
                written += 1
    return written


def _zip_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    if moment is None or moment.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def write_records(vault: Vault, job_ids: Iterator[str], out: IO[bytes], fmt: str) -> int:
    """The records of ``job_ids`` as ``mjvault export`` writes them (CSV or JSON)."""
    from mjvault.find.export import rows_of, write_rows

    index = vault.current_index()
    entries = (e for e in (index.entry(j) for j in job_ids) if e is not None)
    return write_rows(rows_of(vault, entries), out, fmt)


# -- routes -----------------------------------------------------------------------------------
def _error(message: str, code: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status)


class _Answer(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _mutation(state: ServeState, work: Callable[[Vault], Any]) -> Any:
    """Run ``work`` on a handle of its own on the vault (its keys, no passphrase asked
    again), closed after, on a worker thread; then the watcher looks at HEAD."""
    vault = state.vault.reopen()
    try:
        # Refused at once after a key rotation (reads under the retired secret fail too);
        # the write lock checks again, when no rotation can be running.
        vault.check_keys()
        return work(vault)
    finally:
        vault.close()
        # HEAD moved (a forget, a collection): the pages open hear of it now, not in a second.
        live = state.caches.get("live")
        if live is not None:
            live.watcher.check()


async def _guarded(call: Callable[[], Any]) -> Response:
    """A mutation's answer, its refusals as the contract's JSON errors."""
    try:
        result = await run_in_threadpool(call)
    except _Answer as answer:
        return answer.response
    except BadRequest as exc:
        return _error(exc.message, exc.code, exc.status)
    except VaultLocked as exc:
        return _error(exc.message, "locked", 409, holder=_holder_of(exc))
    except KeysChanged as exc:  # a key rotation since the server started: restart it
        return _error(f"{exc.message}: restart mjvault serve", "keys_changed", 409)
    except JobNotFound as exc:
        return _error(exc.message, "not_found", 404)
    except UsageError as exc:
        return _error(exc.message, "bad_request", 400)
    except MjvaultError as exc:
        return _error(exc.message, "vault_error", 500)
    return result if isinstance(result, Response) else JSONResponse(result)


def _holder_of(exc: VaultLocked) -> str:
    text = exc.message
    prefix = "the vault is locked by "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _export_links(state: ServeState) -> dict[str, tuple[float, Any, str]]:
    """Issued one-time export addresses (token -> deadline, selection, format); the caller
    holds ``state.lock``. Expired ones are dropped here, so the table stays small."""
    links: dict[str, tuple[float, Any, str]] = state.caches.setdefault("export_links", {})
    now = time.monotonic()
    for token in [t for t, (deadline, _, _) in links.items() if deadline < now]:
        del links[token]
    return links


def _export_response(state: ServeState, selection: Any, fmt: str) -> Response:
    vault = state.vault

    def write(out: IO[bytes]) -> None:
        if fmt == "zip":
            write_zip(vault, selection.job_ids(vault), out)
        else:
            write_records(vault, selection.job_ids(vault), out, fmt)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    media_type = {"zip": "application/zip", "csv": "text/csv; charset=utf-8"}.get(
        fmt, "application/json"
    )
    return StreamingResponse(
        _streamed(write),
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="mjvault-{stamp}.{fmt}"',
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        },
    )


def routes(state: ServeState) -> list[BaseRoute]:
    async def export(request: Request) -> Response:
        try:
            doc = await read_json(request, MAX_SELECTION_BODY)
            selection = parse_selection(doc.get("selection"))
            fmt = doc.get("format", "zip")
            if fmt not in EXPORT_FORMATS:
                raise BadRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}", "bad_format")
            if selection.query is not None:
                from mjvault.index.query import parse_query

                parse_query(selection.query)  # a bad query is a 400 before any byte is sent
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)
        except UsageError as exc:
            return _error(exc.message, "bad_query")
        if doc.get("link") is True:
            # The page asks for a one-time address and lets the browser save its answer to
            # disk as it arrives: a big zip is never held whole in the tab.
            token = secrets.token_urlsafe(24)
            with state.lock:
                links = _export_links(state)
                links[token] = (time.monotonic() + EXPORT_LINK_SECONDS, selection, fmt)
            return JSONResponse({"url": f"/api/export/{token}"})
        return _export_response(state, selection, fmt)

    async def export_link(request: Request) -> Response:
        token = request.path_params["token"]
        with state.lock:
            found = _export_links(state).pop(token, None)  # single use
        if found is None or found[0] < time.monotonic():
            return _error(
                "no such export link (each is used once, within a minute)", "not_found", 404
            )
        _, selection, fmt = found
        return _export_response(state, selection, fmt)

    async def list_collections(request: Request) -> Response:
        from mjvault.collections import list_collections as listed

        def answer() -> dict[str, Any]:
            return {"collections": [c.to_json() for c in listed(state.vault)]}

        return await _guarded(answer)

    def _collection_name(request: Request) -> str:
        from mjvault.collections import check_name

        name = request.path_params["name"]
        try:
            return check_name(name)
        except UsageError as exc:
            raise BadRequest(exc.message, "bad_name") from None

    async def collection_members(request: Request) -> Response:
        from mjvault.collections import get, members

        def answer() -> dict[str, Any]:
            name = _collection_name(request)
            try:
                found = get(state.vault, name)
            except MjvaultError as exc:
                raise _Answer(_error(exc.message, "not_found", 404)) from None
            limit = 1000
            ids: list[str] = []
            for job_id in members(state.vault, name):
                if len(ids) >= limit:
                    break
                ids.append(job_id)
            return found.to_json() | {"ids": ids, "more": found.jobs > len(ids)}

        return await _guarded(answer)

    async def change_collection(request: Request) -> Response:
        from mjvault.collections import change, collections_of

        try:
            doc = await read_json(request, MAX_SELECTION_BODY)
            name = _collection_name(request)
            selection = parse_selection(doc.get("selection"))
            op = doc.get("op")
            if op not in ("add", "remove"):
                raise BadRequest("op must be add or remove", "bad_op")
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)

        def work(vault: Vault) -> dict[str, Any]:
            ids = selection.job_ids(vault)
            if op == "add":
                collection = change(vault, name, add=ids)
            else:
                if name not in {c.name for c in collections_of(vault, vault.head())}:
                    # Removing from no collection makes none: 404, as the CLI's `remove`.
                    raise _Answer(_error(f"no collection {name!r}", "not_found", 404))
                collection = change(vault, name, remove=ids)
            return collection.to_json() | refresh_following(vault, name)

        return await _guarded(lambda: _mutation(state, work))

    async def delete_collection(request: Request) -> Response:
        from mjvault.collections import delete

        try:
            name = _collection_name(request)
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)

        def work(vault: Vault) -> dict[str, Any]:
            if not delete(vault, name):
                raise _Answer(_error(f"no collection {name!r}", "not_found", 404))
            return {"deleted": name} | refresh_following(vault, name)

        return await _guarded(lambda: _mutation(state, work))

    async def make_view(request: Request) -> Response:
        from mjvault.collections import check_name as check_collection
        from mjvault.views.registry import check_name as check_view

        try:
            doc = await read_json(request, MAX_SELECTION_BODY)
            name = doc.get("name")
            if not isinstance(name, str):
                raise BadRequest("a view needs a name", "bad_name")
            try:
                check_view(name)
                check_collection(name)
            except UsageError as exc:
                raise BadRequest(exc.message, "bad_name") from None
            selection = parse_selection(doc.get("selection"))
            replace = doc.get("replace") is True
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)

        def work(vault: Vault) -> dict[str, Any]:
            return make_selection_view(vault, name, selection, views_dir(state), replace=replace)

        return await _guarded(lambda: _mutation(state, work))

    async def forget(request: Request) -> Response:
        try:
            doc = await read_json(request, MAX_SELECTION_BODY)
            selection = parse_selection(doc.get("selection"))
            count = doc.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise BadRequest("count must be the number of jobs confirmed", "bad_count")
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)

        def work(vault: Vault) -> dict[str, Any]:
            from mjvault.integrity.forget import forget_jobs

            chosen = list(selection.job_ids(vault))  # forget_jobs takes them as a list
            if len(chosen) != count:
                raise _Answer(
                    _error(
                        f"the selection holds {len(chosen)} jobs, not {count}: nothing forgotten",
                        "count_mismatch",
                        409,
                        count=len(chosen),
                    )
                )
            reason = "web app: " + (f"search: {selection.query}" if selection.query else "job")
            report = forget_jobs(vault, chosen, reason=reason)
            data = report.to_json() | {"matched": len(chosen)}
            if report.rewritten:
                from mjvault.remotes.prune import forget_rewritten_on_remotes

                remotes = forget_rewritten_on_remotes(
                    vault, report.rewritten, passphrase=state.settings.passphrase
                )
                data["remotes"] = [r.to_json() for r in remotes]
            return data

        return await _guarded(lambda: _mutation(state, work))

    return [
        Route("/api/export", export, methods=["POST"]),
        Route("/api/export/{token}", export_link, methods=["GET"]),
        Route("/api/collections", list_collections, methods=["GET"]),
        Route("/api/collections/{name}", collection_members, methods=["GET"]),
        Route("/api/collections/{name}", change_collection, methods=["POST"]),
        Route("/api/collections/{name}", delete_collection, methods=["DELETE"]),
        Route("/api/views", make_view, methods=["POST"]),
        Route("/api/forget", forget, methods=["POST"]),
    ]


# -- views of a selection ---------------------------------------------------------------------
def views_dir(state: ServeState) -> Path:
    """Where the page's views go: ``[serve] views_dir``, else ``<vault>-views`` beside the
    vault (a view's folder may be neither in the vault nor around it)."""
    return views_folder(state.vault_root)


def views_folder(vault_root: Path) -> Path:
    """:func:`views_dir` for a vault's folder (`mjvault dupes --view` makes its view there)."""
    from mjvault.config import load_config

    configured = load_config(vault_dir=vault_root).config.serve.views_dir
    if configured is not None:
        return Path(configured)
    root = vault_root.resolve()
    return root.parent / f"{root.name}-views"


def make_selection_view(
    vault: Vault, name: str, selection: Selection, folder: Path, *, replace: bool = False
) -> dict[str, Any]:
    """The collection ``name`` set to the selection's jobs, then the view ``name`` over it in
    ``folder/name``, rendered. Either one existing already is a 409 ``exists`` unless
    ``replace``; a view of that name that is not such a view is never replaced."""
    from mjvault.collections import change, list_collections, members
    from mjvault.views.filters import ViewFilter
    from mjvault.views.links import LinkKind
    from mjvault.views.reconcile import checkout
    from mjvault.views.registry import ViewDefinition, ViewRegistry
    from mjvault.views.template import DEFAULT_TEMPLATE

    directory = (folder / name).expanduser().resolve()
    registry = ViewRegistry(vault)
    view_exists = registry.exists(name)
    collection_exists = any(c.name == name for c in list_collections(vault))
    if view_exists:
        existing = registry.load(name).definition
        if existing.filter.collection != name or existing.directory != directory:
            raise _Answer(
                _error(
                    f"a view named {name!r} already shows {existing.directory}",
                    "exists",
                    409,
                    view=True,
                    collection=collection_exists,
                    replaceable=False,
                )
            )
    if (view_exists or collection_exists) and not replace:
        what = (
            "a view and a collection"
            if view_exists and collection_exists
            else ("a view" if view_exists else "a collection")
        )
        raise _Answer(
            _error(
                f"{what} named {name!r} exist already: replace it with this selection?",
                "exists",
                409,
                view=view_exists,
                collection=collection_exists,
                replaceable=True,
            )
        )
    chosen = sorted(set(selection.job_ids(vault)))
    if not chosen:
        raise BadRequest("the selection holds no job of the vault", "empty_selection")
    if collection_exists:
        wanted = set(chosen)
        gone = [job_id for job_id in members(vault, name) if job_id not in wanted]
        collection = change(vault, name, add=chosen, remove=gone)
    else:
        collection = change(vault, name, add=chosen)
    definition = ViewDefinition(
        name=name,
        directory=directory,
        template=DEFAULT_TEMPLATE,
        link=LinkKind.COPY if vault.encrypted else LinkKind.SYMLINK,
        filter=ViewFilter(collection=name),
    )
    report = checkout(vault, definition)
    return {
        "name": name,
        "collection": collection.to_json(),
        "directory": str(directory),
        "files": report.added + report.unchanged + report.updated + report.adopted,
        "report": report.to_json(),
    }


def refresh_following(vault: Vault, collection: str) -> dict[str, Any]:
    """Refresh the views that follow ``collection`` (and refresh with syncs): what a
    collection changed from the page shows at once, not at the next sync."""
    from mjvault.views.reconcile import refresh_view
    from mjvault.views.registry import ViewRegistry

    registry = ViewRegistry(vault)
    refreshed: dict[str, Any] = {}
    if not registry.names():
        return {}
    with registry.lock():
        for view_name in registry.names():
            try:
                view = registry.load(view_name)
                definition = view.definition
                if definition.filter.collection != collection or not definition.auto_refresh:
                    continue
                refreshed[view_name] = refresh_view(vault, view, registry=registry).to_json()
            except (MjvaultError, OSError) as exc:
                refreshed[view_name] = {"error": str(exc)}
    return {"views": refreshed} if refreshed else {}


__all__ = [
    "Selection",
    "make_selection_view",
    "parse_selection",
    "refresh_following",
    "routes",
    "views_dir",
    "views_folder",
    "write_records",
    "write_zip",
]
