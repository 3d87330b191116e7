"""A collection view's members: which jobs a collection holds, and which joined or left.

A view may show the jobs of one collection (``ViewFilter.collection``); its refresh binds the
filter to the members in the snapshot rendered and re-examines only the jobs that joined or
left it since the last one (FORMAT §7.1: a collection is sorted chunks of job ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from mjvault.snapshots import Snapshot
from mjvault.views.registry import ViewDefinition
from mjvault.views.report import RefreshReport

if TYPE_CHECKING:
    from mjvault.vault import Vault


def collection_chunks(
    vault: Vault, definition: ViewDefinition, snapshot: Snapshot | None, report: RefreshReport
) -> list[str] | None:
    """A collection view's member chunks in ``snapshot`` (binding the filter to its members);
    None for a view without a collection. A collection the snapshot lacks has no member."""
    name = definition.filter.collection
    if name is None:
        return None
    from mjvault.collections import collections_of

    found = next((c for c in collections_of(vault, snapshot) if c.name == name), None)
    if found is None:
        report.note(f"no collection {name!r} in the snapshot: the view shows no job")
    chunks = list(found.chunks) if found is not None else []
    definition.filter = definition.filter.bound(frozenset(stream_chunks(vault, chunks)))
    return chunks


def chunks_present(vault: Vault, chunks: list[str] | None) -> bool:
    return chunks is not None and all(vault.store.exists(c) for c in chunks)


def member_changes(vault: Vault, old: list[str] | None, new: list[str] | None) -> Iterator[str]:
    """The job ids in one of the two collections and not the other, in id order: a merge of
    the two sorted streams (FORMAT §7.1). A chunk both lists name holds the same ids on
    both sides and none of the others' (a collection names each id once): skipped unread."""
    shared = set(old or ()) & set(new or ())
    before = stream_chunks(vault, [c for c in old or () if c not in shared])
    after = stream_chunks(vault, [c for c in new or () if c not in shared])
    a, b = next(before, None), next(after, None)
    while a is not None and b is not None:
        if a < b:
            yield a
            a = next(before, None)
        elif b < a:
            yield b
            b = next(after, None)
        else:
            a, b = next(before, None), next(after, None)
    if a is not None:
        yield a
        yield from before
    if b is not None:
        yield b
        yield from after


def stream_chunks(vault: Vault, chunks: list[str]) -> Iterator[str]:
    from mjvault.collections import decode_chunk

    for chunk in chunks:
        yield from decode_chunk(chunk, vault.store.read(chunk))
