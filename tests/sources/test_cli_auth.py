"""`mjvault auth` end to end: the real CLI against the Midjourney test server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring_helpers import file_keyring as keyring_file
from keyrings.alt.file import PlaintextKeyring

from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from tests.conftest import Result, invoke_cli

TOKEN = "cli-session-token-77aa31"
ENV_NAMES = (
    "MIDJOURNEY_SESSION_TOKEN",
    "MIDJOURNEY_USER_ID",
    "MJVAULT_WEB_BASE",
    "MJVAULT_CDN_BASE",
    "MJVAULT_MIDJOURNEY_API",
    "MJVAULT_USER_AGENT",
    "MJVAULT_CF_CLEARANCE",
)


@pytest.fixture
def server() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(3, 30), token=TOKEN) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    with keyring_file(tmp_path / "keyring.cfg") as backend:
        yield backend


def run(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str = "",
) -> tuple[int, str, str]:
    ran = Result.of(invoke_cli(args, input=stdin.encode()))
    return ran.code, ran.out, ran.err


def fast(server: FakeMidjourney) -> list[str]:
    return ["--web-base", server.web_base, "--cdn-base", server.cdn_base, "--max-rps", "500"]


def test_status_ok_human_and_json(
    server: FakeMidjourney, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("MIDJOURNEY_USER_ID", server.user_id)
    code, out, err = run(["auth", "status", *fast(server)], capsys, monkeypatch)
    assert code == 0 and out.startswith(f"ok: signed in as user {server.user_id}")
    code, out, err = run(["auth", "status", "--json", *fast(server)], capsys, monkeypatch)
    status = json.loads(out)
    assert code == 0 and status["ok"] and status["generation"] == "v3"
    assert TOKEN not in out + err


def test_status_expired_is_one_line_and_exit_1(
    server: FakeMidjourney, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.faults = Faults(expired=True)
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("MIDJOURNEY_USER_ID", server.user_id)
    code, out, err = run(
        ["-v", "auth", "status", "--api", "v2", *fast(server)], capsys, monkeypatch
    )
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("mjvault: error:")]
    assert len(lines) == 1
    assert "copy a fresh `__Secure-next-auth.session-token`" in lines[0]
    assert TOKEN not in out + err
    code, out, err = run(["--json", "auth", "status", *fast(server)], capsys, monkeypatch)
    assert code == 1 and json.loads(out)["reason"] == "refused" and TOKEN not in out + err


def test_status_with_a_cookies_file(
    server: FakeMidjourney, capsys: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.faults = Faults(cf_clearance="clear-1")
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n"
        f"#HttpOnly_127.0.0.1\tFALSE\t/\tTRUE\t0\t__Host-Midjourney.AuthUserTokenV3_i\t{TOKEN}\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tcf_clearance\tclear-1\n"
    )
    monkeypatch.setenv("MIDJOURNEY_USER_ID", server.user_id)
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", "an-old-token-the-file-overrides")
    args = ["auth", "status", "--cookies", str(cookies), *fast(server)]
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run(["auth", "status", *fast(server)], capsys, monkeypatch)
    assert code == 1 and "cf_clearance" in err and "Just a moment..." in err


def test_login_status_logout_with_the_keyring(
    server: FakeMidjourney,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    file_keyring: PlaintextKeyring,
) -> None:
    stored = ("midjourney-session-token", "midjourney-user-id")
    code, out, err = run(
        ["auth", "login", *fast(server)],
        capsys,
        monkeypatch,
        stdin=f"wrong-token\n{server.user_id}\n",
    )
    assert code == 1 and "refused or has expired" in err
    assert [file_keyring.get_password("mjvault", name) for name in stored] == [None, None]
    code, out, err = run(
        ["auth", "login", *fast(server)], capsys, monkeypatch, stdin=f"{TOKEN}\n{server.user_id}\n"
    )
    assert code == 0 and "stored" in out and TOKEN not in out + err
    assert [file_keyring.get_password("mjvault", name) for name in stored] == [
        TOKEN,
        server.user_id,
    ]
    code, out, err = run(["auth", "status", *fast(server)], capsys, monkeypatch)
    assert code == 0 and server.user_id in out
    code, out, err = run(["auth", "logout"], capsys, monkeypatch)
    assert code == 0 and "removed" in out
    assert [file_keyring.get_password("mjvault", name) for name in stored] == [None, None]
    code, out, err = run(["auth", "status", *fast(server)], capsys, monkeypatch)
    assert code == 1 and "no Midjourney session token" in err


def test_without_the_keyring_package(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # as if not installed
    code, out, err = run(["auth", "logout"], capsys, monkeypatch)
    assert code != 0
    assert err.strip().splitlines() == [
        "mjvault: error: the system keyring needs the optional `keyring` package: "
        "pip install 'mjvault[keyring]' (or set MIDJOURNEY_SESSION_TOKEN and "
        "MIDJOURNEY_USER_ID instead)"
    ]
