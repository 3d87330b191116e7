"""``mjvault export --all DIR``: a person's whole archive in open formats, portable.

Layout of DIR::

    jobs/<stem>.json           each record of HEAD, byte for byte as stored
    jobs/<stem>.<ext>          a job's one image or video, as stored (decrypted)
    jobs/<stem>-<n>.<ext>      image n (from 1) of a job with several
    snapshots.jsonl            every snapshot, newest first (id, time, parent, tree, source …)
    config.json                the settings in effect, secrets left out
    manifest.jsonl             path, size, SHA-256, object id and job of every file above
    SHA256SUMS                 the same checksums, for ``sha256sum -c SHA256SUMS``
    vault.json                 what this is: vault id, snapshot, template, counts, time

``<stem>`` is a view template of the job's own fields (:mod:`mjvault.views.template`), which
must hold ``{job_id}`` whole; the default is ``{date:%Y/%Y-%m}/{job_id}``. With
``{date:%Y/%Y-%m/%Y-%m-%d}/{date:%Y%m%d-%H%M%S}_{job_id}`` ``jobs/`` is laid out as the
original archiver's scripts laid out theirs, and ``mjvault import DIR/jobs`` reads it back.

Run again into the same DIR it writes only what is missing or wrong: a file already there
that hashes to its object's name (BLAKE3, keyed in an encrypted vault) is kept, and so is a
record with the stored bytes. Each file is written beside its name and renamed into place, so
a killed export leaves whole files and stray ``.partial`` ones, which the next run replaces.
Memory stays flat: jobs stream from the snapshot tree, images from their object files in
pieces, and the manifest is written line by line; what the run keeps is counters and a
bounded cache of the directories it made.

Names never leave DIR: fields cannot make directories (their separators are replaced), the
result is made safe (:func:`mjvault.views.paths.safe_relpath`), every directory on the way is
checked to be a directory and not a link, and files are opened without following links.
Two jobs whose names are one once made safe (``a:b`` and ``a_b``) never share a file: the
second takes ``<stem>~<hash of its id>`` (:func:`_claim_record`). With ``--anonymize`` the
files are named from the anonymized record, so a template's user fields name no one.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault import __version__
from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound, UsageError
from mjvault.find.anonymize import anonymize_record, source_kind
from mjvault.model import Job, RecordError, job_from_json
from mjvault.reports import Report
from mjvault.store.codec import media_kind
from mjvault.store.streams import PIECE, ObjectCheck, checked_file
from mjvault.views.paths import MAX_COMPONENT_BYTES, fit_component, safe_relpath
from mjvault.views.template import Template

if TYPE_CHECKING:
    from mjvault.config.schema import Config
    from mjvault.tree import JobEntry
    from mjvault.vault import Vault

DEFAULT_STEM = "{date:%Y/%Y-%m}/{job_id}"
ARCHIVER_STEM = "{date:%Y/%Y-%m/%Y-%m-%d}/{date:%Y%m%d-%H%M%S}_{job_id}"
JOBS_DIR = "jobs"
FORMAT_VERSION = 1
# Room left in a stem's last component for "-4.webp", ".json" or a "~<hash>" suffix.
SUFFIX_ROOM = 32
STEM_MAX_BYTES = 700  # of the 800 a view allows: the same room for suffixes
PROBLEMS_LISTED = 100
# A file already at a record's name is read whole to learn whose record it is. Records are a
# few KB; a file larger than this and than the record to write is no record of this export.
RECORD_READ_MAX = 16 * 1024 * 1024
DIRS_REMEMBERED = 4096


class _Large(enum.Enum):
    LARGE = "larger than asked for"


LARGE = _Large.LARGE


class ExportProblem(MjvaultError):
    """DIR holds something an export must not write through (a link, a file for a folder)."""


@dataclass
class ExportAllReport(Report):
    directory: Path
    snapshot: str | None = None
    template: str = DEFAULT_STEM
    jobs: int = 0
    records_written: int = 0
    records_kept: int = 0
    images_written: int = 0
    images_kept: int = 0
    images_missing: int = 0  # the vault holds no file for them (missing at the source)
    bytes_written: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_LISTED:
            self.problems.append(text)


def stem_template(text: str) -> Template:
    """A job's stem template: job fields only, and ``{job_id}`` whole (names stay unique)."""
    template = Template.parse(text)
    per_image = template.field_names & {"index", "ext"}
    if per_image:
        raise UsageError(
            f"template {text!r}: {{{sorted(per_image)[0]}}} is per image; an export template "
            "names a job, and its files are named after it",
            hint=f"the archiver's layout is {ARCHIVER_STEM!r}",
        )
    whole = any(
        getattr(s, "name", None) == "job_id" and getattr(s, "arg", "") is None
        for s in template.segments
    )
    if not whole:
        raise UsageError(f"template {text!r} must hold {{job_id}} (whole), so names stay unique")
    return template


