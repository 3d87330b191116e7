"""Images and thumbnails by object id: ``/media/{id}`` and ``/thumb/{id}?size=s|m``.

An object is looked up by its id (checked against OBJECT_ID), never by a path from the
request, and only if the index shows it as an image of some job: a record or a manifest is
not served. An encrypted vault's objects are opened in memory; nothing is written in the
clear. Both answers are immutable (an id names its bytes), so the ETag is the id and a
revalidation is a 304 without reading the object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mjvault.errors import MjvaultError
from mjvault.find.gallery.thumbs import CACHE_FILE as THUMB_CACHE_FILE
from mjvault.find.gallery.thumbs import ThumbCache, make_thumbnail
from mjvault.serve.browse import error
from mjvault.serve.security import BadRequest, check_object_id
from mjvault.serve.settings import THUMB_SIZES, ServeState

IMMUTABLE = "public, max-age=31536000, immutable"
# Magic numbers of what Midjourney makes: images and videos.
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF8", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
    (b"ftyp", 4, "video/mp4", "mp4"),
)


def sniff(data: bytes) -> tuple[str, str]:
    """(Content-Type, file extension) from the bytes themselves."""
    for magic, at, mime, ext in _SIGNATURES:
        if data[at : at + len(magic)] == magic:
            return mime, ext
    return "application/octet-stream", "bin"


def _not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match", "")
    return any(tag.strip() in (etag, f"W/{etag}", "*") for tag in given.split(","))


def _cached(body: bytes, mime: str, etag: str, extra: dict[str, str] | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=mime, headers={**headers, **(extra or {})})


def _is_image(state: ServeState, object_id: str) -> bool:
    with state.vault.index.reader() as reader:
        return reader.is_image(object_id)


def media(state: ServeState) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        try:
            object_id = check_object_id(request.path_params["object_id"])
        except BadRequest as exc:
            return error(exc.message, exc.code, exc.status)
        etag = f'"{object_id}"'
        if _not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
        if not _is_image(state, object_id):
            return error("no such image", "not_found", 404)
        try:
            data = state.vault.read_object(object_id)
        except MjvaultError as exc:
            return error(exc.message, "unreadable", 500)
        mime, ext = sniff(data)
        extra = {}
        if request.query_params.get("download") == "1":
            # A name made of the id alone: nothing from the request reaches the header.
            extra["Content-Disposition"] = f'attachment; filename="{object_id[:16]}.{ext}"'
        return _cached(data, mime, etag, extra)

    return endpoint


def _library_thumbnail() -> Callable[..., bytes | None] | None:
    """The vault's thumbnail library call, once it exists (mjvault/thumbnails.py)."""
    try:
        module: Any = importlib.import_module("mjvault.thumbnails")
    except ImportError:
        return None
    return getattr(module, "thumbnail", None)


def thumb(state: ServeState) -> Callable[[Request], Response]:
    library = _library_thumbnail()

    def endpoint(request: Request) -> Response:
        try:
            object_id = check_object_id(request.path_params["object_id"])
        except BadRequest as exc:
            return error(exc.message, exc.code, exc.status)
        size_name = request.query_params.get("size", "s")
        if size_name not in THUMB_SIZES:
            return error("size must be s or m", "bad_parameter")
        etag = f'"{object_id}-{size_name}"'
        if _not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
        if not _is_image(state, object_id):
            return error("no such image", "not_found", 404)
        size = THUMB_SIZES[size_name]
        try:
            if state.settings.read_only:
                # Read-only means no write at all: made in memory, never kept.
                from mjvault.thumbnails import made_in_memory

                data = made_in_memory(state.vault, object_id, size_name)
            elif library is not None:
                data = library(state.vault, object_id, size_name)
            else:
                data = _thumbnail(state, object_id, size)
        except MjvaultError as exc:
            return error(exc.message, "unreadable", 500)
        if data is None:
            return error("no thumbnail for this object", "not_an_image", 404)
        return _cached(data, "image/webp", etag)

    return endpoint


def _thumbnail(state: ServeState, object_id: str, size: int) -> bytes | None:
    """The gallery's kept thumbnail, or one made in memory (kept by the sync's own maker)."""
    cache = state.caches.get("thumbs")
    if cache is None and (state.vault.path / THUMB_CACHE_FILE).is_file():
        # Opened only when the vault has one: serving writes no file of its own.
        with state.lock:
            cache = state.caches.get("thumbs")
            if cache is None:
                cache = state.caches["thumbs"] = ThumbCache(state.vault.path)
                state.on_close.append(cache.close)
    known = cache.get(object_id, size) if cache is not None else None  # its own lock
    if known is not None:
        try:
            return state.vault.read_object(known[0])
        except MjvaultError:
            pass  # a cache: its object may have been collected
    return make_thumbnail(state.vault.read_object(object_id), size)


def routes(state: ServeState) -> list[BaseRoute]:
    return [
        Route("/media/{object_id}", media(state)),
        Route("/thumb/{object_id}", thumb(state)),
    ]
