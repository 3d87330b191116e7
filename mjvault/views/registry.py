"""Views remembered in the vault: one file per view under ``<vault>/views/``.

A view file holds the definition (directory, template, link type, filters, pinned snapshot,
options) and the state of its last render: the tree it showed and every file it created,
with the object each file shows. That list is what lets a refresh remove exactly its own
files and nothing else, and lets ``verify --views`` and ``gc`` see what views refer to.

The file is msgpack compressed with zstd. In an encrypted vault it is sealed with the vault's
keys like an object: its file names are made of prompts, which must not lie in the clear
beside the ciphertext (a vault directory is what people copy to cloud storage), and it holds
the file list too. In a plain vault the file list is an SQLite file beside it
(``<name>.files``, :mod:`mjvault.views.state`), so no refresh holds it whole in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
import zstandard

from mjvault.errors import IntegrityError, UsageError
from mjvault.lock import WriteLock
from mjvault.reports import Report
from mjvault.store.fsutil import atomic_write
from mjvault.views.files import FileRecord, JobFiles
from mjvault.views.filters import ViewFilter
from mjvault.views.links import LinkKind
from mjvault.views.state import (
    FILES_SUFFIX,
    FileTable,
    MemoryTable,
    SealedSqliteTable,
    SqliteTable,
    remove_table,
)

if TYPE_CHECKING:
    from mjvault.vault import Vault


VIEWS_DIR = "views"
VIEW_SUFFIX = ".view"
STATE_VERSION = 3
# Version 1 kept the file list as one row per file, 2 as columns in the view file (how an
# encrypted vault's views kept it until 3 covered them); 3 keeps it in <name>.files (sealed paths
# in an encrypted vault). All are read; a view is rewritten as 3 on save.
# 4 is 3 with a filter naming a collection: written only for such a view, so that a version
# that does not know that filter refuses the view (an unsupported version) instead of
# ignoring the filter and showing every job.
COLLECTION_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
SEALED_VERSION = 2
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_MAGIC = b"MJVW"
_KINDS = {kind.value: kind for kind in LinkKind}
T = TypeVar("T")


class ViewNotFound(UsageError):
    """No view of that name in this vault."""


@dataclass
class ViewDefinition(Report):
    name: str
    directory: Path
    template: str
    link: LinkKind
    filter: ViewFilter = field(default_factory=ViewFilter)
    snapshot: str | None = None  # a pinned snapshot id; None follows HEAD
    auto_refresh: bool = True
    embed_metadata: bool = False
    # Files 0600 and directories 0700; None: so in an encrypted vault (its views are plaintext).
    private: bool | None = None

    def fingerprint(self) -> str:
        """Changes whenever a change of definition means every file must be re-rendered."""
        doc = self.to_json() | {"auto_refresh": None, "name": None}
        del doc["private"]  # modes change in place; and views made before it keep their hash
        return hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(), digest_size=16).hexdigest()

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ViewDefinition:
        if not isinstance(doc, dict):
            raise ValueError("definition is not a map")
        return cls(
            name=_typed(doc, "name", str),
            directory=Path(_typed(doc, "directory", str)),
            template=_typed(doc, "template", str),
            link=LinkKind(_typed(doc, "link", str)),
            filter=ViewFilter.from_json(_typed(doc, "filter", dict, {})),
            snapshot=_typed(doc, "snapshot", str, None),
            auto_refresh=_typed(doc, "auto_refresh", bool, True),
            embed_metadata=_typed(doc, "embed_metadata", bool, False),
            private=_typed(doc, "private", bool, None),
        )

    def is_private(self, encrypted: bool) -> bool:
        return self.private if self.private is not None else encrypted


@dataclass
class View:
    """A definition and the state of its last render."""

    definition: ViewDefinition
    fingerprint: str | None = None  # of the definition the files were rendered with
    tree: str | None = None
    snapshot_id: str | None = None
    vault_path: str | None = None
    blocked: JobFiles = field(default_factory=dict)  # wanted, but something else is there
    refreshed: str | None = None
    # A refresh began and has not finished: files may exist that the list does not name yet
    # (and temp files). Saved before the first file is touched, cleared by the last save.
    unfinished: bool = False
    private_files: bool = False  # the files were made owner-only (see ViewDefinition.private)
    # A collection view: the collection's member chunks when last rendered (None: not yet),
    # so a refresh sees the collection change even when the tree did not.
    collection_chunks: list[str] | None = None
    # The file list is decoded on first use: `checkout --list` and an up-to-date refresh of
    # a 100k-file view need only the header.
    _files: JobFiles | None = field(default=None, repr=False)
    _files_blob: bytes | None = field(default=None, repr=False)
    _file_count: int = field(default=0, repr=False)
    _files_version: int = field(default=STATE_VERSION, repr=False)
    # The file list as a refresh uses it (see mjvault.views.state), opened on first use.
    _table: FileTable | None = field(default=None, repr=False)
    _opener: Callable[[], FileTable] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def table(self) -> FileTable:
        if self._table is None:
            if self._opener is not None and self._files_blob is None:
                self._table = self._opener()
            else:  # an encrypted vault's list, or one an older version kept in the view file
                self._table = MemoryTable(self._decoded_files())
        return self._table

    @property
    def files(self) -> JobFiles:
        """The whole file list as dictionaries: for small views and tests, never a refresh.

        Changing it changes the view only where the list is kept in memory (a list an older
        version kept inline, until the view is saved).
        """
        table = self.table
        if isinstance(table, MemoryTable):
            return table.files
        out: JobFiles = {}
        for job_id, index, record in table.iter_files():
            out.setdefault(job_id, {})[index] = record
        return out

    def release(self) -> None:
        """Close the file list's store (it reopens on next use); what was saved stays."""
        if self._table is not None and not isinstance(self._table, MemoryTable):
            self._table.close()
            self._table = None

    def _decoded_files(self) -> JobFiles:
        if self._files is None:
            self._files = {}
            if self._files_blob is not None:
                try:
                    decoded = msgpack.unpackb(self._files_blob, raw=False)
                    if self._files_version == 1:
                        for row in decoded:
                            job_id, index, record = FileRecord.unpack(row)
                            self._files.setdefault(job_id, {})[index] = record
                    else:
                        self._files = _files_from_columns(decoded)
                except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
                    self._files = None
                    raise IntegrityError(f"view {self.name}: damaged file list: {exc}") from None
                self._files_blob = None
        return self._files

    def file_count(self) -> int:
        if self._table is None and (self._files_blob is not None or self._opener is not None):
            return self._file_count
        return self.table.count()

    def iter_files(self) -> Iterator[tuple[str, int, FileRecord]]:
        return self.table.iter_files()

    def iter_object_ids(self) -> Iterator[str]:
        """The object each file of this view shows, file by file (an id may come again): a
        view of a million jobs shows millions, so they are streamed, never gathered."""
        for _, _, record in self.iter_files():
            yield record.oid

    def summary(self) -> dict[str, Any]:
        return self.definition.to_json() | {
            "files": self.file_count(),
            "blocked": sum(len(v) for v in self.blocked.values()),
            "snapshot_rendered": self.snapshot_id,
            "refreshed": self.refreshed,
        }

    def to_doc(self, *, inline: bool | None = None) -> dict[str, Any]:
        """The view file's contents; ``inline`` puts the file list in it (version 2).

        By default the list is inline unless it lives in its own file (a plain vault's).
        """
        if inline is None:
            inline = self._opener is None
        if self.definition.filter.collection is not None:
            version = COLLECTION_VERSION  # inline or not: older versions must refuse it
        else:
            version = SEALED_VERSION if inline else STATE_VERSION
        return {
            "v": version,
            "definition": self.definition.to_json(),
            "fingerprint": self.fingerprint,
            "tree": self.tree,
            "snapshot_id": self.snapshot_id,
            "vault_path": self.vault_path,
            "file_count": self.file_count(),
            "files": self._packed_files() if inline else None,
            "blocked": [r.pack(j, i) for j, imgs in self.blocked.items() for i, r in imgs.items()],
            "refreshed": self.refreshed,
            "unfinished": self.unfinished,
            "private_files": self.private_files,
        } | (
            {"collection_chunks": self.collection_chunks}
            if self.collection_chunks is not None
            else {}
        )

    def _packed_files(self) -> bytes:
        # Not decoded yet: the stored bytes are the list (saving the "unfinished" mark at the
        # start of a refresh then costs no packing of 100k rows).
        blob = self._files_blob
        if self._files is None and blob is not None and self._files_version == SEALED_VERSION:
            return blob
        packed: bytes = msgpack.packb(_files_to_columns(self.files))
        return packed

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> View:
        version = doc.get("v")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise IntegrityError(f"view state version {version!r:.40} is not supported")
        view = cls(
            definition=ViewDefinition.from_json(_typed(doc, "definition", dict)),
            fingerprint=_typed(doc, "fingerprint", str, None),
            tree=_typed(doc, "tree", str, None),
            snapshot_id=_typed(doc, "snapshot_id", str, None),
            vault_path=_typed(doc, "vault_path", str, None),
            refreshed=_typed(doc, "refreshed", str, None),
            unfinished=_typed(doc, "unfinished", bool, False),
            private_files=_typed(doc, "private_files", bool, False),
        )
        chunks = _typed(doc, "collection_chunks", list, None)
        if chunks is not None:
            if not all(isinstance(c, str) for c in chunks):
                raise ValueError("collection_chunks holds a value that is not text")
            view.collection_chunks = list(chunks)
        files = doc.get("files")
        if doc["v"] == STATE_VERSION or (doc["v"] == COLLECTION_VERSION and files is None):
            files = None  # in <name>.files
        if files is not None and not isinstance(files, bytes):
            raise IntegrityError("view state has a malformed file list")
        view._files_blob = files
        view._files_version = SEALED_VERSION if doc["v"] == COLLECTION_VERSION else int(doc["v"])
        view._file_count = _typed(doc, "file_count", int, 0)
        if view._file_count < 0:
            raise ValueError(f"file_count is {view._file_count}")
        for row in _typed(doc, "blocked", list, []):
            job_id, index, record = FileRecord.unpack(row)
            view.blocked.setdefault(job_id, {})[index] = record
        return view


