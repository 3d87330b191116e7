"""``mjvault verify --remote NAME``: does the remote hold every object of every snapshot?

Structure first: list the remote's objects once (loose ones, and packed ones from every
pack's trailer, read again rather than taken from the local cache), read each snapshot's
manifest and tree nodes from the remote (each distinct node once) and check that every object
they name is listed, and so are each snapshot's collection list and its member chunks.
``read_data`` / ``subset`` then downloads objects and checks each against its name and, on an
encrypted remote, its AEAD tag — the same checks ``mjvault verify --read-data`` makes locally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mjvault.collections import decode_list
from mjvault.concurrency import bounded_map
from mjvault.errors import CorruptObject
from mjvault.integrity.problems import Problem
from mjvault.integrity.verify import SubsetFilter, VerifyReport, parse_subset
from mjvault.remotes import bigobjects
from mjvault.remotes.backend import REMOTE_DAMAGE, RemoteNotFound
from mjvault.remotes.config import load_spec, state_dir
from mjvault.remotes.remote import PassphraseSource, Present
from mjvault.remotes.scratch import scratch_in
from mjvault.remotes.session import Link, connect
from mjvault.snapshots import Snapshot, decode_manifest
from mjvault.tree import Inner, walk_nodes
from mjvault.vault import Vault

READ_THREADS = 8
DAMAGE = REMOTE_DAMAGE


def verify_remote(
    link: Link,
    *,
    read_data: bool = False,
    subset: str | None = None,
    on_object: Callable[[int], None] | None = None,
    scratch_dir: Path | None = None,
) -> VerifyReport:
    """``scratch_dir``: where the remote's listing is kept on disk while the check runs (a
    million-job remote lists millions of ids); a temporary directory when not given."""
    started = time.monotonic()
    report = VerifyReport()
    if link.remote.packs is not None:
        link.remote.packs.refresh(reread=True)  # what the packs hold, not what we remember
        for name in link.remote.packs.damaged:
            report.problems.append(Problem("corrupt", f"remote pack {name} is damaged", name))
    with scratch_in(scratch_dir, prefix="mjvault-verify-") as scratch:
        listed = link.remote.listing(into=scratch.ids("listed"))
        snapshots = _manifests(link, listed, report)
        _trees(link, listed, snapshots, report)
        _collections(link, listed, snapshots, report)
        if read_data or subset:
            chooser: SubsetFilter | None = None
            if subset:
                report.subset, chooser = parse_subset(subset)
            _read_data(link, listed, chooser, report, on_object)
    report.seconds = time.monotonic() - started
    return report


def _manifests(link: Link, listed: Present, report: VerifyReport) -> list[Snapshot]:
    found = []
    for snapshot_id in sorted(link.remote.snapshot_ids()):
        if snapshot_id not in listed:
            report.problems.append(
                Problem(
                    "missing", "snapshot manifest is missing", snapshot_id, snapshots=[snapshot_id]
                )
            )
            continue
        try:
            _, plaintext = link.remote.fetch(snapshot_id)
            found.append(decode_manifest(snapshot_id, plaintext))
        except DAMAGE as exc:
            report.problems.append(
                Problem("corrupt", str(exc), snapshot_id, snapshots=[snapshot_id])
            )
    report.snapshots = len(found)
    return found


def _trees(link: Link, listed: Present, snapshots: list[Snapshot], report: VerifyReport) -> None:
    visited: set[str] = set()  # tree nodes: tens of thousands at a million jobs
    reported: set[str] = set()  # objects found missing, each reported once

    def read(node_id: str) -> bytes:
        if node_id not in listed:
            raise RemoteNotFound(f"tree node {node_id} is not listed")
        return link.remote.fetch(node_id)[1]

    for snapshot in snapshots:

        def damaged(node_id: str, exc: Exception, snapshot_id: str = snapshot.id) -> None:
            report.tree_nodes += 1
            if node_id not in listed:
                problem = Problem(
                    "missing", "tree node is missing", node_id, snapshots=[snapshot_id]
                )
            else:
                problem = Problem("corrupt", str(exc), node_id, snapshots=[snapshot_id])
            report.problems.append(problem)

        for _, node in walk_nodes(
            read, snapshot.tree, seen=visited, on_error=damaged, damage=DAMAGE
        ):
            report.tree_nodes += 1
            if isinstance(node, Inner):
                continue
            for entry in node.entries:
                report.jobs_checked += 1
                for object_id in (entry.record, *entry.images):
                    if object_id is None:
                        continue
                    report.objects_referenced += 1
                    if object_id in reported or object_id in listed:
                        continue
                    reported.add(object_id)
                    report.problems.append(
                        Problem(
                            "missing",
                            f"an object of job {entry.job_id} is missing",
                            object_id,
                            jobs=[entry.job_id],
                            snapshots=[snapshot.id],
                        )
                    )


def _collections(
    link: Link, listed: Present, snapshots: list[Snapshot], report: VerifyReport
) -> None:
    """Each snapshot's collection list and its member chunks are on the remote (a pull or a
    restore of that snapshot needs them as much as its tree)."""
    seen: set[str] = set()
    for snapshot in snapshots:
        list_id = snapshot.collections
        if list_id is None or list_id in seen:
            continue
        seen.add(list_id)
        if list_id not in listed:
            report.problems.append(
                Problem("missing", "collection list is missing", list_id, snapshots=[snapshot.id])
            )
            continue
        try:
            _, plaintext = link.remote.fetch(list_id)
            collections = decode_list(list_id, plaintext)
        except DAMAGE as exc:
            report.problems.append(
                Problem("corrupt", f"collection list: {exc}", list_id, snapshots=[snapshot.id])
            )
            continue
        for collection in collections:
            for chunk in collection.chunks:
                report.objects_referenced += 1
                if chunk in seen or chunk in listed:
                    continue
                seen.add(chunk)
                report.problems.append(
                    Problem(
                        "missing",
                        f"member chunk of collection {collection.name!r} is missing",
                        chunk,
                        snapshots=[snapshot.id],
                    )
                )


def _read_data(
    link: Link,
    ids: Iterable[str],
    chooser: SubsetFilter | None,
    report: VerifyReport,
    on_object: Callable[[int], None] | None,
) -> None:
    def check(object_id: str) -> tuple[str, int, Exception | None]:
        try:
            if link.remote.packed(object_id):
                data, _ = link.remote.fetch(object_id)
                return object_id, len(data), None
            # Loose: a large object is checked as it streams and kept nowhere.
            spool = bigobjects.download(link.remote, object_id, None, plain=False)
            if spool.spilled:
                spool.finish()
            else:
                link.remote.open(object_id, spool.held())
            return object_id, spool.size, None
        except DAMAGE as exc:
            pack = link.remote.packs.index.locate(object_id) if link.remote.packs else None
            if pack is not None:  # the file to delete before `push --full` sends it again
                return object_id, 0, CorruptObject(f"{exc} (in remote pack packs/{pack})")
            return object_id, 0, exc

    chosen = (oid for oid in ids if chooser is None or chooser(oid))
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for object_id, size, error in bounded_map(pool, check, chosen, window=READ_THREADS * 4):
            report.objects_read += 1
            report.bytes_read += size
            if error is not None:
                report.problems.append(Problem("corrupt", str(error), object_id))
            if on_object:
                on_object(size)


def verify_named_remote(
    vault: Vault,
    *,
    name: str,
    passphrase: PassphraseSource = None,
    read_data: bool = False,
    subset: str | None = None,
    on_object: Callable[[int], None] | None = None,
) -> VerifyReport:
    """``mjvault verify --remote NAME``: :func:`verify_remote` on one of the vault's remotes."""
    with connect(vault, load_spec(vault.path, name), passphrase=passphrase) as link:
        return verify_remote(
            link,
            read_data=read_data,
            subset=subset,
            on_object=on_object,
            scratch_dir=state_dir(vault.path, name),
        )
