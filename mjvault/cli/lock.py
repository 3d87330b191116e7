"""``mjvault unlock``: clear the lock of a writer that is gone."""

from __future__ import annotations

import click

from mjvault.cli.context import AppContext, pass_app


@click.command("unlock")
@pass_app
def unlock_command(app: AppContext) -> None:
    """Remove a stale lock left by a process that died. Refuses while the holder runs."""
    from mjvault.lock import break_lock, describe_holder

    holder = break_lock(app.vault_path())
    app.emit(
        {"removed": holder},
        lambda: click.echo(
            "the vault was not locked"
            if holder is None
            else f"removed the lock of {describe_holder(holder)}"
            if holder
            else "cleared an unreadable lock note"
        ),
    )
