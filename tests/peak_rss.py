"""Run a command in a child process and learn its own peak RSS (see mjvault.testing.rusage)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mjvault.testing.rusage import launched, read_usage


@dataclass
class Measured:
    returncode: int  # negative: killed by that signal, as subprocess reports it
    stdout: bytes
    stderr: bytes
    peak_rss_mb: float


class TimedOut(Exception):
    pass


def run_measured(
    command: list[str],
    *,
    workdir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    data_limit: int = 0,
) -> Measured:
    """``command``'s exit code, output and peak RSS in MB; ``data_limit`` caps its heap
    (RLIMIT_DATA) so a runaway child dies early instead of eating the machine's memory."""
    # A measured child runs without coverage's tracer (COVERAGE_PROCESS_CONFIG, under
    # `--cov`): the memory and time it costs are not the command's.
    env = {
        k: v
        for k, v in (os.environ if env is None else env).items()
        if not k.startswith("COVERAGE_")
    }
    result = workdir / "rusage.json"
    result.unlink(missing_ok=True)
    out, err = workdir / "stdout", workdir / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        launcher = subprocess.Popen(
            launched(command, result, data_limit),
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,  # one process group: a timeout kills the command too
        )
        try:
            launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            raise TimedOut(f"{' '.join(command)} still ran after {timeout} s") from None
    usage = read_usage(result)
    return Measured(
        os.waitstatus_to_exitcode(usage.status),
        out.read_bytes(),
        err.read_bytes(),
        usage.peak_rss_kib / 1024,
    )
