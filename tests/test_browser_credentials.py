"""Credentials that renew: the cookies of a real Chromium profile, and sign-in in the browser.

Debian's chromium (through Playwright, never a downloaded browser) signs in to the bundled
server's sign-in page, which sets the session cookies as the real site does; then the real
CLI reads that profile (`--cookies-from-browser chromium:DIR`) or drives the sign-in itself
(`auth login --browser`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keyring_helpers
import pytest
from config_helpers import Result, World, isolate, run_cli

from mjvault import Vault
from mjvault.errors import ConfigError
from mjvault.sources.midjourney.browser_cookies import parse_spec, select_cookies
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import system_chromium

FIRST = "browser-session-first-5c1d"
RENEWED = "browser-session-renewed-9e2f"
V3 = "__Host-Midjourney.AuthUserTokenV3_i"
# The project's other browser tests' flags, and the basic password store: Chromium then
# encrypts cookies with its fixed v10 key, as it does on a desktop without a keyring.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--password-store=basic",
]


def _chromium() -> tuple[str, Any]:
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    return system_chromium()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return isolate(monkeypatch, tmp_path)


@pytest.fixture
def server() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(5, 8), token=FIRST) as running:
        yield running


@pytest.fixture(scope="module")
def signed_in_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile signed in with FIRST. Cookies are bound to the host, not the port, so a copy
    of it is signed in to every test's server whose token is FIRST: one browser run for all."""
    profile = tmp_path_factory.mktemp("signed-in") / "profile"
    with FakeMidjourney(Account.generate(5, 1), token=FIRST) as other:
        sign_in(profile, other)
    return profile


@pytest.fixture
def signed_in(signed_in_once: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(signed_in_once, tmp_path / "chromium-profile", symlinks=True))


def sign_in(profile: Path, server: FakeMidjourney) -> None:
    """Open the profile in chromium, sign in on the server's page, close."""
    chromium, sync_api = _chromium()
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=LAUNCH_ARGS
        )
        try:
            page = context.new_page()
            page.goto(server.web_base + "/api/auth/signin")
            page.click("button")
            page.wait_for_url("**/imagine")
        finally:
            context.close()  # writes the cookie store to disk


def source(server: FakeMidjourney) -> list[str]:
    return [
        "--web-base",
        server.web_base,
        "--cdn-base",
        server.cdn_base,
        "--user-id",
        server.user_id,
        "--max-rps",
        "500",
    ]


def held(path: Path) -> int:
    with Vault.open(path) as vault:
        return sum(1 for _ in vault.entries())


def one_error(result: Result) -> str:
    lines = [line for line in result.err.splitlines() if line.startswith("mjvault: error:")]
    assert result.code != 0 and len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


