"""Repair the vault from a remote: ``mjvault pull --repair NAME`` and ``mjvault verify --repair
--from-remote NAME``.

Both go through :func:`mjvault.integrity.repair.repair` (verify, quarantine, refetch, verify
again, rebuild the index); this module only hands it the remote as a source of objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mjvault.integrity.repair import ObjectSource, RepairReport, repair
from mjvault.remotes.backend import REMOTE_DAMAGE
from mjvault.remotes.session import Link
from mjvault.vault import Vault


def remote_source(link: Link) -> ObjectSource:
    """An :data:`ObjectSource` reading from a connected remote.

    Ids are translated through the remote's id map when it renames objects (a plain vault's
    encrypting remote); a copy the remote cannot produce intact is simply not yielded (the
    repair checks what is yielded against its id in any case).
    """
    where = f"remote {link.spec.name}"

    def fetch(wanted: set[str]) -> Iterator[tuple[str, bytes, str]]:
        for local_id in sorted(wanted):
            remote_id = local_id if link.idmap is None else link.idmap.remote_of(local_id)
            if remote_id is None:
                continue
            try:
                _data, plaintext = link.remote.fetch(remote_id)
            except REMOTE_DAMAGE:
                continue
            yield local_id, plaintext, where

    return fetch


def repair_from_remote(
    vault: Vault,
    link: Link,
    *,
    wait: float | None = None,
    on_object: Callable[[int], None] | None = None,
) -> RepairReport:
    """``mjvault pull --repair``: every local object read and checked, the missing or damaged
    ones replaced by the remote's checked copies, then the vault verified again and its index
    rebuilt."""
    return repair(
        vault,
        fetchers=[remote_source(link)],
        read_data=True,
        wait=wait,
        on_object=on_object,
        command="mjvault pull --repair",
    )
