"""The in-process `run_cli`: what a parent would see of a child, and nothing left behind for
the next run in the same process."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import warnings
from pathlib import Path

import pytest

from mjvault import Vault
from tests.conftest import invoke_cli, png_bytes, record_json, run_cli, run_cli_process


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


def test_the_command_sees_the_argv_of_python_m_mjvault(monkeypatch: pytest.MonkeyPatch) -> None:
    import mjvault
    from mjvault.cli import invocation

    seen: list[tuple[list[str], str]] = []
    monkeypatch.setattr(
        "mjvault.cli.main.main", lambda args: seen.append((sys.argv[:], invocation.program()))
    )
    argv = sys.argv[:]
    assert run_cli("log", "-n", "1").returncode == 0
    main_py = str(Path(mjvault.__file__).with_name("__main__.py"))
    # The program names itself as `python -m mjvault` names itself, not as pytest.
    assert seen == [([main_py, "log", "-n", "1"], f"{shlex.quote(sys.executable)} -m mjvault")]
    assert sys.argv == argv


def test_warnings_go_to_the_runs_stderr_under_pythons_default_filters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def warn(args: list[str]) -> None:
        warnings.warn("a user warning", UserWarning, stacklevel=1)
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)  # ignored by default

    monkeypatch.setattr("mjvault.cli.main.main", warn)
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        done = run_cli("log")
    assert done.returncode == 0
    stderr = done.stderr.decode()
    assert "UserWarning: a user warning" in stderr and "deprecation" not in stderr
    assert recorded == []  # none reached this process's own recorder


def test_a_run_leaves_no_keyring_backend_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring
    import keyring.core
    from keyring.backends import fail

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    found: list[object] = []
    # The command loads the backend on first use, as any keyring call does.
    monkeypatch.setattr("mjvault.cli.main.main", lambda args: found.append(keyring.get_keyring()))
    # Both ways: the backend chosen from the run's environment, and the test's kept.
    run_cli("log", env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    invoke_cli(["log"])
    assert [type(backend) for backend in found] == [fail.Keyring] * 2
    assert keyring.core._keyring_backend is None


def test_a_run_without_the_variable_detects_a_backend_as_a_child_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keyring.core
    from keyring.backends import fail

    installed = fail.Keyring()
    monkeypatch.setattr(keyring.core, "_keyring_backend", installed)
    seen: list[object] = []
    monkeypatch.setattr(
        "mjvault.cli.main.main",
        lambda args: seen.append(keyring.core._keyring_backend),
    )
    run_cli("log", env={"PYTHON_KEYRING_BACKEND": ""})
    assert seen == [None]  # not the one this process had: a child would detect its own
    assert keyring.core._keyring_backend is installed


def test_the_command_cannot_close_the_handlers_it_finds(tmp_path: Path) -> None:
    root = logging.getLogger()
    # As pytest opens its --log-file: mode "w", which a closed handler does not reopen.
    kept = logging.FileHandler(tmp_path / "kept.log", mode="w")
    root.addHandler(kept)
    try:
        done = run_cli("--log-file", str(tmp_path / "own.log"), "log", cwd=tmp_path)
        assert done.returncode == 10
        root.error("after the run")
        kept.flush()
        assert "after the run" in (tmp_path / "kept.log").read_text()
        assert kept.stream is not None and not kept.stream.closed
    finally:
        root.removeHandler(kept)
        kept.close()


def test_what_the_file_system_was_found_to_lack_is_learned_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mjvault.views import links

    flags = links._tmpfile_works, links._empty_path_works

    def learn(args: list[str]) -> None:
        links._tmpfile_works = links._empty_path_works = False

    monkeypatch.setattr("mjvault.cli.main.main", learn)
    run_cli("log")
    assert (links._tmpfile_works, links._empty_path_works) == flags
