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

import heapq
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
            sources = [self._read_run(offset, count) for offset, count in self._runs]
            if not sources:
                yield from last
                return
            sources.append(iter(last))
            previous = b""
            for object_id in heapq.merge(*sources):
                if object_id != previous:
                    previous = object_id
                    yield object_id
        finally:
            self.close()

    def _read_run(self, offset: int, count: int) -> Iterator[bytes]:
        assert self._spill is not None
        fd = self._spill.fileno()
        end = offset + count * ID_SIZE
        while offset < end:
            block = os.pread(fd, min(BLOCK * ID_SIZE, end - offset), offset)
            if not block or len(block) % ID_SIZE:
                raise OSError("the temporary file of sorted ids was cut short")
            offset += len(block)
            for start in range(0, len(block), ID_SIZE):
                yield block[start : start + ID_SIZE]

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._runs = []
