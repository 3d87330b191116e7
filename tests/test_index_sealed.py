"""An encrypted vault's index: tokens and sealed values only (FORMAT.md §9.2), and every query
answered as a plain vault's index answers it."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index.db import TABLES as INDEX_TABLES
from mjvault.index.db import Index, IndexDamaged, JobSummary
from mjvault.index.facets import facet_counts
from mjvault.index.query import parse_query
from mjvault.index.sealed import SEALED_FORMAT, IndexSealer
from mjvault.index.search import count_matches, iter_search, search
from mjvault.index.statcache import FINE_WINDOW_NS, StatCache
from mjvault.sources.importer import import_archive
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.store.crypto import VaultKeys
from mjvault.sync import SyncOptions, sync
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.server import FakeMidjourney
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json
from tests.test_index_apply import SMALL_GROUP, SMALL_TXN, add_jobs, changes, stopping_after
from tests.test_sync import settings_for

TABLES = [b"jobs", b"words", b"pairs", b"repeats", b"types", b"params", b"users", b"images"]
_terms = st.binary(min_size=0, max_size=80)
_masters = st.binary(min_size=32, max_size=32)


# -- tokens ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(master=_masters, term=_terms, table=st.sampled_from(TABLES))
def test_a_token_is_the_same_for_the_same_vault_table_and_term(
    master: bytes, term: bytes, table: bytes
) -> None:
    first, second = IndexSealer(VaultKeys(master)), IndexSealer(VaultKeys(master))
    token = first.token(table, term)
    assert token == second.token(table, term) == first.token(table, term)
    assert len(token) == 16 and b"\x00" not in token  # parses as a part: "token 00 shard"


@settings(max_examples=60, deadline=None)
@given(masters=st.lists(_masters, min_size=2, max_size=2, unique=True), term=_terms)
def test_tokens_differ_across_vaults(masters: list[bytes], term: bytes) -> None:
    one, other = (IndexSealer(VaultKeys(m)) for m in masters)
    assert one.token(b"words", term) != other.token(b"words", term)
    assert one.check() != other.check()


@settings(max_examples=60, deadline=None)
@given(
    master=_masters,
    term=_terms,
    tables=st.lists(st.sampled_from(TABLES), min_size=2, max_size=2, unique=True),
)
def test_tokens_differ_across_tables(master: bytes, term: bytes, tables: list[bytes]) -> None:
    sealer = IndexSealer(VaultKeys(master))
    assert sealer.token(tables[0], term) != sealer.token(tables[1], term)


def test_a_sealed_value_opens_only_where_it_was_put() -> None:
    sealer = IndexSealer(VaultKeys(bytes(32)))
    sealed = sealer.seal(b"job-1", b"docs\x00\x00\x00\x00\x01")
    assert sealer.open(sealed, b"docs\x00\x00\x00\x00\x01") == b"job-1"
    with pytest.raises(IndexDamaged, match="docs table does not open"):
        sealer.open(sealed, b"docs\x00\x00\x00\x00\x02")  # moved to another document
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(IndexDamaged):
        sealer.open(flipped, b"docs\x00\x00\x00\x00\x01")


@settings(max_examples=40, deadline=None)
@given(
    master=_masters,
    names=st.lists(st.binary(min_size=1, max_size=70), max_size=20),
    generations=st.lists(st.binary(min_size=8, max_size=8), min_size=2, max_size=2, unique=True),
)
def test_job_ids_decipher_together_as_they_were(
    master: bytes, names: list[bytes], generations: list[bytes]
) -> None:
    sealer = IndexSealer(VaultKeys(master))
    entries = list(enumerate(names))
    sealed = sealer.names(generations[0], entries)
    assert [len(s) for s in sealed] == [len(n) for n in names]
    assert sealer.names(generations[0], list(enumerate(sealed))) == names
    assert sealer.names(generations[0], list(enumerate(sealed))[::-1]) == names[::-1]
    # Another generation (a rebuilt index), or another number: another keystream.
    other = sealer.names(generations[1], entries)
    assert all(a != b for a, b in zip(sealed, other, strict=True) if len(a) >= 4)
    shifted = sealer.names(generations[0], [(n + 1, x) for n, x in entries])
    assert all(a != b for a, b in zip(sealed, shifted, strict=True) if len(a) >= 4)


# -- nothing readable at rest ------------------------------------------------------------------
def _encrypted(path: Path) -> Vault:
    return Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)


def _index_bytes(vault_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((vault_path / "index").glob("*.mdb")))


def _secrets_of(jobs: list[dict[str, object]], paths: list[Path]) -> set[bytes]:
    """What must not be found: prompt words (long enough not to occur by chance in binary
    data), job ids, usernames, user ids, and the archive's paths and file names."""
    found: set[bytes] = set()
    for record in jobs:
        for key in ("prompt", "full_command"):
            for word in re.findall(r"\w{6,}", str(record.get(key) or "")):
                found.add(word.encode())
        for key in ("id", "username", "user_id"):
            if record.get(key):
                found.add(str(record[key]).encode())
    for path in paths:
        found.add(str(path).encode())
        found.add(path.name.encode())
    return found


