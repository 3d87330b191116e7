"""The library's front door: ``Vault`` opens or creates a vault and composes its parts.

from mjvault import Vault
vault = Vault.open("~/mj-vault")
for entry in vault.entries():
    job = vault.job(entry)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mjvault.errors import (
    CorruptObject,
    IntegrityError,
    JobNotFound,
    KeysChanged,
    MjvaultError,
    ObjectNotFound,
    PassphraseRequired,
    UnsupportedFormat,
    VaultExists,
    VaultLocked,
    VaultNotFound,
)
from mjvault.index import Index, JobSummary
from mjvault.index.db import IndexDamaged
from mjvault.index.kinds import kind_reader
from mjvault.lock import WriteLock
from mjvault.model import Job, job_from_json
from mjvault.records import decode_record
from mjvault.snapshots import HeadDamaged, Refs, Snapshot, decode_manifest
from mjvault.store.crypto import (
    KdfParams,
    VaultKeys,
    list_keyfiles,
    new_master_secret,
    unwrap_master,
    write_keyfile,
)
from mjvault.store.fsutil import atomic_write
from mjvault.store.keyring import (
    keys_stamp,
    open_keys,
)
from mjvault.store.objects import ObjectStore
from mjvault.tree import JobEntry, TreeReader

if TYPE_CHECKING:
    from mjvault.writer import ArchiveWriter

log = logging.getLogger(__name__)

FORMAT_NAME = "mjvault"
# 2: the vault may keep small objects in packs/ (FORMAT.md, "Packs"); 3: those packs, and
# the tree leaves in them, may be of version 2 (FORMAT.md §6, §10). An older vault is read
# as it is and marked 3 just before this mjvault publishes a pack in it, so an older mjvault,
# which would not find packed objects or read the new packs and leaves, refuses it instead
# of calling them missing or damaged.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CONFIG_FILE = "config"

PassphraseSource = str | Callable[[], str] | None
ProgressCallback = Callable[[int], None]


def is_vault(path: Path) -> bool:
    try:
        doc = json.loads((path / CONFIG_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT_NAME


def lay_out_vault(root: Path, *, encrypted: bool) -> None:
    """The directories and ``config`` of an empty vault (key files, if any, already in place).

    ``config`` is written last: a directory is a vault only once everything it needs exists.
    """
    for sub in ("objects", "refs/snapshots", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "id": uuid.uuid4().hex,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "encryption": (
            {"cipher": "aes-256-gcm", "naming": "blake3-keyed", "kdf": "argon2id"}
            if encrypted
            else None
        ),
    }
    atomic_write(root / CONFIG_FILE, json.dumps(config, indent=2).encode("utf-8"))
    if encrypted:
        os.chmod(root, 0o700)


def find_vault(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that is a vault, as git finds a repository."""
    for candidate in (start, *start.parents):
        if is_vault(candidate):
            return candidate
    return None


def _resolve_passphrase(passphrase: PassphraseSource) -> str:
    if passphrase is None:
        raise PassphraseRequired(
            "this vault is encrypted and no passphrase was given",
            hint="set MJVAULT_PASSPHRASE or pass --passphrase-file FILE",
        )
    return passphrase() if callable(passphrase) else passphrase


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


