"""A writer's own packs, merged once its snapshot is published (docs/FORMAT.md §8, §12).

Every checkpoint publishes the tree nodes on the paths it changed, and the next checkpoint
supersedes most of them: a first sync of 100k jobs leaves ~65,000 dead 4 KB leaves in its
packs, ten times the bytes of everything it keeps. So a writer publishes its records and
its tree nodes as separate packs (:class:`RunPacks` tells them apart as they are published),
and at the end of its run, with its snapshot published, ``refs/checkpoint`` gone and the lock
still held, :func:`merge_run_packs` rewrites the run's packs into one or a few:

* a node pack keeps only the nodes the new tree reaches (walked from the new root, pruned
  where it shares a subtree with the base snapshot's tree: those nodes predate the run);
* a record pack is kept whole (records are never superseded; a record a later job update
  replaced in the same run is left for gc).

Entries are copied byte for byte from the pack files on disk (never re-encoded, never a whole
pack in memory), into new packs streamed to ``tmp/``, each published and mapped through a
:class:`~mjvault.store.repack.Repacker` as soon as it closes (so only its name is kept: a
million jobs' entries are never all held), and the run's packs are removed only after the
last new one and the map are durable. Killed at any moment, the vault holds every object once
or twice, never zero times; a run's nodes that no published tree reaches are then gc's to remove.

Why only the run's own packs, and at once: nothing but this run's checkpoints ever named those
nodes, ``refs/checkpoint`` (the one ref to them) is gone, and only lock holders follow a
checkpoint; so no grace period is needed, which gc keeps for objects others may be using.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mjvault.errors import IntegrityError
from mjvault.store.packfile import PackEntry, PackFileWriter, Trailer, read_trailer_of
from mjvault.store.repack import Repacker
from mjvault.tree import node_links

if TYPE_CHECKING:
    from mjvault.store.objects import ObjectStore

PackKind = Literal["records", "nodes", "mixed"]
# A merged pack is closed once it reaches this many entry bytes or entries: tens of MB like a
# writer's own packs, and a trailer (36 bytes an entry, read whole by verify and gc) of ~2.4 MB.
MERGED_PACK_BYTES = 64 * 1024 * 1024
MERGED_PACK_ENTRIES = 65536
READ_SIZE = 256 * 1024  # a run pack's entries are read in chunks of this size


@dataclass(frozen=True, slots=True)
class RunPack:
    name: str
    kind: PackKind
    dictionary: str | None


class RunPacks:
    """The packs one writer published in its run, each told records or nodes.

    The writer marks every tree node it puts (:meth:`node_put`); a published pack whose
    entries are all marked nodes is a node pack, one with none a record pack. A mix (which a
    writer that ends its record pack before each tree update never publishes) is kept whole
    like records: only entries known to be this run's nodes are ever dropped.
    """

    def __init__(self) -> None:
        self.packs: list[RunPack] = []
        self._nodes: set[bytes] = set()

    def node_put(self, object_id: str) -> None:
        self._nodes.add(bytes.fromhex(object_id))

    def published(self, name: str, trailer: Trailer) -> None:
        """A batch's ``on_pack``: the pack is durable and mapped."""
        marked = sum(1 for entry in trailer.entries if entry.object_id in self._nodes)
        kind: PackKind = (
            "records" if marked == 0 else "nodes" if marked == len(trailer.entries) else "mixed"
        )
        self.packs.append(RunPack(name, kind, trailer.dictionary_id))

    def checkpointed(self) -> None:
        """Every node marked so far is in a published pack: forget them (bounded memory)."""
        self._nodes.clear()


@dataclass
class MergeReport:
    packs_before: int = 0
    bytes_before: int = 0
    packs_after: int = 0
    bytes_after: int = 0
    nodes_kept: int = 0
    nodes_dropped: int = 0
    records_kept: int = 0


def merge_run_packs(
    store: ObjectStore, packs: Iterable[RunPack], root: str | None, base_root: str | None
) -> MergeReport:
    """Rewrite a run's packs without the nodes ``root`` does not reach (see the module
    docstring). Does nothing for fewer than two packs. Raises what reading or writing
    raises; whatever it raised at, the vault keeps every object it had."""
    run = [pack for pack in packs if store.packs.path(pack.name).exists()]
    report = MergeReport(packs_before=len(run))
    if len(run) < 2:
        return report
    sizes = {pack.name: os.stat(store.packs.path(pack.name)).st_size for pack in run}
    report.bytes_before = sum(sizes.values())
    node_packs = {pack.name for pack in run if pack.kind == "nodes"}
    named = sorted({pack.dictionary for pack in run if pack.dictionary})
    repacker = Repacker(store)

    def publish(name: str, tmp: Path, trailer: Trailer) -> None:
        # Each new pack is published and mapped as it closes: only its name is kept, so the
        # merge holds one pack's trailer at a time however many it writes. No old pack is
        # retired yet, so this flush removes nothing.
        repacker.add_pack_file(name, tmp, trailer, trailer.dictionary_id)
        repacker.flush()

    out = _MergedPacks(store, fallback=named[0] if named else None, publish=publish)
    retiring = False
    try:
        for node_id, data, dictionary in _live_run_nodes(store, root, base_root, node_packs):
            out.add(node_id, data, dictionary)
            report.nodes_kept += 1
        for pack in run:
            if pack.name not in node_packs:
                report.records_kept += out.copy_pack(store.packs.path(pack.name))
            else:
                report.nodes_dropped += _entry_count(store, pack.name)
        report.nodes_dropped -= report.nodes_kept
        new_names = set(out.finish())
        # Every new pack is durable and mapped: only now may the run's packs go (§12 Order).
        retiring = True
        for pack in run:
            # A merged pack may come out byte for byte one of the run's (its other packs
            # gave nothing): that name now holds the new copy, and stays.
            if pack.name not in new_names:
                repacker.retire_pack(pack.name)
        repacker.flush()
    except BaseException:
        out.abort()
        repacker.discard()
        if not retiring:
            with contextlib.suppress(Exception):  # what it raised is the failure to report
                _unpublish(store, run, out.published, repacker)
        raise
    report.packs_after = len(new_names)
    report.bytes_after = sum(os.stat(store.packs.path(name)).st_size for name in new_names)
    return report


