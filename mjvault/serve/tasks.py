"""Vault-writing work started from the web app: one task at a time, on a worker thread.

A task is a sync from the configured Midjourney source or a push to a remote. It runs with the
vault's write lock (a sync's writer takes it; a push holds it here, so a push never overlaps
a sync of this vault), and tells its progress as events to every listener of an
:class:`EventHub`. A lock held by another process is a refusal that names the holder (the lock
note, :mod:`mjvault.lock`), never an error: the page shows "a sync is running elsewhere".

Stopping (the server shutting down) sets the stop event the sync checks after each job it
stores: the writer then checkpoints and releases the lock, so the next sync resumes from there
and nothing fetched is lost. A push stops at its next upload and resumes the same way.

Memory is bounded per listener whatever the task's length: a listener keeps only the newest
event per subject (one task's progress, the vault's HEAD, its lock), and at most
``LISTENER_LIMIT`` subjects. A slow reader therefore skips intermediate progress, never the
last state.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjvault.errors import Interrupted, KeysChanged, MjvaultError, SourceError, VaultLocked
from mjvault.lock import WriteLock, describe_holder, read_holder
from mjvault.reports import Report

if TYPE_CHECKING:
    from mjvault.config import Config
    from mjvault.remotes.session import Link
    from mjvault.sources.midjourney import ClientSettings
    from mjvault.sync import SyncOptions
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

KINDS = ("sync", "push")
LOCK_COMMAND = "mjvault serve"
LISTENER_LIMIT = 64  # subjects a listener keeps before the oldest is dropped
RECENT_TASKS = 20  # finished tasks /api/tasks still lists
PROGRESS_EVERY = 0.25  # seconds between two progress events of one task


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``name`` is the SSE event type, ``data`` its JSON."""

    name: str
    data: dict[str, Any]

    @property
    def subject(self) -> tuple[str, str]:
        """Events of one subject supersede each other: a task's progress, HEAD, the lock."""
        return self.name, str(self.data.get("task", ""))


class Listener:
    """One reader's pending events, newest state per subject, in the order they last changed.

    ``notify`` is called (from any thread) after each event is offered; an async reader sets
    its wake-up event there, a thread its condition.
    """

    def __init__(self, hub: EventHub, notify: Callable[[], None], limit: int) -> None:
        self._hub = hub
        self._notify = notify
        self._limit = limit
        self._pending: OrderedDict[tuple[str, str], Event] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0  # subjects dropped whole because the reader fell that far behind

    def offer(self, event: Event) -> None:
        with self._lock:
            key = event.subject
            earlier = self._pending.pop(key, None)
            if earlier is not None and event.name == "jobs":
                # The page fetches the newest segment whatever the count: the sum is kept
                # so that a "3 new jobs" notice stays true.
                new = int(earlier.data.get("new") or 0) + int(event.data.get("new") or 0)
                event = Event(event.name, event.data | {"new": new})
            self._pending[key] = event
            while len(self._pending) > self._limit:
                self._pending.popitem(last=False)
                self.dropped += 1
        self._notify()

    def drain(self) -> list[Event]:
        with self._lock:
            events = list(self._pending.values())
            self._pending.clear()
        return events

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """Fans events out to listeners; never blocks the thread that publishes."""

    def __init__(self, limit: int = LISTENER_LIMIT) -> None:
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._limit = limit

    def subscribe(self, notify: Callable[[], None] = lambda: None) -> Listener:
        listener = Listener(self, notify, self._limit)
        with self._lock:
            self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._listeners)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        event = Event(name, data)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.offer(event)