def test_the_index_of_an_encrypted_vault_holds_no_prompt_id_name_or_path(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_sample_archive(archive, jobs=12, seed=5)
    time.sleep(FINE_WINDOW_NS / 1e9 + 0.05)  # out of the racy window (mjvault.index.statcache)
    account = Account.generate(6, 15)
    path = tmp_path / "vault"
    _encrypted(path).close()
    with Vault.open(path, passphrase=PASSPHRASE) as vault:
        assert import_archive(vault, archive).jobs_seen == 12
        # the sealed stat cache vouches for every file the second time
        assert import_archive(vault, archive).records_unchanged == 12
        with (
            FakeMidjourney(account, token="t0ken") as server,
            MidjourneyClient(settings_for(server)) as client,
        ):
            assert sync(vault, client, SyncOptions(concurrency=4)).jobs_new > 0
        assert search(vault.current_index(), parse_query("-nothing"), sort="relevance").total > 12
        assert vault.current_index().stats()["entries"]["jobs"] > 12
        with vault.current_index().reader() as reader:  # ids of every job and every row: all sealed
            assert reader.job_count() == vault.current_index().stats()["entries"]["jobs"]
        assert len(StatCache(vault.current_index())) > 0
    records = [json.loads(p.read_bytes()) for p in archive.rglob("*.json")]
    records += [job.record(1) for job in account.jobs]
    files = [p for p in archive.rglob("*") if p.is_file()]
    secrets = _secrets_of(records, [archive, *files])
    assert len(secrets) > 50
    data = _index_bytes(path)
    assert [s for s in sorted(secrets) if s in data] == []


def test_a_plaintext_index_is_replaced_once_when_the_vault_opens(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with _encrypted(path) as vault:
        with vault.writer("test") as writer:
            writer.add_job(json.dumps({"id": "job-aardvark", "full_command": "zebra"}).encode(), [])
        tree = vault.current_index().indexed_tree()
    # What an earlier version left: a plaintext index of the same tree.
    index = Index(path / "index")
    index.clear()
    summary = JobSummary("job-aardvark", "00" * 32, (), None, "grid", "zebra crossing")
    index.apply([("job-aardvark", summary)], tree)
    index.close()
    assert b"crossing" in _index_bytes(path)
    with Vault.open(path, passphrase=PASSPHRASE) as vault:
        assert search(vault.current_index(), parse_query("zebra")).job_ids == ["job-aardvark"]
        assert search(vault.current_index(), parse_query("crossing")).job_ids == []
        first = (path / "index" / "data.mdb").stat().st_ino
    data = _index_bytes(path)
    assert b"crossing" not in data and b"aardvark" not in data and b"zebra" not in data
    with Vault.open(path, passphrase=PASSPHRASE) as vault:  # kept from now on
        assert search(vault.current_index(), parse_query("zeb*")).job_ids == ["job-aardvark"]
        with vault.current_index().reader() as reader:
            assert reader.txn.get(b"format", db=reader.dbs[b"meta"]) == SEALED_FORMAT
    assert (path / "index" / "data.mdb").stat().st_ino == first


def test_a_value_moved_to_another_key_does_not_open(tmp_path: Path) -> None:
    with _encrypted(tmp_path / "vault") as vault:
        with vault.writer("test") as writer:
            for n in (1, 2):
                writer.add_job(json.dumps({"id": f"job-{n}", "full_command": "owl"}).encode(), [])
        index = vault.current_index()
        one, two = index.layout.job_key("job-1"), index.layout.job_key("job-2")
        with index.writing(index.db[b"jobs"]) as txn:
            txn.put(one, txn.get(two))
        with pytest.raises(IndexDamaged) as caught:
            index.get("job-1")
        assert "mjvault index rebuild" in str(caught.value)


# -- every query form, plain and encrypted ------------------------------------------------------
@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vault, Vault]]:
    """A plain and an encrypted vault imported from one archive."""
    root = tmp_path_factory.mktemp("twins")
    write_sample_archive(root / "archive", jobs=60, seed=21)
    plain = Vault.init(root / "plain")
    sealed = _encrypted(root / "sealed")
    for vault in (plain, sealed):
        assert import_archive(vault, root / "archive").jobs_seen == 60
    yield plain, sealed
    plain.close()
    sealed.close()


