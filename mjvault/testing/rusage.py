"""Run a command in a child process and learn its own peak RSS and CPU time.

``wait4`` on a child of a process that has grown is not enough: at ``exec`` Linux folds the
old address space's high-water mark into the new program's ``ru_maxrss``, so a child of a
pytest process or a benchmark that has grown to a few hundred MB reports at least that,
whatever it used itself (fork and vfork alike). The command is therefore started by a small
launcher — a fresh interpreter that has not grown — which forks, execs the command, and
writes the command's own ``rusage`` to a JSON file. :func:`resident_kib` tells, in this
process, how much of one mapped file (an LMDB map) is resident.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# argv: result file, data limit in bytes (0: none), then the command. The launcher ignores
# SIGINT once the command runs, so an interrupt sent to the process group stops the command
# (cleanly, as a user's Ctrl-C would) and the launcher still reports its usage.
_LAUNCHER = """
import json, os, resource, signal, sys
result, limit, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if limit:
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
signal.signal(signal.SIGINT, signal.SIG_IGN)
_, status, usage = os.wait4(pid, 0)
with open(result, "w") as out:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss,
               "cpu_seconds": usage.ru_utime + usage.ru_stime}, out)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


@dataclass(frozen=True)
class ChildUsage:
    status: int  # as os.wait4 returns it
    peak_rss_kib: int
    cpu_seconds: float


def launched(command: list[str], result_file: Path, data_limit: int = 0) -> list[str]:
    """The argv that runs ``command`` under the launcher; its usage lands in ``result_file``.
    ``data_limit`` caps the command's heap (RLIMIT_DATA) so a runaway dies early."""
    return [sys.executable, "-c", _LAUNCHER, str(result_file), str(data_limit), *command]


def read_usage(result_file: Path) -> ChildUsage:
    usage = json.loads(result_file.read_text())
    return ChildUsage(usage["status"], usage["maxrss_kib"], usage["cpu_seconds"])


def resident_kib(path: Path) -> int:
    """This process's resident KiB of the file mapped from ``path`` (Linux's smaps): how much
    of an LMDB map a lookup pattern leaves in memory."""
    target, resident, inside = os.path.realpath(path), 0, False
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[-1] == target
            elif inside and head[0] == "Rss:":
                resident += int(head[1])
    return resident
