"""The stored session, per profile: setup, auth login/status/logout and the client read one place.

A real keyring backend (keyrings.alt's file) and two bundled Midjourney servers, one account
each: the default profile's and the `work` profile's.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from config_helpers import Result, World, isolate, run_cli
from keyring_helpers import file_keyring
from keyrings.alt.file import PlaintextKeyring

from mjvault import credentials
from mjvault.cli.source_options import SourceOptions
from mjvault.config import client_settings, load_config
from mjvault.errors import ConfigError
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import service_missing

HOME_TOKEN = "home-session-token-5c1e07"
WORK_TOKEN = "work-session-token-9ab4f2"
SERVICE = "mjvault"


@pytest.fixture
def home() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(11, 4), token=HOME_TOKEN) as server:
        yield server


@pytest.fixture
def work() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(12, 4), token=WORK_TOKEN) as server:
        yield server


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: FakeMidjourney, work: FakeMidjourney
) -> World:
    """A user config with the default profile on one server and `work` on the other."""
    world = isolate(monkeypatch, tmp_path)
    world.user_file.parent.mkdir(parents=True, exist_ok=True)
    world.user_file.write_text(
        f"[source]\nweb_base = '{home.web_base}'\ncdn_base = '{home.cdn_base}'\n"
        "[sync]\nmax_rps = 500.0\n"
        f"[profile.work.source]\nweb_base = '{work.web_base}'\ncdn_base = '{work.cdn_base}'\n"
    )
    return world


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    with file_keyring(tmp_path / "keyring.cfg") as kept:
        yield kept


def login(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str
) -> Result:
    """The CLI with ``stdin`` as its standard input (the token and user id prompts read it)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return run_cli(capsys, *args)


