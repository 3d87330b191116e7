"""A large change to the index is committed in several LMDB transactions (bounded memory);
one stopped between two of them is finished from the two trees it names, never trusted and
never answered with a rebuild of every job.

Indexes are compared as what they say, not byte for byte: a job's document number depends on
the order jobs came in (and a stopped update may leave a number no job has), so lists are
compared as the job ids they hold among the live ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from pyroaring import BitMap

from mjvault import Vault
from mjvault.index import JobSummary
from mjvault.index.db import LIST_TABLES, Index
from tests.conftest import png_bytes, record_json

SMALL_TXN = 200  # keys per transaction in these tests: a few jobs each
SMALL_GROUP = 10  # jobs gathered before their lists are written


def add_jobs(vault: Vault, start: int, count: int) -> str:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n:04}", f"a red fox number {n} in snow"), [image])
    head = vault.head()
    assert head is not None
    return head.tree


def dump(index: Index) -> dict[bytes, Any]:
    """Every table as job ids: what the index says, whatever numbers its jobs were given."""
    with index.reader() as reader:
        live = reader.live()
        names = {doc: job_id for _, doc, job_id in reader.docs(live)}
        assert len(names) == len(live) == reader.job_count()

        def jobs(docs: BitMap) -> list[bytes]:
            return sorted(names[doc] for doc in docs & live)

        tables: dict[bytes, Any] = {
            table: {part: jobs(reader.posting_list(table, part)) for part in parts}
            for table in LIST_TABLES
            if (parts := list(reader.parts_with_prefix(table, b"")))
        }
        tables[b"days"] = {day: jobs(docs) for day, docs in reader.days() if docs & live}
        tables[b"times"] = {job_id: micros for micros, _, job_id in reader.docs(live)}
    with index.env.begin() as txn:
        for name in (b"meta", b"images"):
            tables[name] = {bytes(k): bytes(v) for k, v in txn.cursor(db=index.db[name])}
        tables[b"meta"].pop(b"next_doc", None)
        summaries = {bytes(k): msgpack.unpackb(v) for k, v in txn.cursor(db=index.db[b"jobs"])}
    for summary in summaries.values():
        assert summary.pop("n") in names
    tables[b"jobs"] = summaries
    return tables


def changes(vault: Vault, old: str, new: str) -> list[tuple[str, JobSummary | None]]:
    return [
        (job_id, JobSummary.of(entry, vault.job(entry)) if entry else None)
        for job_id, _, entry in vault.tree.diff(old, new)
    ]


def stopping_after(items: Iterable[tuple[str, JobSummary | None]], count: int) -> Iterator:
    for n, item in enumerate(items):
        if n == count:
            raise KeyboardInterrupt
        yield item


@pytest.fixture
def small_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mjvault.index.db.POSTINGS_PER_TXN", SMALL_TXN)
    monkeypatch.setattr("mjvault.index.db.GROUP_JOBS", SMALL_GROUP)


def test_a_split_apply_gives_the_same_index_as_one_transaction(
    tmp_path: Path, small_transactions: None
) -> None:
    with Vault.init(tmp_path / "v") as vault:
        first = add_jobs(vault, 0, 40)
        second = add_jobs(vault, 40, 60)  # one checkpoint: many transactions
        split = dump(vault.current_index())
        assert (
            vault.current_index().indexed_tree() == second
            and vault.current_index().interrupted() is None
        )
        vault.rebuild_index()
        assert dump(vault.current_index()) == split
        assert len(vault.current_index().search(words=["fox"])) == 100
        assert first != second


def test_an_apply_stopped_between_transactions_is_finished_not_rebuilt(
    tmp_path: Path, small_transactions: None
) -> None:
    with Vault.init(tmp_path / "v") as vault:
        old = add_jobs(vault, 0, 40)
        new = add_jobs(vault, 40, 60)
        expected = dump(vault.current_index())
        index = vault.current_index()
        assert vault.sync_index(old) == 60  # back to the first tree, as before the checkpoint
        diff = changes(vault, old, new)
        with pytest.raises(KeyboardInterrupt):
            index.apply(stopping_after(diff, 45), new)
        # Neither tree: some jobs are new already, others not yet.
        assert index.indexed_tree() is None
        assert index.interrupted() == (old, new)
        assert 40 < index.job_count() < 85
        assert vault.sync_index(new) == 60  # the 60 changed jobs, not all 100
        assert index.indexed_tree() == new and index.interrupted() is None
        assert dump(index) == expected


def test_a_stopped_apply_is_finished_then_brought_to_another_tree(
    tmp_path: Path, small_transactions: None
) -> None:
    """The writer that resumes may start from HEAD instead (its checkpoint dropped): the
    index is finished to the stopped apply's tree, then diffed back from there."""
    with Vault.init(tmp_path / "v") as vault:
        old = add_jobs(vault, 0, 40)
        expected_old = dump(vault.current_index())
        new = add_jobs(vault, 40, 60)
        index = vault.current_index()
        vault.sync_index(old)
        with pytest.raises(KeyboardInterrupt):
            index.apply(stopping_after(changes(vault, old, new), 30), new)
        assert vault.sync_index(old) == 120  # finish (60), then undo (60)
        assert index.indexed_tree() == old
        assert dump(index) == expected_old
