"""Images and thumbnails by object id: ``/media/{id}`` and ``/thumb/{id}?size=s|m``.

An object is looked up by its id (checked against OBJECT_ID), never by a path from the
request, and only if the index shows it as an image of some job: a record or a manifest is
not served. An encrypted vault's objects are opened in memory; nothing is written in the
clear. Both answers are immutable (an id names its bytes), so the ETag is the id and a
revalidation is a 304 without reading the object.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mjvault.errors import MjvaultError
from mjvault.serve.browse import error
from mjvault.serve.security import BadRequest, check_object_id
from mjvault.serve.settings import THUMB_SIZES, ServeState
from mjvault.thumbnails import made_in_memory, thumbnail

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
    with state.vault.current_index().reader() as reader:
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


def thumb(state: ServeState) -> Callable[[Request], Response]:
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
        try:
            if state.settings.read_only:
                # Read-only means no write at all: made in memory, never kept.
                data = made_in_memory(state.vault, object_id, size_name)
            else:
                # Kept only if the image is still a job's when the lock is held: a forget
                # between this check and the keeping must not leave its thumbnail behind.
                data = thumbnail(
                    state.vault,
                    object_id,
                    size_name,
                    still_named=lambda: _is_image(state, object_id),
                )
        except MjvaultError as exc:
            return error(exc.message, "unreadable", 500)
        if data is None:
            return error("no thumbnail for this object", "not_an_image", 404)
        return _cached(data, "image/webp", etag)

    return endpoint


def routes(state: ServeState) -> list[BaseRoute]:
    return [
        Route("/media/{object_id}", media(state)),
        Route("/thumb/{object_id}", thumb(state)),
    ]
