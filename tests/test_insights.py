"""Insights: the counters the index keeps equal a fresh count after any updates, plain and
sealed; the document's sums agree with each other; golden numbers on a known archive."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from config_helpers import isolate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.config import load_config
from mjvault.config.types import NumberTable
from mjvault.find.stats import job_stats
from mjvault.index.db import Index, JobSummary
from mjvault.insights import aggregates
from mjvault.insights.compute import (
    G2_THRESHOLD,
    build,
    cost_table,
    g2,
    insights,
    kept,
    zone,
    zone_name,
)
from mjvault.integrity.forget import forget_jobs
from mjvault.sources.importer import import_archive
from mjvault.store.crypto import VaultKeys
from mjvault.testing.archive import write_sample_archive
from tests.conftest import png_bytes, record_json

WORDS = ("fox", "owl", "misty", "forest", "red", "neon", "city", "a", "the")
PARAMS = ({}, {"version": "6.1"}, {"niji": "6", "ar": "16:9"}, {"stylize": "250", "fast": "true"})
_HOUR = dt.timedelta(hours=1)


def _summary(n: int, day: int, hour: int, words: list[str], params: int, kind: int) -> JobSummary:
    moment = None if day < 0 else dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day)
    if moment is not None:
        moment += hour * _HOUR
    return JobSummary(
        job_id=f"job-{n:03}",
        record=f"{n:064x}",
        images=tuple(f"{n * 4 + i:064x}" for i in range(kind % 3)) + (None,) * (kind % 2),
        time=moment,
        type=("grid", "upscale", "variation")[kind % 3],
        prompt=" ".join(words),
        params=dict(PARAMS[params]),
        parent=f"job-{(n * 7) % 40:03}" if kind % 3 else None,
        video=kind == 5,
        liked=(None, True, False)[kind % 3],
        ranking=(kind % 5) + 1 if kind % 4 == 0 else None,
    )


summaries = st.builds(
    _summary,
    st.integers(0, 39),
    st.integers(-1, 120),
    st.integers(0, 23),
    st.lists(st.sampled_from(WORDS), max_size=6),
    st.integers(0, len(PARAMS) - 1),
    st.integers(0, 5),
)
# A step: jobs set (a sync or import), jobs removed (a forget) or the index rebuilt.
steps = st.one_of(
    st.tuples(st.just("set"), st.lists(summaries, min_size=1, max_size=12)),
    st.tuples(st.just("forget"), st.lists(st.integers(0, 39), min_size=1, max_size=6)),
    st.tuples(st.just("rebuild"), st.none()),
)


def _kept(index: Index) -> Counter[str]:
    return Counter(dict(kept(index)))


def _fresh(index: Index) -> Counter[str]:
    return +aggregates.recompute(index.iter_summaries())


@pytest.fixture
def small_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few jobs a transaction: the counters must follow their jobs across commits.
    monkeypatch.setattr("mjvault.index.db.POSTINGS_PER_TXN", 7)
    monkeypatch.setattr("mjvault.index.db.GROUP_JOBS", 5)


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=st.lists(steps, min_size=1, max_size=6))
def test_kept_counters_equal_a_fresh_count_after_any_updates(
    tmp_path: Path, small_transactions: None, sealed: bool, plan: list
) -> None:
    path = tmp_path / f"idx-{os.urandom(4).hex()}"
    index = Index(path, VaultKeys(bytes(range(32))) if sealed else None)
    try:
        for n, (step, arg) in enumerate(plan):
            if step == "set":
                index.apply([(s.job_id, s) for s in arg], f"{n:040x}")
            elif step == "forget":
                index.apply([(f"job-{j:03}", None) for j in arg], f"{n:040x}")
            else:
                jobs = list(index.iter_summaries())
                index.clear()
                index.apply([(s.job_id, s) for s in jobs], f"{n:040x}")
            assert _kept(index) == _fresh(index)
    finally:
        index.close()
        shutil.rmtree(path, ignore_errors=True)


def _stopping_after(items: list, count: int) -> Iterator:
    for n, item in enumerate(items):
        if n == count:
            raise KeyboardInterrupt
        yield item


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_an_apply_stopped_midway_and_applied_again_counts_each_job_once(
    tmp_path: Path, small_transactions: None, sealed: bool
) -> None:
    index = Index(tmp_path / "idx", VaultKeys(bytes(32)) if sealed else None)
    first = _summary(99, 0, 0, ["owl"], 0, 0)
    index.apply([(first.job_id, first)], "0" * 40)  # an index with a tree: counters go with jobs
    jobs = [_summary(n, n, n % 24, ["fox", f"w{n % 5}"], n % 4, n % 6) for n in range(40)]
    changes = [(s.job_id, s) for s in jobs]
    for stop in (3, 17, 33):
        with pytest.raises(KeyboardInterrupt):
            index.apply(_stopping_after(changes, stop), "1" * 40)
        assert _kept(index) == _fresh(index)
    index.apply(changes, "1" * 40)
    assert _kept(index) == _fresh(index) == +aggregates.recompute([first, *jobs])
    index.close()


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_an_index_built_from_nothing_writes_its_bucket_counters_once_with_its_tree(
    tmp_path: Path, small_transactions: None, sealed: bool
) -> None:
    """From nothing, month, term and cost counters wait in memory: an index stopped before
    its tree is written is not current (the vault empties and builds it again), and one
    finished, even after stops in the same process, holds exactly its jobs' counters."""
    index = Index(tmp_path / "idx", VaultKeys(bytes(32)) if sealed else None)
    jobs = [_summary(n, n, n % 24, ["fox", f"w{n % 5}"], n % 4, n % 6) for n in range(40)]
    changes = [(s.job_id, s) for s in jobs]
    with pytest.raises(KeyboardInterrupt):
        index.apply(_stopping_after(changes, 17), "1" * 40)
    assert index.indexed_tree() is None and index.interrupted() is None
    kept_now = _kept(index)
    assert not any(k.startswith(("tm\t", "c\t", "mv\t")) for k in kept_now)
    assert {k: v for k, v in kept_now.items() if k.startswith(aggregates.PER_JOB)} == {
        k: v for k, v in _fresh(index).items() if k.startswith(aggregates.PER_JOB)
    }
    index.apply(changes[:30], None)  # a batch of a rebuild: still no tree
    index.apply(changes[30:], "1" * 40)
    assert _kept(index) == _fresh(index) == +aggregates.recompute(jobs)
    index.clear()  # what a stopped build's next sync does: nothing waits any more
    index.apply(changes[:5], "2" * 40)
    assert _kept(index) == _fresh(index) == +aggregates.recompute(jobs[:5])
    index.close()


