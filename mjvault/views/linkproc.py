"""Who makes a checkout's new files: a worker thread, or for a big checkout a process.

A checkout names its files (templates, collisions, the view's file list) in Python, and
makes them with one or two system calls each. In one process the two take turns: the thread
making links needs the interpreter lock back after each call of a few microseconds, and
waits for it while the naming runs, so a checkout of 100k images cost about the sum of both.
A checkout of at least :data:`PROCESS_MIN_IMAGES` images therefore has its files made by a
process of its own, the *link process*: this module run as a script
(``python -I -S .../linkproc.py``, no site packages, nothing from the environment), fed
batches of (object file, view path) pairs through a pipe while the checkout names the next
batch. It runs the very makers a thread would (:mod:`mjvault.views.links`), so the view is
the same either way; smaller checkouts keep the thread (starting a process costs ~50 ms).

Protocol (requests on the process's stdin, answers on its stdout, integers little-endian):

* a request is ``kind`` (u8), ``length`` (u32) and ``length`` bytes. Kind 0 opens the
  conversation: the payload is the vault's resolved path (symlinks are made relative to it).
  Kinds 1, 2 and 3 (symlink, hard link, copy) carry a batch: the pairs' paths as UTF-8
  (undecodable bytes as :func:`os.fsencode` has them), NUL after each, object then view path;
* each batch gets one answer: ``stats`` and ``failures`` lengths (u32 each), then ``stats``
  (a native int64 (size, mtime_ns) per pair, for hard links and copies) and ``failures``
  (JSON: ``[position, what, ...]`` per pair not made, and ``untried``: ``[start, stop]``
  ranges of pairs never attempted after a fatal error);
* end of input ends the process. It ignores SIGINT and runs in its own session, so Ctrl-C
  reaches the checkout alone, which stops cleanly: it takes the answer to the batch in hand
  (its files are recorded), then closes the pipe. If the checkout dies, the kernel ends the
  link process too (``PR_SET_PDEATHSIG``).

A link process that dies (killed, out of memory) fails the checkout with one line; the files
it made and did not report are taken as the view's own by the next run (they are exactly
what it would make).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import itertools
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Protocol

if __name__ == "__main__":  # run as the link process: -I leaves the package off the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mjvault.errors import MjvaultError, UsageError  # noqa: E402
from mjvault.views.links import (  # noqa: E402
    MAKERS,
    LinkKind,
    LinkTargets,
    Made,
    NameTaken,
    ObjectMissing,
)

# Below this many new images a checkout makes its files in a thread of its own.
PROCESS_MIN_IMAGES = 5_000
_OPEN = 0
_KINDS = {LinkKind.SYMLINK: 1, LinkKind.HARDLINK: 2, LinkKind.COPY: 3}
_BY_CODE = {code: kind for kind, code in _KINDS.items()}
_REQUEST = struct.Struct("<BI")
_ANSWER = struct.Struct("<II")
# A batch's request in one write where the system allows (Linux, up to its pipe-max-size).
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PR_SET_PDEATHSIG = 1
Pairs = Sequence[tuple[str, str]]


class LinkProcessDied(MjvaultError):
    """The link process ended before answering (killed, or out of memory)."""


class Linker(Protocol):
    """Makes batches of pairs, one batch at a time: :meth:`submit`, then :meth:`outcome`."""

    def submit(self, kind: LinkKind, pairs: Pairs) -> None: ...
    def outcome(self) -> Made: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class ThreadLinker:
    """Files made by threads of this process: one for links, ``copiers`` for copies (a copy
    is several system calls, each of which releases the interpreter lock)."""

    def __init__(self, objects_root: str, copiers: int) -> None:
        self.targets = LinkTargets(objects_root)
        self.copiers = max(1, copiers)
        self.pool = ThreadPoolExecutor(self.copiers, thread_name_prefix="mjvault-view")
        self.pending: list[tuple[int, Future[Made]]] = []

    def submit(self, kind: LinkKind, pairs: Pairs) -> None:
        make = MAKERS[kind]
        share = len(pairs) if kind is not LinkKind.COPY else -(-len(pairs) // self.copiers)
        self.pending = [
            (start, self.pool.submit(make, pairs[start : start + share], self.targets))
            for start in range(0, len(pairs), max(1, share))
        ]

    def outcome(self) -> Made:
        pending, self.pending = self.pending, []
        made = Made()
        for start, future in pending:  # every share, then settle: all of them are on disk
            made.extend(future.result(), start)
        return made

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        self.close()  # a batch is a few ms of system calls: let it end


class ProcessLinker:
    """Files made by the link process (see the module docstring)."""

    def __init__(self, objects_root: str) -> None:
        self.waiting = 0
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C at the terminal is the checkout's alone
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests: IO[bytes] = self.process.stdin
        self.answers: IO[bytes] = self.process.stdout
        with contextlib.suppress(OSError):  # a bigger pipe: a batch in one write, one wakeup
            fcntl.fcntl(self.requests.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._send(_OPEN, objects_root.encode("utf-8", "surrogateescape"))

    def _send(self, code: int, payload: bytes) -> None:
        try:
            self.requests.write(_REQUEST.pack(code, len(payload)))
            self.requests.write(payload)
            self.requests.flush()
        except BrokenPipeError:
            raise self._died() from None

    def submit(self, kind: LinkKind, pairs: Pairs) -> None:
        text = "\0".join(itertools.chain.from_iterable(pairs)) + "\0"
        self._send(_KINDS[kind], text.encode("utf-8", "surrogateescape"))
        self.waiting = len(pairs)

    def outcome(self) -> Made:
        if not self.waiting:
            return Made()
        self.waiting = 0
        header = self.answers.read(_ANSWER.size)
        if len(header) < _ANSWER.size:
            raise self._died()
        stats_size, failures_size = _ANSWER.unpack(header)
        body = self.answers.read(stats_size + failures_size)
        if len(body) < stats_size + failures_size:
            raise self._died()
        stats = memoryview(body[:stats_size]).cast("q").tolist() if stats_size else []
        return _decode(stats, body[stats_size:])

    def _died(self) -> LinkProcessDied:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.abort()
            code = self.process.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        last = b""
        if self.process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                lines = self.process.stderr.read().strip().splitlines()
                last = lines[-1] if lines else b""
        said = f": {last.decode('utf-8', 'replace')}" if last else ""
        return LinkProcessDied(
            f"the checkout's link process stopped ({how}{said})",
            hint="rerun `mjvault checkout`: the files it made are kept",
        )

    def close(self) -> None:
        """End of input ends the process; wait for it (it has answered every batch)."""
        with contextlib.suppress(OSError):
            self.requests.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.abort()
        self._close_pipes()

    def abort(self) -> None:
        """Stop at once (the checkout is failing): whatever it makes now goes unrecorded."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def start_linker(objects_root: str, copiers: int, images: int) -> Linker:
    """The link process for ``images`` new images from :data:`PROCESS_MIN_IMAGES` on (where
    this interpreter can be started again), else threads."""
    # A frozen build (the standalone executable) has no interpreter to run this module with:
    # its sys.executable is mjvault itself.
    frozen = getattr(sys, "frozen", False)
    if images >= PROCESS_MIN_IMAGES and sys.executable and os.name == "posix" and not frozen:
        try:
            return ProcessLinker(objects_root)
        except OSError:  # no process to be had (a limit on processes, memory): threads do
            pass
    return ThreadLinker(objects_root, copiers)