def _typed(doc: dict[str, Any], key: str, kind: type[T], *default: T | None) -> T:
    """``doc[key]`` if it is a ``kind`` (a bool is no int here); its default when absent or
    nil, if it has one. Any other value is damage (ValueError), never converted: ``int()`` of
    an infinite float raises OverflowError, and ``bool()`` of a string is True."""
    value = doc.get(key)
    if value is None and default:
        return default[0]  # type: ignore[return-value]
    if value is None and key not in doc and not default:
        raise KeyError(key)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{key} is a {type(value).__name__}, not a {kind.__name__}")


def _files_to_columns(files: JobFiles) -> list[Any]:
    """A view's file list as columns: one list per field, and each job once with its count.

    Packing and unpacking 100k files then costs a few C-level passes rather than 100k
    rows built and taken apart in Python (a refresh loads and saves the whole list).
    """
    job_ids: list[str] = []
    counts: list[int] = []
    indexes: list[int] = []
    records: list[FileRecord] = []
    for job_id, images in files.items():
        job_ids.append(job_id)
        counts.append(len(images))
        indexes.extend(images)
        records.extend(images.values())
    # Each record's kind is a LinkKind, a str: msgpack stores it as its value.
    columns = [list(column) for column in zip(*records, strict=True)] or [[]] * 6
    return [job_ids, counts, indexes, *columns]


