"""`mjvault similar`: the images nearest to one by perceptual-hash distance.

A query is one streamed pass over the hash store (docs/design.md, "Similar images: search and
groups"): each block's words are XORed with the query's and counted with ``np.bitwise_count``,
and only the rows at or under the best distances so far are kept. Memory is one block and the
kept rows, whatever the store's size; object ids are decoded for the hits only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mjvault.errors import JobNotFound, MjvaultError, UsageError
from mjvault.reports import Report

if TYPE_CHECKING:
    from mjvault.index.db import JobSummary
    from mjvault.vault import Vault

# Kept rows beyond ``limit`` when many tie at the cut (identical copies of one image): the
# order among equals is settled by job time, which only the index knows.
TIE_ROOM = 256
BACKFILL_HINT = "run `mjvault thumbs` first (it makes the images' hashes with their thumbnails)"


class NoHashes(MjvaultError):
    """The vault (or the asked image) has no perceptual hashes yet."""


class HashBlock(Protocol):
    """What a scan reads of the store's ``Block``: rows ``start…`` with their words."""

    @property
    def start(self) -> int: ...

    @property
    def words(self) -> np.ndarray: ...

    @property
    def parts(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit(Report):
    object_id: str
    part: int  # which hash of the image matched: 0 the whole, 1-4 a grid's quadrant
    distance: int
    job_id: str
    index: int  # the image's position in its job


def popcount_distances(words: np.ndarray, one: np.ndarray) -> np.ndarray:
    """Hamming distance of each row of ``words`` (n, W) to ``one`` (W,), as int32."""
    xored = np.bitwise_xor(words, one)
    counts = np.bitwise_count(xored)
    if counts.ndim == 1:
        return counts.astype(np.int32)
    return counts.sum(axis=1, dtype=np.int32)


def block_distances(block: HashBlock, targets: np.ndarray) -> np.ndarray:
    """Each row's distance to the target: ``targets`` is one hash ``(WORDS,)``, or an
    image's hashes by part ``(k, WORDS)`` (a grid's whole, then its quadrants). The whole is
    compared with every row; a quadrant only with wholes (part 0), as dupes pairs them (two
    quadrants are sibling variations, not copies); a row keeps its least distance."""
    if targets.ndim == 1 or len(targets) == 1:
        return popcount_distances(block.words, targets.reshape(-1, targets.shape[-1])[0])
    found = popcount_distances(block.words, targets[0])
    wholes = np.flatnonzero(block.parts == 0)
    if len(wholes):
        words = block.words[wholes]
        for quadrant in targets[1:]:
            found[wholes] = np.minimum(found[wholes], popcount_distances(words, quadrant))
    return found


def scan(
    blocks: Iterable[HashBlock], one: np.ndarray, keep: int, *, max_distance: int | None = None
) -> list[tuple[int, int]]:
    """(row, distance) of the ``keep`` nearest rows, and of every row tied with the last of
    them (up to TIE_ROOM more), nearest first, rows in store order among equals. ``one``:
    a hash, or an image's hashes by part (:func:`block_distances`), still one pass."""
    rows = np.empty(0, dtype=np.int64)
    dists = np.empty(0, dtype=np.int32)
    cut = max_distance if max_distance is not None else None
    for block in blocks:
        found = block_distances(block, one)
        chosen = np.flatnonzero(found <= cut) if cut is not None else np.arange(len(found))
        if not len(chosen):
            continue
        rows = np.concatenate((rows, chosen.astype(np.int64) + block.start))
        dists = np.concatenate((dists, found[chosen]))
        if len(rows) > keep:
            # The keep-th smallest distance: rows above it can never be wanted again.
            kth = int(np.partition(dists, keep - 1)[keep - 1])
            cut = kth if cut is None else min(cut, kth)
            within = dists <= cut
            rows, dists = rows[within], dists[within]
            if len(rows) > keep + TIE_ROOM:
                order = np.lexsort((rows, dists))[: keep + TIE_ROOM]
                rows, dists = rows[order], dists[order]
    order = np.lexsort((rows, dists))
    return [(int(rows[i]), int(dists[i])) for i in order]


# The most rows a search keeps from its scan when hashes of forgotten images crowd out the
# live ones (see nearest): a few MB, whatever the store's size.
MAX_KEEP = 32_768


def nearest(
    vault: Vault, words: np.ndarray, limit: int = 20, *, max_distance: int | None = None
) -> list[Hit]:
    """The images nearest to ``words`` (one hash ``(WORDS,)``, or an image's hashes by part
    ``(k, WORDS)``: a grid's quadrants then meet the upscales of its tiles), best first, ties
    by (job time, job id). One hit per image: its best-matching part (a grid hit by its
    quadrant says which)."""
    from mjvault.similarity.store import HashStore

    # One snapshot for the scan and the lookup of its rows: a writer committing meanwhile
    # would move the row numbers the scan found.
    with HashStore.open(vault) as store, store.snapshot():
        if not len(store):
            raise NoHashes(f"the vault has no image hashes yet: {BACKFILL_HINT}")
        # Rows of one image (its parts) may fill several places: keep room for them. Rows
        # of images no job of HEAD shows (a forgotten image's hash lingers until pruned)
        # are dropped after the scan: while they leave fewer than ``limit``, and rows were
        # left out, scan again keeping more, up to MAX_KEEP rows (beyond, a store that is
        # mostly forgotten images answers fewer hits rather than hold every row: its rows,
        # their ids and their jobs' lookups were ~500 MB at a million).
        keep = limit * 5
        while True:
            found = scan(store.blocks(), words, keep, max_distance=max_distance)
            located = store.locate(row for row, _ in found)
            best: dict[str, tuple[int, int]] = {}  # object id -> (distance, part)
            for (object_id, part), (_, distance) in zip(located, found, strict=True):
                if object_id not in best or distance < best[object_id][0]:
                    best[object_id] = (distance, part)
            hits = _hits(vault, best, limit)
            if len(hits) >= limit or len(found) < keep or keep >= min(len(store), MAX_KEEP):
                return hits
            keep = min(keep * 4, MAX_KEEP)


def _hits(vault: Vault, best: dict[str, tuple[int, int]], limit: int) -> list[Hit]:
    """Hits for the images of ``best`` shown by a job of HEAD (a forgotten one's hash may
    linger until the store is pruned), sorted and cut to ``limit``."""
    ranked: list[tuple[int, int, str, Hit]] = []
    for object_id, (distance, part) in best.items():
        place = job_of_image(vault, object_id)
        if place is None:
            continue
        summary, position = place
        hit = Hit(object_id, part, distance, summary.job_id, position)
        ranked.append((distance, summary.micros, summary.job_id, hit))
    ranked.sort(key=lambda r: (r[0], r[1], r[2], r[3].index))
    return [r[3] for r in ranked[:limit]]


def job_of_image(vault: Vault, object_id: str) -> tuple[JobSummary, int] | None:
    """The earliest job (by time, then id) showing the image, and the image's place in it."""
    index = vault.current_index()
    jobs = index.get_many(index.jobs_with_image(object_id))
    if not jobs:
        return None
    summary = min(jobs.values(), key=lambda s: (s.micros, s.job_id))
    return summary, summary.images.index(object_id)


def target_image(vault: Vault, target: str) -> str:
    """The object id ``JOB_ID[:INDEX]`` names (a job id or a unique prefix, as `show`)."""
    job_part, _, index_part = target.partition(":")
    if index_part and not (index_part.isascii() and index_part.isdigit()):  # not "²"
        raise UsageError(f"{target}: INDEX after ':' must be a number (0 for the first image)")
    entry = vault.find_job(job_part)
    position = int(index_part or 0)
    images = entry.images
    if position >= len(images):
        raise UsageError(f"job {entry.job_id} has {len(images)} image(s): no index {position}")
    object_id = images[position]
    if object_id is None:
        raise UsageError(f"job {entry.job_id} has no stored image at index {position}")
    return object_id


def similar_to(vault: Vault, target: str, limit: int = 20) -> list[Hit]:
    """The images nearest to ``target``: ``JOB_ID[:INDEX]`` or an image file's path. An
    image of the vault comes first itself (distance 0), before exact copies of it."""
    from mjvault.similarity.hashing import hashes_of_bytes, to_words
    from mjvault.similarity.store import HashStore

    path = Path(target)
    object_id: str | None = None
    # A file first: its name may hold a ':' ("shot 12:30.png"), which no job id does.
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {target}: {exc.strerror or exc}") from None
        hashes = hashes_of_bytes(data)
        if not hashes:
            raise UsageError(f"{target} is not an image this program can read")
    else:
        try:
            object_id = target_image(vault, target)
        except JobNotFound:
            if path.exists() or "/" in target or "." in target:
                raise UsageError(f"{target}: no such image file or job in the vault") from None
            raise
        with HashStore.open(vault) as store:
            stored = store.hashes_of(object_id)
            empty = not len(store)
        if not stored:
            if not empty and hashes_of_bytes(vault.read_object(object_id)) is None:
                # A video or a damaged file: `thumbs` would never hash it either.
                raise NoHashes(
                    f"{target} is not an image this program can read (a video or a damaged "
                    "file): it has no perceptual hash"
                )
            what = "the vault has no image hashes yet" if empty else "that image has no hash yet"
            raise NoHashes(f"{what}: {BACKFILL_HINT}")
        hashes = stored
    # Every hash of a grid of the vault: its whole finds copies of the grid, its quadrants
    # the upscales of its tiles (in the same pass).
    hits = nearest(vault, to_words(hashes), limit + 1)
    if object_id is not None:
        others = [h for h in hits if h.object_id != object_id]
        place = job_of_image(vault, object_id)
        if place is not None:  # first even behind more exact copies than ``limit``
            summary, position = place
            others.insert(0, Hit(object_id, 0, 0, summary.job_id, position))
        hits = others
    return hits[:limit]


__all__ = ["Hit", "NoHashes", "job_of_image", "nearest", "popcount_distances", "scan", "similar_to"]
