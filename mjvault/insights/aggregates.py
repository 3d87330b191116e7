"""The counters the index keeps for insights (table ``insights``, docs/FORMAT.md §9.3).

Every counter is a sum over jobs of what each job contributes (:func:`contributions`), so the
index keeps them exact by the same diff as the rest: :meth:`mjvault.index.db.Index.apply`
subtracts the contribution a job had and adds the one it has, in the transaction that writes
the job itself (a group stopped midway leaves counters and jobs agreeing, and applying it again
finds nothing left to add). A filtered document sums the same contributions over the matching
jobs only, so both answers share one definition.

Keys are text, fields separated by a tab (no term, month or job id holds one):

- ``jobs``, ``images``, ``undated``: totals;
- ``d <day>`` jobs and ``di <day>`` images a day (``YYYY-MM-DD``, UTC);
- ``hw <hour> <weekday>``: jobs by hour of day and weekday (0 = Monday);
- ``mi <minute>``: jobs a minute since the epoch (12 digits: keys sort by time), for sessions;
- ``mv <month> <model>``, ``mp <month> <param>``, ``ml <month>`` (prompt words, summed),
  ``mg <month>`` (grids), ``mf <month>`` (jobs that follow another);
- ``g <job id>``: 1 for a grid, plus 2 for each job that names it as its parent, so a grid
  was followed exactly when its counter is odd and above 1;
- ``lk <month>``, ``rf <month>`` (jobs whose record tells like or rank), ``rk <month> <rank>``;
- ``tm <month> <term>``: jobs whose prompt holds the term;
- ``c <month> <type> <speed> <model> <quality> <video> <draft>``: jobs, priced by the cost
  table when the document is made (so a new table needs no rebuild).

Undated jobs have the month ``-`` and no day, hour or minute.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgpack

from mjvault.find.stats import _telling, version_label
from mjvault.index.bitmaps import SEP
from mjvault.text import search_tokens

if TYPE_CHECKING:
    import lmdb

    from mjvault.index.db import JobSummary, Layout

TABLE = b"insights"
UNDATED = "-"
# Parameters whose use is followed month by month: canonical names (mjvault/params.py), and
# the names the document shows them by.
PARAMS = {
    "ar": "ar",
    "stylize": "stylize",
    "chaos": "chaos",
    "quality": "quality",
    "weird": "weird",
    "tile": "tile",
    "raw": "raw",
    "sref": "sref",
    "cref": "cref",
    "personalize": "p",
    "draft": "draft",
    "motion": "motion",
}
SPEEDS = ("turbo", "fast", "relax")  # a job's mode, when its command names one
_COUNT = struct.Struct(">q")
MAX_KEY = 480  # LMDB keys are at most 511 bytes


def month_of(summary: JobSummary) -> str:
    return summary.time.strftime("%Y-%m") if summary.time is not None else UNDATED


def speed_of(params: dict[str, str]) -> str:
    return next((mode for mode in SPEEDS if mode in params), "unknown")


def is_grid(summary: JobSummary) -> bool:
    return summary.type.lower() == "grid"


def contributions(summary: JobSummary) -> Counter[str]:
    """What one job adds to every counter it is in."""
    out: Counter[str] = Counter()
    images = sum(1 for image in summary.images if image is not None)
    month = month_of(summary)
    out["jobs"] += 1
    out["images"] += images
    when = summary.time
    if when is None:
        out["undated"] += 1
    else:
        day = when.strftime("%Y-%m-%d")
        out[f"d\t{day}"] += 1
        out[f"di\t{day}"] += images
        out[f"hw\t{when.hour}\t{when.weekday()}"] += 1
        out[f"mi\t{int(when.timestamp()) // 60:012d}"] += 1
    params = summary.params
    model = version_label(params)
    out[f"mv\t{month}\t{model}"] += 1
    for name in params:
        shown = PARAMS.get(name)
        if shown is not None:
            out[f"mp\t{month}\t{shown}"] += 1
    out[f"ml\t{month}"] += summary.length
    if is_grid(summary):
        out[f"mg\t{month}"] += 1
        out[f"g\t{summary.job_id}"] += 1
    if summary.parent:
        out[f"mf\t{month}"] += 1
        out[f"g\t{summary.parent}"] += 2
    if summary.liked is not None or summary.ranking is not None:
        out[f"rf\t{month}"] += 1
    if summary.liked:
        out[f"lk\t{month}"] += 1
    if summary.ranking is not None:
        out[f"rk\t{month}\t{summary.ranking}"] += 1
    for term in set(search_tokens(summary.prompt)):
        if _telling(term) and "\t" not in term:
            out[f"tm\t{month}\t{term}"] += 1
    quality = params.get("quality", "1")
    draft = "draft" if "draft" in params else "-"
    video = "video" if summary.video else "-"
    out[
        f"c\t{month}\t{summary.type}\t{speed_of(params)}\t{model}\t{quality}\t{video}\t{draft}"
    ] += 1
    return +out  # no zero counters (a job with no images adds none)


def difference(old: JobSummary | None, new: JobSummary | None) -> Counter[str]:
    """What changes when ``old`` becomes ``new`` (either None: the job comes or goes)."""
    delta: Counter[str] = Counter()
    if new is not None:
        delta.update(contributions(new))
    if old is not None:
        delta.subtract(contributions(old))
    return Counter({k: v for k, v in delta.items() if v})


def _stored_key(layout: Layout, key: str) -> bytes:
    raw = key.encode("utf-8")
    if layout.sealer is not None:
        return layout.sealer.token(TABLE, raw)
    if len(raw) > MAX_KEY:  # a long parent id or term: cut, as the lists cut their parts
        raw = raw[:MAX_KEY]
    return raw


def write(txn: lmdb.Transaction, db: Any, layout: Layout, delta: Counter[str]) -> None:
    """Add ``delta`` to the kept counters in ``txn`` (a counter that reaches 0 goes)."""
    sealer = layout.sealer
    for key, change in sorted(delta.items()):
        if not change:
            continue
        stored = _stored_key(layout, key)
        current = txn.get(stored, db=db)
        value = 0
        if current is not None:
            value = _open(layout, stored, current)[1]
        value += change
        if value == 0:
            txn.delete(stored, db=db)
        elif sealer is None:
            txn.put(stored, _COUNT.pack(value), db=db)
        else:
            packed = msgpack.packb([key, value])
            txn.put(stored, sealer.seal(packed, TABLE + SEP + stored), db=db)


def _open(layout: Layout, stored: bytes, value: bytes | memoryview) -> tuple[str, int]:
    if layout.sealer is None:
        return bytes(stored).decode("utf-8", "replace"), _COUNT.unpack(bytes(value))[0]
    key, count = msgpack.unpackb(layout.sealer.open(value, TABLE + SEP + bytes(stored)))
    return str(key), int(count)


def read(txn: lmdb.Transaction, db: Any, layout: Layout) -> Iterator[tuple[str, int]]:
    """Every kept counter: in key order in a plain index, in token order in a sealed one."""
    for stored, value in txn.cursor(db=db):
        yield _open(layout, bytes(stored), value)


def recompute(summaries: Iterable[JobSummary]) -> Counter[str]:
    """The counters of ``summaries`` summed afresh: what the kept ones must equal."""
    total: Counter[str] = Counter()
    for summary in summaries:
        total.update(contributions(summary))
    return total


def count(txn: lmdb.Transaction, db: Any, layout: Layout, key: str) -> int:
    """One kept counter (``jobs``, ``images`` …), 0 when absent: a lookup, not a walk."""
    stored = _stored_key(layout, key)
    value = txn.get(stored, db=db)
    return _open(layout, stored, value)[1] if value is not None else 0
