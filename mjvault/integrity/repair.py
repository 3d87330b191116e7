"""``mjvault verify --repair``: put damaged objects aside, fetch good copies, rebuild the index.

Nothing is ever deleted. A damaged object file is moved to ``<vault>/quarantine/<date>/``
(named by its id), where it stays until the user removes it. Then every missing or
quarantined object is looked for, by id, in:

* other vaults or folder remotes given with ``--from DIR`` (any directory with mjvault's
  ``objects/<xx>/<id>`` layout: a copy is accepted only if it reads back under *this* vault's
  keys to exactly the named plaintext);
* plain folders given with ``--from DIR``, such as the archive a vault was imported from:
  every file is rehashed (images as media objects, ``.json`` files as job records) until
  all wanted ids are found;
* Midjourney, when a client is given: an image is downloaded again from its job's CDN path
  and accepted only if its hash is the object's name (Midjourney serves the same bytes, but
  an imported archive may hold converted images, which cannot be had again this way).

Repairing a tree node can reveal objects below it that are missing too, so the structural
check runs again after each round of fetching. Finally the index is rebuilt from the
objects, and whatever could not be repaired is reported with the jobs and snapshots it
affects.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault.errors import (
    CorruptObject,
    DownloadError,
    IntegrityError,
    MjvaultError,
    ObjectNotFound,
    SourceError,
)
from mjvault.integrity.gc import acquire_lock
from mjvault.integrity.verify import Problem, VerifyReport, verify
from mjvault.model import job_from_json
from mjvault.records import decode_record, encode_record
from mjvault.snapshots import HeadDamaged, Snapshot, decode_manifest
from mjvault.store.codec import MAGIC_ENCRYPTED, MAGIC_FRAMED, media_kind, unframe_plain
from mjvault.store.objects import WriteBatch
from mjvault.tree import Inner, Leaf, decode_node
from mjvault.vault import Vault

if TYPE_CHECKING:
    from mjvault.sources.midjourney import MidjourneyClient

# Any other place that can hand back objects by id (a configured remote, say): called with the
# ids still wanted, yields (object id, plaintext, where from). Whatever it yields is checked
# against the id before it is stored, so a fetcher need not be trusted.
ObjectSource = Callable[[set[str]], Iterable[tuple[str, bytes, str]]]

QUARANTINE_DIR = "quarantine"
MAX_ROUNDS = 4
MEDIA_SUFFIXES = frozenset({".png", ".webp", ".jpg", ".jpeg", ".gif", ".mp4"})


@dataclass
class RepairAction:
    object_id: str
    problem: str  # "corrupt" | "missing"
    jobs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    quarantined: str | None = None  # where the damaged file went
    source: str | None = None  # where a good copy came from; None = not repaired
    reason: str | None = None  # why not repaired

    @property
    def repaired(self) -> bool:
        return self.source is not None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"repaired": self.repaired}


@dataclass
class RepairReport:
    before: VerifyReport
    after: VerifyReport | None = None
    actions: list[RepairAction] = field(default_factory=list)
    index_rebuilt: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> list[RepairAction]:
        return [a for a in self.actions if a.repaired]

    @property
    def unrepaired(self) -> list[RepairAction]:
        return [a for a in self.actions if not a.repaired]

    @property
    def remaining(self) -> list[Problem]:
        return self.after.problems if self.after is not None else self.before.problems

    @property
    def ok(self) -> bool:
        return not self.remaining and not self.unrepaired

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "before": self.before.to_json(),
            "repaired": [a.to_json() for a in self.repaired],
            "unrepaired": [a.to_json() for a in self.unrepaired],
            "index_rebuilt": self.index_rebuilt,
            "remaining_problems": [p.to_json() for p in self.remaining],
            "notes": self.notes,
        }


def repair(
    vault: Vault,
    *,
    sources: Sequence[Path] = (),
    midjourney: MidjourneyClient | None = None,
    fetchers: Sequence[ObjectSource] = (),
    read_data: bool = True,
    subset: str | None = None,
    wait: float | None = None,
    on_object: Callable[[int], None] | None = None,
) -> RepairReport:
    """Verify, quarantine what is damaged, refetch what can be, rebuild the index."""
    for source in sources:
        if not source.is_dir():
            raise MjvaultError(f"--from {source}: not a directory")
    with acquire_lock(vault, wait, "mjvault verify --repair"):
        before = verify(vault, read_data=read_data, subset=subset, on_object=on_object)
        report = RepairReport(before=before)
        fetcher = Refetcher(vault, sources, midjourney, report.notes, fetchers)
        actions: dict[str, RepairAction] = {}
        problems = before.problems
        for _round in range(MAX_ROUNDS):
            wanted: dict[str, RepairAction] = {}
            for problem in problems:
                oid = problem.object_id
                if problem.kind not in ("missing", "corrupt") or oid is None or oid in actions:
                    continue
                action = RepairAction(oid, problem.kind, problem.jobs, problem.snapshots)
                actions[oid] = action
                if problem.kind == "corrupt" and not _set_aside(vault, action):
                    continue
                wanted[oid] = action
            if not wanted:
                break
            found = fetcher.fetch(set(wanted))
            for oid, where in found.items():
                wanted[oid].source = where
            for action in wanted.values():
                if action.source is None:
                    action.reason = "no good copy found" + (
                        ""
                        if sources or midjourney or fetchers
                        else " (give --from DIR or --from-midjourney)"
                    )
            if not found:
                break
            # A repaired node may name objects the first pass could not see.
            problems = verify(vault).problems
        report.actions = list(actions.values())
        _relist_head(vault, report)
        _restore_head(vault, report)
    try:
        vault.rebuild_index()
        report.index_rebuilt = True
    except MjvaultError as exc:
        report.notes.append(f"the index could not be rebuilt: {exc}")
    report.after = verify(vault)
    return report


def _relist_head(vault: Vault, report: RepairReport) -> None:
    """A HEAD whose marker is gone (a crash between the two writes, or a hand edit) but whose
    manifest reads fine is listed again: the snapshot exists, only its marker was lost."""
    try:
        head = vault.refs.head()
    except IntegrityError:
        return
    if head is None or head in vault.refs.snapshot_ids():
        return
    try:
        decode_manifest(head, vault.store.read(head))
    except MjvaultError:
        return
    vault.refs.add_snapshot(head)
    report.notes.append(f"listed snapshot {head[:12]} again: refs/HEAD names it")


def _restore_head(vault: Vault, report: RepairReport) -> None:
    """A HEAD that names no readable snapshot points again at the newest one the markers list
    (by manifest time): markers are written before HEAD, so none is newer than HEAD was."""
    try:
        if vault.head() is not None or not vault.refs.snapshot_ids():
            return
        problem = "refs/HEAD is missing"
    except (HeadDamaged, CorruptObject) as exc:
        problem = exc.message
    newest: Snapshot | None = None
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            snapshot = decode_manifest(snapshot_id, vault.store.read(snapshot_id))
        except MjvaultError:
            continue
        if newest is None or snapshot.time > newest.time:
            newest = snapshot
    if newest is None:
        report.notes.append(f"{problem}, and no snapshot in refs/snapshots/ can be read")
        return
    vault.refs.set_head(newest.id)
    report.notes.append(
        f"restored refs/HEAD to snapshot {newest.short_id} "
        f"({newest.time.astimezone():%Y-%m-%d %H:%M}), the newest in refs/snapshots/: {problem}"
    )


def _set_aside(vault: Vault, action: RepairAction) -> bool:
    """Move a damaged object file to quarantine; False if it is intact but malformed."""
    oid = action.object_id
    try:
        vault.store.check(oid)
    except ObjectNotFound:
        action.problem = "missing"
        return True
    except CorruptObject:
        action.quarantined = str(quarantine(vault, oid))
        return True
    # The bytes are what the name says, yet they do not parse: another copy would be the same.
    action.reason = "the object matches its name but is malformed; no copy can differ"
    return False


def quarantine(vault: Vault, object_id: str) -> Path:
    """Move one object file to ``quarantine/<YYYY-MM-DD>/<id>`` (never over another file)."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = vault.path / QUARANTINE_DIR / day
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / object_id
    n = 1
    while target.exists():
        target = folder / f"{object_id}.{n}"
        n += 1
    os.rename(vault.store.path(object_id), target)
    return target


