"""Install, show and remove a vault's scheduled sync with the scheduler of this platform."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from mjvault.errors import UsageError, VaultNotFound
from mjvault.schedule.base import Scheduler, Status
from mjvault.schedule.cron import Cron
from mjvault.schedule.launchd import Launchd
from mjvault.schedule.launchd import log_dir as launchd_log_dir
from mjvault.schedule.plan import (
    LOG_SUFFIX,
    Plan,
    check_private_file,
    check_subset,
    parse_every,
    program_argv,
    schedule_name,
)
from mjvault.schedule.runner import Runner, SchedulerError
from mjvault.schedule.systemd import Systemd
from mjvault.schedule.windows import Windows

KINDS = ("systemd", "cron", "launchd", "windows")


def native_kinds(platform: str | None = None) -> tuple[str, ...]:
    """The schedulers of this platform, preferred first."""
    platform = platform or sys.platform
    if platform == "darwin":
        return ("launchd",)
    if platform.startswith("win"):
        return ("windows",)
    # systemd's timers catch up missed runs and keep a journal; cron is everywhere else.
    return ("systemd", "cron")


def make(kind: str, runner: Runner) -> Scheduler:
    classes: dict[str, type[Systemd] | type[Cron] | type[Launchd] | type[Windows]] = {
        "systemd": Systemd,
        "cron": Cron,
        "launchd": Launchd,
        "windows": Windows,
    }
    return classes[kind](runner)


def choose(runner: Runner, kind: str | None = None) -> Scheduler:
    """The scheduler asked for, else the first of this platform's that works here."""
    if kind is not None:
        return make(kind, runner)
    for candidate in native_kinds():
        scheduler = make(candidate, runner)
        if scheduler.available():
            return scheduler
    raise SchedulerError(
        "no scheduler answers here: neither a systemd user manager (`systemctl --user`) nor "
        "`crontab`",
        hint="install cron, or log in to a session with a user manager, or pass --scheduler",
    )


def log_file_for(kind: str, name: str) -> Path:
    """The platform's log folder (platformdirs' user_log_dir), one file per schedule so that
    status reads the right vault's last line."""
    if kind == "launchd":
        folder = launchd_log_dir()
    else:
        from platformdirs import user_log_dir

        folder = Path(user_log_dir("mjvault", appauthor=False))
    return folder / f"{name}{LOG_SUFFIX}"


@dataclass(frozen=True)
class Request:
    """What `schedule install` was asked for, before it is checked."""

    vault: Path
    every: str
    profile: str | None = None
    verify_subset: str | None = None
    push: tuple[str, ...] = ()
    passphrase_file: Path | None = None


def make_plan(request: Request, kind: str) -> Plan:
    from mjvault.vault import is_vault

    vault = request.vault.resolve()
    if not is_vault(vault):
        raise VaultNotFound(
            f"{vault} is not a vault", hint="create it with `mjvault init` or `mjvault setup`"
        )
    from mjvault.remotes.config import load_spec

    for remote in request.push:
        load_spec(vault, remote)  # a misspelt name fails now, not at every run
    name = schedule_name(vault)
    return Plan(
        name=name,
        vault=vault,
        every=parse_every(request.every),
        program=program_argv(),
        log_file=log_file_for(kind, name),
        profile=request.profile,
        verify_subset=check_subset(request.verify_subset) if request.verify_subset else None,
        push=tuple(dict.fromkeys(request.push)),
        passphrase_file=(
            check_private_file(request.passphrase_file) if request.passphrase_file else None
        ),
    )


def preview(
    request: Request, kind: str | None, runner: Runner | None = None
) -> tuple[Plan, str, dict[Path, str]]:
    """What install would write, written nowhere: --print, and the tests of every platform's
    files on any platform."""
    scheduler = choose(runner or Runner(), kind)
    plan = make_plan(request, scheduler.kind)
    return plan, scheduler.kind, scheduler.render(plan)


def install(
    request: Request, kind: str | None, runner: Runner | None = None
) -> tuple[Plan, str, list[str]]:
    runner = runner or Runner()
    if kind is not None and kind not in native_kinds():
        raise UsageError(
            f"--scheduler {kind} does not run on this system; with --print it shows its files"
        )
    scheduler = choose(runner, kind)
    plan = make_plan(request, scheduler.kind)
    # The log folder must exist: --log-file refuses a missing one, so that a typo fails.
    plan.log_file.parent.mkdir(parents=True, exist_ok=True)
    done = scheduler.install(plan)
    # One schedule per vault: moving from cron to systemd (or back) leaves no second one.
    for other in native_kinds():
        if other != scheduler.kind:
            done += _remove_quietly(make(other, runner), plan.name)
    return plan, scheduler.kind, done


def _remove_quietly(scheduler: Scheduler, name: str) -> list[str]:
    try:
        return scheduler.remove(name)
    except SchedulerError:
        return []  # a scheduler that does not answer holds nothing of ours


def status(vault: Path, runner: Runner | None = None) -> list[Status]:
    """Every scheduler of this platform that holds this vault's schedule; else the one an
    install would use, showing nothing installed."""
    runner = runner or Runner()
    name = schedule_name(vault.resolve())
    found = []
    for kind in native_kinds():
        scheduler = make(kind, runner)
        try:
            if scheduler.installed(name):
                found.append(scheduler.status(name, log_file_for(kind, name)))
        except SchedulerError:
            continue
    if found:
        return found
    kind = native_kinds()[0]
    with contextlib.suppress(SchedulerError):
        kind = choose(runner).kind
    return [Status(kind, name, False, log_file=str(log_file_for(kind, name)))]


def remove(vault: Path, runner: Runner | None = None) -> list[str]:
    """Disable and delete this vault's schedule wherever it is; nothing there is no error."""
    runner = runner or Runner()
    name = schedule_name(vault.resolve())
    done: list[str] = []
    errors: list[SchedulerError] = []
    for kind in native_kinds():
        try:
            done += make(kind, runner).remove(name)
        except SchedulerError as err:
            errors.append(err)
    if errors and not done:
        # Nothing removed and a scheduler that did not answer: it may still hold the schedule.
        missing = [e for e in errors if "is not installed" not in e.message]
        if missing:
            raise missing[0]
    return done


def needs_passphrase(request: Request) -> bool:
    """An encrypted vault scheduled without a passphrase file: every run would stop asking
    for one (unless the user gives MJVAULT_PASSPHRASE to the job by other means)."""
    import json

    from mjvault.vault import CONFIG_FILE

    try:
        doc = json.loads((request.vault / CONFIG_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return bool(isinstance(doc, dict) and doc.get("encryption")) and not request.passphrase_file
