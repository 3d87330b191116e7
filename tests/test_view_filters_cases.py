"""The cases of a view's filter (mjvault/views/filters.py) one by one: each condition alone,
the date bounds at their edges, phrases of several tokens, parameters by alias, collections
before and after binding, and the stored form read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mjvault.errors import UsageError
from mjvault.model import Job
from mjvault.params import ParamValue
from mjvault.views.filters import ViewFilter, parse_bound

MARCH_5 = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)


def job(
    job_id: str = "j1",
    *,
    prompt: str = "a red fox in the snow",
    when: datetime | None = MARCH_5,
    type: str = "imagine",
    job_type: str | None = None,
    event_type: str | None = None,
    params: dict[str, ParamValue] | None = None,
) -> Job:
    return Job(
        id=job_id,
        enqueue_time=when,
        type=type,
        job_type=job_type,
        event_type=event_type,
        prompt=prompt,
        full_command=prompt,
        params=params or {},
    )


def test_an_empty_filter_selects_every_job() -> None:
    f = ViewFilter.build()
    assert f.empty
    assert f.matches(job(when=None, prompt=""))


def test_a_blank_search_is_no_condition() -> None:
    f = ViewFilter.build(search="   ")
    assert f.search is None and f.empty


def test_types_match_the_job_type_event_type_or_media_kind() -> None:
    f = ViewFilter.build(types=("Video",))
    assert f.types == ("video",) and not f.empty
    assert f.matches(job(job_type="video_diffusion"))
    assert f.matches(job(event_type="video_extended"))
    assert not f.matches(job())
    assert ViewFilter.build(types=("image",)).matches(job())
    assert ViewFilter.build(types=("upscale",)).matches(job(type="upscale"))
    assert not ViewFilter.build(types=("upscale",)).matches(job(type="imagine"))


def test_date_bounds_include_since_and_exclude_until() -> None:
    f = ViewFilter.build(since="2024-03-05", until="2024-03-05")
    assert f.since == datetime(2024, 3, 5, tzinfo=UTC)
    assert f.until == datetime(2024, 3, 6, tzinfo=UTC)  # a bare --until date: the whole day
    assert f.matches(job(when=f.since))
    assert f.matches(job(when=f.until - timedelta(microseconds=1)))
    assert not f.matches(job(when=f.until))
    assert not f.matches(job(when=f.since - timedelta(seconds=1)))


def test_a_dated_filter_never_selects_an_undated_job() -> None:
    assert not ViewFilter.build(since="2024-01-01").matches(job(when=None))
    assert not ViewFilter.build(until="2030-01-01").matches(job(when=None))


def test_only_one_bound_is_open_on_the_other_side() -> None:
    assert ViewFilter.build(since="2024-03-01").matches(job(when=MARCH_5 + timedelta(days=900)))
    assert ViewFilter.build(until="2024-03-06").matches(job(when=datetime(1999, 1, 1, tzinfo=UTC)))
    assert not ViewFilter.build(until="2024-03-04").matches(job())


def test_since_must_come_before_until() -> None:
    with pytest.raises(UsageError, match="is not before --until"):
        ViewFilter.build(since="2024-03-06", until="2024-03-05T00:00:00")
    with pytest.raises(UsageError, match="is not before --until"):
        ViewFilter.build(since="2024-03-05T00:00:00Z", until="2024-03-05T00:00:00Z")


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2024-03-05", False, datetime(2024, 3, 5, tzinfo=UTC)),
        ("2024-03-05", True, datetime(2024, 3, 6, tzinfo=UTC)),
        ("2024-12-31", True, datetime(2025, 1, 1, tzinfo=UTC)),
        # a time is taken as given, whichever side it bounds
        ("2024-03-05T10:30:00", True, datetime(2024, 3, 5, 10, 30, tzinfo=UTC)),
        ("2024-03-05T10:30:00Z", False, datetime(2024, 3, 5, 10, 30, tzinfo=UTC)),
        # another offset is brought to UTC
        ("2024-03-05T10:30:00+02:00", False, datetime(2024, 3, 5, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_bound(text: str, end: bool, expected: datetime) -> None:
    moment = parse_bound(text, "--since", end=end)
    assert moment == expected
    assert moment.tzinfo == UTC


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "2024/03/05", "", "2024-03-05T25:00"])
def test_parse_bound_refuses_what_is_not_a_date(text: str) -> None:
    with pytest.raises(UsageError, match=r"--until .* is not a date like 2024-03-05"):
        parse_bound(text, "--until", end=True)


def test_search_words_must_all_appear() -> None:
    f = ViewFilter.build(search="  fox   SNOW ")
    assert f.search == "fox SNOW"
    assert f.matches(job(prompt="A red Fox in the snow"))
    assert not f.matches(job(prompt="a red fox in the rain"))


def test_a_han_word_is_a_phrase_its_characters_must_stand_next_to_each_other() -> None:
    f = ViewFilter.build(search="猫耳")
    assert f.matches(job(prompt="少女 猫耳 帽子"))
    assert not f.matches(job(prompt="耳 and 猫 apart"))
    assert not f.matches(job(prompt="耳猫"))
    assert not f.matches(job(prompt="a cat"))


def test_search_of_punctuation_alone_is_no_condition() -> None:
    # No token in the word: nothing to look for, so the filter is empty.
    assert ViewFilter(search="!!!").empty


def test_params_by_alias_and_value() -> None:
    f = ViewFilter.build(params={"AR": " 16 : 9 ", "s": "250", "tile": None})  # type: ignore[dict-item]
    assert f.params == (("ar", "16:9"), ("stylize", "250"))
    assert f.matches(job(params={"ar": "16:9", "stylize": 250}))
    assert not f.matches(job(params={"ar": "16:9"}))  # no stylize at all
    assert not f.matches(job(params={"ar": "1:1", "stylize": 250}))


def test_a_flag_param_matches_true_and_values_ignore_case() -> None:
    assert ViewFilter.build(params={"tile": "true"}).matches(job(params={"tile": True}))
    assert not ViewFilter.build(params={"tile": "true"}).matches(job(params={"tile": False}))
    assert ViewFilter.build(params={"style": "RAW"}).matches(job(params={"style": "raw"}))


def test_a_major_version_selects_its_point_releases() -> None:
    v6 = ViewFilter.build(params={"v": "6"})
    assert v6.matches(job(params={"version": "6.1"}))
    assert v6.matches(job(params={"version": "6"}))
    assert not v6.matches(job(params={"version": "5.2"}))
    assert not v6.matches(job(params={"version": "61"}))
    assert ViewFilter.build(params={"niji": "6"}).matches(job(params={"niji": "6.1"}))
    # only versions: a stylize of 2500 is not a "point release" of 250
    assert not ViewFilter.build(params={"s": "250"}).matches(job(params={"stylize": "250.5"}))


def test_a_collection_filter_matches_only_once_bound() -> None:
    f = ViewFilter(collection="best")
    assert not f.empty
    with pytest.raises(RuntimeError, match="only once bound"):
        f.matches(job())
    bound = f.bound(frozenset({"j1"}))
    assert bound == f  # members are not part of what the filter is
    assert bound.matches(job("j1"))
    assert not bound.matches(job("j2"))


def test_a_bound_collection_is_anded_with_the_rest() -> None:
    f = ViewFilter(collection="best", search="fox").bound(frozenset({"j1", "j2"}))
    assert f.matches(job("j1"))
    assert not f.matches(job("j2", prompt="a cat"))


def test_the_stored_form_reads_back_as_the_same_filter() -> None:
    f = ViewFilter.build(
        types=("video", "image"),
        since="2024-01-01",
        until="2024-06-30T12:00:00+01:00",
        search="red fox",
        params={"ar": "3:2", "v": "6"},
    )
    doc = f.to_json()
    assert doc == {
        "types": ["image", "video"],
        "since": "2024-01-01T00:00:00+00:00",
        "until": "2024-06-30T11:00:00+00:00",
        "search": "red fox",
        "params": [["ar", "3:2"], ["version", "6"]],
    }
    assert "collection" not in doc  # absent, not null: older fingerprints stay the same
    again = ViewFilter.from_json(doc)
    assert again == f
    assert again.matches(job(params={"ar": "3:2", "version": "6.1"})) == f.matches(
        job(params={"ar": "3:2", "version": "6.1"})
    )


def test_a_stored_collection_and_an_empty_stored_filter() -> None:
    assert ViewFilter.from_json({"collection": "best"}).to_json()["collection"] == "best"
    empty = ViewFilter.from_json({"types": None, "since": None, "until": "", "params": None})
    assert empty.empty and empty == ViewFilter()


def test_an_offset_time_is_compared_as_the_same_moment() -> None:
    f = ViewFilter.build(since="2024-03-05T12:00:00Z")
    east = timezone(timedelta(hours=3))
    assert f.matches(job(when=datetime(2024, 3, 5, 15, 0, tzinfo=east)))
    assert not f.matches(job(when=datetime(2024, 3, 5, 14, 59, tzinfo=east)))
