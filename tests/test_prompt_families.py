"""Prompt families (mjvault/similarity/prompts.py, FORMAT.md §9.4): planted families found,
the bands kept by every update exactly as a rebuild writes them, a forgotten job gone from its
family, nothing readable in an encrypted vault's bands, and the commands in process."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index import bitmaps
from mjvault.index.db import SHARED_BANDS, Index, JobSummary, _band_writer
from mjvault.integrity.forget import forget_jobs
from mjvault.params import parse_full_command
from mjvault.similarity import minhash, prompts
from mjvault.similarity.minhash import BANDS, bands, normalized
from mjvault.similarity.prompts import (
    every_band,
    families_by_job,
    largest_families,
    like_job,
    similar_prompts,
)
from mjvault.store.crypto import VaultKeys
from mjvault.testing.families import pair_scores, planted_prompts
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json

FOX = [
    "a red fox sleeping in the snow, golden hour",
    "a red fox sleeping in deep snow, golden hour",
    "red fox sleeping in the snow at golden hour, 8k",
]
OWL = ["a steampunk owl with brass goggles", "a steampunk owl with copper goggles"]
ALONE = ["a bowl of ramen on a wooden table", "portrait of an old fisherman, highly detailed"]


def _add(vault: Vault, prompts: dict[str, str], *, day: int = 0) -> None:
    with vault.writer("sync") as writer:
        for n, (job_id, prompt) in enumerate(prompts.items()):
            moment = dt.datetime(2024, 3, 1, 12) + dt.timedelta(days=day + n)
            writer.add_job(record_json(job_id, prompt, enqueue_time=str(moment)), [])


def _small_vault(vault: Vault) -> None:
    jobs = {f"fox-{n}": p for n, p in enumerate(FOX)}
    jobs |= {f"owl-{n}": p for n, p in enumerate(OWL)}
    jobs |= {f"one-{n}": p for n, p in enumerate(ALONE)}
    _add(vault, jobs)


# -- the prompt's words and bands ------------------------------------------------------------
def test_a_prompt_is_compared_without_its_parameters_urls_case_or_accents() -> None:
    assert normalized("Café https://s.mj.run/aB3x  FOX --ar 16:9 --v 6") == "cafe fox"
    assert bands("A red fox --v 6") == bands("a RED fox --ar 3:2")
    assert bands("--v 6") == [] and bands("") == []
    # Parameters start where the params module says, an em or en dash for "--" included.
    for command in ("a red fox \u2014ar 16:9 \u2014v 6", "a red fox \u2013v 6", "a red fox --v 6"):
        assert normalized(command) == normalized(parse_full_command(command).prompt)
        assert normalized(command) == "a red fox"
    assert normalized("sci--fi city") == "sci fi city"
    assert len(bands("a red fox")) == BANDS
    assert all(b"\x00" not in part for part in bands("猫 the fox"))


# -- quality on planted families -------------------------------------------------------------
def test_planted_families_are_found(vault: Vault) -> None:
    planted = planted_prompts(3, families=12, size=6, singles=150)
    _add(vault, {f"job-{n:04}": p.prompt for n, p in enumerate(planted)})
    family = families_by_job(vault)
    found = [family.get(f"job-{n:04}", -1) for n in range(len(planted))]
    precision, recall = pair_scores([p.family for p in planted], found)
    assert precision >= 0.98 and recall >= 0.85, (precision, recall)
    # A planted member's nearest prompts are its family's.
    member = next(n for n, p in enumerate(planted) if p.family == 0)
    hits = like_job(vault, f"job-{member:04}", limit=3)
    assert hits and all(planted[int(h.job_id[4:])].family == 0 for h in hits)


def test_the_score_metric_can_fail() -> None:
    truth = [0, 0, 0, 1, 1, -1]
    assert pair_scores(truth, truth) == (1.0, 1.0)
    assert pair_scores(truth, [5, 5, 5, 5, 5, -1]) == (4 / 10, 1.0)
    assert pair_scores(truth, [-1] * 6) == (1.0, 0.0)


def test_families_like_and_similar_on_a_small_vault(vault: Vault) -> None:
    _small_vault(vault)
    families = largest_families(vault)
    assert [f.size for f in families] == [3, 2]
    fox = families[0]
    assert fox.job_ids == ("fox-0", "fox-1", "fox-2") and fox.example == FOX[0]
    assert fox.first == dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    assert fox.last == dt.datetime(2024, 3, 3, 12, tzinfo=dt.UTC)
    assert fox.to_json()["size"] == 3
    assert largest_families(vault, limit=1) == families[:1]
    like = like_job(vault, "fox-0")
    # Not itself, not the owls; fox-2 holds every word of fox-0 but "a": the nearer one.
    assert [h.job_id for h in like] == ["fox-2", "fox-1"]
    assert like[0].score > like[1].score > 80 and like[1].to_json()["prompt"] == FOX[1]
    hits = similar_prompts(vault, "steampunk owl goggles")
    assert {h.job_id for h in hits} == {"owl-0", "owl-1"}
    assert similar_prompts(vault, "--v 6") == []


def test_more_equal_candidates_than_are_ranked_give_the_newest(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A grid and its upscales share one prompt: past MAX_CANDIDATES the newest must be kept.
    monkeypatch.setattr(prompts, "MAX_CANDIDATES", 5)
    _add(vault, {f"same-{n}": "a zebra grazing on a hill at dawn" for n in range(30)})
    newest = ["same-29", "same-28", "same-27"]
    assert [h.job_id for h in like_job(vault, "same-0", 3)] == newest
    assert [h.job_id for h in similar_prompts(vault, "a zebra grazing on a hill", 3)] == newest
    # One typed word shares no band with the prompts: the jobs holding it are the candidates.
    assert set(bands("zebra")).isdisjoint(bands("a zebra grazing on a hill at dawn"))
    assert [h.job_id for h in similar_prompts(vault, "zebra", 3)] == newest


def test_the_first_families_of_a_longer_list_are_the_shorter_list(vault: Vault) -> None:
    # The owls are numbered first, the foxes are older: equal sizes go by the first time.
    _add(vault, {f"owl-{n}": p for n, p in enumerate(OWL)}, day=10)
    _add(vault, {f"fox-{n}": p for n, p in enumerate(FOX[:2])})
    two = largest_families(vault, limit=2)
    assert [f.job_ids[0] for f in two] == ["fox-0", "owl-0"]
    assert largest_families(vault, limit=1) == two[:1]


def test_a_vault_without_families(vault: Vault) -> None:
    assert largest_families(vault) == []
    _add(vault, {f"one-{n}": p for n, p in enumerate(ALONE)})
    assert largest_families(vault) == [] and families_by_job(vault) == {}


# -- incremental as the index is ------------------------------------------------------------
WORDS = ("red", "fox", "snow", "owl", "brass", "misty", "forest", "a", "the", "golden")


def _summary(n: int, words: list[str]) -> JobSummary:
    return JobSummary(
        job_id=f"job-{n:03}",
        record=f"{n:064x}",
        images=(),
        time=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=n),
        type="grid",
        prompt=" ".join(words),
    )


summaries = st.builds(_summary, st.integers(0, 29), st.lists(st.sampled_from(WORDS), max_size=7))
steps = st.one_of(
    st.tuples(st.just("set"), st.lists(summaries, min_size=1, max_size=10)),
    st.tuples(st.just("forget"), st.lists(st.integers(0, 29), min_size=1, max_size=6)),
)


def _bands_by_job(index: Index) -> set[tuple[bytes, str]]:
    """(band key without its shard, job id) of every live job in every band."""
    out = set()
    with index.reader() as reader:
        live = reader.live()
        for key, value in reader.txn.cursor(db=reader.dbs[b"bands"]):
            docs = sorted(bitmaps.load(value) & live)
            for _, _, raw in reader.docs(docs):
                out.add((bytes(key[:-3]), raw.decode("utf-8")))
    return out


def _shared(index: Index) -> set[bytes]:
    with index.reader() as reader:
        cursor = reader.txn.cursor(db=reader.dbs[SHARED_BANDS])
        return {bytes(key) for key in cursor.iternext(values=False)}


def _bands_of_two(kept: set[tuple[bytes, str]]) -> set[bytes]:
    jobs: dict[bytes, int] = {}
    for part, _ in kept:
        jobs[part] = jobs.get(part, 0) + 1
    return {part for part, count in jobs.items() if count >= 2}


@pytest.fixture
def small_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mjvault.index.db.POSTINGS_PER_TXN", 7)
    monkeypatch.setattr("mjvault.index.db.GROUP_JOBS", 5)


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=st.lists(steps, min_size=1, max_size=6))
def test_any_adds_and_removes_leave_the_bands_a_rebuild_writes(
    tmp_path: Path, small_transactions: None, sealed: bool, plan: list
) -> None:
    keys = VaultKeys(bytes(range(32))) if sealed else None
    path, fresh_path = tmp_path / f"idx-{os.urandom(4).hex()}", tmp_path / "fresh"
    index = Index(path, keys)
    try:
        for n, (step, arg) in enumerate(plan):
            if step == "set":
                index.apply([(s.job_id, s) for s in arg], f"{n:040x}")
            else:
                index.apply([(f"job-{j:03}", None) for j in arg], f"{n:040x}")
        jobs = list(index.iter_summaries())
        fresh = Index(fresh_path, keys)
        try:
            fresh.apply([(s.job_id, s) for s in jobs], "f" * 40)
            kept = _bands_by_job(index)
            assert kept == _bands_by_job(fresh)
            # ... and those are each prompt's bands (in a sealed index, their tokens).
            expected = {
                (index.layout.part(b"bands", band), s.job_id)
                for s in jobs
                for band in bands(s.prompt)
            }
            assert kept == expected
            # shared_bands names exactly the bands of two jobs or more, as a rebuild's does,
            # and the families walked through it are those of a walk of every band.
            assert _shared(index) == _shared(fresh) == _bands_of_two(kept)
            vault = SimpleNamespace(current_index=lambda: index)
            assert families_by_job(vault) == families_by_job(vault, every_band)  # type: ignore[arg-type]
        finally:
            fresh.close()
            shutil.rmtree(fresh_path, ignore_errors=True)
    finally:
        index.close()
        shutil.rmtree(path, ignore_errors=True)


def test_families_of_numbers_past_the_first_shard(tmp_path: Path) -> None:
    # A band of one job is read from its bytes (prompts._ONE_HEAD), its shard from them: the
    # first fox is number 131,071, alone in shard 1 of its bands, the others in shard 2.
    index = Index(tmp_path / "index")
    try:
        with index.writing() as txn:
            txn.put(b"next_doc", bitmaps.doc_key(131_071), db=index.db[b"meta"])
        prompts = [*FOX, *OWL, *ALONE]
        jobs = [_summary(n, p.split()) for n, p in enumerate(prompts)]
        index.apply([(job.job_id, job) for job in jobs], "a" * 40)
        vault = SimpleNamespace(current_index=lambda: index)
        assert [f.size for f in largest_families(vault)] == [3, 2]  # type: ignore[arg-type]
        found = families_by_job(vault)  # type: ignore[arg-type]
        assert found["job-003"] == found["job-004"] != found["job-000"] == found["job-002"]
    finally:
        index.close()


# A~B and B~C score at least FAMILY_SCORE, A~C does not: one family of three whatever the order.
CHAIN = [
    "red fox sleeping snow night hour forest misty",
    "red fox sleeping snow golden hour forest misty",
    "red fox river snow golden hour forest brass",
]


@settings(max_examples=12, deadline=None)
@given(order=st.permutations([*CHAIN, *OWL, *ALONE]), batches=st.integers(1, 3))
def test_families_do_not_depend_on_the_order_jobs_were_numbered(
    order: list[str], batches: int
) -> None:
    # An incremental index numbers jobs as they come, a rebuild as it reads them: the
    # families must be the same (any pair sharing a band and near enough is linked).
    with tempfile.TemporaryDirectory(prefix="families-") as where:
        index = Index(Path(where) / "index")
        try:
            ids = {p: n for n, p in enumerate([*CHAIN, *OWL, *ALONE])}
            jobs = [_summary(ids[p], p.split()) for p in order]
            for n in range(batches):  # as several syncs would add them
                part = jobs[n::batches]
                index.apply([(job.job_id, job) for job in part], f"{n:040}")
            found = families_by_job(SimpleNamespace(current_index=lambda: index))  # type: ignore[arg-type]
        finally:
            index.close()
    groups: dict[int, set[str]] = {}
    for job_id, family in found.items():
        groups.setdefault(family, set()).add(job_id)
    assert sorted(map(sorted, groups.values())) == [
        ["job-000", "job-001", "job-002"],
        ["job-003", "job-004"],
    ]


def test_forget_takes_a_job_out_of_its_family(vault: Vault) -> None:
    _small_vault(vault)
    forget_jobs(vault, ["fox-0"])
    families = largest_families(vault)
    assert [(f.size, f.job_ids) for f in families] == [
        (2, ("fox-1", "fox-2")),
        (2, ("owl-0", "owl-1")),
    ]
    assert "fox-0" not in {h.job_id for h in like_job(vault, "fox-1")}
    forget_jobs(vault, ["owl-1"])
    assert [f.job_ids for f in largest_families(vault)] == [("fox-1", "fox-2")]


def test_families_walked_through_shared_bands_are_every_bands_after_adds_and_forgets(
    vault: Vault,
) -> None:
    # The planted set, added in three syncs and then partly forgotten: at each step the walk
    # of the bands of two jobs or more finds what the walk of every band finds.
    planted = planted_prompts(5, families=10, size=6, singles=120)
    jobs = {f"job-{n:04}": p.prompt for n, p in enumerate(planted)}
    names = list(jobs)
    for n in range(3):
        _add(vault, {name: jobs[name] for name in names[n::3]}, day=n * 200)
        assert families_by_job(vault) == families_by_job(vault, every_band)
    every = families_by_job(vault)
    assert len(set(every.values())) >= 8  # the planted families are there to compare
    forget_jobs(vault, [name for n, name in enumerate(names) if n % 4 == 1])
    after = families_by_job(vault)
    assert after == families_by_job(vault, every_band) and len(after) < len(every)
    with vault.current_index().reader() as reader:
        shared = sum(1 for _ in reader.txn.cursor(db=reader.dbs[SHARED_BANDS]))
        walked = sum(1 for _ in every_band(reader))
    assert 0 < shared < walked / 4  # most bands hold one job: the walk skips them


def test_a_band_scored_in_one_call_links_what_pair_by_pair_scoring_links(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large bands are scored against their earlier members in one rapidfuzz call: the same
    # links as one score at a time, the cap on members compared included.
    planted = planted_prompts(9, families=8, size=6, singles=100)
    _add(vault, {f"job-{n:04}": p.prompt for n, p in enumerate(planted)})
    found = {}
    for batch, compared in ((1, 256), (10**9, 256), (1, 6), (10**9, 6)):
        monkeypatch.setattr(prompts, "BATCH", batch)
        monkeypatch.setattr(prompts, "BAND_COMPARED", compared)
        found[batch, compared] = families_by_job(vault)
    assert found[1, 256] == found[10**9, 256] and len(found[1, 256]) >= 40
    assert found[1, 6] == found[10**9, 6]


def test_a_stopped_updates_number_in_a_shared_band_links_no_one(tmp_path: Path) -> None:
    # A number left in the bands by a stopped update (never in live) makes a band of one
    # job a band of two: listed in shared_bands, but the walk still links live jobs only.
    index = Index(tmp_path / "index")
    try:
        jobs = [_summary(n, p.split()) for n, p in enumerate([FOX[0], *ALONE])]
        index.apply([(job.job_id, job) for job in jobs], "a" * 40)
        with index.writing() as txn:
            for band in bands(FOX[0]):
                key = bitmaps.list_key(band, 0)
                _band_writer(index.db[b"bands"], index.db[SHARED_BANDS], key, 40)(txn)
        assert _shared(index) == set(bands(FOX[0]))
        vault = SimpleNamespace(current_index=lambda: index)
        assert families_by_job(vault) == {} and largest_families(vault) == []  # type: ignore[arg-type]
    finally:
        index.close()


def test_an_index_of_format_8_is_rebuilt_with_the_shared_bands(vault: Vault) -> None:
    _small_vault(vault)
    index = vault.current_index()
    with index.env.begin(write=True) as txn:
        txn.drop(index.db[SHARED_BANDS], delete=False)
        txn.put(b"format", b"8", db=index.db[b"meta"])
    assert [f.size for f in largest_families(vault)] == [3, 2]  # current_index() rebuilt it


def test_an_index_of_format_7_is_rebuilt_with_the_bands(vault: Vault) -> None:
    _small_vault(vault)
    index = vault.current_index()
    with index.env.begin(write=True) as txn:
        txn.drop(index.db[b"bands"], delete=False)
        txn.put(b"format", b"7", db=index.db[b"meta"])
    assert [f.size for f in largest_families(vault)] == [3, 2]  # vault.current_index() rebuilt it


# -- an encrypted vault ----------------------------------------------------------------------
def test_an_encrypted_vault_keeps_no_prompt_word_or_band_in_its_index(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    try:
        _small_vault(vault)
        assert [f.size for f in largest_families(vault)] == [3, 2]
        assert [h.job_id for h in like_job(vault, "owl-0")] == ["owl-1"]
        # The words' candidates of a typed query, by their tokens.
        assert {h.job_id for h in similar_prompts(vault, "steampunk goggles")} == {"owl-0", "owl-1"}
        index_dir = vault.current_index().path
        vault.current_index().close()
    finally:
        vault.close()
    needles = {
        w.encode() for p in FOX + OWL + ALONE for w in p.replace(",", "").split() if len(w) > 4
    }
    needles |= {band for p in FOX + OWL for band in bands(p)}
    data = b"".join(f.read_bytes() for f in index_dir.iterdir() if f.is_file()).lower()
    assert not [n for n in needles if n.lower() in data]
    # The control: a plain vault's index holds both.
    plain = Vault.init(tmp_path / "plain")
    try:
        _small_vault(plain)
        largest_families(plain)
        plain_dir = plain.current_index().path
    finally:
        plain.close()
    data = b"".join(f.read_bytes() for f in plain_dir.iterdir() if f.is_file()).lower()
    assert b"steampunk" in data and bands(OWL[0])[0] in data


# -- the commands ----------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    isolate(monkeypatch, tmp_path)
    vault = Vault.init(tmp_path / "vault")
    _small_vault(vault)
    vault.close()
    yield ("--vault", str(tmp_path / "vault"))


def test_search_like(world: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    table = run_in_process(capsys, *world, "search", "--like", "fox-0")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("fox-2") and "deep snow" in lines[1]
    assert "2 jobs" in table.err
    ids = run_in_process(capsys, *world, "search", "--like", "fox-0", "--ids", "-n", "1")
    assert ids.out.split() == ["fox-2"]
    doc = run_in_process(capsys, *world, "search", "--like", "fox-0", "--json").json()
    assert [j["id"] for j in doc["jobs"]] == ["fox-2", "fox-1"] and doc["total"] == 2
    assert doc["jobs"][1]["prompt"] == FOX[1] and 0 < doc["jobs"][1]["score"] < 100
    wrong = run_in_process(capsys, *world, "search", "--like", "fox-0", "snow")
    assert wrong.code != 0 and "--like" in wrong.err
    missing = run_in_process(capsys, *world, "search", "--like", "nosuchjob")
    assert missing.code != 0 and "nosuchjob" in missing.err


def test_stats_families(world: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    table = run_in_process(capsys, *world, "stats", "--families")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].startswith("Prompt families") and len(lines) == 3
    assert "3×" in lines[1] and "2024-03-01 → 2024-03-03" in lines[1] and "red fox" in lines[1]
    doc = run_in_process(capsys, *world, "stats", "--families", "-n", "1", "--json").json()
    assert [f["size"] for f in doc["families"]] == [3]
    assert doc["families"][0]["job_ids"] == ["fox-0", "fox-1", "fox-2"]
    wrong = run_in_process(capsys, *world, "stats", "--families", "fox")
    assert wrong.code != 0 and "--families" in wrong.err


def test_stats_refuses_what_its_mode_would_ignore(
    world: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    alone = run_in_process(capsys, *world, "stats", "-n", "5")
    assert alone.code != 0 and "--families" in alone.err and "Traceback" not in alone.err
    for extra in (["--top", "3"], ["--no-storage"], ["--tz", "UTC"]):
        refused = run_in_process(capsys, *world, "stats", "--families", *extra)
        assert refused.code != 0 and extra[0] in refused.err, extra
    assert run_in_process(capsys, *world, "stats", "--families", "-n", "1").code == 0


def test_similar_prompt(world: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    table = run_in_process(capsys, *world, "similar", "--prompt", "a red fox in deep snow")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines and all(line.split()[1].startswith("fox-") for line in lines), lines
    doc = run_in_process(capsys, *world, "similar", "--prompt", "red fox", "--json").json()
    assert {j["job_id"] for j in doc["jobs"]} <= {"fox-0", "fox-1", "fox-2"} and doc["jobs"]
    assert all(0 < j["score"] <= 100 for j in doc["jobs"]) and doc["prompt"] == "red fox"
    for wrong in (("--prompt", "fox", "fox-0"), ("--prompt", "  "), ()):
        refused = run_in_process(capsys, *world, "similar", *wrong)
        assert refused.code != 0 and len(refused.err.strip().splitlines()) == 1, wrong


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=12), min_size=0, max_size=30))
def test_the_signature_is_datasketchs_minhash_bit_for_bit(words: list[str]) -> None:
    """FORMAT §9.4 step 3 names datasketch's values: the numpy arithmetic must give them."""
    from datasketch import MinHash

    prompt = " ".join(words)
    found = minhash.shingles(prompt)
    mine = minhash.signature(prompt)
    if not found:
        assert mine is None
        return
    theirs = MinHash(num_perm=minhash.NUM_PERM, seed=minhash.SEED)
    theirs.update_batch(sorted(found))
    assert mine is not None and mine.dtype == theirs.hashvalues.dtype
    assert mine.tolist() == theirs.hashvalues.tolist()
