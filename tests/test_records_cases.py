"""Job record objects (mjvault/records.py): the source's JSON kept byte for byte, and
anything else refused as not a record."""

from __future__ import annotations

import msgpack
import pytest

from mjvault.errors import IntegrityError
from mjvault.records import RECORD_VERSION, decode_record, encode_record


def test_the_json_comes_back_byte_for_byte() -> None:
    raw = b'{ "id":"j1",  "prompt": "a fox \\u00e9" }\n'
    assert decode_record("oid", encode_record(raw)) == raw
    assert decode_record("oid", encode_record(memoryview(raw))) == raw  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never valid msgpack
        msgpack.packb([1, 2]),  # not a map
        msgpack.packb({"t": "tree", "v": RECORD_VERSION, "json": b"{}"}),
        msgpack.packb({"t": "record", "v": RECORD_VERSION + 1, "json": b"{}"}),
        msgpack.packb({"t": "record", "v": RECORD_VERSION}),  # no json
    ],
)
def test_anything_else_is_not_a_record(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="object abc123 is not a job record"):
        decode_record("abc123", data)
