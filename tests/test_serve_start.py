"""`mjvault serve` that cannot start (its port taken) fails as every error does: one line on
stderr and exit 1, the code its error type carries, not uvicorn's 3 (mjvault's integrity
code, which would tell a script the vault is damaged)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from mjvault import Vault
from mjvault.errors import EXIT_ERROR, EXIT_INTEGRITY
from mjvault.serve.app import ServerNotStarted, _StartFailures
from tests.config_helpers import World, isolate, run_cli


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    world = isolate(monkeypatch, tmp_path)
    Vault.init(world.root / "v").close()
    return world


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


def test_a_port_in_use_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], world: World, taken_port: int
) -> None:
    result = run_cli(capsys, "--vault", str(world.root / "v"), "serve", "--port", str(taken_port))
    assert result.code == EXIT_ERROR != EXIT_INTEGRITY
    # The line that says where it would serve, then the error: the reason (uvicorn's "address
    # already in use") is in the error's line, not logged before it as well.
    *before, error = result.err.strip().splitlines()
    assert [line.split(" at ")[0] for line in before] == [f"serving {world.root / 'v'}"]
    assert error.startswith(
        f"mjvault: error: the web app could not start on 127.0.0.1:{taken_port}"
    )
    assert "in use" in error and "Traceback" not in result.err


def test_a_port_in_use_under_json_names_the_error(
    capsys: pytest.CaptureFixture[str], world: World, taken_port: int
) -> None:
    result = run_cli(
        capsys, "--json", "--vault", str(world.root / "v"), "serve", "--port", str(taken_port)
    )
    assert result.code == EXIT_ERROR
    error = result.json()["error"]
    assert error["type"] == ServerNotStarted.__name__ and error["exit_code"] == EXIT_ERROR


def test_errors_after_the_start_are_logged_as_before() -> None:
    # Only what uvicorn says before it listens is held back for the error line.
    server = SimpleNamespace(started=False)
    failures = _StartFailures(server)  # type: ignore[arg-type]

    def record(level: int, text: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, text, None, None)

    assert failures.filter(record(logging.WARNING, "a warning")) is True
    assert failures.filter(record(logging.ERROR, "cannot bind")) is False
    server.started = True
    assert failures.filter(record(logging.ERROR, "a request failed")) is True
    assert failures.messages == ["cannot bind"]
