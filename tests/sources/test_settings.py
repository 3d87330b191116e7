"""Settings: the Secret type never shows itself; the environment names are honoured."""

from __future__ import annotations

import pickle

import pytest

from mjvault.cli.source_options import SourceOptions, parse_rate
from mjvault.errors import ConfigError, UsageError
from mjvault.sources.midjourney.settings import ClientSettings, Secret

VALUE = "s3cr3t-session-value"


def test_secret_never_prints() -> None:
    secret = Secret(VALUE)
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>30}",
        "{}".format(secret),  # noqa: UP032 - the old API, on purpose
    ):
        assert VALUE not in text and "***" in text
    assert secret.reveal() == VALUE and secret == Secret(VALUE) and secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_settings_repr_hides_token_and_cookies() -> None:
    settings = ClientSettings(token=VALUE, extra_cookies={"cf_clearance": VALUE + "-cf"})
    assert isinstance(settings.token, Secret)
    assert VALUE not in repr(settings) and VALUE not in str(settings)


def test_from_env() -> None:
    env = {
        "MIDJOURNEY_SESSION_TOKEN": f" {VALUE}\n",
        "MIDJOURNEY_USER_ID": "u-1",
        "MJVAULT_WEB_BASE": "http://127.0.0.1:1/",
        "MJVAULT_CDN_BASE": "http://127.0.0.1:2/cdn/",
        "MJVAULT_USER_AGENT": "Mozilla/5.0 exact",
        "MJVAULT_CF_CLEARANCE": "cf",
    }
    settings = ClientSettings.from_env(env, api="v2")
    assert settings.token == Secret(VALUE) and settings.user_id == "u-1"
    assert (
        settings.web_base == "http://127.0.0.1:1" and settings.cdn_base == "http://127.0.0.1:2/cdn"
    )
    assert settings.user_agent == "Mozilla/5.0 exact" and settings.api == "v2"
    assert settings.extra_cookies == {"cf_clearance": Secret("cf")}
    defaults = ClientSettings.from_env({})
    assert defaults.web_base == "https://www.midjourney.com" and defaults.token is None
    assert defaults.user_agent.startswith("Mozilla/5.0 (")


@pytest.mark.parametrize(
    "changes", [{"api": "v4"}, {"max_rps": 0}, {"limit_rate": -1.0}, {"max_retries": -1}]
)
def test_bad_settings_are_config_errors(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ClientSettings(**changes)  # type: ignore[arg-type]


def test_rates() -> None:
    assert parse_rate("500k") == 500 * 1024 and parse_rate("2M") == 2 * 1024**2
    assert parse_rate("1.5MB/s") == 1.5 * 1024**2 and parse_rate("250000") == 250000
    with pytest.raises(UsageError):
        parse_rate("fast")


def test_source_options_precedence() -> None:
    env = {
        "MIDJOURNEY_SESSION_TOKEN": VALUE,
        "MIDJOURNEY_USER_ID": "env-user",
        "MJVAULT_WEB_BASE": "http://127.0.0.1:5",
    }
    options = SourceOptions(user_id="flag-user", api="v1", limit_rate="1M")
    settings = options.settings(env, use_keyring=False)
    assert settings.user_id == "flag-user" and settings.api == "v1"
    assert settings.token == Secret(VALUE) and settings.web_base == "http://127.0.0.1:5"
    assert settings.limit_rate == 1024**2


@pytest.mark.parametrize("bad", ["two words", "line\nbreak", "semi;colon", "tab\there"])
def test_token_http_cannot_carry_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        ClientSettings(token=bad)
    assert bad not in str(err.value) and "copy the cookie's value again" in str(err.value)
    with pytest.raises(ConfigError):
        ClientSettings(extra_cookies={"cf_clearance": bad})


def test_a_user_agent_http_cannot_carry(scripted) -> None:  # type: ignore[no-untyped-def]
    from mjvault.sources.midjourney import MidjourneyClient

    settings = ClientSettings(
        web_base=scripted.base, api="v3", user_id="u", token="tok", user_agent="bad\nagent"
    )
    with MidjourneyClient(settings) as client, pytest.raises(ConfigError, match="header"):
        client.list_jobs()
