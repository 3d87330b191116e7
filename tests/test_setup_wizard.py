"""`mjvault setup` as a person meets it (a pseudo-terminal) and as a script runs it."""

from __future__ import annotations

import http.server
import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from config_helpers import World, isolate, run_cli
from keyring.backends import fail
from keyring_helpers import installed, memory_keyring

from mjvault.config import load_config
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from mjvault.vault import is_vault
from mjvault.views.template import DEFAULT_TEMPLATE

UID = "48d7667d-4177-49e2-adc1-5674bdde9593"
TOKEN = "tok-0123456789-abcdefghij"


class _Refuse(http.server.BaseHTTPRequestHandler):
    """A Midjourney stand-in that refuses every cookie, as it does an expired one."""

    def do_GET(self) -> None:
        body = b'{"error": "unauthorized"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, refusing_server: str) -> Iterator[World]:
    world = isolate(monkeypatch, tmp_path)
    # Whatever client is installed, its connection test only ever reaches 127.0.0.1.
    monkeypatch.setenv("MJVAULT_WEB_BASE", refusing_server)
    monkeypatch.setenv("MJVAULT_CDN_BASE", refusing_server)
    # No keyring in this process either, whatever an earlier test left installed: a test
    # that wants one installs it.
    with installed(fail.Keyring()):
        yield world


def spawn(*args: str) -> pexpect.spawn:
    env = dict(os.environ, COLUMNS="100", TERM="dumb")
    child = pexpect.spawn(
        sys.executable, ["-m", "mjvault", *args], env=env, encoding="utf-8", timeout=20
    )
    child.logfile_read = io.StringIO()  # everything the person saw
    return child


def finish_connection_step(child: pexpect.spawn) -> None:
    """The stand-in refuses the cookie (401); the wizard says so and asks whether to save."""
    child.expect("Connection test failed: ")
    child.expect("Save the settings anyway\\?")
    child.sendline("y")


def listed_views(capsys: pytest.CaptureFixture[str], vault: Path) -> list[dict[str, Any]]:
    result = run_cli(capsys, "--vault", str(vault), "--json", "checkout", "--list")
    assert result.code == 0, result.err
    views: list[dict[str, Any]] = result.json()
    return views


