"""``mjvault sync --watch``: sync, follow up, sleep, again, until told to stop.

Each cycle is one incremental sync (an up-to-date vault costs one listing page), then what
follows a sync (retention, pack merging, pushes to remotes behind HEAD, a verify subset:
:func:`mjvault.followups.run_followups`).
The vault and the client are opened for the cycle and closed after it, so a process that
runs for months holds nothing between cycles and picks up a renewed cookie or rotated keys.

Failures back off: the wait doubles per failed cycle in a row, up to a cap (eight intervals,
at most an hour, never less than one interval), and returns to the interval after a success.
Any error of a cycle (a full disk, a broken cache file) is a failed cycle, never the end of
the watch; the caller may floor the wait after a failure (the CLI: a minute).
A refused cookie or a Cloudflare challenge waits the cap at once: only the user can fix it,
and asking again every few seconds would only look like an attack.

Stopping: the loop ends when ``stop`` is set (from another thread) or a KeyboardInterrupt
arrives (Ctrl-C, or the CLI's SIGTERM handler). A cycle in progress is stopped the way Ctrl-C
stops a sync: the writer checkpoints and releases the lock; nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mjvault.durations import parse_bounded
from mjvault.errors import (
    AuthError,
    ChallengeError,
    Interrupted,
    MjvaultError,
    VaultLocked,
)
from mjvault.followups import FollowupReport, FollowupSettings, PushOutcome, run_followups

if TYPE_CHECKING:
    from mjvault.integrity.verify import VerifyReport
    from mjvault.notify import Notifier
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.sync import SyncOptions, SyncReport
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

MIN_ADVISED = 60.0  # shorter intervals work (tests use 1 s) but mind the service's limits
CAP_INTERVALS = 8
CAP_SECONDS = 3600.0
MIN_INTERVAL = 1.0  # shorter is a busy loop against the service, not a watch
MAX_INTERVAL = 31 * 86400.0  # as a schedule's (mjvault.schedule.plan); longer overflows waits
# The shortest wait after a failed cycle (the CLI's): a failing service is not asked again
# within a minute, unless the user chose a shorter interval (then one interval).
MIN_FAILURE_WAIT = 60.0


def parse_interval(text: str) -> float:
    """``--every`` or ``sync.every``: ``30s``, ``10m``, ``6h``, ``1d`` (or seconds), between
    a second and 31 days."""
    return parse_bounded(
        text,
        minimum=MIN_INTERVAL,
        maximum=MAX_INTERVAL,
        refusal=f"--every {text} (or sync.every): a watch syncs between every second and "
        "every 31 days",
    )


def failure_floor(every: float) -> float:
    """The CLI's shortest wait after a failure: a minute, or the interval if shorter."""
    return min(MIN_FAILURE_WAIT, every)


def backoff_cap(every: float) -> float:
    """The longest wait after failures: 8 intervals, at most an hour, at least one interval."""
    return max(every, min(CAP_INTERVALS * every, CAP_SECONDS))


def needs_the_user(error: BaseException) -> bool:
    """Failures a retry cannot fix: an expired or refused cookie, a browser challenge."""
    return isinstance(error, (AuthError, ChallengeError))


@dataclass
class Backoff:
    """The wait before the next cycle, from the outcomes so far."""

    every: float
    cap: float = 0.0
    failures: int = 0  # failed cycles in a row
    floor: float = 0.0  # no wait after a failure is shorter (the cap rises to it if need be)

    def __post_init__(self) -> None:
        if not self.cap:
            self.cap = backoff_cap(self.every)
        self.cap = max(self.cap, self.floor)

    def succeeded(self) -> float:
        self.failures = 0
        return self.every

    def failed(self, error: BaseException | None = None) -> float:
        self.failures += 1
        if error is not None and needs_the_user(error):
            return self.cap
        # Capped before the power grows huge: a loop failing for a year must not overflow.
        return max(self.floor, min(self.cap, self.every * 2 ** min(self.failures, 64)))


@dataclass
class CycleResult:
    """What one cycle did. ``error``: the sync failed (after checkpointing) or never began."""

    report: SyncReport | None = None
    error: MjvaultError | None = None
    busy: str | None = None  # another writer held the vault: the cycle was skipped
    followups: FollowupReport = field(default_factory=FollowupReport)
    seconds: float = 0.0

    @property
    def pushes(self) -> list[PushOutcome]:
        return self.followups.pushes

    @property
    def verify(self) -> VerifyReport | None:
        return self.followups.verify

    @property
    def new_jobs(self) -> int:
        return self.report.jobs_new if self.report else 0

    @property
    def missing_images(self) -> int:
        return self.report.images_missing if self.report else 0

    @property
    def push_failed(self) -> bool:
        return any(not p.ok for p in self.pushes)


