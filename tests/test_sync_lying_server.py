"""A server that lies: `mjvault sync` (the real CLI, in a child process) against the test server
on 127.0.0.1 with its listing lies switched on (docs/testing-server.md, "a server that lies").

Each case asserts what a user sees (exit code, one clear line, no traceback), that the vault
holds what was fetched before the lie and resumes from it, and, where memory is the point,
the child's own peak RSS (tests/peak_rss.py). The child runs under an address-space budget for its data
(RLIMIT_DATA), so a regression fails quickly instead of eating the machine's memory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import EXIT_ERROR, EXIT_PARTIAL
from mjvault.integrity.reachability import checkpoint_tree
from mjvault.model import job_from_json, job_from_record
from mjvault.sources.importer import import_archive
from mjvault.sources.midjourney.rawjson import MAX_PAGE_ITEMS, ListingShapeError, split_listing
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from tests.peak_rss import TimedOut
from tests.peak_rss import run_measured as measure
from tests.test_sync import TOKEN, assert_complete, assert_vault_clean, cli_env

SEED, JOBS = 53, 100  # v3 lists all 100, v1/v2 the 98 image jobs
PAGE = 30  # the server's page size: four pages
PEAK_RSS_LIMIT_MB = 200
DATA_BUDGET = 1536 * 1024 * 1024  # bytes: a runaway child dies here, not at the machine's end


@pytest.fixture
def account() -> Account:
    return Account.generate(SEED, JOBS)


@pytest.fixture
def server(account: Account) -> Iterator[FakeMidjourney]:
    with FakeMidjourney(account, token=TOKEN, max_page_size=PAGE) as running:
        yield running


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.init(tmp_path / "vault").close()
    return tmp_path / "vault"


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: bytes
    peak_rss_mb: float

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def run_measured(*args: str, env: dict[str, str], tmp_path: Path, timeout: float = 60) -> Run:
    """The real `mjvault` in a child process, with its own peak RSS (tests/peak_rss.py)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")} | env
    try:
        done = measure(
            [sys.executable, "-m", "mjvault", *args],
            workdir=tmp_path,
            env=full_env,
            timeout=timeout,
            data_limit=DATA_BUDGET,
        )
    except TimedOut as exc:
        pytest.fail(str(exc))
    return Run(done.returncode, done.stdout, done.stderr, done.peak_rss_mb)


def sync_cli(vault_path: Path, server: FakeMidjourney, tmp_path: Path, api: str, **env: str) -> Run:
    return run_measured(
        "--vault", str(vault_path), "sync", env=cli_env(server, api, **env), tmp_path=tmp_path
    )


def assert_no_traceback(run: Run) -> None:
    assert "Traceback" not in run.err, run.err
    assert TOKEN.encode() not in run.stdout + run.stderr


def assert_one_line_error(run: Run, *words: str) -> str:
    assert run.returncode == EXIT_ERROR, (run.returncode, run.err)
    assert_no_traceback(run)
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    assert lines[0].startswith("mjvault: error: ")
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


def checkpointed_jobs(vault_path: Path) -> set[str]:
    """Jobs the unfinished writer kept for the next run (in no snapshot yet)."""
    vault = Vault.open(vault_path)
    try:
        assert vault.head() is None
        partial = checkpoint_tree(vault)
        assert partial is not None, "nothing was kept for the next run"
        return {entry.job_id for entry in vault.tree.walk(partial)}
    finally:
        vault.close()


# -- 1. a record that claims a huge batch_size ------------------------------------------------
LIE = 100_000_000


def test_a_claimed_batch_size_is_bounded_by_the_job_type() -> None:
    grid = job_from_record({"id": "g", "type": "grid", "batch_size": 100_000})
    video = job_from_record({"id": "v", "job_type": "vid_1.1_i2v", "batch_size": 100_000})
    assert [ref.path for ref in grid.media()] == [f"g/0_{i}.png" for i in range(4)]
    assert len(video.media()) == 4
    assert grid.malformed is not None and "100000" in grid.malformed
    honest = job_from_record({"id": "h", "type": "grid", "batch_size": 4})
    assert len(honest.media()) == 4 and honest.malformed is None


