"""Job record objects: the source's JSON, byte for byte, in a small msgpack envelope.

Keeping the JSON verbatim (not re-serialised) is what makes ``mjvault show --raw`` print the
record exactly as Midjourney sent it, and lets a future parser re-read old archives.
"""

from __future__ import annotations

import msgpack

from mjvault.errors import IntegrityError

RECORD_VERSION = 1


def encode_record(raw_json: bytes) -> bytes:
    return msgpack.packb({"t": "record", "v": RECORD_VERSION, "json": bytes(raw_json)})


def decode_record(object_id: str, data: bytes) -> bytes:
    try:
        doc = msgpack.unpackb(data)
        if doc.get("t") == "record" and doc.get("v") == RECORD_VERSION:
            return bytes(doc["json"])
    except Exception:
        pass
    raise IntegrityError(f"object {object_id} is not a job record")
