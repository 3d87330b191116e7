"""The vault's list of forgotten jobs (``state/forgotten``, FORMAT.md §12.1).

``forget --job`` and ``forget --search`` add a job here; from then on no sync, import or pull
stores it again. The file holds two parts:

* a sorted run of fixed-width 16-byte *tokens*, one per job: BLAKE3 of the id, keyed in an
  encrypted vault with a subkey of the master secret. Whether a listed job is forgotten is a
  bisection over these bytes, so a sync holds 1.6 MB for 100,000 forgotten jobs and builds no
  object per entry;
* a body with what is shown and undone (ids, when and why each was forgotten, which remotes
  still hold it, the snapshots rewritten without it, the object files to overwrite when gc
  removes them): JSON, sealed in an encrypted vault. It is read only by the commands that
  show or change the list, and by pull.

A check over the whole file (keyed in an encrypted vault) tells a damaged or foreign file,
which is an error, never an empty list: an empty list would let every forgotten job back in.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import blake3

from mjvault.errors import CorruptObject, IntegrityError
from mjvault.reports import Report
from mjvault.store.crypto import VaultKeys
from mjvault.store.fsutil import atomic_write
from mjvault.vault import Vault

LIST_FILE = Path("state") / "forgotten"
MAGIC = b"MJVF"
VERSION = 1
SEALED = 0x01
TOKEN_SIZE = 16
CHECK_SIZE = 32
BODY_CONTEXT = b"mjvault forgotten list v1"
NAMING_CONTEXT = "mjvault v1 forgotten job naming"
CHECK_CONTEXT = "mjvault v1 forgotten list check"
_HEADER = struct.Struct(">4sBBI")
BLOCK = 1 << 20  # read into the check, and overwritten, a block at a time


class ListDamaged(IntegrityError):
    """The list cannot be trusted; it is never read as empty."""


@dataclass
class Entry(Report):
    id: str
    added: str
    reason: str  # "job" or "search: <query>"
    pending: list[str] = field(default_factory=list)  # remotes that may still hold it


@dataclass
class ForgottenList:
    """The whole list, as the commands that change it see it."""

    entries: dict[str, Entry] = field(default_factory=dict)
    #: Snapshots rewritten without forgotten jobs: old id -> new id. A remote still holding
    #: an old one is told to forget it at its next prune.
    replaced: dict[str, str] = field(default_factory=dict)
    #: Object ids of forgotten jobs' records and media: gc overwrites their files before it
    #: unlinks them (:func:`shred`), then drops them from here.
    shred: set[str] = field(default_factory=set)

    def pending_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries.values():
            for name in entry.pending:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


def _path(vault: Vault) -> Path:
    return vault.path / LIST_FILE


def _keys(vault: Vault) -> VaultKeys | None:
    return vault.store.keys


def token_of(keys: VaultKeys | None, job_id: str) -> bytes:
    if keys is not None:
        return keys.forgotten_token(job_id)
    return blake3.blake3(job_id.encode("utf-8"), derive_key_context=NAMING_CONTEXT).digest(
        TOKEN_SIZE
    )


def _checker(keys: VaultKeys | None) -> blake3.blake3:
    if keys is not None:
        return keys.forgotten_checker()
    return blake3.blake3(derive_key_context=CHECK_CONTEXT)


def _check_of(keys: VaultKeys | None, data: bytes) -> bytes:
    return _checker(keys).update(data).digest(CHECK_SIZE)


@dataclass
class _Parsed:
    tokens: bytes
    head: dict[str, Any]
    body: bytes
    sealed: bool


def _damaged(path: Path, why: str) -> ListDamaged:
    return ListDamaged(
        f"the list of forgotten jobs {path} is damaged ({why}); nothing was changed",
        hint="restore it from a backup; removing it lets every forgotten job back in",
    )


def _parse(vault: Vault) -> _Parsed | None:
    """The file's parts, checked; None when there is no list."""
    path = _path(vault)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    keys = _keys(vault)
    if len(data) < _HEADER.size + 8 + CHECK_SIZE:
        raise _damaged(path, "too short")
    _check_header(path, data[: _HEADER.size], keys)
    _, _, flags, count = _HEADER.unpack_from(data)
    if _check_of(keys, data[:-CHECK_SIZE]) != data[-CHECK_SIZE:]:
        raise _damaged(path, "its check does not match")
    at = _HEADER.size
    tokens = data[at : at + count * TOKEN_SIZE]
    at += count * TOKEN_SIZE
    try:
        (head_len,) = struct.unpack_from(">I", data, at)
        head = json.loads(data[at + 4 : at + 4 + head_len])
        at += 4 + head_len
        (body_len,) = struct.unpack_from(">I", data, at)
        body = data[at + 4 : at + 4 + body_len]
        at += 4 + body_len
    except (struct.error, ValueError):
        raise _damaged(path, "its parts do not fit") from None
    if (
        len(tokens) != count * TOKEN_SIZE
        or at != len(data) - CHECK_SIZE
        or not isinstance(head, dict)
    ):
        raise _damaged(path, "its parts do not fit")
    return _Parsed(tokens, head, body, bool(flags & SEALED))