def _counters(jobs: list[JobSummary]) -> list[tuple[str, int]]:
    return sorted(aggregates.recompute(jobs).items())  # minutes in time order, as kept


# UTC, a half-hour zone, a zone with DST, and one with half an hour of DST; and fixed offsets.
ZONES = ("UTC", "Asia/Kolkata", "America/New_York", "Australia/Adelaide")
TIMEZONES: list[dt.tzinfo] = [zoneinfo.ZoneInfo(name) for name in ZONES] + [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(summaries, max_size=30, unique_by=lambda s: s.job_id),
    st.sampled_from(TIMEZONES),
)
def test_the_documents_sums_agree(jobs: list[JobSummary], tz: dt.tzinfo) -> None:
    doc = build(_counters(jobs), today=dt.date(2024, 6, 1), tz=tz)
    activity, totals = doc["activity"], doc["totals"]
    utc = tz in (dt.UTC, zoneinfo.ZoneInfo("UTC"))
    assert activity["timezone"] == ("UTC" if utc else zone_name(tz))
    dated = totals["jobs"] - totals["undated"]
    assert totals["jobs"] == len(jobs)
    for period in ("per_day", "per_week", "per_month"):
        assert sum(row["jobs"] for row in activity[period]) == dated
        assert sum(row["images"] for row in activity[period]) == sum(
            1 for s in jobs if s.time is not None for i in s.images if i is not None
        )
    assert sum(row["jobs"] for row in activity["heatmap"]) == dated
    assert all((row["level"] == 0) == (row["jobs"] == 0) for row in activity["heatmap"])
    assert sum(map(sum, activity["hour_weekday"])) == dated
    # Days and hours in the zone, exactly: as each job's time in it says.
    local = [s.time.astimezone(tz) for s in jobs if s.time is not None]
    assert {r["day"]: r["jobs"] for r in activity["per_day"] if r["jobs"]} == Counter(
        t.date().isoformat() for t in local
    )
    assert Counter(
        {(h, w): n for h, row in enumerate(activity["hour_weekday"]) for w, n in enumerate(row)}
    ) == Counter((t.hour, t.weekday()) for t in local)
    sessions = activity["sessions"]
    assert (sessions["count"] == 0) == (dated == 0)
    assert sessions["longest_jobs"] <= dated
    if utc:
        assert [row["month"] for row in activity["per_month"]] == [
            row["month"] for row in doc["evolution"]["models"]
        ]
    types = doc["types"]
    assert sum(row["jobs"] for row in types["total"]) == totals["jobs"]
    assert sum(row["images"] for row in types["total"]) == totals["images"]
    for by_type, models in zip(types["per_month"], doc["evolution"]["models"], strict=True):
        assert by_type["month"] == models["month"]
        assert sum(by_type["jobs"].values()) == models["jobs"]
    for row in doc["evolution"]["models"]:
        assert row["jobs"] == 0 or abs(sum(row["share"].values()) - 1) < 1e-3
    cost = doc["cost"]
    assert cost["estimate"] is True
    monthly = sum(row["cost"] for row in cost["per_month"]) + cost["undated"]
    assert abs(monthly - cost["total"]) < 1e-3 * max(1, len(jobs))
    longest = activity["streaks"]["longest"]["days"]
    assert longest <= totals["days_active"] and (longest > 0) == (dated > 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(summaries, min_size=1, max_size=20), st.integers(1, 4))
