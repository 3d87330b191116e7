"""The layered configuration: precedence, profiles, origins, and every kind of mistake."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import pytest
from config_helpers import World, isolate
from hypothesis import given
from hypothesis import strategies as st

from mjvault.config import Layer, load_config, resolve_vault_dir
from mjvault.config.schema import SETTINGS
from mjvault.config.types import ByteRate, CookieMap
from mjvault.errors import ConfigError

UID = "48d7667d-4177-49e2-adc1-5674bdde9593"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_defaults_without_any_file(world: World) -> None:
    loaded = load_config()
    assert loaded.config.sync.jobs == 8
    assert loaded.config.source.web_base == "https://www.midjourney.com"
    assert loaded.origin("sync.jobs").layer is Layer.DEFAULT


def test_each_layer_beats_the_one_before(world: World, tmp_path: Path) -> None:
    write(world.system_file, "[sync]\njobs = 2\nmax_rps = 1.5\nlimit_rate = '1M'\n", 0o644)
    write(world.user_file, "[sync]\njobs = 3\nmax_rps = 3\n")
    vault = tmp_path / "v"
    write(vault / "config.toml", "[sync]\njobs = 5\n", 0o644)

    loaded = load_config(
        vault_dir=vault,
        environ={
            "MJVAULT_CONFIG": str(world.user_file),
            "MJVAULT_SYSTEM_CONFIG": str(world.system_file),
        },
    )
    assert loaded.config.sync.jobs == 5
    assert loaded.origin("sync.jobs").layer is Layer.VAULT
    assert loaded.config.sync.max_rps == 3.0
    assert loaded.origin("sync.max_rps").source == str(world.user_file)
    assert loaded.config.sync.limit_rate == 1024 * 1024
    assert loaded.origin("sync.limit_rate").layer is Layer.SYSTEM

    env = {
        "MJVAULT_CONFIG": str(world.user_file),
        "MJVAULT_SYSTEM_CONFIG": str(world.system_file),
        "MJVAULT_SYNC_JOBS": "7",
    }
    loaded = load_config(vault_dir=vault, environ=env)
    assert loaded.config.sync.jobs == 7
    assert str(loaded.origin("sync.jobs")) == "env MJVAULT_SYNC_JOBS"

    loaded = load_config(vault_dir=vault, environ=env, overrides={"sync.jobs": 9})
    assert loaded.config.sync.jobs == 9
    assert loaded.origin("sync.jobs").layer is Layer.CLI


def test_older_tools_environment_names_are_honoured(world: World) -> None:
    loaded = load_config(
        environ={
            "MIDJOURNEY_SESSION_TOKEN": "tok-123456",
            "MIDJOURNEY_USER_ID": UID.upper(),
            "MJVAULT_WEB_BASE": "http://127.0.0.1:8080/",
            "MJVAULT_CF_CLEARANCE": "cfvalue",
        }
    )
    source = loaded.config.source
    assert source.session_token == "tok-123456"
    assert source.user_id == UID
    assert source.web_base == "http://127.0.0.1:8080"
    assert source.extra_cookies == {"cf_clearance": "cfvalue"}
    # The canonical name wins over the older one.
    both = load_config(environ={"MJVAULT_SOURCE_USER_ID": UID, "MIDJOURNEY_USER_ID": "nonsense"})
    assert both.config.source.user_id == UID


def test_profile_overrides_its_own_file_but_not_later_layers(world: World, tmp_path: Path) -> None:
    write(
        world.user_file,
        f"""
