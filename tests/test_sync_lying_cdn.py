"""`mjvault sync` against a CDN that lies: cut files whose length agrees, redirects to other
hosts, record paths that climb out of the CDN base, and a CDN base that has a path of its own.

Each case runs the real CLI against the Midjourney test server on 127.0.0.1 and checks the
exit code, the message, what the vault holds afterwards, and what reached which server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from mjvault import Vault
from mjvault.errors import EXIT_PARTIAL
from mjvault.integrity.verify import verify
from mjvault.testing.accounts import Account, GeneratedJob
from mjvault.testing.faults import Faults
from mjvault.testing.offhost import OffHostServer
from mjvault.testing.server import FakeMidjourney
from tests.conftest import run_cli
from tests.test_sync import TOKEN, cli_env

SEED, JOBS = 160, 12  # one video job, three virtual upsamples


@pytest.fixture
def account() -> Account:
    return Account.generate(SEED, JOBS)


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.init(tmp_path / "vault").close()
    return tmp_path / "vault"


@pytest.fixture
def offhost() -> Iterator[OffHostServer]:
    with OffHostServer() as running:
        yield running


def sync_cli(vault_path: Path, server: FakeMidjourney, api: str = "v3", **env: str):
    """The real `mjvault sync`; ``--json`` output on stdout, the human lines on stderr."""
    return run_cli(
        "--vault",
        str(vault_path),
        "sync",
        "--jobs",
        "3",
        env=cli_env(server, api, **env),
    )


def sync_json(vault_path: Path, server: FakeMidjourney, api: str = "v3", **env: str):
    return run_cli(
        "--vault",
        str(vault_path),
        "--json",
        "sync",
        "--jobs",
        "3",
        env=cli_env(server, api, **env),
    )


def stored(vault_path: Path) -> dict[str, list[str | None]]:
    """job id -> its image object ids, after checking the whole vault reads back clean."""
    vault = Vault.open(vault_path)
    try:
        report = verify(vault, read_data=True)
        assert report.ok, report.problems
        return {entry.job_id: list(entry.images) for entry in vault.entries()}
    finally:
        vault.close()


def served_id(account: Account, path: str) -> str:
    data = account.media_bytes(path)
    assert data is not None, path
    return blake3.blake3(data).hexdigest()


def assert_intact_except(
    vault_path: Path, account: Account, jobs: list[GeneratedJob], absent: set[str]
) -> None:
    """Every image of ``jobs`` is the server's exact bytes, except ``absent`` paths (None)."""
    held = stored(vault_path)
    assert set(held) == {job.id for job in jobs}
    for job in jobs:
        wanted = [None if p in absent else served_id(account, p) for p in job.media_paths]
        assert held[job.id][: len(wanted)] == wanted, job.id


def no_traceback(result) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert TOKEN.encode() not in result.stdout + result.stderr
    return err


# -- item 6: a file cut short whose Content-Length agrees ---------------------------------------
def first_grid(account: Account) -> GeneratedJob:
    return next(j for j in account.jobs if not j.is_video and len(j.own_media_paths) > 1)


def test_a_cut_image_with_an_agreeing_length_is_recorded_damaged(
    account: Account, vault_path: Path
) -> None:
    victim = first_grid(account)
    cut = victim.own_media_paths[1]
    with FakeMidjourney(account, Faults(cut_images=frozenset({cut})), token=TOKEN) as server:
        result = sync_json(vault_path, server)
        assert result.returncode == EXIT_PARTIAL, no_traceback(result)
        summary = json.loads(result.stdout)
        (gone,) = summary["missing"]
        assert gone["gone"] is True and gone["path"] == cut
        assert gone["reason"].startswith("damaged at the source: the PNG ends without its IEND")
        # Asked again before giving up, never stored as a good image.
        assert server.stats.cut_images >= 2
        assert_intact_except(vault_path, account, account.jobs, {cut})
        # Like a 404: the next sync does not ask again unless told to.
        before = server.stats.cut_images
        again = sync_cli(vault_path, server)
        assert again.returncode == 0, again.stderr.decode()
        assert server.stats.cut_images == before
        # Asked again on request, still cut: one line per file, exit 4, nothing stored.
        forced = run_cli(
            "--vault", str(vault_path), "sync", "--retry-missing", "--full", env=cli_env(server)
        )
        err = no_traceback(forced)
        assert forced.returncode == EXIT_PARTIAL, err
        assert f"missing: job {victim.id} image 1: damaged at the source: the PNG" in err
        assert "damaged there" in err
        assert server.stats.cut_images > before
    assert_intact_except(vault_path, account, account.jobs, {cut})


def test_a_cut_that_does_not_happen_again_is_fetched_whole(
    account: Account, vault_path: Path
) -> None:
    cut = first_grid(account).own_media_paths[0]
    faults = Faults(cut_images=frozenset({cut}), cut_first_requests=1)
    with FakeMidjourney(account, faults, token=TOKEN) as server:
        result = sync_cli(vault_path, server)
        assert result.returncode == 0, no_traceback(result)
        assert server.stats.cut_images == 1
    assert_intact_except(vault_path, account, account.jobs, set())


