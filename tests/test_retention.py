"""Retention: ``[retention]`` applied after each sync, on real vaults, with a fake clock.

Snapshots are written at the fake clock's times (the manifest is the snapshot's only
timestamp), so a year of daily syncs takes a second; the sync itself runs against the
Midjourney test server on 127.0.0.1 through the in-process command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.config.schema import Config, RetentionSection
from mjvault.integrity.forget import KeepPolicy, apply_policy
from mjvault.integrity.retention import apply_retention, policy_from_config
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.remotes.session import add_remote, connect
from mjvault.snapshots import encode_manifest
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """The time each "sync" happens at; advanced by the test, never by the wall clock."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def seeded(path: Path) -> Vault:
    """A vault of one job whose one snapshot is dated START (the writer's own is dropped)."""
    vault = Vault.init(path)
    with vault.writer("test") as writer:
        writer.add_job(record_json("job-0"), [writer.put_media(png_bytes(0))])
    written = vault.refs.head()
    assert written is not None
    snapshot_at(vault, START)
    vault.refs.remove_snapshot(written)
    return vault


def snapshot_at(vault: Vault, when: datetime) -> str:
    """A snapshot of HEAD's tree made at ``when``, as a sync at that moment makes one."""
    head = vault.head()
    assert head is not None
    batch = vault.store.batch()
    snapshot_id = batch.put(
        encode_manifest(
            time=when,
            tree=head.tree,
            parent=head.id,
            source="midjourney:v3:test",
            host="laptop",
            tool="mjvault test",
            stats=dict(head.stats),
        ),
        loose=True,
    )
    batch.flush()
    vault.refs.add_snapshot(snapshot_id)
    vault.refs.set_head(snapshot_id)
    return snapshot_id


def listed(vault: Vault) -> set[str]:
    return set(vault.refs.snapshot_ids())


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = seeded(tmp_path / "vault")
    yield v
    v.close()


def test_off_by_default_and_read_from_the_section(vault: Vault) -> None:
    assert policy_from_config(Config().retention).empty
    assert apply_retention(vault, policy_from_config(Config().retention)) is None
    section = RetentionSection(keep_last=3, keep_monthly=12)
    assert policy_from_config(section) == KeepPolicy(last=3, monthly=12)


def test_the_section_is_read_from_files_profiles_and_the_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.config.loader import load_config

    world = isolate(monkeypatch, tmp_path)
    world.user_file.parent.mkdir(parents=True)
    world.user_file.write_text(
        "[retention]\nkeep_daily = 7\n[profile.tight.retention]\nkeep_last = 1\n"
    )
    world.user_file.chmod(0o600)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.toml").write_text("[retention]\nkeep_monthly = 12\n")
    plain = policy_from_config(load_config().config.retention)
    assert plain == KeepPolicy(daily=7)
    tight = policy_from_config(
        load_config(profile="tight", vault_dir=tmp_path / "v").config.retention
    )
    assert tight == KeepPolicy(last=1, daily=7, monthly=12)


def test_a_year_of_daily_syncs_keeps_what_the_policy_names(vault: Vault) -> None:
    clock = FakeClock()
    policy = KeepPolicy(last=2, daily=7, weekly=4, monthly=6)
    made: list[str] = []
    for _ in range(365):
        made.append(snapshot_at(vault, clock.advance(days=1)))
        report = apply_retention(vault, policy)
        assert report is not None and report.error is None and not report.withheld
    kept = listed(vault)
    head = vault.refs.head()
    assert head == made[-1] and head in kept
    # Once a day: the newest 7 days are the 7 newest snapshots; 4 weeks and 6 months add a
    # snapshot each for the periods the days do not already cover.
    assert made[-7:] == [s for s in made if s in kept][-7:]
    times = sorted(vault.snapshot(s).time for s in kept)
    assert {t.strftime("%Y-%m") for t in times} >= {
        (clock.now - timedelta(days=31 * k)).strftime("%Y-%m") for k in range(5)
    }
    assert 7 <= len(kept) <= 7 + 4 + 6
    assert (clock.now - times[0]).days < 31 * 6 + 7


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=24 * 40), min_size=1, max_size=25),
    last=st.none() | st.integers(1, 4),
    daily=st.none() | st.integers(1, 5),
    weekly=st.none() | st.integers(1, 3),
    monthly=st.none() | st.integers(1, 3),
)
def test_applied_after_every_sync_it_keeps_what_applying_once_keeps(
    tmp_path_factory: pytest.TempPathFactory,
    gaps: list[int],
    last: int | None,
    daily: int | None,
    weekly: int | None,
    monthly: int | None,
) -> None:
    policy = KeepPolicy(last=last, daily=daily, weekly=weekly, monthly=monthly)
    if policy.empty:
        policy = KeepPolicy(last=1)
    vault = seeded(tmp_path_factory.mktemp("prop") / "vault")
    try:
        clock = FakeClock()
        every = [vault.head()]
        for hours in gaps:
            snapshot_at(vault, clock.advance(hours=hours))
            every.append(vault.head())
            apply_retention(vault, policy)
        head = vault.refs.head()
        assert head is not None
        once = apply_policy([s for s in every if s], policy, protected={head: "HEAD"})
        assert listed(vault) == {d.snapshot.id for d in once if d.keep}
    finally:
        vault.close()


