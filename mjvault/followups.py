"""What follows a sync: retention, merging small packs, pushes to remotes, a verify subset.

:func:`run_followups` is the one owner of that order, for a one-shot ``mjvault sync`` and for
each cycle of ``sync --watch``. Nothing here ever undoes the sync: a retention that fails, a
push that fails or a verify that finds problems is logged, notified and reported (the caller
turns it into exit code 4 or 3); the jobs stay in the vault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mjvault.errors import MjvaultError, VaultLocked
from mjvault.reports import Report

if TYPE_CHECKING:
    from mjvault.config.schema import RetentionSection
    from mjvault.integrity.pack import PackReport
    from mjvault.integrity.retention import RetentionReport
    from mjvault.integrity.verify import VerifyReport
    from mjvault.notify import Notifier
    from mjvault.remotes.push import PushReport
    from mjvault.sync import SyncReport
    from mjvault.vault import Vault

log = logging.getLogger(__name__)

PassphraseGetter = Callable[[], str]


class PushFailed(MjvaultError):
    """A push after a sync did not finish; what the sync stored is kept all the same."""


@dataclass
class PushOutcome(Report):
    remote: str
    report: PushReport | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        # Its own shape: ok (derived) before the error, the report last.
        return {
            "remote": self.remote,
            "ok": self.ok,
            "error": self.error,
            "report": self.report.to_json() if self.report else None,
        }


def push_targets(vault: Vault, named: Iterable[str]) -> list[str]:
    """``--push`` names, then the remotes marked ``auto_push``, each once, in that order."""
    from mjvault.remotes.config import auto_push_names, check_name

    targets: list[str] = []
    for name in [*(check_name(n) for n in named), *auto_push_names(vault.path)]:
        if name not in targets:
            targets.append(name)
    return targets


def lacks_head(vault: Vault, name: str) -> bool:
    """Whether remote ``name`` may lack the vault's HEAD snapshot, from the local record of
    what it holds (no remote I/O): a push that failed (a NAS not mounted) is caught up by the
    next run, new data or not. An unreadable record counts as lacking: a push of nothing
    new costs a listing, a remote left behind costs the backup."""
    from mjvault.remotes.record import load_record

    head = vault.refs.head()
    if head is None:
        return False
    record = load_record(vault.path, name)
    return record is None or head not in record.snapshots


def push_after_sync(
    vault: Vault,
    remotes: Iterable[str],
    *,
    passphrase: PassphraseGetter | None,
    notifier: Notifier,
) -> list[PushOutcome]:
    """Push the vault to each remote in turn; one failing never stops the others."""
    outcomes = []
    for name in remotes:
        outcome = _push_one(vault, name, passphrase)
        outcomes.append(outcome)
        if outcome.ok:
            sent = outcome.report.snapshots_sent if outcome.report else 0
            log.info("pushed to %s", name, extra={"remote": name, "snapshots_sent": sent})
        else:
            log.warning("push to %s failed: %s", name, outcome.error, extra={"remote": name})
            notifier.push_failed(name, PushFailed(outcome.error or "failed"), vault=str(vault.path))
    return outcomes


def _push_one(vault: Vault, name: str, passphrase: PassphraseGetter | None) -> PushOutcome:
    from mjvault.remotes.config import load_spec
    from mjvault.remotes.push import push
    from mjvault.remotes.session import connect

    try:
        spec = load_spec(vault.path, name)
        with connect(vault, spec, passphrase=passphrase) as link:
            report = push(vault, link)
    except VaultLocked:
        raise  # not the remote's fault: the caller decides (another writer is at work)
    except (MjvaultError, OSError) as exc:
        return PushOutcome(name, error=str(exc))
    if not report.ok:
        return PushOutcome(name, report, error="; ".join(report.problems[:3]))
    return PushOutcome(name, report)


def verify_after_sync(vault: Vault, subset: str, *, notifier: Notifier) -> VerifyReport:
    """``verify --read-data-subset SUBSET``; problems are logged and notified."""
    from mjvault.integrity.verify import verify

    report = verify(vault, subset=subset)
    if report.ok:
        log.info(
            "verified a subset: no problems",
            extra={"subset": subset, "objects_read": report.objects_read},
        )
    else:
        kinds = sorted({p.kind for p in report.problems})
        summary = f"{len(report.problems)} problems ({', '.join(kinds)}) in a {subset} subset"
        log.warning("verify found %s", summary, extra={"subset": subset})
        notifier.verify_finished(len(report.problems), summary, vault=str(vault.path))
    return report


@dataclass
class FollowupSettings:
    """What to do after each sync (from the configuration and the command line)."""

    retention: RetentionSection | None = None  # None: no retention step
    pack_after: int = 0  # merge small packs once more than this pile up (0: never)
    push: tuple[str, ...] = ()  # --push names; auto-push remotes are added
    verify_subset: str | None = None
    passphrase: PassphraseGetter | None = None


@dataclass
class FollowupReport(Report):
    retention: RetentionReport | None = None
    packing: PackReport | None = None
    pushes: list[PushOutcome] = field(default_factory=list)
    # Remotes to push to that held HEAD already (caught up otherwise: a push by hand), so
    # none was tried: a push failure notified before is over all the same.
    caught_up: list[str] = field(default_factory=list)
    verify: VerifyReport | None = None

    @property
    def retention_failed(self) -> bool:
        return self.retention is not None and self.retention.error is not None

    @property
    def push_failed(self) -> bool:
        return any(not p.ok for p in self.pushes)

    def pack_line(self) -> str | None:
        if self.packing is None:
            return None
        return f"merged {self.packing.packs_merged} small packs into {self.packing.packs_written}"

    def to_json(self) -> dict[str, Any]:
        """The keys a sync's JSON summary carries: ``retention`` always, the others when
        their step ran."""
        # Its own shape: a step's key only when that step ran (retention always).
        data: dict[str, Any] = {"retention": self.retention.to_json() if self.retention else None}
        if self.packing is not None:
            data["packing"] = self.packing.to_json()
        if self.pushes:
            data["pushes"] = [p.to_json() for p in self.pushes]
        if self.verify is not None:
            data["verify"] = self.verify.to_json()
        return data


def run_followups(
    vault: Vault,
    report: SyncReport,
    settings: FollowupSettings,
    *,
    notifier: Notifier,
    into: FollowupReport | None = None,
) -> FollowupReport:
    """Retention, pack merging, pushes to each remote behind HEAD, a verify subset: in that
    order, each reported in ``into`` (made if not given) as soon as it is done, so a caller
    holding it still sees the steps finished before an interruption. A dry run does none."""
    from mjvault.integrity.pack import pack_after_write
    from mjvault.integrity.retention import after_sync

    done = into if into is not None else FollowupReport()
    if report.dry_run:
        return done
    if settings.retention is not None:
        done.retention = after_sync(vault, settings.retention)
    done.packing = pack_after_write(vault, settings.pack_after)
    # Every remote behind HEAD, not only after a new snapshot: one a push missed (a NAS not
    # mounted) is caught up by the next run, new jobs or not.
    behind: list[str] = []
    for target in push_targets(vault, settings.push):
        (behind if lacks_head(vault, target) else done.caught_up).append(target)
    for target in behind:  # one at a time: an interruption keeps the outcomes so far
        done.pushes += push_after_sync(
            vault, [target], passphrase=settings.passphrase, notifier=notifier
        )
    if settings.verify_subset:
        done.verify = verify_after_sync(vault, settings.verify_subset, notifier=notifier)
    return done
