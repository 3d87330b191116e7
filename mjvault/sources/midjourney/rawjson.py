"""Cut a listing response into its records, keeping each record's exact bytes.

The vault stores what Midjourney sent, byte for byte, so a better parser later can re-read it.
A listing is either a bare array (v1) or an object whose ``data`` key holds the array (v2/v3);
this module walks the top level with :meth:`json.JSONDecoder.raw_decode`, which reports where
each value ends, and slices the body at those offsets. Valid UTF-8 decodes and re-encodes to the
same bytes, so a slice of the text encodes back to the record's exact bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()
# Far above any real page (the client asks for 1,000; 10,000 is the most seen). Each item costs a
# few hundred bytes of Python objects beyond its text, so a page of tiny items (`{"data":
# [1,1,1,…]}`) would need far more memory than its size in bytes: it is refused instead.
MAX_PAGE_ITEMS = 50_000


class ListingShapeError(ValueError):
    """The body is not JSON of the expected listing shape."""


@dataclass
class RawRecord:
    value: Any
    raw: bytes


@dataclass
class SplitListing:
    records: list[RawRecord]
    # The other top-level keys of an object answer (cursor, checkpoint, …); empty for an array.
    meta: dict[str, Any] = field(default_factory=dict)
    sliced: bool = True  # False when the exact text could not be kept (compact re-encoding used)


def compact_json(value: Any) -> bytes:
    """The fallback text of a record: compact, key order kept, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _expect(text: str, pos: int, char: str) -> int:
    if pos >= len(text) or text[pos] != char:
        found = repr(text[pos]) if pos < len(text) else "end of body"
        raise ListingShapeError(f"expected {char!r} at offset {pos}, found {found}")
    return pos + 1


def _decode_at(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise ListingShapeError(f"invalid JSON at offset {exc.pos}: {exc.msg}") from None
    except ValueError as exc:  # an integer too long to convert
        raise ListingShapeError(f"invalid JSON at offset {pos}: {exc}") from None
    except RecursionError:
        raise ListingShapeError(f"JSON nested too deeply at offset {pos}") from None


def _walk_array(text: str, pos: int) -> tuple[list[RawRecord], int]:
    """Records of the array starting at ``pos`` (which must be ``[``); position after ``]``."""
    pos = _skip_ws(text, _expect(text, pos, "["))
    records: list[RawRecord] = []
    if pos < len(text) and text[pos] == "]":
        return records, pos + 1
    while True:
        if len(records) >= MAX_PAGE_ITEMS:
            raise ListingShapeError(f"more than {MAX_PAGE_ITEMS:,} items in one page")
        pos = _skip_ws(text, pos)
        value, end = _decode_at(text, pos)
        records.append(RawRecord(value, text[pos:end].encode("utf-8")))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return records, _expect(text, pos, "]")


def _walk_object(text: str, pos: int, array_key: str) -> tuple[SplitListing, int]:
    pos = _skip_ws(text, _expect(text, pos, "{"))
    meta: dict[str, Any] = {}
    records: list[RawRecord] | None = None
    if pos < len(text) and text[pos] == "}":
        raise ListingShapeError(f"the answer has no {array_key!r} array")
    while True:
        pos = _skip_ws(text, pos)
        key, pos = _decode_at(text, pos)
        if not isinstance(key, str):
            raise ListingShapeError("object key is not a string")
        pos = _skip_ws(text, _expect(text, _skip_ws(text, pos), ":"))
        if key == array_key and pos < len(text) and text[pos] == "[":
            records, pos = _walk_array(text, pos)
        else:
            value, pos = _decode_at(text, pos)
            if key == array_key:
                raise ListingShapeError(f"{array_key!r} is not an array")
            meta[key] = value
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        pos = _expect(text, pos, "}")
        break
    if records is None:
        raise ListingShapeError(f"the answer has no {array_key!r} array")
    return SplitListing(records, meta), pos


def split_listing(body: bytes, array_key: str | None = None) -> SplitListing:
    """Records of a listing body: a bare array, or the array under ``array_key`` of an object.

    Raises :class:`ListingShapeError` when the body is not JSON of that shape. When the body is
    JSON of the right shape but cannot be sliced (not UTF-8, e.g. UTF-16), the records are
    re-encoded compactly and ``sliced`` is False.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _fallback(body, array_key)
    start = 1 if text.startswith("\ufeff") else 0  # a BOM is not part of any record
    # A BOM shifts nothing: slices are taken from the text and re-encoded, not from byte offsets.
    pos = _skip_ws(text, start)
    if array_key is None:
        records, end = _walk_array(text, pos)
        split = SplitListing(records)
    else:
        split, end = _walk_object(text, pos, array_key)
    if _skip_ws(text, end) != len(text):
        raise ListingShapeError(f"extra data after the JSON value at offset {end}")
    return split


def _fallback(body: bytes, array_key: str | None) -> SplitListing:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, …
        raise ListingShapeError(f"not JSON: {exc}") from None
    if array_key is None:
        if not isinstance(value, list):
            raise ListingShapeError("expected a JSON array")
        items, meta = value, {}
    else:
        if not isinstance(value, dict) or not isinstance(value.get(array_key), list):
            raise ListingShapeError(f"expected an object with a {array_key!r} array")
        items = value[array_key]
        meta = {k: v for k, v in value.items() if k != array_key}
    if len(items) > MAX_PAGE_ITEMS:
        raise ListingShapeError(f"more than {MAX_PAGE_ITEMS:,} items in one page")
    records = [RawRecord(item, compact_json(item)) for item in items]
    return SplitListing(records, meta, sliced=False)