def test_image_paths_are_what_a_record_proves() -> None:
    paths = [f"https://cdn.midjourney.com/p/0_{i}.png" for i in range(2)]
    job = job_from_record({"id": "p", "type": "grid", "batch_size": LIE, "image_paths": paths})
    assert [ref.path for ref in job.media()] == ["p/0_0.png", "p/0_1.png"]
    assert job.malformed is None  # the claim is not used: nothing is bounded


def test_sync_of_lying_grids_keeps_them_bounded(
    server: FakeMidjourney, account: Account, vault_path: Path, tmp_path: Path
) -> None:
    server.faults = Faults(lying_batch_size=LIE)
    run = sync_cli(vault_path, server, tmp_path, "v3")
    assert run.returncode == EXIT_PARTIAL, run.err
    assert_no_traceback(run)
    assert run.peak_rss_mb < PEAK_RSS_LIMIT_MB
    grids = [job for job in account.jobs if job.batch_size == 4]  # video jobs too
    assert f"{len(grids)} malformed" in run.stdout.decode() + run.err
    assert run.err.count("batch_size") == 1  # warned once, counted in the summary
    vault = Vault.open(vault_path)
    try:
        for job in grids:
            entry = vault.current_index().get(job.id)
            assert entry is not None and len(entry.images) == 4
            assert all(entry.images)  # the four real images were fetched
            assert json.loads(vault.record_json(entry))["batch_size"] == LIE  # raw kept
        assert_vault_clean(vault)
    finally:
        vault.close()


def test_import_of_a_lying_record_is_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "2024" / "2024-01" / "2024-01-01"
    folder.mkdir(parents=True)
    raw = json.dumps({"id": "liar", "type": "grid", "batch_size": LIE, "prompt": "p"}).encode()
    (folder / "20240101-000000_liar.json").write_bytes(raw)
    Vault.init(tmp_path / "vault").close()
    run = run_measured(
        "--vault",
        str(tmp_path / "vault"),
        "import",
        str(tmp_path / "in"),
        env={},
        tmp_path=tmp_path,
    )
    assert run.returncode == EXIT_PARTIAL, run.err
    assert_no_traceback(run)
    assert run.peak_rss_mb < PEAK_RSS_LIMIT_MB
    assert "1 malformed" in run.stdout.decode() + run.err
    assert run.err.count("batch_size") == 1
    vault = Vault.open(tmp_path / "vault")
    try:
        entry = vault.current_index().get("liar")
        assert entry is not None and vault.record_json(entry) == raw
        assert len(entry.images) == 4
        report = import_archive(vault, tmp_path / "in")  # the library counts it too
        assert report.jobs_malformed == 1
        assert job_from_json(raw).malformed is not None
    finally:
        vault.close()


# -- 2. a listing page that is not a listing --------------------------------------------------
@pytest.mark.parametrize(
    ("api", "faults", "page"),
    [
        ("v2", Faults(truncated_page=2), 2),
        ("v2", Faults(non_object_page=3), 3),
        ("auto", Faults(truncated_page=2), 2),
        ("auto", Faults(non_object_page=2), 2),
    ],
)
def test_a_bad_later_page_ends_the_sync_keeping_what_came_before(
    server: FakeMidjourney,
    account: Account,
    vault_path: Path,
    tmp_path: Path,
    api: str,
    faults: Faults,
    page: int,
) -> None:
    server.faults = faults
    run = sync_cli(vault_path, server, tmp_path, api)
    line = assert_one_line_error(run, f"page {page}", "rerun")
    assert "/api/" in line  # names the endpoint of the page
    used = "v2" if api == "v2" else "v3"  # auto settles on v3, the newest that answers
    listed = account.jobs if used == "v3" else account.image_jobs()
    kept = checkpointed_jobs(vault_path)
    assert kept == {job.id for job in listed[: (page - 1) * PAGE]}
    server.faults = Faults()
    server.reset_stats()
    rerun = sync_cli(vault_path, server, tmp_path, api)
    assert rerun.returncode == 0, rerun.err
    media_before = sum(len(job.media_paths) for job in listed if job.id in kept)
    assert server.stats.media_requests <= sum(len(j.media_paths) for j in listed) - media_before
    assert_complete(vault_path, account, used)


