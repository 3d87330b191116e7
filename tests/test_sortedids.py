"""The external sort verify uses to look records up in key order (mjvault.integrity.sortedids)."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.integrity import sortedids
from mjvault.integrity.sortedids import SortedIds


def some_ids(count: int, repeat_every: int, seed: int) -> list[bytes]:
    """``count`` ids, every ``repeat_every``-th one a repeat of an earlier one (as records
    shared by leaves of two snapshots), the extremes among them."""
    rng = random.Random(seed)
    added = [bytes(32), b"\xff" * 32][: count % 3]
    while len(added) < count:
        added.append(rng.choice(added) if added and len(added) % repeat_every == 0
                     else rng.randbytes(32))  # fmt: skip
    return added


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 600), st.integers(1, 10), st.integers(0, 2**32),
       st.integers(min_value=1, max_value=60), st.integers(min_value=1, max_value=9))  # fmt: skip
def test_drain_gives_every_id_once_in_order(
    count: int, repeat_every: int, seed: int, run: int, block: int
) -> None:
    added = some_ids(count, repeat_every, seed)
    # Runs and blocks of a few ids: many runs, each read in many blocks, merged in batches.
    with mock.patch.object(sortedids, "BLOCK", block):
        collected = SortedIds(run)
        for object_id in added:
            collected.add(object_id)
        assert collected.added == len(added)
        assert list(collected.drain()) == sorted(set(added))


def test_full_runs_go_to_a_temporary_file_that_is_gone_after_the_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opened: list[Any] = []
    original = tempfile.TemporaryFile

    def recorded(*args: Any, **kwargs: Any) -> Any:
        handle = original(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(tempfile, "TemporaryFile", recorded)
    added = [os.urandom(32) for _ in range(1000)]
    collected = SortedIds(64)
    for object_id in added:
        collected.add(object_id)
    assert len(opened) == 1 and not opened[0].closed
    # 15 runs of 64 ids written out, 40 still in memory.
    assert os.fstat(opened[0].fileno()).st_size == 15 * 64 * 32
    assert list(collected.drain()) == sorted(added)
    assert opened[0].closed
    assert list(tmp_path.iterdir()) == []


def test_without_room_for_the_temporary_file_the_ids_stay_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_room(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_room)
    added = [os.urandom(32) for _ in range(500)]
    collected = SortedIds(16)
    for object_id in added:
        collected.add(object_id)
    assert list(collected.drain()) == sorted(added)


def test_a_run_cut_short_is_an_error_not_a_shorter_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    collected = SortedIds(8)
    for _ in range(20):
        collected.add(os.urandom(32))
    spill = collected._spill
    assert spill is not None
    os.ftruncate(spill.fileno(), 8 * 32 + 5)
    with pytest.raises(OSError, match="cut short"):
        list(collected.drain())
    assert spill.closed


def test_an_id_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError):
        SortedIds().add(b"\x01" * 31)


def test_the_default_run_is_read_when_the_sort_begins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sortedids, "RUN", 4)
    collected = SortedIds()
    for n in range(10):
        collected.add(bytes([n]) * 32)
    assert len(collected._runs) == 2
    assert list(collected.drain()) == [bytes([n]) * 32 for n in range(10)]
