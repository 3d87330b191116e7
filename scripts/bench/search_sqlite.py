"""The yardstick of ``bench_search.py``: the same jobs in SQLite FTS5, queried as a user would.

What a user could script in a few lines instead of mjvault's index: an FTS5 table of the
prompts (tokenizer ``unicode61 remove_diacritics 2``) and an ordinary table of what the
benchmark's filters read (time, type, ar, version, niji, style, stylize), indexed as a
careful user would (time with id, for the newest-first order; each filter column). Built by
streaming the vault index's summaries, so memory stays flat at a million jobs, into a
temporary file renamed into place once complete: a killed build is never taken as a cache.

:func:`translate` turns a parsed mjvault query into SQL meant to return exactly what
mjvault's search returns (the total and the first ``limit`` ids in the order asked), so
``bench_search.py`` can check every answer against the other engine.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mjvault.index.db import Index, JobSummary
from mjvault.index.query import VERSIONED_PARAMS, FieldFilter, Query, Term, param_number
from mjvault.jobtypes import TYPE_ALIASES

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE jobs(
    id TEXT NOT NULL,
    time INTEGER NOT NULL,  -- µs since the epoch, 0 when unknown (as mjvault's dates table)
    type TEXT NOT NULL,
    ar TEXT, version TEXT, niji TEXT, style TEXT,
    stylize REAL  -- a number, for s>100; NULL when absent or not a number
);
CREATE VIRTUAL TABLE fts USING fts5(prompt, tokenize='unicode61 remove_diacritics 2');
"""
# Built after the rows are in: one sort each instead of a B-tree grown row by row.
INDEXES = """
CREATE INDEX jobs_time ON jobs(time, id);
CREATE INDEX jobs_type ON jobs(type);
CREATE INDEX jobs_ar ON jobs(ar);
CREATE INDEX jobs_version ON jobs(version);
CREATE INDEX jobs_niji ON jobs(niji);
CREATE INDEX jobs_style ON jobs(style);
CREATE INDEX jobs_stylize ON jobs(stylize);
"""
TEXT_PARAMS = ("ar", "version", "niji", "style")
NUMBER_PARAMS = ("stylize",)
COLUMNS = ("rowid", "id", "time", "type", *TEXT_PARAMS, *NUMBER_PARAMS)
INSERT_JOB = f"INSERT INTO jobs({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
BATCH = 2000  # rows a statement batch holds: a few MB at most, whatever the vault's size


class NotTranslated(ValueError):
    """A query form the SQLite side has no column for (``user:``, ``chaos>5`` …)."""


def _row(rowid: int, summary: JobSummary) -> tuple[object, ...]:
    micros = int(summary.time.timestamp() * 1_000_000) if summary.time else 0
    params = summary.params
    text = [params.get(name) for name in TEXT_PARAMS]
    numbers = [
        param_number(name, params[name]) if name in params else None for name in NUMBER_PARAMS
    ]
    return (rowid, summary.job_id, micros, summary.type, *text, *numbers)


def _batches(
    summaries: Iterable[JobSummary],
) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[int, str]]]]:
    rows: list[tuple[object, ...]] = []
    docs: list[tuple[int, str]] = []
    for rowid, summary in enumerate(summaries, 1):
        rows.append(_row(rowid, summary))
        docs.append((rowid, summary.prompt))
        if len(rows) >= BATCH:
            yield rows, docs
            rows, docs = [], []
    if rows:
        yield rows, docs


