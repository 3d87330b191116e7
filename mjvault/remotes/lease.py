"""Leases on a remote (docs/FORMAT.md §11.7): a prune never runs beside another prune or a push.

A remote has no lock server, only blobs, so a lease is a small JSON object whose presence says
"this run is working here until ``expires``":

* a prune (``forget --remote``, ``gc --remote``) takes ``locks/prune`` with a create-only write
  — of two prunes, exactly one write succeeds;
* each push takes ``locks/push-<random>`` (a key of its own: pushes run beside each other) and
  removes it at the end.

Each side writes its own lease *and then* lists the other's. Of a push and a prune starting
together at least one therefore sees the other: if the push's read of ``locks/prune`` came
before the prune's lease existed, the prune's listing of ``locks/push-`` came after it, hence
after the push's own lease was written. A prune that sees a live push refuses; a push that
sees a live prune waits (bounded) or refuses.

Leases are renewed by a thread while their run lives (rewritten with a later ``expires``), so a
run killed with ``kill -9`` leaves one that expires within :data:`LEASE_SECONDS`. An expired
prune lease is broken by the next prune through a create-only ``locks/broken-<lease id>``, so of
two prunes finding the same dead lease only one goes on; an expired push lease is deleted by
the next prune. A push finding an expired prune lease knows a prune was cut short mid-sweep
(the subtree-present-means-complete rule of §11.4 may not hold for the objects it left), so it
trusts nothing the remote holds and walks every snapshot whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from mjvault.remotes.backend import Backend, RemoteError, RemoteNotFound
from mjvault.reports import Report

LOCKS_PREFIX = "locks/"
PRUNE_KEY = LOCKS_PREFIX + "prune"
PUSH_PREFIX = LOCKS_PREFIX + "push-"
BROKEN_PREFIX = LOCKS_PREFIX + "broken-"
# How long a lease holds without renewal: long enough for clocks a few minutes apart.
LEASE_SECONDS = 600.0
# Renewed this often (three chances before it lapses).
RENEW_SECONDS = LEASE_SECONDS / 3
# A break marker is kept this long, so a breaker that read the dead lease late finds it.
BROKEN_KEEP_SECONDS = 24 * 3600
WAIT_POLL_SECONDS = 2.0


class RemoteBusy(RemoteError):
    """Another run holds the remote (a prune, or a push during a prune)."""


@dataclass(frozen=True)
class LeaseInfo(Report):
    key: str
    host: str
    pid: int
    started: str
    expires: float
    id: str
    #: A prune that failed mid-sweep marks its lease so: pushes then trust nothing present.
    interrupted: bool = False

    def live(self, now: float | None = None) -> bool:
        """Held by a run that may still be working: not marked, not expired, and not of a
        process on this host that is gone (a ``kill -9`` is then seen at once)."""
        if self.interrupted or (time.time() if now is None else now) >= self.expires:
            return False
        return not (self.host == socket.gethostname() and not _pid_alive(self.pid))

    def who(self) -> str:
        return f"{self.host} (pid {self.pid}, since {self.started})"

    def to_json(self) -> dict[str, object]:
        # Its own shape: the expiry as ISO 8601 to the second, the lease's key left out.
        return {
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "expires": datetime.fromtimestamp(self.expires, UTC).isoformat(timespec="seconds"),
            "id": self.id,
            "interrupted": self.interrupted,
        }


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def read_lease(backend: Backend, key: str) -> LeaseInfo | None:
    """The lease at ``key``; None when absent. An unreadable one counts as expired."""
    try:
        raw = backend.get(key)
    except RemoteNotFound:
        return None
    try:
        doc = json.loads(raw)
        expires = datetime.fromisoformat(doc["expires"]).timestamp()
        return LeaseInfo(
            key,
            str(doc["host"]),
            int(doc["pid"]),
            str(doc["started"]),
            expires,
            str(doc["id"]),
            bool(doc.get("interrupted", False)),
        )
    except (ValueError, KeyError, TypeError):
        return LeaseInfo(key, "?", 0, "?", 0.0, "?")


def push_leases(backend: Backend) -> Iterator[LeaseInfo]:
    # Listed by the folder: object stores reached through obstore match whole path parts.
    for key in backend.list(LOCKS_PREFIX):
        if not key.startswith(PUSH_PREFIX):
            continue
        found = read_lease(backend, key)
        if found is not None:
            yield found


class Lease:
    """A lease this process holds; renewed by a thread until :meth:`release`."""

    def __init__(self, backend: Backend, key: str) -> None:
        self.backend = backend
        self.key = key
        self.id = secrets.token_hex(8)
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.lost: str | None = None
        #: Set when this lease replaced a prune's that had expired or was marked: that
        #: prune may have stopped mid-sweep, which this run must not forget on leaving.
        self.inherited_cut_short = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self, *, interrupted: bool = False) -> bytes:
        expires = time.time() + (0 if interrupted else LEASE_SECONDS)
        info = LeaseInfo(
            self.key,
            socket.gethostname(),
            os.getpid(),
            self.started,
            expires,
            self.id,
            interrupted,
        )
        return json.dumps(info.to_json(), indent=1).encode("utf-8")

    def create(self) -> bool:
        """Write the lease, create-only: False when the key is taken."""
        return self.backend.put(self.key, self._doc(), create_only=True)

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self.renew()
            except RemoteError:
                continue  # tried again next round; three rounds before it lapses

    def renew(self) -> None:
        """Push ``expires`` on, unless the lease is no longer ours (then note it lost)."""
        current = read_lease(self.backend, self.key)
        if current is None or current.id != self.id:
            self.lost = f"the lease {self.key} was taken over"
            self._stop.set()
            return
        self.backend.put(self.key, self._doc())

    def check(self) -> None:
        """Raise if the lease was lost (broken by another run that thought this one dead)."""
        if self.lost is not None:
            raise RemoteBusy(f"{self.backend.describe()}: {self.lost}; stopped")

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def release(self) -> None:
        self._stop_renewing()
        if self.lost is None:
            self.backend.delete(self.key)

    def leave(self, *, cut_short: bool, cleared: bool = False) -> None:
        """Release, or mark when the remote may hold a cut-short sweep's leftovers: this run's,
        or one before it that this run has not ``cleared`` (a whole sweep leaving nothing
        unmarked clears them)."""
        if cut_short or (self.inherited_cut_short and not cleared):
            self.mark_interrupted()
        else:
            self.release()

    def mark_interrupted(self) -> None:
        """Leave the lease, expired at once and marked: the work stopped half-way."""
        self._stop_renewing()
        if self.lost is None:
            # Best effort: a remote that has just failed may refuse this too; the lease then
            # lapses when it expires, or at once for a process on this host that is gone.
            with contextlib.suppress(RemoteError):
                self.backend.put(self.key, self._doc(interrupted=True))


def take_prune_lease(backend: Backend) -> Lease:
    """``locks/prune`` for this process, or :class:`RemoteBusy` with one line saying why not."""
    where = backend.describe()
    lease = Lease(backend, PRUNE_KEY)
    if not lease.create():
        held = read_lease(backend, PRUNE_KEY)
        if held is not None and held.live():
            raise RemoteBusy(f"{where} is being pruned by {held.who()}")
        if held is not None:
            _break(backend, held)
            lease.inherited_cut_short = True
        if not lease.create():
            raise RemoteBusy(f"{where}: another prune is starting")
    # Our lease is written: now any push that starts can see it, and any that started
    # before shows its own lease here.
    try:
        for push in push_leases(backend):
            if push.live():
                raise RemoteBusy(f"{where} has a push in flight from {push.who()}")
            backend.delete(push.key)  # a killed push's; its objects are left to the grace period
    except BaseException:
        backend.delete(PRUNE_KEY)
        raise
    lease.start_renewing()
    _forget_old_breaks(backend)
    return lease


def _break(backend: Backend, dead: LeaseInfo) -> None:
    """Remove a dead prune lease, only if no other prune is breaking the same one."""
    marker = BROKEN_PREFIX + (dead.id if dead.id != "?" else secrets.token_hex(8))
    if not backend.put(marker, b"", create_only=True):
        raise RemoteBusy(f"{backend.describe()}: another prune is starting")
    backend.delete(PRUNE_KEY)


def _forget_old_breaks(backend: Backend) -> None:
    cutoff = time.time() - BROKEN_KEEP_SECONDS
    try:
        for meta in backend.list_meta(LOCKS_PREFIX):
            if meta.key.startswith(BROKEN_PREFIX) and meta.mtime < cutoff:
                backend.delete(meta.key)
    except RemoteError:
        return  # tidying only


@dataclass
class PushLeaseState:
    #: A prune was cut short on this remote: the push must walk every snapshot whole.
    prune_interrupted: bool = False


def take_push_lease(
    backend: Backend,
    *,
    wait: float = 0.0,
    on_wait: object = None,
) -> tuple[Lease, PushLeaseState]:
    """``locks/push-<random>`` for this push. While a live prune holds the remote, poll for
    up to ``wait`` seconds (``on_wait(message)`` told once), then :class:`RemoteBusy`."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        lease = Lease(backend, PUSH_PREFIX + secrets.token_hex(8))
        lease.create()
        prune = read_lease(backend, PRUNE_KEY)
        if prune is None or not prune.live():
            lease.start_renewing()
            return lease, PushLeaseState(prune_interrupted=prune is not None)
        backend.delete(lease.key)
        message = f"{backend.describe()} is being pruned by {prune.who()}"
        if time.monotonic() >= deadline:
            raise RemoteBusy(message, hint="try again when it ends")
        if not told and callable(on_wait):
            on_wait(message + "; waiting")
            told = True
        time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