# -- failures across the pipe --------------------------------------------------------------------


def _encode_failure(position: int, error: BaseException) -> list[Any]:
    if isinstance(error, ObjectMissing):
        return [position, "missing", str(error.args[0])]
    if isinstance(error, NameTaken):
        return [position, "taken", error.message]
    if isinstance(error, UsageError):
        return [position, "usage", error.message, error.hint]
    if isinstance(error, OSError):
        names = [
            os.fsdecode(n) if n is not None else None for n in (error.filename, error.filename2)
        ]
        return [position, "os", error.errno, error.strerror or str(error), *names]
    return [position, "error", str(error)]


def _decode_failure(item: list[Any]) -> tuple[int, BaseException]:
    position, what, *args = item
    error: BaseException
    if what == "missing":
        error = ObjectMissing(args[0])
    elif what == "taken":
        error = NameTaken(args[0])
    elif what == "usage":
        error = UsageError(args[0], hint=args[1])
    elif what == "os":
        code, message, filename, filename2 = args
        # OSError(errno, ...) gives the subclass the errno calls for (FileExistsError …).
        error = OSError(code, message, filename, None, filename2)
    else:
        error = MjvaultError(str(args[0]))
    return int(position), error


def _encode(made: Made) -> bytes:
    failures = b""
    if made.failures or made.untried:
        failures = json.dumps(
            {
                "failures": [_encode_failure(at, error) for at, error in made.failures],
                "untried": [[r.start, r.stop] for r in made.untried],
            }
        ).encode()
    stats = array.array("q", made.stats).tobytes()
    return _ANSWER.pack(len(stats), len(failures)) + stats + failures


def _decode(stats: list[int], failures: bytes) -> Made:
    made = Made(stats=stats)
    if failures:
        told = json.loads(failures)
        made.failures = [_decode_failure(item) for item in told["failures"]]
        made.untried = [range(start, stop) for start, stop in told["untried"]]
    return made


# -- the link process itself ---------------------------------------------------------------------


def serve(requests: IO[bytes], answers: IO[bytes]) -> int:
    """Answer batches until end of input (the checkout closed the pipe, or died)."""
    targets: LinkTargets | None = None
    while True:
        header = requests.read(_REQUEST.size)
        if len(header) < _REQUEST.size:
            return 0
        code, length = _REQUEST.unpack(header)
        payload = requests.read(length)
        if len(payload) < length:
            return 0
        text = payload.decode("utf-8", "surrogateescape")
        if code == _OPEN:
            targets = LinkTargets(text)
            continue
        if targets is None or code not in _BY_CODE:
            raise ValueError(f"unexpected request {code}")
        fields = text.split("\0")
        pairs = list(zip(fields[0:-1:2], fields[1::2], strict=True))
        made = MAKERS[_BY_CODE[code]](pairs, targets)
        try:
            answers.write(_encode(made))
            answers.flush()
        except BrokenPipeError:
            return 0  # the checkout is gone


def _die_with_parent(parent: int) -> None:
    """Be killed when the checkout dies: a link process must not go on making files after it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        raise SystemExit(0)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the checkout's to handle
    _die_with_parent(int(argv[1]))
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
