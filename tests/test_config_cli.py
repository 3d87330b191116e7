"""`mjvault config …` and the global manners, through the real entry point."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from config_helpers import Result, World, isolate, run_cli

from mjvault import Vault

UID = "48d7667d-4177-49e2-adc1-5674bdde9593"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def run(*args: str) -> Result:
        return run_cli(capsys, *args)

    return run


def test_set_get_unset_keep_comments_and_privacy(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    world.user_file.parent.mkdir(parents=True)
    world.user_file.write_text("# my own notes\n[sync]\njobs = 2  # slow line\n")
    assert cli("config", "set", "sync.jobs", "8").code == 0
    assert cli("config", "set", "sync.limit_rate", "1.5M").code == 0
    text = world.user_file.read_text()
    assert "# my own notes" in text and "jobs = 8" in text and 'limit_rate = "1536K"' in text
    assert cli("config", "get", "sync.jobs").out == "8\n"

    got = cli("--json", "config", "get", "sync.limit_rate").json()
    assert got["value"] == 1536 * 1024 and got["origin"]["layer"] == "user"

    assert cli("config", "unset", "sync.limit_rate").code == 0
    assert "limit_rate" not in world.user_file.read_text()
    unset_again = cli("config", "unset", "sync.limit_rate")
    assert unset_again.code == 0 and "was not set" in unset_again.out
    assert cli("config", "get", "sync.limit_rate") == Result(1, "", "")


def test_new_user_file_is_owner_only(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("config", "set", "source.user_id", UID).code == 0
    assert world.user_file.stat().st_mode & 0o777 == 0o600


def test_bad_value_is_refused_and_nothing_written(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", "set", "sync.jobs", "lots")
    assert result.code == 2
    assert result.err == "mjvault: error: value: sync.jobs: expected an integer, got 'lots'\n"
    assert not world.user_file.exists()
    typo = cli("config", "set", "checkout.lnk", "copy")
    assert typo.code == 2 and "did you mean checkout.link?" in typo.err


def test_secret_never_from_argv_and_always_masked(
    world: World,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    token = "tok-very-secret-value"
    refused = cli("config", "set", "source.session_token", token)
    assert refused.code == 2 and "not taken on the command line" in refused.err
    assert token not in refused.err

    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    stored = cli("config", "set", "source.session_token", "-")
    assert stored.code == 0 and token not in stored.out
    assert f'session_token = "{token}"' in world.user_file.read_text()

    shown = cli("config", "show")
    assert token not in shown.out and "source.session_token = ********" in shown.out
    as_json = cli("config", "show", "--json").json()
    assert as_json["settings"]["source.session_token"]["value"] == "********"
    assert cli("config", "get", "source.session_token").out == "********\n"


def test_show_reports_origins_and_profile(
    world: World, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    assert cli("--profile", "work", "config", "set", "sync.jobs", "6").code == 0
    assert "[profile.work.sync]" in world.user_file.read_text()
    monkeypatch.setenv("MJVAULT_SYNC_MAX_RPS", "0.5")
    data = cli("--profile", "work", "--json", "config", "show").json()
    assert data["profile"] == "work"
    assert data["settings"]["sync.jobs"] == {
        "value": 6,
        "origin": {"layer": "user", "source": str(world.user_file), "profile": "work"},
        "secret": False,
    }
    assert data["settings"]["sync.max_rps"]["origin"]["source"] == "MJVAULT_SYNC_MAX_RPS"
    assert [f["layer"] for f in data["files"]] == ["system", "user"]
    human = cli("--profile", "work", "config", "show").out
    assert "# profile work" in human
    assert "sync.jobs = 6" in human and f"# user {world.user_file} [profile.work]" in human


def test_vault_target_and_discovery(
    world: World, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    missing = cli("config", "set", "--vault", "checkout.link", "copy")
    assert missing.code == 10 and "no vault here" in missing.err

    Vault.init(tmp_path / "v").close()
    (tmp_path / "v" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "v" / "sub")
    assert cli("config", "set", "--vault", "checkout.link", "copy").code == 0
    assert (tmp_path / "v" / "config.toml").read_text() == '[checkout]\nlink = "copy"\n'
    data = cli("config", "show", "--json").json()
    assert data["vault"] == str(tmp_path / "v")
    assert data["settings"]["checkout.link"]["origin"]["layer"] == "vault"
    personal = cli("config", "set", "--vault", "output.color", "never")
    assert personal.code == 2 and "cannot be set in a vault's config" in personal.err
    paths = cli("config", "path", "--json").json()
    assert paths[-1] == {
        "layer": "vault",
        "path": str(tmp_path / "v" / "config.toml"),
        "exists": True,
    }


def _editor(tmp_path: Path, new_text: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(f"import sys, pathlib\npathlib.Path(sys.argv[1]).write_text({new_text!r})\n")
    return f"{sys.executable} {script}"


def test_edit_saves_valid_and_refuses_invalid(
    world: World, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "[sync]\njobs = 12\n"))
    assert cli("config", "edit").code == 0
    assert world.user_file.read_text() == "[sync]\njobs = 12\n"
    assert world.user_file.stat().st_mode & 0o777 == 0o600

    monkeypatch.setenv("EDITOR", _editor(tmp_path, "[sync]\njobs = 'twelve'\n"))
    refused = cli("config", "edit")
    assert refused.code == 2 and "nothing was saved" in refused.err
    assert world.user_file.read_text() == "[sync]\njobs = 12\n"


def test_broken_config_is_one_line_with_exit_2_and_json_error(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    world.user_file.parent.mkdir(parents=True)
    world.user_file.write_text("[sync]\njobs = 0\n")
    result = cli("--json", "config", "show")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert json.loads(result.out)["error"] == {
        "type": "ConfigError",
        "message": f"{world.user_file}: sync.jobs: must be from 1 to 64, not 0",
        "hint": None,
        "exit_code": 2,
    }
    verbose = cli("-v", "config", "show")
    assert "Traceback" in verbose.err
    # `config path` and `config edit` still work, so the file can be found and fixed.
    assert cli("config", "path").code == 0


def test_usage_errors_exit_2(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("--no-such-option").code == 2
    assert cli("config", "get").code == 2
    assert cli("config", "set", "--user", "--vault").code == 2
    assert cli().code == 2  # no command: help and a usage exit
    assert cli("--version").out.startswith("mjvault, version ")
    as_json = cli("--json", "config", "set", "sync.jobs")
    assert as_json.code == 2
    assert as_json.json()["error"]["message"] == "Missing argument 'VALUE'."


def test_colour_follows_setting_and_no_color(
    world: World, cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    args = ("setup", "--yes", "--skip-test", "--vault-dir", str(tmp_path / "v"))
    assert cli("config", "set", "output.color", "always").code == 0
    assert "\x1b[1m" in cli(*args).out
    assert "\x1b[" not in cli("--no-color", *args).out
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in cli(*args).out


def test_progress_setting_and_colour_choice(world: World, cli) -> None:  # type: ignore[no-untyped-def]
    import click

    from mjvault.cli.context import AppContext, color_choice

    ctx = click.Context(click.Command("x"))
    app = AppContext(progress_enabled=True)
    assert cli("config", "set", "output.progress", "never").code == 0
    app.apply_output_settings(ctx, no_color=False)
    assert app.progress_enabled is False and ctx.color is None

    assert color_choice(no_color=False, environ={}, configured="always") is True
    assert color_choice(no_color=False, environ={"NO_COLOR": ""}, configured="always") is True
    assert color_choice(no_color=False, environ={"NO_COLOR": "1"}, configured="always") is False
    assert color_choice(no_color=True, environ={}, configured="auto") is False
