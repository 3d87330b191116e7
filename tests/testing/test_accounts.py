import io
import json
import re
from datetime import UTC, datetime

import pytest
from PIL import Image

from mjvault.model import job_from_record
from mjvault.params import parse_full_command
from mjvault.testing.accounts import Account


@pytest.fixture(scope="module")
def account() -> Account:
    return Account.generate(11, 600)


def test_same_seed_gives_the_same_account_and_another_seed_does_not() -> None:
    first = [job.record_v1() for job in Account.generate(5, 80).jobs]
    again = [job.record_v1() for job in Account.generate(5, 80).jobs]
    other = [job.record_v1() for job in Account.generate(6, 80).jobs]
    assert json.dumps(first) == json.dumps(again)
    assert [r["id"] for r in first] != [r["id"] for r in other]
    a, b = Account.generate(5, 80), Account.generate(5, 80)
    path = a.jobs[3].media_paths[0]
    assert a.media_bytes(path) == b.media_bytes(path)


def test_every_kind_of_job_appears(account: Account) -> None:
    kinds = {job.kind for job in account.jobs}
    assert kinds >= {"grid", "upscale", "virtual_upsample", "variation", "pan", "outpaint", "draft"}
    assert any(job.is_video for job in Account.generate(3, 3000).jobs)


def test_jobs_are_newest_first_with_distinct_times_over_about_three_years(account: Account) -> None:
    times = [job.enqueue_time for job in account.jobs]
    assert all(newer > older for newer, older in zip(times, times[1:], strict=False))
    assert 700 < (times[0] - times[-1]).days < 1500
    assert len({job.id for job in account.jobs}) == len(account.jobs)


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_model_media_paths_are_exactly_what_the_account_serves(
    account: Account, generation: int
) -> None:
    jobs = account.jobs + [j for j in Account.generate(3, 3000).jobs if j.is_video][:5]
    served = Account.generate(3, 3000)
    for job in jobs:
        owner = account if account.job(job.id) else served
        parsed = job_from_record(json.loads(json.dumps(job.record(generation))))
        paths = [ref.path for ref in parsed.media()]
        assert paths == job.media_paths, (job.kind, job.job_type)
        for path in paths:
            assert owner.media_bytes(path) is not None, path
        assert parsed.id == job.id
        assert parsed.enqueue_time == job.enqueue_time


def test_virtual_upsample_serves_nothing_of_its_own_but_points_at_the_parent_grid(
    account: Account,
) -> None:
    job = next(j for j in account.jobs if j.kind == "virtual_upsample")
    assert account.media_bytes(f"{job.id}/0_0.png") is None
    assert job.media_paths == [f"{job.parent_id}/0_{job.parent_grid}.png"]
    parent = account.job(job.parent_id or "")
    assert parent is not None and parent.batch_size == 4


def test_record_shapes_per_generation(account: Account) -> None:
    job = account.jobs[0]
    v1, v2, v3 = job.record_v1(), job.record_v2(), job.record_v3()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", v1["enqueue_time"])
    assert all(p.startswith("https://") for p in v1["image_paths"])
    assert {"event", "type", "prompt", "full_command"} <= v1.keys()
    assert v2["enqueue_time"].endswith("Z") and "image_paths" not in v2
    assert {"job_type", "event_type", "batch_size", "width", "height"} <= v2.keys()
    assert v3["enqueue_time"].endswith("+00:00")
    assert "prompt" not in v3 and "image_paths" not in v3
    assert list(v3) == [
        "id",
        "enqueue_time",
        "parent_id",
        "video_segments",
        "rating",
        "job_type",
        "event_type",
        "parent_grid",
        "full_command",
        "batch_size",
        "width",
        "height",
        "published",
        "shown",
        "user_hidden",
        "template",
        "vid_framecount",
    ]
    oldest = account.jobs[-1].record_v1()
    assert "_job_type" not in oldest  # 2022 records predate these fields
    assert oldest["image_paths"][0].startswith(
        "https://storage.googleapis.com/dream-machines-output/"
    )