def test_cost_grows_with_the_jobs(jobs: list[JobSummary], times: int) -> None:
    once = build(_counters(jobs))["cost"]
    more = build([(k, v * times) for k, v in _counters(jobs)])["cost"]
    assert more["gpu_minutes"] >= once["gpu_minutes"]
    assert more["total"] == pytest.approx(once["total"] * times, rel=1e-3, abs=1e-3)
    dearer = build(_counters(jobs), cost={"price_per_fast_hour": 8.0})["cost"]
    assert dearer["total"] == pytest.approx(once["total"] * 2, rel=1e-3, abs=1e-3)


def test_g2_is_zero_for_equal_shares_and_grows_with_the_difference() -> None:
    assert g2(10, 10, 100, 100) == pytest.approx(0)
    assert g2(30, 2, 100, 100) > G2_THRESHOLD > g2(12, 8, 100, 100)
    assert g2(60, 2, 100, 100) > g2(30, 2, 100, 100)


def _fill(vault: Vault) -> None:
    rows = [
        ("g1", "2024-03-01T10:00:00Z", "grid", "a red fox --v 6.1 --ar 16:9 --fast", {}),
        ("u1", "2024-03-01T10:10:00Z", "upscale", "a red fox --v 6.1", {"parent_id": "g1"}),
        ("g2", "2024-03-02T22:00:00Z", "grid", "misty forest owl --niji 6 --relax", {}),
        ("g3", "2024-05-01T09:00:00Z", "grid", "neon city --v 7 --q 2", {"liked_by_user": True}),
        ("v1", "2024-05-01T09:20:00Z", "video", "neon city --video --motion high", {}),
    ]
    with vault.writer("import") as writer:
        for n, (job_id, when, kind, command, extra) in enumerate(rows):
            image = writer.put_media(png_bytes(n))
            record = json.loads(record_json(job_id, command.split(" --")[0], **extra))
            record.update({"enqueue_time": when, "type": kind, "full_command": command})
            if kind == "video":
                record["job_type"] = "video_diffusion"
            writer.add_job(json.dumps(record).encode(), [image])


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_golden_numbers(tmp_path: Path, encrypted: bool, request: pytest.FixtureRequest) -> None:
    vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    _fill(vault)
    doc = insights(vault, today=dt.date(2024, 5, 2), tz="UTC")
    assert doc["v"] == 1 and doc["filter"] == {"since": None, "until": None, "query": None}
    assert doc["totals"] == {
        "jobs": 5,
        "images": 5,
        "undated": 0,
        "first": "2024-03-01",
        "last": "2024-05-01",
        "days_active": 3,
    }
    activity = doc["activity"]
    assert [(r["month"], r["jobs"]) for r in activity["per_month"]] == [
        ("2024-03", 3),
        ("2024-04", 0),
        ("2024-05", 2),
    ]
    assert len(activity["per_day"]) == len(activity["heatmap"]) == 62
    assert activity["streaks"]["longest"] == {"days": 2, "start": "2024-03-01", "end": "2024-03-02"}
    assert activity["streaks"]["current"] == {"days": 1, "start": "2024-05-01", "end": "2024-05-01"}
    assert activity["hour_weekday"][10][4] == 2  # Friday 1 March, 10:00 and 10:10
    assert activity["timezone"] == "UTC"
    assert activity["sessions"] == {
        "count": 3,
        "gap_minutes": 30,
        "mean_jobs": 1.6667,
        "longest_jobs": 2,
    }
    evolution = doc["evolution"]
    assert evolution["models"][0]["share"] == {"v 6.1": 0.6667, "niji 6": 0.3333}
    assert evolution["params"][2]["count"] == {"motion": 1, "quality": 1}
    assert evolution["params"][0]["count"] == {"ar": 1}
    assert evolution["follow_ups"]["grids"] == 3
    assert evolution["follow_ups"]["grids_followed"] == 1
    assert evolution["follow_ups"]["per_month"][0] == {
        "month": "2024-03",
        "grids": 2,
        "follow_ups": 1,
    }
    assert doc["types"]["total"] == [
        {"type": "grid", "jobs": 3, "images": 3},
        {"type": "upscale", "jobs": 1, "images": 1},
        {"type": "video", "jobs": 1, "images": 1},
    ]
    assert doc["types"]["per_month"][2] == {
        "month": "2024-05",
        "jobs": {"grid": 1, "video": 1},
        "images": {"grid": 1, "video": 1},
    }
    assert doc["types"]["per_month"][1] == {"month": "2024-04", "jobs": {}, "images": {}}
    terms = doc["terms"]
    assert terms["top"][0]["terms"][:2] == [["fox", 2], ["red", 2]]
    assert terms["threshold"] == {"g2": 10.83, "p": 0.001}
    assert doc["ratings"]["liked"] == 1
    cost = doc["cost"]
    # g1 fast 1; u1 1; g2 relax (0 fast); g3 quality 2: 2; v1 video 8. 12 fast minutes at $4/h.
    assert cost["gpu_minutes"] == 13.0 and cost["fast_minutes"] == 12.0
    assert cost["total"] == pytest.approx(0.8)
    assert [r["cost"] for r in cost["per_month"]] == pytest.approx([2 / 15, 0.0, 10 / 15], abs=1e-4)
    # A filter counts only the matching jobs, with the same definitions.
    may = insights(vault, since=dt.date(2024, 5, 1), today=dt.date(2024, 5, 2), tz="UTC")
    assert may["totals"]["jobs"] == 2 and may["cost"]["total"] == pytest.approx(10 / 15, abs=1e-4)
    assert may["filter"]["since"] == "2024-05-01"
    foxes = insights(vault, query="fox", tz="UTC")
    assert foxes["totals"]["jobs"] == 2 and foxes["evolution"]["follow_ups"]["grids_followed"] == 1


