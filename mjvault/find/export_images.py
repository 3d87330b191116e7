"""``mjvault export --images DIR``: converted, resized copies of a selection's images.

Each image of the matching jobs is decoded once, turned upright (its EXIF orientation
applied), shrunk to at most ``max_size`` pixels on its long side (never enlarged) and encoded
as WebP, AVIF, JPEG or PNG, its colour profile (ICC) kept. With ``embed`` the job's prompt and
parameters go inside the file: PNG ``iTXt`` chunks (:func:`mjvault.views.embed.metadata_fields`,
``Description`` first, as ``checkout --embed-metadata`` writes them), an XMP packet
(:func:`mjvault.views.embed.xmp_packet`) in WebP, AVIF and JPEG, and EXIF
``ImageDescription`` (UTF-8, as exiftool and most viewers read it) in all three. The files
are fresh encodes, so Pillow's own ``pnginfo=``/``xmp=``/``exif=`` save arguments carry the
metadata; the splicing in :mod:`mjvault.views.embed` is for files kept byte for byte.

The vault is only read. Decoding and encoding run on worker threads with at most ``window``
images per worker in flight (memory bounded whatever the selection's size); the calling
thread writes the files (beside their name, then renamed: a kill leaves whole files) through
the same guarded writer as ``export --all`` (no link or file in the way is written through).

Names come from a view template (:mod:`mjvault.views.template`, :data:`DEFAULT_IMAGE_TEMPLATE`)
holding ``{job_id}`` and ``{index}`` whole, so every image has its own; ``{ext}`` is the
output format's extension (appended when the template has none). A template whose own text
climbs out of DIR (``..``, an absolute path, a drive) is refused before anything is written;
field values can never make directories and every rendered path goes through
:func:`mjvault.views.paths.safe_relpath`.

**Run again, nothing is redone.** ``DIR/.mjvault-images.sqlite`` holds a row per written file:
its path, a key (source image id, the record's id when metadata is embedded, and the
settings: format, quality, size, optimisation, metadata version) and the file's size and
mtime as written. An image is skipped when its path's row has the same key and the file there still
has that size and mtime; otherwise it is made again (another setting, a new record, a file
changed or removed by hand).
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound, UsageError
from mjvault.find.export import _entries as selected_entries
from mjvault.find.export_all import ExportProblem, _Files
from mjvault.model import Job
from mjvault.reports import Report
from mjvault.store.codec import media_kind
from mjvault.views.embed import metadata_fields, xmp_packet
from mjvault.views.paths import disambiguation_suffix, safe_relpath, with_suffix_before_ext
from mjvault.views.template import DEFAULT_TEMPLATE, Template

if TYPE_CHECKING:
    from PIL import Image

    from mjvault.vault import Vault

IMAGE_FORMATS = ("webp", "avif", "jpeg", "png")
EXTENSIONS = {"webp": "webp", "avif": "avif", "jpeg": "jpg", "png": "png"}
PIL_FORMATS = {"webp": "WEBP", "avif": "AVIF", "jpeg": "JPEG", "png": "PNG"}
DEFAULT_IMAGE_TEMPLATE = DEFAULT_TEMPLATE
DEFAULT_QUALITY = 85
MAX_SIZE_LIMIT = 65535  # JPEG's largest side: a larger --max-size would shrink nothing more
STATE_FILE = ".mjvault-images.sqlite"
# Bumped when the bytes written for the same settings change (new fields, another encoder
# effort): files of an older version are then made again.
METADATA_VERSION = 1
WINDOW = 4  # images in flight per worker: each holds a decoded picture (~5 MB at 1456x816)
COMMIT_EVERY = 256  # rows written before the state is committed
PROBLEMS_LISTED = 100
# EXIF tags: ImageDescription, Software, Orientation.
_DESCRIPTION, _SOFTWARE, _ORIENTATION = 0x010E, 0x0131, 0x0112
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class ImageSettings:
    """What a converted copy is: the same settings give the same file (and a rerun skips it)."""

    fmt: str = "webp"
    quality: int = DEFAULT_QUALITY
    max_size: int | None = None
    embed: bool = False
    optimize: bool = False

    def __post_init__(self) -> None:
        check_settings(self.fmt, self.quality, self.max_size)

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.fmt]

    @property
    def tag(self) -> str:
        """The settings as text, part of each written file's key in the state."""
        quality = "-" if self.fmt == "png" else str(self.quality)  # PNG is lossless
        return (
            f"{self.fmt}/q{quality}/max{self.max_size or '-'}"
            f"/opt{int(self.optimize)}/meta{METADATA_VERSION if self.embed else 0}"
        )


