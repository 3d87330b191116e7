"""Fetch one image or video from the CDN into the caller's sink, intact or not at all.

The caller owns the sink (a temporary file, a hasher, an object writer) and sees every byte
exactly once, in order: a dropped connection resumes with ``Range: bytes=N-``; a server that
ignores the range and sends the whole file again has its first N bytes checked against what was
already written and skipped, so the sink never sees a byte twice. Before the first byte reaches
the sink the file's magic bytes are checked, so an HTML page never lands in a vault as an image.
After the last byte the file's own structure is checked (:mod:`mjvault.mediacheck`): a file
cut short whose Content-Length agrees is asked for again from the start (its bytes checked
against those already written) and, if it stays cut, reported as damaged at the source.

A 404 is an answer, not a failure: the image is gone from the CDN while its job stays listed.
It comes back as :class:`MediaMissing` so a sync records it and goes on; so does a file that is
damaged at the source (:class:`MediaDamaged`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from mjvault.errors import CdnRefused, DownloadError
from mjvault.mediacheck import StructureCheck
from mjvault.model import MediaRef
from mjvault.sources.midjourney import messages
from mjvault.sources.midjourney.resilience import parse_retry_after
from mjvault.sources.midjourney.transport import (
    RETRY_STATUSES,
    Retryable,
    Transport,
    describe_exception,
    is_challenge,
)
from mjvault.store.codec import media_kind

log = logging.getLogger("mjvault.sources.midjourney")

MediaKind = Literal["image", "video"]


class ByteSink(Protocol):
    """Where a download's bytes go: a file, a hashing object writer, a BytesIO."""

    def write(self, data: bytes, /) -> object: ...


# Enough bytes to recognise every format below.
MAGIC_BYTES = 16
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)

IMAGE_EXTS = frozenset({"png", "jpg", "webp", "gif"})
VIDEO_EXTS = frozenset({"mp4", "webm"})
# Answers for one file that its structure shows to be cut short, before it counts as damaged
# at the source. A cut that a cache or proxy made once is usually gone on the next request.
DAMAGED_ATTEMPTS = 3


def detect_ext(head: bytes) -> str | None:
    """The file type from its first bytes: png, jpg, webp, gif, mp4, webm, html, or None.

    Media types are the store's own (:func:`mjvault.store.codec.media_kind`), so whatever a
    download accepts as an image is also what the vault stores raw.
    """
    kind = media_kind(head)
    if kind is not None:
        return kind
    if head.lstrip().startswith(b"<"):
        return "html"
    return None


@dataclass(frozen=True)
class DownloadResult:
    """What one download delivered. ``status`` is the HTTP status of the last answer."""

    url: str
    bytes: int
    content_type: str | None
    detected_ext: str | None
    status: int
    resumed: int = 0  # how many times the transfer continued after a drop or a short body

    @property
    def missing(self) -> bool:
        return False


@dataclass(frozen=True)
class MediaMissing(DownloadResult):
    """The source has no usable copy: the CDN says the file does not exist (404/410), or the
    record's path cannot be fetched safely. Nothing usable reached the sink: discard it."""

    reason: str = "404 on the CDN"

    @property
    def missing(self) -> bool:
        return True


@dataclass(frozen=True)
class MediaDamaged(MediaMissing):
    """Every answer for the file was cut short (its own structure says so), whatever its
    Content-Length claimed. The sink holds the damaged bytes: discard it."""


class _Damaged(DownloadError):
    """One complete answer failed the structure check (internal: ``download`` retries it)."""


class UnsafeMediaPath(DownloadError):
    """A record's media path that would leave the CDN base (``../``) or hide a separator."""


def media_url(cdn_base: str, path_or_url: str | MediaRef) -> str:
    """An absolute URL for a CDN-relative path (``{job}/0_1.png``); absolute URLs unchanged
    (the transport still holds them to the allowed CDN hosts).

    The path is normalised (``.`` and ``..`` resolved) and refused with
    :class:`UnsafeMediaPath` if it climbs above the CDN base. A path that already starts with
    the base's own path (a record pointing at a mirror under ``http://host/cdn``: ``cdn/{job}
    /0_1.png``) is under the base already and is not prefixed a second time.
    """
    path = path_or_url.path if isinstance(path_or_url, MediaRef) else path_or_url
    if path.startswith(("http://", "https://")):
        return path
    segments = _normalised_segments(path)
    base_segments = [part for part in urlsplit(cdn_base).path.split("/") if part]
    depth = len(base_segments)
    if depth and segments[:depth] == base_segments and len(segments) > depth:
        segments = segments[depth:]
    return f"{cdn_base.rstrip('/')}/{'/'.join(segments)}"