def test_cut_videos_and_many_cut_images_do_not_stop_the_sync(
    account: Account, vault_path: Path
) -> None:
    # Every file cut: each one is a definite answer, not a failing service (no breaker).
    with FakeMidjourney(account, Faults(cut_fraction=1.0), token=TOKEN) as server:
        result = sync_json(vault_path, server)
        err = no_traceback(result)
        assert result.returncode == EXIT_PARTIAL, err
        summary = json.loads(result.stdout)
        assert summary["images_downloaded"] == 0 and summary["jobs_new"] == len(account.jobs)
        assert all(m["gone"] and "damaged at the source" in m["reason"] for m in summary["missing"])
        assert any(m["path"].endswith(".mp4") for m in summary["missing"])
    assert all(image is None for images in stored(vault_path).values() for image in images)


# -- item 7: redirects to other hosts, cookies, and paths that climb out ------------------------
def test_a_redirect_to_another_host_is_not_followed_and_gets_no_cookie(
    account: Account, vault_path: Path, offhost: OffHostServer
) -> None:
    faults = Faults(redirect_images_to=offhost.base + "/stolen", api_sets_session_cookie=True)
    with FakeMidjourney(account, faults, token=TOKEN) as server:
        result = sync_cli(vault_path, server, api="v1")
        err = no_traceback(result)
        assert result.returncode == EXIT_PARTIAL, err
        host = offhost.base.split("://", 1)[1]
        assert f"to {host}, which is not an allowed CDN host" in err
        assert "source.cdn_hosts" in err
        assert server.stats.redirects > 0
        server.faults.redirect_images_to = offhost.base + "/again"
        result = sync_json(vault_path, server, api="v1")
        assert result.returncode == EXIT_PARTIAL, no_traceback(result)
    assert offhost.hits == []
    summary = json.loads(result.stdout)
    assert summary["images_downloaded"] == 0
    assert all(not m["gone"] for m in summary["missing"])  # asked again by the next sync


def test_an_allowed_cdn_host_is_followed_without_cookies(
    account: Account, vault_path: Path, offhost: OffHostServer
) -> None:
    faults = Faults(redirect_images_to=offhost.base + "/mirror", api_sets_session_cookie=True)
    host = offhost.base.split("://", 1)[1]
    with FakeMidjourney(account, faults, token=TOKEN) as server:
        result = sync_cli(vault_path, server, api="v1", MJVAULT_SOURCE_CDN_HOSTS=host)
        assert result.returncode == 0, no_traceback(result)
    assert offhost.hits and all(hit.path.startswith("/mirror/") for hit in offhost.hits)
    assert all(hit.cookie is None for hit in offhost.hits)
    same = blake3.blake3(offhost.body).hexdigest()
    assert {i for images in stored(vault_path).values() for i in images} == {same}


def test_the_cdn_never_gets_the_session_cookie(account: Account, vault_path: Path) -> None:
    """Even when the web API sets cookies, image requests (same host here) carry none."""
    with FakeMidjourney(account, Faults(api_sets_session_cookie=True), token=TOKEN) as server:
        result = sync_cli(vault_path, server, api="v1")
        assert result.returncode == 0, no_traceback(result)
        assert server.stats.media_requests > 0
        assert server.stats.cdn_cookies == 0


def test_record_paths_that_climb_out_of_the_cdn_base_are_refused(
    account: Account, vault_path: Path, tmp_path: Path
) -> None:
    victims = [job.id for job in account.image_jobs()[:2]]
    faults = Faults(escaping_image_paths=frozenset(victims))
    other_vault = tmp_path / "other"
    Vault.init(other_vault).close()
    with FakeMidjourney(account, faults, token=TOKEN) as server:
        result = sync_cli(vault_path, server, api="v1")
        err = no_traceback(result)
        assert result.returncode == EXIT_PARTIAL, err
        assert "leaves the CDN base" in err and "/etc/passwd" in err
        summary_run = sync_json(other_vault, server, api="v1")
        assert summary_run.returncode == EXIT_PARTIAL, no_traceback(summary_run)
        assert server.stats.stray_requests == 0  # nothing outside the CDN was asked for
    summary = json.loads(summary_run.stdout)
    assert sorted(m["job_id"] for m in summary["missing"]) == sorted(victims)
    assert all(m["gone"] for m in summary["missing"])  # the record will not change its mind
    held = stored(vault_path)
    for job_id in victims:
        job = account.job(job_id)
        assert job is not None
        expected = [served_id(account, p) for p in job.media_paths] + [None]
        assert held[job_id] == expected


# -- item 8: a CDN base with a path -------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["/cdn", "/mirror/mj"])
def test_image_urls_already_under_a_cdn_base_with_a_path_are_used_as_they_are(
    account: Account, vault_path: Path, prefix: str
) -> None:
    with FakeMidjourney(account, token=TOKEN, rewrite_image_urls=True, cdn_prefix=prefix) as server:
        assert server.cdn_base.endswith(prefix)
        result = sync_cli(vault_path, server, api="v1")
        assert result.returncode == 0, no_traceback(result)
        assert server.stats.not_found == 0 and server.stats.stray_requests == 0
    assert_intact_except(vault_path, account, account.image_jobs(), set())
