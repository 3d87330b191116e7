"""The bitmap search engine against a brute-force scan of the jobs, through incremental
updates (added, changed and removed jobs) and `index rebuild`; its orders, its streaming,
its facets, and its memory at many matches."""

from __future__ import annotations

import json
import math
import random
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index import search as engine
from mjvault.index.db import Index, JobSummary
from mjvault.index.facets import facet_counts
from mjvault.index.query import Query, parse_query
from mjvault.index.search import BM25_B, BM25_K1, count_matches, iter_search, search
from mjvault.model import Job, job_from_record
from mjvault.testing.accounts import Account
from mjvault.text import search_tokens
from tests.conftest import CHEAP_KDF, PASSPHRASE
from tests.test_search import _oracle

WORDS = ["fox", "red", "misty", "forest", "cat", "catalog", "café", "cafe", "snow", "猫", "sci-fi"]
PARAMS = ["--ar 16:9", "--ar 2:3", "--v 6", "--v 6.1", "--niji 6", "--s 250", "--s 50", ""]
TYPES = ["grid", "upscale", "variation", "diffusion"]
USERS = ["ann", "Bob", None]

_clauses = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: "-" + w),
    st.sampled_from(["ca*", "-fo*", '"red fox"', '-"misty forest"', '"fox red"', "sci*", '"red fox snow"', 'misty-fo*', '-fox-red-fo*', '"sci-fi cat"']),
    st.sampled_from(["type:upscale", "-type:grid", "ar:16:9", "ar<1", "v:6", "-v:6.1", "niji:6", "s>100", "user:ANN", "-user:bob"]),
    st.sampled_from(["since:2024-02", "until:2024-02-10", "date:2024-02-01", "since:2024-02-03T12:00:00", "until:2024-02-05T06:30:00Z"]),
)  # fmt: skip
_queries = st.lists(st.lists(_clauses, min_size=1, max_size=3), min_size=3, max_size=3)


def _new_vault(path: Path, encrypted: bool) -> Vault:
    """A plain vault, or an encrypted one: its index holds tokens and sealed values."""
    if encrypted:
        return Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    return Vault.init(path)


def _record(job_id: str, rng: random.Random) -> bytes:
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
    record: dict[str, object] = {
        "id": job_id,
        "full_command": f"{prompt} {rng.choice(PARAMS)}".strip(),
        "type": rng.choice(TYPES),
        "batch_size": 1,
    }
    if rng.random() > 0.1:  # a few jobs of unknown time
        # 20 days around the ranges queried: several jobs on each day a range cuts
        moment = datetime(2024, 1, 25, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 20))
        record["enqueue_time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    user = rng.choice(USERS)
    if user:
        record["username"] = user
    return json.dumps(record).encode()


def _sort_key(job: Job) -> tuple[int, bytes]:
    moment = job.enqueue_time
    return (int(moment.timestamp() * 1_000_000) if moment else 0), job.id.encode()


def _by_bm25(query: Query, matching: list[Job], every: list[Job]) -> list[str]:
    """Okapi BM25 as docs/usage.md states it, from the prompts themselves."""
    words = query.positive_words()
    prompts = {j.id: search_tokens(j.prompt) for j in matching}
    df = {w: sum(1 for j in every if w in search_tokens(j.prompt)) for w in words}
    total = len(every)
    idf = {w: math.log(1 + (total - df[w] + 0.5) / (df[w] + 0.5)) for w in words}
    average = max(sum(len(t) for t in prompts.values()) / max(len(prompts), 1), 1.0)
    scored = []
    for job in matching:
        tokens = prompts[job.id]
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / average)
        score = 0.0
        for word in words:
            tf = tokens.count(word)
            score += idf[word] * tf * (BM25_K1 + 1) / (tf + norm)
        scored.append((score, *_sort_key(job)))
    return [job_id.decode() for _, _, job_id in sorted(scored, reverse=True)]


def _check(vault: Vault, jobs: dict[str, Job], query: Query) -> None:
    expected = sorted((j for j in jobs.values() if _oracle(j, query)), key=_sort_key)
    newest = [j.id for j in reversed(expected)]
    index = vault.current_index()
    result = search(index, query, limit=7)
    assert result.total == len(expected), query.text
    assert result.job_ids == newest[:7], query.text
    assert search(index, query, sort="oldest", limit=3).job_ids == [j.id for j in expected[:3]]
    assert list(iter_search(index, query)) == newest
    assert list(iter_search(index, query, sort="oldest", limit=5)) == [j.id for j in expected[:5]]
    assert count_matches(index, query) == len(expected)
    ranked = search(index, query, sort="relevance").job_ids
    assert ranked == _by_bm25(query, expected, list(jobs.values()))
    # The best few, taken without ordering every match, are the first of the full order.
    assert search(index, query, sort="relevance", limit=4).job_ids == ranked[:4]
    # Lengths from the lists instead of the jobs' entries: the same order.
    looked_up = engine.LOOK_UP_LENGTHS_UP_TO
    engine.LOOK_UP_LENGTHS_UP_TO = 0
    try:
        assert search(index, query, sort="relevance").job_ids == ranked
    finally:
        engine.LOOK_UP_LENGTHS_UP_TO = looked_up
    counted = facet_counts(index, query)
    assert counted.total == len(expected)
    assert {v.value: v.count for v in counted.values["type"]} == Counter(j.type for j in expected)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), rounds=st.lists(_queries, min_size=3, max_size=3))
