"""``mjvault verify --repair`` and ``pull --repair``: put damaged objects aside, fetch good
copies, verify again, rebuild the index.

Nothing is ever deleted. A damaged object file is moved to ``<vault>/quarantine/<date>/``
(named by its id), where it stays until the user removes it. A damaged packed object has no
file of its own: its pack (named by the pack) is what goes to quarantine, but only once every
good object it holds has been copied into a new pack, published durably and mapped (so the
new copy is the one read); the damaged pack then leaves the pack map. Then every missing or
quarantined object is looked for, by id, in:

* other vaults or folder remotes given with ``--from DIR`` (any directory with mjvault's
  ``objects/<xx>/<id>`` layout, and its ``packs/``: a copy is accepted only if it reads back
  under *this* vault's keys to exactly the named plaintext);
* plain folders given with ``--from DIR``, such as the archive a vault was imported from:
  every file is rehashed (images as media objects, ``.json`` files as job records) until
  all wanted ids are found;
* a configured remote (``--from-remote NAME``, or ``mjvault pull --repair NAME``), through
  :mod:`mjvault.remotes.repair`;
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
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
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
from mjvault.integrity.problems import Problem
from mjvault.integrity.verify import VerifyReport, verify
from mjvault.model import job_from_json
from mjvault.records import decode_record, encode_record
from mjvault.reports import Report
from mjvault.snapshots import HeadDamaged, Snapshot, decode_manifest
from mjvault.store.codec import Dictionary, media_kind, open_unsealed
from mjvault.store.fsutil import atomic_write, fsync_dir
from mjvault.store.objects import ObjectStore, WriteBatch
from mjvault.store.packfile import PackDamaged, is_pack_id, read_trailer, read_trailer_of
from mjvault.store.packs import PACKS_DIR, PackBuilder
from mjvault.tree import Inner, walk_nodes
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
class RepairAction(Report):
    json_after = ("repaired",)

    object_id: str
    problem: str  # "corrupt" | "missing"
    jobs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    quarantined: str | None = None  # where the damaged file (or the pack holding it) went
    source: str | None = None  # where a good copy came from; None = not repaired
    reason: str | None = None  # why not repaired

    @property
    def repaired(self) -> bool:
        return self.source is not None


@dataclass
class RepairReport(Report):
    before: VerifyReport
    after: VerifyReport | None = None
    actions: list[RepairAction] = field(default_factory=list)
    index_rebuilt: bool = False
    notes: list[str] = field(default_factory=list)
    packs: list[PackRetired] = field(default_factory=list)  # damaged packs quarantined

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
        # Its own shape: the actions are split into repaired and unrepaired, and the problems
        # left are the after-check's or, without one, the before-check's.
        return {
            "ok": self.ok,
            "before": self.before.to_json(),
            "repaired": [a.to_json() for a in self.repaired],
            "unrepaired": [a.to_json() for a in self.unrepaired],
            "index_rebuilt": self.index_rebuilt,
            "remaining_problems": [p.to_json() for p in self.remaining],
            "notes": self.notes,
            "packs_quarantined": [p.to_json() for p in self.packs],
        }


@dataclass
class PackRetired(Report):
    """A damaged pack moved to quarantine once its good objects were stored anew."""

    pack: str
    quarantined: str
    restored: int  # good objects copied into a new pack
    damaged: int  # objects it held that could not be read back


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
    command: str = "mjvault verify --repair",
) -> RepairReport:
    """Verify, quarantine what is damaged, refetch what can be, verify again, rebuild the
    index: the one repair path (``verify --repair`` and ``pull --repair`` alike).

    ``command`` names the command holding the write lock, for another command that meets it.
    """
    for source in sources:
        if not source.is_dir():
            raise MjvaultError(f"--from {source}: not a directory")
    with acquire_lock(vault, wait, command):
        before = verify(vault, read_data=read_data, subset=subset, on_object=on_object)
        report = RepairReport(before=before)
        fetcher = Refetcher(vault, sources, midjourney, report.notes, fetchers)
        actions: dict[str, RepairAction] = {}
        problems = before.problems
        for _round in range(MAX_ROUNDS):
            wanted: dict[str, RepairAction] = {}
            damaged_packs: dict[str, set[str]] = {}  # pack -> its damaged objects
            for problem in problems:
                oid = problem.object_id
                if problem.kind == "corrupt" and problem.pack is not None:
                    damaged_packs.setdefault(problem.pack, set())
                if problem.kind not in ("missing", "corrupt") or oid is None or oid in actions:
                    continue
                action = RepairAction(oid, problem.kind, problem.jobs, problem.snapshots)
                actions[oid] = action
                if problem.kind == "corrupt" and not _set_aside(
                    vault, action, problem.pack, damaged_packs
                ):
                    continue
                wanted[oid] = action
            for pack, damaged in damaged_packs.items():
                retired = retire_pack(vault, pack, damaged, set(damaged_packs))
                if retired is None:
                    continue
                report.packs.append(retired.summary)
                for oid in damaged | retired.unreadable:
                    held = actions.get(oid)
                    if held is None:  # damage the first pass did not see (a subset)
                        held = actions[oid] = wanted[oid] = RepairAction(oid, "corrupt")
                    held.quarantined = retired.summary.quarantined
            _found_in_vault(vault, wanted)
            wanted = {oid: a for oid, a in wanted.items() if not a.repaired}
            if not wanted:
                if damaged_packs:
                    problems = verify(vault).problems
                    continue
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


def _set_aside(
    vault: Vault, action: RepairAction, pack: str | None, damaged_packs: dict[str, set[str]]
) -> bool:
    """Move a damaged object file to quarantine, or note the damaged pack holding it (moved
    by :func:`retire_pack`); False if the object is intact but malformed."""
    oid = action.object_id
    if pack is not None:  # the damage is this pack's copy, whatever other copy there is
        damaged_packs.setdefault(pack, set()).add(oid)
        return True
    try:
        vault.store.check(oid)
    except ObjectNotFound:
        action.problem = "missing"
        return True
    except CorruptObject:
        if vault.store.is_loose(oid):
            action.quarantined = str(quarantine(vault, oid))
            return True
        location = vault.store.packs.locate(oid)
        if location is None:  # gone since it was read
            action.problem = "missing"
            return True
        damaged_packs.setdefault(location.pack, set()).add(oid)
        return True
    # The bytes are what the name says, yet they do not parse: another copy would be the same.
    action.reason = "the object matches its name but is malformed; no copy can differ"
    return False


def quarantine(vault: Vault, object_id: str) -> Path:
    """Move one object file to ``quarantine/<YYYY-MM-DD>/<id>`` (never over another file)."""
    return _quarantine_file(vault, vault.store.path(object_id), object_id)


def _quarantine_file(vault: Vault, path: Path, name: str) -> Path:
    target = _quarantine_target(vault, name)
    os.rename(path, target)
    return target


def _quarantine_target(vault: Vault, name: str) -> Path:
    """``quarantine/<YYYY-MM-DD>/<name>``, or ``<name>.<n>`` if that is taken."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = vault.path / QUARANTINE_DIR / day
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    n = 1
    while target.exists():
        target = folder / f"{name}.{n}"
        n += 1
    return target