def check_settings(fmt: str, quality: int, max_size: int | None) -> None:
    """One line for a setting no encoder takes, before any vault is opened."""
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"image format {fmt!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality}: give a number from 1 to 100")
    if max_size is not None and not 1 <= max_size <= MAX_SIZE_LIMIT:
        raise UsageError(f"--max-size {max_size}: give pixels from 1 to {MAX_SIZE_LIMIT}")
    if fmt == "avif" and not _has_avif():
        raise UsageError(
            "this Pillow cannot write AVIF (no AVIF plugin): upgrade Pillow "
            "(`pip install -U pillow`) or choose --format webp"
        )


def _has_avif() -> bool:
    from PIL import features  # Pillow is loaded when images are, not at start-up

    return bool(features.check("avif"))


def image_template(text: str) -> Template:
    """The export's name template: a view template naming each image on its own and never
    climbing out of DIR by its own text."""
    template = Template.parse(text)
    for name in ("job_id", "index"):
        whole = any(
            getattr(s, "name", None) == name and getattr(s, "arg", "") is None
            for s in template.segments
        )
        if not whole:
            raise UsageError(
                f"template {text!r} must hold {{{name}}} (whole), so every image has its own name"
            )
    raw = template.render(_SAMPLE_JOB, 0, "png")
    parts = re.split(r"[/\\]", raw)
    if (
        raw.startswith(("/", "\\", "~"))
        or _DRIVE.match(raw)
        or any(part in (".", "..") for part in parts)
    ):
        raise UsageError(
            f"template {text!r} leaves the export folder: write a path inside it, "
            "without '..' or a leading '/'"
        )
    return template


_SAMPLE_JOB = Job(
    id="sample-job",
    enqueue_time=datetime(2024, 2, 29, 13, 45, 30, tzinfo=UTC),
    type="imagine",
    job_type=None,
    event_type=None,
    prompt="a red fox",
    full_command="a red fox",
)


@dataclass
class ExportImagesReport(Report):
    directory: Path
    settings: ImageSettings
    template: str
    jobs: int = 0
    images_written: int = 0
    images_kept: int = 0  # already there with the same settings (a rerun)
    images_missing: int = 0  # the vault holds no file for them
    not_images: int = 0  # videos and what Pillow cannot read
    bytes_read: int = 0
    bytes_written: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_LISTED:
            self.problems.append(text)

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the image settings are flattened in under their option names.
        s = self.settings
        return {
            "directory": os.fspath(self.directory),
            "format": s.fmt,
            "quality": s.quality,
            "max_size": s.max_size,
            "embed_metadata": s.embed,
            "optimize": s.optimize,
            "template": self.template,
            "jobs": self.jobs,
            "images_written": self.images_written,
            "images_kept": self.images_kept,
            "images_missing": self.images_missing,
            "not_images": self.not_images,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "problems": self.problems,
            "problem_count": self.problem_count,
        }


# -- one image --------------------------------------------------------------------------------


class EncodeFailed(MjvaultError):
    """The image was read but the chosen format cannot hold it (a WebP side over 16383 px,
    a JPEG over 65500, an AVIF the encoder refuses): a problem of the export, not a
    file that is no image."""


