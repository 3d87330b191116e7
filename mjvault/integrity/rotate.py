"""``mjvault key rotate``: every object of an encrypted vault sealed again under a new secret.

Old copies of a key file (or of a passphrase and a key file) then open nothing: the erasure
that means something for an encrypted vault, whatever the disk kept of deleted files.

The object secret is replaced and the naming secret kept (docs/FORMAT.md §5), so every id,
tree, snapshot, ref and pack map stays as it is; only ciphertext changes. Under the write
lock, in four phases recorded in the journal ``keys/.rotation`` (:mod:`mjvault.store.keyring`),
which is written first:

1. ``views``: views' sealed files sealed again, before any object (the journal's ``views``
   flag set after). A view's file list matches rows by sealed job id: one still sealed under
   the old secret would be missed by every checkout until the rotation ends (a list opened
   meanwhile seals its job ids again itself, :class:`~mjvault.views.state.SealedSqliteTable`).
2. ``objects``: loose files sealed again through a temp file, synced, renamed over the old
   file (in batches, the journal noting the last fan-out directory done); then each pack
   written again as a new pack, entry by entry, and swapped in under §12's Order rule.
3. ``check``: every object read back under the new secret alone and checked against its name;
   a straggler still under the old one (a pull meanwhile) is sealed again, damage stops here.
4. ``finish``: sealed documents sealed again, the index (a cache) dropped, the new key file
   written, every other key file removed and the keys directory synced, then the journal.

Killed at any moment, the vault stays readable (either secret opens an object while the
journal exists) and the next run continues from the journal. Memory stays flat: objects are
streamed in pieces, packs written entry by entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3

from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, VaultNotFound
from mjvault.integrity import exclusions
from mjvault.lock import WriteLock
from mjvault.reports import Report
from mjvault.store import sealeddoc
from mjvault.store.crypto import (
    SEALED_HEADER,
    KdfParams,
    VaultKeys,
    list_keyfiles,
    new_master_secret,
    split_secret,
    store_keyfile,
    unwrap_master,
    wrap_secret,
)
from mjvault.store.fsutil import sync_filesystem, write_all
from mjvault.store.keyring import JOURNAL_VERSION, journal_path, read_journal, write_journal
from mjvault.store.objects import is_object_id
from mjvault.store.packfile import PackFileWriter, iter_entry_bytes, read_trailer
from mjvault.store.repack import Repacker
from mjvault.store.streams import ObjectCheck, checked_file
from mjvault.store.tempfiles import remove_stale_temp_files
from mjvault.vault import Vault, is_vault

# Files up to this size are sealed again from memory; larger ones stream in pieces.
WHOLE_FILE_MAX = 4 * 1024 * 1024
PIECE = 1024 * 1024
# Sealed temp files waiting for their rename: synced and renamed once they add up to this.
# (Two syncs and a journal write a batch: per fan-out directory they would cost more than the
# sealing in a vault of small objects.)
BATCH_BYTES = 256 * 1024 * 1024
BATCH_FILES = 4096
RENAME_THREADS = 8
# Loose files are sealed again on a few threads: creating each temp file waits on the file
# system's journal, and the reads, AES and writes release the GIL. At most SEAL_CHUNK files
# (each at most WHOLE_FILE_MAX in memory, larger ones streamed) are in flight.
SEAL_THREADS = 4
SEAL_CHUNK = 64

# Called with a phase ("seal", "check") and a number of objects done.
Progress = Callable[[str, int], None]


class RotationIncomplete(IntegrityError):
    """Objects that neither secret opens: the rotation keeps its journal and the old keys."""


@dataclass
class RotateReport(Report):
    key: str = ""
    resumed: bool = False
    loose_resealed: int = 0
    loose_bytes: int = 0
    packs_rewritten: int = 0
    pack_bytes: int = 0
    objects_checked: int = 0
    stragglers: int = 0
    views_resealed: int = 0
    documents_resealed: int = 0
    keys_removed: list[str] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def rotate(
    root: Path,
    passphrase: str,
    *,
    kdf: KdfParams | None = None,
    progress: Progress | None = None,
) -> RotateReport:
    """Rotate the object secret of the encrypted vault at ``root`` (or finish a rotation a
    killed run left); the new key file is wrapped under ``passphrase``."""
    started = time.monotonic()
    report = RotateReport()
    keys_dir = root / "keys"
    ensure_encrypted(root)
    with WriteLock(root, command="mjvault key rotate"):
        remove_stale_temp_files(root)
        journal = read_journal(keys_dir)
        if journal is None:
            journal = _begin(root, passphrase, kdf)
        else:
            report.resumed = True
        report.key = str(journal["key"]["id"])
        with Vault.open(root, passphrase=passphrase) as vault:
            keys = vault.store.keys
            if keys is None:
                raise MjvaultError("this vault is not encrypted: it has no keys to rotate")
            if not journal.get("views"):
                # Older journals lack the flag: their views are sealed again here too.
                report.views_resealed = _reseal_views(vault)
                journal["views"] = True
                write_journal(keys_dir, journal)
            if journal["phase"] == "objects":
                _reseal_loose(vault, keys, journal, report, progress)
                _rewrite_packs(vault, keys, journal, report, progress)
                journal["phase"] = "check"
                write_journal(keys_dir, journal)
            if journal["phase"] == "check":
                _check(vault, keys, journal, report, progress)
                journal["phase"] = "finish"
                write_journal(keys_dir, journal)
            _finish(vault, journal, report)
    report.seconds = time.monotonic() - started
    return report


def ensure_encrypted(root: Path) -> None:
    """Refuse, before any passphrase is asked for or any lock taken, a folder that is not an
    encrypted vault."""
    if not is_vault(root):
        raise VaultNotFound(f"{root} is not a vault")
    if not (root / "keys").is_dir():
        raise MjvaultError(f"{root} is not an encrypted vault: it has no keys to rotate")


def _begin(root: Path, passphrase: str, kdf: KdfParams | None) -> dict[str, Any]:
    """A new object secret (the naming secret kept), wrapped into the journal before any
    object is sealed under it."""
    old, _ = unwrap_master(root / "keys", passphrase)  # a wrong passphrase stops here
    _, naming = split_secret(old)
    secret = new_master_secret() + naming
    journal: dict[str, Any] = {
        "version": JOURNAL_VERSION,
        "key": wrap_secret(secret, passphrase, label="rotated", kdf=kdf),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "phase": "objects",
        "views": False,
        "loose_done": "",
        "rotated_packs": [],
    }
    write_journal(root / "keys", journal)
    return journal


# -- loose objects -----------------------------------------------------------------------------
def _reseal_loose(
    vault: Vault,
    keys: VaultKeys,
    journal: dict[str, Any],
    report: RotateReport,
    progress: Progress | None,
) -> None:
    store = vault.store
    objects_dir = store.objects_dir
    if not objects_dir.is_dir():
        return
    fans = sorted(
        name for name in os.listdir(objects_dir) if len(name) == 2 and name > journal["loose_done"]
    )
    waiting: list[tuple[Path, Path]] = []
    waiting_bytes = 0
    finished = journal["loose_done"]  # every file of the fan-outs up to here is queued

    def publish() -> None:
        nonlocal waiting, waiting_bytes
        _publish(store.tmp_dir, objects_dir, waiting)
        waiting, waiting_bytes = [], 0
        if finished != journal["loose_done"]:
            journal["loose_done"] = finished
            write_journal(vault.path / "keys", journal)

    def attempt(name: str) -> tuple[Path, Path | None, int, bool]:
        path = objects_dir / name[:2] / name
        try:
            tmp, size = _reseal_file(keys, name, path, store.tmp_dir)
        except CorruptObject:
            return path, None, 0, True
        except FileNotFoundError:
            return path, None, 0, False
        return path, tmp, size, False

    with ThreadPoolExecutor(SEAL_THREADS, thread_name_prefix="mjvault-rotate") as pool:
        for fan in fans:
            names = sorted(n for n in os.listdir(objects_dir / fan) if is_object_id(n))
            for start in range(0, len(names), SEAL_CHUNK):
                chunk = names[start : start + SEAL_CHUNK]
                for path, tmp, size, damaged in pool.map(attempt, chunk):
                    if damaged:
                        report.damaged.append(path.name)
                    if tmp is None:
                        continue
                    waiting.append((tmp, path))
                    waiting_bytes += size
                    report.loose_resealed += 1
                    report.loose_bytes += size
                    if progress:
                        progress("seal", 1)
                if waiting_bytes >= BATCH_BYTES or len(waiting) >= BATCH_FILES:
                    publish()
            finished = fan
    publish()


def _publish(tmp_dir: Path, objects_dir: Path, waiting: list[tuple[Path, Path]]) -> None:
    """Every sealed temp file durable, then renamed over the file it replaces (§8's order:
    a file appears under an object's name only with its bytes on disk)."""
    if not waiting:
        return
    sync_filesystem(tmp_dir)
    # Replacing a file frees the old one's blocks: milliseconds each on ext4, which overlap
    # well across threads (as Repacker's unlinks do).
    with ThreadPoolExecutor(RENAME_THREADS, thread_name_prefix="mjvault-rotate") as pool:
        for _ in pool.map(lambda pair: os.replace(*pair), waiting):
            pass
    sync_filesystem(objects_dir)


def _reseal_file(
    keys: VaultKeys, object_id: str, path: Path, tmp_dir: Path
) -> tuple[Path | None, int]:
    """The loose file sealed again in a temp file (not synced), with its size; no temp file
    when it is sealed under the new secret already."""
    size = os.stat(path).st_size
    tmp = tmp_dir / f"{object_id[:16]}.{os.urandom(6).hex()}.tmp"
    if size <= WHOLE_FILE_MAX:
        with open(path, "rb") as handle:
            fresh = keys.reseal(object_id, handle.read())
        if fresh is None:
            return None, size
        _write_new(tmp, [fresh])
        return tmp, size
    if not keys.rotating:
        _check_file(keys, object_id, path)
        return None, size
    with open(path, "rb") as src:
        head = src.read(SEALED_HEADER)
        resealer = keys.resealer(object_id, head)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            write_all(fd, resealer.header)
            while piece := src.read(PIECE):
                write_all(fd, resealer.update(piece))
            write_all(fd, resealer.finish())
        except CorruptObject:
            os.close(fd)
            os.unlink(tmp)
            _check_file(keys.without_retired(), object_id, path)  # already under the new one?
            return None, size
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
    return tmp, size


def _check_file(keys: VaultKeys, object_id: str, path: Path) -> None:
    """Read a loose file through under ``keys`` and check it against its name (streamed)."""
    for _ in checked_file(path, ObjectCheck(object_id, keys)):
        pass


def _write_new(path: Path, parts: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        for part in parts:
            write_all(fd, part)
    finally:
        os.close(fd)


# -- packs -------------------------------------------------------------------------------------
def _rewrite_packs(
    vault: Vault,
    keys: VaultKeys,
    journal: dict[str, Any],
    report: RotateReport,
    progress: Progress | None,
) -> None:
    store = vault.store
    if not store.packs.dir.is_dir():
        return
    store.packs.reconcile()
    done = set(journal["rotated_packs"])
    repacker = Repacker(store)
    try:
        for name in store.packs.names():
            if name not in done:
                _rewrite_pack(vault, keys, name, repacker, journal, report, progress)
    finally:
        repacker.discard()


def _rewrite_pack(
    vault: Vault,
    keys: VaultKeys,
    name: str,
    repacker: Repacker,
    journal: dict[str, Any],
    report: RotateReport,
    progress: Progress | None,
) -> None:
    """One pack written again, entry by entry, into a new pack; the new one durable and mapped
    before the old one is dropped (Repacker's order). A pack already wholly under the new
    secret is left; one with an entry neither secret opens is left whole, and reported."""
    store = vault.store
    path = store.packs.path(name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    tmp = store.tmp_dir / f"pack-{name[:16]}.{os.urandom(6).hex()}.tmp"
    writer = None
    changed = False
    try:
        trailer = read_trailer(fd, os.fstat(fd).st_size, name)
        writer = PackFileWriter(tmp, trailer.dictionary_id)
        for entry, data in iter_entry_bytes(fd, trailer):
            fresh = keys.reseal(entry.hex_id, data)
            changed = changed or fresh is not None
            writer.add(entry.object_id, data if fresh is None else fresh)
    except CorruptObject as exc:
        if writer is not None:
            writer.abort()
        report.damaged.append(f"pack {name}: {exc}")
        return
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        os.close(fd)
    if not changed:
        writer.abort()
        return
    new_name, new_trailer = writer.finish()
    # Noted first: a run killed after the new pack is published does not rewrite it again.
    journal["rotated_packs"].append(new_name)
    write_journal(vault.path / "keys", journal)
    repacker.add_pack_file(new_name, tmp, new_trailer, trailer.dictionary_id)
    repacker.retire_pack(name)
    repacker.flush()
    size = os.stat(store.packs.path(new_name)).st_size
    report.packs_rewritten += 1
    report.pack_bytes += size
    if progress:
        progress("seal", len(new_trailer.entries))


# -- check -------------------------------------------------------------------------------------
def _check(
    vault: Vault,
    keys: VaultKeys,
    journal: dict[str, Any],
    report: RotateReport,
    progress: Progress | None,
) -> None:
    """Every object opens under the new secret alone and matches its name. A straggler still
    under the old secret is sealed again; anything else damaged stops the rotation before any
    key is removed."""
    store = vault.store
    new_only = keys.without_retired()
    stragglers: list[tuple[Path, Path]] = []
    for object_id in store.iter_loose_ids():
        path = store.path(object_id)
        try:
            _check_file(new_only, object_id, path)
        except CorruptObject:
            try:
                tmp, _ = _reseal_file(keys, object_id, path, store.tmp_dir)
            except CorruptObject:
                report.damaged.append(object_id)
                continue
            if tmp is not None:
                stragglers.append((tmp, path))
        except FileNotFoundError:
            continue
        report.objects_checked += 1
        if progress:
            progress("check", 1)
    _publish(store.tmp_dir, store.objects_dir, stragglers)
    report.stragglers += len(stragglers)
    retry: list[str] = []
    for name in store.packs.names() if store.packs.dir.is_dir() else []:
        if not _pack_opens(vault, new_only, name, report, progress):
            retry.append(name)
    if retry and not report.damaged:
        repacker = Repacker(store)
        try:
            for name in retry:
                before = report.packs_rewritten
                _rewrite_pack(vault, keys, name, repacker, journal, report, progress)
                report.stragglers += report.packs_rewritten - before
        finally:
            repacker.discard()
        for name in retry:
            if store.packs.path(name).exists():
                report.damaged.append(f"pack {name}")
    if report.damaged:
        raise RotationIncomplete(
            f"{len(report.damaged)} object(s) or pack(s) open under neither secret: "
            "the rotation is not finished and the old keys are kept",
            hint="run `mjvault verify --read-data` and `mjvault repair`, then `mjvault key "
            "rotate` again to finish",
        )


def _pack_opens(
    vault: Vault, keys: VaultKeys, name: str, report: RotateReport, progress: Progress | None
) -> bool:
    store = vault.store
    try:
        fd = os.open(store.packs.path(name), os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        trailer = read_trailer(fd, os.fstat(fd).st_size, name)
        dictionary = store._dictionary(trailer.dictionary_id) if trailer.dictionary_id else None
        for entry, data in iter_entry_bytes(fd, trailer):
            plaintext = keys.open(entry.hex_id, data, dictionary)
            if blake3.blake3(plaintext, key=keys.naming_key).digest() != entry.object_id:
                return False
            report.objects_checked += 1
            if progress:
                progress("check", 1)
    except CorruptObject:
        return False
    finally:
        os.close(fd)
    return True


# -- finish ------------------------------------------------------------------------------------
def _finish(vault: Vault, journal: dict[str, Any], report: RotateReport) -> None:
    """Sealed documents sealed again, the index dropped, then the keys: the new key file
    first, then every other one, then the journal (until it goes, a rerun redoes these
    steps). Views were sealed again before any object (phase ``views``)."""
    keys = vault.store.keys
    assert keys is not None
    # Sealed documents (sync state) open under either secret until the journal goes; after,
    # only under the new one.
    report.documents_resealed = sealeddoc.reseal_all(vault.path, keys)
    # The perceptual hashes: each block opened under either secret and sealed again (a few
    # ms per 4096 rows); dropping them would cost a decode of every image to make again.
    report.documents_resealed += _reseal_hashes(vault)
    if exclusions.exists(vault):
        # The list's tokens and check use the naming secret and stay; its body is sealed
        # with the text key.
        exclusions.write(vault, exclusions.read(vault))
        report.documents_resealed += 1
    _rebuild_index(vault)
    # Image vectors (`mjvault embed`) are a cache too, but hours of a model's work: sealed
    # again rather than dropped.
    from mjvault.similarity.embeddings import reseal_embeddings

    report.documents_resealed += reseal_embeddings(vault)
    keys_dir = vault.path / "keys"
    new_id = store_keyfile(keys_dir, journal["key"])
    for info in list_keyfiles(keys_dir):
        if info.id != new_id and info.path.name != new_id:
            info.path.unlink()
            report.keys_removed.append(info.id)
    # The removals durable before the journal goes: a crash could otherwise keep the
    # journal's removal and lose theirs, and an old key file would open the vault again
    # with no journal to say it is retired.
    sync_filesystem(keys_dir)
    journal_path(keys_dir).unlink()
    sync_filesystem(keys_dir)
    remotes = vault.path / "remotes"
    if remotes.is_dir():
        report.remotes = sorted(p.stem for p in remotes.glob("*.json"))


def _reseal_hashes(vault: Vault) -> int:
    from mjvault.similarity.store import FILE, HashStore

    if not (vault.path / FILE).exists():
        return 0
    with HashStore.open(vault, writable=True) as store:
        return 1 if store.reseal() else 0


def _reseal_views(vault: Vault) -> int:
    """Each view's state file and file list written again under the new secret (the list into
    a new file renamed over the old one: nothing of the old ciphertext stays in it)."""
    from mjvault.views.registry import ViewRegistry
    from mjvault.views.state import SealedSqliteTable

    registry = ViewRegistry(vault)
    names = registry.names()
    if not names:
        return 0
    keys = vault.store.keys
    assert keys is not None
    done = 0
    with registry.lock():
        for name in names:
            try:
                view = registry.load(name)
            except IntegrityError:
                continue  # a damaged view file: opens under no key, derived data
            files_path = registry._files_path(name)
            if files_path.exists():
                tmp = files_path.with_name(f".{files_path.name}.{os.urandom(6).hex()}.tmp")
                table = SealedSqliteTable(tmp, keys, fresh=True)
                rows = []
                for job_id, index, record in view.table.iter_files():
                    rows.append(((job_id, index), record))
                    if len(rows) >= 5000:
                        table.put_many(rows)
                        rows = []
                table.put_many(rows)
                table.commit()
                table.close()
                view.release()
                # Reading the old list rolled back any journal it had; one left beside the
                # new list would be applied to it. Then one rename: old list or new.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(files_path.with_name(files_path.name + "-journal"))
                os.replace(tmp, files_path)
                view._table = None
                view._opener = None
                registry.bind(view, fresh=False)
            registry.save(view)
            view.release()
            done += 1
    return done


def _rebuild_index(vault: Vault) -> None:
    """The index is a cache (FORMAT.md §9): what it sealed under the old secret is dropped
    and it is built again from the objects (the write lock is held: no writer races it). The
    pack map holds ids only and stays."""
    index_dir = vault.path / "index"
    if not index_dir.is_dir():
        return
    if vault._index is not None:
        vault._index.close()
        vault._index = None
    for entry in index_dir.iterdir():
        if entry.name == "packs":
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    head = vault.head()
    vault.sync_index(head.tree if head else None)
