"""A generated Midjourney account: deterministic jobs, their records in each listing
generation's shape, and their media bytes on demand.

``Account.generate(seed, n)`` always yields the same jobs; media bytes are never held, only
derived per request from ``(seed, job id, index, extension)``, so a 100k-job account costs a
few tens of megabytes. Jobs are kept newest first, as every listing returns them.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from mjvault.params import parse_full_command
from mjvault.testing import images
from mjvault.testing.prompts import (
    Generation,
    dimensions,
    generation_at,
    make_parameters,
    make_prompt,
)

CDN_BASE = "https://cdn.midjourney.com"
LEGACY_BUCKET_BASE = "https://storage.googleapis.com/dream-machines-output"
DEFAULT_START = datetime(2022, 8, 1, tzinfo=UTC)
ACCOUNT_SPAN = timedelta(days=3 * 365)

ImageSize = Literal["small", "large"]
JobKind = Literal[
    "grid", "upscale", "virtual_upsample", "variation", "pan", "outpaint", "draft", "video"
]
FOUR_IMAGE_KINDS = frozenset({"grid", "variation", "pan", "outpaint", "draft"})

# Encoded sizes of "large" media, close to what the CDN serves for a 1024px job.
LARGE_SIZE_HINTS = {"png": 700_000, "webp": 160_000, "jpg": 250_000, "jpeg": 250_000}
# Long side in pixels of generated images: (grid image, single image).
_IMAGE_SIDES: dict[str, tuple[int, int]] = {"small": (32, 64), "large": (512, 1024)}

_IMAGE_PATH = re.compile(
    r"^(?P<job>[0-9a-f-]{36})/0_(?P<index>\d+)(?:_(?P<rendition>\d+)_N)?\.(?P<ext>png|webp)$"
)
_VIDEO_PATH = re.compile(r"^video/(?P<job>[0-9a-f-]{36})/(?P<index>\d+)\.mp4$")

VIDEO_JOB_TYPES = ("vid_1.1_i2v_render_a_joint_video", "vid_1.1_i2v_480", "vid_1.1_i2v_720")


def format_v1_time(moment: datetime) -> str:
    """``2023-05-26 07:38:42.209596``: the recent-jobs form (UTC, no zone, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randint(10 ** (count - 1), 10**count - 1))