[sync]
jobs = 3
[profile.work.sync]
jobs = 6
[profile.work.source]
user_id = "{UID}"
""",
    )
    vault = tmp_path / "v"
    write(vault / "config.toml", "[checkout]\nlink = 'copy'\n", 0o644)
    assert load_config().config.sync.jobs == 3
    work = load_config(profile="work", vault_dir=vault)
    assert work.config.sync.jobs == 6
    assert work.origin("sync.jobs").profile == "work"
    assert work.config.source.user_id == UID
    assert work.config.checkout.link == "copy"
    assert (
        load_config(
            environ={"MJVAULT_CONFIG": str(world.user_file), "MJVAULT_PROFILE": "work"}
        ).config.sync.jobs
        == 6
    )


def test_unknown_profile_suggests_the_close_one(world: World) -> None:
    write(world.user_file, "[profile.work.sync]\njobs = 6\n")
    with pytest.raises(ConfigError, match=r"no profile named 'wrok' \(did you mean work\?\)"):
        load_config(profile="wrok")
    assert load_config(profile="new", strict_profile=False).profile == "new"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sync]\njob = 3\n", r"config.toml: unknown key sync.job \(did you mean sync.jobs\?\)"),
        (
            "[sync]\nweb_base = 'x'\n",
            r"unknown key sync.web_base \(did you mean source.web_base\?\)",
        ),
        ("[snyc]\njobs = 3\n", r"unknown section \[snyc\] \(did you mean sync\?\)"),
        ("[sync]\njobs = '8'\n", r"sync.jobs: expected an integer, got a string"),
        ("[sync]\njobs = true\n", r"sync.jobs: expected an integer, got a boolean"),
        ("[sync]\njobs = 0\n", r"sync.jobs: must be from 1 to 64, not 0"),
        (
            "[checkout]\nlink = 'simlink'\n",
            r"'simlink' is not one of .* \(did you mean symlink\?\)",
        ),
        (
            "[source]\nweb_base = 'ftp://x'\n",
            r"source.web_base: expected an http:// or https:// URL",
        ),
        ("[source]\nuser_id = 'bob'\n", r"source.user_id: expected a UUID"),
        ("[sync]\nlimit_rate = 'fast'\n", r"sync.limit_rate: expected a rate such as 500K"),
        ("[sync]\nsince = '2024-13-01'\n", r"sync.since: expected a date YYYY-MM-DD"),
        ("[sync\njobs = 3\n", r"config.toml: invalid TOML: .*line 1"),
        ("[profile.work.sync]\njbos = 1\n", r"\[profile.work\]: unknown key sync.jbos"),
        ("sync = 3\n", r"sync must be a \[sync\] table"),
    ],
)
def test_mistakes_name_file_key_and_suggestion(world: World, text: str, message: str) -> None:
    write(world.user_file, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config()
    assert str(world.user_file) in str(info.value)
    assert "\n" not in str(info.value)


def test_environment_mistakes_name_the_variable(world: World) -> None:
    with pytest.raises(
        ConfigError, match=r"environment MJVAULT_SYNC_JOBS: sync.jobs: expected an integer"
    ):
        load_config(environ={"MJVAULT_SYNC_JOBS": "many"})


def test_misspelt_environment_variable_is_warned(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    load_config(environ={"MJVAULT_SYNC_JOB": "3", "MJVAULT_SOMETHING_ELSE_ENTIRELY": "1"})
    assert "MJVAULT_SYNC_JOB (did you mean MJVAULT_SYNC_JOBS?)" in caplog.text
    assert "SOMETHING_ELSE" not in caplog.text


def test_secret_in_a_readable_file_is_refused(world: World) -> None:
    write(world.user_file, "[source]\nsession_token = 'tok-abcdef'\n", 0o644)
    with pytest.raises(ConfigError, match="secret in a file other users can read") as info:
        load_config()
    assert "tok-abcdef" not in str(info.value)
    world.user_file.chmod(0o600)
    assert load_config().config.source.session_token == "tok-abcdef"


def test_vault_config_cannot_hold_secrets_or_personal_settings(
    world: World, tmp_path: Path
) -> None:
    vault = tmp_path / "v"
    write(vault / "config.toml", "[source]\nsession_token = 'tok-abcdef'\n")
    with pytest.raises(ConfigError, match="cannot be set in a vault's config"):
        load_config(vault_dir=vault)
    write(vault / "config.toml", "[output]\ncolor = 'never'\n")
    with pytest.raises(ConfigError, match="output.color cannot be set in a vault's config"):
        load_config(vault_dir=vault)


def test_relative_paths_are_taken_from_the_file(world: World) -> None:
    write(world.user_file, "[vault]\npath = 'archive'\n[source]\ncookies_file = '~/c.txt'\n")
    config = load_config().config
    assert config.vault.path == world.user_file.parent / "archive"
    assert config.source.cookies_file == Path("~/c.txt").expanduser()


def test_typed_toml_values(world: World) -> None:
    write(
        world.user_file,
        "[sync]\nsince = 2024-02-29\nlimit_rate = 500000\n"
        "[source.extra_cookies]\ncf_clearance = 'x'\n",
    )
    config = load_config().config
    assert config.sync.since == dt.date(2024, 2, 29)
    assert config.sync.limit_rate == 500000
    assert config.source.extra_cookies == {"cf_clearance": "x"}


def test_secret_never_in_repr(world: World) -> None:
    config = load_config(environ={"MIDJOURNEY_SESSION_TOKEN": "tok-zzzzzz"}).config
    assert "tok-zzzzzz" not in repr(config)


def test_vault_resolution_order(world: World, tmp_path: Path) -> None:
    inside = tmp_path / "current"
    configured = tmp_path / "configured"
    write(
        world.user_file,
        f"[vault]\npath = '{configured}'\n[profile.work.vault]\npath = '{tmp_path / 'work'}'\n",
    )

    def finder(start: Path) -> Path | None:
        return inside if start == inside else None

    base = load_config()
    assert resolve_vault_dir(base, inside, finder)[0] == inside  # like git: where you stand
    assert resolve_vault_dir(base, tmp_path, finder)[0] == configured
    # A profile's vault wins over the directory: never one account's jobs in another's vault.
    assert resolve_vault_dir(load_config(profile="work"), inside, finder)[0] == tmp_path / "work"
    explicit = load_config(overrides={"vault.path": str(tmp_path / "x")})
    assert resolve_vault_dir(explicit, inside, finder)[0] == tmp_path / "x"
    env = load_config(environ={"MJVAULT_VAULT": str(tmp_path / "y")})
    assert resolve_vault_dir(env, inside, finder)[0] == tmp_path / "y"


# -- property tests of the value types -------------------------------------------------------
@given(st.integers(min_value=1, max_value=2**40))
def test_byte_rate_round_trips_through_its_text(rate: int) -> None:
    kind = ByteRate()
    assert kind.parse(kind.to_text(rate), from_text=True) == rate
    assert kind.parse(kind.to_toml(rate), from_text=False) == rate


cookie_names = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."),
    min_size=1,
    max_size=20,
)
cookie_values = st.text(
    alphabet=st.characters(
        blacklist_characters=";\r\n\0 \t", blacklist_categories=("Cs", "Zs", "Cc")
    ),
    max_size=30,
)


@given(st.dictionaries(cookie_names, cookie_values, max_size=5))
def test_cookie_map_round_trips_through_header_text(cookies: dict[str, str]) -> None:
    kind = CookieMap()
    assert kind.parse(kind.to_text(cookies), from_text=True) == cookies


def test_unknown_home_directory_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no such user"):
        SETTINGS["vault.path"].type.parse("~no-such-user-here/x", from_text=True)


def test_cookie_values_with_control_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        CookieMap().parse("a=\x1fb", from_text=True)


@given(st.sampled_from(sorted(SETTINGS)), st.data())
def test_every_default_survives_text_and_toml(key: str, data: st.DataObject) -> None:
    spec = SETTINGS[key]
    if spec.default is None or spec.default == {}:
        return
    assert spec.type.parse(spec.type.to_text(spec.default), from_text=True) == spec.default
    assert spec.type.parse(spec.type.to_toml(spec.default), from_text=False) == spec.default


@given(st.text(max_size=40))
def test_parsers_fail_only_with_value_error(text: str) -> None:
    for spec in SETTINGS.values():
        with contextlib.suppress(ValueError):
            spec.type.parse(text, from_text=True)
