"""Run a command in a child process and learn its own peak RSS.

``wait4`` on a child of the test process is not enough: at ``exec`` Linux folds the old
address space's high-water mark into the new program's ``ru_maxrss``, so a child of a pytest
process that has grown to a few hundred MB reports at least that, whatever it used itself
(fork and vfork alike). The command is therefore started by a small launcher — a fresh
interpreter that has not grown — which forks, execs the command, and hands back the
command's own ``rusage``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# argv: result file, data limit in bytes (0: none), then the command.
_LAUNCHER = """
import json, os, resource, sys
result, limit, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if limit:
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(result, "w") as out:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss}, out)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


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
    result = workdir / "rusage.json"
    result.unlink(missing_ok=True)
    out, err = workdir / "stdout", workdir / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(result), str(data_limit), *command],
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
    usage = json.loads(result.read_text())
    return Measured(
        os.waitstatus_to_exitcode(usage["status"]),
        out.read_bytes(),
        err.read_bytes(),
        usage["maxrss_kib"] / 1024,
    )
