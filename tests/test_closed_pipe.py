"""A reader that leaves early (`mjvault search fox | head -2`) is success, exit 0, for every
command: a real pipe to a real child process, closed before or while the command writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mjvault import Vault
from tests.conftest import record_json


@pytest.fixture(scope="module")
def vault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "vault"
    vault = Vault.init(path)
    with vault.writer("test") as writer:
        for i in range(1500):  # some hundred kilobytes of output: more than a pipe holds
            job_id = f"{i:08d}-0000-4000-8000-000000000000"
            writer.add_job(record_json(job_id, f"a red fox number {i}"), [None])
    vault.close()
    return path


def _run_into_closed_pipe(args: list[str], read_lines: int) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    read_end, write_end = os.pipe()
    with subprocess.Popen(
        [sys.executable, "-m", "mjvault", *args],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            for _ in range(read_lines):  # as `head -N` does: read a little, then leave
                reader.readline()
        _, stderr = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, b"", stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["search", "fox"],
        ["--json", "search", "fox"],
        ["search", "--ids", "fox"],
        ["export", "--format", "jsonl"],
        ["log"],
        ["stats"],
        ["--help"],
        ["search", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
@pytest.mark.parametrize("read_lines", [0, 2], ids=["closed-at-once", "head-2"])
def test_a_reader_that_leaves_is_success(vault_dir: Path, args: list[str], read_lines: int) -> None:
    result = _run_into_closed_pipe(["--vault", str(vault_dir), *args], read_lines)
    assert result.returncode == 0, result.stderr.decode()
    # Neither a traceback nor "Exception ignored … BrokenPipeError". Stderr may still carry a
    # command's own footer ("1500 jobs (showing 50 …)"): a table smaller than the pipe's
    # buffer is written whole before the reader leaves, so whether the pipe breaks is a race.
    for noise in (b"Traceback", b"Exception", b"BrokenPipe", b"error"):
        assert noise not in result.stderr, result.stderr.decode()


def test_a_failure_keeps_its_exit_code_when_the_reader_leaves(tmp_path: Path) -> None:
    result = _run_into_closed_pipe(["--vault", str(tmp_path / "none"), "log"], 0)
    assert result.returncode == 10 and b"mjvault: error:" in result.stderr
