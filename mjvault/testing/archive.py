"""Folders as the original midjourney-archiver scripts left them, generated from an Account.

Layout (one folder per day of ``enqueue_time``)::

    YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>.json         raw recent-jobs record
    YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>.prompt.txt   "Prompt:" / "Full command:"
    YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>.png          a single-image job
    YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>-1.png … -4   a grid's four images

The JSON is what those scripts wrote (``json.dump(record, f, indent=2)``: ASCII escapes, no
final newline); the prompt file wraps at 80 columns with a four-space indent, as theirs did.
Most images are PNG; some are WebP or JPEG, as users converted them. File times are set to the
job's enqueue time, so the same arguments give the same tree down to the metadata.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mjvault.errors import UsageError
from mjvault.testing.accounts import Account, GeneratedJob, ImageSize, MediaServing
from mjvault.testing.scaled import VIDEO_EVERY, ScaledAccount

_PROMPT_WRAPPER = textwrap.TextWrapper(
    width=80,
    initial_indent=" " * 4,
    subsequent_indent=" " * 4,
    break_long_words=False,
    break_on_hyphens=False,
)

_WINDOW = 16  # jobs rendered ahead of the writer

LOGIN_PAGE_HTML = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Midjourney</title></head><body><div id="__next"><main><h1>Sign in to Midjourney</h1>
<a href="/api/auth/signin">Log in</a></main></div></body></html>
"""


@dataclass
class ArchiveSummary:
    """What :func:`write_sample_archive` wrote."""

    root: Path
    jobs: int = 0
    images: int = 0
    bytes: int = 0
    files: int = 0
    job_ids: list[str] = field(default_factory=list)
    # relative path -> what is wrong with it (only with ``with_problems``)
    problems: dict[str, str] = field(default_factory=dict)
    # Off for a million-job archive: the list would be the only thing that grows.
    keep_job_ids: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "jobs": self.jobs,
            "images": self.images,
            "bytes": self.bytes,
            "files": self.files,
            "problems": dict(self.problems),
        }


def job_stem(job: GeneratedJob) -> str:
    """``20230526-073842_<job id>``: the scripts' file name stem for a job."""
    return f"{job.enqueue_time.astimezone(UTC).strftime('%Y%m%d-%H%M%S')}_{job.id}"


def job_folder(moment: datetime) -> Path:
    return Path(moment.astimezone(UTC).strftime("%Y/%Y-%m/%Y-%m-%d"))


def prompt_text(record: dict[str, object]) -> str:
    prompt = str(record.get("prompt") or "")
    command = str(record.get("full_command") or "")
    return (
        "Prompt:\n"
        + _PROMPT_WRAPPER.fill(prompt)
        + "\n"
        + "\nFull command:\n"
        + _PROMPT_WRAPPER.fill(command)
        + "\n"
    )


def image_extension(job: GeneratedJob) -> str:
    """Mostly PNG as downloaded; some WebP and JPEG, as users converted them."""
    roll = random.Random(f"ext:{job.id}").random()
    return "png" if roll < 0.8 else "webp" if roll < 0.95 else "jpg"


def image_files(account: MediaServing, job: GeneratedJob) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of the images the scripts saved beside ``job``'s JSON."""
    ext = image_extension(job)
    stem = job_stem(job)
    if job.kind == "virtual_upsample":
        parent = account.job(job.parent_id or "")
        if parent is None:
            return []
        sources = [(parent, job.parent_grid or 0)]
    else:
        sources = [(job, index) for index in range(job.batch_size)]
    files = []
    for position, (owner, index) in enumerate(sources):
        suffix = "" if len(sources) == 1 else f"-{position + 1}"
        files.append((f"{stem}{suffix}.{ext}", account.image_bytes(owner, index, ext)))
    return files


def _write(
    path: Path,
    data: bytes,
    moment: datetime,
    summary: ArchiveSummary,
    made: set[Path] | None = None,
) -> None:
    # ``made`` remembers the day folders already there: one mkdir per day, not per file.
    if made is None or path.parent not in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(path.parent)
    path.write_bytes(data)
    stamp = moment.timestamp()
    os.utime(path, (stamp, stamp))
    summary.files += 1
    summary.bytes += len(data)


