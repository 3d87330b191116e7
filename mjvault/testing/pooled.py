"""Build the vault a first ``sync`` of a pooled scaled account leaves, without the downloads.

A first sync of a million-job account costs over three million CDN requests, each hashed into
its own temp file: hours on this kind of machine, which benchmarks of everything *after* the
first sync should not have to pay. With ``images_pool`` (:mod:`mjvault.testing.scaled`) every
media path is one of a few pooled files, so the object a download would store is known without
downloading it: this builder stores each pooled file once, then walks the account's listing
with the real client (the server's pages, the client's exact-bytes record slicing and its
listing walk) and adds each job through the vault's writer, exactly as sync's writer thread
does, with the pooled object ids as its images. It leaves the sync state a complete sync
leaves, so a later ``mjvault sync`` (with or without ``--full``) finds nothing new.

Sync's own planning (virtual upsamples borrowing their parent's file, resumes, retries) is
not run: on a pooled account with no missing files it decides nothing a pool lookup does not.
tests/testing/test_pooled.py proves the result is the vault a real sync leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import SyncOptions, SyncState, account_key
from mjvault.testing.scaled import ScaledAccount
from mjvault.vault import Vault


@dataclass
class BuildReport:
    jobs_listed: int = 0
    jobs_new: int = 0
    jobs_unchanged: int = 0
    media_stored: int = 0  # distinct pooled files
    listing_pages: int = 0
    history_complete: bool = False
    snapshot: str | None = None
    seconds: float = 0.0


def build_synced_vault(
    vault: Vault,
    client: MidjourneyClient,
    account: ScaledAccount,
    *,
    on_job: Callable[[int], None] | None = None,
) -> BuildReport:
    """Store every job ``client`` lists, with ``account``'s pooled files as their images.

    ``account`` must be the one the client's server serves (same seed, size and pool): it
    gives the pooled bytes of each media path. Interrupted, it keeps a checkpoint as sync does;
    run again, it resumes from there.
    """
    if account.images_pool is None:
        raise ValueError("the account has no images_pool: every download would be a new file")
    started = time.monotonic()
    report = BuildReport()
    options = SyncOptions()
    state = SyncState(vault)
    key = account_key(client)
    writer = vault.writer(
        "midjourney",
        checkpoint_jobs=options.checkpoint_jobs,
        checkpoint_seconds=options.checkpoint_seconds,
    )
    writer.start()
    state.update(key, gap=True)  # as sync: until the listing's end is reached
    stored: dict[tuple[str, int], str] = {}

    def object_for(path: str) -> str:
        slot = account.pool_slot(path)
        object_id = stored.get(slot)
        if object_id is None:
            object_id = stored[slot] = writer.put_media(account.pooled_media(path))
            report.media_stored += 1
        return object_id

    try:
        listing = client.list_jobs()
        writer.source = f"midjourney:{listing.generation}:{client.settings.user_id}"
        for listed in listing:
            report.jobs_listed += 1
            job = listed.job()
            images: list[str | None] = [object_for(ref.path) for ref in job.media()]
            if writer.add_job(listed.raw, images, job) == "new":
                report.jobs_new += 1
            else:
                report.jobs_unchanged += 1
            if on_job:
                on_job(report.jobs_listed)
        report.listing_pages = listing.pages
        complete = listing.cut_short is None and not listing.stopped_early
    except BaseException:
        writer.abort()
        raise
    snapshot = writer.commit()
    state.update(key, retry={})
    state.update(
        key,
        history_complete=complete,
        gap=not complete,
        last_sync=datetime.now(UTC).isoformat(timespec="seconds"),
        generation=listing.generation,
    )
    report.history_complete = complete
    report.snapshot = snapshot.id if snapshot else None
    report.seconds = time.monotonic() - started
    return report
