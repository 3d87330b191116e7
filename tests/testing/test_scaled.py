"""The scaled account (jobs derived from (seed, index) on demand) and the scaled archive.

The scaled account must be indistinguishable in shape from the generated accounts the rest of
the suite uses (same record fields, same paths, a real client syncs it completely), and must
cost the same memory at a million jobs as at a thousand.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.model import job_from_record
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_scaled_archive
from mjvault.testing.scaled import ScaledAccount
from mjvault.testing.server import V1_SESSION_COOKIE, V3_SESSION_COOKIE, FakeMidjourney
from tests.conftest import run_cli
from tests.test_sync import assert_complete, run_sync

MILLION = 1_000_000


def _shapes(jobs: object, generation: int) -> set[tuple[str, frozenset[str]]]:
    # v1 never lists videos: their v1 shape is never served.
    return {
        (job.kind, frozenset(job.record(generation)))
        for job in jobs  # type: ignore[attr-defined]
        if generation != 1 or not job.is_video
    }


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_records_have_exactly_the_generated_accounts_fields(generation: int) -> None:
    scaled = _shapes(ScaledAccount(4, 3000).jobs, generation)
    generated = _shapes(Account.generate(3, 3000).jobs, generation)
    kinds = {kind for kind, _ in scaled}
    assert kinds >= {"grid", "draft", "upscale", "virtual_upsample", "variation", "pan"}
    assert generation == 1 or "video" in kinds
    assert scaled <= generated


def test_jobs_are_newest_first_distinct_and_their_media_is_served() -> None:
    account = ScaledAccount(9, 2000)
    jobs = list(account.jobs)
    assert len(jobs) == 2000 and len({job.id for job in jobs}) == 2000
    times = [job.enqueue_time for job in jobs]
    assert all(newer > older for newer, older in zip(times, times[1:], strict=False))
    assert 700 < (times[0] - times[-1]).days < 1500
    assert [job.id for job in account.image_jobs()] == [j.id for j in jobs if not j.is_video]
    images_per_job = sum(len(job.media_paths) for job in jobs) / len(jobs)
    assert 3.0 < images_per_job < 3.5
    seen: set[bytes] = set()
    for job in jobs[:300]:
        record = json.loads(json.dumps(job.record_v1()))
        assert [ref.path for ref in job_from_record(record).media()] == job.media_paths
        for path in job.own_media_paths:
            data = account.media_bytes(path)
            assert data is not None and data not in seen, path
            seen.add(data)
            if path.endswith(".png"):
                Image.open(io.BytesIO(data)).load()  # decodes: chunk CRCs hold
    assert ScaledAccount(9, 2000).jobs[1234] == account.jobs[1234]


def test_ids_name_their_job_and_strangers_are_not_found() -> None:
    account = ScaledAccount(2, 500)
    for index in (0, 1, 249, 499):
        assert account.index_of(account.job_id(index)) == index
    stranger = Account.generate(2, 5).jobs[0]
    assert account.job(stranger.id) is None
    assert account.media_bytes(f"{stranger.id}/0_0.png") is None
    assert account.index_of("not-a-uuid") is None
    # An id of a job beyond the account's end is not served until the job exists.
    later = account.job_id(500)
    assert account.job(later) is None
    added = account.add_jobs(3)
    assert [job.id for job in added] == [account.job_id(i) for i in (502, 501, 500)]
    assert account.jobs[0].id == account.job_id(502)
    assert account.job(later) is not None


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_the_real_client_syncs_a_scaled_account_completely(tmp_path: Path, api: str) -> None:
    account = ScaledAccount(21, 120)
    Vault.init(tmp_path / "vault").close()
    with FakeMidjourney(account, token="scaled-token") as server:
        report = run_sync(tmp_path / "vault", server, api=api)
        assert report.jobs_new == len(account.jobs if api == "v3" else account.image_jobs())
        assert report.history_complete
        assert_complete(tmp_path / "vault", account, api)  # type: ignore[arg-type]
        server.add_jobs(4)
        again = run_sync(tmp_path / "vault", server, api=api)
        assert again.jobs_new == 4
        assert_complete(tmp_path / "vault", account, api)  # type: ignore[arg-type]


def test_a_million_job_account_serves_its_far_end_in_small_memory() -> None:
    tracemalloc.start()
    try:
        account = ScaledAccount(5, MILLION)
        oldest = account.jobs[MILLION - 1]
        with FakeMidjourney(account) as server, _client(server) as http:
            v1 = http.get(
                "/api/app/recent-jobs/",
                params={"userId": server.user_id, "amount": 50, "fromDate": "2022-08-01 01:00:00"},
            )
            assert v1.status_code == 200, v1.text
            assert v1.json()[-1]["id"] == oldest.id
            # The page 999 pages down a v3 listing: the cursor is an offset.
            first = http.get(
                "/api/imagine",
                params={"user_id": server.user_id, "page_size": 1000},
                headers={"x-csrf-protection": "1"},
            )
            cursor = json.loads(_b64(first.json()["cursor"]))
            cursor["o"] = MILLION - 1000
            last = http.get(
                "/api/imagine",
                params={"user_id": server.user_id, "page_size": 1000, "cursor": _token(cursor)},
                headers={"x-csrf-protection": "1"},
            )
            assert last.status_code == 200
            data = last.json()["data"]
            assert len(data) == 1000 and data[-1]["id"] == oldest.id
            path = next(job for job in account.jobs[MILLION - 10 :] if job.own_media_paths)
            image = http.get(f"/cdn/{path.own_media_paths[0]}")
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A list of a million generated jobs alone would take hundreds of megabytes.
    assert peak < 25 * 2**20, peak


def _client(server: FakeMidjourney) -> httpx.Client:
    cookies = {V1_SESSION_COOKIE: server.token, V3_SESSION_COOKIE: server.token}
    return httpx.Client(base_url=server.web_base, cookies=cookies)


def _b64(token: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(data: dict[str, object]) -> str:
    import base64

    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_the_scaled_archive_imports_cleanly(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    summary = write_scaled_archive(archive, jobs=150, seed=8, workers=1)
    assert summary.jobs == 150 and summary.job_ids == []
    assert summary.files == sum(1 for p in archive.rglob("*") if p.is_file())
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    result = run_cli("--vault", str(vault), "--json", "import", str(archive))
    assert result.returncode == 0, result.stderr.decode()
    with Vault.open(vault) as opened:
        assert sum(1 for _ in opened.entries()) == 150
        assert verify(opened, read_data=True).ok


def test_the_scaled_archive_is_the_same_tree_whatever_the_workers(tmp_path: Path) -> None:
    one = write_scaled_archive(tmp_path / "one", jobs=300, seed=3, workers=1)
    two = write_scaled_archive(tmp_path / "two", jobs=300, seed=3, workers=2)
    assert (one.jobs, one.images, one.files, one.bytes) == (
        two.jobs,
        two.images,
        two.files,
        two.bytes,
    )
    names = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*"))
    assert names == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*"))
    sample = [n for n in names if n.suffix == ".json"][::7]
    for name in sample:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
