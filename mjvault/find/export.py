"""Export jobs as CSV, JSON, JSON Lines or Parquet: one row per job, written as it is read.

Rows stream: each is written before the next record is read, so memory stays flat whatever
the vault's size (a query keeps only its list of job ids). Lists and maps (parameters, image
object ids, view paths) are JSON text in a CSV cell, native arrays in JSON, and in Parquet
lists of strings, with the parameters as JSON text (their names vary from job to job).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from mjvault.errors import MjvaultError, UsageError
from mjvault.find.anonymize import anonymize_row
from mjvault.find.views import ViewPaths, all_view_paths
from mjvault.index.query import parse_query
from mjvault.index.search import count_matches, iter_search

if TYPE_CHECKING:
    from mjvault.tree import JobEntry
    from mjvault.vault import Vault

EXPORT_FORMATS = ("csv", "json", "jsonl", "parquet")
COLUMNS = (
    "id",
    "time",
    "type",
    "job_type",
    "username",
    "prompt",
    "full_command",
    "params",
    "width",
    "height",
    "parent_id",
    "images",
    "view_paths",
)
LIST_COLUMNS = ("params", "images", "view_paths")
PARQUET_BATCH = 2000


class MissingDependency(MjvaultError):
    """An optional library a requested feature needs is not installed."""


def job_rows(
    vault: Vault, query: str | None = None, *, views: ViewPaths | None = None
) -> Iterator[dict[str, Any]]:
    """One dict per job, newest first when a query selects them, else in the tree's order."""
    return rows_of(vault, _entries(vault, query), views=views)


def rows_of(
    vault: Vault, entries: Iterable[JobEntry], *, views: ViewPaths | None = None
) -> Iterator[dict[str, Any]]:
    """One dict per job of ``entries``, in their order (the web app's selections)."""
    paths = all_view_paths(vault) if views is None else views
    for entry in entries:
        job = vault.job(entry)
        yield {
            "id": job.id,
            "time": job.enqueue_time.isoformat() if job.enqueue_time else None,
            "type": job.type,
            "job_type": job.job_type,
            "username": job.username,
            "prompt": job.prompt,
            "full_command": job.full_command,
            "params": job.params,
            "width": job.width,
            "height": job.height,
            "parent_id": job.parent_id,
            "images": list(entry.images),
            "view_paths": paths.get(job.id, []),
        }


def count_jobs(vault: Vault, query: str | None = None) -> int:
    index = vault.current_index()
    if not query or not query.strip():
        return index.job_count()
    return count_matches(index, parse_query(query))


def _entries(vault: Vault, query: str | None) -> Iterator[JobEntry]:
    if not query or not query.strip():
        yield from vault.entries()
        return
    index = vault.current_index()
    for job_id in iter_search(index, parse_query(query)):
        entry = index.entry(job_id)
        if entry is not None:
            yield entry


def export(
    vault: Vault,
    out: IO[bytes],
    fmt: str,
    query: str | None = None,
    *,
    on_row: Callable[[], None] | None = None,
    anonymize: bool = False,
) -> int:
    """Write the jobs matching ``query`` (all when None) to ``out`` as ``fmt``; returns rows.

    ``anonymize``: without usernames, image-prompt URLs or view paths (:mod:`.anonymize`)."""
    rows = job_rows(vault, query)
    if anonymize:
        rows = map(anonymize_row, rows)
    return write_rows(rows, out, fmt, on_row=on_row)


def write_rows(
    rows: Iterator[dict[str, Any]],
    out: IO[bytes],
    fmt: str,
    *,
    on_row: Callable[[], None] | None = None,
) -> int:
    """Write ``rows`` (of :func:`job_rows` or :func:`rows_of`) to ``out`` as ``fmt``."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", hint=", ".join(EXPORT_FORMATS))
    writer = {"csv": _write_csv, "json": _write_json, "jsonl": _write_jsonl}.get(fmt)
    if fmt == "parquet":
        writer = _write_parquet
    assert writer is not None
    return writer(_counting(rows, on_row), out)


def _counting(
    rows: Iterator[dict[str, Any]], on_row: Callable[[], None] | None
) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield row
        if on_row is not None:
            on_row()


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _write_jsonl(rows: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    count = 0
    for row in rows:
        out.write(_dumps(row).encode("utf-8") + b"\n")
        count += 1
    return count


def _write_json(rows: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    """A JSON array written element by element, never held whole."""
    count = 0
    out.write(b"[")
    for row in rows:
        out.write((b",\n" if count else b"\n") + _dumps(row).encode("utf-8"))
        count += 1
    out.write(b"\n]\n" if count else b"]\n")
    return count


def _write_csv(rows: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        writer.writeheader()
        count = 0
        for row in rows:
            writer.writerow(csv_cells(row))
            count += 1
        text.flush()
    finally:
        text.detach()  # the caller owns ``out``
    return count


def csv_cells(row: dict[str, Any]) -> dict[str, str]:
    """A row as CSV text: lists and maps as JSON, None as an empty cell."""
    cells = {}
    for name in COLUMNS:
        value = row.get(name)
        if name in LIST_COLUMNS:
            cells[name] = _dumps(value if value is not None else [])
        else:
            cells[name] = "" if value is None else str(value)
    return cells


def _write_parquet(rows: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(
            "Parquet export needs pyarrow, which is not installed",
            hint="pip install 'mjvault[parquet]'",
        ) from None
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("type", pa.string()),
            ("job_type", pa.string()),
            ("username", pa.string()),
            ("prompt", pa.string()),
            ("full_command", pa.string()),
            ("params", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("parent_id", pa.string()),
            ("images", pa.list_(pa.string())),
            ("view_paths", pa.list_(pa.string())),
        ]
    )
    count = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            row = dict(row)
            row["time"] = datetime.fromisoformat(row["time"]) if row["time"] else None
            row["params"] = _dumps(row["params"])
            batch.append(row)
            if len(batch) >= PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
