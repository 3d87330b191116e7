"""The text of each notification: a title that says it all, a body with the details.

Titles start with "mjvault:" so a channel shared with other tools shows where a message
came from. Error texts pass through :func:`mjvault.redact.redact`; nothing here ever
carries a cookie or a URL's secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mjvault.errors import AuthError, ChallengeError
from mjvault.notify.policy import Kind
from mjvault.redact import redact

if TYPE_CHECKING:
    from mjvault.sync import SyncReport

# What to do when the session cookie is refused, whatever way it was given.
RENEW_SESSION = (
    "The Midjourney session has expired or was refused. Run `mjvault auth login` or update "
    "MIDJOURNEY_SESSION_TOKEN; with --cookies-from-browser, sign in to midjourney.com in "
    "that browser."
)


@dataclass(frozen=True)
class Message:
    kind: Kind
    title: str
    body: str


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def sync_message(report: SyncReport, vault: str) -> Message | None:
    """News of a sync that stored new jobs or missed images; None when there is none."""
    if report.dry_run or not (report.jobs_new or report.images_missing):
        return None
    title = f"mjvault: {_plural(report.jobs_new, 'new job')}"
    if report.images_missing:
        title += f", {_plural(report.images_missing, 'image')} missing"
    lines = [
        f"{_plural(report.jobs_new, 'new job')}, {report.jobs_updated} updated, "
        f"{report.images_downloaded} images downloaded, {report.images_missing} missing",
        f"vault: {vault}",
    ]
    if report.snapshot:
        lines.append(f"snapshot: {report.snapshot[:12]}")
    if report.images_missing:
        lines.append(
            "Missing images are kept as missing; the next sync tries again those that could "
            "not be fetched (`mjvault sync --retry-missing --full` asks for the rest)."
        )
    kind = Kind.WARNING if report.images_missing else Kind.SUCCESS
    return Message(kind, title, "\n".join(lines))


def failure_message(what: str, error: BaseException, vault: str) -> Message:
    """``what`` (``sync``, ``push to nas``, ``verify``) failed: why, and what to do."""
    if isinstance(error, AuthError):
        advice = f"{RENEW_SESSION}\n(mjvault said: {redact(str(error))})"
    elif isinstance(error, ChallengeError):
        advice = redact(str(error))  # the client's own message says what to do
    else:
        advice = redact(str(error)) or type(error).__name__
    return Message(Kind.FAILURE, f"mjvault: {what} failed", f"{advice}\nvault: {vault}")


def verify_message(problems: int, summary: str, vault: str) -> Message | None:
    if problems <= 0:
        return None
    body = (
        f"{redact(summary)}\nvault: {vault}\n"
        "`mjvault verify` lists them; `mjvault verify --repair` quarantines damaged objects "
        "and fetches them again from the sources it is given."
    )
    return Message(Kind.FAILURE, f"mjvault: verify found {_plural(problems, 'problem')}", body)


def push_message(remote: str, error: BaseException, vault: str) -> Message:
    body = (
        f"{redact(str(error)) or type(error).__name__}\nvault: {vault}\n"
        "What was sent stays on the remote; the next push resumes from there."
    )
    return Message(Kind.FAILURE, f"mjvault: push to {remote} failed", body)


def recovered_message(whats: list[str], vault: str) -> Message:
    """What failed before (and was notified) works again."""
    names = ", ".join(whats)
    return Message(
        Kind.SUCCESS,
        f"mjvault: {names} recovered",
        f"{names} worked again after the problem notified before.\nvault: {vault}",
    )


def check_message(vault: str | None) -> Message:
    where = f"\nvault: {vault}" if vault else ""
    return Message(
        Kind.INFO,
        "mjvault: test notification",
        f"Notifications from mjvault reach this service.{where}",
    )
