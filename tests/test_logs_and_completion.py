"""Logs are key=value, masked, and reach --log-file; completion scripts complete for real."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from config_helpers import World, isolate, run_cli
from hypothesis import given
from hypothesis import strategies as st

from mjvault.cli.logs import setup_logging
from mjvault.redact import MASK, forget_secrets, redact, register_secret
from tests.conftest import invoke_cli

TOKEN = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    forget_secrets()
    logging.getLogger().handlers.clear()


def test_log_file_gets_masked_key_value_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "mjvault.log"
    log_file.parent.mkdir()
    setup_logging(0, str(log_file))
    register_secret("plain-secret-value")
    log = logging.getLogger("mjvault.test")
    log.info("request sent", extra={"job": "abc 1", "cookie": f"cf_clearance={TOKEN[:20]}x"})
    log.warning("header Cookie: __Host-Midjourney.AuthUserTokenV3_i=%s; other=1", "raw-token-1")
    log.error("refused with plain-secret-value in the body")
    try:
        raise RuntimeError(f"server said {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    text = log_file.read_text()
    assert log_file.stat().st_mode & 0o777 == 0o600
    for secret in ("raw-token-1", "plain-secret-value", TOKEN, TOKEN[:20]):
        assert secret not in text
    lines = text.splitlines()
    # INFO reaches the file even though stderr shows warnings only.
    assert lines[0].endswith(
        'level=info logger=mjvault.test msg="request sent" job="abc 1" cookie="cf_clearance=***"'
    )
    assert "__Host-Midjourney.AuthUserTokenV3_i=***; other=1" in lines[1]
    assert "Traceback" in text and "server said ***" in text


def test_cli_log_file_and_quiet(
    world: World,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.user_file.parent.mkdir(parents=True)
    world.user_file.write_text("[sync]\njobs = 1\n")
    log_file = tmp_path / "run.log"
    monkeypatch.setenv("MJVAULT_SYNC_JOB", "2")  # a misspelt variable is warned about in the log
    result = run_cli(capsys, "-q", "--log-file", str(log_file), "config", "get", "sync.jobs")
    assert result.code == 0 and result.out == "1\n" and result.err == ""
    assert "level=warning logger=mjvault.config.loader" in log_file.read_text()
    (tmp_path / "plain-file").write_text("")
    bad = run_cli(capsys, "--log-file", str(tmp_path / "plain-file" / "x.log"), "config", "path")
    assert bad.code == 2 and "cannot write the log file" in bad.err


def test_log_file_in_a_missing_folder_is_refused_not_created(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # As git and restic do: a typo in a path must not silently grow a directory tree.
    missing = tmp_path / "lgos" / "daily"
    bad = run_cli(capsys, "--log-file", str(missing / "x.log"), "config", "path")
    assert bad.code == 2 and bad.out == ""
    assert (
        bad.err
        == f"mjvault: error: cannot write the log file {missing / 'x.log'}: the folder {missing} does not exist\n"
    )
    assert not (tmp_path / "lgos").exists()


def test_log_file_that_is_a_link_loop_is_one_line(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Path.resolve raises RuntimeError on a loop (before Python 3.13): it was a traceback.
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    bad = run_cli(capsys, "--log-file", str(tmp_path / "a"), "config", "path")
    assert bad.code not in (0, -1) and "Traceback" not in bad.err
    assert bad.err.startswith(f"mjvault: error: cannot write the log file {tmp_path / 'a'}: ")
    assert len(bad.err.splitlines()) == 1


@given(
    st.text(min_size=6, max_size=30).filter(lambda s: s.strip() == s and "*" not in s),
    st.text(max_size=40),
    st.text(max_size=40),
)
def test_registered_secret_never_survives(secret: str, before: str, after: str) -> None:
    register_secret(secret)
    try:
        assert secret not in redact(before + secret + after)
    finally:
        forget_secrets()


@pytest.mark.parametrize(
    "text",
    [
        "Cookie: __Secure-next-auth.session-token=abc.def-ghi",
        "MIDJOURNEY_SESSION_TOKEN=abcdefgh",
        "Authorization: Bearer abcdefghijklmnop",
        f"got {TOKEN} back",
    ],
)
def test_credential_patterns_are_masked(text: str) -> None:
    masked = redact(text)
    assert MASK in masked
    for word in ("abc.def-ghi", "abcdefgh", "abcdefghijklmnop", TOKEN):
        assert word not in masked


def test_completion_scripts(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for shell, marker in (
        ("bash", "complete -o nosort -F"),
        ("zsh", "#compdef mjvault"),
        ("fish", "complete --no-files --command mjvault"),
    ):
        result = run_cli(capsys, "completion", shell)
        assert result.code == 0 and marker in result.out and "_MJVAULT_COMPLETE" in result.out
    assert run_cli(capsys, "completion", "tcsh").code == 2


def test_completion_completes_commands_and_keys(world: World) -> None:
    def complete(words: str) -> list[str]:
        env = dict(
            os.environ,
            _MJVAULT_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        )
        out = invoke_cli([], env=env).stdout.decode()
        return [line.split(",", 1)[1] for line in out.splitlines()]

    assert "config" in complete("mjvault con")
    assert complete("mjvault config get sync.j") == ["sync.jobs"]
