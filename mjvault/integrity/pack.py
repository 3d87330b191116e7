"""``mjvault pack``: loose records and tree nodes into packs, small packs into larger ones.

How a vault written before packs existed (format version 1, every object loose) gets packed,
and how the small packs of many daily syncs are merged. Under the write lock, plan then
execute:

* **plan**: the packs smaller than :data:`~mjvault.store.repack.SMALL_PACK_BYTES`; they are
  merged when there are at least two (``min_small_packs``);
* **execute**: the small packs' objects, then every loose record and tree node (told by
  reading it: media, snapshot manifests and dictionaries stay loose), go into new packs
  through a :class:`~mjvault.store.repack.Repacker`, which removes each old copy only once
  its new pack is durable and mapped. A loose object already packed by a run that was killed
  has only its loose copy removed.

Memory is bounded: loose objects are streamed one fan-out folder at a time and a pack's worth
of them is held at once. :func:`pack_after_write` is the cheap automatic form that `sync`,
`import` and `gc` run: it merges small packs only, and only once they pile up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mjvault.errors import CorruptObject, ObjectNotFound, VaultLocked
from mjvault.integrity.gc import acquire_lock
from mjvault.reports import Report
from mjvault.store.packfile import read_trailer_of
from mjvault.store.repack import (
    PackFile,
    Repacker,
    loose_small_plaintext,
    small_packs,
)
from mjvault.store.tempfiles import remove_stale_temp_files
from mjvault.vault import Vault

# Automatic packing merges small packs once there are more than this many (`pack.auto_after`).
DEFAULT_AUTO_AFTER = 32
MAX_NOTES = 20


@dataclass
class PackReport(Report):
    dry_run: bool
    small_packs: int = 0
    small_pack_bytes: int = 0
    packs_merged: int = 0
    loose_seen: int = 0
    loose_packed: int = 0
    loose_packed_bytes: int = 0
    loose_already_packed: int = 0
    loose_kept: int = 0
    damaged: int = 0
    objects_packed: int = 0
    packs_written: int = 0
    pack_bytes_written: int = 0
    packs_removed: int = 0
    loose_removed: int = 0
    bytes_removed: int = 0
    temp_files_removed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def pack(
    vault: Vault,
    *,
    dry_run: bool = False,
    wait: float | None = None,
    loose: bool = True,
    min_small_packs: int = 2,
    on_object: Callable[[], None] | None = None,
) -> PackReport:
    """Pack loose small objects and merge small packs; see the module docstring."""
    started = time.monotonic()
    report = PackReport(dry_run=dry_run)
    with acquire_lock(vault, wait, "mjvault pack"):
        temp = remove_stale_temp_files(vault.path, dry_run=dry_run)
        report.temp_files_removed = temp.files
        _run(vault, report, loose=loose, min_small_packs=min_small_packs, on_object=on_object)
    report.seconds = time.monotonic() - started
    return report


def pack_after_write(vault: Vault, auto_after: int) -> PackReport | None:
    """Merge small packs once more than ``auto_after`` pile up (0: never). Costs a listing of
    ``packs/`` when there is nothing to do; skipped, not waited for, while another writer
    holds the lock (a later run does it)."""
    if auto_after <= 0 or len(small_packs(vault.store)) <= auto_after:
        return None
    try:
        return pack(vault, loose=False, min_small_packs=auto_after + 1)
    except VaultLocked:
        return None


def _run(
    vault: Vault,
    report: PackReport,
    *,
    loose: bool,
    min_small_packs: int,
    on_object: Callable[[], None] | None,
) -> None:
    store = vault.store
    store.packs.reconcile()
    found = small_packs(store)
    report.small_packs = len(found)
    report.small_pack_bytes = sum(p.size for p in found)
    merging = found if len(found) >= max(min_small_packs, 2) else []
    repacker = None if report.dry_run else Repacker(store)
    try:
        for candidate in merging:
            _merge(vault, candidate, repacker, report, on_object)
        if loose:
            for object_id in store.iter_loose_ids():
                if on_object:
                    on_object()
                _pack_loose(vault, object_id, repacker, report)
        if repacker is not None:
            repacker.flush()
    except BaseException:
        if repacker is not None:
            repacker.discard()
        raise
    if repacker is not None:
        counts = repacker.counts
        report.objects_packed = counts.objects_packed
        report.packs_written = counts.packs_written
        report.pack_bytes_written = counts.bytes_written
        report.packs_removed = counts.packs_removed
        report.loose_removed = counts.loose_removed
        report.bytes_removed = counts.pack_bytes_removed + counts.loose_bytes_removed


def _merge(
    vault: Vault,
    candidate: PackFile,
    repacker: Repacker | None,
    report: PackReport,
    on_object: Callable[[], None] | None,
) -> None:
    try:
        trailer = read_trailer_of(str(vault.store.packs.path(candidate.name)))
    except FileNotFoundError:
        return
    except CorruptObject as exc:
        _note(report, f"pack {candidate.name[:12]} not merged: {exc}")
        return
    try:
        for entry in trailer.entries:
            if on_object:
                on_object()
            plaintext = vault.store.read(entry.hex_id)
            if repacker is not None:
                repacker.add(entry.hex_id, plaintext)
    except (CorruptObject, ObjectNotFound) as exc:
        # Left as it is (what was copied is a harmless duplicate): verify reports it and
        # repair may still save its other objects.
        report.damaged += 1
        _note(report, f"pack {candidate.name[:12]} not merged: {exc}")
        return
    report.packs_merged += 1
    if repacker is not None:
        repacker.retire_pack(candidate.name)


def _pack_loose(
    vault: Vault, object_id: str, repacker: Repacker | None, report: PackReport
) -> None:
    report.loose_seen += 1
    store = vault.store
    try:
        plaintext = loose_small_plaintext(store, object_id)
    except CorruptObject as exc:
        report.damaged += 1
        _note(report, f"{object_id[:12]} left loose: {exc}")
        return
    if plaintext is None:
        report.loose_kept += 1
        return
    if store.packs.contains(object_id):
        # Packed by a run that was killed before it removed the loose copy.
        report.loose_already_packed += 1
        if repacker is not None:
            repacker.retire_loose(object_id)
        return
    report.loose_packed += 1
    report.loose_packed_bytes += len(plaintext)
    if repacker is not None:
        repacker.add(object_id, plaintext)
        repacker.retire_loose(object_id)


def _note(report: PackReport, text: str) -> None:
    if len(report.notes) < MAX_NOTES:
        report.notes.append(text)