def _files_from_columns(decoded: list[Any]) -> JobFiles:
    job_ids, counts, indexes, paths, oids, kinds, plains, sizes, mtimes = decoded
    links = map(_KINDS.__getitem__, kinds)  # KeyError for an unknown kind: damage
    make = tuple.__new__  # FileRecord(...) runs Python code per call; this does not
    records = list(
        map(make, repeat(FileRecord), zip(paths, oids, links, plains, sizes, mtimes, strict=True))
    )
    if len(indexes) != len(records) or sum(counts) != len(records) or len(counts) != len(job_ids):
        raise ValueError("file list columns disagree in length")
    files: JobFiles = {}
    start = 0
    for job_id, count in zip(job_ids, counts, strict=True):
        end = start + count
        files[job_id] = dict(zip(indexes[start:end], records[start:end], strict=True))
        start = end
    return files


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"view name {name!r} is not usable",
            hint="letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit",
        )
    return name


def default_name(directory: Path) -> str:
    """A view's name when none is given: its directory's name, made a valid view name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", directory.name).strip("-._")[:64]
    return cleaned or "view"


class ViewRegistry:
    """The views of one vault."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.dir = vault.path / VIEWS_DIR

    def lock(self) -> WriteLock:
        """Refreshes of views exclude each other, but not a sync: they only read the vault."""
        self.dir.mkdir(exist_ok=True)
        return WriteLock(self.dir, command="mjvault checkout")

    def _path(self, name: str) -> Path:
        return self.dir / f"{check_name(name)}{VIEW_SUFFIX}"

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(
            n[: -len(VIEW_SUFFIX)]
            for n in os.listdir(self.dir)
            if n.endswith(VIEW_SUFFIX) and _NAME.match(n[: -len(VIEW_SUFFIX)])
        )

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def free_name(self, directory: Path) -> str:
        """DIR's own name, or ``name-2``, ``name-3`` … when another view already has it."""
        base = default_name(directory)
        candidate, counter = base, 2
        while self.exists(candidate):
            candidate = f"{base[:60]}-{counter}"
            counter += 1
        return candidate

    def load(self, name: str) -> View:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ViewNotFound(f"no view named {name!r}") from None
        doc = self._decode(name, data)
        try:
            view = View.from_doc(doc)
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            # It decoded, but its fields are not a view's (FORMAT.md §1.2): damage, said in
            # one line, never a traceback out of gc or a checkout.
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise IntegrityError(f"view file {name}{VIEW_SUFFIX} is damaged: {what}") from None
        files = self._files_path(name)
        if view._files_blob is not None:  # an older version's list, inline
            self.bind(view, fresh=False)
        elif not files.exists():
            if view._file_count:
                # Taken as empty, the view would seem to show nothing, and gc would delete
                # the objects its links point at.
                raise IntegrityError(
                    f"view {name}: its file list {files.name} is missing "
                    f"({view._file_count} files recorded)"
                )
            self.bind(view)  # none recorded: an empty list, made when first used
        else:
            self.bind(view, fresh=False)
            self._probe(view, files)
        return view

    def _probe(self, view: View, files: Path) -> None:
        """Open a loaded view's list once, so a damaged one is found when the view is loaded
        (``checkout --list`` shows it, a refresh and gc refuse it), not midway through a use.

        Closed again: listing views reads only their headers.
        """
        try:
            if view._file_count and view.table.empty():
                raise IntegrityError(
                    f"view {view.name}: its file list {files.name} is empty "
                    f"({view._file_count} files recorded)"
                )
        finally:
            view.release()

    def bind(self, view: View, *, fresh: bool = True) -> None:
        """Give a plain vault's view its file-list store; ``fresh`` empties one left over.

        A view loaded from a version-1/2 file keeps its inline list until it is saved.
        """
        if view._opener is not None:
            return
        path = self._files_path(view.name)
        # A loaded view's list is opened as it is, never created (state.SqliteTable).
        view._opener = lambda: self._open_table(path, fresh=fresh, create=fresh)

    def _open_table(self, path: Path, *, fresh: bool, create: bool = True) -> FileTable:
        keys = self.vault.store.keys
        if keys is not None:
            return SealedSqliteTable(path, keys, fresh=fresh, create=create)
        return SqliteTable(path, fresh=fresh, create=create)

    def _files_path(self, name: str) -> Path:
        return self.dir / f"{check_name(name)}{FILES_SUFFIX}"

    def all(self) -> list[View]:
        return [self.load(name) for name in self.names()]

    def find_by_directory(self, directory: Path) -> View | None:
        for name in self.names():
            try:
                view = self.load(name)
            except IntegrityError:
                continue  # a damaged view file must not block creating other views
            if view.definition.directory == directory:
                return view
        return None

    def summaries(self) -> list[dict[str, Any]]:
        """What ``checkout --list`` shows; a damaged view file is listed with its error."""
        out: list[dict[str, Any]] = []
        for name in self.names():
            try:
                out.append(self.load(name).summary())
            except IntegrityError as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def save(self, view: View) -> None:
        """Commit the file list, then write the header that names it (in that order: a
        header never names a tree whose files the list does not hold yet)."""
        self.dir.mkdir(exist_ok=True)
        self.bind(view)
        if view._files_blob is not None or view._files is not None:
            # A list kept inline by an older version: moved to its own file, once.
            rows = [((j, i), r) for j, i, r in view.table.iter_files()]
            table = self._open_table(self._files_path(view.name), fresh=True)
            table.put_many(rows)
            view._table, view._files, view._files_blob = table, None, None
        view.table.commit()
        view._file_count = view.file_count()
        view.refreshed = datetime.now(UTC).isoformat(timespec="seconds")
        doc = view.to_doc(inline=False)
        atomic_write(self._path(view.name), self._encode(view.name, doc), mode=0o600)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise ViewNotFound(f"no view named {name!r}") from None
        remove_table(self._files_path(name))

    # -- encoding --------------------------------------------------------------------------
    def _seal_id(self, name: str) -> str:
        # Binds the sealed state to its view name: one view's file cannot stand in for another.
        return hashlib.blake2b(f"mjvault view {name}".encode(), digest_size=32).hexdigest()

    def _encode(self, name: str, doc: dict[str, Any]) -> bytes:
        packed = msgpack.packb(doc, use_bin_type=True)
        keys = self.vault.store.keys
        if keys is not None:
            return _MAGIC + b"E" + keys.seal(self._seal_id(name), packed, compress=True)
        return _MAGIC + b"Z" + zstandard.ZstdCompressor(level=1).compress(packed)

    def _decode(self, name: str, data: bytes) -> dict[str, Any]:
        try:
            if data[:4] != _MAGIC:
                raise ValueError("not a view file")
            if data[4:5] == b"E":
                keys = self.vault.store.keys
                if keys is None:
                    raise ValueError("sealed view file in a plain vault")
                packed = keys.open(self._seal_id(name), data[5:])
            elif data[4:5] == b"Z":
                packed = zstandard.ZstdDecompressor().decompress(data[5:])
            else:
                raise ValueError("unknown view file encoding")
            doc = msgpack.unpackb(packed, raw=False, strict_map_key=False)
            if not isinstance(doc, dict):
                raise ValueError("not a map")
            return doc
        except IntegrityError:
            raise
        except Exception as exc:  # any decoding failure of stored bytes is damage
            raise IntegrityError(f"view file {name}{VIEW_SUFFIX} is damaged: {exc}") from None