class Vault:
    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        keys: VaultKeys | None,
        master: bytes | None,
        stamp: tuple[Any, ...] | None = None,
    ):
        self.path = path
        self.config = config
        self._master = master
        # The key files as they were when these keys were read (taken before reading them):
        # a writer compares it once it holds the lock (check_keys).
        self._keys_stamp = stamp if stamp is not None else keys_stamp(path / "keys")
        self.store = ObjectStore(path, keys, before_pack=self._allow_packs)
        self.refs = Refs(path)
        self.tree = TreeReader(self._read_node)
        self._index: Index | None = None
        # Whether open_index() found the index damaged and discarded it: verify reports it.
        self.index_discarded = False
        # Per-vault resources of other modules (the thumbnail table's connection), closed by
        # close(): one owner, so a process that opens a vault per cycle holds none of them.
        self._attached: dict[str, _Closable] = {}
        self._attached_lock = threading.Lock()

    def attached(self, key: str, make: Callable[[], _C]) -> _C:
        """The resource ``key`` of this open vault, made by ``make`` on first use, closed
        with the vault."""
        with self._attached_lock:
            found = self._attached.get(key)
            if found is None:
                found = self._attached[key] = make()
            return found  # type: ignore[return-value]

    # -- creating and opening --------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        encrypt: bool = False,
        passphrase: PassphraseSource = None,
        kdf: KdfParams | None = None,
    ) -> Vault:
        root = Path(path).expanduser()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if is_vault(root):
                raise VaultExists(f"{root} is already a vault")
            raise VaultExists(
                f"{root} exists and is not empty", hint="choose a new or empty directory"
            )
        root.mkdir(parents=True, exist_ok=True)
        master: bytes | None = None
        if encrypt:
            secret = _resolve_passphrase(passphrase)
            master = new_master_secret()
            write_keyfile(root / "keys", master, secret, label="initial", kdf=kdf)
        lay_out_vault(root, encrypted=encrypt)
        return cls.open(root, passphrase=(lambda: secret) if encrypt else None)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, passphrase: PassphraseSource = None) -> Vault:
        root = Path(path).expanduser()
        try:
            config = json.loads((root / CONFIG_FILE).read_bytes())
        except FileNotFoundError:
            raise VaultNotFound(f"{root} is not a vault (no {CONFIG_FILE} file)") from None
        except (OSError, ValueError) as exc:
            raise VaultNotFound(f"{root}/{CONFIG_FILE} is unreadable: {exc}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise VaultNotFound(f"{root} is not an mjvault vault")
        if config.get("version") not in READABLE_VERSIONS:
            raise UnsupportedFormat(
                f"vault format version {config.get('version')} is not supported by this mjvault",
                hint="upgrade mjvault",
            )
        keys = master = None
        stamp = keys_stamp(root / "keys")
        if config.get("encryption"):
            keys, master = open_keys(root / "keys", _resolve_passphrase(passphrase))
        return cls(root, config, keys, master, stamp)

    def reopen(self) -> Vault:
        """Another handle on this vault with the keys this one opened: no passphrase is asked
        again (a server that prompted for it at start writes from worker threads this way,
        each on its own handle, while this one serves readers)."""
        return type(self)(
            self.path, dict(self.config), self.store.keys, self._master, self._keys_stamp
        )

    def check_keys(self) -> None:
        """Refuse (:class:`KeysChanged`) when an encrypted vault's keys were rotated since these
        were read: a long-lived handle (a server's) would seal what it writes under the
        retired secret, which no key opens once the rotation has removed it. Called by a
        writer once it holds the write lock, when no rotation can be half done."""
        if self.store.keys is None:
            return
        if keys_stamp(self.path / "keys") != self._keys_stamp:
            raise KeysChanged(
                "the vault's keys were rotated since it was opened: nothing was written",
                hint="open the vault again (restart `mjvault serve`)",
            )

    def close(self) -> None:
        with self._attached_lock:
            attached, self._attached = list(self._attached.values()), {}
        try:
            for resource in attached:
                resource.close()
        finally:
            if self._index is not None:
                self._index.close()
                self._index = None
            self.store.close()

    def _allow_packs(self) -> None:
        """Mark an older vault as version 3 before a pack file of this mjvault appears (its
        packs and the leaves in them are version 2): an mjvault that reads only older ones
        then refuses the vault instead of reporting those packs and leaves damaged."""
        if self.config.get("version") == FORMAT_VERSION:
            return
        upgraded = dict(self.config, version=FORMAT_VERSION)
        atomic_write(self.path / CONFIG_FILE, json.dumps(upgraded, indent=2).encode("utf-8"))
        self.config = upgraded

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encrypted(self) -> bool:
        return self.store.encrypted

    @property
    def id(self) -> str:
        return str(self.config["id"])

    # -- objects ---------------------------------------------------------------------------
    def read_object(self, object_id: str) -> bytes:
        return self.store.read(object_id)

    def object_path(self, object_id: str) -> Path:
        """The loose file. In a plain vault an image object's file is the image itself."""
        return self.store.path(object_id)

    def _read_node(self, object_id: str) -> bytes:
        return self.store.read(object_id)

    # -- snapshots -------------------------------------------------------------------------
    def head(self) -> Snapshot | None:
        head = self.refs.head()
        if head is None:
            return None
        try:
            return decode_manifest(head, self.store.read(head))
        except (ObjectNotFound, IntegrityError) as exc:
            # A damaged manifest (CorruptObject) is an object to refetch; this is the ref's.
            raise HeadDamaged(f"names snapshot {head[:12]}, which cannot be read: {exc}") from None

    def snapshot(self, ref: str) -> Snapshot:
        snapshot_id = self.refs.resolve(ref)
        return decode_manifest(snapshot_id, self.store.read(snapshot_id))

    def snapshots(self) -> list[Snapshot]:
        """All snapshots that can be read, newest first (`verify` reports the others)."""
        found = []
        for snapshot_id in self.refs.snapshot_ids():
            try:
                found.append(decode_manifest(snapshot_id, self.store.read(snapshot_id)))
            except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
                log.warning(
                    "skipping snapshot %s: %s (run `mjvault verify`)", snapshot_id[:12], exc
                )
        return sorted(found, key=lambda s: s.time, reverse=True)

    # -- jobs ------------------------------------------------------------------------------
    def _tree_of(self, snapshot: Snapshot | str | None) -> str | None:
        if snapshot is None:
            head = self.head()
            return head.tree if head else None
        if isinstance(snapshot, Snapshot):
            return snapshot.tree
        return self.snapshot(snapshot).tree

    def entries(self, snapshot: Snapshot | str | None = None) -> Iterator[JobEntry]:
        """Every job of a snapshot (default HEAD), straight from the objects."""
        root = self._tree_of(snapshot)
        if root is not None:
            yield from self.tree.walk(root)

    def entry(self, job_id: str, snapshot: Snapshot | str | None = None) -> JobEntry:
        root = self._tree_of(snapshot)
        found = self.tree.get(root, job_id) if root else None
        if found is None:
            raise JobNotFound(f"no job {job_id} in the vault")
        return found

    def diff(
        self, old_tree: str | None, new_tree: str | None
    ) -> Iterator[tuple[str, JobEntry | None, JobEntry | None]]:
        return self.tree.diff(old_tree, new_tree)

    def record_json(self, entry: JobEntry) -> bytes:
        """The job's record exactly as its source gave it."""
        return decode_record(entry.record, self.store.read(entry.record))

    def job(self, entry: JobEntry) -> Job:
        return job_from_json(self.record_json(entry))

    def find_job(self, prefix: str) -> JobEntry:
        """A job by its id or a unique prefix of it (HEAD)."""
        try:
            return self.entry(prefix)
        except JobNotFound:
            pass
        if len(prefix) >= 6:
            matches = self.current_index().job_ids_with_prefix(prefix)
            if len(matches) == 1:
                return self.entry(matches[0])
            if len(matches) > 1:
                raise JobNotFound(f"job prefix {prefix} is ambiguous ({len(matches)} jobs)")
        raise JobNotFound(f"no job {prefix} in the vault")

    # -- index -----------------------------------------------------------------------------
    def open_index(self) -> Index:
        """The index as it is, opened once per handle: it may lag HEAD (a commit of another
        process, a writer's checkpoint not yet applied). It takes no lock and applies no
        change; a missing index is created empty, and a damaged one (only a cache) is
        discarded and created empty."""
        if self._index is None:
            index: Index | None = None
            try:
                index = Index(self.path / "index", keys=self.store.keys)
                index.probe()
            except IndexDamaged as exc:
                # The index is only a cache: a damaged one is discarded and rebuilt from objects.
                # Other failures (a busy reader table, a read-only disk) are reported instead.
                log.warning("%s; discarding it, it will be rebuilt", exc.message)
                self.index_discarded = True
                if index is not None:
                    index.close()
                shutil.rmtree(self.path / "index", ignore_errors=True)
                try:
                    index = Index(self.path / "index", keys=self.store.keys)
                except IndexDamaged as again:
                    raise IntegrityError(
                        f"the index at {self.path / 'index'} cannot be created: {again.message} "
                        "(even a new, empty one fails: the cause is this machine, not the file)"
                    ) from None
            index.media_kinds = kind_reader(self.store)
            self._index = index
        return self._index

    def current_index(self) -> Index:
        """The index brought up to HEAD first. That writes: it takes the write lock, and
        when a writer holds it leaves the index as it is (the writer keeps it current
        itself). Callers that answer from the index call this once; code that has done so,
        or holds the lock and syncs itself, uses :meth:`open_index`."""
        index = self.open_index()
        head = self.head()
        indexed = index.indexed_tree()
        if indexed != (head.tree if head else None):
            # Catching up a diff takes a brief hold: a sync starting meanwhile waits for it
            # (BRIEF_WAIT) instead of being refused. A rebuild from the objects (no tree: an
            # older format, a discarded index) can take minutes, past any writer's wait: the
            # full lock, so a writer is told at once (docs/design.md, "Reading the vault
            # writes nothing behind the caller's back").
            brief = indexed is not None and self.store.exists(indexed)
            try:
                with _KeyCheckedLock(self, brief=brief):
                    head = self.head()  # a writer may have committed before we got the lock
                    self.sync_index(head.tree if head else None)
            except VaultLocked:
                pass  # a writer is at work and keeps the index current itself
        return index

    def sync_index(self, target: str | None, progress: ProgressCallback | None = None) -> int:
        """Bring the index to ``target`` by diffing trees; returns the number of jobs changed."""
        index = self.open_index()
        current = index.indexed_tree()
        if current == target:
            return 0
        if current is not None and not self.store.exists(current):
            current = None
        changed = 0
        if current is None:
            stopped = index.interrupted()
            if stopped is not None and all(self.store.exists(tree) for tree in stopped):
                # A writer's checkpoint stopped between two of the index's transactions: the
                # jobs it changed are old or new, each whole. Applying its diff again (every
                # job is replaced whole) finishes it, without a rebuild of every job.
                changed = self._apply_diff(index, *stopped, progress)
                current = stopped[1]
                if current == target:
                    return changed
            else:
                index.clear()
        return changed + self._apply_diff(index, current, target, progress)

    def _apply_diff(
        self,
        index: Index,
        current: str | None,
        target: str | None,
        progress: ProgressCallback | None,
    ) -> int:
        index.mark_dirty()
        changed = 0
        batch: list[tuple[str, JobSummary | None]] = []
        for job_id, _, new in self.tree.diff(current, target):
            batch.append((job_id, JobSummary.of(new, self.job(new)) if new else None))
            if len(batch) >= 2000:
                index.apply(batch, None)
                changed += len(batch)
                if progress:
                    progress(len(batch))
                batch = []
        index.apply(batch, target)
        if progress and batch:
            progress(len(batch))
        return changed + len(batch)

    def rebuild_index(self, progress: ProgressCallback | None = None) -> int:
        """``mjvault index rebuild``: recreate the index from the objects alone."""
        from mjvault.store.tempfiles import remove_stale_temp_files

        with self.write_lock():
            # On a full disk, what dead writers left may be the space the new index needs.
            remove_stale_temp_files(self.path)
            if self._index is not None:
                self._index.close()
                self._index = None
            shutil.rmtree(self.path / "index", ignore_errors=True)
            head = self.head()
            return self.sync_index(head.tree if head else None, progress)

    # -- writing ---------------------------------------------------------------------------
    def write_lock(self) -> WriteLock:
        return _KeyCheckedLock(self)

    def writer(self, source: str, **options: Any) -> ArchiveWriter:
        # Lazy for start-up: a command that only reads (log, show, search) never loads the
        # writer's modules (sockets, threads, progress bars; tests/test_startup.py).
        from mjvault.writer import ArchiveWriter

        return ArchiveWriter(self, source, **options)

    # -- keys ------------------------------------------------------------------------------
    def _require_master(self) -> bytes:
        if self._master is None:
            raise MjvaultError("this vault is not encrypted: it has no keys")
        return self._master

    def list_keys(self) -> list[dict[str, str]]:
        self._require_master()
        return [
            {"id": k.id, "label": k.label, "created": k.created}
            for k in list_keyfiles(self.path / "keys")
        ]

    def add_key(self, passphrase: str, *, label: str = "", kdf: KdfParams | None = None) -> str:
        return write_keyfile(
            self.path / "keys", self._require_master(), passphrase, label=label, kdf=kdf
        )

    def remove_key(self, key_id: str) -> None:
        self._require_master()
        keys = list_keyfiles(self.path / "keys")
        target = [k for k in keys if k.id == key_id]
        if not target:
            raise MjvaultError(f"no key {key_id}")
        if len(keys) == 1:
            raise MjvaultError(
                "refusing to remove the last key: the vault would be unreadable forever"
            )
        target[0].path.unlink()

    def change_passphrase(
        self, old_passphrase: str, new_passphrase: str, *, kdf: KdfParams | None = None
    ) -> str:
        """Replace the key that ``old_passphrase`` opens; objects are not re-encrypted."""
        master, key_id = unwrap_master(self.path / "keys", old_passphrase)
        new_id = write_keyfile(self.path / "keys", master, new_passphrase, label="changed", kdf=kdf)
        (self.path / "keys" / key_id).unlink()
        return new_id


class _KeyCheckedLock(WriteLock):
    """The write lock of a handle whose keys must still be the vault's once it is held."""

    def __init__(self, vault: Vault, *, brief: bool = False) -> None:
        super().__init__(vault.path, brief=brief)
        self._vault = vault

    def acquire(self) -> WriteLock:
        super().acquire()
        try:
            self._vault.check_keys()
        except BaseException:
            self.release()
            raise
        return self