def current(path: Path, index: Index) -> bool:
    """Whether ``path`` holds the FTS tables of exactly the index's tree."""
    if not path.exists():
        return False
    conn = open_readonly(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return meta.get("tree") == (index.indexed_tree() or "") and meta.get("jobs") == str(
        index.job_count()
    )


def build(path: Path, index: Index) -> int:
    """Write the tables of ``index``'s jobs to ``path`` (replacing it); returns the job count."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        # A partial file is thrown away, never read: nothing to journal or sync until the end.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA)
        tree = index.indexed_tree()
        jobs = 0
        # of_tree: the summaries of the tree noted in meta, read in one transaction.
        summaries = index.iter_summaries(release_every=1024, of_tree=tree)
        for rows, docs in _batches(summaries):
            conn.executemany(INSERT_JOB, rows)
            conn.executemany("INSERT INTO fts(rowid, prompt) VALUES (?, ?)", docs)
            conn.commit()
            jobs += len(rows)
        conn.executescript(INDEXES)
        # Every flushed segment merged into one, as a careful user leaves a table only read.
        conn.execute("INSERT INTO fts(fts) VALUES ('optimize')")
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("tree", tree or ""), ("jobs", str(jobs))],
        )
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()
    os.replace(partial, path)
    return jobs


def open_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


# -- queries -----------------------------------------------------------------------------------
def _fts_string(term: Term) -> str:
    """An FTS5 phrase: the tokens in sequence, ``*`` after the last for a prefix."""
    body = " ".join(term.tokens).replace('"', '""')
    return f'"{body}"' + ("*" if term.prefix else "")


def match_expression(terms: Iterable[Term]) -> tuple[str | None, str | None]:
    """(positive, negated) FTS5 expressions: every positive term, any negated one."""
    positive = [_fts_string(t) for t in terms if not t.negated]
    negated = [_fts_string(t) for t in terms if t.negated]
    return (" AND ".join(positive) or None, " OR ".join(negated) or None)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _filter_sql(f: FieldFilter) -> tuple[str, list[object]]:
    """A condition on ``jobs`` meaning what mjvault's filter means (a NULL never matches)."""
    if f.field == "type":
        # type_matches: the word itself, a "…_word" variant (v6_upscale), or an alias.
        aliases = TYPE_ALIASES.get(f.value, ())
        alternatives = ["jobs.type LIKE ? ESCAPE '\\'"] * 2 + ["jobs.type = ?"] * len(aliases)
        values: list[object] = [_like_escape(f.value), "%\\_" + _like_escape(f.value), *aliases]
        return "(" + " OR ".join(alternatives) + ")", values
    if f.field in NUMBER_PARAMS:
        number = param_number(f.field, f.value)
        if number is None:
            raise NotTranslated(f"{f.field}{f.op}{f.value}")
        # Compared as numbers, "=" too (mjvault's s:100 compares the text: "100.0" differs).
        return f"jobs.{f.field} {f.op} ?", [number]
    if f.field not in TEXT_PARAMS:
        raise NotTranslated(f"{f.field}{f.op}{f.value}")
    if f.op != "=":
        if f.field not in VERSIONED_PARAMS or param_number(f.field, f.value) is None:
            raise NotTranslated(f"{f.field}{f.op}{f.value}")
        # A version compares as a number: 5.2 > 5.
        return f"CAST(jobs.{f.field} AS REAL) {f.op} ?", [param_number(f.field, f.value)]
    if f.field in VERSIONED_PARAMS:
        # v:6 is 6, 6.0, 6.1 …: the version family.
        return f"(jobs.{f.field} = ? OR jobs.{f.field} GLOB ?)", [
            f.value,
            _glob_escape(f.value) + ".*",
        ]
    return f"jobs.{f.field} = ?", [f.value]


def _micros(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000) if moment is not None else None


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[object, ...]


def translate(query: Query, *, sort: str = "newest", limit: int = 50) -> Statement:
    """One statement for mjvault's ``search(query, sort, limit)``: rows of (id, total).

    The total rides on every row as a window count, so one pass over the matches gives both
    (no row: no match). Newest first is ``time DESC, id DESC`` (mjvault sorts ``(time, id)``
    reversed); relevance is FTS5's ``bm25`` with the same ties, which scores over other
    statistics than mjvault's BM25 (the whole table's average length, phrases and prefixes
    scored too): the same jobs, not always in the same order.
    """
    positive, negated = match_expression(query.terms)
    where: list[str] = []
    params: list[object] = []
    if positive is not None:
        # The match drives: FTS5 lists its rowids, each row of jobs is one rowid lookup.
        # bm25() is not allowed beside a window function: relevance scores in a subquery.
        score = ", bm25(fts) AS score" if sort == "relevance" else ""
        source = (
            f"(SELECT rowid{score} FROM fts WHERE fts MATCH ?) AS m "
            "CROSS JOIN jobs ON jobs.rowid = m.rowid"
        )
        params.append(positive if negated is None else f"({positive}) NOT ({negated})")
    else:
        source = "jobs"
        if negated is not None:
            where.append("jobs.rowid NOT IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
            params.append(negated)
    for f in query.filters:
        condition, values = _filter_sql(f)
        where.append(f"NOT ifnull({condition}, 0)" if f.negated else condition)
        params.extend(values)
    low, high = _micros(query.since), _micros(query.until)
    if low is not None or high is not None:
        where.append("jobs.time > 0")  # an unknown time is outside every range
    if low is not None:
        where.append("jobs.time >= ?")
        params.append(low)
    if high is not None:
        where.append("jobs.time <= ?")
        params.append(high)
    if sort == "newest":
        order = "jobs.time DESC, jobs.id DESC"
    elif sort == "oldest":
        order = "jobs.time, jobs.id"
    elif positive is not None:
        order = "m.score, jobs.time DESC, jobs.id DESC"
    else:
        order = "jobs.time DESC, jobs.id DESC"  # nothing to score: mjvault's ties decide
    sql = (
        f"SELECT jobs.id, count(*) OVER () FROM {source}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT ?"
    )
    return Statement(sql, (*params, limit))


def run(conn: sqlite3.Connection, statement: Statement) -> tuple[int, list[str]]:
    """(total, ids) of a translated query."""
    rows = conn.execute(statement.sql, statement.params).fetchall()
    return (rows[0][1] if rows else 0), [row[0] for row in rows]