class TaskRefused(MjvaultError):
    """A task cannot start now: ``code`` is ``locked`` (another process holds the vault's
    lock: ``holder`` names it) or ``busy`` (a task of this server is running)."""

    def __init__(
        self, message: str, *, code: str, holder: str | None = None, task: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.holder = holder
        self.task = task


@dataclass
class Task(Report):
    id: str
    kind: str
    remote: str | None = None
    state: str = "running"  # running, done, failed
    done: int = 0
    total: int | None = None
    message: str = "starting"
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    code: str | None = None  # why it failed: locked, interrupted, source, remote, error
    holder: str | None = None  # for code "locked"
    report: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the id is given as "task" and times to the second with a Z (the web
        # page's format), not the convention's isoformat().
        return {
            "task": self.id,
            "kind": self.kind,
            "remote": self.remote,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "started": _iso(self.started),
            "finished": _iso(self.finished) if self.finished else None,
            "code": self.code,
            "holder": self.holder,
            "report": self.report,
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


ClientSettingsFactory = Callable[[], "ClientSettings"]
RemoteConnector = Callable[["Vault", str], AbstractContextManager["Link"]]


def lock_holder(vault_root: Path) -> str | None:
    """Who holds the vault's write lock, as a line, or None when nobody does.

    Probing takes the lock for an instant (a writer starting in that instant is refused as
    by any other writer, and its message names this server): the flock is the only truth,
    the note may be stale.
    """
    probe = WriteLock(vault_root, command=LOCK_COMMAND)
    try:
        probe.acquire()
    except VaultLocked:
        return describe_holder(read_holder(vault_root / "lock"))
    probe.release()
    return None


class TaskRunner:
    """Runs sync and push tasks one at a time for one vault.

    ``open_vault`` gives the task its own :class:`Vault` (opened and closed on the worker
    thread); ``client_settings`` the Midjourney client's settings (the server reads them from
    the configuration when the task starts, so a login done meanwhile counts);
    ``connect_remote(vault, name)`` opens a remote's link. ``config``, when given, gives the
    configuration by which a sync is followed by what follows `mjvault sync` (retention,
    merging small packs).
    ``on_finished`` is told each task that ends (the server's watcher looks at HEAD then).
    """

    def __init__(
        self,
        vault_root: Path,
        open_vault: Callable[[], Vault],
        hub: EventHub,
        *,
        client_settings: ClientSettingsFactory | None = None,
        connect_remote: RemoteConnector | None = None,
        sync_options: Callable[[], SyncOptions] | None = None,
        config: Callable[[], Config] | None = None,
        on_finished: Callable[[Task], None] | None = None,
    ) -> None:
        self.vault_root = vault_root
        self._open_vault = open_vault
        self.hub = hub
        self._client_settings = client_settings
        self._connect_remote = connect_remote
        self._sync_options = sync_options
        self._config = config
        self._on_finished = on_finished
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held from reading a task's state to handing the event to the hub, so events of one
        # task reach listeners in the order its states changed: a task that fails at once
        # must never have its "running" event delivered after its "failed" one.
        self._publishing = threading.Lock()
        self._current: Task | None = None
        self._thread: threading.Thread | None = None
        self._recent: deque[Task] = deque(maxlen=RECENT_TASKS)
        self._ids = itertools.count(1)
        self._started_at = int(time.time())

    # -- what the API reads -----------------------------------------------------------------
    @property
    def current(self) -> Task | None:
        with self._lock:
            return self._current

    def tasks(self) -> list[dict[str, Any]]:
        """The running task (if any) then the recent ones, newest first."""
        with self._lock:
            listed = ([self._current] if self._current else []) + list(reversed(self._recent))
            return [task.to_json() for task in listed]

    # -- starting and stopping --------------------------------------------------------------
    def start(self, kind: str, remote: str | None = None) -> Task:
        """Start a task now or refuse (:class:`TaskRefused`); returns it running."""
        if kind not in KINDS:
            raise MjvaultError(f"unknown task kind {kind!r}: sync or push")
        if kind == "push" and not remote:
            raise MjvaultError("a push needs the name of a remote")
        if kind == "sync" and self._client_settings is None:
            raise MjvaultError("this server has no Midjourney source configured")
        if kind == "push" and self._connect_remote is None:
            raise MjvaultError("this server cannot open remotes")
        with self._lock:
            if self._stop.is_set():
                raise TaskRefused("the server is stopping", code="stopping")
            if self._current is not None:
                raise TaskRefused(
                    f"a {self._current.kind} is running", code="busy", task=self._current.id
                )
            held: WriteLock | None = None
            if kind == "push":
                held = self._take_lock()  # held through the push, handed to the thread
            else:
                holder = lock_holder(self.vault_root)
                if holder is not None:
                    raise TaskRefused(
                        f"the vault is locked by {holder}", code="locked", holder=holder
                    )
            task = Task(id=f"{self._started_at:x}-{next(self._ids)}", kind=kind, remote=remote)
            self._current = task
            self._thread = threading.Thread(
                target=self._run, args=(task, held), name=f"mjvault-task-{task.id}", daemon=True
            )
            self._thread.start()
        self._publish(task)
        return task

    def _take_lock(self) -> WriteLock:
        lock = WriteLock(self.vault_root, command=LOCK_COMMAND)
        try:
            return lock.acquire()
        except VaultLocked:
            holder = describe_holder(read_holder(self.vault_root / "lock"))
            raise TaskRefused(
                f"the vault is locked by {holder}", code="locked", holder=holder
            ) from None

    def close(self, timeout: float = 60.0) -> None:
        """Stop the running task at its next checkpoint and wait for it (the server stops)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the %s task did not stop within %.0f s", self.current, timeout)

    # -- the worker thread --------------------------------------------------------------------
    def _run(self, task: Task, held: WriteLock | None) -> None:
        try:
            vault = self._open_vault()
            try:
                if task.kind == "sync":
                    self._sync(task, vault)
                else:
                    self._push(task, vault)
            finally:
                vault.close()
            task.state = "done"
        except TaskRefused as exc:  # the lock was taken between the check and the writer
            self._failed(task, exc.code, exc.message, exc.holder)
        except VaultLocked:
            holder = describe_holder(read_holder(self.vault_root / "lock"))
            self._failed(task, "locked", f"the vault is locked by {holder}", holder)
        except Interrupted as exc:
            self._failed(task, "interrupted", exc.message)
        except MjvaultError as exc:
            code = _error_code(exc)
            restart = ": restart mjvault serve" if code == "keys_changed" else ""
            self._failed(task, code, exc.message + restart)
        except Exception as exc:  # a task's failure is reported, never kills the server
            log.exception("the %s task failed", task.kind)
            self._failed(task, "error", f"{type(exc).__name__}: {exc}")
        finally:
            if held is not None:
                held.release()
            task.finished = datetime.now(UTC)
            with self._lock:
                self._current = None
                self._recent.append(task)
            self._publish(task)
            if self._on_finished is not None:
                try:
                    self._on_finished(task)
                except Exception:
                    log.exception("after the %s task", task.kind)

    def _failed(self, task: Task, code: str, message: str, holder: str | None = None) -> None:
        task.state = "failed"
        task.code = code
        task.message = message
        task.holder = holder

    def _publish(self, task: Task) -> None:
        with self._publishing:
            data = task.to_json()
            data.pop("report")  # large; /api/tasks has it
            self.hub.publish("task", data)

    def _progress(self, task: Task) -> Callable[[], None]:
        """A throttled publisher: a 10 000-job sync is not 10 000 events per listener."""
        last = [0.0]

        def tell() -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self._publish(task)

        return tell

    def _sync(self, task: Task, vault: Vault) -> None:
        from mjvault.sources.midjourney import MidjourneyClient
        from mjvault.sync import SyncOptions, sync

        assert self._client_settings is not None
        settings = self._client_settings()
        if self._sync_options is not None:
            options = self._sync_options()
        else:
            options = SyncOptions(concurrency=settings.concurrency)
        tell = self._progress(task)
        task.message = "reading the listing"

        def on_job(_job_id: str) -> None:
            task.done += 1
            task.message = f"{task.done} jobs read"
            tell()

        with MidjourneyClient(settings) as client:
            report = sync(vault, client, options, on_job=on_job, should_stop=self._stop.is_set)
        data = report.to_json()
        if self._config is not None and report.snapshot is not None:
            data |= _after_sync(vault, self._config())
        task.report = data
        task.total = task.done
        task.message = (
            f"{report.jobs_new} new jobs, {report.images_downloaded} images"
            if report.snapshot
            else "already up to date"
        )

    def _push(self, task: Task, vault: Vault) -> None:
        from mjvault.remotes.push import push

        assert self._connect_remote is not None and task.remote is not None
        tell = self._progress(task)
        task.message = f"planning the push to {task.remote}"

        def planned(objects: int, size: int) -> None:
            task.total = size
            task.message = f"{objects} objects to send"
            self._publish(task)

        sent_bytes = [0]

        def sent(size: int) -> None:
            if self._stop.is_set():
                raise Interrupted("stopped; push again to resume")
            # Packs are sized as built, not as planned: done never passes the total shown.
            sent_bytes[0] += size
            task.done = min(sent_bytes[0], task.total) if task.total is not None else sent_bytes[0]
            tell()

        with self._connect_remote(vault, task.remote) as link:
            report = push(vault, link, progress=sent, on_plan=planned)
        task.report = report.to_json()
        task.total = task.done = sent_bytes[0]
        task.message = (
            f"sent {report.objects_sent} objects, {report.snapshots_sent} snapshots published"
        )
        if not report.ok:
            task.message += f"; {len(report.problems)} problems"


def _after_sync(vault: Vault, config: Config) -> dict[str, Any]:
    """What `mjvault sync` runs after a sync that wrote a snapshot, with the same functions."""
    from mjvault.integrity.pack import pack_after_write
    from mjvault.integrity.retention import after_sync

    extra: dict[str, Any] = {}
    retention = after_sync(vault, config.retention)
    extra["retention"] = retention.to_json() if retention else None
    packed = pack_after_write(vault, config.pack.auto_after)
    if packed is not None:
        extra["packing"] = packed.to_json()
    return extra


def _error_code(exc: MjvaultError) -> str:
    if isinstance(exc, KeysChanged):
        return "keys_changed"  # the server must be restarted to write again
    return "source" if isinstance(exc, SourceError) else "error"


def iter_events(listener: Listener, wake: threading.Event, timeout: float) -> Iterator[Event]:
    """For a thread that reads a listener: its events as they come, until ``timeout`` passes
    without one (tests and scripts; the web server reads it from its event loop)."""
    while True:
        events = listener.drain()
        if not events:
            if not wake.wait(timeout):
                return
            wake.clear()
            continue
        yield from events
