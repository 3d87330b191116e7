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

~152 bytes a job at ~3.2 images. The id of a UUID is its canonical text (lower case,
8-4-4-4-12 with hyphens), and such an id is never kept as text, so every job list has one
encoding and :func:`decode` then :func:`encode` gives back the same bytes (what translating a
remote's ids relies on). A job a version 2 leaf cannot hold (an empty id or one longer than
255 bytes, more than 255 images, an object id of 32 zero bytes) makes its leaf a version 1
one (:func:`encode` returns None).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mjvault.errors import IntegrityError

ID_HEX = 64
NO_ID = "0" * ID_HEX  # a missing image: no object has this id (it would be a BLAKE3 preimage)
MAX_FIELD = 255
_HEADS = [f"{n:02x}" for n in range(MAX_FIELD + 1)]
_IDS = re.compile(f".{{{ID_HEX}}}")  # splits hex into ids, faster than slicing in a loop
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# (job id, record id, image ids with None for a missing image), ids as hex: a tree entry.
Job = tuple[str, str, tuple[str | None, ...]]


def is_uuid(job_id: str) -> bool:
    """Whether a job id is a UUID in its canonical text, kept as 16 bytes."""
    return len(job_id) == 36 and _UUID_TEXT.fullmatch(job_id) is not None


def encode(jobs: Iterable[Job]) -> bytes | None:
    """The job list of ``jobs``, already sorted by job id, each once; None when one of them
    cannot be held (the leaf is then written as version 1).

    Built as one hex string and converted once: a leaf is re-encoded at every checkpoint that
    touches it, and per-field byte strings cost more than the ids themselves.
    """
    parts: list[str] = []
    append = parts.append
    for job_id, record, images in jobs:
        count = len(images)
        if count > MAX_FIELD or record == NO_ID or NO_ID in images:
            return None
        if None in images:
            images = tuple(NO_ID if image is None else image for image in images)  # noqa: PLW2901
        if len(job_id) == 36 and _UUID_TEXT.fullmatch(job_id):
            append(_HEADS[count] + "00" + job_id.replace("-", ""))
        else:
            text = job_id.encode("utf-8")
            if not 0 < len(text) <= MAX_FIELD:
                return None
            append(_HEADS[count] + _HEADS[len(text)] + text.hex())
        append(record)
        append("".join(images))  # type: ignore[arg-type]
    return bytes.fromhex("".join(parts))


def decode(data: bytes) -> list[Job]:
    """Each job of a job list, checked: lengths that add up to its end, job ids in strictly
    increasing order, each in its one encoding, a record id."""
    jobs: list[Job] = []
    h = data.hex()
    previous: str | None = None
    at, end = 0, len(data)
    while at < end:
        if at + 2 > end:
            raise IntegrityError("malformed tree leaf: an entry is cut short")
        count, length = data[at], data[at + 1]
        at += 2
        if length == 0:
            u = h[2 * at : 2 * at + 32]
            job_id = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
            at += 16
        else:
            try:
                job_id = data[at : at + length].decode("utf-8")
            except UnicodeDecodeError:
                raise IntegrityError("malformed tree leaf: a job id is not UTF-8") from None
            if is_uuid(job_id):
                raise IntegrityError("malformed tree leaf: a UUID job id kept as text")
            at += length
        first = 2 * at
        at += 32 * (count + 1)
        if at > end:
            raise IntegrityError("malformed tree leaf: an entry is cut short")
        record = h[first : first + ID_HEX]
        if record == NO_ID:
            raise IntegrityError("malformed tree leaf: a job without a record id")
        images: tuple[str | None, ...]
        images = tuple(_IDS.findall(h, first + ID_HEX, 2 * at)) if count else ()
        if NO_ID in images:
            images = tuple(None if image == NO_ID else image for image in images)
        if previous is not None and job_id <= previous:
            raise IntegrityError("malformed tree leaf: job ids out of order")
        jobs.append((job_id, record, images))
        previous = job_id
    return jobs
