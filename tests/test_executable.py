"""The standalone executable: built with PyInstaller from packaging/mjvault.spec, then run as a
user would run it, from outside the source tree: ``--version``, ``init``, ``import`` of a
sample archive, ``verify --read-data``, ``search``, the completion scripts, and ``serve``'s
page and static files.

Marked ``slow`` and ``executable``: the build takes about a minute, so the suite leaves it out
and `.ci/run` runs it as a step of its own (``pytest -m executable``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import __version__
from mjvault.testing.archive import write_sample_archive
from tests.test_notify import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.executable]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build-executable"
JOBS = 12


@pytest.fixture(scope="module")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-folder build, made once for the module into a temporary folder."""
    out = tmp_path_factory.mktemp("exe")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BUILD), "--dist", str(out / "dist"), "--work", str(out / "work")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The build's own line (time and size) goes into the test report for the record.
    print(result.stdout.strip().splitlines()[-1], f"({time.monotonic() - started:.0f} s)")
    name = "mjvault.exe" if sys.platform == "win32" else "mjvault"
    program = out / "dist" / "mjvault" / name
    assert program.is_file()
    return program


def clean_env(cwd: Path) -> dict[str, str]:
    """The environment with nothing of the build's Python or the machine's user in it: no
    MJVAULT_ settings, no PYTHONPATH, HOME and the config folder under `cwd`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MJVAULT_", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env["HOME"] = str(cwd)  # no user configuration of the machine's
    env["XDG_CONFIG_HOME"] = str(cwd / ".config")
    return env


def run(
    program: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The executable run from a folder outside the source tree, in `clean_env` plus `env`."""
    return subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean_env(cwd), **(env or {})},
        timeout=120,
    )


def test_version(executable: Path, tmp_path: Path) -> None:
    result = run(executable, "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mjvault, version {__version__}\n"


def test_init_import_verify_search(executable: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    summary = write_sample_archive(sample, jobs=JOBS, seed=7)
    vault = tmp_path / "vault"

    result = run(executable, "init", str(vault), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run(executable, "--vault", str(vault), "import", str(sample), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    result = run(executable, "--vault", str(vault), "--json", "log", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(JOBS) in result.stdout

    # Every object read back and rehashed: blake3, zstandard and the packs work when frozen.
    result = run(executable, "--vault", str(vault), "verify", "--read-data", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    # The LMDB index answers a query.
    result = run(executable, "--vault", str(vault), "search", "--ids", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == JOBS
    assert summary.root == sample


@pytest.fixture
def imported(executable: Path, tmp_path: Path) -> Path:
    """A vault the executable made and imported a sample archive into."""
    sample = tmp_path / "sample"
    write_sample_archive(sample, jobs=JOBS, seed=7)
    vault = tmp_path / "vault"
    assert run(executable, "init", str(vault), cwd=tmp_path).returncode == 0
    result = run(executable, "--vault", str(vault), "import", str(sample), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return vault


# What each chart file starts with: matplotlib loads the backend that writes it by name.
MAGIC = {"svg": b"<svg", "pdf": b"%PDF-", "png": b"\x89PNG\r\n\x1a\n"}


@pytest.mark.parametrize("fmt", ["html", "svg", "pdf"])
def test_report_each_format(executable: Path, imported: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"r.{fmt}"
    result = run(executable, "--vault", str(imported), "report", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    written = target.read_bytes()
    if fmt == "html":
        assert b"<html" in written.lower() and b"<svg" in written
    else:
        assert MAGIC[fmt] in written[:200]


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_stats_chart(executable: Path, imported: Path, tmp_path: Path, fmt: str) -> None:
    chart = tmp_path / f"stats.{fmt}"
    result = run(executable, "--vault", str(imported), "stats", "--chart", str(chart), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert MAGIC[fmt] in chart.read_bytes()[:200]


def test_notify_test_reaches_a_receiver(executable: Path, tmp_path: Path) -> None:
    """Apprise lists its plugins/ folder on disk to find its services: the build carries it."""
    receiver = Receiver()
    try:
        result = run(
            executable,
            "notify",
            "test",
            cwd=tmp_path,
            env={"MJVAULT_NOTIFY_URLS": receiver.url},
        )
    finally:
        receiver.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(receiver.received) == 1
    assert "mjvault" in json.dumps(receiver.received[0]).lower()


def test_bad_input_is_one_line(executable: Path, tmp_path: Path) -> None:
    result = run(executable, "--vault", str(tmp_path / "none"), "log", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(executable: Path, tmp_path: Path, shell: str) -> None:
    result = run(executable, "completion", shell, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "_MJVAULT_COMPLETE" in result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(executable: Path, tmp_path: Path) -> Iterator[str]:
    vault = tmp_path / "vault"
    assert run(executable, "init", str(vault), cwd=tmp_path).returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "--vault", str(vault), "serve", "--port", str(port), "--read-only"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"serve did not start: {stderr}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_serve_page_and_static_files(served: str) -> None:
    """uvicorn's loop and protocol modules, the routes imported by name and the package's
    static files all made it into the build."""
    with urllib.request.urlopen(served + "/", timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200 and "<html" in page.lower()
    with urllib.request.urlopen(served + "/app.js", timeout=10) as response:
        assert response.status == 200 and len(response.read()) > 100
    with urllib.request.urlopen(served + "/api/info", timeout=10) as response:
        assert response.status == 200
        json.loads(response.read())