def _normalised_segments(path: str) -> list[str]:
    segments: list[str] = []
    for raw in path.split("/"):
        # Servers decode %2e%2e and %2f; what they would read is what counts.
        decoded = unquote(raw)
        if "/" in decoded or "\\" in decoded:
            raise UnsafeMediaPath(f"refused: the image path {path!r} hides a path separator")
        if decoded in ("", "."):
            continue
        if decoded == "..":
            if not segments:
                raise UnsafeMediaPath(f"refused: the image path {path!r} leaves the CDN base")
            segments.pop()
            continue
        segments.append(raw)
    if not segments:
        raise UnsafeMediaPath(f"refused: the image path {path!r} names no file")
    return segments


class _Transfer:
    """The state of one download across its attempts (one per call; never shared)."""

    def __init__(
        self,
        transport: Transport,
        url: str,
        sink: ByteSink,
        kind: MediaKind,
        on_chunk: Callable[[bytes], None] | None,
    ) -> None:
        self.transport = transport
        self.url = url
        self.sink = sink
        self.kind = kind
        self.on_chunk = on_chunk
        self.written = 0  # bytes handed to the sink
        self.total: int | None = None
        self.etag: str | None = None
        self.content_type: str | None = None
        self.detected: str | None = None
        self.attempts = 0
        self.written_digest = hashlib.blake2b(digest_size=16)
        self.structure: StructureCheck | None = None
        self.whole_again = False  # the next attempt asks for the whole file, not a range

    def refetch_whole(self) -> None:
        """Ask again from byte 0: the last answer was complete by its length but cut short.

        Bytes already written are compared, not written again; a longer answer that starts
        with them continues the file. Its length may differ from the cut one's.
        """
        self.whole_again = True
        self.total = None

    # One attempt: fetch from `written` on, or raise Retryable/DownloadError/...
    def attempt(self) -> DownloadResult:
        self.attempts += 1
        headers = self.transport.cdn_headers(self.url, self.kind)
        # Byte accounting and ranges must refer to the file itself, not a compressed stream.
        headers["Accept-Encoding"] = "identity"
        if self.written and not self.whole_again:
            headers["Range"] = f"bytes={self.written}-"
            if self.etag:
                headers["If-Range"] = self.etag
        response = self.transport.open_cdn(self.url, headers)
        try:
            result = self._receive(response)
        finally:
            response.close()
        problem = self.structure.problem() if self.structure and not result.missing else None
        if problem is not None:
            raise _Damaged(problem)
        return result

    def _receive(self, response: httpx.Response) -> DownloadResult:
        status = response.status_code
        if status in (404, 410):
            log.info("missing on the CDN: %s (HTTP %d)", self.url, status)
            return MediaMissing(
                self.url, 0, None, None, status, self.attempts - 1, f"{status} on the CDN"
            )
        if status == 429:
            raise Retryable(
                "HTTP 429 (rate limited)",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in RETRY_STATUSES:
            raise Retryable(
                f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after"))
            )
        if status in (401, 403) or (status == 200 and "html" in self._ctype(response)):
            page_start = self._read_some(response, 8192)
            if is_challenge(response.headers, page_start):
                raise messages.challenge(f"the image request for {self._short()}")
            if status != 200:
                raise CdnRefused(
                    f"the CDN refused {self._short()} (HTTP {status}); it turns away requests "
                    "that do not look like a browser's: set --user-agent or MJVAULT_USER_AGENT "
                    "to your browser's exact User-Agent"
                )
            raise DownloadError(f"the CDN sent an HTML page instead of {self._short()}")
        if status == 416 and self.written:
            # "Nothing from there on": if the file's size is where we stand, we have it all
            # (an earlier answer announced more than it had).
            size = _UNSATISFIED_RANGE.match(response.headers.get("content-range", ""))
            if size and int(size.group(1)) == self.written:
                self.total = self.written
                return self._result(200)
            raise DownloadError(f"{self._short()} changed on the CDN during the download")
        skip = 0
        if status == 206 and self.written:
            start, total = self._content_range(response)
            if start > self.written:
                raise DownloadError(f"the CDN resumed {self._short()} at the wrong offset")
            skip = self.written - start
            if self.total is not None and total is not None and total != self.total:
                if not self.etag:
                    raise DownloadError(f"{self._short()} changed on the CDN during the download")
                # If-Range vouched for the same version: the first answer's length was wrong.
                self.total = total
        elif status == 200:
            self.whole_again = False
            if self.written:
                # The range was ignored (or If-Range saw a new version): the whole file again.
                log.info("%s: server ignored the range; re-reading from the start", self._short())
                skip = self.written
            announced = _int_header(response, "content-length")
            if self.written and None not in (announced, self.total) and announced != self.total:
                raise DownloadError(f"{self._short()} changed on the CDN during the download")
            self.total = announced
            self.etag = response.headers.get("etag") or self.etag
            self.content_type = response.headers.get("content-type")
        else:
            raise DownloadError(f"the CDN answered HTTP {status} for {self._short()}")
        self._stream(response, skip)
        return self._result(status)

    def _stream(self, response: httpx.Response, skip: int) -> None:
        skipped_digest = hashlib.blake2b(digest_size=16)
        head = b""
        expected_skip = skip
        try:
            # No chunk size: httpx would hold bytes back to fill a chunk, and lose them when
            # the connection drops. Each network read goes to the sink as it arrives.
            for chunk in response.iter_raw():
                if skip:
                    taken, chunk = chunk[:skip], chunk[skip:]
                    skipped_digest.update(taken)
                    skip -= len(taken)
                    if not skip:
                        self._check_prefix(skipped_digest, expected_skip)
                    if not chunk:
                        continue
                if self.written == 0 and self.detected is None:
                    head += chunk
                    if len(head) < MAGIC_BYTES:
                        continue
                    self._check_magic(head)
                    chunk, head = head, b""
                self._deliver(chunk)
        except httpx.TransportError as exc:
            raise Retryable(f"{describe_exception(exc)} after {self.written} bytes") from None
        if skip:
            raise Retryable(f"connection ended while re-reading ({skip} bytes short)")
        if head:
            # A file shorter than the magic window: still checked before it is written.
            if self.total is not None and len(head) < self.total:
                raise Retryable(f"short body: {len(head)} of {self.total} bytes")
            self._check_magic(head)
            self._deliver(head)
        if self.total is not None and self.written < self.total:
            raise Retryable(f"short body: {self.written} of {self.total} bytes")
        if self.total is not None and self.written > self.total:
            raise DownloadError(f"the CDN sent more than the announced size of {self._short()}")
        if self.written == 0:
            raise DownloadError(f"the CDN sent an empty body for {self._short()}")

    def _deliver(self, chunk: bytes) -> None:
        self.transport.throttle_bytes(len(chunk))
        self.sink.write(chunk)
        if self.structure is not None:
            self.structure.update(chunk)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        self.written_digest.update(chunk)
        self.written += len(chunk)

    def _check_prefix(self, skipped: hashlib.blake2b, length: int) -> None:
        if skipped.digest() != self.written_digest.digest() or length != self.written:
            raise DownloadError(
                f"{self._short()} changed on the CDN during the download; download it again"
            )

    def _check_magic(self, head: bytes) -> None:
        detected = detect_ext(head)
        if detected == "html":
            if is_challenge({}, head):
                raise messages.challenge(f"the image request for {self._short()}")
            raise DownloadError(f"the CDN sent an HTML page instead of {self._short()}")
        allowed = VIDEO_EXTS if self.kind == "video" else IMAGE_EXTS
        if detected not in allowed:
            raise DownloadError(
                f"{self._short()} is not a{'' if self.kind == 'video' else 'n'} {self.kind} "
                f"(found {detected or 'unknown data'})"
            )
        self.detected = detected
        self.structure = StructureCheck(detected)

    def _content_range(self, response: httpx.Response) -> tuple[int, int | None]:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if not match:
            raise DownloadError(f"the CDN sent a part without a range for {self._short()}")
        total = None if match.group(3) == "*" else int(match.group(3))
        if total is not None and self.total is None:
            self.total = total
        return int(match.group(1)), total

    def _read_some(self, response: httpx.Response, limit: int) -> bytes:
        data = b""
        try:
            for chunk in response.iter_raw(4096):
                data += chunk
                if len(data) >= limit:
                    break
        except httpx.TransportError:
            pass
        return data[:limit]

    def _result(self, status: int) -> DownloadResult:
        return DownloadResult(
            self.url, self.written, self.content_type, self.detected, status, self.attempts - 1
        )

    def _short(self) -> str:
        return self.url.split("://", 1)[-1].split("/", 1)[-1]

    @staticmethod
    def _ctype(response: httpx.Response) -> str:
        return response.headers.get("content-type", "").lower()


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def download(
    transport: Transport,
    url: str,
    sink: ByteSink,
    *,
    expected_kind: MediaKind = "image",
    on_chunk: Callable[[bytes], None] | None = None,
) -> DownloadResult:
    """Stream ``url`` into ``sink`` (see module doc). Safe to call from many threads at once."""
    if expected_kind not in ("image", "video"):
        raise ValueError("expected_kind is 'image' or 'video'")
    transfer = _Transfer(transport, url, sink, expected_kind, on_chunk)
    problem = ""
    # A cut-short answer is a definite answer, not a failing service: it is retried here,
    # outside the transport's retry loop, so it never trips the circuit breaker.
    for _ in range(DAMAGED_ATTEMPTS):
        try:
            return transport.with_retries(
                transfer.attempt,
                what=f"download {transfer._short()}",
                give_up=DownloadError,
                progress=lambda: transfer.written,
            )
        except _Damaged as damaged:
            problem = str(damaged)
            log.info("%s: %s; asking for the whole file again", transfer._short(), problem)
            transfer.refetch_whole()
    return MediaDamaged(
        url,
        transfer.written,
        transfer.content_type,
        transfer.detected,
        200,
        transfer.attempts - 1,
        f"damaged at the source: {problem}",
    )
