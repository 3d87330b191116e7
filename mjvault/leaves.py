"""The job list of a version 2 tree leaf as one byte string (docs/FORMAT.md §6).

A version 1 leaf keeps each job as a msgpack array of its id text, its record id and a list
of image ids: 183 bytes a job of the 100k-job benchmark vault, 5 of them msgpack headers and
20 the hex text of a UUID. Version 2 keeps, per job, in order of job id::

    count   (1 byte)  images the job has (0-255)
    length  (1 byte)  0: the job id is a UUID, kept as its 16 bytes; else the UTF-8 bytes of
                      the job id that follow (1-255)
    job id  (16 bytes, or `length` bytes)
    record  (32 bytes) the record's object id
    images  (32 bytes each, `count` of them) image object ids; 32 zero bytes: no image

151 bytes a job at ~3.2 images. The id of a UUID is its canonical text (lower case,
8-4-4-4-12 with hyphens), and such an id is never kept as text, so every job list has one
encoding and :func:`decode` then :func:`encode` gives back the same bytes (what translating a
remote's ids relies on). A job a version 2 leaf cannot hold (an empty id or one longer than
255 bytes, more than 255 images, an object id of 32 zero bytes) makes its leaf a version 1
one (:func:`fits`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mjvault.errors import IntegrityError

ID_SIZE = 32
NO_ID = bytes(ID_SIZE)  # a missing image: no object has this id (a BLAKE3 preimage)
MAX_FIELD = 255
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_bytes(job_id: str) -> bytes | None:
    """The 16 bytes of a job id that is a UUID in its canonical text, else None."""
    if len(job_id) == 36 and _UUID_TEXT.fullmatch(job_id):
        return bytes.fromhex(job_id.replace("-", ""))
    return None


def uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fits(job_id: str, ids: bytes) -> bool:
    """Whether a version 2 leaf can hold this job (``ids``: record id then image ids)."""
    count = len(ids) // ID_SIZE - 1
    if count > MAX_FIELD or not job_id:
        return False
    if uuid_bytes(job_id) is None and len(job_id.encode("utf-8")) > MAX_FIELD:
        return False
    return ids[:ID_SIZE] != NO_ID


def encode(jobs: Iterable[tuple[str, bytes]]) -> bytes:
    """The job list of ``(job id, record id ‖ image ids)`` pairs, sorted by job id here.
    Each job must :func:`fits`; a missing image is already 32 zero bytes in ``ids``."""
    parts: list[bytes] = []
    for job_id, ids in sorted(jobs):
        count = len(ids) // ID_SIZE - 1
        raw = uuid_bytes(job_id)
        if raw is not None:
            parts.append(bytes((count, 0)) + raw + ids)
        else:
            text = job_id.encode("utf-8")
            parts.append(bytes((count, len(text))) + text + ids)
    return b"".join(parts)


def decode(data: bytes) -> list[tuple[str, bytes]]:
    """``(job id, record id ‖ image ids)`` of each job, checked: lengths that add up to the
    end, job ids in strictly increasing order, each in its one encoding, a record id."""
    jobs: list[tuple[str, bytes]] = []
    previous: str | None = None
    at, end = 0, len(data)
    while at < end:
        if at + 2 > end:
            raise IntegrityError("malformed tree leaf: an entry is cut short")
        count, length = data[at], data[at + 1]
        at += 2
        if length == 0:
            raw = data[at : at + 16]
            at += 16
            job_id = uuid_text(raw)
        else:
            text = data[at : at + length]
            at += length
            try:
                job_id = text.decode("utf-8")
            except UnicodeDecodeError:
                raise IntegrityError("malformed tree leaf: a job id is not UTF-8") from None
            if len(text) == length and uuid_bytes(job_id) is not None:
                raise IntegrityError("malformed tree leaf: a UUID job id kept as text")
        size = ID_SIZE * (count + 1)
        ids = data[at : at + size]
        at += size
        if at > end:
            raise IntegrityError("malformed tree leaf: an entry is cut short")
        if ids[:ID_SIZE] == NO_ID:
            raise IntegrityError("malformed tree leaf: a job without a record id")
        if previous is not None and job_id <= previous:
            raise IntegrityError("malformed tree leaf: job ids out of order")
        jobs.append((job_id, ids))
        previous = job_id
    return jobs