@dataclass(frozen=True, slots=True)
class GeneratedJob:
    id: str
    enqueue_time: datetime
    kind: JobKind
    generation: Generation
    prompt: str
    parameters: str
    width: int
    height: int
    batch_size: int
    parent_id: str | None
    parent_grid: int | None
    user_id: str
    username: str | None
    legacy: bool  # a 2022-era record: older fields, images on the old storage bucket
    detail_seed: int  # drives the incidental fields (guild, platform ids, nulls)

    # -- derived -------------------------------------------------------------------------------
    @property
    def full_command(self) -> str:
        if not self.parameters:
            return self.prompt
        # Real commands often carry doubled spaces before the parameters; keep that mess.
        gap = "  " if self.detail_seed % 3 == 0 else " "
        return f"{self.prompt}{gap}{self.parameters}"

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def own_media_paths(self) -> list[str]:
        """CDN-relative paths of the files this job itself owns on the CDN."""
        if self.kind == "video":
            return [f"video/{self.id}/{i}.mp4" for i in range(self.batch_size)]
        if self.kind == "virtual_upsample":
            return []
        return [f"{self.id}/0_{i}.png" for i in range(self.batch_size)]

    @property
    def media_paths(self) -> list[str]:
        """CDN-relative paths a client downloads for this job (a virtual upsample's is its
        parent's grid image)."""
        if self.kind == "virtual_upsample":
            return [f"{self.parent_id}/0_{self.parent_grid}.png"]
        return self.own_media_paths

    @property
    def job_type(self) -> str:
        prefix = self.generation.job_type_prefix
        raw = "--style raw" in self.parameters
        if self.kind == "video":
            return VIDEO_JOB_TYPES[self.detail_seed % len(VIDEO_JOB_TYPES)]
        if self.kind == "virtual_upsample":
            return "v5_virtual_upscale" if prefix == "v5" else f"{prefix}_virtual_upsample"
        if self.kind == "upscale":
            return f"{prefix}_upscale"
        if self.kind == "draft":
            return f"{prefix}_draft_raw_diffusion" if raw else f"{prefix}_draft_diffusion"
        if prefix == "v7" and raw:
            return "v7_raw_diffusion"
        return f"{prefix}_diffusion"

    @property
    def event_type(self) -> str:
        if self.kind == "video":
            return "video_start_end" if self.detail_seed % 5 == 0 else "video_diffusion"
        return {
            "grid": "diffusion",
            "draft": "draft",
            "variation": "variation",
            "pan": "pan",
            "outpaint": "outpaint",
            "upscale": "upscale",
            "virtual_upsample": "upscale",
        }[self.kind]

    # -- records -------------------------------------------------------------------------------
    def record_v1(self) -> dict[str, Any]:
        """The ``/api/app/recent-jobs/`` shape (2022-23)."""
        rng = random.Random(self.detail_seed)
        base = LEGACY_BUCKET_BASE if self.legacy else CDN_BASE
        single = self.batch_size == 1 and self.kind != "video"
        on_discord = self.legacy or rng.random() < 0.8
        record: dict[str, Any] = {}
        if not self.legacy:
            record["_job_type"] = {
                "grid": "diffusion",
                "draft": "diffusion",
                "variation": "variation",
                "pan": "pan",
                "outpaint": "outpaint",
                "upscale": "upscale",
                "virtual_upsample": "diffusion_upsample_v5_virtual",
                "video": "video",
            }[self.kind]
            record["_parsed_params"] = _parsed_params(self.full_command)
            record["_service"] = "main"
        record.update(
            {
                "current_status": "completed",
                "enqueue_time": format_v1_time(self.enqueue_time),
                "event": {
                    "height": self.height,
                    "textPrompt": [self.prompt],
                    "imagePrompts": None if self.legacy else [],
                    "width": self.width,
                    "batchSize": self.batch_size,
                    "seedImageURL": None,
                    **(
                        {}
                        if self.legacy
                        else {
                            "textPromptWeights": [1],
                            "eventType": _V1_EVENT_TYPES[self.kind],
                            "test": False,
                        }
                    ),
                },
                "flagged": rng.random() < 0.01,
                "followed_by_user": False,
                "grid_id": None,
                "grid_num": None,
                "guild_id": _digits(rng, 19) if on_discord and rng.random() < 0.3 else None,
                "hidden": False,
                "id": self.id,
                "image_paths": [f"{base}/{path}" for path in self.media_paths],
                "is_published": rng.random() < 0.9,
                "liked_by_user": False,
                "low_priority": rng.random() < 0.2,
                "metered": False,
                "mod_hidden": False,
                "parent_grid": self.parent_grid,
                "parent_id": self.parent_id,
                "platform": "discord" if on_discord else "web",
                "platform_channel": ("DM" if rng.random() < 0.5 else "Untracked")
                if on_discord
                else None,
                "platform_channel_id": _digits(rng, 19) if on_discord else None,
                "platform_message_id": _digits(rng, 19) if on_discord else None,
                "platform_thread_id": None,
                "prompt": self.prompt,
                "ranked_by_user": False,
                "ranking_by_user": None,
                "type": "upscale" if single else "grid",
                "user_id": self.user_id,
                "username": self.username,
                "full_command": self.full_command,
                "reference_job_id": None,
                "reference_image_num": None,
            }
        )
        return record

    def record_v2(self) -> dict[str, Any]:
        """The ``/api/pg/thomas-jobs`` shape (late 2023): ISO times, no image paths."""
        record: dict[str, Any] = {
            "id": self.id,
            "enqueue_time": self.enqueue_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "job_type": self.job_type,
            "event_type": self.event_type,
            "full_command": self.full_command,
            "batch_size": self.batch_size,
            "width": self.width,
            "height": self.height,
            "parent_id": self.parent_id,
            "parent_grid": self.parent_grid,
        }
        if self.detail_seed % 2 == 0:  # only some records name their owner
            record["user_id"] = self.user_id
            record["username"] = self.username
        return record

    def record_v3(self) -> dict[str, Any]:
        """The ``/api/imagine`` shape (2024 on): no prompt, no image paths."""
        video = self.kind == "video"
        return {
            "id": self.id,
            "enqueue_time": self.enqueue_time.astimezone(UTC).isoformat(timespec="microseconds"),
            "parent_id": self.parent_id,
            "video_segments": [0] if video and self.detail_seed % 4 == 0 else None,
            "rating": None,
            "job_type": self.job_type,
            "event_type": self.event_type,
            "parent_grid": self.parent_grid,
            "full_command": self.full_command,
            "batch_size": self.batch_size,
            "width": self.width,
            "height": self.height,
            "published": self.detail_seed % 10 != 0,
            "shown": True,
            "user_hidden": False,
            "template": None,
            "vid_framecount": 121 if video else None,
        }

    def record(self, generation: int) -> dict[str, Any]:
        """The record in listing generation 1, 2 or 3."""
        if generation == 1:
            return self.record_v1()
        if generation == 2:
            return self.record_v2()
        if generation == 3:
            return self.record_v3()
        raise ValueError(f"no listing generation {generation}")