def _found_in_vault(vault: Vault, wanted: dict[str, RepairAction]) -> None:
    """Objects whose damaged copy was set aside while another copy stays (loose and packed,
    or in two packs): that copy, read and checked, is the repair."""
    for oid, action in wanted.items():
        if not vault.store.exists(oid):
            continue
        try:
            vault.store.read(oid)
        except MjvaultError:
            continue  # damaged as well: the next round's verify names it
        action.source = "its other copy in this vault"


@dataclass
class _Retired:
    summary: PackRetired
    unreadable: set[str]  # objects found damaged while copying, beyond those named


def retire_pack(
    vault: Vault, pack: str, damaged: set[str], damaged_packs: AbstractSet[str] = frozenset()
) -> _Retired | None:
    """Copy the good objects of damaged ``pack`` into a new pack, then quarantine it.

    An object is copied unless ``damaged`` names it, it does not read back under its name, or
    a copy outside the damaged packs exists (a loose file, another pack). The new pack is
    published durably and mapped (a later pack wins in the map) before the damaged one is
    moved to ``quarantine/<date>/<pack>`` and forgotten by the map, so a good object is never
    left without a copy, and the damaged bytes are kept. Which objects a pack holds comes from
    its trailer, or from the pack map if the trailer is damaged; objects neither knows are
    reported missing by verify and refetched like any other. None if the pack is gone.
    """
    store = vault.store
    path = store.packs.path(pack)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    unreadable: set[str] = set()
    listed: list[bytes] = []
    good: list[tuple[str, bytes]] = []  # bounded by the pack's size
    try:
        entries, dictionary_id = _entries_of(store, fd, pack)
        for object_id, offset, length in sorted(entries, key=lambda e: e[1]):
            listed.append(object_id)
            oid = object_id.hex()
            if oid in damaged or _held_elsewhere(store, oid, pack, damaged_packs):
                continue
            data = os.pread(fd, length, offset)
            try:
                if len(data) != length:
                    raise CorruptObject(f"object {oid} is cut short in pack {pack}")
                good.append((oid, store.open_entry(oid, data, dictionary_id)))
            except CorruptObject:
                unreadable.add(oid)
    finally:
        os.close(fd)
    restored = len(good)
    # Only a pack whose every entry is restored can encode again to its own name.
    rebuilt = _rebuilt_pack(store, good) if good and len(good) == len(listed) else None
    if rebuilt is not None and rebuilt[0] == pack:
        # Every entry was good and encodes again to the very bytes the pack is named by (its
        # damage lay outside the entries): the damaged file is kept in quarantine and the
        # good bytes replace it under the same name, atomically.
        target = _quarantine_copy(vault, path, pack)
        atomic_write(path, rebuilt[1], mode=0o444)
        return _Retired(PackRetired(pack, str(target), restored, 0), unreadable)
    rebuilt = None  # memory: a pack's worth of bytes, not needed by the batch
    batch = store.batch()
    for _, plaintext in good:
        batch.put(plaintext, again=True)
    # Durable and mapped before the damaged pack leaves: never the only copy moved away.
    batch.flush()
    for oid, _ in good:
        location = store.packs.locate(oid)
        if location is None or location.pack == pack:
            raise IntegrityError(f"the objects of damaged pack {pack} could not be stored anew")
    target = _quarantine_file(vault, path, pack)
    store.packs.map().remove(pack, listed)
    summary = PackRetired(pack, str(target), restored, len(damaged | unreadable))
    return _Retired(summary, unreadable)