def test_a_sync_and_a_forget_move_the_counters_and_a_rebuild_keeps_them(vault: Vault) -> None:
    _fill(vault)
    before = _kept(vault.current_index())
    assert before == _fresh(vault.current_index())
    with vault.writer("sync") as writer:
        writer.add_job(record_json("late", "a late owl", parent_id="g2"), [])
    after = _kept(vault.current_index())
    assert after == _fresh(vault.current_index()) != before
    assert after["g\tg2"] == 3  # the grid g2 is followed now
    forget_jobs(vault, ["late", "g1"])
    assert _kept(vault.current_index()) == _fresh(vault.current_index())
    assert _kept(vault.current_index())["g\tg1"] == 2  # its upscale is still there; the grid is not
    assert insights(vault)["evolution"]["follow_ups"]["grids_followed"] == 0
    kept_now = _kept(vault.current_index())
    vault.rebuild_index()
    assert _kept(vault.current_index()) == _fresh(vault.current_index()) == kept_now


def test_the_cost_table_comes_from_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    world = isolate(monkeypatch, tmp_path)
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text(
        "[insights.cost]\nprice_per_fast_hour = 6\nvideo = 10\n"
        "[insights.cost.minutes]\ngrid = 2\n[insights.cost.quality]\n'0.5' = 0.4\n"
    )
    configured = load_config().config.insights.cost
    assert configured == {
        "price_per_fast_hour": 6.0,
        "video": 10.0,
        "minutes.grid": 2.0,
        "quality.0.5": 0.4,
    }
    table = cost_table(configured)
    assert table["minutes.upscale"] == 1.0 and table["minutes.grid"] == 2.0
    job = _summary(1, 3, 3, ["fox"], 0, 0)  # a grid, speed unknown
    doc = build(_counters([job]), cost=configured)["cost"]
    assert doc["table"] == table and doc["total"] == pytest.approx(2 * 6 / 60)
    with pytest.raises(ValueError, match="minutes.grid"):
        NumberTable().parse({"minutes": {"grid": -1}}, from_text=False)
    assert NumberTable().parse("video=9; minutes.grid=2", from_text=True) == {
        "video": 9.0,
        "minutes.grid": 2.0,
    }


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_an_index_of_the_format_before_counters_is_rebuilt_with_them(
    encrypted: bool, request: pytest.FixtureRequest
) -> None:
    vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    _fill(vault)
    index = vault.current_index()
    old = b"5s" if encrypted else b"5"
    with index.env.begin(write=True) as txn:  # as format 5 left it: no counters
        txn.drop(index.db[aggregates.TABLE], delete=False)
        txn.put(b"format", old, db=index.db[b"meta"])
    assert not _kept(index)
    assert (
        insights(vault)["totals"]["jobs"] == 5
    )  # vault.current_index() brought it up to date first
    assert _kept(vault.current_index()) == _fresh(vault.current_index()) and _kept(
        vault.current_index()
    )


