"""Import folders written by the original midjourney-archiver scripts.

Layout: ``YYYY/YYYY-MM/YYYY-MM-DD/<YYYYMMDD-HHMMSS>_<job_id>.json`` (the raw API record),
``<stem>.prompt.txt`` beside it, and images ``<stem>.png`` or ``<stem>-1.png … -4.png``
(``.webp`` and ``.jpg`` too). Lossless (the JSON is kept byte for byte) and idempotent
(importing twice adds nothing). Whatever cannot be imported is reported, never dropped in
silence, and never stops the rest.

A job id found in two records (a copied folder) is imported once: the record first in path
order (folders and names sorted, as the walk reads them) is kept. A later copy with the same
bytes is counted in ``records_repeated``; one with different bytes is reported as a conflict
naming both paths, and neither it nor its images are imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjvault.errors import MjvaultError
from mjvault.model import RecordError, job_from_json
from mjvault.store.codec import media_kind
from mjvault.vault import Vault
from mjvault.writer import WriteStats

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset({".png", ".webp", ".jpg", ".jpeg", ".gif", ".mp4"})
PROMPT_SUFFIX = ".prompt.txt"


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


@dataclass
class ImportReport:
    source: str
    records_found: int = 0  # .json files, readable or not
    jobs_seen: int = 0  # distinct jobs read from them
    records_repeated: int = 0  # byte-identical copies of a record already read
    images_seen: int = 0
    images_missing: int = 0
    bytes_read: int = 0
    # Records imported as they are whose claims were bounded (a batch_size no job can have).
    jobs_malformed: int = 0
    problems: list[Problem] = field(default_factory=list)
    stats: WriteStats = field(default_factory=WriteStats)
    snapshot: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "snapshot": self.snapshot,
            "records_found": self.records_found,
            "jobs_seen": self.jobs_seen,
            "records_repeated": self.records_repeated,
            "images_seen": self.images_seen,
            "images_missing": self.images_missing,
            "bytes_read": self.bytes_read,
            "jobs_malformed": self.jobs_malformed,
            **self.stats.to_json(),
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


@dataclass
class _Group:
    """One job's files in one directory."""

    json_path: Path | None = None
    images: dict[int, Path] = field(default_factory=dict)
    extra_images: list[Path] = field(default_factory=list)


def _classify(directory: Path, names: list[str]) -> tuple[dict[str, _Group], list[Problem]]:
    stems = {n[:-5] for n in names if n.endswith(".json")}
    groups: dict[str, _Group] = {s: _Group(json_path=directory / f"{s}.json") for s in stems}
    problems: list[Problem] = []
    for name in names:
        path = directory / name
        if name.endswith(".json"):
            continue
        if name.endswith(PROMPT_SUFFIX):
            if name[: -len(PROMPT_SUFFIX)] not in stems:
                problems.append(Problem(str(path), "prompt file without a JSON record beside it"))
            continue
        base, ext = os.path.splitext(name)
        if ext.lower() not in MEDIA_EXTENSIONS:
            problems.append(Problem(str(path), "unknown file, not imported"))
            continue
        stem, index = _image_slot(base, stems)
        if stem is None:
            problems.append(Problem(str(path), "image without a JSON record, not imported"))
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


def import_archive(
    vault: Vault,
    root: Path,
    *,
    on_job: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **writer_options: Any,
) -> ImportReport:
    root = Path(root)
    if not root.is_dir():
        raise MjvaultError(f"{root} is not a directory")
    report = ImportReport(source=f"import:{root.resolve()}")
    # job id -> (path of the record kept, digest of its bytes): the first record of a job wins.
    kept: dict[str, tuple[str, bytes]] = {}
    with vault.writer(report.source, **writer_options) as writer:
        for directory, dirnames, filenames in os.walk(root):
            dirnames.sort()
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            groups, problems = _classify(Path(directory), sorted(filenames))
            report.problems.extend(problems)
            for stem in sorted(groups):
                if should_stop and should_stop():
                    raise KeyboardInterrupt
                _import_group(writer, groups[stem], report, kept)
                if on_job:
                    on_job()
    report.stats = writer.stats
    report.snapshot = writer.snapshot.id if writer.snapshot else None
    return report


def _import_group(
    writer: object, group: _Group, report: ImportReport, kept: dict[str, tuple[str, bytes]]
) -> None:
    from mjvault.writer import ArchiveWriter

    assert isinstance(writer, ArchiveWriter) and group.json_path is not None
    report.records_found += 1
    try:
        raw = group.json_path.read_bytes()
        job = job_from_json(raw)
    except OSError as exc:
        report.problems.append(Problem(str(group.json_path), f"unreadable: {exc.strerror}"))
        _report_orphans(group, report)
        return
    except RecordError as exc:
        report.problems.append(Problem(str(group.json_path), f"not a Midjourney record: {exc}"))
        _report_orphans(group, report)
        return
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    first = kept.get(job.id)
    if first is not None:
        if first[1] == digest:
            report.records_repeated += 1
        else:
            report.problems.append(
                Problem(
                    str(group.json_path),
                    f"job {job.id} is also in {first[0]} with a different record; "
                    f"kept {first[0]} (the first in path order), this one not imported",
                )
            )
            _report_orphans(group, report, "image of a record that was not kept")
        return
    kept[job.id] = (str(group.json_path), digest)
    report.jobs_seen += 1
    report.bytes_read += len(raw)
    if job.malformed:
        if not report.jobs_malformed:  # warned once; the summary counts the others
            log.warning("%s: %s", group.json_path, job.malformed)
        report.jobs_malformed += 1
    slots = max(len(job.media()), max(group.images, default=-1) + 1)
    images: list[str | None] = [None] * slots
    for index, path in sorted(group.images.items()):
        try:
            # Raw descriptors: a buffered open() adds an ioctl, an lseek and a fresh buffer per
            # image, and the writer reads the whole file into a buffer reused from image to image.
            fd = os.open(path, os.O_RDONLY)
            try:
                head = os.pread(fd, 16, 0)
                if media_kind(head) is None:
                    # Stored, it would be listed by `show` and linked by `checkout` as an image.
                    reason = f"not a PNG, WebP, JPEG, GIF or MP4 file (starts {head[:8]!r}), "
                    report.problems.append(Problem(str(path), reason + "not imported"))
                    continue
                images[index], size = writer.put_media_fd(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            report.images_seen += 1
            report.bytes_read += size
        except OSError as exc:
            report.problems.append(Problem(str(path), f"unreadable: {exc.strerror}"))
    for path in group.extra_images:
        report.problems.append(Problem(str(path), "a second file for the same image, not imported"))
    report.images_missing += sum(1 for i in images if i is None)
    writer.add_job(raw, images, job)


def _report_orphans(
    group: _Group, report: ImportReport, reason: str = "image of a record that could not be read"
) -> None:
    for path in [*group.images.values(), *group.extra_images]:
        report.problems.append(Problem(str(path), reason))
