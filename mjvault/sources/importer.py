"""Import folders written by the original midjourney-archiver scripts.

Layout: ``YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>.json`` (the raw API record),
``<stem>.prompt.txt`` beside it, and images ``<stem>.png`` or ``<stem>-1.png … -4.png``
(``.webp`` and ``.jpg`` too). Lossless (the JSON is kept byte for byte) and idempotent
(importing twice adds nothing). Whatever cannot be imported is reported, never dropped in
silence, and never stops the rest.

Files read before are recognised by the stat cache (mjvault/index/statcache.py): a re-import
of an unchanged archive stats every file and reads none.

A job id found in two records (a copied folder) is imported once: the record first in path
order (folders and names sorted, as the walk reads them) is kept. A later copy with the same
bytes is counted in ``records_repeated``; one with different bytes is reported as a conflict
naming both paths, and neither it nor its images are imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.index.statcache import IMAGE, RECORD, Row, StatCache, short_key
from mjvault.integrity import exclusions
from mjvault.model import Job, RecordError, job_from_json
from mjvault.reports import Report
from mjvault.store.codec import media_kind
from mjvault.vault import Vault
from mjvault.writer import ArchiveWriter, WriteStats

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset({".png", ".webp", ".jpg", ".jpeg", ".gif", ".mp4"})
PROMPT_SUFFIX = ".prompt.txt"


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


@dataclass
class ImportReport(Report):
    source: str
    records_found: int = 0  # .json files, readable or not
    jobs_seen: int = 0  # distinct jobs read from them
    records_repeated: int = 0  # byte-identical copies of a record already read
    images_seen: int = 0
    images_missing: int = 0
    bytes_read: int = 0  # counted where files are read: 0 when the stat cache vouched for all
    records_unchanged: int = 0  # records and images the stat cache vouched for, not read
    images_unchanged: int = 0
    # Records imported as they are whose claims were bounded (a batch_size no job can have).
    jobs_malformed: int = 0
    jobs_forgotten: int = 0  # records of jobs on the list of forgotten jobs: not imported
    problems: list[Problem] = field(default_factory=list)
    stats: WriteStats = field(default_factory=WriteStats)
    snapshot: str | None = None

    def to_json(self) -> dict[str, object]:
        # Its own shape: the writer's figures are flattened in, the snapshot comes second.
        return {
            "source": self.source,
            "snapshot": self.snapshot,
            "records_found": self.records_found,
            "jobs_seen": self.jobs_seen,
            "records_repeated": self.records_repeated,
            "images_seen": self.images_seen,
            "images_missing": self.images_missing,
            "bytes_read": self.bytes_read,
            "records_unchanged": self.records_unchanged,
            "images_unchanged": self.images_unchanged,
            "jobs_malformed": self.jobs_malformed,
            "jobs_forgotten": self.jobs_forgotten,
            **self.stats.to_json(),
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


@dataclass
class _Group:
    """One job's files in one directory."""

    json_path: str | None = None
    images: dict[int, str] = field(default_factory=dict)
    extra_images: list[str] = field(default_factory=list)


def _classify(directory: str, names: list[str]) -> tuple[dict[str, _Group], list[Problem]]:
    # Paths as strings: pathlib's joins cost more than a stat, and a re-import does little else.
    folder = os.path.join(directory, "")
    stems = {n[:-5] for n in names if n.endswith(".json")}
    groups: dict[str, _Group] = {s: _Group(json_path=f"{folder}{s}.json") for s in stems}
    problems: list[Problem] = []
    for name in names:
        path = folder + name
        if name.endswith(".json"):
            continue
        if name.endswith(PROMPT_SUFFIX):
            if name[: -len(PROMPT_SUFFIX)] not in stems:
                problems.append(Problem(path, "prompt file without a JSON record beside it"))
            continue
        base, ext = os.path.splitext(name)
        if ext.lower() not in MEDIA_EXTENSIONS:
            problems.append(Problem(path, "unknown file, not imported"))
            continue
        stem, index = _image_slot(base, stems)
        if stem is None:
            problems.append(Problem(path, "image without a JSON record, not imported"))
            continue
        group = groups[stem]
        if index in group.images:
            group.extra_images.append(path)  # e.g. both .png and .webp of one image
        else:
            group.images[index] = path
    return groups, problems