def convert(data: bytes, settings: ImageSettings, job: Job | None = None) -> bytes | None:
    """``data`` (an image file) converted as ``settings`` say; None when Pillow cannot
    read it; :class:`EncodeFailed` when it reads but cannot be written in the chosen
    format. ``job``: whose prompt and parameters go inside when ``settings.embed``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as source:
            icc = source.info.get("icc_profile")
            if settings.max_size is not None:
                # JPEG: decoded at a reduced scale (still at least max_size), much faster.
                source.draft("RGB", (settings.max_size, settings.max_size))
            source.load()  # decoded here, so a failure below is the encoder's
            image = ImageOps.exif_transpose(source)  # upright; drops the orientation tag
            exif = image.getexif()
            if settings.max_size is not None and max(image.size) > settings.max_size:
                image.thumbnail(
                    (settings.max_size, settings.max_size), Image.Resampling.LANCZOS, 3.0
                )
            was_cmyk = image.mode == "CMYK"
            image = _mode_for(image, settings.fmt)
            if was_cmyk and image.mode != "CMYK":
                icc = None  # a CMYK profile would misname the converted RGB pixels
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    out = io.BytesIO()
    try:
        image.save(out, PIL_FORMATS[settings.fmt], **_save_args(settings, job, icc, exif))
    except Exception as exc:  # encoders raise OSError, ValueError, RuntimeError, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        width, height = image.size
        raise EncodeFailed(
            f"cannot be written as {settings.fmt} ({width}×{height} px): {text[:200]}"
        ) from None
    return out.getvalue()


_DEEP_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey (a 32-bit "I" holds it too)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grey scaled to 8 bits ("L"): Pillow's convert clips every value over 255 to
    white, so a 16-bit PNG came out a white page."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image).astype(np.int64)
    scaled = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _mode_for(image: Image.Image, fmt: str) -> Image.Image:
    if image.mode in _DEEP_GREY and not (fmt == "png" and image.mode == "I;16"):
        image = _eight_bit(image)  # PNG keeps 16-bit grey as it is
    alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if fmt == "jpeg":
        if image.mode in ("RGB", "L", "CMYK"):
            return image
        if not alpha:
            return image.convert("RGB")
        # JPEG has no alpha: transparent parts on white, as a browser shows them.
        rgba = image.convert("RGBA")
        from PIL import Image

        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if fmt == "png" and image.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        return image
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if alpha else "RGB")


def _save_args(
    settings: ImageSettings, job: Job | None, icc: bytes | None, exif: Image.Exif
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if icc:
        args["icc_profile"] = icc
    fmt, quality, optimize = settings.fmt, settings.quality, settings.optimize
    if fmt == "jpeg":
        args.update(quality=quality, optimize=optimize, progressive=optimize)
    elif fmt == "webp":
        args.update(quality=quality, method=6 if optimize else 4)
    elif fmt == "avif":
        args.update(quality=quality, speed=4 if optimize else 6)
    else:
        args.update(optimize=optimize, compress_level=9 if optimize else 6)
    embed = settings.embed and job is not None
    if embed:
        assert job is not None
        fields = metadata_fields(job)
        if fmt == "png":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("Description", fields["prompt"])
            for key, value in fields.items():
                info.add_itxt(key, value)
            info.add_itxt("Software", "mjvault")
            args["pnginfo"] = info
        else:
            args["xmp"] = xmp_packet(job)
            # ASCII by the standard, UTF-8 in practice: exiftool and viewers read it so.
            exif[_DESCRIPTION] = fields["prompt"].encode("utf-8")
            exif[_SOFTWARE] = "mjvault"
    exif.pop(_ORIENTATION, None)  # the pixels are upright now
    if len(exif):
        args["exif"] = exif  # a camera's data kept; in PNG never the prompt (iTXt has it)
    return args


# -- the state of DIR -------------------------------------------------------------------------


class _State:
    """DIR's record of what it holds: path -> (key, size, mtime_ns) of each file written."""

    def __init__(self, path: str, mode: int) -> None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            # SQLite would follow a link planted there and write wherever it points.
            raise ExportProblem(f"{path} is not a regular file: the export does not use it")
        try:
            self.db = self._open(path, mode)
        except sqlite3.DatabaseError:
            # Damaged: it only saves work, so it starts again (every image is made anew).
            os.unlink(path)
            self.db = self._open(path, mode)
        self.run = time.time_ns()
        self.pending = 0

    @staticmethod
    def _open(path: str, mode: int) -> sqlite3.Connection:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, mode)
        os.close(fd)
        db = sqlite3.connect(path)
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, key TEXT NOT NULL,"
                " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, run INTEGER NOT NULL)"
            )
            db.execute("SELECT key, size, mtime_ns, run FROM files LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def get(self, rel: str) -> tuple[str, int, int, int] | None:
        row = self.db.execute(
            "SELECT key, size, mtime_ns, run FROM files WHERE path = ?", (rel,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def put(self, rel: str, key: str, size: int, mtime_ns: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            (rel, key, size, mtime_ns, self.run),
        )
        self.pending += 1
        if self.pending >= COMMIT_EVERY:
            self.commit()

    def mark(self, rel: str) -> None:
        """``rel`` is this run's (kept as it is)."""
        self.db.execute("UPDATE files SET run = ? WHERE path = ?", (self.run, rel))
        self.pending += 1
        if self.pending >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        self.db.commit()
        self.pending = 0

    def close(self) -> None:
        self.commit()
        self.db.close()


def _on_disk(files: _Files, rel: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of the regular file (not a link) at ``rel``, else None."""
    try:
        info = os.lstat(files.path(rel))
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None


# -- the export -------------------------------------------------------------------------------


@dataclass
class _Task:
    rel: str
    key: str
    job_id: str
    index: int
    future: Future[tuple[bytes | None, int]]


def export_images(
    vault: Vault,
    directory: Path,
    settings: ImageSettings,
    *,
    query: str | None = None,
    template: str = DEFAULT_IMAGE_TEMPLATE,
    workers: int | None = None,
    window: int = WINDOW,
    on_image: Callable[[], None] | None = None,
) -> ExportImagesReport:
    """Write a converted copy of every image of the jobs matching ``query`` into
    ``directory``; images already there with the same settings are kept."""
    names = image_template(template)
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    vault_root = vault.path.resolve()
    if directory == vault_root or vault_root in directory.parents:
        raise UsageError("write the export outside the vault")
    mode = 0o600 if vault.encrypted else 0o644  # an encrypted vault's pictures: yours alone
    directory.mkdir(parents=True, exist_ok=True, mode=0o700 if vault.encrypted else 0o777)
    files = _Files(directory, mode)
    report = ExportImagesReport(directory=directory, settings=settings, template=template)
    try:
        state = _State(os.path.join(directory, STATE_FILE), mode)
    except ExportProblem as exc:
        raise UsageError(str(exc)) from None
    # As many as the cores (Pillow lets go of the GIL to decode, resize and encode); the
    # calling thread only names, looks up and writes, so none is kept back for it.
    count = workers or max(1, min(4, os.cpu_count() or 2))
    pool = ThreadPoolExecutor(count, thread_name_prefix="export-images")
    pending: deque[_Task] = deque()
    try:
        for job, record_id, images in _jobs(vault, query, report):
            render = names.bind(job)
            for index, object_id in enumerate(images):
                if object_id is None:
                    report.images_missing += 1
                    _tick(on_image)
                    continue
                raw = render(index, settings.ext)
                if "ext" not in names.field_names:
                    raw = f"{raw}.{settings.ext}"
                key = f"{object_id} {record_id if settings.embed else '-'} {settings.tag}"
                claimed = _claim(files, state, raw, job.id, index, key)
                if claimed is None:
                    report.problem(f"job {job.id} image {index}: every name it could take is taken")
                    _tick(on_image)
                    continue
                rel, kept = claimed
                if kept:
                    report.images_kept += 1
                    _tick(on_image)
                    continue
                future = pool.submit(_make, vault, object_id, settings, job)
                pending.append(_Task(rel, key, job.id, index, future))
                while len(pending) >= window * count:
                    _write_one(files, state, pending.popleft(), report, on_image)
        while pending:
            _write_one(files, state, pending.popleft(), report, on_image)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        state.close()
    return report


def _tick(on_image: Callable[[], None] | None) -> None:
    if on_image is not None:
        on_image()


def _jobs(
    vault: Vault, query: str | None, report: ExportImagesReport
) -> Iterator[tuple[Job, str, tuple[str | None, ...]]]:
    for entry in selected_entries(vault, query):
        report.jobs += 1
        try:
            job = vault.job(entry)
        except (ObjectNotFound, CorruptObject, IntegrityError, MjvaultError) as exc:
            report.problem(f"job {entry.job_id}: record unreadable ({exc})")
            continue
        yield job, entry.record, tuple(entry.images)


def _claim(
    files: _Files, state: _State, raw: str, job_id: str, index: int, key: str
) -> tuple[str, bool] | None:
    """The path image ``index`` of ``job_id`` goes to, and whether the file there is already
    this image with these settings; None when every name it could take is another image's.

    Two images whose names are one once made safe (``a:b`` and ``a_b``) never share a file:
    the second takes a suffix of its job id and index. A path is claimed for this run at
    once (before the image is made), so an image still in flight keeps its name.
    """
    base = safe_relpath(raw)
    for candidate in (
        base,
        safe_relpath(with_suffix_before_ext(base, disambiguation_suffix(job_id, index))),
        safe_relpath(with_suffix_before_ext(base, disambiguation_suffix(job_id, index, full=True))),
    ):
        row = state.get(candidate)
        if row is not None and row[3] == state.run:
            continue  # another image of this run
        if row is not None and row[0] == key and _on_disk(files, candidate) == (row[1], row[2]):
            state.mark(candidate)
            return candidate, True
        state.put(candidate, key, -1, -1)  # no file matches -1: a kill before it is made again
        return candidate, False
    return None


def _make(
    vault: Vault, object_id: str, settings: ImageSettings, job: Job
) -> tuple[bytes | None, int]:
    try:
        data = vault.read_object(object_id)
    except (ObjectNotFound, CorruptObject, IntegrityError, OSError) as exc:
        raise _Unreadable(str(exc)) from exc
    kind = media_kind(data[:16])
    if kind is None or kind == "mp4":
        return None, len(data)
    return convert(data, settings, job), len(data)


class _Unreadable(MjvaultError):
    pass


def _write_one(
    files: _Files,
    state: _State,
    task: _Task,
    report: ExportImagesReport,
    on_image: Callable[[], None] | None,
) -> None:
    try:
        made, read = task.future.result()
    except (_Unreadable, EncodeFailed) as exc:
        report.problem(f"job {task.job_id} image {task.index}: {exc}")
        _tick(on_image)
        return
    report.bytes_read += read
    if made is None:
        report.not_images += 1
        _tick(on_image)
        return
    try:
        _sha, size = files.write(task.rel, iter([made]))
    except ExportProblem as exc:
        report.problem(str(exc))
        _tick(on_image)
        return
    written = _on_disk(files, task.rel)
    if written is not None:
        state.put(task.rel, task.key, written[0], written[1])
    report.images_written += 1
    report.bytes_written += size
    _tick(on_image)
