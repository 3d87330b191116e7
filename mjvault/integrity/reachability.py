"""What a vault still needs: every object reachable from its snapshots (their trees and
collections), checkpoint and views, and the thumbnails of the images among them.

Used by ``gc`` (keep these, sweep the rest) and by ``forget`` (what a rewrite leaves behind).

Memory: a mark is the first 8 bytes of an object id, kept in one ``array('Q')`` per fan-out
directory (the id's first byte), so marking costs 8 bytes per reference — about 20 MB for
500k jobs with 4 images each — instead of ~120 bytes per id in a Python set of strings. Two
ids sharing a 64-bit prefix can only make gc *keep* an unreferenced object, never remove a
referenced one, so the approximation is safe in the only direction that matters.

Each distinct tree node is read once: a subtree already marked through an earlier snapshot
is skipped by its id, so marking many snapshots costs about as much as their differences.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from mjvault.errors import CorruptObject, IntegrityError, MjvaultError, ObjectNotFound
from mjvault.snapshots import decode_manifest
from mjvault.tree import Inner, walk_nodes
from mjvault.vault import Vault
from mjvault.views.check import referenced_objects

CHECKPOINT_FILE = "checkpoint"
THUMBS_TABLE = "cache/thumbs.sqlite"


class Marks:
    """A compact set of object ids (by 64-bit prefix): append while marking, then query.

    Each fan's array is sorted once, on its first query, and searched by bisection, so
    membership costs O(log n) in any order of queries and no per-id Python object is kept.
    """

    def __init__(self) -> None:
        self._by_fan: list[array[int]] = [array("Q") for _ in range(256)]
        self._sorted = [True] * 256
        self.references = 0

    def add(self, object_id: str) -> None:
        fan = int(object_id[:2], 16)
        self._by_fan[fan].append(int(object_id[:16], 16))
        self._sorted[fan] = False
        self.references += 1

    def __contains__(self, object_id: str) -> bool:
        fan = int(object_id[:2], 16)
        marks = self._by_fan[fan]
        if not self._sorted[fan]:
            marks = self._by_fan[fan] = array("Q", sorted(set(marks)))
            self._sorted[fan] = True
        key = int(object_id[:16], 16)
        at = bisect_left(marks, key)
        return at < len(marks) and marks[at] == key

    def update(self, other: Marks) -> None:
        for fan, more in enumerate(other._by_fan):
            if more:
                self._by_fan[fan].extend(more)
                self._sorted[fan] = False
        self.references += other.references

    def memory_bytes(self) -> int:
        return sum(a.itemsize * len(a) for a in self._by_fan)


@dataclass
class MarkReport:
    snapshots: int = 0
    tree_nodes: int = 0
    jobs: int = 0
    checkpoint: str | None = None
    views: int = 0
    collection_objects: int = 0
    thumbnails: int = 0
    roots: list[str] = field(default_factory=list)


class UnreadableGraph(IntegrityError):
    """A manifest or tree node could not be read, so what it references is unknown."""


def mark_reachable(vault: Vault, *, include_views: bool = True) -> tuple[Marks, MarkReport]:
    """Mark every object a snapshot, the writer's checkpoint or a view refers to.

    Raises :class:`UnreadableGraph` when part of the graph cannot be read: sweeping then could
    remove objects that only the unreadable part refers to (which a repair could still save).
    """
    marks = Marks()
    report = MarkReport()
    visited: set[str] = set()
    for snapshot_id in vault.refs.snapshot_ids():
        try:
            snapshot = decode_manifest(snapshot_id, vault.store.read(snapshot_id))
        except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
            raise UnreadableGraph(
                f"snapshot {snapshot_id[:12]} cannot be read ({exc})",
                hint="run `mjvault verify --repair` first, or forget that snapshot",
            ) from None
        marks.add(snapshot_id)
        report.snapshots += 1
        report.roots.append(snapshot.tree)
        _mark_tree(vault, snapshot.tree, marks, visited, report)
        if snapshot.collections is not None and snapshot.collections not in visited:
            _mark_collections(vault, snapshot.collections, marks, visited, report)
    unfinished = checkpoint_tree(vault)
    if unfinished is not None:
        report.checkpoint = unfinished
        report.roots.append(unfinished)
        _mark_tree(vault, unfinished, marks, visited, report)
    if include_views:
        for object_id in _view_objects(vault, report):
            marks.add(object_id)
    report.thumbnails = _mark_thumbnails(vault, marks)
    return marks, report


def _mark_collections(
    vault: Vault, list_id: str, marks: Marks, visited: set[str], report: MarkReport
) -> None:
    """A snapshot's collection list and its member chunks (FORMAT §7.1)."""
    from mjvault.collections import object_ids

    visited.add(list_id)
    try:
        for object_id in object_ids(vault, list_id):
            marks.add(object_id)
            report.collection_objects += 1
    except (ObjectNotFound, CorruptObject, IntegrityError) as exc:
        raise UnreadableGraph(
            f"collection list {list_id[:12]} cannot be read ({exc})",
            hint="run `mjvault verify --repair` first",
        ) from None


def _mark_thumbnails(vault: Vault, marks: Marks) -> int:
    """Thumbnails (cache/thumbs.sqlite) of the images marked: made once, kept as long as
    their image is. Streamed from the table; the matches are gathered apart and merged, so
    the marks stay sorted for the membership tests while the table is read."""
    if not (vault.path / THUMBS_TABLE).exists():
        return 0
    from mjvault.find.gallery.thumbs import table_pairs

    found = Marks()
    try:
        for source, thumb in table_pairs(vault.path / THUMBS_TABLE):
            if thumb and source in marks:
                found.add(thumb)
    except sqlite3.DatabaseError:
        # A damaged table is a lost cache: its thumbnails go with it and are made again
        # (a row naming a swept thumbnail is made again as a miss).
        return 0
    marks.update(found)
    return found.references


def _mark_tree(
    vault: Vault, root: str, marks: Marks, visited: set[str], report: MarkReport
) -> None:
    def unreadable(node_id: str, exc: Exception) -> None:
        raise UnreadableGraph(
            f"tree node {node_id[:12]} cannot be read ({exc})",
            hint="run `mjvault verify --repair` first",
        ) from None

    for node_id, node in walk_nodes(vault.store.read, root, seen=visited, on_error=unreadable):
        marks.add(node_id)
        report.tree_nodes += 1
        if isinstance(node, Inner):
            continue
        for entry in node.entries:
            report.jobs += 1
            marks.add(entry.record)
            for image in entry.images:
                if image is not None:
                    marks.add(image)


def checkpoint_tree(vault: Vault) -> str | None:
    """The tree of an unfinished writer (``refs/checkpoint``), if it names one that exists.

    A checkpoint whose root is gone is one no writer would resume from (the writer checks the
    same), so it protects nothing.
    """
    try:
        doc = json.loads((vault.refs.dir / CHECKPOINT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    tree = doc.get("tree") if isinstance(doc, dict) else None
    if not isinstance(tree, str) or not vault.store.exists(tree):
        return None
    return tree


def _view_objects(vault: Vault, report: MarkReport) -> Iterator[str]:
    """Objects shown by checkout views: a symlink into the vault must never dangle after gc."""
    reading = ""

    def counted(name: str) -> None:
        nonlocal reading
        reading = name
        report.views += 1

    try:
        yield from referenced_objects(vault, on_view=counted)
    except MjvaultError as exc:
        raise UnreadableGraph(
            f"view {reading} cannot be read ({exc})",
            hint="remove it with `mjvault checkout --remove` or refresh it",
        ) from None