def _image_slot(base: str, stems: set[str]) -> tuple[str | None, int]:
    """``<stem>`` -> image 0; ``<stem>-N`` -> image N-1 (job ids contain dashes: try whole first)."""
    if base in stems:
        return base, 0
    stem, _, number = base.rpartition("-")
    if number.isdigit() and stem in stems and int(number) >= 1:
        return stem, int(number) - 1
    return None, 0


def count_records(root: Path) -> int:
    return sum(1 for _, _, files in os.walk(root) for name in files if name.endswith(".json"))


class _Rows:
    """The stat cache as one import uses it, and the jobs it has read so far: both in LMDB,
    written in batches of the writer's checkpoint size (flat memory at any size)."""

    def __init__(self, writer: ArchiveWriter, enabled: bool) -> None:
        self.session = StatCache(writer.vault.open_index()).session(rows=enabled)
        self.has_object = writer.has_object
        self.batch_jobs = writer.checkpoint_jobs
        self.jobs = 0
        self._folder = 0  # the current directory: its length as the walk names it, and
        self._absolute = b""  # its absolute path with a final separator

    def directory(self, directory: str) -> None:
        self._folder = len(os.path.join(directory, ""))
        self._absolute = os.fsencode(os.path.join(os.path.abspath(directory), ""))

    def key(self, path: str) -> bytes:
        """The cache key of a file of the current directory (its absolute path)."""
        return short_key(self._absolute + os.fsencode(path[self._folder :]))

    def trusted(self, key: bytes, path: str, kind: int) -> Row | None:
        """The row of an unchanged file whose object the vault still holds, else None."""
        row = self.session.row(key)
        if row is None or row.kind != kind:
            return None
        try:
            st = os.stat(path)
        except OSError:  # reading it reports why
            return None
        if not row.matches(st) or not self.has_object(row.object_id):
            return None
        return row

    def add(self, key: bytes, row: Row) -> None:
        self.session.add_row(key, row)

    def job_done(self) -> None:
        self.jobs += 1
        if self.jobs >= self.batch_jobs:
            self.flush()

    def flush(self) -> None:
        self.session.flush()
        self.jobs = 0


def import_archive(
    vault: Vault,
    root: Path,
    *,
    on_job: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stat_cache: bool = True,
    thumbnails: bool = True,
    thumbnail_wait: float | None = 0.05,
    **writer_options: Any,
) -> ImportReport:
    root = Path(root)
    if not root.is_dir():
        raise MjvaultError(f"{root} is not a directory")
    report = ImportReport(source=f"import:{root.resolve()}")
    with vault.writer(
        report.source, thumbnails=thumbnails, thumbnail_wait=thumbnail_wait, **writer_options
    ) as writer:
        # Read under the lock: a forget that ran before this import took it is honoured.
        forgotten = exclusions.load(vault)
        rows = _Rows(writer, stat_cache)
        finished = False
        try:
            for directory, dirnames, filenames in os.walk(root):
                dirnames.sort()
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                groups, problems = _classify(directory, sorted(filenames))
                report.problems.extend(problems)
                rows.directory(directory)
                for stem in sorted(groups):
                    if should_stop and should_stop():
                        raise KeyboardInterrupt
                    _import_group(writer, groups[stem], report, rows, forgotten)
                    rows.job_done()
                    if on_job:
                        on_job()
            finished = True
        finally:
            try:
                if finished:
                    rows.flush()
                else:
                    # Rows name objects by id and are trusted only while their object exists,
                    # so those of a run that stops are kept, although its batch is not durable.
                    with suppress(MjvaultError):
                        rows.flush()
            finally:
                rows.session.close()
    report.stats = writer.stats
    report.snapshot = writer.snapshot.id if writer.snapshot else None
    return report


def _read_job(path: str, report: ImportReport) -> tuple[bytes, os.stat_result, Job] | None:
    """The record's bytes, the stat taken before reading them, and the job; None if it cannot
    be read or is not a record (the problem is reported)."""
    try:
        raw, st = _read_record(path)
        job = job_from_json(raw)
    except OSError as exc:
        report.problems.append(Problem(path, f"unreadable: {exc.strerror}"))
        return None
    except RecordError as exc:
        report.problems.append(Problem(path, f"not a Midjourney record: {exc}"))
        return None
    report.bytes_read += len(raw)
    return raw, st, job


def _read_record(path: str) -> tuple[bytes, os.stat_result]:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        return _read_to_end(fd, st.st_size), st
    finally:
        os.close(fd)


def _read_to_end(fd: int, size: int) -> bytes:
    parts = [os.read(fd, size + 1)]
    while parts[-1]:
        parts.append(os.read(fd, max(size, 1 << 16)))
    return b"".join(parts)


