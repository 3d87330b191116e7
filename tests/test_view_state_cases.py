"""A view's file list behaves alike in its three stores (mjvault/views/state.py): the list
older versions kept inline (MemoryTable), the SQLite file of a plain vault, and the sealed
SQLite file of an encrypted one. The same random changes are made to all three, and every
question a refresh asks gets the same answer from each, before and after a reopen."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.store.crypto import VaultKeys
from mjvault.views.links import LinkKind
from mjvault.views.paths import fold
from mjvault.views.registry import FileRecord
from mjvault.views.state import Key, MemoryTable, SealedSqliteTable, SqliteTable

KEYS = VaultKeys(os.urandom(32))
JOBS = [f"job-{n}" for n in range(4)]
# Few names, of different case and script, so paths collide (case-folded) and groups form.
NAMES = ["a.png", "A.png", "b.png", "straße.png", "STRASSE.png", "猫.png"]

records = st.builds(
    FileRecord,
    path=st.sampled_from(NAMES),
    oid=st.sampled_from(["0" * 64, "1" * 64]),
    kind=st.sampled_from(list(LinkKind)),
    plain=st.none() | st.sampled_from(NAMES),
    size=st.integers(0, 10),
    mtime_ns=st.integers(0, 10),
)
keys = st.tuples(st.sampled_from(JOBS), st.integers(0, 3))
changes = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, records),
        st.tuples(st.just("put_many"), st.lists(st.tuples(keys, records), max_size=4)),
        st.tuples(st.just("delete"), keys),
    ),
    max_size=25,
)

Table = MemoryTable | SqliteTable


def valid(model: MemoryTable, change: tuple[Any, ...]) -> tuple[Any, ...]:
    """``change`` less the rows a refresh never makes: a path another image's file holds
    (a view's paths are unique, case-folded; which holder answers is then undefined), and an
    image twice in one batch."""
    if change[0] == "delete":
        return change
    rows: list[tuple[Key, FileRecord]] = (
        [(change[1], change[2])] if change[0] == "put" else list(change[1])
    )
    kept: list[tuple[Key, FileRecord]] = []
    claimed: dict[str, Key] = {}
    for key, record in rows:
        folded = record.path.lower() if record.path.isascii() else fold(record.path)
        holder = claimed.get(folded, model.holder(folded))
        if (holder is None or holder == key) and key not in claimed.values():
            claimed[folded] = key
            kept.append((key, record))
    if change[0] == "put":
        return ("put", *kept[0]) if kept else ("put_many", [])
    return ("put_many", kept)


def apply(table: Table, change: tuple[Any, ...]) -> None:
    match change:
        case ("put", key, record):
            table.put(key, record)
        case ("put_many", rows):
            table.put_many(rows)
        case ("delete", key):
            table.delete(key)


def by_image(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row[:-1]  # the image's key: unique, and never None


def answers(table: Table) -> dict[str, object]:
    folded = {fold(name) for name in NAMES} | {name.lower() for name in NAMES}
    of_jobs = table.of_jobs([*JOBS, "none"])
    return {
        "files": sorted(((j, i, tuple(r)) for j, i, r in table.iter_files()), key=by_image),
        "of_jobs": {j: sorted(f.items(), key=by_image) for j, f in of_jobs.items()},
        "get": {key: table.get(key) for key in [(j, i) for j in JOBS for i in range(4)]},
        "holder": {f: table.holder(f) for f in sorted(folded)},
        "wanting": {f: sorted(table.wanting(f)) for f in sorted(folded)},
        "taken": sorted(table.taken(sorted(folded))),
        "job_ids": sorted(table.job_ids()),
        "count": table.count(),
        "empty": table.empty(),
    }


@settings(max_examples=40, deadline=None)
@given(changes, st.lists(st.sampled_from(JOBS), max_size=3))
def test_the_three_stores_answer_alike(steps: list[tuple[Any, ...]], seen: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        memory = MemoryTable()
        plain = SqliteTable(Path(tmp) / "plain.files", fresh=True)
        sealed = SealedSqliteTable(Path(tmp) / "sealed.files", KEYS, fresh=True)
        tables: list[Table] = [memory, plain, sealed]
        try:
            for change in steps:
                change = valid(memory, change)
                for table in tables:
                    apply(table, change)
            expected = answers(memory)
            assert answers(plain) == expected
            assert answers(sealed) == expected
            for table in tables:
                table.mark_seen(seen)
            unseen = sorted(memory.unseen_jobs(["extra"]))
            assert sorted(plain.unseen_jobs(["extra"])) == unseen
            assert sorted(sealed.unseen_jobs(["extra"])) == unseen
            for table in tables:
                table.commit()
        finally:
            plain.close()
            sealed.close()
        # what was committed reads back the same, and an inline list loads as it was kept
        again = [
            SqliteTable(Path(tmp) / "plain.files"),
            SealedSqliteTable(Path(tmp) / "sealed.files", KEYS),
        ]
        try:
            for table in again:
                assert answers(table) == expected
        finally:
            for table in again:
                table.close()
        assert answers(MemoryTable(memory.files)) == expected


def test_put_new_rows_as_a_first_checkout_records_them() -> None:
    rows = [
        ("job-0", 0, "a.png", "0" * 64, LinkKind.SYMLINK.value, None, 0, 0),
        ("job-0", 1, "a (2).png", "1" * 64, LinkKind.COPY.value, "a.png", 5, 7),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        memory = MemoryTable()
        plain = SqliteTable(Path(tmp) / "plain.files", fresh=True)
        try:
            for table in (memory, plain):
                table.put_new(rows)
            assert answers(plain) == answers(memory)
            assert memory.wanting("a.png") == {("job-0", 1)}
            assert memory.get(("job-0", 1)) == FileRecord(
                "a (2).png", "1" * 64, LinkKind.COPY, "a.png", 5, 7
            )
        finally:
            plain.close()