def _queries(vault: Vault) -> list[str]:
    """Every form of the language, over words the archive holds."""
    words: list[str] = []
    for summary in vault.current_index().iter_summaries():
        words += [w for w in re.findall(r"[a-z]{3,}", summary.prompt.lower()) if w not in words]
    first = [words[i] for i in range(0, min(len(words), 40), 5)]
    forms = [
        "",
        *first,
        *(f"{w[:2]}*" for w in first),
        *(f"{w[:1]}*" for w in first[:3]),
        *(f"{w[:4]}* -{first[0]}" for w in first[1:4]),
        f'"{words[0]} {words[1]}"',
        f"{words[0]}-{words[1][:2]}*",
        f'-"{words[0]} {words[1]}" {words[0]}',
        "type:upscale",
        "type:grid",
        "-type:grid",
        "type:video",
        "v:6",
        "v:5.2",
        "niji:6",
        "ar:16:9",
        "ar>1",
        "ar<=1",
        "s>100",
        "s<=250",
        "chaos>=10",
        "style:raw",
        "-style:raw",
        "user:testartist",
        "user:TESTARTIST",
        "-user:testartist",
        "since:2023",
        "until:2023-06",
        "date:2022",
        f"{first[1]} since:2022-06 -v:6",
    ]
    return forms


def test_every_query_form_answers_alike_plain_and_encrypted(twins: tuple[Vault, Vault]) -> None:
    plain, sealed = twins
    assert plain.current_index().job_count() == sealed.current_index().job_count() == 60
    asked = 0
    for text in _queries(plain):
        query = parse_query(text)
        for sort in ("newest", "oldest", "relevance"):
            for limit in (None, 3):
                expected = search(plain.current_index(), query, sort=sort, limit=limit)
                assert search(sealed.current_index(), query, sort=sort, limit=limit) == expected, (
                    text
                )
                asked += expected.total
        assert list(iter_search(sealed.current_index(), query)) == list(
            iter_search(plain.current_index(), query)
        )
        assert count_matches(sealed.current_index(), query) == count_matches(
            plain.current_index(), query
        )
        assert facet_counts(sealed.current_index(), query) == facet_counts(
            plain.current_index(), query
        ), text
    assert asked > 1000  # the queries match something