def test_logout_of_a_profile_removes_its_session_and_leaves_the_default_one(
    world: World,
    home: FakeMidjourney,
    work: FakeMidjourney,
    backend: PlaintextKeyring,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed_in = login(capsys, monkeypatch, "auth", "login", stdin=f"{HOME_TOKEN}\n{home.user_id}\n")
    assert signed_in.code == 0, signed_in.err
    # setup keeps the work account's token in the keyring, its user id in the config file.
    monkeypatch.setattr(sys, "stdin", io.StringIO(WORK_TOKEN + "\n"))
    setup = run_cli(
        capsys,
        "--profile",
        "work",
        "setup",
        "--yes",
        "--skip-test",
        "--no-view",
        "--vault-dir",
        str(tmp_path / "work-vault"),
        "--user-id",
        work.user_id,
        "--token-stdin",
        "--token-storage",
        "keyring",
    )
    assert setup.code == 0, setup.err
    assert backend.get_password(SERVICE, "midjourney-session-token:work") == WORK_TOKEN
    for profile, server in ((None, home), ("work", work)):
        chosen = ["--profile", profile] if profile else []
        status = run_cli(capsys, *chosen, "auth", "status")
        assert status.code == 0, status.err
        assert status.out.startswith(f"ok: signed in as user {server.user_id}")

    logout = run_cli(capsys, "--profile", "work", "auth", "logout")
    assert logout.code == 0, logout.err
    assert logout.out == "removed the stored Midjourney session (profile work)\n"
    assert backend.get_password(SERVICE, "midjourney-session-token:work") is None
    assert backend.get_password(SERVICE, "midjourney-session-token") == HOME_TOKEN
    assert backend.get_password(SERVICE, "midjourney-user-id") == home.user_id
    gone = run_cli(capsys, "--profile", "work", "auth", "status")
    assert gone.code == 1 and "no Midjourney session token" in gone.err
    kept = run_cli(capsys, "auth", "status")
    assert kept.code == 0 and kept.out.startswith(f"ok: signed in as user {home.user_id}")
    again = run_cli(capsys, "--profile", "work", "--json", "auth", "logout")
    assert again.code == 0 and again.json() == {"removed": False}

    monkeypatch.setenv("MJVAULT_PROFILE", "work")  # the variable chooses as --profile does
    assert run_cli(capsys, "auth", "logout").out == "no stored session to remove (profile work)\n"
    assert run_cli(capsys, "auth", "status").code == 1
    monkeypatch.delenv("MJVAULT_PROFILE")
    assert run_cli(capsys, "auth", "logout").out == "removed the stored Midjourney session\n"
    assert backend.get_password(SERVICE, "midjourney-session-token") is None
    assert backend.get_password(SERVICE, "midjourney-user-id") is None


def test_login_of_a_profile_keeps_its_token_and_user_id_apart(
    world: World,
    home: FakeMidjourney,
    work: FakeMidjourney,
    backend: PlaintextKeyring,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed_in = login(
        capsys,
        monkeypatch,
        "--profile",
        "work",
        "auth",
        "login",
        stdin=f"{WORK_TOKEN}\n{work.user_id}\n",
    )
    assert signed_in.code == 0, signed_in.err
    assert signed_in.out == (
        f"stored the Midjourney session of user {work.user_id} in the keyring (profile work)\n"
    )
    assert backend.get_password(SERVICE, "midjourney-session-token:work") == WORK_TOKEN
    assert backend.get_password(SERVICE, "midjourney-user-id:work") == work.user_id
    assert backend.get_password(SERVICE, "midjourney-session-token") is None
    # No user id in any config file: the profile's own keyring entry gives it.
    status = run_cli(capsys, "--profile", "work", "auth", "status")
    assert status.code == 0, status.err
    assert status.out.startswith(f"ok: signed in as user {work.user_id}")
    assert WORK_TOKEN not in status.out + status.err + signed_in.err
    default = run_cli(capsys, "auth", "status")
    assert default.code == 1 and "no Midjourney session token" in default.err


def test_entries_written_by_earlier_versions_are_read_as_they_are(
    world: World, backend: PlaintextKeyring
) -> None:
    # `setup --profile work` kept only the token; `auth login` always the default's pair.
    backend.set_password(SERVICE, "midjourney-session-token:work", WORK_TOKEN)
    backend.set_password(SERVICE, "midjourney-session-token", HOME_TOKEN)
    backend.set_password(SERVICE, "midjourney-user-id", "home-user")
    assert credentials.load(None) == credentials.StoredSession(HOME_TOKEN, "home-user")
    assert credentials.load("work") == credentials.StoredSession(WORK_TOKEN, None)
    settings = client_settings(load_config(profile="work"))
    assert settings.token is not None and settings.token.reveal() == WORK_TOKEN
    assert settings.user_id is None  # the default profile's user id is another account's
    default = client_settings(load_config())
    assert default.token is not None and default.token.reveal() == HOME_TOKEN
    assert default.user_id == "home-user"
    # verify --repair --from-midjourney builds its client from the environment and the keyring
    refetch = SourceOptions().settings({}, profile="work")
    assert refetch.token is not None and refetch.token.reveal() == WORK_TOKEN


def test_store_keeps_a_user_id_it_is_not_given(world: World, backend: PlaintextKeyring) -> None:
    credentials.store("work", "first-token-000", "work-user")
    credentials.store("work", "second-token-111")  # what setup stores: the token alone
    assert credentials.load("work") == credentials.StoredSession("second-token-111", "work-user")
    assert credentials.load(None) is None
    assert credentials.delete(None) is False
    assert credentials.delete("work") is True
    assert credentials.load("work") is None
    assert credentials.available()


def test_without_a_keyring_reading_finds_nothing_and_writing_says_why(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = pytest.importorskip("keyring")
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert not credentials.available() and credentials.load(None) is None
        with pytest.raises(ConfigError, match="^no system keyring is available "):
            credentials.store("work", "a-token-4242")
        with pytest.raises(ConfigError, match="^no system keyring is available "):
            credentials.delete("work")
    finally:
        keyring.set_keyring(previous)
    monkeypatch.setitem(sys.modules, "keyring", None)  # as if not installed
    assert not credentials.available() and credentials.load("work") is None
    with pytest.raises(ConfigError) as missing:
        credentials.store(None, "a-token-4242")
    assert str(missing.value) == credentials.KEYRING_MISSING


def test_login_in_the_browser_stores_for_the_profile(
    world: World,
    work: FakeMidjourney,
    backend: PlaintextKeyring,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        service_missing("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed (mjvault[browser])")
    assert chromium is not None
    # The work server comes from the profile's web_base; its sign-in page submits itself.
    signed_in = run_cli(
        capsys,
        "--profile",
        "work",
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
    )
    assert signed_in.code == 0, signed_in.err
    assert signed_in.out == (
        f"stored the Midjourney session of user {work.user_id} in the keyring (profile work)\n"
    )
    assert backend.get_password(SERVICE, "midjourney-session-token:work") == WORK_TOKEN
    assert backend.get_password(SERVICE, "midjourney-user-id:work") == work.user_id
    assert backend.get_password(SERVICE, "midjourney-session-token") is None
    assert backend.get_password(SERVICE, "midjourney-user-id") is None
