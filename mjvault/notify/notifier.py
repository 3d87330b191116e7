"""The notifier every command and the watch loop call: what to send, to whom, and never a
failure of its own that reaches the caller."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mjvault.notify import messages
from mjvault.notify.messages import Message
from mjvault.notify.policy import Policy, QuietHours, local_now
from mjvault.notify.redaction import register_url_secrets
from mjvault.notify.sender import DEFAULT_TIMEOUT, NotifyResult, send
from mjvault.redact import redact

if TYPE_CHECKING:
    import datetime as dt

    from mjvault.config import Config
    from mjvault.sync import SyncReport

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to the configured Apprise URLs (``notify.urls``).

    Every method returns quietly: a notification that cannot be sent is one warning in the
    log (its URL redacted), and none holds up its caller for longer than ``timeout`` seconds.
    Without URLs every method does nothing and Apprise is never imported.
    """

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        only_on_failure: bool = False,
        quiet_hours: QuietHours | None = None,
        clock: Callable[[], dt.datetime] = local_now,
        timeout: float = DEFAULT_TIMEOUT,
        changes_only: bool = False,
    ) -> None:
        self.urls = tuple(urls)
        self.policy = Policy(only_on_failure, quiet_hours, clock)
        self.timeout = timeout
        # A loop's notifier (``changes_only``) sends a problem when it first appears or
        # changes, not again every cycle it persists: an expired cookie would otherwise be
        # notified hourly all night (failures ignore quiet hours). What was last sent, by
        # what failed ("sync", "verify", "push to NAME"); cleared by ``recovered``.
        self._notified: dict[str, str] | None = {} if changes_only else None
        register_url_secrets(self.urls)

    @classmethod
    def from_config(cls, config: Config, **kwargs: object) -> Notifier:
        """A notifier for the ``notify.*`` settings; ``kwargs`` as ``__init__``'s (tests
        pass a clock or a shorter timeout)."""
        section = config.notify
        quiet = QuietHours.parse(section.quiet_hours) if section.quiet_hours else None
        return cls(
            section.urls,
            only_on_failure=section.only_on_failure,
            quiet_hours=quiet,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    # -- the events ----------------------------------------------------------------------------
    def sync_finished(self, report: SyncReport, *, vault: str) -> None:
        """New jobs or missing images; nothing for a sync that found neither, or a dry run."""
        self._guarded(lambda: messages.sync_message(report, vault))

    def failed(self, what: str, error: BaseException, *, vault: str) -> None:
        """``what`` ("sync", "push to NAME", "verify") failed with ``error``."""
        if self._repeated(what, f"{type(error).__name__}: {error}"):
            return
        self._guarded(lambda: messages.failure_message(what, error, vault))

    def verify_finished(self, problems: int, summary: str, *, vault: str) -> None:
        """Sent only when ``problems`` is above 0."""
        if problems > 0 and self._repeated("verify", summary):
            return
        self._guarded(lambda: messages.verify_message(problems, summary, vault))

    def push_failed(self, remote: str, error: BaseException, *, vault: str) -> None:
        if self._repeated(f"push to {remote}", f"{type(error).__name__}: {error}"):
            return
        self._guarded(lambda: messages.push_message(remote, error, vault))

    def recovered(self, *whats: str, vault: str) -> None:
        """``whats`` went well this time: one "recovered" message for those of them whose
        problem was notified before (a loop's notifier only; otherwise nothing)."""
        if self._notified is None:
            return
        cleared = [what for what in whats if self._notified.pop(what, None) is not None]
        if cleared:
            self._guarded(lambda: messages.recovered_message(cleared, vault))

    def _repeated(self, what: str, key: str) -> bool:
        """True when ``what``'s problem is the one already notified (a loop's notifier)."""
        if self._notified is None:
            return False
        if self._notified.get(what) == key:
            log.info("notification not sent again: the same %s problem as before", what)
            return True
        self._notified[what] = key
        return False

    def send_test(self, *, vault: str | None = None) -> list[NotifyResult]:
        """A test message to every URL, whatever the quiet hours; each URL's result.
        Raises MjvaultError when Apprise is not installed (the one call that may)."""
        if not self.enabled:
            return []
        # The command prints each URL's result: no warning lines to repeat them.
        return self._send(messages.check_message(vault), failures_level=logging.INFO)

    # -- sending -------------------------------------------------------------------------------
    def _guarded(self, build: Callable[[], Message | None]) -> None:
        if not self.enabled:
            return
        try:
            message = build()
            if message is None:
                return
            reason = self.policy.held_back(message.kind)
            if reason is not None:
                log.info("notification not sent: %s", reason, extra={"title": message.title})
                return
            self._send(message)
        except Exception as exc:  # never into the caller: a sync outranks its notification
            log.warning("notification not sent: %s", redact(str(exc)) or type(exc).__name__)

    def _send(self, message: Message, failures_level: int = logging.WARNING) -> list[NotifyResult]:
        started = time.monotonic()
        results = send(self.urls, message, timeout=self.timeout)
        for result in results:
            if result.ok:
                log.info("notification sent", extra={"url": result.url, "title": message.title})
            else:
                log.log(
                    failures_level,
                    "notification to %s not sent: %s",
                    result.url,
                    result.error,
                    extra={"seconds": round(time.monotonic() - started, 1)},
                )
        return results