_V1_EVENT_TYPES = {
    "grid": "imagine",
    "draft": "imagine",
    "variation": "variation",
    "pan": "pan",
    "outpaint": "outpaint",
    "upscale": "upscale",
    "virtual_upsample": "upscale",
    "video": "video",
}


def _parsed_params(full_command: str) -> dict[str, Any]:
    """The ``_parsed_params`` object 2023 recent-jobs records carry."""
    params = parse_full_command(full_command).params
    version = params.get("version")
    number: float | None = None
    if isinstance(version, str):
        try:
            number = float(version)
        except ValueError:
            number = None
    elif isinstance(version, int | float) and not isinstance(version, bool):
        number = float(version)
    negatives = params.get("no")
    flags = ("creative", "fast", "hd", "test", "testp", "upanime", "upbeta", "uplight", "video")
    parsed: dict[str, Any] = {flag: bool(params.get(flag, False)) for flag in flags}
    parsed.update(
        {
            "niji": "niji" in params,
            "no": [part.strip() for part in str(negatives).split(",")] if negatives else [],
            "quality": params.get("quality", 1),
            "style": params.get("style", "") if isinstance(params.get("style"), str) else "",
            "tile": "tile" in params,
            "version": None if number is None else int(number) if number.is_integer() else number,
            "vibe": False,
        }
    )
    return dict(sorted(parsed.items()))


