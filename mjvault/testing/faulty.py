"""A backend that fails on purpose: planned faults per method, around any real backend.

``FaultyBackend(inner)`` forwards every call to ``inner`` until a planned fault matches it.
Faults are planned per method and consumed in order (a queue per method); each says what
happens (an error before or after the real call, bytes cut short or altered, a delay, a
create-only put that loses a race), to which keys, after how many matching calls that
succeed, and how many times. A test ends with :meth:`FaultPlan.assert_all_fired`: a fault
that never fired means the test did not test what it says, and fails it.

:func:`faults_on_remotes` puts a plan around every backend the remote session opens (push,
pull, clone, ``verify --remote`` all open theirs through
:func:`mjvault.remotes.session.open_storage`), so whole commands run over real storage with
the faults between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, get_args

from mjvault.remotes.backend import Backend, KeyMeta, RemoteError
from mjvault.remotes.config import RemoteSpec

Method = Literal[
    "list",
    "list_meta",
    "get",
    "download",
    "get_tail",
    "get_range",
    "put",
    "upload_file",
    "exists",
    "delete",
    "delete_many",
]
METHODS: tuple[Method, ...] = get_args(Method)
#: What a fault does:
#: ``error``: raise without calling the storage; ``error_after``: call it, then raise (the
#: write landed but the caller hears it failed); ``truncate``: bytes read come back cut to
#: half (a listing loses its second half); ``corrupt``: one byte read comes back flipped (the
#: middle one, or the one at ``offset``, negative from the end);
#: ``delay``: sleep ``seconds``, then call the storage; ``lose_race``: a create-only put finds
#: the key taken (``data``, or the caller's own bytes, are written first) and returns False.
Action = Literal["error", "error_after", "truncate", "corrupt", "delay", "lose_race"]
READS = ("get", "download", "get_tail", "get_range")
ALLOWED: dict[Action, tuple[str, ...]] = {
    "error": METHODS,
    "error_after": METHODS,
    "delay": METHODS,
    "truncate": (*READS, "list"),
    "corrupt": READS,
    "lose_race": ("put",),
}


@dataclass
class Fault:
    """One planned fault. ``times=None`` fires on every matching call once ``after`` passed."""

    method: Method
    action: Action
    #: Keys it applies to: a prefix of the key (``list``: of the listed prefix), or a test.
    key: str | Callable[[str], bool] | None = None
    #: Matching calls that succeed before it first fires.
    after: int = 0
    times: int | None = 1
    error: Exception | None = None
    seconds: float = 0.0
    data: bytes | None = None
    offset: int | None = None
    fired: int = 0
    #: The keys it fired on, in order.
    fired_on: list[str] = field(default_factory=list)

    def matches(self, key: str) -> bool:
        if self.key is None:
            return True
        if isinstance(self.key, str):
            return key.startswith(self.key)
        return self.key(key)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def describe(self) -> str:
        where = f" on {self.key!r}" if isinstance(self.key, str) else ""
        times = "every time" if self.times is None else f"{self.times}x"
        return (
            f"{self.method} {self.action}{where} after {self.after} ({times}, fired {self.fired})"
        )

    def raised(self, key: str) -> Exception:
        return self.error or RemoteError(f"planned fault: {self.method} {key} failed")


class FaultPlan:
    """Queues of planned faults by method, shared by every :class:`FaultyBackend` made with it
    (a clone opens its remote twice; the plan spans both). Thread-safe: push and pull call
    their backend from a pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[Fault]] = {m: [] for m in METHODS}
        self._planned: list[Fault] = []

    def plan(
        self,
        method: Method,
        action: Action,
        *,
        key: str | Callable[[str], bool] | None = None,
        after: int = 0,
        times: int | None = 1,
        error: Exception | None = None,
        seconds: float = 0.0,
        data: bytes | None = None,
        offset: int | None = None,
    ) -> Fault:
        if method not in METHODS:
            raise ValueError(f"no backend method {method!r}")
        if method not in ALLOWED[action]:
            raise ValueError(f"{action} does not apply to {method}")
        fault = Fault(method, action, key, after, times, error, seconds, data, offset)
        with self._lock:
            self._queues[method].append(fault)
            self._planned.append(fault)
        return fault

    def take(self, method: str, key: str) -> Fault | None:
        """The fault this call meets, if any: the first unspent one in the method's queue
        that matches ``key`` (each matching call uses up one of its ``after``)."""
        with self._lock:
            queue = self._queues[method]
            for fault in queue:
                if not fault.matches(key):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.fired += 1
                fault.fired_on.append(key)
                if fault.spent:
                    queue.remove(fault)
                return fault
            return None

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._planned)

    def unfired(self) -> list[Fault]:
        """Faults that did not fire as often as planned (``times=None``: not once)."""
        with self._lock:
            return [f for f in self._planned if (f.fired == 0 if f.times is None else not f.spent)]

    def assert_all_fired(self) -> None:
        missed = self.unfired()
        if missed:
            raise AssertionError(
                "planned faults that never fired: " + "; ".join(f.describe() for f in missed)
            )