def test_prompts_cover_what_parsers_meet_and_parse_back() -> None:
    jobs = Account.generate(2, 3000).jobs
    prompts = [job.prompt for job in jobs]
    assert any("\n" in p for p in prompts)
    assert any(re.search(r"\w--\w", p) for p in prompts)  # sci--fi
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", p) for p in prompts)
    assert any(re.search(r"[\U0001F300-\U0001FAFF]", p) for p in prompts)
    assert any(len(p) >= 2000 for p in prompts)
    commands = " ".join(job.full_command for job in jobs)
    for flag in (
        "--ar 16:9",
        "--v 6.1",
        "--style raw",
        "--chaos",
        "--q",
        "--tile",
        "--weird",
        "--niji 6",
        "--no ",
    ):
        assert flag in commands
    for job in jobs:
        if job.kind != "video":
            assert parse_full_command(job.full_command).prompt == " ".join(job.prompt.split())


def test_media_bytes_are_real_images_with_webp_renditions_and_mp4s() -> None:
    account = Account.generate(4, 3000)
    grid = next(j for j in account.jobs if j.kind == "grid")
    png = account.media_bytes(f"{grid.id}/0_3.png")
    webp = account.media_bytes(f"{grid.id}/0_3.webp")
    assert png is not None and webp is not None
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(webp)).format == "WEBP"
    small = account.media_bytes(f"{grid.id}/0_3_128_N.webp")
    assert small is not None and max(Image.open(io.BytesIO(small)).size) == 128
    assert account.media_bytes(f"{grid.id}/0_4.png") is None
    assert account.media_bytes(f"{grid.id}/0_0.gif") is None
    assert account.media_bytes("00000000-0000-4000-8000-000000000000/0_0.png") is None
    video = next(j for j in account.jobs if j.is_video)
    mp4 = account.media_bytes(f"video/{video.id}/0.mp4")
    assert mp4 is not None and mp4[4:8] == b"ftyp"
    assert account.media_bytes(f"video/{grid.id}/0.mp4") is None
    assert account.media_bytes(f"{video.id}/0_0.png") is None


def test_large_images_are_realistically_sized() -> None:
    account = Account.generate(4, 30, image_size="large")
    grid = next(j for j in account.jobs if j.batch_size == 4)
    png = account.media_bytes(grid.media_paths[0])
    webp = account.media_bytes(grid.media_paths[0].replace(".png", ".webp"))
    assert png is not None and 600_000 < len(png) < 800_000
    assert webp is not None and 100_000 < len(webp) < 220_000


def test_added_jobs_are_newer_and_deterministic() -> None:
    first, second = Account.generate(9, 50), Account.generate(9, 50)
    newest = first.jobs[0].enqueue_time
    added = first.add_jobs(5)
    assert [j.id for j in added] == [j.id for j in second.add_jobs(5)]
    assert all(job.enqueue_time > newest for job in added)
    assert first.jobs[:5] == added and len(first) == 55
    assert first.media_bytes(added[0].media_paths[0]) is not None


def test_start_and_identity_are_honoured() -> None:
    start = datetime(2023, 1, 1, tzinfo=UTC)
    account = Account.generate(1, 10, user_id="u-1", username="someone", start=start)
    assert account.user_id == "u-1"
    assert all(job.enqueue_time > start for job in account.jobs)
    assert all(job.user_id == "u-1" for job in account.jobs)


def test_a_streamed_account_is_the_generated_one_oldest_first() -> None:
    generated = Account.generate(7, 300, username="someone")
    streamed = list(Account.stream(7, 300, username="someone"))
    assert [job.record_v3() for job in streamed] == [
        job.record_v3() for job in reversed(generated.jobs)
    ]
    assert list(Account.stream(7, 0)) == []