def _rebuilt_pack(store: ObjectStore, good: list[tuple[str, bytes]]) -> tuple[str, bytes] | None:
    """The name and bytes a pack of ``good`` objects would have, encoded as a batch would."""
    if not good:
        return None
    builder = PackBuilder()
    for oid, plaintext in good:
        builder.add(oid, plaintext, compress=True)
    current = store.packs.map().dictionary()
    dictionary = store.packs.dictionary(current, store.read) if current else None
    name, data, _ = builder.finish(store.keys, dictionary)
    return name, data


def _quarantine_copy(vault: Vault, path: Path, name: str) -> Path:
    """A durable copy of ``path`` in quarantine (a hard link where the file system allows)."""
    target = _quarantine_target(vault, name)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
        with open(target, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(target.parent)
    return target


def _entries_of(
    store: ObjectStore, fd: int, pack: str
) -> tuple[list[tuple[bytes, int, int]], str | None]:
    try:
        trailer = read_trailer(fd, os.fstat(fd).st_size, f"pack {pack}")
    except PackDamaged:
        known = store.packs.map().entries_of(pack)
        return known if known is not None else ([], None)
    return [(e.object_id, e.offset, e.length) for e in trailer.entries], trailer.dictionary_id


def _held_elsewhere(
    store: ObjectStore, oid: str, pack: str, damaged_packs: AbstractSet[str]
) -> bool:
    if store.is_loose(oid):
        return True
    location = store.packs.locate(oid)
    return location is not None and location.pack != pack and location.pack not in damaged_packs


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
        for oid in sorted(wanted):
            candidate = root / "objects" / oid[:2] / oid
            try:
                plaintext = self._foreign_plaintext(oid, candidate.read_bytes(), None)
            except (OSError, MjvaultError):
                continue
            if plaintext is not None and self._accept(batch, oid, plaintext):
                found[oid] = str(candidate)
        if len(found) < len(wanted):
            found |= self._from_packs(batch, root, wanted - found.keys())
        return found

    def _from_packs(self, batch: WriteBatch, root: Path, wanted: set[str]) -> dict[str, str]:
        """Wanted objects packed in another vault: each pack's trailer read (never its pack
        map: that vault's files are only read), and the entries wanted read from it."""
        found: dict[str, str] = {}
        folder = root / PACKS_DIR
        try:
            names = sorted(n for n in os.listdir(folder) if is_pack_id(n))
        except OSError:
            return found
        for name in names:
            if len(found) == len(wanted):
                break
            path = folder / name
            try:
                trailer = read_trailer_of(os.fspath(path))
                remaining = wanted - found.keys()
                here = [e for e in trailer.entries if e.hex_id in remaining]
                if not here:
                    continue
                dictionary = None
                if trailer.dictionary_id is not None:
                    dictionary = self._foreign_dictionary(root, trailer.dictionary_id)
                with open(path, "rb") as handle:
                    for entry in here:
                        handle.seek(entry.offset)
                        data = handle.read(entry.length)
                        try:
                            plaintext = self._foreign_plaintext(entry.hex_id, data, dictionary)
                        except MjvaultError:
                            continue
                        if plaintext is not None and self._accept(batch, entry.hex_id, plaintext):
                            found[entry.hex_id] = f"{path} (packed)"
            except (OSError, MjvaultError):
                continue
        return found

    def _foreign_dictionary(self, root: Path, dictionary_id: str) -> Dictionary | None:
        data = (root / "objects" / dictionary_id[:2] / dictionary_id).read_bytes()
        content = self._foreign_plaintext(dictionary_id, data, None)
        if content is None or self.vault.store.name_of(content) != dictionary_id:
            return None
        return Dictionary(dictionary_id, content)

    def _foreign_plaintext(
        self, oid: str, data: bytes, dictionary: Dictionary | None
    ) -> bytes | None:
        """The plaintext another vault's object bytes hold under this vault's keys, or None
        when they cannot be read with them (unchecked: :meth:`_accept` checks the name)."""
        keys = self.vault.store.keys
        if keys is not None:
            return keys.open(oid, data, dictionary)
        return open_unsealed(data, dictionary)  # None: another vault's sealed object

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
    """(object id, job id, image index, record id) for each wanted image, from every snapshot
    (parts that cannot be read are passed over: they name nothing to fetch)."""
    visited: set[str] = set()
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            root = decode_manifest(snapshot_id, vault.store.read(snapshot_id)).tree
        except (MjvaultError, IntegrityError):
            continue
        for _, node in walk_nodes(
            vault.store.read,
            root,
            seen=visited,
            on_error=lambda _id, _exc: None,
            damage=(MjvaultError,),
        ):
            if isinstance(node, Inner):
                continue
            for entry in node.entries:
                for index, image in enumerate(entry.images):
                    if image is not None and image in wanted:
                        yield image, entry.job_id, index, entry.record