def test_an_index_of_format_6_is_rebuilt_with_the_counters_of_7(vault: Vault) -> None:
    _fill(vault)
    index = vault.current_index()
    with index.env.begin(write=True) as txn:  # format 6 kept hours and days apart
        txn.put(b"hw\t10\t4", (2).to_bytes(8, "big"), db=index.db[aggregates.TABLE])
        txn.put(b"format", b"6", db=index.db[b"meta"])
    assert _kept(index)["hw\t10\t4"] == 2
    assert insights(vault, tz="UTC")["activity"]["hour_weekday"][10][4] == 2
    assert _kept(vault.current_index()) == _fresh(
        vault.current_index()
    ) and "hw\t10\t4" not in _kept(vault.current_index())


def test_golden_numbers_of_a_generated_archive(vault: Vault, tmp_path: Path) -> None:
    write_sample_archive(tmp_path / "archive", jobs=40, seed=16)
    import_archive(vault, tmp_path / "archive")
    doc = insights(vault, today=dt.date(2026, 1, 1), tz="UTC")
    assert doc["totals"] == {
        "jobs": 40,
        "images": 133,
        "undated": 0,
        "first": "2023-02-14",
        "last": "2025-11-12",
        "days_active": 39,
    }
    # The same months and counts as `mjvault stats`' pass over every job, and the empty
    # months between them.
    stats = job_stats(vault)
    months = {row["month"]: row for row in doc["activity"]["per_month"]}
    assert len(months) == 34
    assert [months[row["month"]] for row in stats["per_month"]] == stats["per_month"]
    assert sum(row["jobs"] for row in months.values()) == stats["jobs"]
    assert doc["activity"]["sessions"]["count"] == 40
    assert doc["activity"]["streaks"]["longest"] == {
        "days": 2,
        "start": "2023-09-26",
        "end": "2023-09-27",
    }
    follow = doc["evolution"]["follow_ups"]
    assert (follow["grids"], follow["grids_followed"]) == (31, 13)
    assert (doc["cost"]["gpu_minutes"], doc["cost"]["total"]) == (39.5, 2.6333)
    assert (doc["ratings"]["jobs_with_record_fields"], doc["ratings"]["liked"]) == (40, 0)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_the_zone_moves_days_hours_and_streaks_not_months(
    encrypted: bool, request: pytest.FixtureRequest
) -> None:
    vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    _fill(vault)
    # Kolkata is 5:30 ahead: g2 (2 March 22:00 UTC) is at 03:30 on Sunday 3 March there.
    doc = insights(vault, today=dt.date(2024, 5, 2), tz="Asia/Kolkata")
    activity = doc["activity"]
    assert activity["timezone"] == "Asia/Kolkata"
    assert activity["hour_weekday"][3][6] == 1 and activity["hour_weekday"][15][4] == 2
    days = {r["day"]: r["jobs"] for r in activity["per_day"] if r["jobs"]}
    assert days == {"2024-03-01": 2, "2024-03-03": 1, "2024-05-01": 2}
    assert activity["streaks"]["longest"]["days"] == 1
    assert activity["sessions"]["count"] == 3  # sessions do not depend on the zone
    assert [r["month"] for r in doc["evolution"]["models"]] == ["2024-03", "2024-04", "2024-05"]
    with pytest.raises(ValueError, match="Mars/Olympus"):
        insights(vault, tz="Mars/Olympus")