class FaultyBackend(Backend):
    """``inner`` with the faults of ``plan`` (a new plan of its own when not given)."""

    def __init__(self, inner: Backend, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.faults = plan or FaultPlan()

    def plan(self, method: Method, action: Action, **options: object) -> Fault:
        """Plan a fault (see :meth:`FaultPlan.plan`)."""
        return self.faults.plan(method, action, **options)  # type: ignore[arg-type]

    def assert_all_fired(self) -> None:
        self.faults.assert_all_fired()

    def describe(self) -> str:
        return self.inner.describe()

    def _meet(self, method: str, key: str) -> Fault | None:
        """The fault for this call; raises or sleeps for the ones that act before the call."""
        fault = self.faults.take(method, key)
        if fault is None:
            return None
        if fault.action == "error":
            raise fault.raised(key)
        if fault.action == "delay":
            time.sleep(fault.seconds)
            return None
        return fault

    @staticmethod
    def _spoil(fault: Fault | None, data: bytes) -> bytes:
        if fault is None or fault.action == "error_after":
            return data
        if fault.action == "truncate":
            return data[: len(data) // 2]
        if fault.action == "corrupt" and data:
            at = len(data) // 2 if fault.offset is None else fault.offset % len(data)
            return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
        return data

    def _finish(self, fault: Fault | None, key: str) -> None:
        if fault is not None and fault.action == "error_after":
            raise fault.raised(key)

    def list(self, prefix: str) -> Iterator[str]:
        fault = self._meet("list", prefix)
        keys = list(self.inner.list(prefix))
        self._finish(fault, prefix)
        if fault is not None and fault.action == "truncate":
            keys = keys[: len(keys) // 2]
        return iter(keys)

    def list_meta(self, prefix: str) -> Iterator[KeyMeta]:
        fault = self._meet("list_meta", prefix)
        found = list(self.inner.list_meta(prefix))
        self._finish(fault, prefix)
        if fault is not None and fault.action == "truncate":
            found = found[: len(found) // 2]
        return iter(found)

    def get(self, key: str) -> bytes:
        fault = self._meet("get", key)
        data = self.inner.get(key)
        self._finish(fault, key)
        return self._spoil(fault, data)

    def download(self, key: str, out: BinaryIO) -> int:
        fault = self._meet("download", key)
        if fault is None or fault.action == "error_after":
            size = self.inner.download(key, out)
            self._finish(fault, key)
            return size
        # A spoiled stream: the blob is read whole here (fault tests use small ones).
        data = self._spoil(fault, self.inner.get(key))
        out.write(data)
        return len(data)

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        fault = self._meet("get_tail", key)
        tail, size = self.inner.get_tail(key, length)
        self._finish(fault, key)
        return self._spoil(fault, tail), size

    def get_range(self, key: str, start: int, end: int) -> bytes:
        fault = self._meet("get_range", key)
        data = self.inner.get_range(key, start, end)
        self._finish(fault, key)
        return self._spoil(fault, data)

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        fault = self._meet("put", key)
        if fault is not None and fault.action == "lose_race":
            # Another writer got there first: its bytes are in place before ours arrive.
            self.inner.put(key, data if fault.data is None else fault.data)
            if create_only:
                return False
        stored = self.inner.put(key, data, create_only=create_only)
        self._finish(fault, key)
        return stored

    def upload_file(
        self, key: str, source: Path | BinaryIO, size: int, *, create_only: bool = False
    ) -> bool:
        fault = self._meet("upload_file", key)
        stored = self.inner.upload_file(key, source, size, create_only=create_only)
        self._finish(fault, key)
        return stored

    def exists(self, key: str) -> bool:
        fault = self._meet("exists", key)
        found = self.inner.exists(key)
        self._finish(fault, key)
        return found

    def delete(self, key: str) -> None:
        fault = self._meet("delete", key)
        self.inner.delete(key)
        self._finish(fault, key)

    def delete_many(self, keys: Sequence[str]) -> None:
        fault = self._meet("delete_many", keys[0] if keys else "")
        self.inner.delete_many(keys)
        self._finish(fault, keys[0] if keys else "")

    def sweep(self) -> None:
        self.inner.sweep()

    def close(self) -> None:
        self.inner.close()


@contextmanager
def faults_on_remotes(plan: FaultPlan | None = None) -> Iterator[FaultPlan]:
    """Every backend the remote session opens meanwhile is wrapped with ``plan``'s faults.

    When the block ends without an error, every planned fault must have fired.
    """
    from mjvault.remotes import session

    plan = plan or FaultPlan()
    original = session.open_storage

    def wrapped(spec: RemoteSpec) -> Backend:
        return FaultyBackend(original(spec), plan)

    session.open_storage = wrapped
    try:
        yield plan
    finally:
        session.open_storage = original
    plan.assert_all_fired()
