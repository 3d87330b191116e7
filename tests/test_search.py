"""Search against a real LMDB index: each construct, sort orders, a brute-force oracle, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.find.results import find, table_lines
from mjvault.index import bitmaps
from mjvault.index.query import Query, compare, param_number, parse_query
from mjvault.jobtypes import type_matches
from mjvault.model import Job, job_from_record
from mjvault.params import param_index_value
from mjvault.testing.accounts import Account
from mjvault.text import search_tokens
from tests.conftest import CHEAP_KDF, PASSPHRASE, run_cli

JOBS = [
    ("j1", "a red fox in the misty forest --ar 16:9 --v 6.1 --s 250", "2024-03-05 10:00:00", "grid", "ann"),
    ("j2", "Fox cubs, misty morning --ar 1:1 --v 5", "2023-01-05 10:00:00", "upscale", "ann"),
    ("j3", "forest cat, café at night --niji 6 --style raw", "2024-05-05 10:00:00", "grid", "bob"),
    ("j4", "猫耳の少女 🦊 --ar 9:16", "2024-06-05 10:00:00", "variation", None),
    ("j5", "fox fox fox --v 6 --s 50", "2022-06-05 10:00:00", "upscale", "ann"),
    ("j6", "catalog of forest mushrooms --chaos 20", None, "grid", "ann"),
]  # fmt: skip


def _record(job_id: str, command: str, time: str | None, kind: str, user: str | None) -> bytes:
    record = {"id": job_id, "full_command": command, "type": kind, "batch_size": 1}
    if time:
        record["enqueue_time"] = time
    if user:
        record["username"] = user
    return json.dumps(record).encode()


def _new_vault(path: Path, encrypted: bool) -> Vault:
    if encrypted:  # its index holds tokens and sealed values (mjvault/index/sealed.py)
        return Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    return Vault.init(path)


def _small(path: Path, encrypted: bool) -> Vault:
    vault = _new_vault(path, encrypted)
    with vault.writer("test") as writer:
        for row in JOBS:
            writer.add_job(_record(*row), [])
    return vault


# Every query form is asked of a plain vault's index and of an encrypted vault's.
@pytest.fixture(scope="module", params=["plain", "encrypted"])
def small_vault(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Vault]:
    vault = _small(tmp_path_factory.mktemp("small") / "vault", request.param == "encrypted")
    yield vault
    vault.close()


@pytest.fixture(scope="module")
def plain_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    """For the command in a child process, which would need the passphrase otherwise."""
    vault = _small(tmp_path_factory.mktemp("small") / "vault", False)
    yield vault
    vault.close()


def ids(vault: Vault, text: str, **options: object) -> list[str]:
    return find(vault, text, **options).job_ids  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fox", ["j1", "j2", "j5"]),
        ("FOX misty", ["j1", "j2"]),
        ('"misty forest"', ["j1"]),
        ('"forest misty"', []),
        ("-fox", ["j4", "j3", "j6"]),
        ("cat*", ["j3", "j6"]),
        ("fo*", ["j3", "j1", "j2", "j5", "j6"]),
        ("type:upscale", ["j2", "j5"]),
        ("-type:grid", ["j4", "j2", "j5"]),
        ("ar:16:9", ["j1"]),
        ("v:6", ["j1", "j5"]),
        ("version:6.1", ["j1"]),
        ("niji:6", ["j3"]),
        ("style:raw", ["j3"]),
        ("s>100", ["j1"]),
        ("s<=250", ["j1", "j5"]),
        ("ar>1", ["j1"]),
        ("ar<1", ["j4"]),
        ("chaos:20", ["j6"]),
        ("since:2024", ["j4", "j3", "j1"]),
        ("until:2023-12", ["j2", "j5"]),
        ("date:2024-03", ["j1"]),
        ("fox since:2023-01-05", ["j1", "j2"]),
        ("user:ANN", ["j1", "j2", "j5", "j6"]),
        ("-user:ann", ["j4", "j3"]),
        ("cafe", ["j3"]),
        ("café", ["j3"]),
        ("猫耳", ["j4"]),
        ("耳猫", []),
        ("🦊", []),
        ('misty -"misty forest"', ["j2"]),
        ("fox -cub*", ["j1", "j5"]),
        ("nothing-like-this", []),
        ("fox --ar 16:9 --v 6", ["j1"]),
        ("--raw", ["j3"]),
    ],
)
def test_each_construct(small_vault: Vault, text: str, expected: list[str]) -> None:
    assert ids(small_vault, text) == expected


def test_sort_orders_limit_and_total(small_vault: Vault) -> None:
    assert ids(small_vault, "fox", sort="oldest") == ["j5", "j2", "j1"]
    # j5 says "fox" three times in a short prompt: the most relevant
    assert ids(small_vault, "fox", sort="relevance")[0] == "j5"
    result = find(small_vault, "fox", limit=2)
    assert (result.total, result.job_ids) == (3, ["j1", "j2"])
    assert ids(small_vault, "") == ["j4", "j3", "j1", "j2", "j5", "j6"]


def test_table_lines_fit_the_width(small_vault: Vault) -> None:
    rows = [small_vault.current_index().get(j) for j in ids(small_vault, "")]
    lines = table_lines([r for r in rows if r], width=70)
    assert all(len(line) <= 70 for line in lines)
    assert lines[2].startswith("j1  2024-03-05  grid")
    assert "ar 16:9 v 6.1 s 250" in lines[2]


# -- the index agrees with a direct evaluation of every job --------------------------------
def _oracle(job: Job, query: Query) -> bool:
    tokens = search_tokens(job.prompt)
    params = {k: param_index_value(v) for k, v in job.params.items()}

    def has_term(seq: tuple[str, ...], prefix: bool) -> bool:
        n = len(seq)
        for i in range(len(tokens) - n + 1):
            window = tokens[i : i + n]
            last_ok = window[-1].startswith(seq[-1]) if prefix else window[-1] == seq[-1]
            if list(window[:-1]) == list(seq[:-1]) and last_ok:
                return True
        return False

    for term in query.terms:
        if has_term(term.tokens, term.prefix) == term.negated:
            return False
    for f in query.filters:
        if f.field == "type":
            ok = type_matches(job.type, f.value)  # the words `sync --type` takes
        elif f.field == "user":
            ok = (job.username or "").casefold() == f.value.casefold() and job.username is not None
        elif f.field not in params:
            ok = False
        elif f.op == "=":
            value = params[f.field]
            ok = value == f.value or (
                f.field in ("version", "niji") and value.startswith(f.value + ".")
            )
        else:
            left = param_number(f.field, params[f.field])
            right = param_number(f.field, f.value)
            ok = left is not None and right is not None and compare(f.op, left, right)
        if ok == f.negated:
            return False
    moment = job.enqueue_time
    if query.since and (moment is None or moment < query.since):
        return False
    return not (query.until and (moment is None or moment > query.until))


@pytest.fixture(scope="module", params=["plain", "encrypted"])
def generated(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Vault, list[Job]]]:
    account = Account.generate(7, 400)
    vault = _new_vault(tmp_path_factory.mktemp("gen") / "vault", request.param == "encrypted")
    jobs = []
    with vault.writer("test") as writer:
        for i, generated_job in enumerate(account.jobs):
            raw = json.dumps(generated_job.record(1 + i % 3)).encode()
            writer.add_job(raw, [])
            jobs.append(job_from_record(json.loads(raw)))
    yield vault, jobs
    vault.close()


_words = st.sampled_from(
    ["fox", "a", "lighting", "golden", "cat", "the", "forest", "ramen", "山", "猫", "fi", "sci"]
)
_clauses = st.one_of(
    _words,
    _words.map(lambda w: "-" + w),
    st.sampled_from(["li*", "c*", "-go*", '"golden hour"', '"hour golden"', '-"red fox"']),
    st.sampled_from(["type:upscale", "type:diffusion", "-type:grid", "ar:16:9", "ar>1", "v:6", "v:5.2", "niji:6", "style:raw", "s>100", "s<=250", "chaos>=10", "user:testartist", "-user:testartist"]),
    st.sampled_from(["since:2022-06", "until:2023-03", "date:2022", "since:2023-01-01"]),
)  # fmt: skip


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clauses=st.lists(_clauses, min_size=1, max_size=4))
def test_index_agrees_with_direct_evaluation(
    generated: tuple[Vault, list[Job]], clauses: list[str]
) -> None:
    vault, jobs = generated
    query = parse_query(" ".join(clauses))
    expected = {job.id for job in jobs if _oracle(job, query)}
    assert set(find(vault, query).job_ids) == expected


def test_newest_first_is_by_time(generated: tuple[Vault, list[Job]]) -> None:
    vault, jobs = generated
    by_id = {job.id: job for job in jobs}
    found = find(vault, "lighting").job_ids
    times = [by_id[j].enqueue_time for j in found]
    assert times == sorted(times, reverse=True)  # type: ignore[type-var]


# -- the command -----------------------------------------------------------------------------
def test_cli_table_ids_json_and_errors(plain_vault: Vault) -> None:
    where = str(plain_vault.path)
    table = run_cli("--vault", where, "search", "fox", "-n", "2", env={"COLUMNS": "60"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.decode().splitlines()
    assert [line[:2] for line in lines] == ["j1", "j2"]
    assert all(len(line) <= 60 for line in lines)
    assert b"3 jobs (showing 2" in table.stderr
    only_ids = run_cli("--vault", where, "search", "--ids", "v:6")
    assert only_ids.stdout.decode().split() == ["j1", "j5"]
    as_json = run_cli("--vault", where, "search", "--json", '"misty forest"')
    doc = json.loads(as_json.stdout)
    assert doc["total"] == 1 and doc["jobs"][0]["params"]["stylize"] == "250"
    # Exclusions and pasted parameters are query words, not options; a word the shell
    # grouped is a phrase; options may come after the query.
    words = run_cli("--vault", where, "search", "-fox", "-nature", "--ar", "9:16", "--ids")
    assert words.stdout.decode().split() == ["j4"], words.stderr
    phrase = run_cli("--vault", where, "search", "--ids", "forest misty")
    assert phrase.stdout == b""
    phrase = run_cli("--vault", where, "search", "misty forest", "--limit", "5", "--ids")
    assert phrase.stdout.decode().split() == ["j1"]
    exported = run_cli("--vault", where, "export", "fox", "-cubs", "-f", "jsonl")
    assert [json.loads(x)["id"] for x in exported.stdout.splitlines()] == ["j1", "j5"]
    bad = run_cli("--vault", where, "search", "since:someday")
    assert bad.returncode == 2 and b"not a date" in bad.stderr and b"Traceback" not in bad.stderr


def test_search_in_an_encrypted_vault(encrypted_vault: Vault, tmp_path: Path) -> None:
    with encrypted_vault.writer("test") as writer:
        writer.add_job(_record(*JOBS[0]), [])
    assert ids(encrypted_vault, "misty") == ["j1"]


def test_cli_paths_lists_the_files_of_a_view(tmp_path: Path) -> None:
    from mjvault.testing.images import make_png

    vault = Vault.init(tmp_path / "vault")
    with vault.writer("test") as writer:
        image = writer.put_media(make_png(1, 32, 32))
        for row in JOBS[:2]:
            writer.add_job(_record(*row), [image])
    vault.close()
    where = str(tmp_path / "vault")
    made = run_cli("--vault", where, "checkout", str(tmp_path / "view"), "--name", "mine")
    assert made.returncode == 0, made.stderr
    listed = run_cli("--vault", where, "search", "--paths", "mine", "misty")
    paths = listed.stdout.decode().splitlines()
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)
    assert all(str(tmp_path / "view") in p for p in paths)
    unknown = run_cli("--vault", where, "search", "--paths", "theirs", "misty")
    assert unknown.returncode == 2 and b"no view named 'theirs'" in unknown.stderr
    assert b"Traceback" not in unknown.stderr


def test_list_lengths_and_times_follow_changes(tmp_path: Path) -> None:
    """List lengths and times stay exact through additions, updates and removals."""
    vault = Vault.init(tmp_path / "vault")
    with vault.writer("one") as writer:
        for row in JOBS:
            writer.add_job(_record(*row), [])
    with vault.writer("two") as writer:
        writer.remove_job("j2")
        writer.add_job(_record("j1", "a blue fox --v 7", "2025-01-01 00:00:00", "grid", None), [])
        writer.add_job(_record("j7", "fox again --v 7", "2025-02-01 00:00:00", "pan", None), [])
    index = vault.current_index()
    with index.reader() as reader:
        live = reader.live()
        assert len(live) == reader.job_count() == 6
        for table in (b"words", b"types", b"params", b"users"):
            parts = list(reader.parts_with_prefix(table, b""))
            assert parts or table == b"users"
            for part in parts:
                jobs = reader.posting_list(table, part)
                assert jobs and jobs <= live  # emptied lists are deleted, no stale number
        assert reader.count(b"words", b"misty") == 0  # j1 lost it, j2 is gone
        assert reader.count(b"words", b"fox") == 3  # j1, j5, j7
        times = {job_id: micros for micros, _, job_id in reader.docs(live)}
        assert times[b"j1"] == 1735689600 * 1_000_000
        assert b"j2" not in times and times[b"j6"] == 0
        day_of_j1 = next(jobs for day, jobs in reader.days() if day == bitmaps.day_of(times[b"j1"]))
        assert {j for _, _, j in reader.docs(day_of_j1)} == {b"j1"}
    assert ids(vault, "fox v:7") == ["j7", "j1"]
    vault.close()


def test_type_words_are_the_ones_sync_type_takes(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    records = [
        {"id": "v1", "full_command": "a fox running", "event_type": "video_diffusion"},
        {"id": "v2", "full_command": "a fox turning", "event_type": "video_start_end"},
        {"id": "g1", "full_command": "a fox", "event_type": "diffusion"},
        {"id": "g2", "full_command": "a fox", "type": "grid"},
        {"id": "u1", "full_command": "a fox", "job_type": "v6_upscale"},
    ]
    with vault.writer("test") as writer:
        for record in records:
            writer.add_job(json.dumps(record).encode(), [])
    assert sorted(ids(vault, "type:video")) == ["v1", "v2"]
    assert sorted(ids(vault, "type:grid")) == ["g1", "g2"]
    assert sorted(ids(vault, "type:upscale")) == ["u1"]
    assert sorted(ids(vault, "fox -type:video")) == ["g1", "g2", "u1"]
    assert sorted(ids(vault, "type:video_diffusion")) == ["v1"]  # the exact word still works
    vault.close()


def test_the_table_shows_the_text_prompt_not_image_urls(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    command = (
        "https://s.mj.run/AbCdEf123 https://cdn.midjourney.com/u/0_0.png "
        "a red fox in the snow --v 6"
    )
    with vault.writer("test") as writer:
        writer.add_job(json.dumps({"id": "img-prompt", "full_command": command}).encode(), [])
        writer.add_job(
            json.dumps({"id": "only-url", "full_command": "https://s.mj.run/Zz9 --v 6"}).encode(),
            [],
        )
    rows = [s for s in (vault.current_index().get(i) for i in ("img-prompt", "only-url")) if s]
    first, second = table_lines(rows, width=120)
    assert first.endswith("a red fox in the snow [+2 image URLs]"), first
    assert "https" not in first and "s.mj.run" not in first
    assert second.endswith("[1 image URL]"), second
    vault.close()
