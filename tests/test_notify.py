"""Notifications through Apprise, to a real JSON receiver and a real SMTP server on 127.0.0.1.

The sync, verify and push cases run the real CLI in this process against the bundled
Midjourney server (FakeMidjourney); quiet hours and the deadline are held to account in the
library, where the clock and the timeout can be given.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mjvault import Vault
from mjvault.errors import EXIT_PARTIAL, AuthError
from mjvault.notify import Notifier, QuietHours, redact_url
from mjvault.sync import SyncReport
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from tests.config_helpers import Result, World, isolate, run_cli

TOKEN = "sess-5b9d2e7a10c4f3e8bb62"
HOOK_SECRET = "hk-3f9a1c77e2d84b05a6c1"  # the receiver's path: the URL's secret
SMTP_PASSWORD = "smtp-pw-8c21e6f0d9"
JOBS = 6


# -- real receivers ----------------------------------------------------------------------------
class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it (Apprise's json://)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/hook/{HOOK_SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """Accepts connections and never answers: a receiver that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.sock.getsockname()[1]}/hook/{HOOK_SECRET}"

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return isolate(monkeypatch, tmp_path)


@pytest.fixture
def server() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(41, JOBS), token=TOKEN) as running:
        yield running


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.init(tmp_path / "vault").close()
    return tmp_path / "vault"


Cli = Callable[..., Result]


