"""``mjvault notify``: check that notifications reach every configured service."""

from __future__ import annotations

import click

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.errors import EXIT_ERROR, ExitStatus, UsageError


@click.group(
    "notify",
    epilog="""\b
Examples:
  mjvault config set notify.urls -     then paste the URLs, separated by spaces
  mjvault notify test                  a test message to every URL
  mjvault notify test --json           each URL's result, for scripts
""",
)
def notify_group() -> None:
    """Notifications after a sync, on failures, on verify problems and failed pushes."""


@notify_group.command("test")
@json_option
@pass_app
def notify_test_command(app: AppContext) -> None:
    """Send a test message to every URL of notify.urls and say which ones got it.

    Quiet hours and notify.only_on_failure do not apply to it. Exits 1 when any URL failed,
    2 when none is configured.
    """
    from mjvault.notify import Notifier

    notifier = Notifier.from_config(app.config)
    if not notifier.enabled:
        raise UsageError(
            "no notification URLs are configured",
            hint="set notify.urls (`mjvault config set notify.urls -`) or MJVAULT_NOTIFY_URLS",
        )
    vault = app.find_vault_dir()
    results = notifier.send_test(vault=str(vault) if vault is not None else None)
    failed = [result for result in results if not result.ok]

    def human() -> None:
        for result in results:
            if result.ok:
                click.echo(f"ok      {result.url}")
            else:
                click.echo(f"failed  {result.url}: {result.error}")
        click.echo(f"{len(results) - len(failed)} of {len(results)} notified")

    app.emit({"results": [r.to_json() for r in results], "ok": not failed}, human)
    if failed:
        raise ExitStatus(EXIT_ERROR)
