"""The effective configuration becomes the Midjourney client's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import World, isolate

from mjvault.config import client_settings, load_config

UID = "48d7667d-4177-49e2-adc1-5674bdde9593"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


def cookies_txt(path: Path, *cookies: tuple[str, str, str]) -> Path:
    lines = ["# Netscape HTTP Cookie File"]
    lines += [
        f"{domain}\tTRUE\t/\tTRUE\t2000000000\t{name}\t{value}" for domain, name, value in cookies
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_settings_follow_every_layer(world: World) -> None:
    world.user_file.parent.mkdir(parents=True)
    world.user_file.write_text(
        f"[source]\nuser_id = '{UID}'\napi = 'v2'\nweb_base = 'http://127.0.0.1:8080'\n"
        "[source.extra_cookies]\ncf_clearance = 'cf-1'\n"
        "[sync]\njobs = 6\nmax_rps = 0.5\nlimit_rate = '1M'\n"
    )
    world.user_file.chmod(0o600)
    loaded = load_config(
        environ={
            "MJVAULT_CONFIG": str(world.user_file),
            "MIDJOURNEY_SESSION_TOKEN": "tok-from-env",
        }
    )
    settings = client_settings(loaded, timeout=5.0)
    assert settings.web_base == "http://127.0.0.1:8080" and settings.api == "v2"
    assert settings.user_id == UID
    assert settings.token is not None and settings.token.reveal() == "tok-from-env"
    assert {k: v.reveal() for k, v in settings.extra_cookies.items()} == {"cf_clearance": "cf-1"}
    assert (settings.concurrency, settings.max_rps, settings.limit_rate) == (6, 0.5, 1024 * 1024)
    assert settings.timeout == 5.0
    assert "tok-from-env" not in repr(settings)


def test_session_cookie_from_cookies_file_beats_the_token(world: World, tmp_path: Path) -> None:
    jar = cookies_txt(
        tmp_path / "cookies.txt",
        (".midjourney.com", "__Host-Midjourney.AuthUserTokenV3_i", "from-browser"),
        (".midjourney.com", "cf_clearance", "cf-browser"),
        (".example.org", "other", "never-sent"),
    )
    loaded = load_config(
        environ={
            "MJVAULT_SOURCE_COOKIES_FILE": str(jar),
            "MIDJOURNEY_SESSION_TOKEN": "tok-from-env",
            "MJVAULT_CF_CLEARANCE": "cf-env",
        }
    )
    settings = client_settings(loaded)
    assert settings.token is None
    cookies = {k: v.reveal() for k, v in settings.extra_cookies.items()}
    assert cookies == {
        "__Host-Midjourney.AuthUserTokenV3_i": "from-browser",
        "cf_clearance": "cf-env",
    }


def test_sync_takes_its_source_and_limits_from_the_config_file(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from config_helpers import run_cli

    from mjvault import Vault
    from mjvault.testing.accounts import Account
    from mjvault.testing.server import FakeMidjourney

    Vault.init(tmp_path / "vault").close()
    with FakeMidjourney(Account.generate(7, 12)) as server:
        world.user_file.parent.mkdir(parents=True)
        world.user_file.write_text(
            f"[profile.fake.vault]\npath = '{tmp_path / 'vault'}'\n"
            f"[profile.fake.source]\nweb_base = '{server.web_base}'\n"
            f"cdn_base = '{server.cdn_base}'\nuser_id = '{server.user_id}'\n"
            "[profile.fake.sync]\njobs = 2\n"
        )
        monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", server.token)
        # No --web-base, --vault or --user-id: all of it comes from the profile.
        result = run_cli(capsys, "--profile", "fake", "--json", "sync", "--dry-run")
        assert result.code == 0, result.err
        assert len(result.json()["would_fetch"]) == 12
        assert server.stats.requests > 0
