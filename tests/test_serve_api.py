"""`mjvault serve`'s JSON API against a real server on 127.0.0.1 (one per module, over small
generated vaults), its security guards, and keyset pages of the index."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.index.db import Index, JobSummary
from mjvault.index.pages import PageKey, children, page, timeline
from mjvault.index.query import parse_query
from mjvault.index.search import search
from mjvault.serve.app import build
from mjvault.serve.settings import ServeSettings, ServeState
from mjvault.store.crypto import VaultKeys
from mjvault.testing.accounts import Account
from mjvault.testing.images import make_png
from tests.conftest import CHEAP_KDF, PASSPHRASE

JOBS = 1100  # three timeline segments of 500


def _fill(vault: Vault, jobs: int, seed: int = 5) -> None:
    account = Account.generate(seed, jobs)
    rng = random.Random(seed)
    with vault.writer("test") as writer:
        pool = [writer.put_media(make_png(i, 64, 64)) for i in range(6)]
        for i, job in enumerate(account.jobs):
            images = [rng.choice(pool) for _ in range(min(4, job.batch_size))]
            writer.add_job(json.dumps(job.record(1 + i % 3)).encode(), images)


class Server:
    """A real uvicorn server of ``app`` on 127.0.0.1 in a thread."""

    def __init__(self, state: ServeState) -> None:
        self.state = state
        config = uvicorn.Config(
            build(state), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "no server"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def json(self, path: str, **kwargs: Any) -> Any:
        answer = self.get(path, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


def _serve(root: Path, **options: Any) -> Server:
    passphrase = options.pop("passphrase", None)
    settings = ServeSettings(passphrase=passphrase, **options)
    vault = Vault.open(root, passphrase=passphrase)
    return Server(ServeState(vault_root=root, settings=settings, vault=vault))


@pytest.fixture(scope="module")
def plain_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "vault"
    vault = Vault.init(root)
    try:
        _fill(vault, JOBS)
        vault.current_index()  # built now, not by the first request
    finally:
        vault.close()
    return root


@pytest.fixture(scope="module")
def server(plain_root: Path) -> Iterator[Server]:
    running = _serve(plain_root)
    yield running
    running.stop()


def _walk(server: Server, q: str, sort: str, limit: int) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        params = {"q": q, "sort": sort, "limit": str(limit)}
        if after:
            params["after"] = after
        answer = server.json("/api/jobs", params=params)
        ids += [t["id"] for t in answer["jobs"]]
        after = answer["next"]
        if after is None:
            return ids


# -- the read API ---------------------------------------------------------------------------
def test_info(server: Server) -> None:
    info = server.json("/api/info")
    assert info["jobs"] == JOBS and info["images"] > JOBS
    assert info["encrypted"] is False and info["read_only"] is False
    assert info["thumb_sizes"] == {"s": 256, "m": 768}
    assert info["csrf"] == server.state.csrf_token and len(info["csrf"]) >= 32
    assert info["vault"] == server.state.vault.id


@pytest.mark.parametrize("sort", ["newest", "oldest", "relevance"])
@pytest.mark.parametrize("q", ["", "fox", "type:upscale", "-the"])
def test_walking_cursors_yields_the_search_in_order(server: Server, q: str, sort: str) -> None:
    expected = search(server.state.vault.current_index(), parse_query(q), sort=sort).job_ids  # type: ignore[arg-type]
    assert expected or q == "fox"
    assert _walk(server, q, sort, 97) == expected


def test_jobs_page_shape(server: Server) -> None:
    answer = server.json("/api/jobs", params={"limit": "3"})
    assert answer["total"] == JOBS and len(answer["jobs"]) == 3 and answer["next"]
    first = answer["jobs"][0]
    assert set(first) >= {"id", "time", "type", "prompt", "ar", "model", "images", "parent"}
    assert first["time"].endswith("Z") and len(first["prompt"]) <= 300
    assert all(len(i["object"]) == 64 and i["kind"] == "png" for i in first["images"])
    assert server.json("/api/jobs")["jobs"].__len__() == 200


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
        {"sort": "random"},
        {"after": "not a cursor!"},
        {"after": PageKey("oldest", 1, b"x").encode()},  # another sort's cursor
        {"q": "since:nope"},
    ],
)
def test_bad_parameters_are_400_with_a_code(server: Server, params: dict[str, str]) -> None:
    answer = server.get("/api/jobs", params=params)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error", "code"}


@pytest.mark.parametrize("sort", ["newest", "oldest"])
def test_timeline_segments_lead_to_their_jobs(server: Server, sort: str) -> None:
    line = server.json("/api/timeline", params={"sort": sort})
    order = _walk(server, "", sort, 1000)
    assert line["total"] == JOBS and line["segment_size"] == 500
    assert [s["count"] for s in line["segments"]] == [500, 500, 100]
    assert line["segments"][0]["cursor"] is None
    index = server.state.vault.current_index()
    for k, segment in enumerate(line["segments"]):
        params = {"sort": sort, "limit": str(segment["count"])}
        if segment["cursor"]:
            params["after"] = segment["cursor"]
        ids = [t["id"] for t in server.json("/api/jobs", params=params)["jobs"]]
        assert ids == order[k * 500 : k * 500 + segment["count"]]
        first, last = index.get(ids[0]), index.get(ids[-1])
        assert first is not None and last is not None and first.time and last.time
        assert segment["first"] == first.time.isoformat().replace("+00:00", "Z")
        assert segment["last"] == last.time.isoformat().replace("+00:00", "Z")
    assert server.json("/api/timeline", params={"sort": sort}) == line  # cached, same


def test_facets_count_the_query(server: Server) -> None:
    facets = server.json("/api/facets", params={"q": "type:upscale"})
    types = facets["facets"]["type"]
    assert [t["value"] for t in types] == ["upscale"] and types[0]["term"] == "type:upscale"
    assert sum(m["count"] for m in facets["facets"]["month"]) == facets["total"]
    index = server.state.vault.current_index()
    upscales = [s for s in index.iter_summaries() if s.type == "upscale"]
    liked = {v["value"]: v["count"] for v in facets["facets"]["liked"]}
    assert liked == {
        value: n
        for value, n in (
            ("true", sum(s.liked is True for s in upscales)),
            ("false", sum(s.liked is False for s in upscales)),
        )
        if n
    }
    assert liked  # the generated records say whether they were liked
    ranked = {v["value"]: v["count"] for v in facets["facets"]["rating"]}
    assert ranked == {
        str(r): n for r in range(1, 11) if (n := sum(s.ranking == r for s in upscales))
    }


def test_job_detail_with_lineage(server: Server) -> None:
    index = server.state.vault.current_index()
    child = next(s for s in index.iter_summaries() if s.parent and index.get(s.parent))
    detail = server.json(f"/api/job/{child.job_id}")
    assert detail["tile"]["id"] == child.job_id
    assert detail["record"]["id"] == child.job_id  # the record, verbatim
    assert detail["lineage"]["parent"]["id"] == child.parent
    assert all(i["bytes"] > 0 for i in detail["images"])
    parent = server.json(f"/api/job/{child.parent}")
    kids = [t["id"] for t in parent["lineage"]["children"]]
    expected = sorted(
        (s for s in index.iter_summaries() if s.parent == child.parent),
        key=lambda s: (s.micros, s.job_id),
    )
    assert kids == [s.job_id for s in expected] and child.job_id in kids
    for kid in parent["lineage"]["children"]:
        assert kid["parent"] == child.parent
    missing = server.get("/api/job/no-such-job")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_stats_snapshots_remotes_views(server: Server) -> None:
    stats = server.json("/api/stats")
    assert stats["totals"]["jobs"] == JOBS
    some = server.json("/api/stats", params={"q": "type:upscale", "since": "2023-01-01"})
    assert 0 < some["totals"]["jobs"] < JOBS and some["filter"]["since"] == "2023-01-01"
    assert server.get("/api/stats", params={"since": "yesterday"}).status_code == 400
    snaps = server.json("/api/snapshots")
    assert snaps["head"] == snaps["snapshots"][0]["id"]
    assert (
        server.json("/api/snapshots", params={"before": snaps["head"]})["snapshots"]
        == (snaps["snapshots"][1:])
    )
    assert server.json("/api/remotes") == {"remotes": []}
    assert server.json("/api/views") == {"views": []}


def test_media_and_thumbnails_by_id_with_immutable_caching(server: Server) -> None:
    tile = server.json("/api/jobs", params={"limit": "1"})["jobs"][0]
    object_id = tile["images"][0]["object"]
    answer = server.get(f"/media/{object_id}")
    assert answer.status_code == 200
    assert answer.content == server.state.vault.read_object(object_id)
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["etag"] == f'"{object_id}"'
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = server.get(f"/media/{object_id}", headers={"If-None-Match": f'"{object_id}"'})
    assert again.status_code == 304 and not again.content
    download = server.get(f"/media/{object_id}", params={"download": "1"})
    assert download.headers["content-disposition"] == (
        f'attachment; filename="{object_id[:16]}.png"'
    )
    for size in ("s", "m"):
        thumb = server.get(f"/thumb/{object_id}", params={"size": size})
        assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"
        assert thumb.headers["etag"] == f'"{object_id}-{size}"'
        cached = server.get(
            f"/thumb/{object_id}",
            params={"size": size},
            headers={"If-None-Match": f'"{object_id}-{size}"'},
        )
        assert cached.status_code == 304
    assert server.get(f"/thumb/{object_id}", params={"size": "xl"}).status_code == 400
    # A record is an object too, but no image: not served.
    job = server.state.vault.current_index().get(tile["id"])
    assert job is not None
    assert server.get(f"/media/{job.record}").status_code == 404


# -- security -------------------------------------------------------------------------------
TRAVERSALS = ["..", "../config.json", "..%2F..%2Fconfig.json", "%2e%2e", "a/../../b", "%00"]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_every_id_parameter_is_refused(server: Server, bad: str) -> None:
    paths = [
        f"/api/job/{bad}",
        f"/media/{bad}",
        f"/thumb/{bad}",
        f"/media/{'0' * 62}{bad}",
        f"/api/snapshots?before={bad}",
        f"/api/jobs?after={bad}",
    ]
    address = httpx.URL(server.url)
    for path in paths:
        # Sent as written: http.client does not resolve dot segments as httpx does (which
        # would turn /media/.. into /, the page).
        connection = http.client.HTTPConnection(address.host, address.port, timeout=10)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            status, kind, text = answer.status, answer.getheader("content-type"), answer.read()
        finally:
            connection.close()
        assert status in (400, 404), (path, status)
        assert kind == "application/json", path
        assert b"mjvault" not in text  # nothing of the vault's files


def test_foreign_host_header_is_refused(server: Server) -> None:
    # A page of another site whose name resolves to 127.0.0.1 (DNS rebinding).
    answer = server.get("/api/info", headers={"Host": "evil.example:80"})
    assert answer.status_code == 403 and answer.json()["code"] == "bad_host"
    # Names that look like loopback addresses but are names a DNS resolves (rebinding).
    for host in ("127.attacker.example", "127.0.0.1.nip.io:80", "localhost.evil"):
        refused = server.get("/api/info", headers={"Host": host})
        assert refused.status_code == 403, host
    for host in ("LOCALHOST:1", "127.0.0.2", "[::1]:8765"):
        assert server.get("/api/info", headers={"Host": host}).status_code == 200, host
    assert server.get("/api/info", headers={"Host": "localhost:1"}).status_code == 200


def test_mutations_need_the_csrf_token(server: Server) -> None:
    refused = server.client.post("/api/jobs", json={})
    assert refused.status_code == 403 and refused.json()["code"] == "csrf"
    wrong = server.client.post("/api/jobs", headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    token = server.json("/api/info")["csrf"]
    passed = server.client.post("/api/jobs", headers={"X-CSRF-Token": token})
    assert passed.status_code == 405  # past the guard: GET-only route


def test_read_only_refuses_mutations(plain_root: Path) -> None:
    ro = _serve(plain_root, read_only=True)
    try:
        assert ro.json("/api/info")["read_only"] is True
        token = ro.json("/api/info")["csrf"]
        for method in ("POST", "PUT", "DELETE"):
            answer = ro.client.request(method, "/api/tasks", headers={"X-CSRF-Token": token})
            assert answer.status_code == 403 and answer.json()["code"] == "read_only"
        assert ro.get("/api/jobs").status_code == 200
    finally:
        ro.stop()


def test_a_read_only_server_serves_thumbnails_without_writing(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    vault = Vault.init(root)
    with vault.writer("test", thumbnails=False) as writer:
        images = [writer.put_media(make_png(i, 64, 64)) for i in range(3)]
        for n, job in enumerate(Account.generate(9, 3).jobs):
            writer.add_job(json.dumps(job.record(1)).encode(), [images[n]])
    vault.current_index()  # built now, not by the first request
    vault.close()

    def files() -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")
            if p.is_file() and p.name != "lock.mdb"
        }

    before = files()
    ro = _serve(root, read_only=True)
    try:
        for object_id in images:
            for size in ("s", "m"):
                thumb = ro.get(f"/thumb/{object_id}", params={"size": size})
                assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"
    finally:
        ro.stop()
        ro.state.vault.close()
    assert files() == before


def test_beyond_loopback_every_request_needs_the_token(plain_root: Path) -> None:
    # Settings of a server listening on every address; the test's socket stays on loopback.
    far = _serve(plain_root, host="0.0.0.0", access_token="s3cret-token-value")
    try:
        for path in ("/api/info", "/api/jobs", f"/media/{'a' * 64}", "/"):
            answer = far.get(path)
            assert answer.status_code == 401 and answer.json()["code"] == "unauthorized", path
        assert far.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert far.get("/api/info", params={"token": "wrong"}).status_code == 401
        good = far.get("/api/info", headers={"Authorization": "Bearer s3cret-token-value"})
        assert good.status_code == 200
        # ?token= once: a cookie set, the address cleaned, then the cookie alone will do.
        link = far.get("/api/jobs", params={"token": "s3cret-token-value", "limit": "2"})
        assert link.status_code == 303 and link.headers["location"] == "/api/jobs?limit=2"
        cookie = link.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert far.get("/api/jobs", params={"limit": "2"}).status_code == 200  # the cookie
    finally:
        far.stop()

    # No token configured beyond loopback: nothing is served.
    open_ = _serve(plain_root, host="0.0.0.0")
    try:
        assert open_.get("/api/info").status_code == 401
    finally:
        open_.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ctrl_c_stops_the_server_cleanly(plain_root: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MJVAULT_SERVE_TOKEN": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "mjvault", "--vault", str(plain_root), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/info").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_token_is_never_an_argument() -> None:
    from click.testing import CliRunner

    from mjvault.cli.serve import serve_command

    help_text = CliRunner().invoke(serve_command, ["--help"]).output
    assert "--token" not in help_text and "--access-token" not in help_text


# -- an encrypted vault ---------------------------------------------------------------------
def _files(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.name != "lock.mdb"
    }


def test_encrypted_vault_served_from_memory(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    vault = Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    try:
        _fill(vault, 40)
        vault.current_index()
    finally:
        vault.close()
    before = _files(root)
    enc = _serve(root, passphrase=PASSPHRASE)
    try:
        info = enc.json("/api/info")
        assert info["encrypted"] is True and info["jobs"] == 40
        assert len(_walk(enc, "", "newest", 7)) == 40
        tile = enc.json("/api/jobs", params={"limit": "1"})["jobs"][0]
        object_id = tile["images"][0]["object"]
        media = enc.get(f"/media/{object_id}")
        assert media.status_code == 200 and media.content.startswith(b"\x89PNG")
        thumb = enc.get(f"/thumb/{object_id}")
        assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"
        detail = enc.json(f"/api/job/{tile['id']}")
        assert detail["record"]["id"] == tile["id"]
        # Nothing was written but the thumbnail, kept as sealed objects and a row of the cache
        # table (FORMAT §7.2): no image, no thumbnail in clear.
        after = _files(root)
        new = set(after) - set(before)
        assert all(n.startswith(("objects/", "cache/thumbs.sqlite")) for n in new), new
        for name in after:
            data = (root / name).read_bytes()
            assert media.content[:64] not in data and thumb.content[:64] not in data, name
    finally:
        enc.stop()


def test_a_key_rotation_while_serving_refuses_writes_under_the_retired_secret(
    tmp_path: Path,
) -> None:
    from mjvault import collections as coll
    from mjvault.errors import KeysChanged
    from mjvault.integrity.verify import verify

    root = tmp_path / "vault"
    vault = Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    try:
        _fill(vault, 6)
        vault.current_index()
    finally:
        vault.close()
    enc = _serve(root, passphrase=PASSPHRASE)
    try:
        job_id = enc.json("/api/jobs", params={"limit": "1"})["jobs"][0]["id"]
        token = enc.json("/api/info")["csrf"]
        # Another process, as `mjvault key rotate` is (in this one it would share the
        # server's LMDB environment of the index it rebuilds).
        rotated = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from mjvault.integrity.rotate import rotate;"
                " from tests.conftest import CHEAP_KDF, PASSPHRASE;"
                " rotate(Path(sys.argv[1]), PASSPHRASE, kdf=CHEAP_KDF)",
                str(root),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            timeout=120,
        )
        assert rotated.returncode == 0, rotated.stderr
        answer = enc.client.post(
            "/api/collections/faves",
            json={"selection": {"ids": [job_id]}, "op": "add"},
            headers={"X-CSRF-Token": token},
        )
        assert answer.status_code == 409 and answer.json()["code"] == "keys_changed"
        assert "restart mjvault serve" in answer.json()["error"]  # what the page shows
        with pytest.raises(KeysChanged), enc.state.vault.reopen().write_lock():
            pass
    finally:
        enc.stop()
        enc.state.vault.close()
    with Vault.open(root, passphrase=PASSPHRASE) as reopened:  # after a restart
        assert verify(reopened).ok
        assert coll.list_collections(reopened) == []
        coll.change(reopened, "faves", add=[job_id])  # a fresh handle writes again
        assert verify(reopened).ok


# -- keyset pages of the index: a property -------------------------------------------------
WORDS = ["fox", "red", "snow", "cat", "the"]
BASE = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def summaries(draw: st.DrawFn) -> list[JobSummary]:
    n = draw(st.integers(1, 40))
    jobs = []
    for i in range(n):
        # Few distinct times: many ties (decided by id), a few days, some unknown.
        slot = draw(st.one_of(st.none(), st.integers(0, 12)))
        moment = None if slot is None else BASE + timedelta(hours=9 * slot)
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
        parent = draw(st.one_of(st.none(), st.integers(0, 3)))
        jobs.append(
            JobSummary(
                job_id=f"j{draw(st.integers(0, 99)):02d}-{i}",
                record=f"{i:064x}",
                images=(f"{i + 1:064x}",),
                time=moment,
                type=draw(st.sampled_from(["grid", "upscale"])),
                prompt=" ".join(words),
                parent=None if parent is None else f"p{parent}",
            )
        )
    return jobs


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(jobs=summaries(), limit=st.integers(1, 7), all_at_once=st.booleans())
def test_pages_walk_the_search_exactly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sealed: bool,
    jobs: list[JobSummary],
    limit: int,
    all_at_once: bool,
) -> None:
    # Both ways of reading a page: every match looked up, or day lists walked.
    monkeypatch.setattr("mjvault.index.pages.LOOK_UP_ALL_UP_TO", 10_000 if all_at_once else 0)
    index = Index(
        tmp_path / f"idx-{os.urandom(4).hex()}", VaultKeys(bytes(range(32))) if sealed else None
    )
    try:
        index.apply([(s.job_id, s) for s in jobs], "0" * 64)
        for q in ("", "fox", "red -snow", "type:grid"):
            query = parse_query(q)
            for sort in ("newest", "oldest", "relevance"):
                expected = search(index, query, sort=sort).job_ids  # type: ignore[arg-type]
                walked: list[str] = []
                after = None
                while True:
                    found = page(index, query, sort=sort, after=after, limit=limit)  # type: ignore[arg-type]
                    assert found.total == len(expected)
                    walked += found.job_ids
                    if found.next is None:
                        break
                    after = PageKey.decode(found.next.encode(), sort)  # type: ignore[arg-type]
                assert walked == expected, (q, sort)
                if sort == "relevance":
                    continue
                total, segments = timeline(index, query, sort=sort, size=limit)
                assert total == len(expected)
                for k, segment in enumerate(segments):
                    got = page(index, query, sort=sort, after=segment.cursor, limit=segment.count)  # type: ignore[arg-type]
                    assert got.job_ids == expected[k * limit : k * limit + segment.count]
        latest = {s.job_id: s for s in jobs}
        for parent in ("p0", "p1"):
            kids = sorted(
                (s for s in latest.values() if s.parent == parent),
                key=lambda s: (s.micros, s.job_id),
            )
            assert children(index, parent, 100) == [s.job_id for s in kids]
    finally:
        index.close()


def test_an_index_of_format_6_is_rebuilt_with_its_parents_lists(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    try:
        _fill(vault, 30)
        index = vault.current_index()
        with index.env.begin(write=True) as txn:  # as format 6 left it: no parents lists
            txn.drop(index.db[b"parents"], delete=False)
            txn.put(b"format", b"6", db=index.db[b"meta"])
        child = next(s for s in index.iter_summaries() if s.parent)
        assert child.job_id in children(vault.current_index(), child.parent or "", 100)
    finally:
        vault.close()