@pytest.mark.parametrize(
    ("api", "faults"),
    [("v2", Faults(truncated_page=1)), ("v2", Faults(non_object_page=1))],
)
def test_a_bad_first_page_is_one_line(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, api: str, faults: Faults
) -> None:
    server.faults = faults
    run = sync_cli(vault_path, server, tmp_path, api)
    assert_one_line_error(run, "page 1", "/api/pg/thomas-jobs")


def test_auto_names_the_bad_first_page_of_every_generation(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    server.faults = Faults(non_object_page=1)
    run = sync_cli(vault_path, server, tmp_path, "auto")
    assert_one_line_error(run, "page 1")


# -- 3. a listing that repeats itself under new cursors ---------------------------------------
@pytest.mark.parametrize("api", ["v2", "v3"])
def test_endless_new_cursors_end_the_listing(
    server: FakeMidjourney, account: Account, vault_path: Path, tmp_path: Path, api: str
) -> None:
    server.faults = Faults(endless_cursors=True)
    run = sync_cli(vault_path, server, tmp_path, api)
    assert run.returncode == EXIT_PARTIAL, run.err
    assert_no_traceback(run)
    assert "nothing new" in run.err
    pages = -(-len(account.jobs if api == "v3" else account.image_jobs()) // PAGE)
    assert server.stats.total_listing_requests() <= pages + 4
    assert_complete(vault_path, account, api)


# -- 4. a listing page larger than any real one -----------------------------------------------
def test_an_oversized_page_is_refused_with_bounded_memory(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    server.faults = Faults(oversized_page=120 * 1024 * 1024)
    run = sync_cli(vault_path, server, tmp_path, "v3")
    assert_one_line_error(run, "page 1", "sync.max_page_bytes")
    assert run.peak_rss_mb < PEAK_RSS_LIMIT_MB
    assert server.stats.bytes_sent < 100 * 1024 * 1024  # stopped reading at the cap


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [' + b"1," * MAX_PAGE_ITEMS + b"1]}",  # tiny items: memory far beyond bytes
        b'{"data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",  # nested too deep
        b'{"data": [{"id": "n", "x": ' + b"9" * 5000 + b"}]}",  # an int too long to convert
    ],
)
def test_a_page_that_would_cost_far_more_than_its_bytes_is_refused(body: bytes) -> None:
    with pytest.raises(ListingShapeError):
        split_listing(body, "data")


def test_the_page_cap_is_a_setting(
    server: FakeMidjourney, account: Account, vault_path: Path, tmp_path: Path
) -> None:
    run = sync_cli(vault_path, server, tmp_path, "v3", MJVAULT_SYNC_MAX_PAGE_BYTES="2K")
    assert_one_line_error(run, "page 1", "2K", "sync.max_page_bytes")
    rerun = sync_cli(vault_path, server, tmp_path, "v3", MJVAULT_SYNC_MAX_PAGE_BYTES="1M")
    assert rerun.returncode == 0, rerun.err
    assert_complete(vault_path, account, "v3")


# -- 5. items that are not objects ------------------------------------------------------------
@pytest.mark.parametrize("api", ["v1", "v3"])
def test_items_that_are_not_objects_are_counted_and_reported(
    server: FakeMidjourney, account: Account, vault_path: Path, tmp_path: Path, api: str
) -> None:
    server.faults = Faults(non_object_items=3)
    run = sync_cli(vault_path, server, tmp_path, api)
    assert run.returncode == EXIT_PARTIAL, run.err
    assert_no_traceback(run)
    # v3: four pages of 30 and an empty end; v1: two of 50, its end marker, and one more page
    # where it re-anchors at the oldest job (each page but the end marker carries three).
    pages = server.stats.total_listing_requests() - 1
    assert pages == (4 if api == "v3" else 3)
    assert f"{3 * pages} malformed" in run.stdout.decode() + run.err
    assert "not a JSON object" in run.err
    assert_complete(vault_path, account, api)
