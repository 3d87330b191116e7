"""The one call a sync's end makes, one-shot or a watch loop's cycle."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mjvault.errors import Interrupted, MjvaultError, VaultLocked

if TYPE_CHECKING:
    from mjvault.notify.notifier import Notifier
    from mjvault.sync import SyncReport


def notify_sync_outcome(
    notifier: Notifier, outcome: SyncReport | BaseException, *, vault: str
) -> None:
    """A finished sync's news (new jobs, missing images), or its failure with what to do.
    A sync stopped on purpose (:class:`Interrupted`) is neither."""
    if isinstance(outcome, Interrupted):
        return
    if isinstance(outcome, BaseException):
        notifier.failed("sync", outcome, vault=vault)
    else:
        notifier.sync_finished(outcome, vault=vault)


@contextmanager
def failures_notified(notifier: Notifier, *, vault: str, what: str = "sync") -> Iterator[None]:
    """Around a sync (or ``what`` else: "verify"): a failure it raises (an expired cookie, a
    challenge page, a full disk, a remote that cannot be read) is notified, then goes on to
    the caller as it was. One stopped on purpose is not."""
    try:
        yield
    except (VaultLocked, Interrupted):
        raise  # another run is writing (a schedule's overlap), or a stop: nothing went wrong
    except MjvaultError as err:
        notifier.failed(what, err, vault=vault)
        raise


class PushIncomplete(MjvaultError):
    """A push that ended with objects or snapshots left unsent (its report's problems)."""

    def __init__(self, problems: list[str]) -> None:
        first = problems[0] if problems else "unknown problem"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{len(problems)} problems: {first}{more}")


@contextmanager
def push_failures_notified(notifier: Notifier, remote: str, *, vault: str) -> Iterator[None]:
    """Around a push to ``remote``: a failure it raises is notified, then re-raised."""
    try:
        yield
    except Interrupted:
        raise  # stopped on purpose (Ctrl-C, SIGTERM): nothing went wrong
    except MjvaultError as err:
        notifier.push_failed(remote, err, vault=vault)
        raise
