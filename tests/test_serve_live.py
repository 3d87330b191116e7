"""`mjvault serve`'s live and batch parts against a real server on 127.0.0.1.

A small vault synced from the bundled Midjourney-compatible server, one web server per module
(and a read-only one): live syncs started over HTTP with their events read from the SSE
stream, a lock held by another process, exports checked against the objects, collections,
forget with its count, and the guards (CSRF, read-only) on every mutating route.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.find.export import COLUMNS
from mjvault.serve import ServeSettings, create_app
from mjvault.serve import live as live_module
from mjvault.serve.live import Live
from mjvault.serve.tasks import Event, EventHub
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import SyncOptions, sync
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import run_cli

TOKEN = "sess-5e1b0c7d9a2f4e6b8c3d"
SEED, JOBS = 71, 24


class Running:
    """A web server on a free port of 127.0.0.1, on a thread of this process."""

    def __init__(self, vault_root: Path, settings: ServeSettings) -> None:
        self.app = create_app(vault_root, settings)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base, timeout=30)
        self.csrf = self.client.get("/api/info").json()["csrf"]

    @property
    def live(self) -> Live:
        live = self.app.state.serve.caches["live"]
        assert isinstance(live, Live)
        return live

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(20)


class Events:
    """An SSE stream read on a thread: (event, data) pairs as they arrive, and comments."""

    def __init__(self, base: str) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.content_type = ""
        self._changed = threading.Condition()
        self._stop = threading.Event()  # seen at the next line: pings come twice a second
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=60))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.wait(lambda: self.status is not None), "no answer from /api/events"

    def _read(self) -> None:
        name = "message"
        with contextlib.suppress(httpx.HTTPError), self._client.stream("GET", "/api/events") as r:
            with self._changed:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self._changed.notify_all()
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                with self._changed:
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        self.items.append((name, json.loads(line[6:])))
                        name = "message"
                    self._changed.notify_all()

    def wait(self, condition: Any, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._changed:
            return [data for n, data in self.items if n == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    account = Account.generate(SEED, JOBS)
    root = tmp_path_factory.mktemp("serve-live") / "vault"
    Vault.init(root).close()
    with FakeMidjourney(account, token=TOKEN) as midjourney, pytest.MonkeyPatch.context() as env:
        for name, value in {
            "MJVAULT_CONFIG": str(root.parent / "no-user-config.toml"),
            "MJVAULT_SYSTEM_CONFIG": str(root.parent / "no-system-config.toml"),
            "MJVAULT_WEB_BASE": midjourney.web_base,
            "MJVAULT_CDN_BASE": midjourney.cdn_base,
            "MJVAULT_MIDJOURNEY_API": "v3",
            "MIDJOURNEY_USER_ID": midjourney.user_id,
            "MIDJOURNEY_SESSION_TOKEN": TOKEN,
            "MJVAULT_SYNC_MAX_RPS": "5000",
        }.items():
            env.setenv(name, value)
        # A reader closing its stream notices at the next line: pings twice a second.
        env.setattr(live_module, "PING_SECONDS", 0.5)
        vault = Vault.open(root)
        try:
            with MidjourneyClient(_settings(midjourney)) as client:
                sync(vault, client, SyncOptions(concurrency=4, thumbnails=False))
        finally:
            vault.close()
        server = Running(root, ServeSettings())
        read_only = Running(root, ServeSettings(read_only=True))
        try:
            yield {"root": root, "midjourney": midjourney, "server": server, "ro": read_only}
        finally:
            server.stop()
            read_only.stop()


def _settings(midjourney: FakeMidjourney) -> Any:
    from mjvault.sources.midjourney import ClientSettings

    return ClientSettings(
        web_base=midjourney.web_base,
        cdn_base=midjourney.cdn_base,
        api="v3",
        user_id=midjourney.user_id,
        token=TOKEN,
        max_rps=5000.0,
        burst=100,
        concurrency=4,
    )


def _job_ids(server: Running, query: str = "") -> list[str]:
    answer = server.client.get("/api/jobs", params={"q": query, "limit": 1000}).json()
    return [tile["id"] for tile in answer["jobs"]]


def _wait_idle(server: Running) -> None:
    deadline = time.monotonic() + 60
    while server.live.runner.current is not None:
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.05)


# -- live ---------------------------------------------------------------------------------------
def test_a_live_sync_tells_its_progress_in_order_and_its_new_jobs_appear(
    site: dict[str, Any],
) -> None:
    server: Running = site["server"]
    before = set(_job_ids(server))
    added = site["midjourney"].add_jobs(3)
    events = Events(server.base)
    try:
        assert events.status == 200
        assert events.content_type.startswith("text/event-stream")
        answer = server.post("/api/tasks", {"kind": "sync"})
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task"]
        assert events.wait(
            lambda: (
                any(d.get("state") != "running" for d in events.named("task"))
                and events.named("jobs")
            )
        ), events.items
        mine = [d for d in events.named("task") if d["task"] == task_id]
        assert [d["state"] for d in mine][-1] == "done", mine[-1]
        assert all(d["state"] == "running" for d in mine[:-1])
        done = [d["done"] for d in mine]
        assert done == sorted(done)  # progress never goes back
        jobs = events.named("jobs")[-1]
        assert jobs["new"] == 3
        head = server.client.get("/api/info").json()
        assert head["jobs"] == len(before) + 3
    finally:
        events.close()
    now = set(_job_ids(server))
    assert now - before == {job.id for job in added}
    listed = server.client.get("/api/tasks").json()
    assert listed["tasks"][0]["task"] == task_id
    assert listed["tasks"][0]["report"]["jobs_new"] == 3
    assert listed["lock"] == {"held": False, "holder": None, "ours": False}


def test_a_push_started_from_the_app_publishes_the_snapshots(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    _wait_idle(server)
    remote = site["root"].parent / "remote"
    added = run_cli("--vault", str(site["root"]), "remote", "add", "nas", str(remote))
    assert added.returncode == 0, added.stderr
    events = Events(server.base)
    try:
        answer = server.post("/api/tasks", {"kind": "push", "remote": "nas"})
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task"]
        assert events.wait(
            lambda: any(
                d["task"] == task_id and d["state"] != "running" for d in events.named("task")
            )
        )
        last = [d for d in events.named("task") if d["task"] == task_id][-1]
        assert last["state"] == "done", last
        assert last["total"] is not None and last["done"] == last["total"]
    finally:
        events.close()
    head = server.client.get("/api/info").json()
    report = server.client.get("/api/tasks").json()["tasks"][0]["report"]
    assert report["snapshots_sent"] >= 1 and not report["problems"]
    assert any(remote.rglob("*")), "nothing reached the remote"
    assert head["read_only"] is False


def test_a_sync_run_outside_the_server_reaches_the_page_as_new_jobs(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    _wait_idle(server)
    added = site["midjourney"].add_jobs(2)
    events = Events(server.base)
    try:
        vault = Vault.open(site["root"])  # as `mjvault sync` in a terminal would
        try:
            with MidjourneyClient(_settings(site["midjourney"])) as client:
                report = sync(vault, client, SyncOptions(concurrency=2, thumbnails=False))
        finally:
            vault.close()
        assert events.wait(lambda: any(d["head"] == report.snapshot for d in events.named("jobs")))
        assert [d for d in events.named("jobs") if d["head"] == report.snapshot][-1]["new"] == 2
    finally:
        events.close()
    assert {job.id for job in added} <= set(_job_ids(server))


HOLDER = """
import sys
from pathlib import Path
from mjvault.lock import WriteLock
lock = WriteLock(Path(sys.argv[1]), command="mjvault sync").acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_another_process_is_a_lock_event_and_a_refusal_naming_it(
    site: dict[str, Any],
) -> None:
    server: Running = site["server"]
    _wait_idle(server)
    events = Events(server.base)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site["root"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        pid = str(holder.pid)
        # The event naming this holder (an earlier one, of the site's own last task, may
        # still be in the stream on a busy machine).
        ours = f"pid {pid}"
        assert events.wait(
            lambda: any(d["held"] and ours in d["holder"] for d in events.named("lock"))
        ), events.named("lock")
        held = [d for d in events.named("lock") if d["held"] and ours in d["holder"]][-1]
        assert "mjvault sync" in held["holder"]
        assert held["ours"] is False
        for body in ({"kind": "sync"},):
            refused = server.post("/api/tasks", body)
            assert refused.status_code == 409
            assert refused.json()["code"] == "locked"
            assert f"pid {pid}" in refused.json()["holder"]
        forget = server.post(
            "/api/forget", {"selection": {"ids": _job_ids(server)[:1]}, "count": 1}
        )
        assert forget.status_code == 409 and forget.json()["code"] == "locked"
        assert server.client.get("/api/tasks").json()["lock"]["held"] is True
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    try:
        assert events.wait(lambda: not events.named("lock")[-1]["held"]), events.named("lock")
    finally:
        events.close()


def test_a_second_task_while_one_runs_is_refused_as_busy(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    _wait_idle(server)
    site["midjourney"].add_jobs(2)
    first = server.post("/api/tasks", {"kind": "sync"})
    assert first.status_code == 202
    second = server.post("/api/tasks", {"kind": "sync"})
    # The first may already have ended on a fast machine: then the second simply ran.
    if second.status_code == 409:
        assert second.json()["code"] == "busy"
        assert second.json()["task"] == first.json()["task"]
    else:
        assert second.status_code == 202
    _wait_idle(server)


def test_bad_task_requests_are_refused_with_one_line(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    for body, code in (
        ({"kind": "format-disk"}, "bad_kind"),
        ({"kind": "push"}, "bad_name"),
        ({"kind": "push", "remote": "../../etc"}, "bad_name"),
    ):
        answer = server.post("/api/tasks", body)
        assert answer.status_code == 400, body
        assert answer.json()["code"] == code
    unknown = server.post("/api/tasks", {"kind": "push", "remote": "nowhere"})
    assert unknown.status_code == 202  # refused by the task: the remote is not configured
    _wait_idle(server)
    last = server.client.get("/api/tasks").json()["tasks"][0]
    assert last["state"] == "failed" and "nowhere" in last["message"]


def test_events_ping_and_a_closed_stream_leaves_no_listener(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server: Running = site["server"]
    monkeypatch.setattr(live_module, "PING_SECONDS", 0.2)
    hub = server.live.hub
    before = hub.listener_count
    events = Events(server.base)
    try:
        assert events.wait(lambda: bool(events.comments)), "no ping"
        assert events.comments[0] == ": ping"
        assert hub.listener_count == before + 1
    finally:
        events.close()
    deadline = time.monotonic() + 10
    while hub.listener_count != before:
        assert time.monotonic() < deadline, "the closed stream's listener was kept"
        time.sleep(0.05)


def test_a_listener_keeps_the_newest_event_per_subject_within_its_bound() -> None:
    hub = EventHub(limit=8)
    listener = hub.subscribe()
    for n in range(1000):
        hub.publish("task", {"task": f"t{n % 20}", "done": n})
    hub.publish("jobs", {"new": 2, "head": "a"})
    hub.publish("jobs", {"new": 3, "head": "b"})
    pending = listener.drain()
    assert len(pending) == 8 and listener.dropped > 0
    assert pending[-1] == Event("jobs", {"new": 5, "head": "b"})
    tasks = [e.data for e in pending if e.name == "task"]
    assert all(d["done"] >= 1000 - 20 for d in tasks)  # only the newest state of each
    assert listener.drain() == []
    listener.close()
    assert hub.listener_count == 0


def test_a_task_that_fails_at_once_is_never_left_running_on_the_page(tmp_path: Path) -> None:
    """The starter's "running" event, held up between being read and being handed over,
    must not land after the worker's "failed" one."""
    from mjvault.errors import MjvaultError
    from mjvault.serve.tasks import TaskRunner

    class SlowStarterHub(EventHub):
        def publish(self, name: str, data: dict[str, Any]) -> None:
            if threading.current_thread() is threading.main_thread():
                time.sleep(0.3)  # the worker fails meanwhile
            super().publish(name, data)

    def broken() -> Vault:
        time.sleep(0.1)  # after the starter has read the task's state
        raise MjvaultError("no vault here")

    hub = SlowStarterHub()
    delivered: list[str] = []
    listener = hub.subscribe()
    runner = TaskRunner(tmp_path, broken, hub, client_settings=lambda: None)  # type: ignore[arg-type,return-value]
    task = runner.start("sync")
    runner.close()
    for event in listener.drain():
        delivered.append(event.data["state"])
    assert task.state == "failed"
    assert delivered[-1] == "failed"


# -- batch ---------------------------------------------------------------------------------------
def _images_of(site: dict[str, Any], job_ids: list[str]) -> dict[str, str]:
    """file name in the zip -> object id, as the vault holds them."""
    vault = Vault.open(site["root"])
    try:
        wanted = {}
        for job_id in job_ids:
            for n, object_id in enumerate(vault.current_index().get(job_id).images):  # type: ignore[union-attr]
                if object_id is not None:
                    wanted[f"{job_id}_{n}"] = object_id
        return wanted
    finally:
        vault.close()


def test_export_zip_holds_the_originals_of_the_selection(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    ids = _job_ids(server)[:3]
    answer = server.post("/api/export", {"selection": {"ids": ids}, "format": "zip"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert "attachment" in answer.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.testzip() is None
    wanted = _images_of(site, ids)
    names = {info.filename.rsplit(".", 1)[0]: info for info in archive.infolist()}
    assert set(names) == set(wanted)
    for stem, info in names.items():
        assert info.compress_type == zipfile.ZIP_STORED
        data = archive.read(info)
        assert blake3.blake3(data).hexdigest() == wanted[stem]  # the object's own bytes


def test_export_by_a_one_time_link_is_the_same_zip_and_needs_the_token(
    site: dict[str, Any],
) -> None:
    server: Running = site["server"]
    ids = _job_ids(server)[:3]
    body = {"selection": {"ids": ids}, "format": "zip", "link": True}
    refused = server.client.post("/api/export", json=body)  # no CSRF token: no link
    assert refused.status_code == 403 and refused.json()["code"] == "csrf"
    url = server.post("/api/export", body).json()["url"]
    assert url.startswith("/api/export/")
    answer = server.client.get(url)
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        got = {
            info.filename.rsplit(".", 1)[0]: blake3.blake3(archive.read(info)).hexdigest()
            for info in archive.infolist()
        }
    assert got == _images_of(site, ids)
    assert server.client.get(url).status_code == 404  # used once
    assert server.client.get("/api/export/" + "x" * 32).status_code == 404


def test_export_of_a_query_minus_exclusions(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    everything = _job_ids(server)
    excluded = everything[1:4]
    answer = server.post(
        "/api/export",
        {"selection": {"query": "", "exclude": excluded}, "format": "json"},
    )
    assert answer.status_code == 200
    rows = answer.json()
    assert [row["id"] for row in rows] == [j for j in everything if j not in excluded]


def test_export_csv_and_json_rows_are_the_records(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    ids = _job_ids(server)[:5]
    as_json = server.post("/api/export", {"selection": {"ids": ids}, "format": "json"}).json()
    assert [row["id"] for row in as_json] == ids
    answer = server.post("/api/export", {"selection": {"ids": ids}, "format": "csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == COLUMNS
    assert [row["id"] for row in rows] == ids
    assert [row["prompt"] for row in rows] == [row["prompt"] for row in as_json]
    assert [json.loads(row["images"]) for row in rows] == [row["images"] for row in as_json]


def test_bad_selections_are_refused_before_anything_is_sent(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    for selection, code in (
        ({"ids": ["../../etc/passwd"]}, "bad_id"),
        ({"ids": ["a/b"]}, "bad_id"),
        ({"ids": "not a list"}, "bad_selection"),
        ({"ids": [], "query": ""}, "bad_selection"),
        ({"query": "x", "exclude": ["%2e%2e"]}, "bad_id"),
    ):
        answer = server.post("/api/export", {"selection": selection, "format": "zip"})
        assert answer.status_code == 400, selection
        assert answer.json()["code"] == code
    fmt = server.post("/api/export", {"selection": {"ids": []}, "format": "tar"})
    assert fmt.json()["code"] == "bad_format"


def test_collections_add_remove_list_delete(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    ids = _job_ids(server)[:4]
    added = server.post("/api/collections/keepers", {"selection": {"ids": ids}, "op": "add"})
    assert added.status_code == 200, added.text
    assert added.json() == {"name": "keepers", "jobs": 4}
    removed = server.post(
        "/api/collections/keepers", {"selection": {"ids": ids[:1]}, "op": "remove"}
    )
    assert removed.json()["jobs"] == 3
    listed = server.client.get("/api/collections").json()["collections"]
    assert {"name": "keepers", "jobs": 3} in listed
    shown = server.client.get("/api/collections/keepers").json()
    assert sorted(shown["ids"]) == sorted(ids[1:])
    deleted = server.client.delete(
        "/api/collections/keepers", headers={"X-CSRF-Token": server.csrf}
    )
    assert deleted.status_code == 200
    again = server.client.delete("/api/collections/keepers", headers={"X-CSRF-Token": server.csrf})
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    bad = server.post("/api/collections/.hidden", {"selection": {"ids": ids}, "op": "add"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_name"
    # Removing from a collection that does not exist makes none.
    none = server.post("/api/collections/never", {"selection": {"ids": ids}, "op": "remove"})
    assert none.status_code == 404 and none.json()["code"] == "not_found"
    listed = server.client.get("/api/collections").json()["collections"]
    assert all(c["name"] != "never" for c in listed)


def test_forget_needs_the_right_count_and_then_the_jobs_leave(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    _wait_idle(server)
    ids = _job_ids(server)[-2:]
    wrong = server.post("/api/forget", {"selection": {"ids": ids}, "count": 3})
    assert wrong.status_code == 409
    assert wrong.json()["code"] == "count_mismatch" and wrong.json()["count"] == 2
    assert set(ids) <= set(_job_ids(server))  # nothing forgotten
    events = Events(server.base)
    try:
        right = server.post("/api/forget", {"selection": {"ids": ids}, "count": 2})
        assert right.status_code == 200, right.text
        report = right.json()
        assert sorted(report["added"]) == sorted(ids) and report["matched"] == 2
        assert not set(ids) & set(_job_ids(server))
        # The page hears of the new HEAD: no new jobs (fewer).
        assert events.wait(lambda: bool(events.named("jobs")))
        assert events.named("jobs")[-1] == {"new": 0, "head": report["head"]}
    finally:
        events.close()


# -- guards --------------------------------------------------------------------------------------
MUTATIONS = (
    ("POST", "/api/tasks", {"kind": "sync"}),
    ("POST", "/api/export", {"selection": {"ids": []}, "format": "zip"}),
    ("POST", "/api/collections/keepers", {"selection": {"ids": []}, "op": "add"}),
    ("DELETE", "/api/collections/keepers", None),
    ("POST", "/api/forget", {"selection": {"ids": []}, "count": 1}),
    ("POST", "/api/views", {"name": "picked", "selection": {"ids": []}}),
)


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_mutations_need_the_csrf_token(
    site: dict[str, Any], method: str, path: str, body: dict[str, Any] | None
) -> None:
    server: Running = site["server"]
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        answer = server.client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403 and answer.json()["code"] == "csrf"


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_read_only_refuses_every_mutation(
    site: dict[str, Any], method: str, path: str, body: dict[str, Any] | None
) -> None:
    server: Running = site["ro"]
    answer = server.client.request(method, path, json=body, headers={"X-CSRF-Token": server.csrf})
    assert answer.status_code == 403 and answer.json()["code"] == "read_only"
    assert server.client.get("/api/tasks").json()["tasks"] == []


# -- stopping ------------------------------------------------------------------------------------
def test_stopping_the_server_stops_a_sync_at_a_checkpoint_and_the_next_resumes(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from mjvault.serve.tasks import TaskRunner
    from mjvault.testing.faults import Faults

    root = tmp_path / "vault"
    Vault.init(root).close()
    account = Account.generate(SEED + 1, 30)
    with FakeMidjourney(account, token=TOKEN) as midjourney:
        midjourney.faults = replace(Faults(), latency=0.02, targets=frozenset({"cdn"}))

        def runner() -> TaskRunner:
            return TaskRunner(
                root,
                lambda: Vault.open(root),
                EventHub(),
                client_settings=lambda: _settings(midjourney),
                sync_options=lambda: SyncOptions(
                    concurrency=2, checkpoint_jobs=3, thumbnails=False
                ),
            )

        first = runner()
        task = first.start("sync")
        deadline = time.monotonic() + 60
        while task.done < 8:
            assert time.monotonic() < deadline and task.state == "running", task
            time.sleep(0.01)
        first.close()
        assert task.state == "failed" and task.code == "interrupted", task
        assert (root / "refs" / "checkpoint").exists()  # what was fetched is kept
        midjourney.faults = Faults()
        again = runner().start("sync")
        deadline = time.monotonic() + 60
        while again.state == "running":
            assert time.monotonic() < deadline, again
            time.sleep(0.02)
        assert again.state == "done", again
        assert again.report is not None and again.report["resumed"] is True
    vault = Vault.open(root)
    try:
        assert {e.job_id for e in vault.entries()} == {job.id for job in account.jobs}
    finally:
        vault.close()


def test_an_encrypted_vault_exports_originals_opened_in_memory_only(tmp_path: Path) -> None:
    from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

    root = tmp_path / "vault"
    originals = {n: png_bytes(1000 + n, 4096) for n in range(3)}
    with (
        Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault,
        vault.writer("test") as writer,
    ):
        for n, data in originals.items():
            job_id = f"0000000{n}-aaaa-4bbb-8ccc-dddddddddddd"
            writer.add_job(record_json(job_id, f"secret fox {n}"), [writer.put_media(data)])
    asked: list[int] = []

    def passphrase() -> str:
        asked.append(1)  # a terminal prompt, in `mjvault serve`
        return PASSPHRASE

    server = Running(root, ServeSettings(passphrase=passphrase))
    try:
        answer = server.post("/api/export", {"selection": {"query": "fox"}, "format": "zip"})
        assert answer.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(answer.content))
        got = {int(info.filename[7]): archive.read(info) for info in archive.infolist()}
        assert got == originals
        rows = server.post("/api/export", {"selection": {"query": "fox"}, "format": "json"}).json()
        assert sorted(row["prompt"] for row in rows) == [f"secret fox {n}" for n in range(3)]
        # A mutation works on a handle with the keys the server opened: no passphrase asked.
        changed = server.post(
            "/api/collections/foxes", {"selection": {"query": "fox"}, "op": "add"}
        )
        assert changed.json() == {"name": "foxes", "jobs": 3}
        assert len(asked) == 1  # when the server opened the vault, never again
    finally:
        server.stop()
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"secret fox" not in data, path
            assert not any(original[16:80] in data for original in originals.values()), path


# -- properties ----------------------------------------------------------------------------------
EVENT_NAMES = st.sampled_from(["task", "jobs", "lock"])


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(EVENT_NAMES, st.sampled_from(["", "a", "b", "c"]), st.integers(0, 9)),
        max_size=60,
    ),
    limit=st.integers(1, 6),
)
def test_a_listener_gives_each_subject_its_newest_event_in_order_of_change(
    events: list[tuple[str, str, int]], limit: int
) -> None:
    hub = EventHub(limit=limit)
    listener = hub.subscribe()
    model: dict[tuple[str, str], dict[str, Any]] = {}
    dropped = 0
    for name, task, n in events:
        data = {"task": task, "new": n} if name != "jobs" else {"new": n}
        hub.publish(name, data)
        key = (name, task if name != "jobs" else "")
        earlier = model.pop(key, None)
        if name == "jobs" and earlier is not None:
            data = data | {"new": earlier["new"] + n}
        model[key] = data
        while len(model) > limit:  # the subject changed longest ago goes
            model.pop(next(iter(model)))
            dropped += 1
    pending = listener.drain()
    assert [e.data for e in pending] == list(model.values())
    assert listener.dropped == dropped


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_zip_of_any_id_selection_holds_each_known_job_once_in_its_order(
    site: dict[str, Any], data: st.DataObject
) -> None:
    from mjvault.serve.batch import Selection, write_zip

    vault = Vault.open(site["root"])
    try:
        known = list(vault.current_index().iter_summaries())[:8]
        ids = data.draw(
            st.lists(st.sampled_from([s.job_id for s in known] + ["not-a-job-0000"]), max_size=12)
        )
        out = io.BytesIO()
        write_zip(vault, Selection(ids=tuple(ids)).job_ids(vault), out)
        names = [i.filename.rsplit(".", 1)[0] for i in zipfile.ZipFile(out).infolist()]
        order = [j for j in dict.fromkeys(ids) if j != "not-a-job-0000"]
        images = {s.job_id: s.images for s in known}
        assert names == [
            f"{j}_{n}" for j in order for n, oid in enumerate(images[j]) if oid is not None
        ]
    finally:
        vault.close()


def test_ctrl_c_on_mjvault_serve_mid_sync_keeps_a_checkpoint_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    import os
    import signal
    from dataclasses import replace

    from mjvault.lock import read_holder
    from mjvault.testing.faults import Faults

    root = tmp_path / "vault"
    Vault.init(root).close()
    account = Account.generate(SEED + 2, 40)
    with FakeMidjourney(account, token=TOKEN) as midjourney:
        midjourney.faults = replace(Faults(), latency=0.03, targets=frozenset({"cdn"}))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
        env |= {
            "MJVAULT_CONFIG": str(tmp_path / "none.toml"),
            "MJVAULT_SYSTEM_CONFIG": str(tmp_path / "none-system.toml"),
            "MJVAULT_WEB_BASE": midjourney.web_base,
            "MJVAULT_CDN_BASE": midjourney.cdn_base,
            "MJVAULT_MIDJOURNEY_API": "v3",
            "MIDJOURNEY_USER_ID": midjourney.user_id,
            "MIDJOURNEY_SESSION_TOKEN": TOKEN,
            "MJVAULT_SYNC_MAX_RPS": "5000",
            "MJVAULT_SYNC_JOBS": "2",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "mjvault", "--vault", str(root), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
            deadline = time.monotonic() + 30
            while True:
                try:
                    csrf = client.get("/api/info").json()["csrf"]
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "mjvault serve did not start"
                    time.sleep(0.1)
            started = client.post(
                "/api/tasks", json={"kind": "sync"}, headers={"X-CSRF-Token": csrf}
            )
            assert started.status_code == 202, started.text
            while client.get("/api/tasks").json()["tasks"][0]["done"] < 6:
                assert time.monotonic() < deadline + 30, "the sync made no progress"
                time.sleep(0.05)
            assert read_holder(root / "lock") is not None  # the sync holds the lock
            client.close()
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        assert server.returncode == 0, stderr
        assert b"Traceback" not in stderr, stderr
        assert read_holder(root / "lock") is None  # released, its note emptied
        assert (root / "refs" / "checkpoint").exists()
        vault = Vault.open(root)
        try:
            with MidjourneyClient(_settings(midjourney)) as mj_client:
                report = sync(vault, mj_client, SyncOptions(concurrency=4, thumbnails=False))
            assert report.resumed
            assert {e.job_id for e in vault.entries()} == {job.id for job in account.jobs}
        finally:
            vault.close()


def test_an_export_abandoned_mid_stream_ends_its_writer_thread(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.serve import batch

    server: Running = site["server"]
    # Small chunks, a short queue: the writer is far ahead of nothing, and must wait.
    monkeypatch.setattr(batch, "PIPE_CHUNK", 4096)
    monkeypatch.setattr(batch, "PIPE_DEPTH", 2)

    def writers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "mjvault-export")

    before = writers()
    body = {"selection": {"query": ""}, "format": "zip"}
    with httpx.Client(base_url=server.base, timeout=30) as client:
        headers = {"X-CSRF-Token": server.csrf}
        with client.stream("POST", "/api/export", json=body, headers=headers) as answer:
            assert answer.status_code == 200
            next(answer.iter_raw(1024))  # the first bytes, then the client goes away
    deadline = time.monotonic() + 10
    while writers() > before:
        assert time.monotonic() < deadline, "the export's writer was kept after the client left"
        time.sleep(0.05)


def test_ctrl_c_with_an_event_stream_open_exits_at_once(tmp_path: Path) -> None:
    import os
    import signal

    root = tmp_path / "vault"
    Vault.init(root).close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    env |= {
        "MJVAULT_CONFIG": str(tmp_path / "none.toml"),
        "MJVAULT_SYSTEM_CONFIG": str(tmp_path / "none-system.toml"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mjvault", "--vault", str(root), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    events: Events | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/info", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mjvault serve did not start"
                time.sleep(0.1)
        stream = events = Events(base)  # a page open: its stream lasts until the page goes
        assert stream.wait(lambda: bool(stream.named("lock")))
        started = time.monotonic()
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if events is not None:
            events._thread.join(5)
            ended = not events._thread.is_alive()  # the server ended the stream
            events.close()
    assert server.returncode == 0, stderr
    assert b"Traceback" not in stderr, stderr
    assert took < 2.0, f"stopping took {took:.2f} s with a stream open"
    assert ended


# -- views of a selection ------------------------------------------------------------------------
def _view_files(directory: Path) -> dict[str, str]:
    """file (relative) -> the object its symlink shows."""
    return {
        str(p.relative_to(directory)): Path(os.readlink(p)).name
        for p in directory.rglob("*")
        if p.is_symlink()
    }


def _objects_of(site: dict[str, Any], job_ids: list[str]) -> set[str]:
    return set(_images_of(site, job_ids).values())


def test_make_a_view_of_a_selection_then_replace_it_and_follow_its_collection(
    site: dict[str, Any],
) -> None:
    from mjvault import collections
    from mjvault.views import refresh_views
    from mjvault.views.registry import ViewRegistry

    server: Running = site["server"]
    root: Path = site["root"]
    ids = _job_ids(server)
    first, second = ids[:3], ids[3:7]
    made = server.post("/api/views", {"name": "picked", "selection": {"ids": first}})
    assert made.status_code == 200, made.text
    body = made.json()
    directory = root.resolve().parent / "vault-views" / "picked"  # no [serve] views_dir: beside
    assert body["directory"] == str(directory)
    assert body["collection"] == {"name": "picked", "jobs": 3}
    files = _view_files(directory)
    assert set(files.values()) == _objects_of(site, first) and body["files"] == len(files)

    # Both exist now: the page must ask before they are replaced.
    again = server.post("/api/views", {"name": "picked", "selection": {"ids": second}})
    assert again.status_code == 409 and again.json()["code"] == "exists"
    assert again.json()["replaceable"] is True
    replaced = server.post(
        "/api/views", {"name": "picked", "selection": {"ids": second}, "replace": True}
    )
    assert replaced.status_code == 200, replaced.text
    assert set(_view_files(directory).values()) == _objects_of(site, second)
    members = server.client.get("/api/collections/picked").json()
    assert members["ids"] == sorted(second)

    # A change of the collection from the page refreshes the view that follows it.
    added = server.post("/api/collections/picked", {"selection": {"ids": first[:1]}, "op": "add"})
    assert added.status_code == 200 and added.json()["views"]["picked"]["added"] >= 1
    assert set(_view_files(directory).values()) == _objects_of(site, [*second, first[0]])

    # A change made elsewhere (same tree, a new snapshot) is seen by the next refresh.
    vault = Vault.open(root)
    try:
        collections.change(vault, "picked", remove=second[:2])
        report = refresh_views(vault)
        assert not report.errors
        (view_report,) = [r for r in report.views if r.view == "picked"]
        assert view_report.mode == "incremental" and view_report.removed >= 2
        assert set(_view_files(directory).values()) == _objects_of(site, [*second[2:], first[0]])
        assert refresh_views(vault).views[0].mode == "up-to-date"
        view = ViewRegistry(vault).load("picked")
        assert view.definition.filter.collection == "picked"
    finally:
        vault.close()


def test_a_collection_view_is_refused_by_a_version_without_that_filter(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import msgpack
    import zstandard

    from mjvault.errors import IntegrityError
    from mjvault.views import registry as registry_module
    from mjvault.views.filters import ViewFilter

    server: Running = site["server"]
    root: Path = site["root"]
    made = server.post("/api/views", {"name": "older", "selection": {"ids": _job_ids(server)[:2]}})
    assert made.status_code == 200, made.text
    data = (root / "views" / "older.view").read_bytes()
    assert data[:5] == b"MJVWZ"
    doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(data[5:]))
    assert doc["v"] == 4 and doc["definition"]["filter"]["collection"] == "older"
    # A reader of versions 1-3 (every earlier mjvault) refuses it as an unknown version.
    monkeypatch.setattr(registry_module, "READABLE_VERSIONS", (1, 2, 3))
    vault = Vault.open(root)
    try:
        with pytest.raises(IntegrityError, match="version 4"):
            registry_module.ViewRegistry(vault).load("older")
    finally:
        vault.close()
    # A filter without a collection is written as before: no key, so no view's fingerprint
    # (a hash of it) changes and nothing is rendered again.
    assert "collection" not in ViewFilter.build(search="cat").to_json()


def test_bad_view_requests_are_refused(site: dict[str, Any]) -> None:
    server: Running = site["server"]
    ids = _job_ids(server)[:1]
    for body, code in (
        ({"name": "../up", "selection": {"ids": ids}}, "bad_name"),
        ({"name": "a b", "selection": {"ids": ids}}, "bad_name"),
        ({"selection": {"ids": ids}}, "bad_name"),
        ({"name": "nothing", "selection": {"ids": []}}, "empty_selection"),
        ({"name": "nothing", "selection": {"query": "zzqqxx-no-such-word"}}, "empty_selection"),
    ):
        answer = server.post("/api/views", body)
        assert answer.status_code == 400 and answer.json()["code"] == code, (body, answer.text)