class Forgotten:
    """Which job ids are forgotten: a bisection over the list's sorted tokens."""

    def __init__(self, tokens: bytes, keys: VaultKeys | None) -> None:
        self._tokens = tokens
        self._keys = keys
        self.count = len(tokens) // TOKEN_SIZE

    def __len__(self) -> int:
        return self.count

    def __contains__(self, job_id: object) -> bool:
        if not self.count or not isinstance(job_id, str):
            return False
        token = token_of(self._keys, job_id)
        tokens = self._tokens
        low, high = 0, self.count
        while low < high:
            mid = (low + high) // 2
            if tokens[mid * TOKEN_SIZE : (mid + 1) * TOKEN_SIZE] < token:
                low = mid + 1
            else:
                high = mid
        return low < self.count and tokens[low * TOKEN_SIZE : (low + 1) * TOKEN_SIZE] == token

    def skip(self, items: Iterable[T], on_skip: Callable[[T], None]) -> Iterator[T]:
        """``items`` without the forgotten ones; ``on_skip`` is told of each left out."""
        if not self.count:
            yield from items
            return
        for item in items:
            if item.id in self:
                on_skip(item)
            else:
                yield item


def counted(report: Any) -> Callable[[object], None]:
    """``on_skip`` for a sync: a forgotten job is listed, and counted apart."""

    def note(_item: object) -> None:
        report.jobs_listed += 1
        report.jobs_forgotten += 1

    return note


def load(vault: Vault) -> Forgotten:
    """The tokens alone, for syncs and imports (ListDamaged if the file is damaged): the rest
    of the file is read a block at a time into its check, never held."""
    path = _path(vault)
    keys = _keys(vault)
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed below)
    except FileNotFoundError:
        return Forgotten(b"", keys)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(_HEADER.size)
        if len(head) < _HEADER.size or size < _HEADER.size + 8 + CHECK_SIZE:
            raise _damaged(path, "too short")
        _check_header(path, head, keys)
        count = _HEADER.unpack(head)[3]
        if _HEADER.size + count * TOKEN_SIZE + 8 + CHECK_SIZE > size:
            raise _damaged(path, "its parts do not fit")
        tokens = handle.read(count * TOKEN_SIZE)
        checker = _checker(keys).update(head).update(tokens)
        left = size - len(head) - len(tokens) - CHECK_SIZE
        while left > 0:
            block = handle.read(min(left, BLOCK))
            if not block:
                raise _damaged(path, "too short")
            checker.update(block)
            left -= len(block)
        if checker.digest(CHECK_SIZE) != handle.read(CHECK_SIZE):
            raise _damaged(path, "its check does not match")
    return Forgotten(tokens, keys)


def _check_header(path: Path, head: bytes, keys: VaultKeys | None) -> None:
    magic, version, flags, _count = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise _damaged(path, "not a list of forgotten jobs")
    if version != VERSION:
        raise _damaged(path, f"version {version}, this mjvault reads {VERSION}")
    if bool(flags & SEALED) != (keys is not None):
        raise _damaged(path, "sealed in a plain vault" if keys is None else "not sealed")


def exists(vault: Vault) -> bool:
    return _path(vault).exists()


def read(vault: Vault) -> ForgottenList:
    """The whole list (the commands that show or change it)."""
    parsed = _parse(vault)
    if parsed is None:
        return ForgottenList()
    keys = _keys(vault)
    path = _path(vault)
    try:
        text = (
            keys.open_text(parsed.body, BODY_CONTEXT)
            if keys is not None
            else parsed.body.decode("utf-8")
        )
        doc = json.loads(text)
        entries = {
            e["id"]: Entry(str(e["id"]), str(e["added"]), str(e["reason"]), list(e["pending"]))
            for e in doc["entries"]
        }
        listed = ForgottenList(entries, dict(doc["replaced"]), set(doc["shred"]))
    except (CorruptObject, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise _damaged(path, "its body cannot be read") from None
    tokens = sorted(token_of(keys, job_id) for job_id in entries)
    if b"".join(tokens) != parsed.tokens:
        raise _damaged(path, "its tokens and its entries disagree")
    return listed


def write(vault: Vault, listed: ForgottenList) -> None:
    """Replace the list atomically (temp file, fsync, rename): the old list or the new."""
    keys = _keys(vault)
    tokens = b"".join(sorted(token_of(keys, job_id) for job_id in listed.entries))
    doc = {
        "entries": [e.to_json() for e in sorted(listed.entries.values(), key=lambda e: e.id)],
        "replaced": dict(sorted(listed.replaced.items())),
        "shred": sorted(listed.shred),
    }
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    body = keys.seal_text(text, BODY_CONTEXT) if keys is not None else text.encode("utf-8")
    # In the clear: only how many forgotten jobs each remote may still hold (`remote info`
    # shows it without a passphrase); names of remotes are in remotes/ already.
    head = json.dumps(
        {"pending": listed.pending_counts(), "shred": len(listed.shred)}, separators=(",", ":")
    ).encode()
    count = len(tokens) // TOKEN_SIZE
    data = b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, SEALED if keys is not None else 0, count),
            tokens,
            struct.pack(">I", len(head)),
            head,
            struct.pack(">I", len(body)),
            body,
        )
    )
    path = _path(vault)
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, data + _check_of(keys, data), mode=0o600)