@pytest.mark.parametrize("encrypted", [False, True])
def test_search_agrees_with_a_scan_through_updates_and_rebuild(
    tmp_path_factory: pytest.TempPathFactory,
    encrypted: bool,
    seed: int,
    rounds: list[list[list[str]]],
) -> None:
    rng = random.Random(seed)
    path = tmp_path_factory.mktemp("engine") / "vault"
    jobs: dict[str, Job] = {}
    with _new_vault(path, encrypted) as vault:
        next_id = 0
        for step, queries in enumerate(rounds):
            with vault.writer("test") as writer:
                if step:  # change a third, remove a sixth, add some
                    for job_id in rng.sample(sorted(jobs), len(jobs) // 3):
                        raw = _record(job_id, rng)
                        writer.add_job(raw, [])
                        jobs[job_id] = job_from_record(json.loads(raw))
                    for job_id in rng.sample(sorted(jobs), len(jobs) // 6):
                        writer.remove_job(job_id)
                        del jobs[job_id]
                for _ in range(rng.randint(5, 40)):
                    job_id = f"job-{next_id:04}"
                    next_id += 1
                    raw = _record(job_id, rng)
                    writer.add_job(raw, [])
                    jobs[job_id] = job_from_record(json.loads(raw))
            for clauses in queries:
                _check(vault, jobs, parse_query(" ".join(clauses)))
        vault.rebuild_index()
        for clauses in rounds[-1]:
            _check(vault, jobs, parse_query(" ".join(clauses)))


@pytest.mark.parametrize("encrypted", [False, True])
def test_facets_count_each_value_and_select_it(tmp_path: Path, encrypted: bool) -> None:
    account = Account.generate(3, 300)
    jobs = []
    with _new_vault(tmp_path / "vault", encrypted) as vault:
        with vault.writer("test") as writer:
            for i, generated in enumerate(account.jobs):
                raw = json.dumps(generated.record(1 + i % 3)).encode()
                writer.add_job(raw, [])
                jobs.append(job_from_record(json.loads(raw)))
        query = parse_query("-type:grid")
        counted = facet_counts(vault.current_index(), query)
        matching = [j for j in jobs if _oracle(j, query)]
        assert counted.total == len(matching) > 0
        for name in ("type", "model", "ar", "month"):
            values = counted.values[name]
            assert sum(v.count for v in values) == len(matching), name
            for value in values:
                if value.term is None:
                    continue
                narrowed = parse_query(f"-type:grid {value.term}")
                selected = {j.id for j in jobs if _oracle(j, narrowed)}
                # v:6 selects the 6 family (6, 6.1 …); its count is of --v 6 exactly.
                if name == "model" and value.value is not None:
                    assert len(selected) >= value.count
                else:
                    assert len(selected) == value.count, value
        months = [v.value for v in counted.values["month"] if v.value]
        assert months == sorted(months)


def _summaries(count: int) -> list[tuple[str, JobSummary | None]]:
    start = datetime(2023, 1, 1, tzinfo=UTC)
    return [
        (
            f"job-{n:07}",
            JobSummary(
                job_id=f"job-{n:07}",
                record=f"{n:064x}",
                images=(),
                time=start + timedelta(minutes=7 * n),
                type="grid",
                prompt=f"a red fox number {n % 97}",
                params={"ar": "16:9"},
                kinds=(),
            ),
        )
        for n in range(count)
    ]


def _streaming_peak(tmp_path: Path, count: int) -> tuple[int, int]:
    index = Index(tmp_path / f"index-{count}")
    try:
        index.apply(_summaries(count), "0" * 64)
        query = parse_query("fox ar:16:9")
        tracemalloc.start()
        seen = sum(1 for _ in iter_search(index, query))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return seen, peak
    finally:
        index.close()


def test_streamed_results_hold_no_list_of_the_matches(tmp_path: Path) -> None:
    """Every job matches: the Python heap's peak is the same at 4k and 40k matches (a day's
    jobs at a time, the matches as a compressed bitmap)."""
    small, small_peak = _streaming_peak(tmp_path, 4_000)
    large, large_peak = _streaming_peak(tmp_path, 40_000)
    assert (small, large) == (4_000, 40_000)
    assert large_peak < small_peak + 256 * 1024, (small_peak, large_peak)


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_long_phrase_is_its_words_in_one_run_not_its_pairs_anywhere(
    tmp_path: Path, encrypted: bool
) -> None:
    prompts = {
        "apart": "a red fox, then a fox snow globe",  # "red fox" and "fox snow", apart
        "together": "the red fox snow day",
        "prefix": "red fox snowfall",
        "reversed": "snow fox red",
    }
    with _new_vault(tmp_path / "vault", encrypted) as vault:
        with vault.writer("test") as writer:
            for job_id, prompt in prompts.items():
                writer.add_job(json.dumps({"id": job_id, "full_command": prompt}).encode(), [])

        def found(text: str) -> set[str]:
            return set(search(vault.current_index(), parse_query(text)).job_ids)

        assert found('"red fox snow"') == {"together"}
        assert found("red-fox-sno*") == {"together", "prefix"}
        assert found('"fox red"') == {"reversed"}
        assert found("fox-sno*") == {"apart", "together", "prefix"}
        assert found('red -"red fox snow"') == {"apart", "prefix", "reversed"}
        assert found('-"fox snow"') == {"prefix", "reversed"}