def _import_group(
    writer: ArchiveWriter,
    group: _Group,
    report: ImportReport,
    rows: _Rows,
    forgotten: exclusions.Forgotten,
) -> None:
    assert group.json_path is not None
    report.records_found += 1
    seen_ns = time.time_ns()  # before any file of the group is read: see statcache.racy
    record_key = rows.key(group.json_path)
    cached = rows.trusted(record_key, group.json_path, RECORD)
    raw: bytes | None = None
    job: Job | None = None
    if cached is not None:
        job_id, digest, malformed = cached.job_id, cached.digest, cached.malformed
        media_count = cached.media
    else:
        read = _read_job(group.json_path, report)
        if read is None:
            _report_orphans(group, report)
            return
        raw, st, job = read
        job_id, malformed, media_count = job.id, job.malformed or "", len(job.media())
        digest = hashlib.blake2b(raw, digest_size=16).digest()
    if job_id in forgotten:
        report.jobs_forgotten += 1  # nor its images: nothing of it enters the vault
        return
    first = rows.session.first(job_id)  # the first record of a job, in path order, wins
    if first is not None:
        if first[1] == digest:
            report.records_repeated += 1
        else:
            report.problems.append(
                Problem(
                    group.json_path,
                    f"job {job_id} is also in {first[0]} with a different record; "
                    f"kept {first[0]} (the first in path order), this one not imported",
                )
            )
            _report_orphans(group, report, "image of a record that was not kept")
        return
    rows.session.add_first(job_id, group.json_path, digest)
    report.jobs_seen += 1
    if cached is not None:
        report.records_unchanged += 1
    if malformed:
        if not report.jobs_malformed:  # warned once; the summary counts the others
            log.warning("%s: %s", group.json_path, malformed)
        report.jobs_malformed += 1
    slots = max(media_count, max(group.images, default=-1) + 1)
    images: list[str | None] = [None] * slots
    for index, path in sorted(group.images.items()):
        images[index] = _import_image(writer, path, report, rows, seen_ns)
    for path in group.extra_images:
        report.problems.append(Problem(path, "a second file for the same image, not imported"))
    if cached is not None:
        if writer.keep_unchanged(job_id, cached.object_id, images):
            report.images_missing += sum(1 for i in images if i is None)
            return
        # The job differs from the vault's (a sync updated it, say): its record is needed.
        read = _read_job(group.json_path, report)
        if read is None:
            return
        raw, st, job = read
    assert raw is not None and job is not None
    report.images_missing += sum(1 for i in images if i is None)
    writer.add_job(raw, images, job)
    entry = writer.current(job.id)
    if entry is not None and (
        cached is None or digest == hashlib.blake2b(raw, digest_size=16).digest()
    ):
        rows.add(
            record_key,
            Row.of(
                RECORD,
                st,
                seen_ns,
                entry.record,
                job_id=job.id,
                digest=digest,
                malformed=malformed,
                media=media_count,
            ),
        )


def _import_image(
    writer: ArchiveWriter, path: str, report: ImportReport, rows: _Rows, seen_ns: int
) -> str | None:
    """The image's object id (None if it was not imported: the problem is reported)."""
    key = rows.key(path)
    cached = rows.trusted(key, path, IMAGE)
    if cached is not None:
        report.images_seen += 1
        report.images_unchanged += 1
        return cached.object_id
    try:
        # Raw descriptors: a buffered open() adds an ioctl, an lseek and a fresh buffer per
        # image, and the writer reads the whole file into a buffer reused from image to image.
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            head = os.pread(fd, 16, 0)
            if media_kind(head) is None:
                # Stored, it would be listed by `show` and linked by `checkout` as an image.
                reason = f"not a PNG, WebP, JPEG, GIF or MP4 file (starts {head[:8]!r}), "
                report.problems.append(Problem(path, reason + "not imported"))
                return None
            object_id, size = writer.put_media_fd(fd, st.st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        report.problems.append(Problem(path, f"unreadable: {exc.strerror}"))
        return None
    report.images_seen += 1
    report.bytes_read += size
    if size == st.st_size:  # a file that grew or shrank while read is read again next time
        rows.add(key, Row.of(IMAGE, st, seen_ns, object_id))
    return object_id


def _report_orphans(
    group: _Group, report: ImportReport, reason: str = "image of a record that could not be read"
) -> None:
    for path in [*group.images.values(), *group.extra_images]:
        report.problems.append(Problem(path, reason))
