"""`mjvault dupes`: groups of near-duplicate images, each with its best original marked.

Every pair of hashes within the level is found without comparing all pairs (docs/design.md,
"Similar images: search and groups"): the hash is cut into ``m`` blocks of at most
:data:`MAX_BLOCK_BITS` bits, and two hashes within distance ``d`` differ in at most
``r = ceil((d + 1) / m) - 1`` bits of at least one block (pigeonhole: were every block
``r + 1`` apart, the whole would be ``m (r + 1) > d``). For each block the rows are sorted
by its value and a dense table says where each value's run starts; each row looks up its own
value XOR every mask of at most ``r`` bits, and each candidate found is verified on the whole
hash. Exact: no pair within the level is missed. ``m`` and ``r`` are chosen by the expected
lookups and candidates.

Pairs are joined by a union-find over rows (numpy, in place): a row is one (image, part)
node, and a group is one component's images. A grid's quadrant within the level of another
image's whole (part 0) puts the grid in that image's group (an upscale and its tile); two
quadrants alone join nothing (sibling variations share a look, they are not copies). Rows
are never joined through the image they share: a grid's whole and each matched quadrant
stay apart, so a grid is in one group per picture it shows (joining them would put the
upscales of two different tiles in one group, and "keep the best" would drop a picture).

Nothing is deleted or changed: this only reads the hash store and the index.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from mjvault.errors import UsageError
from mjvault.reports import Report
from mjvault.similarity.hashing import MAX_LEVEL, WORDS, to_words
from mjvault.similarity.nearest import BACKFILL_HINT, NoHashes, job_of_image

if TYPE_CHECKING:
    from mjvault.vault import Vault

Progress = Callable[[int, int], None]  # (steps done, steps in all)

MAX_BLOCK_BITS = 22  # a block's dense table: 2**22 + 1 int32 starts (16 MB)
SLICE = 1 << 20  # rows (or table entries) a block table is built from at once
CHUNK_CANDIDATES = 1 << 18  # candidate pairs expanded at once (bounds the temporaries)
# Best original: the most pixels, then an upscale over a grid's tile, then this order.
KIND_RANK = {"png": 0, "webp": 1, "jpg": 2, "jpeg": 2}


@dataclass(frozen=True)
class Member(Report):
    object_id: str
    job_id: str
    index: int
    kind: str | None  # png, webp, jpg (None: not an image Pillow names)
    pixels: int  # width * height, 0 when unreadable
    upscaled: bool
    distance: int  # to the group's best
    # 0: the image itself is the near copy; 1-4: a grid, of which only that tile is (the
    # other three are other pictures: never a duplicate to clear out with the rest).
    tile: int = 0


@dataclass(frozen=True)
class Group(Report):
    members: list[Member]  # best first
    best: Member
    distance: int  # the largest distance of a member to the best

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the size is counted, the best member given by its object id.
        return {
            "size": len(self.members),
            "distance": self.distance,
            "best": self.best.object_id,
            "members": [m.to_json() for m in self.members],
        }


# -- pairs within a distance ---------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How the pairs are looked for: each hash word cut into ``cuts`` blocks, each block
    searched within ``radius`` bits."""

    cuts: int
    radius: int
    words: int

    @property
    def blocks(self) -> list[tuple[int, int, int]]:
        """(word, shift, bits) of each block; blocks never straddle two words."""
        sizes = [64 // self.cuts + (1 if k < 64 % self.cuts else 0) for k in range(self.cuts)]
        found = []
        for word in range(self.words):
            shift = 64
            for bits in sizes:
                shift -= bits
                found.append((word, shift, bits))
        return found

    @property
    def masks(self) -> int:
        return sum(len(flip_masks(bits, self.radius)) for _, _, bits in self.blocks)


def flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every value of ``bits`` bits with at most ``radius`` bits set, 0 first."""
    masks = [0]
    for count in range(1, radius + 1):
        masks += [sum(1 << b for b in chosen) for chosen in combinations(range(bits), count)]
    return np.array(masks, dtype=np.int64)


def plan_for(words: int, level: int, rows: int) -> Plan:
    """The cut with the fewest expected lookups plus candidates (uniform hashes)."""
    best: tuple[float, Plan] | None = None
    for cuts in range(math.ceil(64 / MAX_BLOCK_BITS), 65):
        blocks = words * cuts
        radius = max(0, math.ceil((level + 1) / blocks) - 1)
        small = 64 // cuts
        lookups = blocks * sum(math.comb(64 // cuts + 1, k) for k in range(radius + 1))
        cost = lookups * rows * (1 + rows / 2**small)
        if best is None or cost < best[0]:
            best = (cost, Plan(cuts, radius, words))
    assert best is not None
    return best[1]


def near_pairs(
    words: np.ndarray,
    parts: np.ndarray,
    level: int,
    progress: Progress | None = None,
    *,
    reorder: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Row pairs (i < j) whose hashes are within ``level`` bits, in batches; a pair may come
    more than once (from several blocks). Pairs of two quadrants (both parts > 0) are left
    out. ``reorder``: sort ``words`` and ``parts`` in place (no copy of them is made; their
    order is then lost to the caller).

    For each block the rows are sorted by its value, so a lookup's run of candidates is a
    contiguous range of rows and a chunk's lookups land near each other: the table, the
    rows and their words are read almost in order, not at random (at 3M rows a random
    read each was most of a mask's time)."""
    rows = len(words)
    plan = plan_for(words.shape[1], level, rows)
    if not reorder:
        words, parts = words.copy(), parts.copy()
    ids = np.arange(rows, dtype=np.int32)  # the caller's row number at each place
    total = plan.masks
    done = 0
    for word, shift, bits in plan.blocks:
        _sort_by_block(words, parts, ids, word, shift, bits)
        starts = _run_starts(words[:, word], shift, bits)
        mean = max(1.0, rows / (1 << bits))
        step = max(1024, int(CHUNK_CANDIDATES / mean))
        for mask in flip_masks(bits, plan.radius):
            for first in range(0, rows, step):
                values = _block_values(words[first : first + step, word], shift, bits)
                found = _candidates(values, starts, first, mask)
                if found is None:
                    continue
                i, j = found
                close = _distances(words, i, j) <= level
                close &= (parts[i] == 0) | (parts[j] == 0)
                if close.any():
                    a, b = ids[i[close]], ids[j[close]]
                    yield np.minimum(a, b), np.maximum(a, b)
            done += 1
            if progress is not None:
                progress(done, total)
        del starts


def _block_values(column: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """The block's value in each row of ``column`` (one word of each hash), as int64."""
    return ((column >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)


def _sort_by_block(
    words: np.ndarray, parts: np.ndarray, ids: np.ndarray, word: int, shift: int, bits: int
) -> None:
    """Reorder the rows (in place) by the block's value. Value and place are packed in one
    int64 and sorted in place, a slice at a time around it: no argsort index and workspace,
    no whole-column int64 copy (at 3M rows those were ~60 MB over the hashes)."""
    rows = len(words)
    both = np.empty(rows, np.int64)
    for first in range(0, rows, SLICE):
        end = min(rows, first + SLICE)
        both[first:end] = _block_values(words[first:end, word], shift, bits) << 32
        both[first:end] |= np.arange(first, end, dtype=np.int64)
    both.sort()
    order = np.empty(rows, np.int32)
    for first in range(0, rows, SLICE):
        order[first : first + SLICE] = both[first : first + SLICE] & 0xFFFFFFFF
    del both
    words[:] = words[order]
    parts[:] = parts[order]
    ids[:] = ids[order]


def _run_starts(column: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Where each block value's run starts among rows sorted by it (``2**bits + 1`` int32)."""
    values = np.empty(len(column), np.int32)
    for first in range(0, len(column), SLICE):
        values[first : first + SLICE] = _block_values(column[first : first + SLICE], shift, bits)
    starts = np.empty((1 << bits) + 1, np.int32)
    for first in range(0, len(starts), SLICE):
        end = min(len(starts), first + SLICE)
        starts[first:end] = np.searchsorted(values, np.arange(first, end, dtype=np.int32))
    return starts


def _candidates(
    values: np.ndarray, starts: np.ndarray, first: int, mask: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Places ``first…`` (whose block ``values`` are given), each paired with every place
    whose block is its own XOR ``mask`` (i < j): a contiguous run in the sorted rows."""
    end = first + len(values)
    looked = values ^ mask
    low = starts[looked]
    counts = starts[looked + 1] - low
    total = int(counts.sum())
    if not total:
        return None
    i = np.repeat(np.arange(first, end, dtype=np.int32), counts)
    ends = np.cumsum(counts)
    j = (np.arange(total, dtype=np.int64) - np.repeat(ends - counts - low, counts)).astype(np.int32)
    later = i < j
    return i[later], j[later]


def _distances(words: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    counts = np.bitwise_count(words[i] ^ words[j])
    return counts.sum(axis=1, dtype=np.int32)


class RowForest:
    """Union-find over row numbers, on numpy arrays: batches of pairs hook root to root
    (the larger onto the smaller) until every pair shares a root."""

    def __init__(self, rows: int) -> None:
        self.parent = np.arange(rows, dtype=np.int32)

    def _roots(self, rows: np.ndarray) -> np.ndarray:
        found = self.parent[rows]
        while True:
            up = self.parent[found]
            if np.array_equal(up, found):
                return found
            found = up

    def union(self, i: np.ndarray, j: np.ndarray) -> None:
        while len(i):
            ri, rj = self._roots(i), self._roots(j)
            apart = ri != rj
            if not apart.any():
                break
            i, j, ri, rj = i[apart], j[apart], ri[apart], rj[apart]
            np.minimum.at(self.parent, np.maximum(ri, rj), np.minimum(ri, rj))
        self.flatten()

    def flatten(self) -> np.ndarray:
        while True:
            up = self.parent[self.parent]
            if np.array_equal(up, self.parent):
                return self.parent
            self.parent = up


def row_components(
    words: np.ndarray,
    parts: np.ndarray,
    level: int,
    progress: Progress | None = None,
    *,
    reorder: bool = False,
) -> list[np.ndarray]:
    """The rows joined by pairs within ``level``, as arrays of row numbers (each >= 2 rows).
    ``reorder``: as :func:`near_pairs` (``words`` and ``parts`` are sorted in place)."""
    forest = RowForest(len(words))
    for i, j in near_pairs(words, parts, level, progress, reorder=reorder):
        forest.union(i, j)
    roots = forest.flatten()
    sizes = np.bincount(roots, minlength=len(roots))
    joined = np.flatnonzero(sizes[roots] > 1)
    if not len(joined):
        return []
    by_root = joined[np.argsort(roots[joined], kind="stable")]
    cuts = np.flatnonzero(np.diff(roots[by_root])) + 1
    return list(np.split(by_root, cuts))


def object_components(located: list[list[str]]) -> list[list[str]]:
    """Row components given as their images' ids, each of >= 2 images, sorted, once each.
    Components are not joined through an image they share: a grid's whole (part 0) and its
    quadrants are different pictures, so a grid may be in several groups (one per matched
    quadrant, one for its whole); components of the same images (a grid and its copy meet
    whole to whole and quadrant to quadrant) are one group."""
    found: dict[tuple[str, ...], None] = {}
    for objects in located:
        unique = tuple(sorted(set(objects)))
        if len(unique) > 1:
            found[unique] = None
    return [list(g) for g in found]


# -- groups of a vault ---------------------------------------------------------------------
def find_groups(
    vault: Vault, *, level: int, query: str | None = None, progress: Progress | None = None
) -> Iterator[Group]:
    """Near-duplicate groups among the vault's hashed images (those of jobs matching
    ``query`` when given), largest first, then by their best's job id."""
    from mjvault.similarity.store import HashStore

    if not 0 <= level <= MAX_LEVEL:  # (parse_level refuses it first; this is for callers)
        raise UsageError(f"similarity level {level}: a distance 0-{MAX_LEVEL}")
    # One snapshot for the scan, the lookups of its rows and the members' hashes: a writer
    # committing meanwhile would move the row numbers the pairs name.
    with HashStore.open(vault) as store, store.snapshot():
        if not len(store):
            raise NoHashes(f"the vault has no image hashes yet: {BACKFILL_HINT}")
        allowed = _images_of_query(vault, query) if query else None
        words, parts, rows = _load(store, allowed)
        components = row_components(words, parts, level, progress, reorder=True)
        del words
        joined = object_components(_located(store, rows, components))
        # Every member's hashes at once, each block read once (not a block per member).
        hashes = store.hashes_of_many(o for objects in joined for o in objects)
        groups = [_group(vault, hashes, objects) for objects in joined]
    found = [g for g in groups if g is not None]
    found.sort(key=lambda g: (-len(g.members), g.best.job_id))
    yield from found


def group_json_with_jobs(vault: Vault, group: Group) -> dict[str, Any]:
    """``group.to_json()`` with each member's job date (ISO 8601, UTC as ``Z``) and prompt:
    a group as ``GET /api/dupes`` and ``dupes --json`` give it."""
    doc = group.to_json()
    summaries = vault.current_index().get_many([m["job_id"] for m in doc["members"]])
    for member in doc["members"]:
        summary = summaries.get(member["job_id"])
        moment = summary.time if summary else None
        member["time"] = moment.isoformat().replace("+00:00", "Z") if moment else None
        member["prompt"] = summary.prompt if summary else ""
    return doc


def _images_of_query(vault: Vault, query: str) -> np.ndarray:
    """The images of the jobs ``query`` matches, as the sorted first 8 bytes of their ids:
    8 bytes an image however many match (a set of ids as text held ~100), and a false match
    needs two ids of the vault to share 64 bits."""
    from mjvault.index.query import parse_query
    from mjvault.index.search import iter_search

    found: list[np.ndarray] = []
    batch: list[str] = []
    for job_id in iter_search(vault.current_index(), parse_query(query)):
        batch.append(job_id)
        if len(batch) >= 4096:
            found.append(_prefixes(_images_of_jobs(vault, batch)))
            batch = []
    found.append(_prefixes(_images_of_jobs(vault, batch)))
    return np.unique(np.concatenate(found))


def _prefixes(object_ids: Iterable[str]) -> np.ndarray:
    return np.array([int(i[:16], 16) for i in object_ids], dtype=np.uint64)


def _images_of_jobs(vault: Vault, job_ids: list[str]) -> Iterator[str]:
    # Brought current by the search that found these jobs (_images_of_query).
    for summary in vault.open_index().get_many(job_ids).values():
        yield from (i for i in summary.images if i is not None)


def _load(store: Any, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's words and part (those of ``allowed`` images only, when given), and the
    row numbers they came from: filled into arrays of the store's size, not gathered in a
    list and joined (which held every row twice)."""
    size = len(store)
    words = np.empty((size, WORDS), np.uint64)
    parts = np.empty(size, np.uint8)
    rows = np.empty(size, np.int32)
    filled = 0
    for block in store.blocks():
        if allowed is None:
            keep = np.arange(len(block.parts))
        else:
            prefixes = _prefixes(block.images())
            at = np.minimum(np.searchsorted(allowed, prefixes), max(0, len(allowed) - 1))
            keep = np.flatnonzero(allowed[at] == prefixes) if len(allowed) else at[:0]
        count = min(len(keep), size - filled)  # (a store written meanwhile: its first rows)
        if not count:
            continue
        keep = keep[:count]
        words[filled : filled + count] = block.words[keep]
        parts[filled : filled + count] = block.parts[keep]
        rows[filled : filled + count] = keep + block.start
        filled += count
    return words[:filled], parts[:filled], rows[:filled]


def _located(store: Any, rows: np.ndarray, components: list[np.ndarray]) -> list[list[str]]:
    """Each component's images: one :meth:`locate` of all their rows in store order (each
    block read once), not one per component (which reread a block each: 20k groups took
    ~20 times the pair search)."""
    if not components:
        return []
    every = rows[np.concatenate(components)]
    order = np.argsort(every, kind="stable")
    ids: list[str] = [""] * len(every)
    for place, (object_id, _) in zip(
        order.tolist(), store.locate(every[order].tolist()), strict=True
    ):
        ids[place] = object_id
    out: list[list[str]] = []
    first = 0
    for component in components:
        out.append(ids[first : first + len(component)])
        first += len(component)
    return out


def _group(vault: Vault, hashes_of: dict[str, list[bytes]], objects: list[str]) -> Group | None:
    """The group of ``objects`` shown by jobs of HEAD (None when fewer than two are)."""
    described: list[tuple[Member, np.ndarray]] = []
    for object_id in objects:
        place = job_of_image(vault, object_id)
        hashes = hashes_of.get(object_id)
        if place is None or not hashes:
            continue
        summary, index = place
        kind, pixels = _kind_and_pixels(vault, summary.kinds, index, object_id)
        member = Member(object_id, summary.job_id, index, kind, pixels, _upscaled(summary.type), 0)
        described.append((member, to_words(hashes)))
    if len(described) < 2:
        return None
    described = _tiles_marked(described)
    described.sort(key=lambda d: _rank(d[0]))
    best_words = described[0][1]
    members = [
        Member(**{**m.__dict__, "distance": _part_distance(w, best_words)}) for m, w in described
    ]
    return Group(members, members[0], max(m.distance for m in members))


def _tiles_marked(described: list[tuple[Member, np.ndarray]]) -> list[tuple[Member, np.ndarray]]:
    """Each grid that is in the group by one of its quadrants, not as a whole, marked with
    that tile: it shows three other pictures too, so it is never offered as a copy to clear
    out, and it is ranked by the tile's pixels (a quarter of the grid's), so an upscale of
    the tile is the better original."""
    wholes = [w[0] for m, w in described if len(w) == 1]
    marked = []
    for member, words in described:
        if len(words) > 1 and wholes:
            nearest = [
                min(int(np.bitwise_count(row ^ whole).sum()) for whole in wholes) for row in words
            ]
            tile = min(range(len(nearest)), key=nearest.__getitem__)
            if tile:
                member = replace(member, tile=tile, pixels=member.pixels // 4)
        marked.append((member, words))
    return marked


def _rank(member: Member) -> tuple[int, int, int, str, int]:
    """Best original first: most pixels, upscaled, PNG over WebP over JPEG, then by job."""
    kind = KIND_RANK.get(member.kind or "", len(KIND_RANK))
    return (-member.pixels, 0 if member.upscaled else 1, kind, member.job_id, member.index)


def _part_distance(a: np.ndarray, b: np.ndarray) -> int:
    """The least distance between two images' hashes, a quadrant only against a whole."""
    best: int | None = None
    for x, row_a in enumerate(a):
        for y, row_b in enumerate(b):
            if x and y:
                continue
            d = int(np.bitwise_count(row_a ^ row_b).sum())
            best = d if best is None else min(best, d)
    return best or 0


def _upscaled(job_type: str) -> bool:
    return "upscale" in job_type or "upsample" in job_type


def _kind_and_pixels(
    vault: Vault, kinds: tuple[str | None, ...] | None, index: int, object_id: str
) -> tuple[str | None, int]:
    """The image's type and size from its header: the file itself when the object is the
    raw image, else the object read whole (framed or sealed)."""
    from PIL import Image, UnidentifiedImageError

    store = vault.store
    raw = kinds is not None and index < len(kinds) and kinds[index] is not None
    try:
        if raw and store.is_loose(object_id):
            with Image.open(store.path(object_id)) as image:
                return _kind(image.format), image.width * image.height
        with Image.open(io.BytesIO(store.read(object_id))) as image:
            return _kind(image.format), image.width * image.height
    except (OSError, UnidentifiedImageError, ValueError):
        return None, 0


def _kind(pillow_format: str | None) -> str | None:
    names = {"PNG": "png", "WEBP": "webp", "JPEG": "jpg"}
    return names.get(pillow_format or "", (pillow_format or "").lower() or None)


__all__ = [
    "Group",
    "Member",
    "Plan",
    "RowForest",
    "find_groups",
    "flip_masks",
    "group_json_with_jobs",
    "near_pairs",
    "object_components",
    "plan_for",
    "row_components",
]