def stem_of(template: Template, job: Job) -> str:
    """The job's stem, relative to ``jobs/``: safe, inside it, with room for suffixes."""
    raw = template.render(job, 0, "")
    rel = safe_relpath(raw, max_bytes=STEM_MAX_BYTES)
    folder, _, name = rel.rpartition("/")
    name = fit_component(name, MAX_COMPONENT_BYTES - SUFFIX_ROOM)
    return f"{folder}/{name}" if folder else name


def image_name(stem: str, index: int, count: int, ext: str) -> str:
    """The archiver's names: ``<stem>.png`` for a job's one image, ``<stem>-1.png`` … else."""
    return f"{stem}-{index + 1}.{ext}" if count > 1 else f"{stem}.{ext}"


class _Files:
    """Writes under DIR without ever leaving it; remembers the directories it checked."""

    def __init__(self, root: Path, mode: int) -> None:
        self.root = root
        self.mode = mode
        self.dir_mode = 0o700 if mode == 0o600 else 0o755
        self._dirs: set[str] = set()

    def ensure_dir(self, rel: str) -> str:
        """DIR/rel as a directory of real directories (made when missing); its path."""
        if rel in self._dirs:
            return os.path.join(self.root, rel)
        path = os.fspath(self.root)
        for part in rel.split("/"):
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, self.dir_mode)
                info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode):
                what = "a link" if stat.S_ISLNK(info.st_mode) else "not a directory"
                raise ExportProblem(f"{path} is {what}: the export does not write through it")
        if len(self._dirs) >= DIRS_REMEMBERED:
            self._dirs.clear()
        self._dirs.add(rel)
        return path

    def path(self, rel: str) -> str:
        folder, _, name = rel.rpartition("/")
        return (
            os.path.join(self.ensure_dir(folder), name) if folder else os.path.join(self.root, name)
        )

    def read_small(self, rel: str, limit: int) -> bytes | None | _Large:
        """A regular file's bytes if it has at most ``limit``, :data:`LARGE` if it has more,
        None if there is no regular file at ``rel`` (nothing, a link, a directory)."""
        try:
            fd = os.open(self.path(rel), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            if info.st_size > limit:
                return LARGE
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(limit + 1)
        finally:
            os.close(fd)

    def hash_file(self, rel: str, name_hasher: Any) -> tuple[str, str, int] | None:
        """(name hash, SHA-256, size) of a regular file (not a link) at ``rel``, else None."""
        try:
            fd = os.open(self.path(rel), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            sha = hashlib.sha256()
            size = 0
            while piece := os.read(fd, PIECE):
                name_hasher.update(piece)
                sha.update(piece)
                size += len(piece)
            return name_hasher.hexdigest(), sha.hexdigest(), size
        finally:
            os.close(fd)

    def write(self, rel: str, pieces: Iterator[bytes]) -> tuple[str, int]:
        """Write ``pieces`` to ``rel`` (beside it, then renamed); (SHA-256, size).

        If ``pieces`` raises, nothing is left under ``rel``'s name."""
        final = self.path(rel)
        folder, name = os.path.split(final)
        partial = os.path.join(folder, f".{name}.partial")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(partial, flags, self.mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link planted under the temp name: not followed
                os.unlink(partial)
                fd = os.open(partial, flags, self.mode)
            else:
                raise
        sha = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
                    sha.update(piece)
                    size += len(piece)
            os.replace(partial, final)  # a link at ``final`` is replaced, never followed
        except BaseException:
            with_suppressed_unlink(partial)
            raise
        return sha.hexdigest(), size


def with_suppressed_unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Manifest:
    """manifest.jsonl and SHA256SUMS, written a line at a time and renamed at the end."""

    def __init__(self, files: _Files) -> None:
        self.files = files
        self._jsonl = open(files.path(".manifest.jsonl.partial"), "w", encoding="utf-8")  # noqa: SIM115
        self._sums = open(files.path(".SHA256SUMS.partial"), "w", encoding="utf-8")  # noqa: SIM115

    def add(self, rel: str, sha: str, size: int, object_id: str | None, job: str | None) -> None:
        line = {"path": rel, "size": size, "sha256": sha, "object": object_id, "job": job}
        self._jsonl.write(json.dumps(line, ensure_ascii=False) + "\n")
        # sha256sum reads a name starting with "\" as escaped: such names are written so.
        if "\\" in rel or "\n" in rel:
            escaped = rel.replace("\\", "\\\\").replace("\n", "\\n")
            self._sums.write(f"\\{sha}  {escaped}\n")
        else:
            self._sums.write(f"{sha}  {rel}\n")

    def finish(self) -> None:
        for handle, name in ((self._jsonl, "manifest.jsonl"), (self._sums, "SHA256SUMS")):
            handle.close()
            os.replace(self.files.path(f".{name}.partial"), self.files.path(name))

    def abandon(self) -> None:
        self._jsonl.close()
        self._sums.close()


def export_all(
    vault: Vault,
    directory: Path,
    *,
    config: Config | None = None,
    template: str = DEFAULT_STEM,
    anonymize: bool = False,
    on_job: Callable[[], None] | None = None,
    now: datetime | None = None,
) -> ExportAllReport:
    """Write HEAD's records and images and the vault's metadata into ``directory``."""
    stems = stem_template(template)
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    vault_root = vault.path.resolve()
    if directory == vault_root or vault_root in directory.parents:
        raise UsageError("write the export outside the vault")
    # An encrypted vault's plaintext is kept from other users of the machine.
    mode = 0o600 if vault.encrypted else 0o644
    directory.mkdir(parents=True, exist_ok=True, mode=0o700 if vault.encrypted else 0o777)
    files = _Files(directory, mode)
    files.ensure_dir(JOBS_DIR)
    report = ExportAllReport(directory=directory, template=template)
    head = vault.head()
    report.snapshot = head.id if head else None
    manifest = _Manifest(files)
    try:
        for entry in vault.entries(head) if head else ():
            _export_job(vault, files, manifest, stems, entry, report, anonymize)
            if on_job is not None:
                on_job()
        for name, pieces in (
            ("snapshots.jsonl", _snapshot_lines(vault, anonymize)),
            ("config.json", iter([_config_json(config, anonymize)])),
        ):
            sha, size = files.write(name, pieces)
            manifest.add(name, sha, size, None, None)
        manifest.finish()
    except BaseException:
        manifest.abandon()
        raise
    info = {
        "format": "mjvault-export",
        "version": FORMAT_VERSION,
        "vault": vault.id,
        "encrypted": vault.encrypted,
        "snapshot": report.snapshot,
        "template": template,
        "anonymized": anonymize,
        "jobs": report.jobs,
        "images": report.images_written + report.images_kept,
        "images_missing": report.images_missing,
        "manifest": "manifest.jsonl",
        "exported": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "tool": f"mjvault {__version__}",
    }
    files.write("vault.json", iter([json.dumps(info, indent=2).encode() + b"\n"]))
    return report


def _export_job(
    vault: Vault,
    files: _Files,
    manifest: _Manifest,
    stems: Template,
    entry: JobEntry,
    report: ExportAllReport,
    anonymize: bool,
) -> None:
    report.jobs += 1
    try:
        raw = vault.record_json(entry)
        job = job_from_json(raw)
    except (ObjectNotFound, CorruptObject, IntegrityError, RecordError) as exc:
        report.problem(f"job {entry.job_id}: record unreadable ({exc})")
        return
    if anonymize:
        # Files are named from the record as written: a template's {username}, {prompt} or
        # parameter fields then name no one and quote no image prompt's URL.
        data = anonymize_record(raw)
        try:
            named = job_from_json(data)
        except RecordError:
            report.problem(f"job #{report.jobs}: its anonymized record has no job id left")
            return
    else:
        data, named = raw, job
    claimed = _claim_record(files, f"{JOBS_DIR}/{stem_of(stems, named)}", named.id, data)
    if claimed is None:
        report.problem(f"job {named.id}: every name it could take holds another job's record")
        return
    stem, kept = claimed
    record_rel = f"{stem}.json"
    if kept:
        report.records_kept += 1
    else:
        files.write(record_rel, iter([data]))
        report.records_written += 1
        report.bytes_written += len(data)
    manifest.add(record_rel, hashlib.sha256(data).hexdigest(), len(data), entry.record, named.id)
    media = job.media()
    count = len(entry.images)
    for index, object_id in enumerate(entry.images):
        if object_id is None:
            report.images_missing += 1
            continue
        guess = media[index].ext if index < len(media) else "png"
        try:
            _export_image(
                vault, files, manifest, named.id, stem, index, count, object_id, guess, report
            )
        except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
            report.problem(f"job {named.id} image {index}: {exc}")


def _claim_record(files: _Files, stem: str, job_id: str, data: bytes) -> tuple[str, bool] | None:
    """The stem the job's record goes under, and whether the file there already holds
    ``data``; None if each holds another job's record.

    Two jobs' stems can be one once made safe (``a:b`` and ``a_b``): whichever comes second
    takes ``<stem>~<hash of its id>``. A file there is the job's own to replace when it is a
    record of this job or no record at all (damage, a kill's leftover); it is another job's
    when it names another job, or is too large to be read for its name (larger than any
    record), whatever the sizes of the two records. The same jobs take the same names on
    every run."""
    digest = hashlib.sha256(job_id.encode()).hexdigest()
    limit = max(len(data), RECORD_READ_MAX)
    for candidate in (stem, f"{stem}~{digest[:8]}", f"{stem}~{digest}"):
        there = files.read_small(f"{candidate}.json", limit)
        if there is None:
            return candidate, False
        if there is LARGE:
            continue
        if there == data:
            return candidate, True
        owner = _job_id_of(there)
        if owner is None or owner.strip() == job_id:
            return candidate, False
    return None


def _export_image(
    vault: Vault,
    files: _Files,
    manifest: _Manifest,
    job_id: str,
    stem: str,
    index: int,
    count: int,
    object_id: str,
    guess: str,
    report: ExportAllReport,
) -> None:
    # The record's extension is a guess (an imported archive may hold a WebP for a .png);
    # a file there that hashes to the object's name is right whatever its extension says.
    rel = image_name(stem, index, count, guess)
    known = files.hash_file(rel, vault.store.hasher())
    if known is not None and known[0] == object_id:
        report.images_kept += 1
        manifest.add(rel, known[1], known[2], object_id, job_id)
        return
    pieces = _plaintext(vault, object_id)
    first = next(pieces, b"")
    kind = media_kind(first[:16]) or guess
    if kind != guess:
        rel = image_name(stem, index, count, kind)
        known = files.hash_file(rel, vault.store.hasher())
        if known is not None and known[0] == object_id:
            pieces.close()
            report.images_kept += 1
            manifest.add(rel, known[1], known[2], object_id, job_id)
            return

    def all_pieces() -> Iterator[bytes]:
        yield first
        yield from pieces

    sha, size = files.write(rel, all_pieces())
    report.images_written += 1
    report.bytes_written += size
    manifest.add(rel, sha, size, object_id, job_id)


def _plaintext(vault: Vault, object_id: str) -> Generator[bytes, None, None]:
    """An object's plaintext in pieces, checked against its name before the last one."""
    store = vault.store
    if store.is_loose(object_id):
        yield from checked_file(
            store.path(object_id), ObjectCheck(object_id, store.keys), plaintext=True
        )
    else:
        yield store.read(object_id)  # packed: small, read and checked whole


def _job_id_of(data: bytes) -> str | None:
    try:
        record = json.loads(data)
    except ValueError:
        return None
    job_id = record.get("id") if isinstance(record, dict) else None
    return job_id if isinstance(job_id, str) else None


def _snapshot_lines(vault: Vault, anonymize: bool) -> Iterator[bytes]:
    for snapshot in vault.snapshots():
        line = {
            "id": snapshot.id,
            "time": snapshot.time.isoformat(),
            "parent": snapshot.parent,
            "tree": snapshot.tree,
            "source": source_kind(snapshot.source) if anonymize else snapshot.source,
            "host": None if anonymize else snapshot.host,
            "tool": snapshot.tool,
            "stats": snapshot.stats,
        }
        yield json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"


def _config_json(config: Config | None, anonymize: bool) -> bytes:
    from mjvault.config.schema import SETTINGS, Config

    effective = config or Config()
    values: dict[str, Any] = {}
    for key, spec in SETTINGS.items():
        if spec.secret or (anonymize and key == "source.user_id"):
            continue
        value = effective.get(key)
        values[key] = None if value is None else spec.type.to_json(value)
    return json.dumps(values, indent=2, ensure_ascii=False, default=str).encode() + b"\n"