class Refetcher:
    """Finds good copies of objects by id and stores them through one durable batch."""

    def __init__(
        self,
        vault: Vault,
        sources: Sequence[Path],
        midjourney: MidjourneyClient | None,
        notes: list[str],
        fetchers: Sequence[ObjectSource] = (),
    ) -> None:
        self.vault = vault
        self.sources = list(sources)
        self.midjourney = midjourney
        self.notes = notes
        self.fetchers = list(fetchers)

    def fetch(self, wanted: set[str]) -> dict[str, str]:
        """Store every object of ``wanted`` that can be found; returns id -> where from."""
        found: dict[str, str] = {}
        batch = self.vault.store.batch()
        for source in self.sources:
            remaining = wanted - found.keys()
            if not remaining:
                break
            if (source / "objects").is_dir():
                found |= self._from_object_store(batch, source, remaining)
            else:
                found |= self._from_folder(batch, source, remaining)
        for source_fetcher in self.fetchers:
            remaining = wanted - found.keys()
            if not remaining:
                break
            for oid, plaintext, where in source_fetcher(set(remaining)):
                if oid in remaining and oid not in found and self._accept(batch, oid, plaintext):
                    found[oid] = where
        remaining = wanted - found.keys()
        if remaining and self.midjourney is not None:
            found |= self._from_midjourney(batch, remaining)
        batch.flush()
        return found

    def _accept(self, batch: WriteBatch, object_id: str, plaintext: bytes) -> bool:
        if self.vault.store.name_of(plaintext) != object_id:
            return False
        if media_kind(plaintext[:16]) is not None:
            batch.put_media(plaintext)
        else:
            batch.put(plaintext)
        return True

    def _from_object_store(self, batch: WriteBatch, root: Path, wanted: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        keys = self.vault.store.keys
        for oid in sorted(wanted):
            candidate = root / "objects" / oid[:2] / oid
            try:
                data = candidate.read_bytes()
                if keys is not None:
                    plaintext = keys.open(oid, data)
                elif data[:4] == MAGIC_ENCRYPTED:
                    continue  # another vault's sealed object: not readable with our keys
                elif data[:4] == MAGIC_FRAMED:
                    plaintext = unframe_plain(data)
                else:
                    plaintext = data
            except (OSError, MjvaultError):
                continue
            if self._accept(batch, oid, plaintext):
                found[oid] = str(candidate)
        return found

    def _from_folder(self, batch: WriteBatch, root: Path, wanted: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for path in _files(root):
            if len(found) == len(wanted):
                break
            suffix = path.suffix.lower()
            if suffix not in MEDIA_SUFFIXES and suffix != ".json":
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            plaintext = encode_record(data) if suffix == ".json" else data
            oid = self.vault.store.name_of(plaintext)
            if oid in wanted and oid not in found and self._accept(batch, oid, plaintext):
                found[oid] = str(path)
        return found

    def _from_midjourney(self, batch: WriteBatch, wanted: set[str]) -> dict[str, str]:
        assert self.midjourney is not None
        found: dict[str, str] = {}
        for oid, _job_id, index, record in _image_slots(self.vault, wanted):
            if oid in found:
                continue
            try:
                job = job_from_json(decode_record(record, self.vault.store.read(record)))
                refs = job.media()
                if index >= len(refs):
                    continue
                sink = io.BytesIO()
                result = self.midjourney.download(refs[index], sink)
            except DownloadError as exc:
                self.notes.append(f"Midjourney: {exc}")
                continue
            except SourceError as exc:
                self.notes.append(f"Midjourney: {exc}")
                break  # auth, challenge page or outage: asking for the others would not help
            except (MjvaultError, ValueError):
                continue  # the job's record is unreadable too: its CDN path is unknown
            if result.missing:
                continue
            if self._accept(batch, oid, sink.getvalue()):
                found[oid] = f"midjourney:{refs[index].path}"
        return found


def _files(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder, name)


def _image_slots(vault: Vault, wanted: set[str]) -> Iterator[tuple[str, str, int, str]]:
    """(object id, job id, image index, record id) for each wanted image, from every snapshot."""
    visited: set[str] = set()
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            stack = [decode_manifest(snapshot_id, vault.store.read(snapshot_id)).tree]
        except (MjvaultError, IntegrityError):
            continue
        while stack:
            node_id = stack.pop()
            if node_id in visited:
                continue
            visited.add(node_id)
            try:
                node = decode_node(vault.store.read(node_id))
            except MjvaultError:
                continue
            if isinstance(node, Inner):
                stack.extend(child for _, child, _ in node.children)
                continue
            assert isinstance(node, Leaf)
            for entry in node.entries:
                for index, image in enumerate(entry.images):
                    if image is not None and image in wanted:
                        yield image, entry.job_id, index, entry.record


def remote_source(link: Any) -> ObjectSource:
    """An :data:`ObjectSource` reading from a connected remote (``mjvault.remotes``).

    Ids are translated through the remote's id map when it renames objects (a plain vault's
    encrypting remote); a copy the remote cannot produce intact is simply not yielded.
    """
    from mjvault.remotes.pull import REMOTE_DAMAGE

    where = f"remote {link.spec.name}"

    def fetch(wanted: set[str]) -> Iterator[tuple[str, bytes, str]]:
        for local_id in sorted(wanted):
            remote_id = local_id if link.idmap is None else link.idmap.remote_of(local_id)
            if remote_id is None:
                continue
            try:
                _data, plaintext = link.remote.fetch(remote_id)
            except REMOTE_DAMAGE:
                continue
            yield local_id, plaintext, where

    return fetch