class CycleInterrupted(Interrupted):
    """A cycle stopped by a signal or Ctrl-C; ``result`` is what it did before the stop."""

    def __init__(self, result: CycleResult) -> None:
        super().__init__("interrupted; the vault is consistent")
        self.result = result


@dataclass
class WatchSummary:
    cycles: int = 0
    failed_cycles: int = 0
    new_jobs: int = 0
    stopped: bool = False  # ended by ``stop`` or an interrupt (the only ways it ends)
    interrupted: CycleResult | None = None  # the cycle a signal cut short, what it stored


@dataclass
class SyncCycle:
    """One cycle against a real vault and service; the CLI fills in how to open each."""

    open_vault: Callable[[], AbstractContextManager[Vault]]
    open_client: Callable[[], AbstractContextManager[MidjourneyClient]]
    options: SyncOptions
    notifier: Notifier
    stop: threading.Event
    followups: FollowupSettings = field(default_factory=FollowupSettings)
    # An embedding caller's own step after each sync, before the follow-ups; its errors fail
    # the cycle as any other would.
    after_sync: Callable[[Vault, SyncReport], None] | None = None
    where: str = ""  # the vault's path, for a failure before the vault is open
    # A stop requested other than through ``stop`` (the CLI: a signal received). A signal's
    # KeyboardInterrupt can be swallowed on the way (the writer's pack merge, after the
    # snapshot, reports it and goes on), so what decides the stop is this, not the exception.
    stop_requested: Callable[[], bool] | None = None

    def stopping(self) -> bool:
        return self.stop.is_set() or (self.stop_requested is not None and self.stop_requested())

    def __call__(self) -> CycleResult:
        from mjvault.notify import notify_sync_outcome
        from mjvault.sync import sync

        started = time.monotonic()
        result = CycleResult()
        label = self.where
        try:
            with self.open_vault() as vault:
                label = str(vault.path)
                try:
                    with self.open_client() as client:
                        result.report = sync(vault, client, self.options, should_stop=self.stopping)
                except VaultLocked as exc:
                    result.busy = exc.message
                    return result
                except Interrupted:
                    raise  # to the handler below, with what was stored
                except MjvaultError as exc:
                    result.error = exc
                    notify_sync_outcome(self.notifier, exc, vault=label)
                    return result
                except Exception as exc:  # the sync's own OSError or sqlite3.Error
                    result.error = cycle_failure(exc)
                    log.debug("watch cycle failed", exc_info=True)
                    notify_sync_outcome(self.notifier, result.error, vault=label)
                    return result
                if self.stopping():  # a stop whose interrupt the sync's last step swallowed
                    raise Interrupted("interrupted; the vault is consistent")
                # The news before the follow-ups (as the one-shot sends it): a push or a
                # verify that raises must not swallow the jobs this sync stored.
                if result.new_jobs or result.missing_images:  # an idle cycle says nothing
                    notify_sync_outcome(self.notifier, result.report, vault=label)
                self._follow_up(vault, result)
                # One "recovered" message for all that went well: the sync and the follow-ups.
                self.notifier.recovered("sync", *self._went_well(result), vault=label)
        except (Interrupted, KeyboardInterrupt) as exc:
            # What the cycle stored before the stop (the sync's jobs, the pushes so far) goes
            # with the interruption, for the loop to log.
            if result.report is None and isinstance(exc, Interrupted):
                result.report = exc.report  # type: ignore[assignment]
            result.seconds = time.monotonic() - started
            raise CycleInterrupted(result) from exc
        except Exception as exc:  # the vault would not open, a follow-up's own failure, a
            # full disk, a broken cache: one failed cycle
            if isinstance(exc, MjvaultError):
                result.error = exc
            else:
                result.error = cycle_failure(exc)
                log.debug("watch cycle failed", exc_info=True)  # the trace, for -v
            what = "sync" if result.report is None else "sync follow-up"
            if result.report is not None:
                self.notifier.recovered("sync", vault=label)  # the sync itself went well
            self.notifier.failed(what, result.error, vault=label)
        finally:
            result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _went_well(result: CycleResult) -> list[str]:
        """What a cycle whose follow-ups all ran did well (to clear a problem notified)."""
        names = ["sync follow-up"]
        if result.verify is not None and result.verify.ok:
            names.append("verify")
        names += [f"push to {p.remote}" for p in result.pushes if p.ok]
        names += [f"push to {remote}" for remote in result.followups.caught_up]
        return names

    def _follow_up(self, vault: Vault, result: CycleResult) -> None:
        report = result.report
        assert report is not None
        if self.after_sync is not None:
            self.after_sync(vault, report)
        done = run_followups(
            vault, report, self.followups, notifier=self.notifier, into=result.followups
        )
        if done.retention_failed:
            assert done.retention is not None
            log.warning(done.retention.lines()[0])