def test_sync_reads_the_cookie_the_browser_holds_at_each_run(
    world: World,
    tmp_path: Path,
    server: FakeMidjourney,
    signed_in: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    profile = signed_in
    vault = tmp_path / "vault"
    Vault.init(vault).close()
    spec = f"chromium:{profile}"
    first = run_cli(
        capsys, "--vault", str(vault), "sync", "--cookies-from-browser", spec, *source(server)
    )
    assert first.code == 0, first.err
    assert held(vault) == 8
    assert server.stats.auth_failures == 0

    # The site renews the session: the old cookie stops working until the browser has the new.
    server.token = RENEWED
    server.add_jobs(3)
    stale = run_cli(
        capsys, "--vault", str(vault), "sync", "--cookies-from-browser", spec, *source(server)
    )
    assert stale.code != 0 and held(vault) == 8
    # What to do names the browser that renews the cookie, not a cookie to copy by hand.
    assert "refused or has expired: open Midjourney in chromium" in one_error(stale)
    sign_in(profile, server)  # the browser receives the renewed cookie
    renewed = run_cli(
        capsys, "--vault", str(vault), "sync", "--cookies-from-browser", spec, *source(server)
    )
    assert renewed.code == 0, renewed.err
    assert held(vault) == 11
    for result in (first, stale, renewed):
        assert FIRST not in result.out + result.err and RENEWED not in result.out + result.err


def test_the_config_key_names_the_browser_profile(
    world: World, server: FakeMidjourney, signed_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = signed_in
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text(
        f"[source]\nweb_base = '{server.web_base}'\ncdn_base = '{server.cdn_base}'\n"
        f"user_id = '{server.user_id}'\ncookies_from_browser = 'chromium:{profile}'\n"
    )
    result = run_cli(capsys, "auth", "status")
    assert result.code == 0, result.err
    assert result.out.startswith(f"ok: signed in as user {server.user_id}")


def test_verify_repair_from_midjourney_reads_the_configured_browser_profile(
    world: World,
    tmp_path: Path,
    server: FakeMidjourney,
    signed_in: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text(
        f"[source]\nweb_base = '{server.web_base}'\ncdn_base = '{server.cdn_base}'\n"
        f"user_id = '{server.user_id}'\ncookies_from_browser = 'chromium:{signed_in}'\n"
        "[sync]\nmax_rps = 500\n"
    )
    vault = tmp_path / "vault"
    Vault.init(vault).close()
    assert run_cli(capsys, "--vault", str(vault), "sync").code == 0
    with Vault.open(vault) as opened:
        image = next(i for entry in opened.entries() for i in entry.images if i)
        assert opened.store.is_loose(image)
        damaged = opened.store.path(image)
    os.chmod(damaged, 0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    # The same credentials as the sync: the browser profile the configuration names.
    repaired = run_cli(capsys, "--vault", str(vault), "verify", "--repair", "--from-midjourney")
    assert repaired.code == 0, repaired.err
    assert "refetch is off" not in repaired.err
    assert FIRST not in repaired.out + repaired.err


def test_a_profile_without_the_cookie_is_one_line(
    world: World, server: FakeMidjourney, signed_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = signed_in
    with sqlite3.connect(next(profile.rglob("Cookies"))) as db:  # as after signing out
        db.execute("DELETE FROM cookies WHERE name LIKE '%session-token' OR name LIKE '%_i'")
    result = run_cli(
        capsys, "auth", "status", "--cookies-from-browser", f"chromium:{profile}", *source(server)
    )
    line = one_error(result)
    assert "holds no session cookie for 127.0.0.1" in line and "sign in" in line
    # A session to renew, like a refused cookie (exit 1), not a setting to fix (exit 2).
    assert result.code == 1


def test_a_missing_profile_and_a_wrong_browser_are_one_line_each(
    world: World, tmp_path: Path, server: FakeMidjourney, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    cases = {
        f"chromium:{tmp_path / 'nowhere'}": f"no chromium profile at {tmp_path / 'nowhere'}",
        # HOME is the test's own: no default chromium profile there.
        "chromium": "no chromium cookie database in its default profile",
        "chromium:Profile 7": "no chromium cookie database in profile 'Profile 7'",
        "netscape": "unknown browser 'netscape' for --cookies-from-browser; use one of chrome",
        "chrome+wallet": "unknown keyring 'wallet'",
    }
    for spec, expected in cases.items():
        result = run_cli(capsys, "auth", "status", "--cookies-from-browser", spec, *source(server))
        assert expected in one_error(result), spec


def test_cookies_that_cannot_be_decrypted_point_at_the_keyring(
    world: World, server: FakeMidjourney, signed_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = signed_in
    # What a desktop Chromium writes: v11 values, whose key is in a keyring that is not there.
    database = next(profile.rglob("Cookies"))
    with sqlite3.connect(database) as db:
        db.execute("UPDATE cookies SET encrypted_value = X'763131' || substr(encrypted_value, 4)")
    result = run_cli(
        capsys,
        "auth",
        "status",
        "--cookies-from-browser",
        f"chromium+basictext:{profile}",
        *source(server),
    )
    line = one_error(result)
    assert "chromium cookies could not be decrypted: unlock the desktop keyring" in line


@pytest.fixture
def memory_keyring() -> Iterator[dict[tuple[str, str], str]]:
    with keyring_helpers.memory_keyring() as backend:
        yield backend.entries


def test_auth_login_browser_stores_the_cookie_the_sign_in_set(
    world: World,
    server: FakeMidjourney,
    memory_keyring: dict[tuple[str, str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    chromium, _ = _chromium()
    base = ["--web-base", server.web_base, "--cdn-base", server.cdn_base, "--max-rps", "500"]
    # The page submits its own form after 300 ms: the click a user would make.
    login = run_cli(
        capsys,
        "auth",
        "login",
        "--browser",
        "--browser-path",
        chromium,
        "--headless",
        "--signin-query",
        "autosubmit=300",
        "--timeout",
        "60",
        *base,
    )
    assert login.code == 0, login.err
    assert f"stored the Midjourney session of user {server.user_id}" in login.out
    assert memory_keyring[("mjvault", "midjourney-session-token")] == FIRST
    assert memory_keyring[("mjvault", "midjourney-user-id")] == server.user_id  # from the page
    assert FIRST not in login.out + login.err
    status = run_cli(capsys, "auth", "status", *base)
    assert status.code == 0, status.err
    assert status.out.startswith(f"ok: signed in as user {server.user_id}")


def test_auth_login_browser_gives_up_after_its_timeout(
    world: World,
    server: FakeMidjourney,
    memory_keyring: dict[tuple[str, str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    chromium, _ = _chromium()
    result = run_cli(
        capsys,
        "auth",
        "login",
        "--browser",
        "--browser-path",
        chromium,
        "--headless",
        "--timeout",
        "1",
        "--web-base",
        server.web_base,
    )
    assert "no Midjourney session cookie after 1 s" in one_error(result)
    assert memory_keyring == {}
    server.stop()
    down = run_cli(
        capsys,
        "auth",
        "login",
        "--browser",
        "--browser-path",
        chromium,
        "--headless",
        "--web-base",
        "http://127.0.0.1:9/",
    )
    assert "could not open the sign-in page http://127.0.0.1:9/api/auth/signin" in one_error(down)
    missing = run_cli(capsys, "auth", "login", "--browser", "--browser-path", "/nonexistent/chrome")
    assert "no browser at /nonexistent/chrome" in one_error(missing)


def _cookie(domain: str, name: str, value: str, expires: int | None = None) -> Any:
    return SimpleNamespace(domain=domain, name=name, value=value, expires=expires)


def test_only_the_web_hosts_unexpired_cookies_are_taken() -> None:
    now = 1_800_000_000.0
    chrome_future = int((now + 3600 + 11_644_473_600) * 1_000_000)
    chrome_past = int((now - 3600 + 11_644_473_600) * 1_000_000)
    jar = [
        _cookie(".midjourney.com", V3, "live", chrome_future),
        _cookie("www.midjourney.com", "cf_clearance", "cf", int(now + 60)),  # Firefox: seconds
        _cookie(".midjourney.com", "__Secure-next-auth.session-token", "old", chrome_past),
        _cookie(".example.org", "other", "never-sent"),
        _cookie("evilmidjourney.com", V3, "never-sent"),
    ]
    taken = select_cookies(jar, "www.midjourney.com", now=now)
    assert {k: v.reveal() for k, v in taken.items()} == {V3: "live", "cf_clearance": "cf"}
    assert select_cookies(jar, "127.0.0.1", now=now) == {}


def test_browser_specs() -> None:
    assert parse_spec("chromium").profile is None
    spec = parse_spec("Chrome+gnomekeyring:Profile 1")
    assert (spec.browser, spec.keyring, spec.profile) == ("chrome", "GNOMEKEYRING", "Profile 1")
    assert parse_spec("firefox:/tmp/x.default").is_path
    with pytest.raises(ConfigError, match="drop the \\+KEYRING"):
        parse_spec("firefox+kwallet")


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"]
)
def test_a_signal_during_browser_sign_in_stops_and_removes_the_profile(
    request: pytest.FixtureRequest, server: FakeMidjourney, signum: int
) -> None:
    chromium, _ = _chromium()
    # A short TMPDIR: Chromium puts its singleton socket there, and a Unix socket's path has
    # at most 107 bytes, which pytest's own temporary folders can exceed (the browser then
    # fails to start; a user's TMPDIR is short).
    scratch = Path(tempfile.mkdtemp(prefix="mjv-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MJVAULT_", "MIDJOURNEY_"))}
    env.update(TMPDIR=str(scratch), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    command = [sys.executable, "-m", "mjvault", "auth", "login", "--browser", "--headless"]
    command += ["--browser-path", chromium, "--web-base", server.web_base]
    # A session of its own, as a terminal's foreground job: Ctrl-C reaches the whole group
    # (the Playwright driver and the browser too), a service manager's SIGTERM the process.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not list(scratch.glob("mjvault-signin-*/Default")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("mjvault-signin-*")), "the browser never started"
    time.sleep(0.5)  # the sign-in page is open and the command is waiting for the cookie
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert b"Traceback" not in err and b"Future exception" not in err, err
    # Said as a sign-in stopped, not as a sync to resume.
    assert err.strip().splitlines()[-1] == (
        b"mjvault: error: interrupted: the sign-in was stopped; nothing was stored"
    ), err
    # The temporary profile is gone. (Chromium, killed by the same Ctrl-C, may leave a
    # scratch folder of its own, org.chromium.*, which is not ours to remove.)
    assert list(scratch.glob("mjvault-signin-*")) == []


def test_auth_login_browser_without_playwright_says_so_before_anything_else(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # the extra not installed
    result = run_cli(capsys, "auth", "login", "--browser", "--browser-path", sys.executable)
    assert result.code == 2
    assert result.err.strip() == (
        "mjvault: error: --browser needs the optional playwright package: "
        "pip install 'mjvault[browser]'"
    )


def test_the_sign_in_page_sets_the_session_cookies(server: FakeMidjourney) -> None:
    import httpx

    with httpx.Client(base_url=server.web_base) as client:
        page = client.get("/api/auth/signin", params={"autosubmit": "250"})
        assert page.status_code == 200 and "setTimeout" in page.text and "250" in page.text
        assert "setTimeout" not in client.get("/login").text
        signed = client.post("/api/auth/signin", data={})
        assert signed.status_code == 303 and signed.headers["location"] == "/imagine"
        set_cookies = signed.headers.get_list("set-cookie")
        assert {c.split("=", 1)[0] for c in set_cookies} == {
            V3,
            "__Secure-next-auth.session-token",
        }
        assert all(f"={FIRST};" in c and "Secure" in c and "HttpOnly" in c for c in set_cookies)
        signed_out = client.get("/imagine")
        assert '"initialAuthUser": null' in signed_out.text
        signed_in = client.get("/imagine", headers={"Cookie": f"{V3}={FIRST}"})
        assert f'"midjourney_id": "{server.user_id}"' in signed_in.text


def test_browser_cookies_beat_the_token_and_merge_with_extra_cookies(
    world: World, server: FakeMidjourney, signed_in: Path
) -> None:
    from mjvault.config import client_settings, load_config

    loaded = load_config(
        environ={
            "MJVAULT_COOKIES_FROM_BROWSER": f"chromium:{signed_in}",
            "MJVAULT_WEB_BASE": server.web_base,
            "MIDJOURNEY_SESSION_TOKEN": "token-from-env",
            "MJVAULT_CF_CLEARANCE": "cf-env",
        }
    )
    settings = client_settings(loaded)
    assert settings.token is None  # the browser's own cookies are sent as they are
    cookies = {k: v.reveal() for k, v in settings.extra_cookies.items()}
    assert cookies == {
        V3: FIRST,
        "__Secure-next-auth.session-token": FIRST,
        "cf_clearance": "cf-env",
    }
    assert FIRST not in repr(settings)


def test_a_firefox_profile_is_read_too(
    world: World, tmp_path: Path, server: FakeMidjourney, capsys: pytest.CaptureFixture[str]
) -> None:
    """Firefox's store as Firefox 142 and later write it (schema 17, expiry in milliseconds,
    values unencrypted): Debian's firefox-esr is not needed to make one."""
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    profile = tmp_path / "firefox" / "abcd1234.default-release"
    profile.mkdir(parents=True)
    later = int((time.time() + 3600) * 1000)
    with sqlite3.connect(profile / "cookies.sqlite") as db:
        db.execute(
            "CREATE TABLE moz_cookies (id INTEGER PRIMARY KEY, originAttributes TEXT NOT NULL "
            "DEFAULT '', name TEXT, value TEXT, host TEXT, path TEXT, expiry INTEGER, "
            "isSecure INTEGER)"
        )
        rows = [
            ("", V3, FIRST, "127.0.0.1", "/", later, 1),
            ("", "cf_clearance", "cf-firefox", "127.0.0.1", "/", later, 1),
            ("", V3, "other-site", "example.org", "/", later, 1),
        ]
        db.executemany(
            "INSERT INTO moz_cookies (originAttributes, name, value, host, path, expiry, "
            "isSecure) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("PRAGMA user_version = 17")
    result = run_cli(
        capsys, "auth", "status", "--cookies-from-browser", f"firefox:{profile}", *source(server)
    )
    assert result.code == 0, result.err
    assert result.out.startswith(f"ok: signed in as user {server.user_id}")
