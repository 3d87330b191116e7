"""A pooled scaled account (``images_pool``) and the builder of its synced vault.

The builder is only worth having if what it leaves is what a real sync leaves: the same jobs,
the same record bytes, the same image objects, the same tree, the same sync state. A sync run
after it must find nothing new, with or without ``--full``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import STATE_FILE, SyncOptions
from mjvault.testing.accounts import Account
from mjvault.testing.pooled import build_synced_vault
from mjvault.testing.scaled import ScaledAccount
from mjvault.testing.server import FakeMidjourney
from tests.test_sync import assert_complete, run_sync, settings_for

JOBS, POOL = 240, 6


def _media(account: ScaledAccount) -> dict[str, bytes]:
    served = {}
    for job in account.jobs:
        for path in job.own_media_paths:
            data = account.media_bytes(path)
            assert data is not None, path
            served[path] = data
    return served


def test_a_pooled_account_serves_few_distinct_files_and_the_default_is_unchanged() -> None:
    pooled = _media(ScaledAccount(5, JOBS, images_pool=POOL))
    plain = _media(ScaledAccount(5, JOBS))
    assert pooled.keys() == plain.keys()
    assert len(set(plain.values())) == len(plain)  # without a pool: every file distinct
    for ext in ("png", "mp4"):
        files = {data for path, data in pooled.items() if path.endswith(ext)}
        assert 1 < len(files) <= POOL, ext
    # Paths the account does not serve stay unserved.
    stranger = Account.generate(2, 3).jobs[0]
    account = ScaledAccount(5, JOBS, images_pool=POOL)
    assert account.media_bytes(f"{stranger.id}/0_0.png") is None
    with pytest.raises(ValueError, match="images_pool"):
        ScaledAccount(5, JOBS, images_pool=0)


def _vault_facts(path: Path) -> tuple[object, ...]:
    with Vault.open(path) as vault:
        head = vault.head()
        assert head is not None
        entries = sorted((e.job_id, e.record, tuple(e.images)) for e in vault.entries())
        facts = (head.tree, head.source, head.stats, entries)
    state = json.loads((path / STATE_FILE).read_bytes())
    for account in state.values():
        account.pop("last_sync")
    return (*facts, state)


def test_the_builder_leaves_the_vault_a_sync_leaves(tmp_path: Path) -> None:
    account = ScaledAccount(11, JOBS, images_pool=POOL)
    synced, built = tmp_path / "synced", tmp_path / "built"
    Vault.init(synced).close()
    Vault.init(built).close()
    with FakeMidjourney(account, token="pool-token") as server:
        first = run_sync(synced, server)
        assert first.jobs_new == JOBS and first.history_complete
        with Vault.open(built) as vault, MidjourneyClient(settings_for(server)) as client:
            report = build_synced_vault(vault, client, account)
        assert report.jobs_new == JOBS and report.history_complete
        assert report.media_stored == first.images_downloaded <= 2 * POOL
        assert _vault_facts(built) == _vault_facts(synced)
        assert_complete(built, account)  # type: ignore[arg-type]
        for options in (SyncOptions(concurrency=6), SyncOptions(concurrency=6, full=True)):
            server.reset_stats()
            again = run_sync(built, server, options)
            assert (again.jobs_new, again.jobs_updated, again.images_downloaded) == (0, 0, 0)
            assert again.snapshot is None
            assert server.stats.media_requests == 0
        assert again.jobs_unchanged == JOBS  # --full read the whole listing
