"""The search language: examples of each construct, and properties over generated queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault.index.query import FieldFilter, Query, QueryError, Term, parse_query
from mjvault.text import search_tokens


def test_words_phrases_prefixes_and_exclusions() -> None:
    q = parse_query('Fox "Misty  Forest" cat* -snow -"deep sea"')
    assert q.terms == (
        Term(("fox",)),
        Term(("misty", "forest")),
        Term(("cat",), prefix=True),
        Term(("snow",), negated=True),
        Term(("deep", "sea"), negated=True),
    )


def test_words_are_folded_like_the_index() -> None:
    assert parse_query("CAFÉ Ｆｏｘ").terms == (Term(("cafe",)), Term(("fox",)))


def test_a_word_the_tokenizer_splits_is_a_phrase() -> None:
    assert parse_query("sci-fi 猫耳").terms == (Term(("sci", "fi")), Term(("猫", "耳")))


def test_parameter_filters_use_canonical_names() -> None:
    q = parse_query("ar:16:9 v:6 version:6.1 niji:6 style:RAW s>100 chaos<=20 --nope")
    assert q.filters == (
        FieldFilter("ar", "=", "16:9"),
        FieldFilter("version", "=", "6"),
        FieldFilter("version", "=", "6.1"),
        FieldFilter("niji", "=", "6"),
        FieldFilter("style", "=", "raw"),
        FieldFilter("stylize", ">", "100"),
        FieldFilter("chaos", "<=", "20"),
    )
    assert q.terms == (Term(("nope",), negated=True),)


def test_parameters_pasted_from_midjourney_are_filters() -> None:
    q = parse_query("fox --ar 16:9 --V 6 --tile --raw --no cars -snow")
    assert q.terms == (Term(("fox",)), Term(("snow",), negated=True))
    assert q.filters == (
        FieldFilter("ar", "=", "16:9"),
        FieldFilter("version", "=", "6"),
        FieldFilter("tile", "=", "true"),
        FieldFilter("style", "=", "raw"),
        FieldFilter("no", "=", "cars"),
    )


def test_type_user_and_negated_filters() -> None:
    q = parse_query('type:Upscale -type:grid user:"Ann Lee"')
    assert q.filters == (
        FieldFilter("type", "=", "upscale"),
        FieldFilter("type", "=", "grid", negated=True),
        FieldFilter("user", "=", "Ann Lee"),
    )


def test_dates_cover_whole_periods() -> None:
    q = parse_query("since:2024-03 until:2024-03")
    assert q.since == datetime(2024, 3, 1, tzinfo=UTC)
    assert q.until == datetime(2024, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_query("date:2023").since == datetime(2023, 1, 1, tzinfo=UTC)
    assert parse_query("until:2024-02-29").until == datetime(
        2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC
    )
    assert parse_query("since:2024-12").until is None
    assert parse_query("date:2024-12").until == datetime(
        2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )


def test_unknown_fields_are_words() -> None:
    assert parse_query("color:red").terms == (Term(("color", "red")),)


@pytest.mark.parametrize(
    "text",
    ["since:2024-13", "until:yesterday", "s>lots", "ar>wide", "type:", "type>3", "-since:2024"],
)
def test_meaningless_queries_are_usage_errors(text: str) -> None:
    with pytest.raises(QueryError):
        parse_query(text)


# -- properties ------------------------------------------------------------------------------
_word = st.text(
    alphabet=st.characters(categories=("Ll", "Lo", "Nd")), min_size=1, max_size=8
).filter(lambda w: search_tokens(w) == [w])
_term = st.builds(
    Term,
    tokens=st.lists(_word, min_size=1, max_size=3).map(tuple),
    prefix=st.booleans(),
    negated=st.booleans(),
).filter(lambda t: not t.prefix or t.tokens[-1][-1:].isalnum())
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.: _-", min_size=1, max_size=10)
_filter = st.one_of(
    st.builds(FieldFilter, field=st.just("type"), op=st.just("="), value=st.from_regex(r"[a-z_]{1,10}", fullmatch=True), negated=st.booleans()),
    st.builds(FieldFilter, field=st.just("user"), op=st.just("="), value=_value.filter(str.strip), negated=st.booleans()),
    st.builds(FieldFilter, field=st.sampled_from(["ar", "version", "seed", "tile"]), op=st.just("="), value=st.from_regex(r"[a-z0-9.:]{1,8}", fullmatch=True), negated=st.booleans()),
    st.builds(FieldFilter, field=st.sampled_from(["stylize", "chaos", "quality"]), op=st.sampled_from(["<", "<=", ">", ">="]), value=st.integers(0, 10**6).map(str), negated=st.booleans()),
)  # fmt: skip
_moment = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(
    terms=st.lists(_term, max_size=4),
    filters=st.lists(_filter, max_size=4),
    since=st.none() | _moment,
    until=st.none() | _moment,
)
def test_to_text_parses_back_to_the_same_query(
    terms: list[Term],
    filters: list[FieldFilter],
    since: datetime | None,
    until: datetime | None,
) -> None:
    query = Query(tuple(terms), tuple(filters), since, until)
    assert parse_query(query.to_text()) == query


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_usage_error(text: str) -> None:
    try:
        query = parse_query(text)
    except QueryError:
        return
    for term in query.terms:
        assert term.tokens and all(term.tokens)
    assert parse_query(query.to_text()) == query