def pending_on(vault_path: Path, remote: str) -> int | None:
    """How many forgotten jobs remote ``remote`` may still hold, read without keys (for
    `remote info`, which asks no passphrase); None when the vault has no list. The check is
    not verified here (in an encrypted vault it needs the key): a count only informs, while
    every reader that decides what is stored verifies the whole file. Damage to the parts
    read is :class:`ListDamaged`."""
    head = _clear_head(vault_path)
    if head is None:
        return None
    value = head["pending"].get(remote, 0)
    if not isinstance(value, int):
        raise _damaged(vault_path / LIST_FILE, "its head is not a list's")
    return value


def _clear_head(vault_path: Path) -> dict[str, Any] | None:
    """The clear head alone (header, a seek past the tokens, the head), unchecked."""
    path = vault_path / LIST_FILE
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed below)
    except FileNotFoundError:
        return None
    with handle:
        try:
            magic, _, _, count = _HEADER.unpack(handle.read(_HEADER.size))
            handle.seek(count * TOKEN_SIZE, os.SEEK_CUR)
            (head_len,) = struct.unpack(">I", handle.read(4))
            head = json.loads(handle.read(head_len))
        except (struct.error, ValueError):
            raise _damaged(path, "its parts do not fit") from None
    if magic != MAGIC or not isinstance(head, dict) or not isinstance(head.get("pending"), dict):
        raise _damaged(path, "not a list of forgotten jobs")
    return head


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def configured_remotes(vault: Vault) -> list[str]:
    from mjvault.remotes.config import list_specs

    return [spec.name for spec in list_specs(vault.path)]


def add(
    vault: Vault, job_ids: Iterable[str], reason: str, objects: Iterable[str] = ()
) -> list[str]:
    """Add ``job_ids`` (the caller holds the writer lock); returns those not listed before.
    Every configured remote is noted as still holding them until its next prune; ``objects``
    (their records and media) are overwritten when gc removes them."""
    listed = read(vault)
    remotes = configured_remotes(vault)
    added = []
    for job_id in job_ids:
        if job_id not in listed.entries:
            listed.entries[job_id] = Entry(job_id, now(), reason, list(remotes))
            added.append(job_id)
        else:
            # Forgotten again: every remote is asked again at its next prune.
            entry = listed.entries[job_id]
            entry.pending = sorted(set(entry.pending) | set(remotes))
    listed.shred |= set(objects)
    write(vault, listed)
    return added


def remove(vault: Vault, job_ids: Iterable[str]) -> list[str]:
    """Take ``job_ids`` off the list; returns those that were on it."""
    listed = read(vault)
    removed = [j for j in job_ids if listed.entries.pop(j, None) is not None]
    if removed:
        write(vault, listed)
    return removed


def note_rewrite(vault: Vault, rewritten: dict[str, str], object_ids: Iterable[str]) -> None:
    """After ``forget --job``'s rewrite: the snapshots it replaced (for remotes that still
    hold them) and more files to overwrite (the thumbnails it let go)."""
    listed = read(vault)
    listed.replaced.update(rewritten)
    listed.shred |= set(object_ids)
    write(vault, listed)


def note_pulled(
    vault: Vault,
    found: Iterable[str],
    remote: str,
    rewritten: dict[str, str],
    objects: Iterable[str],
) -> None:
    """A pull met forgotten jobs on ``remote``: it still holds them."""
    listed = read(vault)
    for job_id in found:
        entry = listed.entries.get(job_id)
        if entry is not None and remote not in entry.pending:
            entry.pending = sorted({*entry.pending, remote})
    listed.replaced.update(rewritten)
    listed.shred |= set(objects)
    write(vault, listed)