def test_terms_are_words_without_image_prompt_urls() -> None:
    job = _summary(1, 3, 3, [], 0, 0)
    job = JobSummary(
        **{
            **job.__dict__,
            "prompt": "<https://s.mj.run/AbCd> https://cdn.example.com/x.png a misty owl",
        }
    )
    terms = {k.split("\t")[2] for k in aggregates.contributions(job) if k.startswith("tm\t")}
    assert terms == {"misty", "owl"}


def test_a_sealed_index_keeps_minutes_in_time_order_and_nothing_else_clear(tmp_path: Path) -> None:
    index = Index(tmp_path / "idx", VaultKeys(bytes(range(32))))
    jobs = [
        _summary(n, (n * 37) % 90, (n * 5) % 24, ["fox", "owl"], n % 4, n % 6) for n in range(40)
    ]
    index.apply([(s.job_id, s) for s in jobs], "1" * 40)
    with index.env.begin() as txn:
        keys = [bytes(k) for k, _ in txn.cursor(db=index.db[aggregates.TABLE])]
    clear = [k for k in keys if k[0] == 0]
    # The minutes with a job (which `docs` holds in the clear anyway), first and in order;
    # every other counter under its token.
    minutes = sorted({int(s.time.timestamp()) // 60 for s in jobs if s.time is not None})
    assert [int.from_bytes(k[1:], "big") for k in clear] == minutes
    assert keys[: len(clear)] == clear
    assert all(len(k) == 16 for k in keys[len(clear) :])
    names = [name for name, _ in kept(index)]
    assert [n for n in names if n.startswith("mi\t")] == [f"mi\t{m:012d}" for m in minutes]
    index.close()


@pytest.mark.memory
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_the_document_holds_nothing_a_minute(tmp_path: Path, sealed: bool) -> None:
    """The document of 6,000 jobs at distinct minutes and of 24,000 on the same 20 days:
    what the read holds (Python's heap at its peak) does not grow with the minutes. Sessions
    sorted the minutes of a sealed index before (peak RSS 117 MB at a million jobs)."""
    import tracemalloc

    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    peaks = []
    for jobs in (6_000, 24_000):
        index = Index(tmp_path / f"idx-{jobs}", VaultKeys(bytes(range(32))) if sealed else None)
        index.apply(
            (
                (
                    f"job-{n}",
                    JobSummary(
                        job_id=f"job-{n}",
                        record=f"{n:064x}",
                        images=(f"{n:064x}",),
                        time=start + dt.timedelta(minutes=n * 20 * 1440 // jobs),  # 20 days
                        type="grid",
                        prompt="a misty fox",
                        params={},
                    ),
                )
                for n in range(jobs)
            ),
            "1" * 40,
        )
        tracemalloc.start()
        doc = build(kept(index), today=dt.date(2024, 2, 1))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        index.close()
        assert doc["totals"]["jobs"] == jobs and doc["totals"]["days_active"] == 20
    # Measured: 1 KB more plain, 8 KB sealed; the two arrays of minutes the read kept before
    # grow by 288 KB from one to the other (16 bytes a minute), a sealed read's sort more.
    assert peaks[1] < peaks[0] + 100_000, peaks


def test_the_time_zone_comes_from_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    world = isolate(monkeypatch, tmp_path)
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    assert load_config().config.insights.timezone == ""  # the machine's
    world.user_file.write_text('[insights]\ntimezone = "Asia/Kolkata"\n')
    configured = load_config().config.insights.timezone
    assert configured == "Asia/Kolkata"
    assert str(zone(configured)) == "Asia/Kolkata"
    monkeypatch.setenv("TZ", "America/New_York")
    assert str(zone("")) == "America/New_York"
