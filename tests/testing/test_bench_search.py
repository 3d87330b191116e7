"""scripts/bench/bench_search.py and its SQLite FTS5 yardstick (search_sqlite.py), at toy size.

The yardstick is only worth its figures if it answers what mjvault answers: generated queries
of every form the benchmark asks run through both, on a real vault and a real SQLite file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index.query import parse_query
from mjvault.index.search import search
from mjvault.testing.accounts import Account
from mjvault.text import search_tokens

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import bench_search  # noqa: E402
import search_sqlite  # noqa: E402

JOBS = 400
# The benchmark's filters and more of each kind: aliases, negations, versions compared.
FILTERS = (
    *bench_search.FILTERS,
    "type:grid",
    "type:video",
    "-type:upscale",
    "-style:raw",
    "-ar:16:9",
    "v:7",
    "v>=6",
    "niji:5",
    "s>=250",
    "until:2023",
    "date:2025-03",
)
PLAIN_WORD = re.compile(r"[a-z0-9]{2,}\Z")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vault, sqlite3.Connection]]:
    work = tmp_path_factory.mktemp("bench-search")
    bench_search.build(work / "vault", JOBS)
    vault = Vault.open(work / "vault")
    search_sqlite.build(work / "fts.sqlite", vault.current_index())
    conn = search_sqlite.open_readonly(work / "fts.sqlite")
    yield vault, conn
    conn.close()
    vault.close()


@pytest.fixture(scope="module")
def vocabulary(built: tuple[Vault, sqlite3.Connection]) -> tuple[list[str], list[str]]:
    """Words and adjacent pairs of the vault's prompts. Plain ones: where the two tokenizers
    split text differently (Han runs, underscores) the benchmark reports a finding, and this
    test is about the translation."""
    words: set[str] = set()
    pairs: set[str] = set()
    for summary in built[0].current_index().iter_summaries():
        tokens = search_tokens(summary.prompt)
        words.update(t for t in tokens if PLAIN_WORD.match(t))
        pairs.update(
            f"{a} {b}"
            for a, b in zip(tokens, tokens[1:], strict=False)
            if PLAIN_WORD.match(a) and PLAIN_WORD.match(b)
        )
    return sorted(words), sorted(pairs)


def _term(draw: st.DrawFn, words: list[str], pairs: list[str]) -> str:
    form = draw(st.sampled_from(("word", "phrase", "prefix", "negated", "negated phrase")))
    if form == "phrase":
        return f'"{draw(st.sampled_from(pairs))}"'
    if form == "negated phrase":
        return f'-"{draw(st.sampled_from(pairs))}"'
    word = draw(st.sampled_from(words))
    if form == "prefix":
        return word[: draw(st.integers(1, len(word)))] + "*"
    return ("-" if form == "negated" else "") + word


@st.composite
def queries(draw: st.DrawFn, words: list[str], pairs: list[str]) -> str:
    parts = [_term(draw, words, pairs) for _ in range(draw(st.integers(0, 3)))]
    parts += draw(st.lists(st.sampled_from(FILTERS), max_size=2))
    return " ".join(draw(st.permutations(parts)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_sql_answers_what_mjvault_answers(
    built: tuple[Vault, sqlite3.Connection],
    vocabulary: tuple[list[str], list[str]],
    data: st.DataObject,
) -> None:
    vault, conn = built
    text = data.draw(queries(*vocabulary), label="query")
    sort = data.draw(st.sampled_from(("newest", "oldest", "relevance")), label="sort")
    limit = data.draw(st.sampled_from((5, 50)), label="limit")
    query = parse_query(text)
    ours = search(vault.current_index(), query, sort=sort, limit=limit)
    total, ids = search_sqlite.run(conn, search_sqlite.translate(query, sort=sort, limit=limit))
    assert total == ours.total
    if sort == "relevance":
        # Both score with BM25, over different statistics: the same jobs, maybe reordered.
        if total <= limit:
            assert sorted(ids) == sorted(ours.job_ids)
    else:
        assert ids == ours.job_ids


def test_a_query_form_without_a_column_is_refused() -> None:
    for text in ("fox user:someone", "fox chaos>5", "fox ar>1"):
        with pytest.raises(search_sqlite.NotTranslated):
            search_sqlite.translate(parse_query(text))


def test_the_tables_are_a_cache_of_exactly_the_index_s_tree(tmp_path: Path) -> None:
    bench_search.build(tmp_path / "vault", 30)
    path = tmp_path / "fts.sqlite"
    with Vault.open(tmp_path / "vault") as vault:
        assert not search_sqlite.current(path, vault.current_index())
        path.with_name(path.name + ".partial").write_bytes(b"a build killed half way")
        assert not search_sqlite.current(path, vault.current_index())
        assert search_sqlite.build(path, vault.current_index()) == 30
        assert not path.with_name(path.name + ".partial").exists()
        assert search_sqlite.current(path, vault.current_index())
        with vault.writer("more") as writer:
            record = Account.generate(2, 1).jobs[0].record(3)  # another seed: another id
            writer.add_job(json.dumps(record).encode(), [])
        assert not search_sqlite.current(path, vault.current_index())
    path.write_bytes(b"not a database")
    with Vault.open(tmp_path / "vault") as vault:
        assert not search_sqlite.current(path, vault.current_index())


def test_the_benchmark_runs_checks_every_answer_and_reuses_its_tables(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(BENCH / "bench_search.py"),
        "--jobs",
        "300",
        "--queries",
        "40",
        "--rounds",
        "2",
        "--mix",
        "all",
        "--command-runs",
        "1",
        "--workdir",
        str(tmp_path),
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert "building the FTS5 tables" in first.stdout
    assert "answers: totals agree on 40 of 40, totals and ids on 40 of 40" in first.stdout
    assert re.search(r"ratio p95 +best +[\d.]+ ×", first.stdout)
    assert re.search(r"mjvault +best [\d.]+ s .*\(\d+ jobs", first.stdout)
    assert re.search(r"sqlite3 script +best [\d.]+ s .*\(\d+ jobs", first.stdout)
    assert "answers         the same: total and the jobs listed" in first.stdout
    assert re.search(r"peak RSS +mjvault \d+ MB, sqlite3 script \d+ MB", first.stdout)
    again = subprocess.run(
        [*command, "--sort", "relevance", "--command-runs", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout
    # BM25 over other statistics: the same totals, not always the same order.
    assert "answers: totals agree on 40 of 40," in again.stdout


def test_a_vault_left_short_by_a_stopped_build_is_completed(tmp_path: Path) -> None:
    # What a build stopped after its first checkpoint leaves: the oldest jobs, as it wrote them.
    short = tmp_path / "search-300"
    with Vault.init(short) as vault, vault.writer("bench") as writer:
        for oldest_first, job in enumerate(Account.stream(1, 100 + 200)):
            if oldest_first == 100:
                break
            writer.add_job(json.dumps(job.record(1 + (299 - oldest_first) % 3)).encode(), [])
    command = [sys.executable, str(BENCH / "bench_search.py"), "--jobs", "300"]
    done = subprocess.run(
        [*command, "--queries", "5", "--rounds", "1", "--command-runs", "0"]
        + ["--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "(100 held)" in done.stdout
    bench_search.build(tmp_path / "fresh", 300)
    with Vault.open(short) as completed, Vault.open(tmp_path / "fresh") as fresh:
        assert completed.current_index().job_count() == 300
        assert completed.current_index().indexed_tree() == fresh.current_index().indexed_tree()


def test_the_same_queries_in_every_process(tmp_path: Path) -> None:
    """Before/after figures compare the same queries: none may hang on the hash seed."""
    bench_search.build(tmp_path / "vault", 200)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench_search; "
        "from mjvault import Vault; v = Vault.open(sys.argv[2]); "
        "print(bench_search.make_queries(40, 'all', *bench_search.vocabulary(v.current_index())))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script, str(BENCH), str(tmp_path / "vault")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1