def test_jobs_by_prefix_image_and_summary_alike(twins: tuple[Vault, Vault]) -> None:
    plain, sealed = twins
    summaries = list(plain.current_index().iter_summaries())
    assert sorted(s.job_id for s in sealed.current_index().iter_summaries()) == [
        s.job_id for s in summaries
    ]
    for summary in summaries[:10]:
        job_id = summary.job_id
        twin = sealed.current_index().get(job_id)
        assert twin is not None
        # Object ids differ (an encrypted vault's names are keyed); the rest is the same.
        same = ("time", "type", "prompt", "params", "username")
        assert [getattr(twin, a) for a in same] == [getattr(summary, a) for a in same]
        entry = sealed.current_index().entry(job_id)
        assert entry is not None and (entry.record, entry.images) == (twin.record, twin.images)
        for length in (1, 3, 6, len(job_id)):
            prefix = job_id[:length]
            assert sealed.current_index().job_ids_with_prefix(
                prefix
            ) == plain.current_index().job_ids_with_prefix(prefix)
        assert sealed.find_job(job_id[:8]).job_id == job_id
        for mine, theirs in zip(summary.images, twin.images, strict=True):
            assert mine is not None and theirs is not None
            assert sealed.current_index().jobs_with_image(
                theirs
            ) == plain.current_index().jobs_with_image(mine)
    with plain.current_index().reader() as one, sealed.current_index().reader() as other:
        counts = sorted(n for _, n in one.image_references())
        assert sorted(n for _, n in other.image_references()) == counts


# -- an update stopped between its transactions ------------------------------------------------
QUERIES = ["fox", "fo*", "snow -red", '"red fox"', "numb*", "v:6", "ar:16:9", "ar>1", "type:grid"]


def _answers(vault: Vault) -> dict[str, object]:
    found: dict[str, object] = {}
    for text in QUERIES:
        query = parse_query(text)
        found[text] = search(vault.current_index(), query, sort="relevance")
        found[text + " (facets)"] = facet_counts(vault.current_index(), query)
    found["ids"] = vault.current_index().job_ids_with_prefix("job-00")
    return found


def test_a_sealed_update_stopped_between_transactions_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mjvault.index.db.POSTINGS_PER_TXN", SMALL_TXN)
    monkeypatch.setattr("mjvault.index.db.GROUP_JOBS", SMALL_GROUP)
    with _encrypted(tmp_path / "v") as vault:
        old = add_jobs(vault, 0, 40)
        new = add_jobs(vault, 40, 60)
        expected = _answers(vault)
        index = vault.current_index()
        assert vault.sync_index(old) == 60
        with pytest.raises(KeyboardInterrupt):
            index.apply(stopping_after(changes(vault, old, new), 45), new)
        assert index.indexed_tree() is None and index.interrupted() == (old, new)
        assert vault.sync_index(new) == 60  # finished, not rebuilt
        assert _answers(vault) == expected
        vault.rebuild_index()  # a new generation of ids: the same answers
        assert _answers(vault) == expected
        assert len(expected["ids"]) == 100  # type: ignore[arg-type]


# -- a plain vault's index, byte for byte -----------------------------------------------------
# The digest of the tables below as the code before sealed indexes wrote them (format 5), then
# with format 6's insights table and summary fields (parent, video, like, rank), then format 7's
# insights counters (words without URLs, by type, jobs and images a minute) and its `parents`
# and `marks` tables (empty here: these jobs have no parent, like or rank), then format 8's
# `bands` (the prompts' MinHash bands; the format and `meta/format` change with them), then
# format 9's `shared_bands` (every other table as format 8 wrote it, `meta/format` aside).
PLAIN_DIGEST = "591d7f918421894908ce666ffd05798202b15c2276b5c238c225092604de9948"


def _fixed_summaries() -> Iterator[tuple[str, JobSummary | None]]:
    words = ["misty", "forest", "café", "fox", "snow", "猫", "neon", "city"]
    for n in range(300):
        prompt = " ".join(words[(n * k) % len(words)] for k in range(1, 2 + n % 6))
        yield (
            f"job-{n:04}",
            JobSummary(
                job_id=f"job-{n:04}",
                record=f"{n:064x}",
                images=(f"{n + 1:064x}", None),
                time=datetime(2024, 1 + n % 12, 1 + n % 28, tzinfo=UTC) if n % 7 else None,
                type=["grid", "upscale", "variation"][n % 3],
                prompt=prompt,
                params={"version": ["6", "6.1", "5.2"][n % 3], "ar": ["16:9", "1:1"][n % 2]},
                username=["Ann", None][n % 2],
                kinds=("png", None),
            ),
        )