def test_first_run_and_rerun_in_a_terminal(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault_dir = tmp_path / "my vault"
    view_dir = tmp_path / "home" / "Pictures" / "Midjourney"
    child = spawn("setup")
    child.expect(r"Vault directory \[.*mj-vault\]: ")
    child.sendline(str(vault_dir))
    child.expect(r"Encrypt the vault\? .*\[y/N\]: ")
    child.sendline("")
    child.expect("Created a plain vault at")
    child.expect("__Host-Midjourney.AuthUserTokenV3_i")
    child.expect("__NEXT_DATA__.props.initialAuthUser.midjourney_id")
    child.expect(r"Session cookie value \(hidden\): ")
    child.sendline(TOKEN)
    child.expect("User ID: ")
    child.sendline("not-a-uuid")
    child.expect("expected a UUID")
    child.expect("User ID: ")
    child.sendline(UID.upper())
    child.expect("no system keyring found")
    child.expect(r"Keep it in \(config, env\) \[env\]: ")
    child.sendline("config")
    finish_connection_step(child)
    child.expect("4. A first view")
    child.expect("symbolic links into the vault")
    child.expect(r"Create a folder view\? \[Y/n\]: ")
    child.sendline("")
    child.expect(r"View directory \[~/Pictures/Midjourney\]: ")
    child.sendline("")
    # The cookie was refused, so no first sync is offered: the next sync fills the view.
    child.expect("View Midjourney in " + re.escape(str(view_dir)) + ": 0 files, as symbolic links")
    child.expect("Saved")
    child.expect("Your images: " + re.escape(str(view_dir)))
    child.expect(r"mjvault sync +fetch every job and image, filling the view")
    child.expect(pexpect.EOF)
    child.close()
    transcript = child.logfile_read.getvalue()
    assert child.exitstatus == 0, transcript
    assert TOKEN not in transcript  # typed hidden, never echoed or repeated
    assert "first sync now" not in transcript

    assert is_vault(vault_dir)
    config = load_config().config
    assert config.vault.path == vault_dir
    assert config.source.user_id == UID
    assert config.source.session_token == TOKEN
    assert world.user_file.stat().st_mode & 0o777 == 0o600
    assert (vault_dir / "views" / "Midjourney.view").is_file()
    (view,) = listed_views(capsys, vault_dir)
    assert view["directory"] == str(view_dir) and view["link"] == "symlink"
    assert view["auto_refresh"] is True and view["template"] == DEFAULT_TEMPLATE

    # A rerun offers everything that is set now; Enter keeps it all.
    child = spawn("setup")
    child.expect(r"Vault directory \[" + str(vault_dir).replace(" ", r"\s") + r"\]: ")
    child.sendline("")
    child.expect("Using the existing vault")
    child.expect(r"Session cookie value \(Enter keeps the one from user .*\): ")
    child.sendline("")
    child.expect(r"User ID \[" + UID + r"\]: ")
    child.sendline("")
    finish_connection_step(child)
    child.expect("This vault already has a view:")
    child.expect(r"Midjourney: " + re.escape(str(view_dir)) + r" \[symlink\] 0 files")
    child.expect(r"Create another folder view\? \[y/N\]: ")
    child.sendline("")
    child.expect("Saved")
    child.expect(r"checkout --list +your views")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert load_config().config.source.session_token == TOKEN
    assert [v["directory"] for v in listed_views(capsys, vault_dir)] == [str(view_dir)]


def test_ctrl_c_stops_with_130_and_saves_nothing(world: World) -> None:
    child = spawn("setup")
    child.expect("Vault directory")
    child.sendintr()
    child.expect("interrupted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert not world.user_file.exists()


def test_scripted_setup_without_a_terminal(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view_dir = tmp_path / "home" / "Pictures" / "Midjourney"
    monkeypatch.setattr(sys, "stdin", io.StringIO(TOKEN + "\n"))
    monkeypatch.setenv("MJVAULT_PASSPHRASE", "correct horse battery staple")
    result = run_cli(
        capsys,
        "--json",
        "--profile",
        "work",
        "setup",
        "--yes",
        "--vault-dir",
        str(tmp_path / "v"),
        "--encrypt",
        "--user-id",
        UID,
        "--token-stdin",
        "--token-storage",
        "config",
        "--skip-test",
    )
    assert result.code == 0, result.err
    assert TOKEN not in result.out + result.err
    summary = result.json()
    assert summary == {
        "profile": "work",
        "vault": str(tmp_path / "v"),
        "vault_created": True,
        "encrypted": True,
        "config_file": str(world.user_file),
        "user_id": UID,
        "token_storage": "config",
        "connection": {"ok": None, "message": "skipped (--skip-test)", "url": None},
        "view": {"name": "Midjourney", "directory": str(view_dir), "link": "copy", "files": 0},
        "first_sync": None,
    }
    assert is_vault(tmp_path / "v")
    assert "[profile.work.source]" in world.user_file.read_text()
    work = load_config(profile="work").config
    assert work.source.session_token == TOKEN and work.vault.path == tmp_path / "v"
    # The view file is sealed like the vault's objects; its listing needs the passphrase.
    assert (tmp_path / "v" / "views" / "Midjourney.view").read_bytes()[:5] == b"MJVWE"
    (view,) = listed_views(capsys, tmp_path / "v")
    assert view["directory"] == str(view_dir) and view["link"] == "copy"

    # Rerun twice: with defaults (the view is kept), then naming the same directory again.
    for again in ([], ["--view", str(view_dir), "--template", "{job_id}_{index}.{ext}"]):
        rerun = run_cli(
            capsys, "--json", "--profile", "work", "setup", "--yes", "--skip-test", *again
        )
        assert rerun.code == 0, rerun.err
        shown = rerun.json()["view"]
        assert (shown and shown["directory"]) == (str(view_dir) if again else None)
        assert [v["name"] for v in listed_views(capsys, tmp_path / "v")] == ["Midjourney"]
    assert listed_views(capsys, tmp_path / "v")[0]["template"] == "{job_id}_{index}.{ext}"


def test_scripted_setup_reports_a_refused_cookie(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
    result = run_cli(capsys, "setup", "--yes", "--vault-dir", str(tmp_path / "v"), "--user-id", UID)
    assert result.code == 1
    assert "connection test failed" in result.err and TOKEN not in result.err
    assert load_config().config.source.user_id == UID  # saved all the same


def test_occupied_directory_is_refused(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "photo.png").write_bytes(b"x")
    result = run_cli(capsys, "setup", "--yes", "--skip-test", "--vault-dir", str(tmp_path / "full"))
    assert result.code == 2 and "is not a vault" in result.err


def test_token_in_the_keyring_per_profile(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with memory_keyring() as backend:
        monkeypatch.setattr(sys, "stdin", io.StringIO(TOKEN + "\n"))
        result = run_cli(
            capsys,
            "--profile",
            "home",
            "setup",
            "--yes",
            "--skip-test",
            "--vault-dir",
            str(tmp_path / "v"),
            "--token-stdin",
        )
        assert result.code == 0, result.err
        assert "in the system keyring" in result.out
        assert backend.entries == {("mjvault", "midjourney-session-token:home"): TOKEN}
        assert TOKEN not in world.user_file.read_text()
        shown = run_cli(capsys, "--profile", "home", "--json", "config", "show").json()
        assert shown["settings"]["source.session_token"] == {
            "value": "********",
            "origin": {"layer": "user", "source": "keyring", "profile": "home"},
            "secret": True,
        }


def test_view_is_filled_by_the_next_sync_or_by_a_first_sync(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = Account.generate(7, 6)
    with FakeMidjourney(account, token=TOKEN) as server:
        monkeypatch.setenv("MJVAULT_WEB_BASE", server.web_base)
        monkeypatch.setenv("MJVAULT_CDN_BASE", server.cdn_base)
        monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
        common = ["setup", "--yes", "--user-id", server.user_id]

        # Default: no first sync; the view is registered empty and the next sync fills it.
        later = tmp_path / "later"
        result = run_cli(
            capsys, "--json", *common, "--vault-dir", str(tmp_path / "a"), "--view", str(later)
        )
        assert result.code == 0, result.err
        summary = result.json()
        assert summary["connection"]["ok"] is True and summary["first_sync"] is None
        assert summary["view"]["files"] == 0 and not any(later.rglob("*.png"))
        synced = run_cli(capsys, "--vault", str(tmp_path / "a"), "sync")
        assert synced.code == 0, synced.err
        images = sorted(p.name for p in later.rglob("*") if p.is_symlink())
        assert images and all(p.resolve().is_file() for p in later.rglob("*") if p.is_symlink())

        # --sync: the first sync runs in the wizard and the view shows the same images.
        now = tmp_path / "now"
        result = run_cli(
            capsys,
            "--json",
            *common,
            "--vault-dir",
            str(tmp_path / "b"),
            "--view",
            str(now),
            "--sync",
        )
        assert result.code == 0, result.err
        first_sync = result.json()["first_sync"]
        assert first_sync["jobs_new"] == len(account.jobs) and first_sync["images_missing"] == 0
        assert sorted(p.name for p in now.rglob("*") if p.is_symlink()) == images
        (view,) = listed_views(capsys, tmp_path / "b")
        assert view["files"] == len(images)

        # A first sync needs no view.
        result = run_cli(
            capsys, "--json", *common, "--vault-dir", str(tmp_path / "c"), "--no-view", "--sync"
        )
        assert result.code == 0, result.err
        assert result.json()["view"] is None
        assert result.json()["first_sync"]["jobs_new"] == len(account.jobs)
        assert listed_views(capsys, tmp_path / "c") == []


def test_first_sync_asked_in_a_terminal_fills_the_chosen_directory(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = Account.generate(11, 4)
    view_dir = tmp_path / "pics"
    with FakeMidjourney(account, token=TOKEN) as server:
        monkeypatch.setenv("MJVAULT_WEB_BASE", server.web_base)
        monkeypatch.setenv("MJVAULT_CDN_BASE", server.cdn_base)
        monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
        child = spawn(
            "setup", "--vault-dir", str(tmp_path / "v"), "--no-encrypt", "--user-id", server.user_id
        )
        child.expect(r"Session cookie value \(Enter keeps the one from env.*\): ")
        child.sendline("")
        child.expect("Connection test ok")
        child.expect(r"Create a folder view\? \[Y/n\]: ")
        child.sendline("y")
        child.expect(r"View directory \[~/Pictures/Midjourney\]: ")
        child.sendline(str(tmp_path / "v" / "inside"))
        child.expect("is inside the vault")
        child.expect("View directory")
        child.sendline(str(view_dir))
        child.expect("the next `mjvault sync` fetches them and fills the view")
        child.expect(r"Run the first sync now\? \[y/N\]: ")
        child.sendline("y")
        child.expect(f"First sync: {len(account.jobs)} jobs")
        child.expect(r"mjvault sync +fetch what is new")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.logfile_read.getvalue()
    (view,) = listed_views(capsys, tmp_path / "v")
    assert view["directory"] == str(view_dir) and view["files"] > 0
    assert len([p for p in view_dir.rglob("*") if p.is_symlink()]) == view["files"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--no-view", "--view", "x"], "--no-view takes neither"),
        (["--template", "flat.png"], "has no fields"),
        (["--view", "{vault}/inside"], "inside the vault"),
    ],
)
def test_bad_view_options_are_one_line_errors(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    vault = tmp_path / "v"
    args = [arg.replace("{vault}", str(vault)) for arg in args]
    result = run_cli(capsys, "setup", "--yes", "--skip-test", "--vault-dir", str(vault), *args)
    assert result.code == 2 and words in result.err and "Traceback" not in result.err
    assert not world.user_file.exists() and not is_vault(vault)  # refused before any change


def test_without_a_keyring_next_says_to_export_the_cookie_and_sync_says_nothing_was_fetched(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = Account.generate(5, 3)
    with FakeMidjourney(account, token=TOKEN) as server:
        monkeypatch.setenv("MJVAULT_WEB_BASE", server.web_base)
        monkeypatch.setenv("MJVAULT_CDN_BASE", server.cdn_base)
        monkeypatch.setattr(sys, "stdin", io.StringIO(TOKEN + "\n"))
        vault = tmp_path / "v"
        result = run_cli(
            capsys, "setup", "--yes", "--vault-dir", str(vault), "--user-id", server.user_id,
            "--token-stdin", "--no-view",
        )  # fmt: skip
        assert result.code == 0, result.err
        # The base URL the test reached is named, so a person sees which server said yes.
        tested = re.search(r"Connection test ok: the session cookie works.*", result.out)
        assert tested and tested.group(0).endswith(f" at {server.web_base}"), result.out
        assert "Session cookie: not saved" in result.out
        steps = result.out.split("Next:", 1)[1].strip().splitlines()
        # No keyring, nothing saved: the cookie must be exported before a sync can use it.
        assert "export MIDJOURNEY_SESSION_TOKEN=" in steps[0], steps
        assert "sync" in steps[1], steps
        assert TOKEN not in result.out

        # Skipping that step: the sync tried nothing, and must not speak of jobs kept.
        requests = server.stats.requests
        synced = run_cli(capsys, "--vault", str(vault), "sync")
        assert synced.code == 1 and "no Midjourney session token" in synced.err
        assert "fetched before" not in synced.err and "resume" not in synced.err, synced.err
        assert server.stats.requests == requests  # nothing was asked of the server


def test_a_rerun_over_a_synced_vault_offers_a_sync_of_what_is_new(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = Account.generate(13, 4)
    with FakeMidjourney(account, token=TOKEN) as server:
        monkeypatch.setenv("MJVAULT_WEB_BASE", server.web_base)
        monkeypatch.setenv("MJVAULT_CDN_BASE", server.cdn_base)
        monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
        vault = tmp_path / "v"
        common = ["setup", "--vault-dir", str(vault), "--user-id", server.user_id, "--no-view"]
        first = run_cli(capsys, *common, "--yes", "--sync")
        assert first.code == 0, first.err
        child = spawn(*common)
        child.expect(r"Session cookie value \(Enter keeps the one from env.*\): ")
        child.sendline("")
        child.expect("Connection test ok")
        child.expect(r"Sync now\? \[y/N\]: ")
        child.sendline("")
        child.expect(r"mjvault sync +fetch what is new")
        child.expect(pexpect.EOF)
        child.close()
        transcript = child.logfile_read.getvalue()
        assert child.exitstatus == 0, transcript
        assert "first sync" not in transcript.lower() and "hours" not in transcript
        assert "fetch every job" not in transcript
