"""Retention: the ``[retention]`` keep policy, applied by the vault itself after each sync.

The rules are ``forget``'s (:func:`mjvault.integrity.forget.apply_policy`, restic's): a
snapshot no rule keeps loses its marker, and gc reclaims what only it held. The guards are
``forget``'s too: HEAD and a view's pinned snapshot are never let go, and in a vault with a
remote neither is a snapshot no remote holds (:mod:`.copies`). A sync never forces: such a
snapshot is *withheld* (kept, and named in the summary with the remote to push to) until a
push makes it safe or ``mjvault forget --force`` lets it go.

Applied after every sync, the policy keeps exactly what it would keep applied once to all of
those syncs' snapshots: each rule keeps the newest snapshot of a period (or of the N newest),
and a later snapshot can only push an older one out, never bring one back. The tests check
that with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mjvault.errors import IntegrityError, MjvaultError
from mjvault.integrity import copies
from mjvault.integrity.forget import (
    KeepPolicy,
    _read_snapshots,
    apply_policy,
    protected_snapshots,
)
from mjvault.integrity.gc import acquire_lock
from mjvault.reports import Report
from mjvault.snapshots import Snapshot

if TYPE_CHECKING:
    from mjvault.config.schema import RetentionSection
    from mjvault.vault import Vault

# A sync has just released the lock; another command may hold it for a moment.
LOCK_WAIT_SECONDS = 30.0


def policy_from_config(section: RetentionSection) -> KeepPolicy:
    """The keep policy of ``[retention]``; empty (retention off) when no ``keep_*`` is set."""
    return KeepPolicy(
        last=section.keep_last,
        hourly=section.keep_hourly,
        daily=section.keep_daily,
        weekly=section.keep_weekly,
        monthly=section.keep_monthly,
        yearly=section.keep_yearly,
    )


@dataclass
class RetentionReport(Report):
    policy: KeepPolicy
    #: Snapshots forgotten, newest first.
    forgotten: list[Snapshot] = field(default_factory=list)
    kept: int = 0
    #: Snapshots the policy lets go that no remote holds: kept, until a push or a forced forget.
    withheld: list[str] = field(default_factory=list)
    push_to: str | None = None
    #: Why retention did not run (the sync itself is done and stays done).
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the policy without its unset counts, the snapshots without their trees.
        return {
            "policy": {k: v for k, v in self.policy.__dict__.items() if v is not None},
            "forgotten": [
                {
                    "id": s.id,
                    "time": s.time.isoformat(),
                    "source": s.source,
                    "jobs": s.stats.get("jobs"),
                }
                for s in self.forgotten
            ],
            "kept": self.kept,
            "withheld": self.withheld,
            "push_to": self.push_to,
            "error": self.error,
        }

    def lines(self) -> list[str]:
        """The summary's lines for a person."""
        if self.error is not None:
            return [f"retention not applied: {self.error}"]
        went = len(self.forgotten)
        text = f"retention: {went} snapshot{'s' if went != 1 else ''} forgotten, {self.kept} kept"
        shown = ", ".join(f"{s.id[:12]} ({s.time:%Y-%m-%d %H:%M})" for s in self.forgotten[:5])
        if shown:
            text += f": {shown}" + (f" and {went - 5} more" if went > 5 else "")
        out = [text]
        if self.withheld:
            out.append(
                f"  {len(self.withheld)} more kept because no remote holds them: "
                f"`mjvault push {self.push_to}` lets the next sync forget them"
            )
        if went:
            out.append("  `mjvault gc` reclaims the space only they used")
        return out


def apply_retention(
    vault: Vault, policy: KeepPolicy, *, wait: float | None = LOCK_WAIT_SECONDS
) -> RetentionReport | None:
    """Forget the snapshots ``policy`` does not keep; None when the policy is empty (off).

    Never forced: snapshots the copies guard protects are withheld, not forgotten.
    """
    if policy.empty:
        return None
    report = RetentionReport(policy=policy)
    with acquire_lock(vault, wait, "mjvault sync (retention)"):
        # Read as forget reads them: a manifest that cannot be read is named, not skipped.
        readable, unreadable = _read_snapshots(vault)
        if unreadable:
            raise IntegrityError(
                f"snapshot {unreadable[0][:12]} cannot be read, so no policy can place it",
                hint="run `mjvault verify --repair`, or forget it by id",
            )
        decisions = apply_policy(readable, policy, protected=protected_snapshots(vault))
        doomed = [d.snapshot for d in decisions if not d.keep]
        found = copies.check(vault, (s.id for s in doomed))
        unsafe = set(found.unsafe) if found is not None else set()
        report.withheld = sorted(unsafe)
        report.push_to = found.remote if found is not None and unsafe else None
        for snapshot in doomed:
            if snapshot.id not in unsafe:
                vault.refs.remove_snapshot(snapshot.id)
                report.forgotten.append(snapshot)
        report.kept = len(decisions) - len(report.forgotten)
    return report


def after_sync(vault: Vault, section: RetentionSection) -> RetentionReport | None:
    """Retention as the sync command runs it: a failure is reported, never raised, since
    the sync it follows is complete and stays so."""
    policy = policy_from_config(section)
    try:
        return apply_retention(vault, policy)
    except MjvaultError as exc:
        return RetentionReport(policy=policy, error=str(exc))
