"""The in-process `run_cli`: what a parent would see of a child, and nothing left behind for
the next run in the same process."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from mjvault import Vault
from tests.conftest import png_bytes, record_json, run_cli, run_cli_process


def test_exit_code_and_output_are_what_a_child_gives(tmp_path: Path) -> None:
    for run in (run_cli, run_cli_process):
        version = run("--version")
        assert version.returncode == 0 and version.stdout.startswith(b"mjvault, version ")
        missing = run("log", cwd=tmp_path)
        assert missing.returncode == 10 and missing.stdout == b""
        assert (
            missing.stderr.decode().count("\n") == 1 and "no vault here" in missing.stderr.decode()
        )
        usage = run("no-such-command")
        assert usage.returncode == 2 and b"No such command" in usage.stderr


def test_a_run_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with Vault.init(path) as vault, vault.writer("test") as writer:
        writer.add_job(record_json("job-1"), [writer.put_media(png_bytes(1))])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    environ, cwd, sigint = dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGINT)
    streams = sys.stdin, sys.stdout, sys.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    # A failing command with -vv and a log file: the error goes through both handlers.
    done = run_cli(
        "--vault", str(path), "-vv", "--log-file", str(tmp_path / "log"), "show", "nope",
        env={"MJVAULT_PASSPHRASE": "unused", "HOME": str(tmp_path)}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and b"Traceback" in done.stderr  # -vv shows it
    assert "no job nope" in (tmp_path / "log").read_text()
    assert (root.handlers, root.level) == (handlers, level)
    assert (dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGINT)) == (
        environ,
        cwd,
        sigint,
    )
    assert (sys.stdin, sys.stdout, sys.stderr) == streams
    assert os.umask(umask) == umask


def test_inherited_settings_are_removed_and_env_is_the_runs_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MJVAULT_VAULT from the developer's shell would point the command elsewhere.
    monkeypatch.setenv("MJVAULT_VAULT", str(tmp_path / "elsewhere"))
    missing = run_cli("log", cwd=tmp_path)
    assert missing.returncode == 10 and "elsewhere" not in missing.stderr.decode()
    Vault.init(tmp_path / "named").close()
    named = run_cli("log", env={"MJVAULT_VAULT": str(tmp_path / "named")}, cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert os.environ["MJVAULT_VAULT"] == str(tmp_path / "elsewhere")