def write_sample_archive(
    out_dir: Path,
    *,
    jobs: int,
    seed: int,
    large: bool = False,
    with_problems: bool = False,
    account: Account | None = None,
) -> ArchiveSummary:
    """Write an archive of ``jobs`` image jobs of ``Account.generate(seed, …)`` to ``out_dir``.

    ``out_dir`` must be absent or empty: leftovers would break "same arguments, same tree".
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} exists and is not an empty directory")
    size: ImageSize = "large" if large else "small"
    if account is None:
        # Video jobs never reached the v1 listing the scripts read; ask for a few extra so
        # the archive holds ``jobs`` image jobs.
        account = Account.generate(seed, jobs + jobs // 20 + 5, image_size=size)
    listed = account.image_jobs()[:jobs]
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ArchiveSummary(root=out_dir)
    # Encoders (zlib, libwebp, libjpeg) release the GIL: a few threads overlap them. ``map``
    # keeps the order, so the writes and the summary stay deterministic.
    # Rendering a bounded window at a time keeps a large archive out of memory.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(listed), _WINDOW):
            window = listed[start : start + _WINDOW]
            rendered = pool.map(lambda job: image_files(account, job), window)
            for job, files in zip(window, rendered, strict=True):
                _write_job(out_dir, job, files, summary)
    if with_problems:
        _write_problems(out_dir, account, listed, seed, summary)
    return summary


def _write_job(
    out_dir: Path,
    job: GeneratedJob,
    files: list[tuple[str, bytes]],
    summary: ArchiveSummary,
    made: set[Path] | None = None,
) -> None:
    record = job.record_v1()
    folder = out_dir / job_folder(job.enqueue_time)
    stem = job_stem(job)
    when = job.enqueue_time
    _write(folder / f"{stem}.json", json.dumps(record, indent=2).encode(), when, summary, made)
    _write(folder / f"{stem}.prompt.txt", prompt_text(record).encode(), when, summary, made)
    for name, data in files:
        _write(folder / name, data, when, summary, made)
        summary.images += 1
    summary.jobs += 1
    if summary.keep_job_ids:
        summary.job_ids.append(job.id)


def scaled_account_for_archive(seed: int, jobs: int) -> ScaledAccount:
    """The scaled account whose image jobs (videos never reached the scripts' listing) number
    ``jobs``."""
    size = jobs + jobs // (VIDEO_EVERY - 1)
    while size - size // VIDEO_EVERY < jobs:
        size += 1
    return ScaledAccount(seed, size)


def write_scaled_archive(
    out_dir: Path, *, jobs: int, seed: int, workers: int = 1
) -> ArchiveSummary:
    """An archive of ``jobs`` image jobs of ``ScaledAccount(seed, …)``, in the layout of
    :func:`write_sample_archive`, written as generated: memory stays flat at a million jobs.

    ``workers`` processes each write a share of the jobs (oldest first within a share); the
    tree is the same whatever their number. Job ids are not collected (``keep_job_ids``).
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} exists and is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ArchiveSummary(root=out_dir, keep_job_ids=False)
    shares = max(1, min(workers, jobs // 100))
    bounds = [jobs * share // shares for share in range(shares + 1)]
    ranges = list(zip(bounds, bounds[1:], strict=False))
    if shares == 1:
        parts = [_write_scaled_share(out_dir, seed, jobs, *ranges[0])]
    else:
        with ProcessPoolExecutor(max_workers=shares) as pool:
            futures = [
                pool.submit(_write_scaled_share, out_dir, seed, jobs, first, stop)
                for first, stop in ranges
            ]
            parts = [future.result() for future in futures]
    for part in parts:
        summary.jobs += part.jobs
        summary.images += part.images
        summary.files += part.files
        summary.bytes += part.bytes
    return summary


def _write_scaled_share(
    out_dir: Path, seed: int, jobs: int, first: int, stop: int
) -> ArchiveSummary:
    """Write image jobs ``first`` to ``stop`` (0 is the oldest) of the scaled archive."""
    account = scaled_account_for_archive(seed, jobs)
    listed = account.image_jobs()
    summary = ArchiveSummary(root=out_dir, keep_job_ids=False)
    made: set[Path] = set()  # day folders: about a thousand over three years
    for ordinal in range(first, stop):
        job = listed[len(listed) - 1 - ordinal]
        _write_job(out_dir, job, image_files(account, job), summary, made)
    return summary


def _write_problems(
    out_dir: Path,
    account: Account,
    listed: list[GeneratedJob],
    seed: int,
    summary: ArchiveSummary,
) -> None:
    """The damage real archives carry, each under a fresh job id that no listed job has."""
    rng = random.Random(f"problems:{seed}")
    anchor = listed[len(listed) // 2] if listed else None
    moment = anchor.enqueue_time if anchor else datetime(2023, 1, 1, tzinfo=UTC)
    folder = job_folder(moment)
    stem_time = moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")

    def stem() -> str:
        return f"{stem_time}_{uuid.UUID(int=rng.getrandbits(128), version=4)}"

    def add(name: str, data: bytes, problem: str) -> None:
        relative = folder / name
        _write(out_dir / relative, data, moment, summary)
        summary.problems[relative.as_posix()] = problem

    orphan_image = account.image_bytes(anchor, 0, "png") if anchor else b""
    add(f"{stem()}.png", orphan_image, "image without a JSON record beside it")
    broken = json.dumps(anchor.record_v1() if anchor else {"id": "x"}, indent=2).encode()
    add(f"{stem()}.json", broken[: len(broken) // 2], "JSON record cut off: not valid JSON")
    add(f"{stem()}.json", LOGIN_PAGE_HTML.encode(), "an HTML login page saved as .json")
    add(f"{stem()}.json", b"", "empty JSON file")
    docx = b"PK\x03\x04\x14\x00\x06\x00" + rng.randbytes(600)
    add("notes.docx", docx, "a file of unknown kind")