def _unpublish(
    store: ObjectStore, run: list[RunPack], names: list[str], repacker: Repacker
) -> None:
    """Undo a merge stopped before it retired anything, so that it leaves no object stored
    twice: point the run's objects back at the run's packs, then remove the new packs (map
    first, then file). Killed in between, every object is in a pack the map places it in."""
    own = {pack.name for pack in run}
    new = [name for name in names if name not in own]
    if not new:
        return
    packmap = store.packs.map()
    for pack in run:
        trailer = read_trailer_of(os.fspath(store.packs.path(pack.name)))
        packmap.move(pack.name, ((e.object_id, e.offset, e.length) for e in trailer.entries))
    for name in new:
        repacker.retire_pack(name)
    repacker.flush()


def _entry_count(store: ObjectStore, pack: str) -> int:
    return len(read_trailer_of(os.fspath(store.packs.path(pack))).entries)


def _live_run_nodes(
    store: ObjectStore, root: str | None, base_root: str | None, node_packs: set[str]
) -> Iterable[tuple[bytes, bytes, str | None]]:
    """(id, stored entry bytes, its pack's dictionary) of every node of the tree ``root`` that
    one of ``node_packs`` holds (none without a tree). A subtree the base tree has at the same
    place is skipped: its nodes were stored before the run. Each node read is checked against
    its id."""
    stack: list[tuple[str, str | None]] = [] if root is None else [(root, base_root)]
    while stack:
        node_id, base_id = stack.pop()
        if node_id == base_id:
            continue
        found = store.packs.read_entry(node_id, fresh=False)
        if found is not None and found[1].pack in node_packs:
            data, location = found
            plaintext = store.open_entry(node_id, data, location.dictionary)
            yield bytes.fromhex(node_id), data, location.dictionary
        else:
            plaintext = store.read(node_id)
        links = node_links(plaintext)
        if links is None:
            continue
        depth, children = links
        base_links = node_links(store.read(base_id)) if base_id is not None else None
        base_children = dict(base_links[1]) if base_links and base_links[0] == depth else {}
        for digit, child in children:
            stack.append((child, base_children.get(digit)))


class _MergedPacks:
    """The new packs: one open per dictionary (an entry encoded against a dictionary must lie
    in a pack naming it; an entry of a pack naming none may lie in any). Each is handed to
    ``publish`` as it closes; only the names of those handed over are kept."""

    def __init__(
        self,
        store: ObjectStore,
        fallback: str | None,
        publish: Callable[[str, Path, Trailer], None],
    ) -> None:
        self.store = store
        self.fallback = fallback
        self.publish = publish
        self._open: dict[str | None, PackFileWriter] = {}
        self._done: list[str] = []

    def add(self, object_id: bytes, data: bytes, dictionary: str | None) -> None:
        key = dictionary or self.fallback
        out = self._open.get(key)
        if out is None:
            out = PackFileWriter(self.store.tmp_dir / f"merge.{secrets.token_hex(6)}.tmp", key)
            self._open[key] = out
        out.add(object_id, data)
        if out.size >= MERGED_PACK_BYTES or len(out) >= MERGED_PACK_ENTRIES:
            self._close(key)

    def copy_pack(self, path: Path) -> int:
        """Every entry of the pack at ``path``, in file order; how many."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            trailer = read_trailer_of(os.fspath(path))
            entries = sorted(trailer.entries, key=lambda e: e.offset)
            for entry, data in _entry_bytes(fd, entries):
                self.add(entry.object_id, data, trailer.dictionary_id)
        finally:
            os.close(fd)
        return len(trailer.entries)

    def _close(self, key: str | None) -> None:
        out = self._open[key]
        try:
            name, trailer = out.finish()  # if this fails, abort() still removes the file
        except ValueError as exc:
            # A run stores an object once (a batch never packs what the vault holds), so its
            # packs never list one twice; if they did, the merge stops and changes nothing.
            raise IntegrityError(f"a merged pack would not be whole: {exc}") from None
        del self._open[key]
        try:
            self.publish(name, Path(out.path), trailer)
        except BaseException:
            # Not yet renamed into packs/ (or renamed: then the temp name is gone already).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out.path)
            raise
        self._done.append(name)

    @property
    def published(self) -> list[str]:
        return self._done

    def finish(self) -> list[str]:
        """Close the open packs; the names of every pack published."""
        for key in list(self._open):
            self._close(key)
        return self._done

    def abort(self) -> None:
        """Remove the packs still being written (those published are :func:`_unpublish`'s)."""
        for out in self._open.values():
            out.abort()
        self._open.clear()


def _entry_bytes(fd: int, entries: list[PackEntry]) -> Iterable[tuple[PackEntry, bytes]]:
    """Each entry's bytes, read in large sequential chunks (entries sorted by offset)."""
    chunk, chunk_at = b"", 0
    for entry in entries:
        start = entry.offset - chunk_at
        if start < 0 or start + entry.length > len(chunk):
            chunk_at = entry.offset
            chunk = os.pread(fd, max(READ_SIZE, entry.length), chunk_at)
            start = 0
            if len(chunk) < entry.length:
                raise OSError(f"pack was cut short while being read (entry at {entry.offset})")
        yield entry, chunk[start : start + entry.length]
