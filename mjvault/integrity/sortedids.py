"""Object ids put in ascending order in bounded memory: an external sort.

For a pass that asks the pack map about every record a tree names (verify). Asked in the
tree's order, each lookup lands on a random page of the map, and keeping the map's resident
set flat means letting go of those pages every few lookups, so nearly every lookup faulted
its path in again (2.4 million page faults for a million records). Asked in key order, the
lookups walk the map's B-tree front to back and each of its pages is faulted in about once.

Ids are gathered in runs of :data:`RUN`; each full run is sorted and written to an unnamed
temporary file (32 bytes an id, gone when closed or when the process dies); reading merges
the runs. Memory: one run, plus one block per run while merging.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

ID_SIZE = 32
# Ids held in memory before a run is sorted and written out: ~5 MB as Python bytes.
RUN = 1 << 16
# Ids read from a run at a time while merging (64 KB).
BLOCK = 2048


class SortedIds:
    """Collect 32-byte ids with :meth:`add`, then :meth:`drain` them once: ascending, each once."""

    def __init__(self, run: int | None = None) -> None:
        self._run = run or RUN
        self._pending: list[bytes] = []
        self._spill: BinaryIO | None = None
        self._runs: list[tuple[int, int]] = []  # (offset, ids) in the spill file
        self._spilled = 0  # bytes written to the spill file
        self.added = 0

    def add(self, object_id: bytes) -> None:
        if len(object_id) != ID_SIZE:
            raise ValueError(f"an object id is {ID_SIZE} bytes, not {len(object_id)}")
        self._pending.append(object_id)
        self.added += 1
        if len(self._pending) >= self._run:
            self._write_run()

    def _write_run(self) -> None:
        run = sorted(set(self._pending))
        try:
            if self._spill is None:
                # Open across calls: closed by drain() or close().
                self._spill = tempfile.TemporaryFile(prefix="mjvault-ids-")  # noqa: SIM115
            self._spill.seek(self._spilled)
            self._spill.write(b"".join(run))
            self._spill.flush()
        except OSError:
            # No room in the temporary directory: keep the ids in memory instead (correct,
            # only not flat), and try again once twice as many have come.
            self._run *= 2
            return
        self._runs.append((self._spilled, len(run)))
        self._spilled += len(run) * ID_SIZE
        self._pending.clear()

    def drain(self) -> Iterator[bytes]:
        """Every id added, once, in ascending order. The spill file is closed at the end."""
        try:
            last = sorted(set(self._pending))
            self._pending = []
            blocks = [self._read_run(offset, count) for offset, count in self._runs]
            if not blocks:
                yield from last
                return
            blocks.append(last[start : start + BLOCK] for start in range(0, len(last), BLOCK))
            for batch in _merged(blocks):
                yield from batch
        finally:
            self.close()

    def _read_run(self, offset: int, count: int) -> Iterator[list[bytes]]:
        """A run's ids, a block at a time."""
        assert self._spill is not None
        fd = self._spill.fileno()
        end = offset + count * ID_SIZE
        while offset < end:
            block = os.pread(fd, min(BLOCK * ID_SIZE, end - offset), offset)
            if not block or len(block) % ID_SIZE:
                raise OSError("the temporary file of sorted ids was cut short")
            offset += len(block)
            yield [block[start : start + ID_SIZE] for start in range(0, len(block), ID_SIZE)]

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._runs = []


def _merged(runs: list[Iterator[list[bytes]]]) -> Iterator[list[bytes]]:
    """Ascending batches of the ids of ``runs`` (each sorted, without repeats, given in
    blocks), each id once. A batch is every id, of every run's current block, up to the
    smallest of those blocks' last ids: no later block holds one as small, and at least one
    block is used up per batch. Sorting a batch merges its presorted pieces in C, where a
    heap merge would take a Python step per id."""
    heads: list[tuple[list[bytes], int, Iterator[list[bytes]]]] = []
    for run in runs:
        block = next(run, None)
        if block:
            heads.append((block, 0, run))
    while heads:
        bound = min(block[-1] for block, _, _ in heads)
        batch: list[bytes] = []
        following = []
        for block, at, run in heads:
            cut = bisect.bisect_right(block, bound, at)
            batch += block[at:cut]
            if cut < len(block):
                following.append((block, cut, run))
            elif (more := next(run, None)) is not None and more:
                following.append((more, 0, run))
        heads = following
        batch.sort()
        # Runs share ids (the same record in leaves of two snapshots): equal ids are now
        # side by side, and dict keeps the first of each in order.
        yield list(dict.fromkeys(batch))
