"""``mjvault sync --watch``: the command-line face of :mod:`mjvault.watch`.

Signals: SIGTERM (a service manager stopping it) and Ctrl-C stop the loop at once, whether it
sleeps or syncs; a sync in progress checkpoints first, as an interrupted sync always does.
Exit 0 after SIGTERM (a requested stop is a success to systemd), 130 after Ctrl-C (the
project's code for "interrupted"). Only the first signal interrupts; more while the
checkpoint is written are ignored, so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from mjvault.cli.context import AppContext
from mjvault.cli.signals import StopSignals
from mjvault.cli.source_options import SourceOptions
from mjvault.errors import EXIT_INTERRUPTED, ExitStatus

if TYPE_CHECKING:
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.sync import SyncOptions
    from mjvault.vault import Vault
    from mjvault.watch import CycleResult


def run_watch(
    app: AppContext,
    source: SourceOptions,
    options: SyncOptions,
    *,
    push: tuple[str, ...],
    verify_subset: str | None,
    if_idle: bool,
) -> None:
    from mjvault.cli.if_idle import say_busy
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.followups import FollowupSettings, push_targets
    from mjvault.notify import Notifier
    from mjvault.sources.midjourney import MidjourneyClient
    from mjvault.vault import Vault
    from mjvault.watch import SyncCycle, failure_floor, parse_interval, watch

    every = parse_interval(app.config.sync.every)
    vault_path = app.vault_path()
    ask = passphrase_source(app.passphrase_file)
    remembered: list[str] = []

    def passphrase() -> str:
        # Asked once, not every cycle: each cycle opens the vault afresh.
        if not remembered:
            remembered.append(ask())
        return remembered[0]

    # Checked once before the loop: a bad vault, remote name or passphrase is the user's to
    # fix now, not a failure to back off from for hours.
    first = Vault.open(vault_path, passphrase=passphrase)
    try:
        push_targets(first, push)
    finally:
        first.close()
    app.override(source.config_overrides())
    browser = app.config.source.cookies_from_browser
    if browser:  # a typo'd profile path or a missing yt-dlp stops now, not retried for ever
        from mjvault.sources.midjourney.browser_cookies import check_spec

        check_spec(browser)

    @contextmanager
    def open_vault() -> Iterator[Vault]:
        vault = Vault.open(vault_path, passphrase=passphrase)
        try:
            yield vault
        finally:
            vault.close()

    @contextmanager
    def open_client() -> Iterator[MidjourneyClient]:
        # Settings read per cycle: credentials renewed on disk since the last one are used.
        settings = source.settings_for(app, concurrency=app.config.sync.jobs)
        with MidjourneyClient(settings) as client:
            yield client

    stop = threading.Event()
    signals = StopSignals()
    cycle = SyncCycle(
        open_vault=open_vault,
        open_client=open_client,
        options=options,
        # Changes only: a problem that persists is not sent again every cycle.
        notifier=Notifier.from_config(app.config, changes_only=True),
        stop=stop,
        followups=FollowupSettings(
            retention=app.config.retention,
            pack_after=app.config.pack.auto_after,
            push=push,
            verify_subset=verify_subset,
            passphrase=passphrase,
        ),
        where=str(vault_path),
        # The signal received decides the stop, not its KeyboardInterrupt (which a step may
        # swallow); the handler cannot set ``stop`` itself (an Event's lock, see signals.py).
        stop_requested=lambda: signals.received is not None,
    )
    cycles_seen: list[bool] = []

    def on_cycle(result: CycleResult, wait: float) -> None:
        if signals.received is not None:
            stop.set()  # a signal whose interrupt a follow-up swallowed: no wait, no next cycle
        # --if-idle: a first cycle that finds another writer at work ends the watch, with the
        # one line a one-shot sync gives (the lock is taken as any sync takes it, no look).
        if if_idle and not cycles_seen and result.busy:
            say_busy(app, result.busy)
            stop.set()
            return
        cycles_seen.append(True)
        _show(app, result, wait)

    with signals.installed():
        watch(
            cycle,
            every=every,
            stop=stop,
            on_cycle=on_cycle,
            min_failure_wait=failure_floor(every),
        )
    if signals.received == signal.SIGINT:
        click.echo("mjvault: interrupted; the vault is consistent", err=True)
        raise ExitStatus(EXIT_INTERRUPTED)


def _show(app: AppContext, result: CycleResult, wait: float) -> None:
    """A line per cycle on stdout (a JSON object per line under --json); -q shows none."""
    from mjvault.redact import redact

    next_run = datetime.now(UTC) + timedelta(seconds=wait)
    if app.json_output:
        data = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "ok": result.error is None,
            "skipped": result.busy,
            "error": redact(str(result.error)) if result.error else None,
            "new_jobs": result.new_jobs,
            "missing_images": result.missing_images,
            "snapshot": result.report.snapshot if result.report else None,
            "pushes": [p.to_json() for p in result.pushes],
            "retention": (
                result.followups.retention.to_json() if result.followups.retention else None
            ),
            "packing": (result.followups.packing.to_json() if result.followups.packing else None),
            "verify_problems": len(result.verify.problems) if result.verify else None,
            "seconds": round(result.seconds, 3),
            "next_run": next_run.isoformat(timespec="seconds"),
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    if app.verbosity < 0 or result.error is not None or result.busy:
        return  # failures and skips are warnings in the log already
    when = next_run.astimezone().strftime("%H:%M:%S")
    retention = result.followups.retention
    if retention is not None and retention.error is None and retention.forgotten:
        for line in retention.lines():  # a failure is a warning in the log already
            click.echo(line)
    packed = result.followups.pack_line()
    if packed:
        click.echo(packed)
    click.echo(
        f"{datetime.now().strftime('%H:%M:%S')}  {result.new_jobs} new jobs, "
        f"{result.missing_images} missing images ({result.seconds:.1f} s); next at {when}"
    )