@pytest.fixture
def mjvault(vault_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`mjvault --vault VAULT ARGS` in this process, in the test's world."""
    return lambda *args: run_cli(capsys, "--vault", str(vault_path), *args)


def use_server(monkeypatch: pytest.MonkeyPatch, server: FakeMidjourney, **env: str) -> None:
    values = {
        "MJVAULT_WEB_BASE": server.web_base,
        "MJVAULT_CDN_BASE": server.cdn_base,
        "MJVAULT_MIDJOURNEY_API": "v3",
        "MIDJOURNEY_SESSION_TOKEN": server.token,
        "MIDJOURNEY_USER_ID": server.user_id,
        "MJVAULT_SYNC_MAX_RPS": "1000",
    } | env
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def no_secret(*texts: str) -> None:
    for text in texts:
        assert HOOK_SECRET not in text
        assert SMTP_PASSWORD not in text
        assert TOKEN not in text


# -- sync ----------------------------------------------------------------------------------------
def test_sync_with_new_jobs_posts_one_message_with_the_count(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    log = world.root / "sync.log"
    done = mjvault("--log-file", str(log), "--json", "sync")
    assert done.code == 0, done.err
    assert len(receiver.received) == 1
    sent = receiver.received[0]
    assert sent["path"] == f"/hook/{HOOK_SECRET}"
    assert sent["type"] == "success"
    assert sent["title"] == f"mjvault: {JOBS} new jobs"
    snapshot = done.json()["snapshot"]
    assert f"snapshot: {snapshot[:12]}" in sent["message"]
    assert str(vault_path) in sent["message"]
    no_secret(done.out, done.err, log.read_text())

    # Nothing new: no message (a scheduled sync would say the same thing every hour).
    again = mjvault("sync")
    assert again.code == 0, again.err
    assert len(receiver.received) == 1


def test_images_missing_from_the_cdn_make_the_news_a_warning(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    gone = server.account.jobs[0].media_paths[0]
    server.faults = Faults(missing_images=frozenset({gone.rsplit(".", 1)[0]}))
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    done = mjvault("sync")
    assert done.code == EXIT_PARTIAL, done.err
    [sent] = receiver.received
    assert sent["type"] == "warning"
    assert sent["title"] == f"mjvault: {JOBS} new jobs, 1 image missing"
    assert "--retry-missing" in sent["message"]


def test_expired_cookie_posts_a_failure_saying_what_to_do(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(
        monkeypatch,
        server,
        MJVAULT_NOTIFY_URLS=receiver.url,
        MIDJOURNEY_SESSION_TOKEN="sess-expired-0000000000",
    )
    failed = mjvault("sync")
    assert failed.code == 1
    assert failed.err.count("mjvault: error:") == 1 and "Traceback" not in failed.err
    [sent] = receiver.received
    assert sent["type"] == "failure"
    assert sent["title"] == "mjvault: sync failed"
    assert "Run `mjvault auth login` or update MIDJOURNEY_SESSION_TOKEN" in sent["message"]
    assert "--cookies-from-browser" in sent["message"]
    assert "sess-expired-0000000000" not in sent["message"]


def test_a_browser_profile_that_cannot_be_read_notifies_the_one_shot_sync(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    nowhere = world.root / "no-such-profile"
    failed = run_cli(
        capsys,
        "--vault",
        str(vault_path),
        "sync",
        "--cookies-from-browser",
        f"chromium:{nowhere}",
    )
    assert failed.code == 2 and "Traceback" not in failed.err
    [sent] = receiver.received
    assert sent["type"] == "failure" and sent["title"] == "mjvault: sync failed"
    assert f"no chromium profile at {nowhere}" in sent["message"]


def test_a_follow_up_that_fails_is_notified_and_the_syncs_summary_still_shown(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    import mjvault.integrity.pack as pack

    def disk_full(_vault: object, _after: object) -> None:
        # The disk filling up just as the pack merge writes: no file system here fills on cue.
        raise OSError(28, "No space left on device", str(vault_path / "packs" / "merge.tmp"))

    monkeypatch.setattr(pack, "pack_after_write", disk_full)
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    failed = mjvault("sync")
    assert failed.code == 1 and "Traceback" not in failed.err, failed.err
    assert failed.err.strip().endswith(f"No space left on device: {vault_path}/packs/merge.tmp")
    assert f"jobs: {JOBS} new" in failed.out  # what the sync stored is still said
    titles = [m["title"] for m in receiver.received]
    assert titles[-1] == "mjvault: sync follow-up failed", titles
    assert "No space left on device" in receiver.received[-1]["message"]


def test_a_vault_that_cannot_be_opened_notifies_the_one_shot_sync(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    unmounted = world.root / "unmounted" / "vault"
    failed = run_cli(capsys, "--vault", str(unmounted), "-q", "sync")
    assert failed.code != 0 and "Traceback" not in failed.err
    [sent] = receiver.received
    assert sent["type"] == "failure" and sent["title"] == "mjvault: sync failed"
    assert str(unmounted) in sent["message"]


def test_cloudflare_challenge_posts_the_clients_message(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    server.faults = Faults(cf_clearance="clearance-we-do-not-have")
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    failed = mjvault("sync")
    assert failed.code == 1, failed.err
    [sent] = receiver.received
    assert sent["type"] == "failure"
    assert "Cloudflare answered" in sent["message"]
    assert "cf_clearance" in sent["message"] and "User-Agent" in sent["message"]


def test_only_on_failure_sends_no_news_of_a_good_sync(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(
        monkeypatch,
        server,
        MJVAULT_NOTIFY_URLS=receiver.url,
        MJVAULT_NOTIFY_ONLY_ON_FAILURE="true",
    )
    done = mjvault("sync")
    assert done.code == 0, done.err
    assert receiver.received == []
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", "sess-expired-1111111111")
    failed = mjvault("sync", "--full")
    assert failed.code == 1
    assert [sent["type"] for sent in receiver.received] == ["failure"]


@pytest.mark.parametrize("kind", ["down", "hanging"])
def test_a_receiver_down_or_hanging_neither_fails_nor_holds_the_sync(
    world: World,
    server: FakeMidjourney,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
    kind: str,
) -> None:
    silent = Silent() if kind == "hanging" else None
    url = silent.url if silent else f"json://127.0.0.1:{closed_port()}/hook/{HOOK_SECRET}"
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=url)
    log = world.root / "sync.log"
    try:
        started = time.monotonic()
        done = mjvault("--log-file", str(log), "sync")
        took = time.monotonic() - started
    finally:
        if silent:
            silent.close()
    assert done.code == 0, done.err
    assert took < 15, took  # the whole deadline is 10 s, sync included it is still bounded
    warnings = [line for line in log.read_text().splitlines() if "not sent:" in line]
    assert len(warnings) == 1, warnings
    assert "level=warning" in warnings[0]
    assert redact_url(url) in warnings[0]
    assert done.err.count("not sent:") == 1
    no_secret(done.out, done.err, log.read_text())
    with Vault.open(vault_path) as vault:
        assert len(list(vault.entries())) == JOBS


# -- verify and push ---------------------------------------------------------------------------
def test_verify_problems_notify(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(monkeypatch, server)
    assert mjvault("sync").code == 0
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)
    clean = mjvault("verify")
    assert clean.code == 0, clean.err
    assert receiver.received == []  # nothing found: nothing said
    with Vault.open(vault_path) as vault:
        image = next(i for entry in vault.entries() for i in entry.images if i)
        assert vault.store.is_loose(image)
        damaged = vault.store.path(image)
    os.chmod(damaged, 0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    checked = mjvault("verify", "--read-data")
    assert checked.code == 3
    [sent] = receiver.received
    assert sent["type"] == "failure"
    assert sent["title"] == "mjvault: verify found 1 problem"
    assert sent["message"].startswith(f"problems: 1 corrupt\nfirst: corrupt: object {image} ")
    assert "mjvault verify --repair" in sent["message"]


def test_verify_repair_notifies_what_it_left_and_a_remote_it_cannot_read(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(monkeypatch, server)
    assert mjvault("sync").code == 0
    remote = world.root / "nas"
    added = mjvault("remote", "add", "nas", str(remote))
    assert added.code == 0, added.err
    with Vault.open(vault_path) as vault:
        image = next(i for entry in vault.entries() for i in entry.images if i)
        assert vault.store.is_loose(image)
        damaged = vault.store.path(image)
    os.chmod(damaged, 0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)

    repaired = mjvault("verify", "--repair")
    assert repaired.code == 3, repaired.err  # no source to refetch from: the problem is left
    [sent] = receiver.received
    assert sent["type"] == "failure" and sent["title"] == "mjvault: verify found 1 problem"
    assert sent["message"].startswith("left after --repair, problems: 1 ")

    receiver.received.clear()
    if remote.is_dir():  # the drive is gone and a file stands in its place
        import shutil

        shutil.rmtree(remote)
    remote.write_text("not a folder")
    checked = mjvault("verify", "--remote", "nas")
    assert checked.code != 0 and "Traceback" not in checked.err
    [sent] = receiver.received
    assert sent["type"] == "failure" and sent["title"] == "mjvault: verify failed"


def test_a_push_to_a_broken_remote_notifies(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mjvault: Cli,
) -> None:
    use_server(monkeypatch, server)
    assert mjvault("sync").code == 0
    remote = world.root / "nas"
    added = mjvault("remote", "add", "nas", str(remote))
    assert added.code == 0, added.err
    # The drive's folder is gone and a file stands in its place: nothing can be written.
    if remote.is_dir():
        import shutil

        shutil.rmtree(remote)
    remote.write_text("not a folder")
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)
    pushed = mjvault("push", "nas")
    assert pushed.code != 0
    assert "Traceback" not in pushed.err
    [sent] = receiver.received
    assert sent["type"] == "failure"
    assert sent["title"] == "mjvault: push to nas failed"


# -- notify test, e-mail, config -----------------------------------------------------------------
def test_notify_test_ok_failed_and_none_configured(
    world: World,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    none = run_cli(capsys, "notify", "test")
    assert none.code == 2
    assert none.err.strip().startswith("mjvault: error: no notification URLs are configured")

    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)
    ok = run_cli(capsys, "notify", "test", "--json")
    assert ok.code == 0, ok.err
    assert ok.json() == {
        "results": [{"url": redact_url(receiver.url), "ok": True, "error": None}],
        "ok": True,
    }
    assert receiver.received[0]["title"] == "mjvault: test notification"

    down = f"json://127.0.0.1:{closed_port()}/hook/{HOOK_SECRET}"
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", f"{receiver.url} {down}")
    mixed = run_cli(capsys, "notify", "test")
    assert mixed.code == 1
    lines = mixed.out.splitlines()
    assert lines[0] == f"ok      {redact_url(receiver.url)}"
    assert lines[1].startswith(f"failed  {redact_url(down)}: ")
    assert lines[2] == "1 of 2 notified"
    mixed_json = run_cli(capsys, "notify", "test", "--json")
    assert mixed_json.code == 1
    assert [r["ok"] for r in mixed_json.json()["results"]] == [True, False]
    no_secret(ok.out, ok.err, mixed.out, mixed.err, mixed_json.out, mixed_json.err)


def test_mail_through_a_local_smtp_server(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    mails: list[bytes] = []
    logins: list[tuple[bytes, bytes]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope.content)
            return "250 OK"

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            logins.append((data.login, data.password))
            return AuthResult(success=data.password == SMTP_PASSWORD.encode())
        return AuthResult(success=False)

    port = closed_port()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        url = (
            f"mailto://archiver:{SMTP_PASSWORD}@127.0.0.1:{port}"
            "?from=mjvault@example.com&to=me@example.com"
        )
        monkeypatch.setenv("MJVAULT_NOTIFY_URLS", url)
        sent = run_cli(capsys, "notify", "test")
    finally:
        controller.stop()
    assert sent.code == 0, sent.out + sent.err
    assert sent.out.splitlines()[0] == f"ok      mailto://127.0.0.1:{port}/…"
    assert logins == [(b"archiver", SMTP_PASSWORD.encode())]
    [mail] = mails
    parsed = message_from_bytes(mail)
    assert parsed["Subject"] == "mjvault: test notification"
    assert parsed["To"].endswith("me@example.com")
    no_secret(sent.out, sent.err)


def test_config_show_masks_the_urls_and_set_refuses_them_as_arguments(
    world: World,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)
    shown = run_cli(capsys, "config", "show")
    shown_json = run_cli(capsys, "config", "show", "--json")
    got = run_cli(capsys, "config", "get", "notify.urls")
    assert shown.code == shown_json.code == got.code == 0
    assert "notify.urls" in shown.out
    no_secret(shown.out, shown.err, shown_json.out, got.out)
    assert "127.0.0.1" not in got.out
    refused = run_cli(capsys, "config", "set", "notify.urls", receiver.url)
    assert refused.code == 2
    assert "secret" in refused.err
    no_secret(refused.err)


def test_bad_settings_are_one_line(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MJVAULT_NOTIFY_QUIET_HOURS", "22-7")
    bad = run_cli(capsys, "notify", "test")
    assert bad.code == 2 and "22:00-07:00" in bad.err and "Traceback" not in bad.err
    monkeypatch.delenv("MJVAULT_NOTIFY_QUIET_HOURS")
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", f"hook/{HOOK_SECRET}")
    bad = run_cli(capsys, "notify", "test")
    assert bad.code == 2 and "scheme://" in bad.err
    no_secret(bad.err)


# -- the library: quiet hours, deadline, redaction -------------------------------------------------
def report(new: int = 3, missing: int = 0) -> SyncReport:
    return SyncReport(jobs_new=new, images_missing=missing, snapshot="ab" * 32)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 5, hour, minute).astimezone()


def test_quiet_hours_hold_back_news_and_warnings_never_failures(receiver: Receiver) -> None:
    now = at(23, 30)
    notifier = Notifier(
        [receiver.url], quiet_hours=QuietHours.parse("22:00-07:00"), clock=lambda: now
    )
    notifier.sync_finished(report(), vault="/v")
    notifier.sync_finished(report(missing=2), vault="/v")
    assert receiver.received == []
    notifier.failed("sync", AuthError("refused"), vault="/v")
    assert [m["type"] for m in receiver.received] == ["failure"]
    now = at(7, 0)  # the end is outside the range
    notifier.sync_finished(report(), vault="/v")
    assert [m["type"] for m in receiver.received] == ["failure", "success"]


def test_quiet_hours_ranges() -> None:
    night = QuietHours.parse("22:00-07:00")
    assert dt.time(22, 0) in night and dt.time(3, 0) in night and dt.time(6, 59) in night
    assert dt.time(7, 0) not in night and dt.time(12, 0) not in night
    lunch = QuietHours.parse("12:00-13:30")
    assert dt.time(12, 0) in lunch and dt.time(13, 29) in lunch and dt.time(13, 30) not in lunch
    for bad in ("22-07", "25:00-01:00", "10:00-10:00", "10:00"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


def test_only_on_failure_keeps_warnings(receiver: Receiver) -> None:
    notifier = Notifier([receiver.url], only_on_failure=True)
    notifier.sync_finished(report(), vault="/v")
    notifier.sync_finished(report(missing=1), vault="/v")
    assert [(m["type"], m["title"]) for m in receiver.received] == [
        ("warning", "mjvault: 3 new jobs, 1 image missing")
    ]


class Trickling(Silent):
    """Answers one byte every 0.3 s, for ever: no socket timeout ever fires (each byte is
    news), so only the notifier's own deadline can end the wait."""

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    @staticmethod
    def _trickle(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while True:
                conn.sendall(b"a")
                time.sleep(0.3)
        except OSError:
            return


def test_a_hanging_receiver_costs_the_deadline_and_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trickling = Trickling()
    url = trickling.url
    try:
        notifier = Notifier([url], timeout=1.0)
        started = time.monotonic()
        notifier.failed("sync", AuthError("refused"), vault="/v")
        took = time.monotonic() - started
    finally:
        trickling.close()
    assert took < 2.0, took  # the deadline ends the wait; no socket timeout could
    [warning] = [r for r in caplog.records if r.name.startswith("mjvault.")]
    assert redact_url(url) in warning.getMessage()
    assert "no answer within 1 s" in warning.getMessage()
    assert HOOK_SECRET not in warning.getMessage()


def test_without_urls_nothing_is_imported_or_sent() -> None:
    notifier = Notifier([])
    assert not notifier.enabled
    notifier.sync_finished(report(), vault="/v")
    notifier.failed("sync", AuthError("x"), vault="/v")
    assert notifier.send_test(vault="/v") == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"json://127.0.0.1:8080/hook/{HOOK_SECRET}", "json://127.0.0.1:8080/…"),
        (f"mailtos://me:{SMTP_PASSWORD}@smtp.example.com?to=a@b.c", "mailtos://smtp.example.com/…"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234", "tgram://…"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord://…"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://…"),
        ("ntfys://ntfy.sh/my-private-topic-4417", "ntfys://ntfy.sh/…"),
        ("ntfy://my-private-topic-4417", "ntfy://…"),
        ("json://[::1]:9000/x", "json://[::1]:9000/…"),
    ],
)
def test_redact_url_keeps_scheme_and_network_host_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_failure_text_is_masked(receiver: Receiver) -> None:
    notifier = Notifier([receiver.url])
    notifier.failed(
        "sync", RuntimeError(f"boom with __Secure-next-auth.session-token={TOKEN}"), vault="/v"
    )
    [sent] = receiver.received
    assert TOKEN not in sent["message"] and "boom" in sent["message"]


def test_urls_set_from_stdin_are_kept_private_and_masked(
    world: World,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    down = f"json://127.0.0.1:{closed_port()}/hook/{HOOK_SECRET}"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{receiver.url} {down}\n"))
    done = run_cli(capsys, "config", "set", "notify.urls", "-")
    assert done.code == 0, done.err
    assert world.user_file.stat().st_mode & 0o077 == 0
    assert HOOK_SECRET in world.user_file.read_text()  # kept, in a file only its owner reads
    shown = run_cli(capsys, "config", "show", "--json")
    no_secret(done.out, done.err, shown.out)
    tested = run_cli(capsys, "notify", "test", "--json")
    assert [r["url"] for r in tested.json()["results"]] == [
        redact_url(receiver.url),
        redact_url(down),
    ]


def test_without_apprise_one_line_and_the_sync_still_succeeds(
    world: World,
    server: FakeMidjourney,
    receiver: Receiver,
    vault_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mjvault: Cli,
) -> None:
    # An install without the `notify` extra: importing apprise fails as it would there.
    monkeypatch.setitem(sys.modules, "apprise", None)
    use_server(monkeypatch, server, MJVAULT_NOTIFY_URLS=receiver.url)
    tested = run_cli(capsys, "notify", "test")
    assert tested.code == 1
    assert tested.err.strip() == (
        "mjvault: error: notifications need Apprise: pip install 'mjvault[notify]'"
    )
    done = mjvault("sync")
    assert done.code == 0, done.err
    assert "notifications need Apprise" in done.err
    assert receiver.received == []


def test_a_urls_credentials_are_masked_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from mjvault.redact import redact

    Notifier(
        [
            f"mailto://archiver:{SMTP_PASSWORD}@smtp.example.com",
            f"json://hooks.example.com/hook/{HOOK_SECRET}",
            "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234",
        ]
    )
    line = redact(
        f"login archiver/{SMTP_PASSWORD} POST /hook/{HOOK_SECRET} "
        "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw (midjourney-archiver)"
    )
    no_secret(line)
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in line
    assert "(midjourney-archiver)" in line  # a short user name is no secret


class Refusing:
    """An HTTP server on 127.0.0.1 that answers every POST with 403, as a service does to a
    topic or hook it does not know."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SHORT_TOPIC = "mjv-alert9"  # an ntfy topic is the whole credential, however short
SHORT_HOOK = "tok-8c21e6"


def test_a_short_url_secret_in_the_services_reason_is_masked() -> None:
    refusing = Refusing()
    try:
        url = f"ntfy://127.0.0.1:{refusing.port}/{SHORT_TOPIC}"
        [result] = Notifier([url]).send_test()
    finally:
        refusing.close()
    assert not result.ok and result.error
    assert SHORT_TOPIC not in result.error
    assert "403" in result.error or "***" in result.error


def test_short_url_secrets_are_masked_in_debug_lines(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    refusing = Refusing()
    try:
        hook = f"json://127.0.0.1:{refusing.port}/hook/{SHORT_HOOK}"
        topic = f"ntfy://127.0.0.1:{refusing.port}/{SHORT_TOPIC}"
        monkeypatch.setenv("MJVAULT_NOTIFY_URLS", f"{hook} {topic}")
        log = world.root / "debug.log"
        tested = run_cli(capsys, "-vv", "--log-file", str(log), "notify", "test")
    finally:
        refusing.close()
    assert tested.code == 1
    text = log.read_text()
    assert "POST /hook/***" in text  # urllib3's request line, masked
    for secret in (SHORT_TOPIC, SHORT_HOOK):
        assert secret not in text and secret not in tested.out + tested.err


def test_the_sync_helpers_notify_failures_not_stops(receiver: Receiver) -> None:
    from mjvault.errors import Interrupted
    from mjvault.notify import failures_notified, notify_sync_outcome

    notifier = Notifier([receiver.url])
    with pytest.raises(Interrupted), failures_notified(notifier, vault="/v"):
        raise Interrupted("interrupted; rerun `mjvault sync` to resume")
    assert receiver.received == []
    with pytest.raises(AuthError), failures_notified(notifier, vault="/v"):
        raise AuthError("the session cookie was refused or has expired")
    notify_sync_outcome(notifier, report(new=0), vault="/v")  # nothing new: nothing said
    notify_sync_outcome(notifier, report(new=2), vault="/v")
    assert [(m["type"], m["title"]) for m in receiver.received] == [
        ("failure", "mjvault: sync failed"),
        ("success", "mjvault: 2 new jobs"),
    ]
