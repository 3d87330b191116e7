"""A Midjourney job as mjvault understands it, parsed from any generation's raw record. Pure.

The raw record (JSON bytes exactly as the source gave them) is what the vault stores; a
:class:`Job` is derived from it on demand, so a better parser later re-reads old archives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.params import ParamValue, parse_full_command

# Job types whose image is the parent grid's image (no image of their own on the CDN).
VIRTUAL_UPSAMPLE_MARKERS = ("virtual_upsample", "_virtual", "virtual_upscale")


MAX_JOB_ID_BYTES = 200
# The most files a job of each kind can have: a grid is 2x2 and a video job makes at most four
# clips. A record claiming more (``batch_size: 100000000``) is believed only as far as these,
# unless its ``image_paths`` list the files themselves.
MAX_IMAGES_PER_JOB = 4
MAX_VIDEOS_PER_JOB = 4
_SURROGATE = re.compile("[\ud800-\udfff]")


class RecordError(MjvaultError):
    """A record that is not a usable Midjourney job (no id, not an object, not JSON)."""


@dataclass(frozen=True)
class MediaRef:
    """One image or video of a job, as a path relative to the CDN base (``{job}/0_1.png``)."""

    index: int
    path: str
    kind: str  # "image" | "video"

    @property
    def ext(self) -> str:
        return self.path.rsplit(".", 1)[-1].lower()


@dataclass(frozen=True)
class Job:
    id: str
    enqueue_time: datetime | None
    type: str
    job_type: str | None
    event_type: str | None
    prompt: str
    full_command: str
    params: dict[str, ParamValue] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    batch_size: int | None = None
    parent_id: str | None = None
    parent_grid: int | None = None
    username: str | None = None
    user_id: str | None = None
    image_paths: tuple[str, ...] | None = None
    # The account holder's own marks, where the record carries them (insights count them).
    liked: bool | None = None
    ranking: int | None = None

    @property
    def is_video(self) -> bool:
        jt = (self.job_type or "").lower()
        et = (self.event_type or "").lower()
        return jt.startswith("vid") or et.startswith("video")

    @property
    def is_virtual_upsample(self) -> bool:
        jt = (self.job_type or self.type or "").lower()
        return any(marker in jt for marker in VIRTUAL_UPSAMPLE_MARKERS)

    @property
    def _claim_limit(self) -> int | None:
        """The most files ``batch_size`` may claim for this job; None when it is not used."""
        if self.image_paths:
            return None  # the record lists its files: what it proves, not what it claims
        if self.is_video:
            return MAX_VIDEOS_PER_JOB
        if self.is_virtual_upsample and self.parent_id is not None:
            return None
        if self.type in ("upscale",) or (self.event_type or "") == "upscale":
            return None
        return MAX_IMAGES_PER_JOB

    @property
    def malformed(self) -> str | None:
        """Why this record cannot be taken at its word, or None. Its media are bounded anyway."""
        limit = self._claim_limit
        if limit is None or self.batch_size is None or self.batch_size <= limit:
            return None
        kind = "a video job" if self.is_video else "an image job"
        return (
            f"job {self.id} claims batch_size {self.batch_size}, more than {kind} can have; "
            f"kept with at most {limit} files"
        )

    def media(self) -> list[MediaRef]:
        """The full-size images (or videos) of this job, as CDN-relative paths."""
        if self.image_paths:
            refs = []
            for i, url in enumerate(self.image_paths):
                path = _cdn_relative(url)
                refs.append(MediaRef(i, path, "video" if path.endswith(".mp4") else "image"))
            return refs
        limit = self._claim_limit
        count = min(self.batch_size or 1, limit) if limit is not None else 1
        if self.is_video:
            return [MediaRef(i, f"video/{self.id}/{i}.mp4", "video") for i in range(count)]
        if self.is_virtual_upsample and self.parent_id is not None:
            grid = self.parent_grid or 0
            return [MediaRef(0, f"{self.parent_id}/0_{grid}.png", "image")]
        if self.type in ("upscale",) or (self.event_type or "") == "upscale":
            return [MediaRef(0, f"{self.id}/0_0.png", "image")]
        return [MediaRef(i, f"{self.id}/0_{i}.png", "image") for i in range(count)]


def _cdn_relative(url: str) -> str:
    """``https://cdn.midjourney.com/ID/0_1.png`` -> ``ID/0_1.png``; also the old GCS bucket."""
    rest = url.split("://", 1)[-1]
    rest = rest.split("/", 1)[1] if "/" in rest else rest
    prefix = "dream-machines-output/"
    if rest.startswith(prefix):
        rest = rest[len(prefix) :]
    return rest.split("?", 1)[0]