def cycle_failure(exc: Exception) -> MjvaultError:
    """An unexpected error of one cycle as the one-line failure the loop backs off from.

    A months-long watch must outlive a full disk or a cache file gone bad: the next cycle
    may find them fixed. OSError names the path, as every other write failure does.
    """
    if isinstance(exc, OSError):
        from mjvault.store.objects import write_failure

        return write_failure(exc)
    return MjvaultError(f"{type(exc).__name__}: {exc}")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def log_cycle(result: CycleResult, wait: float, backoff: Backoff) -> None:
    """The one line per cycle (logfmt fields; see docs/usage.md, Watching)."""
    next_run = _stamp(datetime.now(UTC) + timedelta(seconds=wait))
    common = {"seconds": round(result.seconds, 3), "next_run": next_run}
    if result.busy:
        log.info("watch cycle skipped: %s", result.busy, extra=common)
    elif result.error is not None:
        log.warning(
            "watch cycle failed: %s",
            result.error,
            extra={
                "error": type(result.error).__name__,
                "failures": backoff.failures,
                "retry_in": round(wait, 3),
            }
            | common,
        )
    else:
        extra: dict[str, object] = {
            "new_jobs": result.new_jobs,
            "missing_images": result.missing_images,
        }
        if result.pushes:
            extra["pushes_failed"] = sum(1 for p in result.pushes if not p.ok)
        if result.verify is not None:
            extra["verify_problems"] = len(result.verify.problems)
        if result.followups.retention_failed:
            extra["retention_failed"] = True
        if result.followups.packing is not None:
            extra["packs_merged"] = result.followups.packing.packs_merged
        log.info("watch cycle", extra=extra | common)


def log_interrupted(result: CycleResult) -> None:
    """The line of a cycle cut short: what it stored and pushed before the stop (kept)."""
    extra: dict[str, object] = {
        "new_jobs": result.new_jobs,
        "missing_images": result.missing_images,
        "seconds": round(result.seconds, 3),
    }
    if result.pushes:
        extra["pushed"] = ",".join(p.remote for p in result.pushes if p.ok) or "none"
        extra["pushes_failed"] = sum(1 for p in result.pushes if not p.ok)
    log.info("watch cycle interrupted", extra=extra)


def watch(
    cycle: Callable[[], CycleResult],
    *,
    every: float,
    stop: threading.Event | None = None,
    on_cycle: Callable[[CycleResult, float], None] | None = None,
    max_cycles: int | None = None,
    min_failure_wait: float = 0.0,
) -> WatchSummary:
    """Run ``cycle`` every ``every`` seconds (backing off on failures) until stopped.

    ``on_cycle(result, wait)`` sees each cycle and the wait before the next. Returns when
    ``stop`` is set, on KeyboardInterrupt (the sync having checkpointed), or after
    ``max_cycles``. No wait after a failed cycle is shorter than ``min_failure_wait``.
    """
    stop = stop or threading.Event()
    backoff = Backoff(every, floor=min_failure_wait)
    summary = WatchSummary()
    if every < MIN_ADVISED:
        log.warning(
            "watching every %g s: mind the service's rate limits (a minute or more is advised)",
            every,
        )
    try:
        for number in _counter(max_cycles):
            if stop.is_set():
                break
            result = cycle()
            if number == 1 and _never_configured(result.error):
                assert result.error is not None
                raise result.error  # no credentials at all: retrying would wait forever
            summary.cycles = number
            summary.new_jobs += result.new_jobs
            if result.error is not None:
                summary.failed_cycles += 1
                wait = backoff.failed(result.error)
            elif result.busy:
                wait = every  # another writer's turn: not a failure of ours
            else:
                wait = backoff.succeeded()
            log_cycle(result, wait, backoff)
            if on_cycle is not None:
                on_cycle(result, wait)
            if max_cycles is not None and number >= max_cycles:
                return summary
            if stop.wait(wait):
                break
    except (Interrupted, KeyboardInterrupt) as exc:
        if isinstance(exc, CycleInterrupted):
            summary.interrupted = exc.result
            summary.new_jobs += exc.result.new_jobs
            log_interrupted(exc.result)
        log.info("watch stopped: the vault is consistent", extra={"cycles": summary.cycles})
        summary.stopped = True
        return summary
    summary.stopped = True
    log.info("watch stopped", extra={"cycles": summary.cycles})
    return summary


def _never_configured(error: BaseException | None) -> bool:
    from mjvault.sources.midjourney.messages import MissingCredentials

    return isinstance(error, MissingCredentials)


def _counter(limit: int | None) -> Iterator[int]:
    number = 0
    while limit is None or number < limit:
        number += 1
        yield number
