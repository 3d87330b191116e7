"""Live routes: ``/api/tasks`` (start a sync or a push, list them) and ``/api/events`` (SSE).

The events stream tells the page what changes while it is open: a task's progress (``task``),
a new HEAD whoever wrote it (``jobs``: the page then fetches the newest segment), and the
vault's lock (``lock``: a sync started by another process shows as running, not as an error).
A watcher thread notices what other processes do by polling two files every second: the
``refs/HEAD`` file (replaced atomically by each snapshot, so its inode and time change) and the
``lock`` file (its note is written when a writer takes the lock and emptied when it lets go).
The watcher never takes the lock itself: a writer starting in that instant would be refused.

Each stream reads its own listener (tasks.py), which keeps the newest event per subject: a
reader that is slow or gone costs a few events of memory, never a growing queue. A comment
line goes out every ``PING_SECONDS`` so proxies keep the connection and a closed one is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from mjvault.errors import MjvaultError
from mjvault.lock import describe_holder, is_brief, read_holder
from mjvault.serve.security import BadRequest, check_name
from mjvault.serve.tasks import KINDS, EventHub, Task, TaskRefused, TaskRunner

if TYPE_CHECKING:
    from mjvault.config import Config
    from mjvault.remotes.session import Link
    from mjvault.serve.settings import ServeState
    from mjvault.snapshots import Snapshot
    from mjvault.sources.midjourney import ClientSettings
    from mjvault.sync import SyncOptions
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

PING_SECONDS = 15.0
WATCH_SECONDS = 1.0
MAX_BODY = 64 * 1024  # a task request is a few words


# -- the watcher ------------------------------------------------------------------------------
def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def lock_state(vault_root: Path) -> dict[str, Any]:
    """``{"held", "holder", "ours"}`` read from the lock's note, without taking the lock.

    A writer leaves its note while it holds the lock and empties it when it lets go; a note
    whose process on this machine is gone was left by a writer that died: not held.
    """
    import socket

    holder = read_holder(vault_root / "lock")
    if not holder or is_brief(holder):
        # A brief holder (this server keeping a thumbnail) is gone in milliseconds, and a
        # writer starting meanwhile waits for it: nothing for the page to show.
        return {"held": False, "holder": None, "ours": False}
    pid = holder.get("pid")
    here = holder.get("host") == socket.gethostname()
    if here and isinstance(pid, int) and not isinstance(pid, bool) and not _pid_alive(pid):
        return {"held": False, "holder": None, "ours": False}
    return {"held": True, "holder": describe_holder(holder), "ours": here and pid == os.getpid()}


class VaultWatcher:
    """Publishes ``jobs`` when HEAD moves and ``lock`` when the lock changes hands."""

    def __init__(
        self,
        vault_root: Path,
        hub: EventHub,
        read_head: Callable[[], Snapshot | None],
        interval: float = WATCH_SECONDS,
    ) -> None:
        self.vault_root = vault_root
        self.hub = hub
        self._read_head = read_head
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head_stamp = _stamp(vault_root / "refs" / "HEAD")
        head = self._safe_head()
        self.head_id = head.id if head else None
        self._head_jobs = _jobs_of(head) or 0
        self._lock_stamp = _stamp(vault_root / "lock")
        self.lock = lock_state(vault_root)

    def start(self) -> VaultWatcher:
        self._thread = threading.Thread(target=self._loop, name="mjvault-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # a damaged ref is verify's to report; the watcher goes on
                log.debug("watching the vault failed", exc_info=True)

    def _safe_head(self) -> Snapshot | None:
        try:
            return self._read_head()
        except MjvaultError:
            return None

    def check(self) -> None:
        """Look now (also called when a task of this server ends)."""
        with self._lock:
            stamp = _stamp(self.vault_root / "refs" / "HEAD")
            if stamp != self._head_stamp:
                self._head_stamp = stamp
                head = self._safe_head()
                head_id = head.id if head else None
                if head_id != self.head_id:
                    jobs = _jobs_of(head)
                    new = max(0, jobs - self._head_jobs) if jobs is not None else 0
                    self.head_id = head_id
                    if jobs is not None:
                        self._head_jobs = jobs
                    self.hub.publish("jobs", {"new": new, "head": head_id})
            stamp = _stamp(self.vault_root / "lock")
            held = self.lock
            if stamp != self._lock_stamp or held["held"]:
                # A holder that died changes no file: while held, its process is asked again.
                self._lock_stamp = stamp
                state = lock_state(self.vault_root)
                if state != held:
                    self.lock = state
                    self.hub.publish("lock", state)


def _jobs_of(snapshot: Snapshot | None) -> int | None:
    """The snapshot's job count; None when its manifest does not say (then unknown)."""
    if snapshot is None:
        return 0
    jobs = snapshot.stats.get("jobs")
    return jobs if isinstance(jobs, int) and not isinstance(jobs, bool) else None


# -- wiring -----------------------------------------------------------------------------------
class Live:
    """What the live routes share: the hub, the task runner and the watcher."""

    def __init__(self, state: ServeState, runner: TaskRunner, watcher: VaultWatcher) -> None:
        self.state = state
        self.hub = runner.hub
        self.runner = runner
        self.watcher = watcher
        self._wakers: set[Callable[[], None]] = set()
        self._wakers_lock = threading.Lock()

    def add_waker(self, wake: Callable[[], None]) -> None:
        with self._wakers_lock:
            self._wakers.add(wake)

    def remove_waker(self, wake: Callable[[], None]) -> None:
        with self._wakers_lock:
            self._wakers.discard(wake)

    def end_streams(self) -> None:
        """Wake every open event stream: ``state.stopping`` is set, so each one ends."""
        with self._wakers_lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()


