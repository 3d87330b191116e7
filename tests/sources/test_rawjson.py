"""Raw-record slicing: every record comes back as its exact bytes, however it was serialised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.sources.midjourney.rawjson import ListingShapeError, compact_json, split_listing

SAMPLES = Path("/work/shared/mj_samples")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
records = st.dictionaries(st.text(), values, max_size=6)
whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def serialised(draw: st.DrawFn, value: object) -> str:
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t"]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": "), (" ,", " : ")]))
    return json.dumps(
        value,
        indent=indent,
        separators=separators,
        ensure_ascii=draw(st.booleans()),
        sort_keys=draw(st.booleans()),
    )


@st.composite
def listing_bodies(draw: st.DrawFn) -> tuple[bytes, list[bytes], str | None]:
    items = draw(st.lists(records, max_size=6))
    pieces = [draw(serialised(item)) for item in items]
    ws = [draw(whitespace) for _ in range(len(pieces) * 2 + 2)]
    inner = ",".join(f"{ws[2 * i]}{piece}{ws[2 * i + 1]}" for i, piece in enumerate(pieces))
    array = f"[{ws[-1]}{inner}{ws[-2] if not pieces else ''}]"
    key = draw(st.sampled_from([None, "data"]))
    if key is None:
        body = f"{draw(whitespace)}{array}{draw(whitespace)}"
    else:
        before = draw(st.dictionaries(st.sampled_from(["cursor", "x", "checkpoint"]), values))
        after = draw(st.dictionaries(st.sampled_from(["next", "checkpoint2"]), values))
        parts = [f"{json.dumps(k)}:{draw(whitespace)}{json.dumps(v)}" for k, v in before.items()]
        parts.append(f'"data"{draw(whitespace)}:{array}')
        parts += [f"{json.dumps(k)} : {json.dumps(v)}" for k, v in after.items()]
        body = "{" + ",\n".join(parts) + "}"
    return body.encode("utf-8"), [p.encode("utf-8") for p in pieces], key


@settings(max_examples=100, deadline=None)
@given(listing_bodies())
def test_any_serialisation_slices_back_to_exact_text(case: tuple[bytes, list[bytes], str | None]):
    body, pieces, key = case
    split = split_listing(body, key)
    assert split.sliced
    assert [r.raw for r in split.records] == pieces
    assert [r.value for r in split.records] == [json.loads(p) for p in pieces]


def test_object_meta_keeps_cursor_and_checkpoint() -> None:
    body = SAMPLES.joinpath("04_api-imagine_response_2025-08_shape.json").read_bytes()
    split = split_listing(body, "data")
    assert split.meta == {"cursor": "encrypted cursor", "checkpoint": "encrypted something ???"}
    assert len(split.records) == 1
    raw = split.records[0].raw
    assert raw in body and raw.startswith(b"{") and raw.endswith(b"}")
    assert json.loads(raw)["id"] == "a2339f14-ff71-43e4-a69f-8da15e7ba871"


def test_real_public_feed_array_slices_exactly() -> None:
    body = SAMPLES.joinpath("01_public-feed_orderBy-top_2022.json").read_bytes()
    split = split_listing(body)
    assert len(split.records) == 44
    for record in split.records:
        assert record.raw in body
        assert json.loads(record.raw) == record.value


def test_bom_and_non_ascii_kept() -> None:
    text = '\ufeff[ {"id":"a","prompt":"猫 🐈 --ar 2:3\\n"} ]'
    split = split_listing(text.encode("utf-8"))
    assert split.records[0].raw == '{"id":"a","prompt":"猫 🐈 --ar 2:3\\n"}'.encode()


def test_utf16_falls_back_to_compact_json() -> None:
    body = json.dumps([{"id": "x", "p": "é"}], indent=2).encode("utf-16")
    split = split_listing(body)
    assert not split.sliced
    assert (
        split.records[0].raw == compact_json({"id": "x", "p": "é"}) == '{"id":"x","p":"é"}'.encode()
    )


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b"<!DOCTYPE html><html>login</html>", None),
        (b'{"data": []}', None),
        (b"[1, 2", None),
        (b"[1] [2]", None),
        (b"[]", "data"),
        (b'{"cursor": "x"}', "data"),
        (b'{"data": {"id": 1}}', "data"),
        (b"", None),
    ],
)
def test_wrong_shapes_are_rejected(body: bytes, key: str | None) -> None:
    with pytest.raises(ListingShapeError):
        split_listing(body, key)