def _new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class MediaServing:
    """What the CDN serves for an account: media bytes derived per request from
    ``(seed, job id, index, extension)``. Subclasses say how a job is found by its id."""

    seed: int
    image_size: ImageSize

    def job(self, job_id: str) -> GeneratedJob | None:
        raise NotImplementedError

    def content_seed(self, job_id: str, index: int, variant: str = "") -> int:
        digest = hashlib.blake2b(
            f"{self.seed}:{job_id}:{index}:{variant}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big")

    def image_dimensions(self, job: GeneratedJob) -> tuple[int, int]:
        grid_side, single_side = _IMAGE_SIDES[self.image_size]
        side = grid_side if job.batch_size > 1 else single_side
        long = max(job.width, job.height)
        return max(1, job.width * side // long), max(1, job.height * side // long)

    def image_bytes(self, job: GeneratedJob, index: int, ext: str) -> bytes:
        """Image ``index`` of ``job`` encoded as ``ext`` (png, webp, jpg): same picture, any
        extension. Works for any image job; ``media_bytes`` decides what the CDN serves."""
        width, height = self.image_dimensions(job)
        hint = LARGE_SIZE_HINTS.get(ext.lower()) if self.image_size == "large" else None
        seed = self.content_seed(job.id, index)
        return images.media_for_extension(ext, seed, width, height, size_hint=hint)

    def media_bytes(self, cdn_relative_path: str) -> bytes | None:
        """The bytes the CDN serves at ``{job}/0_{i}.png|webp``, ``{job}/0_{i}_{N}_N.webp``
        or ``video/{job}/{i}.mp4``; ``None`` when there is no such file."""
        path = cdn_relative_path.lstrip("/").split("?", 1)[0]
        video = _VIDEO_PATH.match(path)
        if video:
            job = self.job(video["job"])
            index = int(video["index"])
            if job is None or not job.is_video or index >= job.batch_size:
                return None
            return images.make_mp4(self.content_seed(job.id, index, "mp4"))
        match = _IMAGE_PATH.match(path)
        if not match:
            return None
        job = self.job(match["job"])
        index = int(match["index"])
        if job is None or job.is_video or job.kind == "virtual_upsample":
            return None
        if index >= job.batch_size:
            return None
        rendition = match["rendition"]
        if rendition is not None:
            if match["ext"] != "webp" or int(rendition) not in (32, 128, 384, 640):
                return None
            width, height = self.image_dimensions(job)
            scale = int(rendition) / max(width, height)
            return images.make_webp(
                self.content_seed(job.id, index),
                max(1, round(width * scale)),
                max(1, round(height * scale)),
            )
        return self.image_bytes(job, index, match["ext"])


class Account(MediaServing):
    """A deterministic Midjourney account. Build with :meth:`generate`."""

    def __init__(
        self,
        *,
        seed: int,
        image_size: ImageSize,
        builder: _JobBuilder,
        jobs_oldest_first: list[GeneratedJob],
    ) -> None:
        if image_size not in _IMAGE_SIDES:
            raise ValueError(f"image_size must be 'small' or 'large', not {image_size!r}")
        self.seed = seed
        self.user_id = builder.user_id
        self.username = builder.username
        self.image_size: ImageSize = image_size
        self._builder = builder
        self._lock = threading.Lock()
        self._jobs: list[GeneratedJob] = list(reversed(jobs_oldest_first))
        self._by_id = {job.id: job for job in self._jobs}

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        seed: int,
        n_jobs: int,
        *,
        user_id: str | None = None,
        username: str | None = "testartist",
        start: datetime = DEFAULT_START,
        image_size: ImageSize = "small",
    ) -> Account:
        """``n_jobs`` jobs of mixed kinds spread over about three years from ``start``."""
        builder = _account_builder(seed, n_jobs, user_id, username, start)
        jobs = [builder.next_job(index / max(1, n_jobs)) for index in range(n_jobs)]
        return cls(seed=seed, image_size=image_size, builder=builder, jobs_oldest_first=jobs)

    @staticmethod
    def stream(
        seed: int,
        n_jobs: int,
        *,
        user_id: str | None = None,
        username: str | None = "testartist",
        start: datetime = DEFAULT_START,
    ) -> Iterator[GeneratedJob]:
        """The jobs :meth:`generate` makes with the same arguments, oldest first, drawn one at
        a time: a benchmark writing a million of them into a vault holds none (an Account
        keeps every job, gigabytes at a million)."""
        builder = _account_builder(seed, n_jobs, user_id, username, start)
        for index in range(n_jobs):
            yield builder.next_job(index / max(1, n_jobs))

    def add_jobs(self, count: int) -> list[GeneratedJob]:
        """Create ``count`` jobs newer than every existing one (as if made during a sync).

        Deterministic: the same sequence of calls on the same account yields the same jobs.
        """
        with self._lock:
            new = [self._builder.next_job(1.0) for _ in range(count)]
            self._jobs[0:0] = list(reversed(new))
            for job in new:
                self._by_id[job.id] = job
        return list(reversed(new))

    # -- queries -------------------------------------------------------------------------------
    @property
    def jobs(self) -> list[GeneratedJob]:
        """All jobs, newest first (a snapshot)."""
        with self._lock:
            return list(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def job(self, job_id: str) -> GeneratedJob | None:
        return self._by_id.get(job_id)

    def image_jobs(self) -> list[GeneratedJob]:
        """Jobs the v1 and v2 listings show: everything but videos, newest first."""
        return [job for job in self.jobs if not job.is_video]

    def served_paths(self) -> Iterable[str]:
        """Every CDN-relative full-size path the account serves (PNG and MP4)."""
        for job in self.jobs:
            yield from job.own_media_paths


def _account_builder(
    seed: int, n_jobs: int, user_id: str | None, username: str | None, start: datetime
) -> _JobBuilder:
    if n_jobs < 0:
        raise ValueError("n_jobs must not be negative")
    rng = random.Random(f"account:{seed}")
    owner = user_id or _new_id(random.Random(f"user:{seed}"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return _JobBuilder(rng, owner, username, start, ACCOUNT_SPAN / max(1, n_jobs))


class _CommonFields(TypedDict):
    id: str
    enqueue_time: datetime
    user_id: str
    username: str | None
    legacy: bool
    detail_seed: int


class _JobBuilder:
    """Draws jobs one at a time, oldest first, keeping recent four-image jobs as parents."""

    def __init__(
        self,
        rng: random.Random,
        user_id: str,
        username: str | None,
        start: datetime,
        mean_gap: timedelta,
    ) -> None:
        self.rng = rng
        self.user_id = user_id
        self.username = username
        self.moment = start
        self.mean_gap_seconds = max(0.002, mean_gap.total_seconds())
        self.parents: list[GeneratedJob] = []

    def _advance(self) -> datetime:
        gap = self.rng.expovariate(1 / self.mean_gap_seconds)
        # Strictly increasing times keep "at or before fromDate" unambiguous.
        self.moment += timedelta(microseconds=max(1000, int(gap * 1_000_000)))
        return self.moment

    def next_job(self, fraction: float) -> GeneratedJob:
        rng = self.rng
        moment = self._advance()
        job_id = _new_id(rng)
        detail_seed = rng.getrandbits(32)
        username = self.username if rng.random() > 0.02 else None
        legacy = fraction < 0.1
        roll = rng.random()
        parent = rng.choice(self.parents) if self.parents else None
        common = _CommonFields(
            id=job_id,
            enqueue_time=moment,
            user_id=self.user_id,
            username=username,
            legacy=legacy,
            detail_seed=detail_seed,
        )
        if parent is not None and roll < 0.45:
            job = child_job(rng, parent, rng.randrange(4), fraction, common)
        else:
            job = root_job(rng, fraction, common)
        if job.kind in FOUR_IMAGE_KINDS:
            self.parents.append(job)
            if len(self.parents) > 40:
                self.parents.pop(0)
        return job


def root_job(rng: random.Random, fraction: float, common: _CommonFields) -> GeneratedJob:
    """A fresh grid (or draft) job ``fraction`` of the way through the account's history."""
    generation = generation_at(fraction, rng)
    draft = generation.has_draft and rng.random() < 0.25
    parameters, aspect = make_parameters(rng, generation, draft=draft)
    width, height = dimensions(aspect, generation.base_side)
    return GeneratedJob(
        kind="draft" if draft else "grid",
        generation=generation,
        prompt=make_prompt(rng),
        parameters=parameters,
        width=width,
        height=height,
        batch_size=4,
        parent_id=None,
        parent_grid=None,
        **common,
    )


def child_job(
    rng: random.Random,
    parent: GeneratedJob,
    grid: int,
    fraction: float,
    common: _CommonFields,
    *,
    video: bool | None = None,
) -> GeneratedJob:
    """A job made from image ``grid`` of ``parent``. ``video`` forces (True) or forbids (False)
    a video; ``None`` lets the draw decide, late in the account's history."""
    generation = parent.generation
    roll = rng.random()
    kind: JobKind
    if video or (video is None and fraction >= 0.85 and roll < 0.05):
        kind = "video"
    elif roll < 0.6:
        virtual = generation.has_virtual_upsample and rng.random() < 0.75
        kind = "virtual_upsample" if virtual else "upscale"
    elif roll < 0.8:
        kind = "variation"
    elif roll < 0.9:
        kind = "pan"
    else:
        kind = "outpaint"
    width, height, parameters = parent.width, parent.height, parent.parameters
    prompt = parent.prompt
    if kind == "video":
        motion = rng.choice(("low", "high"))
        prompt = f"{CDN_BASE}/{parent.id}/0_{grid}.png {parent.prompt}"
        parameters = f"--motion {motion} --video 1"
        width, height = parent.width * 13 // 16 // 8 * 8, parent.height * 13 // 16 // 8 * 8
    elif kind == "pan":
        width = parent.width + parent.width // 2
    elif kind == "outpaint":
        parameters = f"{parent.parameters} --zoom 2".strip()
    batch = 1 if kind in ("upscale", "virtual_upsample") else 4
    return GeneratedJob(
        kind=kind,
        generation=generation,
        prompt=prompt,
        parameters=parameters,
        width=width,
        height=height,
        batch_size=batch,
        parent_id=parent.id,
        parent_grid=grid,
        **common,
    )
