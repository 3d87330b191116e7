"""`mjvault sync` end to end: the real client against the Midjourney test server on 127.0.0.1,
into a real vault, clean and under every fault knob.

"Complete and correct" (``assert_complete``) means: every job the listing generation shows is in
the vault, its record is the server's JSON text byte for byte, every image object is the BLAKE3
of the bytes the server serves for that path, and ``verify --read-data`` finds nothing wrong.
Error cases run the real CLI in a child process: one line on stderr, no traceback, non-zero exit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest

from mjvault import Vault
from mjvault.errors import EXIT_PARTIAL, AuthError, SourceUnavailable
from mjvault.integrity.reachability import checkpoint_tree
from mjvault.integrity.verify import verify
from mjvault.model import Job, job_from_record
from mjvault.sources.midjourney import ClientSettings, ListedJob, MidjourneyClient
from mjvault.sync import SyncOptions, SyncReport, sync
from mjvault.testing.accounts import Account, GeneratedJob
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from mjvault.writer import ArchiveWriter
from tests.conftest import CHEAP_KDF, PASSPHRASE, run_cli

TOKEN = "sess-7f3e9a1c44d0b2e8aa51"
GENERATION_NUMBER = {"v1": 1, "v2": 2, "v3": 3}
SEED, JOBS = 53, 100  # two of these jobs are videos (listed by v3 only)


@pytest.fixture(scope="module")
def base_account() -> Account:
    return Account.generate(SEED, JOBS)


@pytest.fixture
def account() -> Account:
    # Tests that add jobs need their own copy; generating 100 jobs takes milliseconds.
    return Account.generate(SEED, JOBS)


@pytest.fixture
def server(account: Account) -> Iterator[FakeMidjourney]:
    with FakeMidjourney(account, token=TOKEN) as running:
        yield running


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.init(tmp_path / "vault").close()
    return tmp_path / "vault"


def settings_for(server: FakeMidjourney, api: str = "v3", **changes: object) -> ClientSettings:
    """Fast manners for tests: no request limit, backoff in milliseconds."""
    values: dict[str, object] = {
        "web_base": server.web_base,
        "cdn_base": server.cdn_base,
        "api": api,
        "user_id": server.user_id,
        "token": server.token,
        "max_rps": 5000.0,
        "burst": 100,
        "backoff_base": 0.002,
        "backoff_cap": 0.02,
        "timeout": 5.0,
        "max_retries": 8,
        "page_size": 30,
        "concurrency": 6,
    }
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


def run_sync(
    vault_path: Path,
    server: FakeMidjourney,
    options: SyncOptions | None = None,
    *,
    api: str = "v3",
    **settings: object,
) -> SyncReport:
    options = options or SyncOptions(concurrency=6)
    vault = Vault.open(vault_path)
    try:
        with MidjourneyClient(settings_for(server, api, **settings)) as client:
            return sync(vault, client, options)
    finally:
        vault.close()


def expected_jobs(account: Account, api: str) -> list[GeneratedJob]:
    return account.jobs if api == "v3" else account.image_jobs()


def assert_complete(
    vault_path: Path, account: Account, api: str = "v3", *, missing: frozenset[str] = frozenset()
) -> None:
    """Every job of the account as the server serves it; image objects = BLAKE3 of its bytes."""
    vault = Vault.open(vault_path)
    try:
        entries = {entry.job_id: entry for entry in vault.entries()}
        wanted = expected_jobs(account, api)
        assert set(entries) == {job.id for job in wanted}
        for job in wanted:
            entry = entries[job.id]
            record = job.record(GENERATION_NUMBER[api])
            assert vault.record_json(entry) == json.dumps(record, ensure_ascii=False).encode()
            paths = [ref.path for ref in job_from_record(record).media()]
            assert paths == job.media_paths
            assert len(entry.images) == len(paths)
            for path, object_id in zip(paths, entry.images, strict=True):
                if path.rsplit(".", 1)[0] in missing:
                    assert object_id is None, path
                    continue
                served = account.media_bytes(path)
                assert served is not None
                assert object_id == blake3.blake3(served).hexdigest(), path
        assert_vault_clean(vault)
    finally:
        vault.close()


def assert_vault_clean(vault: Vault) -> None:
    report = verify(vault, read_data=True)
    assert report.ok, report.problems
    leftovers = list(vault.store.tmp_dir.iterdir()) if vault.store.tmp_dir.is_dir() else []
    assert leftovers == []
    assert not (vault.refs.dir / "checkpoint").exists()


def cli_env(server: FakeMidjourney, api: str = "v3", **extra: str) -> dict[str, str]:
    return {
        "MJVAULT_WEB_BASE": server.web_base,
        "MJVAULT_CDN_BASE": server.cdn_base,
        "MJVAULT_MIDJOURNEY_API": api,
        "MIDJOURNEY_SESSION_TOKEN": server.token,
        "MIDJOURNEY_USER_ID": server.user_id,
        "HOME": os.environ.get("HOME", "/tmp"),
    } | extra


def assert_one_line_error(result: object, *words: str) -> str:
    """Non-zero exit, exactly one line on stderr, no traceback, no token anywhere."""
    returncode = result.returncode  # type: ignore[attr-defined]
    stdout: bytes = result.stdout  # type: ignore[attr-defined]
    stderr: bytes = result.stderr  # type: ignore[attr-defined]
    text = stderr.decode()
    assert returncode not in (0, EXIT_PARTIAL), (returncode, text)
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("mjvault: error: ")
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert TOKEN.encode() not in stdout + stderr
    return lines[0]


# -- a clean sync --------------------------------------------------------------------------
def test_full_sync_is_complete_and_correct_with_videos(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    report = run_sync(vault_path, server)
    videos = [job for job in account.jobs if job.is_video]
    assert len(videos) == 2
    assert report.jobs_new == len(account.jobs)
    assert report.jobs_updated == report.images_missing == 0
    assert report.videos_downloaded == sum(len(job.media_paths) for job in videos)
    assert report.history_complete and report.snapshot
    total = sum(len(job.media_paths) for job in account.jobs)
    assert report.images_downloaded + report.images_deduplicated + report.images_reused == total
    assert report.bytes_downloaded == server.stats.media_bytes_sent
    # A virtual upsample shows its parent's file: fetched once for both.
    distinct = {path for job in account.jobs for path in job.media_paths}
    assert len(distinct) < total
    assert server.stats.media_requests == len(distinct) == report.images_downloaded
    assert_complete(vault_path, account)


def test_full_sync_with_nothing_new_parses_no_record_and_stores_nothing(
    server: FakeMidjourney, account: Account, vault_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job held exactly as listed (same record bytes, every file) costs one index lookup
    and a hash of its record: a 1M-job `sync --full` is bounded by the listing."""
    run_sync(vault_path, server)
    parsed: list[str] = []
    stored: list[bytes] = []
    real_job, real_add = ListedJob.job, ArchiveWriter.add_job

    def counting_job(listed: ListedJob) -> Job:
        parsed.append(listed.id)
        return real_job(listed)

    def counting_add(writer: ArchiveWriter, raw: bytes, *args: Any, **kwargs: Any) -> str:
        stored.append(raw)
        return real_add(writer, raw, *args, **kwargs)

    monkeypatch.setattr(ListedJob, "job", counting_job)
    monkeypatch.setattr(ArchiveWriter, "add_job", counting_add)
    server.reset_stats()
    report = run_sync(vault_path, server, SyncOptions(full=True))
    assert report.jobs_listed == report.jobs_unchanged == len(account.jobs)
    assert report.jobs_new == report.jobs_updated == 0 and report.snapshot is None
    assert parsed == [] and stored == []
    assert server.stats.media_requests == 0
    # A record the server now shows differently is still found by --full, and only it.
    changed = account.jobs[len(account.jobs) // 2]
    with account._lock:
        position = account._jobs.index(changed)
        edited = replace(changed, prompt=changed.prompt + " edited")
        account._jobs[position] = account._by_id[changed.id] = edited
    with FakeMidjourney(account, token=TOKEN) as serving_the_edit:
        report = run_sync(vault_path, serving_the_edit, SyncOptions(full=True))
    assert report.jobs_updated == 1 and report.jobs_unchanged == len(account.jobs) - 1
    assert parsed == [changed.id] and len(stored) == 1 and report.snapshot
    vault = Vault.open(vault_path)
    try:
        assert b" edited" in vault.record_json(vault.entry(changed.id))
    finally:
        vault.close()


def test_cli_sync_summary_show_raw_and_json(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    env = cli_env(server)
    result = run_cli("--vault", str(vault_path), "sync", "--jobs", "6", env=env)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert f"jobs: {len(account.jobs)} new, 0 updated, 0 unchanged" in out
    assert "downloaded" in out and "deduplicated" in out and "missing" in out and " MB " in out
    assert TOKEN.encode() not in result.stdout + result.stderr
    assert b"\r" not in result.stderr  # no progress bars when stderr is not a terminal
    for job in account.jobs[:3] + [job for job in account.jobs if job.is_video]:
        shown = run_cli("--vault", str(vault_path), "show", "--raw", job.id, env=env)
        expected = json.dumps(job.record_v3(), ensure_ascii=False).encode()
        assert shown.stdout == expected + b"\n"
    again = run_cli("--vault", str(vault_path), "--json", "sync", env=env)
    assert again.returncode == 0
    summary = json.loads(again.stdout)
    for key in (
        "jobs_new",
        "jobs_updated",
        "jobs_unchanged",
        "images_downloaded",
        "images_deduplicated",
        "images_missing",
        "bytes_downloaded",
        "seconds",
    ):
        assert key in summary
    assert summary["jobs_new"] == summary["images_downloaded"] == 0
    assert summary["listing_pages"] == 1
    checked = run_cli("--vault", str(vault_path), "verify", "--read-data", env=env)
    assert checked.returncode == 0, checked.stdout.decode()


def test_token_never_appears_even_in_debug_logs(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    log_file = tmp_path / "sync.log"
    server.faults = Faults(expire_after_api_requests=1)  # a refused session mid-listing, too
    args = ["--vault", str(vault_path), "-vv", "--log-file", str(log_file), "sync"]
    result = run_cli(*args, env=cli_env(server, MJVAULT_MIDJOURNEY_API="v1"))
    assert result.returncode == 1
    server.faults = Faults()
    again = run_cli(*args, "--dry-run", env=cli_env(server))
    assert again.returncode == 0
    everything = result.stdout + result.stderr + again.stdout + again.stderr
    assert b"GET" in everything or log_file.stat().st_size > 0  # the debug log did run
    assert TOKEN.encode() not in everything + log_file.read_bytes()


def test_sync_into_an_encrypted_vault(
    server: FakeMidjourney, account: Account, tmp_path: Path
) -> None:
    path = tmp_path / "sealed"
    Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    vault = Vault.open(path, passphrase=PASSPHRASE)
    try:
        with MidjourneyClient(settings_for(server)) as client:
            report = sync(vault, client, SyncOptions(concurrency=4))
        assert report.jobs_new == len(account.jobs) and report.images_missing == 0
        for job in account.jobs:
            entry = vault.entry(job.id)
            for path_, object_id in zip(job.media_paths, entry.images, strict=True):
                assert object_id is not None
                assert vault.read_object(object_id) == account.media_bytes(path_)
        assert verify(vault, read_data=True).ok
    finally:
        vault.close()


# -- each listing generation ---------------------------------------------------------------
@pytest.mark.parametrize("api", ["v1", "v2", "v3", "auto"])
def test_every_generation(
    server: FakeMidjourney, account: Account, vault_path: Path, api: str
) -> None:
    report = run_sync(vault_path, server, api=api, page_size=25)
    served = "v3" if api == "auto" else api
    assert report.generation == served
    assert_complete(vault_path, account, served)


def test_v1_listing_cap_is_passed_by_reanchoring(account: Account, vault_path: Path) -> None:
    with FakeMidjourney(account, token=TOKEN, v1_listing_cap=40) as server:
        report = run_sync(vault_path, server, api="v1", page_size=20)
        # 98 image jobs in windows of 40 (each new window repeats the job it starts at).
        assert server.stats.listing_requests["v1"] >= 6
    assert report.history_complete
    assert_complete(vault_path, account, "v1")


# -- incremental ---------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["v1", "v2", "v3"])
def test_up_to_date_sync_reads_one_page_and_downloads_nothing(
    server: FakeMidjourney, vault_path: Path, api: str
) -> None:
    run_sync(vault_path, server, api=api, page_size=0)  # the API's own page size
    server.reset_stats()
    report = run_sync(vault_path, server, api=api, page_size=0)
    assert server.stats.total_listing_requests() == 1
    assert server.stats.media_requests == 0
    assert report.jobs_new == report.images_downloaded == 0 and report.snapshot is None


def test_new_jobs_are_found_without_walking_the_history(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    run_sync(vault_path, server, page_size=10)
    added = server.add_jobs(5)
    server.reset_stats()
    report = run_sync(vault_path, server, page_size=10)
    assert report.jobs_new == 5
    # 5 new jobs and a run of 50 known ones: 6 pages of 10, not the 11 of the whole history.
    assert server.stats.total_listing_requests() <= 6
    fetched = sum(len(job.media_paths) for job in added) - report.images_reused
    assert server.stats.media_requests == fetched
    assert_complete(vault_path, account)


def test_jobs_appearing_during_a_sync_are_fetched_next_time(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    server.faults = Faults(add_jobs_after_listing_request=1, add_jobs_count=4)
    first = run_sync(vault_path, server, page_size=20)
    assert server.stats.jobs_added == 4
    assert first.jobs_new == JOBS  # the listing's anchor keeps its pages stable
    second = run_sync(vault_path, server, page_size=20)
    assert second.jobs_new == 4
    assert_complete(vault_path, account)


# -- fault knobs that a sync rides out -----------------------------------------------------
TRANSIENT = {
    "latency": Faults(latency=0.01),
    "bandwidth": Faults(bandwidth=400_000),
    "server_errors": Faults(error_rate=0.15, error_seed=3),
    "dropped_mid_body": Faults(drop_every=4, targets=frozenset({"cdn"})),
    "short_bodies": Faults(short_body_every=5),
    "duplicate_records": Faults(duplicate_records=4),
    "html_once": Faults(html_every=4),
    "browser_ua_cdn": Faults(cdn_requires_browser_ua=True, cdn_requires_sec_fetch=True),
}


@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_sync_rides_out(
    server: FakeMidjourney, account: Account, vault_path: Path, name: str
) -> None:
    server.faults = TRANSIENT[name]
    report = run_sync(vault_path, server, page_size=20)
    assert report.images_missing == 0, report.missing[:3]
    assert report.jobs_new == len(account.jobs)
    assert_complete(vault_path, account)


def test_rate_limit_bursts_obey_retry_after(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    # Of every 100 requests the last 2 answer 429 with Retry-After: 1 (API and CDN alike).
    server.faults = Faults(rate_limit_every=100, rate_limit_burst=2, retry_after=1)
    report = run_sync(vault_path, server, page_size=50)
    assert server.stats.rate_limited >= 4
    assert report.seconds >= 1.0  # the waits were taken, not skipped
    assert report.images_missing == 0
    assert_complete(vault_path, account)


def test_cloudflare_clearance_and_browser_user_agent_pass(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    server.faults = Faults(cf_clearance="cf-ok-123", cdn_requires_browser_ua=True)
    result = run_cli(
        "--vault",
        str(vault_path),
        "sync",
        env=cli_env(server, MJVAULT_CF_CLEARANCE="cf-ok-123"),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert_complete(vault_path, account)


def test_missing_images_are_recorded_and_fetched_later(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    server.faults = Faults(missing_fraction=0.1)
    gone = frozenset(
        path.rsplit(".", 1)[0]
        for job in account.jobs
        for path in job.media_paths
        if server.is_missing(path)
    )
    assert gone
    result = run_cli("--vault", str(vault_path), "sync", env=cli_env(server))
    assert result.returncode == EXIT_PARTIAL, result.stderr.decode()
    assert b"missing" in result.stderr and b"Traceback" not in result.stderr
    assert_complete(vault_path, account, missing=gone)
    report = run_sync(vault_path, server)  # still gone: nothing asked again
    assert report.images_missing == 0 and server.stats.not_found > 0
    server.faults = Faults()
    report = run_sync(vault_path, server, SyncOptions(retry_missing=True, full=True))
    assert report.jobs_updated > 0
    assert_complete(vault_path, account)


def test_files_that_failed_are_fetched_by_the_next_sync(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    # No retries: about a quarter of the downloads fail and are recorded as not fetched.
    server.faults = Faults(error_rate=0.25, error_seed=5, targets=frozenset({"cdn"}))
    first = run_sync(vault_path, server, max_retries=0, breaker_threshold=1000)
    assert first.images_missing > 10
    assert not any(gone.gone for gone in first.missing)
    server.faults = Faults()
    server.reset_stats()
    second = run_sync(vault_path, server, page_size=10)
    # An incremental run (one page of known jobs) still goes back for every failed file.
    assert server.stats.total_listing_requests() < 11
    assert second.jobs_updated == len({gone.job_id for gone in first.missing})
    assert server.stats.media_requests == first.images_missing - second.images_reused
    assert_complete(vault_path, account)
    third = run_sync(vault_path, server)
    assert third.jobs_updated == third.images_downloaded == 0


# -- faults that stop a sync with one line --------------------------------------------------
STOPPING = {
    "expired_cookie": (Faults(expired=True), {}, ("session",)),
    "expired_login_page": (
        Faults(expired=True, auth_failure_style="html200"),
        {},
        ("session",),
    ),
    "html_instead_of_json": (Faults(html_every=1), {}, ("session",)),
    "cloudflare_challenge": (Faults(cf_clearance="cf-needed"), {}, ("cf_clearance",)),
    "cdn_refuses_non_browser": (
        Faults(cdn_requires_browser_ua=True),
        {"MJVAULT_USER_AGENT": "python-httpx/0.28"},
        ("user-agent",),
    ),
}


@pytest.mark.parametrize("name", sorted(STOPPING))
def test_sync_stops_with_one_line(server: FakeMidjourney, vault_path: Path, name: str) -> None:
    faults, env, words = STOPPING[name]
    server.faults = faults
    result = run_cli("--vault", str(vault_path), "sync", env=cli_env(server, **env))
    assert_one_line_error(result, *words)
    vault = Vault.open(vault_path)
    try:
        assert_vault_clean_but_maybe_checkpointed(vault)
    finally:
        vault.close()


def assert_vault_clean_but_maybe_checkpointed(vault: Vault) -> None:
    report = verify(vault, read_data=True)
    assert report.ok, report.problems


@pytest.mark.parametrize("target", ["api", "cdn"])
def test_a_failing_service_trips_the_breaker(
    server: FakeMidjourney, account: Account, vault_path: Path, target: str
) -> None:
    server.faults = Faults(error_rate=1.0, targets=frozenset({target}))
    with pytest.raises(SourceUnavailable) as stopped:
        run_sync(vault_path, server, breaker_threshold=6, breaker_cooldown=60.0)
    assert "in a row" in str(stopped.value) and "rerun" in str(stopped.value)
    # Stopped instead of hammering: a few requests past the threshold (threads in flight).
    assert server.stats.server_errors <= 6 + 12
    vault = Vault.open(vault_path)
    try:
        assert_vault_clean_but_maybe_checkpointed(vault)
    finally:
        vault.close()
    server.faults = Faults()
    run_sync(vault_path, server)
    assert_complete(vault_path, account)


def test_expired_token_mid_sync_checkpoints_and_resumes(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    # The session dies after 4 listing pages of 10; what was fetched until then is kept.
    server.faults = Faults(expire_after_api_requests=4)
    with pytest.raises(AuthError) as stopped:
        run_sync(vault_path, server, SyncOptions(concurrency=4, checkpoint_jobs=7), page_size=10)
    assert "rerun" in str(stopped.value) and TOKEN not in str(stopped.value)
    vault = Vault.open(vault_path)
    try:
        assert (vault.refs.dir / "checkpoint").exists()
        held = {entry.job_id for entry in vault.entries()} if vault.head() else set()
        # Checkpointed jobs are in no snapshot yet (the index shows HEAD only): read the
        # unfinished writer's tree, which the next sync resumes from.
        partial = checkpoint_tree(vault)
        assert partial is not None
        index_held = {entry.job_id for entry in vault.tree.walk(partial)}
        assert_vault_clean_but_maybe_checkpointed(vault)
    finally:
        vault.close()
    assert not held and 10 <= len(index_held) < JOBS
    still_needed = sum(len(job.media_paths) for job in account.jobs if job.id not in index_held)
    server.token = "a-fresh-session-token"
    server.faults = Faults()
    server.reset_stats()
    report = run_sync(vault_path, server, page_size=10, token=server.token)
    assert report.resumed
    assert report.jobs_new == JOBS - len(index_held)
    assert server.stats.media_requests == still_needed - report.images_reused
    assert_complete(vault_path, account)


# -- filters and dry runs ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "kinds"),
    [("upscale", {"upscale", "virtual_upsample"}), ("grid", {"grid"}), ("video", {"video"})],
)
def test_type_filter(
    server: FakeMidjourney, account: Account, vault_path: Path, word: str, kinds: set[str]
) -> None:
    report = run_sync(vault_path, server, SyncOptions(job_type=word))
    vault = Vault.open(vault_path)
    try:
        held = {entry.job_id for entry in vault.entries()}
    finally:
        vault.close()
    wanted = {job.id for job in account.jobs if job.kind in kinds}
    assert wanted and held == wanted
    assert report.jobs_new == len(held)
    assert not report.history_complete


def test_since_until_and_limit(server: FakeMidjourney, account: Account, vault_path: Path) -> None:
    times = sorted(job.enqueue_time for job in account.jobs)
    since, until = times[20], times[60]
    run_sync(vault_path, server, SyncOptions(since=since, until=until), page_size=10)
    vault = Vault.open(vault_path)
    try:
        held = {entry.job_id for entry in vault.entries()}
    finally:
        vault.close()
    assert held == {job.id for job in account.jobs if since <= job.enqueue_time <= until}
    report = run_sync(vault_path, server, SyncOptions(limit=7))
    assert report.jobs_new == 7
    newest_missing = [job.id for job in account.jobs if job.id not in held][:7]
    vault = Vault.open(vault_path)
    try:
        assert {entry.job_id for entry in vault.entries()} == held | set(newest_missing)
    finally:
        vault.close()
    # A filtered history is not a complete one: a plain sync still fetches the rest.
    run_sync(vault_path, server)
    assert_complete(vault_path, account)


def test_dry_run_lists_and_changes_nothing(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    result = run_cli(
        "--vault",
        str(vault_path),
        "--json",
        "sync",
        "--dry-run",
        "--limit",
        "5",
        env=cli_env(server),
    )
    assert result.returncode == 0, result.stderr.decode()
    plan = json.loads(result.stdout)
    assert [item["id"] for item in plan["would_fetch"]] == [job.id for job in account.jobs[:5]]
    assert server.stats.media_requests == 0
    vault = Vault.open(vault_path)
    try:
        assert vault.head() is None
    finally:
        vault.close()
    text = run_cli("--vault", str(vault_path), "sync", "--dry-run", env=cli_env(server))
    assert f"{len(account.jobs)} jobs would be fetched".encode() in text.stdout


def test_since_parses_dates_on_the_command_line(
    server: FakeMidjourney, account: Account, vault_path: Path
) -> None:
    day = sorted(job.enqueue_time for job in account.jobs)[-10].astimezone(UTC).date()
    result = run_cli(
        "--vault",
        str(vault_path),
        "--json",
        "sync",
        "--since",
        day.isoformat(),
        env=cli_env(server),
    )
    assert result.returncode == 0, result.stderr.decode()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    wanted = [job for job in account.jobs if job.enqueue_time >= start]
    assert json.loads(result.stdout)["jobs_new"] == len(wanted)
    bad = run_cli(
        "--vault", str(vault_path), "sync", "--since", "last tuesday", env=cli_env(server)
    )
    assert bad.returncode == 2 and b"YYYY-MM-DD" in bad.stderr


def test_a_sync_that_changes_the_vault_refreshes_auto_views(tmp_path: Path) -> None:
    from mjvault import Vault
    from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
    from mjvault.sync import SyncOptions, sync
    from mjvault.testing.accounts import Account
    from mjvault.testing.server import FakeMidjourney
    from mjvault.views import checkout, list_views
    from mjvault.views.links import LinkKind
    from mjvault.views.registry import ViewDefinition

    account = Account.generate(31, 12)
    with FakeMidjourney(account) as server, Vault.init(tmp_path / "v") as vault:
        settings = ClientSettings(
            web_base=server.web_base,
            cdn_base=server.cdn_base,
            token=server.token,
            user_id=server.user_id,
            api="v3",
        )
        view_dir = tmp_path / "view"
        checkout(vault, ViewDefinition("all", view_dir, "{job_id}_{index}.{ext}", LinkKind.SYMLINK))
        assert list(view_dir.iterdir()) == []
        assert [v.name for v in list_views(vault)] == ["all"]
        with MidjourneyClient(settings) as client:
            report = sync(vault, client, SyncOptions(concurrency=4))
        assert report.views is not None and report.views["totals"]["added"] > 0
        files = [p for p in view_dir.iterdir()]
        assert len(files) == report.views["totals"]["added"]
        assert all(p.is_symlink() and p.resolve().exists() for p in files)


@pytest.mark.parametrize("how", ["limit", "interrupt"])
def test_a_partial_run_leaves_no_gap_that_incremental_syncs_skip(how: str, tmp_path: Path) -> None:
    """Once the history was read whole, a limited or interrupted run stores the newest jobs
    first; the next plain sync must still fetch the older new ones below them."""
    from mjvault.errors import Interrupted

    account = Account.generate(53, 100)
    with FakeMidjourney(account, token=TOKEN) as server:
        path = tmp_path / "v"
        Vault.init(path).close()

        def run(options: SyncOptions, stop: Callable[[], bool] | None = None) -> SyncReport:
            with (
                Vault.open(path) as vault,
                MidjourneyClient(settings_for(server, "v3", page_size=20)) as client,
            ):
                return sync(vault, client, options, should_stop=stop)

        run(SyncOptions(concurrency=4))
        server.add_jobs(300)
        if how == "limit":
            assert run(SyncOptions(concurrency=4, limit=120)).jobs_new == 120
        else:
            calls = [0]

            def stop() -> bool:
                calls[0] += 1
                return calls[0] >= 120

            with pytest.raises(Interrupted):
                run(SyncOptions(concurrency=4, checkpoint_jobs=50), stop)
        follow_up = run(SyncOptions(concurrency=4))
        with Vault.open(path) as vault:
            held = {entry.job_id for entry in vault.entries()}
        assert {job.id for job in account.jobs} <= held
        assert follow_up.history_complete
        again = run(SyncOptions(concurrency=4))
        # Incremental once more: a run of known jobs (3 pages of 20) ends the listing.
        assert again.jobs_new == 0 and again.jobs_listed < 60 and again.stopped_early