def pruned(vault: Vault, remote: str) -> int:
    """Remote ``remote`` was pruned of every forgotten job: none is pending there now.
    Returns how many were."""
    listed = read(vault)
    cleared = 0
    for entry in listed.entries.values():
        if remote in entry.pending:
            entry.pending.remove(remote)
            cleared += 1
    if cleared:
        write(vault, listed)
    return cleared


# -- overwriting before unlinking ------------------------------------------------------------


def overwrite(path: str | os.PathLike[str]) -> None:
    """Write zeros over a file's bytes in place and fsync them, so that on a file system that
    rewrites blocks in place (ext4, XFS on a spinning disk) the bytes are gone from the disk,
    not only from the directory. On SSDs and copy-on-write file systems (btrfs, ZFS, APFS)
    the old blocks may survive: see docs/design.md, "Forgetting for good".

    Object, pack and aside files are read-only (0444), which stops their owner opening them
    for writing (root alone may): the file is made writable first. Callers pass files that
    have no other name (a hard link shares the mode), already moved out of the store."""
    os.chmod(path, 0o600)
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(min(size, BLOCK))
        done = 0
        while done < size:
            done += os.pwrite(fd, zeros[: size - done], done)
        os.fsync(fd)
    finally:
        os.close(fd)


ASIDE_PREFIX = "shred-"


def overwrite_leftovers(vault: Vault) -> int:
    """Files a killed gc moved into ``tmp/`` to overwrite: overwritten and unlinked now (the
    caller holds the writer lock, which owns ``tmp/``), before the temp sweep would unlink
    them as they are. Returns how many."""
    done = 0
    try:
        names = [n for n in os.listdir(vault.store.tmp_dir) if n.startswith(ASIDE_PREFIX)]
    except FileNotFoundError:
        return 0
    for name in names:
        path = vault.store.tmp_dir / name
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_nlink == 1:
                overwrite(path)
            os.unlink(path)
            done += 1
    return done


class Shredder:
    """What gc overwrites before it unlinks: the object files of forgotten jobs."""

    def __init__(self, vault: Vault, enabled: bool) -> None:
        self.vault = vault
        # The head's count spares every gc reading the whole list (0.5 s at 100k entries)
        # when nothing is left to overwrite.
        head = _clear_head(vault.path) if enabled else None
        self.ids: set[str] = read(vault).shred if head and head.get("shred", 1) else set()
        self.done: set[str] = set()
        self.overwritten = 0  # files overwritten before they were unlinked
        self.linked = 0  # files with other names (hard links): unlinked only

    def notes(self) -> list[str]:
        notes = []
        if self.overwritten:
            notes.append(f"overwrote {self.overwritten} files of forgotten jobs before removal")
        if self.linked:
            notes.append(
                f"{self.linked} files of forgotten jobs have other names (hard links) and "
                "were not overwritten: their bytes stay under those names"
            )
        return notes

    def wants(self, object_id: str) -> bool:
        return object_id in self.ids

    def remove(self, object_id: str, path: str) -> None:
        """Unlink ``path`` (FileNotFoundError passes through), overwritten first if wanted."""
        if object_id in self.ids:
            self._overwrite_aside(path)
            self.done.add(object_id)
        else:
            os.unlink(path)

    def _overwrite_aside(self, path: str) -> None:
        """Move the file into ``tmp/`` (the lock holder's, emptied by the next writer or gc),
        then overwrite and unlink it: killed half-way, it leaves no half-zeroed file under
        ``objects/`` or ``packs/``, where it would read as damage and stop the next gc."""
        tmp = self.vault.store.tmp_dir
        tmp.mkdir(exist_ok=True)
        aside = tmp / f"{ASIDE_PREFIX}{os.path.basename(path)}"
        os.rename(path, aside)
        # Another name for the same bytes (a hard-linked copy of the vault, a view that links
        # files) keeps them on disk whatever is done here, and overwriting would damage it.
        if os.stat(aside).st_nlink == 1:
            overwrite(aside)
            self.overwritten += 1
        else:
            self.linked += 1
        os.unlink(aside)

    def pack_hook(self) -> Callable[[str, list[str]], None]:
        """For the repacker: an old pack holding a forgotten job's record is overwritten
        whole once its kept entries are durable in new packs."""

        def before_unlink(path: str, entry_ids: list[str]) -> None:
            held = self.ids.intersection(entry_ids)
            if held:
                with contextlib.suppress(FileNotFoundError):
                    self._overwrite_aside(path)
                self.done |= {i for i in held if not self.vault.store.exists(i)}

        return before_unlink

    def finish(self, still_present: Callable[[str], bool]) -> None:
        """Drop from the list the ids gc removed, and those no longer stored anywhere."""
        if not self.ids:
            return
        listed = read(self.vault)
        listed.shred = {i for i in listed.shred if i not in self.done and still_present(i)}
        write(self.vault, listed)