def test_a_plain_index_is_what_it_was_byte_for_byte(tmp_path: Path) -> None:
    index = Index(tmp_path / "index")
    index.apply(_fixed_summaries(), "ab" * 32)
    index.apply([("job-0003", None), ("job-0010", None)], "cd" * 32)
    digest = hashlib.sha256()
    with index.env.begin() as txn:
        for name in INDEX_TABLES:
            digest.update(name)
            for key, value in txn.cursor(db=index.db[name]):
                digest.update(len(key).to_bytes(4, "big") + key)
                digest.update(len(value).to_bytes(4, "big") + value)
        assert txn.get(b"vocab") is None  # no table of a sealed index
    index.close()
    assert digest.hexdigest() == PLAIN_DIGEST


# -- the vocabulary follows the lists ----------------------------------------------------------
def _vocabulary(vault: Vault) -> set[bytes]:
    """Every term in the vocabulary's buckets, opened with the vault's keys."""
    from mjvault.index.db import VOCAB

    index = vault.current_index()
    sealer = index.layout.sealer
    assert sealer is not None
    with index.env.begin(db=index.db[VOCAB]) as txn:
        return {sealer.open(value, b"vocab\x00" + bytes(key)) for key, value in txn.cursor()}


VOCAB_QUERIES = ["zebracorn", "zeb*", "z*", "fox", "fo*", "r*", "chaos>50", "chaos:77", "type:grid"]


def test_a_forgotten_job_leaves_the_vocabulary_as_a_plain_index_loses_its_keys(
    tmp_path: Path,
) -> None:
    from mjvault.integrity.forget import forget_jobs

    jobs = {
        "job-0": "a red fox",
        "job-1": "a red fox in snow",
        "qqx-unique": "a zebracorn red --chaos 77",
    }
    plain, sealed = Vault.init(tmp_path / "plain"), _encrypted(tmp_path / "sealed")
    for vault in (plain, sealed):
        with vault.writer("test") as writer:
            for job_id, prompt in jobs.items():
                writer.add_job(record_json(job_id, prompt), [None])
    before = _vocabulary(sealed)
    unique = {b"zebracorn", b"qqx-unique", b"chaos", b"77"}  # only the forgotten job's
    assert unique | {b"fox", b"job-0"} <= before
    for vault in (plain, sealed):
        forget_jobs(vault, ["qqx-unique"])
    after = _vocabulary(sealed)
    # The unique word, the id and the parameter value went; what other jobs have stayed.
    assert not unique & after
    assert {b"fox", b"red", b"snow", b"job-0", b"job-1"} <= after
    assert after == before - unique
    for text in VOCAB_QUERIES:
        query = parse_query(text)
        assert search(sealed.current_index(), query) == search(plain.current_index(), query), text
        assert facet_counts(sealed.current_index(), query) == facet_counts(
            plain.current_index(), query
        ), text
    for prefix in ("qqx", "qqx-u", "job", "job-0"):
        assert sealed.current_index().job_ids_with_prefix(
            prefix
        ) == plain.current_index().job_ids_with_prefix(prefix)
    # A job whose record changes leaves the lists of the words it lost, and so do they.
    for vault in (plain, sealed):
        with vault.writer("test") as writer:
            writer.add_job(record_json("job-1", "a red fox"), [None])
    assert _vocabulary(sealed) == after - {b"in", b"snow"}
    for text in ("snow", "s*", "in", "i*", "fox"):
        assert search(sealed.current_index(), parse_query(text)) == search(
            plain.current_index(), parse_query(text)
        )
    plain.close()
    sealed.close()