def _open_task_vault(state: ServeState) -> Callable[[], Vault]:
    """A handle of the task's own on the server's vault, with its keys: never a new prompt."""
    return state.vault.reopen


def _config(state: ServeState) -> Callable[[], Config]:
    def load() -> Config:
        from mjvault.config import load_config

        return load_config(vault_dir=state.vault_root).config

    return load


def _client_settings(state: ServeState) -> Callable[[], ClientSettings]:
    """The source as `mjvault sync` would use it here, read when a task starts."""

    def settings() -> ClientSettings:
        from mjvault.config import client_settings, load_config

        return client_settings(load_config(vault_dir=state.vault_root))

    return settings


def _sync_options(state: ServeState) -> Callable[[], SyncOptions]:
    def options() -> SyncOptions:
        from mjvault.cli.sync import parse_day
        from mjvault.sync import SyncOptions

        config = _config(state)()
        since = config.sync.since
        return SyncOptions(
            concurrency=config.sync.jobs,
            since=parse_day(since.isoformat()) if since else None,
            checkpoint_seconds=config.sync.checkpoint_seconds,
        )

    return options


def _connect_remote(
    state: ServeState,
) -> Callable[[Vault, str], contextlib.AbstractContextManager[Link]]:
    def connect_remote(vault: Vault, name: str) -> contextlib.AbstractContextManager[Link]:
        from mjvault.remotes.config import load_spec
        from mjvault.remotes.session import connect

        return connect(vault, load_spec(vault.path, name), passphrase=state.settings.passphrase)

    return connect_remote


def live_of(state: ServeState) -> Live:
    """The live parts of ``state``, made on first use (a test may set its own first)."""
    with state.lock:
        live = state.caches.get("live")
        if isinstance(live, Live):
            return live
        hub = EventHub()
        watcher = VaultWatcher(state.vault_root, hub, state.vault.head)
        runner = TaskRunner(
            state.vault_root,
            _open_task_vault(state),
            hub,
            client_settings=_client_settings(state),
            connect_remote=_connect_remote(state),
            sync_options=_sync_options(state),
            config=_config(state),
            on_finished=lambda _task: watcher.check(),
        )
        live = Live(state, runner, watcher)
        state.caches["live"] = live
        state.tasks = runner
        watcher.start()
        state.on_close.append(runner.close)
        state.on_close.append(watcher.stop)
        state.on_stopping.append(live.end_streams)
        return live


# -- routes -----------------------------------------------------------------------------------
def _error(message: str, code: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status)


async def read_json(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object, at most ``limit`` bytes (a bigger body is refused unread)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest("request body too large", "too_large", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest("request body too large", "too_large", 413)
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the body is not JSON", "bad_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", "bad_json")
    return doc


def routes(state: ServeState) -> list[BaseRoute]:
    live = live_of(state)

    async def list_tasks(request: Request) -> Response:
        return JSONResponse(
            {"tasks": live.runner.tasks(), "lock": lock_state(state.vault_root)},
            headers={"cache-control": "no-store"},
        )

    async def start_task(request: Request) -> Response:
        try:
            doc = await read_json(request)
            kind = doc.get("kind")
            if kind not in KINDS:
                raise BadRequest(f"kind must be one of {', '.join(KINDS)}", "bad_kind")
            remote = doc.get("remote")
            if kind == "push":
                if not isinstance(remote, str):
                    raise BadRequest("a push needs a remote's name", "bad_name")
                check_name(remote)
            else:
                remote = None
            task = await run_in_threadpool(live.runner.start, kind, remote)
        except BadRequest as exc:
            return _error(exc.message, exc.code, exc.status)
        except TaskRefused as exc:
            extra = {"holder": exc.holder} if exc.holder else {"task": exc.task}
            return _error(exc.message, exc.code, 409, **extra)
        except MjvaultError as exc:
            return _error(exc.message, "not_available", 400)
        return JSONResponse({"task": task.id}, status_code=202)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _stream(live),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return [
        Route("/api/tasks", list_tasks, methods=["GET"]),
        Route("/api/tasks", start_task, methods=["POST"]),
        Route("/api/events", events, methods=["GET"]),
    ]


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _stream(live: Live) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:
        # Called from the task's or the watcher's thread; the loop may be closing.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    stopping = live.state.stopping
    listener = live.hub.subscribe(notify)
    live.add_waker(notify)
    try:
        if stopping.is_set():
            return
        # Where things stand now, so a page opened mid-sync shows it at once.
        yield b"retry: 3000\n\n"
        yield _frame("lock", live.watcher.lock)
        current: Task | None = live.runner.current
        if current is not None:
            data = current.to_json()
            data.pop("report")
            yield _frame("task", data)
        while True:
            try:
                await asyncio.wait_for(wake.wait(), PING_SECONDS)
            except TimeoutError:
                if stopping.is_set():
                    return
                # A peer that is gone makes this write fail; Starlette also cancels the
                # stream when the client disconnects: either way `finally` unsubscribes.
                yield b": ping\n\n"
                continue
            wake.clear()
            if stopping.is_set():
                # The server is stopping: end now rather than when the page goes, so
                # uvicorn does not wait its grace period for this response.
                return
            for event in listener.drain():
                yield _frame(event.name, event.data)
    finally:
        live.remove_waker(notify)
        listener.close()


__all__ = ["PING_SECONDS", "Live", "VaultWatcher", "live_of", "lock_state", "routes"]