def parse_time(value: Any) -> datetime | None:
    """Midjourney times: ``2023-05-26 07:38:42.209596`` (v1, UTC) or ISO 8601 (v2/v3)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 at +01:00 overflows when moved to UTC
        return None


def _clean(text: str) -> str:
    """Lone surrogates (from JSON escapes such as a half emoji) become U+FFFD.

    JSON allows them, UTF-8 cannot carry them, and every later consumer (the index, msgpack,
    file names) encodes to UTF-8. The record object keeps the source's bytes untouched.
    """
    return _SURROGATE.sub("\ufffd", text)


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return _clean(value) if isinstance(value, str) and value != "" else None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # isascii: "²".isdigit() is True, but int("²") fails.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


def job_from_record(record: Any) -> Job:
    """Build a :class:`Job` from a decoded record of any listing generation."""
    if not isinstance(record, dict):
        raise RecordError("record is not a JSON object")
    job_id = record.get("id")
    if not isinstance(job_id, str) or not job_id.strip():
        raise RecordError("record has no job id")
    # Ids are UUIDs; anything long, with control characters or with lone surrogates (a JSON
    # "\ud800" escape) cannot be an index key or a file name, and is not a Midjourney job.
    if (
        _clean(job_id) != job_id
        or len(job_id.encode("utf-8")) > MAX_JOB_ID_BYTES
        or any(ord(c) < 32 for c in job_id)
    ):
        raise RecordError("record has a malformed job id (too long or odd characters)")
    command_field = record.get("full_command")
    prompt_field = record.get("prompt")
    full_command: str = _clean(
        command_field
        if isinstance(command_field, str)
        else prompt_field
        if isinstance(prompt_field, str)
        else ""
    )
    parsed = parse_full_command(full_command)
    prompt = (
        " ".join(_clean(prompt_field).split()) if isinstance(prompt_field, str) else parsed.prompt
    )
    event_field = record.get("event")
    event: dict[str, Any] = event_field if isinstance(event_field, dict) else {}
    job_type = _str_or_none(record.get("job_type")) or _str_or_none(record.get("_job_type"))
    event_type = _str_or_none(record.get("event_type")) or _str_or_none(event.get("eventType"))
    kind = _str_or_none(record.get("type")) or event_type or job_type or "unknown"
    paths = record.get("image_paths")
    image_paths = (
        tuple(_clean(p) for p in paths if isinstance(p, str))
        if isinstance(paths, list) and paths
        else None
    )
    return Job(
        id=job_id.strip(),
        enqueue_time=parse_time(record.get("enqueue_time")),
        type=kind,
        job_type=job_type,
        event_type=event_type,
        prompt=prompt,
        full_command=full_command,
        params=parsed.params,
        width=_int_or_none(record.get("width")) or _int_or_none(event.get("width")),
        height=_int_or_none(record.get("height")) or _int_or_none(event.get("height")),
        batch_size=_int_or_none(record.get("batch_size")) or _int_or_none(event.get("batchSize")),
        parent_id=_str_or_none(record.get("parent_id")),
        parent_grid=_int_or_none(record.get("parent_grid")),
        username=_str_or_none(record.get("username")),
        user_id=_str_or_none(record.get("user_id")),
        image_paths=image_paths,
        liked=_bool_or_none(record.get("liked_by_user")),
        ranking=_int_or_none(record.get("ranking_by_user")),
    )


def job_from_json(raw: bytes) -> Job:
    if raw.lstrip()[:1] == b"<":
        raise RecordError("an HTML page, not a JSON record (a login or error page saved as .json?)")
    if not raw.strip():
        raise RecordError("empty file")
    try:
        record = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise RecordError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise RecordError("not valid JSON: nested too deeply") from None
    return job_from_record(record)