def test_a_snapshot_no_remote_holds_is_withheld_not_forgotten(tmp_path: Path) -> None:
    vault = seeded(tmp_path / "vault")
    try:
        clock = FakeClock()
        pushed = [snapshot_at(vault, clock.advance(days=1)) for _ in range(3)]
        spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
        add_remote(vault, spec)
        with connect(vault, spec, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as link:
            assert push(vault, link).ok
        local = [snapshot_at(vault, clock.advance(days=1)) for _ in range(3)]
        report = apply_retention(vault, KeepPolicy(last=1))
        assert report is not None
        first = {s.id for s in report.forgotten}
        # The pushed ones go (the seed's snapshot too: it was pushed); the local ones stay.
        assert set(pushed) <= first and not first & set(local)
        assert report.withheld == sorted(local[:-1]) and report.push_to == "offsite"
        assert listed(vault) == set(local)
        assert any("mjvault push offsite" in line for line in report.lines())
        with connect(vault, spec, passphrase=PASSPHRASE) as link:
            assert push(vault, link).ok
        again = apply_retention(vault, KeepPolicy(last=1))
        assert again is not None and not again.withheld
        assert listed(vault) == {local[-1]}
    finally:
        vault.close()


def test_sync_applies_the_configured_policy_and_says_what_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    account = Account.generate(7, 12)
    vault = seeded(tmp_path / "vault")
    clock = FakeClock()
    old = [snapshot_at(vault, clock.advance(days=1)) for _ in range(4)]
    vault.close()
    with FakeMidjourney(account, token="sess-retention-token") as server:
        for key, value in {
            "MJVAULT_WEB_BASE": server.web_base,
            "MJVAULT_CDN_BASE": server.cdn_base,
            "MJVAULT_MIDJOURNEY_API": "v3",
            "MIDJOURNEY_SESSION_TOKEN": server.token,
            "MIDJOURNEY_USER_ID": server.user_id,
        }.items():
            monkeypatch.setenv(key, value)
        at = ("--vault", str(tmp_path / "vault"))
        off = run_in_process(capsys, *at, "--json", "sync", "--limit", "3")
        assert off.code == 0, off.err
        assert off.json()["retention"] is None
        with Vault.open(tmp_path / "vault") as reopened:
            assert len(reopened.refs.snapshot_ids()) == 1 + 4 + 1
        monkeypatch.setenv("MJVAULT_RETENTION_KEEP_LAST", "2")
        result = run_in_process(capsys, *at, "--json", "sync", "--limit", "3")
        assert result.code == 0, result.err
        summary = result.json()
        retention = summary["retention"]
        assert retention["policy"] == {"last": 2} and retention["error"] is None
        gone = {s["id"] for s in retention["forgotten"]}
        assert set(old) <= gone and len(gone) == 1 + 4 and retention["kept"] == 2
        with Vault.open(tmp_path / "vault") as reopened:
            assert reopened.refs.head() == summary["snapshot"]
            assert summary["snapshot"] in reopened.refs.snapshot_ids()
            assert len(reopened.refs.snapshot_ids()) == 2
        human = run_in_process(capsys, *at, "sync", "--limit", "3")
        assert human.code == 0, human.err
        assert "retention: 1 snapshot forgotten, 2 kept" in human.out
        assert "mjvault gc" in human.out
        # A marker whose manifest is gone: the sync is done, retention says why it did not run.
        (tmp_path / "vault" / "refs" / "snapshots" / ("0" * 64)).touch()
        failed = run_in_process(capsys, *at, "sync", "--limit", "3")
        assert failed.code == 4 and "retention not applied" in failed.err
        assert "jobs: 3 new" in failed.out


def test_a_retention_that_cannot_run_leaves_the_sync_done(vault: Vault) -> None:
    from mjvault.integrity import retention

    snapshot_at(vault, START)
    # A snapshot whose manifest is gone cannot be placed by any rule: retention says so.
    lost = "0" * 64
    vault.refs.add_snapshot(lost)
    report = retention.after_sync(vault, RetentionSection(keep_last=1))
    assert report is not None and report.error is not None and "cannot be read" in report.error
    assert lost in listed(vault) and len(listed(vault)) == 3
    assert json.loads(json.dumps(report.to_json()))["forgotten"] == []
